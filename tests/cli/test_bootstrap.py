"""``opd bootstrap SUITE``: the demo's model recipe for any suite with an expert, cached per recipe."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from opd.cli.app import app

TINY = ["--demonstrations", "8", "--teacher-steps", "2", "--warmup-steps", "0", "--numbers", "0:60"]


@pytest.mark.slow
def test_bootstrap_builds_a_teacher_and_student_for_another_suite_and_caches_them(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    runner = CliRunner()
    argv = ["bootstrap", "inventory", "-o", "difficulty=easy", "--workdir", str(tmp_path), *TINY]
    built = runner.invoke(app, argv, env={"COLUMNS": "200"})
    assert built.exit_code == 0, built.output
    assert "training the teacher on scripted-expert demonstrations" in built.output and "suite: inventory" in built.output
    (recipe,) = (tmp_path / "models").iterdir()
    for model in ("teacher", "student-start"):
        assert (recipe / model / "config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(recipe / "teacher")
    for name in ("find_product", "get_stock", "order", "quantity"):
        assert tokenizer.unk_token_id not in tokenizer(name, add_special_tokens=False).input_ids
    again = runner.invoke(app, argv, env={"COLUMNS": "200"})
    assert again.exit_code == 0 and "training the teacher" not in again.output  # from the cache


def test_a_suite_without_an_expert_is_one_clear_line(tmp_path: Path) -> None:
    import dataclasses

    from suite_registry import restored_suite_registry

    from opd.envs import make_suite, register_suite

    with restored_suite_registry():
        register_suite("no_expert", lambda: dataclasses.replace(make_suite("calculator"), name="no_expert", expert=None))
        result = CliRunner().invoke(app, ["bootstrap", "no_expert", "--workdir", str(tmp_path)])
    assert result.exit_code == 2 and "has no scripted expert" in result.output
