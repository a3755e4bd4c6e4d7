from __future__ import annotations

import numpy as np
import pytest

from opd.envs import ToolEnv, ToolEnvBatch, Turn, expert_action
from opd.envs.experts import record_turn
from opd.errors import ConfigError


def test_batch_runs_every_episode_to_its_own_end() -> None:
    batch = ToolEnvBatch([ToolEnv("inventory", difficulty=d) for d in ("easy", "hard", "medium")])
    batch.reset(seeds=[1, 2, 3])
    rngs = [np.random.default_rng(i) for i in range(3)]
    histories: list[list[Turn]] = [[], [], []]
    lengths, rewards = [0, 0, 0], [0.0, 0.0, 0.0]
    while batch.active:
        actions = {i: expert_action(batch.envs[i], histories[i], rngs[i]) for i in batch.active}
        for i, result in batch.step(actions).items():
            histories[i].append(record_turn(batch.envs[i], actions[i], result.observation))
            lengths[i] += 1
            rewards[i] = result.reward
    assert rewards == [1.0, 1.0, 1.0]
    assert lengths[0] < lengths[2] < lengths[1]  # episodes end at different times


def test_stepping_a_finished_env_is_an_error() -> None:
    batch = ToolEnvBatch([ToolEnv("calculator"), ToolEnv("calculator")])
    batch.reset(seeds=[0, 1])
    assert batch.step({0: "7"})[0].done
    assert batch.active == [1]
    with pytest.raises(ConfigError, match=r"\[0\]"):
        batch.step({0: "7"})


def test_reset_needs_one_seed_per_env() -> None:
    with pytest.raises(ConfigError, match="Expected 2 seeds"):
        ToolEnvBatch([ToolEnv("calculator"), ToolEnv("calculator")]).reset(seeds=[0])
