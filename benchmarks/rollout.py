"""Rollout tokens/s: opd's own HF decoding loop vs a vLLM engine, side by side on one model, and against the CPU's bound.

The bound is this CPU's measured fp32 matmul FLOP/s divided by 2 x parameters:
the tokens per second a forward pass could reach if it did nothing but its
matmuls. "all" counts every token a forward pass read (the prompts' prefill and
the generated tokens); "decode" counts generated tokens over the decode phase
alone (the time of a request minus that of its prefill, measured as a
one-token generation on the same prompts). The multi-turn case appends each
turn's tokens and 16 "observation" tokens to the context and goes on, so an
engine with a prefix cache re-reads nothing, while the HF loop re-reads the
whole context every turn. Last, the time of a weight push of this model to
the engine (write, reload in place, clear the prefix cache; the probe check excluded).

The vLLM engine is a server started from the venv `make test` builds (scripts/ensure-vllm.sh)
with every core (VLLM_CPU_OMP_THREADS_BIND=0-N, VLLM_CPU_NUM_OF_RESERVED_CPU=0).

    .venv/bin/python benchmarks/rollout.py [--hidden 512 --layers 8 --prompt 256 --new 64 --batches 1,16,64]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from transformers import Qwen2Config, Qwen2ForCausalLM

from opd.agents.engines import StudentEngineConfig
from opd.agents.policy import CausalLMPolicy, SamplingConfig
from opd.agents.tiny import build_word_tokenizer, expert_texts
from opd.agents.vllm_policy import VLLMPolicy
from opd.envs import ToolEnv

VLLM_PYTHON = Path.home() / ".cache/opd/venv-vllm/bin/python"  # what `make test` builds (scripts/ensure-vllm.sh)


def matmul_flops(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def build_student(directory: Path, hidden: int, layers: int) -> CausalLMPolicy:
    """A Qwen2-architecture model (head dimension 64) over opd's word-level tokenizer, saved as a hub model would be."""
    tokenizer = build_word_tokenizer(expert_texts(ToolEnv("calculator"), 20), directory)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
        num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64, max_position_embeddings=2048,
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(directory)
    return CausalLMPolicy.from_pretrained(str(directory))


def never_stop(policy) -> None:
    """Generate exactly max_new_tokens every time, so both engines do the same work: no stop ids."""
    policy.chat.stop_ids = []


def contexts(batch: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(10, vocab, (batch, length), generator=g).tolist()


def timed(policy, prompts: list[list[int]], new: int) -> tuple[float, int]:
    generators = [torch.Generator().manual_seed(i) for i in range(len(prompts))]
    started = time.perf_counter()
    out = policy.generate(prompts, SamplingConfig(temperature=1.0, max_new_tokens=new), generator=generators)
    return time.perf_counter() - started, sum(len(g.token_ids) for g in out)


def single_turn(policy, batch: int, prompt: int, new: int, vocab: int) -> tuple[float, float, float]:
    """(all tokens/s, decode tokens/s, seconds) for one batch."""
    prompts = contexts(batch, prompt, vocab, seed=batch)
    prefill_s, _ = timed(policy, prompts, 1)
    prompts = contexts(batch, prompt, vocab, seed=batch + 1000)  # fresh prompts: no prefix-cache hit on the timed run
    seconds, generated = timed(policy, prompts, new)
    decode_s = seconds - prefill_s
    decode = generated / decode_s if decode_s > 0.05 * seconds else float("nan")  # too noisy to split: the prefill dominates
    return (batch * prompt + generated) / seconds, decode, seconds


def multi_turn(policy, batch: int, turns: int, prompt: int, new: int, vocab: int) -> float:
    """Seconds for ``turns`` turns of ``new`` tokens per context, 16 observation tokens appended between turns."""
    histories = contexts(batch, prompt, vocab, seed=7)
    started = time.perf_counter()
    for turn in range(turns):
        generators = [torch.Generator().manual_seed(turn * batch + i) for i in range(batch)]
        out = policy.generate(histories, SamplingConfig(max_new_tokens=new), generator=generators)
        observations = contexts(batch, 16, vocab, seed=100 + turn)
        histories = [h + g.token_ids + o for h, g, o in zip(histories, out, observations, strict=True)]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=256)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--vllm-python", default=os.environ.get("OPD_VLLM_PYTHON", str(VLLM_PYTHON)), help="a Python with vLLM")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    console = Console()
    with tempfile.TemporaryDirectory() as directory:
        hf = build_student(Path(directory) / "student", args.hidden, args.layers)
        never_stop(hf)
        parameters = sum(p.numel() for p in hf.model.parameters())
        flops = matmul_flops()
        bound = flops / (2 * parameters)
        console.print(f"{parameters / 1e6:.1f}M parameters; fp32 matmul {flops / 1e9:.0f} GFLOP/s; bound {bound:,.0f} tokens/s")
        vocab = len(hf.tokenizer)
        config = StudentEngineConfig(backend="vllm", python=args.vllm_python)
        with VLLMPolicy.start(hf, config) as engine:
            never_stop(engine)
            machine = f"{platform.machine()}, {os.cpu_count()} cores"
            table = Table(title=f"rollout tokens/s ({machine}, {args.prompt}-token prompts, {args.new} new)")
            for column in ("engine", "batch", "all tok/s", "% bound", "decode tok/s", "% bound", "seconds"):
                table.add_column(column, justify="right")
            for policy in (hf, engine):
                timed(policy, contexts(2, 16, vocab, seed=99), 2)  # warm up
            for batch in [int(b) for b in args.batches.split(",")]:
                for name, policy in (("opd HF loop", hf), ("vLLM", engine)):
                    total, decode, seconds = single_turn(policy, batch, args.prompt, args.new, vocab)
                    shares = [f"{total:,.0f}", f"{total / bound:.0%}", f"{decode:,.0f}", f"{decode / bound:.0%}"]
                    table.add_row(name, str(batch), *shares, f"{seconds:.1f}")
                    console.print(f"{name}, batch {batch}: {total:,.0f} tok/s in {seconds:.1f} s", highlight=False)  # progress
            console.print(table)
            turns = Table(title="multi-turn: 4 turns of 32 tokens, batch 16, 16 observation tokens between turns")
            for column in ("engine", "seconds"):
                turns.add_column(column, justify="right")
            for name, policy in (("opd HF loop", hf), ("vLLM (prefix cache)", engine)):
                turns.add_row(name, f"{multi_turn(policy, 16, 4, args.prompt, 32, vocab):.1f}")
            console.print(turns)
            pushes = [engine.push_weights(hf.model) for _ in range(3)]
            console.print(f"weight push (write safetensors, reload in place, clear prefix cache): {min(pushes):.2f} s best of 3")


if __name__ == "__main__":
    main()
