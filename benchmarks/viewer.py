"""How fast the viewer answers on a large store: 100,000 episodes and one 1,000-step annotated episode.

Server side, through FastAPI's TestClient (the app in-process, no network), the
median of several requests: the episodes table (first page, a page deep in the
store, filtered, text search), its lazy count, the runs page, the comparison of
two 50,000-episode runs, the 1,000-step episode's page and its steps as JSON.
Then, where Chromium is installed (scripts/ensure-chromium.sh), the same
episode in the browser: time to the first drawn step, time to step through to
the last one, and the longest main-thread task (what a reader feels as a freeze).

    .venv/bin/python benchmarks/viewer.py [--episodes 100000] [--store PATH]

The store is built once (about two minutes) and reused when --store names an existing file.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from trajectory_factories import make_episode  # noqa: E402
from viewer_store import build_tokenizer, in_vocabulary  # noqa: E402

from opd.trajectories import Run, TrajectoryStore  # noqa: E402
from opd.trajectories.viewer import create_app  # noqa: E402

CHROMIUM = os.environ.get("OPD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
CHROMIUM_ARGS += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]


def build_store(path: Path, episodes: int) -> None:
    """Two runs sharing their tasks, short unannotated episodes, and one 1,000-step episode annotated at top-64."""
    tokenizer = build_tokenizer(path.parent / "tokenizer")
    rng = np.random.default_rng(0)
    with TrajectoryStore(path) as store:
        runs = [store.add_run(Run(name=name, config={"loss": name})) for name in ("sft", "opd")]
        batch = []
        for i in range(episodes):
            episode = make_episode(rng, runs[i % 2], steps=2, success=bool(rng.random() < 0.4 + 0.2 * (i % 2)), annotated=False)
            batch.append(
                dataclasses.replace(
                    episode, task_id=f"calc-{i // 2 % 5000}", seed=i // 2 % 5000, suite=("calculator", "inventory")[i % 3 == 0]
                )
            )
            if len(batch) == 1000:
                store.write_episodes(batch)
                batch = []
        store.write_episodes(batch)
        store.write_episode(in_vocabulary(make_episode(rng, runs[1], steps=1000, policy_tokens=32, k=64), tokenizer))


def median_ms(client: TestClient, url: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, (url, response.status_code)
    return statistics.median(times) * 1000


def server_rows(client: TestClient, store: TrajectoryStore, long_id: str, repeats: int) -> list[tuple[str, float]]:
    runs = store.runs()
    middle = store.list_episodes(limit=1, offset=store.count_episodes() // 2)[0].id
    rows = [
        ("episodes table, first page (50 rows)", median_ms(client, "/episodes", repeats)),
        ("episodes table, a page in the middle of the store", median_ms(client, f"/episodes?before={middle}", repeats)),
        (
            "episodes table, filtered (run, suite, success, reward)",
            median_ms(client, f"/episodes?run={runs[1].id}&suite=inventory&success=yes&min_reward=0.5", repeats),
        ),
        ("episodes table, text search (a common word)", median_ms(client, "/episodes?q=arguments", repeats)),
        ("episodes table, text search (no match: scans every step)", median_ms(client, "/episodes?q=no-such-text", repeats)),
        ("lazy count, no filter (/api/count)", median_ms(client, "/api/count", repeats)),
        ("runs page (stats over every episode)", median_ms(client, "/", repeats)),
        ("two runs compared (curves and per-task table)", median_ms(client, f"/compare?a={runs[0].id}&b={runs[1].id}", repeats)),
        ("1,000-step episode: page", median_ms(client, f"/episodes/{long_id}", repeats)),
        (
            "1,000-step episode: one 50-step chunk (JSON, decoded)",
            median_ms(client, f"/api/episodes/{long_id}/steps?start=500&stop=550&teacher=teacher", repeats),
        ),
    ]
    started = time.perf_counter()
    for start in range(0, 1000, 100):
        assert client.get(f"/api/episodes/{long_id}/steps?start={start}&stop={start + 100}&teacher=teacher").status_code == 200
    rows.append(("1,000-step episode: all steps as JSON (10 requests)", (time.perf_counter() - started) * 1000))
    return rows


def browser_rows(location: str, long_id: str) -> list[tuple[str, float]]:
    """The episode page in Chromium on a real server; empty when there is no browser here."""
    if not Path(CHROMIUM).is_file():
        return []
    import socket
    import threading

    import uvicorn
    from playwright.sync_api import sync_playwright

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(location), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    # Records every main-thread task over 50 ms (the browser's own definition of a long task).
    watch = (
        "window.__long = []; new PerformanceObserver(list => window.__long.push(...list.getEntries().map(e => e.duration)))"
        ".observe({type: 'longtask', buffered: true});"
    )
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.add_init_script(watch)
            started = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/episodes/{long_id}")
            page.locator("#step-0 .tok").first.wait_for()
            first = time.perf_counter() - started
            started = time.perf_counter()
            page.fill("#goto", "1000")
            page.press("#goto", "Enter")
            page.locator("#step-999.current").wait_for(timeout=120_000)
            last = time.perf_counter() - started
            page.wait_for_timeout(500)
            longest = max(page.evaluate("window.__long"), default=0.0)
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    return [
        ("browser: open the 1,000-step episode, first step drawn", first * 1000),
        ("browser: jump to step 1,000 (loads and draws all steps)", last * 1000),
        ("browser: longest main-thread task during both", longest),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=100_000)
    parser.add_argument("--store", type=Path, help="store file to build, or to reuse if it exists")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as scratch:
        path = args.store or Path(scratch) / "viewer-bench.db"
        if not path.exists():
            started = time.perf_counter()
            build_store(path, args.episodes)
            console.print(f"built {path} in {time.perf_counter() - started:.0f} s")
        with TrajectoryStore(path, read_only=True) as store:
            total = store.count_episodes()
            long_id = next(s.id for s in store.list_episodes(limit=5) if s.num_steps == 1000)
            with TestClient(create_app(str(path))) as client:
                client.get("/")  # open the store once, outside the timings
                rows = server_rows(client, store, long_id, args.repeats)
        rows += browser_rows(str(path), long_id)
    table = Table(title=f"opd view on {total:,} episodes (median of {args.repeats} requests; browser rows: one run)")
    table.add_column("what")
    table.add_column("ms", justify="right")
    for what, ms in rows:
        table.add_row(what, f"{ms:,.0f}")
    console.print(table)


if __name__ == "__main__":
    main()
