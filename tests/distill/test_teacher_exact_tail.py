"""A teacher annotation stored at k >= V is the whole distribution: its tail is exactly 0 and the forward KL is exact.

The tail used to be ``1 - sum(exp(top-k))`` from float32 log-probs: at k = V rounding
left it positive while the student's tail is exactly 0, and forward KL came out +inf
(on 6 of 10 positions of a random V = 37 case).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from trajectory_factories import make_episode

from opd.agents.teacher import WhiteBoxTeacher
from opd.agents.tiny import build_tiny_model, build_word_tokenizer
from opd.distill import get_divergence, token_divergence
from opd.distill.batch import make_batch
from opd.trajectories import Annotations, Run

VOCAB = 37


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A teacher and a student over one 37-token word-level vocabulary (18 numbers, 5 role words, a space, 13 specials)."""
    directory = tmp_path_factory.mktemp("v37")
    tokenizer = build_word_tokenizer([], directory, numbers=range(18))
    assert len(tokenizer) == VOCAB
    teacher = build_tiny_model(tokenizer, directory / "teacher", layers=1, hidden=16, heads=2, seed=1)
    student = build_tiny_model(tokenizer, directory / "student", layers=1, hidden=16, heads=2, seed=2)
    return tokenizer, teacher, student


@pytest.fixture(scope="module")
def episode():
    """Two steps of 12 prompt + 5 policy tokens, ids within the vocabulary: 10 policy positions."""
    rng = np.random.default_rng(0)
    base = make_episode(rng, Run(), steps=2, policy_tokens=5, annotated=False)
    steps = tuple(dataclasses.replace(s, token_ids=rng.integers(0, VOCAB, len(s.token_ids)).astype(np.int32)) for s in base.steps)
    return dataclasses.replace(base, steps=steps)


@pytest.mark.parametrize("k", [VOCAB, 100])
def test_annotation_at_k_at_least_v_gives_the_exact_forward_kl(models, episode, k) -> None:
    tokenizer, teacher_model, student_model = models
    teacher = WhiteBoxTeacher(teacher_model, tokenizer, name="t", k=k)
    annotated = dataclasses.replace(episode, annotations=teacher.annotate([episode])[0])
    for annotation in annotated.annotations.token_logprobs:
        assert annotation.k == VOCAB and (annotation.tail_mass == 0).all()
    batch = make_batch([annotated], teacher="t")
    with torch.no_grad():
        student_BTV = student_model(input_ids=batch.input_ids_BT).logits.double()
        teacher_BTV = teacher_model(input_ids=batch.input_ids_BT).logits.double()
    forward_kl = get_divergence("forward_kl")
    stored = token_divergence(student_BTV, batch.teacher, forward_kl, mask_BT=batch.policy_BT)
    exact = token_divergence(student_BTV, teacher_BTV, forward_kl, mask_BT=batch.policy_BT)
    assert int(batch.policy_BT.sum()) == 10 and torch.isfinite(stored).all()
    assert bool((exact[batch.policy_BT] > 1e-3).all())  # a real gap between the two models, not a trivial 0
    # The stored log-probs are float16 (rel. error ~5e-4); that is the only difference left.
    torch.testing.assert_close(stored, exact, rtol=5e-3, atol=1e-3)


def test_chunked_scoring_matches_the_full_distribution(models, episode) -> None:
    """Any chunk size gives the top-k and tail that the full (N, V) log-probs give."""
    tokenizer, teacher_model, _ = models
    teacher = WhiteBoxTeacher(teacher_model, tokenizer, name="t", k=5)
    teacher.chunk_rows = 3
    (scored,) = teacher.annotate([episode])
    (full_NV,) = teacher.logprobs([episode])
    positions = torch.from_numpy(np.flatnonzero(episode.policy_mask))
    top_values, top_ids = full_NV[positions].topk(5, dim=-1)
    tail = 1.0 - top_values.double().exp().sum(-1)
    ids = np.concatenate([a.token_ids for a in scored.token_logprobs])
    values = np.concatenate([a.logprobs for a in scored.token_logprobs]).astype(np.float32)
    tails = np.concatenate([a.tail_mass for a in scored.token_logprobs])
    assert np.array_equal(ids, top_ids.numpy())
    np.testing.assert_allclose(values, top_values.numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(tails, tail.numpy(), rtol=1e-4, atol=1e-6)
    assert isinstance(scored, Annotations)
