"""Divergences, token/step/episode losses, the on-policy distillation loop and evaluation.

Imports ``opd.agents``, ``opd.envs`` and ``opd.trajectories``. This release has the
divergences: the f-divergence family (``divergences``), its top-k + tail
approximation (``topk``), chunked and fused per-token computation
(``token_divergence``) and the single-sample reverse-KL estimator (``sampled``).
"""

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
