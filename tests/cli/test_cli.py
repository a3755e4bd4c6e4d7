from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from opd.cli.app import app

runner = CliRunner()


def test_suites_play_runs_the_scripted_expert() -> None:
    for suite in ("calculator", "inventory"):
        result = runner.invoke(app, ["suites", "play", suite, "--episodes", "2", "--difficulty", "easy"])
        assert result.exit_code == 0, result.output
        assert f"{suite}: expert solved 2/2 tasks" in result.output
        assert "<tool_call>" in result.output  # model text is printed, not swallowed as markup


def test_suites_list_and_show() -> None:
    listed = runner.invoke(app, ["suites", "list"])
    assert listed.exit_code == 0 and "opd/Calculator-v0" in listed.output and "find_product" in listed.output
    wide = runner.invoke(app, ["suites", "list"], env={"COLUMNS": "400"})
    calculator = next(line for line in wide.output.splitlines() if "opd/Calculator-v0" in line)
    # The calculator's description is its factory's docstring: the table used to print all of it, options and indents too.
    assert "2, 3, 4 dependent calls." in calculator and "prompt_style" not in wide.output
    shown = runner.invoke(app, ["suites", "show", "inventory", "--difficulty", "hard"])
    assert shown.exit_code == 0 and '"name": "get_stock"' in shown.output and "sample task" in shown.output


def test_a_typo_gets_a_suggestion_and_a_nonzero_exit() -> None:
    result = runner.invoke(app, ["suites", "show", "inventroy"])
    assert result.exit_code == 2 and "Did you mean 'inventory'" in result.output


def test_the_installed_console_script_runs() -> None:
    script = Path(sys.executable).parent / "opd"
    assert script.exists(), "opd is not installed in this environment; run `make test`"
    result = subprocess.run([str(script), "suites", "play", "inventory", "--episodes", "1"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "expert solved 1/1 tasks" in result.stdout
    module = subprocess.run([sys.executable, "-m", "opd", "version"], capture_output=True, text=True, timeout=60)
    assert module.returncode == 0 and module.stdout.strip()
