"""Two updates of `opd train` through the command line on a suite a test brings, with tiny models fitted to its texts."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from opd.agents.tiny import build_tiny_model, build_word_tokenizer
from opd.cli.app import app
from opd.trajectories import Episode, TrajectoryStore


def train_two_updates(tmp_path: Path, suite: str, module: Path, corpus: Iterable[str], **settings: Any) -> list[Episode]:
    """Run `opd train` (2 updates of 2 episodes) on ``suite`` from ``module``; every stored episode."""
    tokenizer = build_word_tokenizer(corpus, tmp_path / "student", numbers=range(0, 40))
    build_tiny_model(tokenizer, tmp_path / "student", layers=1, hidden=16, heads=2, seed=0)
    build_tiny_model(tokenizer, tmp_path / "teacher", layers=1, hidden=16, heads=2, seed=1)
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "student": "student", "teacher": "teacher", "suite": suite, "suites": {"modules": [str(module)]},
                "store": "store.db", "output_dir": "out", "updates": 2, "episodes_per_update": 2, "eval_every": 0,
                "eval_episodes": 2, "checkpoint_every": 0, "teacher_k": 4, "max_turns": 2, "sampling": {"max_new_tokens": 12},
                "tensorboard": False, **settings,
            }
        )
    )  # fmt: skip
    trained = CliRunner().invoke(app, ["train", str(config)], env={"COLUMNS": "200"})
    assert trained.exit_code == 0, trained.output
    assert "done: 2 updates" in trained.output
    with TrajectoryStore(tmp_path / "store.db", create=False) as store:
        return [e for batch in store.iter_episodes() for e in batch]
