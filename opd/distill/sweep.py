"""Scaling-law sweeps: one recipe over a grid of student sizes x teacher-token budgets, fitted as a power law.

Each student size is one training run (in the store as ``sweep: student I``),
trained budget by budget: the loop stops at a budget of teacher-labelled tokens,
is measured, and resumes to the next budget from its checkpoint (resuming is
exact, so this is the same as separate runs to each budget, at the cost of the
largest). At every grid point the sweep records the greedy held-out success and
the held-out loss: the student's mean cross-entropy on the teacher's own greedy
episodes of held-out tasks (a continuous measure that small students and budgets
still move when success is 0).

The fit is ``metric = A * N^-alpha * D^-beta`` (N: student parameters, D: teacher
tokens), by least squares on logarithms, with standard errors from the residuals
and 95% intervals from Student's t. ``metric: success`` fits the failure rate
``1 - success`` (clipped at half an episode), since that is what falls as a power.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from transformers import AutoTokenizer

from opd.agents.policy import CausalLMPolicy
from opd.agents.tiny import build_tiny_model
from opd.distill.batch import make_batch
from opd.distill.config import TrainConfig, load_config
from opd.distill.evaluate import evaluate
from opd.distill.sampled import token_logprobs
from opd.distill.train import train
from opd.errors import ConfigError
from opd.trajectories import Episode

__all__ = ["PowerLawFit", "StudentSpec", "SweepConfig", "fit_power_law", "load_sweep", "run_sweep"]

Report = Callable[[str], None]
# Two-sided 95% quantiles of Student's t for 1..10 degrees of freedom (beyond: the normal's 1.96 is within 5%).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


@dataclasses.dataclass(frozen=True)
class StudentSpec:
    path: str | None = None  # a hub name or directory; or None and a tiny model of this shape over the teacher's tokenizer
    layers: int = 1
    hidden: int = 16
    heads: int = 2


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    recipe: str  # a training config (opd train's format), relative to the sweep file; its student is replaced per row
    students: tuple[StudentSpec, ...]  # the student sizes (at least 2)
    budgets: tuple[int, ...]  # teacher-labelled token budgets (at least 2), per student
    metric: Literal["heldout_loss", "success"] = "heldout_loss"  # what the power law fits
    heldout_episodes: int = 64  # teacher episodes of held-out tasks that the held-out loss averages over
    output_dir: str = "runs/sweep"  # students, checkpoints, sweep.jsonl, fit.json and the plot
    seed: int = 0  # seeds the tiny students' initialisation

    def __post_init__(self) -> None:
        if len(self.students) < 2 or len(self.budgets) < 2:
            raise ConfigError(
                f"A sweep needs at least 2 students and 2 budgets to fit two exponents; got {len(self.students)} and {len(self.budgets)}."
            )
        if sorted(set(self.budgets)) != list(self.budgets) or self.budgets[0] < 1:
            raise ConfigError(f"budgets must be positive and strictly increasing; got {list(self.budgets)}.")
        if self.metric not in ("heldout_loss", "success"):
            raise ConfigError(f"metric must be heldout_loss or success; got {self.metric!r}.")


@dataclasses.dataclass(frozen=True)
class PowerLawFit:
    metric: str
    log_a: float
    alpha: float  # exponent in student parameters: metric ~ N^-alpha
    beta: float  # exponent in teacher tokens: metric ~ D^-beta
    alpha_se: float
    beta_se: float
    t95: float  # the 95% interval is estimate +- t95 * se (inf with no degrees of freedom left)
    points: int

    def predict(self, params: float, tokens: float) -> float:
        return math.exp(self.log_a - self.alpha * math.log(params) - self.beta * math.log(tokens))

    def describe(self) -> str:
        def one(name: str, value: float, se: float) -> str:
            return f"{name} = {value:.3f} ± {se:.3f} (95%: [{value - self.t95 * se:.3f}, {value + self.t95 * se:.3f}])"

        exponents = f"{one('alpha', self.alpha, self.alpha_se)}, {one('beta', self.beta, self.beta_se)}"
        return f"{self.metric} ~ N^-alpha D^-beta over {self.points} points: {exponents}"


def load_sweep(path: str | Path) -> SweepConfig:
    """Read a sweep file (YAML); ``recipe`` is resolved relative to it."""
    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a YAML mapping with recipe, students and budgets (see docs/training.md, 'Scaling-law sweeps').")
    known = {f.name for f in dataclasses.fields(SweepConfig)}
    if unknown := set(data) - known:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}.")
    students = tuple(StudentSpec(**s) if isinstance(s, Mapping) else StudentSpec(path=str(s)) for s in data.get("students", ()))
    recipe = (path.parent / str(data.get("recipe", ""))).as_posix()
    try:
        return SweepConfig(**{**data, "recipe": recipe, "students": students, "budgets": tuple(int(b) for b in data.get("budgets", ()))})
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def run_sweep(config: SweepConfig, *, report: Report = print) -> tuple[list[dict[str, Any]], PowerLawFit, Path]:
    """Train and measure every grid point not measured yet (the sweep resumes), fit, plot; returns points, fit and the PNG."""
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    recipe = load_config(config.recipe)
    if recipe.teacher is None:
        raise ConfigError(f"{config.recipe}: a sweep distils from a white-box teacher; set teacher: PATH_OR_NAME.")
    heldout = _teacher_episodes(recipe, config.heldout_episodes)
    done = _measured(out / "sweep.jsonl")
    for index, spec in enumerate(config.students):
        student = spec.path or str(_tiny_student(spec, recipe.teacher, out / "students" / f"student-{index}", config.seed))
        for budget in config.budgets:
            if (index, budget) in done:
                continue
            point = _measure(config, recipe, index, student, budget, heldout)
            report(
                f"student {index} ({point['params']:,} parameters), budget {budget:,}: "
                f"success {point['success']:.1%}, held-out loss {point['heldout_loss']:.4f}"
            )
            with (out / "sweep.jsonl").open("a", encoding="utf-8") as file:
                file.write(json.dumps(point) + "\n")
            done[(index, budget)] = point
    points = [done[(i, b)] for i in range(len(config.students)) for b in config.budgets]
    fit = fit_power_law(points, config.metric)
    (out / "fit.json").write_text(json.dumps(dataclasses.asdict(fit), indent=2))
    return points, fit, plot_sweep(points, fit, out / "scaling.png")


def _measure(config: SweepConfig, recipe: TrainConfig, index: int, student: str, budget: int, heldout: Sequence[Episode]) -> dict[str, Any]:
    """Train student ``index`` on to ``budget`` teacher tokens (resuming its run) and measure it."""
    overrides = dict(
        student=student, run_name=f"sweep: student {index}", output_dir=str(Path(config.output_dir) / f"run-{index}"),
        max_labelled_tokens=budget, updates=1_000_000, eval_every=0, checkpoint_every=0,
    )  # fmt: skip
    result = train(load_config(config.recipe, **overrides), resume=True)
    trained = CausalLMPolicy.from_pretrained(str(result.checkpoint / "model"))
    return {
        "student": index,
        "params": sum(p.numel() for p in trained.model.parameters()),
        "budget": budget,
        "labelled_tokens": result.labelled_tokens,
        "success": result.final_eval.success_rate,
        "ci_low": result.final_eval.ci_low,
        "ci_high": result.final_eval.ci_high,
        "eval_episodes": result.final_eval.episodes,
        "heldout_loss": heldout_loss(trained, heldout),
        "run_id": result.run_id,
    }


def _measured(path: Path) -> dict[tuple[int, int], dict[str, Any]]:
    if not path.is_file():
        return {}
    points = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {(p["student"], p["budget"]): p for p in points}


def _tiny_student(spec: StudentSpec, teacher: str, directory: Path, seed: int) -> Path:
    if not (directory / "config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(teacher)
        build_tiny_model(tokenizer, directory, layers=spec.layers, hidden=spec.hidden, heads=spec.heads, seed=seed)
    return directory


def _teacher_episodes(recipe: TrainConfig, episodes: int) -> list[Episode]:
    """The teacher's greedy episodes of held-out tasks: the text the held-out loss scores."""
    teacher = CausalLMPolicy.from_pretrained(str(recipe.teacher))
    options = dict(recipe.suite_options)
    return evaluate(teacher, recipe.suite, suite_options=options, episodes=episodes, max_turns=recipe.max_turns, run_id="sweep-heldout")[1]


