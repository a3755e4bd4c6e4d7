"""Config validation, overrides, checks before loading and resume decisions: no model is loaded here."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal

import pydantic
import pytest
from pydantic.dataclasses import dataclass as pydantic_dataclass

from opd.distill.checks import check_before_loading
from opd.distill.config import TrainConfig, config_to_dict, from_mapping, load_config
from opd.distill.config_errors import raising_config_errors
from opd.distill.metrics import MetricsWriter
from opd.distill.resume import ResumeConflictError, resumable_checkpoint, starting_checkpoint
from opd.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text("student: s\nteacher: t\n" + text)
    return path


def test_numbers_written_as_yaml_reads_them_are_numbers(tmp_path: Path) -> None:
    # YAML 1.1 reads 1e-3 as the string "1e-3"; it used to fail with "'<=' not supported between str and int".
    loaded = load_config(write(tmp_path, 'learning_rate: 1e-3\nupdates: "20"\nsampling:\n  temperature: "0.5"\n'))
    assert loaded.learning_rate == 0.001 and loaded.updates == 20 and loaded.sampling.temperature == 0.5


def test_errors_name_the_file_the_key_the_expected_the_received_and_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path, "learning_rate: fast\nupdates: 0\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    lines = str(caught.value).splitlines()
    assert sorted(lines) == [
        f"{path}: learning_rate: expected a valid number; got 'fast'. Fix: set learning_rate to a valid number.",
        f"{path}: updates: expected a number greater than or equal to 1; got 0. Fix: set updates to a number greater than or equal to 1.",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("loss:\n  kind: stpe\n", "loss.kind: expected one of 'token', 'step',"),
        ("keep: best\n", "keep: expected one of 'all', 'best_success'; got 'best'. Did you mean 'best_success'?"),
        ("loss:\n  divergence: revrse_kl\n", "loss: divergence: Unknown divergence 'revrse_kl'. Did you mean 'reverse_kl'?"),
        ("loss:\n  episode_return: outcom\n", "Did you mean 'outcome'?"),
        ("self_teacher:\n  context: answr\n", "Did you mean 'answer'?"),
        ("sampling:\n  temprature: 0.5\n", "sampling: unknown key 'temprature'. Did you mean 'temperature'?"),
    ],
)
def test_every_enumerated_value_and_key_gets_did_you_mean(tmp_path: Path, text: str, message: str) -> None:
    if "self_teacher" in text:
        text = text.replace("self_teacher", "teacher: null\nself_teacher")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="^" + str(path).replace("\\", "\\\\")) as caught:
        load_config(path)
    assert message in str(caught.value)
    if "kind" in text:
        assert "Did you mean 'step'?" in str(caught.value)


def test_command_line_overrides_merge_into_sections(tmp_path: Path) -> None:
    path = write(tmp_path, "loss:\n  kind: token\n  divergence: jsd\nsuite_options:\n  difficulty: easy\n")
    loaded = load_config(path, settings=["loss.kind=step", "learning_rate=1e-3", "suite_options.prompt_style=terse", "max_turns=null"])
    assert loaded.loss.kind == "step" and loaded.loss.divergence == "jsd" and loaded.learning_rate == 0.001
    assert dict(loaded.suite_options) == {"difficulty": "easy", "prompt_style": "terse"} and loaded.max_turns is None
    with pytest.raises(ConfigError, match=r"\(with loss.kind=stp\): loss.kind: .*Did you mean 'step'"):
        load_config(path, settings=["loss.kind=stp"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(path, settings=["loss.kind"])


def test_configs_survive_the_round_trip_and_replace_is_validated() -> None:
    config = TrainConfig(student="s", teacher="t", suite_options={"difficulty": "easy"})
    assert from_mapping(json.loads(json.dumps(config_to_dict(config))), where="x") == config
    assert dataclasses.replace(config, updates=3).updates == 3
    with pytest.raises(ConfigError, match="offpolicy_fraction: expected a number less than or equal to 1"):
        dataclasses.replace(config, offpolicy_fraction=2)


@dataclasses.dataclass(frozen=True)
class PlainSection:
    rate: float = 1.0  # a stdlib frozen dataclass section, as another module would define it
    mode: Literal["fast", "slow"] = "fast"


class ModelSection(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")  # a pydantic model forbids unknown keys itself
    retries: int = 2


@raising_config_errors
@pydantic_dataclass(frozen=True, config=pydantic.ConfigDict(extra="forbid"))
class WithSections:
    plain: PlainSection = PlainSection()
    model: ModelSection = ModelSection()


def test_new_sections_of_either_kind_are_validated_and_serialized() -> None:
    built = WithSections(plain={"rate": "2e-1", "mode": "slow"}, model={"retries": "3"})
    assert built.plain == PlainSection(0.2, "slow") and built.model.retries == 3
    assert config_to_dict(built) == {"plain": {"rate": 0.2, "mode": "slow"}, "model": {"retries": 3}}
    with pytest.raises(ConfigError, match="plain.mode: expected one of 'fast', 'slow'; got 'slwo'. Did you mean 'slow'?"):
        WithSections(plain={"mode": "slwo"})
    with pytest.raises(ConfigError, match="plain: unknown key 'rat'. Did you mean 'rate'?"):
        WithSections(plain={"rat": 1})
    with pytest.raises(ConfigError, match="model: unknown key 'retrys'. Did you mean 'retries'?"):
        WithSections(model={"retrys": 1})


def test_checks_before_loading_give_one_line_per_problem(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "store.db").write_text("not sqlite at all, just text that is long enough to be read as a header")
    config = TrainConfig(
        student=str(tmp_path / "missing-student"), teacher=str(tmp_path / "empty"), suite="calculatr",
        output_dir=str(tmp_path / "not-a-dir"), store=str(tmp_path / "store.db"),
    )  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        check_before_loading(config, where="run.yaml")
    lines = str(caught.value).splitlines()
    assert len(lines) == 5 and all(line.startswith("run.yaml: ") for line in lines)
    assert "suite: Unknown tool suite 'calculatr'. Did you mean 'calculator'?" in lines[0]
    assert "output_dir:" in lines[1] and "is a file" in lines[1]
    assert lines[2].startswith("run.yaml: store:")
    assert f"student: no model directory at {tmp_path / 'missing-student'}" in lines[3]
    assert "teacher:" in lines[4] and "not a model directory (no config.json)" in lines[4]
    with pytest.raises(ConfigError, match="suite_options: .*difficulty|suite: .*difficulty"):
        check_before_loading(TrainConfig(student="s", teacher="t", suite_options={"difficulty": "impossible"}, output_dir=str(tmp_path)))


def test_an_unreachable_hub_name_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # this machine has no hub access either way
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    config = TrainConfig(student="nobody-here/no-such-model", teacher="t", output_dir=str(tmp_path / "out"), store=str(tmp_path / "s.db"))
    with pytest.raises(ConfigError) as caught:
        check_before_loading(config)
    (line,) = [line for line in str(caught.value).splitlines() if "student" in line]
    assert "nobody-here/no-such-model is neither a local directory nor a reachable hub model" in line


def fake_checkpoint(output: Path, update: int, config: dict) -> Path:
    """A checkpoint's bookkeeping files (weights are not read by the resume decision)."""
    checkpoint = output / "checkpoints" / f"update-{update:07d}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "state.json").write_text(json.dumps({"update": update}))
    (checkpoint / "config.json").write_text(json.dumps(config))
    return checkpoint


