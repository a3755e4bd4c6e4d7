"""Data-parallel training throughput: episodes/s and updates/s for 1 and 2 processes side by side, and the communication share.

Each row is a real `torchrun --nproc_per_node P -m opd train CONFIG` of the same
job (the same global batch of `--episodes` episodes per update) on tiny locally
built models (a 2-layer d=64 student, a 2-layer d=128 teacher, the calculator
suite). Figures come from rank 0's metrics.jsonl, first update left out (warm-up):
`time/allreduce_s` is the gradient all-reduce inside DDP's backward (launch to
completion, via a comm hook); `time/sync_s` is the loop's other collectives
(loss totals, metrics, broadcasts), which include waiting for the slower rank.

    .venv/bin/python benchmarks/scale.py [--processes 1 2] [--updates 6] [--episodes 16] [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from opd.agents.tiny import build_tiny_model, build_word_tokenizer, expert_texts
from opd.envs import ToolEnv

OPTIONS = {"difficulty": "easy", "prompt_style": "terse"}


def build_models(directory: Path) -> tuple[Path, Path]:
    env = ToolEnv("calculator", **OPTIONS)
    texts = expert_texts(env, 100)
    tokenizer = build_word_tokenizer(texts, directory / "student", numbers=range(-150, 1730))
    build_tiny_model(tokenizer, directory / "student", layers=2, hidden=64, heads=4, seed=0)
    build_tiny_model(tokenizer, directory / "teacher", layers=2, hidden=128, heads=4, seed=1)
    return directory / "student", directory / "teacher"


def run(models: tuple[Path, Path], directory: Path, processes: int, args: argparse.Namespace) -> dict[str, float]:
    directory.mkdir(parents=True)
    config = {
        "student": str(models[0]), "teacher": str(models[1]), "suite_options": OPTIONS, "max_turns": 4,
        "store": str(directory / "store.db"), "output_dir": str(directory / "out"), "updates": args.updates,
        "episodes_per_update": args.episodes, "eval_every": 0, "eval_episodes": 1, "checkpoint_every": 0, "teacher_k": 16,
        "sampling": {"max_new_tokens": 24}, "tensorboard": False, "device": args.device,
    }  # fmt: skip
    (directory / "run.yaml").write_text(yaml.safe_dump(config))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = str(args.threads)  # torchrun sets 1 only for several processes; the same for every row
    done = subprocess.run([*launcher, "-m", "opd", "train", str(directory / "run.yaml")], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{processes} process(es) failed:\n{done.stderr[-3000:]}")
    lines = [json.loads(line) for line in (directory / "out" / "metrics.jsonl").read_text().splitlines()]
    timed = lines[1:]  # the first update pays for warm-up (allocations, lazy imports)
    wall = timed[-1]["wall_seconds"] - lines[0]["wall_seconds"]
    return {
        "episodes/s": len(timed) * args.episodes / wall,
        "updates/s": len(timed) / wall,
        "allreduce": sum(line["time/allreduce_s"] for line in timed) / wall,
        "sync": sum(line["time/sync_s"] for line in timed) / wall,
        "step_s": wall / len(timed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--updates", type=int, default=6)
    parser.add_argument("--episodes", type=int, default=16, help="global batch: episodes per update, split over the processes")
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (nccl, one GPU per process)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (OMP_NUM_THREADS)")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="opd-bench-scale-") as workdir:
        models = build_models(Path(workdir) / "models")
        results = {}
        for processes in args.processes:
            console.print(f"[dim]{processes} process(es): {args.updates} updates of {args.episodes} episodes ...[/]")
            results[processes] = run(models, Path(workdir) / f"p{processes}", processes, args)
    base = results[args.processes[0]]
    title = f"calculator, {args.episodes} episodes per update (global), {args.device}, {args.threads} thread(s) per process"
    table = Table(title=f"{title}, updates 2-{args.updates}")
    columns = ("processes", "episodes/s", "updates/s", "s per update", "speed-up", "gradient all-reduce", "other collectives + waiting")
    for column in columns:
        table.add_column(column, justify="right")
    for processes, r in results.items():
        table.add_row(
            str(processes), f"{r['episodes/s']:.2f}", f"{r['updates/s']:.3f}", f"{r['step_s']:.2f}",
            f"{r['updates/s'] / base['updates/s']:.2f}x", f"{r['allreduce']:.1%}", f"{r['sync']:.1%}",
        )  # fmt: skip
    console.print(table)
    console.print("Shares are of rank 0's wall time per update; waiting: time at a collective until the slower rank arrives.")


if __name__ == "__main__":
    main()
