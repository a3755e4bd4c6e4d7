"""Shared rich rendering for CLI commands."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape as escape_markup

from opd.terminal import visible

console = Console()


def escape(text: str) -> str:
    """``text`` safe to print: rich markup escaped, and terminal control sequences shown as ``\\xNN`` instead of obeyed."""
    return escape_markup(visible(text))


def show_turn(turn: int, action: str, observation: str) -> None:
    """Print one action and its observation; model and tool text is escaped, never interpreted as markup."""
    console.print(f"[bold cyan]turn {turn}[/] [dim]>[/] {escape(action)}")
    indented = "\n".join("  " + line for line in observation.splitlines() or [""])
    console.print(f"[green]{escape(indented)}[/]")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error for the user (no traceback) and exit."""
    console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)  # paths stay whole for copying
    raise typer.Exit(code)


def opd_command() -> str:
    """How this command was invoked (its full path when it was run by path), for commands the user can paste."""
    invoked = Path(sys.argv[0])
    return str(invoked.absolute()) if invoked.name == "opd" and invoked.exists() else "opd"


def describe_usage(usage: Mapping[str, Any]) -> str:
    """One line of a critique cost ledger: steps graded, unannotated, calls (cached), tokens and dollars."""
    parts = []
    if "steps" in usage:
        parts.append(f"{usage['steps']} steps graded, {usage['unannotated']} unannotated")
    parts.append(f"{usage['calls']} calls + {usage['cached']} cached")
    parts.append(f"{usage['prompt_tokens']:,} prompt + {usage['completion_tokens']:,} completion tokens")
    cost = usage["cost_usd"]
    parts.append("cost unknown (litellm has no price for this model)" if cost is None else f"${cost:.4f}")
    return "; ".join(parts)
