"""Running one tool call: validate the arguments, invoke the tool, enforce the time limit, cap the output.

This is the tool side's job, not the sandbox's: a sandbox only offers what a
container offers (exec, files, reset). A tool that works through
``ctx.sandbox`` (``needs="sandbox"`` or ``"isolation"``) runs in the calling
thread, because the sandbox already enforces the call's limits on everything
it runs; a host function (``needs="nothing"``) runs in a worker thread so that
a timeout can be reported. Python cannot kill a thread, so a timed-out host
tool keeps running in the background until it returns, and its worker is
abandoned.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Mapping
from typing import Any

from opd.envs.sandbox import ExecLimits, ExecResult, ToolStatus, cap_output
from opd.envs.tools import Tool, ToolArgumentError, ToolContext
from opd.errors import ToolError

__all__ = ["ToolRunner", "run_tool_inline"]


class ToolRunner:
    """Runs an env's tool calls one at a time. ``close()`` lets go of the worker thread."""

    def __init__(self) -> None:
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def run(self, tool: Tool, arguments: Mapping[str, Any], context: ToolContext, limits: ExecLimits) -> ExecResult:
        if tool.needs != "nothing":
            return run_tool_inline(tool, arguments, context, limits)
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="opd-tool")
        start = time.perf_counter()
        future = self._executor.submit(run_tool_inline, tool, arguments, context, limits)
        try:
            return future.result(timeout=limits.timeout_s)
        except concurrent.futures.TimeoutError:
            # The worker is stuck in the tool; abandon it so the next call gets a fresh one.
            self.close()
            return ExecResult(
                f"Error: tool {tool.name!r} timed out after {limits.timeout_s:g} s.",
                ToolStatus.TIMEOUT,
                duration_s=time.perf_counter() - start,
            )

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def run_tool_inline(tool: Tool, arguments: Mapping[str, Any], context: ToolContext, limits: ExecLimits) -> ExecResult:
    """Invoke a tool in the calling thread and turn its result or ToolError into an ExecResult."""
    start = time.perf_counter()
    exit_code, was_truncated = None, False
    try:
        value = tool(arguments, context)
        status = ToolStatus.OK
        if isinstance(value, ExecResult):  # a tool that ran a command reports its status (timeout, exit code) as is
            status, text, exit_code, was_truncated = value.status, value.output, value.exit_code, value.truncated
        else:
            text = value if isinstance(value, str) else _render_value(value)
    except ToolArgumentError as exc:
        status, text = ToolStatus.BAD_ARGUMENTS, f"Error: {exc}"
    except ToolError as exc:
        status, text = ToolStatus.TOOL_ERROR, f"Error: {exc}"
    text, truncated = cap_output(text, limits.max_output_chars)
    return ExecResult(text, status, exit_code=exit_code, truncated=truncated or was_truncated, duration_s=time.perf_counter() - start)


def _render_value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)
