"""The demo recipe's arm settings: what each arm of `opd demo` and benchmarks/opd_vs_sft.py trains with."""

from __future__ import annotations

from pathlib import Path

from opd.distill.demo import DemoConfig, _arm_config
from opd.distill.losses import LossConfig


def test_a_long_sft_arm_can_be_evaluated_less_often_than_the_opd_arm() -> None:
    config = DemoConfig(eval_every=5, sft_eval_every=25, sft_budget_multiple=10)

    def arm(name: str, loss: LossConfig):
        return _arm_config(config, name, loss, 1.0 if name == "sft" else 0.0, 1e-3, Path("s"), Path("t"), 1000)

    assert arm("sft", LossConfig(kind="sft")).eval_every == 25
    assert arm("opd", LossConfig(kind="token")).eval_every == 5
    assert _arm_config(DemoConfig(eval_every=5), "sft", LossConfig(kind="sft"), 1.0, 1e-3, Path("s"), Path("t"), 1).eval_every == 5
