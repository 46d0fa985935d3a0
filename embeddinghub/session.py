"""The hub's way to its database: connections or pools, leases, failover, and replica reads.

Feature code reads `session.conn` at call time and never keeps a connection. Every public
call of the Hub and Space runs inside `session.call(...)`, which

- leases a connection for the whole call (pooled hubs: from the pool, so threads share a
  hub safely; a plain hub: its one connection); with `reads="replica"` (or `"any"`) a read
  gets a connection to a standby, everything else one to the primary;
- when the connection is lost or the server stopped being the primary (a restart, a
  failover), gets a new one with back-off (`failover.RetryPolicy`) and runs the call again
  if it is safe to repeat (reads, keyed upserts and deletes); a call that is not raises
  `OperationInterrupted`, which says it may have committed and how to check;
- with `read_your_writes`, remembers the WAL position of the hub's last write, and a read
  on a standby first waits (bounded) until the standby has replayed it, else reads on the
  primary.
"""

from __future__ import annotations

import functools
import os
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from . import errors, failover, log
from .compat import redact_dsn
from .db import configure
from .failover import RetryPolicy, Target

__all__ = ["PGVECTOR_EF_SEARCH", "READS", "Session", "session_call"]

PGVECTOR_EF_SEARCH = "40"  # pgvector's default hnsw.ef_search
READS = ("primary", "replica", "any")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
Conn = psycopg.Connection[Any]


class _Link:
    """Connections to one target (the primary, or the standbys): one connection, or a pool."""

    def __init__(
        self, conninfo: str, target: Target, retry: RetryPolicy, pool_size: int | None, timeout: float,
        conn: Conn | None = None, stateless: bool = False,
    ) -> None:
        self.conninfo, self.target, self.retry, self.timeout = conninfo, target, retry, timeout
        self.setup = functools.partial(_setup, stateless=stateless)
        self.pool: ConnectionPool[Conn] | None = None
        self.single = conn
        if pool_size is not None:
            self.pool = _open_pool(failover.target_conninfo(conninfo, target), pool_size, timeout, self.setup)
        elif conn is None:
            self.single = self.connect()
        else:  # the hub's first connection, opened before the migrations made `vector`
            _register(conninfo, conn, self.setup)

    def connect(self) -> Conn:
        return failover.reconnect(self.conninfo, self.retry, target=self.target, configure=self.setup)

    def own_connection(self) -> Conn | None:
        """The link's one connection (opened again if it was closed), or None for a pool."""
        return None if self.pool is not None else self._single()

    def _single(self) -> Conn:
        if self.single is None or self.single.closed:
            self.single = self.connect()
        return self.single

    @contextmanager
    def lease(self) -> Iterator[Conn]:
        if self.pool is None:
            yield self._single()
            return
        try:
            with self.pool.connection(timeout=self.timeout) as conn:
                yield conn
        except PoolTimeout as exc:
            raise errors.ConnectionFailed(
                f"no pooled connection to {redact_dsn(self.conninfo)} came free within"
                f" {self.timeout:g} s: raise pool= or pool_timeout=, or make calls shorter"
            ) from exc

    def restore(self, deadline: float) -> None:
        """A working connection again, trying with back-off until `deadline` (monotonic)."""

        def attempt() -> None:
            if self.pool is None:
                self.single = self.connect()
            else:  # the pool drops broken connections itself; wait for a good one
                with self.pool.connection(timeout=max(0.1, deadline - time.monotonic())) as conn:
                    conn.execute("SELECT 1")

        failover.keep_trying(attempt, self.retry, deadline, self.conninfo)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        if self.single is not None:
            self.single.close()


