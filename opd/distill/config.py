"""The training configuration: one frozen dataclass, every field documented, loadable from YAML or TOML.

Unknown keys are errors with a suggestion (``lerning_rate`` -> did you mean
``learning_rate``?), because a silently ignored typo is a wasted training run.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from opd.agents.critic import CriticConfig
from opd.agents.policy import SamplingConfig
from opd.agents.self_teacher import SelfTeacherConfig
from opd.distill.guard import GuardConfig
from opd.distill.losses import LossConfig
from opd.distill.prefix import TeacherPrefixConfig
from opd.errors import ConfigError

__all__ = ["TrainConfig", "config_to_dict", "load_config"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    student: str  # hub name or local directory of the student (a transformers causal LM with a chat template)
    teacher: str | None = None  # white-box teacher: hub name or local directory (a transformers causal LM)
    critic: CriticConfig | None = None  # black-box teacher: an API model, through litellm, that grades each step
    self_teacher: SelfTeacherConfig | None = None  # teacher-free: the student with privileged context (or its EMA) is the teacher
    suite: str = "calculator"  # a registered tool suite (`opd suites list`)
    suite_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # e.g. {"difficulty": "easy"}
    max_turns: int | None = None  # turn limit per episode; None: the suite's default
    run_name: str = "opd"  # shown in `opd episodes list` and the run record
    store: str = "runs/opd.db"  # trajectory store: a SQLite path or a database URL
    output_dir: str = "runs/train"  # checkpoints, metrics.jsonl and TensorBoard logs
    seed: int = 0  # seeds task draws, sampling and off-policy choices; every update's randomness derives from it
    updates: int = 100  # optimizer steps
    episodes_per_update: int = 32  # tasks rolled out (and annotated) per update
    samples_per_task: int = 1  # episodes per task (best of n with keep: best_success)
    keep: Literal["all", "best_success"] = "all"  # best_success: per task, only its best verified success (self-imitation)
    max_labelled_tokens: int | None = None  # stop early once the teacher has labelled this many tokens
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # gradient clipping; updates with a non-finite loss or gradient are skipped
    loss: LossConfig = LossConfig()  # what to minimise: token, step, episode, hybrid or sft
    teacher_k: int = 64  # top-k log-probs the teacher records per student token
    offpolicy_fraction: float = 0.0  # lambda: fraction of updates trained on teacher-generated episodes (GKD)
    sampling: SamplingConfig = SamplingConfig(temperature=1.0, max_new_tokens=48)  # how the student samples during training
    eval_every: int = 10  # updates between evaluations (0: only at the end)
    eval_episodes: int = 100  # held-out tasks per evaluation, played greedily
    checkpoint_every: int = 10  # updates between checkpoints (0: only at the end)
    device: str = "cpu"  # cpu, or cuda: under torchrun each process takes cuda:LOCAL_RANK
    teacher_device: str | None = None  # where the white-box teacher runs, e.g. "cuda:1"; None: beside the student
    tensorboard: bool = True  # also write TensorBoard event files beside metrics.jsonl
    teacher_prefix: TeacherPrefixConfig | None = None  # GKD-style mixing within episodes: the teacher plays the first steps
    guard: GuardConfig = GuardConfig()  # notice a held-out regression or a divergence spike; warn, stop or roll back

    def __post_init__(self) -> None:
        if self.updates < 1 or self.episodes_per_update < 1:
            raise ConfigError("updates and episodes_per_update must be at least 1.")
        if not 0.0 <= self.offpolicy_fraction <= 1.0:
            raise ConfigError(f"offpolicy_fraction must lie in [0, 1], got {self.offpolicy_fraction}.")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}.")
        if self.samples_per_task < 1 or self.keep not in ("all", "best_success"):
            raise ConfigError(
                f"samples_per_task must be at least 1 and keep 'all' or 'best_success'; got {self.samples_per_task}, {self.keep!r}."
            )
        if self.teacher is not None and self.self_teacher is not None:
            raise ConfigError("Set teacher (white-box) or self_teacher (teacher-free), not both: one source of token log-probs.")
        if self.loss.needs_logits and self.teacher is None and self.self_teacher is None:
            raise ConfigError(
                f"The {self.loss.kind!r} loss needs token log-probs from a teacher; set teacher: PATH_OR_NAME (white-box) "
                "or self_teacher: {context: answer} (teacher-free)."
            )
        if self.loss.needs_critiques and self.critic is None:
            raise ConfigError(f"The {self.loss.kind!r} loss needs step critiques; set critic: {{model: ..., api_base: ...}}.")
        if (self.offpolicy_fraction > 0 or self.teacher_prefix is not None) and self.teacher is None:
            raise ConfigError(
                "offpolicy_fraction > 0 and teacher_prefix have the white-box teacher play (steps of) episodes; set teacher: PATH_OR_NAME."
            )


def load_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Read a YAML (.yaml/.yml) or TOML (.toml) file; ``overrides`` replace top-level keys."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"No config file at {path}.")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path} is not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of settings at the top level.")
    return from_mapping(TrainConfig, {**data, **overrides}, where=str(path))


def from_mapping(cls: type, data: Mapping[str, Any], *, where: str) -> Any:
    """Build dataclass ``cls`` from ``data``, recursing into dataclass fields; unknown keys get a suggestion."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else f" Known keys: {', '.join(fields)}."
            raise ConfigError(f"{where}: unknown key {key!r}.{hint}")
    values = {}
    for key, value in data.items():
        nested = [k for k in (typing.get_args(hints[key]) or (hints[key],)) if dataclasses.is_dataclass(k)]  # X or X | None
        if nested and isinstance(value, Mapping):
            value = from_mapping(nested[0], value, where=f"{where}: {key}")
        values[key] = value
    missing = [
        name
        for name, f in fields.items()
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {missing}.")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-able dict of a config (for the run record and checkpoints)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, types.MappingProxyType):
        return dict(value)
    return str(value)
