"""The config's suites section and paths relative to the config file."""

from __future__ import annotations

from pathlib import Path

import yaml

from opd.distill.config import load_config
from opd.distill.suites import SuitesConfig, task_splits


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "configs" / "models" / "student").mkdir(parents=True)
    config = tmp_path / "configs" / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "student": "models/student", "teacher": "Qwen/Qwen2.5-0.5B-Instruct", "store": "runs/opd.db", "output_dir": "out",
                "suites": {"modules": ["suites/shop.py", "shop_suites", "/abs/other.py"]}, "loss": {"kind": "sft"},
            }
        )
    )  # fmt: skip
    settings = load_config(config)
    base = tmp_path / "configs"
    assert settings.student == str(base / "models" / "student")  # a directory beside the config
    assert settings.teacher == "Qwen/Qwen2.5-0.5B-Instruct"  # a hub name stays one
    assert (settings.store, settings.output_dir) == (str(base / "runs" / "opd.db"), str(base / "out"))
    assert tuple(settings.suites.modules) == (str(base / "suites" / "shop.py"), "shop_suites", "/abs/other.py")
    url = "postgresql+psycopg://me@db/opd"
    config.write_text(yaml.safe_dump({"student": "s", "store": url, "loss": {"kind": "sft"}}))
    assert load_config(config).store == url


def test_splits_follow_the_task_set_unless_configured() -> None:
    assert task_splits("calculator", {}, SuitesConfig()).train == "all"  # generated: seed ranges keep evaluation apart
    both = task_splits("calculator", {}, SuitesConfig(split=True))
    assert (both.train, both.eval) == ("train", "eval") and both.options({"difficulty": "easy"}, "eval") == {
        "difficulty": "easy",
        "split": "eval",
    }
