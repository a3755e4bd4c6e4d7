"""Supervised fine-tuning on stored demonstrations: the off-policy baseline, and how tiny teachers are made."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch

from opd.agents.policy import CausalLMPolicy
from opd.distill.batch import make_batch
from opd.distill.losses import LossConfig, compute_loss
from opd.trajectories import Episode

__all__ = ["sft"]

logger = logging.getLogger(__name__)
_SFT = LossConfig(kind="sft")


def sft(
    policy: CausalLMPolicy,
    demonstrations: Sequence[Episode],
    *,
    steps: int,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    seed: int = 0,
    stop: Callable[[int], bool] | None = None,
) -> list[float]:
    """``steps`` AdamW steps of cross-entropy on the policy tokens of random minibatches; returns the losses.

    ``stop(step)`` is asked after every step and ends training early when it returns True.
    """
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=learning_rate)
    policy.model.train()
    losses = []
    for step in range(steps):
        chosen = rng.choice(len(demonstrations), size=min(batch_size, len(demonstrations)), replace=False)
        batch = make_batch([demonstrations[i] for i in chosen]).to(policy.device)
        logits_BTV = policy.model(input_ids=batch.input_ids_BT, attention_mask=batch.attention_BT).logits
        loss = compute_loss(logits_BTV.float(), batch, _SFT).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        if stop is not None and stop(step + 1):
            break
    return losses
