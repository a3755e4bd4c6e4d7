"""`opd view`: a one-line error for a store it cannot show, and a real server over one it can."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from trajectory_factories import make_episode
from typer.testing import CliRunner

from opd.cli.app import app
from opd.trajectories import Run, TrajectoryStore

runner = CliRunner()


def test_a_missing_store_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["view", "--store", str(tmp_path / "nowhere.db")], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: No trajectory store at") and result.output.strip().count("\n") == 0
    assert not (tmp_path / "nowhere.db").exists()


def test_a_file_that_is_not_a_store_is_one_line(tmp_path: Path) -> None:
    notes = tmp_path / "notes.db"
    notes.write_text("not a database")
    result = runner.invoke(app, ["view", "--store", str(notes)], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "is not a SQLite database" in result.output and "Traceback" not in result.output


def test_opd_view_serves_every_run_and_episode(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    with TrajectoryStore(store) as trajectories:
        runs = [trajectories.add_run(Run(name=f"run {i}")) for i in range(2)]
        episodes = [make_episode(np.random.default_rng(i), runs[i % 2]) for i in range(6)]
        trajectories.write_episodes(episodes)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "opd", "view", "--store", str(store), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                runs_page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline and server.poll() is None, "opd view did not start"
                time.sleep(0.2)
        assert all(f"run {i}" in runs_page.text for i in range(2))
        listing = httpx.get(f"http://127.0.0.1:{port}/episodes", timeout=5).text
        assert all(e.id in listing for e in episodes)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in output and "read-only" in output
