"""``HTTPScorer``: the scoring contract answered by teachers served on other machines.

One adapter per server kind turns a batch of ``ScoreRequest`` s into that
server's request and its answer back into ``ScoreResult`` s:

- ``opd``: opd's own ``/score`` (``opd serve-teacher MODEL``): everything in the
  contract, the exact tail mass and per-position candidates included;
- ``vllm``: vLLM's OpenAI-compatible ``/v1/completions`` with the prompt as
  token ids, ``max_tokens: 1`` and ``prompt_logprobs: k`` (start the server with
  ``--max-logprobs`` of at least k). The tail mass is 1 minus the returned
  top-k's mass; candidate ids are not available there;
- ``sglang``: SGLang's ``/generate`` with ``input_ids``, ``max_new_tokens: 0``,
  ``return_logprob``, ``logprob_start_len``, ``top_logprobs_num`` and
  ``token_ids_logprob`` (one id list per request: the union of the positions'
  candidates, from which each position's are picked).

Requests go out in batches of ``batch_size`` sequences, round-robin over the
replicas and in parallel, each with a timeout; a transport failure (refused
connection, reset, timeout) is retried on the next replica, an HTTP error
answer is not (the same request would fail again) and raises with the server's
message. ``check_replicas`` scores one probe on every replica and fails if they
disagree: replicas serving different weights would make a run irreproducible.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Protocol

import httpx
import numpy as np

from opd.agents.scoring import ScoreRequest, ScoreResult, pad_rows
from opd.errors import ConfigError, InferenceServerError

__all__ = ["ADAPTERS", "HTTPScorer", "ServerAPI"]

logger = logging.getLogger(__name__)

ServerAPI = Literal["opd", "vllm", "sglang"]


class Adapter(Protocol):
    path: str
    hint: str  # added to the message of an error answer

    def body(self, requests: Sequence[ScoreRequest], model: str | None) -> dict[str, Any]: ...

    def parse(self, payload: Any, requests: Sequence[ScoreRequest]) -> list[ScoreResult]: ...


class OpdAdapter:
    path = "/score"
    hint = ""

    def body(self, requests: Sequence[ScoreRequest], model: str | None) -> dict[str, Any]:
        return {
            "requests": [{"token_ids": list(r.token_ids), "start": r.start, "k": r.k, "candidates": _lists(r.candidates)} for r in requests]
        }

    def parse(self, payload: Any, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        return [ScoreResult.from_json(item) for item in payload["results"]]


class VLLMAdapter:
    path = "/v1/completions"
    hint = " (vLLM refuses prompt_logprobs above its --max-logprobs: restart it with --max-logprobs K or ask for a smaller k)"

    def body(self, requests: Sequence[ScoreRequest], model: str | None) -> dict[str, Any]:
        if any(r.candidates is not None for r in requests):
            raise ConfigError(
                "vLLM's prompt log-probs cover only the top k and the token present, not chosen candidate ids; "
                "use teacher support 'teacher' with vLLM, or serve the teacher with `opd serve-teacher` or SGLang."
            )
        if len({r.k for r in requests}) != 1:
            raise ConfigError("one vLLM batch asks for one k; HTTPScorer groups requests by k.")
        return {
            "model": model,
            "prompt": [list(r.token_ids) for r in requests],
            "max_tokens": 1,
            "temperature": 0.0,
            "prompt_logprobs": requests[0].k,
        }

    def parse(self, payload: Any, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        choices = sorted(payload["choices"], key=lambda c: c["index"])
        if len(choices) != len(requests):
            raise InferenceServerError(f"vLLM answered {len(choices)} choices for {len(requests)} prompts.")
        return [_from_vllm(choice["prompt_logprobs"], r) for choice, r in zip(choices, requests, strict=True)]


def _from_vllm(per_position: list[dict[str, dict[str, Any]] | None], request: ScoreRequest) -> ScoreResult:
    """vLLM's ``prompt_logprobs``: per prompt token (None first), {token id: {logprob, rank}}, the top k and the token present."""
    token, top_ids, top_values = [], [], []
    for position in range(request.start, len(request.token_ids)):
        entries = {int(token_id): float(entry["logprob"]) for token_id, entry in (per_position[position] or {}).items()}
        ranked = sorted(((e["rank"], int(t)) for t, e in (per_position[position] or {}).items() if e.get("rank") is not None))
        ids = [t for rank, t in ranked if rank <= request.k][: request.k]
        if len(ids) < request.k or request.token_ids[position] not in entries:
            raise InferenceServerError(
                f"vLLM returned {len(ids)} of k={request.k} prompt log-probs at position {position}; "
                f"start it with --max-logprobs {request.k} or more."
            )
        token.append(entries[request.token_ids[position]])
        top_ids.append(ids)
        top_values.append([entries[t] for t in ids])
    values = np.asarray(top_values, np.float32).reshape(-1, request.k)
    return ScoreResult(
        token_logprobs=np.asarray(token, np.float32),
        topk_ids=np.asarray(top_ids, np.int32).reshape(-1, request.k),
        topk_logprobs=values,
        tail_mass=np.clip(1.0 - np.exp(values.astype(np.float64)).sum(axis=1), 0.0, 1.0).astype(np.float32),
    )


