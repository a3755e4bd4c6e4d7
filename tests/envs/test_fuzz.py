"""No action string, however broken or hostile, makes ``step`` raise: it always yields an observation."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opd.envs import ToolEnv, play_expert

# Malformed in every suite: each must come back as an error observation.
MALFORMED: list[str | bytes] = [
    "",
    " \n ",
    "<tool_call>",
    "</tool_call>",
    "<tool_call></tool_call>",
    "<tool_call>null</tool_call>",
    "<tool_call>{}</tool_call>",
    '<tool_call>{"name": null}</tool_call>',
    '<tool_call>{"name": "add", "arguments": null}</tool_call>',
    '<tool_call>{"name": "add", "arguments": {"a": ' + "9" * 5000 + ', "b": 1}}</tool_call>',
    '<tool_call>{"name": "' + "x" * 10_000 + '", "arguments": {}}</tool_call>',
    '<tool_call>{"name": "__class__", "arguments": {}}</tool_call>',
    "<tool_call>" + "{" * 50_000 + "</tool_call>",
    "<tool_call>" + '{"a":' * 5000 + "1" + "}" * 5000 + "</tool_call>",
    '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>' * 1000,
    "x" * 1_000_000,
    "<tool_call>" * 10_000,
    "\ud800",
    b"\xc3\x28",
    b"\xf0\x28\x8c\xbc",
    b"\xff" * 100,
    bytes(range(256)),
    "🙂" * 20_000,  # over the 16,384-character action limit
]
# Hostile but possibly well-formed (a call with odd values, or a final answer): must not raise.
HOSTILE: list[str | bytes] = [
    "\x00",
    '<tool_call>{"name": "add", "arguments": {"a": 1e309, "b": -1e309}}</tool_call>',
    '<tool_call>{"name": "add", "arguments": {"a": NaN, "b": Infinity}}</tool_call>',
    '<tool_call>{"name": "multiply", "arguments": {"a": 1e308, "b": 1e308}}</tool_call>',
    '<tool_call>{"name": "divide", "arguments": {"a": 0, "b": 0}}</tool_call>',
    '<tool_call>{"name": "divide", "arguments": {"a": 1, "b": 5e-324}}</tool_call>',
    '<tool_call>{"name": "add", "arguments": {"a": true, "b": [1]}}</tool_call>',
    '<tool_call>{"name": "order", "arguments": {"sku": "SKU-0000", "quantity": -1}}</tool_call>',
    '<tool_call>{"name": "order", "arguments": {"sku": {}, "quantity": 1.5}}</tool_call>',
    '<tool_call>{"name": "get_stock", "arguments": {"sku": "' + "\u202e" * 50 + '"}}</tool_call>',
    '<tool_call>{"name": "find_product", "arguments": {"name": ""}}</tool_call>',
    '<tool_call>{"name": "add", "arguments": {"__proto__": 1}}</tool_call>',
    "\r\n\t\x0b\x0c",
    "<script>alert(1)</script>",
    "{{ 7*7 }} ${jndi:ldap://x} %s%n",
]


def mutate(rng: random.Random, valid: str) -> str | bytes:
    """One random corruption of a valid action."""
    choice = rng.randrange(8)
    if choice == 0:
        cut = rng.randrange(len(valid) + 1)
        return valid[:cut]
    if choice == 1:
        i = rng.randrange(len(valid) + 1)
        return valid[:i] + rng.choice(['"', "{", "}", "<", ">", ",", ":", "\\", "\x00", "\udc80"]) + valid[i:]
    if choice == 2:
        i = rng.randrange(len(valid))
        return valid[:i] + valid[i + 1 :]
    if choice == 3:
        return valid.encode()[: rng.randrange(1, len(valid) + 1)] + bytes([rng.randrange(128, 256)])
    if choice == 4:
        return valid * rng.randrange(2, 8)
    if choice == 5:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(0, 200)))
    if choice == 6:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
    name = rng.choice(["add", "subtract", "multiply", "divide", "find_product", "get_stock", "order", "?"])
    junk = rng.choice([1, -1, 0, 2.5, "1", None, [], {}, True, "SKU-1234", 10**30, -(10**30)])
    arguments = {rng.choice(["a", "b", "sku", "quantity", "name", "zz"]): junk for _ in range(rng.randrange(4))}
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


def assert_step_is_an_observation(env: ToolEnv, action: str | bytes) -> dict:
    obs, reward, terminated, truncated, info = env.step(action)
    assert env.observation_space.contains(obs)
    assert isinstance(reward, float) and 0.0 <= reward <= 1.0
    assert isinstance(info, dict) and "error_counts" in info
    if info["error_kind"] is not None:
        assert obs.startswith("Error")
    info["done"] = terminated or truncated
    return info


@pytest.mark.parametrize("suite_name", ["calculator", "inventory"])
def test_fuzz_10000_actions(suite_name: str) -> None:
    rng = random.Random(1234)
    env = ToolEnv(suite_name, max_turns=50)
    valid_actions = [a for seed in range(20) for a in play_expert(env, seed).actions]
    actions: list[str | bytes] = MALFORMED + HOSTILE
    actions += [mutate(rng, rng.choice(valid_actions)) for _ in range(10_000 - len(actions))]
    assert len(actions) >= 10_000
    env.reset(seed=0)
    kinds = []
    for action in actions:
        info = assert_step_is_an_observation(env, action)
        kinds.append(info["error_kind"])
        if info["done"]:
            env.reset(seed=rng.randrange(10**6))
    assert all(kinds[: len(MALFORMED)]), [a[:40] for a, k in zip(MALFORMED, kinds, strict=False) if k is None]
    assert sum(k is not None for k in kinds) > 5_000  # most corruptions are caught, not silently accepted


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(action=st.one_of(st.text(), st.binary(), st.builds(lambda s: f"<tool_call>{s}</tool_call>", st.text())))
def test_property_any_text_or_bytes_is_an_observation(action: str | bytes) -> None:
    env = ToolEnv("inventory")
    env.reset(seed=0)
    assert_step_is_an_observation(env, action)
