"""A training run that routes each step between the run's teacher and a larger one: shares and costs in the metrics and store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_configs import tiny_train_config
from transformers import AutoTokenizer

from opd.agents.routing import RouteRule, RoutingConfig
from opd.agents.tiny import build_tiny_model
from opd.distill.train import train
from opd.trajectories import EpisodeFilter, TrajectoryStore


@pytest.mark.slow
def test_a_routed_run_trains_on_the_routed_annotations_and_reports_each_teachers_share(models, tmp_path: Path) -> None:
    student, teacher = models
    large = tmp_path / "large"
    build_tiny_model(AutoTokenizer.from_pretrained(teacher), large, layers=2, hidden=48, heads=2, seed=9)
    routing = RoutingConfig(teachers={"large": str(large)}, rules=(RouteRule(teacher="large", steps=(0, 0)),))
    settings = tiny_train_config(models, tmp_path, routing=routing, updates=2, episodes_per_update=3)
    result = train(settings)
    lines = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    with TrajectoryStore(settings.store) as store:
        episodes = [e for batch in store.iter_episodes(EpisodeFilter(run_id=result.run_id)) for e in batch]
    routes = [r for e in episodes for r in e.annotations.routes]
    assert {r.chosen for r in routes if r.step_index == 0} == {"large"} and all(r.chosen == "teacher" for r in routes if r.step_index)
    assert sum(line["route/steps/large"] for line in lines) == len(episodes)  # one step 0 per episode
    steps = sum(line.get("route/steps/teacher", 0) + line["route/steps/large"] for line in lines)
    assert steps == len(routes) and all(0 < line["route/share/large"] <= 1 and line["route/flops/large"] > 0 for line in lines)
    assert all(a.teacher == "routed" for e in episodes for a in e.annotations.token_logprobs)
    assert all(line["loss"] == line["loss"] for line in lines)  # trained on them (finite)
