"""Routing steps between two tiny real teachers: by tool, by step index, by the cheap teacher's uncertainty; recorded and costed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from transformers import AutoTokenizer
from typer.testing import CliRunner

from opd.agents.policy import CausalLMPolicy
from opd.agents.rollout import expert_demonstration
from opd.agents.routing import DEFAULT, RoutedTeacher, RouteRule, RoutingConfig, route_metrics, step_uncertainty
from opd.agents.teacher import WhiteBoxTeacher
from opd.agents.tiny import build_tiny_model, build_word_tokenizer, expert_texts
from opd.cli.app import app
from opd.envs import ToolEnv
from opd.errors import ConfigError
from opd.trajectories import Run, TrajectoryStore
from opd.trajectories.viewer import create_app


@pytest.fixture(scope="module")
def teacher_dirs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small and a large teacher with the student's tokenizer, and one with another tokenizer."""
    directory = tmp_path_factory.mktemp("routing-teachers")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    build_tiny_model(tokenizer, directory / "small", layers=1, hidden=16, heads=2, seed=3)
    build_tiny_model(tokenizer, directory / "large", layers=2, hidden=48, heads=2, seed=4)
    other = build_word_tokenizer(expert_texts(ToolEnv("calculator", difficulty="easy"), 10), directory / "other", numbers=range(0, 20))
    build_tiny_model(other, directory / "other", layers=1, hidden=16, heads=2, seed=5)
    return {"small": directory / "small", "large": directory / "large", "other": directory / "other"}


@pytest.fixture(scope="module")
def episodes(policy: CausalLMPolicy):
    """Inventory expert episodes (find_product, get_stock, order, answer) recorded with the student's tokenizer."""
    env = ToolEnv("inventory", difficulty="easy")
    recorded = [expert_demonstration(policy.chat, env, seed, run_id=Run().id, suite_options={"difficulty": "easy"}) for seed in (5, 6)]
    env.close()
    return recorded


def router(teacher_dirs, *rules: RouteRule, default: str = DEFAULT) -> RoutedTeacher:
    small = WhiteBoxTeacher.from_pretrained(str(teacher_dirs["small"]), k=4)
    config = RoutingConfig(teachers={"large": str(teacher_dirs["large"])}, rules=rules, default=default)
    return RoutedTeacher.load(small, config, k=4, device="cpu")


def own(teacher: WhiteBoxTeacher, episode, step: int):
    return next(a for a in teacher.annotate([episode])[0].token_logprobs if a.step_index == step)


def test_a_tool_rule_routes_those_steps_to_the_large_teacher_with_its_own_annotations(teacher_dirs, episodes) -> None:
    routed = router(teacher_dirs, RouteRule(teacher="large", tools=("order",)))
    annotations = routed.annotate(episodes)
    for episode, annotation in zip(episodes, annotations, strict=True):
        chosen = {r.step_index: r.chosen for r in annotation.routes}
        ordering = {s.index for s in episode.steps if any(c["name"] == "order" for c in s.tool_calls)}
        assert ordering and chosen == {s.index: "large" if s.index in ordering else DEFAULT for s in episode.steps}
        for a in annotation.token_logprobs:
            assert a.teacher == "routed"
            reference = own(routed.teachers[chosen[a.step_index]], episode, a.step_index)  # the chosen teacher, on the whole episode
            assert np.array_equal(a.token_ids, reference.token_ids) and np.allclose(a.logprobs, reference.logprobs, atol=2e-3)
        # The large teacher read up to the end of its last step; its steps are charged exactly that.
        last = max(ordering)
        large_tokens = sum(len(s.token_ids) for s in episode.steps[: last + 1])
        assert sum(r.tokens for r in annotation.routes if r.chosen == "large") == large_tokens
        assert {r.reason for r in annotation.routes} == {"tool order", "default"}
    counts = route_metrics(routed.take_counts())
    assert counts["route/steps/large"] == 2 and counts["route/steps/teacher"] == sum(len(e.steps) for e in episodes) - 2
    assert counts["route/flops/large"] == pytest.approx(2 * routed.parameters["large"] * counts["route/tokens/large"])
    assert counts["route/share/large"] == pytest.approx(2 / sum(len(e.steps) for e in episodes))
    assert routed.take_counts() == {}  # taken


def test_an_uncertainty_rule_falls_back_to_the_large_teacher_where_the_small_one_is_unsure(teacher_dirs, episodes) -> None:
    small = WhiteBoxTeacher.from_pretrained(str(teacher_dirs["small"]), k=4)
    doubts = sorted(step_uncertainty(a) for e in episodes for a in small.annotate([e])[0].token_logprobs)
    threshold = float(np.median(doubts))
    routed = router(teacher_dirs, RouteRule(teacher="large", uncertain_above=threshold))
    routes = [r for a in routed.annotate(episodes) for r in a.routes]
    assert {r.chosen for r in routes} == {"large", DEFAULT}
    for route in routes:
        assert route.uncertainty is not None and (route.chosen == "large") == (route.uncertainty > threshold)
    counts = routed.take_counts()
    assert counts["route/tokens/teacher"] == sum(e.num_tokens for e in episodes)  # it read every episode whole to measure


def test_step_rules_the_default_and_the_stored_record(teacher_dirs, episodes, tmp_path: Path) -> None:
    routed = router(teacher_dirs, RouteRule(teacher=DEFAULT, steps=(0, 0)), default="large")
    episode = episodes[0]
    annotation = routed.annotate([episode])[0]
    assert [(r.chosen, r.reason) for r in annotation.routes] == [(DEFAULT, "steps 0-0")] + [("large", "default")] * (len(episode.steps) - 1)
    path = tmp_path / "store.db"
    with TrajectoryStore(path) as store:
        store.add_run(Run(id=episode.run_id))
        store.write_episode(episode)
        store.add_annotations(episode.id, annotation)
        assert store.get_episode(episode.id).annotations.routes == annotation.routes
    shown = CliRunner().invoke(app, ["episodes", "show", episode.id, "--store", str(path)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "routed chose large (default;" in shown.output and "teachers chosen per step" in shown.output
    assert f"{(len(episode.steps) - 1) / len(episode.steps):.0%}" in shown.output
    with TestClient(create_app(str(path))) as client:
        page = client.get(f"/episodes/{episode.id}").text
    routes = page[page.index('id="routes"') :]
    assert f"{(len(episode.steps) - 1) / len(episode.steps):.1%}" in routes and "step 0: teacher (steps 0-0" in routes


def test_the_config_loads_rules_and_refuses_unknown_teachers_and_other_tokenizers(teacher_dirs) -> None:
    text = "teachers: {large: /m}\nrules:\n  - {tools: order, teacher: large}\n  - {steps: [0, 1], teacher: teacher}\n"
    config = RoutingConfig(**yaml.safe_load(text))
    assert config.rules == (RouteRule(teacher="large", tools=("order",)), RouteRule(teacher=DEFAULT, steps=(0, 1)))
    with pytest.raises(ConfigError, match="names teacher 'huge'"):
        RoutingConfig(teachers={"large": "/m"}, rules=({"teacher": "huge", "tools": ["order"]},))
    with pytest.raises(ConfigError, match="has no condition"):
        RouteRule(teacher="large")
    small = WhiteBoxTeacher.from_pretrained(str(teacher_dirs["small"]), k=4)
    with pytest.raises(ConfigError, match="cannot score the same token ids"):
        RoutedTeacher.load(small, RoutingConfig(teachers={"other": str(teacher_dirs["other"])}), k=4, device="cpu")
