"""The catalog: spaces and partitions, their settings, and the handle feature modules work on.

Every statement on `embeddinghub.spaces` and `embeddinghub.partitions` is here, with the
validation of space and index settings. A `SpaceHandle` is what the rest of the package
passes around: the session, the space's settings and table names; data, no behaviour.
`Hooks` lets other modules keep per-space objects (row-level security, BI views) in step;
the Hub passes them in explicitly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from . import errors, log, storage
from .db import translate, validate_name
from .session import Session

__all__ = [
    "DEFAULT_PARTITION",
    "DTYPES",
    "INDEX_STATES",
    "METRICS",
    "Hooks",
    "SpaceHandle",
    "SpaceSettings",
    "SupportsHandle",
    "add_partition",
    "check_ef_search",
    "check_index_params",
    "check_target_recall",
    "create_index",
    "create_partition",
    "create_space",
    "delete_space",
    "drop_index",
    "drop_partition",
    "ensure_index",
    "index_state",
    "ensure_partitions",
    "freeze",
    "handle_of",
    "has_space",
    "info",
    "list_partitions",
    "list_spaces",
    "lock_for_write",
    "load",
    "may_rebuild_index",
    "partition_name",
    "rebuild_index",
    "refuse_if_frozen",
    "rename_space",
    "release_load_lock",
    "retrying",
    "set_ef_search",
    "set_target_recall",
    "space_row",
    "take_load_lock",
    "unfreeze",
]

DEFAULT_PARTITION = "default"  # where writes without partition= go; it cannot be dropped
METRICS = ("l2", "cosine", "ip")
DTYPES = ("float32", "float16")
EF_SEARCH_MAX = 1000  # pgvector's limit for hnsw.ef_search

T = TypeVar("T")
IDLE = TransactionStatus.IDLE

SpaceHook = Callable[["psycopg.Cursor[Any]", storage.SpaceTables, str], None]
PartitionHook = Callable[["psycopg.Cursor[Any]", storage.SpaceTables, int, str], None]


@dataclass(frozen=True)
class Hooks:
    """Callbacks run inside the transaction that creates or drops a space or partition."""

    space_created: tuple[SpaceHook, ...] = ()
    space_dropped: tuple[SpaceHook, ...] = ()
    partition_created: tuple[PartitionHook, ...] = ()


@dataclass
class SpaceHandle:
    """One space as the package's modules see it. `known_partitions` caches the partitions
    this handle has seen exist, so writes to them skip the catalog look-up."""

    session: Session
    hooks: Hooks
    id: int
    name: str
    dims: int
    metric: str
    dtype: str
    m: int
    ef_construction: int
    ef_search: int
    auto_partition: bool
    description: str | None
    target_recall: float | None
    tables: storage.SpaceTables
    known_partitions: set[str] = field(default_factory=set)

    @property
    def conn(self) -> psycopg.Connection[Any]:
        return self.session.conn


class SupportsHandle(Protocol):
    """A public object over a space (Space): module functions accept it or a handle."""

    @property
    def handle(self) -> SpaceHandle: ...


def handle_of(space: SpaceHandle | SupportsHandle) -> SpaceHandle:
    return space if isinstance(space, SpaceHandle) else space.handle


# -- settings ---------------------------------------------------------------------------------
def check_space_settings(name: str, dims: object, metric: object, dtype: object) -> None:
    validate_name("space", name)
    if metric not in METRICS:
        raise errors.InvalidArgument(f"space {name!r}: metric must be one of {METRICS}, not {metric!r}")
    if dtype not in DTYPES:
        raise errors.InvalidArgument(f"space {name!r}: dtype must be one of {DTYPES}, not {dtype!r}")
    limit = storage.MAX_INDEXED_DIMS[str(dtype)]
    if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= limit:
        raise errors.InvalidArgument(
            f"space {name!r}: dims must be an integer from 1 to {limit} for {dtype}, not {dims!r}"
        )


def check_ef_search(space: str, ef_search: object) -> int:
    """`ef_search` if pgvector accepts it (1..1000), else InvalidArgument naming the space."""
    if isinstance(ef_search, bool) or not isinstance(ef_search, int) or not 1 <= ef_search <= EF_SEARCH_MAX:
        raise errors.InvalidArgument(
            f"space {space!r}: ef_search must be from 1 to {EF_SEARCH_MAX}, not {ef_search!r}"
        )
    return ef_search


def check_index_kind(space: str, kind: object, dtype: str) -> str:
    if kind not in storage.INDEX_KINDS:
        raise errors.InvalidArgument(
            f"space {space!r}: index must be one of {storage.INDEX_KINDS}, not {kind!r}"
        )
    if kind == "hnsw_halfvec" and dtype == "float16":
        raise errors.InvalidArgument(
            f"space {space!r}: a float16 space is stored as halfvec already; use index='hnsw'"
        )
    return str(kind)


def check_target_recall(space: str, target: object) -> float:
    if isinstance(target, bool) or not isinstance(target, int | float) or not 0 < target <= 1:
        raise errors.InvalidArgument(f"space {space!r}: target_recall must be in (0, 1], not {target!r}")
    return float(target)


def check_index_params(space: str, m: object, ef_construction: object) -> None:
    if isinstance(m, bool) or not (isinstance(m, int) and 2 <= m <= 100):
        raise errors.InvalidArgument(f"space {space!r}: m must be from 2 to 100, not {m!r}")
    if isinstance(ef_construction, bool) or not (
        isinstance(ef_construction, int) and 4 <= ef_construction <= 1000 and ef_construction >= 2 * m
    ):
        raise errors.InvalidArgument(
            f"space {space!r}: ef_construction must be from 4 to 1000 and at least 2*m,"
            f" not {ef_construction!r}"
        )


def partition_name(partition: str | None) -> str:
    """The partition a call means: the default one when None, else a checked name."""
    if partition is None:
        return DEFAULT_PARTITION
    return validate_name("partition", partition)


# -- spaces -----------------------------------------------------------------------------------
def space_row(session: Session, name: str) -> dict[str, Any]:
    if not isinstance(name, str):
        raise errors.InvalidArgument(f"space name must be a string, not {name!r}")
    with translate(name), session.conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM embeddinghub.spaces WHERE name = %s", (name,))
        row = cur.fetchone()
    if row is None:
        raise errors.SpaceNotFound(name)
    return row


def load(session: Session, hooks: Hooks, name: str) -> SpaceHandle:
    """A handle on the space `name`, read from the catalog; SpaceNotFound if there is none."""
    row = space_row(session, name)
    return SpaceHandle(
        session=session,
        hooks=hooks,
        id=row["id"],
        name=row["name"],
        dims=row["dims"],
        metric=row["metric"],
        dtype=row["dtype"],
        m=row["hnsw_m"],
        ef_construction=row["hnsw_ef_construction"],
        ef_search=row["ef_search"],
        auto_partition=row["auto_partition"],
        description=row["description"],
        target_recall=row.get("target_recall"),
        tables=storage.SpaceTables(
            row["id"], row["dims"], row["metric"], row["dtype"], row.get("index_kind") or "hnsw"
        ),
    )


@dataclass(frozen=True)
class SpaceSettings:
    """What `create_space` records for a new space (checked before anything is written)."""

    name: str
    dims: int
    metric: str = "l2"
    dtype: str = "float32"
    description: str | None = None
    m: int = 16
    ef_construction: int = 64
    ef_search: int = 40
    auto_partition: bool = False
    index: str = "hnsw"

    def check(self) -> None:
        check_space_settings(self.name, self.dims, self.metric, self.dtype)
        check_index_params(self.name, self.m, self.ef_construction)
        check_ef_search(self.name, self.ef_search)
        check_index_kind(self.name, self.index, self.dtype)


def create_space(session: Session, hooks: Hooks, settings: SpaceSettings) -> SpaceHandle:
    """Record the space, create its tables, index and default partition, run the hooks."""
    settings.check()
    s = settings
    with translate(s.name), session.conn.transaction(), session.conn.cursor() as cur:
        try:
            cur.execute(
                "INSERT INTO embeddinghub.spaces (name, dims, metric, dtype, description,"
                " hnsw_m, hnsw_ef_construction, ef_search, auto_partition, index_kind)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (s.name, s.dims, s.metric, s.dtype, s.description, s.m, s.ef_construction,
                 s.ef_search, s.auto_partition, s.index),
            )
        except psycopg.errors.UniqueViolation:
            raise errors.SpaceExists(s.name) from None
        row = cur.fetchone()
        assert row is not None
        tables = storage.SpaceTables(row[0], s.dims, s.metric, s.dtype, s.index)
        storage.create_space_tables(cur, tables)
        storage.create_index(cur, tables, s.m, s.ef_construction)
        _insert_partition(cur, hooks, tables, DEFAULT_PARTITION)
        for hook in hooks.space_created:
            hook(cur, tables, s.name)
    return load(session, hooks, s.name)


def list_spaces(session: Session) -> list[dict[str, Any]]:
    """Every space this role can see, with its settings."""
    with translate(), session.conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT name, dims, metric, dtype, frozen, head_version, description, created_at"
            " FROM embeddinghub.spaces ORDER BY name"
        )
        return cur.fetchall()


def has_space(session: Session, name: str) -> bool:
    with translate(name):
        row = session.conn.execute(
            "SELECT 1 FROM embeddinghub.spaces WHERE name = %s", (name,)
        ).fetchone()
    return row is not None


def delete_space(session: Session, hooks: Hooks, name: str) -> None:
    """Drop a space, its rows, history, partitions and grants."""
    h = load(session, hooks, name)
    with translate(name), session.conn.transaction(), session.conn.cursor() as cur:
        # Lock the tables before anything else, in the order writers lock them (live, then
        # history): running calls finish first, later ones then find the space gone.
        cur.execute(
            sql.SQL("LOCK TABLE {}, {} IN ACCESS EXCLUSIVE MODE").format(h.tables.live, h.tables.history)
        )
        cur.execute("DELETE FROM embeddinghub.spaces WHERE id = %s", (h.id,))
        if cur.rowcount == 0:  # another session dropped it while this one waited
            raise errors.SpaceNotFound(name)
        for hook in hooks.space_dropped:
            hook(cur, h.tables, name)
        storage.drop_space_tables(cur, h.tables)


def info(h: SpaceHandle) -> dict[str, Any]:
    """Settings and live statistics of the space."""
    row = space_row(h.session, h.name)
    with translate(h.name):
        size = h.conn.execute(
            sql.SQL("SELECT count(*), max(updated_at) FROM {}").format(h.tables.live)
        ).fetchone()
    assert size is not None
    return {
        "name": row["name"],
        "dims": row["dims"],
        "metric": row["metric"],
        "dtype": row["dtype"],
        "rows": size[0],
        "last_write": size[1],
        "frozen": row["frozen"],
        "head_version": row["head_version"],
        "m": row["hnsw_m"],
        "ef_construction": row["hnsw_ef_construction"],
        "ef_search": row["ef_search"],
        "index_state": index_state(h),
        "auto_partition": row["auto_partition"],
        "index": row.get("index_kind") or "hnsw",
        "description": row["description"],
        "target_recall": row.get("target_recall"),
        "created_at": row["created_at"],
        "partitions": [p["name"] for p in list_partitions(h)],
    }


def freeze(h: SpaceHandle) -> None:
    """Make the space immutable; the database refuses every later write, raw SQL too."""
    with translate(h.name):  # waits for running writers (sql/versions.sql)
        h.conn.execute("SELECT embeddinghub.freeze(%s)", (h.name,))


def unfreeze(h: SpaceHandle) -> None:
    """Make a frozen space writable again (sql/unfreeze.sql); a no-op on a writable one."""
    with translate(h.name):
        h.conn.execute("SELECT embeddinghub.unfreeze(%s)", (h.name,))


def rename_space(session: Session, old: str, new: str) -> None:
    """Rename a space; its tables keep their id-based names, its BI view follows (a
    trigger in sql/views.sql). SpaceNotFound for `old`, SpaceExists for `new`."""
    validate_name("space", new)
    space_row(session, old)
    with translate(old), session.conn.transaction(), session.conn.cursor() as cur:
        try:
            cur.execute("UPDATE embeddinghub.spaces SET name = %s WHERE name = %s", (new, old))
        except psycopg.errors.UniqueViolation:
            raise errors.SpaceExists(new) from None
        if cur.rowcount == 0:  # dropped or renamed by another session meanwhile
            raise errors.SpaceNotFound(old)


# -- partitions -------------------------------------------------------------------------------
def ensure_partitions(
    h: SpaceHandle, cur: psycopg.Cursor[Any], names: Iterable[str], create: bool = True
) -> None:
    """Check (or, with auto_partition and `create`, create) the partitions a call goes to."""
    wanted = set(names) - h.known_partitions
    if not wanted:
        return
    cur.execute(
        "SELECT name FROM embeddinghub.partitions WHERE space_id = %s AND name = ANY(%s)",
        (h.id, list(wanted)),
    )
    found = {r[0] for r in cur.fetchall()}
    h.known_partitions |= found
    for name in sorted(wanted - found):
        if not (create and h.auto_partition):
            raise errors.PartitionNotFound(h.name, name)
        add_partition(h, cur, name)


def lock_for_write(h: SpaceHandle, cur: psycopg.Cursor[Any]) -> None:
    """The writers' side of the space lock, as the transaction's first statement.

    The row trigger takes it too, but only once the write statement runs, and a READ
    COMMITTED statement sees the rows committed when it started: a delete that waited there
    for a rollback would miss the rows the rollback put back, and leave them in place.
    Taken first, the write statements start after any rollback or snapshot committed. A
    no-op DELETE takes it: its statement trigger locks the space's catalog row for writers
    (sql/triggers.sql), with nothing more than the privileges a writer has anyway.
    """
    cur.execute(sql.SQL("DELETE FROM {} WHERE false").format(h.tables.live))


def refuse_if_frozen(h: SpaceHandle, cur: psycopg.Cursor[Any]) -> None:
    """Partition DDL is no row write, so the row trigger cannot refuse it: check here,
    holding the writers' lock so a concurrent freeze() waits for this transaction."""
    cur.execute("SELECT embeddinghub.lock_space_for_write(%s)", (h.id,))
    row = cur.fetchone()
    if row and row[0]:
        raise errors.SpaceFrozen(h.name, "it is frozen: partitions cannot change")


