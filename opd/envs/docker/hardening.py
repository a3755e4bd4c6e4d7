"""How a sandbox container is locked down, and the labels that find it again.

One frozen :class:`Hardening` value describes the container settings; the pool
turns it into ``docker run`` arguments for the containers it starts itself.
``docker-compose.yml`` declares the same settings for the compose services;
change both together (``tests/envs/docker/test_hardening.py`` compares them).

What this does *not* protect against: a kernel or runc vulnerability (containers
share the host kernel; use gVisor or a VM for hostile multi-tenant use), CPU time
within the limits, side channels, and whatever a remote engine's host exposes.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from typing import Any

__all__ = [
    "COMPOSE_PROJECT_LABEL",
    "KIND_LABEL",
    "OWNER_LABEL",
    "SANDBOX_LABEL",
    "Hardening",
    "Owner",
    "container_kwargs",
    "default_image",
]

SANDBOX_LABEL = "opd.sandbox"  # "1" on every opd sandbox container, compose-started or pool-started
KIND_LABEL = "opd.sandbox.kind"  # "python" or "shell": which service / image
OWNER_LABEL = "opd.sandbox.owner"  # pool-started only: "<host>:<pid>:<start ticks>" of the process that must remove it
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"  # set by compose; such containers belong to `docker compose down`
IDLE_USER = "65534:65534"  # runs the keep-alive process, so that a reset (kill -1 as uid 1000) leaves it alone


def default_image(kind: str) -> str:
    """The tag ``docker compose build`` gives the image of service ``kind``."""
    return f"opd-sandbox-{kind}:0.1"


@dataclasses.dataclass(frozen=True)
class Hardening:
    """Limits and isolation of one sandbox container. The defaults match docker-compose.yml."""

    memory: str = "512m"  # RAM limit; swap is capped at the same value, i.e. no swap
    pids: int = 128  # processes and threads: a fork bomb stops here
    cpus: float = 1.0
    work_size: str = "64m"  # the tmpfs work directory /work; files count against `memory`
    tmp_size: str = "16m"  # the tmpfs /tmp
    nofile: int = 1024  # open files per process
    network: bool = False  # True attaches the default bridge network; only for trusted tools that need it


@dataclasses.dataclass(frozen=True)
class Owner:
    """The host process that owns a pool-started container; it is dead if the pid is gone or was reused."""

    host: str
    pid: int
    start_ticks: int  # process start time from /proc, so a reused pid does not look alive

    @classmethod
    def current(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), _start_ticks(os.getpid()))

    @classmethod
    def parse(cls, label: str) -> Owner | None:
        try:
            host, pid, ticks = label.rsplit(":", 2)
            return cls(host, int(pid), int(ticks))
        except ValueError:
            return None

    def label(self) -> str:
        return f"{self.host}:{self.pid}:{self.start_ticks}"

    def is_alive(self) -> bool | None:
        """True or False on this host; None when the owner runs on another host (we cannot tell)."""
        if self.host != socket.gethostname():
            return None
        return _start_ticks(self.pid) == self.start_ticks


def _start_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            # Field 22 is the start time; the command name (field 2) may contain spaces, so split after it.
            return int(stat.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return -1


def container_kwargs(kind: str, image: str, hardening: Hardening, owner: Owner) -> dict[str, Any]:
    """Arguments for ``client.containers.run`` that give a pool-started container the compose services' hardening."""
    return {
        "image": image,
        "command": ["sleep", "infinity"],
        "detach": True,
        "labels": {SANDBOX_LABEL: "1", KIND_LABEL: kind, OWNER_LABEL: owner.label()},
        "name": f"opd-sandbox-{kind}-{owner.pid}-{os.urandom(3).hex()}",
        "network_mode": "bridge" if hardening.network else "none",
        "read_only": True,
        "tmpfs": {
            "/work": f"rw,nosuid,nodev,size={hardening.work_size},uid=1000,gid=1000",
            "/tmp": f"rw,nosuid,nodev,noexec,size={hardening.tmp_size},mode=1777",
        },
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "user": IDLE_USER,
        "init": True,
        "pids_limit": hardening.pids,
        "mem_limit": hardening.memory,
        "memswap_limit": hardening.memory,
        "nano_cpus": int(hardening.cpus * 1e9),
        "ulimits": [
            {"Name": "core", "Soft": 0, "Hard": 0},
            {"Name": "nofile", "Soft": hardening.nofile, "Hard": hardening.nofile},
        ],
        "environment": {},  # nothing of the host's environment
        "hostname": "sandbox",
        "working_dir": "/work",
    }
