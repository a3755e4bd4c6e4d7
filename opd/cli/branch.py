"""``opd branch EPISODE --from-step K -n N``: restore a stored episode's env before step K and let a policy go on N times."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from opd import __version__
from opd.cli.episodes import StoreOption, get_episode, open_store
from opd.cli.render import console, fail
from opd.errors import OpdError


def branch_command(
    episode_id: str = typer.Argument(..., help="The episode (its id or a unique prefix)."),
    from_step: int = typer.Option(
        ..., "--from-step", "-k", min=0, help="Branch before this step: steps 0..K-1 are replayed, K on are new."
    ),
    n: int = typer.Option(4, "-n", min=1, help="How many branches to play."),
    policy: str = typer.Option(None, help="Model directory or hub name that continues; default the episode's own policy."),
    store: str = StoreOption,
    seed: int = typer.Option(0, help="Seeds the branches' sampling (branch j from (seed, j))."),
    temperature: float = typer.Option(1.0, min=0.0, help="Sampling temperature (0: greedy, every branch the same)."),
    max_new_tokens: int = typer.Option(64, min=1, help="Tokens per turn at most."),
    device: str = typer.Option("cpu", help="Where the policy runs."),
    run_name: str = typer.Option("branch", help="Name of the run the branches are stored under."),
    sandbox: str = typer.Option(None, help="Docker sandbox kind (python or shell) for a suite that runs model-written code."),
) -> None:
    """Play N continuations of a stored episode from before step K, and store them linked to it."""
    from opd.agents.branch import branch_episode
    from opd.agents.policy import CausalLMPolicy, SamplingConfig
    from opd.trajectories import Run

    with open_store(store) as trajectories:
        episode = get_episode(trajectories, episode_id)
        name = policy or episode.policy_model
        sampling = SamplingConfig(temperature=temperature, max_new_tokens=max_new_tokens)
        run = Run(
            name=run_name,
            config={"parent": episode.id, "from_step": from_step, "n": n, "policy": name, "seed": seed, "sampling": vars(sampling)},
            code_version=__version__,
        )
        try:
            player = CausalLMPolicy.from_pretrained(name, device=device)
        except OSError as exc:
            fail(f"Cannot load the policy {name!r} ({exc}). Give --policy MODEL_DIR.")
        try:
            with _sandboxes(sandbox, n) as sandboxes:
                branches = branch_episode(
                    episode, player, from_step=from_step, n=n, run_id=run.id, sampling=sampling, seed=seed, sandboxes=sandboxes
                )
        except OpdError as exc:
            hint = (
                " Pass --sandbox python (or shell): the Docker sandbox kind the suite runs in." if "isolating sandbox" in str(exc) else ""
            )
            fail(f"Cannot branch episode {episode.id}: {exc}{hint}")
        trajectories.add_run(run)
        trajectories.write_episodes(branches)
    table = Table(
        title=f"{n} branches of {episode.id[:12]} from step {from_step} (parent reward {episode.reward:.2f})", box=box.SIMPLE_HEAD
    )
    for column in ("id", "steps", "reward", "ok", "end", "first new action"):
        table.add_column(column, no_wrap=column == "id", overflow="fold")
    for branch in branches:
        new = branch.steps[from_step].action if len(branch.steps) > from_step else ""
        ok = "[green]yes[/]" if branch.success else "[red]no[/]"
        table.add_row(branch.id[:12], str(len(branch.steps)), f"{branch.reward:.2f}", ok, branch.termination, escape(new[:60]))
    console.print(table)
    console.print(f"stored in run {run.id}; `opd episodes show {episode.id[:12]}` lists them")


@contextlib.contextmanager
def _sandboxes(kind: str | None, n: int) -> Iterator[list[Any] | None]:
    """``n`` Docker sandboxes of ``kind`` from a pool for the command's length, or None without a kind."""
    if kind is None:
        yield None
        return
    from opd.envs.docker import SandboxPool

    with SandboxPool(kind=kind, size=n) as pool:
        lent = [pool.acquire() for _ in range(n)]
        try:
            yield lent
        finally:
            for sandbox in lent:
                pool.release(sandbox)
