"""Nearest neighbours: one pipeline for every search.

check -> prepare -> run -> neighbours -> exact re-run of short answers. Live, partition,
filtered and versioned searches all go through it; a versioned search only supplies its
`rows.Source` (the live rows unchanged since the version plus its history rows).
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from psycopg import sql
from psycopg.pq import TransactionStatus

from . import catalog, errors, rows
from .catalog import SpaceHandle
from .db import translate
from .filters import compile_where
from .session import Session
from .storage import SpaceTables
from .vectors import as_vector, check_key, query_matrix, sent_as_is

__all__ = [
    "Neighbor",
    "Request",
    "knn_query",
    "nearest",
    "one_query",
    "prepare",
    "recent_queries",
    "run",
    "run_knn",
    "search",
]


@dataclass(frozen=True)
class Neighbor:
    """One search hit. `distance` is pgvector's: L2, cosine distance, or negative inner product."""

    key: str
    distance: float
    partition: str = "default"
    metadata: dict[str, Any] | None = field(default=None, compare=False)
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)  # include_vectors


@dataclass(slots=True)  # built on every search: slots, not frozen, for a cheap __init__
class Request:
    """A checked search: query vectors, the (partition, key) each leaves out of its answer,
    the WHERE conditions and their parameters; `k` rows are asked of the database."""

    num: int
    k: int
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
        matrix = query_matrix(h.name, h.dims, h.dtype, vectors)
        exclude = [None] * len(matrix)
    conditions: list[sql.Composable] = []
    params: dict[str, Any] = {}
    k = num + (1 if keys is not None else 0)
    if part is not None:
        conditions.append(sql.SQL("partition = %(part)s"))
        params["part"] = part
    if where:
        cond, fparams = compile_where(h.name, where)
        conditions.append(cond)
        params.update(fparams)
    # pgvector's HNSW scan yields at most ef_search rows unless it scans iteratively; a
    # filter (or a version's own conditions) must not starve it either.
    fetch = h.tables.candidates(k)
    ef = min(catalog.EF_SEARCH_MAX, max(ef, fetch))
    filtered = bool(where) or any(b.conditions for b in source.branches)
    return Request(num, k, matrix, exclude, part, conditions, params, ef, filtered or fetch > ef)


# -- run --------------------------------------------------------------------------------------
def run(h: SpaceHandle, source: rows.Source, req: Request) -> list[list[Neighbor]]:
    """Answer every query of `req`; a query the index answers short is re-run exactly."""
    params = [{**req.params, "q": q} for q in req.matrix]
    with translate(h.name, version=source.version):
        found = _fan_out(h, source, req, params) or run_knn(
            h.session, h.tables, req.conditions, params, req.ef_search, req.iterative,
            source=source, k=req.k,
        )
    ordered = not req.iterative and h.tables.index_order_is_exact
    out = [_neighbors(r, skip, req.num, ordered) for r, skip in zip(found, req.exclude, strict=True)]
    short = [i for i, r in enumerate(found) if len(r) < req.k]
    if short:
        # The index gave fewer rows than asked: the filter is selective (an iterative scan
        # stops after hnsw.max_scan_tuples) or the rows are few. Answer those exactly.
        for i, answer in zip(short, _exact(h, source, req, short), strict=True):
            out[i] = answer
    return out


FAN_OUT_QUERIES = 32  # a pooled hub splits a batch into chunks of at least this many queries


