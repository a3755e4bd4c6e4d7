"""Peak memory and time of one full OPD update at Qwen's vocabulary: opd's chunked/fused step vs the naive full-logits step.

One update, rollout excluded: the white-box teacher scores a stored episode
(top-k log-probs + tail mass at every policy token), the student runs forward
and backward on the token-level reverse KL to those annotations, the gradient
is clipped and AdamW steps. Both arms use the same student and teacher (Qwen2
architecture, V = 151,936, hidden 896 as in Qwen2.5-0.5B, tied embeddings, but
``--layers`` layers instead of 24 so a CPU finishes; the memory at stake is the
vocabulary's, which does not depend on depth), the same episode and the same
loss:

- naive (TRL-style): the teacher's full (N, V) logits, log-softmax, top-k, tail as
  ``1 - sum(exp(top-k))``; the student's full (B, T, V) fp32 logits and log-softmax
  under autograd, the K+1 coarsened reverse KL on them;
- opd: ``WhiteBoxTeacher.annotate`` (hidden states, then top-k a chunk of rows at a
  time, exact tail) and ``opd.distill.student_loss`` (``fused_linear_divergence``
  on the student's hidden states and lm_head: no (B, T, V) tensor).

How memory is measured (CPU, Linux): each arm runs in a fresh subprocess. It builds
both models and the optimizer and runs one warm-up update on a short episode, so the
weights, the AdamW moments and the gradient buffers have all existed once. Then it
resets the kernel's peak-RSS counter (``/proc/self/clear_refs``, value 5), runs the
measured update, and reports the peak RSS during it (``VmHWM``) minus the RSS before
it: the memory the update itself adds to a training process's steady state (so the
gradients, which both arms make, are in it; model building's transients are not).
The process's whole peak is printed too. A third arm, ``floor``, runs the student's
forward and backward with a loss that needs no logits: every parameter still gets its
gradient (the tied (V, d) embedding's, 519 MiB, twice at once: the lookup's and the
head's), so "over floor" is what the loss itself costs. The script fails unless the
naive and opd arms agree on the loss and the gradient norm.

    .venv/bin/python benchmarks/train_memory.py                  # V=151,936, T=2,048, d=896, 2 layers
    .venv/bin/python benchmarks/train_memory.py --seq 512 --vocab 32000   # quicker
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from transformers import Qwen2Config, Qwen2ForCausalLM

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from peak_memory import PeakMemory  # noqa: E402  (beside this script)
from trajectory_factories import make_episode  # noqa: E402

from opd.agents.teacher import WhiteBoxTeacher  # noqa: E402
from opd.distill.batch import EpisodeBatch, make_batch  # noqa: E402
from opd.distill.losses import LossConfig, loss_totals  # noqa: E402
from opd.distill.student_loss import student_loss  # noqa: E402
from opd.distill.topk import TopKLogprobs  # noqa: E402
from opd.trajectories import Episode, Run  # noqa: E402

K = 64
STEPS = 8  # turns per episode; each is 12 context tokens, then the policy's
CONFIG = LossConfig(kind="token", divergence="reverse_kl")


def build_model(vocab: int, hidden: int, layers: int, seed: int) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=4_864 * hidden // 896,
        num_hidden_layers=layers,
        num_attention_heads=14 * hidden // 896 or 1,
        num_key_value_heads=2 if hidden >= 128 else 1,
        max_position_embeddings=4_096,
        tie_word_embeddings=True,
    )
    return Qwen2ForCausalLM(config)


def episode(vocab: int, seq: int, seed: int) -> Episode:
    """One stored episode of ``seq`` tokens: STEPS turns, each 12 context tokens then policy tokens."""
    rng = np.random.default_rng(seed)
    made = make_episode(rng, Run(), steps=STEPS, policy_tokens=seq // STEPS - 12, annotated=False)
    for step in made.steps:
        step.token_ids[:] = rng.integers(0, vocab, len(step.token_ids))
    return made


class Naive:
    """The update written the usual way: full logits for teacher and student."""

    def __init__(self, student: Qwen2ForCausalLM, teacher: Qwen2ForCausalLM) -> None:
        self.student, self.teacher = student, teacher

    @torch.no_grad()
    def annotate(self, batch: EpisodeBatch) -> TopKLogprobs:
        logprobs_BTV = torch.log_softmax(self.teacher(input_ids=batch.input_ids_BT).logits.float(), dim=-1)
        values_BTK, ids_BTK = logprobs_BTV.topk(K, dim=-1)
        tail_BT = (1.0 - values_BTK.exp().sum(-1)).clamp_min(0.0)
        return TopKLogprobs(ids_BTK, values_BTK, tail_BT)

    def loss(self, batch: EpisodeBatch) -> torch.Tensor:
        teacher = self.annotate(batch)
        logq_BTV = torch.log_softmax(self.student(input_ids=batch.input_ids_BT).logits.float(), dim=-1)
        logq_BTK = logq_BTV.gather(-1, teacher.token_ids)
        logq_tail_BT = torch.log1p(-logq_BTK.exp().sum(-1).clamp(max=1 - 1e-7))
        logq_BTK1 = torch.cat([logq_BTK, logq_tail_BT[..., None]], dim=-1)
        logp_BTK1 = teacher.coarse_logprobs()
        reverse_kl_BT = (logq_BTK1.exp() * (logq_BTK1 - logp_BTK1)).sum(-1)
        mask_BT = batch.policy_BT
        return torch.where(mask_BT, reverse_kl_BT, 0.0).sum() / mask_BT.sum()


class Opd:
    """The update as opd's training loop does it."""

    def __init__(self, student: Qwen2ForCausalLM, teacher: Qwen2ForCausalLM) -> None:
        # The teacher reads only the pad id from its tokenizer; one episode per pass pads nothing.
        self.student, self.teacher = student, WhiteBoxTeacher(teacher, SimpleNamespace(pad_token_id=0), name="teacher", k=K)

    def loss(self, batch: EpisodeBatch, played: Episode) -> torch.Tensor:
        annotated = dataclasses.replace(played, annotations=self.teacher.annotate([played])[0])
        scored = make_batch([annotated], teacher="teacher")
        return student_loss(self.student, scored, CONFIG, loss_totals(scored, CONFIG)).loss


