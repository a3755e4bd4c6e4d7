from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from tiny_models import OPTIONS
from trajectory_factories import make_episode

from opd.agents.tiny import build_tiny_model, build_word_tokenizer, expert_texts
from opd.envs import ToolEnv
from opd.trajectories import Run

V37 = 37  # a vocabulary small enough that k = V is cheap


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny student and teacher (1 layer) with one word-level tokenizer, saved as hub models would be."""
    directory = tmp_path_factory.mktemp("train-models")
    env = ToolEnv("calculator", **OPTIONS)
    texts = expert_texts(env, 50)
    tokenizer = build_word_tokenizer(texts, directory / "student", numbers=range(-150, 1730))
    build_tiny_model(tokenizer, directory / "student", layers=1, hidden=16, heads=2, seed=0)
    build_tiny_model(tokenizer, directory / "teacher", layers=1, hidden=32, heads=2, seed=1)
    return directory / "student", directory / "teacher"


@pytest.fixture(scope="module")
def v37_models(tmp_path_factory):
    """A teacher and a student over one 37-token word-level vocabulary (18 numbers, 5 role words, a space, 13 specials)."""
    directory = tmp_path_factory.mktemp("v37")
    tokenizer = build_word_tokenizer([], directory, numbers=range(18))
    assert len(tokenizer) == V37
    teacher = build_tiny_model(tokenizer, directory / "teacher", layers=1, hidden=16, heads=2, seed=1)
    student = build_tiny_model(tokenizer, directory / "student", layers=1, hidden=16, heads=2, seed=2)
    return tokenizer, teacher, student


@pytest.fixture(scope="module")
def v37_episode():
    """Two steps of 12 prompt + 5 policy tokens, ids within the vocabulary: 10 policy positions."""
    rng = np.random.default_rng(0)
    base = make_episode(rng, Run(), steps=2, policy_tokens=5, annotated=False)
    steps = tuple(dataclasses.replace(s, token_ids=rng.integers(0, V37, len(s.token_ids)).astype(np.int32)) for s in base.steps)
    return dataclasses.replace(base, steps=steps)
