"""The top-k + tail approximation: a lower bound that converges to the exact divergence and equals it at k = V."""

from __future__ import annotations

import math

import pytest
import torch
from naive_divergences import CASES, case_id, naive, naive_coarse

from opd.distill import TopKLogprobs, get_divergence, token_divergence, topk_from_logits
from opd.errors import ConfigError

VOCAB = 12


def random_logits(seed: int, shape: tuple[int, ...] = (2, 3, VOCAB), scale: float = 2.0) -> torch.Tensor:
    return scale * torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_top_k_is_exact_at_k_equal_to_the_vocabulary(case) -> None:
    name, params = case
    divergence = get_divergence(name, **params)
    student, teacher = random_logits(0).requires_grad_(), random_logits(1)
    exact = token_divergence(student, teacher, divergence)
    (exact_grad,) = torch.autograd.grad(exact.sum(), student)
    approx = token_divergence(student, topk_from_logits(teacher, VOCAB), divergence)
    (approx_grad,) = torch.autograd.grad(approx.sum(), student)
    torch.testing.assert_close(approx, exact, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(approx_grad, exact_grad, rtol=1e-9, atol=1e-12)  # no NaN from the empty tail


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_top_k_lower_bounds_and_converges_as_k_grows(case) -> None:
    name, params = case
    divergence = get_divergence(name, **params)
    student, teacher = random_logits(2), random_logits(3)
    exact = token_divergence(student, teacher, divergence)
    approx = torch.stack([token_divergence(student, teacher, divergence, k=k) for k in range(1, VOCAB + 1)])
    assert (approx <= exact + 1e-12).all()  # data-processing inequality
    assert (approx[1:] >= approx[:-1] - 1e-12).all()  # a finer coarsening never loses divergence
    gaps = (exact - approx).amax(dim=(1, 2))
    assert gaps[0] > 1e-3 and gaps[-1] < 1e-12
    assert gaps[VOCAB // 2] < gaps[0]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_top_k_value_and_gradient_match_a_naive_coarsening(case) -> None:
    name, params = case
    student, teacher = random_logits(4).requires_grad_(), random_logits(5)
    ours = token_divergence(student, teacher, get_divergence(name, **params), k=4, chunk_rows=2)
    reference = naive(name, *naive_coarse(student, teacher, 4), **params)
    torch.testing.assert_close(ours, reference, rtol=1e-9, atol=1e-12)
    upstream = torch.rand(ours.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    (ours_grad,) = torch.autograd.grad((ours * upstream).sum(), student)
    (reference_grad,) = torch.autograd.grad((reference * upstream).sum(), student)
    torch.testing.assert_close(ours_grad, reference_grad, rtol=1e-7, atol=1e-9)


def test_topk_from_logits_keeps_the_largest_and_the_exact_tail() -> None:
    teacher = random_logits(7)
    top = topk_from_logits(teacher, 3)
    full_logprobs = torch.log_softmax(teacher, dim=-1)
    torch.testing.assert_close(top.logprobs, full_logprobs.sort(dim=-1, descending=True).values[..., :3])
    torch.testing.assert_close(full_logprobs.gather(-1, top.token_ids), top.logprobs)
    torch.testing.assert_close(top.tail_mass + top.logprobs.exp().sum(-1), torch.ones(2, 3, dtype=torch.float64))


def test_a_tail_below_float_epsilon_keeps_its_digits() -> None:
    logits = torch.full((1, 1, 6), -30.0)  # float32: tail ~ 4e-13, invisible in 1 - sum(top-k)
    logits[..., 0] = 0.0
    tail = topk_from_logits(logits, 1).tail_mass
    expected = 5 * math.exp(-30.0) / (1 + 5 * math.exp(-30.0))
    assert tail.item() == pytest.approx(expected, rel=1e-5)


def test_a_teacher_given_as_top_k_equals_the_k_argument() -> None:
    student, teacher = random_logits(8), random_logits(9)
    divergence = get_divergence("jsd", beta=0.3)
    torch.testing.assert_close(
        token_divergence(student, topk_from_logits(teacher, 5), divergence), token_divergence(student, teacher, divergence, k=5)
    )


def test_top_k_representation_is_validated() -> None:
    ids = torch.zeros(2, 3, 4, dtype=torch.int64)
    with pytest.raises(ConfigError, match="same"):
        TopKLogprobs(token_ids=ids, logprobs=torch.zeros(2, 3, 5), tail_mass=torch.zeros(2, 3))
    with pytest.raises(ConfigError, match="tail_mass"):
        TopKLogprobs(token_ids=ids, logprobs=torch.zeros(2, 3, 4), tail_mass=torch.zeros(2, 4))
    with pytest.raises(ConfigError, match="int64"):
        TopKLogprobs(token_ids=ids.int(), logprobs=torch.zeros(2, 3, 4), tail_mass=torch.zeros(2, 3))
    with pytest.raises(ConfigError, match="between 1 and"):
        topk_from_logits(torch.zeros(1, 1, 5), 6)
    with pytest.raises(ConfigError, match="already fixes k"):
        token_divergence(torch.zeros(1, 1, 5), topk_from_logits(torch.zeros(1, 1, 5), 2), k=3)
