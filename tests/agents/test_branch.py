"""`opd branch`: restore a stored episode before step K by replay, continue with a tiny real policy, store linked branches."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from opd.agents import replay_episode
from opd.agents.branch import NotReplayableError, branch_episode, restore_env
from opd.agents.policy import CausalLMPolicy, SamplingConfig
from opd.agents.rollout import expert_demonstration
from opd.cli.app import app
from opd.envs import ToolEnv
from opd.errors import ConfigError
from opd.trajectories import EpisodeFilter, Run, TrajectoryStore

SAMPLING = SamplingConfig(max_new_tokens=10)


@pytest.fixture
def parent(policy: CausalLMPolicy):
    """The inventory expert's episode (several steps), recorded with the tiny policy's tokenizer."""
    env = ToolEnv("inventory", difficulty="easy")
    episode = expert_demonstration(policy.chat, env, 5, run_id=Run().id, suite_options={"difficulty": "easy"})
    env.close()
    assert len(episode.steps) >= 3
    return dataclasses.replace(episode, tokenizer=str(policy.tokenizer.name_or_path), chat_template_hash=policy.chat_template_hash)


def test_branches_go_on_from_the_recorded_tokens_in_the_restored_env(parent, policy: CausalLMPolicy) -> None:
    branches = branch_episode(parent, policy, from_step=2, n=3, run_id="r", sampling=SAMPLING, seed=7)
    pending = parent.steps[2].token_ids[: np.argmax(parent.steps[2].policy_mask)]
    recorded = np.concatenate([*(s.token_ids for s in parent.steps[:2]), pending])
    for branch in branches:
        assert (branch.parent_id, branch.branch_step, branch.seed, branch.task_id) == (parent.id, 2, parent.seed, parent.task_id)
        assert [s.index for s in branch.steps] == list(range(len(branch.steps))) and len(branch.steps) >= 3
        assert np.array_equal(branch.token_ids[: len(recorded)], recorded)  # the very tokens, not a re-rendering
        assert not branch.policy_mask[: len(recorded)].any() and branch.steps[2].num_policy_tokens > 0  # only its own turns are its
        assert [s.action for s in branch.steps[:2]] == [s.action for s in parent.steps[:2]]
        assert replay_episode(branch).identical  # its new observations are what the env says after the parent's first steps
    again = branch_episode(parent, policy, from_step=2, n=3, run_id="r", sampling=SAMPLING, seed=7)
    assert [b.steps for b in again] == [b.steps for b in branches]  # seeded


def test_restoring_checks_every_replayed_observation(parent) -> None:
    tampered = dataclasses.replace(parent, steps=(dataclasses.replace(parent.steps[0], observation="something else"), *parent.steps[1:]))
    with pytest.raises(NotReplayableError, match="cannot be restored to step 2: replaying step 0"):
        restore_env(tampered, 2)
    env, prefix = restore_env(tampered, 0)  # nothing to replay before step 0
    env.close()
    assert prefix.steps == () and prefix.context == prefix.pending
    with pytest.raises(NotReplayableError, match="no seed"):
        restore_env(dataclasses.replace(parent, seed=None), 1)
    with pytest.raises(ConfigError, match="--from-step must name one of them"):
        restore_env(parent, len(parent.steps))


def test_the_command_stores_branches_that_show_lists(parent, tiny_model_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with TrajectoryStore(path) as store:
        store.add_run(Run(id=parent.run_id, name="experts"))
        store.write_episode(parent)
    runner = CliRunner()
    args = ["branch", parent.id[:10], "--from-step", "1", "-n", "2", "--policy", str(tiny_model_dir), "--store", str(path)]
    result = runner.invoke(app, [*args, "--max-new-tokens", "10"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "2 branches of" in result.output
    with TrajectoryStore(path) as store:
        children = store.list_episodes(EpisodeFilter(parent_id=parent.id))
        assert len(children) == 2 and {c.branch_step for c in children} == {1}
        branch = store.get_episode(children[0].id)
        assert branch.parent_id == parent.id and branch.steps[0] == dataclasses.replace(
            parent.steps[0], policy_mask=np.zeros(len(parent.steps[0].token_ids), bool), logprobs=branch.steps[0].logprobs
        )
    shown = runner.invoke(app, ["episodes", "show", parent.id, "--store", str(path)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "2 branches" in shown.output and children[0].id[:12] in shown.output
    shown = runner.invoke(app, ["episodes", "show", children[0].id, "--store", str(path)], env={"COLUMNS": "200"})
    assert f"branch of episode {parent.id} from step 1" in shown.output
    refused = runner.invoke(app, [*args[:2], "--from-step", "99", *args[4:]], env={"COLUMNS": "200"})
    assert refused.exit_code == 2 and "--from-step must name one of them" in refused.output
