"""The student's side of a training step: its forward pass and the configured loss, without (B, T, V) logits where it can.

Token- and step-level losses (and hybrids of only those two) are a fixed weighted
sum of per-token divergences: the token mean weighs each token by
``w_t / sum(w)``, the step mean by ``w_t / (sum of w over its step) / steps``.
So they run through ``fused_linear_divergence`` on the student's final hidden
states and its lm_head: a chunk of positions' logits exists only while its
gradient is formed, and at V = 151,936, T = 2,048 the step never holds the
1.2 GB of full fp32 logits (benchmarks/train_memory.py).

Every other loss (sequence-level, outcome, SFT, and hybrids that include them)
needs the student's log-prob of each sampled token under autograd and keeps the
full-logits path (``compute_loss``). So does a model whose logits are not a plain
``hidden @ lm_head.T`` (a biased head, a logit scale, soft-capping), and a batch of
stored episodes with importance weights (they need the same log-probs).
"""

from __future__ import annotations

import torch
from torch import Tensor

from opd.distill.batch import EpisodeBatch
from opd.distill.divergences import get_divergence
from opd.distill.losses import LossConfig, LossResult, LossTotals, _step_sums, _token_weights, compute_loss
from opd.distill.token_divergence import fused_linear_divergence
from opd.errors import ConfigError

__all__ = ["fusable", "student_loss"]

FUSED_TERMS = frozenset({"token", "step"})


def fusable(model: torch.nn.Module, config: LossConfig) -> bool:
    """Whether ``config``'s loss on ``model`` can run from hidden states and lm_head (see the module docstring)."""
    inner = getattr(model, "module", model)  # under DDP, the wrapped model
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    model_config = getattr(inner, "config", None)
    plain_head = (
        isinstance(head, torch.nn.Linear)
        and head.bias is None
        and getattr(model_config, "logit_scale", None) in (None, 1, 1.0)
        and not getattr(model_config, "final_logit_softcapping", None)
    )
    return plain_head and set(config.terms) <= FUSED_TERMS


def student_loss(model: torch.nn.Module, batch: EpisodeBatch, config: LossConfig, totals: LossTotals) -> LossResult:
    """Forward the student (``model``, DDP-wrapped or not) on ``batch`` and return the configured loss."""
    # Importance weights of stored episodes (opd.distill.offline) need each sampled token's log-prob under
    # autograd, which the fused path does not form: such batches take the full-logits path.
    if batch.importance_clip is not None or not fusable(model, config):
        logits_BTV = model(input_ids=batch.input_ids_BT, attention_mask=batch.attention_BT).logits.float()
        return compute_loss(logits_BTV, batch, config, totals)
    # One position's logits (the smallest HF allows; unused, so no gradient flows through them) and every
    # layer's hidden states, the last after the final norm. Called through ``model`` itself so that DDP sees
    # the forward pass; the lm_head gets its gradient from the fused loss.
    out = model(input_ids=batch.input_ids_BT, attention_mask=batch.attention_BT, output_hidden_states=True, logits_to_keep=1)
    hidden_BTD = out.hidden_states[-1]
    lm_head_VD = getattr(model, "module", model).get_output_embeddings().weight
    return fused_loss(hidden_BTD, lm_head_VD, batch, config, totals)


def fused_loss(hidden_BTD: Tensor, lm_head_VD: Tensor, batch: EpisodeBatch, config: LossConfig, totals: LossTotals) -> LossResult:
    """The token/step loss from final hidden states (B, T, d) and lm_head (V, d); equals ``compute_loss`` on their logits."""
    if batch.teacher is None:
        raise ConfigError(f"A {config.kind!r} loss needs teacher token annotations; this batch has none.")
    dtype = torch.promote_types(hidden_BTD.dtype, torch.float32)  # coefficients at least as precise as the loss
    weights_BT = _token_weights(batch, config).to(hidden_BTD.device, dtype)
    coefficients_BT = {name: _coefficients(name, weights_BT, batch, totals) for name in config.terms}
    total_BT = sum(weight * coefficients_BT[name] for name, weight in config.terms.items())
    divergence = get_divergence(config.divergence, **config.divergence_params)
    fused = fused_linear_divergence(
        hidden_BTD, lm_head_VD, batch.teacher, divergence, mask_BT=batch.policy_BT & (weights_BT > 0), weights_BT=total_BT
    )
    loss = fused.loss
    metrics = {f"loss/{name}": float((coefficients_BT[name] * fused.per_token).sum()) for name in config.terms}
    metrics["loss"] = float(loss.detach())
    return LossResult(loss=loss, metrics=metrics)


def _coefficients(name: str, weights_BT: Tensor, batch: EpisodeBatch, totals: LossTotals) -> Tensor:
    """(B, T) each token's coefficient in term ``name``: the loss is ``sum_t coefficient_t * D_t``."""
    if name == "token":
        return weights_BT / max(totals["token/weight"], 1e-8)
    counts_BS = _step_sums(weights_BT, batch)  # each step's total weight
    step_BT = batch.step_BT.to(weights_BT.device).clamp_min(0)
    count_BT = counts_BS.gather(1, step_BT)
    per_step_BT = torch.where(count_BT > 0, weights_BT / count_BT.clamp_min(1e-30), 0.0)
    return torch.where(batch.policy_BT, per_step_BT, 0.0) / max(totals["step/steps"], 1.0)
