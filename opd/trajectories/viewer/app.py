"""The viewer's FastAPI application: a read-only store behind it, security headers on every answer.

The store is opened read-only on the first request and kept; while it cannot
be opened (missing, empty, not a store), every page says why instead of
failing, and the next request tries again, so a store that appears later
(a training run starting) is picked up without a restart.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from opd.errors import StoreError
from opd.trajectories.store import TrajectoryStore
from opd.trajectories.viewer import api, branches, pages
from opd.trajectories.viewer.templating import render

__all__ = ["StoreSource", "create_app"]

_STATIC = Path(__file__).parent / "static"

# Scripts only from this server: even if episode text ever reached the page unescaped, inline script would not run.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class StoreSource:
    """The store at ``location``, opened read-only on first use and then shared by all requests."""

    def __init__(self, location: str) -> None:
        self.location = location
        self._store: TrajectoryStore | None = None
        self._lock = threading.Lock()

    def get(self) -> TrajectoryStore:
        """The open store; raises :class:`~opd.errors.StoreError` (to be shown as a page) while it cannot be opened."""
        with self._lock:
            if self._store is None:
                self._store = TrajectoryStore(self.location, read_only=True)
            return self._store

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


def create_app(location: str) -> FastAPI:
    """The viewer over the trajectory store at ``location`` (a SQLite path or a database URL), read-only."""
    source = StoreSource(location)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        source.close()

    app = FastAPI(title="opd viewer", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.stores = source
    app.mount("/static", StaticFiles(directory=_STATIC), name="static")
    app.include_router(pages.router)
    app.include_router(branches.router)
    app.include_router(api.router)

    @app.exception_handler(StoreError)
    async def store_problem(request: Request, exc: StoreError) -> Response:
        return render(request, "problem.html", {"title": "The store cannot be shown", "message": str(exc), "location": location}, 503)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    return app
