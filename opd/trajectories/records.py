"""The in-memory records of the trajectory store: runs, episodes, steps and teacher annotations.

Frozen dataclasses that flow between the parts of opd. The store converts
them to and from its tables; table rows never leave the store.

Token layout (the token-in, token-out invariant): each step holds the tokens
*appended* to the episode at that step: first what the policy conditioned on
that it did not write (the prompt for step 0, the rendered tool result of the
previous step afterwards), then the tokens the policy generated. The whole
episode's sequence is the concatenation of its steps' ``token_ids``;
``policy_mask`` marks the policy's own tokens; ``logprobs`` holds the policy's
log-probability of each of its tokens (NaN elsewhere). Teacher token
annotations are aligned with a step's *policy* tokens, in order.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from opd.errors import ConfigError

__all__ = [
    "Annotations",
    "Episode",
    "EpisodeScore",
    "Run",
    "Step",
    "StepCritique",
    "StepRoute",
    "TokenLogprobs",
    "critique_ledger",
    "new_id",
    "route_shares",
    "sum_usage",
]

USAGE_KEYS = ("calls", "cached", "prompt_tokens", "completion_tokens", "cost_usd")


def new_id() -> str:
    """A random id that does not collide across processes and machines."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass(frozen=True)
class Run:
    """One invocation of collection or training; episodes belong to a run."""

    id: str = dataclasses.field(default_factory=new_id)
    name: str = ""
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the full resolved configuration
    code_version: str = ""  # package version and, where known, the git commit
    created_at: datetime = dataclasses.field(default_factory=utcnow)


@dataclasses.dataclass(frozen=True, eq=False)
class Step:
    """One turn: the tokens appended, the action, what the env returned."""

    index: int
    action: str  # the policy's text (decoded from its tokens)
    observation: str  # what the env returned
    token_ids: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))  # (N,) int32
    policy_mask: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, bool))  # (N,) bool
    logprobs: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.float32))  # (N,) float32, NaN off-policy
    messages: tuple[Mapping[str, Any], ...] = ()  # the chat messages this step added (assistant, tool results)
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    tool_results: tuple[Mapping[str, Any], ...] = ()
    error_kind: str | None = None
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    # Measurements, not outcomes: left out of equality so that replays and re-runs compare what happened.
    timings: Mapping[str, float] = dataclasses.field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        n = len(self.token_ids)
        if len(self.policy_mask) != n or len(self.logprobs) != n:
            raise ConfigError(
                f"Step {self.index}: token_ids, policy_mask and logprobs must have one entry per token "
                f"(got {n}, {len(self.policy_mask)}, {len(self.logprobs)})."
            )

    @property
    def num_policy_tokens(self) -> int:
        return int(np.count_nonzero(self.policy_mask))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Step) and _fields_equal(self, other)


@dataclasses.dataclass(frozen=True, eq=False)
class TokenLogprobs:
    """A teacher's top-k log-probabilities for each policy token of one step.

    Stored as float16 log-probs and int32 token ids; ``tail_mass`` is the teacher
    probability outside the top k (float32), so the distribution's remainder is
    known without the full vocabulary.
    """

    teacher: str
    step_index: int
    token_ids: np.ndarray  # (N, K) int32, N = policy tokens of the step
    logprobs: np.ndarray  # (N, K) float16, natural log, normalised over the full vocabulary
    tail_mass: np.ndarray  # (N,) float32

    def __post_init__(self) -> None:
        if self.token_ids.shape != self.logprobs.shape or self.token_ids.ndim != 2:
            raise ConfigError(f"token_ids and logprobs must both be (N, K); got {self.token_ids.shape} and {self.logprobs.shape}.")
        if self.tail_mass.shape != self.token_ids.shape[:1]:
            raise ConfigError(f"tail_mass must be (N,) = {self.token_ids.shape[:1]}, got {self.tail_mass.shape}.")

    @property
    def k(self) -> int:
        return int(self.token_ids.shape[1])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TokenLogprobs) and _fields_equal(self, other)


@dataclasses.dataclass(frozen=True)
class StepCritique:
    """A teacher's judgement of one step: a score, a rationale, optionally a better action.

    ``score`` is None when the step is *unannotated*: the teacher could not be
    reached or never gave a judgement that parses; ``error`` then says why.
    ``uncertainty`` in [0, 1] is the teacher's doubt (spread of its score
    distribution or of n critiques), None where unknown. ``usage`` is the cost
    ledger entry: calls, cached calls, prompt/completion tokens and dollars.
    """

    teacher: str
    step_index: int
    score: float | None
    critique: str = ""
    corrected_action: str | None = None
    uncertainty: float | None = None
    error: str | None = None
    usage: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def sum_usage(usages: Iterable[Mapping[str, Any]]) -> dict[str, float | None]:
    """Totals of critique usage records; ``cost_usd`` is None when any part's price was unknown."""
    totals: dict[str, float | None] = dict.fromkeys(USAGE_KEYS, 0)
    for usage in usages:
        for key in USAGE_KEYS:
            value, total = usage.get(key, 0), totals[key]
            totals[key] = None if value is None or total is None else total + value
    return totals


