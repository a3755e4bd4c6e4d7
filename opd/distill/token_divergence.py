"""Per-token divergences over whole sequences, in chunks, so memory does not grow with B x T x V.

A naive token-level loss materialises the student's and teacher's log-softmax
and every intermediate as (B, T, V) tensors and keeps them for backward: at
V = 151,936 and T = 2,048 that is over a gigabyte each. Here positions are
processed a chunk of rows at a time and nothing of size (B, T, V) is kept:

- ``token_divergence`` takes full student logits (B, T, V) and returns the
  per-token divergence (B, T) with a gradient for any later weighting; backward
  recomputes each chunk (a custom autograd.Function).
- ``fused_linear_divergence`` takes the student's final hidden states (B, T, d)
  and its lm_head weight (V, d) and never builds the full logits at all, like
  Liger-Kernel's fused linear JSD: a chunk's logits exist only while its
  gradient is computed, in the forward pass, because the loss it returns is a
  fixed weighted sum of the per-token values (a token-level loss).

Only positions where ``mask`` is True (the student's own tokens; prompt and
tool-result tokens are False) are computed; the others are 0. The teacher is a
fixed target: no gradient flows into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from opd.distill.divergences import Divergence, resolve_divergence
from opd.distill.topk import TopKLogprobs, coarsen_student, topk_from_logits
from opd.errors import ConfigError

# Rows per chunk aim at this many logits per (rows, V) temporary: 32 MiB in fp32. Larger chunks re-read
# the (V, d) lm_head less often; at or below glibc's 32 MiB mmap ceiling, freed temporaries are reused
# from the heap instead of being page-faulted in again for every chunk (measured: ~5x less system time).
CHUNK_ELEMENTS = 2**23


@dataclass(frozen=True)
class TeacherHidden:
    """A white-box teacher given as its final hidden states and lm_head, so its logits are formed per chunk.

    Attributes:
        hidden: (B, T, d_teacher) final hidden states (after the final norm).
        lm_head: (V, d_teacher) output embedding; the teacher's vocabulary must be the student's.
    """

    hidden: Tensor
    lm_head: Tensor


Teacher = Tensor | TopKLogprobs | TeacherHidden
"""Full teacher logits (B, T, V), a top-k representation, or hidden states + lm_head."""


@dataclass(frozen=True)
class FusedDivergence:
    """What ``fused_linear_divergence`` returns.

    Attributes:
        loss: scalar, ``sum_t weight_t * D_t`` over the masked tokens, differentiable.
        per_token: (B, T) the divergence per token (0 where masked out), detached, for metrics.
    """

    loss: Tensor
    per_token: Tensor


def default_chunk_rows(vocab: int) -> int:
    return max(1, CHUNK_ELEMENTS // vocab)


def teacher_rows(teacher: Teacher, index_N: Tensor) -> Tensor | TopKLogprobs:
    """The teacher at the flattened positions ``index_N``: logits (N, V) or TopKLogprobs (N, K)."""
    if isinstance(teacher, TopKLogprobs):
        return teacher.rows(index_N)
    with torch.no_grad():
        if isinstance(teacher, TeacherHidden):
            hidden_ND = teacher.hidden.reshape(-1, teacher.hidden.shape[-1]).index_select(0, index_N)
            return hidden_ND @ teacher.lm_head.T
        return teacher.reshape(-1, teacher.shape[-1]).index_select(0, index_N)


def divergence_rows(
    divergence: Divergence,
    student_logits_NV: Tensor,
    teacher: Tensor | TopKLogprobs,
    k: int | None,
    *,
    student_is_logprobs: bool = False,
) -> Tensor:
    """(N,) the divergence of each row: exact on full teacher logits, on the K+1 coarsening for top-k.

    Half-precision logits are upcast per chunk: log-space differences of bf16 logits are too coarse.
    ``student_is_logprobs`` says the student rows are already log-softmaxed (saves a (N, V) copy).
    """
    student_logits_NV = _at_least_fp32(student_logits_NV)
    if isinstance(teacher, Tensor) and k is not None:
        teacher = topk_from_logits(_at_least_fp32(teacher), k)
    if isinstance(teacher, TopKLogprobs):
        logq_NK1 = coarsen_student(student_logits_NV, teacher.token_ids, normalized=student_is_logprobs)
        logp_NK1 = teacher.coarse_logprobs().to(logq_NK1.dtype)
        return divergence.terms(logp_NK1, logq_NK1).sum(dim=-1)
    logq_NV = student_logits_NV if student_is_logprobs else torch.log_softmax(student_logits_NV, dim=-1)
    logp_NV = torch.log_softmax(_at_least_fp32(teacher).to(logq_NV.dtype), dim=-1)
    return divergence.terms(logp_NV, logq_NV).sum(dim=-1)


def _at_least_fp32(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _selected_rows(shape_BT: torch.Size, mask_BT: Tensor | None, device: torch.device) -> Tensor:
    """Flat indices of the positions to compute: the mask's True positions, or all of them."""
    if mask_BT is None:
        return torch.arange(shape_BT.numel(), device=device)
    if mask_BT.shape != shape_BT:
        raise ConfigError(f"mask must have the logits' (B, T) shape {tuple(shape_BT)}, got {tuple(mask_BT.shape)}.")
    return mask_BT.reshape(-1).nonzero().squeeze(-1).to(device)


