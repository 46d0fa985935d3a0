"""hnsw.ef_search per search: applied to every query, never leaked, robust to session changes.

`search.run_knn` skips setting ef_search when the hub's session is known to run with the
wanted value and no transaction is open; SQL run through `hub.execute` makes the value
unknown again, and inside a caller's transaction it is always set. These tests pin that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

import embeddinghub as eh
from embeddinghub import search

DIMS = 8
ROWS = 300


@pytest.fixture
def filled(make_space: Callable[..., eh.Space]) -> Iterator[eh.Space]:
    space = make_space(dims=DIMS)
    rng = np.random.default_rng(7)
    space.multiset([f"k{i}" for i in range(ROWS)], rng.standard_normal((ROWS, DIMS)))
    # A table this small would be sorted whole when LIMIT > ef_search; the tests count the
    # rows an HNSW scan yields (at most ef_search), so the index scan is forced.
    space.conn.execute("SET enable_seqscan = off")
    yield space
    space.hub.execute("RESET hnsw.ef_search")
    space.conn.execute("RESET enable_seqscan")


def _session_ef(space: eh.Space) -> str:
    row = space.conn.execute("SELECT current_setting('hnsw.ef_search', true)").fetchone()
    assert row is not None
    return str(row[0])


def _hits(space: eh.Space, ef: int, k: int = 60, queries: int = 1) -> list[int]:
    """How many rows each query's HNSW scan returned: at most ef_search, without iteration."""
    q = np.ones((queries, DIMS), dtype=np.float32)
    found = search.run_knn(space.handle.session, space.tables, [], [{"q": v} for v in q], ef, k=k)
    assert all(len(row) == 4 for rows in found for row in rows)
    return [len(rows) for rows in found]


def test_each_call_gets_its_ef_search_and_the_session_keeps_its_own(filled: eh.Space) -> None:
    before = _session_ef(filled)
    assert _hits(filled, ef=10) == [10]
    assert _hits(filled, ef=40) == [40]
    assert _hits(filled, ef=25, queries=3) == [25, 25, 25]
    assert _session_ef(filled) == before


def test_a_session_changed_through_the_hub_is_noticed(filled: eh.Space) -> None:
    assert _hits(filled, ef=40) == [40]  # learns that the session runs with 40
    filled.hub.execute("SET hnsw.ef_search = 10")
    assert filled.handle.session.ef_search is None  # unknown until the next search reads it
    assert _hits(filled, ef=40) == [40]  # read 10 on the way, so 40 was set locally
    assert _hits(filled, ef=40, queries=2) == [40, 40]
    assert _hits(filled, ef=10) == [10]
    assert _session_ef(filled) == "10"


def test_inside_a_caller_transaction_that_rolls_back(filled: eh.Space) -> None:
    with filled.conn.transaction(force_rollback=True):
        filled.conn.execute("SET LOCAL hnsw.ef_search = 15")
        assert _hits(filled, ef=40) == [40]
        assert _hits(filled, ef=15) == [15]
    assert _hits(filled, ef=40) == [40]


def test_nearest_neighbors_results_do_not_depend_on_the_session(filled: eh.Space) -> None:
    q = np.full(DIMS, 0.5, dtype=np.float32)
    expected = filled.nearest_neighbors(10, vector=q, ef_search=100)
    filled.hub.execute("SET hnsw.ef_search = 1")
    assert filled.nearest_neighbors(10, vector=q, ef_search=100) == expected
    assert [len(r) for r in filled.multi_nearest_neighbors(10, vectors=[q, -q])] == [10, 10]

