"""A simulated user (tau-bench style): any chat model through litellm plays the user of a conversation.

The model is given the user's goal and instructions, sees the conversation from
the user's side (its own earlier messages as ``assistant``, the agent's answers
as ``user``), and writes the next user message, or the stop marker when the goal
is met. Replies are cached by request (the critic's :class:`ResponseCache`), so a
re-run pays nothing and plays the same conversation, and each follow-up carries
its cost ledger (calls, cached calls, tokens, dollars where litellm knows the
price) into the stored step message.

It implements :class:`opd.envs.conversation.User`; a suite uses it as
``ToolSuite(user=SimulatedUser(SimulatedUserConfig(model=...)))``. Keys come from
the environment (``api_key_env`` or the provider's usual variable), never the cache.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from opd.agents.critic import _reply as reply_record  # the same ledger fields as the critic's
from opd.agents.critic import api_credentials, litellm_module, misconfigured_errors, retryable_errors
from opd.agents.response_cache import ResponseCache
from opd.envs import Task, ToolContext
from opd.envs.conversation import Conversation, UserReply
from opd.errors import ConfigError, SandboxError

__all__ = ["SimulatedUser", "SimulatedUserConfig"]

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "You play a user talking to an assistant that uses tools. Your goal:\n{goal}\n\n"
    "Write only your next message to the assistant, in one or two sentences. Reveal what the goal needs step by step, "
    "never all at once. When the goal is fully met, reply with exactly {stop}."
)


@dataclasses.dataclass(frozen=True)
class SimulatedUserConfig:
    model: str  # a litellm model string, e.g. "openai/gpt-4o-mini" or "openai/<name>" with api_base
    api_base: str | None = None  # an OpenAI-compatible server, e.g. "http://127.0.0.1:8000/v1"
    api_key_env: str | None = None  # environment variable holding the key; None: the provider's usual one
    instructions: str = INSTRUCTIONS  # with {goal} and {stop}
    stop: str = "###STOP###"  # the reply that ends the conversation
    max_turns: int = 4  # user turns at most (the first prompt included)
    temperature: float = 0.0
    max_tokens: int = 128
    timeout_s: float = 60.0
    max_retries: int = 4  # on timeouts, rate limits, connection errors and 5xx
    cache: str | None = None  # SQLite file of cached replies; None: no cache

    def __post_init__(self) -> None:
        if self.max_turns < 1 or self.max_retries < 0:
            raise ConfigError(f"max_turns must be at least 1 and max_retries at least 0, got {self.max_turns}, {self.max_retries}.")


class SimulatedUser:
    """Poses follow-ups by asking a model; ``goal(task)`` (default: ``task.data["user_goal"]``) is what the user wants."""

    def __init__(self, config: SimulatedUserConfig, goal: Callable[[Task], str] | None = None) -> None:
        self.config = config
        self.goal = goal or _goal_in_task
        self.cache = ResponseCache(config.cache) if config.cache else None

    def next_message(self, task: Task, conversation: Conversation, ctx: ToolContext) -> UserReply | None:
        if len(conversation.questions) >= self.config.max_turns:
            return None
        request = self._request(task, conversation)
        usage: dict[str, Any] = {"calls": 0, "cached": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
        reply = self._complete(request, usage)
        text = reply["content"].strip()
        return None if not text or self.config.stop in text else UserReply(text, usage)

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()

    def _request(self, task: Task, conversation: Conversation) -> dict[str, Any]:
        c = self.config
        messages = [{"role": "system", "content": c.instructions.format(goal=self.goal(task), stop=c.stop)}]
        for question, answer in zip(conversation.questions, conversation.answers, strict=False):
            messages += [{"role": "assistant", "content": question}, {"role": "user", "content": answer}]  # roles seen from the user
        request: dict[str, Any] = {"model": c.model, "messages": messages, "temperature": c.temperature, "max_tokens": c.max_tokens}
        if c.api_base:
            request["api_base"] = c.api_base
        return request

    def _complete(self, request: dict[str, Any], usage: dict[str, Any]) -> dict[str, Any]:
        if self.cache is not None and (cached := self.cache.get(request)) is not None:
            usage["cached"] += 1
            return cached
        error = ""
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                time.sleep(0.5 * 2 ** (attempt - 1))
            try:
                response = litellm_module().completion(**request, **self._credentials(), timeout=self.config.timeout_s, num_retries=0)
                reply = reply_record(response)
            except misconfigured_errors() as exc:
                raise ConfigError(f"The simulated user's model {self.config.model!r} refused the request: {exc}") from exc
            except (*retryable_errors(), litellm_module().APIError, KeyError, IndexError, TypeError, ValueError) as exc:
                error = f"{type(exc).__name__}: {str(exc)[:200]}"
                logger.debug("Simulated-user request failed (attempt %d): %s", attempt + 1, error)
                continue
            usage.update(
                calls=1, prompt_tokens=reply["prompt_tokens"], completion_tokens=reply["completion_tokens"], cost_usd=reply["cost_usd"]
            )
            if self.cache is not None:
                self.cache.put(request, reply)
            return reply
        # The user could not speak: an infrastructure failure, so the episode fails with the reason (never a silent end).
        raise SandboxError(f"The simulated user {self.config.model!r} gave no reply after {self.config.max_retries + 1} attempts: {error}")

    def _credentials(self) -> dict[str, str]:
        return api_credentials(self.config.model, self.config.api_base, self.config.api_key_env, who="simulated user")


def _goal_in_task(task: Task) -> str:
    goal = task.data.get("user_goal")
    if not goal:
        raise ConfigError(f"Task {task.id!r} has no data['user_goal'] for the simulated user; pass goal=... to SimulatedUser.")
    return str(goal)
