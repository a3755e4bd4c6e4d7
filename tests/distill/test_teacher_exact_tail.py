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

from opd.agents.teacher import WhiteBoxTeacher
from opd.distill import get_divergence, token_divergence
from opd.distill.batch import make_batch
from opd.trajectories import Annotations

VOCAB = 37  # the v37_models fixture's vocabulary


@pytest.mark.parametrize("k", [VOCAB, 100])
def test_annotation_at_k_at_least_v_gives_the_exact_forward_kl(v37_models, v37_episode, k) -> None:
    tokenizer, teacher_model, student_model = v37_models
    teacher = WhiteBoxTeacher(teacher_model, tokenizer, name="t", k=k)
    annotated = dataclasses.replace(v37_episode, annotations=teacher.annotate([v37_episode])[0])
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


def test_chunked_scoring_matches_the_full_distribution(v37_models, v37_episode) -> None:
    """Any chunk size gives the top-k and tail that the full (N, V) log-probs give."""
    tokenizer, teacher_model, _ = v37_models
    teacher = WhiteBoxTeacher(teacher_model, tokenizer, name="t", k=5)
    teacher.chunk_rows = 3
    (scored,) = teacher.annotate([v37_episode])
    (full_NV,) = teacher.logprobs([v37_episode])
    positions = torch.from_numpy(np.flatnonzero(v37_episode.policy_mask))
    top_values, top_ids = full_NV[positions].topk(5, dim=-1)
    tail = 1.0 - top_values.double().exp().sum(-1)
    ids = np.concatenate([a.token_ids for a in scored.token_logprobs])
    values = np.concatenate([a.logprobs for a in scored.token_logprobs]).astype(np.float32)
    tails = np.concatenate([a.tail_mass for a in scored.token_logprobs])
    assert np.array_equal(ids, top_ids.numpy())
    np.testing.assert_allclose(values, top_values.numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(tails, tail.numpy(), rtol=1e-4, atol=1e-6)
    assert isinstance(scored, Annotations)
