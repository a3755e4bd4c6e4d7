"""What a new user meets first: a fast `opd --help` and the demo's one-line conclusion."""

from __future__ import annotations

import json
import subprocess
import sys

from opd.cli.demo import conclusion
from opd.distill.evaluate import EvalResult

# What a help screen must not import: each costs from 0.1 s (numpy) to seconds (torch), and none is needed to
# print options. The store (SQLAlchemy, Alembic, the schema) and the suites are imported by the commands that use them.
HEAVY = (
    "torch", "transformers", "litellm", "uvicorn", "docker", "sqlalchemy", "alembic", "sqlmodel", "numpy", "gymnasium",
    "opd.envs", "opd.agents", "opd.distill", "opd.trajectories.",
)  # fmt: skip
HELP_PROBE = """
import json, sys
import typer
from opd.cli.app import app


def command_paths(command, path):
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from command_paths(sub, [*path, name])


shown = []
for path in command_paths(typer.main.get_command(app), []):
    try:
        app([*path, "--help"])
    except SystemExit as exit:
        if exit.code == 0:
            shown.append(" ".join(path))
heavy = [m for m in sorted(sys.modules) if any(m == h or m.startswith(h if h.endswith(".") else h + ".") for h in HEAVY)]
print("\\n" + json.dumps({"shown": shown, "heavy": heavy}))
"""


def test_opd_help_and_every_command_help_import_no_heavy_library() -> None:
    # `opd --help` used to take 4-5 s because every command module imported torch and transformers, then 2 s
    # because they imported the store (SQLAlchemy, Alembic) and the suites. A fresh interpreter: this test process
    # has long imported all of them through other tests.
    probe = f"HEAVY = {HEAVY!r}\n{HELP_PROBE}"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert {"", "train", "eval", "view", "episodes", "episodes list", "runs list", "suites list"} <= set(report["shown"])
    assert result.stdout.count("Usage") == len(report["shown"])
    assert report["heavy"] == []


def result(successes: int, low: float, high: float) -> EvalResult:
    return EvalResult(episodes=100, successes=successes, mean_reward=0.0, ci_low=low, ci_high=high)


def test_the_demo_concludes_in_one_line_whether_the_intervals_separate_the_arms() -> None:
    apart = conclusion(sft=result(30, 0.22, 0.40), opd=result(78, 0.69, 0.85))
    expected = "conclusion: OPD 78.0% vs SFT 30.0%: OPD is ahead and the difference is outside the 95% intervals"
    assert apart == expected + " (they do not overlap)."
    overlap = conclusion(sft=result(50, 0.40, 0.60), opd=result(55, 0.45, 0.65))
    assert "intervals overlap" in overlap and "does not separate OPD from SFT" in overlap
