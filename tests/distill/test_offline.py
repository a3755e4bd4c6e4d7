"""Distilling from the store: offline on stored episodes, mixed with rollouts, importance-weighted by stored log-probs."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch
import yaml
from tiny_models import OPTIONS, parameters
from train_configs import tiny_train_config
from transformers import AutoTokenizer
from typer.testing import CliRunner

from opd.agents.chat_tokens import ChatTokens
from opd.agents.rollout import expert_demonstration
from opd.cli.app import app
from opd.distill.config import config_to_dict, load_config
from opd.distill.importance import importance_weights
from opd.distill.offline import ReplayConfig
from opd.distill.train import train
from opd.envs import ToolEnv
from opd.errors import ConfigError
from opd.trajectories import EpisodeFilter, Run, TrajectoryStore


def metrics(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "out" / "metrics.jsonl").read_text().splitlines()]


def test_importance_weights_are_the_clipped_ratio_on_known_policy_tokens() -> None:
    generator = torch.Generator().manual_seed(0)
    current = torch.randn(3, 7, generator=generator)
    recorded = torch.randn(3, 7, generator=generator)
    recorded[0, 2] = math.nan  # a scripted expert's token: no recorded log-prob
    policy = torch.rand(3, 7, generator=generator) > 0.3
    weights = importance_weights(current.clone().requires_grad_(), recorded, policy, clip=2.0)
    assert not weights.requires_grad
    for b in range(3):
        for t in range(7):
            known = bool(policy[b, t]) and not math.isnan(recorded[b, t])
            expected = min(math.exp(current[b, t] - recorded[b, t]), 2.0) if known else 1.0
            assert weights[b, t].item() == pytest.approx(expected, rel=1e-6)


def test_the_replay_section_loads_from_a_file_and_checks_its_values(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("student: s\nteacher: t\nreplay:\n  runs: [a, b]\n  suites: [calculator]\n  since: 2026-11-01\n  ratio: 0.25\n")
    replay = load_config(path).replay
    assert replay == ReplayConfig(runs=("a", "b"), suites=("calculator",), since=datetime(2026, 11, 1), ratio=0.25)
    with pytest.raises(ConfigError, match="ratio must lie in"):
        ReplayConfig(ratio=1.5)
    with pytest.raises(ConfigError, match="ISO 8601"):
        ReplayConfig(until="last tuesday")
    assert ReplayConfig(success=False, until=datetime(2026, 1, 1, tzinfo=UTC)).where() == EpisodeFilter(
        success=False, created_before=datetime(2026, 1, 1, tzinfo=UTC)
    )


@pytest.mark.slow
def test_offline_on_a_runs_own_episodes_takes_the_on_policy_step(models, tmp_path: Path) -> None:
    """Ratio 1, staleness 0: the same episodes, annotations and weights (all 1) give the update the loop took on-policy."""
    online = train(tiny_train_config(models, tmp_path / "online"))
    source = str(tmp_path / "online" / "store.db")
    replay = ReplayConfig(store=source, runs=(online.run_id,), ratio=1.0, importance="none")
    unweighted_run = train(tiny_train_config(models, tmp_path / "none", replay=replay))
    # The weighted arm through `opd train` and a YAML file, as a user runs it.
    settings = config_to_dict(tiny_train_config(models, tmp_path / "token"))
    settings["replay"] = {"store": source, "runs": [online.run_id], "ratio": 1.0}  # importance: token is the default
    (tmp_path / "offline.yaml").write_text(yaml.safe_dump(settings))
    command = CliRunner().invoke(app, ["train", str(tmp_path / "offline.yaml")], env={"COLUMNS": "200"})
    assert command.exit_code == 0, command.output
    before, stepped = parameters(models[0]), parameters(online.checkpoint / "model")
    checkpoint = sorted((tmp_path / "token" / "out" / "checkpoints").iterdir())[-1]
    unweighted, weighted = parameters(unweighted_run.checkpoint / "model"), parameters(checkpoint / "model")
    assert any(not torch.equal(before[k], stepped[k]) for k in before)  # the on-policy update did move the student
    assert all(torch.equal(stepped[k], unweighted[k]) for k in stepped)  # the very same batch, bit for bit
    # Weights are 1 up to rounding (~1e-7). Adam's first step is about lr * sign(gradient), so an element whose
    # gradient is near Adam's eps moves that rounding visibly: every element's step must agree within 1% of lr.
    lr = tiny_train_config(models, tmp_path).learning_rate
    assert all(torch.allclose(stepped[k] - before[k], weighted[k] - before[k], rtol=0, atol=0.01 * lr) for k in stepped)
    line, on_policy = metrics(tmp_path / "token")[0], metrics(tmp_path / "online")[0]
    assert line["replay/episodes"] == 4 and "rollout/success" not in line
    assert line["loss"] == pytest.approx(on_policy["loss"], rel=1e-5)
    assert line["grad_norm"] == pytest.approx(on_policy["grad_norm"], rel=1e-4)
    assert line["importance/mean"] == pytest.approx(1.0, abs=1e-5) and line["importance/clipped"] == 0
    with TrajectoryStore(tmp_path / "token" / "store.db") as store:
        assert store.count_episodes() == 0  # nothing was played


@pytest.mark.slow
def test_mixed_replay_scores_unannotated_stored_episodes_once_and_plays_the_rest(models, tmp_path: Path) -> None:
    source = tmp_path / "demos.db"
    chat = ChatTokens(AutoTokenizer.from_pretrained(models[0]))
    with TrajectoryStore(source) as store:
        run = store.add_run(Run(name="demos"))
        env = ToolEnv("calculator", **OPTIONS)
        store.write_episodes([expert_demonstration(chat, env, seed, run_id=run.id, suite_options=OPTIONS) for seed in range(3)])
    settings = tiny_train_config(models, tmp_path / "mixed", updates=2, replay=ReplayConfig(store=str(source), ratio=0.5))
    result = train(settings)
    lines = metrics(tmp_path / "mixed")
    assert [line["replay/episodes"] for line in lines] == [2, 2] and all("rollout/success" in line for line in lines)
    assert all(0 < line["importance/mean"] <= 2.0 for line in lines)
    with TrajectoryStore(source) as store:
        assert store.count_episodes(EpisodeFilter(annotated_by=str(models[1]))) == 3  # scored once, kept for the next run
    with TrajectoryStore(settings.store) as store:
        assert store.count_episodes(EpisodeFilter(run_id=result.run_id)) == 4  # two played per update


@pytest.mark.slow
def test_restarts_play_on_from_stored_states_late_first(models, tmp_path: Path) -> None:
    """mode: restart with a depth curriculum: update u starts each stored episode further back, ending at step 0."""
    source = tmp_path / "demos.db"
    chat = ChatTokens(AutoTokenizer.from_pretrained(models[0]))
    with TrajectoryStore(source) as store:
        run = store.add_run(Run(name="demos"))
        env = ToolEnv("calculator", **OPTIONS)
        demos = [expert_demonstration(chat, env, seed, run_id=run.id, suite_options=OPTIONS) for seed in range(2)]
        store.write_episodes(demos)
    assert {len(d.steps) for d in demos} == {3}
    replay = ReplayConfig(store=str(source), ratio=1.0, mode="restart", curriculum_updates=2)
    settings = tiny_train_config(models, tmp_path / "restart", updates=3, episodes_per_update=2, replay=replay)
    result = train(settings)
    lines = metrics(tmp_path / "restart")
    assert [line["restart/depth"] for line in lines] == [2, 1, 0] and all(line["restart/episodes"] == 2 for line in lines)
    assert not any(line["skipped"] for line in lines) and all("rollout/success" in line for line in lines)
    with TrajectoryStore(settings.store) as store:
        played = [store.get_episode(i) for i in store.episode_ids(EpisodeFilter(run_id=result.run_id))]
    assert [(e.parent_id, e.branch_step) for e in played] == [(d.id, k) for k in (2, 1, 0) for d in demos]
    for episode in played:  # the parent's steps are context; the student's own start at the branch step
        assert not any(s.num_policy_tokens for s in episode.steps[: episode.branch_step])
        assert episode.steps[episode.branch_step].num_policy_tokens > 0
        assert {a.step_index for a in episode.annotations.token_logprobs} >= {episode.branch_step}  # the teacher scored its steps