def _fan_out(
    h: SpaceHandle, source: rows.Source, req: Request, params: list[dict[str, Any]]
) -> list[list[tuple[Any, ...]]] | None:
    """A large batch on a pooled hub: chunks searched at once on free pooled connections (the
    server's cores work in parallel), this call's own connection taking the first. None when
    the hub is not pooled, the batch is small, or a transaction of the caller's is open."""
    if len(params) < 2 * FAN_OUT_QUERIES:
        return None  # too few queries to split (the common case: one)
    session = h.session
    ways = min(session.fan_out_limit(), len(params) // FAN_OUT_QUERIES)
    if ways < 2 or session.conn.info.transaction_status != TransactionStatus.IDLE:
        return None
    chunks = [list(c) for c in np.array_split(np.arange(len(params)), ways)]

    def search(chunk: list[int]) -> list[list[tuple[Any, ...]]] | None:
        with session.spare_lease() as conn:
            if conn is None:
                return None  # no free connection: the calling thread does this chunk too
            return run_knn(session, h.tables, req.conditions, [params[i] for i in chunk],
                           req.ef_search, req.iterative, source=source, k=req.k)

    with ThreadPoolExecutor(ways - 1, thread_name_prefix="embeddinghub-search") as workers:
        futures = [workers.submit(search, c) for c in chunks[1:]]
        first = run_knn(session, h.tables, req.conditions, [params[i] for i in chunks[0]],
                        req.ef_search, req.iterative, source=source, k=req.k)
        rest = [f.result() for f in futures]
    found = list(first)
    for chunk, answer in zip(chunks[1:], rest, strict=True):
        found += answer if answer is not None else run_knn(
            session, h.tables, req.conditions, [params[i] for i in chunk], req.ef_search,
            req.iterative, source=source, k=req.k,
        )
    return found


def _exact(h: SpaceHandle, source: rows.Source, req: Request, which: list[int]) -> list[list[Neighbor]]:
    if source.version is None and req.partition is not None and req.partition not in h.known_partitions:
        with translate(h.name), h.conn.cursor() as cur:  # an unknown partition is an error
            catalog.ensure_partitions(h, cur, [req.partition], create=False)
    query = knn_query(h.tables, req.k, source=source, conditions=req.conditions, exact=True)
    conn = h.conn
    with translate(h.name, version=source.version), conn.pipeline(), conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        # Never prepared: a plan made with index scans off would be cached for the text
        # and reused by the ordinary searches that share it.
        params = [{**req.params, "q": req.matrix[i]} for i in which]
        cursors = [conn.execute(query, p, prepare=False) for p in params]
        pairs = zip(which, cursors, strict=True)
        return [_neighbors(cur.fetchall(), req.exclude[i], req.num, True) for i, cur in pairs]


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
    found = run(h, source, req)
    if vectors is not None and h.session.keep_queries:
        _remember(h, req.matrix)  # once the server took them (it refuses NaN and infinity)
    return found


def nearest(
    h: SpaceHandle,
    num: int,
    key: str | None = None,
    vector: Any = None,
    partition: str | None = None,
    where: Mapping[str, Any] | None = None,
    ef_search: int | None = None,
    key_partition: str | None = None,
) -> list[Neighbor]:
    """The nearest neighbours of one key or one vector among the live rows: `search` of one.

    The most common search, a float32 vector over a whole float32 space at the space's own
    ef_search, needs none of the Request's work: its checks are the few below, and
    run_knn sends it as it sends the pipeline's. This path's Python is a visible share of a
    fast search's time. Its answer is the pipeline's.
    """
    if (
        key is None and partition is None and not where and ef_search is None
        and type(num) is int and 0 < num and h.tables.candidates(num) <= h.ef_search
        and sent_as_is(vector, h.dims, h.dtype, ndim=1)
    ):
        return _nearest_to_vector(h, num, vector)
    keys, vectors = one_query(h, key, vector)
    return search(h, rows.live(h), num, keys, vectors, partition, where, ef_search, key_partition)[0]


def _nearest_to_vector(h: SpaceHandle, num: int, vector: np.ndarray) -> list[Neighbor]:
    live = rows.live(h)
    with translate(h.name):
        (found,) = run_knn(h.session, h.tables, (), [{"q": vector}], h.ef_search, source=live, k=num)
    if h.session.keep_queries:
        _remember(h, vector[None, :])  # once the server took it
    if len(found) < num:  # fewer rows than num, or the index gave fewer: answer exactly
        return _exact(h, live, prepare(h, live, num, vectors=vector), [0])[0]
    return _neighbors(found, None, num, h.tables.index_order_is_exact)


def _remember(h: SpaceHandle, matrix: np.ndarray) -> None:
    log = h.session.recent_queries.get(h.id)
    if log is None or log.maxlen != h.session.keep_queries:
        log = h.session.recent_queries[h.id] = deque(log or (), maxlen=h.session.keep_queries)
    log.extend(np.array(matrix, dtype=np.float32, copy=True))


def recent_queries(h: SpaceHandle) -> np.ndarray:
    """The space's last query vectors this hub kept (`connect(keep_queries=N)`), oldest first."""
    log = h.session.recent_queries.get(h.id)
    if not log:
        return np.empty((0, h.dims), dtype=np.float32)
    return np.stack(list(log))


def one_query(h: SpaceHandle, key: str | None, vector: Any) -> tuple[list[str] | None, Any]:
    """The (keys, vectors) arguments of a search for one key or one vector."""
    if vector is None:
        return (None if key is None else [key]), None
    array = vector if isinstance(vector, np.ndarray) else np.asarray(vector)
    if array.ndim != 1:  # as_vector's message; the values are checked once, in prepare()
        as_vector(h.name, h.dims, h.dtype, array)
    return (None if key is None else [key]), array  # one row: prepare() makes it a matrix


def _neighbors(found: list[Any], skip: tuple[str, str] | None, num: int, ordered: bool) -> list[Neighbor]:
    """Rows of `knn_query` as Neighbors in exact distance order, without the query's own key.

    Sorted here unless `ordered`: a relaxed iterative scan may return rows slightly out of
    order (an ordinary index scan, an exact scan and a merge of branches never do).
    """
    hits = []
    for key, partition, distance, metadata in found:  # distance: float8, a float already
        if skip is not None and (partition, key) == skip:
            continue
        # Filled in place, not through the frozen dataclass's __init__ (one call of
        # object.__setattr__ per field): a search builds num of these, and __init__ took
        # half of its Python time. All five fields are set; a test checks hits are whole.
        hit: Neighbor = _new(Neighbor)
        fields = hit.__dict__
        fields["key"] = key
        fields["distance"] = distance
        fields["partition"] = partition
        fields["metadata"] = metadata
        fields["vector"] = None
        hits.append(hit)
    if not ordered:
        hits.sort(key=lambda n: n.distance)
    return hits[:num]


_new = object.__new__


# -- SQL --------------------------------------------------------------------------------------
def knn_query(
    t: SpaceTables,
    k: int,
    *,
    source: rows.Source | None = None,
    conditions: Sequence[sql.Composable] | None = None,
    exact: bool = False,
) -> sql.Composed:
    """`SELECT key, partition, distance, metadata ... ORDER BY distance LIMIT k`.

    The query vector is the `%(q)s` parameter, cast to the space's vector type so each
    branch's HNSW index serves its ORDER BY. `k` is a checked int written into the text: a
    LIMIT parameter would make every prepared execution re-plan (custom plans). A source of
    several branches (a version) is searched branch by branch and merged. `exact` orders
    by the exact distance whatever the index (for answers with index scans off).
    """
    branches = (rows.Branch(t.live),) if source is None else source.branches
    if not conditions and len(branches) == 1 and not branches[0].conditions and branches[0].table == t.live:
        return _plain_knn_query(t, k, exact)  # the hot path: a whole-space search
    if len(branches) == 1:
        b = branches[0]
        return _branch_query(t, b.table, [*b.conditions, *(conditions or ())], k, exact)
    parts = [_branch_query(t, b.table, [*b.conditions, *(conditions or ())], k, exact) for b in branches]
    return sql.SQL(
        "SELECT key, partition, distance, metadata FROM ({union}) AS u ORDER BY distance LIMIT {k}"
    ).format(
        union=sql.SQL(" UNION ALL ").join(sql.SQL("({})").format(p) for p in parts), k=sql.Literal(k)
    )


def _branch_query(
    t: SpaceTables, table: sql.Composable, conditions: Sequence[sql.Composable], k: int, exact: bool
) -> sql.Composed:
    where: sql.Composable = sql.SQL("")
    if conditions:
        where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)
    order = t.distance() if exact else t.index_order()
    fetch = k if exact else t.candidates(k)
    query = sql.SQL(
        "SELECT key, partition, {distance} AS distance, metadata FROM {table}{where}"
        " ORDER BY {order} LIMIT {fetch}"
    ).format(distance=t.distance(), table=table, where=where, order=order, fetch=sql.Literal(fetch))
    if fetch == k:
        return query
    # Binary quantization: the index finds candidates by Hamming distance; re-rank exactly.
    return sql.SQL("SELECT * FROM ({}) AS c ORDER BY distance LIMIT {}").format(query, sql.Literal(k))


