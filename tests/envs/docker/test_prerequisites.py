"""Without an engine: a message saying what to do, and Docker tests that fail (not skip) in CI. No engine needed."""

from __future__ import annotations

import pytest
from conftest import docker_client_or_fail

from opd.envs.docker import connect
from opd.errors import MissingPrerequisiteError

NO_ENGINE = "unix:///nonexistent/opd-test-docker.sock"


def test_no_engine_says_how_to_start_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    with pytest.raises(MissingPrerequisiteError, match="ensure-docker.sh.*DOCKER_HOST"):
        connect(timeout_s=5)


def test_docker_tests_fail_in_ci_without_an_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the Docker tests"):
        docker_client_or_fail()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no Docker Engine"):
        docker_client_or_fail()
