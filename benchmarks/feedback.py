"""Feedback signals side by side on the demo suite, at equal training steps: which teacher access buys what.

All arms start from the `opd demo` student (built once and cached) and take the
same number of updates on the same task seeds:

* white-box OPD: the demo teacher's top-k logits, token-level reverse KL;
* black-box critique OPD: an API critic grades every step (step-level policy
  gradient on its scores), reached through litellm over HTTP on loopback;
* the same critic made unreliable (it is wrong on 30% of steps, and unsure
  when wrong), without and with uncertainty weighting;
* teacher-free self-distillation: the student given the verified answer is
  the teacher (token-level reverse KL);
* teacher-free self-imitation: best of 4 samples per task, SFT on verified successes;
* no teacher: REINFORCE on the verifier's outcome reward.

The critic is the tests' chat server with a judge that works out the
arithmetic (tests/judges.py): it stands in for a large grading model, which
this machine cannot run. Prints held-out greedy success for each arm.

    .venv/bin/python benchmarks/feedback.py [--updates 40] [--seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the loopback chat server and its judge

from chat_server import chat_app, serve  # noqa: E402
from judges import calculator_judge  # noqa: E402

from opd.agents.critic import CriticConfig  # noqa: E402
from opd.agents.policy import CausalLMPolicy, SamplingConfig  # noqa: E402
from opd.agents.self_teacher import SelfTeacherConfig  # noqa: E402
from opd.distill.config import TrainConfig  # noqa: E402
from opd.distill.demo import DemoConfig, demo_models  # noqa: E402
from opd.distill.evaluate import evaluate  # noqa: E402
from opd.distill.losses import LossConfig  # noqa: E402
from opd.distill.train import train  # noqa: E402


def unreliable(judge: Any, *, wrong: float, seed: int) -> Any:
    """``judge``, but on a fraction ``wrong`` of requests it flips its verdict and spreads its score distribution."""
    rng = np.random.default_rng(seed)

    def judged(messages: list[dict[str, Any]]) -> tuple[dict[int, float], str]:
        distribution, rationale = judge(messages)
        if rng.random() >= wrong:
            return distribution, rationale
        best = max(distribution, key=distribution.get)
        flipped = 10 - best
        return {flipped: 0.3, best: 0.25, 5: 0.2, 10 - flipped // 2: 0.25}, "not sure"

    return judged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=40)
    parser.add_argument("--episodes-per-update", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default="runs/bench-feedback")
    args = parser.parse_args()
    console = Console()
    demo = DemoConfig()
    teacher_dir, student_dir = demo_models(demo, report=console.print)
    options = dict(demo.suite_options)
    start, _ = evaluate(CausalLMPolicy.from_pretrained(str(student_dir)), "calculator", suite_options=options, episodes=200)
    teacher, _ = evaluate(CausalLMPolicy.from_pretrained(str(teacher_dir)), "calculator", suite_options=options, episodes=200)
    base = TrainConfig(
        student=str(student_dir), suite_options=options, store=f"{args.workdir}/opd.db", seed=args.seed, updates=args.updates,
        episodes_per_update=args.episodes_per_update, learning_rate=1e-3, teacher_k=16, eval_every=0, eval_episodes=200,
        checkpoint_every=0, tensorboard=False, sampling=SamplingConfig(temperature=0.7, max_new_tokens=32),
        loss=LossConfig(kind="episode_outcome"),  # each arm sets its own
    )  # fmt: skip
    good_app, _ = chat_app(calculator_judge)
    noisy_app, _ = chat_app(unreliable(calculator_judge, wrong=0.3, seed=args.seed))
    rows = []
    with serve(good_app) as good, serve(noisy_app) as noisy:
        critic = CriticConfig(model="openai/judge", api_base=good, top_logprobs=5, concurrency=16)
        noisy_critic = dataclasses.replace(critic, api_base=noisy)
        arms: dict[str, dict[str, Any]] = {
            "white-box OPD (token reverse KL)": {"teacher": str(teacher_dir), "loss": LossConfig(kind="token", divergence="reverse_kl")},
            "black-box critique OPD (step PG)": {"critic": critic, "loss": LossConfig(kind="step_critique")},
            "unreliable critic (step PG)": {"critic": noisy_critic, "loss": LossConfig(kind="step_critique")},
            "unreliable critic + uncertainty gate": {
                "critic": noisy_critic,
                "loss": LossConfig(kind="step_critique", uncertainty="gate", uncertainty_threshold=0.5),
            },
            "teacher-free self-distillation (answer)": {
                "self_teacher": SelfTeacherConfig(context="answer"),
                "loss": LossConfig(kind="token", divergence="reverse_kl"),
            },
            "teacher-free self-imitation (best of 4)": {"samples_per_task": 4, "keep": "best_success", "loss": LossConfig(kind="sft")},
            "no teacher (REINFORCE on outcome)": {"loss": LossConfig(kind="episode_outcome")},
        }
        for name, settings in arms.items():
            console.print(f"[bold]{name}[/]: {args.updates} updates")
            began = time.perf_counter()
            slug = name.split(" (")[0].replace(" ", "-").replace("+", "and")
            config = dataclasses.replace(base, run_name=f"bench feedback: {name}", output_dir=f"{args.workdir}/{slug}", **settings)
            result = train(config, resume=False)
            usage = result.critique_usage
            rows.append(
                (name, result.final_eval.describe(), f"{time.perf_counter() - began:.0f}", "" if usage is None else str(usage["calls"]))
            )
    table = Table(title=f"held-out greedy success after {args.updates} updates x {args.episodes_per_update} tasks (seed {args.seed})")
    for column in ("arm", "success (95% CI)", "wall s", "critic calls"):
        table.add_column(column)
    table.add_row("teacher (reference)", teacher.describe(), "", "")
    table.add_row("student start", start.describe(), "", "")
    for row in rows:
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    main()
