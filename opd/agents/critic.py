"""``BlackBoxTeacher``: any chat model behind an API grades each step the student took, through litellm.

For every step it sends the task, the episode so far and the student's step,
and asks for a JSON judgement: a score in ``[score_min, score_max]``, a short
rationale and optionally a corrected action. Whatever comes back is parsed
leniently (code fences, prose around the object, a number as a string); a
reply that still does not parse is shown its parse error and asked again, and
after ``parse_retries`` the step is stored *unannotated* (score None, with the
reason). Nothing here raises for a bad reply or a flaky server; only a
misconfiguration (bad credentials, unknown model, a refused request) stops the
run, since then every step would fail the same way.

Reliability and cost: at most ``concurrency`` requests in flight; timeouts,
rate limits, connection errors and 5xx are retried with exponential backoff;
responses are cached by request (``cache``), so a re-run pays nothing; every
critique carries its ledger entry (calls, cached calls, tokens, dollars where
litellm knows the model's price).

Where the API returns ``top_logprobs``, the score token's alternatives give a
distribution over scores: the score is its mean and the uncertainty its
normalised entropy (chat APIs return log-probs only for tokens the teacher
writes itself, so this, not the student's tokens, is where API logits enter).
With ``samples > 1`` the uncertainty is the disagreement among the critiques.

API keys come from the environment only (litellm reads each provider's usual
variable, or ``api_key_env`` names one); they are never stored or cached.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import math
import os
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from opd.agents.response_cache import ResponseCache
from opd.errors import ConfigError, OpdError
from opd.trajectories import Annotations, Episode, StepCritique
from opd.trajectories.conversations import follow_up

__all__ = ["BlackBoxTeacher", "CriticConfig", "Judgement", "critique_messages", "parse_judgement"]

logger = logging.getLogger(__name__)


@functools.cache
def litellm_module() -> Any:
    """litellm, imported on first use: importing it takes seconds and ~170 MiB, which a run without a critic never needs
    (``TrainConfig`` imports this module for ``CriticConfig``)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch of the price table at import
    import litellm

    litellm.suppress_debug_info = True  # its banner on every failed request drowns the run's own log
    return litellm


def retryable_errors() -> tuple[type[BaseException], ...]:
    """litellm's transport faults, worth another try."""
    llm = litellm_module()
    return (
        llm.Timeout,
        llm.RateLimitError,
        llm.APIConnectionError,
        llm.InternalServerError,
        llm.ServiceUnavailableError,
        llm.BadGatewayError,
    )


def misconfigured_errors() -> tuple[type[BaseException], ...]:
    """litellm's errors that no retry can fix: a bad key, model name or request."""
    llm = litellm_module()
    return (llm.AuthenticationError, llm.PermissionDeniedError, llm.NotFoundError, llm.BadRequestError)


class MalformedReplyError(OpdError, ValueError):
    """The server answered with a body that is not a chat completion (a proxy's error page, an empty choice list)."""


@dataclasses.dataclass(frozen=True)
class CriticConfig:
    model: str  # a litellm model string: "openai/gpt-4o-mini", "anthropic/claude-...", "openai/<name>" for any OpenAI-compatible server
    api_base: str | None = None  # e.g. "http://127.0.0.1:8000/v1" for vLLM, SGLang or `transformers serve`
    api_key_env: str | None = None  # name of the environment variable holding the key; None: the provider's usual one
    score_min: int = 0
    score_max: int = 10
    samples: int = 1  # critiques per step; > 1 measures disagreement (use temperature > 0)
    temperature: float = 0.0
    top_logprobs: int = 0  # ask for this many alternatives per reply token (0: do not ask); the score token's give the score's spread
    max_tokens: int = 256
    ask_correction: bool = True  # ask for a corrected action with each judgement
    parse_retries: int = 1  # re-asks, with the parse error shown, before a step is left unannotated
    concurrency: int = 8  # requests in flight
    timeout_s: float = 60.0
    max_retries: int = 4  # per request, on timeouts, rate limits, connection errors and 5xx
    backoff_s: float = 0.5  # first retry delay; doubles per retry, with jitter
    cache: str | None = None  # SQLite file of cached responses; None: no cache

    def __post_init__(self) -> None:
        if self.score_max <= self.score_min:
            raise ConfigError(f"score_max ({self.score_max}) must exceed score_min ({self.score_min}).")
        if self.samples < 1 or self.concurrency < 1 or self.max_retries < 0 or self.parse_retries < 0:
            raise ConfigError("samples and concurrency must be at least 1; max_retries and parse_retries at least 0.")

    @property
    def name(self) -> str:
        return f"critic:{self.model}"


@dataclasses.dataclass(frozen=True)
class Judgement:
    score: float
    rationale: str
    corrected_action: str | None


