"""``Task``: one problem a suite poses.

Its own module, so that tools (which see the task) and suites (which make tasks) need not import each other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["Task"]


@dataclasses.dataclass(frozen=True)
class Task:
    """One problem posed to the model. ``answer`` is what the verifier checks against."""

    id: str
    prompt: str
    answer: Any = None
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # suite-specific (e.g. records to look up)
