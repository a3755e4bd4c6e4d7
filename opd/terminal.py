"""Text that reaches a terminal: control sequences shown, never obeyed.

Model text, tool output and file contents are stored exactly as they were, but
whatever prints them (``env.render()``, ``opd episodes show``) passes them
through :func:`visible` first. Otherwise an ``ESC c`` in a log file clears the
reader's screen, an OSC 8 sequence plants a hidden link, and an 8-bit C1
control (U+0080-U+009F, e.g. U+009B, a one-character CSI) drives the terminal
like its 7-bit ESC form.

It sits beside ``errors.py``, outside the four parts, because the envs
(``render()``) and the CLI both need it, and a CLI module that imported
``opd.envs`` for it would load every suite before printing a table.
"""

from __future__ import annotations

__all__ = ["visible"]

# C0 controls but newline and tab, DEL, C1 controls, and the bidirectional overrides that reorder what is shown.
_ESCAPED = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in (*range(0x00, 0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A))
    if chr(code) not in "\n\t"
}


def visible(text: str) -> str:
    """``text`` with every terminal control character written out as ``\\xNN`` (``\\uNNNN``); printable text is unchanged."""
    return text.translate(_ESCAPED)
