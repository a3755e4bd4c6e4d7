"""The sandbox lender: which backend a suite gets, local reuse, rounds, and the one-line error without an engine."""

from __future__ import annotations

import pytest

from opd.envs import LocalSandbox, make_suite
from opd.envs.lending import SandboxConfig, borrowed, open_sandboxes, rounds
from opd.errors import ConfigError, MissingPrerequisiteError


def test_suites_that_run_model_code_get_docker_by_default() -> None:
    config = SandboxConfig()
    assert config.backend_for(make_suite("python")) == "docker" and config.backend_for(make_suite("files")) == "docker"
    assert config.backend_for(make_suite("calculator")) == "local"
    assert SandboxConfig(backend="docker").backend_for(make_suite("calculator")) == "docker"


@pytest.mark.parametrize("bad", [{"backend": "podman"}, {"size": 0}, {"timeout_s": 0}])
def test_bad_settings_are_config_errors(bad: dict) -> None:
    with pytest.raises(ConfigError, match="sandbox"):
        SandboxConfig(**bad)


def test_local_sandboxes_are_reset_and_reused_and_closed() -> None:
    lender = open_sandboxes(SandboxConfig(timeout_s=3), make_suite("calculator"))
    assert lender.limits.timeout_s == 3 and lender.at_once is None
    with borrowed(lender, 2) as (a, b):
        assert isinstance(a, LocalSandbox) and a is not b
        a.write_file("left.txt", "by the last episode")
    with borrowed(lender, 1) as (again,):
        assert again in (a, b) and list(again.workdir.iterdir()) == []
    lender.close()
    assert not a.workdir.exists() and not b.workdir.exists()


def test_a_round_gives_back_its_sandboxes_when_the_episode_raises() -> None:
    lender = open_sandboxes(SandboxConfig(), make_suite("calculator"))
    with pytest.raises(KeyboardInterrupt), borrowed(lender, 2) as boxes:
        raise KeyboardInterrupt
    assert sorted(map(id, lender._idle)) == sorted(map(id, boxes))
    lender.close()


def test_rounds_follow_the_lenders_capacity() -> None:
    class FourAtOnce:
        at_once = 4

    assert rounds(FourAtOnce(), 10) == [range(0, 4), range(4, 8), range(8, 10)]
    assert rounds(open_sandboxes(SandboxConfig(), make_suite("calculator")), 10) == [range(0, 10)]


def test_without_an_engine_the_error_is_one_line_naming_both_ways_to_get_sandboxes() -> None:
    # A real refused connection: nothing listens on port 1 of loopback.
    with pytest.raises(MissingPrerequisiteError) as caught:
        open_sandboxes(SandboxConfig(base_url="tcp://127.0.0.1:1"), make_suite("python"))
    message = str(caught.value)
    assert "\n" not in message and "'python'" in message and "tcp://127.0.0.1:1" in message
    assert "docker compose up -d" in message and "starts its own containers" in message
