"""Routing steps between a small and a large teacher: student success against teacher FLOPs, side by side.

On the `opd demo` recipe (calculator, easy, terse; the models are built once and
cached): the large teacher is the demo's (2 layers, d=128); the small one
(1 layer, d=48 unless --small-layers/--small-hidden say otherwise) is trained here by SFT on the same scripted-expert
demonstrations. The small teacher's step uncertainty on the student start's own
rollouts sets the threshold so that about ``--large-share`` of the steps go to
the large teacher. From the demo's student start, three arms with the same
updates and seed:

* large: every step scored by the large teacher;
* small: every step scored by the small teacher;
* routed: the small teacher, falling back to the large one where the small one's
  uncertainty on the step exceeds the threshold.

Prints per arm: greedy success on held-out tasks, the large teacher's share of the
steps, the tokens each teacher read and the teachers' FLOPs (2 x parameters x
tokens read), from the run's routing metrics.

    .venv/bin/python benchmarks/routing.py [--updates 20] [--large-share 0.3]
    .venv/bin/python benchmarks/routing.py --smoke   # untrained tiny models, one update: checks the pipeline, measures nothing
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from opd.agents.policy import CausalLMPolicy, SamplingConfig
from opd.agents.rollout import collect_episodes, expert_demonstration
from opd.agents.routing import RouteRule, RoutingConfig, step_uncertainty
from opd.agents.teacher import WhiteBoxTeacher
from opd.agents.tiny import build_tiny_model, build_word_tokenizer, expert_texts
from opd.distill.config import TrainConfig
from opd.distill.demo import DemoConfig, demo_models
from opd.distill.evaluate import evaluate
from opd.distill.losses import LossConfig
from opd.distill.sft import sft
from opd.distill.train import train
from opd.envs import ToolEnv


def small_teacher(large: Path, workdir: Path, options: dict, size: tuple[int, int], steps: int, console: Console) -> Path:
    """A (layers, hidden) teacher over the demo's tokenizer, SFT'd on expert demonstrations; cached per size and steps."""
    layers, hidden = size
    directory = workdir / f"small-teacher-{layers}x{hidden}-{steps}"
    if (directory / "config.json").is_file():
        return directory
    tokenizer = CausalLMPolicy.from_pretrained(str(large)).tokenizer
    build_tiny_model(tokenizer, directory, layers=layers, hidden=hidden, heads=2, seed=7)
    policy = CausalLMPolicy.from_pretrained(str(directory))
    env = ToolEnv("calculator", **options)
    demonstrations = [expert_demonstration(policy.chat, env, seed, run_id="routing-demos") for seed in range(1000)]
    console.print(f"training the small teacher: {steps} SFT steps on {len(demonstrations)} demonstrations")
    sft(policy, demonstrations, steps=steps, learning_rate=3e-3, seed=7)
    policy.model.save_pretrained(directory)
    return directory


def smoke_models(workdir: Path, options: dict) -> tuple[Path, Path, Path]:
    """Untrained tiny models over one word tokenizer (large, small, student): for checking the pipeline only."""
    directory = workdir / "smoke"
    tokenizer = build_word_tokenizer(expert_texts(ToolEnv("calculator", **options), 100), directory / "tokenizer", numbers=range(0, 100))
    for name, layers, hidden in (("large", 2, 64), ("small", 1, 16), ("student", 1, 16)):
        build_tiny_model(tokenizer, directory / name, layers=layers, hidden=hidden, heads=2, seed=len(name))
    return directory / "large", directory / "small", directory / "student"


def threshold_for(small: Path, student: Path, options: dict, large_share: float) -> float:
    """The small teacher's step uncertainty above which about ``large_share`` of the student's steps lie."""
    policy = CausalLMPolicy.from_pretrained(str(student))
    envs = [ToolEnv("calculator", **options) for _ in range(64)]
    episodes = collect_episodes(
        policy, envs, list(range(700_000, 700_064)), run_id="calibration", sampling=SamplingConfig(temperature=0.7, max_new_tokens=32),
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    teacher = WhiteBoxTeacher.from_pretrained(str(small), k=16)
    doubts = [step_uncertainty(a) for x in teacher.annotate(episodes) for a in x.token_logprobs if a.token_ids.shape[0]]
    return float(np.quantile(doubts, 1.0 - large_share))


def arm(name: str, rules: tuple[RouteRule, ...], default: str, args: argparse.Namespace, models: dict[str, Path], options: dict) -> dict:
    routing = RoutingConfig(teachers={"large": str(models["large"])}, rules=rules, default=default)
    config = TrainConfig(
        student=str(models["student"]), teacher=str(models["small"]), routing=routing, suite="calculator", suite_options=options,
        run_name=f"routing: {name}", store=f"{args.workdir}/opd.db", output_dir=f"{args.workdir}/{name}", seed=args.seed,
        updates=args.updates, episodes_per_update=32, learning_rate=1e-3, teacher_k=16,
        loss=LossConfig(kind="token", divergence="reverse_kl"),  # the recipe measured in docs/benchmarks.md
        sampling=SamplingConfig(temperature=0.7, max_new_tokens=32), eval_every=0, eval_episodes=args.eval_episodes,
        checkpoint_every=0, tensorboard=False,
    )  # fmt: skip
    result = train(config, resume=False)
    lines = [json.loads(line) for line in (Path(config.output_dir) / "metrics.jsonl").read_text().splitlines()]
    total = {key: sum(line.get(key, 0.0) for line in lines) for key in {k for line in lines for k in line if k.startswith("route/")}}
    steps = total.get("route/steps/large", 0.0) + total.get("route/steps/teacher", 0.0)
    return {
        "arm": name,
        "success": result.final_eval,
        "large_share": total.get("route/steps/large", 0.0) / steps if steps else 0.0,
        "tokens_small": total.get("route/tokens/teacher", 0.0),
        "tokens_large": total.get("route/tokens/large", 0.0),
        "flops": total.get("route/flops/teacher", 0.0) + total.get("route/flops/large", 0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--large-share", type=float, default=0.3, help="share of steps the routed arm should send to the large teacher")
    parser.add_argument("--small-steps", type=int, default=300, help="SFT steps of the small teacher")
    parser.add_argument("--small-layers", type=int, default=1, help="the small teacher's layers (the large one: 2)")
    parser.add_argument("--small-hidden", type=int, default=48, help="the small teacher's width (the large one: 128)")
    parser.add_argument("--eval-episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default="runs/bench-routing")
    parser.add_argument("--smoke", action="store_true", help="untrained tiny models: check that the benchmark runs, measure nothing")
    args = parser.parse_args()
    console = Console()
    demo = DemoConfig()
    options = dict(demo.suite_options)
    if args.smoke:
        large, small, student = smoke_models(Path(args.workdir), options)
    else:
        large, student = demo_models(demo, report=console.print)
        small = small_teacher(large, Path(args.workdir), options, (args.small_layers, args.small_hidden), args.small_steps, console)
    models = {"large": large, "small": small, "student": student}
    for name, path in models.items():
        result, _ = evaluate(CausalLMPolicy.from_pretrained(str(path)), "calculator", suite_options=options, episodes=args.eval_episodes)
        console.print(f"{name}: greedy success {result.describe()}")
    threshold = threshold_for(small, student, options, args.large_share)
    console.print(f"routing threshold: small-teacher uncertainty > {threshold:.3f} goes to the large teacher")
    rows = [
        arm("large", (), "large", args, models, options),
        arm("small", (), "teacher", args, models, options),
        arm("routed", (RouteRule(teacher="large", uncertain_above=threshold),), "teacher", args, models, options),
    ]
    title = f"Routing on calculator: {args.updates} updates x 32 episodes, student success on {args.eval_episodes} held-out tasks"
    table = Table(title=title)
    columns = ("arm", "student success", "large teacher's share of steps", "tokens read: small", "tokens read: large", "teacher GFLOPs")
    for column in columns:
        table.add_column(column, justify="left" if column == "arm" else "right")
    for row in rows:
        cells = (f"{row['large_share']:.0%}", f"{row['tokens_small']:,.0f}", f"{row['tokens_large']:,.0f}", f"{row['flops'] / 1e9:.2f}")
        table.add_row(row["arm"], row["success"].describe(), *cells)
    console.print(table)


if __name__ == "__main__":
    main()
