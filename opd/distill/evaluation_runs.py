"""What ``opd eval`` needs from a checkpoint, and the run record an evaluation is stored under.

A checkpoint carries the config of the run that wrote it (``config.json``) and
that run's id (``state.json``), so an evaluation can use the suite, options and
turn limit the policy trained with, and its stored run can name the run it
evaluates; the viewer shows it beside that run's rollout success.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opd import __version__
from opd.distill.checkpoint import checkpoint_config
from opd.distill.evaluate import EvalResult
from opd.trajectories import Run

__all__ = ["EVALUATION_KIND", "TrainedModel", "evaluation_run", "trained_model"]

EVALUATION_KIND = "evaluation"  # Run.config["kind"] of a stored evaluation


class TrainedModel:
    """A model to evaluate: its weights directory, and the training config and run id if it is a checkpoint."""

    def __init__(self, weights: str, config: Mapping[str, Any] | None = None, run_id: str | None = None) -> None:
        self.weights = weights
        self.config: Mapping[str, Any] = config or {}
        self.run_id = run_id


def trained_model(model: str) -> TrainedModel:
    """``model`` as a checkpoint directory (or its ``model/`` inside), else a plain model directory or hub name."""
    path = Path(model)
    for checkpoint in (path, path.parent):
        if (checkpoint / "state.json").is_file() and (checkpoint / "model").is_dir():
            state = json.loads((checkpoint / "state.json").read_text())
            return TrainedModel(str(checkpoint / "model"), checkpoint_config(checkpoint), state.get("run_id"))
    return TrainedModel(model)


def evaluation_run(
    run_id: str, model: str, trained: TrainedModel, result: EvalResult, *, suite: str, options: Mapping[str, Any], max_turns: int | None
) -> Run:
    """The run an evaluation's episodes are stored under, its result in its config."""
    local = Path(model).exists()
    label = trained.config.get("run_name") or model
    return Run(
        id=run_id,
        name=f"eval: {label}",
        config={
            "kind": EVALUATION_KIND,
            "model": str(Path(model).resolve()) if local else model,
            "evaluates_run": trained.run_id,  # the training run of the checkpoint, if it is one
            "suite": suite,
            "suite_options": dict(options),
            "max_turns": max_turns,
            "episodes": result.episodes,
            "success_rate": result.success_rate,
            "ci_low": result.ci_low,
            "ci_high": result.ci_high,
            "mean_reward": result.mean_reward,
        },
        code_version=__version__,
    )
