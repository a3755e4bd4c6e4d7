"""The scoring contract in process: exact tail mass, candidates, and a scoring teacher equal to the white-box one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from opd.agents.policy import SamplingConfig
from opd.agents.rollout import collect_episodes, expert_demonstration
from opd.agents.scoring import LocalScorer, ScoreRequest
from opd.agents.served_teacher import ScoringTeacher, student_topk
from opd.agents.teacher import WhiteBoxTeacher
from opd.envs import ToolEnv
from opd.errors import ConfigError


@pytest.fixture(scope="module")
def episodes(policy):
    demonstration = expert_demonstration(policy.chat, ToolEnv("calculator", difficulty="easy"), 0, run_id="r")
    envs = [ToolEnv("calculator", difficulty="easy", max_turns=3) for _ in range(2)]
    sampling = SamplingConfig(max_new_tokens=10)
    rollouts = collect_episodes(policy, envs, [0, 1], run_id="r", sampling=sampling, generator=torch.Generator().manual_seed(0))
    return [demonstration, *rollouts]


@torch.no_grad()
def full_logprobs(model, ids: list[int]) -> torch.Tensor:
    """(L-1, V) float64: row t-1 is the distribution of token t, the naive way."""
    return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, :-1].double(), dim=-1)


def test_a_score_holds_the_token_the_top_k_the_exact_tail_and_the_candidates(policy) -> None:
    ids = policy.chat.encode("Compute 3 + 4 with the tools") + [policy.chat.end_of_turn_id]
    candidates = tuple((5, 9, 11) if i % 2 else (7,) for i in range(len(ids) - 2))
    request = ScoreRequest(tuple(ids), 2, 4, candidates)
    result = LocalScorer(policy.model).score([request])[0]
    naive = full_logprobs(policy.model, ids)[1:]  # positions 2..
    expected_top = naive.topk(4, dim=-1)
    assert np.array_equal(result.topk_ids, expected_top.indices.numpy())
    np.testing.assert_allclose(result.topk_logprobs, expected_top.values.numpy(), atol=1e-5)
    np.testing.assert_allclose(result.token_logprobs, naive.gather(1, torch.tensor(ids[2:])[:, None])[:, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(result.tail_mass, 1.0 - expected_top.values.exp().sum(-1).numpy(), atol=1e-6)
    assert result.candidate_logprobs is not None and result.candidate_logprobs.shape == (len(candidates), 3)
    for row, wanted in enumerate(candidates):
        np.testing.assert_allclose(result.candidate_logprobs[row, : len(wanted)], naive[row, list(wanted)].numpy(), atol=1e-5)
        assert np.isneginf(result.candidate_logprobs[row, len(wanted) :]).all()  # ragged rows are padded with -inf


def test_a_bad_request_says_what_was_expected() -> None:
    with pytest.raises(ConfigError, match=r"start must lie in \[1, 3\]"):
        ScoreRequest((1, 2, 3), 0, 4)
    with pytest.raises(ConfigError, match="one list per scored position"):
        ScoreRequest((1, 2, 3), 1, 4, ((1,),))


def test_the_scoring_teacher_equals_the_white_box_teacher(policy, episodes) -> None:
    white_box = WhiteBoxTeacher(policy.model, policy.tokenizer, name="t", k=8)
    scoring = ScoringTeacher(LocalScorer(policy.model), name="t", k=8)
    for a, b in zip(white_box.annotate(episodes), scoring.annotate(episodes), strict=True):
        assert len(a.token_logprobs) == len(b.token_logprobs)
        for x, y in zip(a.token_logprobs, b.token_logprobs, strict=True):
            assert x.step_index == y.step_index and np.array_equal(x.token_ids, y.token_ids)
            np.testing.assert_allclose(x.logprobs.astype(np.float32), y.logprobs.astype(np.float32), atol=1e-3)
            np.testing.assert_allclose(x.tail_mass, y.tail_mass, atol=1e-3)


def test_student_support_stores_the_teachers_logprobs_on_the_students_top_k(policy, tiny_model_dir, episodes) -> None:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    teacher_model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():  # a teacher that differs from the student
        for p in teacher_model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    teacher = ScoringTeacher(LocalScorer(teacher_model), name="t", k=4, support="student", student=policy.model)
    episode = episodes[0]
    annotation = teacher.annotate([episode])[0]
    start = int(np.flatnonzero(episode.policy_mask)[0])
    ids = student_topk(policy.model, episode.token_ids, start, 4)
    naive = full_logprobs(teacher_model, episode.token_ids.tolist())
    offset = 0
    for step, scores in zip(episode.steps, annotation.token_logprobs, strict=True):
        positions = offset + np.flatnonzero(step.policy_mask)
        offset += len(step.token_ids)
        assert np.array_equal(scores.token_ids, ids[positions - start])  # the student's top-k, not the teacher's
        expected = naive[positions - 1].gather(1, torch.from_numpy(scores.token_ids.astype(np.int64)))
        np.testing.assert_allclose(scores.logprobs.astype(np.float64), expected.numpy(), rtol=1e-3)  # float16 storage
        np.testing.assert_allclose(scores.tail_mass, 1.0 - expected.exp().sum(-1).numpy(), atol=1e-4)
        assert not np.array_equal(scores.token_ids, naive[positions - 1].topk(4).indices.numpy())  # the teacher's own top-k differ


def test_student_support_needs_the_student() -> None:
    with pytest.raises(ConfigError, match="student model is needed"):
        ScoringTeacher(LocalScorer(torch.nn.Linear(1, 1)), name="t", support="student")
