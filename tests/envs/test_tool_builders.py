"""Tools from JSON schemas and from an object's methods, validated like @tool ones; integral floats for integers."""

from __future__ import annotations

import re

import pytest

from opd.envs import ToolArgumentError, tool
from opd.envs.tool_builders import tool_from_schema, tools_from_object
from opd.errors import ConfigError

SCHEMA = {
    "type": "object",
    "properties": {
        "path": {"type": "string"},
        "limit": {"type": "integer", "default": 10},
        "from": {"type": "array", "items": {"type": "number"}},  # a Python keyword as an argument name
        "mode": {"enum": ["fast", "exact"]},
        "note": {"type": ["string", "null"]},
    },
    "required": ["path", "from"],
}


def test_a_schema_tool_validates_and_passes_only_what_was_given() -> None:
    seen = []
    search = tool_from_schema("search", "Search files.", SCHEMA, lambda **kw: seen.append(kw) or "ok")
    assert search.schema["function"]["parameters"]["properties"]["from"]["items"] == {"type": "number"}
    assert search({"path": "a", "from": [1, 2.5], "limit": 3.0}) == "ok"
    assert seen[-1] == {"path": "a", "from": [1.0, 2.5], "limit": 3}  # 3.0 -> 3; the None-defaulted options are not sent
    problems = {
        "argument 'limit': expected integer, got 2.5": {"path": "a", "from": [], "limit": 2.5},
        "missing required argument 'from' (array of number)": {"path": "a"},
        "argument 'mode': expected one of 'fast', 'exact'": {"path": "a", "from": [], "mode": "slow"},
        "unexpected argument 'depth'": {"path": "a", "from": [], "depth": 1},
        "argument 'path': expected string, got 3": {"path": 3, "from": []},
    }
    for message, arguments in problems.items():
        with pytest.raises(ToolArgumentError, match=re.escape(message)):
            search(arguments)
    with pytest.raises(ConfigError, match="must be an 'object' JSON schema"):
        tool_from_schema("bad", "", {"type": "array"}, print)


def test_integer_arguments_accept_integral_floats_only() -> None:
    @tool
    def repeat(text: str, times: int, widths: list[int] | None = None) -> str:
        """Repeat a text.

        Args:
            text: What to repeat.
            times: How often.
            widths: Optional column widths.
        """
        return text * times

    assert repeat({"text": "ab", "times": 2.0, "widths": [1.0, 2]}) == "abab"
    for bad in (2.5, "2", True):
        with pytest.raises(ToolArgumentError, match="argument 'times': expected integer"):
            repeat({"text": "ab", "times": bad})


class Account:
    """A stateful API object: its methods become tools and share its state."""

    def __init__(self) -> None:
        self.balance = 0

    def deposit(self, amount: int) -> int:
        """Add money to the account and return the new balance.

        Args:
            amount: How much to add.
        """
        self.balance += amount
        return self.balance

    def read_balance(self) -> int:
        """Return the balance."""
        return self.balance


def test_an_objects_methods_become_tools_that_share_its_state() -> None:
    account = Account()
    deposit, read_balance = tools_from_object(account)
    assert deposit.name == "deposit" and deposit.schema["function"]["parameters"]["properties"]["amount"]["type"] == "integer"
    deposit({"amount": 5.0})
    assert read_balance({}) == 5 and account.balance == 5
    with pytest.raises(ToolArgumentError, match="argument 'amount'"):
        deposit({"amount": "five"})
    with pytest.raises(ConfigError, match="has no method 'withdraw'"):
        tools_from_object(account, ["withdraw"])
