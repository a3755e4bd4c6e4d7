from __future__ import annotations

import numpy as np
import torch

from opd.agents import replay_episode
from opd.agents.policy import CausalLMPolicy, Generation, SamplingConfig
from opd.agents.rollout import collect_episodes, expert_demonstration
from opd.envs import LocalSandbox, ToolEnv
from opd.errors import SandboxError
from opd.trajectories import Run, TrajectoryStore


def rollout(policy: CausalLMPolicy, n: int = 6, seed: int = 0, suite: str = "calculator"):
    envs = [ToolEnv(suite, difficulty="easy", max_turns=3) for _ in range(n)]
    return collect_episodes(
        policy, envs, list(range(n)), run_id="r" * 32, sampling=SamplingConfig(max_new_tokens=16),
        generator=torch.Generator().manual_seed(seed), suite_options={"difficulty": "easy"},
    )  # fmt: skip


def test_episode_tokens_are_the_prompt_then_each_turn_appended(policy: CausalLMPolicy) -> None:
    for episode in rollout(policy):
        first = episode.steps[0]
        prompt = policy.chat.prompt_ids(list(episode.initial_messages), ToolEnv("calculator").suite.tool_schemas)
        assert first.token_ids[~first.policy_mask].tolist() == prompt
        for step in episode.steps:
            generated = step.token_ids[step.policy_mask]
            assert step.policy_mask[: len(step.token_ids) - len(generated)].sum() == 0  # prefix, then the policy's tokens
            assert policy.chat.action_text(generated.tolist()) == step.action
            assert np.isfinite(step.logprobs[step.policy_mask]).all() and np.isnan(step.logprobs[~step.policy_mask]).all()


def test_rollouts_are_reproducible_and_replayable(policy: CausalLMPolicy) -> None:
    first, second = rollout(policy, seed=5), rollout(policy, seed=5)
    assert [e.steps for e in first] == [e.steps for e in second]
    for episode in first:
        assert replay_episode(episode).identical


def test_rollout_episodes_round_trip_through_the_store(policy: CausalLMPolicy) -> None:
    with TrajectoryStore("sqlite://") as store:
        store.add_run(Run(id="r" * 32))
        episodes = rollout(policy, n=4, suite="inventory")
        store.write_episodes(episodes)
        for episode in episodes:
            loaded = store.get_episode(episode.id)
            assert loaded == episode and loaded.policy_model == policy.name and loaded.chat_template_hash == policy.chat_template_hash


class FailingSandbox(LocalSandbox):
    """Test double for an infrastructure fault (a container that died between episodes) that a local run cannot cause.

    Mid-episode deaths of real containers are tested on the engine (tests/distill/test_sandboxed_training.py).
    """

    def reset(self):
        raise SandboxError("the container stopped answering")


def test_a_sandbox_failure_fails_that_episode_and_the_rest_go_on(policy: CausalLMPolicy) -> None:
    demonstration = expert_demonstration(policy.chat, ToolEnv("calculator", difficulty="easy"), 0, run_id="r")
    first_call = demonstration.steps[0].token_ids[demonstration.steps[0].policy_mask].tolist()

    class ScriptedPolicy(CausalLMPolicy):
        """Writes the expert's first tool call, so that the env really runs a tool."""

        def generate(self, contexts, sampling, *, generator=None):
            return [Generation(first_call, [0.0] * len(first_call)) for _ in contexts]

    scripted = ScriptedPolicy(policy.model, policy.tokenizer, name="scripted")
    envs = [
        ToolEnv("calculator", difficulty="easy", max_turns=2),
        ToolEnv("calculator", difficulty="easy", max_turns=2, sandbox=FailingSandbox()),
    ]
    healthy, broken = collect_episodes(scripted, envs, [0, 0], run_id="r", sampling=SamplingConfig(max_new_tokens=4))
    assert broken.termination == "failed" and "container stopped answering" in broken.failure_reason and broken.steps == ()
    assert healthy.termination == "max_turns" and len(healthy.steps) == 2 and healthy.steps[0].error_kind is None


def test_with_a_generator_per_env_an_episode_does_not_depend_on_its_batch_neighbours(policy: CausalLMPolicy) -> None:
    def play(seeds: list[int]) -> dict[int, list[list[int]]]:
        envs = [ToolEnv("calculator", difficulty="easy", max_turns=3) for _ in seeds]
        generators = [torch.Generator().manual_seed(1000 + seed) for seed in seeds]
        episodes = collect_episodes(policy, envs, seeds, run_id="r" * 32, sampling=SamplingConfig(max_new_tokens=16), generator=generators)
        return {e.seed: [s.token_ids.tolist() for s in e.steps] for e in episodes}

    together = play([0, 1, 2, 3, 4, 5])
    apart = {**play([3]), **play([5, 0]), **play([4, 2, 1])}  # other neighbours, other padding, other batch positions
    assert together == apart
    assert len({str(tokens) for tokens in together.values()}) > 1  # the episodes did differ: this is not all-greedy
