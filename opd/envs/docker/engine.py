"""Talking to Docker Engines: connect with a useful error, and run one supervisor request in a container.

An engine is the local one or any other host's: :class:`EngineConfig` names it
(``tcp://host:2376`` with TLS, or ``unix://``; not ``ssh://``, whose tunnel gives
no raw socket for the exec stream), and without one the standard variables decide (``DOCKER_HOST``,
``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``), as for the ``docker`` CLI.

Every command, file read or write and reset goes through :func:`run_request`:
one ``docker exec`` of the supervisor (``supervisor.py``) with the request on
its stdin and one JSON reply on its stdout. The host reads at most
``max_reply_bytes`` of that reply and gives up at a deadline, so neither a
flood nor a hung container can stall or exhaust the host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import struct
import time
from functools import cache
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.tls

from opd.errors import ConfigError, MissingPrerequisiteError, SandboxError

__all__ = ["EngineConfig", "ReplyError", "connect", "require_image", "run_request", "supervisor_argv"]

log = logging.getLogger(__name__)

SANDBOX_USER = "1000:1000"  # the unprivileged user every model command runs as (see docker/sandbox/Dockerfile)
_FRAME_HEADER = struct.Struct(">BxxxL")  # docker's multiplexed stream: stream id, 3 pad bytes, payload size


class ReplyError(SandboxError):
    """The supervisor gave no valid reply (killed, container gone, or the deadline passed)."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@cache
def _supervisor_source() -> str:
    return (Path(__file__).with_name("supervisor.py")).read_text(encoding="utf-8")


def supervisor_argv() -> list[str]:
    # -I: ignore PYTHON* variables and the user site; -S: skip site for a faster start.
    return ["python3", "-I", "-S", "-c", _supervisor_source()]


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """One Docker Engine. Left empty: the one the environment names (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH)."""

    base_url: str | None = None  # unix:///var/run/docker.sock or tcp://host:2376
    tls_verify: bool = False  # verify the engine's certificate against cert_path/ca.pem (as DOCKER_TLS_VERIFY=1)
    cert_path: str | None = None  # a directory with ca.pem, cert.pem, key.pem (as DOCKER_CERT_PATH); client cert only if not tls_verify

    def describe(self) -> str:
        return self.base_url or os.environ.get("DOCKER_HOST") or "the default engine"

    def client(self, timeout_s: float) -> docker.DockerClient:
        if self.base_url is None:
            return docker.from_env(timeout=int(timeout_s))
        return docker.DockerClient(base_url=self.base_url, timeout=int(timeout_s), tls=self._tls())

    def _tls(self) -> docker.tls.TLSConfig | bool:
        if self.cert_path is None:
            if self.tls_verify:
                raise ConfigError(f"Engine {self.base_url}: tls_verify needs cert_path (a directory with ca.pem, cert.pem, key.pem).")
            return False
        directory = Path(self.cert_path).expanduser()
        missing = [name for name in ("ca.pem", "cert.pem", "key.pem") if not (directory / name).is_file()]
        if missing:
            raise ConfigError(f"Engine {self.base_url}: {directory} lacks {', '.join(missing)} (the files DOCKER_CERT_PATH holds).")
        return docker.tls.TLSConfig(
            client_cert=(str(directory / "cert.pem"), str(directory / "key.pem")),
            ca_cert=str(directory / "ca.pem") if self.tls_verify else None,
            verify=self.tls_verify,
        )


def connect(engine: EngineConfig | None = None, *, timeout_s: float = 60.0) -> docker.DockerClient:
    """A client for ``engine`` (default: the one DOCKER_HOST or the default socket names), or a message saying how to start one."""
    engine = engine or EngineConfig()
    try:
        client = engine.client(timeout_s)
        client.ping()
    except docker.errors.DockerException as exc:
        raise MissingPrerequisiteError(
            f"Cannot reach the Docker Engine at {engine.describe()} ({exc}). Start one (`scripts/ensure-docker.sh` does it on "
            "Debian/Ubuntu as root; elsewhere see https://docs.docker.com/engine/install/) or point DOCKER_HOST at a running engine."
        ) from exc
    return client


