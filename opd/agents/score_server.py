"""opd's reference teacher server (``opd serve-teacher MODEL``): the scoring contract over HTTP.

``POST /score`` takes a batch of requests (token ids, the first position to
score, k, optional candidate ids per position) and answers each with the
fields of ``opd.agents.scoring.ScoreResult``: the log-prob of the token at each
position, the top-k ids and log-probs, the exact tail mass and the candidates'
log-probs. ``GET /info`` names the model, its vocabulary size and the largest
k served, so a client can check what it talks to. One forward pass serves a
whole batch; requests from several clients are served one batch at a time
(the model is not thread-safe), which is what a single CPU or GPU can do anyway.
"""

from __future__ import annotations

import threading

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from opd.agents.scoring import Scorer, ScoreRequest
from opd.errors import ConfigError

__all__ = ["create_score_app"]


class ScoreRequestBody(BaseModel):
    token_ids: list[int] = Field(min_length=1)
    start: int = Field(ge=1)  # first position scored
    k: int = Field(ge=1)
    candidates: list[list[int]] | None = None  # per scored position


class ScoreBatch(BaseModel):
    requests: list[ScoreRequestBody] = Field(min_length=1)


def create_score_app(scorer: Scorer, *, name: str, vocab_size: int, max_k: int = 1024) -> FastAPI:
    """The FastAPI app serving ``scorer`` (e.g. a ``LocalScorer``: a transformers model in this process) as ``name``."""
    app = FastAPI(title=f"opd teacher: {name}")
    lock = threading.Lock()

    @app.get("/info")
    def info() -> dict:
        return {"model": name, "vocab_size": vocab_size, "max_k": max_k, "api": "opd-score/1"}

    @app.post("/score")
    def score(batch: ScoreBatch) -> dict:
        try:
            requests = [_checked(body, vocab_size, max_k) for body in batch.requests]
        except ConfigError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        with lock:
            results = scorer.score(requests)
        return {"results": [r.to_json() for r in results]}

    return app


def _checked(body: ScoreRequestBody, vocab_size: int, max_k: int) -> ScoreRequest:
    if body.k > max_k:
        raise ConfigError(f"k={body.k} exceeds this server's max_k={max_k}; ask for fewer or restart it with --max-k {body.k}.")
    ids = [*body.token_ids, *(c for row in body.candidates or [] for c in row)]
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:
        raise ConfigError(f"token ids must lie in [0, {vocab_size}) for this model; got {bad[:5]}. Is the client using another tokenizer?")
    candidates = tuple(tuple(row) for row in body.candidates) if body.candidates is not None else None
    return ScoreRequest(tuple(body.token_ids), body.start, body.k, candidates)