def _insert_partition(
    cur: psycopg.Cursor[Any], hooks: Hooks, tables: storage.SpaceTables, name: str
) -> int | None:
    """The new partition's id, or None if it exists (a concurrent creator committed it
    first: ON CONFLICT waits for that transaction instead of failing on the unique key)."""
    cur.execute(
        "INSERT INTO embeddinghub.partitions (space_id, name) VALUES (%s, %s)"
        " ON CONFLICT DO NOTHING RETURNING id",
        (tables.space_id, name),
    )
    row = cur.fetchone()
    if row is None:
        return None
    storage.create_partition_table(cur, tables, row[0], name)
    for hook in hooks.partition_created:
        hook(cur, tables, row[0], name)
    return int(row[0])


def add_partition(h: SpaceHandle, cur: psycopg.Cursor[Any], name: str) -> bool:
    """Create partition `name` inside the caller's transaction (its table, index, hooks);
    False if it already exists (then it is there all the same)."""
    created = _insert_partition(cur, h.hooks, h.tables, name) is not None
    h.known_partitions.add(name)
    return created


def create_partition(h: SpaceHandle, name: str) -> None:
    """A new list partition with its own HNSW index; PartitionExists if there is one."""
    validate_name("partition", name)
    with translate(h.name), h.conn.transaction(), h.conn.cursor() as cur:
        refuse_if_frozen(h, cur)
        if not add_partition(h, cur, name):
            raise errors.PartitionExists(h.name, name)


