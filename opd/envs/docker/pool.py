"""``SandboxPool``: warm Docker sandboxes lent to many envs at once, and the sweep for what a dead run left.

The pool owns container lifetimes; envs borrow sandboxes. It first attaches to
running compose-started containers of its kind (``docker compose up -d``, found
by label) and starts the rest itself with the same hardening. Creating a
container costs seconds (more on the vfs storage driver), a call into a warm
one milliseconds, so containers are created once and reset between episodes.

Containers the pool starts carry an owner label (host, pid, process start
time). ``close()`` removes them, and so does a finalizer at interpreter exit;
after a hard crash (SIGKILL, power loss) the next pool on this host, or
``opd sandbox cleanup``, removes every container whose owner is dead.
Compose-started containers are never removed by opd: ``docker compose down``
does that.

A pool may span several engines (``PoolConfig.engines``, e.g. one per sandbox
host): each new container goes to the engine that has the fewest of the pool's
containers, and a replaced container stays on its engine.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import queue
import threading
import weakref
from collections.abc import Iterator

import docker
import docker.errors

from opd.envs.docker.engine import EngineConfig, connect, require_image
from opd.envs.docker.hardening import (
    COMPOSE_PROJECT_LABEL,
    KIND_LABEL,
    OWNER_LABEL,
    SANDBOX_LABEL,
    Hardening,
    Owner,
    container_kwargs,
    default_image,
)
from opd.envs.docker.sandbox import DockerSandbox
from opd.errors import ConfigError, SandboxError

__all__ = ["PoolConfig", "SandboxPool", "SweptContainer", "sweep_containers"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PoolConfig:
    kind: str = "python"  # the compose service / image: "python" or "shell"
    size: int = 2  # sandboxes lent out at once
    image: str | None = None  # default: the tag `docker compose build` gives the kind's image
    attach: bool = True  # use running compose-started containers of this kind before starting our own
    hardening: Hardening = Hardening()  # for the containers the pool starts itself
    acquire_timeout_s: float = 600.0  # how long acquire() waits for a free sandbox
    engines: tuple[EngineConfig, ...] = ()  # where containers run; () means the engine DOCKER_HOST (or the default socket) names
    share: tuple[int, int] = (0, 1)  # (index, count): attach to every count-th compose container from index (a torchrun rank's share)
    create: bool = True  # start containers of our own when compose provides fewer than size; False: only attach

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ConfigError(f"A sandbox pool needs size >= 1, got {self.size}.")
        if not 0 <= self.share[0] < self.share[1]:
            raise ConfigError(f"share must be (index, count) with 0 <= index < count, got {self.share}.")
        object.__setattr__(self, "engines", tuple(e if isinstance(e, EngineConfig) else EngineConfig(**e) for e in self.engines))


class SandboxPool:
    """Lends warm :class:`DockerSandbox` es; thread-safe. Use as a context manager or call ``close()``.

    ``client`` (one engine) or ``clients`` (several) replace connecting to ``config.engines``.
    """

    def __init__(
        self,
        config: PoolConfig | None = None,
        *,
        client: docker.DockerClient | None = None,
        clients: list[docker.DockerClient] | None = None,
        **options: object,
    ) -> None:
        self.config = dataclasses.replace(config or PoolConfig(), **options)  # type: ignore[arg-type]
        self.image = self.config.image or default_image(self.config.kind)
        self._clients = clients or ([client] if client is not None else None)
        self._owner = Owner.current()
        self._idle: queue.Queue[DockerSandbox] = queue.Queue()
        self._all: list[DockerSandbox] = []
        self._owned: dict[int, list[str]] = {}  # per engine: shared with the exit finalizer, which removes what is still listed
        self._lock = threading.Lock()
        self._started = False
        self._closed = False

    @property
    def clients(self) -> list[docker.DockerClient]:
        """One client per engine the pool runs containers on."""
        if self._clients is None:
            self._clients = [connect(engine) for engine in self.config.engines or (EngineConfig(),)]
        return self._clients

    @property
    def client(self) -> docker.DockerClient:
        """The first engine's client (the only one, unless the pool spans several)."""
        return self.clients[0]

    @property
    def sandboxes(self) -> tuple[DockerSandbox, ...]:
        return tuple(self._all)

    @property
    def available(self) -> int:
        """How many sandboxes are idle (not lent out) right now."""
        return self._idle.qsize()

    def start(self) -> SandboxPool:
        """Attach to or start ``size`` warm sandboxes (idempotent)."""
        with self._lock:
            if self._started:
                return self
            if self._closed:
                raise SandboxError("This sandbox pool was closed; create a new one.")
            for engine, client in enumerate(self.clients):
                require_image(client, self.image)
                removed = sweep_containers(client)
                if removed:
                    log.warning("removed %d sandbox container(s) left by dead runs", len(removed))
                self._owned[engine] = []
                weakref.finalize(self, _remove_containers, client, self._owned[engine])
            attached = self._attach() if self.config.attach else []
            if not self.config.create and not attached:
                raise SandboxError(
                    f"No running {self.config.kind} sandbox to attach to (and starting containers is off): run "
                    "`docker compose up -d` in the opd repository, or let opd start its own containers."
                )
            created = self._create(self.config.size - len(attached), attached) if self.config.create else []
            for sandbox in attached + created:
                sandbox.reset()
                self._all.append(sandbox)
                self._idle.put(sandbox)
            self._started = True
            kind, engines = self.config.kind, len(self.clients)
            log.info("sandbox pool %s: %d attached, %d started on %d engine(s)", kind, len(attached), len(created), engines)
        return self

    def acquire(self, timeout_s: float | None = None) -> DockerSandbox:
        """A clean sandbox for one borrower; waits while all are lent out."""
        self.start()
        timeout_s = self.config.acquire_timeout_s if timeout_s is None else timeout_s
        try:
            return self._idle.get(timeout=timeout_s)
        except queue.Empty:
            kind, size = self.config.kind, self.config.size
            raise SandboxError(f"No {kind} sandbox came free within {timeout_s:g} s (pool size {size}).") from None

    def release(self, sandbox: DockerSandbox) -> None:
        """Take a sandbox back: reset it (or replace it if its container died) and lend it out again."""
        if sandbox not in self._all:
            raise ConfigError(f"{sandbox!r} does not belong to this pool.")
        if self._closed:
            return
        try:
            sandbox.reset()
        except SandboxError as exc:
            log.warning("replacing sandbox %s: %s", sandbox.name, exc)
            sandbox = self._replace(sandbox)
        self._idle.put(sandbox)

    @contextlib.contextmanager
    def borrow(self) -> Iterator[DockerSandbox]:
        sandbox = self.acquire()
        try:
            yield sandbox
        finally:
            self.release(sandbox)

    def close(self) -> None:
        """Remove the containers this pool started; leave compose-started ones running (reset)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for sandbox in self._all:
                sandbox.close()
            for engine, owned in self._owned.items():
                _remove_containers(self.clients[engine], owned)

    def __enter__(self) -> SandboxPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _attach(self) -> list[DockerSandbox]:
        labels = [f"{SANDBOX_LABEL}=1", f"{KIND_LABEL}={self.config.kind}", COMPOSE_PROJECT_LABEL]
        filters = {"label": labels, "status": "running"}
        found = {  # by id: two addresses of one engine (a socket and a TCP port) list its containers twice
            c.id: DockerSandbox(client, c.id, kind=self.config.kind, name=c.name)
            for client in reversed(self.clients)
            for c in client.containers.list(filters=filters)
        }
        index, count = self.config.share
        return sorted(found.values(), key=lambda s: s.name)[index::count][: self.config.size]

    def _create(self, count: int, attached: list[DockerSandbox]) -> list[DockerSandbox]:
        if count <= 0:
            return []
        # The least-loaded engine gets each next container (attached ones count), so the pool spreads evenly.
        load = [sum(s.client is client for s in attached) for client in self.clients]
        engines = []
        for _ in range(count):
            engines.append(load.index(min(load)))
            load[engines[-1]] += 1
        # Creation is the slow part (the image is copied per container on vfs): overlap it.
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(count, 4)) as workers:
            return list(workers.map(self._create_one, engines))

    def _create_one(self, engine: int) -> DockerSandbox:
        client = self.clients[engine]
        kwargs = container_kwargs(self.config.kind, self.image, self.config.hardening, self._owner)
        try:
            container = client.containers.run(**kwargs)
        except docker.errors.APIError as exc:
            raise SandboxError(f"Could not start a {self.config.kind} sandbox from {self.image!r}: {exc}") from exc
        self._owned[engine].append(container.id)
        return DockerSandbox(client, container.id, kind=self.config.kind, name=kwargs["name"])

    def _replace(self, dead: DockerSandbox) -> DockerSandbox:
        dead.close()
        engine = next(i for i, client in enumerate(self.clients) if client is dead.client)
        if dead.container_id in self._owned[engine]:
            _remove_containers(dead.client, [dead.container_id])
            self._owned[engine].remove(dead.container_id)
        fresh = self._create_one(engine)
        fresh.reset()
        self._all[self._all.index(dead)] = fresh
        return fresh


@dataclasses.dataclass(frozen=True)
class SweptContainer:
    name: str
    owner: str  # the owner label, "" for compose-started containers
    reason: str  # why it was (or would be) removed


def sweep_containers(client: docker.DockerClient, *, everything: bool = False, dry_run: bool = False) -> list[SweptContainer]:
    """Remove pool-started sandbox containers whose owner process is dead (or all of them with ``everything``).

    Owners on another host cannot be checked and are left alone unless
    ``everything``. Compose-started containers are never touched.
    """
    swept = []
    for container in client.containers.list(all=True, filters={"label": [f"{SANDBOX_LABEL}=1", OWNER_LABEL]}):
        label = container.labels.get(OWNER_LABEL, "")
        owner = Owner.parse(label)
        alive = owner.is_alive() if owner else False
        if everything:
            reason = "removing every opd sandbox"
        elif alive is False:
            reason = f"owner process {label} is gone"
        else:
            continue
        swept.append(SweptContainer(container.name, label, reason))
        if not dry_run:
            _remove_containers(client, [container.id])
    return swept


def _remove_containers(client: docker.DockerClient, ids: list[str]) -> None:
    """Force-remove containers (SIGKILL, then delete), in parallel; already-gone ones are fine."""

    def remove(container_id: str) -> None:
        try:
            client.api.remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                log.warning("could not remove sandbox container %s: %s", container_id[:12], exc)

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as workers:
        list(workers.map(remove, list(ids)))
    ids.clear()
