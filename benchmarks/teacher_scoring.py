"""Teacher scoring: scored tokens/s and bytes on the wire per token, in-process vs `opd serve-teacher` vs vLLM, at k = 1, 16, 64.

One model (a Qwen2-architecture teacher, head dimension 64) scores the same
sequences on each path: in this process (``LocalScorer``), through opd's own
``/score`` server (the real ``opd serve-teacher`` command) and through vLLM's
OpenAI-compatible prompt log-probs (a server from the venv `make test` builds). Bytes on the
wire are request plus response bodies, divided by the scored tokens.

    .venv/bin/python benchmarks/teacher_scoring.py [--hidden 512 --layers 8 --sequences 32 --length 256]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch
from rich.console import Console
from rich.table import Table
from rollout import build_student

from opd.agents.http_scoring import HTTPScorer
from opd.agents.scoring import LocalScorer, Scorer, ScoreRequest
from opd.agents.vllm_policy import free_port, start_vllm_server, stop_process

KS = (1, 16, 64)


class WireCount:
    """Counts request and response body bytes through an httpx client's event hooks."""

    def __init__(self, scorer: HTTPScorer) -> None:
        self.bytes = 0
        scorer._client.event_hooks = {"request": [self._request], "response": [self._response]}

    def _request(self, request: httpx.Request) -> None:
        self.bytes += len(request.content)

    def _response(self, response: httpx.Response) -> None:
        response.read()
        self.bytes += len(response.content)


VLLM_PYTHON = Path.home() / ".cache/opd/venv-vllm/bin/python"  # what `make test` builds (scripts/ensure-vllm.sh)


def measure(scorer: Scorer, requests: list[ScoreRequest]) -> tuple[float, float]:
    scorer.score(requests[:2])  # warm up
    started = time.perf_counter()
    scorer.score(requests)
    return sum(r.positions for r in requests) / (time.perf_counter() - started), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--sequences", type=int, default=32)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--vllm-python", default=os.environ.get("OPD_VLLM_PYTHON", str(VLLM_PYTHON)), help="a Python with vLLM")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    console = Console()
    with tempfile.TemporaryDirectory() as directory:
        model_dir = Path(directory) / "teacher"
        teacher = build_student(model_dir, args.hidden, args.layers)
        vocab = len(teacher.tokenizer)
        g = torch.Generator().manual_seed(0)
        sequences = torch.randint(10, vocab, (args.sequences, args.length), generator=g).tolist()
        table = Table(title=f"teacher scoring, {args.sequences} sequences of {args.length} tokens, the second half scored")
        for column in ("path", "k", "scored tok/s", "bytes/token"):
            table.add_column(column, justify="right")
        port = free_port()
        opd_bin = str(Path(sys.executable).parent / "opd")
        server = subprocess.Popen([opd_bin, "serve-teacher", str(model_dir), "--port", str(port)], start_new_session=True)
        try:
            with start_vllm_server(args.vllm_python, model_dir, args=["--max-logprobs", str(max(KS))], served_name="teacher") as vllm_url:
                _wait(f"http://127.0.0.1:{port}/info")
                for k in KS:
                    requests = [ScoreRequest(tuple(s), args.length // 2, k) for s in sequences]
                    rate, _ = measure(LocalScorer(teacher.model), requests)
                    table.add_row("in-process", str(k), f"{rate:,.0f}", "0")
                    for name, url, api in (("opd serve-teacher", f"http://127.0.0.1:{port}", "opd"), ("vLLM", vllm_url, "vllm")):
                        scorer = HTTPScorer([url], api=api, model="teacher", batch_size=8)
                        wire = WireCount(scorer)
                        rate, _ = measure(scorer, requests)
                        per_token = wire.bytes / sum(r.positions for r in requests + requests[:2])
                        table.add_row(name, str(k), f"{rate:,.0f}", f"{per_token:,.0f}")
                        scorer.close()
        finally:
            stop_process(server)
        console.print(table)


def _wait(url: str) -> None:
    for _ in range(300):
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.5)
    raise TimeoutError(url)


if __name__ == "__main__":
    main()
