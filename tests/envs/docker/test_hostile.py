"""Hostile model actions, each sent through the env as a tool call, must be contained.

Contained means: the step returns an observation (an error where the action
failed) within the limit + 5 s, the host and the pool keep working, and the
next episode sees a clean sandbox. Every case runs on a real engine.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from sandbox_checks import live_processes

from opd.envs import ErrorKind, ExecLimits, ToolEnv
from opd.envs.docker import DockerSandbox

pytestmark = pytest.mark.docker
LIMITS = ExecLimits(timeout_s=3.0, max_output_chars=2_000)
HOST_SECRET = "opd-host-secret-5d41402abc4b2a76"


@pytest.fixture
def env(python_pool):
    with python_pool.borrow() as sandbox:
        env = ToolEnv("python", sandbox=sandbox, difficulty="easy", limits=LIMITS, max_turns=50)
        env.reset(seed=0)
        yield env
        # The host and the pool keep working, and the next episode starts clean.
        env.reset(seed=1)
        assert_clean(sandbox)
        assert step(env, "print('still alive')")[0].startswith("still alive")


def step(env: ToolEnv, code: str, tool: str = "run_python", arg: str = "code") -> tuple[str, dict, float]:
    action = "<tool_call>" + json.dumps({"name": tool, "arguments": {arg: code}}) + "</tool_call>"
    started = time.perf_counter()
    observation, _, terminated, truncated, info = env.step(action)
    elapsed = time.perf_counter() - started
    assert not (terminated or truncated)
    assert env.observation_space.contains(observation)
    assert elapsed < LIMITS.timeout_s + 5, f"took {elapsed:.1f} s"
    return observation, info, elapsed


def assert_clean(sandbox: DockerSandbox) -> None:
    listing = sandbox.exec(["sh", "-c", "ls -A /work /tmp /dev/shm"], LIMITS).output
    assert listing.split() == ["/dev/shm:", "/tmp:", "/work:"], listing
    processes = live_processes(sandbox, LIMITS)
    assert processes == ["python3"], processes  # the supervisor that ran this check, nothing else


def test_fork_bomb(env: ToolEnv) -> None:
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    observation, info, _ = step(env, code)
    assert info["error_kind"] in (ErrorKind.TIMEOUT, ErrorKind.NONZERO_EXIT)
    # The bomb stayed in its process group, so the timeout killed all of it: the episode can go on.
    assert step(env, "print('next call')")[0].startswith("next call")


def test_shell_fork_bomb_escaping_its_session(env: ToolEnv) -> None:
    # Each generation leaves its exec's session, so killing the process group does not reach it and the command
    # itself "succeeds"; the pids limit stalls it, and the episode reset (fixture teardown) must still clean up.
    code = "import subprocess\nsubprocess.run(['bash', '-c', 'b() { setsid bash -c \"$(declare -f b); b\" & b & }; b'])"
    step(env, code)
    # Within the episode the next call either runs or is refused with an error the model can read.
    observation, info, _ = step(env, "print('next call')")
    assert observation.startswith("next call") or (
        info["error_kind"] == ErrorKind.NONZERO_EXIT and "Resource temporarily unavailable" in observation
    ), observation


def test_memory_bomb(env: ToolEnv) -> None:
    observation, info, _ = step(env, "x = b'x' * (2 * 1024 ** 3)\nprint('allocated')")
    assert info["error_kind"] == ErrorKind.NONZERO_EXIT
    assert "allocated" not in observation and ("MemoryError" in observation or "out of memory" in observation)


@pytest.mark.parametrize(
    "code",
    ["while True:\n    pass", "import time\ntime.sleep(60)", "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(60)"],
    ids=["busy_loop", "sleep", "sleep_with_output_closed"],
)
def test_time_limits(env: ToolEnv, code: str) -> None:
    observation, info, elapsed = step(env, code)
    assert info["error_kind"] == ErrorKind.TIMEOUT and "timed out after 3 s" in observation
    assert elapsed >= LIMITS.timeout_s


@pytest.mark.parametrize("code", ["while True:\n    print('x' * 10_000)", "import sys\nsys.stdout.write('y' * 50_000_000)"])
def test_stdout_flood(env: ToolEnv, code: str) -> None:
    observation, info, _ = step(env, code)
    assert info["tool_results"][0]["truncated"]
    assert len(observation) < LIMITS.max_output_chars + 300


def test_binary_and_invalid_utf8_output(env: ToolEnv) -> None:
    code = "import sys\nsys.stdout.buffer.write(bytes(range(256)) * 4 + b'\\xff\\xfe\\xc3\\x28 end')"
    observation, info, _ = step(env, code)
    assert info["error_kind"] is None and observation.endswith("( end")
    assert "\ufffd" in observation and "\x00" not in observation


@pytest.mark.parametrize(
    "code",
    [
        "import socket\nprint(socket.getaddrinfo('example.com', 80))",
        "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)\nprint('connected')",
        "import urllib.request\nprint(urllib.request.urlopen('http://pypi.org', timeout=2).status)",
    ],
    ids=["dns", "tcp", "http"],
)
def test_no_network(env: ToolEnv, code: str) -> None:
    observation, info, _ = step(env, code)
    assert info["error_kind"] == ErrorKind.NONZERO_EXIT
    assert "connected" not in observation and "200" not in observation
    assert any(word in observation for word in ("unreachable", "resolution", "Name or service", "URLError"))


@pytest.mark.parametrize("path", ["/etc/passwd", "/evil", "/work/../usr/evil", "/usr/lib/python3/dist-packages/x.py"])
def test_no_writes_outside_the_work_dir(env: ToolEnv, path: str) -> None:
    observation, info, _ = step(env, f"open({path!r}, 'a').write('x')\nprint('wrote')")
    assert info["error_kind"] == ErrorKind.NONZERO_EXIT
    assert "wrote" not in observation and ("Read-only file system" in observation or "Permission denied" in observation)


def test_no_host_secrets_or_environment(env: ToolEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPD_TEST_SECRET", HOST_SECRET)
    code = (
        "import os\nprint(dict(os.environ))\n"
        "for path in ['/proc/1/environ', '/etc/shadow', '/run/secrets', '/var/run/docker.sock', '/root']:\n"
        "    try:\n        print(path, open(path).read()[:100])\n    except OSError as e:\n        print(path, type(e).__name__)"
    )
    observation, _, _ = step(env, code)
    assert HOST_SECRET not in observation and str(os.getpid()) not in observation.split()
    assert "/proc/1/environ PermissionError" in observation and "/etc/shadow PermissionError" in observation
    assert "/var/run/docker.sock FileNotFoundError" in observation and "/run/secrets FileNotFoundError" in observation


def test_no_privilege_escalation(env: ToolEnv) -> None:
    code = (
        "import os, subprocess\n"
        "for attempt in (lambda: os.setuid(0), lambda: os.chown('.', 0, 0), lambda: os.nice(-5)):\n"
        "    try:\n        attempt(); print('ESCALATED')\n    except OSError as e:\n        print(type(e).__name__)\n"
        "print(subprocess.run(['su', '-c', 'id'], capture_output=True, input=b'', timeout=2).returncode)\n"
        "print(os.getuid(), os.geteuid())"
    )
    observation, _, _ = step(env, code)
    assert "ESCALATED" not in observation and observation.split()[:3] == ["PermissionError"] * 3
    assert observation.split()[3] != "0" and observation.split()[4:6] == ["1000", "1000"]


def test_a_background_process_does_not_outlive_the_episode(env: ToolEnv) -> None:
    code = "import subprocess\nsubprocess.Popen(['sleep', '600'], start_new_session=True)\nprint('spawned')"
    observation, info, _ = step(env, code)
    assert observation.startswith("spawned") and info["error_kind"] is None
    # The fixture's teardown resets the env and checks that no process of the sandbox user is left.


def test_a_huge_file_hits_the_work_dir_limit(env: ToolEnv) -> None:
    code = "with open('big', 'wb') as f:\n    for _ in range(200):\n        f.write(b'0' * 1024 ** 2)\nprint('wrote 200 MiB')"
    observation, info, _ = step(env, code)
    assert info["error_kind"] == ErrorKind.NONZERO_EXIT and "No space left on device" in observation


def test_the_shell_tool_contains_the_same_attacks(shell_pool) -> None:
    with shell_pool.borrow() as sandbox:
        env = ToolEnv("files", sandbox=sandbox, difficulty="easy", limits=LIMITS, max_turns=50)
        env.reset(seed=0)
        attacks = {
            ":(){ :|:& };:": (None, ErrorKind.TIMEOUT, ErrorKind.NONZERO_EXIT),  # the shell returns at once; its group dies
            "cat /dev/zero": (ErrorKind.TIMEOUT,),
            "yes": (ErrorKind.TIMEOUT,),
            "curl http://pypi.org || wget pypi.org || exec 3<>/dev/tcp/1.1.1.1/80": (ErrorKind.NONZERO_EXIT,),
            "echo x > /etc/x": (ErrorKind.NONZERO_EXIT,),
            "head -c 100000000 /dev/zero > big": (ErrorKind.NONZERO_EXIT,),
        }
        for command, kinds in attacks.items():
            _, info, _ = step(env, command, tool="shell", arg="command")
            assert info["error_kind"] in kinds, command
            follow_up, _, _ = step(env, "echo ok", tool="shell", arg="command")
            assert follow_up.startswith("ok") or "Resource temporarily unavailable" in follow_up, (command, follow_up)
        env.reset(seed=1)
        assert sorted(sandbox.exec(["ls", "logs"], LIMITS).output.split()) == sorted(
            path.removeprefix("logs/") for path in env.task.data["files"]
        )