def list_partitions(h: SpaceHandle) -> list[dict[str, Any]]:
    """Partitions with their row counts."""
    with translate(h.name), h.conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT p.name, coalesce(c.rows, 0), p.created_at"
                " FROM embeddinghub.partitions p"
                " LEFT JOIN (SELECT partition, count(*) AS rows FROM {} GROUP BY partition) c"
                "   ON c.partition = p.name"
                " WHERE p.space_id = %s ORDER BY p.name"
            ).format(h.tables.live),
            (h.id,),
        )
        return [{"name": n, "rows": int(r), "created_at": c} for n, r, c in cur.fetchall()]


def drop_partition(h: SpaceHandle, name: str) -> None:
    """Drop a partition, its rows and its index. Its rows stay readable in old versions."""
    validate_name("partition", name)
    if name == DEFAULT_PARTITION:  # writes without partition= need it
        raise errors.InvalidArgument(
            f"space {h.name!r}: the default partition cannot be dropped;"
            " use delete_all(partition='default') to empty it"
        )
    retrying(h, lambda: _drop_partition(h, name))


def _drop_partition(h: SpaceHandle, name: str) -> None:
    with translate(h.name), h.conn.transaction(), h.conn.cursor() as cur:
        # DROP TABLE of a partition locks its parent exclusively: take that lock first (as
        # writers do, before the space lock), so running writers finish before the rows are
        # deleted (no lock upgrade) and later ones find the partition gone.
        cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(h.tables.live))
        refuse_if_frozen(h, cur)
        cur.execute(
            "DELETE FROM embeddinghub.partitions WHERE space_id = %s AND name = %s RETURNING id",
            (h.id, name),
        )
        row = cur.fetchone()
        if row is None:
            raise errors.PartitionNotFound(h.name, name)
        # Delete through the row trigger first, so snapshots keep the rows in history.
        cur.execute(sql.SQL("DELETE FROM {} WHERE partition = %s").format(h.tables.live), (name,))
        cur.execute(sql.SQL("DROP TABLE {}").format(h.tables.partition(row[0])))
    h.known_partitions.discard(name)


