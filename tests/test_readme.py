"""The README's code runs as written, so the example cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_readme_suite_example_runs() -> None:
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "the README lost its Python example"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["reward"] == 1.0 and namespace["terminated"] is True


def test_readme_names_the_commands_ci_runs() -> None:
    text = README.read_text(encoding="utf-8")
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in text and "make demo" in text
    assert "make test" in ci
