from __future__ import annotations

import pytest

from opd.envs import ToolEnv
from opd.terminal import visible


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1bc", "\\x1bc"),  # full reset
        ("\x1b]8;;http://x\x1b\\y\x1b]8;;\x1b\\", "\\x1b]8;;http://x\\x1b\\y\\x1b]8;;\\x1b\\"),  # OSC 8 link
        ("\x9b31m", "\\x9b31m"),  # 8-bit CSI
        ("a\rb\x07\x7f\x85", "a\\x0db\\x07\\x7f\\x85"),
        ("\u202eevil", "\\u202eevil"),  # right-to-left override
        ("plain text, tabs\tand\nnewlines, é ü 中", "plain text, tabs\tand\nnewlines, é ü 中"),
    ],
)
def test_visible_writes_out_every_terminal_control(raw: str, shown: str) -> None:
    assert visible(raw) == shown


def test_render_shows_the_models_control_sequences_escaped() -> None:
    env = ToolEnv("calculator", render_mode="ansi")
    env.reset(seed=0)
    env.step("\x1bc\x9b2J not a tool call")
    rendered = env.render()
    assert "\x1b" not in rendered and "\x9b" not in rendered and "\\x1bc\\x9b2J not a tool call" in rendered
