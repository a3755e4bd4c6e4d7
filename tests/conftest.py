from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Test helpers (tiny locally built models and tokenizers) live beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

import opd.envs  # noqa: E402  (registers the built-in suites)

REPO_ROOT = Path(__file__).parents[1]
# Suites that run on the local backend; those that need isolation are tested on Docker in tests/envs/docker.
LOCAL_SUITES = [name for name in opd.envs.suite_names() if not opd.envs.make_suite(name).requires_isolation]
# The compose service (and pool kind) each isolated suite runs on.
SANDBOX_KIND = {"python": "python", "files": "shell", "logs": "shell"}


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from tiny_tokenizer import build_tiny_tokenizer

    return build_tiny_tokenizer(tmp_path_factory.mktemp("tiny-tokenizer"))


@pytest.fixture(scope="session")
def real_models() -> Path:
    """The directory of real-tokenizer model fixtures (qwen2.5, llama3.1, qwen3); `make test` prepares it."""
    from real_models import real_models_dir_or_fail

    return real_models_dir_or_fail()


@pytest.fixture(autouse=True)
def _no_suite_leaks_out() -> Iterator[None]:
    """A suite a test registers must be gone after it (tests/suite_registry.py), or later tests see it."""
    from opd.envs import registry

    before = set(registry._FACTORIES)
    yield
    leaked = set(registry._FACTORIES) - before
    assert not leaked, f"this test left suites registered: {sorted(leaked)}; wrap it in restored_suite_registry()"


@pytest.fixture(params=LOCAL_SUITES)
def suite_name(request: pytest.FixtureRequest) -> str:
    return request.param


def docker_client_or_fail(engine=None):
    """A client of ``engine`` (default: the environment's); without it the test fails in CI (CI starts one) and skips elsewhere."""
    from opd.envs.docker import connect
    from opd.errors import MissingPrerequisiteError

    try:
        return connect(engine, timeout_s=30)
    except MissingPrerequisiteError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Docker tests, but: {exc}")
        pytest.skip(f"no Docker Engine ({exc}); `make test` starts one")


def _compose(*args: str) -> None:
    env = {**os.environ, "OPD_PYTHON_SANDBOXES": "2", "OPD_SHELL_SANDBOXES": "1"}
    subprocess.run(["docker", "compose", *args], cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=300)


def _leftover_containers(client) -> list[str]:
    from opd.envs.docker.hardening import SANDBOX_LABEL

    return [c.name for c in client.containers.list(all=True, filters={"label": f"{SANDBOX_LABEL}=1"})]


@pytest.fixture(scope="session")
def docker_client():
    """The engine, with `docker compose up -d` run for the session; afterwards nothing of ours may be left."""
    client = docker_client_or_fail()
    _compose("up", "-d", "--wait")
    yield client
    _compose("down", "--timeout", "0")
    assert _leftover_containers(client) == [], "sandbox containers outlived the test session"


@pytest.fixture(scope="session")
def python_pool(docker_client) -> Iterator[opd.envs.docker.SandboxPool]:
    from opd.envs.docker import SandboxPool

    with SandboxPool(kind="python", size=2, client=docker_client) as pool:
        yield pool


@pytest.fixture(scope="session")
def shell_pool(docker_client) -> Iterator[opd.envs.docker.SandboxPool]:
    from opd.envs.docker import SandboxPool

    with SandboxPool(kind="shell", size=1, client=docker_client) as pool:
        yield pool


@pytest.fixture
def pool_for(python_pool, shell_pool):
    """The session pool a suite's sandboxes come from: ``pool_for("files")``."""
    return lambda suite: {"python": python_pool, "shell": shell_pool}[SANDBOX_KIND[suite]]
