"""The f-divergence family on full logits: against naive references, properties, limits, NaN safety, registry."""

from __future__ import annotations

import math

import pytest
import torch
from naive_divergences import CASES, case_id, naive, naive_from_logits, naive_loop, probs

from opd.distill import divergence_names, get_divergence, token_divergence
from opd.errors import ConfigError, UnknownNameError


def random_logits(seed: int, shape: tuple[int, ...] = (2, 6, 17), scale: float = 3.0, dtype=torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(shape, generator=generator, dtype=torch.float64)).to(dtype)


def full(name: str, params: dict[str, float], student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return token_divergence(student, teacher, get_divergence(name, **params))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_agrees_with_the_naive_reference_to_1e_5(case) -> None:
    name, params = case
    student, teacher = random_logits(0), random_logits(1)
    ours = full(name, params, student, teacher)  # float32 through our code
    reference = naive_from_logits(name, student, teacher, **params)  # float64, plain formula
    assert ours.dtype == torch.float32
    # rtol covers alpha = 2, whose values are in the hundreds (float32 keeps ~7 digits).
    torch.testing.assert_close(ours.double(), reference, atol=1e-5, rtol=1e-6)


ACCEPTANCE = [("forward_kl", {}), ("reverse_kl", {}), ("jsd", {"beta": 0.5}), ("jsd", {"beta": 0.2})]


@pytest.mark.parametrize("case", ACCEPTANCE, ids=case_id)
def test_acceptance_kls_and_jsd_match_an_explicit_loop(case) -> None:
    name, params = case
    student, teacher = random_logits(2, (3, 4, 23)), random_logits(3, (3, 4, 23))
    ours = full(name, params, student, teacher)
    p, q = probs(teacher), probs(student)
    for b in range(3):
        for t in range(4):
            expected = naive_loop(name, p[b, t].tolist(), q[b, t].tolist(), **params)
            assert abs(ours[b, t].item() - expected) < 1e-5


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_each_divergence_is_its_f_generator(case) -> None:
    """One family: sum_x q f(p / q) with the class's own f gives the same value as its log-space terms."""
    name, params = case
    divergence = get_divergence(name, **params)
    student, teacher = random_logits(4, dtype=torch.float64), random_logits(5, dtype=torch.float64)
    p, q = probs(teacher), probs(student)
    from_generator = (q * divergence.generator(p / q)).sum(-1)
    torch.testing.assert_close(full(name, params, student, teacher), from_generator, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_non_negative_and_zero_only_at_equality(case) -> None:
    name, params = case
    for seed in range(3):
        student, teacher = random_logits(10 + seed, dtype=torch.float64), random_logits(20 + seed, dtype=torch.float64)
        assert (full(name, params, student, teacher) > 1e-6).all()
        assert full(name, params, teacher, teacher).abs().max() < 1e-12


def test_jsd_is_symmetric_at_one_half_and_only_there() -> None:
    a, b = random_logits(30, dtype=torch.float64), random_logits(31, dtype=torch.float64)
    torch.testing.assert_close(full("jsd", {"beta": 0.5}, a, b), full("jsd", {"beta": 0.5}, b, a))
    assert not torch.allclose(full("jsd", {"beta": 0.2}, a, b), full("jsd", {"beta": 0.2}, b, a))


def test_jsd_is_bounded_by_the_binary_entropy_of_beta() -> None:
    # Nearly disjoint supports drive JSD(beta) to its maximum h(beta).
    peaked_a = torch.full((1, 1, 8), -60.0, dtype=torch.float64)
    peaked_a[..., 0] = 0.0
    peaked_b = peaked_a.roll(1, dims=-1)
    for beta in (0.1, 0.5, 0.8):
        value = full("jsd", {"beta": beta}, peaked_a, peaked_b).item()
        entropy = -(beta * math.log(beta) + (1 - beta) * math.log(1 - beta))
        assert value <= entropy + 1e-12
        assert value == pytest.approx(entropy, rel=1e-6)


def test_total_variation_is_bounded_by_one() -> None:
    student, teacher = random_logits(40, scale=30.0, dtype=torch.float64), random_logits(41, scale=30.0, dtype=torch.float64)
    tv = full("tv", {}, student, teacher)
    assert (tv <= 1.0 + 1e-12).all() and tv.max() > 0.9  # sharp, different distributions get close to 1


@pytest.mark.parametrize(("alpha", "limit"), [(-1 + 1e-5, "forward_kl"), (1 - 1e-5, "reverse_kl")])
def test_alpha_divergence_approaches_the_kls(alpha: float, limit: str) -> None:
    student, teacher = random_logits(50, dtype=torch.float64), random_logits(51, dtype=torch.float64)
    near = full("alpha", {"alpha": alpha}, student, teacher)
    target = naive_from_logits(limit, student, teacher)
    torch.testing.assert_close(near, target, rtol=1e-3, atol=0)
    at_limit = full("alpha", {"alpha": round(alpha)}, student, teacher)
    torch.testing.assert_close(at_limit, target, rtol=1e-10, atol=1e-12)


# The KL limits are first order: the next term grows with max p/q, so these use mild logits (scale 1).
@pytest.mark.parametrize(("beta", "limit", "weight"), [(1e-8, "forward_kl", 1e-8), (1 - 1e-8, "reverse_kl", 1e-8)])
def test_jsd_scaled_approaches_the_kls(beta: float, limit: str, weight: float) -> None:
    student, teacher = random_logits(52, scale=1.0, dtype=torch.float64), random_logits(53, scale=1.0, dtype=torch.float64)
    scaled = full("jsd", {"beta": beta}, student, teacher) / weight
    torch.testing.assert_close(scaled, naive_from_logits(limit, student, teacher), rtol=1e-4, atol=0)


@pytest.mark.parametrize(("name", "limit"), [("skew_kl", "forward_kl"), ("skew_reverse_kl", "reverse_kl")])
def test_skews_approach_the_kls_as_skew_goes_to_zero(name: str, limit: str) -> None:
    student, teacher = random_logits(54, scale=1.0, dtype=torch.float64), random_logits(55, scale=1.0, dtype=torch.float64)
    near = full(name, {"skew": 1e-8}, student, teacher)
    torch.testing.assert_close(near, naive_from_logits(limit, student, teacher), rtol=1e-5, atol=0)


def _with_zeros(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits where the first 3 tokens are impossible for both and token 3 only for the teacher."""
    student = random_logits(seed, dtype=torch.float64)
    teacher = random_logits(seed + 1, dtype=torch.float64)
    student[..., :3] = float("-inf")
    teacher[..., :4] = float("-inf")
    return student.requires_grad_(), teacher


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_zero_probability_tokens_give_no_nan_in_values_or_gradients(case) -> None:
    name, params = case
    student, teacher = _with_zeros(60)
    values = full(name, params, student, teacher)
    assert not values.isnan().any()
    finite = values.isfinite()
    # Only the divergences that are truly infinite when the teacher gives a student token 0 may be inf.
    if name in ("forward_kl", "jsd", "tv", "skew_kl", "skew_reverse_kl") or (name == "alpha" and params["alpha"] < 1):
        assert finite.all(), name
    (values[finite].sum()).backward()
    assert student.grad.isfinite().all()
    assert (student.grad[..., :3] == 0).all()  # impossible tokens get no gradient


def test_zero_probability_values_match_the_reference_on_the_support() -> None:
    student, teacher = _with_zeros(62)
    p, q = probs(teacher[..., 4:]), probs(student.detach()[..., 3:])
    # Forward KL only sums where the teacher has mass; renormalising gives each side its distribution.
    p_full = torch.cat([torch.zeros(*p.shape[:-1], 1, dtype=p.dtype), p], dim=-1)  # token 3: p = 0, q > 0
    expected = (p_full * torch.log(torch.where(p_full > 0, p_full / q, torch.ones_like(q)))).sum(-1)
    torch.testing.assert_close(full("forward_kl", {}, student, teacher), expected)
    assert torch.isinf(full("reverse_kl", {}, student, teacher)).all()  # q > 0 where p = 0


def test_unknown_names_and_parameters_say_what_exists() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'reverse_kl'") as caught:
        get_divergence("revers_kl")
    assert isinstance(caught.value, KeyError)
    assert "'jsd'" in str(caught.value)
    with pytest.raises(ConfigError, match="Did you mean 'beta'"):
        get_divergence("jsd", bta=0.2)
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        get_divergence("jsd", beta=1.0)
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        get_divergence("skew_kl", skew=0.0)


def test_the_registry_names_every_divergence_the_design_lists() -> None:
    assert {"forward_kl", "reverse_kl", "jsd", "tv", "alpha", "skew_kl", "skew_reverse_kl"} <= set(divergence_names())
    for name in divergence_names():
        assert get_divergence(name).name == name


def test_naive_reference_itself_catches_a_wrong_direction() -> None:
    """Guards the guard: forward and reverse KL differ on these logits, so a swapped direction fails the tests."""
    student, teacher = random_logits(70), random_logits(71)
    p, q = probs(teacher), probs(student)
    assert (naive("forward_kl", p, q) - naive("reverse_kl", p, q)).abs().max() > 1e-2
