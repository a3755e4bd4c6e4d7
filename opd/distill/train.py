"""The on-policy distillation loop, one readable function over a frozen config.

Each update: the student plays ``episodes_per_update`` tasks (or, for a
fraction ``offpolicy_fraction`` of updates, the teacher does, as in GKD); the
teacher scores exactly the tokens played; the episodes and annotations go to
the trajectory store; the student takes one optimizer step on the configured
loss. Evaluation on held-out tasks and checkpoints happen every few updates.

Resuming from a checkpoint continues exactly: all randomness of update ``u``
(task seeds, sampling, the on/off-policy draw) derives from ``(seed, u)``.
An update whose loss or gradient is not finite is skipped and counted.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from opd import __version__
from opd.agents.critic import BlackBoxTeacher
from opd.agents.engines import BuiltTeacher, build_teacher, rollout_engine
from opd.agents.policy import CausalLMPolicy
from opd.agents.preflight import preflight
from opd.agents.protocols import Policy, Teacher, WeightReceiver
from opd.agents.rollout import collect_episodes
from opd.agents.routing import RoutedTeacher, route_metrics
from opd.agents.self_teacher import SelfTeacher
from opd.distill.batch import make_batch
from opd.distill.checkpoint import TrainerState, latest_checkpoint, load_checkpoint, save_checkpoint
from opd.distill.config import TrainConfig, recorded_config
from opd.distill.distributed import DistributedContext, distributed
from opd.distill.evaluate import EvalResult, evaluate
from opd.distill.evaluation_runs import eval_settings, evaluation_run, store_evaluation
from opd.distill.guard import Guard
from opd.distill.interrupt import StopRequest, TrainingInterrupted, stop_on_signals
from opd.distill.losses import LossTotals, loss_totals
from opd.distill.metrics import MetricsWriter
from opd.distill.offline import StoreReplay
from opd.distill.prefix import PrefixPolicy, hand_over, prefix_steps
from opd.distill.resume import starting_checkpoint
from opd.distill.student_loss import student_loss
from opd.distill.suites import task_splits
from opd.envs import ToolEnv, make_call_format, make_suite
from opd.envs.lending import SandboxLender, borrowed, open_sandboxes, rounds
from opd.errors import ConfigError
from opd.trajectories import Annotations, Episode, EpisodeFilter, Run, TrajectoryStore, critique_ledger

__all__ = ["TrainResult", "train"]

logger = logging.getLogger(__name__)

Progress = Callable[[int, dict[str, Any]], None]  # (update, metrics) after every update


@dataclasses.dataclass(frozen=True)
class TrainResult:
    run_id: str
    updates: int
    labelled_tokens: int
    skipped_updates: int
    final_eval: EvalResult
    checkpoint: Path
    curve: tuple[tuple[int, int, float, float], ...]  # (update, labelled tokens, wall seconds, eval success) at every evaluation
    critique_usage: Mapping[str, float | None] | None = None  # the run's cost ledger when a critic graded steps


def train(
    config: TrainConfig,
    *,
    resume: bool = True,
    force: bool = False,
    progress: Progress | None = None,
    origin: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Run (or resume) the loop described by ``config``; returns the final evaluation and checkpoint.

    ``resume=False`` archives what ``output_dir`` holds and starts over; resuming refuses a
    checkpoint written under a config that differs in a setting that matters unless ``force``
    (see ``opd.distill.resume``). ``origin`` (e.g. the config file and command-line overrides)
    is recorded in the run. On SIGINT/SIGTERM the update in flight finishes, a checkpoint is
    written and :class:`~opd.distill.interrupt.TrainingInterrupted` is raised.

    Under ``torchrun`` every process runs this with its share of each update's
    episodes (see ``opd.distill.distributed``); rank 0 evaluates, checkpoints and
    writes metrics, and every rank returns the same result.
    """
    config.suites.load()  # user suites, imported on every rank
    recorded = {**recorded_config(config), **({"origin": dict(origin)} if origin else {})}
    with distributed(config.device) as ctx, stop_on_signals() as stop:
        previous = ctx.main_only(lambda: starting_checkpoint(config.output_dir, recorded, resume=resume, force=force))
        # One sandbox lender per process, open for the whole run and closed (containers removed) on every way out.
        sandboxes = open_sandboxes(config.sandbox, make_suite(config.suite, **config.suite_options), share=(ctx.rank, ctx.world_size))
        try:
            return _train(config, ctx, sandboxes, previous=previous, recorded=recorded, stop=stop, progress=progress)
        finally:
            sandboxes.close()


