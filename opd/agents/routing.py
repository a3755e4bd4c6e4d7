"""Route each step between several white-box teachers: a cheap one by default, an expensive one where a rule says.

A ``RoutedTeacher`` is one teacher to the loop (a ``name`` and ``annotate``),
made of several. For every step with policy tokens it picks a teacher by the
first rule that matches (the tool the step calls, its index, or the default
teacher's uncertainty on it), takes that teacher's top-k log-probs for the step
and stores them under the router's name, so the losses train on one
consistent signal. Beside them it records, per step, which teacher was chosen,
why, and what it cost (``StepRoute``).

Cost is measured, not guessed: a teacher reads an episode only up to the end
of the last step routed to it (a causal model's logits there need nothing
after), and the tokens it reads are apportioned to its steps (each step counts
the tokens from the previous step routed to it to its own end). FLOPs are
2 x parameters x tokens read. When a rule needs the run's teacher's
uncertainty, that teacher reads every episode whole; the tokens read only to
measure are counted in the totals (``take_counts``), not charged to any step.

Routing does not cover critics (black-box teachers) and needs every teacher to
share the student's tokenizer (checked when the teachers load).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from opd.agents.preflight import preflight
from opd.agents.teacher import WhiteBoxTeacher
from opd.errors import ConfigError
from opd.trajectories import Annotations, Episode, Step, StepRoute, TokenLogprobs

__all__ = ["RouteRule", "RoutedTeacher", "RoutingConfig", "route_metrics", "step_uncertainty"]

DEFAULT = "teacher"  # the run's own white-box teacher (the config's `teacher`), by this name in rules


@dataclasses.dataclass(frozen=True)
class RouteRule:
    """A step matches when every condition given holds; the first matching rule picks its teacher."""

    teacher: str  # "teacher" (the run's white-box teacher) or a name from routing.teachers
    tools: tuple[str, ...] = ()  # the step calls one of these tools
    steps: tuple[int, int] | None = None  # the step's index lies in [first, last]
    uncertain_above: float | None = None  # the run's teacher (`teacher`): its normalised entropy on the step exceeds this

    def __post_init__(self) -> None:
        object.__setattr__(self, "tools", (self.tools,) if isinstance(self.tools, str) else tuple(self.tools))
        if self.steps is not None:
            if len(self.steps) != 2 or self.steps[0] > self.steps[1]:
                raise ConfigError(f"routing rule steps must be [first, last] with first <= last, got {self.steps!r}.")
            object.__setattr__(self, "steps", (int(self.steps[0]), int(self.steps[1])))
        if self.uncertain_above is not None and not 0.0 <= self.uncertain_above <= 1.0:
            raise ConfigError(f"routing rule uncertain_above must lie in [0, 1], got {self.uncertain_above}.")
        if not self.tools and self.steps is None and self.uncertain_above is None:
            raise ConfigError(f"routing rule for {self.teacher!r} has no condition; give tools, steps or uncertain_above (or set default).")

    def match(self, step: Step, uncertainty: float | None) -> str | None:
        """Why this rule matches ``step`` (a short reason), or None."""
        reasons = []
        if self.tools:
            called = [c.get("name") for c in step.tool_calls if c.get("name") in self.tools]
            if not called:
                return None
            reasons.append(f"tool {called[0]}")
        if self.steps is not None:
            if not self.steps[0] <= step.index <= self.steps[1]:
                return None
            reasons.append(f"steps {self.steps[0]}-{self.steps[1]}")
        if self.uncertain_above is not None:
            if uncertainty is None or uncertainty <= self.uncertain_above:
                return None
            reasons.append(f"uncertainty {uncertainty:.2f} > {self.uncertain_above}")
        return ", ".join(reasons)


@dataclasses.dataclass(frozen=True)
class RoutingConfig:
    teachers: Mapping[str, str]  # name -> model directory or hub name of each further white-box teacher
    rules: tuple[RouteRule, ...] = ()  # tried in order; the first that matches picks the step's teacher
    default: str = DEFAULT  # the teacher of a step no rule matches
    name: str = "routed"  # the teacher name the routed annotations are stored and trained under

    def __post_init__(self) -> None:
        rules = tuple(RouteRule(**r) if isinstance(r, Mapping) else r for r in self.rules)  # config files give mappings
        object.__setattr__(self, "rules", rules)
        known = {DEFAULT, *self.teachers}
        if DEFAULT in self.teachers:
            raise ConfigError(f"routing.teachers may not use the name {DEFAULT!r}: it means the run's own teacher.")
        for chosen in (self.default, *(r.teacher for r in rules)):
            if chosen not in known:
                raise ConfigError(f"routing names teacher {chosen!r}; known: {sorted(known)} (add it to routing.teachers).")

    @property
    def measures_uncertainty(self) -> bool:
        return any(r.uncertain_above is not None for r in self.rules)


class RoutedTeacher:
    """Several white-box teachers behind one ``annotate``, chosen per step by ``config``'s rules."""

    def __init__(self, teachers: Mapping[str, WhiteBoxTeacher], config: RoutingConfig) -> None:
        self.teachers = dict(teachers)
        self.config = config
        self.name = config.name
        self.tokenizer = self.teachers[DEFAULT].tokenizer
        self.parameters = {n: sum(p.numel() for p in t.model.parameters()) for n, t in self.teachers.items()}
        self._counts: dict[str, float] = {}

    @classmethod
    def load(cls, teacher: WhiteBoxTeacher | None, config: RoutingConfig, *, k: int, device: str) -> RoutedTeacher:
        """The run's ``teacher`` and the further teachers ``config`` names, loaded; refuses one with another tokenizer."""
        if teacher is None:
            raise ConfigError("routing routes between white-box teachers: set teacher: PATH_OR_NAME (the default, cheap one).")
        teachers = {DEFAULT: teacher}
        for name, path in config.teachers.items():
            other = WhiteBoxTeacher.from_pretrained(path, k=k, device=device)
            report = preflight(teacher.tokenizer, other.tokenizer)
            if not report.ok:
                raise ConfigError(f"routing teacher {name!r} ({path}) cannot score the same token ids: {report.describe()}")
            teachers[name] = other
        return cls(teachers, config)

    def annotate(self, episodes: Sequence[Episode]) -> list[Annotations]:
        measured: dict[str, dict[int, TokenLogprobs]] = {}
        if self.config.measures_uncertainty:  # the run's teacher reads every episode whole to say how sure it is
            whole = [e for e in episodes if any(s.num_policy_tokens for s in e.steps)]
            measured = self._score(DEFAULT, whole, {e.id: len(e.steps) - 1 for e in whole}) if whole else {}
        choices = {e.id: self._choose(e, measured.get(e.id, {})) for e in episodes}
        scored: dict[str, dict[str, dict[int, TokenLogprobs]]] = {DEFAULT: dict(measured)}
        for name in self.teachers:
            last = {  # per episode routing a step to this teacher: the last such step
                e.id: max(i for i, (c, _) in choices[e.id].items() if c == name)
                for e in episodes
                if any(c == name for c, _ in choices[e.id].values()) and not (name == DEFAULT and e.id in measured)
            }
            todo = [e for e in episodes if e.id in last]
            scored.setdefault(name, {}).update(self._score(name, todo, last) if todo else {})
        return [self._compose(e, choices[e.id], scored) for e in episodes]

    def take_counts(self) -> dict[str, float]:
        """Steps, tokens read and FLOPs per teacher since the last call (sums: add them across ranks)."""
        counts, self._counts = self._counts, {}
        return counts

    def _choose(self, episode: Episode, measured: Mapping[int, TokenLogprobs]) -> dict[int, tuple[str, str]]:
        """Per step with policy tokens: (chosen teacher, reason)."""
        chosen = {}
        for step in episode.steps:
            if not step.num_policy_tokens:
                continue
            uncertainty = step_uncertainty(measured[step.index]) if step.index in measured else None
            chosen[step.index] = next(
                ((r.teacher, reason) for r in self.config.rules if (reason := r.match(step, uncertainty)) is not None),
                (self.config.default, "default"),
            )
        return chosen

    def _score(self, name: str, episodes: list[Episode], last: Mapping[str, int]) -> dict[str, dict[int, TokenLogprobs]]:
        """``name``'s top-k per step of each episode, read up to the end of step ``last[episode]``."""
        cut = [dataclasses.replace(e, steps=e.steps[: last[e.id] + 1]) for e in episodes]
        tokens = sum(e.num_tokens for e in cut)
        self._add(f"route/tokens/{name}", tokens)
        self._add(f"route/flops/{name}", 2.0 * self.parameters[name] * tokens)
        return {e.id: {a.step_index: a for a in x.token_logprobs} for e, x in zip(cut, self.teachers[name].annotate(cut), strict=True)}

    def _compose(
        self, episode: Episode, chosen: Mapping[int, tuple[str, str]], scored: Mapping[str, Mapping[str, Mapping[int, TokenLogprobs]]]
    ) -> Annotations:
        measured = scored[DEFAULT].get(episode.id, {})
        read_to = dict.fromkeys(self.teachers, 0)  # per teacher: tokens of the episode already charged to its steps
        offsets = np.cumsum([len(s.token_ids) for s in episode.steps])
        topk, routes = [], []
        for step in episode.steps:
            if step.index not in chosen:
                continue
            name, reason = chosen[step.index]
            tokens = int(offsets[step.index]) - read_to[name]
            read_to[name] = int(offsets[step.index])
            topk.append(dataclasses.replace(scored[name][episode.id][step.index], teacher=self.name))
            uncertainty = step_uncertainty(measured[step.index]) if step.index in measured else None
            cost = 2.0 * self.parameters[name] * tokens
            routes.append(StepRoute(self.name, step.index, name, reason, uncertainty, tokens, cost))
            self._add(f"route/steps/{name}", 1)
        return Annotations(token_logprobs=tuple(topk), routes=tuple(routes))

    def _add(self, key: str, value: float) -> None:
        self._counts[key] = self._counts.get(key, 0.0) + value


def step_uncertainty(annotation: TokenLogprobs) -> float:
    """The teacher's mean normalised entropy over the step's tokens: entropy of its top k plus the tail, over log(k + 1)."""
    p_NK = np.exp(annotation.logprobs.astype(np.float64))
    tail_N = annotation.tail_mass.astype(np.float64)
    entropy_N = -(p_NK * np.log(np.clip(p_NK, 1e-30, None))).sum(-1) - tail_N * np.log(np.clip(tail_N, 1e-30, None))
    return float(np.clip(entropy_N / np.log(annotation.k + 1), 0.0, 1.0).mean()) if len(entropy_N) else 0.0


def route_metrics(counts: Mapping[str, float]) -> dict[str, float]:
    """``counts`` (summed over ranks) with each teacher's share of the routed steps added as ``route/share/<teacher>``."""
    steps = {k.removeprefix("route/steps/"): v for k, v in counts.items() if k.startswith("route/steps/")}
    total = sum(steps.values())
    return {**counts, **{f"route/share/{name}": n / total for name, n in steps.items() if total}}