@torch.no_grad()
def heldout_loss(policy: CausalLMPolicy, episodes: Sequence[Episode]) -> float:
    """The policy's mean cross-entropy (nats per token) on the tokens the episodes' writer wrote."""
    usable = [e for e in episodes if e.num_tokens >= 2]
    if not usable:
        raise ConfigError("The held-out loss needs teacher episodes with at least two tokens; the teacher wrote none.")
    batch = make_batch(usable).to(policy.device)
    logits_BTV = policy.model(input_ids=batch.input_ids_BT, attention_mask=batch.attention_BT).logits.float()
    logq_BT = token_logprobs(logits_BTV, batch.targets_BT)
    return float(-logq_BT[batch.policy_BT].mean())


def fit_power_law(points: Sequence[Mapping[str, Any]], metric: str) -> PowerLawFit:
    """Least squares of log(metric) on [1, log N, log D]; the exponents are the negated slopes."""
    if metric == "success":
        floors = [0.5 / max(p["eval_episodes"], 1) for p in points]
        values = [max(1.0 - p["success"], floor) for p, floor in zip(points, floors, strict=True)]
    else:
        values = [p[metric] for p in points]
    X = np.array([[1.0, math.log(p["params"]), math.log(max(p["labelled_tokens"], 1))] for p in points])
    y = np.log(np.asarray(values, dtype=float))
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    dof = len(points) - X.shape[1]
    if dof > 0:
        sigma2 = float(((y - X @ coef) ** 2).sum()) / dof
        se = np.sqrt(np.diag(sigma2 * np.linalg.pinv(X.T @ X)))
        t95 = _T975[dof - 1] if dof <= len(_T975) else 1.96
    else:
        se, t95 = np.full(3, math.nan), math.inf
    return PowerLawFit(metric, float(coef[0]), -float(coef[1]), -float(coef[2]), float(se[1]), float(se[2]), t95, len(points))


def plot_sweep(points: Sequence[Mapping[str, Any]], fit: PowerLawFit, path: Path) -> Path:
    """Log-log: the metric against teacher tokens, one colour per student size, points and the fitted lines."""
    import matplotlib

    matplotlib.use("Agg")  # files only
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for student in sorted({p["student"] for p in points}):
        rows = [p for p in points if p["student"] == student]
        tokens = np.array([p["labelled_tokens"] for p in rows], dtype=float)
        measured = [max(1 - p["success"], 0.5 / p["eval_episodes"]) if fit.metric == "success" else p[fit.metric] for p in rows]
        line = axes.plot(tokens, measured, "o", label=f"student {student}: {rows[0]['params']:,} parameters")[0]
        grid = np.geomspace(tokens.min(), tokens.max(), 50)
        axes.plot(grid, [fit.predict(rows[0]["params"], t) for t in grid], "-", color=line.get_color())
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("teacher-labelled tokens D")
    axes.set_ylabel("held-out loss (nats/token)" if fit.metric == "heldout_loss" else "held-out failure rate")
    axes.set_title(f"fit: alpha = {fit.alpha:.2f} ± {fit.alpha_se:.2f}, beta = {fit.beta:.2f} ± {fit.beta_se:.2f}")
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