def critique_messages(episode: Episode, step_index: int, config: CriticConfig) -> list[dict[str, str]]:
    """The request for judging step ``step_index`` of ``episode``: the task, the steps before it, the step."""
    correction = (
        ', "corrected_action": "<the action the agent should have taken, or null if it was right>"' if config.ask_correction else ""
    )
    system = (
        "You grade one step of an AI agent that solves a task with tools. Judge only the marked step: is it a correct, "
        "useful next action given the task and what happened before? Reply with only a JSON object: "
        f'{{"score": <integer from {config.score_min} (wrong or harmful) to {config.score_max} (exactly right)>, '
        f'"rationale": "<one sentence>"{correction}}}'
    )
    task = "\n".join(f"[{m['role']}] {m['content']}" for m in episode.initial_messages if m.get("content"))
    lines = [f"TASK\n{task}", "EPISODE SO FAR"]
    for step in episode.steps[:step_index]:
        source = "user follows up" if follow_up(step) is not None else "tools returned"  # a conversation's next user turn
        lines.append(f"[agent step {step.index}] {step.action}\n[{source}] {step.observation}")
    if step_index == 0:
        lines.append("(nothing yet: this is the first step)")
    step = episode.steps[step_index]
    lines.append(f"STEP TO GRADE\n[agent step {step.index}] {step.action}")
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(lines)}]


_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def parse_judgement(text: str, config: CriticConfig) -> Judgement | str:
    """The judgement in ``text``, or a one-line error that tells the teacher what to fix."""
    match = _OBJECT.search(text or "")
    if match is None:
        return "the reply contains no JSON object"
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError as exc:
        return f"the JSON object does not parse ({exc.msg} at character {exc.pos})"
    if not isinstance(data, dict) or "score" not in data:
        return 'the JSON object has no "score"'
    try:
        score = float(data["score"])
    except (TypeError, ValueError):
        return f'"score" must be a number, got {data["score"]!r}'
    if not (math.isfinite(score) and config.score_min <= score <= config.score_max):
        return f'"score" must lie in [{config.score_min}, {config.score_max}], got {data["score"]!r}'
    corrected = data.get("corrected_action")
    return Judgement(score, str(data.get("rationale", "")), str(corrected) if corrected not in (None, "", "null") else None)


def score_distribution(logprobs: Sequence[Mapping[str, Any]], config: CriticConfig) -> dict[int, float] | None:
    """P(score) from the top log-probs at the score's token, if the reply carries them and the score is one token."""
    text = ""
    for position in logprobs:
        if position["token"].strip().lstrip("-").isdigit() and re.search(r'"score"\s*:\s*"?\s*$', text):
            alternatives = {
                **{a["token"]: a["logprob"] for a in position.get("top_logprobs") or ()},
                position["token"]: position["logprob"],
            }
            scores = {}
            for token, logprob in alternatives.items():
                if token.strip().lstrip("-").isdigit() and config.score_min <= int(token) <= config.score_max:
                    scores[int(token)] = scores.get(int(token), 0.0) + math.exp(logprob)
            total = sum(scores.values())
            return {s: p / total for s, p in scores.items()} if total > 0 else None
        text += position["token"]
    return None


