"""``opd eval MODEL``: a policy's greedy success on held-out tasks, stored as a run of its own.

Given a checkpoint, the evaluation uses the suite, suite options and turn limit
the run trained with (recorded in the checkpoint), so ``opd eval CHECKPOINT``
reproduces the figure training reported; ``--suite``, ``-o`` and
``--max-turns`` override them. ``-o`` values are read as YAML, so
``-o max_value=99`` is the number 99. A suite whose task set is split is
evaluated on its eval split unless ``--split`` asks for another; the user suite
modules the run imported (``suites.modules``) are imported again.
"""

from __future__ import annotations

import json

import typer

from opd.cli.options import SPLIT_HELP, SUITE_OPTION, default_split, load_suite_modules, parse_options
from opd.cli.render import console, fail
from opd.errors import OpdError


def eval_command(
    model: str = typer.Argument(..., help="Checkpoint directory (runs/train/checkpoints/update-...) or hub name of the policy."),
    suite: str = typer.Option(None, help="Registered tool suite (default: the checkpoint's, else calculator)."),
    option: list[str] = SUITE_OPTION,
    split: str = typer.Option(None, help=SPLIT_HELP),
    episodes: int = typer.Option(None, min=1, help="Held-out tasks to play (default: the run's eval_episodes, else 100)."),
    max_turns: int = typer.Option(None, min=1, help="Turn limit (default: the checkpoint's, else the suite's)."),
    store: str = typer.Option(None, "--store", "-s", help="Store the episodes as an evaluation run here (default: the run's store)."),
    no_store: bool = typer.Option(False, "--no-store", help="Do not store the episodes."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    sandbox: str = typer.Option(None, help="Where tools run: auto (docker for suites that run model code), local or docker."),
    sandbox_image: str = typer.Option(None, help="Docker sandbox image (default: the suite's, as `docker compose build` tags it)."),
    docker_host: str = typer.Option(None, help="Docker Engine URL, e.g. tcp://host:2376 (default: DOCKER_HOST or the local socket)."),
    sandboxes: int = typer.Option(None, min=1, help="Docker sandboxes to play on at once (from `docker compose up -d` first)."),
    timeout: float = typer.Option(None, min=0.001, help="Per tool call: seconds before the command and its children are killed."),
) -> None:
    """Measure a policy's greedy success rate on held-out tasks, with a 95% confidence interval.

    The sandbox options default to the checkpoint's ``sandbox:`` section, else to ``auto`` with 4 sandboxes and 10 s per call.
    """
    from opd.agents.policy import CausalLMPolicy
    from opd.distill.evaluate import evaluate
    from opd.distill.evaluation_runs import evaluation_run, store_evaluation, trained_model
    from opd.envs.lending import SandboxConfig
    from opd.trajectories import default_store_location, new_id

    trained = trained_model(model)
    load_suite_modules(list((trained.config.get("suites") or {}).get("modules") or ()))  # the run's own suite modules
    suite = suite or trained.config.get("suite") or "calculator"
    options = {**(trained.config.get("suite_options") or {}), **parse_options(option)}
    max_turns = max_turns if max_turns is not None else trained.config.get("max_turns")
    episodes = episodes or trained.config.get("eval_episodes") or 100
    where = None if no_store else store or trained.config.get("store") or default_store_location()
    run_id = new_id()
    chosen = {"backend": sandbox, "image": sandbox_image, "base_url": docker_host, "size": sandboxes, "timeout_s": timeout}
    try:
        split = default_split(suite, options, split)
        options = {**options, **({"split": split} if split != "all" else {})}
        where_tools_run = SandboxConfig(**{**(trained.config.get("sandbox") or {}), **{k: v for k, v in chosen.items() if v is not None}})
        policy = CausalLMPolicy.from_pretrained(trained.weights)
        result, played = evaluate(
            policy, suite, suite_options=options, episodes=episodes, max_turns=max_turns, run_id=run_id, sandbox=where_tools_run
        )
        if where is not None:
            label = trained.config.get("run_name") or model
            run = evaluation_run(
                result,
                model=model,
                label=label,
                evaluates_run=trained.run_id,
                suite=suite,
                options=options,
                max_turns=max_turns,
                run_id=run_id,
            )
            store_evaluation(where, run, played)
    except (OpdError, OSError) as exc:
        fail(str(exc))
    if as_json:
        summary = {"success_rate": result.success_rate, "ci_low": result.ci_low, "ci_high": result.ci_high, "episodes": result.episodes}
        typer.echo(
            json.dumps({**summary, "run_id": run_id, "suite": suite, "suite_options": options, "max_turns": max_turns, "split": split})
        )
        return
    shown = ", ".join(f"{k}={v}" for k, v in options.items())
    console.print(
        f"{model} on {suite}{f' ({shown})' if shown else ''}: success {result.describe()}, mean reward {result.mean_reward:.3f}",
        soft_wrap=True,
    )
    if where is not None:
        console.print(f"stored as evaluation run {run_id[:8]} in {where}", soft_wrap=True)