# -- races ------------------------------------------------------------------------------------
CONFLICT_ATTEMPTS = 3


def retrying(h: SpaceHandle, call: Callable[[], T]) -> T:
    """Run `call` (one whole transaction), again if the server rolled it back for a deadlock
    or serialization failure. Inside a caller's transaction nothing can be retried: the
    Conflict goes to the caller. Each retry forgets the partitions cached on the handle, so
    one dropped meanwhile is reported as PartitionNotFound."""
    attempts = CONFLICT_ATTEMPTS if h.conn.info.transaction_status == IDLE else 1
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except errors.Conflict:
            if attempt == attempts:
                raise
            h.known_partitions.clear()
    raise AssertionError("unreachable")


# -- index ------------------------------------------------------------------------------------
def may_rebuild_index(h: SpaceHandle, cur: psycopg.Cursor[Any]) -> bool:
    """True if this session may drop and rebuild the space's index before a bulk load: it
    owns the table and the space is empty (under row-level security another role sees only
    its own rows, so "empty" would be wrong for it anyway)."""
    cur.execute(
        sql.SQL(
            "SELECT pg_has_role(c.relowner, 'USAGE') AND NOT EXISTS (SELECT 1 FROM {})"
            " FROM pg_class c WHERE c.oid = %s::regclass"
        ).format(h.tables.live),
        (h.tables.live.as_string(cur),),
    )
    row = cur.fetchone()
    return bool(row and row[0])


