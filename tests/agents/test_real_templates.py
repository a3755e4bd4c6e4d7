"""Real tokenizers and chat templates (Qwen2.5, Llama 3.1, Qwen3): token-in/token-out against each template's own rendering.

The models come from scripts/ensure-real-tokenizers.sh (real tokenizer and template,
small random weights). The scripted expert plays the calculator suite through each
template's tool-call format, so every turn's text is what a model would write.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from opd.agents.policy import CausalLMPolicy
from opd.agents.rollout import expert_demonstration
from opd.envs import HermesFormat, Llama3JsonFormat, ToolEnv, render_prompt
from opd.trajectories import Episode

pytestmark = [pytest.mark.real_tokenizer, pytest.mark.slow]

VOCAB = {"qwen2.5": 151_936, "llama3.1": 128_256, "qwen3": 151_936}
FORMAT = {"qwen2.5": HermesFormat, "llama3.1": Llama3JsonFormat, "qwen3": HermesFormat}


@functools.cache
def load(directory: Path) -> CausalLMPolicy:
    return CausalLMPolicy.from_pretrained(str(directory))


@functools.cache
def play(directory: Path) -> list[Episode]:
    """The calculator expert on two tasks, recorded in the tokens of the model at ``directory``."""
    chat = load(directory).chat
    episodes = [expert_demonstration(chat, ToolEnv("calculator", difficulty="easy"), seed, run_id="r") for seed in (0, 1)]
    assert all(len(e.steps) >= 2 and e.success for e in episodes)
    return episodes


def conversation(episode, upto: int) -> list[dict]:
    """The chat of ``episode`` before step ``upto``'s generation: tool calls as structured calls, as a dataset holds them."""
    messages = [dict(m) for m in episode.initial_messages]
    for step in episode.steps[:upto]:
        assistant, *results = step.messages
        if step.tool_calls:
            calls = [{"type": "function", "function": dict(call)} for call in step.tool_calls]
            messages.append({"role": "assistant", "content": "", "tool_calls": calls})
        else:
            messages.append({"role": "assistant", "content": assistant["content"]})
        messages.extend(dict(m) for m in results)
    return messages


@pytest.mark.parametrize("name", list(VOCAB))
def test_the_fixture_is_the_real_tokenizer_and_template_around_a_small_model(real_models, name) -> None:
    policy = load(real_models / name)
    tokenizer = policy.tokenizer
    assert len(tokenizer) == VOCAB[name]
    config = AutoModelForCausalLM.from_pretrained(real_models / name).config
    assert (config.hidden_size, config.num_hidden_layers, config.head_dim, config.tie_word_embeddings) == (128, 2, 64, True)
    assert isinstance(policy.chat.call_format, FORMAT[name])
    if name.startswith("qwen"):
        assert tokenizer("12345", add_special_tokens=False).input_ids == [16, 17, 18, 19, 20]  # Qwen splits numbers into digits
        assert tokenizer.convert_tokens_to_ids("<tool_call>") == 151657  # one token, at its released id
    else:
        assert len(tokenizer("12345", add_special_tokens=False).input_ids) == 2  # Llama 3: groups of up to three digits
        assert tokenizer.convert_tokens_to_ids("<|eot_id|>") == tokenizer.eos_token_id == 128009
    prompt = render_prompt(tokenizer, [{"role": "user", "content": "hi"}], ToolEnv("calculator").reset(seed=0)[1]["tools"])
    assert ("<tools>" if name.startswith("qwen") else "Environment: ipython") in prompt


@pytest.mark.parametrize("name", list(VOCAB))
def test_every_turn_sees_exactly_the_templates_prompt(real_models, name) -> None:
    """Token-in/token-out: the tokens before each generation are the template's rendering of the chat so far."""
    policy = load(real_models / name)
    for episode in play(real_models / name):
        start = 0
        for index, step in enumerate(episode.steps):
            generation_starts = start + int(step.policy_mask.argmax())
            rendered = render_prompt(policy.tokenizer, conversation(episode, index), episode_tools(), add_generation_prompt=True)
            assert episode.token_ids[:generation_starts].tolist() == policy.chat.encode(rendered), f"step {index}"
            start += len(step.token_ids)
            parsed = policy.chat.call_format.parse(step.action)  # the turn's text parses back and re-renders exactly
            assert [c.to_dict() for c in getattr(parsed, "calls", ())] == [dict(c) for c in step.tool_calls]
            assert policy.chat.call_format.format(parsed) == step.action


@pytest.mark.parametrize("name", ["qwen2.5", "llama3.1"])
def test_the_whole_episode_is_the_templates_rendering_of_the_conversation(real_models, name) -> None:
    policy = load(real_models / name)
    assert not policy.chat.rewrites_earlier_turns
    for episode in play(real_models / name):
        rendered = render_prompt(policy.tokenizer, conversation(episode, len(episode.steps)), episode_tools(), add_generation_prompt=False)
        ids = policy.chat.encode(rendered)
        assert episode.token_ids.tolist() == ids[: episode.num_tokens]
        assert ids[episode.num_tokens :] == policy.chat.closing_ids[1:]  # only the final turn's closing is left


def test_qwen3_rewrites_earlier_turns_and_opd_keeps_what_the_model_saw(real_models) -> None:
    policy = load(real_models / "qwen3")
    assert policy.chat.rewrites_earlier_turns
    episode = play(real_models / "qwen3")[0]
    rendered = render_prompt(policy.tokenizer, conversation(episode, len(episode.steps)), episode_tools(), add_generation_prompt=False)
    # Re-rendered whole, the last turn gains an empty <think> block the model never saw; the episode keeps what it saw.
    assert "<think>\n\n</think>" in rendered and episode.token_ids.tolist() != policy.chat.encode(rendered)[: episode.num_tokens]


def episode_tools() -> list[dict]:
    return ToolEnv("calculator", difficulty="easy").reset(seed=0)[1]["tools"]


def test_preflight_calls_a_qwen_student_and_a_llama_teacher_incompatible_in_one_line(real_models) -> None:
    from opd.agents.preflight import preflight

    student, teacher = load(real_models / "qwen2.5"), load(real_models / "llama3.1")
    env = ToolEnv("calculator", difficulty="easy")
    texts = [env.reset(seed=seed)[0] for seed in range(4)]
    report = preflight(student.tokenizer, teacher.tokenizer, teacher_model=teacher.model, texts=texts)
    line = report.summary()
    assert not report.ok and "\n" not in line
    assert line.startswith("student and teacher are incompatible: vocabularies differ") and "nats/token" in line
    assert report.bias_nats_per_token is not None and report.bias_nats_per_token == report.bias_nats_per_token  # not NaN
    assert report.describe().splitlines()[0] == line


@pytest.mark.parametrize(("name", "call"), [("qwen2.5", '<tool_call>\n{"name": "add"'), ("llama3.1", '{"name": "add", "parameters"')])
def test_suites_show_prints_what_the_model_sees_with_token_counts(real_models, name, call) -> None:
    from typer.testing import CliRunner

    from opd.cli.app import app

    result = CliRunner().invoke(app, ["suites", "show", "calculator", "--difficulty", "easy", "--model", str(real_models / name)])
    assert result.exit_code == 0, result.output
    episode = play(real_models / name)[0]
    first = episode.steps[0]
    assert f"turn 1: reads {int((~first.policy_mask).sum()):,} tokens" in result.output
    assert f"{episode.num_tokens:,} tokens, {int(episode.policy_mask.sum()):,} written by the model" in result.output
    assert call in result.output
