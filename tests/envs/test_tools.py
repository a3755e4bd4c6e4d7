from __future__ import annotations

from typing import Literal

import pytest
from transformers.utils import get_json_schema

from opd.envs import Task, ToolArgumentError, ToolContext, tool
from opd.envs.sandbox import LocalSandbox
from opd.errors import ConfigError


def scale(values: list[float], factor: float = 2.0, mode: Literal["up", "down"] = "up") -> list[float]:
    """Scale a list of numbers.

    Args:
        values: The numbers to scale.
        factor: How much to scale by.
        mode: Scale up (multiply) or down (divide).
    """
    return [v * factor if mode == "up" else v / factor for v in values]


def lookup(key: str, ctx: ToolContext) -> str:
    """Look a key up in the episode's records.

    Args:
        key: The record key.
    """
    return ctx.state[key]


def test_schema_is_the_one_chat_templates_accept() -> None:
    expected = get_json_schema(scale)
    expected["function"].pop("return")
    assert tool(scale).schema == expected


def test_context_parameter_is_injected_and_hidden_from_the_schema() -> None:
    lookup_tool = tool(lookup)
    assert lookup_tool.parameter_names == ["key"]
    assert lookup_tool.context_param == "ctx"
    with LocalSandbox() as sandbox:
        context = ToolContext(task=Task("t", "p"), state={"a": "found"}, sandbox=sandbox)
        assert lookup_tool({"key": "a"}, context) == "found"


def test_valid_arguments_run_the_function_with_defaults() -> None:
    assert tool(scale)({"values": [1, 2.5]}) == [2.0, 5.0]
    assert tool(scale)({"values": [4], "factor": 4, "mode": "down"}) == [1.0]


@pytest.mark.parametrize(
    ("arguments", "fragments"),
    [
        ({"values": "1,2"}, ["argument 'values'", "expected array of number", "'1,2'"]),
        ({"values": [1, "x"]}, ["argument 'values.1'", "'x'"]),
        ({}, ["missing required argument 'values' (array of number)"]),
        ({"values": [1], "scale": 3}, ["unexpected argument 'scale'", "this tool takes: values, factor, mode"]),
        ({"values": [1], "mode": "sideways"}, ["argument 'mode'", "one of 'up', 'down'"]),
        ({"values": [1], "factor": "2"}, ["argument 'factor': expected number, got '2'"]),
    ],
)
def test_bad_arguments_name_the_argument_and_what_was_expected(arguments: dict, fragments: list[str]) -> None:
    with pytest.raises(ToolArgumentError) as caught:
        tool(scale)(arguments)
    message = str(caught.value)
    assert message.startswith("Invalid arguments for tool 'scale'")
    for fragment in fragments:
        assert fragment in message


def test_undocumented_function_is_a_clear_config_error() -> None:
    def bare(x: int) -> int:
        return x

    with pytest.raises(ConfigError, match="docstring"):
        tool(bare)


def test_name_override() -> None:
    assert tool(name="rescale")(scale).schema["function"]["name"] == "rescale"


def test_tool_schemas_render_through_apply_chat_template(tiny_tokenizer) -> None:
    messages = [{"role": "user", "content": "scale 1"}]
    text = tiny_tokenizer.apply_chat_template(messages, tools=[tool(scale).schema], chat_template=_MINIMAL_TOOL_TEMPLATE, tokenize=False)
    assert '"name": "scale"' in text and "The numbers to scale." in text


# A template in the style of model cards: it reads each tool's schema the way real templates do.
_MINIMAL_TOOL_TEMPLATE = (
    "{% for t in tools %}{{ t.function.name | tojson }} {{ t | tojson }}\n"
    "{% for name, p in t.function.parameters.properties.items() %}{{ p.description }}\n{% endfor %}{% endfor %}"
    "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
)
