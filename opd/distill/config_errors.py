"""pydantic's validation errors, retold as opd config errors: where, which key, expected, received, the fix.

pydantic reports ``Input should be a valid number`` at ``('loss', 'rwr_temperature')``;
a user needs ``run.yaml: loss.rwr_temperature: expected a valid number, got 'fast'``
and, for a typo in a key or an enumerated value, the close name.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from opd.errors import ConfigError

__all__ = ["describe_validation_error", "raising_config_errors"]

_UNKNOWN = {"extra_forbidden", "unexpected_keyword_argument"}
_MISSING = {"missing", "missing_argument", "missing_keyword_only_argument"}


def raising_config_errors(cls: type) -> type:
    """Make a pydantic dataclass raise :class:`ConfigError` (one line per problem) instead of ``ValidationError``."""
    validated_init = cls.__init__

    @functools.wraps(validated_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            validated_init(self, *args, **kwargs)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, cls, where=cls.__name__)) from None

    cls.__init__ = __init__  # type: ignore[method-assign]
    return cls


def describe_validation_error(exc: ValidationError, root: type, *, where: str) -> str:
    """One line per error: ``where: key.path: expected X, got Y. <fix>``."""
    return "\n".join(_describe(error, root, where) for error in exc.errors(include_url=False))


def _describe(error: Any, root: type, where: str) -> str:
    loc = tuple(str(part) for part in error["loc"])
    path = ".".join(loc)
    kind, received = error["type"], error.get("input")
    if kind in _UNKNOWN:
        parent = ".".join(loc[:-1])
        known = _field_names(root, loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f"Did you mean {close[0]!r}?" if close else f"Known keys: {', '.join(known)}."
        return f"{where}: {parent + ': ' if parent else ''}unknown key {loc[-1]!r}. {hint}"
    if kind in _MISSING:
        return f"{where}: missing required key {path!r}; add `{loc[-1]}: ...`."
    if kind == "value_error":  # our own checks: the message already says what to do
        return f"{where}: {path + ': ' if path else ''}{error['ctx']['error']}"
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", error["ctx"]["expected"])
        close = difflib.get_close_matches(str(received), allowed, n=1, cutoff=0.5)
        hint = f"Did you mean {close[0]!r}?" if close else "Use one of them."
        return f"{where}: {path}: expected one of {', '.join(map(repr, allowed))}; got {received!r}. {hint}"
    expected = error["msg"].removeprefix("Input should be ").split(", ")[0]  # "a valid number, unable to parse ..."
    if expected.startswith(("greater", "less")):
        expected = f"a number {expected}"
    return f"{where}: {path}: expected {expected}; got {received!r}. Fix: set {path} to {expected}."


def _field_names(root: type, loc: tuple[str, ...]) -> list[str]:
    """The keys a config section at ``loc`` accepts (for suggestions); [] where the path is not a section."""
    section: Any = root
    for part in loc:
        section = _fields(section).get(part)
    return list(_fields(section))


def _fields(section: Any) -> dict[str, Any]:
    """Field name -> type of a dataclass or pydantic model section (an optional section is unwrapped)."""
    if typing.get_origin(section) in (typing.Union, types.UnionType):
        section = next((arg for arg in typing.get_args(section) if arg is not type(None)), None)
    if isinstance(section, type) and issubclass(section, BaseModel):
        return {name: info.annotation for name, info in section.model_fields.items()}
    if isinstance(section, type) and dataclasses.is_dataclass(section):
        hints = typing.get_type_hints(section)
        return {f.name: hints[f.name] for f in dataclasses.fields(section)}
    return {}
