"""`opd train` and `opd eval` on suites whose tools run in Docker: a pool per process, nothing leaked, resume.

Every test drives the real engine. Training attaches to the session's compose
sandboxes where it can (creating a container costs seconds on vfs); the tests
of a killed or interrupted run start containers of their own, because those
are what a dead run could leak.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT
from typer.testing import CliRunner

from opd.agents.tiny import build_tiny_model, build_word_tokenizer, expert_texts
from opd.cli.app import app
from opd.envs import ToolEnv, make_suite
from opd.envs.docker.hardening import OWNER_LABEL, SANDBOX_LABEL
from opd.envs.lending import SandboxConfig, borrowed, open_sandboxes
from opd.errors import SandboxError
from opd.trajectories import TrajectoryStore

pytestmark = [pytest.mark.docker, pytest.mark.slow]
EASY = {"difficulty": "easy"}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, python_pool, shell_pool) -> tuple[Path, Path]:
    """A tiny student and teacher whose word tokenizer knows the python and files experts' words (played in Docker)."""
    directory = tmp_path_factory.mktemp("sandboxed-models")
    texts = []
    for suite, pool in (("python", python_pool), ("files", shell_pool), ("logs", shell_pool)):
        with pool.borrow() as sandbox:
            texts += expert_texts(ToolEnv(suite, sandbox=sandbox, **EASY), 6)
    tokenizer = build_word_tokenizer(texts, directory / "student", numbers=range(0, 300))
    build_tiny_model(tokenizer, directory / "student", layers=1, hidden=16, heads=2, seed=0)
    build_tiny_model(tokenizer, directory / "teacher", layers=1, hidden=16, heads=2, seed=1)
    return directory / "student", directory / "teacher"


def write_config(models: tuple[Path, Path], directory: Path, suite: str, *, updates: int = 2, **sandbox) -> Path:
    student, teacher = models
    settings = {
        "student": str(student), "teacher": str(teacher), "suite": suite, "suite_options": EASY, "max_turns": 2,
        "store": str(directory / "store.db"), "output_dir": str(directory / "out"), "updates": updates,
        "episodes_per_update": 2, "eval_every": 0, "eval_episodes": 2, "checkpoint_every": 1, "teacher_k": 8,
        "sampling": {"max_new_tokens": 16}, "tensorboard": False, "sandbox": {"size": 1, "timeout_s": 5, **sandbox},
    }  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "run.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def owned_containers(client, pid: int | None = None) -> list[str]:
    """Pool-started sandbox containers (of process ``pid``, or of anyone)."""
    # ignore_removed: the list inspects each container, and one the run is removing can vanish in between.
    found = client.containers.list(all=True, filters={"label": [f"{SANDBOX_LABEL}=1", OWNER_LABEL]}, ignore_removed=True)
    return [c.name for c in found if pid is None or c.labels[OWNER_LABEL].split(":")[1] == str(pid)]


@pytest.mark.parametrize("suite", ["python", "files", "logs"])
def test_opd_train_and_eval_run_on_a_sandboxed_suite(suite: str, models, tmp_path: Path, docker_client) -> None:
    runner = CliRunner()
    trained = runner.invoke(app, ["train", str(write_config(models, tmp_path, suite))])
    assert trained.exit_code == 0, trained.output
    assert "done: 2 updates" in trained.output
    with TrajectoryStore(tmp_path / "store.db", create=False) as store:
        episodes = [e for batch in store.iter_episodes() for e in batch]
    assert len(episodes) == 4 and all(e.suite == suite and e.termination != "failed" for e in episodes)
    for episode in episodes:  # each ran in a compose sandbox of the suite's kind, under the configured limits
        info = episode.sandbox
        assert info["backend"] == "DockerSandbox" and info["isolated"] is True and info["limits"]["timeout_s"] == 5
        assert info["container"].startswith("opd-sandboxes-") and info["kind"] == make_suite(suite).sandbox_kind
    replayed = runner.invoke(app, ["episodes", "replay", episodes[0].id, "--store", str(tmp_path / "store.db")])
    assert replayed.exit_code == 0 and "identical" in replayed.output, replayed.output  # replayed in a Docker sandbox too
    checkpoint = tmp_path / "out" / "checkpoints" / "update-0000002" / "model"
    argv = ["eval", str(checkpoint), "--suite", suite, "-o", "difficulty=easy", "--episodes", "2", "--sandboxes", "1", "--json"]
    evaluated = runner.invoke(app, argv)
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout.strip().splitlines()[-1])["episodes"] == 2, evaluated.output
    assert owned_containers(docker_client, os.getpid()) == []  # attached, never started: nothing to leave


@pytest.mark.parametrize("death", ["killed", "removed"])
def test_a_dying_sandbox_fails_its_episode_and_is_replaced(death: str, docker_client) -> None:
    lender = open_sandboxes(SandboxConfig(attach=False, size=1, timeout_s=5), make_suite("python"))
    call = '<tool_call>{"name": "run_python", "arguments": {"code": "print(1)"}}</tool_call>'
    try:
        with borrowed(lender, 1) as (box,):
            dead = box.container_id
            env = ToolEnv("python", sandbox=box, max_turns=3, **EASY)
            env.reset(seed=0)
            assert env.step(call)[0].startswith("1")
            if death == "killed":
                docker_client.api.kill(dead)
            else:
                docker_client.api.remove_container(dead, force=True)
            with pytest.raises(SandboxError, match="no longer exists|died mid-episode"):
                env.step(call)  # an infrastructure failure: the rollout marks the episode failed with this reason
        with borrowed(lender, 1) as (fresh,):  # restarted (killed) or replaced by a new container (removed)
            assert (fresh.container_id == dead) == (death == "killed")
            env = ToolEnv("python", sandbox=fresh, max_turns=3, **EASY)
            env.reset(seed=0)
            assert env.step(call)[0].startswith("1")
    finally:
        lender.close()
    assert owned_containers(docker_client, os.getpid()) == []


