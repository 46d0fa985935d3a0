"""Rows of a space: every write to the live table, and reads from a `Source`.

A `Source` is where rows are read from: the live table, or a version's rows (live rows
unchanged since it plus history rows valid at it; see versions.source_at). Reads and
searches take a source, so the working state and a version share one code path.

Writes go through one bulk path: binary COPY into a staging table, then one
`INSERT ... ON CONFLICT` per chunk, in one transaction (all rows land or none); a first
load into an empty space COPYs straight into the live table (`multiset`).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.abc import Buffer
from psycopg.adapt import PyFormat
from psycopg.types.json import Jsonb

from . import catalog, errors
from .catalog import SpaceHandle
from .db import translate
from .filters import compile_where
from .storage import SpaceTables
from .vectors import (
    COPY_HEADER,
    COPY_TRAILER,
    as_matrix,
    as_vector,
    check_key,
    check_keys,
    copy_rows,
    metadata_list,
    normalise_metadata,
    vector_fields,
)

__all__ = [
    "BULK_REBUILD_ROWS",
    "ITERATOR_PAGE",
    "Branch",
    "Source",
    "check_offset",
    "contains",
    "count",
    "delete_all",
    "delete_where",
    "get_metadata",
    "live",
    "multidelete",
    "multiget",
    "multiset",
    "pages",
    "relation",
    "set_row",
    "to_numpy",
    "update_metadata",
    "vectors_of",
]

BULK_REBUILD_ROWS = 5000  # a first load at least this large drops the index and rebuilds it
ITERATOR_PAGE = 1000
COPY_CHUNK = 8 << 20  # bytes per COPY write: progress is reported per chunk


@dataclass(frozen=True)
class Branch:
    """One table of a source, with the conditions that select the source's rows in it."""

    table: sql.Composable
    conditions: tuple[sql.Composable, ...] = ()


@dataclass(frozen=True)
class Source:
    """Rows to read: one or more branches, their union. `version` names it in errors."""

    branches: tuple[Branch, ...]
    version: int | None = None


def live(h: SpaceHandle) -> Source:
    """The space's working state: its live table."""
    return _live(h.tables)


@functools.lru_cache(maxsize=1024)
def _live(tables: SpaceTables) -> Source:  # one per space: every search reads it
    return Source((Branch(tables.live),))


def relation(source: Source) -> sql.Composable:
    """The source as one relation with columns (partition, key, embedding, metadata)."""
    if len(source.branches) == 1 and not source.branches[0].conditions:
        return source.branches[0].table
    selects = [
        sql.SQL("SELECT partition, key, embedding, metadata FROM {}{}").format(
            b.table, _where(b.conditions)
        )
        for b in source.branches
    ]
    return sql.SQL("({}) AS src").format(sql.SQL(" UNION ALL ").join(selects))


def _where(conditions: Sequence[sql.Composable]) -> sql.Composable:
    if not conditions:
        return sql.SQL("")
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)


def to_numpy(value: Any) -> np.ndarray:
    """A pgvector value (Vector, HalfVector or array) as a float32 numpy vector."""
    if isinstance(value, np.ndarray):
        return value.astype(np.float32, copy=False)
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)


def missing_key(h: SpaceHandle, source: Source, key: str, partition: str) -> errors.KeyNotFound:
    exc = errors.KeyNotFound(h.name, key, partition)
    if source.version is not None:
        exc.args = (f"{exc.args[0]} at version {source.version}",)
    return exc


# -- reads ------------------------------------------------------------------------------------
MISSING = ("raise", "nan")


