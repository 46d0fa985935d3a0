"""The Hub: a connection to an embeddinghub database and its catalog of spaces."""

from __future__ import annotations

import dataclasses
import os
from contextlib import AbstractContextManager
from typing import Any

import psycopg
from psycopg import sql

from . import acl, catalog, errors, failover, log, migrate, views
from .catalog import DTYPES, METRICS
from .compat import Config, LocalConfig, redact_dsn
from .db import apply_session_settings, translate
from .failover import RetryPolicy
from .server import EmbeddedServer
from .session import READS, Session, session_call
from .space import Space

__all__ = ["DTYPES", "HOOKS", "METRICS", "Hub", "connect"]

# What keeps per-space objects in step: row-level security on every new table, BI views.
HOOKS = catalog.Hooks(
    space_created=(acl.secure_space, views.create_view),
    space_dropped=(views.drop_view,),
    partition_created=(acl.secure_partition,),
)


def resolve_dsn(target: str | list[str] | Config | LocalConfig | None = None) -> str:
    """The DSN for `target`: a DSN (one host or several), a list of DSNs of one cluster, a
    Config, a LocalConfig (embedded), or the defaults."""
    if isinstance(target, list | tuple) and target:
        return failover.merge_conninfo(list(target))
    if isinstance(target, Config):
        return target.dsn()
    if isinstance(target, LocalConfig):
        return EmbeddedServer(target.path).start()
    if isinstance(target, str) and target:
        return target
    if target is not None and not isinstance(target, str):
        raise errors.InvalidArgument(
            f"connect() takes a DSN, Config or LocalConfig, not {target!r}"
        )
    env = os.environ.get("EMBEDDINGHUB_DSN")
    return env if env else EmbeddedServer().start()


def connect(
    target: str | list[str] | Config | LocalConfig | None = None,
    *,
    migrate_schema: bool = True,
    pool: int | None = None,
    pool_timeout: float = 30.0,
    retry: RetryPolicy | None = None,
    reads: str = "primary",
    read_your_writes: bool = False,
    keep_queries: int = 0,
    transaction_pooler: bool = False,
) -> Hub:
    """Connect to an embeddinghub database.

    With no argument: `$EMBEDDINGHUB_DSN` if set, else the embedded server under
    `$EMBEDDINGHUB_HOME`. The catalog is upgraded to the newest schema on connect.

    - A multi-host DSN (`host=a,b,c`) or a list of DSNs: writes always go to the primary.
    - `pool=N`: up to N pooled connections (psycopg_pool), so one hub serves many threads;
      a call waits at most `pool_timeout` seconds for a free one.
    - `retry`: how long to keep trying after a lost connection or a failover (default 30 s);
      reads and keyed writes are then run again, other calls raise OperationInterrupted.
    - `reads="replica"` sends searches and reads to standbys ("any": any server), and
      `read_your_writes=True` makes such a read wait (up to 1 s) until the standby has
      replayed this hub's last write, else read on the primary.
    - `keep_queries=N` keeps each space's last N query vectors in memory, so `tune()` can
      measure recall on real queries (see embeddinghub.tuning).
    - `transaction_pooler=True` when PgBouncer (or another pooler) in transaction mode sits
      between: no prepared statements, no reliance on server-session state.

    No call waits more than 10 s for a lock (then SpaceBusy): the sessions' lock_timeout,
    unless the server, database, role or DSN (`options=-c lock_timeout=...`) sets one.
    """
    return Hub(
        resolve_dsn(target), migrate_schema=migrate_schema, pool=pool, pool_timeout=pool_timeout,
        retry=retry, reads=reads, read_your_writes=read_your_writes, keep_queries=keep_queries,
        transaction_pooler=transaction_pooler,
    )


