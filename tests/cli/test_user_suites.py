"""A suite in a separate package, trained and evaluated through the plain ``opd`` command and under ``torchrun``.

The package lives on a temporary path (no pip, no venv): ``opd suites list`` finds
it through its ``opd.suites`` entry point, ``torchrun -m opd train`` through the
config key ``suites.modules`` (a path relative to the config file, imported on
every rank), and ``opd eval`` through the ``OPD_SUITES`` search path. Its task set
is fixed, so training draws from the train split and evaluation from the eval
split; no evaluated task id is ever trained on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import throwaway_suite
import yaml
from suite_registry import restored_suite_registry
from typer.testing import CliRunner

from opd.agents.tiny import build_tiny_model, build_word_tokenizer, expert_texts
from opd.cli.app import app
from opd.envs import ToolEnv, make_suite, plugins
from opd.envs.plugins import import_suite_module
from opd.envs.splits import TaskSplit
from opd.trajectories import EpisodeFilter, TrajectoryStore

REPO_ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package under ``pkg/`` and tiny models for its suite under ``run/models``; nothing left registered here."""
    root = tmp_path_factory.mktemp("user-suite")
    throwaway_suite.install(root / "pkg")
    with restored_suite_registry():
        import_suite_module(str(root / "pkg" / throwaway_suite.PACKAGE))
        tokenizer = build_word_tokenizer(
            expert_texts(ToolEnv(throwaway_suite.SUITE), 40), root / "run" / "models" / "student", numbers=range(0, 120)
        )
    build_tiny_model(tokenizer, root / "run" / "models" / "student", layers=1, hidden=16, heads=2, seed=0)
    build_tiny_model(tokenizer, root / "run" / "models" / "teacher", layers=1, hidden=16, heads=2, seed=1)
    return root


def opd(*argv: str, env: dict[str, str] | None = None, launcher: tuple[str, ...] = ()) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "PYTHONPATH", plugins.PATH_VARIABLE)}
    done = subprocess.run(
        [sys.executable, *launcher, "-m", "opd", *argv], env={**clean, "COLUMNS": "200", **(env or {})},
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_suites_list_train_under_torchrun_and_eval(workspace: Path) -> None:
    listed = opd("suites", "list", env={"PYTHONPATH": str(workspace / "pkg")})  # the entry point
    assert "prices" in listed and "opd/Prices-v0" in listed and "a user's suite" in listed

    config = workspace / "run" / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "student": "models/student", "teacher": "models/teacher", "suite": "prices",
                "suites": {"modules": [f"../pkg/{throwaway_suite.PACKAGE}"]},  # relative to this file
                "store": "store.db", "output_dir": "out", "updates": 2, "episodes_per_update": 4, "eval_every": 0,
                "eval_episodes": 4, "checkpoint_every": 0, "teacher_k": 4, "max_turns": 3,
                "sampling": {"max_new_tokens": 10}, "tensorboard": False,
            }
        )
    )  # fmt: skip
    torchrun = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")
    trained = opd("train", str(config), launcher=torchrun)  # run from the repository root: paths come from the config's folder
    assert "done: 2 updates" in trained

    with TrajectoryStore(workspace / "run" / "store.db", create=False) as store:
        (run,) = [r for r in store.runs() if "splits" in r.config]  # the training run (evaluations may be runs of their own)
        trained_ids = {e.task_id for batch in store.iter_episodes(EpisodeFilter(run_id=run.id)) for e in batch}
        assert run.config["splits"] == {"train": "train", "eval": "eval"} and run.config["world_size"] == 2
        evaluated = {e.task_id for r in store.runs() if r.id != run.id for b in store.iter_episodes(EpisodeFilter(run_id=r.id)) for e in b}
    suite = make_suite_from(workspace)
    eval_ids = {t.id for t in suite.tasks.tasks if TaskSplit().split_of(t) == "eval"}
    assert len(trained_ids) >= 4 and eval_ids and not trained_ids & eval_ids
    assert evaluated <= eval_ids  # stored evaluation episodes, where there are any, come from the eval split only

    checkpoint = workspace / "run" / "out" / "checkpoints" / "update-0000002" / "model"
    result = opd(
        "eval", str(checkpoint), "--suite", "prices", "--episodes", "3", "--json", env={plugins.PATH_VARIABLE: str(workspace / "pkg")}
    )
    assert {k: json.loads(result)[k] for k in ("episodes", "split")} == {"episodes": 3, "split": "eval"}


def make_suite_from(workspace: Path):
    """The user's suite, imported here only to read its task list (then unregistered again)."""
    with restored_suite_registry():
        import_suite_module(str(workspace / "pkg" / throwaway_suite.PACKAGE))
        return make_suite(throwaway_suite.SUITE)


def test_the_import_option_and_typed_suite_options(tmp_path: Path) -> None:
    throwaway_suite.install(tmp_path, entry_point=False)
    runner = CliRunner()
    with restored_suite_registry():
        shown = runner.invoke(app, ["-I", str(tmp_path / throwaway_suite.PACKAGE), "suites", "show", "prices", "--split", "eval"])
    assert shown.exit_code == 0, shown.output
    assert '"name": "price"' in shown.output and "sample task p" in shown.output
    typed = runner.invoke(app, ["suites", "play", "calculator", "-o", "max_value=20", "-o", "difficulty=easy", "--episodes", "1"])
    assert typed.exit_code == 0, typed.output  # max_value reaches the suite as the int 20, not the text "20"
    bad = runner.invoke(app, ["-I", str(tmp_path / "missing.py"), "suites", "list"])
    assert bad.exit_code == 2 and "no file or directory at" in bad.output
