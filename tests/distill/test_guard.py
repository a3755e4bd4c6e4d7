"""The regression guard: regressions beyond the interval and loss spikes are flagged; stop ends the run; rollback restores the best."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from tiny_models import parameters
from train_configs import tiny_train_config
from transformers import AutoModelForCausalLM, AutoTokenizer

from opd.distill import train as train_module
from opd.distill.config import TrainConfig, load_config
from opd.distill.evaluate import EvalResult, wilson_interval
from opd.distill.guard import Guard, GuardConfig, regressed
from opd.distill.train import train
from opd.errors import ConfigError


def result(successes: int, episodes: int = 100) -> EvalResult:
    return EvalResult(episodes, successes, successes / episodes, *wilson_interval(successes, episodes))


def test_a_drop_counts_as_a_regression_only_beyond_the_interval() -> None:
    assert regressed(result(60), result(40))  # 60% lies above 40%'s interval [31%, 50%]
    assert not regressed(result(60), result(52))  # within noise of 100 episodes
    assert not regressed(result(60), result(70))


def test_a_loss_far_above_the_recent_median_is_a_spike() -> None:
    guard = Guard(GuardConfig(spike_factor=4.0), Path("unused"))
    flags = [guard.after_update(u, loss)["guard/spike"] for u, loss in enumerate([1.0, 1.2, 0.9, 1.1, 9.0, 1.0, float("nan")])]
    assert flags == [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="guard.action"):
        GuardConfig(action="panic")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="spike_factor"):
        GuardConfig(spike_factor=0.5)


def test_rollback_restores_the_best_weights_and_optimizer(models, tmp_path: Path) -> None:
    student, _ = models
    model, tokenizer = AutoModelForCausalLM.from_pretrained(student), AutoTokenizer.from_pretrained(student)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    guard = Guard(GuardConfig(action="rollback", patience=2), tmp_path / "best")
    assert guard.after_eval(0, result(60), model, tokenizer, optimizer)["guard/best_success"] == 0.6
    best = {k: v.clone() for k, v in model.state_dict().items()}
    model(input_ids=torch.tensor([[1, 2, 3]])).logits.sum().backward()
    optimizer.step()  # the weights move away from the best
    first = guard.after_eval(2, result(30), model, tokenizer, optimizer)
    assert first["guard/regression"] == 1.0 and first["guard/rolled_back"] == 0.0  # patience 2: one strike warns only
    assert not all(torch.equal(best[k], v) for k, v in model.state_dict().items())
    second = guard.after_eval(4, result(30), model, tokenizer, optimizer)
    assert second["guard/rolled_back"] == 1.0 and guard.rollbacks == 1
    assert all(torch.equal(best[k], v) for k, v in model.state_dict().items())
    assert optimizer.state_dict()["state"] == {}  # the optimizer as it was at the best evaluation: before any step
    assert json.loads((tmp_path / "best" / "best.json").read_text())["update"] == 0


def test_a_warned_regression_names_the_usual_cure(models, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    student, _ = models
    model, tokenizer = AutoModelForCausalLM.from_pretrained(student), AutoTokenizer.from_pretrained(student)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    guard = Guard(GuardConfig(action="warn"), tmp_path / "best")
    guard.after_eval(0, result(60), model, tokenizer, optimizer)
    with caplog.at_level(logging.WARNING, logger="opd"):
        assert guard.after_eval(3, result(30), model, tokenizer, optimizer)["guard/regression"] == 1.0
    assert "regressed at update 3" in caplog.text and "lower learning_rate" in caplog.text and "rollback" in caplog.text


def config(models: tuple[Path, Path], tmp_path: Path, **overrides) -> TrainConfig:
    return tiny_train_config(models, tmp_path, **{"updates": 4, "eval_every": 1, "eval_episodes": 4, "learning_rate": 0.05, **overrides})


def metrics(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_the_default_guard_measures_the_start_and_reports_every_update(models, tmp_path: Path) -> None:
    train(config(models, tmp_path, updates=2))
    lines = metrics(tmp_path)
    assert all({"guard/spike", "guard/regression", "guard/best_success"} <= set(line) for line in lines)
    # The random tiny student never beats its start, so the bar stays the evaluation made before update 1.
    assert json.loads((tmp_path / "out" / "best" / "best.json").read_text())["update"] == 0
    assert lines[-1]["guard/best_update"] == 0.0
    assert not (tmp_path / "out" / "best" / "model.safetensors").exists()  # warn keeps no weights


@pytest.fixture
def dropping_evaluations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Evaluations that fall from 100% to 0% after the start.

    A test double: the tiny random models here succeed at nothing, so a real held-out
    regression cannot be caused; benchmarks/stability.py measures real ones on the demo's models.
    """
    calls = []

    def fake(policy, suite, **kwargs):  # noqa: ANN001, ANN202
        calls.append(suite)
        n = kwargs["episodes"]
        return (result(n, n) if len(calls) == 1 else result(0, n)), []

    monkeypatch.setattr(train_module, "evaluate", fake)


@pytest.mark.slow
def test_stop_ends_the_run_at_the_first_regression(models, tmp_path: Path, dropping_evaluations) -> None:
    outcome = train(config(models, tmp_path, guard=GuardConfig(action="stop")))
    assert outcome.updates == 1 and [line["guard/regression"] for line in metrics(tmp_path)] == [1.0]
    assert (tmp_path / "out" / "checkpoints" / "update-0000001").is_dir()  # the stopped run's state is kept


@pytest.mark.slow
def test_rollback_returns_the_start_weights(models, tmp_path: Path, dropping_evaluations) -> None:
    outcome = train(config(models, tmp_path, updates=2, guard=GuardConfig(action="rollback")))
    assert [line["guard/rolled_back"] for line in metrics(tmp_path)] == [1.0, 1.0]
    assert outcome.final_eval.success_rate == 1.0  # the final student is the best one, the start
    start, final = parameters(models[0]), parameters(outcome.checkpoint / "model")
    assert all(torch.equal(start[k], final[k]) for k in start)


def test_the_guard_section_loads_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("student: s\nteacher: t\nguard:\n  action: rollback\n  patience: 2\n")
    assert load_config(path).guard == GuardConfig(action="rollback", patience=2)
