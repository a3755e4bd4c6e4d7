"""The f-divergence family between a teacher p and a student q, one implementation.

Distillation papers disagree on which divergence to minimise (forward KL in
classic KD, reverse KL in MiniLLM and on-policy distillation, JSD(beta) in GKD,
skew KL in DistiLLM, total variation, alpha-divergences). All of them are
f-divergences ``D_f(p || q) = sum_x q(x) f(p(x) / q(x))`` and all of them are a
*sum over outcomes of a pointwise term* of the two log-probabilities. This
module writes each divergence once, as that pointwise term on log-probabilities
(``terms(logp_teacher, logq_student) -> (..., N)``), so the same code serves the
full vocabulary, the top-k + tail coarsening (``opd.distill.topk``) and the
chunked and fused paths (``opd.distill.token_divergence``): they only differ in
which outcomes and log-probabilities they pass in.

Conventions: ``p`` is always the teacher, ``q`` always the student, both given as
natural-log probabilities over the same N outcomes. Terms are computed in log
space and are NaN-free, values *and* gradients, when outcomes have probability
zero (``-inf`` log-probability) in either or both distributions; a divergence
that is truly infinite (forward KL where the student gives zero probability to
a token the teacher likes) comes out as ``+inf``, not NaN. docs/divergences.md
has the formulas, which direction is mode-seeking, and when to use which.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor

from opd.errors import ConfigError, UnknownNameError

NEG_INF = float("-inf")


@runtime_checkable
class Divergence(Protocol):
    """A divergence D(p_teacher || q_student) written as a sum over outcomes of pointwise terms."""

    name: ClassVar[str]

    def terms(self, logp_teacher_N: Tensor, logq_student_N: Tensor) -> Tensor:
        """Pointwise terms (..., N) whose sum over the last dim is the divergence (...)."""
        ...

    def generator(self, ratio: Tensor) -> Tensor:
        """The f of ``D = sum_x q(x) f(p(x) / q(x))`` (documents the family; used by tests)."""
        ...


# -- safe building blocks -------------------------------------------------------------------------
# torch.where only masks the *selected* value: an unselected branch that is NaN still poisons the
# gradient (0 * NaN = NaN). So every branch that could see -inf - (-inf) is sanitised *before* the op.


def p_log_p_over_q(logp_N: Tensor, logq_N: Tensor) -> Tensor:
    """``p * (log p - log q)`` elementwise, with the convention ``0 * log(0 / q) = 0``.

    +inf where p > 0 = q (the divergence really is infinite); never NaN, also in backward.
    """
    # masked_fill's backward *replaces* the masked gradient (no 0 * NaN) and needs no zeros tensor.
    log_ratio = (logp_N - logq_N).masked_fill(logp_N == NEG_INF, 0.0)
    return logp_N.exp() * log_ratio


def log_mixture(loga_N: Tensor, logb_N: Tensor, weight_a: float) -> Tensor:
    """``log(weight_a * a + (1 - weight_a) * b)`` from log a and log b, 0 < weight_a < 1.

    ``torch.logaddexp(-inf, -inf)`` is -inf but its gradient is NaN; inputs where both are -inf
    are replaced by zeros (the result there is set back to -inf) so backward stays finite.
    """
    both_zero = (loga_N == NEG_INF) & (logb_N == NEG_INF)
    loga_safe = (loga_N + math.log(weight_a)).masked_fill(both_zero, 0.0)
    logb_safe = (logb_N + math.log1p(-weight_a)).masked_fill(both_zero, 0.0)
    return torch.logaddexp(loga_safe, logb_safe).masked_fill(both_zero, NEG_INF)


def _require_open_unit(name: str, field: str, value: float, hint: str) -> None:
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{name}: {field} must lie strictly between 0 and 1, got {value!r}. {hint}")


# -- the family -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForwardKL:
    """Forward KL(p || q) = sum_x p(x) log(p(x) / q(x)); f(t) = t log t.

    Mass-covering (mean-seeking): the student is punished wherever the teacher has
    mass and the student has little, so it spreads over all the teacher's modes.
    This is classic distillation / SFT on teacher samples.
    """

    name: ClassVar[str] = "forward_kl"

    def terms(self, logp_teacher_N: Tensor, logq_student_N: Tensor) -> Tensor:
        return p_log_p_over_q(logp_teacher_N, logq_student_N)

    def generator(self, ratio: Tensor) -> Tensor:
        return torch.xlogy(ratio, ratio)


@dataclass(frozen=True)
class ReverseKL:
    """Reverse KL(q || p) = sum_x q(x) log(q(x) / p(x)); f(t) = -log t.

    Mode-seeking: the student is punished for mass where the teacher has little,
    so a student too small to cover every mode picks one (MiniLLM, on-policy
    distillation). Its single-sample estimate on sampled tokens is
    ``sampled_reverse_kl``.
    """

    name: ClassVar[str] = "reverse_kl"

    def terms(self, logp_teacher_N: Tensor, logq_student_N: Tensor) -> Tensor:
        return p_log_p_over_q(logq_student_N, logp_teacher_N)

    def generator(self, ratio: Tensor) -> Tensor:
        return -torch.log(ratio)


@dataclass(frozen=True)
class JSD:
    """Generalized Jensen-Shannon divergence JSD(beta), the GKD convention.

    ``JSD(beta) = beta * KL(p || m) + (1 - beta) * KL(q || m)``, ``m = beta * p + (1 - beta) * q``,
    with p the teacher and q the student; f(t) = beta t log t - (beta t + 1 - beta) log(beta t + 1 - beta).
    Bounded by the binary entropy h(beta) <= log 2; symmetric in (p, q) at beta = 0.5 (the
    classic JSD). Limits: ``JSD(beta) / beta -> KL(p || q)`` (forward) as beta -> 0 and
    ``JSD(beta) / (1 - beta) -> KL(q || p)`` (reverse) as beta -> 1; at the end points the
    value itself goes to 0, so use ``forward_kl`` / ``reverse_kl`` there. (TRL's
    ``generalized_jsd_loss`` uses the same mixture and weights.)
    """

    beta: float = 0.5
    name: ClassVar[str] = "jsd"

    def __post_init__(self) -> None:
        _require_open_unit(self.name, "beta", self.beta, "beta -> 0 is forward_kl (scaled by beta), beta -> 1 reverse_kl.")

    def terms(self, logp_teacher_N: Tensor, logq_student_N: Tensor) -> Tensor:
        logm_N = log_mixture(logp_teacher_N, logq_student_N, self.beta)
        return self.beta * p_log_p_over_q(logp_teacher_N, logm_N) + (1 - self.beta) * p_log_p_over_q(logq_student_N, logm_N)

    def generator(self, ratio: Tensor) -> Tensor:
        mixed = self.beta * ratio + (1 - self.beta)
        return self.beta * torch.xlogy(ratio, ratio) - mixed * torch.log(mixed)


@dataclass(frozen=True)
class TotalVariation:
    """Total variation TV(p, q) = 1/2 sum_x |p(x) - q(x)|, in [0, 1]; f(t) = |t - 1| / 2.

    Symmetric and bounded, so one bad token cannot dominate a batch; its gradient
    does not shrink as the student approaches the teacher (it is not smooth at p = q).
    """

    name: ClassVar[str] = "tv"

    def terms(self, logp_teacher_N: Tensor, logq_student_N: Tensor) -> Tensor:
        return 0.5 * (logp_teacher_N.exp() - logq_student_N.exp()).abs()

    def generator(self, ratio: Tensor) -> Tensor:
        return 0.5 * (ratio - 1).abs()


@dataclass(frozen=True)
class AlphaDivergence:
    """Amari's alpha-divergence, alpha any real number.

    ``D_alpha(p || q) = 4 / (1 - alpha^2) * (1 - sum_x p(x)^((1 - alpha)/2) q(x)^((1 + alpha)/2))``,
    computed with the pointwise non-negative terms
    ``4 / (1 - alpha^2) * ((1 - alpha)/2 p + (1 + alpha)/2 q - p^((1 - alpha)/2) q^((1 + alpha)/2))``
    (the same sum, since p and q each sum to 1 over the outcomes).
    f(t) = 4 / (1 - alpha^2) * ((1 - alpha)/2 t + (1 + alpha)/2 - t^((1 - alpha)/2)).

    Limits: alpha -> -1 is forward KL(p || q), alpha -> +1 is reverse KL(q || p); exactly
    at +-1 those are used. alpha = 0 is 4 x the squared Hellinger distance. Negative alpha
    leans mass-covering, positive alpha mode-seeking. Near +-1 the terms cancel in floating
    point (relative error ~ eps / |1 -+ alpha|), so use the KLs there.
    """

    alpha: float = 0.0
    name: ClassVar[str] = "alpha"

    def terms(self, logp_teacher_N: Tensor, logq_student_N: Tensor) -> Tensor:
        if self.alpha == -1.0:
            return ForwardKL().terms(logp_teacher_N, logq_student_N)
        if self.alpha == 1.0:
            return ReverseKL().terms(logp_teacher_N, logq_student_N)
        weight_p, weight_q = (1 - self.alpha) / 2, (1 + self.alpha) / 2
        # For |alpha| > 1 one weight is negative and 0^w * 0^v would be inf - inf: define it as 0.
        both_zero = (logp_teacher_N == NEG_INF) & (logq_student_N == NEG_INF)
        zeros = torch.zeros_like(logp_teacher_N)
        log_geometric = weight_p * torch.where(both_zero, zeros, logp_teacher_N) + weight_q * torch.where(both_zero, zeros, logq_student_N)
        log_geometric = torch.where(both_zero, torch.full_like(log_geometric, NEG_INF), log_geometric)
        arithmetic = weight_p * logp_teacher_N.exp() + weight_q * logq_student_N.exp()
        return (arithmetic - log_geometric.exp()) / (weight_p * weight_q)

    def generator(self, ratio: Tensor) -> Tensor:
        weight_p, weight_q = (1 - self.alpha) / 2, (1 + self.alpha) / 2
        return (weight_p * ratio + weight_q - ratio.pow(weight_p)) / (weight_p * weight_q)


@dataclass(frozen=True)
class SkewKL:
    """Skew KL (DistiLLM): KL(p || skew * p + (1 - skew) * q), 0 < skew < 1.

    Forward KL against a student smoothed towards the teacher: bounded by
    -log(skew), so it stays finite where the student gives a teacher token
    probability ~0, with smaller-variance gradients. skew -> 0 is forward KL.
    f(t) = t log(t / (skew t + 1 - skew)).
    """

    skew: float = 0.1
    name: ClassVar[str] = "skew_kl"

    def __post_init__(self) -> None:
        _require_open_unit(self.name, "skew", self.skew, "skew -> 0 is forward_kl.")

    def terms(self, logp_teacher_N: Tensor, logq_student_N: Tensor) -> Tensor:
        return p_log_p_over_q(logp_teacher_N, log_mixture(logp_teacher_N, logq_student_N, self.skew))

    def generator(self, ratio: Tensor) -> Tensor:
        return torch.xlogy(ratio, ratio) - ratio * torch.log(self.skew * ratio + 1 - self.skew)


@dataclass(frozen=True)
class SkewReverseKL:
    """Skew reverse KL (DistiLLM): KL(q || skew * q + (1 - skew) * p), 0 < skew < 1.

    Reverse KL against a teacher mixed with the student: mode-seeking like reverse
    KL, bounded by -log(skew). skew -> 0 is reverse KL.
    f(t) = -log(skew + (1 - skew) t).
    """

    skew: float = 0.1
    name: ClassVar[str] = "skew_reverse_kl"

    def __post_init__(self) -> None:
        _require_open_unit(self.name, "skew", self.skew, "skew -> 0 is reverse_kl.")

    def terms(self, logp_teacher_N: Tensor, logq_student_N: Tensor) -> Tensor:
        return p_log_p_over_q(logq_student_N, log_mixture(logq_student_N, logp_teacher_N, self.skew))

    def generator(self, ratio: Tensor) -> Tensor:
        return -torch.log(self.skew + (1 - self.skew) * ratio)


# -- registry -------------------------------------------------------------------------------------

DIVERGENCES: dict[str, type[Divergence]] = {
    cls.name: cls for cls in (ForwardKL, ReverseKL, JSD, TotalVariation, AlphaDivergence, SkewKL, SkewReverseKL)
}


def divergence_names() -> list[str]:
    """The registered divergence names, sorted."""
    return sorted(DIVERGENCES)


def get_divergence(name: str, **params: Any) -> Divergence:
    """The divergence registered as ``name``, built with ``params`` (e.g. ``get_divergence("jsd", beta=0.1)``).

    Raises UnknownNameError (with a "did you mean") for an unknown name and
    ConfigError for an unknown or invalid parameter.
    """
    if name not in DIVERGENCES:
        raise UnknownNameError("divergence", name, DIVERGENCES)
    cls = DIVERGENCES[name]
    accepted = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for key in params:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            takes = ", ".join(accepted) or "no parameters"
            raise ConfigError(f"Divergence {name!r} has no parameter {key!r}.{hint} It takes: {takes}.")
    return cls(**params)


def resolve_divergence(divergence: str | Divergence) -> Divergence:
    """A Divergence from a registry name (default parameters) or an instance."""
    return get_divergence(divergence) if isinstance(divergence, str) else divergence
