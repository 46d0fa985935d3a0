"""The hub's way to its database: one connection, or a pool; leases, and riding out a lost connection.

Feature code reads `session.conn` at call time and never keeps a connection. Every public
call of the Hub and Space runs inside `session.call(...)`, which

- leases a connection for the whole call (pooled hubs: from the pool, so threads share
  a hub safely; a plain hub: its one connection), and
- when the connection is lost (a server restart, a failover), reconnects with back-off
  and runs the call again if it is safe to repeat (reads, keyed upserts and deletes);
  a call that is not safe to repeat raises `OperationInterrupted` instead.
"""

from __future__ import annotations

import functools
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from . import errors
from .compat import redact_dsn
from .db import open_connection, register_types

__all__ = ["PGVECTOR_EF_SEARCH", "Reconnect", "Session", "session_call"]

PGVECTOR_EF_SEARCH = "40"  # pgvector's default hnsw.ef_search
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Reconnect:
    """How long a hub keeps trying to get a connection back after losing one.

    Back-off doubles from `initial` to `maximum` seconds between attempts, for at most
    `deadline` seconds in all (a Patroni failover with its minimum ttl takes about 20 s).
    `Reconnect(deadline=0)` never retries.
    """

    deadline: float = 30.0
    initial: float = 0.1
    maximum: float = 2.0

    def delays(self) -> Iterator[float]:
        """Sleep before each further attempt, until the deadline has passed."""
        end, delay = time.monotonic() + self.deadline, self.initial
        while time.monotonic() + delay <= end:
            yield delay
            delay = min(self.maximum, delay * 2)


class Session:
    """One hub's connection (or pool) and what it knows about each connection's session."""

    def __init__(
        self,
        dsn: str,
        conn: psycopg.Connection[Any] | None = None,
        *,
        pool_size: int | None = None,
        pool_timeout: float = 30.0,
        keep_queries: int = 0,
        reconnect: Reconnect | None = None,
    ) -> None:
        self.dsn = dsn
        self.reconnect = reconnect or Reconnect()
        self.pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self.pool_timeout = pool_timeout
        self._single = conn
        if pool_size is not None:
            self.pool = _open_pool(dsn, pool_size, pool_timeout)
        elif conn is None:
            self._single = _connect(dsn)
        else:
            _register(dsn, conn)
        self._leased: ContextVar[psycopg.Connection[Any] | None] = ContextVar("leased", default=None)
        # Opt-in: the last `keep_queries` query vectors of each space (by id), for tune().
        self.keep_queries = keep_queries
        self.recent_queries: dict[int, deque[Any]] = {}
        # Each connection's own hnsw.ef_search, so searches at that value send no SET.
        self._ef_search: weakref.WeakKeyDictionary[psycopg.Connection[Any], str] = (
            weakref.WeakKeyDictionary()
        )

    # -- connections --------------------------------------------------------------------
    @property
    def conn(self) -> psycopg.Connection[Any]:
        """The connection of the running call: the leased one, else the hub's single one."""
        leased = self._leased.get()
        if leased is not None:
            return leased
        if self._single is None:
            raise errors.InvalidArgument(
                "a pooled hub has no connection of its own outside a call:"
                " use `with hub.connection() as conn:` for your own SQL"
            )
        return self._single

    @contextmanager
    def lease(self) -> Iterator[psycopg.Connection[Any]]:
        """The connection for a call, held until it ends (nested leases share it)."""
        current = self._leased.get()
        if current is not None or self.pool is None:
            yield self.conn
            return
        try:
            with self.pool.connection(timeout=self.pool_timeout) as conn:
                token = self._leased.set(conn)
                try:
                    yield conn
                finally:
                    self._leased.reset(token)
        except PoolTimeout as exc:
            raise errors.ConnectionFailed(
                f"no pooled connection to {redact_dsn(self.dsn)} came free within {self.pool_timeout:g} s:"
                " raise pool= or pool_timeout=, or make calls shorter"
            ) from exc

    def call(self, fn: Callable[[], T], *, repeatable: bool, what: str) -> T:
        """Run `fn` on a leased connection; after a lost connection, reconnect and run it
        again if it is `repeatable`, else raise OperationInterrupted naming `what`."""
        if self._leased.get() is not None:  # a call inside a call: the outer one retries
            return fn()
        delays = self.reconnect.delays()
        while True:
            lost = False
            try:
                with self.lease() as conn:
                    try:
                        return fn()
                    except (errors.EmbeddingHubError, psycopg.Error):
                        lost = conn.broken or conn.closed  # psycopg's word: the server went away
                        raise
            except errors.EmbeddingHubError as exc:
                if not lost:
                    raise
                self._restore(delays, exc)
                if not repeatable:
                    raise errors.OperationInterrupted(
                        what, may_have_committed=True, cause=str(exc).splitlines()[0],
                        check="the hub has reconnected; versions(), list_partitions(), grants() or"
                        " list_spaces() show whether it did",
                    ) from exc

    def _restore(self, delays: Iterator[float], cause: Exception) -> None:
        """Get a working connection back, with back-off until the reconnect deadline."""
        last: Exception = cause
        while True:
            try:
                if self.pool is not None:  # the pool drops the broken connection itself
                    with self.pool.connection(timeout=self.pool_timeout) as conn:
                        conn.execute("SELECT 1")
                else:
                    self._single = _connect(self.dsn)
                return
            except (errors.ConnectionFailed, psycopg.Error, PoolTimeout) as exc:
                last = exc
            delay = next(delays, None)
            if delay is None:
                raise errors.ConnectionFailed(
                    f"lost the connection to {redact_dsn(self.dsn)} and could not get it back within"
                    f" {self.reconnect.deadline:g} s: {last}"
                ) from last
            time.sleep(delay)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        if self._single is not None:
            self._single.close()

    # -- what the session knows about each connection -------------------------------------
    @property
    def ef_search(self) -> str | None:
        """The current connection's session-level hnsw.ef_search; None while unknown."""
        return self._ef_search.get(self.conn)

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


def _connect(dsn: str) -> psycopg.Connection[Any]:
    conn = open_connection(dsn)
    _register(dsn, conn)
    return conn


def _register(dsn: str, conn: psycopg.Connection[Any]) -> None:
    try:
        register_types(conn)
    except psycopg.Error as exc:
        conn.close()
        raise errors.ConnectionFailed(f"cannot set up the connection to {redact_dsn(dsn)}: {exc}") from exc


def _open_pool(dsn: str, size: int, timeout: float) -> ConnectionPool[psycopg.Connection[Any]]:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise errors.InvalidArgument(f"pool must be a number of connections >= 1, not {size!r}")
    pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
        dsn,
        min_size=1,
        max_size=size,
        kwargs={"autocommit": True},
        configure=register_types,
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


def session_call(*, repeatable: bool = True) -> Callable[[F], F]:
    """Run a method of an object with a `session` and a `name` through `Session.call`."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            what = f"{method.__name__}() on {self.name!r}"
            return self.session.call(lambda: method(self, *args, **kwargs), repeatable=repeatable, what=what)

        return run  # type: ignore[return-value]

    return decorate
