"""The options for distilling from a deterministic expert: the expert itself, per-step weights, teacher-prefix mixing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from train_configs import tiny_train_config

from opd.distill.batch import EpisodeBatch
from opd.distill.config import TrainConfig
from opd.distill.losses import LossConfig, compute_loss
from opd.distill.prefix import TeacherPrefixConfig, prefix_steps
from opd.distill.step_weights import StepWeights, step_weights_BT
from opd.distill.topk import TopKLogprobs
from opd.distill.train import train
from opd.envs import make_suite
from opd.errors import ConfigError
from opd.trajectories import EpisodeFilter, TrajectoryStore


def expert_actions(expert: str, rng_seed: int) -> list[str]:
    suite = make_suite("calculator", difficulty="hard", expert=expert)
    task = suite.tasks.sample(np.random.default_rng(7))
    action = suite.expert.act(task, (), np.random.default_rng(rng_seed))
    return [json.dumps(action.calls[0].arguments) + action.calls[0].name]


def test_the_deterministic_expert_has_one_action_per_state() -> None:
    assert len({tuple(expert_actions("deterministic", seed)) for seed in range(20)}) == 1
    assert len({tuple(expert_actions("random", seed)) for seed in range(20)}) > 1
    with pytest.raises(ConfigError, match="expert must be"):
        make_suite("calculator", expert="clever")


def two_step_batch(student_logprobs: list[float], teacher_logprobs: list[float]) -> EpisodeBatch:
    """One episode of two steps with three policy tokens each; the teacher's top-2 holds each sampled token."""
    T = 6
    targets = torch.arange(T)[None] + 2
    teacher_sampled = torch.tensor([teacher_logprobs])
    token_ids = torch.stack([targets, torch.full_like(targets, 1)], dim=-1)
    logprobs = torch.stack([teacher_sampled, torch.log1p(-teacher_sampled.exp() + 1e-6) - 1.0], dim=-1)
    return EpisodeBatch(
        input_ids_BT=targets - 1,
        attention_BT=torch.ones(1, T, dtype=torch.long),
        targets_BT=targets,
        policy_BT=torch.ones(1, T, dtype=torch.bool),
        step_BT=torch.tensor([[0, 0, 0, 1, 1, 1]]),
        sampled_logprobs_BT=torch.tensor([student_logprobs]),
        teacher=TopKLogprobs(token_ids, logprobs, (1 - logprobs.exp().sum(-1)).clamp_min(0)),
        teacher_sampled_BT=teacher_sampled,
        rewards_B=torch.zeros(1),
        steps_B=torch.tensor([2]),
        step_rewards_BS=torch.zeros(1, 2),
    )


def test_position_weights_grow_by_the_decay_and_average_one() -> None:
    batch = two_step_batch([-0.5] * 6, [-0.5] * 6)
    weights = step_weights_BT(batch, StepWeights(by="position", position_decay=3.0))
    assert torch.allclose(weights, torch.tensor([[0.5, 0.5, 0.5, 1.5, 1.5, 1.5]]))


def test_divergence_weights_follow_where_the_student_disagrees() -> None:
    agree, other = [-0.5, -0.5, -0.5], [-0.1, -0.1, -0.1]
    batch = two_step_batch(agree + agree, agree + [-3.0, -3.0, -3.0])  # step 1: the teacher dislikes the student's tokens
    weights = step_weights_BT(batch, StepWeights(by="divergence"))
    assert weights[0, 0] == 0.0 and torch.allclose(weights[0, 3:], torch.tensor(2.0))
    assert torch.equal(step_weights_BT(two_step_batch(other * 2, other * 2), StepWeights(by="divergence")), torch.ones(1, 6))


def test_step_weights_change_the_token_loss() -> None:
    batch = two_step_batch([-0.5] * 6, [-0.5] * 3 + [-3.0] * 3)
    logits = torch.randn(1, 6, 10, generator=torch.Generator().manual_seed(0))
    plain = compute_loss(logits, batch, LossConfig()).loss
    weighted = compute_loss(logits, batch, LossConfig(step_weights=StepWeights(by="divergence"))).loss
    assert not torch.isclose(plain, weighted)


