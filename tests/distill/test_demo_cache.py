"""The demo's model cache: a build cut short is never taken for a finished one."""

from __future__ import annotations

from pathlib import Path

import pytest

from opd.distill import demo
from opd.distill.demo import DemoConfig, demo_models


def tiny(tmp_path: Path) -> DemoConfig:
    return DemoConfig(workdir=str(tmp_path), demonstrations=4, teacher_steps=1, warmup_steps=0)


def test_a_build_interrupted_by_ctrl_c_is_rebuilt_not_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Ctrl-C arrives while the teacher trains: the tokenizer and an untrained teacher are on disk by then.
    # A test double stands for the keypress, which cannot be timed to land inside SFT from here.
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "sft", interrupted)
    with pytest.raises(KeyboardInterrupt):
        demo_models(tiny(tmp_path), report=lambda line: None)
    (partial,) = (tmp_path / "models").iterdir()
    assert ".building-" in partial.name and (partial / "teacher" / "config.json").is_file()  # aside, not where the cache is
    monkeypatch.undo()

    lines: list[str] = []
    teacher, student = demo_models(tiny(tmp_path), report=lines.append)
    assert any("training the teacher" in line for line in lines)  # built again, not taken from the partial build
    assert (teacher / "config.json").is_file() and (student / "config.json").is_file()
    lines.clear()
    assert demo_models(tiny(tmp_path), report=lines.append) == (teacher, student) and lines == []  # now cached
