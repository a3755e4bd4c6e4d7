"""``opd episodes``: list, show, export, import and replay the episodes in a trajectory store."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich import box
from rich.table import Table

from opd.cli.render import console, describe_usage, escape, fail
from opd.errors import OpdError
from opd.trajectories import ANNOTATION_KINDS, DEFAULT_STORE, default_store_location

if TYPE_CHECKING:  # the store itself is imported by the commands that open it: `opd episodes --help` need not wait for SQLAlchemy
    from opd.trajectories import Episode, EpisodeFilter, EpisodeSummary, TrajectoryStore

app = typer.Typer(help="Inspect, export, import and replay stored episodes.", no_args_is_help=True)

STORE_HELP = f"Trajectory store: a path to a SQLite file or a database URL. Default: $OPD_STORE, else {DEFAULT_STORE}."
StoreOption = typer.Option(None, "--store", "-s", help=STORE_HELP)


def open_store(location: str | None, *, create: bool = False) -> TrajectoryStore:
    from opd.trajectories import TrajectoryStore

    try:
        return TrajectoryStore(location or default_store_location(), create=create)
    except OpdError as exc:
        fail(str(exc))


def build_filter(
    trajectories: TrajectoryStore, run: str | None, suite: str | None, success: bool | None, annotated: str | None
) -> EpisodeFilter:
    """The episodes asked for; ``run`` is an id, a unique id prefix or a run name (`opd runs list`)."""
    from opd.trajectories import EpisodeFilter

    run_id = run_ids(trajectories, [run])[0] if run else None
    try:
        return EpisodeFilter(run_id=run_id, suite=suite, success=success, has_annotation=annotated)
    except OpdError as exc:
        fail(str(exc))


def run_ids(trajectories: TrajectoryStore, keys: Sequence[str]) -> tuple[str, ...]:
    """The id of each run named by ``keys`` (a name, an id or a unique id prefix); an unknown or ambiguous one fails."""
    from opd.trajectories import find_run

    runs = trajectories.runs()
    try:
        return tuple(find_run(runs, key).id for key in keys)
    except OpdError as exc:
        fail(str(exc))


_END = {"final_answer": "answer", "max_turns": "turns", "failed": "FAILED"}


@app.command("list")
def list_episodes(
    store: str = StoreOption,
    run: str = typer.Option(None, help="Only this run: its name, id or a unique id prefix (`opd runs list`)."),
    suite: str = typer.Option(None, help="Only this suite."),
    success: bool = typer.Option(None, "--success/--failure", help="Only successful (or failed) episodes."),
    annotated: str = typer.Option(None, help=f"Only episodes with this annotation kind: {', '.join(ANNOTATION_KINDS)}."),
    limit: int = typer.Option(50, min=1, help="At most this many rows."),
    offset: int = typer.Option(0, min=0, help="Skip this many rows (newest first)."),
    wide: bool = typer.Option(False, "--wide", "-w", help="Also show the run and the policy model."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per episode (full ids), for scripts."),
) -> None:
    """List episodes, newest first."""
    with open_store(store) as trajectories:
        where = build_filter(trajectories, run, suite, success, annotated)
        total = trajectories.count_episodes(where)
        rows = trajectories.list_episodes(where, limit=limit, offset=offset)
    if as_json:
        for row in rows:
            typer.echo(json.dumps({**dataclasses.asdict(row), "created_at": str(row.created_at)}))
        return
    table = Table(
        title=f"{len(rows)} of {total} episodes (newest first)", box=box.SIMPLE_HEAD, pad_edge=False, padding=0, collapse_padding=True
    )
    columns = ["id", "suite", "task", "seed", "steps", "tokens", "reward", "ok", "end"] + (["run", "policy"] if wide else [])
    for column in columns:
        table.add_column(column, no_wrap=column == "id", overflow="fold")  # ids are copied into `show`: never cut
    for row in rows:
        cells = [
            row.id[:12], row.suite, escape(row.task_id), str(row.seed), str(row.num_steps), str(row.num_tokens), f"{row.reward:.2f}",
            "[green]yes[/]" if row.success else "[red]no[/]", _END.get(row.termination, row.termination),
        ]  # fmt: skip
        table.add_row(*cells, *([row.run_id[:8], escape(row.policy_model)] if wide else []))
    console.print(table)


@app.command("show")
def show(episode_id: str, store: str = StoreOption) -> None:
    """Show one episode turn by turn: actions, tool calls, results, errors, rewards, teacher critiques and divergence."""
    from opd.trajectories import EpisodeFilter, sum_usage
    from opd.trajectories.conversations import follow_up, follow_up_usage, turn_verdict

    with open_store(store) as trajectories:
        episode = get_episode(trajectories, episode_id)
        branches = trajectories.list_episodes(EpisodeFilter(parent_id=episode.id), limit=1000)
    console.rule(f"episode {episode.id}")
    console.print(
        f"suite [bold]{episode.suite}[/]  task {escape(episode.task_id)}  seed {episode.seed}  run {episode.run_id}\n"
        f"policy {escape(episode.policy_model)}  tokens {episode.num_tokens}  "
        f"reward [bold]{episode.reward:.2f}[/]  success {episode.success}  end {episode.termination}"
        + (f"  [red]failed: {escape(episode.failure_reason)}[/]" if episode.failure_reason else "")
        + (f"\nwritten by rank {w.get('rank', 0)} on {escape(str(w.get('host')))} (pid {w.get('pid')})" if (w := episode.writer) else "")
    )
    for message in episode.initial_messages:
        console.print(f"[dim]{message['role']}:[/] {escape(str(message['content']))}")
    critiques = {(c.step_index, c.teacher): c for c in episode.annotations.critiques}
    for step in episode.steps:
        console.rule(f"step {step.index}", style="dim")
        for route in (r for r in episode.annotations.routes if r.step_index == step.index):
            doubt = "" if route.uncertainty is None else f", uncertainty {route.uncertainty:.2f}"
            console.print(
                f"[blue]{escape(route.teacher)} chose {escape(route.chosen)}[/] ({escape(route.reason)}{doubt}; {route.tokens} tokens read)"
            )
        console.print(f"[bold cyan]action[/] {escape(step.action)}")
        if (verdict := turn_verdict(step)) is not None:
            turn = int(verdict.get("user_turn", 0)) + 1
            grade = f"reward {verdict['reward']:.2f} success {verdict['success']} {escape(verdict['reason'])}"
            console.print(f"[bold]user turn {turn} graded[/]: {grade}")
        if (posed := follow_up(step)) is not None:
            console.print(f"[bold yellow]user (turn {posed[0] + 1})[/] {escape(posed[1])}")
            if usage := follow_up_usage(step):
                console.print(f"  [dim]simulated user: {describe_usage(usage)}[/]")
        else:
            style = "red" if step.error_kind else "green"
            label = f"error ({step.error_kind})" if step.error_kind else "observation"
            console.print(f"[{style}]{label}[/] {escape(step.observation)}")
        if step.reward:
            console.print(f"[bold]reward {step.reward:.2f}[/]")
        for (index, teacher), critique in sorted(critiques.items()):
            if index == step.index:
                if critique.score is None:
                    console.print(f"[magenta]critique by {escape(teacher)}[/] [red]unannotated:[/] {escape(critique.error or '')}")
                else:
                    doubt = "" if critique.uncertainty is None else f" (uncertainty {critique.uncertainty:.2f})"
                    console.print(
                        f"[magenta]critique by {escape(teacher)}[/] score {critique.score:.2f}{doubt}: {escape(critique.critique)}"
                    )
                if critique.corrected_action:
                    console.print(f"  [magenta]suggested:[/] {escape(critique.corrected_action)}")
                if critique.usage:
                    console.print(f"  [dim]cost: {describe_usage(critique.usage)}[/]")
    if critiques:
        console.print(f"[magenta]critique cost of this episode[/]: {describe_usage(sum_usage(c.usage for c in critiques.values()))}")
    for score in episode.annotations.episode_scores:
        console.print(f"[magenta]episode score by {escape(score.teacher)}[/]: {score.reward:.2f} {escape(score.detail)}")
    if episode.annotations.token_logprobs:
        console.print(divergence_table(episode))
    if episode.annotations.routes:
        console.print(route_table(episode))
    if episode.parent_id is not None:
        console.print(f"[bold]branch[/] of episode {episode.parent_id} from step {episode.branch_step} (steps before it are the parent's)")
    if branches:
        console.print(branch_table(branches[::-1]))


def route_table(episode: Episode) -> Table:
    """Each routed teacher's share of the steps and what it read and cost, per router."""
    from opd.trajectories import route_shares

    table = Table(title="teachers chosen per step (routing): share and cost (FLOPs = 2 x parameters x tokens read)", box=box.SIMPLE_HEAD)
    for column in ("router", "teacher", "steps", "share", "tokens read", "FLOPs"):
        table.add_column(column)
    for share in route_shares(episode.annotations.routes):
        row = (share.router, share.teacher, str(share.steps), f"{share.share:.0%}", f"{share.tokens:,}", f"{share.cost:.3g}")
        table.add_row(*(escape(cell) for cell in row))
    return table