def test_resume_refuses_a_config_that_matters_and_fresh_archives(tmp_path: Path) -> None:
    output = tmp_path / "out"
    before = config_to_dict(TrainConfig(student="s", teacher="t", output_dir=str(output)))
    checkpoint = fake_checkpoint(output, 4, before)
    longer = {**before, "updates": 200, "eval_every": 5}  # how long and how often: free to change
    assert resumable_checkpoint(output, longer) == checkpoint
    changed = {**before, "learning_rate": 0.01, "loss": {**before["loss"], "kind": "step"}}
    with pytest.raises(ResumeConflictError, match=r"learning_rate: 0.001 -> 0.01; loss.kind: 'token' -> 'step'.*--fresh.*--force"):
        resumable_checkpoint(output, changed)
    assert resumable_checkpoint(output, changed, force=True) == checkpoint
    assert starting_checkpoint(output, changed, resume=False, force=False) is None
    (archived,) = tmp_path.glob("out.archived-*")
    assert (archived / "checkpoints" / "update-0000004" / "state.json").is_file() and not output.exists()


def test_metrics_keep_one_row_per_update_across_resumes(tmp_path: Path) -> None:
    first = MetricsWriter(tmp_path, tensorboard=False)
    for update in (1, 2, 3):  # a run checkpointed at 2, then stopped after 3
        first.write(update, {"loss": float(update)})
    first.close()
    with (tmp_path / "metrics.jsonl").open("a") as file:
        file.write('{"update": 4, "lo')  # the run was killed while writing
    resumed = MetricsWriter(tmp_path, tensorboard=False, resumed_at=2)
    for update in (3, 4):
        resumed.write(update, {"loss": 10.0 + update})
    resumed.close()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["update"], r["loss"]) for r in rows] == [(1, 1.0), (2, 2.0), (3, 13.0), (4, 14.0)]
