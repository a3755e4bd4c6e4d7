"""Metrics (numbers to aggregate) to JSONL and TensorBoard; kept apart from logs (text to show)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["MetricsWriter"]


class MetricsWriter:
    """Appends one JSON object per call to ``metrics.jsonl``, and mirrors scalars to TensorBoard if asked.

    ``resumed_at`` is the update a resumed run restarts after: rows written past it (by a run
    stopped after its last checkpoint) are dropped, so every update has one row across resumes.
    """

    def __init__(self, directory: Path, *, tensorboard: bool, resumed_at: int = 0) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "metrics.jsonl"
        _drop_rows_after(self.path, resumed_at)
        self._file = self.path.open("a", encoding="utf-8")
        self._tensorboard = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is a dependency, but a trimmed install may lack it
                logger.warning("tensorboard is not installed; writing metrics.jsonl only (pip install tensorboard)")
            else:
                # purge_step hides events past the resume point, as the JSONL rows are dropped.
                self._tensorboard = SummaryWriter(str(directory / "tensorboard"), purge_step=resumed_at + 1 if resumed_at else None)

    def write(self, step: int, values: dict[str, Any]) -> None:
        self._file.write(json.dumps({"update": step, **values}) + "\n")
        self._file.flush()
        if self._tensorboard is not None:
            for name, value in values.items():
                if isinstance(value, int | float):
                    self._tensorboard.add_scalar(name, value, step)

    def close(self) -> None:
        self._file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def _drop_rows_after(path: Path, update: int) -> None:
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if _update_of(line) <= update]
    if len(kept) != len(lines):
        staging = path.with_suffix(".jsonl.tmp")
        staging.write_text("".join(kept), encoding="utf-8")
        staging.replace(path)  # atomic: a crash here leaves the old file or the new one, never half of one


def _update_of(line: str) -> float:
    """The update a metrics row belongs to; a line cut short by a crash counts as past every update (it is dropped)."""
    try:
        return float(json.loads(line).get("update", 0))
    except (json.JSONDecodeError, AttributeError):
        return math.inf