def multiget(
    h: SpaceHandle, source: Source, keys: Iterable[str], partition: str | None = None,
    *, missing: str = "raise",
) -> np.ndarray:
    """A (len(keys), dims) float32 matrix, rows in the order of `keys`. A missing key raises
    KeyNotFound naming it, or with `missing="nan"` gets a row of NaN."""
    if missing not in MISSING:
        raise errors.InvalidArgument(f"space {h.name!r}: missing must be one of {MISSING}, not {missing!r}")
    key_list = [check_key(h.name, k) for k in keys]
    part = catalog.partition_name(partition)
    with translate(h.name, version=source.version):
        found = dict(
            h.conn.execute(
                sql.SQL("SELECT key, embedding FROM {} WHERE partition = %s AND key = ANY(%s)").format(
                    relation(source)
                ),
                (part, key_list),
            ).fetchall()
        )
    out = np.empty((len(key_list), h.dims), dtype=np.float32)
    for i, key in enumerate(key_list):
        vec = found.get(key)
        if vec is not None:
            out[i] = to_numpy(vec)
        elif missing == "nan":
            out[i] = np.nan
        else:
            raise missing_key(h, source, key, part)
    return out


def get_metadata(
    h: SpaceHandle, source: Source, key: str, partition: str | None = None
) -> dict[str, Any] | None:
    key = check_key(h.name, key)
    part = catalog.partition_name(partition)
    with translate(h.name, key=key, version=source.version):
        row = h.conn.execute(
            sql.SQL("SELECT metadata FROM {} WHERE partition = %s AND key = %s").format(relation(source)),
            (part, key),
        ).fetchone()
    if row is None:
        raise missing_key(h, source, key, part)
    return row[0]  # type: ignore[no-any-return]


def contains(h: SpaceHandle, source: Source, key: object, partition: str | None = None) -> bool:
    if not isinstance(key, str) or not key:
        return False
    with translate(h.name, version=source.version):
        row = h.conn.execute(
            sql.SQL("SELECT 1 FROM {} WHERE partition = %s AND key = %s").format(relation(source)),
            (catalog.partition_name(partition), key),
        ).fetchone()
    return row is not None


def _selection(
    h: SpaceHandle, partition: str | None, where: Mapping[str, Any] | None
) -> tuple[sql.Composable, dict[str, Any]]:
    """` WHERE ...` for rows of one partition (if given) matching a metadata filter (if given)."""
    conds: list[sql.Composable] = []
    params: dict[str, Any] = {}
    if partition is not None:
        conds.append(sql.SQL("partition = %(part)s"))
        params["part"] = catalog.partition_name(partition)
    if where:
        cond, filter_params = compile_where(h.name, where)
        conds.append(cond)
        params.update(filter_params)
    return _where(conds), params


def count(
    h: SpaceHandle, source: Source, partition: str | None = None,
    where: Mapping[str, Any] | None = None,
) -> int:
    """Rows in the source (in one partition, if given; matching `where`, if given)."""
    cond, params = _selection(h, partition, where)
    with translate(h.name, version=source.version):
        row = h.conn.execute(
            sql.SQL("SELECT count(*) FROM {}{}").format(relation(source), cond), params
        ).fetchone()
    return int(row[0]) if row else 0


def vectors_of(
    h: SpaceHandle, source: Source, rows: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], np.ndarray]:
    """The vectors of `(partition, key)` rows, in one query (rows gone meanwhile are left out)."""
    if not rows:
        return {}
    with translate(h.name, version=source.version):
        found = h.conn.execute(
            sql.SQL(
                "SELECT s.partition, s.key, s.embedding FROM {} s"
                " JOIN unnest(%s::text[], %s::text[]) AS r(partition, key) USING (partition, key)"
            ).format(relation(source)),
            ([p for p, _ in rows], [k for _, k in rows]),
        ).fetchall()
    return {(p, k): to_numpy(v) for p, k, v in found}


