"""The registry of tool suites, by name and as Gymnasium ids.

Each suite is registered once under a short name (``calculator``) and as a
Gymnasium id (``opd/Calculator-v0``), so both ``opd.envs.make_suite("calculator")``
and ``gymnasium.make("opd/Calculator-v0")`` work. Suites are registered as
factories so that options such as ``difficulty`` reach the suite.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from opd.envs.plugins import discover_suites
from opd.errors import ConfigError, UnknownNameError

if TYPE_CHECKING:
    from opd.envs.suite import ToolSuite

__all__ = ["gym_id", "make_suite", "register_suite", "registered", "suite_names"]

SuiteFactory = Callable[..., "ToolSuite"]

_FACTORIES: dict[str, SuiteFactory] = {}


def gym_id(name: str) -> str:
    """``"key_value"`` -> ``"opd/KeyValue-v0"``."""
    return "opd/" + "".join(part.capitalize() for part in name.split("_")) + "-v0"


def register_suite(name: str, factory: SuiteFactory | None = None, *, overwrite: bool = False) -> Any:
    """Register a suite factory under ``name`` and as a Gymnasium id.

    Usable as a decorator (``@register_suite("mine")``) or a call.
    """

    def add(fn: SuiteFactory) -> SuiteFactory:
        if not name.isidentifier() or name != name.lower():
            raise ConfigError(f"Suite names are lower_snake_case identifiers, got {name!r}.")
        if name in _FACTORIES and not overwrite and _FACTORIES[name] is not fn:
            raise ConfigError(f"A suite named {name!r} is already registered; pass overwrite=True to replace it.")
        _FACTORIES[name] = fn
        env_id = gym_id(name)
        if env_id in gym.registry:
            del gym.registry[env_id]
        gym.register(id=env_id, entry_point="opd.envs.tool_env:ToolEnv", kwargs={"suite": name})
        return fn

    return add(factory) if factory is not None else add


def make_suite(name: str, *, split: str = "all", **options: Any) -> ToolSuite:
    """Build the suite registered as ``name`` with ``options`` (e.g. ``difficulty="hard"``).

    ``split`` ("train", "eval" or "all") restricts its tasks to one split (see
    :class:`~opd.envs.splits.TaskSplit`); it is reserved, so it passes through
    ``ToolEnv(name, split=...)``, ``gymnasium.make`` and recorded suite options alike.
    A name that is not registered yet triggers the search for user suites (entry
    points, ``OPD_SUITES``; see :mod:`opd.envs.plugins`).
    """
    if name not in _FACTORIES:
        discover_suites()
    if name not in _FACTORIES:
        error = UnknownNameError("tool suite", name, _FACTORIES)
        error.message += (
            " A suite of your own is found through its module: `opd --import MODULE_OR_FILE`, the config key "
            "suites: {modules: [...]}, the OPD_SUITES path, or an 'opd.suites' entry point (docs/tool-suites.md)."
        )
        raise error
    factory = _FACTORIES[name]
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as exc:
        raise ConfigError(f"Bad options for suite {name!r}: {exc}. It accepts {inspect.signature(factory)}.") from None
    return factory(**options).with_split(split)


def registered(name: str) -> SuiteFactory | None:
    """The factory registered as ``name``, if any (no plugin search)."""
    return _FACTORIES.get(name)


def suite_names() -> list[str]:
    """Every registered suite name, user suites from entry points and ``OPD_SUITES`` included."""
    discover_suites()
    return sorted(_FACTORIES)
