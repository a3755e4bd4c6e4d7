"""Errors keep the promise of opd/errors.py: everything opd raises is an OpdError (and the stdlib type it replaces)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from chat_server import chat_app, constant_judge, serve
from trajectory_factories import make_episode

from opd.agents import critic as critic_module
from opd.agents.critic import BlackBoxTeacher, CriticConfig
from opd.envs import ToolArgumentError, ToolEnv
from opd.errors import NotInStoreError, OpdError, StoreError, ToolError
from opd.trajectories import Run, TrajectoryStore


def test_not_found_in_the_store_is_a_store_error_and_still_a_key_error(tmp_path: Path) -> None:
    with TrajectoryStore(tmp_path / "s.db") as store:
        for lookup in (store.get_run, store.get_episode):
            with pytest.raises(NotInStoreError) as caught:
                lookup("no-such-id")
            assert isinstance(caught.value, StoreError) and isinstance(caught.value, KeyError)
            assert str(caught.value).startswith("No ")  # a message, not KeyError's repr of one


def test_a_tool_argument_error_is_a_tool_error_and_still_an_observation() -> None:
    assert issubclass(ToolArgumentError, ToolError) and issubclass(ToolArgumentError, OpdError)
    env = ToolEnv("calculator", difficulty="easy")
    env.reset(seed=0)
    _, _, terminated, _, info = env.step('<tool_call>{"name": "add", "arguments": {"a": "one", "b": 2}}</tool_call>')
    assert not terminated and "Invalid arguments for tool 'add'" in info["messages"][-1]["content"]
    env.close()


def test_a_bug_in_reading_replies_fails_loudly_instead_of_being_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in for a fault we cannot cause with a real server: our own reply reader breaks on a good reply.
    def broken(response):
        raise KeyError("content")

    monkeypatch.setattr(critic_module, "_reply", broken)
    app, log = chat_app(constant_judge(7))
    episode = make_episode(np.random.default_rng(0), Run(), steps=1, annotated=False)
    with serve(app) as base:
        teacher = BlackBoxTeacher(CriticConfig(model="openai/judge", api_base=base, max_retries=3))
        with pytest.raises(KeyError, match="content"):
            teacher.annotate([episode])
    assert log.requests == 1  # not retried 4 times and then left unannotated
