"""`opd branch` on a suite that runs model-written code: every branch replays and continues in its own Docker sandbox."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opd.agents import replay_episode
from opd.agents.branch import branch_episode
from opd.agents.policy import CausalLMPolicy, SamplingConfig
from opd.agents.rollout import expert_demonstration
from opd.cli.app import app
from opd.envs import ToolEnv
from opd.trajectories import EpisodeFilter, Run, TrajectoryStore

pytestmark = pytest.mark.docker


@pytest.fixture
def parent(policy: CausalLMPolicy, python_pool):
    """The python suite's expert episode, played in a real hardened container."""
    with python_pool.borrow() as sandbox:
        env = ToolEnv("python", sandbox=sandbox, difficulty="easy")
        episode = expert_demonstration(policy.chat, env, 3, run_id=Run().id, suite_options={"difficulty": "easy"})
    assert len(episode.steps) >= 2
    return dataclasses.replace(episode, tokenizer=str(policy.tokenizer.name_or_path), chat_template_hash=policy.chat_template_hash)


def test_branches_replay_and_continue_in_their_own_containers(parent, policy: CausalLMPolicy, python_pool) -> None:
    sandboxes = [python_pool.acquire() for _ in range(2)]
    try:
        branches = branch_episode(
            parent, policy, from_step=1, n=2, run_id="r", sampling=SamplingConfig(max_new_tokens=10), sandboxes=sandboxes
        )
        assert [s.action for b in branches for s in b.steps[:1]] == [parent.steps[0].action] * 2
        for branch in branches:
            assert replay_episode(branch, sandbox=sandboxes[0]).identical
    finally:
        for sandbox in sandboxes:
            python_pool.release(sandbox)


def test_the_command_asks_for_a_sandbox_and_uses_one(parent, tiny_model_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with TrajectoryStore(path) as store:
        store.add_run(Run(id=parent.run_id))
        store.write_episode(parent)
    args = ["branch", parent.id, "--from-step", "1", "-n", "1", "--policy", str(tiny_model_dir), "--store", str(path)]
    refused = CliRunner().invoke(app, [*args, "--max-new-tokens", "8"], env={"COLUMNS": "200"})
    assert refused.exit_code == 2 and "--sandbox python" in refused.output
    result = CliRunner().invoke(app, [*args, "--max-new-tokens", "8", "--sandbox", "python"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    with TrajectoryStore(path) as store:
        assert store.count_episodes(EpisodeFilter(parent_id=parent.id)) == 1
