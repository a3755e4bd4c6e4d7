"""Runs by name: `opd runs list`, `--run NAME_OR_ID_PREFIX`, and evaluations shown beside rollout success."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from trajectory_factories import make_episode
from typer.testing import CliRunner

from opd.cli.app import app
from opd.distill.evaluate import EvalResult
from opd.distill.evaluation_runs import evaluation_run, store_evaluation
from opd.errors import NotInStoreError
from opd.trajectories import Run, TrajectoryStore, find_run
from opd.trajectories.viewer import create_app

runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run, Run]:
    """Two training runs with episodes (SFT's rollouts all succeed: the teacher played them) and one evaluation of each."""
    path = tmp_path_factory.mktemp("runs") / "runs.db"
    rng = np.random.default_rng(0)
    sft, opd = Run(name="demo: sft", config={"student": "s"}), Run(name="demo: opd", config={"student": "s"})
    with TrajectoryStore(path) as trajectories:
        for run, episodes in ((sft, 3), (opd, 2)):
            trajectories.add_run(run)
            trajectories.write_episodes([make_episode(rng, run, steps=2, annotated=False) for _ in range(episodes)])
    settings = {"suite": "calculator", "options": {}, "max_turns": None}
    for run, successes in ((sft, 10), (opd, 78)):
        result = EvalResult(
            episodes=100, successes=successes, mean_reward=0.5, ci_low=successes / 100 - 0.05, ci_high=successes / 100 + 0.05
        )
        store_evaluation(str(path), evaluation_run(result, model="m", label=run.name, evaluates_run=run.id, **settings))
    return path, sft, opd


def test_runs_list_names_each_run_with_its_rollout_and_held_out_figures(store) -> None:
    path, sft, opd = store
    result = runner.invoke(app, ["runs", "list", "--store", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "demo: opd" in line and "eval" not in line)
    assert opd.id[:12] in row and "78.0% [73.0%, 83.0%] of 100" in row
    assert "rollout success" in result.output and "held-out eval" in result.output


def test_runs_list_keeps_ids_kinds_and_dates_whole_in_80_columns(store) -> None:
    path, sft, opd = store
    # 80 columns is what a redirected `opd runs list > runs.txt` gets; the kind column used to read "train…".
    result = runner.invoke(app, ["runs", "list", "--store", str(path)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if sft.id[:12] in line)
    assert "training" in row and sft.created_at.strftime("%Y-%m-%d %H:%M") in row and "…" not in result.output


@pytest.mark.parametrize("key", ["demo: opd", "full id", "8-character prefix"])
def test_run_accepts_a_name_or_an_id_prefix(store, key: str) -> None:
    path, _, opd = store
    run = {"demo: opd": "demo: opd", "full id": opd.id, "8-character prefix": opd.id[:8]}[key]
    listed = runner.invoke(app, ["episodes", "list", "--store", str(path), "--run", run], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "2 of 2 episodes" in listed.output, listed.output  # it used to match nothing


def test_an_unknown_or_ambiguous_run_says_so(store) -> None:
    path, sft, opd = store
    listed = runner.invoke(app, ["episodes", "list", "--store", str(path), "--run", "demo: opdd"])
    assert listed.exit_code == 2 and "No run with the id, id prefix or name 'demo: opdd'" in listed.output
    with TrajectoryStore(path, read_only=True) as trajectories:
        runs = trajectories.runs()
    with pytest.raises(NotInStoreError, match="matches 4 runs"):
        find_run(runs, "")


def test_the_viewer_shows_held_out_evaluation_beside_rollout_success(store) -> None:
    path, sft, opd = store
    with TestClient(create_app(str(path))) as client:
        page = client.get("/").text
    assert "rollout success" in page and "held-out eval" in page
    assert "78.0%" in page and "10.0%" in page  # OPD ahead on held-out tasks, whatever the rollouts say


def test_local_model_paths_are_recorded_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from opd.agents.rollout import recorded_location

    (tmp_path / "models" / "student").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    # The viewer, started elsewhere, used to look for "models/student" relative to its own directory.
    assert recorded_location("models/student") == str(tmp_path / "models" / "student")
    assert recorded_location("Qwen/Qwen3-0.6B") == "Qwen/Qwen3-0.6B"  # a hub name stays a hub name


def test_the_viewer_finds_a_relative_tokenizer_from_another_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from viewer_store import build_tokenizer, in_vocabulary

    # A store written before paths were recorded absolute: the tokenizer is relative to where training ran.
    build_tokenizer(tmp_path / "runs" / "models" / "tok")
    run = Run(name="old")
    episode = in_vocabulary(make_episode(np.random.default_rng(0), run, steps=1), Path("runs/models/tok"))
    with TrajectoryStore(tmp_path / "runs" / "opd.db") as trajectories:
        trajectories.add_run(run)
        trajectories.write_episode(episode)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with TestClient(create_app(str(tmp_path / "runs" / "opd.db"))) as client:
        assert client.get(f"/api/episodes/{episode.id}/steps").json()["decoded"] is True
