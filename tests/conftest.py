from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Test helpers (tiny locally built models and tokenizers) live beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

import opd.envs  # noqa: E402  (registers the built-in suites)


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from tiny_tokenizer import build_tiny_tokenizer

    return build_tiny_tokenizer(tmp_path_factory.mktemp("tiny-tokenizer"))


@pytest.fixture(params=opd.envs.suite_names())
def suite_name(request: pytest.FixtureRequest) -> str:
    return request.param
