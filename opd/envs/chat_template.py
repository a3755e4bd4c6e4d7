"""Render a conversation and its tool list into a prompt through the model's chat template.

Models trained for tool use ship a chat template that knows where the tool
schemas go (transformers passes them as ``tools=``). For a model without one,
opd uses :data:`FALLBACK_CHAT_TEMPLATE`: ChatML turns with the tools listed in
the system turn inside ``<tools></tools>`` and calls written as
``<tool_call>{json}</tool_call>``, the Hermes/Qwen layout that
:class:`~opd.envs.tool_calls.HermesFormat` parses. This module only duck-types
the tokenizer (anything with ``apply_chat_template``), so ``opd.envs`` stays
free of model code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

__all__ = ["FALLBACK_CHAT_TEMPLATE", "ChatTokenizer", "has_chat_template", "render_prompt"]

FALLBACK_CHAT_TEMPLATE = (
    # transformers renders with trim_blocks and lstrip_blocks, so every newline is written out explicitly.
    "{%- if messages[0].role == 'system' %}{% set system = messages[0].content %}{% set rest = messages[1:] %}"
    "{%- else %}{% set system = '' %}{% set rest = messages %}{% endif %}"
    "{%- if system or tools %}{{ '<|im_start|>system\\n' + system }}"
    "{%- if tools %}{{ '\\n\\nYou may call one or more functions. Their signatures are inside <tools></tools>:\\n<tools>' }}"
    "{%- for tool in tools %}{{ '\\n' + (tool | tojson) }}{% endfor %}"
    '{{ \'\\n</tools>\\nTo call a function, write <tool_call>{"name": <function-name>, "arguments": <args-json-object>}'
    "</tool_call>. To finish, reply with your answer and no tool call.' }}{% endif %}"
    "{{ '<|im_end|>\\n' }}{% endif %}"
    "{%- for message in rest %}"
    "{%- if message.role == 'tool' %}"
    "{{ '<|im_start|>user\\n<tool_response>\\n' + message.content + '\\n</tool_response><|im_end|>\\n' }}"
    # An assistant turn with raw text keeps that text (it already holds its calls); structured calls alone are written out.
    "{%- elif message.role == 'assistant' and not message.content and message.tool_calls is defined %}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{%- for call in message.tool_calls %}{{ '<tool_call>\\n' + (call.function | tojson) + '\\n</tool_call>' }}{% endfor %}"
    "{{ '<|im_end|>\\n' }}"
    "{%- else %}{{ '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{% endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class ChatTokenizer(Protocol):
    chat_template: Any

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


def has_chat_template(tokenizer: ChatTokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(
    tokenizer: ChatTokenizer,
    messages: Sequence[dict[str, Any]],
    tools: Sequence[dict[str, Any]] | None = None,
    *,
    add_generation_prompt: bool = True,
) -> str:
    """The prompt text for ``messages`` with ``tools``, by the model's template or the fallback."""
    template = None if has_chat_template(tokenizer) else FALLBACK_CHAT_TEMPLATE
    return tokenizer.apply_chat_template(
        list(messages),
        tools=list(tools) if tools else None,
        chat_template=template,
        add_generation_prompt=add_generation_prompt,
        tokenize=False,
    )
