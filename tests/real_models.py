"""Where the real-tokenizer model fixtures are, and what a test does when they are not there.

``scripts/ensure-real-tokenizers.sh`` builds them once (``make test`` runs it and
passes the directory as OPD_REAL_MODELS); tests that need them are marked
``real_tokenizer``. Without them a test fails in CI and skips elsewhere, saying how
to build them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NAMES = ("qwen2.5", "llama3.1", "qwen3")


def real_models_dir() -> Path:
    if os.environ.get("OPD_REAL_MODELS"):
        return Path(os.environ["OPD_REAL_MODELS"])
    cache = os.environ.get("OPD_REAL_MODELS_DIR") or str(Path.home() / ".cache" / "opd" / "real-models-v1")
    return Path(cache) / "models"


def real_models_dir_or_fail() -> Path:
    directory = real_models_dir()
    missing = [name for name in NAMES if not (directory / name / ".built").exists()]
    if missing:
        message = f"no real-tokenizer models {missing} under {directory}; run scripts/ensure-real-tokenizers.sh .venv/bin/python"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the real-tokenizer tests, but: {message}")
        pytest.skip(message)
    return directory
