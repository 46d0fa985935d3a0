"""Every test runs against a real PostgreSQL + pgvector.

`$EMBEDDINGHUB_TEST_DSN` points the suite at a server; without it the suite starts a
private embedded server in a temporary home and stops it at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import embeddinghub as eh
from embeddinghub.server import EmbeddedServer


@pytest.fixture(scope="session")
def dsn() -> Iterator[str]:
    given = os.environ.get("EMBEDDINGHUB_TEST_DSN")
    if given:
        yield given
        return
    home = Path(tempfile.mkdtemp(prefix="ehtest-"))
    server = EmbeddedServer(home)
    url = server.start()
    os.environ["EMBEDDINGHUB_TEST_HOME"] = str(home)
    try:
        yield url
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def hub(dsn: str) -> Iterator[eh.Hub]:
    with eh.connect(dsn) as h:
        yield h


@pytest.fixture
def make_space(hub: eh.Hub) -> Iterator[Callable[..., eh.Space]]:
    """Create spaces with unique names; drop them after the test."""
    made: list[str] = []

    def make(dims: int = 4, metric: str = "l2", dtype: str = "float32", **kw: object) -> eh.Space:
        name = f"t_{uuid.uuid4().hex[:12]}"
        made.append(name)
        return hub.create_space(name, dims=dims, metric=metric, dtype=dtype, **kw)  # type: ignore[arg-type]

    yield make
    for name in made:
        if hub.has_space(name):
            hub.delete_space(name)


@pytest.fixture
def space(make_space: Callable[..., eh.Space]) -> eh.Space:
    return make_space()