def test_bad_step_weights_and_prefix_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="step_weights.by"):
        StepWeights(by="entropy")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="weigh the token term"):
        LossConfig(kind="step", step_weights=StepWeights(by="position"))
    with pytest.raises(ConfigError, match="teacher_prefix"):
        TeacherPrefixConfig(max_steps=0)
    with pytest.raises(ConfigError, match="teacher_prefix"):
        TrainConfig(student="s", loss=LossConfig(kind="sft"), teacher_prefix=TeacherPrefixConfig())


def test_prefix_lengths_are_drawn_per_update_within_the_bounds() -> None:
    config = TeacherPrefixConfig(max_steps=2, fraction=0.5)
    drawn = [prefix_steps(config, np.random.default_rng([0, u])) for u in range(200)]
    assert set(drawn) == {0, 1, 2} and 0.55 < drawn.count(0) / len(drawn) < 0.8  # half the updates, plus m = 0 draws
    assert prefix_steps(None, np.random.default_rng(0)) == 0


@pytest.mark.slow
def test_a_run_with_a_teacher_prefix_and_step_weights(models, tmp_path: Path) -> None:
    config = tiny_train_config(
        models, tmp_path, updates=3, eval_episodes=4,
        teacher_prefix=TeacherPrefixConfig(max_steps=1, fraction=1.0), loss=LossConfig(step_weights=StepWeights(by="divergence")),
    )  # fmt: skip
    result = train(config)
    lines = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    handed = {line["update"]: line["teacher_prefix_steps"] for line in lines}
    assert set(handed.values()) <= {0, 1} and all(np.isfinite(line["loss"]) or line["skipped"] for line in lines)
    with TrajectoryStore(tmp_path / "store.db") as store:
        episodes = [e for batch in store.iter_episodes(EpisodeFilter(run_id=result.run_id)) for e in batch]
    student_tokens = sum(int(e.policy_mask.sum()) for e in episodes)
    for episode in episodes:  # the stored episodes hold a handed-over first step as context, unannotated
        first = episode.steps[0]
        assert (first.num_policy_tokens == 0) == (handed[_update_of(episode, config)] == 1)
        assert {a.step_index for a in episode.annotations.token_logprobs} == {s.index for s in episode.steps if s.num_policy_tokens}
    if 1 in handed.values():  # the tokens the teacher wrote in its steps count as teacher-labelled, beside the student's
        assert result.labelled_tokens > student_tokens
    else:
        assert result.labelled_tokens == student_tokens


def _update_of(episode, config: TrainConfig) -> int:
    """The update (1-based, as in metrics) that played an episode: training seeds are update * episodes_per_update + i."""
    return episode.seed // config.episodes_per_update + 1


@pytest.mark.slow
def test_gkd_mixing_scores_the_teachers_own_episodes_for_a_token_loss(models, tmp_path: Path) -> None:
    """offpolicy_fraction with a token loss: the teacher plays, scores what it played, and the student learns from it."""
    config = tiny_train_config(models, tmp_path, updates=2, offpolicy_fraction=1.0, loss=LossConfig(kind="token", divergence="reverse_kl"))
    result = train(config)
    lines = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [line["offpolicy"] for line in lines] == [1.0, 1.0] and all(np.isfinite(line["loss"]) for line in lines)
    with TrajectoryStore(tmp_path / "store.db") as store:
        episodes = [e for batch in store.iter_episodes(EpisodeFilter(run_id=result.run_id)) for e in batch]
    assert episodes and all(e.annotations.token_logprobs for e in episodes if e.policy_mask.sum())
    assert result.labelled_tokens == sum(int(e.policy_mask.sum()) for e in episodes)  # each teacher token counted once
