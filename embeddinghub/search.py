"""Nearest neighbours: one pipeline for every search.

check -> prepare -> run -> neighbours -> exact re-run of short answers. Live, partition,
filtered and versioned searches all go through it; a versioned search only supplies its
`rows.Source` (the live rows unchanged since the version plus its history rows).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from . import catalog, errors, rows
from .catalog import SpaceHandle
from .db import translate
from .filters import compile_where
from .storage import SpaceTables
from .vectors import as_matrix, as_vector, check_key

__all__ = ["Neighbor", "Request", "knn_query", "one_query", "prepare", "run", "run_knn", "search"]


@dataclass(frozen=True)
class Neighbor:
    """One search hit. `distance` is pgvector's: L2, cosine distance, or negative inner product."""

    key: str
    distance: float
    partition: str = "default"
    metadata: dict[str, Any] | None = field(default=None, compare=False)
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)  # include_vectors


@dataclass(frozen=True)
class Request:
    """A checked search: query vectors, the (partition, key) each leaves out of its answer,
    the WHERE conditions and their parameters (`k` is the rows asked of the database)."""

    num: int
    matrix: np.ndarray
    exclude: list[tuple[str, str] | None]
    partition: str | None
    conditions: list[sql.Composable]
    params: dict[str, Any]
    ef_search: int
    iterative: bool


# -- check and prepare ------------------------------------------------------------------------
def prepare(
    h: SpaceHandle,
    source: rows.Source,
    num: int,
    keys: Sequence[str] | None = None,
    vectors: Any = None,
    partition: str | None = None,
    where: Mapping[str, Any] | None = None,
    ef_search: int | None = None,
    key_partition: str | None = None,
) -> Request:
    """Check a search's arguments and look its query keys up in `source`."""
    if (keys is None) == (vectors is None):
        what = "both" if keys is not None else "neither"
        raise errors.InvalidArgument(
            f"space {h.name!r}: pass exactly one of key(s) or vector(s), got {what}"
        )
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise errors.InvalidArgument(f"space {h.name!r}: num must be a positive integer, not {num!r}")
    ef = catalog.check_ef_search(h.name, h.ef_search if ef_search is None else ef_search)
    part = None if partition is None else catalog.partition_name(partition)
    exclude: list[tuple[str, str] | None]
    if keys is not None:
        if isinstance(keys, str):
            raise errors.InvalidArgument(f"space {h.name!r}: keys must be a list of keys")
        key_list = [check_key(h.name, k) for k in keys]
        key_part = catalog.partition_name(part if key_partition is None else key_partition)
        matrix = rows.multiget(h, source, key_list, key_part)
        exclude = [(key_part, k) for k in key_list]
    else:
        matrix = as_matrix(h.name, h.dims, h.dtype, vectors)
        exclude = [None] * len(matrix)
    conditions: list[sql.Composable] = []
    params: dict[str, Any] = {"k": num + (1 if keys is not None else 0)}
    if part is not None:
        conditions.append(sql.SQL("partition = %(part)s"))
        params["part"] = part
    if where:
        cond, fparams = compile_where(h.name, where)
        conditions.append(cond)
        params.update(fparams)
    # pgvector's HNSW scan yields at most ef_search rows unless it scans iteratively; a
    # filter (or a version's own conditions) must not starve it either.
    ef = min(catalog.EF_SEARCH_MAX, max(ef, params["k"]))
    filtered = bool(where) or any(b.conditions for b in source.branches)
    return Request(num, matrix, exclude, part, conditions, params, ef, filtered or params["k"] > ef)


# -- run --------------------------------------------------------------------------------------
def run(h: SpaceHandle, source: rows.Source, req: Request) -> list[list[Neighbor]]:
    """Answer every query of `req`; a query the index answers short is re-run exactly."""
    with translate(h.name, version=source.version):
        found = run_knn(
            h.conn, h.tables, req.conditions, [{**req.params, "q": q} for q in req.matrix],
            req.ef_search, req.iterative, source=source,
        )
    out = [_neighbors(r, skip, req.num) for r, skip in zip(found, req.exclude, strict=True)]
    short = [i for i, r in enumerate(found) if len(r) < req.params["k"]]
    if short:
        # The index gave fewer rows than asked: the filter is selective (an iterative scan
        # stops after hnsw.max_scan_tuples) or the rows are few. Answer those exactly.
        for i, answer in zip(short, _exact(h, source, req, short), strict=True):
            out[i] = answer
    return out


def _exact(h: SpaceHandle, source: rows.Source, req: Request, which: list[int]) -> list[list[Neighbor]]:
    if source.version is None and req.partition is not None and req.partition not in h.known_partitions:
        with translate(h.name), h.conn.cursor() as cur:  # an unknown partition is an error
            catalog.ensure_partitions(h, cur, [req.partition], create=False)
    query = knn_query(h.tables, source=source, conditions=req.conditions)
    conn = h.conn
    with translate(h.name, version=source.version), conn.pipeline(), conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        cursors = [conn.execute(query, {**req.params, "q": req.matrix[i]}) for i in which]
        pairs = zip(which, cursors, strict=True)
        return [_neighbors(cur.fetchall(), req.exclude[i], req.num) for i, cur in pairs]


