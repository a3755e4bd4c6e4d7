"""``Task``: one problem a suite poses.

Its own module, so that tools (which see the task) and suites (which make tasks) need not import each other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from opd.errors import ConfigError

__all__ = ["Task"]


@dataclasses.dataclass(frozen=True)
class Task:
    """One problem posed to the model. ``answer`` is what the verifier checks against."""

    id: str
    prompt: str
    answer: Any = None
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # suite-specific (e.g. records to look up)
    split: str | None = None  # "train" or "eval" when the task set assigns it explicitly; else its id's hash decides (TaskSplit)
    follow_ups: tuple[str, ...] = ()  # later user turns of a conversation, posed one by one after each final answer
    tools: tuple[str, ...] | None = None  # the names of the suite's tools this task offers; None: all of them

    def __post_init__(self) -> None:
        if self.split not in (None, "train", "eval"):
            raise ConfigError(f"Task {self.id!r}: split must be 'train', 'eval' or unset, got {self.split!r}.")
