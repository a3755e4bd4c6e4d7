"""Lending sandboxes to episodes: the ``sandbox:`` config section and one pool per process.

Training and evaluation play many episodes; each borrows a warm, freshly reset
sandbox for its length and gives it back on every path (success, tool error,
timeout, exception, Ctrl-C). A suite that runs model-written code
(``needs_isolation``) gets Docker sandboxes by default, others the local
backend. Docker containers are created once per process (or attached from
``docker compose up -d``), so at most ``size`` episodes play at once and the
rest wait for the next round.

Under ``torchrun`` each process opens its own lender; with ``share=(rank,
world_size)`` the processes attach to disjoint shares of the compose project,
so no two episodes ever use one container at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from typing import Any, Literal, Protocol

from opd.envs.sandbox import ExecLimits, LocalSandbox, Sandbox
from opd.envs.suite import ToolSuite
from opd.errors import ConfigError, MissingPrerequisiteError

__all__ = ["SandboxConfig", "SandboxLender", "borrowed", "open_sandboxes", "rounds"]

log = logging.getLogger(__name__)

Backend = Literal["auto", "local", "docker"]


@dataclasses.dataclass(frozen=True)
class SandboxConfig:
    """Where the tools of training and evaluation episodes run (the ``sandbox:`` section of a training config)."""

    backend: Backend = "auto"  # auto: docker for suites that run model-written code, local (no isolation) for the others
    kind: str | None = None  # docker: the sandbox image kind ("python", "shell"); None: the suite's sandbox_kind
    image: str | None = None  # docker: the image; None: the tag `docker compose build` gives the kind
    attach: bool = True  # docker: borrow running `docker compose up -d` containers of the kind first
    start_containers: bool = True  # docker: start containers of our own for what compose does not provide (removed at exit)
    base_url: str | None = None  # docker: the engine, e.g. tcp://host:2376; None: DOCKER_HOST or the default socket
    size: int = 4  # docker: sandboxes per process, i.e. episodes played at once (each process of a torchrun job has its own)
    timeout_s: float = 10.0  # per tool call: the command and its children are killed at this limit
    max_output_chars: int = 16_384  # per tool call: longer output is cut and says so

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "local", "docker"):
            raise ConfigError(f"sandbox.backend must be 'auto', 'local' or 'docker', got {self.backend!r}.")
        if self.size < 1 or self.timeout_s <= 0 or self.max_output_chars < 1:
            got = f"{self.size}, {self.timeout_s}, {self.max_output_chars}"
            raise ConfigError(f"sandbox.size, timeout_s and max_output_chars must be positive; got {got}.")

    @property
    def limits(self) -> ExecLimits:
        return ExecLimits(timeout_s=self.timeout_s, max_output_chars=self.max_output_chars)

    def backend_for(self, suite: ToolSuite) -> Literal["local", "docker"]:
        if self.backend == "auto":
            return "docker" if suite.needs_isolation else "local"
        return self.backend


class SandboxLender(Protocol):
    """Lends sandboxes to episodes; ``acquire`` waits while all are lent out."""

    limits: ExecLimits
    at_once: int | None  # how many can be lent out at once (None: no limit)

    def acquire(self) -> Sandbox: ...

    def release(self, sandbox: Sandbox) -> None: ...

    def close(self) -> None: ...


@contextlib.contextmanager
def borrowed(lender: SandboxLender, count: int) -> Iterator[list[Sandbox]]:
    """``count`` sandboxes for one round of episodes, all given back however the round ends."""
    boxes: list[Sandbox] = []
    try:
        for _ in range(count):
            boxes.append(lender.acquire())
        yield boxes
    finally:
        for box in boxes:
            lender.release(box)


def rounds(lender: SandboxLender, count: int) -> list[range]:
    """``range(count)`` cut into rounds of at most ``lender.at_once`` episodes."""
    step = lender.at_once or count or 1
    return [range(start, min(start + step, count)) for start in range(0, count, step)]


class LocalSandboxes:
    """Local sandboxes (temporary directories, **no isolation**), made on demand and reused."""

    at_once = None

    def __init__(self, limits: ExecLimits) -> None:
        self.limits = limits
        self._idle: list[LocalSandbox] = []
        self._all: list[LocalSandbox] = []

    def acquire(self) -> Sandbox:
        if not self._idle:
            self._all.append(LocalSandbox())
            return self._all[-1]
        return self._idle.pop()

    def release(self, sandbox: Sandbox) -> None:
        assert isinstance(sandbox, LocalSandbox) and sandbox in self._all
        sandbox.reset()
        self._idle.append(sandbox)

    def close(self) -> None:
        for box in self._all:
            box.close()
        self._all, self._idle = [], []


class DockerSandboxes:
    """A :class:`~opd.envs.docker.SandboxPool` as a lender, with the limits episodes run under."""

    def __init__(self, pool: Any, limits: ExecLimits) -> None:
        self.pool = pool
        self.limits = limits
        self.at_once = len(pool.sandboxes)  # fewer than size when only attaching to a smaller compose project

    def acquire(self) -> Sandbox:
        return self.pool.acquire()

    def release(self, sandbox: Sandbox) -> None:
        self.pool.release(sandbox)

    def close(self) -> None:
        self.pool.close()


def open_sandboxes(config: SandboxConfig, suite: ToolSuite, *, share: tuple[int, int] = (0, 1)) -> SandboxLender:
    """The lender ``suite``'s episodes borrow from, started (containers warm) and ready.

    ``share``: (this process's index, the number of processes) of a job whose
    processes attach to one compose project; each takes a disjoint share.
    """
    if config.backend_for(suite) == "local":
        return LocalSandboxes(config.limits)
    return DockerSandboxes(_docker_pool(config, suite, share), config.limits)


def _docker_pool(config: SandboxConfig, suite: ToolSuite, share: tuple[int, int]) -> Any:
    from opd.envs.docker import EngineConfig, PoolConfig, SandboxPool  # here: the docker SDK is needed only for Docker sandboxes

    kind = config.kind or suite.sandbox_kind
    engine = EngineConfig(base_url=config.base_url)
    pool_config = PoolConfig(
        kind=kind, size=config.size, image=config.image, attach=config.attach, engines=(engine,), share=share,
        create=config.start_containers,
    )  # fmt: skip
    pool = SandboxPool(pool_config)
    try:
        pool.start()
    except MissingPrerequisiteError as exc:
        pool.close()
        if "Cannot reach the Docker Engine" not in str(exc):
            raise
        raise MissingPrerequisiteError(
            f"Suite {suite.name!r} needs Docker sandboxes, but no Docker Engine answers at {engine.describe()}. Either run "
            "`docker compose up -d` in the opd repository (warm sandboxes opd attaches to), or start a Docker Engine "
            "(scripts/ensure-docker.sh, or DOCKER_HOST / sandbox.base_url) and opd starts its own containers."
        ) from None
    except BaseException:
        pool.close()
        raise
    log.info("sandboxes for %s: %s", suite.name, ", ".join(s.name for s in pool.sandboxes))
    return pool
