"""Tools from what already describes itself: a JSON schema (an API, an MCP server) or an object's methods.

Both give the same :class:`~opd.envs.tools.Tool` as ``@tool``: the schema the
model sees, and arguments validated strictly by a pydantic model before the
function runs (integers accept integral floats, see ``argument_types``), so a
wrong argument is an observation naming it, whatever the tool's origin.
"""

from __future__ import annotations

import inspect
import keyword
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Union

import pydantic

from opd.envs.argument_types import Integral
from opd.envs.tools import Tool, tool
from opd.errors import ConfigError

__all__ = ["CONTEXT_ARGUMENT", "tool_from_schema", "tools_from_object"]

CONTEXT_ARGUMENT = "__opd_context__"  # the keyword a schema tool's function receives its ToolContext under
_SCALARS: dict[str, Any] = {"string": str, "integer": Integral, "number": float, "boolean": bool, "null": type(None)}


def tool_from_schema(
    name: str, description: str, parameters: Mapping[str, Any], fn: Callable[..., Any], *, with_context: bool = False
) -> Tool:
    """A tool named ``name`` whose arguments follow the JSON schema ``parameters`` (an ``"object"`` schema).

    ``fn(**arguments)`` runs with the validated arguments; with ``with_context``
    it also gets the episode's ``ToolContext`` as ``__opd_context__``.
    """
    if parameters.get("type", "object") != "object":
        raise ConfigError(f"Tool {name!r}: parameters must be an 'object' JSON schema, got type {parameters.get('type')!r}.")
    properties: Mapping[str, Any] = parameters.get("properties", {})
    required = set(parameters.get("required", ()))
    fields: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    for prop, spec in properties.items():
        field = prop if prop.isidentifier() and not keyword.iskeyword(prop) and not prop.startswith("_") else f"arg_{len(fields)}"
        aliases[field] = prop
        default = ... if prop in required else spec.get("default")
        fields[field] = (_python_type(spec), pydantic.Field(default, alias=prop))
    model = pydantic.create_model(
        f"{name}_arguments",
        __config__=pydantic.ConfigDict(extra="forbid", strict=True, populate_by_name=False),
        **fields,
    )
    schema = {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": {"type": "object", **dict(parameters)}},
    }

    def call(**kwargs: Any) -> Any:
        context = kwargs.pop(CONTEXT_ARGUMENT, None)
        # An optional argument the model left out is not sent, so the API applies its own default.
        arguments = {aliases[k]: v for k, v in kwargs.items() if v is not None or aliases[k] in required}
        return fn(**arguments, **({CONTEXT_ARGUMENT: context} if with_context else {}))

    return Tool(name=name, fn=call, context_param=CONTEXT_ARGUMENT if with_context else None, arguments_model=model, declared_schema=schema)


def tools_from_object(obj: object, names: Sequence[str] | None = None) -> tuple[Tool, ...]:
    """One tool per public method of ``obj`` (or the methods in ``names``), each typed and documented like an ``@tool``.

    A stateful API client or service object becomes a suite's tools without
    wrapping each method by hand; the bound method keeps its object's state.
    """
    chosen = names or [n for n, m in inspect.getmembers(obj, inspect.ismethod) if not n.startswith("_")]
    tools = []
    for method_name in chosen:
        method = getattr(obj, method_name, None)
        if not callable(method):
            raise ConfigError(f"{type(obj).__name__} has no method {method_name!r}.")
        tools.append(tool(method, name=method_name))
    if not tools:
        raise ConfigError(f"{type(obj).__name__} has no public methods to turn into tools.")
    return tuple(tools)


def _python_type(spec: Mapping[str, Any]) -> Any:
    """The pydantic type of one JSON-schema property (scalars, enums, arrays, objects, unions); anything else is Any."""
    if "enum" in spec:
        return Literal[tuple(spec["enum"])]
    for key in ("anyOf", "oneOf"):
        if key in spec:
            return Union[tuple(_python_type(s) for s in spec[key])]  # noqa: UP007  (built from a tuple)
    kind = spec.get("type")
    if isinstance(kind, list):
        return Union[tuple(_python_type({**spec, "type": k}) for k in kind)]  # noqa: UP007
    if kind == "array":
        return list[_python_type(spec.get("items", {}))]
    if kind == "object":
        return dict[str, Any]
    return _SCALARS.get(kind, Any)
