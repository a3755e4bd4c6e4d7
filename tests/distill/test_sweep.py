"""`opd sweep`: a 2 x 2 grid of tiny students and budgets trained, stored, fitted and plotted; the fit recovers known exponents."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opd.cli.app import app
from opd.distill.sweep import fit_power_law, load_sweep
from opd.errors import ConfigError
from opd.trajectories import TrajectoryStore


def test_the_fit_recovers_the_exponents_of_a_noisy_power_law() -> None:
    noise = [0.02, -0.01, 0.015, -0.02, 0.0, 0.01, -0.015, 0.005, 0.01, -0.005, 0.0, 0.02]
    grid = [(n, d) for n in (1e4, 1e5, 1e6) for d in (1e3, 4e3, 1.6e4, 6.4e4)]
    points = [
        {"params": n, "labelled_tokens": d, "heldout_loss": 50 * n**-0.3 * d**-0.5 * math.exp(e)}
        for (n, d), e in zip(grid, noise, strict=True)
    ]
    fit = fit_power_law(points, "heldout_loss")
    assert abs(fit.alpha - 0.3) < 3 * fit.alpha_se + 0.01 and abs(fit.beta - 0.5) < 3 * fit.beta_se + 0.01
    assert 0 < fit.alpha_se < 0.05 and fit.points == 12
    assert math.isclose(fit.predict(1e5, 4e3), 50 * 1e5**-0.3 * 4e3**-0.5, rel_tol=0.05)


def test_a_sweep_file_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text("recipe: train.yaml\nstudents: [{layers: 1}]\nbudgets: [100, 200]\n")
    with pytest.raises(ConfigError, match="at least 2 students"):
        load_sweep(path)
    path.write_text("recipe: train.yaml\nstudents: [a, b]\nbudgets: [200, 100]\n")
    with pytest.raises(ConfigError, match="strictly increasing"):
        load_sweep(path)
    path.write_text("recipe: train.yaml\nstudent: [a, b]\nbudgets: [100, 200]\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_sweep(path)


@pytest.mark.slow
def test_opd_sweep_trains_the_grid_stores_it_fits_and_plots(models, tmp_path: Path) -> None:
    _, teacher = models
    (tmp_path / "train.yaml").write_text(
        f"student: replaced\nteacher: {teacher}\nsuite_options: {{difficulty: easy, prompt_style: terse}}\nmax_turns: 3\n"
        f"store: {tmp_path / 'store.db'}\nepisodes_per_update: 4\neval_episodes: 4\nteacher_k: 8\ntensorboard: false\n"
        "sampling: {max_new_tokens: 12}\nguard: {action: none}\n"
    )
    (tmp_path / "sweep.yaml").write_text(
        "recipe: train.yaml\nstudents: [{layers: 1, hidden: 8}, {layers: 1, hidden: 16}]\nbudgets: [100, 300]\n"
        f"heldout_episodes: 4\noutput_dir: {tmp_path / 'sweep'}\n"
    )
    result = CliRunner().invoke(app, ["sweep", str(tmp_path / "sweep.yaml")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "alpha = " in result.output and "beta = " in result.output
    points = [json.loads(line) for line in (tmp_path / "sweep" / "sweep.jsonl").read_text().splitlines()]
    assert [(p["student"], p["budget"]) for p in points] == [(0, 100), (0, 300), (1, 100), (1, 300)]
    assert points[0]["params"] < points[2]["params"] and all(p["labelled_tokens"] >= p["budget"] for p in points)
    assert all(p["heldout_loss"] > 0 for p in points) and points[1]["labelled_tokens"] > points[0]["labelled_tokens"]
    assert (tmp_path / "sweep" / "scaling.png").stat().st_size > 10_000
    with TrajectoryStore(tmp_path / "store.db") as store:
        names = {run.name for run in store.runs()}
    assert {"sweep: student 0", "sweep: student 1"} <= names  # beside them, the stored evaluations of each budget's end
    again = CliRunner().invoke(app, ["sweep", str(tmp_path / "sweep.yaml")], env={"COLUMNS": "200"})
    assert again.exit_code == 0 and "budget" not in again.output.split("fitting")[1].split("~")[0]  # nothing retrained
    assert len((tmp_path / "sweep" / "sweep.jsonl").read_text().splitlines()) == 4