def search(
    h: SpaceHandle,
    source: rows.Source,
    num: int,
    keys: Sequence[str] | None = None,
    vectors: Any = None,
    partition: str | None = None,
    where: Mapping[str, Any] | None = None,
    ef_search: int | None = None,
    key_partition: str | None = None,
) -> list[list[Neighbor]]:
    """Nearest neighbours of each key or vector among the rows of `source`."""
    req = prepare(h, source, num, keys, vectors, partition, where, ef_search, key_partition)
    return run(h, source, req)


def one_query(h: SpaceHandle, key: str | None, vector: Any) -> tuple[list[str] | None, Any]:
    """The (keys, vectors) arguments of a search for one key or one vector."""
    return (
        None if key is None else [key],
        None if vector is None else as_vector(h.name, h.dims, h.dtype, vector).reshape(1, -1),
    )


def _neighbors(found: list[Any], skip: tuple[str, str] | None, num: int) -> list[Neighbor]:
    """Rows of `knn_query` as Neighbors in exact distance order, without the query's own key.

    Sorted here because a relaxed iterative scan may return rows slightly out of order.
    """
    hits = [Neighbor(k, float(d), p, m) for k, p, d, m in found if skip is None or (p, k) != skip]
    hits.sort(key=lambda n: n.distance)
    return hits[:num]


# -- SQL --------------------------------------------------------------------------------------
def knn_query(
    t: SpaceTables,
    *,
    source: rows.Source | None = None,
    conditions: Sequence[sql.Composable] | None = None,
    ef_column: bool = False,
) -> sql.Composed:
    """`SELECT key, partition, distance, metadata ... ORDER BY distance LIMIT %(k)s`.

    The query vector is the `%(q)s` parameter, cast to the space's vector type so each
    branch's HNSW index serves its ORDER BY. A source of several branches (a version) is
    searched branch by branch and merged. `ef_column` adds a fifth column, the
    `hnsw.ef_search` the scan ran with (see `run_knn`).
    """
    if source is None and not conditions:
        return _plain_knn_query(t, ef_column)
    branches = (rows.Branch(t.live),) if source is None else source.branches
    if len(branches) == 1:
        b = branches[0]
        return _branch_query(t, b.table, [*b.conditions, *(conditions or ())], ef_column)
    parts = [_branch_query(t, b.table, [*b.conditions, *(conditions or ())], False) for b in branches]
    return sql.SQL(
        "SELECT key, partition, distance, metadata{extra} FROM ({union}) AS u"
        " ORDER BY distance LIMIT %(k)s"
    ).format(
        extra=_ef_column(ef_column),
        union=sql.SQL(" UNION ALL ").join(sql.SQL("({})").format(p) for p in parts),
    )


def _ef_column(wanted: bool) -> sql.SQL:
    return sql.SQL(", current_setting('hnsw.ef_search', true)" if wanted else "")


def _branch_query(
    t: SpaceTables, table: sql.Composable, conditions: Sequence[sql.Composable], ef_column: bool
) -> sql.Composed:
    where: sql.Composable = sql.SQL("")
    if conditions:
        where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)
    distance = sql.SQL("embedding {op} %(q)s::{vt}").format(op=t.operator, vt=t.vector_type)
    return sql.SQL(
        "SELECT key, partition, {distance} AS distance, metadata{extra} FROM {table}{where}"
        " ORDER BY {distance} LIMIT %(k)s"
    ).format(distance=distance, extra=_ef_column(ef_column), table=table, where=where)


@functools.lru_cache(maxsize=512)
def _plain_knn_query(t: SpaceTables, ef_column: bool) -> sql.Composed:
    # Built once per space: composing costs about as much as a fast search's own client time.
    # Rendered to a plain SQL string (names are ASCII), so executing it re-composes nothing.
    text = _branch_query(t, t.live, [], ef_column).as_string(None)
    return sql.Composed([sql.SQL(text)])


# Per connection: the hnsw.ef_search its session was last seen running with (run_knn).
_SESSION_EF_SEARCH: weakref.WeakKeyDictionary[psycopg.Connection[Any], str] = weakref.WeakKeyDictionary()


def run_knn(
    conn: psycopg.Connection[Any],
    t: SpaceTables,
    conditions: Sequence[sql.Composable],
    param_sets: list[dict[str, Any]],
    ef_search: int,
    iterative: bool = False,
    *,
    source: rows.Source | None = None,
) -> list[list[tuple[Any, ...]]]:
    """Rows of `knn_query` per parameter set, with `hnsw.ef_search = ef_search`.

    One round trip, no BEGIN/COMMIT: in a pipeline the statements up to its Sync run as one
    implicit transaction, so `set_config(..., true)` there holds for these searches only,
    like SET LOCAL, and never leaks into the session. When the session already runs with
    the wanted value (pgvector's default 40 is also a space's default), even that statement
    is skipped: every row carries the setting its scan really used, so a session changed
    behind our back is noticed and the searches are redone with the value set.
    """
    want = str(ef_search)
    query = knn_query(t, source=source, conditions=conditions, ef_column=True)
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
        seen = {found[0][-1] for found in results if found}
        if seen - {want}:
            _SESSION_EF_SEARCH[conn] = (seen - {want}).pop()  # set it per call from now on
            return run_knn(conn, t, conditions, param_sets, ef_search, iterative, source=source)
        _SESSION_EF_SEARCH[conn] = want
    return [[row[:-1] for row in found] for found in results]