class Hub:
    """A connection to an embeddinghub database."""

    def __init__(
        self,
        dsn: str,
        *,
        migrate_schema: bool = True,
        pool: int | None = None,
        pool_timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        reads: str = "primary",
        read_your_writes: bool = False,
        keep_queries: int = 0,
        transaction_pooler: bool = False,
    ) -> None:
        if isinstance(keep_queries, bool) or not isinstance(keep_queries, int) or keep_queries < 0:
            raise errors.InvalidArgument(f"keep_queries must be a count >= 0, not {keep_queries!r}")
        if reads not in READS:
            raise errors.InvalidArgument(f"reads must be one of {READS}, not {reads!r}")
        retry = retry or RetryPolicy()
        primary = failover.target_conninfo(dsn, "primary", retry.connect_timeout)
        # One server: report at once that it is down. Several: a failover may be under way.
        several = len(failover.host_conninfos(dsn)) > 1
        first = retry if several else dataclasses.replace(retry, attempts=1)
        conn = failover.reconnect(dsn, first, target="primary", configure=apply_session_settings)
        try:
            if migrate_schema:
                with translate():
                    if migrate.upgrade(primary, conn):
                        log.logger.info("migrated %s to schema %s", redact_dsn(dsn), migrate.head_revision())
        except Exception:
            conn.close()
            raise
        if pool is not None:
            conn.close()  # the pool opens its own
        self.session = Session(
            dsn, None if pool is not None else conn, pool_size=pool, pool_timeout=pool_timeout,
            keep_queries=keep_queries, retry=retry, reads=reads, read_your_writes=read_your_writes,
            transaction_pooler=transaction_pooler,
        )
        log.logger.info(
            "connected to %s (pool=%s, reads=%s)", redact_dsn(dsn), pool or "none", reads
        )

    @classmethod
    def over(cls, session: Session) -> Hub:
        """A Hub on a session made elsewhere (the async API's), migrations already run."""
        hub = cls.__new__(cls)
        hub.session = session
        return hub

    @property
    def name(self) -> str:
        """The database, as errors of hub-level calls name it (no password)."""
        return redact_dsn(self.dsn)

    @property
    def dsn(self) -> str:
        return self.session.dsn

    @property
    def conn(self) -> psycopg.Connection[Any]:
        """The hub's connection (a pooled hub has one only inside `connection()`)."""
        return self.session.conn

    def connection(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        """`with hub.connection() as conn:` a connection of the hub for your own SQL."""
        return self.session.lease()

    # -- lifecycle ------------------------------------------------------------------
    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Hub {self.name}>"

    # -- spaces ---------------------------------------------------------------------
    @session_call(repeatable=False)
    def create_space(
        self,
        name: str,
        dims: int,
        metric: str = "l2",
        dtype: str = "float32",
        *,
        description: str | None = None,
        m: int = 16,
        ef_construction: int = 64,
        ef_search: int = 40,
        auto_partition: bool = False,
        index: str = "hnsw",
    ) -> Space:
        """Create a space of `dims`-dimensional vectors, compared with `metric`. `index` is
        the kind of its HNSW index (see Space.create_index)."""
        settings = catalog.SpaceSettings(
            name, dims, metric, dtype, description, m, ef_construction, ef_search, auto_partition, index
        )
        return Space(self, catalog.create_space(self.session, HOOKS, settings))

    @session_call(read=True)
    def get_space(self, name: str) -> Space:
        return Space(self, catalog.load(self.session, HOOKS, name))

    @session_call(read=True)
    def list_spaces(self) -> list[dict[str, Any]]:
        """Every space this role can see, with its settings."""
        return catalog.list_spaces(self.session)

    @session_call(read=True)
    def has_space(self, name: str) -> bool:
        return catalog.has_space(self.session, name)

    @session_call(repeatable=False)
    def delete_space(self, name: str) -> None:
        """Drop a space, its rows, history, partitions and grants."""
        catalog.delete_space(self.session, HOOKS, name)

    @session_call(repeatable=True)
    def freeze_space(self, name: str) -> None:
        """Make a space immutable. Enforced by the row trigger, so raw SQL is refused too."""
        self.get_space(name).freeze()

    @session_call(repeatable=True)
    def unfreeze_space(self, name: str) -> None:
        """Make a frozen space writable again."""
        self.get_space(name).unfreeze()

    @session_call(repeatable=False)
    def rename_space(self, old: str, new: str) -> Space:
        """Rename a space (its rows, versions, grants and BI view go with it); returns it.
        Space objects still holding the old name should be fetched again."""
        catalog.rename_space(self.session, old, new)
        return self.get_space(new)

    # -- roles ------------------------------------------------------------------------
    @session_call(repeatable=False)
    def create_role(self, name: str, login: bool = False, password: str | None = None) -> None:
        """Create a Postgres role to grant spaces to."""
        acl.create_role(self, name, login, password)

    @session_call(repeatable=False)
    def drop_role(self, name: str) -> None:
        acl.drop_role(self, name)

    @session_call(repeatable=False)
    def execute(self, query: sql.Composable | str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run SQL on the hub's connection and return its rows (a convenience for scripts)."""
        self.session.ef_search = None  # the SQL may change session settings searches rely on
        with translate():
            cur = self.conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []
