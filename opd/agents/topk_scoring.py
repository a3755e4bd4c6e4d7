"""A causal LM's top-k next-token log-probs and exact tail mass at chosen positions, a chunk of rows at a time.

At V = 151,936 the full (N, V) fp32 log-probs of a 2,000-token episode take
1.2 GB, and taking top-k from them is what a white-box teacher does for every
policy token. Here the model's final hidden states are computed once (no
logits), only the positions that are scored are projected through the
lm_head, and only ``chunk_rows`` of them at a time: the largest temporary is
one (chunk_rows, V) fp32 block.

The tail mass (the probability outside the top k) is a logsumexp over the
tokens *not* in the top k minus the logsumexp over all of them, as the
divergence code computes the student's tail (``tail_logprob``), never
``1 - sum(exp(top-k))``: that difference loses every digit once the tail is
below float epsilon and, at k = V, is left positive by rounding while the
student's tail is exactly 0, which makes a forward KL infinite.

The logits are ``lm_head(final hidden)``, with the two post-processings
transformers' causal LMs apply on top (a logit scale as in Cohere, soft-capping
as in Gemma 2); a model that changes its logits some other way inside
``forward`` would be scored without that change.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import PreTrainedModel

from opd.errors import ConfigError

__all__ = ["TopKRows", "final_hidden", "head_logits", "safe_logsumexp", "tail_logprob", "topk_rows"]

NEG_INF = float("-inf")
# Logits per (rows, V) chunk when scoring: 128 MiB in fp32. The chunk's rows share one read of the (V, d) lm_head,
# which dominates at small chunks; scoring has no backward, so its chunk can be larger than a training step's.
SCORING_CHUNK_ELEMENTS = 2**25


@dataclass(frozen=True)
class TopKRows:
    """Per scored position: the k most likely next tokens, their log-probs, and the exact mass outside them.

    Attributes:
        token_ids: (N, K) int64.
        logprobs: (N, K) float32, normalised over the full vocabulary.
        tail_mass: (N,) float32, exactly 0 when K = V.
    """

    token_ids: Tensor
    logprobs: Tensor
    tail_mass: Tensor


def safe_logsumexp(x_NV: Tensor) -> Tensor:
    """``logsumexp`` over the last dim that is -inf for an all -inf row *with a zero, not NaN, gradient*."""
    empty_N = (x_NV == NEG_INF).all(dim=-1)
    x_safe = torch.where(empty_N.unsqueeze(-1), torch.zeros_like(x_NV), x_NV)
    lse_N = torch.logsumexp(x_safe, dim=-1)
    return torch.where(empty_N, torch.full_like(lse_N, NEG_INF), lse_N)


def tail_logprob(logits_NV: Tensor, token_ids_NK: Tensor) -> Tensor:
    """(N,) log of the probability ``softmax(logits)`` puts outside ``token_ids``, exactly.

    A logsumexp over the tokens that are not in the top k, rather than
    ``log(1 - sum(top-k probs))``, which loses every digit once the tail is below
    float epsilon; -inf (a tail of exactly 0) when ``token_ids`` covers the vocabulary.
    """
    outside_NV = logits_NV.scatter(-1, token_ids_NK, NEG_INF)
    return safe_logsumexp(outside_NV) - torch.logsumexp(logits_NV, dim=-1)


def final_hidden(model: PreTrainedModel, input_ids_BT: Tensor, attention_BT: Tensor) -> Tensor:
    """(B, T, d) the model's last hidden states, after its final norm, without computing any logits."""
    base = model.base_model
    if base is model:
        raise ConfigError(f"{type(model).__name__} has no separate base model to take hidden states from; use a *ForCausalLM model.")
    return base(input_ids=input_ids_BT, attention_mask=attention_BT).last_hidden_state


def head_logits(model: PreTrainedModel, hidden_ND: Tensor) -> Tensor:
    """(N, V) float32 logits of ``hidden_ND`` as ``model`` would compute them from its final hidden states."""
    config = model.config
    logits_NV = model.get_output_embeddings()(hidden_ND).float()
    if getattr(config, "logit_scale", None) not in (None, 1, 1.0):
        logits_NV = logits_NV * config.logit_scale
    cap = getattr(config, "final_logit_softcapping", None)
    if cap:
        logits_NV = torch.tanh(logits_NV / cap) * cap
    return logits_NV


@torch.no_grad()
def topk_rows(model: PreTrainedModel, hidden_ND: Tensor, k: int, *, chunk_rows: int | None = None) -> TopKRows:
    """Top-k log-probs and exact tail mass of the next-token distribution at each of ``hidden_ND``'s rows.

    No (N, V) tensor is made: rows are projected and reduced ``chunk_rows`` at a time
    (default: about 2**25 logits, 128 MiB, per chunk; without a backward pass a chunk can be
    larger than the training step's, and each chunk re-reads the (V, d) lm_head).
    """
    vocab = model.get_output_embeddings().weight.shape[0]
    if not 1 <= k <= vocab:
        raise ConfigError(f"top-k: k must be between 1 and the vocabulary size {vocab}, got {k}.")
    rows = chunk_rows or max(1, SCORING_CHUNK_ELEMENTS // vocab)
    ids, values, tails = [], [], []
    for start in range(0, hidden_ND.shape[0], rows):
        logits_CV = head_logits(model, hidden_ND[start : start + rows])
        top_logits_CK, top_ids_CK = logits_CV.topk(k, dim=-1)
        lse_C1 = torch.logsumexp(logits_CV, dim=-1, keepdim=True)
        values.append(top_logits_CK - lse_C1)
        if k == vocab:  # nothing is outside: the tail is exactly 0
            tails.append(torch.zeros_like(lse_C1[:, 0]))
        else:  # the logsumexp of what is outside the top k (tail_logprob's formula, without its copy of the logits)
            outside_CV = logits_CV.scatter_(-1, top_ids_CK, NEG_INF)
            tails.append((torch.logsumexp(outside_CV, dim=-1) - lse_C1[:, 0]).exp())
        ids.append(top_ids_CK)
    if not ids:
        empty = hidden_ND.new_zeros((0, k), dtype=torch.float32)
        return TopKRows(empty.long(), empty, empty[:, 0])
    return TopKRows(torch.cat(ids), torch.cat(values), torch.cat(tails))
