"""The demo: on-policy distillation against off-policy SFT, end to end, on a CPU in minutes.

Everything is built here, from nothing but a suite with a scripted expert
(the built-in ``calculator`` by default; ``opd bootstrap SUITE`` runs steps 1-3's
model building for any registered suite; on one whose tools need a sandbox,
every episode borrows one from a pool opened from ``DemoConfig.sandbox``, as
``opd train`` does):

1. a word-level tokenizer fitted to the suite's texts;
2. a teacher (2 layers, d=128) trained by SFT on the scripted expert's
   demonstrations, which write commutative operands in either order (50/50),
   so the teacher's own behaviour is multimodal; cached on disk afterwards;
3. a capacity-limited student (2 layers, d=32: a tenth of the teacher's
   parameters) warmed up by SFT on teacher-generated episodes to about half the
   teacher's success, then, from that same start, at an equal budget of
   teacher-labelled tokens:
   (a) SFT on teacher-generated episodes (off-policy), and
   (b) OPD: token-level reverse KL to the white-box teacher on the student's own
       rollouts (on-policy).

A mode-covering student that cannot represent both modes of the teacher
averages them; reverse KL lets it commit to one, which is where on-policy
distillation pays off (the GKD and MiniLLM papers' capacity-gap effect).
Every episode lands in the trajectory store, and a PNG plots success against
teacher-labelled tokens.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from opd.agents.policy import CausalLMPolicy, SamplingConfig
from opd.agents.rollout import collect_episodes, expert_demonstration
from opd.agents.tiny import build_tiny_model, build_word_tokenizer, expert_texts
from opd.distill.build_cache import is_built, publish_build
from opd.distill.config import TrainConfig
from opd.distill.evaluate import EVAL_SEED_OFFSET, EvalResult, evaluate
from opd.distill.losses import LossConfig
from opd.distill.sft import sft
from opd.distill.train import TrainResult, train
from opd.envs import ToolEnv, make_suite
from opd.envs.lending import SandboxConfig, SandboxLender, borrowed, open_sandboxes, rounds
from opd.errors import ConfigError
from opd.trajectories import Episode

__all__ = ["DemoConfig", "DemoResult", "demo_models", "run_demo"]

Report = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    workdir: str = "runs/demo"  # models, checkpoints, metrics and the plot
    store: str = "runs/opd.db"  # where every episode goes
    suite: str = "calculator"  # any registered suite with a scripted expert (`opd bootstrap SUITE` builds its models)
    numbers: tuple[int, int] | None = None  # integers that are one token each; None: 0..suite_options["max_value"] (99)
    # Two dependent calls, numbers in [0, 99]: every number is one token of a small vocabulary.
    suite_options: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"difficulty": "easy", "prompt_style": "terse", "max_value": 99}
    )
    seed: int = 0  # seeds the models (teacher, student start); cached per recipe
    train_seed: int = 0  # seeds the two arms' rollouts and updates, so repeats share the models
    demonstrations: int = 2000  # scripted-expert episodes the teacher learns from
    teacher_steps: int = 800  # at most; stops early once the teacher reaches teacher_target
    teacher_target: float = 0.95
    warmup_steps: int = 1000  # at most; SFT on teacher episodes stops once the student reaches warmup_target
    warmup_target: float = 0.5  # the shared starting point: a student that half works
    budget_tokens: int = 100_000  # teacher-labelled tokens each arm may consume
    sft_budget_multiple: float = 1.0  # the SFT arm may consume this many times budget_tokens (10: let SFT plateau)
    episodes_per_update: int = 32
    opd_learning_rate: float = 1e-3
    sft_learning_rate: float = 1e-3
    temperature: float = 0.7  # student sampling during OPD (steadier than 1.0)
    eval_episodes: int = 100
    eval_every: int = 5
    sft_eval_every: int | None = None  # the SFT arm's cadence if not eval_every: sparser when it may spend many times the budget
    sandbox: SandboxConfig = SandboxConfig()  # where the tools run (a Docker pool for suites that need isolation), as in training

    @classmethod
    def quick(cls, **overrides: Any) -> DemoConfig:
        """A fifth of the token budget and half the evaluation, for CI; the models are the same (and shared via the cache)."""
        settings = {"budget_tokens": 20_000, "eval_episodes": 50, "eval_every": 4, **overrides}
        return cls(**settings)


@dataclasses.dataclass(frozen=True)
class DemoResult:
    teacher: EvalResult
    student_start: EvalResult
    arms: dict[str, TrainResult]  # "sft" and "opd"
    wall_seconds: dict[str, float]
    plot: Path | None


def run_demo(config: DemoConfig, *, report: Report = print) -> DemoResult:
    work = Path(config.workdir)
    options = dict(config.suite_options)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    teacher_dir, student_dir = demo_models(config, report=report)
    timings["teacher (build or load)"] = time.perf_counter() - started
    with _lending(config) as lender:
        teacher_eval, start_eval = (
            evaluate(CausalLMPolicy.from_pretrained(str(d)), config.suite, suite_options=options, episodes=config.eval_episodes,
                     sandboxes=lender)[0]
            for d in (teacher_dir, student_dir)
        )  # fmt: skip
    report(f"teacher success {teacher_eval.describe()}; student start {start_eval.describe()}")
    arms: dict[str, TrainResult] = {}
    for arm, loss, offpolicy, lr in (
        ("sft", LossConfig(kind="sft"), 1.0, config.sft_learning_rate),
        ("opd", LossConfig(kind="token", divergence="reverse_kl"), 0.0, config.opd_learning_rate),
    ):
        budget = int(config.budget_tokens * (config.sft_budget_multiple if arm == "sft" else 1.0))
        report(f"arm {arm}: training from the shared student start, budget {budget:,} teacher-labelled tokens")
        arm_started = time.perf_counter()
        arms[arm] = train(_arm_config(config, arm, loss, offpolicy, lr, student_dir, teacher_dir, budget), resume=False)
        timings[arm] = time.perf_counter() - arm_started
        report(f"arm {arm}: {arms[arm].final_eval.describe()} after {arms[arm].labelled_tokens:,} labelled tokens")
    plot = _plot(work / "success_vs_tokens.png", arms, teacher_eval, start_eval, config.suite)
    (work / "results.json").write_text(json.dumps(_summary(teacher_eval, start_eval, arms, timings), indent=2))
    return DemoResult(teacher_eval, start_eval, arms, timings, plot)


def demo_models(config: DemoConfig, *, report: Report = print) -> tuple[Path, Path]:
    """The demo's teacher and student-start directories, built on first use and cached per recipe."""
    if make_suite(config.suite, **config.suite_options).expert is None:
        raise ConfigError(f"Suite {config.suite!r} has no scripted expert to teach the teacher; give its ToolSuite an expert=.")
    torch.manual_seed(config.seed)
    models = Path(config.workdir) / "models" / _recipe_hash(config)
    if not is_built(models):
        report("building the tokenizer and training the teacher on scripted-expert demonstrations (cached afterwards)")
        with _lending(config) as lender:
            publish_build(models, lambda building: _build_models(config, building, lender, report))
    return models / "teacher", models / "student-start"


