from __future__ import annotations

import pytest

from opd.envs import ToolEnv, play_expert


def test_expert_solves_1000_seeded_tasks(suite_name: str) -> None:
    env = ToolEnv(suite_name)
    failures = [(seed, episode) for seed in range(1000) if not (episode := play_expert(env, seed)).success]
    assert failures == []


@pytest.mark.parametrize("difficulty", ["easy", "hard"])
def test_expert_solves_every_difficulty(suite_name: str, difficulty: str) -> None:
    env = ToolEnv(suite_name, difficulty=difficulty)
    assert all(play_expert(env, seed).success for seed in range(200))


def test_difficulty_means_more_dependent_calls(suite_name: str) -> None:
    def mean_calls(difficulty: str) -> float:
        env = ToolEnv(suite_name, difficulty=difficulty)
        return sum(len(play_expert(env, seed).actions) - 1 for seed in range(50)) / 50

    assert mean_calls("easy") < mean_calls("medium") < mean_calls("hard")


def test_calculator_tasks_need_two_to_four_calls() -> None:
    for difficulty, calls in [("easy", 2), ("medium", 3), ("hard", 4)]:
        env = ToolEnv("calculator", difficulty=difficulty)
        assert {len(play_expert(env, seed).actions) - 1 for seed in range(50)} == {calls}


def test_expert_demonstrations_are_multimodal_but_seeded() -> None:
    env = ToolEnv("calculator", difficulty="hard")
    assert play_expert(env, 5).actions == play_expert(env, 5).actions
    # Same task, different expert randomness: the expert picks among equally right actions.
    env.reset(seed=11)
    variants = {play_expert(env, seed, task=env.task).actions for seed in range(30)}
    assert len(variants) > 1
