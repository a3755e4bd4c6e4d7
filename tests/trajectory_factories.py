"""Episodes with realistic token arrays and annotations, for store tests and benchmarks."""

from __future__ import annotations

import numpy as np

from opd.trajectories import Annotations, Episode, EpisodeScore, Run, Step, StepCritique, TokenLogprobs


def make_step(rng: np.random.Generator, index: int, *, prompt_tokens: int = 12, policy_tokens: int = 8) -> Step:
    n = prompt_tokens + policy_tokens
    mask = np.zeros(n, bool)
    mask[prompt_tokens:] = True
    logprobs = np.full(n, np.nan, np.float32)
    logprobs[mask] = -rng.exponential(size=policy_tokens).astype(np.float32)
    return Step(
        index=index,
        action=f'<tool_call>{{"name": "add", "arguments": {{"a": {index}, "b": 2}}}}</tool_call>',
        observation=str(index + 2),
        token_ids=rng.integers(0, 151_936, size=n).astype(np.int32),
        policy_mask=mask,
        logprobs=logprobs,
        messages=({"role": "assistant", "content": "call"}, {"role": "tool", "name": "add", "content": str(index + 2)}),
        tool_calls=({"name": "add", "arguments": {"a": index, "b": 2}},),
        tool_results=({"name": "add", "output": str(index + 2), "status": "ok", "truncated": False},),
        reward=0.0,
        timings={"parse_s": 1e-5, "step_s": 2e-4},
    )


def make_topk(rng: np.random.Generator, step: Step, teacher: str = "teacher", k: int = 8) -> TokenLogprobs:
    p = step.num_policy_tokens
    logits = rng.normal(size=(p, k + 4))
    logprobs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    order = np.argsort(-logprobs, axis=1)[:, :k]
    top = np.take_along_axis(logprobs, order, axis=1)
    return TokenLogprobs(
        teacher=teacher,
        step_index=step.index,
        token_ids=rng.integers(0, 151_936, size=(p, k)).astype(np.int32),
        logprobs=top.astype(np.float16),
        tail_mass=(1.0 - np.exp(top).sum(axis=1)).astype(np.float32),
    )


def make_episode(
    rng: np.random.Generator,
    run: Run,
    *,
    steps: int = 3,
    suite: str = "calculator",
    success: bool = True,
    annotated: bool = True,
    policy_tokens: int = 8,
    k: int = 8,
) -> Episode:
    records = tuple(make_step(rng, i, policy_tokens=policy_tokens) for i in range(steps))
    annotations = Annotations()
    if annotated:
        annotations = Annotations(
            token_logprobs=tuple(make_topk(rng, s, k=k) for s in records),
            critiques=(StepCritique("critic", 0, 0.25, "Add the other operand first.", '<tool_call>{"name": "add"}</tool_call>'),),
            episode_scores=(EpisodeScore("verifier", 1.0 if success else 0.0, "checked"),),
        )
    return Episode(
        run_id=run.id,
        suite=suite,
        task_id=f"task-{rng.integers(10**6)}",
        seed=int(rng.integers(10**6)),
        steps=records,
        reward=1.0 if success else 0.0,
        success=success,
        termination="final_answer",
        env_options={"suite_options": {"difficulty": "easy"}, "max_turns": 6},
        initial_messages=({"role": "system", "content": "sys"}, {"role": "user", "content": "Compute 1 + 2."}),
        policy_model="tiny-student",
        teacher_models=("tiny-teacher",),
        tokenizer="tiny-tokenizer",
        chat_template_hash="abc123",
        sandbox={"backend": "LocalSandbox", "isolated": False},
        writer={"host": "test", "pid": 1, "rank": 0},
        annotations=annotations,
    )
