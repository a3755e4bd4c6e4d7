"""SandboxPool on a real engine: attach to compose, start hardened containers, lend them concurrently, clean up."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from opd.cli.app import app
from opd.envs import ExecLimits, ToolEnv, play_expert
from opd.envs.docker import SandboxPool
from opd.envs.docker.hardening import COMPOSE_PROJECT_LABEL, OWNER_LABEL, Owner
from opd.errors import MissingPrerequisiteError, SandboxError

pytestmark = pytest.mark.docker
HARDENING_KEYS = ["NetworkMode", "ReadonlyRootfs", "CapDrop", "SecurityOpt", "Init", "PidsLimit", "Memory", "MemorySwap",
                  "NanoCpus", "Tmpfs", "Ulimits"]  # fmt: skip


@pytest.fixture(scope="module")
def own_pool(docker_client):
    with SandboxPool(kind="python", size=2, attach=False, client=docker_client) as pool:
        yield pool


def test_the_session_pool_attached_to_compose_started_containers(python_pool, docker_client) -> None:
    for sandbox in python_pool.sandboxes:
        labels = docker_client.containers.get(sandbox.container_id).labels
        assert labels[COMPOSE_PROJECT_LABEL] == "opd-sandboxes" and OWNER_LABEL not in labels


def test_own_containers_get_the_compose_hardening(own_pool, python_pool, docker_client) -> None:
    own = docker_client.api.inspect_container(own_pool.sandboxes[0].container_id)
    composed = docker_client.api.inspect_container(python_pool.sandboxes[0].container_id)
    assert _hardening(own) == _hardening(composed)
    assert own["Config"]["User"] == composed["Config"]["User"] == "65534:65534"
    assert own["HostConfig"]["NetworkMode"] == "none" and own["HostConfig"]["CapDrop"] == ["ALL"]
    assert Owner.parse(own["Config"]["Labels"][OWNER_LABEL]) == Owner.current()


def test_many_envs_borrow_sandboxes_at_once(own_pool) -> None:
    def episodes(seed: int) -> tuple[str, list[bool]]:
        with own_pool.borrow() as sandbox:
            env = ToolEnv("python", sandbox=sandbox, difficulty="easy")
            return sandbox.container_id, [play_expert(env, seed + k).success for k in range(3)]

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as threads:
        results = list(threads.map(episodes, [0, 100]))
    assert all(all(successes) for _, successes in results)
    assert own_pool.available == 2  # everything was given back


def test_a_container_dying_mid_episode_fails_the_episode_and_the_pool_replaces_it(docker_client) -> None:
    with SandboxPool(kind="python", size=1, attach=False, client=docker_client) as pool:
        sandbox = pool.acquire()
        env = ToolEnv("python", sandbox=sandbox, difficulty="easy")
        env.reset(seed=0)
        docker_client.api.remove_container(sandbox.container_id, force=True)
        with pytest.raises(SandboxError, match="no longer exists|died mid-episode"):
            env.step('<tool_call>{"name": "run_python", "arguments": {"code": "print(1)"}}</tool_call>')
        pool.release(sandbox)
        with pool.borrow() as fresh:
            assert fresh.container_id != sandbox.container_id
            assert play_expert(ToolEnv("python", sandbox=fresh, difficulty="easy"), 0).success
        started, owned = {fresh.name, sandbox.name}, _owned_by(docker_client, Owner.current())
        assert fresh.name in owned and sandbox.name not in owned
    assert started.isdisjoint(_owned_by(docker_client, Owner.current()))  # close() removed what it started


def test_containers_of_a_crashed_run_are_swept(docker_client) -> None:
    script = (
        "from opd.envs.docker import SandboxPool\n"
        "pool = SandboxPool(kind='python', size=1, attach=False).start()\n"
        "print('ready', flush=True)\nimport time\ntime.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        owner = next(
            o for c in docker_client.containers.list(all=True, filters={"label": OWNER_LABEL})
            if (o := Owner.parse(c.labels[OWNER_LABEL])) and o.pid == child.pid
        )  # fmt: skip
    finally:
        os.kill(child.pid, signal.SIGKILL)  # a crash: no close(), no atexit
        child.wait()
    assert len(_owned_by(docker_client, owner)) == 1 and owner.is_alive() is False
    result = CliRunner().invoke(app, ["sandbox", "cleanup"])
    assert result.exit_code == 0, result.output
    assert f"owner process {owner.label()} is gone" in result.output
    assert _owned_by(docker_client, owner) == []


def test_cleanup_leaves_live_runs_and_compose_containers_alone(own_pool, python_pool, docker_client) -> None:
    result = CliRunner().invoke(app, ["sandbox", "cleanup", "--dry-run"])
    assert result.exit_code == 0 and "would remove 0 sandbox container(s)" in result.output
    listed = CliRunner().invoke(app, ["sandbox", "list"])
    assert own_pool.sandboxes[0].name in listed.output and python_pool.sandboxes[0].name in listed.output


def test_a_missing_image_says_how_to_build_it(docker_client) -> None:
    with pytest.raises(MissingPrerequisiteError, match="docker compose build"):
        SandboxPool(kind="python", image="opd-sandbox-missing:0", client=docker_client).start()


def test_exec_latency_into_a_warm_sandbox_is_well_under_a_second(python_pool) -> None:
    import time

    with python_pool.borrow() as sandbox:
        started = time.perf_counter()
        for _ in range(5):
            assert sandbox.exec(["true"], ExecLimits()).ok
        assert (time.perf_counter() - started) / 5 < 1.0


def _hardening(inspected: dict) -> dict:
    settings = {key: inspected["HostConfig"][key] for key in HARDENING_KEYS}
    settings["Ulimits"] = sorted(settings["Ulimits"], key=lambda limit: limit["Name"])  # compose orders them at random
    return settings


def _owned_by(client, owner: Owner) -> list[str]:
    return [c.name for c in client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={owner.label()}"})]