def branch_table(branches: list[EpisodeSummary]) -> Table:
    table = Table(title=f"{len(branches)} branches (`opd branch`), oldest first", box=box.SIMPLE_HEAD)
    for column in ("id", "from step", "steps", "reward", "ok", "end", "policy"):
        table.add_column(column, no_wrap=column == "id", overflow="fold")
    for b in branches:
        ok = "[green]yes[/]" if b.success else "[red]no[/]"
        table.add_row(
            b.id[:12],
            str(b.branch_step),
            str(b.num_steps),
            f"{b.reward:.2f}",
            ok,
            _END.get(b.termination, b.termination),
            escape(b.policy_model),
        )
    return table


def divergence_table(episode: Episode) -> Table:
    from opd.trajectories.inspection import step_divergence

    table = Table(title="student vs teacher per step (reverse-KL estimate on the sampled tokens, nats/token)")
    for column in ("step", "teacher", "tokens", "rKL est.", "teacher top-1 agrees", "outside top-k"):
        table.add_column(column)
    steps = {s.index: s for s in episode.steps}
    for annotation in episode.annotations.token_logprobs:
        d = step_divergence(steps[annotation.step_index], annotation)
        table.add_row(
            str(d.step_index),
            escape(d.teacher),
            str(d.tokens),
            f"{d.reverse_kl_estimate:.3f}",
            f"{d.top1_agreement:.0%}",
            str(d.outside_topk),
        )
    return table


