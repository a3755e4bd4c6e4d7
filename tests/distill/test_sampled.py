"""The single-sample reverse-KL estimator: unbiased under the student's own samples."""

from __future__ import annotations

import pytest
import torch
from naive_divergences import naive_from_logits

from opd.distill import sampled_reverse_kl, token_logprobs
from opd.errors import ConfigError


def test_expectation_under_the_student_is_the_reverse_kl() -> None:
    """Monte Carlo with a fixed seed; tolerance 5 standard errors, the SE computed exactly from q and p."""
    generator = torch.Generator().manual_seed(0)
    positions, vocab, samples = 4, 9, 200_000
    student = 1.5 * torch.randn(1, positions, vocab, generator=generator, dtype=torch.float64)
    teacher = 1.5 * torch.randn(1, positions, vocab, generator=generator, dtype=torch.float64)
    q = torch.softmax(student, -1)[0]
    tokens = torch.multinomial(q, samples, replacement=True, generator=generator).T  # (samples, positions) ~ q
    student_logprobs = token_logprobs(student.expand(samples, -1, -1), tokens)
    teacher_logprobs = token_logprobs(teacher.expand(samples, -1, -1), tokens)
    estimate = sampled_reverse_kl(student_logprobs, teacher_logprobs).mean(0)
    exact = naive_from_logits("reverse_kl", student, teacher)[0]
    log_ratio = torch.log_softmax(student, -1)[0] - torch.log_softmax(teacher, -1)[0]
    variance = (q * log_ratio**2).sum(-1) - exact**2
    standard_error = (variance / samples).sqrt()
    assert ((estimate - exact).abs() < 5 * standard_error).all(), (estimate, exact, standard_error)
    assert (standard_error < 0.05 * exact).all()  # the tolerance is tight enough to mean something


def test_the_estimator_is_biased_under_the_wrong_sampler() -> None:
    """Sampling from the teacher instead gives -KL(p || q) in expectation: the test above can tell them apart."""
    generator = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(1, 1, 6, generator=generator), torch.randn(1, 1, 6, generator=generator)
    tokens = torch.multinomial(torch.softmax(teacher, -1)[0], 100_000, replacement=True, generator=generator).T
    student_logprobs = token_logprobs(student.expand(100_000, -1, -1), tokens)
    estimate = sampled_reverse_kl(student_logprobs, token_logprobs(teacher.expand(100_000, -1, -1), tokens))
    assert estimate.mean() < 0 < naive_from_logits("reverse_kl", student, teacher).item()


def test_token_logprobs_and_mask() -> None:
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 7, generator=generator, dtype=torch.float64)
    tokens = torch.randint(0, 7, (2, 3), generator=generator)
    expected = torch.tensor([[torch.log_softmax(logits[b, t], -1)[tokens[b, t]].item() for t in range(3)] for b in range(2)])
    torch.testing.assert_close(token_logprobs(logits, tokens), expected.double())
    mask = torch.tensor([[True, False, True], [False, True, True]])
    estimate = sampled_reverse_kl(expected, torch.zeros(2, 3, dtype=torch.float64), mask)
    assert (estimate[~mask] == 0).all() and (estimate[mask] == expected[mask]).all()
    with pytest.raises(ConfigError, match="same"):
        sampled_reverse_kl(expected, torch.zeros(2, 2))
