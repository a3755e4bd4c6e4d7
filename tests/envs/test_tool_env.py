from __future__ import annotations

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

from opd.envs import ErrorKind, LocalSandbox, Task, ToolEnv, ToolSuite, Verdict, gym_id, make_suite, suite_names, tool
from opd.errors import EpisodeStateError, IsolationRequiredError

OPD_ENV_IDS = sorted(env_id for env_id in gym.registry if env_id.startswith("opd/"))
ISOLATED = {gym_id(name): name for name in suite_names() if make_suite(name).requires_isolation}
# Suites that run model-written code are checked on a Docker sandbox, so those params need an engine.
CHECKED_ENV_IDS = [pytest.param(env_id, marks=pytest.mark.docker) if env_id in ISOLATED else env_id for env_id in OPD_ENV_IDS]


def test_every_suite_is_a_gymnasium_id() -> None:
    assert sorted(gym_id(name) for name in suite_names()) == OPD_ENV_IDS
    assert len(OPD_ENV_IDS) >= 2


@pytest.mark.parametrize("env_id", CHECKED_ENV_IDS)
def test_check_env(env_id: str, request: pytest.FixtureRequest) -> None:
    if env_id in ISOLATED:
        with request.getfixturevalue("pool_for")(ISOLATED[env_id]).borrow() as sandbox:
            env = gym.make(env_id, sandbox=sandbox)
            check_env(env.unwrapped, skip_render_check=True)
            env.close()
        return
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_isolated_suites_refuse_to_run_without_a_sandbox() -> None:
    assert {"opd/Python-v0", "opd/Files-v0"} <= set(ISOLATED)
    for env_id in ISOLATED:
        with pytest.raises(IsolationRequiredError, match="isolating sandbox"):
            gym.make(env_id)


def test_same_seed_same_tasks(suite_name: str) -> None:
    first, second = ToolEnv(suite_name), ToolEnv(suite_name)
    for seed in range(20):
        assert first.reset(seed=seed)[0] == second.reset(seed=seed)[0]
        assert first.task == second.task
    prompts = {first.reset(seed=seed)[0] for seed in range(20)}
    assert len(prompts) > 15  # seeds actually vary the task


def test_unseeded_resets_continue_the_seeded_stream() -> None:
    a, b = ToolEnv("calculator"), ToolEnv("calculator")
    a.reset(seed=7)
    b.reset(seed=7)
    assert [a.reset()[0] for _ in range(5)] == [b.reset()[0] for _ in range(5)]


def test_calculator_step_returns_the_tool_result() -> None:
    env = ToolEnv("calculator")
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step('<tool_call>{"name": "multiply", "arguments": {"a": 6, "b": 7}}</tool_call>')
    assert obs == "42"
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["tool_calls"] == [{"name": "multiply", "arguments": {"a": 6, "b": 7}}]
    assert info["tool_results"][0]["status"] == "ok"
    assert info["error_kind"] is None
    assert info["messages"] == [{"role": "tool", "name": "multiply", "content": "42"}]
    timings = info["timings"]
    assert len(timings.tool_s) == 1 and 0 <= timings.tool_s[0] <= timings.step_s
    assert timings.parse_s <= timings.step_s


def test_final_answer_terminates_with_the_verifier_reward() -> None:
    env = ToolEnv("calculator")
    env.reset(seed=3)
    _, reward, terminated, truncated, info = env.step(str(env.task.answer))
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["verdict"]["success"] and info["termination"] == "final_answer"
    env.reset(seed=3)
    _, reward, terminated, _, info = env.step(str(env.task.answer + 1))
    assert (reward, terminated) == (0.0, True) and not info["verdict"]["success"]


def test_turn_limit_truncates() -> None:
    env = ToolEnv("calculator", max_turns=2)
    env.reset(seed=0)
    call = '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 1}}</tool_call>'
    assert env.step(call)[3] is False
    _, _, terminated, truncated, info = env.step(call)
    assert (terminated, truncated) == (False, True)
    assert info["termination"] == "max_turns"
    with pytest.raises(EpisodeStateError, match="reset"):
        env.step(call)


@pytest.mark.parametrize(
    ("action", "kind", "fragment"),
    [
        ("<tool_call>{oops</tool_call>", ErrorKind.PARSE, "not valid JSON"),
        ('<tool_call>{"name": "sqrt", "arguments": {"x": 4}}</tool_call>', ErrorKind.UNKNOWN_TOOL, "Available tools: add"),
        ('<tool_call>{"name": "add", "arguments": {"a": "1", "b": 2}}</tool_call>', ErrorKind.BAD_ARGUMENTS, "argument 'a'"),
        ('<tool_call>{"name": "divide", "arguments": {"a": 1, "b": 0}}</tool_call>', ErrorKind.TOOL_ERROR, "division by zero"),
        (b"\xff", ErrorKind.PARSE, "UTF-8"),
        ("", ErrorKind.PARSE, "empty"),
    ],
)
def test_model_errors_are_observations_and_counted(action: str | bytes, kind: str, fragment: str) -> None:
    env = ToolEnv("calculator")
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(action)
    assert obs.startswith("Error") and fragment in obs
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["error_kind"] == kind
    assert info["error_counts"] == {kind: 1}
    _, _, _, _, info = env.step(action)
    assert info["error_counts"] == {kind: 2}


def test_counts_start_over_on_reset() -> None:
    env = ToolEnv("calculator")
    env.reset(seed=0)
    env.step("")
    env.reset(seed=0)
    assert env.step('<tool_call>{"name": "add", "arguments": {"a": 1, "b": 1}}</tool_call>')[4]["error_counts"] == {}


def test_options_task_poses_a_given_task() -> None:
    env = ToolEnv("calculator")
    task = Task("custom", "Compute 2 + 2.", answer=4, data={"expression": "2 + 2", "nodes": []})
    obs, info = env.reset(options={"task": task})
    assert obs == "Compute 2 + 2." and info["task_id"] == "custom"
    assert env.step("4")[1] == 1.0


def test_render_ansi_shows_the_transcript() -> None:
    env = ToolEnv("calculator", render_mode="ansi")
    env.reset(seed=0)
    env.step('<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>')
    text = env.render()
    assert env.task.prompt in text and "\n5" in text


def test_isolation_is_required_where_the_suite_says_so() -> None:
    @tool
    def run(code: str) -> str:
        """Run code.

        Args:
            code: Source code.
        """
        return code

    base = make_suite("calculator")
    suite = ToolSuite(name="code", tools=(run,), tasks=base.tasks, verify=lambda t, a, c: Verdict(0.0, False), requires_isolation=True)
    with pytest.raises(IsolationRequiredError, match="does not isolate"):
        ToolEnv(suite, sandbox=LocalSandbox())
    with pytest.raises(IsolationRequiredError, match="isolating sandbox"):
        ToolEnv(suite)


def test_observations_lie_in_the_observation_space(suite_name: str) -> None:
    env = ToolEnv(suite_name)
    obs, _ = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    for action in ["é 中文 🙂 <b>", '<tool_call>{"name": "nope", "arguments": {}}</tool_call>']:
        obs = env.step(action)[0]
        assert env.observation_space.contains(obs)
        env.reset(seed=1)
