"""The README's code runs as written, so the example cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from suite_registry import restored_suite_registry

README = Path(__file__).parents[1] / "README.md"


def python_blocks(text: str, *, docker: bool = False) -> list[str]:
    """The README's Python examples; those that need a Docker Engine only when ``docker``."""
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    return [block for block in blocks if ("opd.envs.docker" in block) == docker]


@pytest.mark.docker
def test_readme_sandbox_example_runs(docker_client) -> None:
    blocks = python_blocks(README.read_text(encoding="utf-8"), docker=True)
    assert blocks, "the README lost its sandbox example"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["info"]["suite"] == "python" and namespace["sandbox"].isolated


def test_readme_suite_example_runs() -> None:
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "the README lost its Python example"
    namespace: dict = {}
    with restored_suite_registry():  # the example registers its suite, which later tests must not see
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)
    assert namespace["reward"] == 1.0 and namespace["terminated"] is True


def test_readme_names_the_commands_ci_runs() -> None:
    text = README.read_text(encoding="utf-8")
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in text and "make demo" in text
    assert "make test" in ci
