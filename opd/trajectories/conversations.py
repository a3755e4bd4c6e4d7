"""Reading a conversation's user turns back from stored steps.

A follow-up user message is stored as the env message of the step whose final
answer it followed (``{"role": "user", "content": ..., "user_turn": k}``, see
``opd.envs.conversation``), and each final answer's assistant message carries
the verifier's grade of that turn (``"verdict"``). No schema change: both ride
in the step's messages, which the store keeps as JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opd.trajectories.records import Episode, Step

__all__ = ["follow_up", "follow_up_usage", "turn_verdict", "user_turn_count"]

_USER_TURN = "user_turn"  # the key opd.envs.conversation writes (envs and trajectories do not import each other)


def follow_up(step: Step) -> tuple[int, str] | None:
    """``(turn, message)`` when the env answered this step with the next user turn (turn 1 = the second user message)."""
    message = _follow_up_message(step)
    return None if message is None else (int(message[_USER_TURN]), str(message.get("content", "")))


def follow_up_usage(step: Step) -> Mapping[str, Any] | None:
    """What producing the follow-up cost, when a simulated user (a model) wrote it."""
    message = _follow_up_message(step)
    return None if message is None else message.get("usage")


def _follow_up_message(step: Step) -> Mapping[str, Any] | None:
    return next((m for m in step.messages[1:] if m.get("role") == "user" and _USER_TURN in m), None)


def turn_verdict(step: Step) -> Mapping[str, Any] | None:
    """The verifier's grade of the user turn this step's final answer closed, if it closed one."""
    return step.messages[0].get("verdict") if step.messages else None


def user_turn_count(episode: Episode) -> int:
    """User turns posed in the episode: the first prompt plus every follow-up."""
    return 1 + sum(follow_up(step) is not None for step in episode.steps)
