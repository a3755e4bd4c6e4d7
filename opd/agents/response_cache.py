"""A persistent cache of teacher API responses, keyed by the request, so that a re-run does not pay twice.

One SQLite file (stdlib ``sqlite3``: the cache is a key-value table, not part of
the trajectory store's schema). Keys are the SHA-256 of the canonical JSON of
everything that determines a response: model, api_base, messages, sampling
parameters and the sample index. Credentials are never part of a request dict
here, so they never reach the file.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["ResponseCache", "request_key"]


def request_key(request: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class ResponseCache:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, response TEXT NOT NULL)")

    def get(self, request: Mapping[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM responses WHERE key = ?", (request_key(request),)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, request: Mapping[str, Any], response: Mapping[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?)", (request_key(request), json.dumps(response)))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        self._db.close()