def check_offset(h: SpaceHandle, offset: object, num: object) -> int:
    """A search's `offset` (results to skip, for paging): an integer >= 0. The search asks
    for `num + offset` rows, so with an offset `num` is checked here first."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise errors.InvalidArgument(f"space {h.name!r}: offset must be an integer >= 0, not {offset!r}")
    if offset and (isinstance(num, bool) or not isinstance(num, int) or num < 1):
        raise errors.InvalidArgument(f"space {h.name!r}: num must be a positive integer, not {num!r}")
    return offset


def pages(
    h: SpaceHandle,
    source: Source,
    partition: str | None = None,
    *,
    with_metadata: bool = False,
    with_partition: bool = False,
) -> Iterator[tuple[Any, ...]]:
    """Yield `(key, vector)` in (partition, key) order, then the metadata and the partition
    when asked: `(key, vector[, metadata][, partition])`.

    Pages through the source by key, so no transaction stays open between pages.
    """
    part = None if partition is None else catalog.partition_name(partition)
    conds: list[sql.Composable] = [sql.SQL("(partition, key) > (%s, %s)")]
    base_params: list[Any] = []
    if part is not None:
        conds.append(sql.SQL("partition = %s"))
        base_params.append(part)
    query = sql.SQL(
        "SELECT partition, key, embedding, metadata FROM {}{} ORDER BY partition, key LIMIT {}"
    ).format(relation(source), _where(conds), sql.Literal(ITERATOR_PAGE))
    after: tuple[str, str] = ("", "")

    def page() -> list[tuple[Any, ...]]:
        with translate(h.name, version=source.version):
            return h.conn.execute(query, [*after, *base_params]).fetchall()

    while True:
        rows = h.session.call(page, repeatable=True, read=True, what=f"iterator() on {h.name!r}")
        for part_, k, emb, meta in rows:
            row: tuple[Any, ...] = (k, to_numpy(emb))
            yield row + ((meta,) if with_metadata else ()) + ((part_,) if with_partition else ())
        if len(rows) < ITERATOR_PAGE:
            return
        after = (rows[-1][0], rows[-1][1])


# -- writes -----------------------------------------------------------------------------------
def _jsonb(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


def set_row(
    h: SpaceHandle, key: str, vector: Any, metadata: dict[str, Any] | None, partition: str | None
) -> None:
    """Insert or replace one embedding (and its metadata) under `key`."""
    key = check_key(h.name, key)
    vec = as_vector(h.name, h.dims, h.dtype, vector)
    meta = normalise_metadata(h.name, metadata)
    part = catalog.partition_name(partition)
    query = sql.SQL(
        "INSERT INTO {live} (partition, key, embedding, metadata)"
        " VALUES (%s, %s, %s::{vt}, %s)"
        " ON CONFLICT (partition, key) DO UPDATE"
        " SET embedding = EXCLUDED.embedding, metadata = EXCLUDED.metadata"
    ).format(live=h.tables.live, vt=h.tables.vector_type)

    def write() -> None:
        with translate(h.name, key=key), h.conn.transaction(), h.conn.cursor() as cur:
            catalog.ensure_partitions(h, cur, [part])  # may create one: table lock first
            catalog.lock_for_write(h, cur)
            cur.execute(query, (part, key, vec, _jsonb(meta)))

    with _partition_named(h, [part]):
        catalog.retrying(h, write)


@contextmanager
def _partition_named(h: SpaceHandle, parts: Iterable[str]) -> Iterator[None]:
    """A partition dropped while a write ran: name it. Under row-level security the server
    leaves the row (and so the partition) out of its message, so say which one it was."""
    try:
        yield
    except errors.PartitionNotFound as exc:
        if exc.partition != "?":
            raise
        names = sorted(set(parts))
        h.known_partitions.difference_update(names)  # seen to exist, but no longer
        missing = names
        if len(names) > 1:
            with translate(h.name):
                found = {r[0] for r in h.conn.execute(
                    "SELECT name FROM embeddinghub.partitions WHERE space_id = %s AND name = ANY(%s)",
                    (h.id, names),
                ).fetchall()}
            missing = [n for n in names if n not in found] or names
        raise errors.PartitionNotFound(h.name, missing[0]) from exc


@dataclass(frozen=True)
class WriteBatch:
    """Checked rows of one write: keys, their matrix, metadata and partitions."""

    keys: list[str]
    matrix: np.ndarray
    metadata: list[Jsonb | None]
    partitions: list[str]


def make_batch(
    h: SpaceHandle,
    keys: Any,
    vectors: Any = None,
    metadata: Sequence[dict[str, Any] | None] | None = None,
    partition: str | Sequence[str | None] | None = None,
) -> WriteBatch:
    """Check a multiset's arguments: `{key: vector}`, `(keys, matrix)` or `(key, vector)`
    pairs; one partition for all rows or one per row; no (partition, key) twice."""
    key_list, matrix = _keys_and_matrix(h, keys, vectors)
    n = len(key_list)
    metas = [_jsonb(m) for m in metadata_list(h.name, metadata, n)]
    if partition is None or isinstance(partition, str):
        parts = [catalog.partition_name(partition)] * n
    else:
        parts = [catalog.partition_name(p) for p in partition]
        if len(parts) != n:
            raise errors.InvalidArgument(f"space {h.name!r}: {n} keys but {len(parts)} partitions")
    one_partition = partition is None or isinstance(partition, str)
    distinct = len(set(key_list)) if one_partition else len(set(zip(parts, key_list, strict=True)))
    if distinct != n:
        check_keys(h.name, key_list)  # raises naming the duplicate
    return WriteBatch(key_list, matrix, metas, parts)


def _keys_and_matrix(h: SpaceHandle, keys: Any, vectors: Any) -> tuple[list[str], np.ndarray]:
    if vectors is not None:
        if isinstance(keys, str):
            raise errors.InvalidArgument(
                f"space {h.name!r}: multiset(keys, vectors) takes a list of keys, not one string"
            )
        key_list = [check_key(h.name, k) for k in keys]
        if not key_list:
            return [], np.empty((0, h.dims), dtype=np.float32)
        return key_list, as_matrix(h.name, h.dims, h.dtype, vectors, rows=len(key_list))
    pairs = _pairs(h, keys)
    key_list = [check_key(h.name, k) for k, _ in pairs]
    if not pairs:
        return [], np.empty((0, h.dims), dtype=np.float32)
    rows = []
    for key, vec in pairs:
        row = np.asarray(vec, dtype=np.float32)
        if row.shape != (h.dims,):
            raise errors.DimensionMismatch(
                f"space {h.name!r} has {h.dims} dims; key {key!r} has shape {row.shape}"
            )
        rows.append(row)
    return key_list, as_matrix(h.name, h.dims, h.dtype, rows)


def _pairs(h: SpaceHandle, keys: Any) -> list[Any]:
    if isinstance(keys, Mapping):
        return list(keys.items())
    try:
        pairs = list(keys)
    except TypeError:
        raise errors.InvalidArgument(
            f"space {h.name!r}: multiset takes a dict, (keys, matrix) or (key, vector) pairs"
        ) from None
    for pair in pairs:
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise errors.InvalidArgument(
                f"space {h.name!r}: expected (key, vector) pairs, got {pair!r:.60}"
            )
    return pairs


def multiset(
    h: SpaceHandle,
    batch: WriteBatch,
    *,
    progress: Callable[[int], None] | None = None,
    rebuild_index: bool = True,
    phase: Callable[[str], None] | None = None,
) -> int:
    """Upsert a checked batch in one transaction: all rows land or none do.

    The rows go in chunk by chunk (COPY of a chunk's vectors, then one INSERT for the
    chunk), so client memory stays a few chunks whatever the batch size; and in
    (partition, key) order, so two batches over the same keys lock their rows in one
    order and cannot deadlock. With `rebuild_index`, a batch of at least
    BULK_REBUILD_ROWS into an empty space this session owns drops the indexes and builds
    them after the rows are in (several times faster than growing them row by row).
    `phase` is told when that build starts. Returns the row count.
    """
    if not batch.keys:
        return 0
    order = lock_order(batch)
    with _partition_named(h, batch.partitions):
        return catalog.retrying(h, lambda: _multiset(h, batch, order, progress, rebuild_index, phase))


def lock_order(batch: WriteBatch) -> list[int]:
    """Row positions in (partition, key) order: every writer locks rows in this order."""
    keys, parts = batch.keys, batch.partitions
    if all(p == parts[0] for p in parts):
        return sorted(range(len(keys)), key=keys.__getitem__)
    return sorted(range(len(keys)), key=lambda i: (parts[i], keys[i]))


def chunk_rows(dims: int) -> int:
    """Rows per chunk: about COPY_CHUNK bytes of COPY payload."""
    return max(1, COPY_CHUNK // (4 * dims + 18))


def _multiset(
    h: SpaceHandle,
    batch: WriteBatch,
    order: list[int],
    progress: Callable[[int], None] | None,
    rebuild_index: bool,
    phase: Callable[[str], None] | None,
) -> int:
    n = len(batch.keys)
    with translate(h.name), h.conn.transaction(), h.conn.cursor() as cur:
        # Table locks (a new partition, dropping the index) before the space lock, as writers.
        catalog.ensure_partitions(h, cur, set(batch.partitions))
        rebuild = rebuild_index and n >= BULK_REBUILD_ROWS and catalog.may_rebuild_index(h, cur)
        if rebuild:
            catalog.drop_index(h, cur)
        catalog.lock_for_write(h, cur)
        # Into an empty space held exclusively: rows stamped here, no trigger, no conflicts.
        head = catalog.begin_bulk_load(h, cur) if rebuild else None
        if head is None:
            _upsert(h, cur, batch, order, progress)
        else:
            _copy_stamped(h, cur, batch, order, head, progress)
            catalog.end_bulk_load(h, cur)
        if rebuild:
            if phase is not None:
                phase("building the index")
            catalog.rebuild_index(h, cur)
    return n


def _upsert(
    h: SpaceHandle, cur: psycopg.Cursor[Any], batch: WriteBatch, order: list[int],
    progress: Callable[[int], None] | None,
) -> None:
    """Chunk by chunk: COPY of the vectors into eh_stage, then one upsert from it into the
    live table, whose row trigger stamps each row and keeps the images it replaces."""
    cur.execute(
        "CREATE TEMP TABLE IF NOT EXISTS eh_stage (idx int4, embedding vector) ON COMMIT DELETE ROWS"
    )
    upsert = sql.SQL(
        "INSERT INTO {live} (partition, key, embedding, metadata)"
        " SELECT r.partition, r.key, s.embedding::{vt}, r.metadata"
        " FROM unnest(%(parts)s::text[], %(keys)s::text[], %(meta)s::jsonb[])"
        "   WITH ORDINALITY AS r(partition, key, metadata, idx)"
        " JOIN eh_stage s USING (idx) ORDER BY r.idx"
        " ON CONFLICT (partition, key) DO UPDATE"
        " SET embedding = EXCLUDED.embedding, metadata = EXCLUDED.metadata"
    ).format(live=h.tables.live, vt=h.tables.vector_type)
    n, step = len(order), chunk_rows(h.dims)
    for start in range(0, n, step):
        rows = order[start : start + step]
        cur.execute("TRUNCATE eh_stage")  # the previous chunk (or a caller's batch)
        with cur.copy("COPY eh_stage (idx, embedding) FROM STDIN WITH (FORMAT BINARY)") as cp:
            cp.write(copy_rows(batch.matrix[rows]))
        cur.execute(upsert, {
            "parts": [batch.partitions[i] for i in rows],
            "keys": [batch.keys[i] for i in rows],
            "meta": [batch.metadata[i] for i in rows],
        })
        if progress is not None:
            progress(min(n, start + step))


def _copy_stamped(
    h: SpaceHandle, cur: psycopg.Cursor[Any], batch: WriteBatch, order: list[int], head: int,
    progress: Callable[[int], None] | None,
) -> None:
    """A bulk load into an empty space (catalog.begin_bulk_load): the rows COPYed straight
    into the live table, stamped with the working version, updated_at its default now().
    No stage table and no join: nothing to conflict with, no images to keep. The binary
    rows are built here, the vectors with numpy (write_row would dump each through a
    pgvector Vector object: a Python cost per row of the same order as the server's)."""
    copy = sql.SQL(
        "COPY {} (partition, key, embedding, metadata, version) FROM STDIN WITH (FORMAT BINARY)"
    ).format(h.tables.live)
    encoding = cur.connection.info.encoding
    jsonb = cur.adapters.get_dumper(Jsonb, PyFormat.BINARY)(Jsonb, cur.connection)
    fields = struct.Struct(">hi").pack
    length = struct.Struct(">i").pack
    version = struct.pack(">iq", 8, head)
    null = length(-1)
    n, step = len(order), chunk_rows(h.dims)
    with cur.copy(copy) as cp:
        cp.write(COPY_HEADER)
        for start in range(0, n, step):
            rows = order[start : start + step]
            vectors = vector_fields(batch.matrix[rows], h.dtype)
            out: list[Buffer] = []
            for i, vector in zip(rows, vectors, strict=True):
                part, key = batch.partitions[i].encode(encoding), batch.keys[i].encode(encoding)
                meta = batch.metadata[i]
                dumped = None if meta is None else jsonb.dump(meta)
                out += (fields(5, len(part)), part, length(len(key)), key, vector)
                out += (null,) if dumped is None else (length(len(dumped)), dumped)
                out.append(version)
            cp.write(b"".join(out))
            if progress is not None:
                progress(min(n, start + step))
        cp.write(COPY_TRAILER)


def multidelete(
    h: SpaceHandle, keys: Iterable[str], partition: str | None = None, *, strict: bool = False
) -> int:
    """Delete the keys that exist and return how many. With `strict`, delete every key or
    none: a missing one raises KeyNotFound naming it."""
    key_list = sorted(check_keys(h.name, keys))  # one lock order for every writer
    part = catalog.partition_name(partition)
    return catalog.retrying(h, lambda: _multidelete(h, key_list, part, strict))


def _multidelete(h: SpaceHandle, key_list: list[str], part: str, strict: bool) -> int:
    with translate(h.name), h.conn.transaction(), h.conn.cursor() as cur:
        catalog.lock_for_write(h, cur)
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE partition = %s AND key = ANY(%s) RETURNING key").format(
                h.tables.live
            ),
            (part, key_list),
        )
        deleted = {r[0] for r in cur.fetchall()}
        missing = [k for k in key_list if k not in deleted]
        if strict and missing:
            raise errors.KeyNotFound(h.name, missing[0], part)  # rolls back the batch
    return len(deleted)