def require_image(client: docker.DockerClient, image: str) -> None:
    """Fail with what to run if ``image`` is not on the engine (we never pull sandbox images implicitly)."""
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        build = "`scripts/build-mcp-image.sh` (after `docker compose build`)" if "sandbox-mcp" in image else "`docker compose build`"
        raise MissingPrerequisiteError(
            f"The sandbox image {image!r} is not on this Docker Engine. Build it from the repository root with "
            f"{build} (offline machines: run `scripts/build-base-image.sh` first; `scripts/ensure-docker.sh` does it all)."
        ) from None
    except docker.errors.APIError as exc:
        raise SandboxError(f"Docker Engine error while looking up image {image!r}: {exc}") from exc


def run_request(
    client: docker.DockerClient, container_id: str, request: dict[str, Any], *, deadline_s: float, max_reply_bytes: int
) -> dict[str, Any]:
    """Run one supervisor request in the container and return its decoded reply.

    Raises :class:`ReplyError` if the reply is missing, oversized or late, and
    :class:`SandboxError` if the engine refuses the exec (e.g. the container is gone).
    """
    api = client.api
    payload = json.dumps(request).encode("utf-8")
    try:
        exec_id = api.exec_create(container_id, supervisor_argv(), stdin=True, user=SANDBOX_USER, workdir="/")["Id"]
        stream = api.exec_start(exec_id, socket=True)
    except docker.errors.NotFound as exc:
        raise SandboxError(f"Sandbox container {container_id[:12]} no longer exists: {exc.explanation}") from exc
    except docker.errors.APIError as exc:
        raise SandboxError(f"Docker Engine refused to run a command in container {container_id[:12]}: {exc}") from exc
    sock = getattr(stream, "_sock", stream)  # SocketIO over a unix or TCP socket
    try:
        sock.settimeout(max(deadline_s, 0.1))
        sock.sendall(b"%d\n" % len(payload) + payload)
        raw, errors = _read_output(sock, time.monotonic() + deadline_s, max_reply_bytes)
    finally:
        _close(stream, sock)
    if not raw:
        detail = errors.decode("utf-8", errors="replace").strip().splitlines()[-1:] or ["killed: out of memory or processes?"]
        raise ReplyError(f"the sandbox process died without a reply ({detail[0][:300]})")
    try:
        reply = json.loads(raw)
    except ValueError as exc:
        raise ReplyError(f"the sandbox sent an unreadable reply ({len(raw)} bytes)") from exc
    return reply


def _read_output(sock: socket.socket, deadline: float, limit: int) -> tuple[bytes, bytes]:
    """The exec's (stdout, stderr) until EOF: at most ``limit`` bytes in all, and not past ``deadline``.

    The supervisor replies on stdout; stderr carries only its own crash (a Python traceback).
    """
    out, err = bytearray(), bytearray()
    while True:
        header = _recv_exactly(sock, _FRAME_HEADER.size, deadline)
        if header is None:
            if err:
                log.warning("sandbox supervisor stderr: %s", bytes(err[-2000:]))
            return bytes(out), bytes(err)
        stream_id, size = _FRAME_HEADER.unpack(header)
        if len(out) + len(err) + size > limit:
            raise ReplyError(f"the sandbox reply exceeded {limit} bytes; output was not read")
        body = _recv_exactly(sock, size, deadline)
        if body is None:
            raise ReplyError("the sandbox connection closed mid-reply")
        (out if stream_id == 1 else err).extend(body)


def _recv_exactly(sock: socket.socket, size: int, deadline: float | None) -> bytes | None:
    """``size`` bytes, or None at a clean EOF before the first byte; ``deadline`` None: the socket's own timeout."""
    buf = bytearray()
    while len(buf) < size:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ReplyError("the sandbox did not answer in time", timed_out=True)
            sock.settimeout(remaining)
        try:
            chunk = sock.recv(min(size - len(buf), 1 << 16))
        except TimeoutError:
            raise ReplyError("the sandbox did not answer in time", timed_out=True) from None
        except OSError as exc:
            raise ReplyError(f"lost the connection to the sandbox: {exc}") from exc
        if not chunk:
            if buf:
                raise ReplyError("the sandbox connection closed mid-frame")
            return None
        buf += chunk
    return bytes(buf)


def _close(stream: Any, sock: Any) -> None:
    for thing in (sock, stream):
        with contextlib.suppress(Exception):  # closing a broken socket can raise anything; nothing to do about it
            thing.close()
