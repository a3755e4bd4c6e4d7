"""JSON for the pages' scripts: an episode's steps a chunk at a time, and the lazily counted size of the episodes table.

Steps travel as JSON and the page's script inserts every string with
``textContent``, so episode text is never parsed as HTML on its way in either.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from opd.trajectories.conversations import follow_up, turn_verdict
from opd.trajectories.inspection import step_divergence
from opd.trajectories.records import Annotations, Step
from opd.trajectories.store import EpisodeFilter
from opd.trajectories.viewer.filters import parse_filters
from opd.trajectories.viewer.pages import store_of
from opd.trajectories.viewer.tokens import TokenDecoder, TokenView, load_decoder, token_views

router = APIRouter(prefix="/api")

MAX_STEPS = 100  # steps per request at most: a chunk renders without holding up the page
COUNT_AT_MOST = 100_000  # counting stops here; the page then says "100,000+"


@router.get("/episodes/{episode_id}/steps")
def episode_steps(
    request: Request, episode_id: str, start: int = Query(0, ge=0), stop: int = Query(50, ge=0), teacher: str = ""
) -> JSONResponse:
    store = store_of(request)
    found = store.list_episodes(EpisodeFilter(episode_id=episode_id), limit=1)
    if not found:
        raise HTTPException(404, f"No episode {episode_id!r} in this store.")
    decoder = load_decoder(found[0].tokenizer) or load_decoder(_beside_store(found[0].tokenizer, request))
    steps, annotations = store.get_steps(episode_id, start, min(stop, start + MAX_STEPS))
    # Plain JSON types already: JSONResponse skips FastAPI's generic encoder, which costs more than building the steps.
    return JSONResponse({"steps": [_step(s, annotations, teacher, decoder) for s in steps], "decoded": decoder is not None})


def _beside_store(tokenizer: str, request: Request) -> str:
    """A relative tokenizer path (written before paths were recorded absolute), looked up from the store's directory
    and its parents: training usually ran in one of them (``runs/opd.db`` beside ``runs/demo/models/...``)."""
    location = request.app.state.stores.location
    if not tokenizer or Path(tokenizer).is_absolute() or "://" in location:
        return ""
    directory = Path(location).resolve().parent
    found = next((base / tokenizer for base in (directory, *directory.parents) if (base / tokenizer).exists()), None)
    return str(found) if found else ""


def _step(step: Step, annotations: Annotations, teacher: str, decoder: TokenDecoder | None) -> dict[str, Any]:
    annotation = next((a for a in annotations.token_logprobs if a.step_index == step.index and a.teacher == teacher), None)
    divergence = step_divergence(step, annotation) if annotation is not None and step.num_policy_tokens else None
    return {
        "index": step.index,
        "action": step.action,
        "observation": step.observation,
        "follow_up": follow_up(step),  # [turn, message] when the user posed their next turn here
        "turn_verdict": turn_verdict(step),  # the grade of the user turn this final answer closed
        "tool_calls": list(step.tool_calls),
        "tool_results": list(step.tool_results),
        "error_kind": step.error_kind,
        "reward": step.reward,
        "terminated": step.terminated,
        "truncated": step.truncated,
        "tokens": [_token(t) for t in token_views(step, annotation, decoder)],
        "critiques": [dataclasses.asdict(c) for c in annotations.critiques if c.step_index == step.index],
        "divergence": None
        if divergence is None
        else {"reverse_kl": divergence.reverse_kl_estimate, "top1": divergence.top1_agreement, "outside_topk": divergence.outside_topk},
    }


def _token(t: TokenView) -> dict[str, Any]:
    return {f.name: getattr(t, f.name) for f in dataclasses.fields(TokenView)}


@router.get("/count")
def count(request: Request) -> dict[str, Any]:
    """How many episodes match the filters in the query string (the episodes table's)."""
    total = store_of(request).count_episodes(parse_filters(request.query_params).where, at_most=COUNT_AT_MOST + 1)
    return {"count": min(total, COUNT_AT_MOST), "more": total > COUNT_AT_MOST}
