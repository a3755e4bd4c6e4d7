from __future__ import annotations

import numpy as np
import pytest
import torch

from opd.agents.policy import SamplingConfig
from opd.agents.preflight import preflight
from opd.agents.rollout import collect_episodes, expert_demonstration
from opd.agents.teacher import WhiteBoxTeacher
from opd.envs import ToolEnv


@pytest.fixture(scope="module")
def episodes(policy):
    """Multi-step expert demonstrations and the random policy's own (mostly one-step) rollouts."""
    demonstrations = [expert_demonstration(policy.chat, ToolEnv(s, difficulty="easy"), 0, run_id="r") for s in ("calculator", "inventory")]
    envs = [ToolEnv("inventory", difficulty="easy", max_turns=3) for _ in range(3)]
    rollouts = collect_episodes(
        policy, envs, [0, 1, 2], run_id="r", sampling=SamplingConfig(max_new_tokens=12), generator=torch.Generator().manual_seed(0)
    )
    return demonstrations + rollouts


@pytest.fixture(scope="module")
def teacher(tiny_model_dir) -> WhiteBoxTeacher:
    return WhiteBoxTeacher.from_pretrained(str(tiny_model_dir), k=16)


@torch.no_grad()
def step_by_step_logprobs(teacher: WhiteBoxTeacher, episode) -> list[torch.Tensor]:
    """The naive way: one forward pass per step over the prefix up to that step."""
    out, end = [], 0
    for step in episode.steps:
        end += len(step.token_ids)
        prefix = torch.from_numpy(episode.token_ids[:end].astype(np.int64))[None]
        logprobs = torch.log_softmax(teacher.model(input_ids=prefix).logits.float(), dim=-1)[0]
        positions = end - len(step.token_ids) + np.flatnonzero(step.policy_mask)
        out.append(logprobs[torch.from_numpy(positions) - 1])
    return out


def test_whole_episode_scoring_equals_step_by_step(teacher, episodes) -> None:
    assert any(len(e.steps) > 1 for e in episodes)
    for episode, scored in zip(episodes, teacher.annotate(episodes), strict=True):
        for annotation, naive in zip(scored.token_logprobs, step_by_step_logprobs(teacher, episode), strict=True):
            top_values, top_ids = naive.topk(teacher.k, dim=-1)
            assert np.array_equal(annotation.token_ids, top_ids.numpy())
            np.testing.assert_allclose(annotation.logprobs.astype(np.float32), top_values.numpy(), rtol=1e-3, atol=1e-4)  # float16 storage


def test_tail_mass_completes_the_distribution(teacher, episodes) -> None:
    for annotation in teacher.annotate(episodes[:1])[0].token_logprobs:
        total = np.exp(annotation.logprobs.astype(np.float64)).sum(axis=1) + annotation.tail_mass
        np.testing.assert_allclose(total, 1.0, atol=1e-2)
        assert (annotation.tail_mass >= 0).all()


def test_same_model_as_teacher_reproduces_the_students_logprobs(teacher, episodes) -> None:
    rollouts = [e for e in episodes if not e.policy_model.startswith("expert:")]
    for episode, logprobs_NV in zip(rollouts, teacher.logprobs(rollouts), strict=True):
        positions = np.flatnonzero(episode.policy_mask)
        sampled = logprobs_NV[torch.from_numpy(positions), torch.from_numpy(episode.token_ids[positions].astype(np.int64))]
        students = np.concatenate([s.logprobs for s in episode.steps])[positions]
        np.testing.assert_allclose(sampled.numpy(), students, atol=1e-4)


def test_packing_episodes_into_one_pass_changes_nothing(teacher, episodes) -> None:
    packed = teacher.logprobs(episodes)
    alone = [teacher.logprobs([e])[0] for e in episodes]
    for a, b in zip(packed, alone, strict=True):
        torch.testing.assert_close(a[1:], b[1:], atol=1e-5, rtol=1e-5)


def test_preflight_same_tokenizer_is_clean(policy) -> None:
    report = preflight(policy.tokenizer, policy.tokenizer)
    assert report.ok and "match" in report.describe()


def test_preflight_reports_mismatches_with_a_bias_estimate(policy, teacher, tiny_tokenizer) -> None:
    texts = ["Compute (3 + 4) * 5 using the calculator tools.", "Restock the blue widget to 40 units."]
    report = preflight(tiny_tokenizer, teacher.tokenizer, teacher_model=teacher.model, texts=texts)
    assert not report.ok
    text = report.describe()
    assert "vocabularies differ" in text and "chat templates differ" in text and "pad_token" in text
    assert report.bias_nats_per_token is not None and np.isfinite(report.bias_nats_per_token)
