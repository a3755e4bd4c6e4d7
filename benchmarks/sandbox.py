"""Per-call latency of a command in a warm Docker sandbox: the serving supervisor vs ``docker exec`` per call vs ``docker run --rm``.

The same command (``python3 -c 'print(1)'``) in the same image with the same
hardening, side by side in one run: through the sandbox's long-lived supervisor
(one attached exec stream per container; what ``DockerSandbox.exec`` does now),
through a fresh ``docker exec`` of the supervisor per call (what it did
before), and as a fresh ``docker run --rm`` per call. The first two also run
``true``, to show the floor without a Python start-up in the command. The table
shows p50 and p95 in milliseconds. Needs a running engine and the images
(``scripts/ensure-docker.sh``).

    .venv/bin/python benchmarks/sandbox.py [--warm-calls 100] [--cold-calls 10]
"""

from __future__ import annotations

import argparse
import base64
import platform
import statistics
import subprocess
import time
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from opd.envs import ExecLimits
from opd.envs.docker import DockerSandbox, Hardening, SandboxPool, default_image
from opd.envs.docker.engine import run_request
from opd.envs.docker.hardening import SANDBOX_LABEL

COMMAND = ["python3", "-c", "print(1)"]
FLOOR = ["true"]


def served(sandbox: DockerSandbox, argv: list[str]) -> str:
    return sandbox.exec(argv, ExecLimits()).output


def exec_per_call(sandbox: DockerSandbox, argv: list[str]) -> str:
    """One ``docker exec`` of a fresh supervisor for this one request, as every call did before the serving supervisor."""
    request = {"op": "exec", "argv": argv, "stdin": None, "timeout_s": 10.0, "max_bytes": 65_536}
    reply = run_request(sandbox.client, sandbox.container_id, request, deadline_s=15, max_reply_bytes=1 << 20)
    return base64.b64decode(reply["output"]).decode()


def warm_latencies(sandbox: DockerSandbox, run: Callable[[DockerSandbox, list[str]], str], argv: list[str], calls: int) -> list[float]:
    """Seconds per call into one warm sandbox; the first call is a warm-up outside the measurement."""
    expected = "1\n" if argv == COMMAND else ""
    run(sandbox, argv)
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        output = run(sandbox, argv)
        latencies.append(time.perf_counter() - started)
        assert output == expected, output
    return latencies


def cold_latencies(calls: int) -> list[float]:
    """Seconds per ``docker run --rm`` of the same command with the same hardening (created, run, removed)."""
    h = Hardening()
    argv = [
        "docker", "run", "--rm", "--label", f"{SANDBOX_LABEL}=1", "--network", "none", "--read-only",
        "--tmpfs", f"/work:rw,nosuid,nodev,size={h.work_size},uid=1000,gid=1000", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges:true", "--user", "1000:1000", "--init", "--pids-limit", str(h.pids),
        "--memory", h.memory, "--memory-swap", h.memory, "--cpus", str(h.cpus), default_image("python"), *COMMAND,
    ]  # fmt: skip
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300).stdout
        latencies.append(time.perf_counter() - started)
        assert out == "1\n", out
    return latencies


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-calls", type=int, default=100, help="execs into the warm sandbox")
    parser.add_argument("--cold-calls", type=int, default=10, help="docker run --rm calls (seconds each)")
    args = parser.parse_args()
    rows = []
    # attach=False: a container of the benchmark's own, no dependency on compose.
    with SandboxPool(kind="python", size=1, attach=False) as pool, pool.borrow() as sandbox:
        for name, run in [("serving supervisor (new)", served), ("docker exec per call (before)", exec_per_call)]:
            for argv in (COMMAND, FLOOR):
                rows.append((f"{name}: {' '.join(argv[:1])}", warm_latencies(sandbox, run, argv, args.warm_calls)))
    rows.append(("docker run --rm per call: python3", cold_latencies(args.cold_calls)))
    table = Table(title=f"per-call latency, ms ({platform.machine()}, Python {platform.python_version()})")
    for column in ("mode: command", "calls", "p50", "p95", "p50 ratio vs docker run"):
        table.add_column(column, justify="right")
    cold_p50 = statistics.median(rows[-1][1])
    for name, values in rows:
        median = statistics.median(values)
        table.add_row(name, str(len(values)), f"{1e3 * median:,.1f}", f"{1e3 * p95(values):,.1f}", f"{median / cold_p50:.4f}")
    Console().print(table)


if __name__ == "__main__":
    main()
