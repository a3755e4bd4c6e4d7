"""Settings and helpers shared by the tests that train tiny models."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

OPTIONS = {"difficulty": "easy", "prompt_style": "terse"}  # calculator tasks short enough for a 1-layer model


def parameters(path: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(path).state_dict().items()}
