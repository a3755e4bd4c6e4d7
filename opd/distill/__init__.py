"""Divergences, token/step/episode losses, the on-policy distillation loop and evaluation.

Imports ``opd.agents``, ``opd.envs`` and ``opd.trajectories``: the f-divergence
family (``divergences``), its top-k + tail approximation (``topk``), chunked and
fused per-token computation (``token_divergence``), the single-sample reverse-KL
estimator (``sampled``), losses by granularity on stored episodes (``batch``,
``losses``), the training loop (``train`` over a ``TrainConfig``), evaluation and
the demo. Heavy modules (the loop, the demo) are imported from their own modules.
"""

from opd.distill.config import TrainConfig, load_config
from opd.distill.divergences import (
    DIVERGENCES,
    JSD,
    AlphaDivergence,
    Divergence,
    ForwardKL,
    ReverseKL,
    SkewKL,
    SkewReverseKL,
    TotalVariation,
    divergence_names,
    get_divergence,
)
from opd.distill.losses import LOSS_KINDS, LossConfig, compute_loss
from opd.distill.sampled import sampled_reverse_kl, token_logprobs
from opd.distill.token_divergence import (
    FusedDivergence,
    Teacher,
    TeacherHidden,
    fused_linear_divergence,
    reduce_masked,
    token_divergence,
)
from opd.distill.topk import TopKLogprobs, topk_from_logits

__all__ = [
    "LOSS_KINDS",
    "LossConfig",
    "TrainConfig",
    "compute_loss",
    "load_config",
    "DIVERGENCES",
    "JSD",
    "AlphaDivergence",
    "Divergence",
    "ForwardKL",
    "FusedDivergence",
    "ReverseKL",
    "SkewKL",
    "SkewReverseKL",
    "Teacher",
    "TeacherHidden",
    "TopKLogprobs",
    "TotalVariation",
    "divergence_names",
    "fused_linear_divergence",
    "get_divergence",
    "reduce_masked",
    "sampled_reverse_kl",
    "token_divergence",
    "token_logprobs",
    "topk_from_logits",
]
