"""Success rate of a policy on held-out tasks, with a confidence interval.

Held-out tasks are drawn with seeds from a range that training never uses
(:data:`EVAL_SEED_OFFSET` and up), so a policy is never evaluated on a task it
trained on.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import torch

from opd.agents.policy import CausalLMPolicy, SamplingConfig
from opd.agents.rollout import collect_episodes
from opd.envs import ToolEnv, make_suite
from opd.envs.lending import SandboxConfig, SandboxLender, borrowed, open_sandboxes, rounds
from opd.trajectories import Episode

__all__ = ["EVAL_SEED_OFFSET", "EvalResult", "evaluate", "wilson_interval"]

EVAL_SEED_OFFSET = 1_000_000_000
GREEDY = SamplingConfig(temperature=0.0)


@dataclasses.dataclass(frozen=True)
class EvalResult:
    episodes: int
    successes: int
    mean_reward: float
    ci_low: float  # 95% Wilson interval of the success rate
    ci_high: float

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else math.nan

    def describe(self) -> str:
        return f"{self.success_rate:.1%} [{self.ci_low:.1%}, {self.ci_high:.1%}] of {self.episodes}"


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval: sensible at 0% and 100%, unlike the normal approximation."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def evaluate(
    policy: CausalLMPolicy,
    suite: str,
    *,
    suite_options: Mapping[str, Any] | None = None,
    episodes: int = 100,
    batch_size: int = 64,
    sampling: SamplingConfig = GREEDY,
    max_turns: int | None = None,
    seed_offset: int = EVAL_SEED_OFFSET,
    run_id: str = "eval",
    sandbox: SandboxConfig | None = None,
    sandboxes: SandboxLender | None = None,
) -> tuple[EvalResult, list[Episode]]:
    """Play ``episodes`` held-out tasks (greedy by default) and return the result and the episodes.

    Episodes borrow their sandboxes from ``sandboxes`` (a training run's), or
    from a lender opened here from ``sandbox`` (default settings if None) and closed at the end.
    """
    played: list[Episode] = []
    options = dict(suite_options or {})
    lender = sandboxes or open_sandboxes(sandbox or SandboxConfig(), make_suite(suite, **options))
    try:
        for start in range(0, episodes, batch_size):
            for chunk in rounds(lender, min(batch_size, episodes - start)):
                seeds = [seed_offset + start + i for i in chunk]
                generator = torch.Generator().manual_seed(seed_offset + start + chunk.start)
                with borrowed(lender, len(seeds)) as boxes:
                    envs = [ToolEnv(suite, max_turns=max_turns, sandbox=box, limits=lender.limits, **options) for box in boxes]
                    played += collect_episodes(
                        policy, envs, seeds, run_id=run_id, sampling=sampling, generator=generator, suite_options=options
                    )
                    for env in envs:
                        env.close()
    finally:
        if sandboxes is None:
            lender.close()
    successes = sum(e.success for e in played)
    low, high = wilson_interval(successes, len(played))
    mean_reward = sum(e.reward for e in played) / len(played) if played else math.nan
    return EvalResult(len(played), successes, mean_reward, low, high), played