def _arm_config(
    config: DemoConfig, arm: str, loss: LossConfig, offpolicy: float, lr: float, student: Path, teacher: Path, budget: int
) -> TrainConfig:
    return TrainConfig(
        student=str(student),
        teacher=str(teacher),
        suite=config.suite,
        suite_options=dict(config.suite_options),
        run_name=f"demo: {arm}",
        store=config.store,
        output_dir=str(Path(config.workdir) / f"{arm}-seed{config.train_seed}"),
        seed=config.train_seed,
        updates=10_000,  # the token budget ends the arm
        max_labelled_tokens=budget,
        episodes_per_update=config.episodes_per_update,
        learning_rate=lr,
        loss=loss,
        offpolicy_fraction=offpolicy,
        teacher_k=16,
        sampling=SamplingConfig(temperature=config.temperature if arm == "opd" else 1.0, max_new_tokens=32),
        eval_every=(config.sft_eval_every or config.eval_every) if arm == "sft" else config.eval_every,
        eval_episodes=config.eval_episodes,
        sandbox=config.sandbox,
        checkpoint_every=0,
        tensorboard=False,
    )


@contextlib.contextmanager
def _lending(config: DemoConfig) -> Iterator[SandboxLender]:
    """One lender for a phase's episodes (a warm Docker pool for a suite that needs isolation), closed however it ends."""
    lender = open_sandboxes(config.sandbox, make_suite(config.suite, **config.suite_options))
    try:
        yield lender
    finally:
        lender.close()


