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
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import psycopg
from psycopg import sql

from . import catalog, errors, rows, search
from .catalog import SpaceHandle, SupportsHandle, handle_of
from .db import translate, validate_name
from .search import Neighbor
from .session import Session, session_call

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
    "source_at",
]

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


def _version(row: Sequence[Any]) -> Version:
    number, tag, note, created_at, row_count, created_by = row
    return Version(int(number), tag, note, created_at,
                   None if row_count is None else int(row_count), created_by)


def _version_row(cur: psycopg.Cursor[Any], h: SpaceHandle, number: int) -> Version:
    cur.execute(
        f"SELECT {_VERSION_COLUMNS} FROM embeddinghub.versions"  # noqa: S608 (constant)
        " WHERE space_id = %s AND number = %s",
        (h.id, number),
    )
    row = cur.fetchone()
    if row is None:
        raise errors.VersionNotFound(h.name, number)
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


def resolve(space: SpaceHandle | SupportsHandle, ref: VersionRef) -> int:
    """The number of a version given as a number, a tag or a `Version`; VersionNotFound if
    the space has no such version (never recorded, or pruned)."""
    h = handle_of(space)
    if isinstance(ref, Version):
        ref = ref.number
    if isinstance(ref, np.integer):
        ref = int(ref)
    if isinstance(ref, bool) or not isinstance(ref, int | str):
        raise errors.InvalidArgument(f"space {h.name!r}: a version is a number or a tag, not {ref!r}")
    column = "number" if isinstance(ref, int) else "tag"
    with translate(h.name, version=ref):
        row = h.conn.execute(
            f"SELECT number FROM embeddinghub.versions"  # noqa: S608 (column is a constant)
            f" WHERE space_id = %s AND {column} = %s",
            (h.id, ref),
        ).fetchone()
    if row is None:
        raise errors.VersionNotFound(h.name, ref)
    return int(row[0])


def source_at(h: SpaceHandle, number: int) -> rows.Source:
    """Version `number`'s rows: live rows unchanged since it, plus history rows valid at it.

    Each branch carries a guard, STABLE with constant arguments: the planner evaluates it
    once per query, and it raises EHVER if the version was pruned since it was resolved.
    """
    n = sql.Literal(number)
    guard = sql.SQL("embeddinghub.check_version({}, {})").format(sql.Literal(h.id), n)
    return rows.Source(
        (
            rows.Branch(h.tables.live, (sql.SQL("version <= {}").format(n), guard)),
            rows.Branch(
                h.tables.history, (sql.SQL("valid_to > {n} AND valid_from <= {n}").format(n=n), guard)
            ),
        ),
        version=number,
    )


# -- snapshot, list, diff, rollback, prune ------------------------------------------------
def snapshot(space: SpaceHandle | SupportsHandle, tag: str | None = None, note: str | None = None) -> Version:
    """Record the working state as a version, in O(1). Allowed on a frozen space."""
    h = handle_of(space)
    if tag is not None:
        check_tag(h.name, tag)
    if note is not None and not isinstance(note, str):
        raise errors.InvalidArgument(f"space {h.name!r}: note must be a string, not {note!r}")
    with translate(h.name), h.conn.transaction(), h.conn.cursor() as cur:
        cur.execute("SELECT embeddinghub.snapshot(%s, %s, %s)", (h.name, tag, note))
        row = cur.fetchone()
        assert row is not None
        return _version_row(cur, h, int(row[0]))


def list_versions(space: SpaceHandle | SupportsHandle) -> list[Version]:
    """Every recorded version, oldest first, with row counts (computed once, then cached)."""
    h = handle_of(space)
    with translate(h.name):
        found = h.conn.execute(
            f"SELECT {_VERSION_COLUMNS} FROM embeddinghub.list_versions(%s)",  # noqa: S608
            (h.name,),
        ).fetchall()
    return [_version(r) for r in found]


def diff(space: SpaceHandle | SupportsHandle, a: VersionRef, b: VersionRef | None = None) -> Diff:
    """Keys added, removed and changed from version `a` to `b` (None: the working state).

    Costs O(keys written since the older of the two), not O(rows).
    """
    h = handle_of(space)
    na = resolve(h, a)
    nb = None if b is None else resolve(h, b)
    with translate(h.name, version=a if nb is None else f"{a} or {b}"):
        found = h.conn.execute(
            "SELECT partition, key, change FROM embeddinghub.diff(%s, %s, %s)", (h.name, na, nb)
        ).fetchall()
    out: dict[str, list[tuple[str, str]]] = {"added": [], "removed": [], "changed": []}
    for part, key, change in found:
        out[change].append((part, key))
    return Diff(**out)


def rollback(space: SpaceHandle | SupportsHandle, ref: VersionRef) -> Version:
    """Make the working state equal to version `ref`, in one transaction, and record it as
    a new version (note 'rollback to N'), which is returned.

    Cost O(changes since N). Partitions dropped since N are re-created through
    `catalog.add_partition`, so partition hooks run. Unsnapshotted work is first recorded as
    its own version (note 'before rollback to N'). Writers wait until it commits; readers
    see the old state until then; on any error nothing changes.
    """
    h = handle_of(space)
    number = resolve(h, ref)
    created: list[str] = []
    try:
        with translate(h.name, version=ref), h.conn.transaction(), h.conn.cursor() as cur:
            if _dropped_partitions(cur, h, number):
                created = _restore_partitions(h, cur, number)
            cur.execute("SELECT embeddinghub.rollback(%s, %s)", (h.name, number))
            row = cur.fetchone()
            assert row is not None
            return _version_row(cur, h, int(row[0]))
    except BaseException:
        h.known_partitions.difference_update(created)  # their creation was undone
        raise


