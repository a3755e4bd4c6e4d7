"""On-policy distillation vs off-policy SFT, over several seeds, at equal teacher-labelled tokens and at equal wall time.

Runs the `opd demo` recipe: one teacher and one shared student start (built
once and cached), then for each seed both arms from that start with the same
budget of teacher-labelled tokens. Prints mean +- sd of final greedy success
per arm, the teacher's success, and the success each arm had reached at the
wall time the faster arm needed (OPD spends more compute per labelled token).

    .venv/bin/python benchmarks/opd_vs_sft.py [--seeds 0 1 2] [--quick]

With ``--sft-multiple 10`` SFT may spend ten times OPD's budget (enough to
plateau) and a third table gives, per seed, the teacher-labelled tokens each arm
needs to first reach SFT's best held-out success: at its point estimate and at
the low end of its 95% interval (evaluate on at least 400 tasks, ``--eval-episodes
400``, so that interval is narrower than the effect), and SFT's tokens over OPD's.

    .venv/bin/python benchmarks/opd_vs_sft.py --sft-multiple 10 --eval-episodes 400 --sft-eval-every 25

(``--sft-eval-every`` evaluates the long SFT arm less often: each evaluation of 400
tasks costs about as much as several updates, and SFT's best over fewer evaluations
is less inflated by the evaluation's own noise.)

With ``--suite NAME`` (and ``-o KEY=VALUE`` suite options) the same recipe runs
on another suite with a scripted expert: its teacher and student start are built
as ``opd bootstrap`` builds them, and every episode (demonstrations, evaluations,
both arms' rollouts) borrows a sandbox from a pool opened as ``opd train`` opens
it, so on ``logs`` every tool call crosses into Docker. The pool starts its own
containers (``attach: false``): a benchmark must not borrow a test session's
``docker compose`` sandboxes. Each finished seed is saved under ``--workdir``;
``--resume`` reuses it, so a long run can be split over several invocations.

    flock /tmp/opd-docker-tests.lock env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/opd_vs_sft.py --suite logs \
        -o difficulty=easy -o incidents=100 --numbers=-1099:99 --budget-tokens 60000 --eval-every 10 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from opd.cli.options import parse_options
from opd.distill.demo import DemoConfig, DemoResult, run_demo
from opd.distill.evaluate import wilson_interval
from opd.envs.lending import SandboxConfig

Curve = tuple[tuple[int, int, float, float], ...]  # (update, labelled tokens, wall seconds, success)


def success_at(curve: tuple[tuple[int, int, float, float], ...], start: float, seconds: float) -> float:
    """The last evaluated success at or before ``seconds`` of training."""
    reached = [success for _, _, wall, success in curve if wall <= seconds]
    return reached[-1] if reached else start


def tokens_to_reach(curve: Curve, target: float) -> int | None:
    """The labelled tokens at the first evaluation with success at or above ``target``; None if never."""
    return next((tokens for _, tokens, _, success in curve if success >= target - 1e-12), None)


def sft_best(result: DemoResult) -> tuple[float, float]:
    """SFT's best evaluated success and the low end of its 95% Wilson interval."""
    best = max(success for *_, success in result.arms["sft"].curve)
    episodes = result.arms["sft"].final_eval.episodes
    return best, wilson_interval(round(best * episodes), episodes)[0]


def to_sft_best_table(seeds: list[int], results: list[DemoResult]) -> Table:
    table = Table(title="teacher-labelled tokens to first reach SFT's best held-out success (point / low end of its 95% interval)")
    for column in ("seed", "SFT best", "SFT tokens", "OPD tokens", "SFT / OPD (point)", "OPD tokens to interval", "SFT / OPD (interval)"):
        table.add_column(column, justify="right")
    for seed, r in zip(seeds, results, strict=True):
        best, low = sft_best(r)
        sft, opd, opd_low = (tokens_to_reach(r.arms[a].curve, t) for a, t in (("sft", best), ("opd", best), ("opd", low)))
        ratio = f"{sft / opd:.1f}x" if sft and opd else "not reached"
        ratio_low = f"{sft / opd_low:.1f}x" if sft and opd_low else "not reached"
        table.add_row(
            str(seed),
            f"{best:.1%} (≥{low:.1%})",
            f"{sft:,}",
            f"{opd:,}" if opd else "-",
            ratio,
            f"{opd_low:,}" if opd_low else "-",
            ratio_low,
        )
    return table


def recipe(args: argparse.Namespace) -> dict[str, Any]:
    """The DemoConfig settings shared by every seed: the suite, its options and the model recipe."""
    options = dict(DemoConfig().suite_options) if args.suite == "calculator" else {}
    options.update(parse_options(args.option))
    if args.deterministic:  # a different recipe: its own teacher and student start, built and cached on first use
        options["expert"] = "deterministic"
    settings: dict[str, Any] = {"suite": args.suite, "suite_options": options, "workdir": args.workdir, "store": f"{args.workdir}/opd.db"}
    settings["sandbox"] = SandboxConfig(attach=False, size=args.sandbox_size)
    if args.numbers:
        low, _, high = args.numbers.partition(":")
        if not (low.lstrip("-").isdigit() and high.lstrip("-").isdigit() and int(low) <= int(high)):
            raise SystemExit(f"--numbers is LOW:HIGH with LOW <= HIGH, e.g. --numbers=-1099:99; got {args.numbers!r}.")
        settings["numbers"] = (int(low), int(high))
    if args.demonstrations:
        settings["demonstrations"] = args.demonstrations
    for key in ("eval_episodes", "eval_every", "sft_eval_every", "budget_tokens", "opd_learning_rate"):
        if getattr(args, key):
            settings[key] = getattr(args, key)
    return settings


