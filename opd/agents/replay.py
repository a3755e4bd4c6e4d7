"""Replay a stored episode's actions in a fresh env and report where the observations differ.

A determinism check for a tool suite: the same seed and the same actions must
give the same observations. A difference means the suite depends on something
outside the seed (time, randomness it does not draw from the env, the host).
"""

from __future__ import annotations

import dataclasses

from opd.envs import Sandbox, ToolEnv
from opd.trajectories import Episode

__all__ = ["ReplayReport", "StepDifference", "env_for", "replay_episode"]


@dataclasses.dataclass(frozen=True)
class StepDifference:
    step_index: int
    recorded: str
    replayed: str


@dataclasses.dataclass(frozen=True)
class ReplayReport:
    episode_id: str
    steps_replayed: int
    prompt_matches: bool
    differences: tuple[StepDifference, ...]

    @property
    def identical(self) -> bool:
        return self.prompt_matches and not self.differences


def env_for(episode: Episode, *, sandbox: Sandbox | None = None) -> ToolEnv:
    """A new env like the one ``episode`` ran in, from its recorded options (not yet reset)."""
    options = dict(episode.env_options)
    return ToolEnv(
        episode.suite,
        sandbox=sandbox,
        max_turns=options.get("max_turns"),
        max_action_chars=options.get("max_action_chars", 16_384),
        **options.get("suite_options", {}),
    )


def recorded_prompt(episode: Episode, default: str) -> str:
    """The task prompt the episode began with (its first user message)."""
    return next((m["content"] for m in episode.initial_messages if m.get("role") == "user"), default)


def replay_episode(episode: Episode, *, sandbox: Sandbox | None = None) -> ReplayReport:
    """Re-run ``episode``'s recorded actions in a new env built from its recorded options and seed."""
    env = env_for(episode, sandbox=sandbox)
    try:
        prompt, _ = env.reset(seed=episode.seed)
        recorded = recorded_prompt(episode, prompt)
        differences = []
        for step in episode.steps:
            observation, *_ = env.step(step.action)
            if observation != step.observation:
                differences.append(StepDifference(step.index, step.observation, observation))
    finally:
        env.close()
    return ReplayReport(episode.id, len(episode.steps), prompt == recorded, tuple(differences))
