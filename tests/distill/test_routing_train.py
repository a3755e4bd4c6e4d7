"""A training run that routes each step between the run's teacher and a larger one: shares and costs in the metrics and store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_models import OPTIONS
from transformers import AutoTokenizer

from opd.agents.policy import SamplingConfig
from opd.agents.routing import RouteRule, RoutingConfig
from opd.agents.tiny import build_tiny_model
from opd.distill.config import TrainConfig
from opd.distill.train import train
from opd.trajectories import EpisodeFilter, TrajectoryStore


@pytest.mark.slow
def test_a_routed_run_trains_on_the_routed_annotations_and_reports_each_teachers_share(models, tmp_path: Path) -> None:
    student, teacher = models
    large = tmp_path / "large"
    build_tiny_model(AutoTokenizer.from_pretrained(teacher), large, layers=2, hidden=48, heads=2, seed=9)
    routing = RoutingConfig(teachers={"large": str(large)}, rules=(RouteRule(teacher="large", steps=(0, 0)),))
    settings = TrainConfig(
        student=str(student), teacher=str(teacher), routing=routing, suite_options=OPTIONS,
        store=str(tmp_path / "store.db"), output_dir=str(tmp_path / "out"), updates=2, episodes_per_update=3,
        eval_every=0, eval_episodes=2, checkpoint_every=0, teacher_k=8, sampling=SamplingConfig(max_new_tokens=12),
        tensorboard=False, max_turns=3,
    )  # fmt: skip
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