def update_metadata(
    h: SpaceHandle, key: str, metadata: dict[str, Any] | None, partition: str | None = None,
    *, merge: bool = False,
) -> None:
    """Replace the metadata of `key` (its vector stays), or with `merge` add `metadata`'s
    fields to it (a JSON merge of the top level); KeyNotFound if the key is not there."""
    key = check_key(h.name, key)
    meta = normalise_metadata(h.name, metadata)
    part = catalog.partition_name(partition)
    value = sql.SQL("coalesce(metadata, '{}'::jsonb) || %s") if merge and meta is not None else sql.SQL("%s")
    query = sql.SQL("UPDATE {} SET metadata = {} WHERE partition = %s AND key = %s").format(
        h.tables.live, value
    )

    def update() -> int:
        with translate(h.name, key=key), h.conn.transaction(), h.conn.cursor() as cur:
            catalog.lock_for_write(h, cur)
            return cur.execute(query, (_jsonb(meta), part, key)).rowcount

    if catalog.retrying(h, update) == 0:
        raise errors.KeyNotFound(h.name, key, part)


def delete_where(h: SpaceHandle, where: Mapping[str, Any], partition: str | None = None) -> int:
    """Delete the rows whose metadata matches `where` (in one partition, if given); returns
    how many. An empty filter is refused: `delete_all` says what it means."""
    if not where:
        raise errors.InvalidArgument(
            f"space {h.name!r}: delete_where needs a non-empty filter; use delete_all() to empty it"
        )
    return _delete(h, partition, where)


def delete_all(h: SpaceHandle, partition: str | None = None) -> int:
    """Delete every row (of one partition, if given); returns how many."""
    return _delete(h, partition, None)


def _delete(h: SpaceHandle, partition: str | None, where: Mapping[str, Any] | None) -> int:
    cond, params = _selection(h, partition, where)
    query = sql.SQL("DELETE FROM {}{}").format(h.tables.live, cond)

    def delete() -> int:
        with translate(h.name), h.conn.transaction(), h.conn.cursor() as cur:
            catalog.lock_for_write(h, cur)
            return cur.execute(query, params).rowcount

    return catalog.retrying(h, delete)
