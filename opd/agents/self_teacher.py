"""Teacher-free feedback: the student is its own teacher, given privileged context (or as a slow EMA copy).

``SelfTeacher`` scores the student's exact tokens with the student's own
weights (or an exponential moving average of them), after showing it what the
student could not see: the task's verified answer (``context="answer"``) or
the suite expert's whole solution (``"demonstration"``). Only the prompt
changes: step 0's prompt tokens are replaced by the privileged prompt, and
every token after it (the student's turns and the tool results) is the stored
sequence, unchanged, so the token-in, token-out invariant holds for everything
the loss touches. The top-k log-probs come back aligned with each step's
policy tokens, exactly as a white-box teacher's do.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from gymnasium.utils import seeding

from opd.agents.policy import CausalLMPolicy
from opd.agents.teacher import WhiteBoxTeacher
from opd.envs import ToolEnv, ToolSuite, make_suite, play_expert
from opd.envs.lending import SandboxLender, borrowed
from opd.errors import ConfigError
from opd.trajectories import Annotations, Episode

__all__ = ["SelfTeacher", "SelfTeacherConfig"]


@dataclasses.dataclass(frozen=True)
class SelfTeacherConfig:
    context: Literal["answer", "demonstration", "none"] = "answer"  # what the teacher sees that the student did not
    ema_decay: float | None = None  # None: the current weights; else an EMA copy updated after each step with this decay

    def __post_init__(self) -> None:
        if self.context not in ("answer", "demonstration", "none"):
            raise ConfigError(f"self_teacher.context must be answer, demonstration or none; got {self.context!r}.")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"self_teacher.ema_decay must lie in [0, 1), got {self.ema_decay}.")
        if self.context == "none" and self.ema_decay is None:
            raise ConfigError("A self-teacher with no privileged context must be an EMA copy (set ema_decay), or it equals the student.")

    @property
    def name(self) -> str:
        return f"self:{self.context}" + (f":ema{self.ema_decay}" if self.ema_decay is not None else "")


class SelfTeacher:
    def __init__(self, student: CausalLMPolicy, config: SelfTeacherConfig, *, k: int = 64, sandboxes: SandboxLender | None = None) -> None:
        self.student = student
        self.sandboxes = sandboxes  # where the expert plays a demonstration of a suite that runs in sandboxes (the run's lender)
        self.config = config
        self.name = config.name
        self.ema = copy.deepcopy(student.model).requires_grad_(False) if config.ema_decay is not None else None
        self._k = k

    def annotate(self, episodes: Sequence[Episode]) -> list[Annotations]:
        # Scoring puts the model in eval mode; the training step switches the student back to train mode.
        scorer = WhiteBoxTeacher(self.ema or self.student.model, self.student.tokenizer, name=self.name, k=self._k)
        return scorer.annotate([self.privileged(e) for e in episodes])

    @torch.no_grad()
    def update(self) -> None:
        """After an optimizer step: move the EMA copy toward the student (a no-op without EMA)."""
        if self.ema is None or self.config.ema_decay is None:
            return
        for slow, fast in zip(self.ema.parameters(), self.student.model.parameters(), strict=True):
            slow.lerp_(fast, 1.0 - self.config.ema_decay)

    def privileged(self, episode: Episode) -> Episode:
        """``episode`` with step 0's prompt replaced by one that also carries the privileged context."""
        if self.config.context == "none" or not episode.steps:
            return episode
        suite = make_suite(episode.suite, **episode.env_options.get("suite_options", {}))
        messages = [dict(m) for m in episode.initial_messages]
        users = [i for i, m in enumerate(messages) if m["role"] == "user"]
        if not users:
            raise ConfigError(f"Episode {episode.id} has no user message to add privileged context to.")
        messages[users[-1]]["content"] += f"\n\n(Privileged, for grading: {self._hint(episode, suite)})"
        prompt = self.student.chat.prompt_ids(messages, suite.tool_schemas)
        first = episode.steps[0]
        generated = first.policy_mask
        step = dataclasses.replace(
            first,
            token_ids=np.r_[np.asarray(prompt, np.int32), first.token_ids[generated]],
            policy_mask=np.r_[np.zeros(len(prompt), bool), np.ones(int(generated.sum()), bool)],
            logprobs=np.r_[np.full(len(prompt), np.nan, np.float32), first.logprobs[generated]],
        )
        return dataclasses.replace(episode, steps=(step, *episode.steps[1:]))

    def _hint(self, episode: Episode, suite: ToolSuite) -> str:
        if episode.seed is None:
            raise ConfigError(f"Episode {episode.id} has no seed, so its task (and answer) cannot be recovered.")
        if self.config.context == "answer":
            task = suite.tasks.sample(seeding.np_random(episode.seed)[0])  # as ToolEnv.reset draws it
            return f"the verified answer is {task.answer}"
        with contextlib.ExitStack() as stack:
            lent = {} if self.sandboxes is None else {"sandbox": stack.enter_context(borrowed(self.sandboxes, 1))[0]}
            env = ToolEnv(episode.suite, **lent, **episode.env_options.get("suite_options", {}))
            stack.callback(env.close)
            return "a verified solution is: " + " then ".join(play_expert(env, episode.seed).actions)
