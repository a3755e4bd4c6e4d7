from __future__ import annotations

import pytest
import torch

from opd.agents.policy import CausalLMPolicy, SamplingConfig, left_pad, pick_tokens
from opd.errors import ConfigError

PROMPTS = ["Compute 1 + 2.", "Compute (3 * 4) - 5 using the calculator tools, one operation per call."]


def contexts(policy: CausalLMPolicy) -> list[list[int]]:
    return [policy.chat.prompt_ids([{"role": "user", "content": p}], None) for p in PROMPTS]


def test_loads_through_from_pretrained(policy: CausalLMPolicy, tiny_model_dir) -> None:
    assert policy.name == str(tiny_model_dir)
    assert policy.tokenizer.convert_ids_to_tokens(policy.chat.stop_ids) == ["<|im_end|>", "</tool_call>"]


def test_cached_batched_generation_matches_a_full_forward(policy: CausalLMPolicy) -> None:
    generator = torch.Generator().manual_seed(0)
    generations = policy.generate(contexts(policy), SamplingConfig(max_new_tokens=12), generator=generator)
    for context, generation in zip(contexts(policy), generations, strict=True):
        full = torch.tensor([context + generation.token_ids])
        logprobs = torch.log_softmax(policy.model(full).logits.float(), dim=-1)[0]
        expected = [logprobs[len(context) - 1 + i, t].item() for i, t in enumerate(generation.token_ids)]
        assert generation.logprobs == pytest.approx(expected, abs=1e-5)


def test_left_padding_does_not_change_greedy_output(policy: CausalLMPolicy) -> None:
    greedy = SamplingConfig(temperature=0.0, max_new_tokens=10)
    together = policy.generate(contexts(policy), greedy)
    alone = [policy.generate([c], greedy)[0] for c in contexts(policy)]
    assert [g.token_ids for g in together] == [g.token_ids for g in alone]
    assert [g.logprobs for g in together] == [pytest.approx(g.logprobs, abs=1e-5) for g in alone]


def test_a_seeded_generator_reproduces_samples(policy: CausalLMPolicy) -> None:
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=10)
    first = policy.generate(contexts(policy), sampling, generator=torch.Generator().manual_seed(7))
    second = policy.generate(contexts(policy), sampling, generator=torch.Generator().manual_seed(7))
    assert first == second


def test_generation_stops_at_a_stop_token(policy: CausalLMPolicy) -> None:
    for generation in policy.generate(contexts(policy) * 4, SamplingConfig(max_new_tokens=30), generator=torch.Generator().manual_seed(1)):
        stops = [i for i, t in enumerate(generation.token_ids) if t in policy.chat.stop_ids]
        assert stops in ([], [len(generation.token_ids) - 1])
        assert len(generation.token_ids) <= 30


def test_top_p_keeps_the_smallest_prefix() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    picks = {int(pick_tokens(logits, SamplingConfig(top_p=0.7), torch.Generator().manual_seed(s))) for s in range(200)}
    assert picks == {0, 1}
    assert int(pick_tokens(logits, SamplingConfig(temperature=0.0), None)) == 0


def test_left_pad() -> None:
    ids, mask = left_pad([[1, 2, 3], [4]], 0, torch.device("cpu"))
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_bad_sampling_settings() -> None:
    with pytest.raises(ConfigError, match="top_p"):
        SamplingConfig(top_p=0.0)
