"""The fused training step (hidden states + lm_head, chunked) equals the full-logits step: loss, metrics and gradients."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from opd.agents.teacher import WhiteBoxTeacher
from opd.distill.batch import make_batch
from opd.distill.losses import LossConfig, compute_loss, loss_totals
from opd.distill.student_loss import fusable, student_loss

CONFIGS = {
    "token_reverse_kl": LossConfig(kind="token"),
    "step_jsd": LossConfig(kind="step", divergence="jsd", divergence_params={"beta": 0.3}),
    "hybrid_weighted": LossConfig(kind="hybrid", hybrid_weights={"token": 1.0, "step": 0.5}, divergence="forward_kl", uncertainty="weight"),
    "token_gated": LossConfig(kind="token", divergence="tv", uncertainty="gate", uncertainty_threshold=0.9),
}


@pytest.fixture(scope="module")
def batch(v37_models, v37_episode):
    """Two annotated episodes of different lengths (so one is padded), top-5 teacher annotations."""
    tokenizer, teacher_model, _ = v37_models
    teacher = WhiteBoxTeacher(teacher_model, tokenizer, name="t", k=5)
    shorter = dataclasses.replace(v37_episode, steps=v37_episode.steps[:1])
    episodes = [v37_episode, shorter]
    annotated = [dataclasses.replace(e, annotations=a) for e, a in zip(episodes, teacher.annotate(episodes), strict=True)]
    return make_batch(annotated, teacher="t")


def gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", CONFIGS)
def test_fused_step_equals_the_full_logits_step(v37_models, batch, name) -> None:
    config = CONFIGS[name]
    _, _, student = v37_models
    # float64, so the comparison sees the method; what is left is compute_loss's float32 step counts (~1e-8).
    full_model, fused_model = copy.deepcopy(student).double().train(), copy.deepcopy(student).double().train()
    totals = loss_totals(batch, config)
    assert fusable(fused_model, config)
    full = compute_loss(full_model(input_ids=batch.input_ids_BT, attention_mask=batch.attention_BT).logits, batch, config, totals)
    full.loss.backward()
    fused = student_loss(fused_model, batch, config, totals)
    fused.loss.backward()
    torch.testing.assert_close(fused.loss, full.loss, rtol=1e-6, atol=1e-10)
    assert fused.metrics.keys() == full.metrics.keys()
    for key, value in full.metrics.items():
        assert fused.metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-10), key
    expected, got = gradients(full_model), gradients(fused_model)
    assert expected.keys() == got.keys() and expected
    for param, grad in expected.items():
        torch.testing.assert_close(got[param], grad, rtol=1e-6, atol=1e-10, msg=param)


def test_losses_that_need_sampled_logprobs_keep_the_full_logits_path(v37_models) -> None:
    _, _, student = v37_models
    assert not fusable(student, LossConfig(kind="sft"))
    assert not fusable(student, LossConfig(kind="hybrid", hybrid_weights={"token": 1.0, "episode": 0.1}))
    assert fusable(student, LossConfig(kind="hybrid", hybrid_weights={"token": 1.0, "step": 1.0}))
