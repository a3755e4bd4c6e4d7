"""Engines on other hosts: reached through DOCKER_HOST or an EngineConfig (TLS passed through), and a pool over several.

The test engine stands in for a remote one: scripts/ensure-docker.sh starts it listening on a unix socket and on
tcp://127.0.0.1:2375, and the TCP path is the one a remote engine takes (HTTP over TCP instead of the local socket).
The unix socket and the TCP port are two addresses of one engine; for the pool they are two engines, which proves
the path (a client per engine, containers spread, each sandbox driven through its own engine), not two machines.
"""

from __future__ import annotations

from pathlib import Path

import docker.tls
import pytest
from conftest import docker_client_or_fail

from opd.envs import ExecLimits, ToolEnv, play_expert
from opd.envs.docker import EngineConfig, PoolConfig, SandboxPool
from opd.errors import ConfigError

LOOPBACK_TCP = "tcp://127.0.0.1:2375"  # scripts/ensure-docker.sh: OPD_DOCKER_TCP
LOCAL_SOCKET = "unix:///var/run/docker.sock"


@pytest.fixture
def tcp_engine() -> EngineConfig:
    engine = EngineConfig(LOOPBACK_TCP)
    docker_client_or_fail(engine).close()
    return engine


@pytest.mark.docker
def test_sandboxes_run_through_an_engine_reached_over_docker_host(tcp_engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", LOOPBACK_TCP)  # what a user sets for a remote engine; nothing else changes
    with SandboxPool(kind="python", size=1, attach=False) as pool:
        assert pool.client.api.base_url == "http://127.0.0.1:2375"
        with pool.borrow() as sandbox:
            episode = play_expert(ToolEnv("python", sandbox=sandbox, difficulty="easy"), seed=3)
    assert episode.success and pool.client.containers.list(all=True, filters={"id": sandbox.container_id}) == []


@pytest.mark.docker
def test_a_pool_spans_several_engines(tcp_engine) -> None:
    config = PoolConfig(kind="python", size=3, attach=False, engines=(EngineConfig(LOCAL_SOCKET), tcp_engine))
    with SandboxPool(config) as pool:
        socket_client, tcp_client = pool.clients
        placed = [s.client for s in pool.sandboxes]
        assert placed.count(socket_client) == 2 and placed.count(tcp_client) == 1  # the least-loaded engine gets the next one
        for sandbox in pool.sandboxes:
            result = sandbox.exec(["python3", "-c", "print(6 * 7)"], ExecLimits(timeout_s=20))
            assert result.ok and result.output.strip() == "42", result
            # Each container was created and is driven through its own engine.
            assert sandbox.client.api.inspect_container(sandbox.container_id)["State"]["Running"]
        held = [pool.acquire() for _ in range(3)]
        assert {s.container_id for s in held} == {s.container_id for s in pool.sandboxes}
        for sandbox in held:
            pool.release(sandbox)


def test_engine_tls_settings_are_passed_through(tmp_path: Path) -> None:
    assert EngineConfig("tcp://sandboxes.example:2375")._tls() is False
    with pytest.raises(ConfigError, match="tls_verify needs cert_path"):
        EngineConfig("tcp://sandboxes.example:2376", tls_verify=True)._tls()
    with pytest.raises(ConfigError, match="lacks ca.pem, cert.pem, key.pem"):
        EngineConfig("tcp://sandboxes.example:2376", tls_verify=True, cert_path=str(tmp_path))._tls()
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
    tls = EngineConfig("tcp://sandboxes.example:2376", tls_verify=True, cert_path=str(tmp_path))._tls()
    assert isinstance(tls, docker.tls.TLSConfig) and tls.verify and tls.ca_cert == str(tmp_path / "ca.pem")
    assert tls.cert == (str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    assert PoolConfig(engines=({"base_url": LOOPBACK_TCP},)).engines == (EngineConfig(LOOPBACK_TCP),)  # from a config file
