"""Per-call latency of a command in a warm pooled Docker sandbox vs a fresh ``docker run --rm`` per call.

Both run the same command (``python3 -c 'print(1)'``) in the same image with
the same hardening, side by side in one run; the table shows p50 and p95 in
milliseconds and the warm/cold ratio (target: <= 0.1). Needs a running engine
and the images (``scripts/ensure-docker.sh``).

    .venv/bin/python benchmarks/sandbox.py [--warm-calls 100] [--cold-calls 10]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import time

from rich.console import Console
from rich.table import Table

from opd.envs import ExecLimits
from opd.envs.docker import Hardening, SandboxPool, default_image
from opd.envs.docker.hardening import SANDBOX_LABEL

COMMAND = ["python3", "-c", "print(1)"]


def warm_latencies(calls: int) -> list[float]:
    """Seconds per exec into one warm sandbox the pool started (attach=False: no dependency on compose)."""
    with SandboxPool(kind="python", size=1, attach=False) as pool, pool.borrow() as sandbox:
        sandbox.exec(COMMAND, ExecLimits())  # first call outside the measurement, like any warm-up
        latencies = []
        for _ in range(calls):
            started = time.perf_counter()
            result = sandbox.exec(COMMAND, ExecLimits())
            latencies.append(time.perf_counter() - started)
            assert result.output == "1\n", result
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
    warm, cold = warm_latencies(args.warm_calls), cold_latencies(args.cold_calls)
    table = Table(title=f"per-call latency, ms ({platform.machine()}, Python {platform.python_version()})")
    for column in ("mode", "calls", "p50", "p95", "p50 ratio vs docker run"):
        table.add_column(column, justify="right")
    cold_p50 = statistics.median(cold)
    for name, values in [("warm pooled sandbox (exec)", warm), ("docker run --rm per call", cold)]:
        median = statistics.median(values)
        table.add_row(name, str(len(values)), f"{1e3 * median:,.0f}", f"{1e3 * p95(values):,.0f}", f"{median / cold_p50:.3f}")
    Console().print(table)


if __name__ == "__main__":
    main()