def _check_k(k: int | None, teacher: Teacher) -> None:
    if k is not None and isinstance(teacher, TopKLogprobs):
        raise ConfigError("k is for full teacher logits; a TopKLogprobs teacher already fixes k.")


class _ChunkedRows(torch.autograd.Function):
    """Per-row divergences of (N, V) student logits; backward recomputes one chunk at a time."""

    @staticmethod
    def forward(ctx, student_logits_NV, index_R, teacher, divergence, k, chunk_rows):  # type: ignore[override]
        values_R = torch.empty(index_R.numel(), dtype=_at_least_fp32(student_logits_NV).dtype, device=student_logits_NV.device)
        for start in range(0, index_R.numel(), chunk_rows):
            index_C = index_R[start : start + chunk_rows]
            rows_CV = student_logits_NV.index_select(0, index_C)
            values_R[start : start + chunk_rows] = divergence_rows(divergence, rows_CV, teacher_rows(teacher, index_C), k)
        ctx.save_for_backward(student_logits_NV, index_R)
        ctx.teacher, ctx.divergence, ctx.k, ctx.chunk_rows = teacher, divergence, k, chunk_rows
        return values_R

    @staticmethod
    def backward(ctx, grad_values_R):  # type: ignore[override]
        student_logits_NV, index_R = ctx.saved_tensors
        grad_NV = torch.zeros_like(student_logits_NV)
        for start in range(0, index_R.numel(), ctx.chunk_rows):
            index_C = index_R[start : start + ctx.chunk_rows]
            grad_values_C = grad_values_R[start : start + ctx.chunk_rows]
            with torch.enable_grad():
                rows_CV = student_logits_NV.index_select(0, index_C).detach().requires_grad_()
                values_C = divergence_rows(ctx.divergence, rows_CV, teacher_rows(ctx.teacher, index_C), ctx.k)
                (grad_CV,) = torch.autograd.grad(values_C, rows_CV, grad_values_C)
            # A row that is not used (zero upstream gradient) gets zero, even where its value is inf
            # and the chain rule would say 0 * inf = NaN.
            grad_CV = torch.where((grad_values_C == 0).unsqueeze(-1), torch.zeros_like(grad_CV), grad_CV)
            grad_NV.index_copy_(0, index_C, grad_CV)
        return grad_NV, None, None, None, None, None


