"""Conversations: a task of several user turns, the next one posed after the agent answers the last.

A real tool-use task is a conversation: the user asks, the agent calls tools and
answers, the user follows up ("now move the file you found into backups/"), and
the tools' state carries over. In :class:`~opd.envs.ToolEnv` a final answer to
any turn but the last is graded by the suite's verifier (with ``ctx.user_turn``
saying which turn) and the next user message becomes the observation; only the
answer to the last turn ends the episode, graded as a whole.

The next user message comes from a :class:`User`:

- :class:`ScriptedUser` (the default): the task's own ``follow_ups``;
- :class:`StateUser`: a function of the task, the episode's state and the
  verdicts so far (e.g. "the order went through; now ..." or a correction);
- :class:`opd.agents.simulated_user.SimulatedUser`: any chat model through
  litellm, given the user's goal, its replies cached and costed like the critic's.

For the policy a follow-up is one more observation, rendered by the chat
template as a ``user`` message: its tokens are context, never policy tokens,
so no loss ever trains on them (the token-in, token-out record keeps the mask).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from opd.envs.suite import Task, Verdict
    from opd.envs.tools import ToolContext

__all__ = [
    "Conversation",
    "ConversationVerifier",
    "ScriptedUser",
    "StateUser",
    "User",
    "UserReply",
    "mean_of_turns",
    "user_turn_message",
]

USER_TURN_KEY = "user_turn"  # marks a follow-up user message (in info["messages"] and stored step messages)


@dataclasses.dataclass(frozen=True)
class Conversation:
    """The conversation so far, as a user sees it: what was asked, what the agent answered, how each answer was graded."""

    questions: tuple[str, ...]  # the user's messages: the task's prompt, then each follow-up
    answers: tuple[str, ...]  # the agent's final answers, one per question so far
    verdicts: tuple[Verdict, ...]  # the verifier's grade of each answer


@dataclasses.dataclass(frozen=True)
class UserReply:
    """A follow-up with what it cost to produce (a simulated user's model call), kept with the stored message."""

    text: str
    usage: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # calls, cached, prompt/completion tokens, cost_usd


@runtime_checkable
class User(Protocol):
    """Poses the next user message of a conversation, or None when the user is done (the episode ends)."""

    def next_message(self, task: Task, conversation: Conversation, ctx: ToolContext) -> str | UserReply | None: ...


class ScriptedUser:
    """The follow-ups written in the task: ``task.follow_ups[k - 1]`` after the agent's k-th answer."""

    def next_message(self, task: Task, conversation: Conversation, ctx: ToolContext) -> str | None:
        turn = len(conversation.answers) - 1
        return task.follow_ups[turn] if turn < len(task.follow_ups) else None


@dataclasses.dataclass(frozen=True)
class StateUser:
    """A follow-up computed from the episode: ``fn(task, ctx, verdicts) -> message or None``.

    ``ctx.state`` holds what the tools did so far and ``ctx.user_turn`` the turn
    just answered, so the user can react to the outcome ("the order for 5 units
    went through, now cancel it") or correct a wrong answer.
    """

    fn: Callable[[Task, ToolContext, Sequence[Verdict]], str | None]
    max_turns: int = 8  # user turns at most, whatever fn says: a conversation always ends

    def next_message(self, task: Task, conversation: Conversation, ctx: ToolContext) -> str | None:
        return None if len(conversation.answers) >= self.max_turns else self.fn(task, ctx, conversation.verdicts)


ConversationVerifier = Callable[["Task", Sequence["Verdict"], "ToolContext"], "Verdict"]


def mean_of_turns(task: Task, verdicts: Sequence[Verdict], ctx: ToolContext) -> Verdict:
    """The whole conversation's default grade: the mean turn reward; a success when every turn succeeded."""
    from opd.envs.suite import Verdict

    if len(verdicts) == 1:
        return verdicts[0]
    reasons = " ".join(f"Turn {k + 1}: {v.reason or ('ok.' if v.success else 'failed.')}" for k, v in enumerate(verdicts))
    return Verdict(sum(v.reward for v in verdicts) / len(verdicts), all(v.success for v in verdicts), reasons)


def user_turn_message(reply: str | UserReply, turn: int) -> dict[str, Any]:
    """The chat message of follow-up ``turn`` (1 = the second user turn); chat templates ignore the extra keys."""
    if isinstance(reply, UserReply):
        return {"role": "user", "content": reply.text, USER_TURN_KEY: turn, "usage": dict(reply.usage)}
    return {"role": "user", "content": reply, USER_TURN_KEY: turn}
