"""Typed ``-o KEY=VALUE`` suite options and the ``--split`` choice, shared by every command that takes a suite."""

from __future__ import annotations

from typing import Any

import typer
import yaml

from opd.cli.render import fail

OPTION_HELP = "Suite option as KEY=VALUE (repeatable), typed as in YAML: -o difficulty=easy -o max_value=99."
SPLIT_HELP = "Task split: train, eval or all (default: eval for a suite whose task set is split, else all)."
SUITE_OPTION: Any = typer.Option([], "--option", "-o", help=OPTION_HELP)  # shared by every command that takes a suite


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["max_value=99", "difficulty=easy"]`` -> ``{"max_value": 99, "difficulty": "easy"}`` (values read as YAML scalars)."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            fail(f"--option expects KEY=VALUE, got {item!r}.")
        try:
            options[key.strip()] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            options[key.strip()] = text  # not YAML: the text as written
    return options


def load_suite_modules(specs: list[str]) -> None:
    """Import the user's suite modules (``--import``), or exit with the reason one failed."""
    from opd.envs.plugins import import_suite_modules
    from opd.errors import OpdError

    try:
        import_suite_modules(specs)
    except OpdError as exc:
        fail(str(exc))


def default_split(suite: str, options: dict[str, Any], split: str | None, *, fixed: str = "eval") -> str:
    """The split asked for, or ``fixed`` for a suite whose task set is split by default, else ``all``."""
    from opd.envs import make_suite

    if split is not None:
        if split not in ("train", "eval", "all"):
            fail(f"--split is train, eval or all, got {split!r}.")
        return split
    return fixed if make_suite(suite, **options).splits_tasks else "all"
