"""Gymnasium tool environments: tools, the tool-call protocol, suites, sandboxes.

A leaf of the architecture: it knows nothing of models, losses or the
trajectory store. Importing it registers the built-in suites, both by name
(``make_suite("calculator")``) and as Gymnasium ids (``gymnasium.make("opd/Calculator-v0")``).
"""

from opd.envs import suites  # noqa: E402, F401  (registers the built-in suites)
from opd.envs.batch import StepResult, ToolEnvBatch
from opd.envs.call_formats import CALL_FORMATS, Llama3JsonFormat, call_format_for_template, make_call_format
from opd.envs.chat_template import FALLBACK_CHAT_TEMPLATE, render_prompt
from opd.envs.experts import ExpertEpisode, expert_action, play_expert
from opd.envs.registry import gym_id, make_suite, register_suite, suite_names
from opd.envs.sandbox import ExecLimits, ExecResult, LocalSandbox, Sandbox, ToolStatus
from opd.envs.suite import Expert, JsonlTasks, Task, TaskSource, ToolSuite, Turn, Verdict
from opd.envs.tool_calls import FinalAnswer, HermesFormat, ParseError, ParseErrorKind, ToolCall, ToolCallFormat, ToolCalls
from opd.envs.tool_env import ErrorKind, StepTimings, ToolEnv
from opd.envs.tools import Tool, ToolArgumentError, ToolContext, tool

__all__ = [
    "CALL_FORMATS",
    "Llama3JsonFormat",
    "call_format_for_template",
    "make_call_format",
    "FALLBACK_CHAT_TEMPLATE",
    "ErrorKind",
    "ExecLimits",
    "ExecResult",
    "Expert",
    "ExpertEpisode",
    "FinalAnswer",
    "HermesFormat",
    "JsonlTasks",
    "LocalSandbox",
    "ParseError",
    "ParseErrorKind",
    "Sandbox",
    "StepResult",
    "StepTimings",
    "Task",
    "TaskSource",
    "Tool",
    "ToolArgumentError",
    "ToolCall",
    "ToolCallFormat",
    "ToolCalls",
    "ToolContext",
    "ToolEnv",
    "ToolEnvBatch",
    "ToolStatus",
    "ToolSuite",
    "Turn",
    "Verdict",
    "expert_action",
    "gym_id",
    "make_suite",
    "play_expert",
    "register_suite",
    "render_prompt",
    "suite_names",
    "tool",
]
