"""DockerSandbox on a real engine: exec limits, files, reset, and the error split (model error vs infrastructure)."""

from __future__ import annotations

import time

import pytest
from sandbox_checks import live_processes

from opd.envs import ExecLimits, Task, ToolContext, ToolStatus, tool
from opd.envs.docker import DockerSandbox
from opd.envs.tool_runner import ToolRunner
from opd.errors import SandboxError, ToolError

pytestmark = pytest.mark.docker
FAST = ExecLimits(timeout_s=2.0, max_output_chars=200)


@pytest.fixture
def sandbox(python_pool):
    with python_pool.borrow() as box:
        yield box


def test_it_isolates_and_runs_as_an_unprivileged_user(sandbox: DockerSandbox) -> None:
    assert sandbox.isolated is True
    result = sandbox.exec(["sh", "-c", "id -u; pwd; grep -E 'NoNewPrivs|CapEff' /proc/self/status"], FAST)
    assert result.ok and result.exit_code == 0
    assert result.output.split() == ["1000", "/work", "CapEff:", "0000000000000000", "NoNewPrivs:", "1"]


def test_stdin_nonzero_exit_and_output_cap(sandbox: DockerSandbox) -> None:
    echoed = sandbox.exec(["python3", "-c", "import sys; print(sys.stdin.read()[::-1]); sys.exit(3)"], FAST, stdin="abc")
    assert echoed.status == ToolStatus.NONZERO_EXIT and echoed.exit_code == 3 and echoed.output.startswith("cba")
    loud = sandbox.exec(["python3", "-c", "print('é' * 100_000)"], FAST)
    assert loud.ok and loud.truncated
    assert loud.output.startswith("é" * 200) and "more" in loud.output and len(loud.output) < 400


def test_timeout_kills_the_whole_process_group(sandbox: DockerSandbox) -> None:
    # A child that would create a marker file after the timeout: it must die with its parent.
    code = "import subprocess; subprocess.Popen(['sh', '-c', 'sleep 3; touch late']); import time; time.sleep(60)"
    started = time.perf_counter()
    result = sandbox.exec(["python3", "-c", code], ExecLimits(timeout_s=1.0))
    assert result.status == ToolStatus.TIMEOUT and "timed out after 1 s" in result.output
    assert time.perf_counter() - started < 1.0 + 5
    time.sleep(3.5)
    assert sandbox.exec(["ls"], FAST).output == ""


def test_background_children_die_with_their_exec(sandbox: DockerSandbox) -> None:
    assert sandbox.exec(["sh", "-c", "(sleep 2; touch late) & echo started"], FAST).output == "started\n"
    time.sleep(2.5)
    assert sandbox.exec(["ls"], FAST).output == ""


def test_files_round_trip_and_errors(sandbox: DockerSandbox) -> None:
    sandbox.write_file("dir/sub/note.txt", "héllo\n")
    sandbox.write_file("blob.bin", bytes(range(256)))
    assert sandbox.read_file("dir/sub/note.txt") == "héllo\n".encode()
    assert sandbox.read_file("blob.bin") == bytes(range(256))
    assert sandbox.read_file("blob.bin", max_bytes=10) == bytes(range(10))
    assert sandbox.exec(["cat", "dir/sub/note.txt"], FAST).output == "héllo\n"
    with pytest.raises(ToolError, match="No such file"):
        sandbox.read_file("missing.txt")
    with pytest.raises(ToolError, match="under the working directory"):
        sandbox.write_file("/etc/evil", "x")


def test_reset_leaves_nothing_for_the_next_episode(sandbox: DockerSandbox) -> None:
    setup = "mkdir -p d && touch d/f .hidden /tmp/t /dev/shm/s && chmod 500 d && "
    setup += "setsid sleep 600 > /dev/null 2>&1 < /dev/null & echo ok"
    assert sandbox.exec(["sh", "-c", setup], FAST).ok
    sandbox.reset()
    listing = sandbox.exec(["sh", "-c", "ls -A /work /tmp /dev/shm; ps -eo user= 2>/dev/null || ls /proc"], FAST).output
    assert ".hidden" not in listing and "\nd\n" not in listing and "/tmp/t" not in listing
    processes = live_processes(sandbox, FAST)
    assert processes == ["python3"], processes  # only the supervisor's child itself


def test_a_host_side_tool_runs_its_command_in_the_container_and_keeps_the_exec_status(sandbox: DockerSandbox) -> None:
    @tool(needs="isolation")
    def run(code: str, ctx: ToolContext):
        """Run Python.

        Args:
            code: Source.
        """
        return ctx.sandbox.exec(["python3", "-c", code], ctx.limits)

    ctx = ToolContext(task=Task("t", "p"), state={}, sandbox=sandbox, limits=ExecLimits(timeout_s=1.0))
    runner = ToolRunner()
    assert runner.run(run, {"code": "print(6 * 7)"}, ctx, ctx.limits).output == "42\n"
    slow = runner.run(run, {"code": "import time; time.sleep(10)"}, ctx, ctx.limits)
    assert slow.status == ToolStatus.TIMEOUT and "the command and its children were killed" in slow.output
    assert runner.run(run, {"code": 1}, ctx, ctx.limits).status == ToolStatus.BAD_ARGUMENTS


def test_a_closed_sandbox_refuses_work(python_pool) -> None:
    box = python_pool.acquire()
    box.close()
    try:
        with pytest.raises(SandboxError, match="closed"):
            box.exec(["true"], FAST)
    finally:
        box._closed = False  # reopen: the session pool lends this container to the other tests
        python_pool.release(box)
