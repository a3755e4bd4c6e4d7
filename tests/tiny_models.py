"""Settings and helpers shared by the tests that train tiny models."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

from opd.agents.policy import CausalLMPolicy
from opd.agents.rollout import expert_demonstration
from opd.agents.tiny import build_tiny_model, build_word_tokenizer, expert_texts
from opd.distill.evaluate import EVAL_SEED_OFFSET, evaluate
from opd.distill.sft import sft
from opd.envs import ToolEnv
from opd.trajectories import Episode

OPTIONS = {"difficulty": "easy", "prompt_style": "terse"}  # calculator tasks short enough for a 1-layer model


def parameters(path: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(path).state_dict().items()}


# Calculator tasks whose numbers all lie in [0, 99] (one token each) and a scripted expert with one right action per state:
# a task a 1-layer model learns by SFT in a few hundred steps, so a trained teacher is cheap to build.
LEARNABLE_OPTIONS = {**OPTIONS, "max_value": 99, "expert": "deterministic"}
CHECK_SEEDS = EVAL_SEED_OFFSET // 2  # tasks the builder checks success on: neither training nor the tests' evaluations use them


def build_learnable_pair(directory: Path, *, seed: int = 0) -> tuple[Path, Path]:
    """A trained teacher and a student start that a few OPD updates measurably improve; returns (student, teacher).

    Both have 1 layer, hidden 128 and 2 heads of 64 (what vLLM's CPU attention takes). The teacher learns the
    scripted expert's demonstrations by SFT to 90% held-out success (one build on a 2-core machine plateaued at
    59 of the 64 check tasks, where an earlier one had reached 95%), then sharpens for 150 more steps. The
    student is the teacher knocked off by a short fine-tune on demonstrations two thirds of whose final answers
    are off by one: it keeps every skill but answers wrong on most tasks (at most 40% success), a regression a
    few updates of distillation from the teacher undo. A student half-trained from scratch would need tens of
    updates to gain as much (docs/benchmarks.md), too many for a test.
    """
    env = ToolEnv("calculator", **LEARNABLE_OPTIONS)
    tokenizer = build_word_tokenizer(expert_texts(env, 50), directory / "teacher", numbers=range(100))
    build_tiny_model(tokenizer, directory / "teacher", layers=1, hidden=128, heads=2, seed=seed)
    model = CausalLMPolicy.from_pretrained(str(directory / "teacher"))
    demonstrations = [expert_demonstration(model.chat, env, s, run_id="demonstrations") for s in range(1000)]
    checks: list[float] = []
    sft(model, demonstrations, steps=1000, learning_rate=3e-3, seed=seed, stop=_checked(model, checks, every=25, done=lambda s: s >= 0.9))
    if checks[-1] < 0.9:
        raise RuntimeError(f"the teacher's held-out success went {checks} in 1000 SFT steps, short of 90%; fix the recipe")
    sft(model, demonstrations, steps=150, learning_rate=1e-3, seed=seed + 1)
    model.model.save_pretrained(directory / "teacher")
    wrong = [_off_by_one(e, tokenizer) if i % 3 else e for i, e in enumerate(demonstrations)]
    checks.clear()
    sft(model, wrong, steps=100, learning_rate=1e-3, seed=seed + 2, stop=_checked(model, checks, every=5, done=lambda s: s <= 0.4))
    if checks[-1] > 0.4:
        raise RuntimeError(f"the student's held-out success went {checks} in 100 steps of wrong answers, not down to 40%; fix the recipe")
    model.model.save_pretrained(directory / "student")
    tokenizer.save_pretrained(directory / "student")
    return directory / "student", directory / "teacher"


def _checked(model: CausalLMPolicy, checks: list[float], *, every: int, done: Callable[[float], bool]) -> Callable[[int], bool]:
    """A stop rule for ``sft``: every ``every`` steps, greedy success on 64 check tasks, appended to ``checks``; stop once ``done``."""

    def stop(step: int) -> bool:
        if step % every:
            return False
        result, _ = evaluate(model, "calculator", suite_options=LEARNABLE_OPTIONS, episodes=64, max_turns=3, seed_offset=CHECK_SEEDS)
        checks.append(result.success_rate)
        return done(result.success_rate)

    return stop


def _off_by_one(episode: Episode, tokenizer: PreTrainedTokenizerBase) -> Episode:
    """The demonstration with its final answer (the last number the policy wrote) one higher, modulo 100."""
    last = episode.steps[-1]
    token_ids = last.token_ids.copy()
    numbers = {tokenizer.convert_tokens_to_ids(str(n)): n for n in range(100)}
    answer = [i for i in np.flatnonzero(last.policy_mask) if int(token_ids[i]) in numbers][-1]
    token_ids[answer] = tokenizer.convert_tokens_to_ids(str((numbers[int(token_ids[answer])] + 1) % 100))
    return dataclasses.replace(episode, steps=(*episode.steps[:-1], dataclasses.replace(last, token_ids=token_ids)))