class Floor:
    """Not a way to train: the student's forward and backward with a loss that needs no logits, so every
    parameter still gets its gradient (the tied (V, d) embedding's included). What any loss adds memory to."""

    def __init__(self, student: Qwen2ForCausalLM, teacher: Qwen2ForCausalLM) -> None:
        self.student = student

    def loss(self, batch: EpisodeBatch) -> torch.Tensor:
        out = self.student(input_ids=batch.input_ids_BT, output_hidden_states=True, logits_to_keep=1)
        return (out.logits.sum() + out.hidden_states[-1].sum()) * 0.0


ARMS = {"naive": Naive, "opd": Opd, "floor": Floor}


def update(arm: Naive | Opd | Floor, optimizer: torch.optim.Optimizer, played: Episode) -> tuple[float, float]:
    batch = make_batch([played])
    optimizer.zero_grad(set_to_none=True)
    loss = arm.loss(batch, played) if isinstance(arm, Opd) else arm.loss(batch)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(arm.student.parameters(), 1.0)
    optimizer.step()
    return float(loss.detach()), float(grad_norm)


def run_arm(name: str, args: argparse.Namespace) -> dict[str, float]:
    student = build_model(args.vocab, args.hidden, args.layers, seed=0).train()
    teacher = build_model(args.vocab, args.hidden, args.layers, seed=1).eval().requires_grad_(False)
    arm = ARMS[name](student, teacher)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
    update(arm, optimizer, episode(args.vocab, 8 * STEPS * 4, seed=1))  # warm-up: moments and gradient buffers exist once
    played = episode(args.vocab, args.seq, seed=0)
    gc.collect()
    memory = PeakMemory()
    baseline_mib = memory.reset()
    started = time.perf_counter()
    loss, grad_norm = update(arm, optimizer, played)
    seconds = time.perf_counter() - started
    return {
        "extra_mib": memory.peak() - baseline_mib,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "seconds": seconds,
        "loss": loss,
        "grad_norm": grad_norm,
    }


def in_subprocess(name: str, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", name, "--vocab", str(args.vocab), "--seq", str(args.seq)]
    command += ["--hidden", str(args.hidden), "--layers", str(args.layers)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=151_936, help="vocabulary size V")
    parser.add_argument("--seq", type=int, default=2_048, help="tokens in the episode (batch size 1)")
    parser.add_argument("--hidden", type=int, default=896, help="hidden size d of student and teacher")
    parser.add_argument("--layers", type=int, default=2, help="decoder layers of student and teacher")
    parser.add_argument("--child", choices=sorted(ARMS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_arm(args.child, args)))
        return
    title = (
        f"one OPD update (teacher top-{K} scoring + student reverse KL fwd/bwd + AdamW), B=1, T={args.seq:,}, "
        f"V={args.vocab:,}, d={args.hidden}, {args.layers} layers, fp32 "
        f"({platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__})"
    )
    runs = {name: in_subprocess(name, args) for name in ("naive", "opd", "floor")}
    naive, ours, floor = runs["naive"], runs["opd"], runs["floor"]
    if not math.isclose(naive["loss"], ours["loss"], rel_tol=1e-3) or not math.isclose(naive["grad_norm"], ours["grad_norm"], rel_tol=1e-2):
        raise RuntimeError(f"the arms disagree: naive {naive}, opd {ours}")
    table = Table(title=title)
    columns = ("arm", "peak extra MiB", "over floor MiB", "process peak MiB", "seconds", "memory vs naive", "over floor vs naive")
    for column in (*columns, "time vs naive", "loss"):
        table.add_column(column, justify="right")
    naive_over = naive["extra_mib"] - floor["extra_mib"]
    for label, run in (("naive (full logits)", naive), ("opd (chunked top-k + fused loss)", ours), ("floor (no loss)", floor)):
        over = run["extra_mib"] - floor["extra_mib"]
        table.add_row(
            label,
            f"{run['extra_mib']:,.0f}",
            f"{over:,.0f}",
            f"{run['peak_mib']:,.0f}",
            f"{run['seconds']:.2f}",
            f"{run['extra_mib'] / naive['extra_mib']:.3f}x",
            f"{over / naive_over:.3f}x",
            f"{run['seconds'] / naive['seconds']:.2f}x",
            f"{run['loss']:.6f}",
        )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
