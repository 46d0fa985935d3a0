"""psycopg's async connection, driven by the one (synchronous) core of the package.

The core calls `conn.execute(...)`, `conn.transaction()`, `cur.copy(...)` and so on. In the
async API it gets an `AsyncConnectionAdapter` instead of a psycopg Connection: the same
methods, each awaiting the psycopg AsyncConnection's coroutine through `await_only`, while
the call runs in a greenlet started by `greenlet_spawn` on the event loop (SQLAlchemy's
asyncio bridge, the way its own ORM drives asyncpg and psycopg's async connections). So
validation, SQL and result building are the sync code's, and the I/O is asyncio's: while a
query waits, the event loop serves other tasks, and cancelling the task cancels the query.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from pgvector.psycopg import register_vector_async
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy.util import await_only

from . import errors, failover
from .compat import redact_dsn
from .db import SESSION_SETTINGS
from .failover import RetryPolicy, Target

__all__ = ["AsyncConnectionAdapter", "AsyncLink", "adapter_for"]


class _CursorAdapter:
    """An AsyncCursor behind a Cursor's synchronous methods."""

    def __init__(self, cursor: psycopg.AsyncCursor[Any]) -> None:
        self._cursor = cursor

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> _CursorAdapter:
        await_only(self._cursor.execute(query, params, **kwargs))
        return self

    def fetchone(self) -> Any:
        return await_only(self._cursor.fetchone())

    def fetchall(self) -> list[Any]:
        return await_only(self._cursor.fetchall())

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def connection(self) -> psycopg.AsyncConnection[Any]:  # for sql.Composable.as_string()
        return self._cursor.connection

    @property
    def adapters(self) -> Any:
        return self._cursor.adapters

    @property
    def description(self) -> Any:
        return self._cursor.description

    @contextmanager
    def copy(self, statement: Any) -> Iterator[_CopyAdapter]:
        with _entered(self._cursor.copy(statement)) as copy:
            yield _CopyAdapter(copy)

    def __enter__(self) -> _CursorAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        await_only(self._cursor.close())


class _CopyAdapter:
    def __init__(self, copy: Any) -> None:
        self._copy = copy

    def write(self, data: bytes) -> None:
        await_only(self._copy.write(data))


class AsyncConnectionAdapter:
    """A psycopg AsyncConnection with the synchronous Connection methods the core uses."""

    def __init__(self, aconn: psycopg.AsyncConnection[Any]) -> None:
        self.aconn = aconn

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> _CursorAdapter:
        return _CursorAdapter(await_only(self.aconn.execute(query, params, **kwargs)))

    def cursor(self, **kwargs: Any) -> _CursorAdapter:
        return _CursorAdapter(self.aconn.cursor(**kwargs))

    @contextmanager
    def transaction(self, **kwargs: Any) -> Iterator[None]:
        with _entered(self.aconn.transaction(**kwargs)):
            yield

    @contextmanager
    def pipeline(self) -> Iterator[None]:
        with _entered(self.aconn.pipeline()):
            yield

    @property
    def info(self) -> Any:
        return self.aconn.info

    @property
    def connection(self) -> psycopg.AsyncConnection[Any]:  # for sql.Composable.as_string()
        return self.aconn

    @property
    def pgconn(self) -> Any:
        return self.aconn.pgconn

    @property
    def adapters(self) -> Any:
        return self.aconn.adapters

    @property
    def broken(self) -> bool:
        return self.aconn.broken

    @property
    def closed(self) -> bool:
        return self.aconn.closed

    def close(self) -> None:
        await_only(self.aconn.close())


@contextmanager
def _entered(manager: Any) -> Iterator[Any]:
    """An async context manager entered and left from synchronous code (in the greenlet)."""
    value = await_only(manager.__aenter__())
    try:
        yield value
    except BaseException as exc:
        if not await_only(manager.__aexit__(type(exc), exc, exc.__traceback__)):
            raise
    else:
        await_only(manager.__aexit__(None, None, None))


# One adapter per async connection, so what the session knows about a connection (its
# hnsw.ef_search) is kept across calls.
_ADAPTERS: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], AsyncConnectionAdapter] = (
    weakref.WeakKeyDictionary()
)


def adapter_for(aconn: psycopg.AsyncConnection[Any]) -> AsyncConnectionAdapter:
    adapter = _ADAPTERS.get(aconn)
    if adapter is None:
        adapter = _ADAPTERS[aconn] = AsyncConnectionAdapter(aconn)
    return adapter


class AsyncLink:
    """An AsyncConnectionPool to one target, leased from synchronous core code in a greenlet."""

    def __init__(
        self, conninfo: str, target: Target, retry: RetryPolicy, size: int, timeout: float,
        stateless: bool = False,
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise errors.InvalidArgument(f"pool must be a number of connections >= 1, not {size!r}")
        self.conninfo, self.target, self.retry, self.timeout = conninfo, target, retry, timeout
        self.pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            failover.target_conninfo(conninfo, target, retry.connect_timeout),
            min_size=1, max_size=size, kwargs={"autocommit": True},
            configure=_configure_stateless if stateless else _configure,
            open=False, timeout=timeout, name="embeddinghub-async",
        )

    async def open(self) -> None:
        try:
            await self.pool.open(wait=True, timeout=self.timeout)
        except PoolTimeout as exc:
            await self.pool.close()
            raise errors.ConnectionFailed(
                f"cannot connect to {redact_dsn(self.conninfo)}: no connection within {self.timeout:g} s"
            ) from exc

    def own_connection(self) -> None:
        """None: every call leases from the pool."""
        return None

    @contextmanager
    def lease(self) -> Iterator[AsyncConnectionAdapter]:
        try:
            aconn = await_only(self.pool.getconn(timeout=self.timeout))
        except PoolTimeout as exc:
            raise errors.ConnectionFailed(
                f"no pooled connection to {redact_dsn(self.conninfo)} came free within"
                f" {self.timeout:g} s: raise pool= or pool_timeout=, or make calls shorter"
            ) from exc
        try:
            yield adapter_for(aconn)
        finally:
            await_only(self.pool.putconn(aconn))  # a broken or closed one is discarded

    def restore(self, deadline: float) -> None:
        def attempt() -> None:
            with self.lease() as conn:
                conn.execute("SELECT 1")

        failover.keep_trying(
            attempt, self.retry, deadline, self.conninfo, sleep=lambda s: await_only(asyncio.sleep(s))
        )

    async def close(self) -> None:
        await self.pool.close()


async def _configure_stateless(aconn: psycopg.AsyncConnection[Any]) -> None:
    await _configure(aconn)
    aconn.prepare_threshold = None  # behind a transaction pooler: no prepared statements


async def _configure(aconn: psycopg.AsyncConnection[Any]) -> None:
    for statement in SESSION_SETTINGS:
        try:
            await aconn.execute(statement)
        except psycopg.Error:
            pass
    await register_vector_async(aconn)
