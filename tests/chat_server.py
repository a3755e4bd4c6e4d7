"""A small OpenAI-compatible chat-completions server on loopback, for the black-box teacher's tests.

Why our own server beside ``transformers serve``: that one ignores ``logprobs``
and ``top_logprobs``, and cannot be told to fail. This one implements the
fields of ``POST /v1/chat/completions`` that opd uses (messages, max_tokens,
temperature, seed, logprobs, top_logprobs, usage), answers with a *judge*
function, and injects faults on request: HTTP 500s, 429s, replies slower than
the client's timeout, bodies that are not JSON, and judgements that do not
parse. It is a real HTTP server (uvicorn) that litellm reaches over TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

# A judge maps the request's messages to a score distribution and a rationale.
Judge = Callable[[list[dict[str, Any]]], tuple[dict[int, float], str]]

FAULTS = ("error", "rate_limit", "timeout", "garbage", "unparseable")


@dataclasses.dataclass
class ServerLog:
    requests: int = 0
    faults: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(FAULTS, 0))
    bodies: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def constant_judge(score: int = 7) -> Judge:
    return lambda messages: ({score: 1.0}, "constant")


def chat_app(
    judge: Judge,
    *,
    faults: Mapping[str, float] | None = None,
    seed: int = 0,
    slow_s: float = 5.0,
    speaker: Callable[[list[dict[str, Any]]], str] | None = None,
) -> tuple[FastAPI, ServerLog]:
    """The app and its log; ``faults`` maps a fault name to the fraction of requests that get it.

    With ``speaker``, the reply is ``speaker(messages)`` as plain text instead of a judgement (a simulated user's line).
    """
    unknown = set(faults or {}) - set(FAULTS)
    assert not unknown, f"unknown faults {unknown}"
    rng = np.random.default_rng(seed)
    log = ServerLog()
    app = FastAPI()
    lock = threading.Lock()

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Response:
        body = await request.json()
        with lock:
            log.requests += 1
            log.bodies.append(body)
            draw = float(rng.random())
        fault = _pick(faults or {}, draw)
        if fault:
            log.faults[fault] += 1
        if fault == "error":
            return JSONResponse({"error": {"message": "injected failure", "type": "server_error"}}, status_code=500)
        if fault == "rate_limit":
            return JSONResponse({"error": {"message": "slow down", "type": "rate_limit"}}, status_code=429)
        if fault == "timeout":
            await asyncio.sleep(slow_s)  # longer than the client's timeout: it must give up and retry
        if fault == "garbage":
            return PlainTextResponse("<html>502 upstream garbage", status_code=200)
        if speaker is not None:
            return JSONResponse(_completion(body, speaker(body["messages"]), {0: 1.0}, 0))
        distribution, rationale = judge(body["messages"])
        score = max(distribution, key=distribution.get)
        content = "I think it is fine." if fault == "unparseable" else json.dumps({"score": score, "rationale": rationale})
        return JSONResponse(_completion(body, content, distribution, score))

    return app, log


def _pick(faults: Mapping[str, float], draw: float) -> str | None:
    edge = 0.0
    for name, fraction in faults.items():
        edge += fraction
        if draw < edge:
            return name
    return None


def _completion(body: dict[str, Any], content: str, distribution: dict[int, float], score: int) -> dict[str, Any]:
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
    tokens = re.findall(r"\d+|\w+|\s+|[^\w\s]", content)
    choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
    if body.get("logprobs"):
        k = int(body.get("top_logprobs") or 0)
        content_logprobs, seen_key = [], False
        for token in tokens:
            is_score = seen_key and token == str(score)
            seen_key = seen_key or token == "score"
            if is_score:
                alternatives = sorted(distribution.items(), key=lambda kv: -kv[1])[:k]
                entry = {"token": token, "logprob": math.log(distribution[score]), "bytes": None}
                entry["top_logprobs"] = [{"token": str(s), "logprob": math.log(p), "bytes": None} for s, p in alternatives]
                seen_key = False
            else:
                entry = {
                    "token": token,
                    "logprob": 0.0,
                    "bytes": None,
                    "top_logprobs": [{"token": token, "logprob": 0.0, "bytes": None}][:k],
                }
            content_logprobs.append(entry)
        choice["logprobs"] = {"content": content_logprobs}
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [choice],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens), "total_tokens": prompt_tokens + len(tokens)},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free loopback port for the duration; yields the ``/v1`` base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
