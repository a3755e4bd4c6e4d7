"""What a new user meets first: a fast `opd --help` and the demo's one-line conclusion."""

from __future__ import annotations

import json
import subprocess
import sys

from opd.cli.demo import conclusion
from opd.distill.evaluate import EvalResult


def test_opd_help_imports_no_heavy_library() -> None:
    # `opd --help` used to take 4-5 s because every command module imported torch and transformers.
    probe = (
        "import sys\nfrom opd.cli.app import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('\\n' + __import__('json').dumps(sorted(m for m in ('torch', 'transformers', 'litellm', 'uvicorn') if m in sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "Usage" in result.stdout, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == []


def result(successes: int, low: float, high: float) -> EvalResult:
    return EvalResult(episodes=100, successes=successes, mean_reward=0.0, ci_low=low, ci_high=high)


def test_the_demo_concludes_in_one_line_whether_the_intervals_separate_the_arms() -> None:
    apart = conclusion(sft=result(30, 0.22, 0.40), opd=result(78, 0.69, 0.85))
    expected = "conclusion: OPD 78.0% vs SFT 30.0%: OPD is ahead and the difference is outside the 95% intervals"
    assert apart == expected + " (they do not overlap)."
    overlap = conclusion(sft=result(50, 0.40, 0.60), opd=result(55, 0.45, 0.65))
    assert "intervals overlap" in overlap and "does not separate OPD from SFT" in overlap
