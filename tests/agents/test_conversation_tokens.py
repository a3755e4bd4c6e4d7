"""A two-turn conversation, token for token: recorded, stored, trained on (never on the user's tokens) and shown."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from opd.agents.policy import CausalLMPolicy
from opd.agents.rollout import expert_demonstration
from opd.agents.tiny import build_tiny_model, build_word_tokenizer, expert_texts
from opd.cli.app import app
from opd.distill.batch import make_batch
from opd.distill.losses import LossConfig, compute_loss
from opd.distill.sft import sft
from opd.envs import ToolEnv, render_prompt
from opd.trajectories import Run, TrajectoryStore
from opd.trajectories.conversations import follow_up, user_turn_count

OPTIONS = {"difficulty": "easy", "turns": 2}


@pytest.fixture(scope="module")
def chat_policy(tmp_path_factory: pytest.TempPathFactory) -> CausalLMPolicy:
    directory = tmp_path_factory.mktemp("conversation-model")
    tokenizer = build_word_tokenizer(expert_texts(ToolEnv("inventory", **OPTIONS), 30), directory, numbers=range(0, 100))
    build_tiny_model(tokenizer, directory, layers=1, hidden=16, heads=2, seed=0)
    return CausalLMPolicy.from_pretrained(str(directory))


@pytest.fixture(scope="module")
def demonstrations(chat_policy: CausalLMPolicy):
    env = ToolEnv("inventory", **OPTIONS)
    return [expert_demonstration(chat_policy.chat, env, seed, run_id="r" * 32, suite_options=OPTIONS) for seed in range(4)]


def test_the_record_is_the_whole_conversation_with_the_user_turn_as_context(chat_policy, demonstrations) -> None:
    tokenizer = chat_policy.tokenizer
    for episode in demonstrations:
        assert user_turn_count(episode) == 2 and episode.success
        (asked,) = [s for s in episode.steps if follow_up(s) is not None]
        following = episode.steps[asked.index + 1]
        context = tokenizer.decode(following.token_ids[~following.policy_mask].tolist())
        assert "<|im_start|>user Now restock the" in context  # the follow-up is in the next step's context ...
        assert "Now" not in tokenizer.decode(following.token_ids[following.policy_mask].tolist())  # ... never among the policy's tokens
        messages = [*episode.initial_messages, *(m for s in episode.steps for m in s.messages)]
        rendered = render_prompt(tokenizer, messages, ToolEnv("inventory", **OPTIONS).suite.tool_schemas, add_generation_prompt=False)
        assert tokenizer.decode(episode.token_ids.tolist()) == rendered  # token-in, token-out over both user turns


def test_losses_never_train_on_user_turn_tokens(chat_policy, demonstrations) -> None:
    batch = make_batch(demonstrations[:2])
    logits_BTV = torch.randn((*batch.input_ids_BT.shape, len(chat_policy.tokenizer)), requires_grad=True)
    compute_loss(logits_BTV, batch, LossConfig(kind="sft")).loss.backward()
    now = chat_policy.tokenizer.convert_tokens_to_ids("Now")
    user_positions = batch.targets_BT == now  # positions that predict a token of the follow-up message
    assert user_positions.sum() == 2 and not batch.policy_BT[user_positions].any()
    assert logits_BTV.grad[user_positions].abs().sum() == 0 and logits_BTV.grad[batch.policy_BT].abs().sum() > 0
    losses = sft(chat_policy, demonstrations, steps=3, batch_size=4)
    assert losses[-1] < losses[0]


def test_the_store_and_episodes_show_keep_both_user_turns(demonstrations, tmp_path: Path) -> None:
    store_path = tmp_path / "store.db"
    with TrajectoryStore(store_path) as store:
        store.add_run(Run(id="r" * 32))
        store.write_episodes(demonstrations)
        loaded = store.get_episode(demonstrations[0].id)
    assert loaded == demonstrations[0] and user_turn_count(loaded) == 2
    shown = CliRunner().invoke(app, ["episodes", "show", loaded.id, "--store", str(store_path)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "user (turn 2) Now restock the" in shown.output
    assert "user turn 1 graded: reward 1.00 success True" in shown.output and "user turn 2 graded" in shown.output


def test_the_viewer_shows_the_follow_up_and_each_turns_grade(demonstrations, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from opd.trajectories.viewer import create_app

    store_path = tmp_path / "store.db"
    with TrajectoryStore(store_path) as store:
        store.add_run(Run(id="r" * 32))
        store.write_episodes(demonstrations[:1])
    with TestClient(create_app(str(store_path))) as client:
        steps = client.get(f"/api/episodes/{demonstrations[0].id}/steps").json()["steps"]
    posed = [s["follow_up"] for s in steps if s["follow_up"]]
    graded = [s["turn_verdict"]["user_turn"] for s in steps if s["turn_verdict"]]
    assert len(posed) == 1 and posed[0][0] == 1 and posed[0][1].startswith("Now restock") and graded == [0, 1]


def test_a_policy_rollout_answers_and_gets_the_follow_up_as_context(chat_policy) -> None:
    from opd.agents import replay_episode
    from opd.agents.policy import SamplingConfig
    from opd.agents.rollout import collect_episodes

    envs = [ToolEnv("inventory", max_turns=4, **OPTIONS) for _ in range(6)]
    played = collect_episodes(
        chat_policy, envs, list(range(6)), run_id="r" * 32, sampling=SamplingConfig(max_new_tokens=8),
        generator=torch.Generator().manual_seed(0), suite_options=OPTIONS,
    )  # fmt: skip
    followed = [e for e in played if user_turn_count(e) == 2]
    assert followed, "an untrained policy's plain text is a final answer, so the user follows up"
    answered_again = 0
    for episode in followed:
        (asked,) = [s for s in episode.steps if follow_up(s) is not None]
        if asked.index + 1 < len(episode.steps):  # the policy wrote again, conditioned on the follow-up
            nxt = episode.steps[asked.index + 1]
            assert "user Now restock" in chat_policy.tokenizer.decode(nxt.token_ids[~nxt.policy_mask].tolist())
            answered_again += 1
        assert replay_episode(episode).identical
    assert answered_again


@pytest.mark.slow
def test_the_training_loop_trains_on_two_turn_conversations(chat_policy, tmp_path: Path) -> None:
    from opd.agents.policy import SamplingConfig
    from opd.distill.config import TrainConfig
    from opd.distill.train import train

    model = str(chat_policy.tokenizer.name_or_path)
    result = train(
        TrainConfig(
            student=model, teacher=model, suite="inventory", suite_options=OPTIONS, max_turns=4, store=str(tmp_path / "s.db"),
            output_dir=str(tmp_path / "out"), updates=2, episodes_per_update=4, eval_every=0, eval_episodes=2, checkpoint_every=0,
            teacher_k=4, sampling=SamplingConfig(max_new_tokens=8), tensorboard=False,
        )
    )  # fmt: skip
    with TrajectoryStore(tmp_path / "s.db", create=False) as store:
        episodes = [e for batch in store.iter_episodes() for e in batch]
    two_turn = [e for e in episodes if user_turn_count(e) == 2]
    assert result.updates == 2 and result.skipped_updates == 0 and two_turn
    assert result.labelled_tokens == sum(int(e.policy_mask.sum()) for e in episodes)  # the teacher labelled policy tokens only