class Session:
    """One hub's links to its database, and what it knows about each connection's session."""

    def __init__(
        self,
        dsn: str | Sequence[str],
        conn: Conn | None = None,
        *,
        pool_size: int | None = None,
        pool_timeout: float = 30.0,
        keep_queries: int = 0,
        retry: RetryPolicy | None = None,
        reads: str = "primary",
        read_your_writes: bool = False,
        read_wait: float = 1.0,
        links: tuple[Any, Any] | None = None,
        transaction_pooler: bool = False,
    ) -> None:
        """`links`: (primary, reader or None) made elsewhere (the async API's pools).
        `transaction_pooler`: a pooler such as PgBouncer in transaction mode sits between, so
        no prepared statements, and nothing known about a server session carries over."""
        if reads not in READS:
            raise errors.InvalidArgument(f"reads must be one of {READS}, not {reads!r}")
        self.dsn = failover.merge_conninfo(dsn)
        self.retry = retry or RetryPolicy()
        self.primary: Any
        self.reader: Any
        if links is not None:
            self.primary, self.reader = links
        else:
            self.primary = _Link(
                self.dsn, "primary", self.retry, pool_size, pool_timeout, conn, transaction_pooler
            )
            self.reader = None
            if reads != "primary":
                self.reader = _Link(
                    self.dsn, reads, self.retry, pool_size, pool_timeout, None, transaction_pooler  # type: ignore[arg-type]
                )
        self.stateless = transaction_pooler
        self.read_your_writes, self.read_wait = read_your_writes, read_wait
        self.last_write_lsn: str | None = None
        self._leased: ContextVar[Conn | None] = ContextVar("leased", default=None)
        # Opt-in: the last `keep_queries` query vectors of each space (by id), for tune().
        self.keep_queries = keep_queries
        self.recent_queries: dict[int, deque[Any]] = {}
        # Each connection's own hnsw.ef_search, so searches at that value send no SET.
        self._ef_search: weakref.WeakKeyDictionary[Conn, str] = weakref.WeakKeyDictionary()

    @property
    def pool(self) -> Any:
        return self.primary.pool

    # -- connections --------------------------------------------------------------------
    @property
    def conn(self) -> Conn:
        """The connection of the running call: the leased one, else the hub's single one."""
        leased = self._leased.get()
        if leased is not None:
            return leased
        if getattr(self.primary, "single", None) is None:
            raise errors.InvalidArgument(
                "a pooled hub has no connection of its own outside a call:"
                " use `with hub.connection() as conn:` for your own SQL"
            )
        return self.primary.single  # type: ignore[no-any-return]

    @contextmanager
    def lease(self, read: bool = False) -> Iterator[Conn]:
        """The connection for a call, held until it ends (nested leases share it)."""
        current = self._leased.get()
        if current is not None:
            yield current
            return
        with self._read_lease() if read and self.reader is not None else self.primary.lease() as conn:
            token = self._leased.set(conn)
            try:
                yield conn
            finally:
                self._leased.reset(token)

    @contextmanager
    def _read_lease(self) -> Iterator[Conn]:
        assert self.reader is not None
        with self.reader.lease() as conn:
            lsn = self.last_write_lsn if self.read_your_writes else None
            if lsn is None or failover.wait_for_lsn(conn, lsn, self.read_wait):
                yield conn
                return
        with self.primary.lease() as conn:  # the standby lags: read your write on the primary
            yield conn

    def fan_out_limit(self) -> int:
        """How many connections one call may use at once: a sync pool's size, at most the
        machine's CPUs (the async API and plain hubs: 1)."""
        pool = self.primary.pool
        if not isinstance(pool, ConnectionPool) or self.reader is not None:
            return 1
        return min(pool.max_size, os.cpu_count() or 1)

    @contextmanager
    def spare_lease(self) -> Iterator[Conn | None]:
        """Another free pooled connection for part of the running call, or None at once when
        none is free (never waits: the caller can do the work itself)."""
        pool = self.primary.pool
        if not isinstance(pool, ConnectionPool):
            yield None
            return
        try:
            conn = pool.getconn(timeout=0.05)  # a connection the pool is opening may do
        except PoolTimeout:
            yield None
            return
        token = self._leased.set(conn)
        try:
            yield conn
        finally:
            self._leased.reset(token)
            pool.putconn(conn)

    def call(
        self, fn: Callable[[], T], *, repeatable: bool, what: str | Callable[[], str], read: bool = False
    ) -> T:
        """Run `fn` on a leased connection; after a lost connection (or a demoted primary),
        get a new one and run it again if it is `repeatable`, else raise OperationInterrupted.
        `what` names the call in messages (or makes its name: most calls never need it)."""
        if self._leased.get() is not None:  # a call inside a call: the outer one retries
            return fn()
        started = time.monotonic()
        deadline = started + self.retry.deadline
        try:
            return self._run(fn, repeatable, what, read, deadline)
        finally:
            took = time.monotonic() - started
            if took > log.SLOW_SECONDS:
                log.logger.info("slow call: %s took %.3f s", _name(what), took)

    def _run(
        self, fn: Callable[[], T], repeatable: bool, what: str | Callable[[], str], read: bool,
        deadline: float,
    ) -> T:
        while True:
            try:
                return self._attempt(fn, read)
            except _Lost as lost:
                log.logger.warning("%s lost its connection (%s): reconnecting", _name(what), lost.cause)
                link = self.reader if read and self.reader is not None else self.primary
                link.restore(deadline)
                if not repeatable:
                    raise errors.OperationInterrupted(
                        _name(what), may_have_committed=True, cause=lost.cause,
                        check="the hub has reconnected; versions(), list_partitions(), grants()"
                        " or list_spaces() show whether it did",
                    ) from lost.__cause__

    def _attempt(self, fn: Callable[[], T], read: bool) -> T:
        own = None if read and self.reader is not None else self.primary.own_connection()
        if own is None:
            with self.lease(read) as conn:
                return self._attempt_on(conn, fn, read)
        # The common case, a hub's own connection, without the leases' context managers:
        # their cost is a fixed part of every call, a fast search's included.
        token = self._leased.set(own)
        try:
            return self._attempt_on(own, fn, read)
        finally:
            self._leased.reset(token)

    def _attempt_on(self, conn: Conn, fn: Callable[[], T], read: bool) -> T:
        try:
            result = fn()
        except (errors.EmbeddingHubError, psycopg.Error) as exc:
            psycopg_error = exc if isinstance(exc, psycopg.Error) else exc.__cause__
            if conn.broken or conn.closed or (
                isinstance(psycopg_error, psycopg.Error) and failover.is_retryable(psycopg_error)
            ):
                conn.close()  # a standby's or a dead session: the next lease gets a new one
                raise _Lost(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
            raise
        if not read and self.read_your_writes and self.reader is not None:
            self.last_write_lsn = failover.write_lsn(conn)
        return result

    def close(self) -> None:
        self.primary.close()
        if self.reader is not None:
            self.reader.close()

    # -- what the session knows about each connection -------------------------------------
    @property
    def ef_search(self) -> str | None:
        """The current connection's session-level hnsw.ef_search; None while unknown (and
        always behind a transaction pooler: each transaction may get another server session)."""
        return None if self.stateless else self._ef_search.get(self.conn)

    @ef_search.setter
    def ef_search(self, value: str | None) -> None:
        if value is None:
            self._ef_search.pop(self.conn, None)
        else:
            self._ef_search[self.conn] = value

    def learn_ef_search(self, row: Any) -> None:
        """Record `current_setting('hnsw.ef_search', true)`; NULL until pgvector's library
        is loaded in the session, which then starts at its default, 40."""
        self.ef_search = str(row[0]) if row and row[0] else PGVECTOR_EF_SEARCH


class _Lost(Exception):
    """The call's connection is gone or no longer reaches the primary."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


def session_call(*, repeatable: bool = True, read: bool = False) -> Callable[[F], F]:
    """Run a method of an object with a `session` and a `name` through `Session.call`.

    `read`: the call only reads, so it may run on a standby (`connect(reads=...)`).
    """

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            return self.session.call(
                lambda: method(self, *args, **kwargs), repeatable=repeatable, read=read,
                what=lambda: f"{method.__name__}() on {self.name!r}",  # formatted if needed
            )

        return run  # type: ignore[return-value]

    return decorate


def _name(what: str | Callable[[], str]) -> str:
    return what if isinstance(what, str) else what()


def _setup(conn: Conn, *, stateless: bool) -> None:
    configure(conn)
    if stateless:  # a transaction pooler may run each statement on another server session
        conn.prepare_threshold = None


def _register(dsn: str, conn: Conn, setup: Callable[[Conn], None]) -> None:
    try:
        setup(conn)
    except psycopg.Error as exc:
        conn.close()
        raise errors.ConnectionFailed(f"cannot set up the connection to {redact_dsn(dsn)}: {exc}") from exc


def _open_pool(dsn: str, size: int, timeout: float, setup: Callable[[Conn], None]) -> ConnectionPool[Conn]:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise errors.InvalidArgument(f"pool must be a number of connections >= 1, not {size!r}")
    pool: ConnectionPool[Conn] = ConnectionPool(
        dsn,
        min_size=min(size, 2),  # a spare one at once, for batches spread over connections
        max_size=size,
        kwargs={"autocommit": True},
        configure=setup,
        open=False,
        timeout=timeout,
        name="embeddinghub",
    )
    try:
        pool.open(wait=True, timeout=timeout)
    except PoolTimeout as exc:
        pool.close()
        raise errors.ConnectionFailed(
            f"cannot connect to {redact_dsn(dsn)}: no connection within {timeout:g} s"
        ) from exc
    return pool
