"""A space: named embeddings of fixed dims, compared with one metric, split into partitions.

`Space` is the public facade: each method checks nothing and runs no SQL itself, it hands
the space's `SpaceHandle` to the module that does the work (catalog, rows, search,
versions, acl, recommend, tuning, models).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
import sqlalchemy

from . import acl, catalog, models, recommend, rows, search, storage, tuning, versions
from .acl import Grant
from .catalog import SpaceHandle
from .search import Neighbor
from .session import Session, session_call
from .tuning import TuneResult
from .versions import AsOf, Diff, Version, VersionRef

if TYPE_CHECKING:  # a back reference for typing only: the Hub makes its spaces
    from .hub import Hub

__all__ = ["Space"]


class Space:
    """A named collection of embeddings. Get one from `Hub.create_space` or `Hub.get_space`."""

    def __init__(self, hub: Hub, handle: SpaceHandle) -> None:
        self.hub = hub
        self.handle = handle

    # -- settings -----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.handle.name

    @property
    def id(self) -> int:
        return self.handle.id

    @property
    def dims(self) -> int:
        return self.handle.dims

    @property
    def metric(self) -> str:
        return self.handle.metric

    @property
    def dtype(self) -> str:
        return self.handle.dtype

    @property
    def m(self) -> int:
        return self.handle.m

    @property
    def ef_construction(self) -> int:
        return self.handle.ef_construction

    @property
    def ef_search(self) -> int:
        return self.handle.ef_search

    @property
    def auto_partition(self) -> bool:
        return self.handle.auto_partition

    @property
    def description(self) -> str | None:
        return self.handle.description

    @property
    def index(self) -> str:
        return self.handle.tables.index_kind

    @property
    def session(self) -> Session:
        return self.handle.session

    @property
    def tables(self) -> storage.SpaceTables:
        return self.handle.tables

    @property
    def conn(self) -> psycopg.Connection[Any]:
        return self.handle.conn

    @session_call(read=True)
    def refresh(self) -> Space:
        """Re-read the space's settings from the catalog."""
        self.handle = catalog.load(self.handle.session, self.handle.hooks, self.name)
        return self

    def __repr__(self) -> str:
        return f"<Space {self.name!r} dims={self.dims} metric={self.metric} dtype={self.dtype}>"

    @session_call(read=True)
    def info(self) -> dict[str, Any]:
        """Settings and live statistics of the space."""
        return catalog.info(self.handle)

    # -- writes -----------------------------------------------------------------------
    @session_call(repeatable=True)
    def set(
        self, key: str, vector: Any, metadata: dict[str, Any] | None = None, partition: str | None = None
    ) -> None:
        """Insert or replace one embedding (and its metadata) under `key`."""
        rows.set_row(self.handle, key, vector, metadata, partition)

    @session_call(repeatable=True)
    def multiset(
        self,
        keys: Any,
        vectors: Any = None,
        metadata: Sequence[dict[str, Any] | None] | None = None,
        partition: str | Sequence[str] | None = None,
        *,
        progress: Any = None,
    ) -> int:
        """Insert or replace many embeddings in one transaction: all land or none do.

        Accepts `{key: vector}`, `(keys, matrix)` or an iterable of `(key, vector)` pairs.
        `partition` is one name for the whole batch or one per row. Returns the row count.
        """
        batch = rows.make_batch(self.handle, keys, vectors, metadata, partition)
        return rows.multiset(self.handle, batch, progress=progress)

    @session_call(repeatable=True)
    def delete(self, key: str, partition: str | None = None) -> None:
        """Delete `key`; raises KeyNotFound if it is not there."""
        rows.multidelete(self.handle, [key], partition, strict=True)

    @session_call(repeatable=True)
    def multidelete(
        self, keys: Iterable[str], partition: str | None = None, *, strict: bool = False
    ) -> int:
        """Delete the keys that exist, in one transaction; return how many were deleted.
        With `strict=True`, every key or none: a missing one raises KeyNotFound."""
        return rows.multidelete(self.handle, keys, partition, strict=strict)

    @session_call(repeatable=True)
    def delete_all(self, partition: str | None = None) -> int:
        """Delete every row (of one partition, if given); returns how many."""
        return rows.delete_all(self.handle, partition)

    @session_call(repeatable=True)
    def delete_where(self, where: Mapping[str, Any], partition: str | None = None) -> int:
        """Delete the rows whose metadata matches the filter `where` (see *Metadata
        filters*), in one partition if given; returns how many."""
        return rows.delete_where(self.handle, where, partition)

    @session_call(repeatable=True)
    def update_metadata(
        self, key: str, metadata: dict[str, Any] | None, partition: str | None = None,
        *, merge: bool = False,
    ) -> None:
        """Replace the metadata of `key`, leaving its vector; `merge=True` adds the given
        fields to the stored ones instead. KeyNotFound if the key is not there."""
        rows.update_metadata(self.handle, key, metadata, partition, merge=merge)

    # -- reads ------------------------------------------------------------------------
    @session_call(read=True)
    def get(self, key: str, partition: str | None = None) -> np.ndarray:
        """The embedding of `key` (in the default partition unless `partition` is given)."""
        row: np.ndarray = self.multiget([key], partition=partition)[0]
        return row

    @session_call(read=True)
    def multiget(
        self, keys: Iterable[str], partition: str | None = None, *, missing: str = "raise"
    ) -> np.ndarray:
        """A (len(keys), dims) float32 matrix, rows in the order of `keys`. A missing key
        raises KeyNotFound, or with `missing="nan"` gets a row of NaN (partial results)."""
        return rows.multiget(self.handle, rows.live(self.handle), keys, partition, missing=missing)

    @session_call(read=True)
    def get_metadata(self, key: str, partition: str | None = None) -> dict[str, Any] | None:
        return rows.get_metadata(self.handle, rows.live(self.handle), key, partition)

    @session_call(read=True)
    def __contains__(self, key: object) -> bool:
        return rows.contains(self.handle, rows.live(self.handle), key)

    @session_call(read=True)
    def count(self, partition: str | None = None, where: Mapping[str, Any] | None = None) -> int:
        """Rows in the space (in one partition; matching a metadata filter `where`)."""
        return rows.count(self.handle, rows.live(self.handle), partition, where)

    def __len__(self) -> int:
        return self.count()

    def iterator(
        self, partition: str | None = None, *, with_metadata: bool = False,
        with_partition: bool = False,
    ) -> Iterator[tuple[Any, ...]]:
        """Yield `(key, vector)` pairs (all partitions unless one is given), in (partition,
        key) order; `with_metadata` / `with_partition` add those, in that order:
        `(key, vector, metadata, partition)`.

        Pages through the table by key, so no transaction stays open between pages.
        """
        return rows.pages(self.handle, rows.live(self.handle), partition,
                          with_metadata=with_metadata, with_partition=with_partition)

    def __iter__(self) -> Iterator[Any]:
        return self.iterator()

    # -- nearest neighbours -----------------------------------------------------------
    @session_call(read=True)
    def nearest_neighbors(
        self,
        num: int,
        key: str | None = None,
        vector: Any = None,
        partition: str | None = None,
        where: Mapping[str, Any] | None = None,
        version: VersionRef | None = None,
        *,
        ef_search: int | None = None,
        key_partition: str | None = None,
        include_vectors: bool = False,
        offset: int = 0,
    ) -> list[Neighbor]:
        """The `num` nearest embeddings to `key`'s vector or to `vector`, closest first.

        With `key`, the key itself is left out. `partition` searches one partition's
        own HNSW index; without it, all partitions are searched and merged. The key is
        looked up in `key_partition` (default: `partition`, else the default partition).
        `include_vectors` fills each Neighbor's `vector`; `offset` skips that many of the
        closest first (pages: offset=0, num; offset=num, num; ...).
        """
        if version is None and not include_vectors and rows.check_offset(self.handle, offset, num) == 0:
            return search.nearest(self.handle, num, key, vector, partition, where, ef_search, key_partition)
        keys, vectors = search.one_query(self.handle, key, vector)
        return self.multi_nearest_neighbors(
            num, keys, vectors, partition, where, version, ef_search=ef_search,
            key_partition=key_partition, include_vectors=include_vectors, offset=offset,
        )[0]

    @session_call(read=True)
    def multi_nearest_neighbors(
        self,
        num: int,
        keys: Sequence[str] | None = None,
        vectors: Any = None,
        partition: str | None = None,
        where: Mapping[str, Any] | None = None,
        version: VersionRef | None = None,
        *,
        ef_search: int | None = None,
        key_partition: str | None = None,
        include_vectors: bool = False,
        offset: int = 0,
    ) -> list[list[Neighbor]]:
        """Nearest neighbours of many keys or vectors, answered in one round trip (plus one
        for `include_vectors`); `offset` skips that many of each query's closest."""
        source = rows.live(self.handle)
        if version is not None:
            source = versions.source_at(self.handle, versions.resolve(self.handle, version))
        skip = rows.check_offset(self.handle, offset, num)
        found = search.search(
            self.handle, source, num + skip if skip else num, keys, vectors, partition, where,
            ef_search, key_partition,
        )
        pages = [hits[skip:] for hits in found] if skip else found
        if not include_vectors:
            return pages
        got = rows.vectors_of(self.handle, source, [(n.partition, n.key) for hits in pages for n in hits])
        return [[replace(n, vector=got.get((n.partition, n.key))) for n in hits] for hits in pages]

    # -- partitions -------------------------------------------------------------------
    @session_call(repeatable=False)
    def create_partition(self, name: str) -> None:
        """A new list partition with its own HNSW index."""
        catalog.create_partition(self.handle, name)

    @session_call(read=True)
    def list_partitions(self) -> list[dict[str, Any]]:
        """Partitions with their row counts."""
        return catalog.list_partitions(self.handle)

    @session_call(repeatable=False)
    def drop_partition(self, name: str) -> None:
        """Drop a partition, its rows and its index. Its rows stay readable in old versions."""
        catalog.drop_partition(self.handle, name)

    # -- index ------------------------------------------------------------------------
    @session_call(repeatable=True)
    def create_index(self, m: int = 16, ef_construction: int = 64, index: str | None = None) -> None:
        """Rebuild the HNSW index (every partition's) with new parameters; `index` changes
        its kind: "hnsw" (the vectors), "hnsw_halfvec" (half-precision copies, float32
        spaces), "hnsw_bit" (binary quantization, re-ranked by the exact distance)."""
        catalog.create_index(self.handle, m, ef_construction, index)

    @session_call(repeatable=True)
    def ensure_index(self) -> bool:
        """Build the HNSW index if it is missing or invalid (a load that was killed before
        it rebuilt the index); True if it was built. `info()["index_state"]` tells its state."""
        return catalog.ensure_index(self.handle)

    @session_call(repeatable=True)
    def set_ef_search(self, ef_search: int) -> None:
        """The space's default `ef_search` for every search that does not pass one."""
        catalog.set_ef_search(self.handle, ef_search)

    @session_call(repeatable=True)
    def set_target_recall(self, target: float | None) -> None:
        """The recall@k this space should reach; `tune()` without a target aims at it."""
        catalog.set_target_recall(self.handle, target)

    @property
    def target_recall(self) -> float | None:
        return self.handle.target_recall

    @session_call(repeatable=True)
    def tune(
        self,
        target_recall: float | None = None,
        *,
        k: int = 10,
        sample: int = 100,
        queries: Any = None,
        apply: bool = True,
        per_partition: bool | None = None,
    ) -> TuneResult:
        """Measure recall@k against exact search and set the smallest `ef_search` that
        reaches the target (default: the space's target_recall, else 0.95). See
        embeddinghub.tuning for which queries it measures with."""
        return tuning.tune(
            self.handle, target_recall, k=k, sample=sample, queries=queries, apply=apply,
            per_partition=per_partition,
        )

    @session_call(repeatable=True)
    def freeze(self) -> None:
        """Make the space immutable; the database refuses every later write, raw SQL too."""
        catalog.freeze(self.handle)

    @session_call(repeatable=True)
    def unfreeze(self) -> None:
        """Make a frozen space writable again."""
        catalog.unfreeze(self.handle)

    # -- averaging and recommendations --------------------------------------------------
    @session_call(read=True)
    def average(
        self, keys: Sequence[str], weights: Sequence[float] | None = None, partition: str | None = None
    ) -> np.ndarray:
        """The (weighted) mean of the keys' embeddings."""
        return recommend.average(self.handle, keys, weights, partition)

    @session_call(read=True)
    def centroid(self, partition: str | None = None) -> np.ndarray:
        """The mean of every embedding in the space (or one partition)."""
        return recommend.centroid(self.handle, partition)

    @session_call(read=True)
    def recommend(
        self,
        num: int,
        positive: Sequence[str] = (),
        negative: Sequence[str] = (),
        partition: str | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> list[Neighbor]:
        """Neighbours of the positives' mean, pushed away from the negatives; inputs excluded."""
        return recommend.recommend(self.handle, num, positive, negative, partition, where)

    # -- versions -----------------------------------------------------------------------
    @session_call(repeatable=False)
    def snapshot(self, tag: str | None = None, note: str | None = None) -> Version:
        """Record the working state as a new version, in O(1): no data is copied."""
        return versions.snapshot(self.handle, tag, note)

    @session_call(read=True)
    def versions(self) -> list[Version]:
        return versions.list_versions(self.handle)

    @session_call(read=True)
    def as_of(self, version: VersionRef) -> AsOf:
        """A read-only view of the space as it was at `version` (number or tag)."""
        return AsOf(self.handle, version)

    @session_call(read=True)
    def diff(self, a: VersionRef, b: VersionRef | None = None) -> Diff:
        """Keys added, removed and changed from version `a` to `b` (default: working state)."""
        return versions.diff(self.handle, a, b)

    @session_call(repeatable=False)
    def rollback(self, version: VersionRef) -> Version:
        """Make the working state equal to `version`, recorded as a new version."""
        return versions.rollback(self.handle, version)

    @session_call(repeatable=False)
    def prune_versions(self, keep: int) -> int:
        """Drop history that none of the newest `keep` versions needs; returns rows freed."""
        return versions.prune_versions(self.handle, keep)

    # -- access control -----------------------------------------------------------------
    @session_call(repeatable=True)
    def grant(self, role: str, privilege: str, partition: str | None = None) -> None:
        acl.grant(self.handle, role, privilege, partition)

    @session_call(repeatable=True)
    def revoke(self, role: str, privilege: str | None = None, partition: str | None = None) -> None:
        acl.revoke(self.handle, role, privilege, partition)

    @session_call(read=True)
    def grants(self) -> list[Grant]:
        return acl.list_grants(self.handle)

    @session_call(repeatable=True)
    def table(self) -> sqlalchemy.Table:
        """The space's live table as a SQLAlchemy `Table` (pgvector `Vector` column)."""
        return models.space_table(self.handle)
