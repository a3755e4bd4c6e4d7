"""Play a suite's scripted expert through an env: demonstrations, smoke tests and the benchmark.

The expert is a policy over *structured* actions; here it is written out as
text in the env's tool-call format, so it goes through exactly the parser and
sandbox a model would.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from opd.envs.suite import Task, Turn
from opd.envs.tool_calls import ParseError
from opd.envs.tool_env import ToolEnv
from opd.errors import ConfigError

__all__ = ["ExpertEpisode", "expert_action", "play_expert"]


@dataclasses.dataclass(frozen=True)
class ExpertEpisode:
    task_id: str
    actions: tuple[str, ...]
    observations: tuple[str, ...]  # observations[0] is the task prompt
    reward: float
    success: bool
    terminated: bool
    truncated: bool
    reset_info: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    step_infos: tuple[dict[str, Any], ...] = dataclasses.field(default=(), repr=False)  # one per action
    rewards: tuple[float, ...] = ()  # one per action


def expert_action(env: ToolEnv, history: list[Turn], rng: np.random.Generator) -> str:
    """The expert's next action for ``env``'s current task, as text in the env's format."""
    if env.suite.expert is None:
        raise ConfigError(f"Suite {env.suite.name!r} has no scripted expert.")
    assert env.task is not None, "reset() the env first"
    return env.call_format.format(env.suite.expert.act(env.task, history, rng))


def record_turn(env: ToolEnv, action: str, observation: str) -> Turn:
    """The Turn an expert sees for ``action``, parsed with the env's format."""
    parsed = env.call_format.parse(action)
    return Turn(None if isinstance(parsed, ParseError) else parsed, observation)


def play_expert(env: ToolEnv, seed: int, *, task: Task | None = None) -> ExpertEpisode:
    """Reset ``env`` with ``seed`` (posing ``task`` if given) and let the suite's expert play one episode.

    ``seed`` seeds both the task draw and the expert's choices among equally right actions.
    """
    observation, info = env.reset(seed=seed, options={"task": task} if task else None)
    rng = np.random.default_rng(seed)
    history: list[Turn] = []
    actions, observations, infos, rewards = [], [observation], [], []
    terminated = truncated = False
    reward, last_info = 0.0, info
    while not (terminated or truncated):
        action = expert_action(env, history, rng)
        observation, reward, terminated, truncated, last_info = env.step(action)
        history.append(record_turn(env, action, observation))
        actions.append(action)
        observations.append(observation)
        infos.append(last_info)
        rewards.append(float(reward))
    verdict: dict[str, Any] = last_info.get("verdict", {})
    return ExpertEpisode(
        task_id=info["task_id"],
        actions=tuple(actions),
        observations=tuple(observations),
        reward=float(reward),
        success=bool(verdict.get("success", False)),
        terminated=terminated,
        truncated=truncated,
        reset_info=info,
        step_infos=tuple(infos),
        rewards=tuple(rewards),
    )
