"""A simulated user through litellm, against a real OpenAI-compatible server on loopback (tests/chat_server.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from chat_server import chat_app, constant_judge, serve

from opd.agents.simulated_user import SimulatedUser, SimulatedUserConfig
from opd.envs import Task, ToolEnv, ToolSuite, Verdict, make_suite
from opd.errors import SandboxError


class GoalTasks:
    def sample(self, rng):
        return Task(id="g", prompt="What is 2 + 3?", answer=5, data={"user_goal": "learn 2 + 3, then double it"})


def speaker(messages: list[dict]) -> str:
    """The user model: one follow-up after the first answer, then the stop marker."""
    spoken = sum(m["role"] == "assistant" for m in messages)
    return "Now double it." if spoken == 1 else "###STOP###"


def suite(user: SimulatedUser) -> ToolSuite:
    return ToolSuite("simulated", make_suite("calculator").tools, GoalTasks(), lambda t, a, c: Verdict(1.0, True), user=user)


def test_the_model_poses_follow_ups_until_it_stops_and_replies_are_cached_and_costed(tmp_path: Path) -> None:
    app, log = chat_app(constant_judge(), speaker=speaker)
    with serve(app) as base:
        config = SimulatedUserConfig(model="openai/user-sim", api_base=base, cache=str(tmp_path / "user.db"))
        for run in range(2):
            user = SimulatedUser(config)
            env = ToolEnv(suite(user))
            env.reset(seed=0)
            observation, _, terminated, _, info = env.step("5")
            assert observation == "Now double it." and not terminated
            usage = info["messages"][0]["usage"]
            assert (usage["calls"], usage["cached"]) == ((1, 0) if run == 0 else (0, 1))
            assert usage["prompt_tokens"] > 0 or run == 1
            assert env.step("10")[2] is True  # the model said the stop marker: the conversation ends
            user.close()
    assert log.requests == 2, "the second run must be served from the cache"
    first = log.bodies[0]["messages"]
    assert "learn 2 + 3, then double it" in first[0]["content"] and "###STOP###" in first[0]["content"]
    assert [(m["role"], m["content"]) for m in first[1:]] == [("assistant", "What is 2 + 3?"), ("user", "5")]  # seen as the user


def test_a_user_model_that_cannot_answer_fails_the_episode_with_the_reason() -> None:
    app, _ = chat_app(constant_judge(), speaker=speaker, faults={"error": 1.0})
    with serve(app) as base:
        env = ToolEnv(suite(SimulatedUser(SimulatedUserConfig(model="openai/user-sim", api_base=base, max_retries=1))))
        env.reset(seed=0)
        with pytest.raises(SandboxError, match="simulated user 'openai/user-sim' gave no reply after 2 attempts"):
            env.step("5")


def test_episodes_show_prints_what_each_simulated_follow_up_cost(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from opd.agents import expert_episode
    from opd.cli.app import app
    from opd.envs import FinalAnswer
    from opd.trajectories import Run, TrajectoryStore

    class Answers:  # a scripted agent: the right answer to each user turn
        def act(self, task, history, rng):
            return FinalAnswer("10" if history else "5")

    app_, _ = chat_app(constant_judge(), speaker=speaker)
    with serve(app_) as base:
        user = SimulatedUser(SimulatedUserConfig(model="openai/user-sim", api_base=base))
        played = expert_episode(ToolEnv(dataclasses.replace(suite(user), expert=Answers())), 0, run_id="r" * 32)
    with TrajectoryStore(tmp_path / "s.db") as store:
        store.add_run(Run(id="r" * 32))
        store.write_episode(played)
    shown = CliRunner().invoke(app, ["episodes", "show", played.id, "--store", str(tmp_path / "s.db")], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "user (turn 2) Now double it." in shown.output and "simulated user: 1 calls + 0 cached" in shown.output
