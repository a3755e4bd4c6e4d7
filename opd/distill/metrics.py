"""Metrics (numbers to aggregate) to JSONL and TensorBoard; kept apart from logs (text to show)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["MetricsWriter"]


class MetricsWriter:
    """Appends one JSON object per call to ``metrics.jsonl``, and mirrors scalars to TensorBoard if asked."""

    def __init__(self, directory: Path, *, tensorboard: bool) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "metrics.jsonl"
        self._file = self.path.open("a", encoding="utf-8")
        self._tensorboard = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is a dependency, but a trimmed install may lack it
                logger.warning("tensorboard is not installed; writing metrics.jsonl only (pip install tensorboard)")
            else:
                self._tensorboard = SummaryWriter(str(directory / "tensorboard"))

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
