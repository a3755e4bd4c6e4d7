from __future__ import annotations

import pytest
from viewer_store import ViewerStore, build_viewer_store


@pytest.fixture(scope="session")
def viewer_store(tmp_path_factory: pytest.TempPathFactory) -> ViewerStore:
    """The viewer's test store, built once per session and only read."""
    return build_viewer_store(tmp_path_factory.mktemp("viewer"))
