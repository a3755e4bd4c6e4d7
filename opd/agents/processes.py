"""Child processes that must not outlive the trainer that started them (inference servers)."""

from __future__ import annotations

import ctypes
import signal
import sys

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent() -> None:
    """Run in a server's child process before exec: the kernel sends it SIGTERM when the trainer dies.

    ``vllm_policy.stop_process`` ends the server on every exit Python sees (Ctrl-C, SIGTERM, an
    error); this covers the ones it cannot see (SIGKILL, the OOM killer), which
    would otherwise leave an engine holding gigabytes and the cores. Linux only
    (``prctl``); elsewhere a no-op. The signal follows the *thread* that started
    the server, so start it from a thread that lives as long as the run.
    """
    if sys.platform != "linux":
        return
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