class SGLangAdapter:
    """SGLang's native ``/generate``, per its documented request and ``meta_info`` shapes (SGLang does not run on our CI)."""

    path = "/generate"
    hint = ""

    def body(self, requests: Sequence[ScoreRequest], model: str | None) -> dict[str, Any]:
        union = [sorted({c for row in r.candidates for c in row}) if r.candidates is not None else None for r in requests]
        body: dict[str, Any] = {
            "input_ids": [list(r.token_ids) for r in requests],
            "sampling_params": {"max_new_tokens": 0, "temperature": 0.0},
            "return_logprob": True,
            "logprob_start_len": [r.start for r in requests],
            "top_logprobs_num": [r.k for r in requests],
        }
        if any(u is not None for u in union):
            body["token_ids_logprob"] = [u or [] for u in union]
        return body

    def parse(self, payload: Any, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        items = payload if isinstance(payload, list) else [payload]
        if len(items) != len(requests):
            raise InferenceServerError(f"SGLang answered {len(items)} items for {len(requests)} sequences.")
        return [_from_sglang(item["meta_info"], r) for item, r in zip(items, requests, strict=True)]


def _from_sglang(meta: dict[str, Any], request: ScoreRequest) -> ScoreResult:
    """``input_token_logprobs[i]`` = [logprob, id, text] of token ``start + i``; ``input_top_logprobs[i]`` its top k."""
    n = request.positions
    token = [entry[0] for entry in meta["input_token_logprobs"][:n]]
    tops = meta["input_top_logprobs"][:n]
    values = np.asarray([[e[0] for e in row[: request.k]] for row in tops], np.float32).reshape(n, -1)
    candidates = None
    if request.candidates is not None:
        rows = meta["input_token_ids_logprobs"][:n]
        by_id = [{e[1]: e[0] for e in row} for row in rows]
        candidates = pad_rows([[scored[c] for c in wanted] for scored, wanted in zip(by_id, request.candidates, strict=True)])
    return ScoreResult(
        token_logprobs=np.asarray(token, np.float32),
        topk_ids=np.asarray([[e[1] for e in row[: request.k]] for row in tops], np.int32).reshape(n, -1),
        topk_logprobs=values,
        tail_mass=np.clip(1.0 - np.exp(values.astype(np.float64)).sum(axis=1), 0.0, 1.0).astype(np.float32),
        candidate_logprobs=candidates,
    )


ADAPTERS: dict[str, Adapter] = {"opd": OpdAdapter(), "vllm": VLLMAdapter(), "sglang": SGLangAdapter()}


class HTTPScorer:
    """Implements ``Scorer`` against one or more replicas of a served teacher."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        api: ServerAPI = "opd",
        model: str | None = None,
        batch_size: int = 8,
        timeout_s: float = 120.0,
        retries: int = 2,
    ) -> None:
        if not urls:
            raise ConfigError("A served teacher needs at least one URL, e.g. urls: [http://teacher-host:8000].")
        if api not in ADAPTERS:
            raise ConfigError(f"Unknown teacher server api {api!r}; use one of {sorted(ADAPTERS)}.")
        self.urls = [u.rstrip("/") for u in urls]
        self.adapter = ADAPTERS[api]
        self.model = model  # the served model's name, which vLLM requires in each request
        self.batch_size = batch_size
        self.retries = retries
        self._client = httpx.Client(timeout=timeout_s)
        self._next = itertools.cycle(range(len(self.urls)))
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=2 * len(self.urls), thread_name_prefix="opd-teacher")

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Results in request order; batches (of one k each, as vLLM needs) go to the replicas in parallel."""
        order = sorted(range(len(requests)), key=lambda i: requests[i].k)
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        batches = [b for group in batches for b in _split_by_k(group, requests)]
        results: list[ScoreResult | None] = [None] * len(requests)
        for batch, answers in zip(batches, self._pool.map(lambda b: self._send([requests[i] for i in b]), batches), strict=True):
            for i, answer in zip(batch, answers, strict=True):
                results[i] = answer
        return [r for r in results if r is not None]

    def score_on(self, replica: int, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Score on one replica, with no failover (for checks)."""
        return self._post(self.urls[replica], requests)

    def check_replicas(self, probe: ScoreRequest, *, tolerance: float = 1e-3) -> float:
        """Score ``probe`` on every replica; returns the largest log-prob difference from the first, raising above ``tolerance``."""
        reference = self.score_on(0, [probe])[0]
        worst = 0.0
        for replica in range(1, len(self.urls)):
            other = self.score_on(replica, [probe])[0]
            gap = float(np.abs(other.token_logprobs - reference.token_logprobs).max(initial=0.0))
            if not np.array_equal(other.topk_ids[:, :1], reference.topk_ids[:, :1]) or not math.isfinite(gap) or gap > tolerance:
                raise InferenceServerError(
                    f"Teacher replicas disagree: {self.urls[replica]} differs from {self.urls[0]} by {gap:.3g} nats on a probe "
                    f"(tolerance {tolerance}); they serve different weights or settings. Serve one model everywhere."
                )
            worst = max(worst, gap)
        return worst

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()

    def _send(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        """Post to the next replica; on a transport error, try the next one, up to ``retries`` more times."""
        error: Exception | None = None
        for attempt in range(self.retries + 1):
            with self._lock:
                url = self.urls[next(self._next)]
            try:
                return self._post(url, requests)
            except httpx.TransportError as exc:  # refused, reset, timed out: the request never got a real answer
                logger.warning(
                    "Teacher at %s failed (%s: %s), attempt %d of %d", url, type(exc).__name__, exc, attempt + 1, self.retries + 1
                )
                error = exc
        raise InferenceServerError(
            f"No teacher replica answered after {self.retries + 1} attempts (last: {type(error).__name__}: {error}). "
            f"Are the servers at {', '.join(self.urls)} up?"
        ) from error

    def _post(self, url: str, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        response = self._client.post(url + self.adapter.path, json=self.adapter.body(requests, self.model))
        if response.is_error:
            message = f"Teacher at {url}{self.adapter.path} answered {response.status_code}: {response.text[:500]}"
            raise InferenceServerError(message + (self.adapter.hint if response.status_code == 400 else ""))
        results = self.adapter.parse(response.json(), requests)
        for result, request in zip(results, requests, strict=True):
            if len(result.token_logprobs) != request.positions:
                raise InferenceServerError(f"Teacher at {url} scored {len(result.token_logprobs)} positions, expected {request.positions}.")
        return results


def _split_by_k(batch: list[int], requests: Sequence[ScoreRequest]) -> list[list[int]]:
    return [list(group) for _, group in itertools.groupby(batch, key=lambda i: requests[i].k)]


def _lists(candidates: tuple[tuple[int, ...], ...] | None) -> list[list[int]] | None:
    return None if candidates is None else [list(row) for row in candidates]
