from __future__ import annotations

from pathlib import Path

import pytest
from tiny_models import OPTIONS

from opd.agents.tiny import build_tiny_model, build_word_tokenizer, expert_texts
from opd.envs import ToolEnv


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
