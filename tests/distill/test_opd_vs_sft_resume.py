"""benchmarks/opd_vs_sft.py --resume: each arm is saved under the settings it depends on, so one arm can be rerun alone."""

from __future__ import annotations

import argparse
import importlib.util
import pickle
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "opd_vs_sft.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("opd_vs_sft", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def keys(script: ModuleType, *argv: str) -> dict[str, str]:
    """Each arm's cache key (the digest in its result file's name) for these command-line arguments, seed 0."""
    args = argparse.Namespace(
        seeds=[0], quick=False, workdir="w", sft_multiple=1.0, sft_budget_tokens=None, deterministic=False, eval_episodes=400,
        eval_every=None, sft_eval_every=None, budget_tokens=None, opd_learning_rate=None, suite="calculator", option=[], numbers=None,
        demonstrations=None, sandbox_size=8, arms=["sft", "opd"], resume=True,
    )  # fmt: skip
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        setattr(args, flag, value)
    settings = {**script.recipe(args), "train_seed": 0, "sft_budget_multiple": script.sft_multiple(args)}
    return {arm: script._digest(script.arm_cache_settings(settings, arm, False), False) for arm in args.arms}


def test_running_opd_on_to_its_plateau_reuses_the_long_sft_arm() -> None:
    script = load_script()
    before = keys(script, "sft_multiple", 10.0)  # OPD at the recipe's 100k tokens, SFT at 1M
    after = keys(script, "budget_tokens", 300_000, "sft_budget_tokens", 1_000_000)  # OPD at 300k, the same 1M SFT
    assert after["sft"] == before["sft"] and after["opd"] != before["opd"]


def test_an_arm_is_retrained_when_its_own_settings_change() -> None:
    script = load_script()
    base = keys(script, "sft_multiple", 10.0)
    lr = keys(script, "sft_multiple", 10.0, "opd_learning_rate", 3e-4)
    cadence = keys(script, "sft_multiple", 10.0, "sft_eval_every", 25)
    shared = keys(script, "sft_multiple", 10.0, "eval_episodes", 200)
    assert lr["sft"] == base["sft"] and lr["opd"] != base["opd"]
    assert cadence["opd"] == base["opd"] and cadence["sft"] != base["sft"]
    assert shared["opd"] != base["opd"] and shared["sft"] != base["sft"]


def test_results_saved_before_per_arm_keys_are_read_and_saved_again_under_them(tmp_path: Path) -> None:
    script = load_script()
    prefix, legacy = tmp_path / "calculator-seed0", "0123abcd"
    (tmp_path / f"calculator-seed0-sft-{legacy}.pickle").write_bytes(pickle.dumps("sft's result"))  # any picklable stands in
    (tmp_path / "calculator-seed0-opd-ffff0000.pickle").write_bytes(pickle.dumps("another OPD budget's result"))
    saved = {"sft": tmp_path / "calculator-seed0-sft-11111111.pickle", "opd": tmp_path / "calculator-seed0-opd-22222222.pickle"}
    assert script.read_saved(saved, prefix, legacy) == {"sft": "sft's result"}  # opd's file is another setting's
    assert pickle.loads(saved["sft"].read_bytes()) == "sft's result" and not saved["opd"].exists()
    (tmp_path / f"calculator-seed0-sft-{legacy}.pickle").unlink()
    assert script.read_saved(saved, prefix, "another digest") == {"sft": "sft's result"}  # now under its own key