@functools.lru_cache(maxsize=1024)
def _plain_knn_query(t: SpaceTables, k: int, exact: bool) -> sql.Composed:
    # Built once per space and k: composing costs about as much as a fast search's own
    # client time. Rendered to a plain SQL string (names are ASCII), so executing it
    # re-composes nothing.
    text = _branch_query(t, t.live, [], int(k), exact).as_string(None)
    return sql.Composed([sql.SQL(text)])


def run_knn(
    session: Session,
    t: SpaceTables,
    conditions: Sequence[sql.Composable],
    param_sets: list[dict[str, Any]],
    ef_search: int,
    iterative: bool = False,
    *,
    k: int,
    source: rows.Source | None = None,
) -> list[list[tuple[Any, ...]]]:
    """Rows of `knn_query` per parameter set, with `hnsw.ef_search = ef_search`.

    One round trip. The session's own hnsw.ef_search is known to the Session (read at
    connect, re-read after SQL the hub ran for its user): when it is the wanted value and
    no transaction is open, the query runs alone. Otherwise a pipeline sets the value with
    `set_config(..., true)` first: the statements up to the pipeline's Sync run as one
    implicit transaction, so the setting holds for these searches only, like SET LOCAL,
    and never leaks into the session.
    """
    conn = session.conn
    want = str(ef_search)
    query = knn_query(t, k, source=source, conditions=conditions)
    idle = conn.pgconn.transaction_status == TransactionStatus.IDLE
    if not iterative and idle and session.ef_search == want and len(param_sets) == 1:
        return [conn.execute(query, param_sets[0]).fetchall()]
    with conn.pipeline():
        probe = None
        if idle and session.ef_search is None and not session.stateless:  # learn it on the way
            probe = conn.execute("SELECT current_setting('hnsw.ef_search', true)")
        if iterative or not idle or session.ef_search != want:
            conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (want,))
            if iterative:
                conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
        cursors = [conn.execute(query, params) for params in param_sets]
    if probe is not None:
        session.learn_ef_search(probe.fetchone())
    return [cur.fetchall() for cur in cursors]
