"""Turning what a ToolEnv reported into trajectory records.

The env speaks Gymnasium (observation, reward, info); the store keeps
:class:`~opd.trajectories.Episode` records. This module is the one place that
maps one to the other, for scripted experts now and for model policies, which
add their token ids, masks and log-probs, later.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

import numpy as np

from opd.envs import ToolEnv
from opd.envs.experts import ExpertEpisode, play_expert
from opd.trajectories import Episode, Step

__all__ = ["env_options", "episode_from_expert", "expert_episode", "sandbox_info", "step_record", "writer_info"]


def env_options(env: ToolEnv, suite_options: Mapping[str, Any]) -> dict[str, Any]:
    """What replay needs to rebuild an equivalent env."""
    return {"suite_options": dict(suite_options), "max_turns": env.max_turns, "max_action_chars": env.max_action_chars}


def writer_info() -> dict[str, Any]:
    """Which process wrote an episode (host, pid, and the torch.distributed rank where set)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "rank": int(os.environ.get("RANK", "0"))}


def step_record(
    index: int,
    action: str,
    observation: str,
    reward: float,
    terminated: bool,
    truncated: bool,
    info: Mapping[str, Any],
    *,
    token_ids: np.ndarray | None = None,
    policy_mask: np.ndarray | None = None,
    logprobs: np.ndarray | None = None,
) -> Step:
    """One env step as a Step record; a text-only policy (a scripted expert) has no tokens."""
    timings = info.get("timings")
    return Step(
        index=index,
        action=action,
        observation=observation,
        token_ids=np.zeros(0, np.int32) if token_ids is None else token_ids,
        policy_mask=np.zeros(0, bool) if policy_mask is None else policy_mask,
        logprobs=np.zeros(0, np.float32) if logprobs is None else logprobs,
        messages=(info["assistant_message"], *info.get("messages", ())),
        tool_calls=tuple(info.get("tool_calls", ())),
        tool_results=tuple(info.get("tool_results", ())),
        error_kind=info.get("error_kind"),
        reward=float(reward),
        terminated=terminated,
        truncated=truncated,
        timings={"parse_s": timings.parse_s, "step_s": timings.step_s} if timings else {},
    )


def expert_episode(env: ToolEnv, seed: int, *, run_id: str, suite_options: Mapping[str, Any] | None = None) -> Episode:
    """Play the suite's scripted expert and record the episode (text only, no tokens)."""
    played: ExpertEpisode = play_expert(env, seed)
    last = len(played.actions) - 1
    steps = tuple(
        step_record(
            i,
            action,
            played.observations[i + 1],
            played.rewards[i],
            i == last and played.terminated,
            i == last and played.truncated,
            played.step_infos[i],
        )
        for i, action in enumerate(played.actions)
    )
    return episode_from_expert(env, played, steps, seed=seed, run_id=run_id, suite_options=suite_options or {})


def episode_from_expert(
    env: ToolEnv,
    played: ExpertEpisode,
    steps: tuple[Step, ...],
    *,
    seed: int,
    run_id: str,
    suite_options: Mapping[str, Any],
    tokenizer: str = "",
) -> Episode:
    """The Episode record of a scripted-expert episode, given its recorded steps (with or without tokens)."""
    return Episode(
        run_id=run_id,
        suite=env.suite.name,
        task_id=played.task_id,
        seed=seed,
        steps=steps,
        reward=played.reward,
        success=played.success,
        termination=played.step_infos[-1].get("termination", "max_turns"),
        env_options=env_options(env, suite_options),
        initial_messages=tuple(played.reset_info["messages"]),
        policy_model=f"expert:{env.suite.name}",
        tokenizer=tokenizer,
        sandbox=sandbox_info(env),
        writer=writer_info(),
    )


def sandbox_info(env: ToolEnv) -> dict[str, Any]:
    """The sandbox settings an episode ran under, as the store keeps them."""
    describe = getattr(env.sandbox, "describe", None)  # a backend may say more: which container, which engine
    limits = {"timeout_s": env.limits.timeout_s, "max_output_chars": env.limits.max_output_chars}
    return {"backend": type(env.sandbox).__name__, "isolated": env.sandbox.isolated, "limits": limits, **(describe() if describe else {})}
