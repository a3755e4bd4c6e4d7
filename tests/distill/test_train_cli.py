"""``opd train`` and ``opd eval`` as a user runs them: a real process, output to a pipe (no TTY), real signals."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_models import OPTIONS

from opd.trajectories import TrajectoryStore

OPD = Path(sys.executable).parent / "opd"


def write_config(models: tuple[Path, Path], tmp_path: Path, updates: int) -> Path:
    student, teacher = models
    path = tmp_path / "run.yaml"
    path.write_text(
        f"student: {student}\nteacher: {teacher}\nstore: {tmp_path / 's.db'}\noutput_dir: {tmp_path / 'out'}\n"
        f"updates: {updates}\nepisodes_per_update: 2\neval_every: 0\neval_episodes: 2\ncheckpoint_every: 0\nteacher_k: 4\n"
        f"tensorboard: false\nmax_turns: 2\nlearning_rate: 1e-3\nsuite_options: {json.dumps(OPTIONS)}\n"
        "sampling:\n  max_new_tokens: 8\n"
    )
    return path


def opd(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(OPD), *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, "COLUMNS": "300"})


@pytest.mark.slow
def test_sigint_checkpoints_and_the_rerun_resumes_with_one_row_per_update(models, tmp_path: Path) -> None:
    config = write_config(models, tmp_path, updates=400)
    metrics = tmp_path / "out" / "metrics.jsonl"
    command = [str(OPD), "train", str(config), "eval_episodes=2"]  # an override, as `opd train CONFIG key=value` takes them
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    output, _ = process.communicate(timeout=240)
    assert process.returncode == 130, output
    stopped = int(output.split("SIGINT: stopped after update ")[1].split(";")[0])
    checkpoint = tmp_path / "out" / "checkpoints" / f"update-{stopped:07d}"
    assert f"checkpoint {checkpoint}" in output and f"resume with: {OPD} train {config} eval_episodes=2" in output
    assert (checkpoint / "config.json").is_file() and 2 <= stopped < 400
    # Without a terminal: one timestamped line per update, with an ETA.
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ update 1/400  loss .* eta \d+:\d\d:\d\d$", output, re.MULTILINE), output
    assert "Loading weights" not in output and "it/s]" not in output and "Warning" not in output  # no third-party bars or warnings

    resumed = opd("train", str(config), f"updates={stopped + 1}")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming from {checkpoint} (update {stopped} of {stopped + 1})" in resumed.stdout
    rows = [json.loads(line)["update"] for line in metrics.read_text().splitlines()]
    assert rows == list(range(1, stopped + 2))

    refused = opd("train", str(config), "learning_rate=0.01", f"updates={stopped + 1}")
    assert refused.returncode == 2 and "learning_rate: 0.001 -> 0.01" in refused.stdout and "--fresh" in refused.stdout

    last = tmp_path / "out" / "checkpoints" / f"update-{stopped + 1:07d}"
    evaluated = opd("eval", str(last), "--json")
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    result = json.loads(evaluated.stdout)
    assert result["suite_options"] == OPTIONS and result["max_turns"] == 2  # the run's settings, not the suite's defaults
    assert result["episodes"] == 2  # the run's eval_episodes
    typed = opd("eval", str(last), "--episodes", "1", "--json", "-o", "max_value=99", "--no-store")
    assert typed.returncode == 0 and json.loads(typed.stdout)["suite_options"]["max_value"] == 99, typed.stdout + typed.stderr
    with TrajectoryStore(tmp_path / "s.db", read_only=True) as store:
        run, runs = store.get_run(result["run_id"]), store.runs()
        at_training = [r for r in runs if r.config.get("model") == str(last) and r.id != result["run_id"]]
    assert run.name == "eval: opd" and run.config["kind"] == "evaluation" and run.config["episodes"] == 2
    assert [r.config["success_rate"] for r in at_training] == [result["success_rate"]]  # the figure training reported
    (training,) = [r for r in runs if r.config.get("kind") != "evaluation"]
    assert training.config["origin"] == {"config_file": str(config.resolve()), "overrides": ["eval_episodes=2"]}


@pytest.mark.slow
def test_problems_are_reported_before_any_model_loads(models, tmp_path: Path) -> None:
    config = write_config(models, tmp_path, updates=2)
    result = opd("train", str(config), f"student={tmp_path / 'nowhere'}", "suite=calculatr", "loss.kind=stp")
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr
    assert "loss.kind: expected one of" in result.stdout and "Did you mean 'step'?" in result.stdout
    fixed_kind = opd("train", str(config), f"student={tmp_path / 'nowhere'}", "suite=calculatr")
    lines = [line for line in fixed_kind.stdout.splitlines() if line.startswith("error:") or line.startswith(str(config))]
    assert any("Did you mean 'calculator'" in line for line in lines) and any("no model directory at" in line for line in lines)
    assert not (tmp_path / "out").exists()  # nothing was started
