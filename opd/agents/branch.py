"""Branch from a stored step: restore the env to where an episode stood before step K, and let a policy go on from there.

Restoring replays: a new env is reset with the episode's seed and stepped
with its recorded actions up to step K, and every observation must equal the
recorded one (the same check as ``opd episodes replay``). A suite whose
observations depend on anything outside the seed cannot be restored this way,
and is refused with the step that differed, rather than branching from a
state the episode was never in.

The policy then continues from exactly the recorded tokens: the context is the
episode's own token ids up to step K's prefix (the rendered tool result it
was about to answer), not a re-rendering of the conversation, so the
token-in, token-out invariant holds across the branch point. Each branch is an
ordinary episode linked to its parent (``parent_id``, ``branch_step``): its
steps before K are the parent's, copied as context (policy mask off, so no
loss trains on them and no teacher scores them), its steps from K on are its
own.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import numpy as np
import torch

from opd.agents.annotate import check_tokenizers
from opd.agents.policy import CausalLMPolicy, SamplingConfig
from opd.agents.replay import env_for, recorded_prompt
from opd.agents.rollout import Prefix, collect_episodes
from opd.envs import Sandbox, ToolEnv
from opd.errors import ConfigError
from opd.trajectories import Episode, Step

__all__ = ["NotReplayableError", "branch_episode", "play_from", "restore_env"]


class NotReplayableError(ConfigError):
    """The episode's suite does not give the recorded observations again from the seed and actions."""


def restore_env(episode: Episode, step: int, *, sandbox: Sandbox | None = None) -> tuple[ToolEnv, Prefix]:
    """A new env replayed to just before ``step`` of ``episode``, and the recorded tokens up to there."""
    _check_branch_point(episode, step)
    env = env_for(episode, sandbox=sandbox)
    try:
        prompt, reset_info = env.reset(seed=episode.seed)
        if prompt != recorded_prompt(episode, prompt):
            raise NotReplayableError(
                f"Episode {episode.id} ({episode.suite}) cannot be restored: its seed {episode.seed} now draws another task "
                "than the recorded one, so the suite's task draw depends on more than the seed."
            )
        last_info = reset_info
        for recorded in episode.steps[:step]:
            observation, _, _, _, last_info = env.step(recorded.action)
            if observation != recorded.observation:
                raise NotReplayableError(
                    f"Episode {episode.id} ({episode.suite}) cannot be restored to step {step}: replaying step {recorded.index} "
                    f"gave another observation than the recorded one.\n  recorded: {recorded.observation[:300]!r}\n"
                    f"  replayed: {observation[:300]!r}\nThe suite depends on something outside the seed and the actions "
                    "(time, the host, randomness it does not draw from the env), so its states cannot be restored by replay."
                )
    except BaseException:
        env.close()
        raise
    return env, _prefix(episode, step, reset_info, last_info)


def branch_episode(
    episode: Episode,
    policy: CausalLMPolicy,
    *,
    from_step: int,
    n: int,
    run_id: str,
    sampling: SamplingConfig,
    seed: int = 0,
    sandboxes: Sequence[Sandbox] | None = None,
) -> list[Episode]:
    """``n`` continuations of ``episode`` by ``policy`` from before step ``from_step``, linked to it; not stored.

    Branch ``j`` samples with a generator seeded from ``(seed, j)``. ``sandboxes``: one per branch for a
    suite that needs an isolating sandbox (each branch replays in its own).
    """
    if n < 1:
        raise ConfigError(f"n (branches) must be at least 1, got {n}.")
    seeds = [int(s) for s in np.random.SeedSequence(seed).generate_state(n)]
    return play_from([(episode, from_step)] * n, policy, run_id=run_id, sampling=sampling, seeds=seeds, sandboxes=sandboxes)


def play_from(
    starts: Sequence[tuple[Episode, int]],
    policy: CausalLMPolicy,
    *,
    run_id: str,
    sampling: SamplingConfig,
    seeds: Sequence[int],
    sandboxes: Sequence[Sandbox] | None = None,
) -> list[Episode]:
    """For each (episode, step) of ``starts``, ``policy`` plays on from before that step, all in one batch; not stored.

    Start ``i`` samples with a generator seeded with ``seeds[i]``; ``sandboxes`` (one per start) for suites
    that need isolation. The episodes come back in order, linked to their parents.
    """
    if len(seeds) != len(starts) or (sandboxes is not None and len(sandboxes) != len(starts)):
        raise ConfigError(f"Give one seed (and sandbox, if any) per start: {len(starts)} starts, {len(seeds)} seeds.")
    check_tokenizers(policy, sorted({(e.tokenizer, e.chat_template_hash) for e, _ in starts}))
    restored: list[tuple[ToolEnv, Prefix]] = []
    try:
        for i, (episode, step) in enumerate(starts):
            restored.append(restore_env(episode, step, sandbox=None if sandboxes is None else sandboxes[i]))
        generators = [torch.Generator(policy.device).manual_seed(int(s)) for s in seeds]
        played: dict[int, Episode] = {}
        for options, members in _by_suite_options(starts).items():  # the options are recorded with each episode
            batch = collect_episodes(
                policy, [restored[i][0] for i in members], [starts[i][0].seed for i in members], run_id=run_id, sampling=sampling,
                generator=[generators[i] for i in members], suite_options=json.loads(options), prefixes=[restored[i][1] for i in members],
            )  # fmt: skip
            played.update(zip(members, batch, strict=True))
    finally:
        for env, _ in restored:
            env.close()
    return [dataclasses.replace(played[i], parent_id=parent.id, branch_step=step) for i, (parent, step) in enumerate(starts)]


def _by_suite_options(starts: Sequence[tuple[Episode, int]]) -> dict[str, list[int]]:
    """Start indices grouped by their episode's suite options (as canonical JSON)."""
    groups: dict[str, list[int]] = {}
    for i, (episode, _) in enumerate(starts):
        groups.setdefault(json.dumps(dict(episode.env_options.get("suite_options", {})), sort_keys=True), []).append(i)
    return groups


def _check_branch_point(episode: Episode, step: int) -> None:
    if episode.seed is None:
        raise NotReplayableError(f"Episode {episode.id} has no seed, so its env cannot be restored by replay.")
    if not 0 <= step < len(episode.steps):
        raise ConfigError(f"Episode {episode.id} has steps 0 to {len(episode.steps) - 1}; --from-step must name one of them, got {step}.")
    if not episode.steps[step].num_policy_tokens:
        raise ConfigError(f"Step {step} of episode {episode.id} has no tokens (a text-only episode): there is nothing to go on from.")


def _prefix(episode: Episode, step: int, reset_info: dict, last_info: dict) -> Prefix:
    """The recorded tokens before the policy's turn at ``step``; earlier steps copied as context."""
    target = episode.steps[step]
    pending = target.token_ids[: int(np.argmax(target.policy_mask))]  # the tokens of the step before the policy wrote
    before = tuple(_as_context(s) for s in episode.steps[:step])
    context = np.concatenate([*(s.token_ids for s in before), pending]).astype(np.int32)
    return Prefix(episode.seed or 0, reset_info, last_info, before, tuple(int(t) for t in context), tuple(int(t) for t in pending))


def _as_context(step: Step) -> Step:
    """A parent's step inside a branch: the same tokens, none of them the branch policy's."""
    n = len(step.token_ids)
    return dataclasses.replace(step, policy_mask=np.zeros(n, bool), logprobs=np.full(n, np.nan, np.float32))
