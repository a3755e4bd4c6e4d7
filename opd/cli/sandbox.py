"""``opd sandbox``: see and sweep the Docker sandbox containers opd started.

A pool removes its containers when it closes and when its process exits
normally; ``cleanup`` is for what a crashed or killed run left behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from opd.cli.render import console
from opd.errors import OpdError

if TYPE_CHECKING:
    import docker

app = typer.Typer(help="Inspect and clean up Docker sandbox containers.", no_args_is_help=True)


@app.command("list")
def list_sandboxes() -> None:
    """List every opd sandbox container on the engine (compose-started and pool-started)."""
    # Imported here, not at the top: opd.envs loads the suites, which `opd --help` need not wait for.
    from opd.envs.docker.hardening import COMPOSE_PROJECT_LABEL, KIND_LABEL, OWNER_LABEL, SANDBOX_LABEL, Owner

    client = _connect()
    table = Table()
    table.add_column("name", no_wrap=True)  # never cut: users copy it into docker commands
    for column in ("kind", "status", "started by", "owner alive"):
        table.add_column(column)
    for container in client.containers.list(all=True, filters={"label": f"{SANDBOX_LABEL}=1"}):
        labels = container.labels
        owner = Owner.parse(labels.get(OWNER_LABEL, ""))
        project = labels.get(COMPOSE_PROJECT_LABEL)
        started_by = f"compose ({project})" if project else labels.get(OWNER_LABEL, "?")
        alive = "-" if owner is None else {True: "yes", False: "no", None: "other host"}[owner.is_alive()]
        table.add_row(container.name, labels.get(KIND_LABEL, "?"), container.status, started_by, alive)
    console.print(table)


@app.command("cleanup")
def cleanup(
    everything: bool = typer.Option(False, "--all", help="Also remove containers of live runs and of other hosts."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be removed."),
) -> None:
    """Remove sandbox containers whose owning process is dead. Compose-started ones are left to `docker compose down`."""
    from opd.envs.docker import sweep_containers

    client = _connect()
    swept = sweep_containers(client, everything=everything, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for container in swept:
        console.print(f"{verb} {container.name}: {container.reason}")
    console.print(f"{verb} {len(swept)} sandbox container(s).")


def _connect() -> docker.DockerClient:
    from opd.envs.docker import connect

    try:
        return connect()
    except OpdError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
