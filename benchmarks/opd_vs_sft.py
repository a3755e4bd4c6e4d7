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

To run OPD on to its own plateau against the same SFT arm, give both budgets in
tokens: each arm is saved under the settings it depends on, so with ``--resume``
the finished 1M-token SFT arm is read back and only OPD trains.

    .venv/bin/python benchmarks/opd_vs_sft.py --budget-tokens 300000 --sft-budget-tokens 1000000 \
        --eval-episodes 400 --sft-eval-every 25 --resume

With ``--deterministic`` the recipe uses calculator's deterministic expert (one
right action per state; its own teacher and student start, built and cached on
first use), and ``--arms`` adds the OPD variants of ``opd.distill.demo_arms``
(per-step weights, teacher-prefix mixing, a depth curriculum) from the same start
on the same budget. The table gives each arm's mean and sd over seeds, its
per-seed results and its pooled 95% Wilson interval, and says whether the best
OPD arm beats SFT outside both the seed spread and the evaluation's interval.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/opd_vs_sft.py --deterministic --eval-episodes 200 \
        --arms sft opd opd-stepw-divergence opd-stepw-position opd-prefix opd-curriculum --seeds 0 1 2

With ``--suite NAME`` (and ``-o KEY=VALUE`` suite options) the same recipe runs
on another suite with a scripted expert: its teacher and student start are built
as ``opd bootstrap`` builds them, and every episode (demonstrations, evaluations,
both arms' rollouts) borrows a sandbox from a pool opened as ``opd train`` opens
it, so on ``logs`` every tool call crosses into Docker. The pool starts its own
containers (``attach: false``): a benchmark must not borrow a test session's
``docker compose`` sandboxes. Each finished seed is saved under ``--workdir``;
``--resume`` reuses it, so a long run can be split over several invocations
(each arm is saved on its own: adding an arm to ``--arms`` trains only that arm).

    flock /tmp/opd-docker-tests.lock env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/opd_vs_sft.py --suite logs \
        -o difficulty=easy -o incidents=100 --numbers=-1099:99 --budget-tokens 60000 --eval-every 10 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import dataclasses
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
from opd.distill.demo_arms import ARMS
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


def finals(arm: str, results: list[DemoResult]) -> tuple[float, float, list[float]]:
    """An arm's mean and sd (over seeds) of final greedy success, and the per-seed values."""
    rates = [r.arms[arm].final_eval.success_rate for r in results]
    return float(np.mean(rates)), float(np.std(rates, ddof=1)) if len(rates) > 1 else 0.0, rates


def pooled_interval(arm: str, results: list[DemoResult]) -> tuple[float, float]:
    """The 95% Wilson interval of an arm's final success, all seeds' evaluations pooled."""
    evals = [r.arms[arm].final_eval for r in results]
    return wilson_interval(sum(e.successes for e in evals), sum(e.episodes for e in evals))


def arms_table(title: str, seeds: list[int], arms: list[str], results: list[DemoResult]) -> Table:
    table = Table(title=f"{title}: greedy success over seeds {seeds}, {results[0].teacher.episodes} held-out tasks per evaluation")
    for column in ("policy", "success mean ± sd", "per seed", "95% interval (seeds pooled)", "teacher-labelled tokens", "train wall s"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    table.add_row("teacher", f"{results[0].teacher.success_rate:.1%}", "-", "-", "-", "-")
    table.add_row("student start", f"{results[0].student_start.success_rate:.1%}", "-", "-", "0", "-")
    for arm in arms:
        mean, sd, rates = finals(arm, results)
        low, high = pooled_interval(arm, results)
        tokens = statistics.mean(r.arms[arm].labelled_tokens for r in results)
        wall = statistics.mean(r.wall_seconds[arm] for r in results)
        per_seed = " / ".join(f"{rate:.1%}" for rate in rates)
        interval = f"[{low:.1%}, {high:.1%}]"
        table.add_row(f"{arm}: {ARMS[arm].label}", f"{mean:.1%} ± {sd:.1%}", per_seed, interval, f"{tokens:,.0f}", f"{wall:.0f}")
    return table


def verdict(arms: list[str], results: list[DemoResult]) -> str:
    """Whether the best OPD arm beats SFT outside both intervals: mean ± sd over seeds, and the pooled Wilson interval."""
    best = max((a for a in arms if not ARMS[a].offpolicy), key=lambda a: finals(a, results)[0])
    (opd, opd_sd, opd_rates), (sft, sft_sd, sft_rates) = finals(best, results), finals("sft", results)
    seeds_apart = opd - opd_sd > sft + sft_sd
    wilson_apart = pooled_interval(best, results)[0] > pooled_interval("sft", results)[1]
    every_seed = all(o > s for o, s in zip(opd_rates, sft_rates, strict=True))
    outcome = "beats" if seeds_apart and wilson_apart else "does not beat"
    return (
        f"best OPD arm: {best} at {opd:.1%} ± {opd_sd:.1%} vs SFT {sft:.1%} ± {sft_sd:.1%}: it {outcome} SFT outside the intervals "
        f"(mean ± sd apart: {seeds_apart}; pooled 95% Wilson intervals apart: {wilson_apart}; ahead on every seed: {every_seed})"
    )


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


def arm_cache_settings(settings: dict[str, Any], arm: str, quick: bool) -> dict[str, Any]:
    """The settings one arm's result depends on: its own token budget and cadence, not the other arms'.

    So ``--resume`` reuses SFT's long arm when only OPD's budget changed (OPD run on
    to its plateau against the same 1M-token SFT arm), and the other way round.
    """
    budget_tokens = settings.get("budget_tokens", (DemoConfig.quick() if quick else DemoConfig()).budget_tokens)
    own = {k: v for k, v in settings.items() if k not in ("budget_tokens", "sft_budget_multiple")}
    if ARMS[arm].offpolicy:
        own.pop("opd_learning_rate", None)
        own["arm_budget_tokens"] = int(budget_tokens * settings["sft_budget_multiple"])  # as run_demo budgets it
    else:
        own.pop("sft_eval_every", None)
        own["arm_budget_tokens"] = budget_tokens
    return own


def _digest(settings: dict[str, Any], quick: bool) -> str:
    return hashlib.sha256(repr((sorted(settings.items()), quick)).encode()).hexdigest()[:8]


def sft_multiple(args: argparse.Namespace) -> float:
    """SFT's budget over OPD's: ``--sft-budget-tokens`` over OPD's budget when given, else ``--sft-multiple``."""
    if args.sft_budget_tokens is None:
        return args.sft_multiple
    return args.sft_budget_tokens / (args.budget_tokens or (DemoConfig.quick() if args.quick else DemoConfig()).budget_tokens)


def read_saved(saved: dict[str, Path], legacy_prefix: Path, legacy_digest: str) -> dict[str, DemoResult]:
    """The arms of ``saved`` (arm -> its file) already finished, read back.

    Files from before per-arm keys (``PREFIX-ARM-DIGEST.pickle``, or sft and opd together
    in ``PREFIX-DIGEST.pickle``, DIGEST over all the settings) are read too, and saved
    again under the arm's own key, so that a later command changing another arm's
    settings finds them.
    """
    done = {arm: pickle.loads(path.read_bytes()) for arm, path in saved.items() if path.is_file()}  # our own files
    for arm in saved:
        legacy = legacy_prefix.with_name(f"{legacy_prefix.name}-{arm}-{legacy_digest}.pickle")
        if arm not in done and legacy.is_file():
            done[arm] = pickle.loads(legacy.read_bytes())
    both = legacy_prefix.with_name(f"{legacy_prefix.name}-{legacy_digest}.pickle")
    if both.is_file():
        done.update({arm: r for arm, r in _split(pickle.loads(both.read_bytes())).items() if arm in saved and arm not in done})
    for arm, result in done.items():
        if not saved[arm].is_file():
            saved[arm].write_bytes(pickle.dumps(result))
    return done


def run_seed(args: argparse.Namespace, seed: int, console: Console) -> DemoResult:
    """One seed's arms; with ``--resume``, the arms saved by an earlier invocation are read back, only the others train."""
    settings = {**recipe(args), "train_seed": seed, "sft_budget_multiple": sft_multiple(args)}
    results = Path(args.workdir) / "results"
    keys = {arm: _digest(arm_cache_settings(settings, arm, args.quick), args.quick) for arm in args.arms}
    saved = {arm: results / f"{args.suite}-seed{seed}-{arm}-{key}.pickle" for arm, key in keys.items()}
    done = read_saved(saved, results / f"{args.suite}-seed{seed}", _digest(settings, args.quick)) if args.resume else {}
    if done:
        console.print(f"seed {seed}: {', '.join(done)} saved in {results}")
    missing = tuple(arm for arm in args.arms if arm not in done)
    if missing:
        config = (DemoConfig.quick if args.quick else DemoConfig)(**settings, arms=missing)
        started = time.perf_counter()
        result = run_demo(config, report=lambda m: console.print(f"[dim]seed {seed} {time.perf_counter() - started:6.1f}s[/] {m}"))
        results.mkdir(parents=True, exist_ok=True)
        for arm, single in _split(result).items():  # each arm on its own, so adding an arm later trains only that one
            saved[arm].write_bytes(pickle.dumps(single))
            done[arm] = single
    first = done[args.arms[0]]
    arms = {arm: done[arm].arms[arm] for arm in args.arms}
    return dataclasses.replace(first, arms=arms, wall_seconds={arm: done[arm].wall_seconds[arm] for arm in args.arms})


def _split(result: DemoResult) -> dict[str, DemoResult]:
    """One DemoResult per arm of ``result``, each with the shared teacher and start evaluations."""
    return {
        arm: dataclasses.replace(result, arms={arm: trained}, wall_seconds={arm: result.wall_seconds[arm]})
        for arm, trained in result.arms.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="the CI-sized budget")
    parser.add_argument("--workdir", default="runs/bench-opd-vs-sft")
    parser.add_argument("--sft-multiple", type=float, default=1.0, help="SFT's budget as a multiple of OPD's (10: to SFT's plateau)")
    parser.add_argument("--sft-budget-tokens", type=int, default=None, help="SFT's budget in tokens, instead of --sft-multiple")
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
    parser.add_argument("--arms", nargs="+", default=["sft", "opd"], choices=list(ARMS), help="arms to train from the same start")
    parser.add_argument("--resume", action="store_true", help="reuse the arms already finished under --workdir (per seed)")
    args = parser.parse_args()
    console = Console()
    results = [run_seed(args, seed, console) for seed in args.seeds]
    options = recipe(args)["suite_options"]
    console.print(arms_table(f"{args.suite} {options}", args.seeds, args.arms, results))
    if len(args.seeds) > 1 and "sft" in args.arms and len(args.arms) > 1:
        console.print(verdict(args.arms, results))
    equal = Table(title="at equal wall time: each arm's success when the fastest arm finished")
    for column in ("seed", "budget s", *args.arms):
        equal.add_column(column, justify="right")
    for seed, r in zip(args.seeds, results, strict=True):
        seconds = min(r.arms[a].curve[-1][2] for a in args.arms)
        reached = (success_at(r.arms[a].curve, r.student_start.success_rate, seconds) for a in args.arms)
        equal.add_row(str(seed), f"{seconds:.0f}", *(f"{success:.1%}" for success in reached))
    console.print(equal)
    if sft_multiple(args) > 1 and {"sft", "opd"} <= set(args.arms):
        console.print(to_sft_best_table(args.seeds, results))


if __name__ == "__main__":
    main()
