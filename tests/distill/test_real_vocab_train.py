"""`opd train` on a real 151,936-token vocabulary: a Qwen2.5-template student and teacher, a few updates, end to end.

The models are the real-tokenizer fixtures (Qwen2.5's tokenizer and tool template,
random weights). The teacher is first taught by SFT on the scripted expert's
demonstrations, as `opd demo` teaches its tiny teacher, for a bounded few steps
(through full (B, T, V) logits, so a small batch): enough to see its loss fall,
not to make it good. So this shows the path, not learning: expert demonstrations
in the real template's tokens, rollouts through it, the chunked white-box teacher,
the fused token loss, the store, and the episode's tokens shown as the real
tokenizer's texts.
"""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from opd.agents.policy import CausalLMPolicy, SamplingConfig
from opd.agents.rollout import expert_demonstration
from opd.cli.app import app
from opd.distill.config import TrainConfig
from opd.distill.sft import sft
from opd.distill.train import train
from opd.envs import ToolEnv
from opd.trajectories import EpisodeFilter, TrajectoryStore
from opd.trajectories.viewer.tokens import load_decoder

pytestmark = [pytest.mark.real_tokenizer, pytest.mark.slow]


def test_opd_train_on_a_real_vocabulary_stores_episodes_with_real_token_texts(real_models, tmp_path) -> None:
    student, teacher = tmp_path / "student", tmp_path / "teacher"
    shutil.copytree(real_models / "qwen2.5", student)
    shutil.copytree(real_models / "qwen2.5", teacher)
    taught = CausalLMPolicy.from_pretrained(str(teacher))
    env = ToolEnv("calculator", difficulty="easy")
    demonstrations = [expert_demonstration(taught.chat, env, seed, run_id="teacher-sft") for seed in range(8)]
    assert "<tool_call>" in taught.tokenizer.decode(demonstrations[0].token_ids)  # the expert's calls in Qwen2.5's format
    losses = sft(taught, demonstrations, steps=5, batch_size=2, learning_rate=3e-3)
    assert losses[-1] < losses[0] - 1.0, losses  # from ~ln(151,936) = 11.9 nats down
    taught.model.save_pretrained(teacher)
    config = TrainConfig(
        student=str(student), teacher=str(teacher), suite="calculator", suite_options={"difficulty": "easy"},
        store=str(tmp_path / "store.db"), output_dir=str(tmp_path / "out"),
        updates=2, episodes_per_update=2, eval_every=0, eval_episodes=2, checkpoint_every=0, teacher_k=16,
        sampling=SamplingConfig(max_new_tokens=12), tensorboard=False, max_turns=2,
    )  # fmt: skip
    result = train(config)
    assert result.updates == 2 and result.labelled_tokens > 0 and result.skipped_updates == 0
    with TrajectoryStore(config.store) as store:
        episodes = [e for batch in store.iter_episodes(EpisodeFilter(run_id=result.run_id)) for e in batch]
    assert len(episodes) == 4
    episode = episodes[0]
    assert episode.annotations.token_logprobs and all(a.k == 16 for a in episode.annotations.token_logprobs)
    texts = load_decoder(episode.tokenizer).texts([], episode.token_ids[:3].tolist())
    assert texts == ["<|im_start|>", "system", "\n"]  # Qwen2.5's template, in Qwen2.5's tokens
    shown = CliRunner().invoke(app, ["episodes", "show", episode.id, "--store", config.store])
    assert shown.exit_code == 0, shown.output
    assert "student vs teacher per step" in shown.output and f"tokens {episode.num_tokens}" in shown.output
