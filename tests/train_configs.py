"""The smallest `opd train` run the training-loop tests build on: the tiny models on calculator's short tasks.

One update of 4 episodes, no evaluation, no checkpoints, no TensorBoard; a test
names what it changes (``tiny_train_config(models, tmp_path, updates=4)``).
"""

from __future__ import annotations

from pathlib import Path

from tiny_models import OPTIONS

from opd.agents.policy import SamplingConfig
from opd.distill.config import TrainConfig


def tiny_train_config(models: tuple[Path, Path], directory: Path, **overrides) -> TrainConfig:
    """The store and output go under ``directory``; ``overrides`` replace any setting."""
    student, teacher = models
    settings = dict(
        student=str(student), teacher=str(teacher), suite_options=OPTIONS,
        store=str(directory / "store.db"), output_dir=str(directory / "out"),
        updates=1, episodes_per_update=4, eval_every=0, eval_episodes=2, checkpoint_every=0, teacher_k=8,
        sampling=SamplingConfig(max_new_tokens=12), tensorboard=False, max_turns=3,
    )  # fmt: skip
    return TrainConfig(**{**settings, **overrides})
