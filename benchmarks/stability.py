"""When on-policy distillation hurts: the demo's models on a small fixed task set, one row per divergence and learning rate.

The issue's report: on a suite of 25 fixed multi-turn tasks, six updates of the
demo's recipe (token-level reverse KL to the teacher's top-16 log-probs, 16
episodes per update) took a tiny student from 55% to 20% on its own training
tasks. This script reproduces that setting on ``calculator`` (the demo's teacher
and student start, built once and cached) restricted to ``--tasks`` fixed tasks,
and trains each arm from the same start for ``--updates`` updates, evaluating
greedily on the same fixed tasks every ``--eval-every`` updates. It prints, per arm
and seed, the start, the worst and the final success, and how often the guard
flagged a regression.

    .venv/bin/python benchmarks/stability.py [--seeds 0 1] [--updates 12] [--tasks 25] [--models runs/demo]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from opd.agents.policy import CausalLMPolicy, SamplingConfig
from opd.distill.config import TrainConfig
from opd.distill.demo import DemoConfig, demo_models
from opd.distill.evaluate import evaluate
from opd.distill.guard import GuardConfig
from opd.distill.losses import LossConfig
from opd.distill.suites import SuitesConfig
from opd.distill.train import train
from opd.envs import Task, make_suite, register_suite

FIXED_SUITE = "calculator_fixed"

# (name, divergence, divergence params, learning rate, student sampling temperature)
ARMS: dict[str, tuple[str, dict[str, Any], float, float]] = {
    "reverse KL, lr 1e-3, T=0.7 (demo recipe)": ("reverse_kl", {}, 1e-3, 0.7),
    "reverse KL, lr 1e-3, T=1.0": ("reverse_kl", {}, 1e-3, 1.0),
    "reverse KL, lr 3e-4, T=1.0": ("reverse_kl", {}, 3e-4, 1.0),
    "forward KL, lr 1e-3, T=1.0": ("forward_kl", {}, 1e-3, 1.0),
    "JSD(0.5), lr 1e-3, T=1.0": ("jsd", {"beta": 0.5}, 1e-3, 1.0),
    "reverse KL, lr 1e-2, T=1.0": ("reverse_kl", {}, 1e-2, 1.0),
    "forward KL, lr 1e-2, T=1.0": ("forward_kl", {}, 1e-2, 1.0),
    "JSD(0.5), lr 1e-2, T=1.0": ("jsd", {"beta": 0.5}, 1e-2, 1.0),
}


@dataclasses.dataclass(frozen=True)
class FixedTasks:
    """A task source that draws, uniformly, from a fixed list of tasks: training and evaluation see the same few."""

    tasks: tuple[Task, ...]

    def sample(self, rng: np.random.Generator) -> Task:
        return self.tasks[int(rng.integers(len(self.tasks)))]


def register_fixed_suite(tasks: int, **options: Any) -> None:
    """Register ``calculator_fixed``: calculator with ``options``, restricted to the tasks of seeds 0..tasks-1."""
    base = make_suite("calculator", **options)
    pool = tuple(base.tasks.sample(np.random.default_rng(seed)) for seed in range(tasks))

    def factory(**_: Any):  # the options are fixed at registration
        return dataclasses.replace(base, name=FIXED_SUITE, tasks=FixedTasks(pool))

    register_suite(FIXED_SUITE, factory, overwrite=True)


def arm_config(name: str, seed: int, args: argparse.Namespace, student: Path, teacher: Path) -> TrainConfig:
    divergence, params, lr, temperature = ARMS[name]
    slug = name.split(",")[0].replace(" ", "").lower() + f"-lr{lr:g}-t{temperature:g}-seed{seed}"
    return TrainConfig(
        student=str(student),
        teacher=str(teacher),
        suite=FIXED_SUITE,
        run_name=f"stability: {name}",
        store=f"{args.workdir}/opd.db",
        output_dir=f"{args.workdir}/{slug}",
        seed=seed,
        updates=args.updates,
        episodes_per_update=16,
        learning_rate=lr,
        loss=LossConfig(kind="token", divergence=divergence, divergence_params=params),
        teacher_k=16,
        sampling=SamplingConfig(temperature=temperature, max_new_tokens=32),
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        checkpoint_every=0,
        tensorboard=False,
        guard=GuardConfig(action="warn"),
        suites=SuitesConfig(split=False),  # the setting: evaluated on its own training tasks, not a held-out fifth of them
    )


def run_arm(config: TrainConfig) -> dict[str, Any]:
    started = time.perf_counter()
    result = train(config, resume=False)
    lines = [json.loads(line) for line in (Path(config.output_dir) / "metrics.jsonl").read_text().splitlines()]
    evals = [line["eval/success"] for line in lines if "eval/success" in line]
    return {
        "worst": min(evals),
        "final": result.final_eval.success_rate,
        "regressions": sum(line.get("guard/regression", 0.0) for line in lines),
        "spikes": sum(line.get("guard/spike", 0.0) for line in lines),
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--updates", type=int, default=12)
    parser.add_argument("--eval-every", type=int, default=3)
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=25)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), help="row names (default: all)")
    parser.add_argument("--lr", type=float, default=None, help="only the arms at this learning rate")
    parser.add_argument("--workdir", default="runs/bench-stability")
    parser.add_argument("--models", default="runs/demo", help="the demo's workdir holding (or to hold) its cached models")
    args = parser.parse_args()
    console = Console()
    demo = DemoConfig(workdir=args.models)
    teacher, student = demo_models(demo, report=console.print)
    register_fixed_suite(args.tasks, **demo.suite_options)
    start, teacher_eval = (
        evaluate(CausalLMPolicy.from_pretrained(str(path)), FIXED_SUITE, episodes=args.eval_episodes)[0] for path in (student, teacher)
    )
    console.print(f"on the {args.tasks} fixed tasks: student start {start.describe()}, teacher {teacher_eval.describe()}")
    rows: dict[str, list[dict[str, Any]]] = {}
    for name in [a for a in args.arms if args.lr is None or ARMS[a][2] == args.lr]:
        for seed in args.seeds:
            rows.setdefault(name, []).append(outcome := run_arm(arm_config(name, seed, args, student, teacher)))
            console.print(f"[dim]{name} seed {seed}:[/] " + ", ".join(f"{k} {v:.3g}" for k, v in outcome.items()))
    title = f"calculator, {args.tasks} fixed tasks, {args.updates} updates of 16 episodes, seeds {args.seeds}"
    table = Table(title=f"{title}; student start {start.success_rate:.0%}, teacher {teacher_eval.success_rate:.0%}")
    for column in ("arm", "worst eval (mean)", "final (per seed)", "final mean", "regressions flagged", "s per arm"):
        table.add_column(column, justify="left" if column == "arm" else "right")
    for name, outcomes in rows.items():
        finals = [o["final"] for o in outcomes]
        table.add_row(
            name,
            f"{statistics.mean(o['worst'] for o in outcomes):.0%}",
            " / ".join(f"{f:.0%}" for f in finals),
            f"{statistics.mean(finals):.0%}",
            f"{sum(o['regressions'] for o in outcomes):.0f}",
            f"{statistics.mean(o['seconds'] for o in outcomes):.0f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
