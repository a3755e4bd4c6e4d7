"""What ``opd eval`` needs from a checkpoint, and the run record an evaluation is stored under.

A checkpoint carries the config of the run that wrote it (``config.json``) and
that run's id (``state.json``), so an evaluation can use the suite, options and
turn limit the policy trained with, and its stored run can name the run it
evaluates; the viewer shows it beside that run's rollout success.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from opd import __version__
from opd.distill.checkpoint import checkpoint_config
from opd.distill.evaluate import EvalResult
from opd.trajectories import EVALUATION_KIND, Episode, Run, TrajectoryStore, new_id

__all__ = ["TrainedModel", "evaluation_run", "store_evaluation", "trained_model"]


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
    result: EvalResult,
    *,
    model: str,
    label: str,
    evaluates_run: str | None,
    suite: str,
    options: Mapping[str, Any],
    max_turns: int | None,
    run_id: str | None = None,
) -> Run:
    """The run an evaluation is stored as (with its episodes, if they are stored), its figures in its config."""
    local = Path(model).exists()
    return Run(
        id=run_id or new_id(),
        name=f"eval: {label}",
        config={
            "kind": EVALUATION_KIND,
            "model": str(Path(model).resolve()) if local else model,
            "evaluates_run": evaluates_run,  # the training run of the checkpoint, if it is one
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


def store_evaluation(store: str, run: Run, episodes: Sequence[Episode] = ()) -> None:
    with TrajectoryStore(store) as trajectories:
        trajectories.add_run(run)
        trajectories.write_episodes(list(episodes))


def eval_settings(config: Any) -> dict[str, Any]:
    """The settings of a training config that an evaluation of it uses (``TrainConfig`` or its recorded dict)."""
    get = config.get if isinstance(config, Mapping) else lambda key: getattr(config, key)
    return {"suite": get("suite"), "options": dict(get("suite_options") or {}), "max_turns": get("max_turns")}