def token_divergence(
    student_logits_BTV: Tensor,
    teacher: Teacher,
    divergence: str | Divergence = "reverse_kl",
    *,
    mask_BT: Tensor | None = None,
    k: int | None = None,
    chunk_rows: int | None = None,
) -> Tensor:
    """Per-token divergence D(p_teacher || q_student) (B, T), 0 where ``mask_BT`` is False.

    Args:
        student_logits_BTV: (B, T, V) student logits; the gradient flows into them.
        teacher: (B, T, V) teacher logits (exact), TeacherHidden (logits formed per chunk), or
            TopKLogprobs (the K+1-outcome approximation, a lower bound, see opd.distill.topk).
        divergence: a registry name (``divergence_names()``) or a Divergence instance.
        mask_BT: (B, T) bool, True at the student's own tokens; None computes every position.
        k: take the teacher's top-k from full logits first (the approximation at k).
        chunk_rows: positions per chunk (default: about 2**23 logits per chunk).
    """
    _check_k(k, teacher)
    divergence = resolve_divergence(divergence)
    shape_BT, vocab = student_logits_BTV.shape[:-1], student_logits_BTV.shape[-1]
    index_R = _selected_rows(shape_BT, mask_BT, student_logits_BTV.device)
    rows = chunk_rows or default_chunk_rows(vocab)
    values_R = _ChunkedRows.apply(student_logits_BTV.reshape(-1, vocab), index_R, teacher, divergence, k, rows)
    out_N = torch.zeros(shape_BT.numel(), dtype=values_R.dtype, device=values_R.device)
    return out_N.index_put((index_R,), values_R).reshape(shape_BT)


class _FusedLinearRows(torch.autograd.Function):
    """``sum_r weight_r * D_r`` with logits ``hidden @ lm_head.T`` formed per chunk; gradients made in forward."""

    @staticmethod
    def forward(ctx, hidden_RD, lm_head_VD, weights_R, index_R, teacher, divergence, k, chunk_rows):  # type: ignore[override]
        need_hidden, need_head = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_hidden_RD = torch.zeros_like(hidden_RD) if need_hidden else None
        grad_head_VD = torch.zeros_like(lm_head_VD, dtype=_at_least_fp32(lm_head_VD).dtype) if need_head else None
        values_R = torch.empty(index_R.numel(), dtype=_at_least_fp32(hidden_RD).dtype, device=hidden_RD.device)
        for start in range(0, index_R.numel(), chunk_rows):
            chunk = slice(start, start + chunk_rows)
            hidden_CD = hidden_RD[chunk]
            # The logits become the student's log-probs in place: one (C, V) tensor instead of two.
            logq_CV = _at_least_fp32(hidden_CD @ lm_head_VD.T)
            logq_CV -= torch.logsumexp(logq_CV, dim=-1, keepdim=True)
            with torch.enable_grad():
                logq_CV.requires_grad_(need_hidden or need_head)
                teacher_C = teacher_rows(teacher, index_R[chunk])
                values_C = divergence_rows(divergence, logq_CV, teacher_C, k, student_is_logprobs=True)
                if need_hidden or need_head:
                    weighted = (values_C * weights_R[chunk].to(values_C.dtype)).sum()
                    (grad_CV,) = torch.autograd.grad(weighted, logq_CV)
            values_R[chunk] = values_C.detach()
            if need_hidden or need_head:
                # Chain rule through log_softmax, in place: d/dz = g - softmax(z) * sum(g).
                probs_CV = logq_CV.detach().exp_()
                grad_CV = grad_CV.addcmul_(probs_CV, grad_CV.sum(dim=-1, keepdim=True), value=-1).to(lm_head_VD.dtype)
                del probs_CV, logq_CV
                if need_hidden:
                    grad_hidden_RD[chunk] = grad_CV @ lm_head_VD
                if need_head:
                    grad_head_VD.addmm_(grad_CV.T.to(grad_head_VD.dtype), hidden_CD.to(grad_head_VD.dtype))
        ctx.save_for_backward(grad_hidden_RD, grad_head_VD)
        loss = (values_R * weights_R.to(values_R.dtype)).sum()
        ctx.mark_non_differentiable(values_R)
        return loss, values_R

    @staticmethod
    def backward(ctx, grad_loss, _grad_values):  # type: ignore[override]
        grad_hidden_RD, grad_head_VD = ctx.saved_tensors
        if bool(grad_loss != 1):  # the usual loss.backward() skips a second (V, d) tensor
            grad_hidden_RD = grad_hidden_RD * grad_loss.to(grad_hidden_RD.dtype) if grad_hidden_RD is not None else None
            grad_head_VD = grad_head_VD * grad_loss.to(grad_head_VD.dtype) if grad_head_VD is not None else None
        return grad_hidden_RD, grad_head_VD, None, None, None, None, None, None


