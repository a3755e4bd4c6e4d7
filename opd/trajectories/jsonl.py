"""Episodes as JSON lines: one episode per line, lossless.

Arrays are written as base64 of the store's own binary layout (see
``arrays.py``) with their dtype and shape, so float16 log-probs and NaNs come
back bit-identical. Each line also carries its run, so a file imports into an
empty store on its own.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO, Any

import numpy as np

from opd.errors import ConfigError
from opd.trajectories.records import Annotations, Episode, EpisodeScore, Run, Step, StepCritique, StepRoute, TokenLogprobs

FORMAT_VERSION = 1


def episode_to_json(episode: Episode, run: Run) -> str:
    payload = {"format": FORMAT_VERSION, "run": _plain(run), "episode": _plain(episode)}
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def episode_from_json(line: str) -> tuple[Episode, Run]:
    payload = json.loads(line)
    if payload.get("format") != FORMAT_VERSION:
        raise ConfigError(f"Unsupported episode format {payload.get('format')!r}; this opd reads format {FORMAT_VERSION}.")
    run = Run(**{**payload["run"], "created_at": datetime.fromisoformat(payload["run"]["created_at"])})
    data = payload["episode"]
    steps = tuple(Step(**{k: _array(v) for k, v in s.items()}) for s in data.pop("steps"))
    for key in ("initial_messages", "teacher_models"):
        data[key] = tuple(data[key])
    for step_list_key in ("messages", "tool_calls", "tool_results"):
        steps = tuple(dataclasses.replace(s, **{step_list_key: tuple(getattr(s, step_list_key))}) for s in steps)
    raw = data.pop("annotations")
    annotations = Annotations(
        token_logprobs=tuple(TokenLogprobs(**{k: _array(v) for k, v in a.items()}) for a in raw["token_logprobs"]),
        critiques=tuple(StepCritique(**a) for a in raw["critiques"]),
        episode_scores=tuple(EpisodeScore(**a) for a in raw["episode_scores"]),
        routes=tuple(StepRoute(**a) for a in raw.get("routes", ())),  # absent in exports from before routing
    )
    episode = Episode(**{**data, "steps": steps, "annotations": annotations, "created_at": datetime.fromisoformat(data["created_at"])})
    return episode, run


def write_jsonl(pairs: Iterable[tuple[Episode, Run]], out: IO[str]) -> int:
    count = 0
    for episode, run in pairs:
        out.write(episode_to_json(episode, run) + "\n")
        count += 1
    return count


def read_jsonl(lines: IO[str]) -> Iterator[tuple[Episode, Run]]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield episode_from_json(line)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"Line {number} is not an opd episode ({exc.__class__.__name__}: {exc}).") from exc


def _plain(value: Any) -> Any:
    """Records to JSON-able values, arrays tagged so that they come back exactly."""
    if isinstance(value, np.ndarray):
        return {"__array__": base64.b64encode(value.tobytes()).decode(), "dtype": value.dtype.str, "shape": list(value.shape)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        raise ConfigError(f"Cannot export a non-finite number ({value}) outside an array.")
    return value


def _array(value: Any) -> Any:
    if isinstance(value, dict) and "__array__" in value:
        dtype = np.dtype(value["dtype"])
        return np.frombuffer(base64.b64decode(value["__array__"]), dtype=dtype).reshape(value["shape"]).copy()
    return value
