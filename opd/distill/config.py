"""The training configuration: one frozen, validated config, every field documented, loadable from YAML or TOML.

``TrainConfig`` is a pydantic dataclass: every field, nested sections
included, is checked by type and range when the config is built, and text
that means a number (``1e-3``, which YAML 1.1 reads as a string, or ``"20"``)
is read as that number. A bad value is reported with the file, the key path,
what was expected, what came and how to fix it; unknown keys and enumerated
values get a suggestion (``lerning_rate`` -> did you mean ``learning_rate``?),
because a silently ignored typo is a wasted training run.

A new section is one frozen dataclass (stdlib or pydantic) or pydantic model
in its own module and one field here; pydantic validates it from a mapping and
:func:`config_to_dict` serializes it, with no further code in this module.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from opd.agents.critic import CriticConfig
from opd.agents.engines import InferenceConfig
from opd.agents.policy import SamplingConfig
from opd.agents.routing import RoutingConfig
from opd.agents.self_teacher import SelfTeacherConfig
from opd.distill.config_errors import describe_validation_error, raising_config_errors
from opd.distill.guard import GuardConfig
from opd.distill.losses import LossConfig
from opd.distill.offline import ReplayConfig
from opd.distill.prefix import TeacherPrefixConfig
from opd.distill.suites import SuitesConfig, resolve_config_paths
from opd.envs.lending import SandboxConfig
from opd.errors import ConfigError

__all__ = ["TrainConfig", "apply_overrides", "config_to_dict", "load_config", "parse_overrides", "recorded_config"]

AtLeastOne = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]

# extra="forbid": an unknown key is an error, in nested stdlib-dataclass sections too (they take this config).
_STRICT = ConfigDict(extra="forbid")


@raising_config_errors
@pydantic_dataclass(frozen=True, config=_STRICT)
class TrainConfig:
    student: str  # hub name or local directory of the student (a transformers causal LM with a chat template)
    teacher: str | None = None  # white-box teacher: hub name or local directory (a transformers causal LM)
    critic: CriticConfig | None = None  # black-box teacher: an API model, through litellm, that grades each step
    self_teacher: SelfTeacherConfig | None = None  # teacher-free: the student with privileged context (or its EMA) is the teacher
    suite: str = "calculator"  # a registered tool suite (`opd suites list`)
    suite_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # e.g. {"difficulty": "easy"}
    suites: SuitesConfig = SuitesConfig()  # user suite modules to import, and whether to train/evaluate on task splits
    max_turns: AtLeastOne | None = None  # turn limit per episode; None: the suite's default
    # How the models write tool calls: auto (from the student's chat template), or a name from opd.envs.CALL_FORMATS.
    tool_call_format: Literal["auto", "hermes", "llama3_json"] = "auto"
    run_name: str = "opd"  # shown in `opd runs list`, `opd episodes list` and the run record
    store: str = "runs/opd.db"  # trajectory store: a SQLite path or a database URL
    output_dir: str = "runs/train"  # checkpoints, metrics.jsonl and TensorBoard logs
    seed: int = 0  # seeds task draws, sampling and off-policy choices; every update's randomness derives from it
    updates: AtLeastOne = 100  # optimizer steps
    episodes_per_update: AtLeastOne = 32  # tasks rolled out (and annotated) per update
    samples_per_task: AtLeastOne = 1  # episodes per task (best of n with keep: best_success)
    keep: Literal["all", "best_success"] = "all"  # best_success: per task, only its best verified success (self-imitation)
    max_labelled_tokens: AtLeastOne | None = None  # stop early once the teacher has labelled this many tokens
    learning_rate: Positive = 1e-3
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    max_grad_norm: Positive = 1.0  # gradient clipping; updates with a non-finite loss or gradient are skipped
    loss: LossConfig = LossConfig()  # what to minimise: token, step, episode, hybrid or sft
    teacher_k: AtLeastOne = 64  # top-k log-probs the teacher records per student token
    offpolicy_fraction: Fraction = 0.0  # lambda: fraction of updates trained on teacher-generated episodes (GKD)
    sampling: SamplingConfig = SamplingConfig(temperature=1.0, max_new_tokens=48)  # how the student samples during training
    eval_every: NonNegative = 10  # updates between evaluations (0: only at the end)
    eval_episodes: AtLeastOne = 100  # held-out tasks per evaluation, played greedily
    checkpoint_every: NonNegative = 10  # updates between checkpoints (0: only at the end)
    device: str = "cpu"  # cpu, or cuda: under torchrun each process takes cuda:LOCAL_RANK
    teacher_device: str | None = None  # where the white-box teacher runs, e.g. "cuda:1"; None: beside the student
    tensorboard: bool = True  # also write TensorBoard event files beside metrics.jsonl
    replay: ReplayConfig | None = None  # batches from the trajectory store, alone (ratio 1) or mixed with rollouts (docs/training.md)
    routing: RoutingConfig | None = None  # route each step between `teacher` (the default) and further teachers (docs/training.md)
    sandbox: SandboxConfig = SandboxConfig()  # where tools run: backend (auto/local/docker), image, engine, pool size, per-call limits
    inference: InferenceConfig = InferenceConfig()  # where rollouts and teacher scores run: in-process, vLLM, a served teacher
    teacher_prefix: TeacherPrefixConfig | None = None  # GKD-style mixing within episodes: the teacher plays the first steps
    guard: GuardConfig = GuardConfig()  # notice a held-out regression or a divergence spike; warn, stop or roll back

    def __post_init__(self) -> None:
        # Checks across fields; each field alone was validated by its type before this runs.
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


_ADAPTER = TypeAdapter(TrainConfig)


def load_config(path: str | Path, *, settings: Sequence[str] = (), **overrides: Any) -> TrainConfig:
    """Read a YAML (.yaml/.yml) or TOML (.toml) file.

    ``settings`` are command-line overrides (``"loss.kind=step"``, values read as YAML) merged into
    the file's sections; ``overrides`` replace whole top-level keys. Relative paths in the file are
    relative to the file (see ``resolve_config_paths``); those of overrides to the working directory.
    """
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
    where = f"{path} (with {' '.join(settings)})" if settings else str(path)
    data = resolve_config_paths(data, path.parent.resolve())
    return from_mapping(apply_overrides({**data, **overrides}, parse_overrides(settings)), where=where)


def from_mapping(data: Mapping[str, Any], *, where: str) -> TrainConfig:
    """Validate ``data`` into a :class:`TrainConfig`; every problem becomes one line of a :class:`ConfigError`."""
    try:
        return _ADAPTER.validate_python(dict(data))
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, TrainConfig, where=where)) from None


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["loss.kind=step", "learning_rate=1e-3"]`` -> ``{"loss": {"kind": "step"}, "learning_rate": "1e-3"}``.

    Values are read as YAML (``null``, ``true``, ``{difficulty: easy}``); numbers written as text are
    converted by the config's validation, as in a file.
    """
    nested: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"An override is KEY=VALUE with KEY a dotted path (loss.kind=step); got {item!r}.")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"The value of override {item!r} is not valid YAML: {exc}") from None
        *parents, leaf = key.split(".")
        section = nested
        for part in parents:
            section = section.setdefault(part, {})
            if not isinstance(section, dict):
                raise ConfigError(f"Override {item!r} sets a key inside {part!r}, which another override set to a value.")
        section[leaf] = value
    return nested


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with ``overrides`` merged in: a mapping merges into the section it names, anything else replaces."""
    merged = dict(data)
    for key, value in overrides.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = apply_overrides(current, value)
        else:
            merged[key] = value
    return merged


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-able dict of a config (for the run record and checkpoints); nested sections of any kind are serialized."""
    return TypeAdapter(type(config)).dump_python(config, mode="json")


def recorded_config(config: TrainConfig) -> dict[str, Any]:
    """The config as a run and its checkpoints record it: local paths made absolute, so that the viewer and
    ``opd eval`` find the models and the store from any directory."""
    recorded = config_to_dict(config)
    for key in ("student", "teacher", "store", "output_dir"):
        value = recorded[key]
        local = key in ("store", "output_dir") or (value is not None and Path(value).expanduser().exists())
        if value is not None and local and "://" not in value:
            recorded[key] = str(Path(value).expanduser().resolve())
    return recorded
