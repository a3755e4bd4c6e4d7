"""The architecture's arrows, enforced: envs and trajectories are leaves, nothing imports cli, sandboxes know no tools."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).parents[1] / "opd"

# part -> the opd parts it may import (errors and terminal are importable from everywhere).
ALLOWED: dict[str, set[str]] = {
    "envs": {"envs"},
    "trajectories": {"trajectories"},
    "agents": {"agents", "envs", "trajectories"},
    "distill": {"distill", "agents", "envs", "trajectories"},
    "cli": {"cli", "envs", "trajectories", "agents", "distill"},
    "errors": set(),
    "terminal": set(),
    "__init__": set(),
}
# Third-party packages a part must not import (the leaves stay light and free of model or container code).
FORBIDDEN_THIRD_PARTY: dict[str, set[str]] = {
    "envs": {"torch", "sqlmodel", "sqlalchemy", "litellm"},
    "trajectories": {"torch", "docker", "transformers", "litellm", "gymnasium"},
}

# Module -> opd modules it must not import: a sandbox offers exec, files and reset; tools use it, never the reverse.
FORBIDDEN_MODULES: dict[str, set[str]] = {
    "opd.envs.sandbox": {"opd.envs.tools", "opd.envs.tool_runner", "opd.envs.suite", "opd.envs.tool_env"},
    "opd.envs.docker": {"opd.envs.tools", "opd.envs.tool_runner", "opd.envs.suite", "opd.envs.tool_env"},
    "opd.envs.tools": {"opd.envs.suite", "opd.envs.tool_env"},
}


def imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of every module ``path`` imports, relative imports resolved against ``package``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                names.add(node.module)
    return names


def part_of(module: str) -> str | None:
    """``opd.envs.tools`` -> ``envs``; ``opd`` -> ``__init__``; non-opd -> None."""
    parts = module.split(".")
    if parts[0] != "opd":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def violations(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent)
        if relative.name == "__main__.py" and relative.parent.name == root.name:
            continue  # `python -m opd` is an entry point like the console script
        module = ".".join(relative.with_suffix("").parts)
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        source_part = part_of(module.removesuffix(".__init__")) or "__init__"
        for imported in imported_modules(path, package):
            module_rule = next(
                (rule for prefix, rule in FORBIDDEN_MODULES.items() if module == prefix or module.startswith(prefix + ".")), ()
            )
            if any(imported == bad or imported.startswith(bad + ".") for bad in module_rule):
                found.append(f"{relative}: {module} must not import {imported}")
            target = part_of(imported)
            if target is None:
                if imported.split(".")[0] in FORBIDDEN_THIRD_PARTY.get(source_part, set()):
                    found.append(f"{relative}: {source_part} must not import {imported}")
                continue
            if target in ("errors", "terminal", "__init__") or target == source_part:  # the root: errors, terminal text, the version
                continue
            if target not in ALLOWED.get(source_part, set()):
                found.append(f"{relative}: {source_part} -> {target} ({imported}) points the wrong way")
    return found


def test_opd_imports_point_one_way() -> None:
    assert violations(PACKAGE_ROOT) == []


@pytest.mark.parametrize(
    ("filename", "source", "expected"),
    [
        ("envs/bad.py", "from opd.agents import x\n", "envs -> agents"),
        ("trajectories/bad.py", "import opd.distill.loop\n", "trajectories -> distill"),
        ("distill/bad.py", "from opd.cli import app\n", "distill -> cli"),
        ("envs/sub/bad.py", "from ...trajectories import store\n", "envs -> trajectories"),
        ("trajectories/bad.py", "import torch\n", "must not import torch"),
        ("envs/sandbox.py", "from opd.envs.tools import Tool\n", "opd.envs.sandbox must not import opd.envs.tools"),
        ("envs/docker/sandbox.py", "from opd.envs.tools import Tool\n", "opd.envs.docker.sandbox must not import opd.envs.tools"),
    ],
)
def test_checker_catches_a_wrong_arrow(tmp_path: Path, filename: str, source: str, expected: str) -> None:
    root = tmp_path / "opd"
    target = root / filename
    target.parent.mkdir(parents=True)
    target.write_text(source)
    found = violations(root)
    assert any(expected in line for line in found), found


def test_checker_accepts_the_allowed_arrows(tmp_path: Path) -> None:
    root = tmp_path / "opd"
    (root / "agents").mkdir(parents=True)
    (root / "agents" / "ok.py").write_text(
        "from opd.envs import ToolEnv\nfrom ..trajectories import store\nfrom opd.errors import OpdError\n"
    )
    assert violations(root) == []


def test_importing_the_envs_loads_no_model_code() -> None:
    # A fresh interpreter: this test process has long imported torch through other tests.
    code = "import sys, opd.envs; print(sorted(m for m in ('torch', 'transformers', 'docker') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_importing_the_trajectories_package_loads_no_database_code() -> None:
    # The package imports its names when first used, so the CLI can show the default store without SQLAlchemy.
    code = "import sys, opd.trajectories; print(sorted(m for m in ('sqlalchemy', 'alembic', 'numpy') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_every_public_trajectories_name_resolves() -> None:
    import opd.trajectories

    missing = [name for name in opd.trajectories.__all__ if not hasattr(opd.trajectories, name)]
    assert missing == [] and set(opd.trajectories.__all__) <= set(dir(opd.trajectories))
    with pytest.raises(AttributeError, match="has no attribute 'TrajectoryStor'"):
        opd.trajectories.TrajectoryStor  # noqa: B018