def _build_models(config: DemoConfig, models: Path, lender: SandboxLender, report: Report) -> None:
    with borrowed(lender, 1) as (box,):  # the scripted expert plays one episode at a time
        env = ToolEnv(config.suite, sandbox=box, limits=lender.limits, **config.suite_options)
        texts = expert_texts(env, 300)
        low, high = config.numbers or (0, config.suite_options.get("max_value", 99))
        tokenizer = build_word_tokenizer(texts, models / "tokenizer", numbers=range(low, high + 1))
        build_tiny_model(tokenizer, models / "teacher", layers=2, hidden=128, heads=4, seed=config.seed)
        teacher = CausalLMPolicy.from_pretrained(str(models / "teacher"))
        demonstrations = [expert_demonstration(teacher.chat, env, s, run_id="demo-demonstrations") for s in range(config.demonstrations)]
        env.close()
    sft(teacher, demonstrations, steps=config.teacher_steps, learning_rate=3e-3, seed=config.seed,
        stop=_reached(teacher, config, config.teacher_target, lender, every=100, name="teacher", report=report))  # fmt: skip
    teacher.model.save_pretrained(models / "teacher")
    build_tiny_model(tokenizer, models / "student-start", layers=2, hidden=32, heads=2, seed=config.seed + 1)
    if config.warmup_steps > 0:  # 0: the student starts from its random initialisation
        student = CausalLMPolicy.from_pretrained(str(models / "student-start"))
        teacher_episodes = _teacher_episodes(teacher, config, lender, range(500_000, 500_512))
        sft(student, teacher_episodes, steps=config.warmup_steps, learning_rate=3e-3, seed=config.seed,
            stop=_reached(student, config, config.warmup_target, lender, every=50, name="student warm-up", report=report))  # fmt: skip
        student.model.save_pretrained(models / "student-start")


def _teacher_episodes(teacher: CausalLMPolicy, config: DemoConfig, lender: SandboxLender, seeds: range) -> list[Episode]:
    """The teacher's sampled episodes on ``seeds``, in rounds of as many as ``lender`` lends at once (one round on the local backend)."""
    episodes: list[Episode] = []
    for chunk in rounds(lender, len(seeds)):
        with borrowed(lender, len(chunk)) as boxes:
            envs = [ToolEnv(config.suite, sandbox=box, limits=lender.limits, **config.suite_options) for box in boxes]
            episodes += collect_episodes(
                teacher, envs, [seeds[i] for i in chunk], run_id="demo-warmup", sampling=SamplingConfig(max_new_tokens=32),
                generator=torch.Generator().manual_seed(config.seed + chunk.start),
            )  # fmt: skip
            for env in envs:
                env.close()
    return episodes


def _reached(
    policy: CausalLMPolicy, config: DemoConfig, target: float, lender: SandboxLender, *, every: int, name: str, report: Report
) -> Callable[[int], bool]:
    """A stop rule for ``sft``: evaluate every ``every`` steps on 50 held-out tasks; stop at ``target`` success."""

    def stop(step: int) -> bool:
        if step % every:
            return False
        result, _ = evaluate(
            policy, config.suite, suite_options=config.suite_options, episodes=50, seed_offset=EVAL_SEED_OFFSET // 2, sandboxes=lender
        )
        report(f"  {name} after {step} SFT steps: {result.describe()}")
        return result.success_rate >= target

    return stop


def _recipe_hash(config: DemoConfig) -> str:
    fields = ("suite_options", "seed", "demonstrations", "teacher_steps", "teacher_target", "warmup_steps", "warmup_target")
    recipe = {k: getattr(config, k) for k in fields}
    if config.suite != "calculator" or config.numbers is not None:  # so the calculator demo keeps its cached models
        recipe.update(suite=config.suite, numbers=config.numbers)
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def _summary(teacher: EvalResult, start: EvalResult, arms: dict[str, TrainResult], timings: dict[str, float]) -> dict[str, Any]:
    return {
        "teacher": dataclasses.asdict(teacher),
        "student_start": dataclasses.asdict(start),
        "arms": {
            name: {"final": dataclasses.asdict(r.final_eval), "labelled_tokens": r.labelled_tokens, "curve": r.curve}
            for name, r in arms.items()
        },
        "wall_seconds": timings,
    }


def _plot(path: Path, arms: dict[str, TrainResult], teacher: EvalResult, start: EvalResult, suite: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers and CI
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, label in (("sft", "off-policy SFT on teacher episodes"), ("opd", "OPD: token-level reverse KL")):
        curve = [(0, start.success_rate), *[(tokens, success) for _, tokens, _, success in arms[name].curve]]
        axes.plot([c[0] for c in curve], [c[1] for c in curve], marker="o", label=label)
    axes.axhline(teacher.success_rate, linestyle="--", color="grey", label="teacher")
    axes.set_xlabel("teacher-labelled tokens")
    axes.set_ylabel("greedy success on held-out tasks")
    axes.set_ylim(0, 1.02)
    axes.legend(loc="lower right")
    axes.set_title(f"{suite}: student (2 layers, d=32) distilled from teacher (2 layers, d=128)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
