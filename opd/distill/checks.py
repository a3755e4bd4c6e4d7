"""Checks of a training config against the world, before any model is loaded.

Loading a student and teacher takes seconds to minutes; a wrong suite name, a
missing model directory or an unreachable hub name found after that is time
lost and, for a missing directory, a long transformers traceback. Each check
here gives one line; all problems are reported together.
"""

from __future__ import annotations

import os
from pathlib import Path

from opd.distill.config import TrainConfig
from opd.envs import make_suite
from opd.errors import ConfigError, OpdError
from opd.trajectories import TrajectoryStore

__all__ = ["check_before_loading", "model_problem"]

# What a directory needs to hold to load as a transformers model (weights in one of their formats).
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def check_before_loading(config: TrainConfig, *, where: str = "config") -> None:
    """Raise one :class:`ConfigError` listing every problem found (one line each), or return if there is none."""
    problems = [
        _suite_problem(config),
        _output_problem(config.output_dir),
        _store_problem(config.store),
        model_problem(config.student, "student"),
        model_problem(config.teacher, "teacher") if config.teacher else None,
    ]
    found = [f"{where}: {problem}" for problem in problems if problem]
    if found:
        raise ConfigError("\n".join(found))


def _suite_problem(config: TrainConfig) -> str | None:
    try:
        config.suites.load()  # the user's suite modules (suites.modules) first, so that their suites are found
    except OpdError as exc:
        return f"suites.modules: {exc}"
    try:
        make_suite(config.suite, **config.suite_options)
    except OpdError as exc:
        return f"suite: {exc}"
    except TypeError as exc:  # an option the suite's factory does not take
        return f"suite_options: {exc}. See `opd suites show {config.suite}` for its options."
    return None


def _output_problem(output_dir: str) -> str | None:
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        return f"output_dir: {path} is a file; set output_dir to a directory (it is created if missing)."
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not os.access(existing, os.W_OK):
        return f"output_dir: cannot create or write {path} ({existing} is not writable); choose a writable directory."
    return None


def _store_problem(store: str) -> str | None:
    if "://" not in store:
        parent = Path(store).parent
        existing = next((p for p in (parent, *parent.parents) if p.exists()), Path("."))
        if not Path(store).exists():
            writable = existing.is_dir() and os.access(existing, os.W_OK)
            return None if writable else f"store: cannot create {store} ({existing} is not a writable directory)."
    try:
        TrajectoryStore(store, read_only=True).close()  # refuses a file that is not a store, or a newer schema
    except OpdError as exc:
        return f"store: {exc}"
    return None


def model_problem(name: str | None, role: str) -> str | None:
    """Why ``name`` (a local directory or a hub name) cannot be loaded as the ``role`` model; None if it looks loadable."""
    if name is None:
        return None
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            return f"{role}: {name} is not a model directory (no config.json); pass a directory written by save_pretrained."
        if not any((path / weights).is_file() for weights in _WEIGHTS):
            return f"{role}: {name} holds no weights ({', '.join(_WEIGHTS[::2])}); was saving interrupted?"
        return None
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name:
        return f"{role}: no model directory at {name} (looked in {path.resolve()}); check the path, or give a hub name."
    return _hub_problem(name, role)


def _hub_problem(name: str, role: str) -> str | None:
    """None if hub model ``name`` is in the local cache or the hub answers for it; else one line saying why not."""
    from huggingface_hub import HfApi, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return None
    try:
        HfApi().model_info(name, timeout=10)
    except Exception as exc:  # offline mode, DNS, HTTP 401/404: all mean "cannot load it from here"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return (
            f"{role}: {name} is neither a local directory nor a reachable hub model ({type(exc).__name__}: {reason}); "
            "check the name and your network, or pass a local directory."
        )
    return None
