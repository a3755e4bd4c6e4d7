"""``ToolEnv``: a Gymnasium environment where each action is model text and each observation is tool output.

The contract is Gymnasium's own: ``reset(seed=...)`` draws a task from the
suite with ``self.np_random`` (same seed, same task); ``step(text)`` parses the
text into tool calls or a final answer, runs the calls in a borrowed
:class:`~opd.envs.sandbox.Sandbox`, and returns the result (or an error the
model can read) as the next observation. ``terminated`` means the model gave a
final answer and the verifier graded it; ``truncated`` means the turn limit was
reached first. In a conversation (a task with several user turns, see
:mod:`opd.envs.conversation`) a final answer to any turn but the last is graded
and answered with the next user message; the turn limit counts every turn.

Model mistakes never raise: they are observations, and ``info["error_counts"]``
counts them by kind. Only infrastructure failures (:class:`~opd.errors.SandboxError`)
and misuse (``step`` after the end) raise.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import Any, ClassVar

import gymnasium as gym

from opd.envs.conversation import Conversation, user_turn_message
from opd.envs.registry import make_suite
from opd.envs.sandbox import ExecLimits, ExecResult, LocalSandbox, Sandbox, ToolStatus
from opd.envs.spaces import UnicodeText
from opd.envs.suite import Task, ToolSuite, Verdict
from opd.envs.tool_calls import FinalAnswer, HermesFormat, ParseError, ToolCall, ToolCallFormat, ToolCalls, decode_action
from opd.envs.tool_runner import ToolRunner
from opd.envs.tools import Tool, ToolContext
from opd.errors import ConfigError, EpisodeStateError, IsolationRequiredError
from opd.terminal import visible

__all__ = ["ErrorKind", "StepTimings", "ToolEnv"]


class ErrorKind:
    """What ``info["error_kind"]`` says went wrong in a step (``None`` when nothing did)."""

    PARSE = "parse_error"  # info["parse_error"] says which ParseErrorKind
    UNKNOWN_TOOL = "unknown_tool"
    BAD_ARGUMENTS = "bad_arguments"
    TOOL_ERROR = "tool_error"
    TIMEOUT = "timeout"
    NONZERO_EXIT = "nonzero_exit"


_STATUS_TO_ERROR = {
    ToolStatus.BAD_ARGUMENTS: ErrorKind.BAD_ARGUMENTS,
    ToolStatus.TOOL_ERROR: ErrorKind.TOOL_ERROR,
    ToolStatus.TIMEOUT: ErrorKind.TIMEOUT,
    ToolStatus.NONZERO_EXIT: ErrorKind.NONZERO_EXIT,
}


@dataclasses.dataclass(frozen=True)
class StepTimings:
    """Wall-clock seconds spent in one step.

    Timings are measurements, not outcomes: they are excluded from equality so
    that determinism checks (Gymnasium's ``check_env``, episode replay) compare
    what happened, not how long it took.
    """

    parse_s: float = dataclasses.field(compare=False)
    tool_s: tuple[float, ...] = dataclasses.field(compare=False)  # one per tool call, in call order
    step_s: float = dataclasses.field(compare=False)


class ToolEnv(gym.Env[str, str]):
    """A multi-turn tool-use episode over one task of a :class:`ToolSuite`."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"]}

    def __init__(
        self,
        suite: ToolSuite | str,
        *,
        sandbox: Sandbox | None = None,
        max_turns: int | None = None,
        call_format: ToolCallFormat | None = None,
        limits: ExecLimits = ExecLimits(),
        max_action_chars: int = 16_384,
        render_mode: str | None = None,
        **suite_options: Any,
    ) -> None:
        self.suite = make_suite(suite, **suite_options) if isinstance(suite, str) else suite
        if suite_options and not isinstance(suite, str):
            raise ConfigError(f"Suite options {sorted(suite_options)} only apply when the suite is given by name.")
        max_turns = self.suite.max_turns if max_turns is None else max_turns
        if max_turns < 1:
            raise ConfigError(f"max_turns must be at least 1, got {max_turns}.")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ConfigError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}.")
        self._owns_sandbox = sandbox is None
        if sandbox is None:
            if self.suite.needs_isolation:
                raise IsolationRequiredError(
                    f"Suite {self.suite.name!r} runs model-written code and needs an isolating sandbox; "
                    "pass sandbox=... from opd.envs.docker (LocalSandbox does not isolate)."
                )
            sandbox = LocalSandbox()
        elif self.suite.needs_isolation and not sandbox.isolated:
            raise IsolationRequiredError(
                f"Suite {self.suite.name!r} runs model-written code but {type(sandbox).__name__} does not isolate; "
                "use a Docker sandbox from opd.envs.docker."
            )
        self.sandbox = sandbox
        self._runner = ToolRunner()
        self.max_turns = max_turns
        self.call_format = call_format or HermesFormat()
        self._call_format_given = call_format is not None
        self.limits = limits
        self.max_action_chars = max_action_chars
        self.render_mode = render_mode
        self.action_space = UnicodeText(max_action_chars)
        # Room for every call's capped output plus the framing and error text around it.
        per_turn = getattr(self.call_format, "max_calls", 1) * (limits.max_output_chars + 200) + 4096
        self.observation_space = UnicodeText(per_turn)
        self._task: Task | None = None
        self._context: ToolContext | None = None
        self._turn = 0
        self._done = True
        self._errors: collections.Counter[str] = collections.Counter()
        self._questions: list[str] = []  # the user's messages so far: the prompt, then each follow-up
        self._answers: list[str] = []  # final answers, one per user turn so far
        self._verdicts: list[Verdict] = []  # the verifier's grade of each
        self._tools: tuple[Tool, ...] = self.suite.tools  # the current task's tools
        self._transcript: list[str] = []

    @property
    def task(self) -> Task | None:
        return self._task

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start an episode. ``options={"task": Task}`` poses that task instead of drawing one."""
        super().reset(seed=seed)
        task = (options or {}).get("task") or self.suite.tasks.sample(self.np_random)
        self._task, self._done = task, True  # named before the sandbox is touched, so a failed reset can say which task it was
        self.sandbox.reset()
        self._context = ToolContext(task=task, state=self.suite.init_state(task), sandbox=self.sandbox, limits=self.limits)
        if self.suite.setup is not None:
            self.suite.setup(task, self.sandbox)
        self._turn = 0
        self._done = False
        self._errors = collections.Counter()
        self._questions = [task.prompt]
        self._answers = []
        self._verdicts = []
        self._transcript = [f"[task {task.id}] {task.prompt}"]
        messages = [
            {"role": "system", "content": self.suite.system_prompt},
            {"role": "user", "content": task.prompt},
        ]
        self._tools = self.suite.tools_for(task)
        info = {"task_id": task.id, "suite": self.suite.name, "turn": 0, "tools": [t.schema for t in self._tools], "messages": messages}
        return task.prompt, info

    def step(self, action: str | bytes) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._done or self._context is None:
            raise EpisodeStateError("The episode has ended (or never started); call reset() before step().")
        started = time.perf_counter()
        self._turn += 1
        info: dict[str, Any] = {"turn": self._turn, "error_kind": None, "tool_calls": [], "tool_results": [], "tool_s": []}
        decoded = decode_action(action, max_chars=self.max_action_chars)
        parsed = decoded if isinstance(decoded, ParseError) else self.call_format.parse(decoded)
        parse_s = time.perf_counter() - started
        reward, terminated = 0.0, False
        if isinstance(parsed, ParseError):
            observation = f"Error: {parsed.message}"
            self._record_error(info, ErrorKind.PARSE)
            info["parse_error"] = parsed.kind
            messages = [{"role": "user", "content": observation}]
        elif isinstance(parsed, FinalAnswer):
            observation, reward, terminated, messages = self._answer(parsed.text, info)
        else:
            observation, messages = self._run_calls(parsed, info)
        truncated = not terminated and self._turn >= self.max_turns
        self._done = terminated or truncated
        if self._done:
            info["termination"] = "final_answer" if terminated else "max_turns"
        observation = observation[: self.observation_space.max_length]
        info["assistant_message"] = _assistant_message(decoded, parsed)
        if "turn_verdict" in info:  # the answer carries its grade into the stored conversation
            info["assistant_message"]["verdict"] = info["turn_verdict"]
        info["messages"] = messages
        info["error_counts"] = dict(self._errors)
        info["timings"] = StepTimings(parse_s, tuple(info.pop("tool_s")), time.perf_counter() - started)
        self._transcript.append(f"[turn {self._turn}] > {decoded if isinstance(decoded, str) else '<undecodable>'}\n{observation}")
        return observation, reward, terminated, truncated, info

    def adopt_call_format(self, call_format: ToolCallFormat) -> None:
        """Use the tool-call format of the model that plays (its chat template's), unless one was given explicitly."""
        if not self._call_format_given:
            self.call_format = call_format

    def render(self) -> str | None:
        # The transcript keeps the text as it was; what reaches the terminal shows control sequences instead of obeying them.
        return visible("\n".join(self._transcript)) if self.render_mode == "ansi" else None

    def close(self) -> None:
        self._runner.close()
        if self.suite.close is not None:
            self.suite.close()
        if self._owns_sandbox:
            self.sandbox.close()
        super().close()

    def _run_calls(self, parsed: ToolCalls, info: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        assert self._context is not None
        outputs, messages = [], []
        for call in parsed.calls:
            result = self._run_call(call)
            if result.status != ToolStatus.OK:
                kind = ErrorKind.UNKNOWN_TOOL if self._tool(call.name) is None else _STATUS_TO_ERROR[result.status]
                self._record_error(info, kind)
            info["tool_calls"].append(call.to_dict())
            info["tool_results"].append(
                {"name": call.name, "output": result.output, "status": result.status, "truncated": result.truncated}
            )
            info["tool_s"].append(result.duration_s)
            outputs.append(result.output)
            messages.append({"role": "tool", "name": call.name, "content": result.output})
        return "\n".join(outputs), messages

    def _run_call(self, call: ToolCall) -> ExecResult:
        assert self._context is not None
        tool = self._tool(call.name)
        if tool is None:
            known = ", ".join(t.name for t in self._tools)
            return ExecResult(f"Error: there is no tool named {call.name!r}. Available tools: {known}.", ToolStatus.TOOL_ERROR)
        return self._runner.run(tool, call.arguments, self._context, self.limits)

    def _tool(self, name: str) -> Tool | None:
        """The tool ``name`` if this task offers it (a task may offer a subset of the suite's tools)."""
        return next((t for t in self._tools if t.name == name), None)

    def _answer(self, answer: str, info: dict[str, Any]) -> tuple[str, float, bool, list[dict[str, Any]]]:
        """Grade the answer to the current user turn; then pose the next turn, or end and grade the whole conversation."""
        assert self._task is not None and self._context is not None
        context = self._context
        verdict = _checked(self.suite.verify(self._task, answer, context), self.suite.name)
        self._answers.append(answer)
        self._verdicts.append(verdict)
        info["turn_verdict"] = {"user_turn": context.user_turn, **_verdict_dict(verdict)}
        conversation = Conversation(tuple(self._questions), tuple(self._answers), tuple(self._verdicts))
        follow_up = self.suite.user.next_message(self._task, conversation, context)
        if follow_up is None:
            whole = _checked(self.suite.verify_conversation(self._task, tuple(self._verdicts), context), self.suite.name)
            info["verdict"] = _verdict_dict(whole)
            return f"Final answer recorded. {whole.reason}".strip(), whole.reward, True, []
        self._context = dataclasses.replace(context, user_turn=context.user_turn + 1)
        message = user_turn_message(follow_up, context.user_turn + 1)
        self._questions.append(message["content"])
        return message["content"], 0.0, False, [message]

    def _record_error(self, info: dict[str, Any], kind: str) -> None:
        self._errors[kind] += 1
        info["error_kind"] = info["error_kind"] or kind


def _checked(verdict: Verdict, suite: str) -> Verdict:
    if not 0.0 <= verdict.reward <= 1.0:
        raise ConfigError(f"Suite {suite!r} verifier returned reward {verdict.reward}; rewards must lie in [0, 1].")
    return verdict


def _verdict_dict(verdict: Verdict) -> dict[str, Any]:
    return {"reward": verdict.reward, "success": verdict.success, "reason": verdict.reason}


def _assistant_message(decoded: str | ParseError, parsed: ToolCalls | FinalAnswer | ParseError) -> dict[str, Any]:
    """The model's turn as a chat message, with structured tool calls when it made some."""
    content = decoded if isinstance(decoded, str) else ""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if isinstance(parsed, ToolCalls):
        message["tool_calls"] = [{"type": "function", "function": call.to_dict()} for call in parsed.calls]
    return message
