"""The tool-call format follows the playing model's template unless the config names one."""

from __future__ import annotations

import pytest
import torch

from opd.agents.policy import CausalLMPolicy, SamplingConfig
from opd.agents.rollout import collect_episodes
from opd.distill.config import TrainConfig
from opd.envs import HermesFormat, Llama3JsonFormat, ToolEnv
from opd.errors import ConfigError


def test_a_misspelt_format_fails_when_the_config_is_made() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'llama3_json'"):
        TrainConfig(student="s", teacher="t", tool_call_format="llama_json")


def test_envs_adopt_the_policys_format_but_keep_one_given_explicitly(models) -> None:
    policy = CausalLMPolicy.from_pretrained(str(models[0]))
    assert isinstance(policy.chat.call_format, HermesFormat)  # the tiny template writes <tool_call>
    policy.chat.call_format = Llama3JsonFormat()  # what `tool_call_format: llama3_json` sets
    adopting, explicit = ToolEnv("calculator", difficulty="easy"), ToolEnv("calculator", difficulty="easy", call_format=HermesFormat())
    sampling = SamplingConfig(max_new_tokens=4)
    collect_episodes(policy, [adopting, explicit], [0, 1], run_id="r", sampling=sampling, generator=torch.Generator().manual_seed(0))
    assert isinstance(adopting.call_format, Llama3JsonFormat) and isinstance(explicit.call_format, HermesFormat)
