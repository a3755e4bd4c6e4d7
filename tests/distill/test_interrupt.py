"""SIGTERM (a scheduler's stop) asks training to stop as SIGINT does; a second Ctrl-C abandons the update in flight.

Real signals, sent to this process: the handlers are what a user's Ctrl-C or `kill` reaches. The end-to-end path
(checkpoint written, resume command printed, exit 130) is tests/distill/test_train_cli.py's, with SIGINT.
"""

from __future__ import annotations

import os
import signal

import pytest

from opd.distill.interrupt import stop_on_signals


def test_sigterm_asks_for_a_stop_between_updates_and_the_handlers_are_put_back() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with stop_on_signals() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)  # without the handler this would end the test process
        assert stop.requested and stop.signal_name == "SIGTERM"
        os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM changes nothing: the update in flight still finishes
        assert stop.signal_name == "SIGTERM"
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_a_second_ctrl_c_abandons_the_update_in_flight() -> None:
    with stop_on_signals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signal_name == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
