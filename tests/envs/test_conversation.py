"""Conversations in the env: follow-up user turns, state carried over, each turn and the whole graded."""

from __future__ import annotations

import json
from pathlib import Path

from opd.envs import JsonlTasks, ToolEnv, ToolSuite, Verdict, make_suite, play_expert
from opd.envs.conversation import StateUser


def test_the_two_turn_inventory_expert_solves_both_turns() -> None:
    env = ToolEnv("inventory", difficulty="easy", turns=2)
    for seed in range(5):
        played = play_expert(env, seed)
        assert played.success and played.reward == 1.0
        answers = [i for i, info in enumerate(played.step_infos) if "turn_verdict" in info]
        assert len(answers) == 2 and played.actions[answers[0]] == "done"
        first = played.step_infos[answers[0]]
        assert first["turn_verdict"] == {"user_turn": 0, "reward": 1.0, "success": True, "reason": "All products restocked exactly."}
        assert first["messages"][0]["role"] == "user" and first["messages"][0]["user_turn"] == 1
        assert played.observations[answers[0] + 1].startswith("Now restock the ")  # the follow-up is the observation
        assert not played.terminated or played.rewards[answers[0]] == 0.0  # only the whole conversation is rewarded


def test_a_wrong_first_turn_is_graded_and_the_conversation_goes_on() -> None:
    env = ToolEnv("inventory", difficulty="easy", turns=2)
    env.reset(seed=0)
    observation, reward, terminated, _, info = env.step("done")  # nothing ordered yet
    assert not terminated and reward == 0.0 and observation.startswith("Now restock")
    assert info["turn_verdict"]["success"] is False and info["assistant_message"]["verdict"]["user_turn"] == 0
    _, reward, terminated, _, info = env.step("done")
    assert terminated and reward == 0.0 and info["verdict"]["success"] is False
    assert "Turn 1: 0 of 1 products" in info["verdict"]["reason"] and "Turn 2: 0 of 2 products" in info["verdict"]["reason"]


def test_one_turn_tasks_are_unchanged() -> None:
    one = play_expert(ToolEnv("inventory", difficulty="easy"), 0)
    assert one.success and sum("turn_verdict" in info for info in one.step_infos) == 1
    assert one.step_infos[-1]["verdict"]["reason"] == "All products restocked exactly."
    assert make_suite("inventory", turns=1).tasks.sample(__import__("numpy").random.default_rng(0)).follow_ups == ()


def test_follow_ups_from_jsonl_and_from_the_state(tmp_path: Path) -> None:
    base = make_suite("calculator")
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"id": "a", "prompt": "add 2 and 3", "answer": [5, 10], "follow_ups": ["now double it"]}) + "\n")

    def verify(task, answer, ctx):
        ok = answer.strip() == str(task.answer[min(ctx.user_turn, 1)])
        return Verdict(float(ok), ok)

    scripted = ToolEnv(ToolSuite("chat", base.tools, JsonlTasks(path), verify))
    scripted.reset(seed=0)
    assert scripted.step("5")[0] == "now double it"
    assert scripted.step("10")[1:3] == (1.0, True)

    def nag(task, ctx, verdicts):  # the user asks again until the answer is right, reading the state the tools left
        return None if verdicts[-1].success else f"No. You made {ctx.state.get('calls', 0)} calls; try again."

    stateful = ToolEnv(ToolSuite("nag", base.tools, JsonlTasks(path), verify, user=StateUser(nag, max_turns=3)))
    stateful.reset(seed=0)
    assert stateful.step("4")[0] == "No. You made 0 calls; try again."
    assert stateful.step("4")[2] is False
    _, reward, terminated, _, info = stateful.step("4")  # the third turn is the user's last, whatever nag says
    assert terminated and reward == 0.0 and info["verdict"]["reason"].count("Turn") == 3


def test_the_two_turn_calculator_follows_up_on_the_first_answer() -> None:
    env = ToolEnv("calculator", difficulty="easy", prompt_style="terse", max_value=99, turns=2)
    orders = set()
    for seed in range(20):
        played = play_expert(env, seed)
        assert played.success and played.reward == 1.0
        answers = [i for i, info in enumerate(played.step_infos) if "turn_verdict" in info]
        assert [played.step_infos[i]["turn_verdict"]["user_turn"] for i in answers] == [0, 1]
        follow_up = played.observations[answers[0] + 1]
        assert follow_up.startswith("Then ") and follow_up.endswith(".")
        first_answer = played.actions[answers[0]]
        second_call = json.loads(played.actions[answers[0] + 1].split("\n")[1])  # the follow-up's one call uses turn 1's result
        assert int(first_answer) in (second_call["arguments"]["a"], second_call["arguments"]["b"])
        orders.add(second_call["arguments"]["a"] == int(first_answer))
        assert 0 <= int(played.actions[-1]) <= 99
    assert orders == {True, False}  # the expert is multimodal in the follow-up too (add and multiply either way round)


def test_the_calculators_second_turn_is_graded_on_its_own_result() -> None:
    env = ToolEnv("calculator", difficulty="easy", prompt_style="terse", max_value=99, turns=2)
    _, info = env.reset(seed=3)
    first, second = env.task.data["turn_answers"]
    observation, reward, terminated, _, info = env.step(str(first))  # right without tools: graded on the number
    assert not terminated and observation.startswith("Then ") and info["turn_verdict"]["success"]
    _, reward, terminated, _, info = env.step(str(second + 1))
    assert terminated and reward == 0.5 and not info["verdict"]["success"]
    assert f"Turn 2: Expected {second}, got {second + 1}." in info["verdict"]["reason"]
    one_turn = make_suite("calculator", difficulty="easy", prompt_style="terse", max_value=99).tasks.sample(
        __import__("numpy").random.default_rng(0)
    )
    assert one_turn.follow_ups == () and "turn_answers" not in one_turn.data  # a one-turn task carries no conversation