def test_a_self_teacher_given_a_demonstration_plays_the_expert_in_a_sandbox(models, tmp_path: Path) -> None:
    config = write_config(models, tmp_path, "logs", updates=1)
    settings = {**yaml.safe_load(config.read_text()), "teacher": None, "self_teacher": {"context": "demonstration"}}
    config.write_text(yaml.safe_dump(settings))
    trained = CliRunner().invoke(app, ["train", str(config)])
    assert trained.exit_code == 0, trained.output
    with TrajectoryStore(tmp_path / "store.db", create=False) as store:
        episodes = [e for batch in store.iter_episodes() for e in batch if e.annotations.token_logprobs]
    assert len(episodes) == 2  # each scored by the student given the expert's demonstration, played in the container


def start_run(config: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "opd", "train", str(config)]
    return subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(condition, what: str, timeout_s: float = 240) -> None:
    give_up = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < give_up, f"gave up waiting for {what}"
        time.sleep(0.2)


def test_killed_and_interrupted_runs_leave_nothing_and_resume(models, tmp_path: Path, docker_client) -> None:
    config = write_config(models, tmp_path, "python", updates=3, attach=False)
    checkpoints = tmp_path / "out" / "checkpoints"
    # kill -9 after the first checkpoint: its container outlives it, with a dead owner.
    killed = start_run(config)
    wait_for(lambda: (checkpoints / "update-0000001").is_dir(), "the first checkpoint")
    left = owned_containers(docker_client, killed.pid)
    killed.kill()
    killed.wait(timeout=30)
    assert len(left) == 1 and owned_containers(docker_client, killed.pid) == left
    # The next run sweeps it when its pool starts; Ctrl-C after its next checkpoint removes its own container.
    interrupted = start_run(config)
    wait_for(lambda: owned_containers(docker_client, interrupted.pid), "the second run's sandbox")
    assert owned_containers(docker_client, killed.pid) == []
    wait_for(lambda: (checkpoints / "update-0000002").is_dir(), "the second checkpoint")
    interrupted.send_signal(signal.SIGINT)
    output = interrupted.communicate(timeout=60)[0]
    assert interrupted.returncode != 0, output
    assert owned_containers(docker_client, interrupted.pid) == []
    # The third run resumes from update 2 and finishes; nothing of any of the three runs is left.
    done = subprocess.run([sys.executable, "-m", "opd", "train", str(config)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "done: 3 updates" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    assert (checkpoints / "update-0000003").is_dir()
    assert [name for pid in (killed.pid, interrupted.pid) for name in owned_containers(docker_client, pid)] == []
    with TrajectoryStore(tmp_path / "store.db", create=False) as store:
        assert all(e.sandbox["backend"] == "DockerSandbox" for batch in store.iter_episodes() for e in batch)


def test_two_torchrun_processes_take_disjoint_shares_of_the_compose_sandboxes(models, tmp_path: Path, docker_client) -> None:
    # The session's compose project runs two python sandboxes: rank 0 attaches to one, rank 1 to the other.
    config = write_config(models, tmp_path, "python", updates=2)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    argv = [*launcher, "-m", "opd", "train", str(config)]
    done = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with TrajectoryStore(tmp_path / "store.db", create=False) as store:
        episodes = [e for batch in store.iter_episodes() for e in batch]
    containers = {rank: {e.sandbox["container"] for e in episodes if e.writer["rank"] == rank} for rank in (0, 1)}
    assert len(episodes) == 4 and all(len(names) == 1 for names in containers.values()), containers
    assert containers[0].isdisjoint(containers[1]) and all(n.startswith("opd-sandboxes-python-") for n in containers[0] | containers[1])
    assert owned_containers(docker_client) == []


def test_the_demo_recipe_builds_and_compares_on_a_sandboxed_suite(tmp_path: Path, docker_client) -> None:
    """`opd bootstrap logs` and `benchmarks/opd_vs_sft.py --suite logs`: demonstrations, evaluations and both arms in Docker."""
    from opd.distill.demo import DemoConfig, run_demo

    config = DemoConfig(
        workdir=str(tmp_path / "demo"), store=str(tmp_path / "opd.db"), suite="logs", suite_options=EASY, demonstrations=4,
        teacher_steps=1, teacher_target=0.0, warmup_steps=0, budget_tokens=1, episodes_per_update=2, eval_episodes=2,
        eval_every=0, sandbox=SandboxConfig(size=1, timeout_s=5),
    )  # fmt: skip
    result = run_demo(config, report=lambda _: None)
    assert result.teacher.episodes == result.student_start.episodes == 2
    assert all(result.arms[arm].labelled_tokens > 0 and result.arms[arm].final_eval.episodes == 2 for arm in ("sft", "opd"))
    with TrajectoryStore(tmp_path / "opd.db", create=False) as store:
        episodes = [e for batch in store.iter_episodes() for e in batch]
    assert {e.suite for e in episodes} == {"logs"} and len(episodes) >= 4
    assert all(e.sandbox["backend"] == "DockerSandbox" and e.sandbox["container"].startswith("opd-sandboxes-") for e in episodes)
    assert owned_containers(docker_client, os.getpid()) == []  # attached to the session's compose sandboxes, nothing started
