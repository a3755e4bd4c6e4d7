"""A server opd starts (vLLM) dies with the trainer, even when the trainer is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="prctl(PR_SET_PDEATHSIG) is Linux's")

# A stand-in trainer: starts a long-lived child as VLLMPolicy starts vLLM (its own session), prints its pid, waits.
TRAINER = """
import subprocess, sys, time
from opd.agents.processes import die_with_parent
preexec = die_with_parent if sys.argv[1] == "guarded" else None
child = subprocess.Popen(["sleep", "120"], start_new_session=True, preexec_fn=preexec)
print(child.pid, flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def child_after_sigkill(mode: str) -> int:
    trainer = subprocess.Popen([sys.executable, "-c", TRAINER, mode], stdout=subprocess.PIPE, text=True)
    child = int(trainer.stdout.readline())
    os.kill(trainer.pid, signal.SIGKILL)
    trainer.wait()
    return child


def test_the_server_gets_sigterm_when_the_trainer_is_killed() -> None:
    child = child_after_sigkill("guarded")
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def test_without_it_the_server_outlives_the_trainer() -> None:
    """The control: what the guard prevents does happen without it."""
    child = child_after_sigkill("unguarded")
    try:
        time.sleep(0.5)
        assert alive(child)
    finally:
        os.kill(child, signal.SIGKILL)
