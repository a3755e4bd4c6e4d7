"""The episodes table's filter form: what the browser sent, turned into an :class:`EpisodeFilter`.

Form fields arrive as strings, empty when left blank; a value that does not
parse is reported on the page and ignored, rather than answered with an error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from urllib.parse import urlencode

from opd.trajectories.store import EpisodeFilter

__all__ = ["FIELDS", "ListQuery", "parse_filters"]

FIELDS = ("run", "suite", "success", "min_reward", "max_reward", "errors", "q")
_YES_NO = {"": None, "yes": True, "no": False}


@dataclasses.dataclass(frozen=True)
class ListQuery:
    """The filters as the form shows them back, and the store filter they select."""

    values: dict[str, str]
    where: EpisodeFilter
    problems: tuple[str, ...] = ()

    def link(self, **cursor: str) -> str:
        """A query string with these filters and a page cursor (``before=`` or ``after=``)."""
        return urlencode({k: v for k, v in {**self.values, **cursor}.items() if v})


def parse_filters(params: Mapping[str, str]) -> ListQuery:
    values = {name: params.get(name, "").strip() for name in FIELDS}
    problems: list[str] = []

    def yes_no(name: str, label: str) -> bool | None:
        if values[name] not in _YES_NO:
            problems.append(f"{label} must be yes, no or empty; got {values[name]!r}.")
            return None
        return _YES_NO[values[name]]

    def number(name: str, label: str) -> float | None:
        if not values[name]:
            return None
        try:
            return float(values[name])
        except ValueError:
            problems.append(f"{label} must be a number; got {values[name]!r}.")
            return None

    where = EpisodeFilter(
        run_id=values["run"] or None,
        suite=values["suite"] or None,
        success=yes_no("success", "Success"),
        min_reward=number("min_reward", "Minimum reward"),
        max_reward=number("max_reward", "Maximum reward"),
        has_errors=yes_no("errors", "Errors"),
        text=values["q"] or None,
    )
    return ListQuery(values, where, tuple(problems))
