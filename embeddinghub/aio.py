"""The async API: `AsyncHub` and `AsyncSpace`, the same names and semantics as Hub and Space.

    import embeddinghub.aio as eha
    hub = await eha.connect(dsn, pool=8)
    space = await hub.create_space("items", dims=384, metric="cosine")
    await space.multiset(keys, matrix)
    hits = await space.nearest_neighbors(10, vector=q)
    async for key, vector in space.iterator(): ...
    await hub.close()

One core, two thin drivers: every method runs the synchronous Hub/Space code, whose
connection is psycopg's AsyncConnection behind `aio_driver.AsyncConnectionAdapter`, on the
event loop (SQLAlchemy's greenlet bridge). Validation, SQL, result types and errors are
therefore those of the sync API. A hub serves many tasks at once from its pool of async
connections (`pool`, default 4); each call leases one for its duration. Cancelling a task
cancels its query: the call's transaction rolls back, nothing is half-written, and the
connection goes back to the pool usable.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from sqlalchemy.util import greenlet_spawn

from . import errors, failover, migrate
from .aio_driver import AsyncLink
from .compat import Config, LocalConfig
from .db import apply_session_settings, translate
from .failover import RetryPolicy
from .hub import Hub, resolve_dsn
from .session import READS, Session
from .space import Space
from .versions import AsOf

__all__ = ["AsyncAsOf", "AsyncHub", "AsyncSpace", "connect"]

T = TypeVar("T")
_END = object()


async def connect(
    target: str | list[str] | Config | LocalConfig | None = None,
    *,
    pool: int = 4,
    pool_timeout: float = 30.0,
    retry: RetryPolicy | None = None,
    reads: str = "primary",
    read_your_writes: bool = False,
    keep_queries: int = 0,
    migrate_schema: bool = True,
    transaction_pooler: bool = False,
) -> AsyncHub:
    """Connect the async API (the arguments of `embeddinghub.connect`; always pooled)."""
    if reads not in READS:
        raise errors.InvalidArgument(f"reads must be one of {READS}, not {reads!r}")
    retry = retry or RetryPolicy()
    # Starting the embedded server and migrating are one-off and synchronous: a thread.
    dsn = await asyncio.to_thread(_prepare, target, retry, migrate_schema)
    primary = AsyncLink(dsn, "primary", retry, pool, pool_timeout, transaction_pooler)
    reader = (
        AsyncLink(dsn, reads, retry, pool, pool_timeout, transaction_pooler)  # type: ignore[arg-type]
        if reads != "primary" else None
    )
    for link in (primary, reader):
        if link is not None:
            await link.open()
    session = Session(
        dsn, keep_queries=keep_queries, retry=retry, reads=reads, read_your_writes=read_your_writes,
        links=(primary, reader), transaction_pooler=transaction_pooler,
    )
    return AsyncHub(Hub.over(session))


def _prepare(target: Any, retry: RetryPolicy, migrate_schema: bool) -> str:
    dsn = resolve_dsn(target)
    if migrate_schema:
        conn = failover.reconnect(dsn, retry, target="primary", configure=apply_session_settings)
        try:
            with translate():
                migrate.upgrade(failover.target_conninfo(dsn, "primary", retry.connect_timeout), conn)
        finally:
            conn.close()
    return dsn


async def _run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await greenlet_spawn(fn, *args, **kwargs)


def _calls(*names: str) -> Callable[[type[T]], type[T]]:
    """Give a class an async method for each name, running the wrapped object's method."""

    def decorate(cls: type[T]) -> type[T]:
        for name in names:
            setattr(cls, name, _async_method(name))
        return cls

    return decorate


def _async_method(name: str) -> Callable[..., Any]:
    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await _run(getattr(self.sync, name), *args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"The async form of `{name}` (see the sync API)."
    return method


async def _iterate(gen: Any) -> AsyncIterator[Any]:
    while True:
        item = await _run(next, gen, _END)
        if item is _END:
            return
        yield item


@_calls(
    "get", "multiget", "get_metadata", "count", "nearest_neighbors", "multi_nearest_neighbors",
)
class AsyncAsOf:
    """A read-only view of a space at one version (see versions.AsOf)."""

    def __init__(self, sync: AsOf) -> None:
        self.sync = sync
        self.number = sync.number

    async def contains(self, key: str) -> bool:
        return await _run(self.sync.__contains__, key)

    def iterator(self, partition: str | None = None, *, with_metadata: bool = False) -> AsyncIterator[Any]:
        return _iterate(self.sync.iterator(partition, with_metadata=with_metadata))


@_calls(
    "info", "set", "multiset", "delete", "multidelete", "delete_all", "delete_where",
    "update_metadata", "ensure_index", "unfreeze", "get", "multiget",
    "get_metadata", "count", "nearest_neighbors", "multi_nearest_neighbors", "create_partition",
    "list_partitions", "drop_partition", "create_index", "set_ef_search", "set_target_recall",
    "tune", "freeze", "average", "centroid", "recommend", "snapshot", "versions", "diff",
    "rollback", "prune_versions", "grant", "revoke", "grants",
)
class AsyncSpace:
    """A space of the async API: the methods of `Space`, awaited."""

    def __init__(self, sync: Space) -> None:
        self.sync = sync

    name = property(lambda self: self.sync.name)
    dims = property(lambda self: self.sync.dims)
    metric = property(lambda self: self.sync.metric)
    dtype = property(lambda self: self.sync.dtype)

    def __repr__(self) -> str:
        return f"<AsyncSpace {self.sync.name!r} dims={self.sync.dims} metric={self.sync.metric}>"

    async def contains(self, key: str) -> bool:
        return await _run(self.sync.__contains__, key)

    async def as_of(self, version: int | str) -> AsyncAsOf:
        return AsyncAsOf(await _run(self.sync.as_of, version))

    async def refresh(self) -> AsyncSpace:
        await _run(self.sync.refresh)
        return self

    def iterator(self, partition: str | None = None, *, with_metadata: bool = False) -> AsyncIterator[Any]:
        return _iterate(self.sync.iterator(partition, with_metadata=with_metadata))


@_calls(
    "list_spaces", "has_space", "delete_space", "freeze_space", "unfreeze_space", "rename_space",
    "create_role", "drop_role", "execute",
)
class AsyncHub:
    """The async Hub: the methods of `Hub`, awaited; spaces come back as AsyncSpace."""

    def __init__(self, sync: Hub) -> None:
        self.sync = sync

    @property
    def dsn(self) -> str:
        return self.sync.dsn

    async def create_space(self, name: str, dims: int, *args: Any, **kwargs: Any) -> AsyncSpace:
        return AsyncSpace(await _run(self.sync.create_space, name, dims, *args, **kwargs))

    async def get_space(self, name: str) -> AsyncSpace:
        return AsyncSpace(await _run(self.sync.get_space, name))

    async def close(self) -> None:
        for link in (self.sync.session.primary, self.sync.session.reader):
            if link is not None:
                await link.close()

    async def __aenter__(self) -> AsyncHub:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<AsyncHub {self.sync.name}>"
