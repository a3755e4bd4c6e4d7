from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from opd.envs import JsonlTasks, ToolEnv, ToolSuite, Verdict, gym_id, make_suite, register_suite, suite_names
from opd.errors import ConfigError, UnknownNameError


def test_typo_suggests_the_close_name() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'calculator'") as caught:
        make_suite("calculater")
    assert isinstance(caught.value, KeyError)
    assert "'inventory'" in str(caught.value)


def test_bad_options_say_what_the_suite_accepts() -> None:
    with pytest.raises(ConfigError, match="difficulty"):
        make_suite("calculator", level=3)
    with pytest.raises(ConfigError, match="easy"):
        make_suite("calculator", difficulty="extreme")


def test_gym_make_passes_options_to_the_suite() -> None:
    env = gym.make("opd/Calculator-v0", difficulty="hard")
    env.reset(seed=0)
    assert env.unwrapped.task.prompt.count("(") >= 2
    env.close()


def test_gym_id() -> None:
    assert gym_id("key_value") == "opd/KeyValue-v0"


def test_duplicate_registration_needs_overwrite() -> None:
    with pytest.raises(ConfigError, match="already registered"):
        register_suite("calculator", lambda: make_suite("inventory"))


def test_a_jsonl_task_file_is_a_task_source(tmp_path) -> None:
    path = tmp_path / "tasks.jsonl"
    rows = [{"id": f"t{i}", "prompt": f"What is {i} + {i}?", "answer": 2 * i} for i in range(5)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    base = make_suite("calculator")
    suite = ToolSuite(
        name="doubling",
        tools=base.tools,
        tasks=JsonlTasks(path),
        verify=lambda task, answer, ctx: Verdict(float(answer.strip() == str(task.answer)), answer.strip() == str(task.answer)),
    )
    env = ToolEnv(suite)
    drawn = [env.reset(seed=s)[1]["task_id"] for s in range(20)]
    assert set(drawn) <= {r["id"] for r in rows} and len(set(drawn)) > 1
    assert drawn == [env.reset(seed=s)[1]["task_id"] for s in range(20)]
    env.reset(seed=0)
    assert env.step(str(env.task.answer))[1] == 1.0


def test_a_broken_jsonl_line_names_the_line(tmp_path) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"id": 1, "prompt": "ok"}\n{"prompt": "no id"}\n')
    with pytest.raises(ConfigError, match=r"tasks.jsonl:2"):
        JsonlTasks(path)
    with pytest.raises(ConfigError, match="does not exist"):
        JsonlTasks(tmp_path / "missing.jsonl")


def test_builtin_suites_are_registered() -> None:
    assert {"calculator", "inventory"} <= set(suite_names())
    rng = np.random.default_rng(0)
    for name in suite_names():
        assert make_suite(name).tasks.sample(rng).prompt


def test_a_task_may_offer_a_subset_of_the_suites_tools(tmp_path) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps({"id": "t", "prompt": "add 2 and 3", "answer": 5, "tools": ["add"]}) + "\n")
    base = make_suite("calculator")
    env = ToolEnv(ToolSuite("adding", base.tools, JsonlTasks(path), lambda t, a, c: Verdict(1.0, True)))
    _, info = env.reset(seed=0)
    assert [t["function"]["name"] for t in info["tools"]] == ["add"]  # what the model is shown
    observation, *_, step = env.step('<tool_call>{"name": "multiply", "arguments": {"a": 2, "b": 3}}</tool_call>')
    assert step["error_kind"] == "unknown_tool" and "Available tools: add." in observation
    path.write_text(json.dumps({"id": "t", "prompt": "p", "tools": ["sqrt"]}) + "\n")
    with pytest.raises(ConfigError, match=r"names tools \['sqrt'\] that suite 'broken' does not have"):
        ToolEnv(ToolSuite("broken", base.tools, JsonlTasks(path), lambda t, a, c: Verdict(1.0, True))).reset(seed=0)


def test_logs_incidents_sizes_the_id_space_and_rejects_what_no_id_fits() -> None:
    tasks = make_suite("logs", incidents=3).tasks
    drawn = {tasks.sample(np.random.default_rng(seed)).data["incident"] for seed in range(40)}
    assert drawn == {"INC-1000", "INC-1001", "INC-1002"}
    for bad in (0, 9001, "100"):
        with pytest.raises(ConfigError, match="incidents must be between 1 and 9000"):
            make_suite("logs", incidents=bad)
