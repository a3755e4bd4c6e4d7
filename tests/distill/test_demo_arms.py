"""The demo's OPD variants (benchmarks/opd_vs_sft.py --arms): each changes the training it claims to, from the same start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_models import OPTIONS

from opd.distill.demo import DemoConfig, train_arm
from opd.distill.demo_arms import ARMS
from opd.errors import ConfigError
from opd.trajectories import EpisodeFilter, TrajectoryStore


def test_unknown_or_repeated_arms_are_refused() -> None:
    with pytest.raises(ConfigError, match="arms must be distinct names among sft, opd"):
        DemoConfig(arms=("sft", "opd-magic"))
    with pytest.raises(ConfigError, match="arms must be distinct"):
        DemoConfig(arms=("opd", "opd"))
    assert DemoConfig().arms == ("sft", "opd") and not ARMS["opd"].offpolicy and ARMS["sft"].offpolicy


def tiny_demo(tmp_path: Path, budget: int) -> DemoConfig:
    """The demo's arm settings on the tiny models: 4 episodes an update, a budget of a few updates, 2 evaluation tasks."""
    return DemoConfig(
        workdir=str(tmp_path), store=str(tmp_path / "opd.db"), suite_options=OPTIONS, budget_tokens=budget,
        episodes_per_update=4, eval_episodes=2, eval_every=0, restart_sources=4,
    )  # fmt: skip


def metrics(config: DemoConfig, arm: str) -> list[dict]:
    return [json.loads(line) for line in (Path(config.workdir) / f"{arm}-seed0" / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_each_opd_variant_changes_what_it_claims(models, tmp_path: Path) -> None:
    student, teacher = models
    config = tiny_demo(tmp_path, budget=800)  # six updates: the untrained models' episodes are mostly one step of 32 tokens
    for arm in ("opd", "opd-stepw-divergence", "opd-stepw-position", "opd-forward-kl", "opd-jsd", "opd-prefix"):
        train_arm(config, arm, student, teacher, report=lambda _: None)
    plain = metrics(config, "opd")
    assert all(line["teacher_prefix_steps"] == 0 for line in plain)
    for arm in ("opd-stepw-divergence", "opd-stepw-position", "opd-forward-kl", "opd-jsd"):  # the same first rollouts, another loss
        weighted = metrics(config, arm)
        assert weighted[0]["policy_tokens"] == plain[0]["policy_tokens"] and len(weighted) == len(plain)
        # Position weights move the loss only in a batch with a two-step episode (update 3 here); the others at once.
        assert any(w["loss"] != pytest.approx(p["loss"], rel=1e-6) for w, p in zip(weighted, plain, strict=True)), arm
    prefixed = metrics(config, "opd-prefix")
    assert any(line["teacher_prefix_steps"] > 0 for line in prefixed)  # the teacher played first steps in some update
    assert all(line["offpolicy"] == 0 for line in [*plain, *prefixed])


@pytest.mark.slow
@pytest.mark.parametrize("arm", ["opd-curriculum", "opd-prefix-curriculum", "opd-forward-kl-curriculum"])
def test_the_curriculum_arms_restart_from_stored_teacher_episodes_and_pay_for_them(models, tmp_path: Path, arm: str) -> None:
    student, teacher = models
    config = tiny_demo(tmp_path, budget=800)
    result = train_arm(config, arm, student, teacher, report=lambda _: None)
    lines = metrics(config, arm)
    assert any(line["teacher_prefix_steps"] > 0 for line in lines) == (arm == "opd-prefix-curriculum")
    assert all(line["restart/episodes"] == 2 for line in lines)  # half of each update's 4 episodes
    with TrajectoryStore(config.store) as store:
        runs = {run.name: run.id for run in store.runs()}
        sources = [store.get_episode(i) for i in store.episode_ids(EpisodeFilter(run_id=runs[f"demo: {arm} sources"]))]
        played = [store.get_episode(i) for i in store.episode_ids(EpisodeFilter(run_id=result.run_id))]
    assert len(sources) == 4 and all(e.env_options["suite_options"] == OPTIONS for e in sources)  # restorable: the options are recorded
    assert {e.parent_id for e in played if e.parent_id} <= {e.id for e in sources}
    assert sum(e.parent_id is not None for e in played) == 2 * len(lines)
    charged = sum(int(e.policy_mask.sum()) for e in sources)
    assert result.labelled_tokens == lines[-1]["labelled_tokens"] + charged > charged  # the teacher wrote the sources: they count
    assert result.curve[-1][1] == result.labelled_tokens