def fused_linear_divergence(
    student_hidden_BTD: Tensor,
    student_lm_head_VD: Tensor,
    teacher: Teacher,
    divergence: str | Divergence = "reverse_kl",
    *,
    mask_BT: Tensor | None = None,
    weights_BT: Tensor | None = None,
    k: int | None = None,
    chunk_rows: int | None = None,
) -> FusedDivergence:
    """A token-level loss ``sum_t weight_t * D_t`` that never materialises the (B, T, V) logits.

    Args:
        student_hidden_BTD: (B, T, d) the student's final hidden states (after its final norm).
        student_lm_head_VD: (V, d) the student's lm_head weight (the logits are ``hidden @ lm_head.T``;
            a bias-free head, as in Llama/Qwen). Both get gradients.
        teacher: TeacherHidden (logits formed per chunk), TopKLogprobs, or (B, T, V) logits.
        divergence: a registry name or a Divergence instance.
        mask_BT: (B, T) bool, True at the student's own tokens.
        weights_BT: (B, T) per-token weights, no gradient; default ``1 / (number of masked tokens)``,
            i.e. the token mean. Per-step or per-episode means are other weights.
        k: take the teacher's top-k from full logits first.
        chunk_rows: positions per chunk (default: about 2**23 logits per chunk).
    """
    _check_k(k, teacher)
    divergence = resolve_divergence(divergence)
    shape_BT, vocab = student_hidden_BTD.shape[:-1], student_lm_head_VD.shape[0]
    index_R = _selected_rows(shape_BT, mask_BT, student_hidden_BTD.device)
    if weights_BT is None:
        weights_R = torch.full((index_R.numel(),), 1.0 / max(index_R.numel(), 1), device=student_hidden_BTD.device)
    else:
        weights_R = weights_BT.detach().reshape(-1).index_select(0, index_R)
    hidden_RD = student_hidden_BTD.reshape(-1, student_hidden_BTD.shape[-1]).index_select(0, index_R)
    rows = chunk_rows or default_chunk_rows(vocab)
    loss, values_R = _FusedLinearRows.apply(hidden_RD, student_lm_head_VD, weights_R, index_R, teacher, divergence, k, rows)
    per_token_N = torch.zeros(shape_BT.numel(), dtype=values_R.dtype, device=values_R.device)
    return FusedDivergence(loss=loss, per_token=per_token_N.index_put((index_R,), values_R).reshape(shape_BT))


Reduction = Literal["token_mean", "sequence_mean", "sum"]


def reduce_masked(values_BT: Tensor, mask_BT: Tensor, how: Reduction = "token_mean") -> Tensor:
    """Reduce per-token values over the masked positions to a scalar.

    ``token_mean``: every student token counts the same (long episodes weigh more);
    ``sequence_mean``: mean per sequence, then over sequences (each episode counts the
    same; sequences without a masked token are left out); ``sum``: the plain sum.
    Masked-out positions are *selected away*, so an inf or NaN there does not leak in.
    """
    masked_BT = torch.where(mask_BT, values_BT, torch.zeros_like(values_BT))
    if how == "sum":
        return masked_BT.sum()
    if how == "token_mean":
        return masked_BT.sum() / mask_BT.sum().clamp_min(1)
    if how == "sequence_mean":
        counts_B = mask_BT.sum(dim=-1)
        per_sequence_B = masked_BT.sum(dim=-1) / counts_B.clamp_min(1)
        return per_sequence_B[counts_B > 0].mean() if bool((counts_B > 0).any()) else masked_BT.sum()
    raise ConfigError(f"reduce_masked: how must be 'token_mean', 'sequence_mean' or 'sum', got {how!r}.")
