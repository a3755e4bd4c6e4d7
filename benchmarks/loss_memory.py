"""Peak memory and time of a token-level reverse KL and JSD loss, fused and chunked vs naive full-vocabulary.

Both arms start from the same inputs, the student's final hidden states
(B, T, d) with its lm_head (V, d) and the teacher's, and run forward + backward
(gradients for the student's hidden states and lm_head):

- naive: ``logits = hidden @ lm_head.T`` as (B, T, V) for student and teacher,
  then the divergence on full log-softmaxes (the reverse KL written directly, the
  JSD as TRL's ``generalized_jsd_loss``), autograd keeps everything for backward;
- opd: ``opd.distill.fused_linear_divergence``: logits a chunk of positions at a
  time, each chunk's gradient made and folded into d(hidden) and d(lm_head)
  before the next, so no (B, T, V) tensor ever exists.

How memory is measured (CPU): every arm runs in a fresh subprocess. It warms up
on a tiny size (so one-off library allocations are not counted), allocates the
inputs, reads ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` as the baseline,
runs forward + backward once, and reports the new ``ru_maxrss`` minus that
baseline: the peak *extra* resident memory of the loss, including the
gradients it produces (for both arms those include a (V, d) lm_head gradient).
Large tensors are mmap-allocated and returned to the OS when freed, so RSS
follows the live tensors. Time is the wall clock of that same forward +
backward; machines are shared, so compare rows of one run.

    .venv/bin/python benchmarks/loss_memory.py                       # V=151,936, T=2,048, d=896
    .venv/bin/python benchmarks/loss_memory.py --seq 512 --repeats 3  # smaller, quicker
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from opd.distill import TeacherHidden, fused_linear_divergence, get_divergence

JSD_BETA = 0.5


def naive_loss(divergence: str, hidden_BTD, head_VD, teacher_hidden_BTD, teacher_head_VD) -> torch.Tensor:
    """The usual full-vocabulary implementation: every (B, T, V) intermediate lives until backward."""
    logq_BTV = torch.log_softmax(hidden_BTD @ head_VD.T, dim=-1)
    with torch.no_grad():
        logp_BTV = torch.log_softmax(teacher_hidden_BTD @ teacher_head_VD.T, dim=-1)
    if divergence == "reverse_kl":
        return (logq_BTV.exp() * (logq_BTV - logp_BTV)).sum(-1).mean()
    # TRL generalized_jsd_loss: m = beta * teacher + (1 - beta) * student.
    mixture = torch.logsumexp(torch.stack([logq_BTV + math.log(1 - JSD_BETA), logp_BTV + math.log(JSD_BETA)]), dim=0)
    kl_teacher = F.kl_div(mixture, logp_BTV, reduction="none", log_target=True)
    kl_student = F.kl_div(mixture, logq_BTV, reduction="none", log_target=True)
    return (JSD_BETA * kl_teacher + (1 - JSD_BETA) * kl_student).sum(-1).mean()


def opd_loss(divergence: str, hidden_BTD, head_VD, teacher_hidden_BTD, teacher_head_VD) -> torch.Tensor:
    spec = get_divergence("jsd", beta=JSD_BETA) if divergence == "jsd" else get_divergence(divergence)
    return fused_linear_divergence(hidden_BTD, head_VD, TeacherHidden(teacher_hidden_BTD, teacher_head_VD), spec).loss


ARMS = {"naive": naive_loss, "opd": opd_loss}


def make_inputs(vocab: int, seq: int, hidden: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    scale = hidden**-0.5
    hidden_BTD = torch.randn(1, seq, hidden, generator=generator).requires_grad_()
    head_VD = torch.randn(vocab, hidden, generator=generator).mul_(scale).requires_grad_()
    teacher_hidden_BTD = torch.randn(1, seq, hidden, generator=generator)
    teacher_head_VD = torch.randn(vocab, hidden, generator=generator).mul_(scale)
    return hidden_BTD, head_VD, teacher_hidden_BTD, teacher_head_VD


def run_arm(arm: str, divergence: str, vocab: int, seq: int, hidden: int) -> dict[str, float]:
    """One forward + backward in this process: extra peak RSS (MiB), seconds, and the loss."""
    loss_fn = ARMS[arm]
    warm = make_inputs(1000, 8, 16)
    loss_fn(divergence, *warm).backward()
    inputs = make_inputs(vocab, seq, hidden)
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    loss = loss_fn(divergence, *inputs)
    loss.backward()
    loss = loss.detach()
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    grad_norm = float(torch.linalg.vector_norm(inputs[1].grad))
    return {"peak_mib": (peak_kib - baseline_kib) / 1024, "seconds": seconds, "loss": loss.item(), "grad_norm": grad_norm}


def in_subprocess(arm: str, divergence: str, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", arm, "--divergence", divergence]
    command += ["--vocab", str(args.vocab), "--seq", str(args.seq), "--hidden", str(args.hidden)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{arm}/{divergence} failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def best_of(arm: str, divergence: str, args: argparse.Namespace) -> dict[str, float]:
    """The fastest of ``--repeats`` fresh runs (peak memory is the same every run; time is noisy)."""
    runs = [in_subprocess(arm, divergence, args) for _ in range(args.repeats)]
    return min(runs, key=lambda run: run["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=151_936, help="vocabulary size V")
    parser.add_argument("--seq", type=int, default=2_048, help="sequence length T (batch size is 1)")
    parser.add_argument("--hidden", type=int, default=896, help="hidden size d")
    parser.add_argument("--divergences", nargs="+", default=["reverse_kl", "jsd"], choices=["reverse_kl", "jsd"])
    parser.add_argument("--repeats", type=int, default=1, help="fresh runs per arm; the fastest is reported")
    parser.add_argument("--child", choices=sorted(ARMS), help=argparse.SUPPRESS)
    parser.add_argument("--divergence", default="reverse_kl", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_arm(args.child, args.divergence, args.vocab, args.seq, args.hidden)))
        return
    torch_threads = torch.get_num_threads()
    title = (
        f"token-level loss, forward + backward: B=1, T={args.seq:,}, V={args.vocab:,}, d={args.hidden}, fp32 "
        f"({platform.machine()}, {torch_threads} threads, torch {torch.__version__})"
    )
    table = Table(title=title)
    for column in ("divergence", "arm", "peak extra MiB", "seconds", "memory vs naive", "time vs naive", "loss"):
        table.add_column(column, justify="right")
    for divergence in args.divergences:
        naive, ours = best_of("naive", divergence, args), best_of("opd", divergence, args)
        agree = math.isclose(naive["loss"], ours["loss"], rel_tol=1e-4)
        if not agree or not math.isclose(naive["grad_norm"], ours["grad_norm"], rel_tol=1e-3):
            raise RuntimeError(f"{divergence}: the arms disagree: naive {naive}, opd {ours}")
        for name, run in (("naive", naive), ("opd fused", ours)):
            table.add_row(
                divergence,
                name,
                f"{run['peak_mib']:,.0f}",
                f"{run['seconds']:.2f}",
                f"{run['peak_mib'] / naive['peak_mib']:.3f}x",
                f"{run['seconds'] / naive['seconds']:.2f}x",
                f"{run['loss']:.6f}",
            )
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