def get_episode(trajectories: TrajectoryStore, episode_id: str) -> Episode:
    try:
        return trajectories.get_episode(episode_id)
    except KeyError as exc:
        fail(str(exc.args[0]))


@app.command("export")
def export(
    out: Path = typer.Argument(None, help="JSONL file to write; default standard output."),
    store: str = StoreOption,
    run: str = typer.Option(None, help="Only this run: its name, id or a unique id prefix (`opd runs list`)."),
    suite: str = typer.Option(None, help="Only this suite."),
) -> None:
    """Export episodes as JSON lines (one episode per line, lossless)."""
    from opd.trajectories import write_jsonl

    with open_store(store) as trajectories:
        runs = {r.id: r for r in trajectories.runs()}
        pairs = (
            (e, runs[e.run_id]) for batch in trajectories.iter_episodes(build_filter(trajectories, run, suite, None, None)) for e in batch
        )
        if out is None:
            count = write_jsonl(pairs, sys.stdout)
        else:
            with out.open("w", encoding="utf-8") as handle:
                count = write_jsonl(pairs, handle)
    if out is not None:
        console.print(f"exported {count} episodes to {out}")


@app.command("import")
def import_(
    source: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSONL file from `opd episodes export`."),
    store: str = StoreOption,
) -> None:
    """Import episodes from JSON lines; episodes already in the store are skipped."""
    from opd.trajectories import read_jsonl

    imported = skipped = 0
    with open_store(store, create=True) as trajectories, source.open(encoding="utf-8") as lines:
        try:
            for episode, run in read_jsonl(lines):
                trajectories.add_run(run)
                if trajectories.has_episode(episode.id):
                    skipped += 1
                    continue
                trajectories.write_episode(episode)
                imported += 1
        except OpdError as exc:
            fail(f"{source}: {exc}")
    console.print(f"imported {imported} episodes, skipped {skipped} already present")


@app.command("replay")
def replay(episode_id: str, store: str = StoreOption) -> None:
    """Re-run an episode's recorded actions in a fresh env with the same seed; report every step that differs."""
    with open_store(store) as trajectories:
        episode = get_episode(trajectories, episode_id)
    try:
        from opd.agents import replay_episode  # imported here: it brings transformers, which `opd --help` should not wait for
        from opd.envs import make_suite
        from opd.envs.lending import SandboxConfig, borrowed, open_sandboxes

        # The episode's kind of sandbox: a Docker one for a suite that runs code in it, as when it was played.
        sandboxes = open_sandboxes(SandboxConfig(size=1), make_suite(episode.suite, **episode.env_options.get("suite_options", {})))
        try:
            with borrowed(sandboxes, 1) as (sandbox,):
                report = replay_episode(episode, sandbox=sandbox)
        finally:
            sandboxes.close()
    except OpdError as exc:
        fail(f"Cannot replay episode {episode.id}: {exc}")
    if not report.prompt_matches:
        console.print("[red]the task prompt differs from the recorded one: the suite's task draw is not determined by the seed[/]")
    for difference in report.differences:
        console.print(f"[red]step {difference.step_index} differs[/]")
        console.print(f"  recorded: {escape(difference.recorded)}\n  replayed: {escape(difference.replayed)}")
    if report.identical:
        console.print(f"[green]identical[/]: {report.steps_replayed} steps replayed, every observation matches")
    else:
        raise typer.Exit(1)