class BlackBoxTeacher:
    """Grades steps through litellm; ``annotate`` returns one ``Annotations`` of critiques per episode."""

    def __init__(self, config: CriticConfig) -> None:
        self.config = config
        self.name = config.name
        self.cache = ResponseCache(config.cache) if config.cache else None

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()

    def annotate(self, episodes: Sequence[Episode]) -> list[Annotations]:
        return asyncio.run(self._annotate(episodes))

    async def _annotate(self, episodes: Sequence[Episode]) -> list[Annotations]:
        limit = asyncio.Semaphore(self.config.concurrency)
        jobs = [[self._critique(e, s.index, limit) for s in e.steps if s.num_policy_tokens] for e in episodes]
        results = await asyncio.gather(*(asyncio.gather(*job) for job in jobs))
        return [Annotations(critiques=tuple(critiques)) for critiques in results]

    async def _critique(self, episode: Episode, step_index: int, limit: asyncio.Semaphore) -> StepCritique:
        usage: dict[str, Any] = {"calls": 0, "cached": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
        samples = [
            await self._sample(critique_messages(episode, step_index, self.config), i, limit, usage) for i in range(self.config.samples)
        ]
        judged = [s for s in samples if isinstance(s[0], Judgement)]
        if not judged:
            return StepCritique(self.name, step_index, None, error=str(samples[-1][0]), usage=usage)
        scores = [s[0].score if s[1] is None else _mean(s[1]) for s in judged]
        first = judged[0][0]
        return StepCritique(
            self.name,
            step_index,
            float(sum(scores) / len(scores)),
            critique=first.rationale,
            corrected_action=first.corrected_action,
            uncertainty=self._uncertainty(scores, [s[1] for s in judged]),
            usage=usage,
        )

    async def _sample(
        self, messages: list[dict[str, str]], index: int, limit: asyncio.Semaphore, usage: dict[str, Any]
    ) -> tuple[Judgement | str, dict[int, float] | None]:
        """One judgement (asking again with the parse error shown), with its score distribution if the API gave one."""
        for attempt in range(self.config.parse_retries + 1):
            reply = await self._complete(messages, index, limit, usage)
            if isinstance(reply, str):  # the request failed for good
                return f"request failed: {reply}", None
            parsed = parse_judgement(reply["content"], self.config)
            if isinstance(parsed, Judgement):
                return parsed, score_distribution(reply.get("logprobs") or (), self.config)
            logger.debug("Unparseable judgement (attempt %d): %s", attempt + 1, parsed)
            messages = [
                *messages,
                {"role": "assistant", "content": reply["content"] or ""},
                {"role": "user", "content": f"Your reply could not be used: {parsed}. Reply again with only the JSON object."},
            ]
        return f"unparseable judgement: {parsed}", None

    async def _complete(
        self, messages: list[dict[str, str]], index: int, limit: asyncio.Semaphore, usage: dict[str, Any]
    ) -> dict[str, Any] | str:
        """The reply to ``messages`` (from the cache if there), or why it could not be had."""
        request = self._request(messages, index)
        if self.cache is not None and (cached := self.cache.get(request)) is not None:
            usage["cached"] += 1
            return cached
        credentials, error = self._credentials(), ""
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                await asyncio.sleep(self.config.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random()))
            try:
                async with limit:
                    response = await litellm_module().acompletion(**request, **credentials, timeout=self.config.timeout_s, num_retries=0)
                reply = _reply(response)
            except misconfigured_errors() as exc:
                raise ConfigError(f"The critic {self.config.model!r} refused the request: {exc}") from exc
            except (*retryable_errors(), litellm_module().APIError, MalformedReplyError) as exc:
                # Transport faults only: a bug of ours in reading a good reply must fail loudly, not become unannotated steps.
                error = f"{type(exc).__name__}: {str(exc)[:200]}"  # garbage bodies surface as APIError or a malformed reply
                logger.debug("Critic request failed (attempt %d): %s", attempt + 1, error)
                continue
            usage["calls"] += 1
            usage["prompt_tokens"] += reply["prompt_tokens"]
            usage["completion_tokens"] += reply["completion_tokens"]
            usage["cost_usd"] = None if usage["cost_usd"] is None or reply["cost_usd"] is None else usage["cost_usd"] + reply["cost_usd"]
            if self.cache is not None:
                self.cache.put(request, reply)
            return reply
        return error

    def _request(self, messages: list[dict[str, str]], index: int) -> dict[str, Any]:
        c = self.config
        request: dict[str, Any] = {"model": c.model, "messages": messages, "temperature": c.temperature, "max_tokens": c.max_tokens}
        if c.api_base:
            request["api_base"] = c.api_base
        if c.top_logprobs:
            request.update(logprobs=True, top_logprobs=c.top_logprobs)
        if c.samples > 1:
            request["seed"] = index  # distinct samples, and distinct cache entries
        return request

    def _credentials(self) -> dict[str, str]:
        return api_credentials(self.config.model, self.config.api_base, self.config.api_key_env, who="critic")

    def _uncertainty(self, scores: list[float], distributions: list[dict[int, float] | None]) -> float | None:
        half_range = (self.config.score_max - self.config.score_min) / 2
        if len(scores) > 1:
            mean = sum(scores) / len(scores)
            return min(1.0, math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores)) / half_range)
        if distributions[0]:
            entropy = -sum(p * math.log(p) for p in distributions[0].values() if p > 0)
            return entropy / math.log(self.config.score_max - self.config.score_min + 1)
        return None


def api_credentials(model: str, api_base: str | None, api_key_env: str | None, *, who: str) -> dict[str, str]:
    """The key to send: from ``api_key_env`` if named (never stored), a placeholder for a keyless self-hosted server, else litellm's own."""
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise ConfigError(f"The {who}'s key variable {api_key_env} is not set in the environment.")
        return {"api_key": key}
    if api_base and model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
        return {"api_key": "no-key"}  # a self-hosted OpenAI-compatible server usually wants none, but the client insists on one
    return {}


def _mean(distribution: dict[int, float]) -> float:
    return sum(score * p for score, p in distribution.items())


def _reply(response: Any) -> dict[str, Any]:
    """The JSON-able part of a litellm response that judging and the ledger need."""
    choices = getattr(response, "choices", None) or []
    content = getattr(getattr(choices[0], "message", None), "content", None) if choices else None
    if not isinstance(content, str):
        raise MalformedReplyError("the reply has no text content")
    choice = choices[0]
    positions = []
    for position in getattr(getattr(choice, "logprobs", None), "content", None) or []:
        alternatives = [{"token": a.token, "logprob": a.logprob} for a in (position.top_logprobs or [])]
        positions.append({"token": position.token, "logprob": position.logprob, "top_logprobs": alternatives})
    try:
        cost: float | None = float(litellm_module().completion_cost(completion_response=response))
    except Exception:  # litellm raises for models it has no price for; the ledger then says "unknown"
        cost = None
    return {
        "content": content,
        "logprobs": positions,
        "prompt_tokens": int(response.usage.prompt_tokens),
        "completion_tokens": int(response.usage.completion_tokens),
        "cost_usd": cost,
    }
