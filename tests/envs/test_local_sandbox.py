from __future__ import annotations

import os
import sys
import time

import pytest

from opd.envs import ExecLimits, ExecResult, LocalSandbox, Task, ToolContext, ToolStatus, tool
from opd.envs.tool_runner import ToolRunner
from opd.errors import ToolError

FAST = ExecLimits(timeout_s=1.0, max_output_chars=100)


@tool
def slow(seconds: float) -> str:
    """Sleep, then answer.

    Args:
        seconds: How long to sleep.
    """
    time.sleep(seconds)
    return "woke"


@tool
def loud(n: int) -> str:
    """Print n characters.

    Args:
        n: How many.
    """
    if n < 0:
        raise ToolError("n must not be negative")
    return "x" * n


@pytest.fixture
def sandbox():
    with LocalSandbox() as box:
        yield box


@pytest.fixture
def runner():
    runner = ToolRunner()
    yield runner
    runner.close()


def context(box: LocalSandbox) -> ToolContext:
    return ToolContext(task=Task("t", "p"), state={}, sandbox=box)


def test_local_sandbox_says_it_does_not_isolate(sandbox: LocalSandbox) -> None:
    assert sandbox.isolated is False
    assert "does not isolate" in LocalSandbox.__doc__


def test_tool_call_ok_error_and_output_cap(sandbox: LocalSandbox, runner: ToolRunner) -> None:
    assert runner.run(loud, {"n": 3}, context(sandbox), FAST).output == "xxx"
    error = runner.run(loud, {"n": -1}, context(sandbox), FAST)
    assert error.status == ToolStatus.TOOL_ERROR and "must not be negative" in error.output
    bad = runner.run(loud, {"n": "3"}, context(sandbox), FAST)
    assert bad.status == ToolStatus.BAD_ARGUMENTS
    capped = runner.run(loud, {"n": 1000}, context(sandbox), FAST)
    assert capped.truncated and capped.output.startswith("x" * 100) and "900 more characters" in capped.output


def test_a_host_tool_timeout_is_reported_and_the_runner_stays_usable(sandbox: LocalSandbox, runner: ToolRunner) -> None:
    result = runner.run(slow, {"seconds": 3.0}, context(sandbox), ExecLimits(timeout_s=0.2))
    assert result.status == ToolStatus.TIMEOUT and "timed out" in result.output
    assert runner.run(slow, {"seconds": 0.0}, context(sandbox), FAST).output == "woke"


def test_exec_runs_in_the_workdir_and_reset_wipes_it(sandbox: LocalSandbox) -> None:
    code = "open('note.txt', 'w').write('hi'); import os; print(sorted(os.listdir('.')))"
    result = sandbox.exec([sys.executable, "-c", code], FAST)
    assert result.ok and result.exit_code == 0 and "note.txt" in result.output
    sandbox.reset()
    assert list(sandbox.workdir.iterdir()) == []


def test_reset_keeps_an_empty_workdir_and_restores_one_a_command_removed_or_locked(sandbox: LocalSandbox) -> None:
    before = sandbox.workdir.stat().st_ino
    sandbox.reset()  # already empty: left as it is (no rmtree and mkdir per episode)
    assert sandbox.workdir.stat().st_ino == before
    sandbox.exec([sys.executable, "-c", "import os; os.rmdir(os.getcwd())"], FAST)
    sandbox.reset()
    assert sandbox.workdir.is_dir() and list(sandbox.workdir.iterdir()) == []
    sandbox.workdir.chmod(0o000)  # empty but not enterable: not what mkdir made, so it is made again
    sandbox.reset()
    assert sandbox.workdir.stat().st_mode & 0o700 == 0o700 and list(sandbox.workdir.iterdir()) == []


def test_exec_nonzero_exit_and_stdin(sandbox: LocalSandbox) -> None:
    result = sandbox.exec([sys.executable, "-c", "import sys; print(sys.stdin.read()[::-1]); sys.exit(3)"], FAST, stdin="abc")
    assert result.status == ToolStatus.NONZERO_EXIT and result.exit_code == 3 and "cba" in result.output


def test_exec_timeout_kills_the_whole_process_group(sandbox: LocalSandbox, tmp_path) -> None:
    marker = tmp_path / "child-alive"
    child = tmp_path / "child.py"
    child.write_text(f"import time; time.sleep(1.5); open({str(marker)!r}, 'w')")
    # The child outlives its parent unless the whole process group is killed.
    code = f"import subprocess, sys, time; subprocess.Popen([sys.executable, {str(child)!r}]); time.sleep(30)"
    started = time.perf_counter()
    result = sandbox.exec([sys.executable, "-c", code], ExecLimits(timeout_s=0.5))
    assert result.status == ToolStatus.TIMEOUT and "timed out" in result.output
    assert time.perf_counter() - started < 10
    time.sleep(2.0)
    assert not marker.exists()


def test_close_removes_the_workdir() -> None:
    box = LocalSandbox()
    workdir = box.workdir
    box.write_file("note.txt", "x")
    box.close()
    assert not workdir.exists()


def test_files_round_trip_and_errors(sandbox: LocalSandbox) -> None:
    sandbox.write_file("sub/dir/note.txt", "héllo")
    assert sandbox.read_file("sub/dir/note.txt") == "héllo".encode()
    assert sandbox.read_file("sub/dir/note.txt", max_bytes=2) == b"h\xc3"
    with pytest.raises(ToolError, match="cannot read 'missing.txt'"):
        sandbox.read_file("missing.txt")
    with pytest.raises(ToolError, match="cannot write"):
        sandbox.write_file("sub", "a directory is in the way")


def test_a_tool_that_ran_a_command_keeps_its_status(sandbox: LocalSandbox, runner: ToolRunner) -> None:
    @tool(needs="sandbox")
    def run(code: str, ctx: ToolContext) -> ExecResult:
        """Run Python.

        Args:
            code: Source.
        """
        return ctx.sandbox.exec([sys.executable, "-c", code], ctx.limits)

    ctx = ToolContext(task=Task("t", "p"), state={}, sandbox=sandbox, limits=ExecLimits(timeout_s=0.5))
    assert runner.run(run, {"code": "print(7)"}, ctx, FAST).output == "7\n"
    failed = runner.run(run, {"code": "import sys; sys.exit(4)"}, ctx, FAST)
    assert failed.status == ToolStatus.NONZERO_EXIT and failed.exit_code == 4
    slow = runner.run(run, {"code": "import time; time.sleep(5)"}, ctx, FAST)
    assert slow.status == ToolStatus.TIMEOUT


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "sub/../../x", "", "."])
def test_paths_outside_the_work_dir_are_refused(sandbox: LocalSandbox, path: str) -> None:
    with pytest.raises(ToolError, match="under the working directory"):
        sandbox.read_file(path)
    with pytest.raises(ToolError, match="under the working directory"):
        sandbox.write_file(path, "x")


def test_a_fifo_is_refused_at_once(sandbox: LocalSandbox) -> None:
    os.mkfifo(sandbox.workdir / "pipe")
    started = time.perf_counter()
    with pytest.raises(ToolError, match="regular file"):
        sandbox.read_file("pipe")
    with pytest.raises(ToolError, match="regular file"):
        sandbox.write_file("pipe", "x")
    assert time.perf_counter() - started < 1.0
