"""Appending turn by turn gives exactly the tokens of the whole conversation rendered at once: no drift."""

from __future__ import annotations

import pytest

from opd.agents.chat_tokens import ChatTokens
from opd.envs import ToolEnv, play_expert, render_prompt
from opd.errors import ConfigError


def conversation_tokens(chat: ChatTokens, suite: str, seed: int) -> tuple[list[int], list[dict], list[dict]]:
    """Tokens built incrementally from an expert episode, as a rollout builds them, and the messages."""
    env = ToolEnv(suite, difficulty="easy")
    episode = play_expert(env, seed)
    messages, tools = list(episode.reset_info["messages"]), episode.reset_info["tools"]
    tokens = chat.prompt_ids(messages, tools)
    for action, info, last in zip(episode.actions, episode.step_infos, range(len(episode.actions), 0, -1), strict=True):
        generated = [*chat.encode(action), chat.end_of_turn_id]
        tokens += generated
        messages.append({"role": "assistant", "content": action})
        if last > 1:
            tokens += chat.observation_ids(generated, info["messages"], tools)
            messages += info["messages"]
    return tokens, messages, tools


@pytest.mark.parametrize("suite", ["calculator", "inventory"])
def test_incremental_tokens_equal_the_template_rendering(policy, suite: str) -> None:
    chat = policy.chat
    for seed in range(5):
        tokens, messages, tools = conversation_tokens(chat, suite, seed)
        rendered = render_prompt(policy.tokenizer, messages, tools, add_generation_prompt=False)
        tokens += chat.closing_ids[1:]  # the template closes the last turn; a rollout ends before that
        assert policy.tokenizer.decode(tokens) == rendered
        assert tokens == chat.encode(rendered)


def test_fallback_template_works_the_same(tiny_tokenizer) -> None:
    chat = ChatTokens(tiny_tokenizer)  # no chat template of its own: opd's documented fallback
    tokens, messages, tools = conversation_tokens(chat, "calculator", 0)
    rendered = render_prompt(tiny_tokenizer, messages, tools, add_generation_prompt=False)
    assert chat.closing_ids != [chat.end_of_turn_id]  # ChatML: "<|im_end|>" then a newline
    assert tiny_tokenizer.decode(tokens + chat.closing_ids[1:]) == rendered


def test_a_turn_stopped_at_the_end_of_a_tool_call_is_closed(policy) -> None:
    chat = policy.chat
    stopped = chat.encode('<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>')
    appended = chat.observation_ids(stopped, [{"role": "tool", "name": "add", "content": "3"}], None)
    assert policy.tokenizer.decode(appended) == "<|im_end|><|im_start|>tool 3<|im_end|><|im_start|>assistant "
    assert chat.action_text([*stopped, chat.end_of_turn_id]) == chat.action_text(stopped)


def test_a_template_that_rewrites_earlier_turns_is_refused(tiny_tokenizer) -> None:
    # Like templates that drop the reasoning of earlier assistant turns: appending is impossible.
    rewriting = "{% for m in messages %}{% if m.role != 'assistant' or loop.last %}[{{ m.role }}]{{ m.content }}{% endif %}{% endfor %}"
    tiny_tokenizer.chat_template = rewriting
    try:
        chat = ChatTokens(tiny_tokenizer)
        with pytest.raises(ConfigError, match="rewrites earlier turns"):
            chat.observation_ids(chat.encode("x"), [{"role": "tool", "content": "3"}], None)
    finally:
        tiny_tokenizer.chat_template = None


def test_a_template_that_rewrites_around_earlier_turns_keeps_what_the_model_saw(tiny_tokenizer) -> None:
    # Like Qwen3's: the last assistant turn gets an (empty) reasoning block that earlier ones lose.
    rewriting = (
        "{% for m in messages %}[{{ m.role }}]{% if m.role == 'assistant' and loop.last %}<think></think>{% endif %}"
        "{{ m.content }}<|im_end|>{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    tiny_tokenizer.chat_template = rewriting
    try:
        chat = ChatTokens(tiny_tokenizer)
        assert chat.rewrites_earlier_turns
        delta = chat.observation_ids(chat.encode("x<|im_end|>"), [{"role": "tool", "content": "3"}], None)
        assert tiny_tokenizer.decode(delta) == "[tool]3<|im_end|>[assistant]"
    finally:
        tiny_tokenizer.chat_template = None
