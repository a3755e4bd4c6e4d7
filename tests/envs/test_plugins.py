"""User suites found without a launcher script: entry points, module names, file paths, the OPD_SUITES path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import pytest
import throwaway_suite
from suite_registry import restored_suite_registry

from opd.envs import make_suite, plugins, suite_names
from opd.envs.plugins import PATH_VARIABLE, SuiteImportError, discover_suites, import_suite_module, import_suite_modules

SUITE_FILE = """
from opd.envs import ToolSuite, Verdict, make_suite, register_suite

@register_suite("{name}")
def factory(scale: int = 1) -> ToolSuite:
    base = make_suite("calculator")
    return ToolSuite(name="{name}", tools=base.tools, tasks=base.tasks, verify=lambda t, a, c: Verdict(1.0, True))
"""


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts from the built-in suites and leaves nothing registered or imported behind."""
    monkeypatch.delenv(PATH_VARIABLE, raising=False)
    with restored_suite_registry():
        plugins._discovered = False  # this test's lookups search again, in this test's environment
        yield


def write_suite(directory: Path, module: str, suite: str) -> Path:
    path = directory / f"{module}.py"
    path.write_text(SUITE_FILE.format(name=suite))
    return path


def test_a_file_path_registers_its_suites(tmp_path: Path) -> None:
    write_suite(tmp_path, "mine", "mine_a")
    import_suite_module("mine.py", base=tmp_path)
    assert make_suite("mine_a", scale=2).name == "mine_a"
    assert gym.make("opd/MineA-v0").unwrapped.suite.name == "mine_a"
    import_suite_module(str(tmp_path / "mine.py"))  # a second import of the same file registers nothing twice


def test_a_directory_imports_every_module_in_it(tmp_path: Path) -> None:
    write_suite(tmp_path, "one", "dir_one")
    write_suite(tmp_path, "two", "dir_two")
    import_suite_modules([str(tmp_path)])
    assert {"dir_one", "dir_two"} <= set(suite_names())


def test_a_module_name_on_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_suite(tmp_path, "named_suite_module", "named")
    monkeypatch.syspath_prepend(str(tmp_path))
    import_suite_module("named_suite_module")
    assert "named" in suite_names()


def test_import_errors_name_the_module_and_the_cause(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import json\nraise RuntimeError('no catalogue configured')\n")
    with pytest.raises(SuiteImportError, match=r"'.*broken.py': RuntimeError: no catalogue configured \(at .*broken.py:2\)"):
        import_suite_module(str(tmp_path / "broken.py"))
    with pytest.raises(SuiteImportError, match="'no_such_suite_module': ModuleNotFoundError"):
        import_suite_module("no_such_suite_module")
    with pytest.raises(SuiteImportError, match="no file or directory at"):
        import_suite_module("suites/missing.py", base=tmp_path)


def test_the_search_path_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    write_suite(tmp_path / "a", "first", "from_path_a")
    single = write_suite(tmp_path / "b", "second", "from_path_b")
    monkeypatch.setenv(PATH_VARIABLE, f"{tmp_path / 'a'}{':'}{single}")
    discover_suites(force=True)
    assert make_suite("from_path_b").name == "from_path_b" and "from_path_a" in suite_names()
    monkeypatch.setenv(PATH_VARIABLE, str(tmp_path / "nowhere"))
    with pytest.raises(SuiteImportError, match="OPD_SUITES names .*nowhere"):
        discover_suites(force=True)


def test_an_installed_entry_point_is_found_on_first_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    throwaway_suite.install(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    discover_suites(force=True)
    assert throwaway_suite.SUITE in suite_names()
    assert make_suite(throwaway_suite.SUITE).description == "a user's suite from a separate package"


def test_a_broken_entry_point_names_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    throwaway_suite.install(tmp_path)
    (tmp_path / f"{throwaway_suite.PACKAGE}-0.1.dist-info" / "entry_points.txt").write_text("[opd.suites]\nprices = prices_suite:nope\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SuiteImportError, match=r"entry point 'prices' = 'prices_suite:nope' \(group opd.suites\): AttributeError"):
        discover_suites(force=True)


def test_an_unknown_suite_says_how_to_bring_one() -> None:
    with pytest.raises(KeyError, match="--import MODULE_OR_FILE.*OPD_SUITES.*opd.suites"):
        make_suite("not_a_suite_anywhere")
