"""Chunked and fused per-token divergences equal the naive full computation, values and gradients; masks."""

from __future__ import annotations

import pytest
import torch
from naive_divergences import CASES, case_id, naive, naive_coarse, naive_from_logits, probs

from opd.distill import TeacherHidden, fused_linear_divergence, get_divergence, reduce_masked, token_divergence, topk_from_logits
from opd.errors import ConfigError

B, T, V, D = 2, 5, 13, 6


def randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def student_mask() -> torch.Tensor:
    """Prompt and tool-result positions False, the student's tokens True."""
    return torch.tensor([[False, True, True, False, True], [False, False, True, True, True]])


@pytest.mark.parametrize("chunk_rows", [1, 3, 100])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_chunked_values_and_gradients_equal_the_naive_computation(case, chunk_rows: int) -> None:
    name, params = case
    student, teacher = (2 * randn(0, B, T, V)).requires_grad_(), 2 * randn(1, B, T, V)
    upstream = randn(2, B, T)  # any later weighting of the per-token values
    ours = token_divergence(student, teacher, get_divergence(name, **params), chunk_rows=chunk_rows)
    reference = naive_from_logits(name, student, teacher, **params)
    torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)
    (ours_grad,) = torch.autograd.grad((ours * upstream).sum(), student)
    (reference_grad,) = torch.autograd.grad((reference * upstream).sum(), student)
    torch.testing.assert_close(ours_grad, reference_grad, rtol=1e-6, atol=1e-9)


def test_gradcheck_of_the_chunked_function() -> None:
    student, teacher = randn(3, 1, 3, 7).requires_grad_(), randn(4, 1, 3, 7)
    assert torch.autograd.gradcheck(lambda s: token_divergence(s, teacher, "jsd", chunk_rows=2), (student,))


def test_masked_positions_are_zero_never_computed_and_get_no_gradient() -> None:
    student, teacher, mask = 2 * randn(5, B, T, V), 2 * randn(6, B, T, V), student_mask()
    unmasked = token_divergence(student, teacher, "reverse_kl")
    student[~mask] = float("nan")  # e.g. padding: whatever sits there must not leak
    student.requires_grad_()
    masked = token_divergence(student, teacher, "reverse_kl", mask_BT=mask, chunk_rows=2)
    assert (masked[~mask] == 0).all()
    torch.testing.assert_close(masked[mask], unmasked[mask])
    masked.sum().backward()
    assert (student.grad[~mask] == 0).all() and student.grad.isfinite().all()
    with pytest.raises(ConfigError, match=r"\(B, T\) shape"):
        token_divergence(student, teacher, mask_BT=mask[:, :3])


def naive_weighted_loss(name, params, hidden, head, teacher_logits, mask, weights):
    per_token = naive_from_logits(name, hidden @ head.T, teacher_logits, **params)
    return (torch.where(mask, per_token, 0) * weights).sum()


TEACHERS = ["hidden", "logits", "top_k_object", "k_argument"]


@pytest.mark.parametrize("teacher_kind", TEACHERS)
@pytest.mark.parametrize("case", [("reverse_kl", {}), ("jsd", {"beta": 0.5}), ("forward_kl", {}), ("tv", {})], ids=case_id)
def test_fused_linear_loss_and_gradients_equal_the_naive_computation(case, teacher_kind: str) -> None:
    name, params = case
    hidden, head = randn(7, B, T, D).requires_grad_(), randn(8, V, D).requires_grad_()
    teacher_hidden, teacher_head = randn(9, B, T, 4), 2 * randn(10, V, 4)
    teacher_logits = teacher_hidden @ teacher_head.T
    mask, weights = student_mask(), randn(11, B, T).abs()
    teacher, k = {
        "hidden": (TeacherHidden(teacher_hidden, teacher_head), None),
        "logits": (teacher_logits, None),
        "top_k_object": (topk_from_logits(teacher_logits, 4), None),
        "k_argument": (TeacherHidden(teacher_hidden, teacher_head), 4),
    }[teacher_kind]
    divergence = get_divergence(name, **params)
    ours = fused_linear_divergence(hidden, head, teacher, divergence, mask_BT=mask, weights_BT=weights, k=k, chunk_rows=3)
    if teacher_kind in ("top_k_object", "k_argument"):
        per_token = naive(name, *naive_coarse(hidden @ head.T, teacher_logits, 4), **params)
        reference = (torch.where(mask, per_token, 0) * weights).sum()
    else:
        reference = naive_weighted_loss(name, params, hidden, head, teacher_logits, mask, weights)
    torch.testing.assert_close(ours.loss, reference, rtol=1e-10, atol=1e-12)
    ours_grads = torch.autograd.grad(3.0 * ours.loss, (hidden, head))
    reference_grads = torch.autograd.grad(3.0 * reference, (hidden, head))
    for mine, theirs in zip(ours_grads, reference_grads, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-9)


def test_fused_per_token_values_and_default_token_mean() -> None:
    hidden, head = randn(12, B, T, D).requires_grad_(), randn(13, V, D)
    teacher_logits, mask = 2 * randn(14, B, T, V), student_mask()
    fused = fused_linear_divergence(hidden, head, teacher_logits, "jsd", mask_BT=mask)
    per_token = token_divergence(hidden.detach() @ head.T, teacher_logits, "jsd", mask_BT=mask)
    torch.testing.assert_close(fused.per_token, per_token)
    assert not fused.per_token.requires_grad
    torch.testing.assert_close(fused.loss, reduce_masked(per_token, mask, "token_mean"))
    (grad,) = torch.autograd.grad(fused.loss, hidden)  # the lm_head needs no gradient here
    assert (grad[~mask] == 0).all() and (grad[mask] != 0).any()


def test_half_precision_inputs_are_computed_in_float32() -> None:
    hidden, head = randn(15, B, T, D).bfloat16().requires_grad_(), randn(16, V, D).bfloat16().requires_grad_()
    teacher = randn(17, B, T, V).bfloat16()
    fused = fused_linear_divergence(hidden, head, teacher, "reverse_kl")
    fused.loss.backward()
    exact = naive_from_logits("reverse_kl", hidden.double() @ head.double().T, teacher.double()).mean()
    assert fused.loss.dtype == torch.float32 and abs(fused.loss.item() - exact.item()) < 0.05 * exact.item()
    assert hidden.grad.dtype == torch.bfloat16 and head.grad.dtype == torch.bfloat16


def test_reduce_masked_matches_a_loop_and_ignores_masked_out_infinities() -> None:
    values, mask = randn(18, B, T).abs(), student_mask()
    values[~mask] = float("inf")
    kept = [[values[b, t].item() for t in range(T) if mask[b, t]] for b in range(B)]
    assert reduce_masked(values, mask, "sum").item() == pytest.approx(sum(map(sum, kept)))
    assert reduce_masked(values, mask, "token_mean").item() == pytest.approx(sum(map(sum, kept)) / sum(map(len, kept)))
    assert reduce_masked(values, mask, "sequence_mean").item() == pytest.approx(sum(sum(r) / len(r) for r in kept) / B)
    with pytest.raises(ConfigError, match="token_mean"):
        reduce_masked(values, mask, "mean")  # type: ignore[arg-type]


def test_probs_helper_sanity() -> None:
    """The naive reference's softmax sums to one (so a wrong reference fails loudly, not silently)."""
    torch.testing.assert_close(probs(randn(19, 3, V)).sum(-1), torch.ones(3, dtype=torch.float64))
