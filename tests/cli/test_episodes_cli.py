from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import numpy as np
import pytest
from trajectory_factories import make_episode
from typer.testing import CliRunner

from opd.agents import expert_episode
from opd.cli.app import app
from opd.envs import ToolEnv
from opd.trajectories import Run, TrajectoryStore

runner = CliRunner()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """A store with two expert episodes and one synthetic, fully annotated episode."""
    path = tmp_path / "store.db"
    with TrajectoryStore(path) as store:
        run = store.add_run(Run(name="cli"))
        for suite in ("calculator", "inventory"):
            store.write_episode(expert_episode(ToolEnv(suite, difficulty="easy"), 3, run_id=run.id, suite_options={"difficulty": "easy"}))
        store.write_episode(make_episode(np.random.default_rng(0), run, success=False))
    return path


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    return result.output


def ids(store_path: Path) -> list[str]:
    """Episode ids, newest first."""
    with TrajectoryStore(store_path) as store:
        return [s.id for s in store.list_episodes()]


def test_list_with_filters(store_path: Path) -> None:
    output = invoke("episodes", "list", "--store", str(store_path))
    assert "3 of 3 episodes" in output and "inventory" in output
    assert "1 of 1 episodes" in invoke("episodes", "list", "--store", str(store_path), "--failure")
    assert "1 of 1 episodes" in invoke("episodes", "list", "--store", str(store_path), "--annotated", "critiques")
    assert "2 of 2 episodes" in invoke("episodes", "list", "--store", str(store_path), "--suite", "calculator")
    assert "1 of 3 episodes" in invoke("episodes", "list", "--store", str(store_path), "--limit", "1")


def test_show_prints_the_conversation_critiques_and_divergence(store_path: Path) -> None:
    synthetic, inventory, calculator = ids(store_path)
    output = invoke("episodes", "show", synthetic[:8], "--store", str(store_path))
    assert "critique by critic" in output and "Add the other operand first." in output
    assert "reverse-KL estimate" in output and "episode score by verifier" in output
    output = invoke("episodes", "show", inventory, "--store", str(store_path))
    assert "find_product" in output and "Ordered" in output and "reward 1.00" in output
    assert f"written by rank 0 on {socket.gethostname()}" in output


def test_export_import_round_trip_is_lossless(store_path: Path, tmp_path: Path) -> None:
    exported = tmp_path / "episodes.jsonl"
    assert "exported 3 episodes" in invoke("episodes", "export", str(exported), "--store", str(store_path))
    assert len(exported.read_text().splitlines()) == 3
    copy = tmp_path / "copy.db"
    assert "imported 3 episodes, skipped 0" in invoke("episodes", "import", str(exported), "--store", str(copy))
    assert "imported 0 episodes, skipped 3" in invoke("episodes", "import", str(exported), "--store", str(copy))
    with TrajectoryStore(store_path) as original, TrajectoryStore(copy) as imported:
        for episode_id in ids(store_path):
            copied, source = imported.get_episode(episode_id), original.get_episode(episode_id)
            assert copied == source
            assert [s.timings for s in copied.steps] == [s.timings for s in source.steps]
        assert imported.runs() == original.runs()


def test_replay_of_a_deterministic_suite(store_path: Path) -> None:
    _, inventory, calculator = ids(store_path)
    for episode_id in (inventory, calculator):
        assert "identical" in invoke("episodes", "replay", episode_id, "--store", str(store_path))


def test_replay_reports_each_differing_step(store_path: Path) -> None:
    with TrajectoryStore(store_path) as store:
        episode = store.get_episode(ids(store_path)[2])
        first = dataclasses.replace(episode.steps[0], observation="999")
        tampered = dataclasses.replace(episode, id="f" * 32, steps=(first, *episode.steps[1:]))
        store.write_episode(tampered)
    result = runner.invoke(app, ["episodes", "replay", "f" * 8, "--store", str(store_path)])
    assert result.exit_code == 1
    assert "step 0 differs" in result.output and "recorded: 999" in result.output
    assert "step 1 differs" not in result.output


def test_bad_stores_give_one_clear_line(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["episodes", "list", "--store", str(tmp_path / "nope.db")])
    assert missing.exit_code == 2 and "No trajectory store at" in missing.output and "Traceback" not in missing.output
    (tmp_path / "text.db").write_text("hello")
    wrong = runner.invoke(app, ["episodes", "list", "--store", str(tmp_path / "text.db")])
    assert wrong.exit_code == 2 and "is not a SQLite database" in wrong.output


def test_unknown_episode(store_path: Path) -> None:
    result = runner.invoke(app, ["episodes", "show", "0000", "--store", str(store_path)])
    assert result.exit_code == 2 and "No episode '0000'" in result.output


def test_played_expert_episodes_go_to_the_store(tmp_path: Path) -> None:
    path = tmp_path / "played.db"
    invoke("suites", "play", "calculator", "--episodes", "2", "--store", str(path))
    invoke("suites", "play", "inventory", "--episodes", "2", "--store", str(path))
    with TrajectoryStore(path) as store:
        assert store.count_episodes() == 4
        assert all(e.success for b in store.iter_episodes() for e in b)


def test_show_prints_the_critique_cost_ledger_and_unannotated_steps(tmp_path: Path) -> None:
    from opd.trajectories import StepCritique

    path = tmp_path / "store.db"
    usage = {"calls": 2, "cached": 1, "prompt_tokens": 300, "completion_tokens": 40, "cost_usd": 0.0125}
    with TrajectoryStore(path) as store:
        run = store.add_run(Run(name="critic"))
        episode = make_episode(np.random.default_rng(1), run, steps=2, annotated=False)
        critiques = (
            StepCritique("critic:openai/judge", 0, 8.0, "Right call.", uncertainty=0.25, usage=usage),
            StepCritique("critic:openai/judge", 1, None, error="request failed: Timeout", usage={**usage, "cost_usd": None}),
        )
        store.write_episode(dataclasses.replace(episode, annotations=dataclasses.replace(episode.annotations, critiques=critiques)))
    output = invoke("episodes", "show", episode.id, "--store", str(path))
    assert "score 8.00 (uncertainty 0.25): Right call." in output
    assert "unannotated: request failed: Timeout" in output
    assert "2 calls + 1 cached; 300 prompt + 40 completion tokens; $0.0125" in output
    assert "critique cost of this episode: 4 calls + 2 cached; 600 prompt + 80 completion tokens; cost unknown" in output


def test_list_as_json_for_scripts(store_path: Path) -> None:
    import json

    rows = [
        json.loads(line) for line in invoke("episodes", "list", "--store", str(store_path), "--suite", "calculator", "--json").splitlines()
    ]
    assert len(rows) == 2 and {r["suite"] for r in rows} == {"calculator"} and all(len(r["id"]) == 32 for r in rows)
    assert {"task_id", "reward", "success", "num_tokens", "run_id"} <= set(rows[0])


def test_played_expert_episodes_can_be_stored_tokenized_for_a_model(tmp_path: Path, tiny_tokenizer) -> None:
    path = tmp_path / "played.db"
    output = invoke(
        "suites", "play", "inventory", "-o", "turns=2", "--episodes", "2", "--store", str(path), "-t", tiny_tokenizer.name_or_path
    )
    assert "tokenized for" in output
    with TrajectoryStore(path) as store:
        episodes = [e for b in store.iter_episodes() for e in b]
    assert len(episodes) == 2 and all(e.num_tokens > 50 and e.policy_mask.sum() > 0 and e.success for e in episodes)
    assert all(e.tokenizer == tiny_tokenizer.name_or_path for e in episodes)
