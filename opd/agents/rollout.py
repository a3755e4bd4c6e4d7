"""Roll a policy out in many tool envs at once and record every episode token for token.

One turn generates for every running env in one batched call; each env then
steps on its own text action. The tokens of each step (what the policy
conditioned on but did not write, then what it wrote) are appended to the
episode as they happen and stored as they are: token-in, token-out.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from opd.agents.chat_tokens import ChatTokens
from opd.agents.policy import CausalLMPolicy, Generators, SamplingConfig
from opd.agents.recording import env_options, episode_from_expert, sandbox_info, step_record, writer_info
from opd.envs import StepResult, ToolEnv, ToolEnvBatch, play_expert
from opd.errors import ConfigError, SandboxError
from opd.trajectories import Episode, Step

__all__ = ["Prefix", "collect_episodes", "expert_demonstration"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class _Running:
    """One env's episode while it is being played."""

    seed: int
    reset_info: dict[str, Any]
    context: list[int]  # every token so far
    pending: list[int]  # tokens appended since the policy last wrote: the next step's prefix
    steps: list[Step] = dataclasses.field(default_factory=list)
    last_info: dict[str, Any] = dataclasses.field(default_factory=dict)
    failure: str | None = None


@dataclasses.dataclass(frozen=True)
class Prefix:
    """Where a resumed episode stands: its env already replayed to here, and every token so far."""

    seed: int
    reset_info: Mapping[str, Any]  # what the env's reset returned (messages, tools, task id)
    last_info: Mapping[str, Any]  # what its last replayed step returned
    steps: tuple[Step, ...]  # the steps before this point
    context: tuple[int, ...]  # every token so far, ``pending`` included
    pending: tuple[int, ...]  # the tokens appended since the policy last wrote: the next step's prefix


def collect_episodes(
    policy: CausalLMPolicy,
    envs: Sequence[ToolEnv],
    seeds: Sequence[int],
    *,
    run_id: str,
    sampling: SamplingConfig,
    generator: Generators = None,
    suite_options: Mapping[str, Any] | None = None,
    max_context_tokens: int | None = None,
    prefixes: Sequence[Prefix] | None = None,
) -> list[Episode]:
    """Play one episode per env (env ``i`` reset with ``seeds[i]``) and return the records, in env order.

    ``generator``: one for the batch, or one per env; with one per env, episode ``i``
    depends only on its env, its seed and ``generator[i]``, not on the other envs.
    ``prefixes``: one per env, already replayed to it (not reset): the episodes go on from there.
    """
    for env in envs:
        env.adopt_call_format(policy.chat.call_format)  # the format the policy's chat template writes
    batch = ToolEnvBatch(envs)
    limit = max_context_tokens or getattr(policy.model.config, "max_position_embeddings", 1 << 30)
    running = _start(policy, batch, seeds) if prefixes is None else _resume(batch, prefixes)
    while batch.active:
        active = [i for i in batch.active if _fits(running[i], sampling, limit)]
        for i in set(batch.active) - set(active):
            running[i].failure = f"context of {len(running[i].context)} tokens would exceed the model's {limit}"
            batch.abandon(i)
        if not active:
            break
        generations = policy.generate([running[i].context for i in active], sampling, generator=_rows(generator, active))
        actions = {i: policy.chat.action_text(g.token_ids) for i, g in zip(active, generations, strict=True)}
        results = _step_each(batch, actions, running)
        for i, generation in zip(active, generations, strict=True):
            if i not in results:
                continue  # the sandbox failed: the episode ends as failed, the others go on
            state, result = running[i], results[i]
            mask = np.r_[np.zeros(len(state.pending), bool), np.ones(len(generation.token_ids), bool)]
            logprobs = np.r_[np.full(len(state.pending), np.nan, np.float32), np.asarray(generation.logprobs, np.float32)]
            state.steps.append(
                step_record(
                    len(state.steps), actions[i], result.observation, result.reward, result.terminated, result.truncated, result.info,
                    token_ids=np.asarray([*state.pending, *generation.token_ids], np.int32), policy_mask=mask, logprobs=logprobs,
                )
            )  # fmt: skip
            state.last_info = result.info
            state.context.extend(generation.token_ids)
            if not result.done:
                state.pending = policy.chat.observation_ids(generation.token_ids, result.info["messages"], state.reset_info["tools"])
                state.context.extend(state.pending)
    return [_episode(policy, env, state, run_id, suite_options or {}) for env, state in zip(envs, running, strict=True)]


