"""Argument types that accept what tool-calling models actually send.

Most tool APIs accept ``2.0`` for an integer argument (JSON has one number type,
and models often write integral floats); strict pydantic would reject it.
:data:`Integral` accepts an int, or a float with no fractional part, and nothing
else (``2.5``, ``"2"`` and ``True`` stay errors the model can read).
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any

import pydantic

__all__ = ["Integral", "lenient_ints"]


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value  # anything else goes on to the strict int check, which names the problem


Integral = Annotated[int, pydantic.BeforeValidator(_integral)]


def lenient_ints(hint: Any) -> Any:
    """``hint`` with every ``int`` (also inside ``list[int]``, ``dict[str, int]``, ``int | None``) made :data:`Integral`."""
    if hint is int:
        return Integral
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if not args or origin is typing.Literal or origin is Annotated:
        return hint
    rewritten = tuple(lenient_ints(a) for a in args)
    if rewritten == args:
        return hint
    if origin in (typing.Union, types.UnionType):
        return typing.Union[rewritten]  # noqa: UP007  (built from a tuple)
    return origin[rewritten] if origin is not None else hint
