"""A Gymnasium text space that contains any Unicode string up to a length.

``gymnasium.spaces.Text`` checks every character against a charset, alphanumeric
by default; tool output and model text contain punctuation, newlines and any
script, so the default space would not contain the observations it describes.
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np
from gymnasium.spaces import Text

# Sampling draws from printable ASCII plus a few multi-byte characters; membership accepts any text.
_SAMPLE_CHARSET = string.printable + "äßλ中文🙂"


class UnicodeText(Text):
    """Any ``str`` of at most ``max_length`` characters that encodes as UTF-8."""

    def __init__(self, max_length: int, *, min_length: int = 0, seed: int | np.random.Generator | None = None) -> None:
        super().__init__(max_length, min_length=min_length, charset=_SAMPLE_CHARSET, seed=seed)

    def contains(self, x: Any) -> bool:
        if not isinstance(x, str) or not self.min_length <= len(x) <= self.max_length:
            return False
        try:
            x.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnicodeText) and (self.min_length, self.max_length) == (other.min_length, other.max_length)
