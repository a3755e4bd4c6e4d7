"""`opd demo --quick` end to end, as CI runs it: models built from nothing, both arms trained, everything stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner
from viewer_store import every_listed_id

from opd.cli.app import app
from opd.trajectories import EpisodeFilter, TrajectoryStore
from opd.trajectories.viewer import create_app


@pytest.mark.slow
def test_demo_quick(tmp_path: Path) -> None:
    store = tmp_path / "opd.db"
    arguments = ["demo", "--quick", "--workdir", str(tmp_path / "demo"), "--store", str(store)]
    result = CliRunner().invoke(app, arguments, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for row in ("teacher (2 layers, d=128)", "student start", "student after off-policy SFT", "student after OPD"):
        assert row in result.output
    assert (tmp_path / "demo" / "success_vs_tokens.png").stat().st_size > 10_000
    assert "conclusion: OPD " in result.output and "95% intervals" in result.output
    assert f"episodes list --store {store} --run 'demo: opd'" in result.output
    assert "Loading weights" not in result.output and "Writing model shards" not in result.output  # no third-party bars
    with TrajectoryStore(store) as trajectories:
        runs = {run.name: run for run in trajectories.runs()}
        assert {"demo: sft", "demo: opd"} <= set(runs)
        opd = EpisodeFilter(run_id=runs["demo: opd"].id, has_annotation="token_logprobs")
        assert trajectories.count_episodes(opd) == trajectories.count_episodes(EpisodeFilter(run_id=runs["demo: opd"].id)) > 0
        episode_id = trajectories.list_episodes(opd, limit=1)[0].id
        teacher = trajectories.get_episode(episode_id).annotations.token_logprobs[0].teacher
        written = [e.id for e in trajectories.list_episodes(limit=1_000_000)]
    # `opd view` on what the demo wrote: every run, every episode, the OPD run's tokens decoded and coloured.
    with TestClient(create_app(str(store))) as viewer:
        assert all(run.id[:12] in viewer.get("/").text for run in runs.values())
        assert every_listed_id(viewer) == written
        tokens = viewer.get(f"/api/episodes/{episode_id}/steps", params={"teacher": teacher}).json()
        assert tokens["decoded"] and tokens["steps"][0]["tokens"][0]["bin"] is not None
    shown = CliRunner().invoke(app, ["episodes", "show", episode_id, "--store", str(store)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "reverse-KL estimate" in shown.output
    # A second run reuses the cached teacher and student start instead of training them again.
    again = CliRunner().invoke(app, arguments)
    assert again.exit_code == 0 and "training the teacher" not in again.output