def run_seed(args: argparse.Namespace, seed: int, console: Console) -> DemoResult:
    """One seed's two arms, or its saved result with ``--resume`` (saved once both arms finished)."""
    settings = {**recipe(args), "train_seed": seed, "sft_budget_multiple": args.sft_multiple}
    config = DemoConfig.quick(**settings) if args.quick else DemoConfig(**settings)
    digest = hashlib.sha256(repr((sorted(settings.items()), args.quick)).encode()).hexdigest()[:8]  # these settings' result only
    saved = Path(args.workdir) / "results" / f"{args.suite}-seed{seed}-{digest}.pickle"
    if args.resume and saved.is_file():
        console.print(f"seed {seed}: the result saved in {saved}")
        return pickle.loads(saved.read_bytes())  # our own file, written below
    started = time.perf_counter()
    result = run_demo(config, report=lambda m: console.print(f"[dim]seed {seed} {time.perf_counter() - started:6.1f}s[/] {m}"))
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_bytes(pickle.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="the CI-sized budget")
    parser.add_argument("--workdir", default="runs/bench-opd-vs-sft")
    parser.add_argument("--sft-multiple", type=float, default=1.0, help="SFT's budget as a multiple of OPD's (10: to SFT's plateau)")
    parser.add_argument("--deterministic", action="store_true", help="calculator's deterministic expert (one right action per state)")
    parser.add_argument("--eval-episodes", type=int, default=None, help="held-out tasks per evaluation (default: the recipe's)")
    parser.add_argument("--eval-every", type=int, default=None, help="updates between evaluations (default: the recipe's)")
    parser.add_argument("--sft-eval-every", type=int, default=None, help="SFT arm: updates between evaluations (default: --eval-every)")
    parser.add_argument("--budget-tokens", type=int, default=None, help="OPD's teacher-labelled tokens per seed (default: the recipe's)")
    parser.add_argument("--opd-learning-rate", type=float, default=None, help="the OPD arm's learning rate (default: the recipe's 1e-3)")
    parser.add_argument("--suite", default="calculator", help="any registered suite with a scripted expert")
    parser.add_argument("-o", "--option", action="append", default=[], help="suite option KEY=VALUE (repeatable), as in opd train")
    parser.add_argument("--numbers", help="integers that are one token each, LOW:HIGH (default 0:max_value or 0:99)")
    parser.add_argument("--demonstrations", type=int, help="scripted-expert episodes the teacher learns from (default: the recipe's)")
    parser.add_argument("--sandbox-size", type=int, default=8, help="sandboxes in the pool, for suites that need isolation")
    parser.add_argument("--resume", action="store_true", help="reuse the seeds already finished under --workdir")
    args = parser.parse_args()
    console = Console()
    results = [run_seed(args, seed, console) for seed in args.seeds]
    options = recipe(args)["suite_options"]
    table = Table(title=f"{args.suite} {options}: greedy success over seeds {args.seeds}, {results[0].teacher.episodes} held-out tasks")
    for column in ("policy", "success mean ± sd", "teacher-labelled tokens", "train wall s"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    table.add_row("teacher", f"{results[0].teacher.success_rate:.1%}", "-", "-")
    table.add_row("student start", f"{results[0].student_start.success_rate:.1%}", "0", "-")
    for arm, label in (("sft", "off-policy SFT on teacher episodes"), ("opd", "OPD, token-level reverse KL")):
        finals = [r.arms[arm].final_eval.success_rate for r in results]
        tokens = statistics.mean(r.arms[arm].labelled_tokens for r in results)
        wall = statistics.mean(r.wall_seconds[arm] for r in results)
        table.add_row(
            label, f"{np.mean(finals):.1%} ± {np.std(finals, ddof=1) if len(finals) > 1 else 0:.1%}", f"{tokens:,.0f}", f"{wall:.0f}"
        )
    console.print(table)
    equal = Table(title="at equal wall time: each arm's success when the faster arm finished")
    for column in ("seed", "budget s", "SFT", "OPD"):
        equal.add_column(column, justify="right")
    for seed, r in zip(args.seeds, results, strict=True):
        seconds = min(r.arms["sft"].curve[-1][2], r.arms["opd"].curve[-1][2])
        equal.add_row(
            str(seed),
            f"{seconds:.0f}",
            *(f"{success_at(r.arms[a].curve, r.student_start.success_rate, seconds):.1%}" for a in ("sft", "opd")),
        )
    console.print(equal)
    if args.sft_multiple > 1:
        console.print(to_sft_best_table(args.seeds, results))


if __name__ == "__main__":
    main()
