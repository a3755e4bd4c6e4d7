"""Checkpoints that resume a run exactly: model, optimizer and the loop's counters.

Written to a temporary directory and renamed into place, so a run killed while
saving leaves the previous checkpoint intact. Every update's randomness derives
from (seed, update) alone, so nothing else needs saving for an exact resume.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["TrainerState", "checkpoint_config", "latest_checkpoint", "load_checkpoint", "save_checkpoint"]


@dataclasses.dataclass(frozen=True)
class TrainerState:
    update: int  # updates completed
    labelled_tokens: int  # teacher-labelled tokens consumed so far
    skipped_updates: int  # updates skipped for a non-finite loss or gradient
    run_id: str
    wall_seconds: float


def save_checkpoint(
    directory: Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    optimizer: torch.optim.Optimizer,
    state: TrainerState,
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Write the checkpoint of ``state``; ``config`` (the run's, as a dict) travels with it for resume checks and ``opd eval``."""
    target = directory / f"update-{state.update:07d}"
    staging = directory / f".staging-{state.update:07d}"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging / "model")
    tokenizer.save_pretrained(staging / "model")
    torch.save(optimizer.state_dict(), staging / "optimizer.pt")
    (staging / "state.json").write_text(json.dumps(dataclasses.asdict(state), indent=2))
    if config is not None:
        (staging / "config.json").write_text(json.dumps(dict(config), indent=2))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def latest_checkpoint(directory: Path) -> Path | None:
    found = sorted(p for p in directory.glob("update-*") if (p / "state.json").is_file())
    return found[-1] if found else None


def load_checkpoint(path: Path, optimizer: torch.optim.Optimizer) -> TrainerState:
    """Restore the optimizer from ``path`` and return the loop state (the model is loaded from ``path / "model"``)."""
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    data: dict[str, Any] = json.loads((path / "state.json").read_text())
    return TrainerState(**data)


def checkpoint_config(path: Path) -> dict[str, Any] | None:
    """The config of the run that wrote checkpoint ``path`` (None for checkpoints of opd before it was recorded)."""
    file = path / "config.json"
    return json.loads(file.read_text()) if file.is_file() else None
