"""The viewer's pages and JSON over a real store, through FastAPI's TestClient (no browser)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from trajectory_factories import make_episode
from viewer_store import HOSTILE, ViewerStore, every_listed_id, ids_on, page_link

from opd.trajectories import Run, TrajectoryStore
from opd.trajectories.viewer import create_app
from opd.trajectories.viewer.pages import PAGE_SIZE


@pytest.fixture(scope="module")
def client(viewer_store: ViewerStore) -> TestClient:
    with TestClient(create_app(str(viewer_store.path))) as test_client:
        yield test_client


def test_runs_page_shows_configs_and_stats(client: TestClient, viewer_store: ViewerStore) -> None:
    page = client.get("/")
    assert page.status_code == 200
    for run in viewer_store.runs:
        assert run.id[:12] in page.text
    assert "baseline" in page.text and "&#34;reverse_kl&#34;" in page.text  # the configuration, as escaped JSON
    assert "inventory" in page.text and "calculator" in page.text


def test_every_episode_is_listed_once_across_pages(client: TestClient, viewer_store: ViewerStore) -> None:
    seen = every_listed_id(client)
    assert seen == list(reversed(viewer_store.episode_ids)) and len(seen) > PAGE_SIZE
    last_page = client.get(f"/episodes?before={seen[PAGE_SIZE - 1]}")
    back = client.get(f"/episodes?{page_link(last_page.text, 'prev')}")
    assert ids_on(back.text) == seen[:PAGE_SIZE]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("success=yes", 10 + 20 + 1),  # run A succeeds on i % 3 == 0, run B on i % 3 != 1; the long episode
        ("min_reward=0.5&max_reward=1", 31),
        ("errors=yes", 2),  # the errored episode and the hostile (failed) one
        ("q=calc-1", 2 * 11),  # calc-1, calc-10 .. calc-19, in both runs
        ("suite=inventory", 2 * 6),
    ],
)
def test_filters(client: TestClient, query: str, expected: int) -> None:
    assert len(ids_on(client.get(f"/episodes?{query}").text)) == expected
    assert client.get(f"/api/count?{query}").json() == {"count": expected, "more": False}


def test_filter_by_run_and_a_bad_value(client: TestClient, viewer_store: ViewerStore) -> None:
    baseline = viewer_store.runs[0].id
    assert len(ids_on(client.get(f"/episodes?run={baseline}").text)) == 31
    page = client.get(f"/episodes?run={baseline}&min_reward=lots")
    assert page.status_code == 200 and "Minimum reward must be a number; got &#39;lots&#39;" in page.text
    assert "No episodes match these filters" in client.get("/episodes?q=no-such-text").text


def test_episode_page_and_its_steps(client: TestClient, viewer_store: ViewerStore) -> None:
    episode_id = viewer_store.episode_ids[1]
    page = client.get(f"/episodes/{episode_id}")
    assert page.status_code == 200 and f'data-episode="{episode_id}"' in page.text and 'data-teacher="teacher"' in page.text
    steps = client.get(f"/api/episodes/{episode_id}/steps?start=0&stop=50&teacher=teacher").json()
    assert steps["decoded"] is True
    token = steps["steps"][0]["tokens"][0]
    assert {"text", "student", "teacher", "divergence", "bin", "alternatives"} <= set(token) and token["bin"] is not None
    assert steps["steps"][0]["critiques"][0]["critique"] == "Add the other operand first."
    assert client.get(f"/episodes/{episode_id[:8]}").status_code == 200  # a prefix, as the CLI shows ids
    assert client.get("/episodes/0123456789abcdef").status_code == 404


def test_long_episode_steps_come_in_chunks(client: TestClient, viewer_store: ViewerStore) -> None:
    url = f"/api/episodes/{viewer_store.long_episode}/steps"
    last = client.get(f"{url}?start=950&stop=1000&teacher=teacher").json()["steps"]
    assert [s["index"] for s in last] == list(range(950, 1000))
    assert len(client.get(f"{url}?start=0&stop=1000").json()["steps"]) == 100  # capped per request
    assert client.get("/api/episodes/0123456789abcdef/steps").status_code == 404


def test_compare_runs(client: TestClient, viewer_store: ViewerStore) -> None:
    a, b = (run.id for run in viewer_store.runs)
    page = client.get(f"/compare?a={a}&b={b}")
    assert page.status_code == 200 and "<polyline" in page.text
    assert f"{viewer_store.shared_tasks} tasks in both runs: B did better on 10, A on 0" in page.text
    assert "Only in A: 1; only in B: 2." in page.text
    assert "No run &#39;nope&#39;" in client.get(f"/compare?a={a}&b=nope").text


def test_hostile_text_is_escaped_in_every_page(client: TestClient, viewer_store: ViewerStore) -> None:
    pages = [client.get("/").text, client.get("/episodes").text, client.get(f"/episodes/{viewer_store.hostile_episode}").text]
    for html in pages:
        assert "<script>window" not in html and "<img" not in html and "<svg onload" not in html and "<b>bold" not in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in pages[2] and "{{ 7*7 }}" in pages[2]
    steps = client.get(f"/api/episodes/{viewer_store.hostile_episode}/steps?teacher=teacher").json()["steps"]
    assert steps[0]["observation"] == " ".join(HOSTILE)  # JSON carries the text as it is; the page sets it as text


def test_security_headers(client: TestClient) -> None:
    headers = client.get("/").headers
    assert "script-src 'self'" in headers["content-security-policy"] and "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


def test_browsing_leaves_the_store_file_unchanged(viewer_store: ViewerStore) -> None:
    before = hashlib.sha256(viewer_store.path.read_bytes()).hexdigest()
    with TestClient(create_app(str(viewer_store.path))) as client:
        for url in ("/", "/episodes", f"/episodes/{viewer_store.long_episode}", f"/api/episodes/{viewer_store.long_episode}/steps"):
            assert client.get(url).status_code == 200
    assert hashlib.sha256(viewer_store.path.read_bytes()).hexdigest() == before


def test_missing_empty_and_foreign_stores_get_a_clear_page(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    with TestClient(create_app(str(missing))) as client:
        page = client.get("/episodes")
        assert page.status_code == 503 and "No trajectory store at" in page.text and "Traceback" not in page.text
        TrajectoryStore(missing).close()  # the store appears: the next request shows it, no restart
        assert "This store has no runs yet" in client.get("/").text
        assert "Nothing has been written to this store yet" in client.get("/episodes").text
        assert "This store has no runs yet" in client.get("/compare").text
    not_a_store = tmp_path / "notes.db"
    not_a_store.write_text("hello")
    with TestClient(create_app(str(not_a_store))) as client:
        page = client.get("/")
        assert page.status_code == 503 and "is not a SQLite database" in page.text
    assert not_a_store.read_text() == "hello"


@pytest.mark.postgres
def test_the_viewer_on_postgres(postgres_url: str, rng) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    with engine.begin() as connection:  # start from nothing, as the store's PostgreSQL tests do
        connection.execute(sa.text("DROP SCHEMA public CASCADE"))
        connection.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    with TrajectoryStore(postgres_url) as store:
        run = store.add_run(Run(name="on postgres"))
        episodes = [make_episode(rng, run, success=i % 2 == 0) for i in range(3)]
        store.write_episodes(episodes)
    with TestClient(create_app(postgres_url)) as client:
        assert "on postgres" in client.get("/").text
        assert set(ids_on(client.get("/episodes?success=yes&q=compute").text)) == {episodes[0].id, episodes[2].id}
        assert client.get(f"/episodes/{episodes[1].id}").status_code == 200
        assert len(client.get(f"/api/episodes/{episodes[1].id}/steps").json()["steps"]) == 3


def test_branches_show_as_a_tree_and_side_by_side_step_by_step(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    path = tmp_path / "branches.db"
    with TrajectoryStore(path) as store:
        run = store.add_run(Run(name="branches"))
        parent = make_episode(rng, run, steps=3)
        first = dataclasses.replace(make_episode(rng, run, steps=4), parent_id=parent.id, branch_step=1)
        second = dataclasses.replace(make_episode(rng, run, steps=2), parent_id=parent.id, branch_step=1)
        grandchild = dataclasses.replace(make_episode(rng, run, steps=3), parent_id=first.id, branch_step=2)
        alone = make_episode(rng, run, steps=1)
        store.write_episodes([parent, first, second, grandchild, alone])
    with TestClient(create_app(str(path))) as client:
        page = client.get(f"/episodes/{grandchild.id}")
        tree = page.text[page.text.index('id="branch-tree"') :]
        assert all(e.id[:12] in tree for e in (parent, first, second, grandchild))
        assert tree.index(parent.id[:12]) < tree.index(first.id[:12]) < tree.index(grandchild.id[:12])  # nested under its parent
        assert f"/episodes/{parent.id}/branches" in tree and "from step 2" in tree
        assert 'id="branch-tree"' not in client.get(f"/episodes/{alone.id}").text
        compared = client.get(f"/episodes/{parent.id}/branches")
        assert compared.status_code == 200 and "2 branches" in compared.text
        table = compared.text[compared.text.index('id="branch-steps"') :]
        assert table.count('class="shared"') == 1  # step 0: the parent's in both branches, shown once
        assert all(str(escape(step.action)) in table for step in (first.steps[3], parent.steps[2], second.steps[1]))
        assert client.get("/episodes/nope/branches").status_code == 404
