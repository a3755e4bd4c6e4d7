"""Stopping a training run cleanly on SIGINT (Ctrl-C) or SIGTERM (a scheduler's stop).

The first signal asks the loop to stop after the update in flight: it
finishes that update, writes a checkpoint and raises :class:`TrainingInterrupted`
naming it. A second SIGINT abandons the update in flight at once
(``KeyboardInterrupt``); the last checkpoint written is then the one to resume.
Handlers are installed only in the main thread (Python delivers signals there).
"""

from __future__ import annotations

import logging
import signal
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from opd.errors import OpdError

__all__ = ["StopRequest", "TrainingInterrupted", "stop_on_signals"]

logger = logging.getLogger(__name__)


class TrainingInterrupted(OpdError):
    """Training stopped on a signal after writing a checkpoint; ``checkpoint`` and ``update`` say where it stands."""

    def __init__(self, signal_name: str, update: int, checkpoint: Path) -> None:
        self.signal_name = signal_name
        self.update = update
        self.checkpoint = checkpoint
        super().__init__(f"{signal_name}: stopped after update {update}; checkpoint {checkpoint}")


class StopRequest:
    """Set by the signal handler; the loop reads it between updates."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    @property
    def requested(self) -> bool:
        return self.signal_name is not None


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handle(signum: int, frame: types.FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: abandon the update in flight
        stop.signal_name = name
        logger.warning("%s: finishing the current update, then writing a checkpoint (Ctrl-C again abandons it).", name)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