def critique_ledger(critiques: Iterable[Any]) -> dict[str, float | None]:
    """Steps graded, steps left unannotated, and the usage totals of ``critiques`` (anything with ``score`` and ``usage``)."""
    critiques = list(critiques)
    return {"steps": len(critiques), "unannotated": sum(c.score is None for c in critiques), **sum_usage(c.usage for c in critiques)}


@dataclasses.dataclass(frozen=True)
class EpisodeScore:
    """A reward for the whole episode from a teacher or verifier other than the env's own."""

    teacher: str
    reward: float
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class StepRoute:
    """Which of several teachers a router chose for one step, and why.

    ``teacher`` is the router's name (its annotations are stored under it); ``chosen``
    the teacher whose feedback it took for the step. ``tokens`` is what the chosen
    teacher read for it and ``cost`` that in the router's cost unit (FLOPs: 2 x
    parameters x tokens), so shares and costs add up per teacher.
    """

    teacher: str
    step_index: int
    chosen: str
    reason: str = ""  # the rule that matched, e.g. "tool place_order", "steps 0-1", "uncertainty 0.71 > 0.5", "default"
    uncertainty: float | None = None  # the cheap teacher's normalised entropy on the step, where it was measured
    tokens: int = 0
    cost: float = 0.0


@dataclasses.dataclass(frozen=True)
class RouteShare:
    """One teacher's part of a router's choices: steps, their share of the router's steps, tokens read and cost."""

    router: str
    teacher: str
    steps: int
    share: float
    tokens: int
    cost: float


def route_shares(routes: Iterable[StepRoute]) -> list[RouteShare]:
    """Per (router, chosen teacher), sorted: how many steps it took, their share, and the tokens and cost charged."""
    totals: dict[tuple[str, str], list[float]] = {}
    for route in routes:
        entry = totals.setdefault((route.teacher, route.chosen), [0, 0, 0.0])
        entry[0], entry[1], entry[2] = entry[0] + 1, entry[1] + route.tokens, entry[2] + route.cost
    per_router: dict[str, float] = {}
    for (router, _), (steps, _, _) in totals.items():
        per_router[router] = per_router.get(router, 0) + steps
    return [
        RouteShare(router, teacher, int(steps), steps / per_router[router], int(tokens), cost)
        for (router, teacher), (steps, tokens, cost) in sorted(totals.items())
    ]


@dataclasses.dataclass(frozen=True)
class Annotations:
    token_logprobs: tuple[TokenLogprobs, ...] = ()
    critiques: tuple[StepCritique, ...] = ()
    episode_scores: tuple[EpisodeScore, ...] = ()
    routes: tuple[StepRoute, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.token_logprobs or self.critiques or self.episode_scores or self.routes)

    @property
    def teachers(self) -> list[str]:
        names = [a.teacher for a in (*self.token_logprobs, *self.critiques, *self.episode_scores, *self.routes)]
        return sorted(set(names))


@dataclasses.dataclass(frozen=True)
class Episode:
    """One task attempted by a policy, with every step and what teachers said about it."""

    run_id: str
    suite: str
    task_id: str
    seed: int | None
    steps: tuple[Step, ...]
    reward: float  # the env's total reward
    success: bool
    termination: str  # "final_answer", "max_turns" or "failed"
    id: str = dataclasses.field(default_factory=new_id)
    env_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # suite options and max_turns, for replay
    initial_messages: tuple[Mapping[str, Any], ...] = ()  # system and user messages before step 0
    failure_reason: str | None = None  # set when termination == "failed"
    policy_model: str = ""
    teacher_models: tuple[str, ...] = ()
    tokenizer: str = ""
    chat_template_hash: str = ""
    sandbox: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the sandbox settings it ran under
    writer: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # host, pid, rank of the writing process
    annotations: Annotations = Annotations()
    created_at: datetime = dataclasses.field(default_factory=utcnow)
    # A branch (``opd branch``): the episode it continues and the step it branched at. Its steps before
    # ``branch_step`` are the parent's, copied as context (policy mask off); the steps from there on are its own.
    parent_id: str | None = None
    branch_step: int | None = None

    @property
    def token_ids(self) -> np.ndarray:
        """(N,) int32: the whole episode's token sequence."""
        return np.concatenate([s.token_ids for s in self.steps]) if self.steps else np.zeros(0, np.int32)

    @property
    def policy_mask(self) -> np.ndarray:
        """(N,) bool: which tokens of :attr:`token_ids` the policy generated."""
        return np.concatenate([s.policy_mask for s in self.steps]) if self.steps else np.zeros(0, bool)

    @property
    def num_tokens(self) -> int:
        return sum(len(s.token_ids) for s in self.steps)


def _fields_equal(a: Any, b: Any) -> bool:
    """Dataclass equality that compares numpy arrays by dtype, shape and bits (NaN equals NaN)."""
    for field in dataclasses.fields(a):
        if not field.compare:
            continue
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)):
                return False
            if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
                return False
        elif x != y:
            return False
    return True
