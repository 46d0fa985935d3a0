"""Nearest-neighbour queries: result type and SQL composition."""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from .storage import SpaceTables

__all__ = ["Neighbor"]


@dataclass(frozen=True)
class Neighbor:
    """One search hit. `distance` is pgvector's: L2, cosine distance, or negative inner product."""

    key: str
    distance: float
    partition: str = "default"
    metadata: dict[str, Any] | None = field(default=None, compare=False)


def knn_query(
    t: SpaceTables,
    *,
    source: sql.Composable | None = None,
    conditions: list[sql.Composable] | None = None,
    ef_column: bool = False,
) -> sql.Composed:
    """`SELECT key, partition, distance, metadata ... ORDER BY distance LIMIT %(k)s`.

    The query vector is the `%(q)s` parameter, cast to the space's vector type so
    the HNSW index on `embedding` serves the ORDER BY. `ef_column` adds a fifth column,
    the `hnsw.ef_search` the scan ran with (see `run_knn`).
    """
    if source is None and not conditions:
        return _plain_knn_query(t, ef_column)
    return _knn_query(t, source, conditions, ef_column)


def _knn_query(
    t: SpaceTables,
    source: sql.Composable | None,
    conditions: list[sql.Composable] | None,
    ef_column: bool,
) -> sql.Composed:
    where: sql.Composable = sql.SQL("")
    if conditions:
        where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)
    distance = sql.SQL("embedding {op} %(q)s::{vt}").format(op=t.operator, vt=t.vector_type)
    return sql.SQL(
        "SELECT key, partition, {distance} AS distance, metadata{extra} FROM {source}{where}"
        " ORDER BY {distance} LIMIT %(k)s"
    ).format(
        distance=distance,
        extra=sql.SQL(", current_setting('hnsw.ef_search', true)" if ef_column else ""),
        source=source or t.live,
        where=where,
    )


@functools.lru_cache(maxsize=512)
def _plain_knn_query(t: SpaceTables, ef_column: bool) -> sql.Composed:
    # Built once per space: composing costs about as much as a fast search's own client time.
    # Rendered to a plain SQL string (names are ASCII), so executing it re-composes nothing.
    text = _knn_query(t, None, None, ef_column).as_string(None)
    return sql.Composed([sql.SQL(text)])


# Per connection: the hnsw.ef_search its session was last seen running with (run_knn).
_SESSION_EF_SEARCH: weakref.WeakKeyDictionary[psycopg.Connection[Any], str] = (
    weakref.WeakKeyDictionary()
)


def run_knn(
    conn: psycopg.Connection[Any],
    t: SpaceTables,
    conditions: list[sql.Composable],
    param_sets: list[dict[str, Any]],
    ef_search: int,
    iterative: bool = False,
) -> list[list[tuple[Any, ...]]]:
    """Rows of `knn_query(t, conditions=...)` per parameter set, with `hnsw.ef_search = ef_search`.

    One round trip, no BEGIN/COMMIT: in a pipeline the statements up to its Sync run as one
    implicit transaction, so `set_config(..., true)` there holds for these searches only,
    like SET LOCAL, and never leaks into the session. When the session already runs with
    the wanted value (pgvector's default 40 is also a space's default), even that statement
    is skipped: every row carries the setting its scan really used, so a session changed
    behind our back is noticed and the searches are redone with the value set.
    """
    want = str(ef_search)
    query = knn_query(t, conditions=conditions, ef_column=True)
    fast = not iterative and _SESSION_EF_SEARCH.get(conn, want) == want
    if fast and len(param_sets) == 1:
        results = [conn.execute(query, param_sets[0]).fetchall()]
    else:
        with conn.pipeline():
            if not fast:
                conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (want,))
                if iterative:
                    conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
            cursors = [conn.execute(query, params) for params in param_sets]
        results = [cur.fetchall() for cur in cursors]
    if fast:
        seen = {rows[0][-1] for rows in results if rows}
        if seen - {want}:
            _SESSION_EF_SEARCH[conn] = (seen - {want}).pop()  # set it per call from now on
            return run_knn(conn, t, conditions, param_sets, ef_search, iterative)
        _SESSION_EF_SEARCH[conn] = want
    return [[row[:-1] for row in rows] for rows in results]
