"""Data-parallel training: 2 processes (torchrun, gloo on CPU), resumed or not, end where 1 process ends; the helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tiny_models import OPTIONS, parameters

from opd.distill.distributed import DistributedContext, launch_env
from opd.errors import ConfigError
from opd.trajectories import TrajectoryStore

REPO_ROOT = Path(__file__).parents[2]
# fp32 parameters after 3 AdamW steps (lr 1e-3). The two runs play the same episodes and minimise the same
# global loss; they differ only in the order of floating-point sums: each rank sums its shard and gloo then
# sums the ranks, and a batch of another width pads differently (sampled log-probs then differ by ~5e-7).
# That is ~1e-7 relative per step; seen: 2.5e-7 at most with reverse KL. JSD(0.5), the default, is a small
# difference of logs of mixtures where student and teacher agree, so its gradients carry more rounding: seen 2.7e-6.
ATOL = {"reverse_kl": 1e-6, "jsd": 1e-5}


def run_config(models: tuple[Path, Path], directory: Path, updates: int = 3, divergence: str = "jsd") -> Path:
    student, teacher = models
    settings = {
        "student": str(student), "teacher": str(teacher), "suite_options": OPTIONS, "max_turns": 3,
        "store": str(directory / "store.db"), "output_dir": str(directory / "out"),
        "updates": updates, "episodes_per_update": 6, "eval_every": 0, "eval_episodes": 2, "checkpoint_every": 0,
        "teacher_k": 8, "sampling": {"max_new_tokens": 12}, "tensorboard": False,
        # Every term divides by a different total (tokens, steps, episodes and the mean return).
        "loss": {"kind": "hybrid", "hybrid_weights": {"token": 1.0, "step": 0.5, "episode": 0.1}, "divergence": divergence},
    }  # fmt: skip
    path = directory / "run.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def opd_train(config: Path, processes: int, *, fresh: bool = True) -> subprocess.CompletedProcess[str]:
    launcher = [] if processes == 1 else ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    argv = [sys.executable, *launcher, "-m", "opd", "train", str(config), *(["--fresh"] if fresh else [])]
    done = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def episodes_by_seed(store_path: Path) -> dict[int, tuple[list[int], int]]:
    with TrajectoryStore(store_path, create=False) as store:
        return {e.seed: (e.token_ids.tolist(), int(e.writer["rank"])) for batch in store.iter_episodes() for e in batch}


@pytest.mark.slow
@pytest.mark.parametrize("divergence", ["jsd", "reverse_kl"])
def test_two_processes_reach_the_parameters_of_one(models, tmp_path: Path, divergence: str) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    opd_train(run_config(models, one, divergence=divergence), 1)
    # The 2-process job stops after update 2 (as if killed after its checkpoint) and is resumed to update 3.
    out = opd_train(run_config(models, two, updates=2, divergence=divergence), 2)
    assert out.stdout.count("opd train") == 1  # rank 0 speaks for the job
    opd_train(run_config(models, two, divergence=divergence), 2, fresh=False)
    # The same 18 episodes, token for token; rank 0 played seeds 0-2 of each update, rank 1 seeds 3-5.
    single, split = episodes_by_seed(one / "store.db"), episodes_by_seed(two / "store.db")
    assert sorted(single) == sorted(split) == list(range(18))
    assert all(single[s][0] == split[s][0] for s in single)
    assert {s: rank for s, (_, rank) in split.items()} == {s: int(s % 6 >= 3) for s in range(18)}
    # Evaluation, metrics and checkpoints once: one checkpoint per run, one metrics line per update.
    assert sorted(p.name for p in (two / "out" / "checkpoints").iterdir()) == ["update-0000002", "update-0000003"]
    lines = [json.loads(line) for line in (two / "out" / "metrics.jsonl").read_text().splitlines()]
    reference = [json.loads(line) for line in (one / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [line["update"] for line in lines] == [1, 2, 3]
    assert [line["policy_tokens"] for line in lines] == [line["policy_tokens"] for line in reference]
    # Losses near 0 are differences of large numbers (a KL of ~3e-4 from log-probs of ~-5; advantage x ~90 nats summed):
    # their relative error is far above fp32's 1e-7.
    for name in ("loss/token", "loss/step"):
        assert [line[name] for line in lines] == pytest.approx([line[name] for line in reference], rel=1e-4)
    assert [line["loss"] for line in lines] == pytest.approx([line["loss"] for line in reference], abs=1e-4)
    a = parameters(one / "out" / "checkpoints" / "update-0000003" / "model")
    b = parameters(two / "out" / "checkpoints" / "update-0000003" / "model")
    assert not all(torch.equal(a[k], parameters(models[0])[k]) for k in a)  # training did move the student
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= ATOL[divergence], f"largest parameter difference {worst:.2e}"


def test_shards_cover_the_batch_in_order() -> None:
    for world in (1, 2, 3, 4):
        shards = [DistributedContext(rank=r, world_size=world).shard(10) for r in range(world)]
        assert [i for s in shards for i in s] == list(range(10))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
    with pytest.raises(ConfigError, match="at least the number of processes"):
        DistributedContext(rank=0, world_size=4).shard(3)


def test_one_process_helpers_are_the_identity() -> None:
    ctx = DistributedContext()
    model = torch.nn.Linear(2, 2)
    assert ctx.is_main and ctx.wrap(model) is model
    assert ctx.sum([1, 2.5]) == [1.0, 2.5] and ctx.gather("x") == ["x"] and ctx.broadcast(3) == 3
    assert ctx.sum_metrics({"loss": 0.5}) == {"loss": 0.5} and ctx.main_only(lambda: 7) == 7
    assert ctx.comm.take() == {"time/allreduce_s": 0.0, "time/sync_s": 0.0}


def test_launch_env_reads_torchrun_variables() -> None:
    assert launch_env({}) == launch_env({"RANK": "0", "WORLD_SIZE": "1"})
    env = launch_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (env.rank, env.world_size, env.local_rank) == (3, 4, 1)
    with pytest.raises(ConfigError, match="must be integers"):
        launch_env({"RANK": "zero"})