def _restore_partitions(h: SpaceHandle, cur: psycopg.Cursor[Any], number: int) -> list[str]:
    # Creating a partition locks the parent: take that lock before the space lock, in the
    # order writers take them (see sql/versions.sql).
    # Bounded like every owner-side wait (SpaceBusy), so readers do not queue behind it.
    cur.execute("SELECT set_config('lock_timeout', embeddinghub.owner_lock_timeout(), true)")
    cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(h.tables.live))
    cur.execute("SELECT frozen FROM embeddinghub.version_space(%s, exclusive => true)", (h.name,))
    row = cur.fetchone()
    if row and row[0]:
        raise errors.SpaceFrozen(h.name, f"cannot roll back to version {number}")
    created = []
    for name in _dropped_partitions(cur, h, number):
        catalog.add_partition(h, cur, name)
        created.append(name)
    return created


def _dropped_partitions(cur: psycopg.Cursor[Any], h: SpaceHandle, number: int) -> list[str]:
    cur.execute("SELECT embeddinghub.dropped_partitions(%s, %s)", (h.id, number))
    return [r[0] for r in cur.fetchall()]


def prune_versions(space: SpaceHandle | SupportsHandle, keep: int) -> int:
    """Keep the newest `keep` versions; delete older ones and the history rows that no kept
    version needs. Returns the number of history rows freed. Refused on a frozen space."""
    h = handle_of(space)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise errors.InvalidArgument(
            f"space {h.name!r}: keep must be a non-negative integer, not {keep!r}"
        )
    with translate(h.name):
        row = h.conn.execute("SELECT embeddinghub.prune_versions(%s, %s)", (h.name, keep)).fetchone()
    return int(row[0]) if row else 0


# -- time travel --------------------------------------------------------------------------
class AsOf:
    """A read-only view of a space as it was at one version.

    A recorded version never changes, so reads are consistent across calls (an iterator
    pages through the same state however long it runs). Every query re-checks that the
    version still exists, so a view of a version pruned meanwhile raises VersionNotFound
    instead of returning part of it. Writes raise SpaceFrozen.
    """

    def __init__(self, handle: SpaceHandle, version: VersionRef) -> None:
        self.handle = handle
        self.number = resolve(handle, version)
        self.rows = source_at(handle, self.number)

    def __repr__(self) -> str:
        return f"<AsOf {self.handle.name!r} version={self.number}>"

    @property
    def name(self) -> str:
        return self.handle.name

    @property
    def session(self) -> Session:
        return self.handle.session

    @property
    @session_call(read=True)
    def version(self) -> Version:
        with translate(self.name, version=self.number), self.handle.conn.cursor() as cur:
            return _version_row(cur, self.handle, self.number)

    def source(self) -> sql.Composable:
        """This version's rows as a subquery with columns (partition, key, embedding,
        metadata), for composing further queries."""
        return rows.relation(self.rows)

    # -- reads ----------------------------------------------------------------------
    @session_call(read=True)
    def get(self, key: str, partition: str | None = None) -> np.ndarray:
        row: np.ndarray = self.multiget([key], partition=partition)[0]
        return row

    @session_call(read=True)
    def multiget(self, keys: Iterable[str], partition: str | None = None) -> np.ndarray:
        """A (len(keys), dims) float32 matrix of the keys' embeddings at this version."""
        return rows.multiget(self.handle, self.rows, keys, partition)

    @session_call(read=True)
    def get_metadata(self, key: str, partition: str | None = None) -> dict[str, Any] | None:
        return rows.get_metadata(self.handle, self.rows, key, partition)

    @session_call(read=True)
    def __contains__(self, key: object) -> bool:
        return rows.contains(self.handle, self.rows, key)

    @session_call(read=True)
    def count(self, partition: str | None = None) -> int:
        """Rows at this version (in one partition, if given). The whole-space count is the
        version's cached row_count."""
        if partition is None:
            for v in list_versions(self.handle):
                if v.number == self.number and v.row_count is not None:
                    return v.row_count
            raise errors.VersionNotFound(self.name, self.number)
        return rows.count(self.handle, self.rows, partition)

    def __len__(self) -> int:
        return self.count()

    def iterator(
        self, partition: str | None = None, *, with_metadata: bool = False
    ) -> Iterator[tuple[Any, ...]]:
        """Yield `(key, vector)` (or `(key, vector, metadata)`) at this version, in
        (partition, key) order, all partitions unless one is given."""
        return rows.pages(self.handle, self.rows, partition, with_metadata=with_metadata)

    def __iter__(self) -> Iterator[Any]:
        return self.iterator()

    @session_call(read=True)
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
        keys, vectors = search.one_query(self.handle, key, vector)
        return search.search(
            self.handle, self.rows, num, keys, vectors, partition, where, ef_search, key_partition
        )[0]

    @session_call(read=True)
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
        return search.search(
            self.handle, self.rows, num, keys, vectors, partition, where, ef_search, key_partition
        )

    # -- writes: a version is immutable -------------------------------------------------
    def _read_only(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise errors.SpaceFrozen(
            self.name, f"version {self.number} is a read-only view (as_of); write to the space itself"
        )

    set = multiset = delete = multidelete = delete_all = _read_only
    create_partition = drop_partition = _read_only
