"""benchmarks/vs_trl.py: TRL's GKD trainer and opd's loop, each for 2 updates on tiny models, give one finite table."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
from rich.console import Console

pytest.importorskip("trl.experimental.gkd", reason='TRL is a benchmark dependency: pip install -e ".[benchmark]" (also in [test])')

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "vs_trl.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("vs_trl", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["vs_trl"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_three_arms_train_and_the_table_has_finite_numbers(models: tuple[Path, Path], tmp_path: Path) -> None:
    vs_trl = load_benchmark()
    student, teacher = models
    settings = vs_trl.Settings(
        student=str(student), teacher=str(teacher), workdir=str(tmp_path), updates=2, prompts=4, max_new_tokens=8, eval_episodes=2
    )
    results = [vs_trl.run_arm(arm, settings) for arm in vs_trl.ARMS]  # in this process; the benchmark gives each arm its own
    assert [r.arm for r in results] == list(vs_trl.ARMS)
    for r in results:
        assert len(r.update_seconds) == 2 and all(t > 0 for t in r.update_seconds)
        assert r.peak_rss_mib >= r.start_rss_mib > 0
        assert 0 < r.completion_tokens <= 4 * 8  # each update sampled up to 4 completions of up to 8 tokens
        assert r.eval_episodes == 2 and 0.0 <= r.success <= 1.0
    assert (tmp_path / "trl-best" / "student" / "model.safetensors").is_file()  # what TRL trained is what was evaluated
    console = Console(width=250, record=True)
    console.print(vs_trl.comparison_table(results))
    rows = [line for line in console.export_text().splitlines() if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == list(vs_trl.ARMS)
    added = 5  # the "x added" column: TRL-best's training may add no resident memory in a long test process (no ratio then)
    for row in rows:
        cells = [cell.strip().rstrip("x") for cell in row.split("│")[2:-2]]
        assert len(cells) == 7
        if results[0].training_rss_mib == 0:
            assert cells.pop(added) == "n/a"
        assert all(math.isfinite(float(cell)) for cell in cells)
    assert rows[0].split("│")[3].strip() == "1.00x"  # TRL's best configuration is the baseline