def begin_bulk_load(h: SpaceHandle, cur: psycopg.Cursor[Any]) -> int | None:
    """The row trigger's bookkeeping, done once for a bulk load into an empty space this
    session owns (its index dropped, the writers' lock taken): refuse a frozen space and
    return the working version to stamp on every row; the row trigger is then off until
    end_bulk_load, in this transaction only (a rollback turns it on again). Equivalent to the
    trigger's work row by row: an empty space has no row images to keep. None, and the
    trigger left on, if another writer's rows landed since the space was seen empty.
    end_bulk_load undoes what this changes (a rollback does too).
    FOR SHARE, as the trigger reads it under repeatable read (a stale head is an error)."""
    # No other writer can join the load from here (dropping an index took this lock, or
    # more, already; a space whose index is missing is locked here).
    cur.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(h.tables.live))
    cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(h.tables.live))
    if (row := cur.fetchone()) and row[0]:
        return None
    cur.execute("SELECT head_version, frozen FROM embeddinghub.spaces WHERE id = %s FOR SHARE", (h.id,))
    row = cur.fetchone()
    if row is None:
        raise errors.SpaceNotFound(h.name)
    if row[1]:
        raise errors.SpaceFrozen(h.name, "it is frozen: writes are refused")
    cur.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER row_write").format(h.tables.live))
    # COPY refuses a table whose row-level security applies to the writer, and it is
    # FORCEd on the owner too (acl.sql): lifted for this transaction, which holds the
    # table exclusively (the index was dropped); the owner's own policy admits every row.
    cur.execute(sql.SQL("ALTER TABLE {} NO FORCE ROW LEVEL SECURITY").format(h.tables.live))
    return int(row[0])


