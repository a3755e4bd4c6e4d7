from __future__ import annotations

import numpy as np

from opd.envs import HermesFormat, ToolEnv, expert_action, render_prompt
from opd.envs.chat_template import FALLBACK_CHAT_TEMPLATE


def episode_messages() -> tuple[list[dict], list[dict]]:
    """The messages of two expert turns, exactly as the env reports them in ``info``."""
    env = ToolEnv("calculator")
    _, info = env.reset(seed=0)
    messages, tools = list(info["messages"]), info["tools"]
    rng = np.random.default_rng(0)
    for _ in range(2):
        _, _, _, _, step_info = env.step(expert_action(env, [], rng))
        messages += [step_info["assistant_message"], *step_info["messages"]]
    return messages, tools


def test_fallback_template_renders_tools_calls_and_results(tiny_tokenizer) -> None:
    assert tiny_tokenizer.chat_template is None
    messages, tools = episode_messages()
    text = render_prompt(tiny_tokenizer, messages, tools)
    assert text.startswith("<|im_start|>system\nYou are a careful calculator agent.")
    assert "<tools>\n" + '{"type": "function", "function": {"name": "add"' in text
    assert text.count("<tool_response>") == 2
    assert text.endswith("<|im_start|>assistant\n")
    # What the fallback shows as a call is exactly what HermesFormat parses.
    first_call = text.split("<|im_start|>assistant\n")[1].split("<|im_end|>")[0]
    assert HermesFormat().parse(first_call) == HermesFormat().parse(messages[2]["content"])


def test_structured_tool_calls_are_written_in_the_parsed_format(tiny_tokenizer) -> None:
    messages = [
        {"role": "user", "content": "2+3?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}],
        },
    ]
    text = render_prompt(tiny_tokenizer, messages, add_generation_prompt=False)
    call_text = text.split("<|im_start|>assistant\n")[1].split("<|im_end|>")[0]
    parsed = HermesFormat().parse(call_text)
    assert parsed.calls[0].name == "add" and parsed.calls[0].arguments == {"a": 2, "b": 3}


def test_a_model_template_wins_over_the_fallback(tiny_tokenizer) -> None:
    tiny_tokenizer.chat_template = "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{{ tools | length }} tools"
    try:
        assert render_prompt(tiny_tokenizer, [{"role": "user", "content": "hi"}], [{"type": "function"}] * 3) == "[user]hi3 tools"
    finally:
        tiny_tokenizer.chat_template = None
    assert "im_start" in FALLBACK_CHAT_TEMPLATE