def _start(policy: CausalLMPolicy, batch: ToolEnvBatch, seeds: Sequence[int]) -> list[_Running]:
    running = []
    failures: dict[int, SandboxError] = {}  # envs whose sandbox failed at reset: their episodes fail, the others go on
    for index, ((_, info), seed) in enumerate(zip(batch.reset(seeds, failures=failures), seeds, strict=True)):
        prompt = [] if index in failures else policy.chat.prompt_ids(info["messages"], info["tools"])
        running.append(_Running(seed=seed, reset_info=info, context=list(prompt), pending=list(prompt)))
        if index in failures:
            logger.warning("Episode in env %d failed at reset: %s", index, failures[index])
            running[-1].failure = f"sandbox failure: {failures[index]}"
    return running


def _resume(batch: ToolEnvBatch, prefixes: Sequence[Prefix]) -> list[_Running]:
    if len(prefixes) != len(batch):
        raise ConfigError(f"Expected one prefix per env ({len(batch)}), got {len(prefixes)}.")
    batch.resume()
    return [
        _Running(
            seed=p.seed,
            reset_info=dict(p.reset_info),
            context=list(p.context),
            pending=list(p.pending),
            steps=list(p.steps),
            last_info=dict(p.last_info),
        )
        for p in prefixes
    ]


def _step_each(batch: ToolEnvBatch, actions: dict[int, str], running: list[_Running]) -> dict[int, StepResult]:
    """Step every env; an infrastructure failure ends that env's episode as failed, with the reason."""
    results = {}
    for i, action in actions.items():
        try:
            results.update(batch.step({i: action}))
        except SandboxError as exc:
            logger.warning("Episode in env %d failed: %s", i, exc)
            running[i].failure = f"sandbox failure: {exc}"
            batch.abandon(i)
    return results


def _rows(generator: Generators, rows: list[int]) -> Generators:
    """The generators of the envs still playing, when there is one per env."""
    return [generator[i] for i in rows] if isinstance(generator, Sequence) else generator


def _fits(state: _Running, sampling: SamplingConfig, limit: int) -> bool:
    return len(state.context) + sampling.max_new_tokens <= limit


def _episode(policy: CausalLMPolicy, env: ToolEnv, state: _Running, run_id: str, suite_options: Mapping[str, Any]) -> Episode:
    verdict = state.last_info.get("verdict", {})
    termination = "failed" if state.failure else state.last_info.get("termination", "max_turns")
    return Episode(
        run_id=run_id,
        suite=env.suite.name,
        task_id=state.reset_info["task_id"],
        seed=state.seed,
        steps=tuple(state.steps),
        reward=float(sum(s.reward for s in state.steps)),
        success=bool(verdict.get("success", False)),
        termination=termination,
        failure_reason=state.failure,
        env_options=env_options(env, suite_options),
        initial_messages=tuple(state.reset_info["messages"]),
        policy_model=policy.name,
        tokenizer=recorded_location(policy.tokenizer.name_or_path),
        chat_template_hash=policy.chat_template_hash,
        sandbox=sandbox_info(env),
        writer=writer_info(),
    )


def expert_demonstration(
    chat: ChatTokens, env: ToolEnv, seed: int, *, run_id: str, suite_options: Mapping[str, Any] | None = None
) -> Episode:
    """The suite's scripted expert, recorded with tokens as if a policy with ``chat``'s tokenizer had written its actions.

    The expert's actions are the policy tokens (its log-probs are NaN: it is
    not a model), so the episode can be used as a demonstration for SFT or as
    off-policy data, and a teacher can score it like any rollout.
    """
    env.adopt_call_format(chat.call_format)  # the expert writes its calls as this tokenizer's template does
    played = play_expert(env, seed)
    tools = played.reset_info["tools"]
    pending = chat.prompt_ids(played.reset_info["messages"], tools)
    steps = []
    for index, (action, info) in enumerate(zip(played.actions, played.step_infos, strict=True)):
        generated = [*chat.encode(action), chat.end_of_turn_id]
        last = index == len(played.actions) - 1
        steps.append(
            step_record(
                index, action, played.observations[index + 1], played.rewards[index], last and played.terminated, last and played.truncated,
                info, token_ids=np.asarray([*pending, *generated], np.int32),
                policy_mask=np.r_[np.zeros(len(pending), bool), np.ones(len(generated), bool)],
                logprobs=np.full(len(pending) + len(generated), np.nan, np.float32),
            )
        )  # fmt: skip
        if not last:
            pending = chat.observation_ids(generated, info["messages"], tools)
    return episode_from_expert(
        env,
        played,
        tuple(steps),
        seed=seed,
        run_id=run_id,
        suite_options=suite_options or {},
        tokenizer=recorded_location(chat.tokenizer.name_or_path),
    )


def recorded_location(name: str | Path) -> str:
    """A model or tokenizer as the store records it: a local directory as an absolute path (the viewer may run
    anywhere), a hub name as it is."""
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else str(name)