def end_bulk_load(h: SpaceHandle, cur: psycopg.Cursor[Any]) -> None:
    cur.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER row_write").format(h.tables.live))
    cur.execute(sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(h.tables.live))


INDEX_STATES = ("present", "missing", "invalid", "building")
LOAD_LOCK = 1701343745  # advisory lock class held by a load that rebuilds the index later


def index_state(h: SpaceHandle) -> str:
    """`present`, `missing` (dropped by a load that never finished: searches scan the whole
    table), `invalid` (some partition lacks its index), or `building` (a load running in
    another session dropped it and will build it when it ends)."""
    with translate(h.name):
        row = h.conn.execute(
            "SELECT (SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(%s)),"
            " EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = %s::oid"
            "   AND objid = %s::oid AND objsubid = 2 AND granted AND pid <> pg_backend_pid())",
            (h.tables.qualified_index.as_string(h.conn), LOAD_LOCK, h.id),
        ).fetchone()
    assert row is not None
    valid, loading = row
    if valid is None:
        return "building" if loading else "missing"
    return "present" if valid else "invalid"


def take_load_lock(h: SpaceHandle) -> bool:
    """Try to become the session that owns the space's index during a load (held until
    `release_load_lock` or the session ends, a killed one included)."""
    with translate(h.name):
        row = h.conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOAD_LOCK, h.id)).fetchone()
    return bool(row and row[0])


def release_load_lock(h: SpaceHandle) -> None:
    with translate(h.name):
        h.conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOAD_LOCK, h.id))


def ensure_index(h: SpaceHandle) -> bool:
    """Build the index if it is missing or invalid (an interrupted load); True if built."""
    if index_state(h) not in ("missing", "invalid"):
        return False
    create_index(h, h.m, h.ef_construction)
    return True


def rebuild_index(h: SpaceHandle, cur: psycopg.Cursor[Any]) -> None:
    """Build the HNSW and metadata indexes with the space's settings, then ANALYZE."""
    cur.execute("SET LOCAL maintenance_work_mem = '1GB'")
    with log.timed(f"building the indexes of space {h.name!r} (m={h.m}, ef_c={h.ef_construction})"):
        storage.create_index(cur, h.tables, h.m, h.ef_construction)
    cur.execute(sql.SQL("ANALYZE {}").format(h.tables.live))


def drop_index(h: SpaceHandle, cur: psycopg.Cursor[Any]) -> None:
    storage.drop_index(cur, h.tables)


def create_index(
    h: SpaceHandle, m: int = 16, ef_construction: int = 64, index: str | None = None
) -> None:
    """Rebuild the HNSW index (every partition's) with new parameters, and kind if given."""
    check_index_params(h.name, m, ef_construction)
    kind = h.tables.index_kind if index is None else check_index_kind(h.name, index, h.dtype)
    tables = dataclasses.replace(h.tables, index_kind=kind)
    with translate(h.name), h.conn.transaction(), h.conn.cursor() as cur:
        cur.execute("SET LOCAL maintenance_work_mem = '1GB'")
        storage.drop_index(cur, h.tables)
        with log.timed(f"rebuilding the {kind} index of space {h.name!r} (m={m}, ef_c={ef_construction})"):
            storage.create_index(cur, tables, m, ef_construction)
        cur.execute(
            "UPDATE embeddinghub.spaces SET hnsw_m = %s, hnsw_ef_construction = %s, index_kind = %s"
            " WHERE id = %s",
            (m, ef_construction, kind, h.id),
        )
    h.m, h.ef_construction, h.tables = m, ef_construction, tables


def set_ef_search(h: SpaceHandle, ef_search: int) -> None:
    """The space's default `ef_search` for every search that does not pass one."""
    check_ef_search(h.name, ef_search)
    with translate(h.name):
        h.conn.execute("UPDATE embeddinghub.spaces SET ef_search = %s WHERE id = %s", (ef_search, h.id))
    h.ef_search = ef_search


def set_target_recall(h: SpaceHandle, target: float | None) -> None:
    """The recall@k the space promises: `tune()` without a target aims at it (None: unset)."""
    value = None if target is None else check_target_recall(h.name, target)
    with translate(h.name):
        h.conn.execute("UPDATE embeddinghub.spaces SET target_recall = %s WHERE id = %s", (value, h.id))
    h.target_recall = value
