"""Versions of a space: O(1) snapshots, time-travel reads, diff, rollback and retention.

The mechanism lives in SQL (sql/versions.sql, with the row trigger of sql/triggers.sql),
so SQL clients get exactly the same behaviour; this module adds the Python types and the
read-only `AsOf` view.

- A space has a working version, `head`. Every write stamps rows with it; a row committed
  in an earlier snapshot is copied to the history table before it is changed or deleted.
- `snapshot()` records version N = head and bumps head: O(1), nothing is copied.
- Version N reads live rows with `version <= N` plus history rows with
  `valid_from <= N < valid_to`.
- `rollback(N)` rewrites only the rows changed since N, in one transaction, and records
  the result as a new version; unsnapshotted work is recorded first, so nothing is lost.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import psycopg
from psycopg import sql

from . import errors
from .db import from_db_error, validate_name
from .search import Neighbor, knn_query
from .vectors import check_key

if TYPE_CHECKING:
    from .space import Space

__all__ = [
    "AsOf",
    "Diff",
    "Version",
    "diff",
    "list_versions",
    "prune_versions",
    "resolve",
    "rollback",
    "snapshot",
]

EF_SEARCH_MAX = 1000  # pgvector's limit for hnsw.ef_search

_VERSION_COLUMNS = "number, tag, note, created_at, row_count, created_by"


@dataclass(frozen=True)
class Version:
    """A recorded version of a space.

    `row_count` is not counted by `snapshot()` (that would cost O(rows)); `versions()`
    computes it on first read, from the changes since the previous counted version, and
    caches it. It is None on the Version that `snapshot()` returns.
    """

    number: int
    tag: str | None
    note: str | None
    created_at: dt.datetime
    row_count: int | None
    created_by: str | None = None


@dataclass(frozen=True)
class Diff:
    """Changes from one version to another, as sorted `(partition, key)` pairs.

    Keys are unique only within a partition, so each entry names both. `changed` holds
    keys present in both versions whose embedding or metadata differ.
    """

    added: list[tuple[str, str]]
    removed: list[tuple[str, str]]
    changed: list[tuple[str, str]]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def __len__(self) -> int:
        return len(self.added) + len(self.removed) + len(self.changed)


VersionRef = int | str | Version


@contextmanager
def _db(space: Space, version: object = None) -> Iterator[None]:
    """Like db.translate, but an unknown version names the version the caller asked for."""
    try:
        yield
    except psycopg.Error as exc:
        if exc.sqlstate == "EHVER" and version is not None:
            raise errors.VersionNotFound(space.name, version) from exc
        if exc.sqlstate == "EHARG":  # the SQL message already names the space
            raise errors.InvalidArgument(exc.diag.message_primary or str(exc)) from exc
        raise from_db_error(exc, space.name) from exc


def _version(row: Sequence[Any]) -> Version:
    number, tag, note, created_at, row_count, created_by = row
    return Version(int(number), tag, note, created_at,
                   None if row_count is None else int(row_count), created_by)


def _version_row(cur: psycopg.Cursor[Any], space: Space, number: int) -> Version:
    cur.execute(
        f"SELECT {_VERSION_COLUMNS} FROM embeddinghub.versions"  # noqa: S608 (constant)
        " WHERE space_id = %s AND number = %s",
        (space.id, number),
    )
    row = cur.fetchone()
    if row is None:
        raise errors.VersionNotFound(space.name, number)
    return _version(row)


def check_tag(space: str, tag: object) -> str:
    """Tags are names (see db.validate_name) that are not all digits, so that a CLI
    argument like `3` always means version 3."""
    name = validate_name("tag", tag)
    if name.isdigit():
        raise errors.InvalidArgument(
            f"space {space!r}: tag {name!r} is all digits; it would read as a version number"
        )
    return name


def resolve(space: Space, ref: VersionRef) -> int:
    """The number of a version given as a number, a tag or a `Version`; VersionNotFound if
    the space has no such version (never recorded, or pruned)."""
    if isinstance(ref, Version):
        ref = ref.number
    if isinstance(ref, np.integer):
        ref = int(ref)
    if isinstance(ref, bool) or not isinstance(ref, int | str):
        raise errors.InvalidArgument(
            f"space {space.name!r}: a version is a number or a tag, not {ref!r}"
        )
    column = "number" if isinstance(ref, int) else "tag"
    with _db(space, ref):
        row = space.conn.execute(
            f"SELECT number FROM embeddinghub.versions"  # noqa: S608 (column is a constant)
            f" WHERE space_id = %s AND {column} = %s",
            (space.id, ref),
        ).fetchone()
    if row is None:
        raise errors.VersionNotFound(space.name, ref)
    return int(row[0])


# -- snapshot, list, diff, rollback, prune ------------------------------------------------
def snapshot(space: Space, tag: str | None = None, note: str | None = None) -> Version:
    """Record the working state as a version, in O(1). Allowed on a frozen space."""
    if tag is not None:
        check_tag(space.name, tag)
    if note is not None and not isinstance(note, str):
        raise errors.InvalidArgument(f"space {space.name!r}: note must be a string, not {note!r}")
    with _db(space), space.conn.transaction(), space.conn.cursor() as cur:
        cur.execute("SELECT embeddinghub.snapshot(%s, %s, %s)", (space.name, tag, note))
        row = cur.fetchone()
        assert row is not None
        return _version_row(cur, space, int(row[0]))


def list_versions(space: Space) -> list[Version]:
    """Every recorded version, oldest first, with row counts (computed once, then cached)."""
    with _db(space):
        rows = space.conn.execute(
            f"SELECT {_VERSION_COLUMNS} FROM embeddinghub.list_versions(%s)",  # noqa: S608
            (space.name,),
        ).fetchall()
    return [_version(r) for r in rows]


def diff(space: Space, a: VersionRef, b: VersionRef | None = None) -> Diff:
    """Keys added, removed and changed from version `a` to `b` (None: the working state).

    Costs O(keys written since the older of the two), not O(rows).
    """
    na = resolve(space, a)
    nb = None if b is None else resolve(space, b)
    with _db(space, a if nb is None else f"{a} or {b}"):
        rows = space.conn.execute(
            "SELECT partition, key, change FROM embeddinghub.diff(%s, %s, %s)",
            (space.name, na, nb),
        ).fetchall()
    out: dict[str, list[tuple[str, str]]] = {"added": [], "removed": [], "changed": []}
    for part, key, change in rows:
        out[change].append((part, key))
    return Diff(**out)


def rollback(space: Space, ref: VersionRef) -> Version:
    """Make the working state equal to version `ref`, in one transaction, and record it as
    a new version (note 'rollback to N'), which is returned.

    Cost O(changes since N). Partitions dropped since N are re-created through
    `hub._add_partition`, so partition hooks run. Unsnapshotted work is first recorded as
    its own version (note 'before rollback to N'). Writers wait until it commits; readers
    see the old state until then; on any error nothing changes.
    """
    number = resolve(space, ref)
    created: list[str] = []
    try:
        with _db(space, ref), space.conn.transaction(), space.conn.cursor() as cur:
            if _dropped_partitions(cur, space, number):
                # Creating a partition locks the parent: take that lock before the space
                # lock, in the order writers take them (see sql/versions.sql).
                cur.execute(
                    sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(space.tables.live)
                )
                cur.execute(
                    "SELECT frozen FROM embeddinghub.version_space(%s, exclusive => true)",
                    (space.name,),
                )
                row = cur.fetchone()
                if row and row[0]:
                    raise errors.SpaceFrozen(space.name, f"cannot roll back to version {number}")
                for name in _dropped_partitions(cur, space, number):
                    space._create_partition(cur, name)
                    created.append(name)
            cur.execute("SELECT embeddinghub.rollback(%s, %s)", (space.name, number))
            row = cur.fetchone()
            assert row is not None
            return _version_row(cur, space, int(row[0]))
    except BaseException:
        space._known_partitions.difference_update(created)  # their creation was undone
        raise


def _dropped_partitions(cur: psycopg.Cursor[Any], space: Space, number: int) -> list[str]:
    cur.execute("SELECT embeddinghub.dropped_partitions(%s, %s)", (space.id, number))
    return [r[0] for r in cur.fetchall()]


def prune_versions(space: Space, keep: int) -> int:
    """Keep the newest `keep` versions; delete older ones and the history rows that no kept
    version needs. Returns the number of history rows freed. Refused on a frozen space."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise errors.InvalidArgument(
            f"space {space.name!r}: keep must be a non-negative integer, not {keep!r}"
        )
    with _db(space):
        row = space.conn.execute(
            "SELECT embeddinghub.prune_versions(%s, %s)", (space.name, keep)
        ).fetchone()
    return int(row[0]) if row else 0


