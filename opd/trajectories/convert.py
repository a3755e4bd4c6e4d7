"""Records to table rows and back. Used only inside the store."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from opd.trajectories import arrays
from opd.trajectories.records import Annotations, Episode, EpisodeScore, Run, Step, StepCritique, StepRoute, TokenLogprobs


def aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run_to_row(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "name": run.name,
        "config": dict(run.config),
        "code_version": run.code_version,
        "created_at": run.created_at,
    }


def run_from_row(row: Mapping[str, Any]) -> Run:
    return Run(
        id=row["id"],
        name=row["name"],
        config=row["config"],
        code_version=row["code_version"],
        created_at=aware(row["created_at"]),
    )


def episode_to_row(episode: Episode) -> dict[str, Any]:
    return {
        "id": episode.id,
        "run_id": episode.run_id,
        "suite": episode.suite,
        "task_id": episode.task_id,
        "seed": episode.seed,
        "reward": float(episode.reward),
        "success": bool(episode.success),
        "termination": episode.termination,
        "failure_reason": episode.failure_reason,
        "num_steps": len(episode.steps),
        "num_tokens": episode.num_tokens,
        "env_options": dict(episode.env_options),
        "initial_messages": [dict(m) for m in episode.initial_messages],
        "policy_model": episode.policy_model,
        "teacher_models": list(episode.teacher_models),
        "tokenizer": episode.tokenizer,
        "chat_template_hash": episode.chat_template_hash,
        "sandbox": dict(episode.sandbox),
        "writer": dict(episode.writer),
        "created_at": episode.created_at,
        "parent_id": episode.parent_id,
        "branch_step": episode.branch_step,
    }


def step_to_row(episode_id: str, step: Step) -> dict[str, Any]:
    return {
        "episode_id": episode_id,
        "index": step.index,
        "action": step.action,
        "observation": step.observation,
        "num_tokens": len(step.token_ids),
        "token_ids": arrays.to_bytes(step.token_ids, arrays.TOKEN_IDS),
        "policy_mask": arrays.to_bytes(step.policy_mask, arrays.MASK),
        "logprobs": arrays.to_bytes(step.logprobs, arrays.LOGPROBS),
        "messages": [dict(m) for m in step.messages],
        "tool_calls": [dict(c) for c in step.tool_calls],
        "tool_results": [dict(r) for r in step.tool_results],
        "error_kind": step.error_kind,
        "reward": float(step.reward),
        "terminated": bool(step.terminated),
        "truncated": bool(step.truncated),
        "timings": dict(step.timings),
    }


def step_from_row(row: Mapping[str, Any]) -> Step:
    n = (row["num_tokens"],)
    return Step(
        index=row["index"],
        action=row["action"],
        observation=row["observation"],
        token_ids=arrays.from_bytes(row["token_ids"], arrays.TOKEN_IDS, n),
        policy_mask=arrays.from_bytes(row["policy_mask"], arrays.MASK, n).astype(bool),
        logprobs=arrays.from_bytes(row["logprobs"], arrays.LOGPROBS, n),
        messages=tuple(row["messages"]),
        tool_calls=tuple(row["tool_calls"]),
        tool_results=tuple(row["tool_results"]),
        error_kind=row["error_kind"],
        reward=row["reward"],
        terminated=row["terminated"],
        truncated=row["truncated"],
        timings=row["timings"],
    )


def annotation_rows(episode_id: str, annotations: Annotations) -> dict[str, list[dict[str, Any]]]:
    """Rows per table name for every annotation in ``annotations``."""
    return {
        "token_logprobs": [
            {
                "episode_id": episode_id,
                "step_index": a.step_index,
                "teacher": a.teacher,
                "num_tokens": a.token_ids.shape[0],
                "k": a.k,
                "token_ids": arrays.to_bytes(a.token_ids, arrays.TOKEN_IDS),
                "logprobs": arrays.to_bytes(a.logprobs, arrays.TOPK_LOGPROBS),
                "tail_mass": arrays.to_bytes(a.tail_mass, arrays.TAIL_MASS),
            }
            for a in annotations.token_logprobs
        ],
        "critiques": [{"episode_id": episode_id, **dataclasses.asdict(c)} for c in annotations.critiques],
        "episode_scores": [{"episode_id": episode_id, **dataclasses.asdict(s)} for s in annotations.episode_scores],
        "step_routes": [{"episode_id": episode_id, **dataclasses.asdict(r)} for r in annotations.routes],
    }


def token_logprobs_from_row(row: Mapping[str, Any]) -> TokenLogprobs:
    shape = (row["num_tokens"], row["k"])
    return TokenLogprobs(
        teacher=row["teacher"],
        step_index=row["step_index"],
        token_ids=arrays.from_bytes(row["token_ids"], arrays.TOKEN_IDS, shape),
        logprobs=arrays.from_bytes(row["logprobs"], arrays.TOPK_LOGPROBS, shape),
        tail_mass=arrays.from_bytes(row["tail_mass"], arrays.TAIL_MASS, shape[:1]),
    )


def critique_from_row(row: Mapping[str, Any]) -> StepCritique:
    return StepCritique(
        row["teacher"],
        row["step_index"],
        row["score"],
        row["critique"],
        row["corrected_action"],
        row["uncertainty"],
        row["error"],
        row["usage"],
    )


def step_route_from_row(row: Mapping[str, Any]) -> StepRoute:
    return StepRoute(**{f.name: row[f.name] for f in dataclasses.fields(StepRoute)})


def episode_score_from_row(row: Mapping[str, Any]) -> EpisodeScore:
    return EpisodeScore(row["teacher"], row["reward"], row["detail"])


def episode_from_row(row: Mapping[str, Any], steps: Sequence[Step], annotations: Annotations) -> Episode:
    return Episode(
        id=row["id"],
        run_id=row["run_id"],
        suite=row["suite"],
        task_id=row["task_id"],
        seed=row["seed"],
        steps=tuple(sorted(steps, key=lambda s: s.index)),
        reward=row["reward"],
        success=row["success"],
        termination=row["termination"],
        failure_reason=row["failure_reason"],
        env_options=row["env_options"],
        initial_messages=tuple(row["initial_messages"]),
        policy_model=row["policy_model"],
        teacher_models=tuple(row["teacher_models"]),
        tokenizer=row["tokenizer"],
        chat_template_hash=row["chat_template_hash"],
        sandbox=row["sandbox"],
        writer=row["writer"],
        annotations=annotations,
        created_at=aware(row["created_at"]),
        parent_id=row["parent_id"],
        branch_step=row["branch_step"],
    )


def sort_annotations(annotations: Annotations) -> Annotations:
    """Annotations in a canonical order (step, teacher), so equal sets compare equal."""
    return Annotations(
        token_logprobs=tuple(sorted(annotations.token_logprobs, key=lambda a: (a.step_index, a.teacher))),
        critiques=tuple(sorted(annotations.critiques, key=lambda a: (a.step_index, a.teacher))),
        episode_scores=tuple(sorted(annotations.episode_scores, key=lambda a: a.teacher)),
        routes=tuple(sorted(annotations.routes, key=lambda a: (a.step_index, a.teacher))),
    )
