from __future__ import annotations

from pathlib import Path

import pytest

from opd.agents.policy import CausalLMPolicy
from opd.agents.tiny import build_tiny_model, build_word_tokenizer, expert_texts
from opd.envs import ToolEnv


def suite_texts(suite: str = "calculator", episodes: int = 100) -> list[str]:
    env = ToolEnv(suite, difficulty="easy")
    return expert_texts(env, episodes)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny Llama with a word-level tokenizer, saved as a hub model would be."""
    directory = tmp_path_factory.mktemp("tiny-model")
    tokenizer = build_word_tokenizer(suite_texts() + suite_texts("inventory"), directory)
    build_tiny_model(tokenizer, directory, layers=1, hidden=32, heads=2, seed=0)
    return directory


@pytest.fixture(scope="session")
def policy(tiny_model_dir: Path) -> CausalLMPolicy:
    return CausalLMPolicy.from_pretrained(str(tiny_model_dir))
