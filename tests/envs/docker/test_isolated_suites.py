"""The python and files suites on Docker: compose end to end, scripted experts, verifiers that can say no."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import REPO_ROOT

from opd.envs import ToolEnv, play_expert

pytestmark = pytest.mark.docker


def test_compose_up_then_a_python_episode_end_to_end(python_pool, docker_client) -> None:
    # The session fixture ran `docker compose up -d` from the repo root; the pool attached to those containers.
    command = ["docker", "compose", "ps", "--format", "json"]
    ps = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    services = [json.loads(line) for line in ps.stdout.splitlines() if line.strip()]
    assert {s["Service"] for s in services} == {"python", "shell"} and all(s["State"] == "running" for s in services)
    with python_pool.borrow() as sandbox:
        assert sandbox.name.startswith("opd-sandboxes-python-")
        env = ToolEnv("python", sandbox=sandbox, difficulty="medium", render_mode="ansi")
        episode = play_expert(env, seed=3)
        assert episode.success and episode.terminated and episode.reward == 1.0
        assert "run_python" in env.render()


@pytest.mark.parametrize(("suite", "episodes"), [("python", 90), ("files", 60), ("logs", 60)])
def test_experts_solve_seeded_tasks_on_a_warm_sandbox(suite: str, episodes: int, pool_for) -> None:
    with pool_for(suite).borrow() as sandbox:
        envs = [ToolEnv(suite, sandbox=sandbox, difficulty=d) for d in ("easy", "medium", "hard")]
        failures = [seed for seed in range(episodes) if not play_expert(envs[seed % 3], seed).success]
    assert failures == []


@pytest.mark.parametrize("suite", ["python", "files", "logs"])
def test_same_seed_same_task(suite: str, pool_for) -> None:
    with pool_for(suite).borrow() as sandbox:
        env = ToolEnv(suite, sandbox=sandbox)
        env.reset(seed=7)
        first = env.task
        env.reset(seed=7)
        assert env.task == first
        assert len({env.reset(seed=seed)[1]["task_id"] for seed in range(20)}) > 15


def test_python_verifier_rejects_a_wrong_answer(python_pool) -> None:
    with python_pool.borrow() as sandbox:
        env = ToolEnv("python", sandbox=sandbox, difficulty="easy")
        env.reset(seed=0)
        _, reward, terminated, _, info = env.step(str(env.task.answer + 1))
        assert terminated and reward == 0.0 and "Expected" in info["verdict"]["reason"]


def test_files_hard_verifier_checks_the_sandbox_not_the_claim(shell_pool) -> None:
    with shell_pool.borrow() as sandbox:
        env = ToolEnv("files", sandbox=sandbox, difficulty="hard")
        env.reset(seed=0)
        _, reward, terminated, _, info = env.step("done")  # claims success without doing anything
        assert terminated and reward == 0.0 and "report.txt" in info["verdict"]["reason"]
        env.reset(seed=0)
        sandbox.write_file("report.txt", f"{env.task.answer['errors']}\n")  # half the work
        _, reward, _, _, info = env.step("done")
        assert reward == 0.5 and "moved to archive" in info["verdict"]["reason"]


def test_files_tools_refuse_paths_outside_the_work_dir(shell_pool) -> None:
    with shell_pool.borrow() as sandbox:
        env = ToolEnv("files", sandbox=sandbox, difficulty="easy")
        env.reset(seed=0)
        for path in ["/etc/passwd", "../x", "logs/../../etc"]:
            call = {"name": "read_file", "arguments": {"path": path}}
            observation, _, _, _, info = env.step(f"<tool_call>{json.dumps(call)}</tool_call>")
            assert info["error_kind"] == "tool_error" and "relative to the working directory" in observation


def test_logs_tools_run_in_the_container_and_the_verifier_reads_its_state(shell_pool) -> None:
    with shell_pool.borrow() as sandbox:
        env = ToolEnv("logs", sandbox=sandbox, difficulty="hard")
        env.reset(seed=0)
        path, errors = env.task.answer["path"], env.task.answer["errors"]
        _, reward, _, _, info = env.step(str(errors))  # the right count, but nothing archived
        assert reward == 0.5 and "archive" in info["verdict"]["reason"]
        env.reset(seed=0)
        steps = [
            ("search", {"text": env.task.data["incident"]}, path),
            ("count_lines", {"path": path, "text": " ERROR "}, str(errors)),
            ("archive", {"path": path}, "Moved"),
            ("list_dir", {"path": "archive"}, path.split("/")[-1]),
        ]
        for name, arguments, expected in steps:
            observation, _, _, _, info = env.step(f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>")
            assert info["error_kind"] is None and expected in observation, (name, observation)
        assert sandbox.exec(["ls", "archive"], env.limits).output.split() == [path.split("/")[-1]]  # really moved, in the container
        _, reward, terminated, _, _ = env.step(str(errors))
        assert terminated and reward == 1.0


@pytest.mark.parametrize(("name", "arguments"), [("archive", {"path": "../x"}), ("count_lines", {"path": "-r", "text": "x"})])
def test_logs_tools_refuse_paths_out_of_the_work_dir_and_options(name: str, arguments: dict, shell_pool) -> None:
    with shell_pool.borrow() as sandbox:
        env = ToolEnv("logs", sandbox=sandbox, difficulty="easy")
        env.reset(seed=0)
        observation, _, _, _, info = env.step(f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>")
        assert info["error_kind"] == "tool_error" and "path must" in observation, observation


def test_opd_suites_play_runs_a_sandboxed_suites_expert_in_docker(shell_pool) -> None:
    from typer.testing import CliRunner

    from opd.cli.app import app

    result = CliRunner().invoke(app, ["suites", "play", "logs", "--episodes", "2", "--difficulty", "hard"])
    assert result.exit_code == 0, result.output
    assert "logs: expert solved 2/2 tasks" in result.output and "archive" in result.output
