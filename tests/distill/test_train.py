"""The training loop end to end on tiny local models: metrics, store, checkpoints, exact resume, NaN skipping."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from tiny_models import parameters
from train_configs import tiny_train_config

from opd.agents.critic import CriticConfig
from opd.agents.self_teacher import SelfTeacherConfig
from opd.distill import train as train_module
from opd.distill.config import TrainConfig, load_config
from opd.distill.evaluate import wilson_interval
from opd.distill.losses import LossConfig
from opd.distill.train import train
from opd.errors import ConfigError
from opd.trajectories import EpisodeFilter, TrajectoryStore


def config(models: tuple[Path, Path], tmp_path: Path, **overrides) -> TrainConfig:
    return tiny_train_config(models, tmp_path, **{"updates": 4, "eval_every": 2, "eval_episodes": 4, "checkpoint_every": 2, **overrides})


@pytest.mark.slow
def test_a_run_writes_metrics_episodes_annotations_and_checkpoints(models, tmp_path: Path) -> None:
    seen = []
    result = train(config(models, tmp_path), progress=lambda update, values: seen.append(update))
    assert seen == [1, 2, 3, 4] and result.updates == 4
    lines = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [line["update"] for line in lines] == [1, 2, 3, 4]
    assert {"loss", "loss/token", "grad_norm", "rollout/success", "labelled_tokens"} <= set(lines[0])
    assert "eval/success" in lines[1] and "eval/success" not in lines[0]
    with TrajectoryStore(tmp_path / "store.db") as store:
        assert store.count_episodes(EpisodeFilter(run_id=result.run_id)) == 16
        assert store.count_episodes(EpisodeFilter(run_id=result.run_id, has_annotation="token_logprobs")) == 16
        assert result.labelled_tokens == sum(int(e.policy_mask.sum()) for b in store.iter_episodes() for e in b)
    assert sorted(p.name for p in (tmp_path / "out" / "checkpoints").iterdir()) == ["update-0000002", "update-0000004"]


@pytest.mark.slow
def test_resume_continues_exactly(models, tmp_path: Path) -> None:
    straight = train(config(models, tmp_path / "a"))
    first_half = config(models, tmp_path / "b", updates=2)
    train(first_half)  # stands in for a run killed right after its update-2 checkpoint
    resumed = train(dataclasses.replace(first_half, updates=4))
    assert resumed.updates == 4 and resumed.labelled_tokens == straight.labelled_tokens
    a, b = parameters(straight.checkpoint / "model"), parameters(resumed.checkpoint / "model")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], parameters(models[0])[k]) for k in a)  # training did change the student


@pytest.mark.slow
def test_a_non_finite_loss_is_skipped_and_counted(models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in for a fault we cannot cause on demand: the loss of every other update is NaN.
    real = train_module.student_loss
    calls = []

    def sometimes_nan(model, batch, loss_config, totals):
        calls.append(1)
        result = real(model, batch, loss_config, totals)
        return dataclasses.replace(result, loss=result.loss * float("nan")) if len(calls) % 2 else result

    monkeypatch.setattr(train_module, "student_loss", sometimes_nan)
    before = parameters(models[0])
    result = train(config(models, tmp_path, updates=2, eval_every=0, checkpoint_every=0))
    assert result.skipped_updates == 1
    after = parameters(result.checkpoint / "model")
    assert all(torch.isfinite(v).all() for v in after.values())
    assert not all(torch.equal(before[k], after[k]) for k in before)  # the finite update was applied


def test_config_files_and_typos(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("student: s\nteacher: t\nlerning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="unknown key 'lerning_rate'. Did you mean 'learning_rate'"):
        load_config(path)
    path.write_text("student: s\nteacher: t\nloss:\n  kind: step\n  divergnce: jsd\n")
    with pytest.raises(ConfigError, match="loss: unknown key 'divergnce'. Did you mean 'divergence'"):
        load_config(path)
    toml = tmp_path / "run.toml"
    toml.write_text('student = "s"\nteacher = "t"\nupdates = 7\n[loss]\nkind = "hybrid"\nhybrid_weights = {token = 1.0, episode = 0.5}\n')
    loaded = load_config(toml)
    assert loaded.updates == 7 and loaded.loss.kind == "hybrid" and dict(loaded.loss.hybrid_weights) == {"token": 1.0, "episode": 0.5}
    with pytest.raises(ConfigError, match="needs token log-probs from a teacher"):
        TrainConfig(student="s")
    with pytest.raises(ConfigError, match="needs step critiques"):
        TrainConfig(student="s", loss=LossConfig(kind="step_critique"))
    with pytest.raises(ConfigError, match="not both"):
        TrainConfig(student="s", teacher="t", self_teacher=SelfTeacherConfig())
    path.write_text("student: s\ncritic:\n  model: openai/judge\n  scor_max: 5\nloss:\n  kind: step_critique\n")
    with pytest.raises(ConfigError, match="critic: unknown key 'scor_max'. Did you mean 'score_max'"):
        load_config(path)
    path.write_text("student: s\ncritic:\n  model: openai/judge\n  api_base: http://127.0.0.1:1/v1\nloss:\n  kind: step_critique\n")
    assert load_config(path).critic == CriticConfig(model="openai/judge", api_base="http://127.0.0.1:1/v1")
    assert TrainConfig(student="s", loss=LossConfig(kind="sft")).teacher is None


def test_wilson_interval() -> None:
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and 0.1 < high < 0.2
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.404, abs=1e-3) and high == pytest.approx(0.596, abs=1e-3)


@pytest.mark.slow
def test_opd_train_and_eval_commands(models, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from opd.cli.app import app

    student, teacher = models
    path = tmp_path / "run.toml"
    path.write_text(
        f'student = "{student}"\nteacher = "{teacher}"\nsuite = "calculator"\nstore = "{tmp_path / "s.db"}"\n'
        f'output_dir = "{tmp_path / "out"}"\nupdates = 2\nepisodes_per_update = 2\neval_episodes = 2\nteacher_k = 4\n'
        f'tensorboard = true\nmax_turns = 2\n[suite_options]\ndifficulty = "easy"\n[sampling]\nmax_new_tokens = 8\n'
        f'[loss]\nkind = "step"\ndivergence = "jsd"\ndivergence_params = {{beta = 0.5}}\n'
    )
    runner = CliRunner()
    trained = runner.invoke(app, ["train", str(path)], env={"COLUMNS": "200"})
    assert trained.exit_code == 0, trained.output
    assert "done: 2 updates" in trained.output and "held-out success" in trained.output
    assert any((tmp_path / "out" / "tensorboard").iterdir())
    checkpoint = tmp_path / "out" / "checkpoints" / "update-0000002" / "model"
    evaluated = runner.invoke(app, ["eval", str(checkpoint), "--suite", "calculator", "-o", "difficulty=easy", "--episodes", "3", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["episodes"] == 3
    path.write_text(path.read_text().replace("updates = 2", "updatez = 2"))
    typo = runner.invoke(app, ["train", str(path)])
    assert typo.exit_code == 2 and "Did you mean 'updates'" in typo.output
