"""The ``opd`` typer app: one module per command group, assembled here."""

from __future__ import annotations

import logging

import typer

from opd import __version__
from opd.cli import annotate, bootstrap, branch, demo, episodes, evaluation, runs, sandbox, serve, suites, sweep, train, view
from opd.cli.options import load_suite_modules
from opd.cli.quiet import quiet_libraries

app = typer.Typer(
    name="opd",
    help="Agent-level on-policy distillation: train a small tool-using agent on a teacher's feedback.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.command("demo")(demo.demo)
app.command("bootstrap")(bootstrap.bootstrap)
app.command("train")(train.train_command)
app.command("eval")(evaluation.eval_command)
app.command("sweep")(sweep.sweep_command)
app.command("view")(view.view)
app.command("serve-teacher")(serve.serve_teacher)
app.command("annotate")(annotate.annotate_command)
app.command("branch")(branch.branch_command)
app.add_typer(suites.app, name="suites")
app.add_typer(runs.app, name="runs")
app.add_typer(episodes.app, name="episodes")
app.add_typer(sandbox.app, name="sandbox")


@app.command("version")
def version() -> None:
    """Print the installed opd version."""
    typer.echo(__version__)


@app.callback()
def configure(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages (and let libraries speak)."),
    imports: list[str] = typer.Option(
        [], "--import", "-I", help="Import a suite module or file first (repeatable), e.g. -I shop_suites or -I suites/shop.py."
    ),
) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        quiet_libraries()
    if imports:
        load_suite_modules(imports)


def main() -> None:
    app()
