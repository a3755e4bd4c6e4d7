"""Real inference servers on loopback, started once per session: opd's teacher server, vLLM (teacher and student).

vLLM lives in its own virtualenv (OPD_VLLM_PYTHON, else ~/.cache/opd/venv-vllm; built by
scripts/ensure-vllm.sh, which `make test` runs), as users deploy it.
Its models are tiny Llamas with head dimension 64, the smallest vLLM's CPU attention takes: a teacher trained
here by SFT and a student start that a few OPD updates measurably improve (tests/tiny_models.py). Building them takes
about 2 minutes, so they are cached under ~/.cache/opd/engine-models (OPD_ENGINE_MODELS_DIR), keyed by their recipe's code.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tiny_models
import torch
import transformers
from servers import MAX_K, wait_for

import opd.agents.tiny
import opd.distill.sft
from opd.agents.engines import StudentEngineConfig
from opd.agents.policy import CausalLMPolicy
from opd.agents.vllm_policy import VLLMPolicy, free_port, start_vllm_server, stop_process
from opd.distill.build_cache import is_built, publish_build

REPO_ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="session")
def engine_models() -> tuple[Path, Path]:
    """(student start, teacher) of tests/tiny_models.py: one tokenizer, a student a few updates improve; built once, cached."""
    recipe = hashlib.sha256()
    for module in (tiny_models, opd.agents.tiny, opd.distill.sft):  # what builds them; versions change random initialisation
        recipe.update(Path(module.__file__).read_bytes())
    recipe.update(f"{torch.__version__} {transformers.__version__}".encode())
    root = Path(os.environ.get("OPD_ENGINE_MODELS_DIR", Path.home() / ".cache" / "opd" / "engine-models"))
    directory = root / recipe.hexdigest()[:16]
    if not is_built(directory):
        publish_build(directory, tiny_models.build_learnable_pair)  # whole or not at all, as opd demo caches its models
    return directory / "student", directory / "teacher"


@pytest.fixture(scope="session")
def vllm_python() -> str:
    """The Python of the vLLM venv; without it the test fails in CI (make test builds it) and skips elsewhere."""
    python = Path(os.environ.get("OPD_VLLM_PYTHON", Path.home() / ".cache/opd/venv-vllm/bin/python"))
    if not python.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the vLLM tests, but there is no {python}; `make test` builds it (scripts/ensure-vllm.sh).")
        pytest.skip(f"no vLLM venv at {python}; run scripts/ensure-vllm.sh (make test does)")
    return str(python)


@pytest.fixture(scope="session")
def vllm_teacher_url(vllm_python: str, engine_models: tuple[Path, Path]) -> Iterator[str]:
    """vLLM serving the teacher (OpenAI-compatible), under the teacher's path as its model name."""
    teacher = engine_models[1]
    with start_vllm_server(vllm_python, teacher, args=["--max-logprobs", str(MAX_K)], served_name=str(teacher)) as url:
        yield url


@pytest.fixture(scope="session")
def opd_teacher_url(engine_models: tuple[Path, Path]) -> Iterator[str]:
    """`opd serve-teacher TEACHER`, the real command, on a free loopback port."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "opd"), "serve-teacher", str(engine_models[1]), "--port", str(port), "--max-k", "64"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url + "/info", process)
        yield url
    finally:
        stop_process(process)


@pytest.fixture(scope="session")
def student_policy(engine_models: tuple[Path, Path]) -> CausalLMPolicy:
    return CausalLMPolicy.from_pretrained(str(engine_models[0]))


@pytest.fixture(scope="session")
def vllm_student(vllm_python: str, engine_models: tuple[Path, Path]) -> Iterator[VLLMPolicy]:
    """A vLLM engine that opd started itself with the student's weights (``backend: vllm`` without a url)."""
    policy = CausalLMPolicy.from_pretrained(str(engine_models[0]))
    with VLLMPolicy.start(policy, StudentEngineConfig(backend="vllm", python=vllm_python)) as engine:
        yield engine
