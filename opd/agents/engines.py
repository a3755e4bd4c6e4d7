"""Where the student's rollouts and the teacher's scores run: the ``inference`` section of a training config.

Three deployments, one config section (docs/training.md shows each):

- all in-process (the default): the student generates with opd's own decoding
  loop and the white-box teacher is a second transformers model;
- ``student: {backend: vllm}``: rollouts come from a vLLM engine (a server opd
  starts, or one at ``url``) that gets the trainer's weights after each update;
- ``teacher: {backend: http, urls: [...], api: opd | vllm | sglang}``: the
  teacher is served elsewhere and reached over the scoring contract.

``build_teacher`` and ``rollout_engine`` turn the section into objects
that implement ``Teacher`` and ``Policy``; the training loop sees nothing else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from typing import Literal

from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from opd.agents.http_scoring import HTTPScorer, ServerAPI
from opd.agents.policy import CausalLMPolicy
from opd.agents.protocols import Policy, Teacher
from opd.agents.scoring import LocalScorer, Scorer, ScoreRequest
from opd.agents.served_teacher import ScoringTeacher, Support
from opd.agents.teacher import WhiteBoxTeacher
from opd.errors import ConfigError

__all__ = ["InferenceConfig", "StudentEngineConfig", "TeacherEngineConfig", "build_teacher", "rollout_engine"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StudentEngineConfig:
    backend: Literal["hf", "vllm"] = "hf"  # hf: opd's decoding loop in the trainer; vllm: a vLLM engine, sent new weights per update
    url: str | None = (
        None  # vllm: an OpenAI-compatible vLLM server already running (started with VLLM_SERVER_DEV_MODE=1); None: opd starts one
    )
    weights_dir: str | None = None  # vllm with url: the model directory that server was started from, where opd writes new weights
    python: str | None = None  # vllm, url None: the Python that has vLLM installed (default: this one), e.g. .venv-vllm/bin/python
    startup_timeout_s: float = 600.0  # vllm, url None: how long the engine may take to load
    timeout_s: float = 300.0  # vllm: per generation request
    check_tolerance: float | None = 1e-3  # vllm: largest probe log-prob gap to the trainer after a push (raise for bf16); None: no check
    server_args: tuple[str, ...] = ()  # vllm, url None: extra `vllm serve` arguments, e.g. [--max-num-seqs, "64"]

    def __post_init__(self) -> None:
        if self.backend not in ("hf", "vllm"):
            raise ConfigError(f"inference.student.backend must be 'hf' or 'vllm', got {self.backend!r}.")
        object.__setattr__(self, "server_args", tuple(self.server_args))


@dataclasses.dataclass(frozen=True)
class TeacherEngineConfig:
    backend: Literal["hf", "http"] = "hf"  # hf: the teacher model in this process; http: served elsewhere, reached at urls
    urls: tuple[str, ...] = ()  # http: one URL per replica (round-robin), e.g. [http://teacher-1:8000, http://teacher-2:8000]
    api: ServerAPI = "opd"  # http: opd (`opd serve-teacher`), vllm (`vllm serve`, OpenAI-compatible) or sglang (`/generate`)
    model: str | None = None  # http: the served model name (vLLM's --served-model-name); None: the config's `teacher`
    support: Support = "teacher"  # teacher: store its top-k; student: its log-probs on the student's top-k (reverse KL's support)
    batch_size: int = 8  # http: sequences per request
    timeout_s: float = 120.0  # http: per request; a timeout is retried on the next replica
    retries: int = 2  # http: further attempts after a transport error (never after an HTTP error answer)
    replica_tolerance: float = 1e-3  # http: largest log-prob difference allowed between replicas on the start-up probe

    def __post_init__(self) -> None:
        if self.backend not in ("hf", "http"):
            raise ConfigError(f"inference.teacher.backend must be 'hf' or 'http', got {self.backend!r}.")
        if self.support not in ("teacher", "student"):
            raise ConfigError(f"inference.teacher.support must be 'teacher' or 'student', got {self.support!r}.")
        object.__setattr__(self, "urls", tuple(self.urls))
        if self.backend == "http" and not self.urls:
            raise ConfigError("inference.teacher.backend http needs urls: [http://HOST:PORT, ...] (see `opd serve-teacher`).")


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
    student: StudentEngineConfig = StudentEngineConfig()  # where rollouts are generated
    teacher: TeacherEngineConfig = TeacherEngineConfig()  # where the white-box teacher scores


@dataclasses.dataclass(frozen=True)
class BuiltTeacher:
    teacher: Teacher
    tokenizer: PreTrainedTokenizerBase  # for the preflight: the teacher's tokenizer and chat template
    scorer: Scorer  # the served path, which the preflight's bias estimate goes through
    policy: CausalLMPolicy | None  # the teacher as a policy (off-policy episodes); None when it is served
    replica_gap: float | None = None  # served: the largest log-prob difference between replicas on the probe


def build_teacher(
    name: str, config: TeacherEngineConfig, *, k: int, device: str, student: PreTrainedModel, plays_episodes: bool = False
) -> BuiltTeacher:
    """The white-box teacher ``name`` (hub name or directory) on the backend ``config`` chooses.

    ``plays_episodes``: the run has the teacher generate (offpolicy_fraction > 0), which needs its weights here.
    """
    if config.backend == "hf":
        local = WhiteBoxTeacher.from_pretrained(name, k=k, device=device)
        scorer = LocalScorer(local.model, pad_id=local.tokenizer.pad_token_id or 0)
        teacher: Teacher = (
            local if config.support == "teacher" else ScoringTeacher(scorer, name=name, k=k, support="student", student=student)
        )
        return BuiltTeacher(teacher, local.tokenizer, scorer, CausalLMPolicy(local.model, local.tokenizer, name=name))
    if plays_episodes:
        raise ConfigError(
            "offpolicy_fraction > 0 has the teacher play episodes in this process; a served teacher only scores. Set it to 0."
        )
    http = HTTPScorer(
        config.urls,
        api=config.api,
        model=config.model or name,
        batch_size=config.batch_size,
        timeout_s=config.timeout_s,
        retries=config.retries,
    )
    tokenizer = AutoTokenizer.from_pretrained(name)
    probe = tokenizer("On-policy distillation probes every replica with the same tokens.", add_special_tokens=False).input_ids
    gap = http.check_replicas(ScoreRequest(tuple(probe), 1, min(k, 8)), tolerance=config.replica_tolerance)
    logger.info("Teacher replicas %s agree on the probe within %.3g nats", ", ".join(http.urls), gap)
    teacher = ScoringTeacher(http, name=name, k=k, support=config.support, student=student)
    return BuiltTeacher(teacher, tokenizer, http, None, gap)


@contextlib.contextmanager
def rollout_engine(config: StudentEngineConfig, student: CausalLMPolicy) -> Iterator[Policy]:
    """Who plays the student's episodes: ``student`` itself, or a vLLM engine holding a copy of its weights (stopped on exit)."""
    if config.backend == "hf":
        yield student
        return
    from opd.agents.vllm_policy import VLLMPolicy  # a server process and an HTTP client; nothing to start otherwise

    with VLLMPolicy.start(student, config) as engine:
        yield engine
