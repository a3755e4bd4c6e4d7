"""The process's resident-set high-water mark since a reset, for the benchmarks that measure training's peak memory.

Linux only: ``/proc/self/clear_refs`` (value 5) restarts the high-water mark
(``VmHWM``) from the current resident set (``VmRSS``), both read from
``/proc/self/status``. Imported by ``train_memory.py`` and ``vs_trl.py`` (the
benchmarks run as scripts, so their directory is on the import path).
"""

from __future__ import annotations

from pathlib import Path


class PeakMemory:
    """The peak resident set (VmHWM) since :meth:`reset`, in MiB."""

    def __init__(self) -> None:
        self._start = 0.0

    def reset(self) -> float:
        """Forget the peak so far; returns the resident set now, in MiB."""
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS to the current RSS (proc(5))
        self._start = self._status("VmRSS")
        return self._start

    def peak(self) -> float:
        # The kernel updates the high-water mark lazily (its RSS counters are batched per thread), so a process whose
        # memory shrank after the reset can report a VmHWM a few hundred kB under the VmRSS read at the reset.
        return max(self._status("VmHWM"), self._start)

    @staticmethod
    def _status(field: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
        raise RuntimeError(f"/proc/self/status has no {field}; this benchmark measures memory on Linux only")
