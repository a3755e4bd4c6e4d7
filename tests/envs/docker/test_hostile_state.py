"""What one episode leaves in a warm sandbox, and what its text can do to a terminal: each case on the real engine.

A warm sandbox serves thousands of episodes, so SysV IPC objects, FIFOs, paths
out of the work directory, unreadable or absurdly deep trees, and terminal
control sequences must each be contained, not just the classic attacks of
test_hostile.py.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest
from trajectory_factories import make_episode
from typer.testing import CliRunner

from opd.cli.app import app
from opd.envs import ErrorKind, ExecLimits, ToolEnv
from opd.envs.docker import DockerSandbox
from opd.errors import ToolError
from opd.trajectories import Run, TrajectoryStore

pytestmark = pytest.mark.docker
LIMITS = ExecLimits(timeout_s=3.0, max_output_chars=4_000)
# Shared memory (with a secret in it), a message queue and a semaphore set, made as the sandbox user with libc.
MAKE_IPC = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
shm = libc.shmget(0x5EC, 4096, 0o1000 | 0o600)
ctypes.memmove(libc.shmat(shm, None, 0), b"episode-1-secret", 16)
print(shm >= 0, libc.msgget(0x5ED, 0o1000 | 0o600) >= 0, libc.semget(0x5EE, 1, 0o1000 | 0o600) >= 0)
"""
READ_IPC = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
shm = libc.shmget(0x5EC, 0, 0)
print("secret" if shm >= 0 and b"secret" in ctypes.string_at(libc.shmat(shm, None, 0), 16) else "none")
print(open("/proc/sysvipc/shm").read().count("\\n") - 1, open("/proc/sysvipc/msg").read().count("\\n") - 1,
      open("/proc/sysvipc/sem").read().count("\\n") - 1)
"""


def call(name: str, **arguments: str) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


def started_at(sandbox: DockerSandbox) -> str:
    return sandbox.client.api.inspect_container(sandbox.container_id)["State"]["StartedAt"]


def test_sysv_ipc_objects_do_not_survive_the_reset(python_pool) -> None:
    with python_pool.borrow() as sandbox:
        assert sandbox.exec(["python3", "-c", MAKE_IPC], LIMITS).output.split() == ["True"] * 3
        assert sandbox.exec(["python3", "-c", READ_IPC], LIMITS).output.split() == ["secret", "1", "1", "1"]
        before = started_at(sandbox)
        sandbox.reset()
        assert sandbox.exec(["python3", "-c", READ_IPC], LIMITS).output.split() == ["none", "0", "0", "0"]
        assert started_at(sandbox) == before  # removed by the reset itself, not by restarting the container


def test_a_fifo_or_device_is_refused_by_the_file_tools_within_the_calls_limits(shell_pool) -> None:
    with shell_pool.borrow() as sandbox:
        env = ToolEnv("files", sandbox=sandbox, difficulty="easy", limits=LIMITS, max_turns=20)
        env.reset(seed=0)
        env.step(call("shell", command="mkfifo pipe && ln -s /dev/zero zero && mkdir -p d && mkfifo d/inner"))
        for step in (call("read_file", path="pipe"), call("write_file", path="pipe", content="x"), call("read_file", path="d/inner")):
            started = time.perf_counter()
            observation, _, _, _, info = env.step(step)
            assert time.perf_counter() - started < LIMITS.timeout_s, step  # no 30 s stall on a FIFO without a writer
            assert info["error_kind"] == ErrorKind.TOOL_ERROR and "regular file" in observation, observation
        with pytest.raises(ToolError, match="regular file|symbolic link"):
            sandbox.read_file("zero", limits=LIMITS)


@pytest.mark.parametrize("path", ["/etc/passwd", "../etc/passwd", "logs/../../etc/passwd", "link/passwd"])
def test_file_operations_stay_in_the_work_directory(path: str, shell_pool) -> None:
    with shell_pool.borrow() as sandbox:
        assert sandbox.exec(["ln", "-s", "/etc", "link"], LIMITS).ok
        with pytest.raises(ToolError, match="working directory"):
            sandbox.read_file(path)
        with pytest.raises(ToolError, match="working directory"):
            sandbox.write_file(path.replace("passwd", "evil"), "x")


@pytest.mark.parametrize("mess", ["unreadable", "deep"])
def test_reset_cleans_an_unreadable_or_3000_deep_work_directory_without_a_restart(mess: str, python_pool) -> None:
    make = {
        "unreadable": "import os\nos.makedirs('a/b/c')\nopen('a/b/c/f', 'w').write('x')\nfor p in ('a/b/c', 'a/b', 'a', '.'):\n"
        "    os.chmod(p, 0)",
        "deep": "import os\nfor _ in range(3000):\n    os.mkdir('d')\n    os.chdir('d')\n"
        "open('bottom', 'w').write('x')\nos.chmod('.', 0o500)",
    }[mess]
    with python_pool.borrow() as sandbox:
        assert sandbox.exec(["python3", "-c", make], ExecLimits(timeout_s=30)).ok
        before = started_at(sandbox)
        sandbox.reset()
        assert started_at(sandbox) == before
        listing = sandbox.exec(["sh", "-c", "ls -A /work; stat -c %A /work"], LIMITS).output.split()
        assert listing[:-1] == [] and listing[-1].startswith("drwx"), listing


def test_control_sequences_are_stored_as_they_are_and_shown_escaped(shell_pool, tmp_path: Path) -> None:
    hostile = "\x1bc\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\ \x9b31m red \u202e"
    with shell_pool.borrow() as sandbox:
        env = ToolEnv("files", sandbox=sandbox, difficulty="easy", limits=LIMITS, max_turns=20, render_mode="ansi")
        env.reset(seed=0)
        env.step(call("write_file", path="evil.txt", content=hostile))
        read_back = env.step(call("read_file", path="evil.txt"))[0]
        assert read_back == hostile  # the tool's output is what the file holds
        catted = env.step(call("shell", command="cat evil.txt"))[0]
        assert "\x1b" not in catted and "\x9b" not in catted and "click" in catted  # the exec path replaces C0 and C1
        rendered = env.render()
    assert not any(c in rendered for c in "\x1b\x9b\u202e") and "\\x1bc" in rendered and "\\x9b31m" in rendered
    run = Run(id="a" * 32)
    episode = make_episode(np.random.default_rng(0), run, steps=1)
    episode = dataclasses.replace(
        episode, steps=(dataclasses.replace(episode.steps[0], action=f"model says {hostile}", observation=read_back),)
    )
    with TrajectoryStore(tmp_path / "store.db") as store:
        store.add_run(run)
        store.write_episodes([episode])
        stored = store.get_episode(episode.id)
    assert stored.steps[0].observation == hostile and hostile in stored.steps[0].action
    shown = CliRunner().invoke(app, ["episodes", "show", episode.id, "--store", str(tmp_path / "store.db")])
    assert shown.exit_code == 0, shown.output
    assert not any(c in shown.output for c in "\x1b\x9b\u202e") and "\\x1bc" in shown.output and "\\x9b31m" in shown.output