def _train(
    config: TrainConfig,
    ctx: DistributedContext,
    sandboxes: SandboxLender,
    *,
    previous: Path | None,
    recorded: dict[str, Any],
    stop: StopRequest,
    progress: Progress | None,
) -> TrainResult:
    if ctx.world_size > 1 and config.inference.student.backend != "hf":
        raise ConfigError("inference.student.backend vllm runs one engine per run; under torchrun keep backend: hf.")
    output = Path(config.output_dir)
    checkpoints = output / "checkpoints"
    student = CausalLMPolicy.from_pretrained(str(previous / "model") if previous else config.student, device=str(ctx.device))
    student.name = config.student
    teacher_device = config.teacher_device or str(ctx.device)
    built = None
    if config.teacher:
        plays = config.offpolicy_fraction > 0
        built = build_teacher(
            config.teacher, config.inference.teacher, k=config.teacher_k, device=teacher_device, student=student.model, plays_episodes=plays
        )
    teacher, teacher_policy = (built.teacher, built.policy) if built else (None, None)
    for policy in (student, teacher_policy):
        if policy is not None and config.tool_call_format != "auto":  # envs adopt the format of the policy that plays
            policy.chat.call_format = make_call_format(config.tool_call_format)
    if built is not None and ctx.is_main:
        _preflight(student, built, config, sandboxes)
    self_teacher = SelfTeacher(student, config.self_teacher, k=config.teacher_k, sandboxes=sandboxes) if config.self_teacher else None
    logits_source: Teacher | None = teacher or self_teacher  # who gives token log-probs: a white-box teacher or the student itself
    if config.routing is not None:  # or several white-box teachers, chosen per step
        logits_source = RoutedTeacher.load(teacher, config.routing, k=config.teacher_k, device=teacher_device)
    critic = BlackBoxTeacher(config.critic) if config.critic else None
    model = ctx.wrap(student.model)  # gradients are all-reduced through this; rollouts use student.model directly
    optimizer = torch.optim.AdamW(student.model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    state = ctx.broadcast(load_checkpoint(previous, optimizer) if previous else TrainerState(0, 0, 0, Run().id, 0.0))  # one run id
    share = ctx.shard(config.episodes_per_update)
    metrics = MetricsWriter(output, tensorboard=config.tensorboard, resumed_at=state.update) if ctx.is_main else None
    curve: list[tuple[int, int, float, float]] = []
    last_eval: tuple[int, EvalResult] | None = None

    splits = task_splits(config.suite, config.suite_options, config.suites)

    def evaluate_student() -> EvalResult:
        options, episodes = splits.options(config.suite_options, "eval"), config.eval_episodes
        return evaluate(student, config.suite, suite_options=options, episodes=episodes, max_turns=config.max_turns, sandboxes=sandboxes)[0]

    guard = _start_guard(config, ctx, state.update, evaluate_student, student, optimizer)
    ctx.main_only(lambda: TrajectoryStore(config.store).close())  # rank 0 creates or migrates the store before the others open it
    with TrajectoryStore(config.store) as store, rollout_engine(config.inference.student, student) as rollout_policy:
        run_config = {**recorded, "world_size": ctx.world_size, "splits": dataclasses.asdict(splits)}
        run = Run(id=state.run_id, name=config.run_name, config=run_config, code_version=__version__)
        ctx.main_only(lambda: store.add_run(run))  # before any rank writes an episode of it
        started = time.perf_counter() - state.wall_seconds
        source = TrajectoryStore(config.replay.store) if config.replay and config.replay.store else store
        replay = StoreReplay(config.replay, source, config.episodes_per_update, ctx) if config.replay else None
        fresh = replay.fresh if replay else share
        interrupted, saved = False, previous
        for update in range(state.update, config.updates):
            if config.max_labelled_tokens is not None and state.labelled_tokens >= config.max_labelled_tokens:
                break
            rng = np.random.default_rng([config.seed, update])
            offpolicy = teacher_policy is not None and rng.random() < config.offpolicy_fraction
            handed = prefix_steps(config.teacher_prefix, rng) if teacher_policy is not None and not offpolicy else 0
            player, train_options = teacher_policy if offpolicy else rollout_policy, splits.options(config.suite_options, "train")
            if handed and config.teacher_prefix is not None and teacher_policy is not None:
                player = PrefixPolicy(student, teacher_policy, handed, config.teacher_prefix.temperature)  # in process, also beside vLLM
            played = _rollout(player, config, update, state.run_id, fresh, sandboxes, train_options) if len(fresh) else []
            played, prefix_tokens = hand_over(played, handed)  # the teacher's first steps become context
            if replay is not None and replay.restarts:  # and episodes the student plays on from stored states
                played += replay.restart(update, student, config.sampling, seed=config.seed, run_id=state.run_id)
            failed = [e for e in played if e.num_tokens < 2]  # a sandbox failed before the policy wrote anything
            episodes = [e for e in played if e.num_tokens >= 2]
            # Teacher-played episodes are scored too when the loss compares distributions (GKD's mixing: the divergence
            # on the teacher's own sequences); an SFT loss needs no scores on any episode.
            scored_by_logits = logits_source is not None and config.loss.needs_logits
            if scored_by_logits:
                episodes = _annotated(episodes, logits_source.name, logits_source.annotate(episodes))
            if critic is not None and not offpolicy:
                episodes = _annotated(episodes, critic.name, critic.annotate(episodes))
            store.write_episodes([*episodes, *failed])
            annotators = [a for a, needed in ((logits_source, config.loss.needs_logits), (critic, True)) if a is not None and needed]
            replayed = replay.take(update, annotators) if replay and not replay.restarts else []
            pool = [*episodes, *replayed]
            trained_on = best_successes(pool) if config.keep == "best_success" else pool
            values = _update(student, model, optimizer, trained_on, config, logits_source, critic, ctx, replay)
            if self_teacher is not None and not values["skipped"]:
                self_teacher.update()
            if isinstance(rollout_policy, WeightReceiver) and not values["skipped"]:
                values["rollout/weight_push_s"] = rollout_policy.push_weights(student.model)  # the next rollout is on these weights
            # Teacher-labelled tokens: student tokens the teacher scored, or tokens the teacher wrote itself.
            labelled = sum(int(e.policy_mask.sum()) for e in episodes) if (teacher and scored_by_logits) or offpolicy else 0
            labelled += prefix_tokens  # tokens the teacher wrote as an episode's first steps
            counts = ctx.sum_metrics({"labelled": labelled, "rollout/failed": len(failed), **_critic_counts(episodes, critic)})
            state = TrainerState(
                update + 1,
                state.labelled_tokens + int(counts["labelled"]),
                state.skipped_updates + int(values["skipped"]),
                state.run_id,
                time.perf_counter() - started,
            )
            values = {**values, **{k: v for k, v in counts.items() if k != "labelled"}}
            values.update(
                _rollout_metrics(played, ctx),
                **(replay.metrics() if replay else {}),
                offpolicy=float(offpolicy),
                teacher_prefix_steps=handed,
                labelled_tokens=state.labelled_tokens,
                wall_seconds=state.wall_seconds,
            )
            if isinstance(logits_source, RoutedTeacher):
                values.update(route_metrics(ctx.sum_metrics(logits_source.take_counts())))
            values.update(ctx.comm.take())
            if guard is not None:
                values.update(guard.after_update(update + 1, values["loss"]))
            budget_spent = config.max_labelled_tokens is not None and state.labelled_tokens >= config.max_labelled_tokens
            if _due(update + 1, config.eval_every, config.updates) or budget_spent:
                result = ctx.main_only(evaluate_student)
                values.update({"eval/success": result.success_rate, "eval/ci_low": result.ci_low, "eval/ci_high": result.ci_high})
                curve.append((update + 1, state.labelled_tokens, state.wall_seconds, result.success_rate))
                last_eval = (update + 1, result)
                if guard is not None:
                    values.update(guard.after_eval(update + 1, result, student.model, student.tokenizer, optimizer))
                    if values["guard/rolled_back"] and guard.best is not None:  # the student now holds the best weights
                        last_eval = (update + 1, guard.best[1])
            if metrics is not None:
                metrics.write(update + 1, values)
            if progress is not None and ctx.is_main:
                progress(update + 1, values)
            interrupted = bool(ctx.sum_metrics({"stop": float(stop.requested)})["stop"])  # every rank stops at the same update
            stopping = guard is not None and guard.stop  # the guard ends the run (a regression under action: stop)
            if _due(update + 1, config.checkpoint_every, config.updates) or budget_spent or interrupted or stopping:
                saved = ctx.main_only(
                    functools.partial(save_checkpoint, checkpoints, student.model, student.tokenizer, optimizer, state, recorded)
                )
            if interrupted or stopping:
                break
        if source is not store:
            source.close()
        usage = ctx.main_only(lambda: store.critique_usage(EpisodeFilter(run_id=state.run_id))) if critic is not None else None
    if metrics is not None:
        metrics.close()
    if critic is not None:
        critic.close()
    if interrupted:
        raise TrainingInterrupted(stop.signal_name or "a signal on another rank", state.update, saved)
    final = last_eval[1] if last_eval is not None and last_eval[0] == state.update else ctx.main_only(evaluate_student)
    last = ctx.main_only(
        lambda: latest_checkpoint(checkpoints) or save_checkpoint(checkpoints, student.model, student.tokenizer, optimizer, state, recorded)
    )
    settings = {**eval_settings(config), "options": splits.options(config.suite_options, "eval")}  # the split it was measured on
    stored = evaluation_run(final, model=str(last), label=config.run_name, evaluates_run=state.run_id, **settings)
    ctx.main_only(lambda: store_evaluation(config.store, stored))  # shown beside the run's rollout success (`opd runs list`, viewer)
    return TrainResult(state.run_id, state.update, state.labelled_tokens, state.skipped_updates, final, last, tuple(curve), usage)


def _start_guard(
    config: TrainConfig,
    ctx: DistributedContext,
    update: int,
    evaluate_student: Callable[[], EvalResult],
    student: CausalLMPolicy,
    optimizer: torch.optim.Optimizer,
) -> Guard | None:
    """The run's regression guard (None when off), with the student's start evaluated as the first bar on a fresh run."""
    if not config.guard.enabled:
        return None
    guard = Guard(config.guard, Path(config.output_dir) / "best", is_main=ctx.is_main)
    if update > 0:  # a resumed run keeps its bar
        guard.resume()
    if update == 0 and guard.best is None and config.guard.eval_at_start:
        start = ctx.main_only(evaluate_student)
        logger.info("Guard: the student's start: %s", start.describe())
        guard.after_eval(0, start, student.model, student.tokenizer, optimizer)
    return guard


def _preflight(student: CausalLMPolicy, teacher: BuiltTeacher, config: TrainConfig, sandboxes: SandboxLender) -> None:
    """Warn before training if the teacher would score tokens the student does not mean."""
    with borrowed(sandboxes, 1) as (box,):
        env = ToolEnv(config.suite, max_turns=config.max_turns, sandbox=box, limits=sandboxes.limits, **config.suite_options)
        texts = [env.reset(seed=seed)[0] for seed in range(8)]
        env.close()
    report = preflight(student.tokenizer, teacher.tokenizer, scorer=teacher.scorer, texts=texts)  # through the path training uses
    if not report.ok:
        logger.warning("Preflight: %s", report.describe())


def _rollout(
    policy: Policy, config: TrainConfig, update: int, run_id: str, share: range, sandboxes: SandboxLender, options: dict[str, Any]
) -> list[Episode]:
    """This rank's ``share`` of the update's episodes; episode ``i`` gets the same seeds whichever rank plays it.

    They play in rounds of as many as ``sandboxes`` lends at once; an episode's tokens depend only on its own seeds.
    """
    n, samples = config.episodes_per_update, config.samples_per_task
    # Training seeds stay below the evaluation range; with samples_per_task > 1 each task is played that many times.
    draws = [((update * n + i) % 1_000_000_000, j) for i in share for j in range(samples)]
    # One generator per episode, from (seed, episode seed, sample): its tokens do not depend on the episodes batched with it.
    sampling_seeds = [int(np.random.SeedSequence([config.seed, s, *([j] if j else [])]).generate_state(1)[0]) for s, j in draws]
    played: list[Episode] = []
    for chunk in rounds(sandboxes, len(draws)):
        seeds = [draws[i][0] for i in chunk]
        generators = [torch.Generator(policy.device).manual_seed(sampling_seeds[i]) for i in chunk]
        with borrowed(sandboxes, len(chunk)) as boxes:
            envs = [ToolEnv(config.suite, max_turns=config.max_turns, sandbox=b, limits=sandboxes.limits, **options) for b in boxes]
            try:
                played += collect_episodes(
                    policy, envs, seeds, run_id=run_id, sampling=config.sampling, generator=generators, suite_options=options
                )
            finally:
                for env in envs:
                    env.close()
    return played


def _update(
    student: CausalLMPolicy,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    episodes: list[Episode],
    config: TrainConfig,
    logits_source: Teacher | None,
    critic: BlackBoxTeacher | None,
    ctx: DistributedContext,
    replay: StoreReplay | None = None,
) -> dict[str, Any]:
    """One optimizer step on the global batch (every rank's ``episodes``); skipped everywhere if the loss or gradient is not finite.

    ``model`` is ``student.model`` as ``ctx.wrap`` returned it. Each rank's loss is its shard's
    share of the global loss (means divide by totals summed over ranks), so the reported
    loss is the sum over ranks and the gradient is the global one (see ``opd.distill.distributed``).
    """
    batch = (
        make_batch(
            episodes,
            teacher=logits_source.name if logits_source is not None and config.loss.needs_logits else None,
            critic=critic.name if critic is not None and config.loss.needs_critiques else None,
            score_range=(config.critic.score_min, config.critic.score_max) if config.critic else (0.0, 1.0),
        ).to(student.device)
        if episodes
        else None
    )
    if batch is not None and replay is not None:
        batch = replay.weigh(batch)
    totals = LossTotals(ctx.sum_metrics(loss_totals(batch, config.loss).values if batch else {}))
    if totals["policy_tokens"] == 0:
        return dict(_NOTHING_TO_LEARN)
    model.train()
    optimizer.zero_grad(set_to_none=True)
    if batch is None:  # every episode of this rank's share failed: it still joins the gradient all-reduce, adding nothing
        loss = model(input_ids=torch.zeros((1, 1), dtype=torch.long, device=student.device)).logits.sum() * 0.0
        values = ctx.sum_metrics({"policy_tokens": 0})
    else:
        result = student_loss(model, batch, config.loss, totals)  # token/step losses never build (B, T, V) logits
        loss, values = result.loss, ctx.sum_metrics({**result.metrics, "policy_tokens": batch.policy_tokens})
    if not math.isfinite(values["loss"]):
        logger.warning("Skipping an update: the loss is %s", values["loss"])
        return {**values, "skipped": True, "grad_norm": math.nan}
    (loss * ctx.world_size).backward()  # DDP averages over ranks; the sum of the ranks' shares is the loss
    grad_norm = torch.nn.utils.clip_grad_norm_(student.model.parameters(), config.max_grad_norm)  # the same on every rank
    if not torch.isfinite(grad_norm):
        optimizer.zero_grad(set_to_none=True)
        logger.warning("Skipping an update: the gradient norm is %s", grad_norm.item())
        return {**values, "skipped": True, "grad_norm": math.nan}
    optimizer.step()
    return {**values, "skipped": False, "grad_norm": float(grad_norm)}


def best_successes(episodes: list[Episode]) -> list[Episode]:
    """Self-imitation's data: per task (seed), its verified success with the highest reward; tasks never solved give none."""
    best: dict[int | None, Episode] = {}
    for episode in episodes:
        if episode.success and (episode.seed not in best or episode.reward > best[episode.seed].reward):
            best[episode.seed] = episode
    return list(best.values())


def _annotated(episodes: list[Episode], teacher: str, annotations: list[Annotations]) -> list[Episode]:
    """``episodes`` with ``annotations`` added to what they already carry, and ``teacher`` among their teachers."""
    return [
        dataclasses.replace(
            e,
            annotations=Annotations(
                (*e.annotations.token_logprobs, *a.token_logprobs),
                (*e.annotations.critiques, *a.critiques),
                (*e.annotations.episode_scores, *a.episode_scores),
                (*e.annotations.routes, *a.routes),
            ),
            teacher_models=(*e.teacher_models, teacher),
        )
        for e, a in zip(episodes, annotations, strict=True)
    ]


def _critic_counts(episodes: list[Episode], critic: BlackBoxTeacher | None) -> dict[str, float]:
    """This rank's critiques of the update: steps graded, left unannotated, and what they cost (summed over ranks by the caller)."""
    if critic is None:
        return {}
    ledger = critique_ledger(c for e in episodes for c in e.annotations.critiques if c.teacher == critic.name)
    return {f"critic/{key}": math.nan if value is None else value for key, value in ledger.items()}


_NOTHING_TO_LEARN: dict[str, Any] = {"loss": math.nan, "skipped": True, "grad_norm": math.nan, "policy_tokens": 0}


def _rollout_metrics(episodes: list[Episode], ctx: DistributedContext) -> dict[str, float]:
    """Means over the whole update's episodes, every rank's."""
    sums = ctx.sum_metrics(
        {
            "episodes": len(episodes),
            "rollout/success": sum(e.success for e in episodes),
            "rollout/reward": sum(e.reward for e in episodes),
            "rollout/steps": sum(len(e.steps) for e in episodes),
            "rollout/errors": sum(sum(s.error_kind is not None for s in e.steps) for e in episodes),
        }
    )
    count = sums.pop("episodes")
    return {name: value / count for name, value in sums.items()} if count else {}  # none when every episode came from the store


def _due(done: int, every: int, total: int) -> bool:
    return done == total or (every > 0 and done % every == 0)
