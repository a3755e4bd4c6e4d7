"""Every cell of feedback signal x teacher access x loss granularity, with the config that selects it.

The README's table is this list; ``tests/distill/test_feedback.py`` runs every
cell with a config through ``opd train`` and checks the README names each one.
A cell's ``settings`` are the training-config keys that select it (besides
``student``, the suite and the budget); ``teacher`` and ``critic`` stand for
the user's own model path and API. Cells that make no sense carry the reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["CELLS", "Cell"]


@dataclasses.dataclass(frozen=True)
class Cell:
    signal: str  # logits, outcome or self-play
    access: str  # white-box, black-box or teacher-free
    granularity: str  # token, step, episode or hybrid
    settings: Mapping[str, Any] | None  # None: the cell makes no sense, see ``reason``
    reason: str = ""

    @property
    def name(self) -> str:
        return f"{self.signal}/{self.access}/{self.granularity}"


_WHITE = {"teacher": "TEACHER_DIR"}
_CRITIC = {"critic": {"model": "openai/JUDGE", "api_base": "http://127.0.0.1:8000/v1"}}
_SELF = {"self_teacher": {"context": "answer"}}
_NO_TOKEN_OUTCOME = "a step or episode score has no per-token resolution; spread over tokens it is the step or episode loss"
_NO_API_LOGITS = (
    "chat APIs return log-probs only for tokens the teacher writes itself, never for the student's tokens; "
    "the API's top_logprobs enter through the critic's score instead (outcome/black-box)"
)

CELLS: tuple[Cell, ...] = (
    Cell("logits", "white-box", "token", {**_WHITE, "loss": {"kind": "token"}}),
    Cell("logits", "white-box", "step", {**_WHITE, "loss": {"kind": "step"}}),
    Cell("logits", "white-box", "episode", {**_WHITE, "loss": {"kind": "episode", "episode_return": "reverse_kl"}}),
    Cell("logits", "white-box", "hybrid", {**_WHITE, "loss": {"kind": "hybrid", "hybrid_weights": {"token": 1.0, "episode": 0.1}}}),
    *(Cell("logits", "black-box", g, None, _NO_API_LOGITS) for g in ("token", "step", "episode", "hybrid")),
    *(
        Cell("logits", "teacher-free", g, None, "without a teacher there are no teacher logits; the student's own are the self-play row")
        for g in ("token", "step", "episode", "hybrid")
    ),
    *(
        Cell(
            "outcome",
            "white-box",
            g,
            None,
            "a local model grades through the black-box path: serve it (transformers serve, vLLM) as critic",
        )
        for g in ("token", "step", "episode", "hybrid")
    ),
    Cell("outcome", "black-box", "token", None, _NO_TOKEN_OUTCOME),
    Cell("outcome", "black-box", "step", {**_CRITIC, "loss": {"kind": "step_critique"}}),
    Cell("outcome", "black-box", "episode", {**_CRITIC, "loss": {"kind": "episode_critique", "objective": "rwr"}}),
    Cell(
        "outcome",
        "black-box",
        "hybrid",
        {**_WHITE, **_CRITIC, "loss": {"kind": "hybrid", "hybrid_weights": {"token": 1.0, "step_critique": 1.0}, "uncertainty": "weight"}},
    ),
    Cell("outcome", "teacher-free", "token", None, _NO_TOKEN_OUTCOME),
    Cell("outcome", "teacher-free", "step", {"loss": {"kind": "step_outcome"}}),
    Cell("outcome", "teacher-free", "episode", {"loss": {"kind": "episode_outcome"}}),
    Cell(
        "outcome", "teacher-free", "hybrid", {"loss": {"kind": "hybrid", "hybrid_weights": {"step_outcome": 1.0, "episode_outcome": 1.0}}}
    ),
    *(
        Cell("self-play", access, g, None, "self-play means the student is its own teacher")
        for access in ("white-box", "black-box")
        for g in ("token", "step", "episode", "hybrid")
    ),
    Cell("self-play", "teacher-free", "token", {**_SELF, "loss": {"kind": "token"}}),
    Cell("self-play", "teacher-free", "step", {"self_teacher": {"context": "demonstration"}, "loss": {"kind": "step"}}),
    Cell("self-play", "teacher-free", "episode", {"samples_per_task": 4, "keep": "best_success", "loss": {"kind": "sft"}}),
    Cell(
        "self-play",
        "teacher-free",
        "hybrid",
        {
            "self_teacher": {"context": "none", "ema_decay": 0.9},
            "loss": {"kind": "hybrid", "hybrid_weights": {"token": 1.0, "episode": 0.1}},
        },
    ),
)
