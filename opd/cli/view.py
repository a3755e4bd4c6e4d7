"""``opd view``: the episode viewer, a local web app over a trajectory store, which it opens read-only."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import typer
from rich.markup import escape

from opd.cli.episodes import StoreOption
from opd.cli.render import console, fail
from opd.errors import OpdError
from opd.trajectories import default_store_location


def view(
    store: str = StoreOption,
    port: int = typer.Option(8765, min=1, max=65535, help="Port to serve on."),
    host: str = typer.Option(
        "127.0.0.1", help="Address to bind. The viewer has no login: anything but loopback shows every episode to the network."
    ),
) -> None:
    """Show every run and episode of the store in the browser (read-only)."""
    from sqlalchemy.engine import make_url

    from opd.trajectories import TrajectoryStore

    location = store or default_store_location()
    if "://" not in location and not Path(location).exists():
        fail(f"No trajectory store at {location}. Pass --store PATH_OR_URL, or write one first (e.g. `opd demo`).")
    try:  # refuse a file that is not a store here, in one line, rather than on every page
        TrajectoryStore(location, read_only=True).close()
    except OpdError as exc:
        fail(str(exc))
    if not _is_loopback(host):
        console.print(f"[yellow]warning:[/] binding {escape(host)}: anyone who can reach it can read every episode (there is no login).")
    shown = make_url(location).render_as_string(hide_password=True) if "://" in location else str(Path(location).resolve())
    url = escape(f"http://{host}:{port}/")
    console.print(f"opd view: [bold]{url}[/] (store {escape(shown)}, read-only); Ctrl+C stops.", soft_wrap=True, highlight=False)
    import uvicorn  # imported here, with the web app: only this command serves

    from opd.trajectories.viewer import create_app

    uvicorn.run(create_app(location), host=host, port=port, log_level="warning")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
