"""Finding the tool suites users bring: entry points, named modules or files, and a search path.

A suite is registered by importing the module that calls :func:`register_suite`.
The ``opd`` command (and ``torchrun -m opd train``, where every rank imports
again) finds user modules in three ways:

- installed packages declare an entry point in the group ``opd.suites``
  (``shop = "shop_suites"`` for a module, or ``shop = "shop_suites:shop_suite"``
  for a factory, which is then registered under the entry point's name);
- a config key (``suites: {modules: [...]}``) or the ``--import`` option names
  a module (``shop_suites``) or a file path (``suites/shop.py``, or a package
  directory);
- the ``OPD_SUITES`` environment variable holds a search path (entries joined
  by ``os.pathsep``): each entry a module name, a ``.py`` file, a package
  directory, or a directory whose every ``.py`` file and package is imported.

Entry points and ``OPD_SUITES`` are read once, the first time a suite name is
looked up that is not built in (or the list of names is asked for), so a broken
plugin never gets in the way of the built-in suites. A module that fails to
import raises :class:`SuiteImportError` naming the module and the cause.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from opd.errors import ConfigError

__all__ = ["ENTRY_POINT_GROUP", "PATH_VARIABLE", "SuiteImportError", "discover_suites", "import_suite_module", "import_suite_modules"]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "opd.suites"
PATH_VARIABLE = "OPD_SUITES"

_discovered = False


class SuiteImportError(ConfigError):
    """A user's suite module could not be imported (or an entry point could not be loaded)."""


def import_suite_modules(specs: Iterable[str], *, base: Path | None = None) -> list[ModuleType]:
    """Import each spec (a module name, a ``.py`` file, a package or a directory of modules); relative paths from ``base``."""
    return [module for spec in specs for module in _import_spec(spec, base=base)]


def import_suite_module(spec: str, *, base: Path | None = None) -> ModuleType:
    """Import one module name or file path, raising :class:`SuiteImportError` that names it and the cause."""
    path = _as_path(spec, base)
    if path is None:
        return _guarded(spec, lambda: importlib.import_module(spec))
    if not path.exists():
        raise SuiteImportError(f"Suite module {spec!r}: no file or directory at {path}. Give a module name or an existing path.")
    return _guarded(str(path), lambda: _import_file(path))


def discover_suites(*, force: bool = False) -> None:
    """Load the ``opd.suites`` entry points and the ``OPD_SUITES`` search path (once per process unless ``force``)."""
    global _discovered
    if _discovered and not force:
        return
    _discovered = True  # set first: a failing plugin is reported once, not on every lookup
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        _load_entry_point(entry_point)
    for entry in filter(None, os.environ.get(PATH_VARIABLE, "").split(os.pathsep)):
        _import_spec(entry, base=None, variable=True)


def _import_spec(spec: str, *, base: Path | None, variable: bool = False) -> list[ModuleType]:
    path = _as_path(spec, base)
    if path is not None and path.is_dir() and not (path / "__init__.py").is_file():
        modules = sorted(p for p in path.iterdir() if (p.suffix == ".py" and not p.name.startswith("_")) or (p / "__init__.py").is_file())
        return [import_suite_module(str(p)) for p in modules]
    if variable and path is not None and not path.exists():
        raise SuiteImportError(f"{PATH_VARIABLE} names {spec!r}, which does not exist. Fix or remove that entry.")
    return [import_suite_module(spec, base=base)]


def _as_path(spec: str, base: Path | None) -> Path | None:
    """``spec`` as a path if it looks like one (a separator, a ``.py`` suffix, or an existing directory), else None."""
    looks_like_path = os.sep in spec or "/" in spec or spec.endswith(".py") or spec.startswith(".")
    candidate = Path(spec).expanduser()
    if base is not None and not candidate.is_absolute():
        candidate = base / candidate
    if looks_like_path or (candidate.is_dir() and not spec.isidentifier()):
        return candidate.resolve()
    return None


def _import_file(path: Path) -> ModuleType:
    """Import a ``.py`` file or a package directory under its own name; its parent joins ``sys.path`` for its own imports."""
    name = path.stem if path.is_file() else path.name
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) in (str(path), str(path / "__init__.py")):
        return sys.modules[name]  # already imported: importing twice would register its suites twice
    parent = str(path.parent)
    if parent not in sys.path:
        sys.path.append(parent)  # appended, so a user file never shadows an installed module
    location = path if path.is_file() else path / "__init__.py"
    spec = importlib.util.spec_from_file_location(name, location, submodule_search_locations=None if path.is_file() else [str(path)])
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot build an import spec for {location}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _guarded(name: str, load) -> ModuleType:
    try:
        return load()
    except SuiteImportError:
        raise
    except Exception as exc:
        where = _innermost_frame(exc)
        raise SuiteImportError(f"Could not import suite module {name!r}: {exc.__class__.__name__}: {exc}{where}") from exc


def _load_entry_point(entry_point: importlib.metadata.EntryPoint) -> None:
    from opd.envs.registry import register_suite, registered

    source = f"entry point {entry_point.name!r} = {entry_point.value!r} (group {ENTRY_POINT_GROUP})"
    try:
        loaded = entry_point.load()
    except Exception as exc:
        raise SuiteImportError(f"Could not load {source}: {exc.__class__.__name__}: {exc}{_innermost_frame(exc)}") from exc
    if isinstance(loaded, ModuleType):
        return  # importing the module registered its suites
    if not callable(loaded):
        raise SuiteImportError(f"{source} names a {type(loaded).__name__}; expected a module or a suite factory (a callable).")
    if registered(entry_point.name) is not loaded:
        register_suite(entry_point.name, loaded)


def _innermost_frame(exc: BaseException) -> str:
    """`` (at file:line)`` of where the exception was raised, to point at the user's line."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