# -- time travel --------------------------------------------------------------------------
class AsOf:
    """A read-only view of a space as it was at one version.

    A recorded version never changes, so reads are consistent across calls (an iterator
    pages through the same state however long it runs). Every query re-checks that the
    version still exists, so a view of a version pruned meanwhile raises VersionNotFound
    instead of returning part of it. Writes raise SpaceFrozen.
    """

    def __init__(self, space: Space, version: VersionRef) -> None:
        self.space = space
        self.number = resolve(space, version)

    def __repr__(self) -> str:
        return f"<AsOf {self.space.name!r} version={self.number}>"

    @property
    def name(self) -> str:
        return self.space.name

    @property
    def version(self) -> Version:
        with _db(self.space, self.number), self.space.conn.cursor() as cur:
            return _version_row(cur, self.space, self.number)

    def source(self) -> sql.Composable:
        """This version's rows as a subquery `(...) AS as_of` with columns
        (partition, key, embedding, metadata), for composing further queries."""
        t = self.space.tables
        n = sql.Literal(self.number)
        guard = _guard(self.space, self.number)
        return sql.SQL(
            "(SELECT partition, key, embedding, metadata FROM {live}"
            " WHERE version <= {n} AND {guard}"
            " UNION ALL SELECT partition, key, embedding, metadata FROM {hist}"
            " WHERE valid_to > {n} AND valid_from <= {n} AND {guard}) AS as_of"
        ).format(live=t.live, hist=t.history, n=n, guard=guard)

    def _db(self) -> Any:
        return _db(self.space, self.number)

    # -- reads ----------------------------------------------------------------------
    def get(self, key: str, partition: str | None = None) -> np.ndarray:
        return self.multiget([key], partition=partition)[0]

    def multiget(self, keys: Iterable[str], partition: str | None = None) -> np.ndarray:
        """A (len(keys), dims) float32 matrix of the keys' embeddings at this version."""
        key_list = [check_key(self.space.name, k) for k in keys]
        part = self.space._partition(partition)
        with self._db():
            rows = self.space.conn.execute(
                sql.SQL(
                    "SELECT key, embedding FROM {} WHERE partition = %s AND key = ANY(%s)"
                ).format(self.source()),
                (part, key_list),
            ).fetchall()
        found = dict(rows)
        for key in key_list:
            if key not in found:
                raise self._missing(key, part)
        return self.space._assemble(key_list, found, part)

    def get_metadata(self, key: str, partition: str | None = None) -> dict[str, Any] | None:
        key = check_key(self.space.name, key)
        part = self.space._partition(partition)
        with self._db():
            row = self.space.conn.execute(
                sql.SQL("SELECT metadata FROM {} WHERE partition = %s AND key = %s").format(
                    self.source()
                ),
                (part, key),
            ).fetchone()
        if row is None:
            raise self._missing(key, part)
        return row[0]  # type: ignore[no-any-return]

    def _missing(self, key: str, part: str) -> errors.KeyNotFound:
        exc = errors.KeyNotFound(self.space.name, key, part)
        exc.args = (f"{exc.args[0]} at version {self.number}",)
        return exc

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str) or not key:
            return False
        with self._db():
            row = self.space.conn.execute(
                sql.SQL("SELECT 1 FROM {} WHERE partition = %s AND key = %s").format(
                    self.source()
                ),
                (self.space._partition(None), key),
            ).fetchone()
        return row is not None

    def count(self, partition: str | None = None) -> int:
        """Rows at this version (in one partition, if given). The whole-space count is the
        version's cached row_count."""
        if partition is None:
            for v in list_versions(self.space):
                if v.number == self.number and v.row_count is not None:
                    return v.row_count
            raise errors.VersionNotFound(self.space.name, self.number)
        with self._db():
            row = self.space.conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE partition = %s").format(self.source()),
                (self.space._partition(partition),),
            ).fetchone()
        return int(row[0]) if row else 0

    def __len__(self) -> int:
        return self.count()

    def iterator(
        self, partition: str | None = None, *, with_metadata: bool = False
    ) -> Iterator[tuple[Any, ...]]:
        """Yield `(key, vector)` (or `(key, vector, metadata)`) at this version, in
        (partition, key) order, all partitions unless one is given."""
        part = None if partition is None else self.space._partition(partition)
        pages = self.space._pages(self.source(), part, with_metadata, version=self.number)
        try:
            yield from pages
        except errors.VersionNotFound:
            raise errors.VersionNotFound(self.space.name, self.number) from None

    def __iter__(self) -> Iterator[Any]:
        return self.iterator()

    def nearest_neighbors(
        self,
        num: int,
        key: str | None = None,
        vector: Any = None,
        partition: str | None = None,
        where: Mapping[str, Any] | None = None,
        *,
        ef_search: int | None = None,
        key_partition: str | None = None,
    ) -> list[Neighbor]:
        """Nearest neighbours among this version's rows (see Space.nearest_neighbors)."""
        return self.space.nearest_neighbors(
            num, key, vector, partition, where, version=self.number, ef_search=ef_search,
            key_partition=key_partition,
        )

    def multi_nearest_neighbors(
        self,
        num: int,
        keys: Sequence[str] | None = None,
        vectors: Any = None,
        partition: str | None = None,
        where: Mapping[str, Any] | None = None,
        *,
        ef_search: int | None = None,
        key_partition: str | None = None,
    ) -> list[list[Neighbor]]:
        return self.space.multi_nearest_neighbors(
            num, keys, vectors, partition, where, version=self.number, ef_search=ef_search,
            key_partition=key_partition,
        )

    # -- writes: a version is immutable -------------------------------------------------
    def _read_only(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise errors.SpaceFrozen(
            self.space.name,
            f"version {self.number} is a read-only view (as_of); write to the space itself",
        )

    set = multiset = delete = multidelete = delete_all = _read_only
    create_partition = drop_partition = _read_only


def _guard(space: Space, number: int) -> sql.Composable:
    # STABLE with constant arguments: the planner evaluates it once per query (a one-time
    # filter), and it raises EHVER if the version was pruned since the view was made.
    return sql.SQL("embeddinghub.check_version({}, {})").format(
        sql.Literal(space.id), sql.Literal(number)
    )


def search_at_version(
    space: Space,
    num: int,
    keys: Sequence[str] | None,
    vectors: Any,
    partition: str | None,
    where: Mapping[str, Any] | None,
    version: VersionRef,
    ef: int,
    key_partition: str | None = None,
) -> list[list[Neighbor]]:
    """Nearest neighbours at a version (Space.multi_nearest_neighbors has checked num/ef).

    The live rows unchanged since the version are searched through their HNSW index,
    filtered by `version <= N` (iterative scan, so the filter cannot starve it); the rows
    changed since, which are history rows, are few for recent versions and searched
    exactly. Both answers are merged. A query answered with fewer rows than asked is
    re-run exactly, as in the working state.
    """
    from .space import _neighbors

    view = AsOf(space, version)
    part = None if partition is None else space._partition(partition)
    matrix, exclude, conditions, params = space._search_inputs(
        num, keys, vectors, part, where, key_partition, view
    )
    n = sql.Literal(view.number)
    guard = _guard(space, view.number)
    t = space.tables
    live = knn_query(t, conditions=[sql.SQL("version <= {}").format(n), guard, *conditions])
    hist = knn_query(
        t,
        source=t.history,
        conditions=[sql.SQL("valid_to > {n} AND valid_from <= {n}").format(n=n), guard,
                    *conditions],
    )
    query = sql.SQL(
        "SELECT key, partition, distance, metadata FROM (({}) UNION ALL ({})) AS u"
        " ORDER BY distance LIMIT %(k)s"
    ).format(live, hist)
    ef = min(EF_SEARCH_MAX, max(ef, params["k"]))
    out: list[list[Neighbor]] = []
    short: list[int] = []
    conn = space.conn
    with _db(space, view.number), conn.pipeline(), conn.transaction():
        conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef),))
        conn.execute("SET LOCAL hnsw.iterative_scan = 'relaxed_order'")
        cursors = [conn.execute(query, {**params, "q": q}) for q in matrix]
        for i, (cur, skip) in enumerate(zip(cursors, exclude, strict=True)):
            rows = cur.fetchall()
            if len(rows) < params["k"]:
                short.append(i)
            out.append(_neighbors(rows, skip, num))
    if short:
        # Fewer rows than asked: few rows at this version, or a selective filter stopped
        # the iterative scan (hnsw.max_scan_tuples). Answer those queries exactly.
        with _db(space, view.number), conn.pipeline(), conn.transaction():
            conn.execute("SET LOCAL enable_indexscan = off")
            cursors = [conn.execute(query, {**params, "q": matrix[i]}) for i in short]
            for i, cur in zip(short, cursors, strict=True):
                out[i] = _neighbors(cur.fetchall(), exclude[i], num)
    return out
