"""A space: named embeddings of fixed dims, compared with one metric, split into partitions."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from . import errors, storage
from .db import translate, validate_name
from .search import Neighbor, knn_query, run_knn
from .vectors import (
    as_matrix,
    as_vector,
    check_key,
    check_keys,
    copy_rows,
    metadata_list,
    normalise_metadata,
)

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["Space"]

DEFAULT_PARTITION = "default"
BULK_REBUILD_ROWS = 5000  # a first load at least this large drops the index and rebuilds it
ITERATOR_PAGE = 1000
EF_SEARCH_MAX = 1000  # pgvector's limit for hnsw.ef_search


class Space:
    """A named collection of embeddings. Get one from `Hub.create_space` or `Hub.get_space`."""

    def __init__(self, hub: Hub, row: Mapping[str, Any]) -> None:
        self.hub = hub
        self._load(row)

    def _load(self, row: Mapping[str, Any]) -> None:
        self.id: int = row["id"]
        self.name: str = row["name"]
        self.dims: int = row["dims"]
        self.metric: str = row["metric"]
        self.dtype: str = row["dtype"]
        self.ef_search: int = row["ef_search"]
        self.m: int = row["hnsw_m"]
        self.ef_construction: int = row["hnsw_ef_construction"]
        self.auto_partition: bool = row["auto_partition"]
        self.description: str | None = row["description"]
        self.tables = storage.SpaceTables(self.id, self.dims, self.metric, self.dtype)
        self._known_partitions: set[str] = set()

    def refresh(self) -> Space:
        """Re-read the space's settings from the catalog."""
        self._load(self.hub._space_row(self.name))
        return self

    @property
    def conn(self) -> psycopg.Connection[Any]:
        return self.hub.conn

    def __repr__(self) -> str:
        return f"<Space {self.name!r} dims={self.dims} metric={self.metric} dtype={self.dtype}>"

    def info(self) -> dict[str, Any]:
        """Settings and live statistics of the space."""
        row = self.hub._space_row(self.name)
        with translate(self.name):
            size = self.conn.execute(
                sql.SQL("SELECT count(*), max(updated_at) FROM {}").format(self.tables.live)
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
            "auto_partition": row["auto_partition"],
            "description": row["description"],
            "created_at": row["created_at"],
            "partitions": [p["name"] for p in self.list_partitions()],
        }

    # -- checks -----------------------------------------------------------------------
    def _vector(self, data: Any) -> np.ndarray:
        return as_vector(self.name, self.dims, self.dtype, data)

    def _matrix(self, data: Any, rows: int | None = None) -> np.ndarray:
        return as_matrix(self.name, self.dims, self.dtype, data, rows)

    def _partition(self, partition: str | None) -> str:
        if partition is None:
            return DEFAULT_PARTITION
        return validate_name("partition", partition)

    def _ensure_partitions(
        self, cur: psycopg.Cursor[Any], names: Iterable[str], create: bool = True
    ) -> None:
        """Check (or, with auto_partition, create) the partitions a write goes to."""
        wanted = set(names) - self._known_partitions
        if not wanted:
            return
        cur.execute(
            "SELECT name FROM embeddinghub.partitions WHERE space_id = %s AND name = ANY(%s)",
            (self.id, list(wanted)),
        )
        found = {r[0] for r in cur.fetchall()}
        self._known_partitions |= found
        for name in sorted(wanted - found):
            if not (create and self.auto_partition):
                raise errors.PartitionNotFound(self.name, name)
            self._create_partition(cur, name)

    # -- writes -----------------------------------------------------------------------
    def set(
        self,
        key: str,
        vector: Any,
        metadata: dict[str, Any] | None = None,
        partition: str | None = None,
    ) -> None:
        """Insert or replace one embedding (and its metadata) under `key`."""
        key = check_key(self.name, key)
        vec = self._vector(vector)
        meta = normalise_metadata(self.name, metadata)
        part = self._partition(partition)
        with translate(self.name), self.conn.transaction(), self.conn.cursor() as cur:
            self._ensure_partitions(cur, [part])
            cur.execute(
                sql.SQL(
                    "INSERT INTO {live} (partition, key, embedding, metadata)"
                    " VALUES (%s, %s, %s::{vt}, %s)"
                    " ON CONFLICT (partition, key) DO UPDATE"
                    " SET embedding = EXCLUDED.embedding, metadata = EXCLUDED.metadata"
                ).format(live=self.tables.live, vt=self.tables.vector_type),
                (part, key, vec, _jsonb(meta)),
            )

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
        key_list, matrix = self._batch(keys, vectors)
        n = len(key_list)
        metas = [_jsonb(m) for m in metadata_list(self.name, metadata, n)]
        if partition is None or isinstance(partition, str):
            parts: list[str] = [self._partition(partition)] * n
        else:
            parts = [self._partition(p) for p in partition]
            if len(parts) != n:
                raise errors.InvalidArgument(
                    f"space {self.name!r}: {n} keys but {len(parts)} partitions"
                )
        if n == 0:
            return 0
        if len(set(zip(parts, key_list, strict=True))) != n:
            check_keys(self.name, key_list)  # raises naming the duplicate
        with translate(self.name), self.conn.transaction(), self.conn.cursor() as cur:
            self._ensure_partitions(cur, set(parts))
            rebuild = n >= BULK_REBUILD_ROWS and self._is_empty(cur)
            if rebuild:
                storage.drop_index(cur, self.tables)
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS eh_stage (idx int4, embedding vector)"
                " ON COMMIT DELETE ROWS"
            )
            # Inside a caller's transaction an earlier batch's rows are still staged.
            cur.execute("DELETE FROM eh_stage")
            with cur.copy("COPY eh_stage (idx, embedding) FROM STDIN WITH (FORMAT BINARY)") as cp:
                payload = copy_rows(matrix)
                step = 8 << 20
                for start in range(0, len(payload), step):
                    cp.write(payload[start : start + step])
                    if progress is not None:
                        progress(min(n, n * (start + step) // len(payload)))
            cur.execute(
                sql.SQL(
                    "INSERT INTO {live} (partition, key, embedding, metadata)"
                    " SELECT r.partition, r.key, s.embedding::{vt}, r.metadata"
                    " FROM unnest(%s::text[], %s::text[], %s::jsonb[])"
                    "   WITH ORDINALITY AS r(partition, key, metadata, idx)"
                    " JOIN eh_stage s USING (idx)"
                    " ON CONFLICT (partition, key) DO UPDATE"
                    " SET embedding = EXCLUDED.embedding, metadata = EXCLUDED.metadata"
                ).format(live=self.tables.live, vt=self.tables.vector_type),
                (parts, key_list, metas),
            )
            if rebuild:
                cur.execute("SET LOCAL maintenance_work_mem = '1GB'")
                storage.create_index(cur, self.tables, self.m, self.ef_construction)
                cur.execute(sql.SQL("ANALYZE {}").format(self.tables.live))
        return n

    def _batch(self, keys: Any, vectors: Any) -> tuple[list[str], np.ndarray]:
        if vectors is None:
            if isinstance(keys, Mapping):
                pairs = list(keys.items())
            else:
                try:
                    pairs = list(keys)
                except TypeError:
                    raise errors.InvalidArgument(
                        f"space {self.name!r}: multiset takes a dict, (keys, matrix) or (key, vector) pairs"
                    ) from None
            for pair in pairs:
                if not (isinstance(pair, tuple | list) and len(pair) == 2):
                    raise errors.InvalidArgument(
                        f"space {self.name!r}: expected (key, vector) pairs, got {pair!r:.60}"
                    )
            key_list = [check_key(self.name, k) for k, _ in pairs]
            if not pairs:
                return [], np.empty((0, self.dims), dtype=np.float32)
            rows = []
            for key, vec in pairs:
                row = np.asarray(vec, dtype=np.float32)
                if row.shape != (self.dims,):
                    raise errors.DimensionMismatch(
                        f"space {self.name!r} has {self.dims} dims; key {key!r} has shape {row.shape}"
                    )
                rows.append(row)
            matrix = self._matrix(rows)
        else:
            if isinstance(keys, str):
                raise errors.InvalidArgument(
                    f"space {self.name!r}: multiset(keys, vectors) takes a list of keys, not one string"
                )
            key_list = [check_key(self.name, k) for k in keys]
            if not key_list:
                return [], np.empty((0, self.dims), dtype=np.float32)
            matrix = self._matrix(vectors, rows=len(key_list))
        return key_list, matrix

    def _is_empty(self, cur: psycopg.Cursor[Any]) -> bool:
        # Only the owning role may drop and rebuild the index (and under row-level security
        # another role sees only its own rows, so "empty" would be wrong for it anyway).
        cur.execute(
            sql.SQL(
                "SELECT pg_has_role(c.relowner, 'USAGE') AND NOT EXISTS (SELECT 1 FROM {})"
                " FROM pg_class c WHERE c.oid = %s::regclass"
            ).format(self.tables.live),
            (self.tables.live.as_string(cur),),
        )
        row = cur.fetchone()
        return bool(row and row[0])

    def delete(self, key: str, partition: str | None = None) -> None:
        """Delete `key`; raises KeyNotFound if it is not there."""
        self.multidelete([key], partition=partition)

    def multidelete(self, keys: Iterable[str], partition: str | None = None) -> int:
        """Delete every key, or none if any is missing (KeyNotFound names it)."""
        key_list = check_keys(self.name, keys)
        part = self._partition(partition)
        with translate(self.name), self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "DELETE FROM {} WHERE partition = %s AND key = ANY(%s) RETURNING key"
                ).format(self.tables.live),
                (part, key_list),
            )
            deleted = {r[0] for r in cur.fetchall()}
            missing = [k for k in key_list if k not in deleted]
            if missing:
                raise errors.KeyNotFound(self.name, missing[0], part)  # rolls back the batch
        return len(deleted)

    def delete_all(self, partition: str | None = None) -> int:
        """Delete every row (of one partition, if given); returns how many."""
        cond, params = self._partition_filter(partition)
        with translate(self.name), self.conn.transaction():
            cur = self.conn.execute(
                sql.SQL("DELETE FROM {}{}").format(self.tables.live, cond), params
            )
            return cur.rowcount

    # -- reads ------------------------------------------------------------------------
    def get(self, key: str, partition: str | None = None) -> np.ndarray:
        """The embedding of `key` (in the default partition unless `partition` is given)."""
        return self.multiget([key], partition=partition)[0]

    def multiget(self, keys: Iterable[str], partition: str | None = None) -> np.ndarray:
        """A (len(keys), dims) float32 matrix, rows in the order of `keys`."""
        key_list = [check_key(self.name, k) for k in keys]
        part = self._partition(partition)
        with translate(self.name):
            rows = self.conn.execute(
                sql.SQL(
                    "SELECT key, embedding FROM {} WHERE partition = %s AND key = ANY(%s)"
                ).format(self.tables.live),
                (part, key_list),
            ).fetchall()
        return self._assemble(key_list, dict(rows), part)

    def _assemble(self, key_list: list[str], found: dict[str, Any], part: str | None) -> np.ndarray:
        out = np.empty((len(key_list), self.dims), dtype=np.float32)
        for i, key in enumerate(key_list):
            vec = found.get(key)
            if vec is None:
                raise errors.KeyNotFound(self.name, key, part)
            out[i] = _to_numpy(vec)
        return out

    def get_metadata(self, key: str, partition: str | None = None) -> dict[str, Any] | None:
        key = check_key(self.name, key)
        part = self._partition(partition)
        with translate(self.name):
            row = self.conn.execute(
                sql.SQL("SELECT metadata FROM {} WHERE partition = %s AND key = %s").format(
                    self.tables.live
                ),
                (part, key),
            ).fetchone()
        if row is None:
            raise errors.KeyNotFound(self.name, key, part)
        return row[0]  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str) or not key:
            return False
        with translate(self.name):
            row = self.conn.execute(
                sql.SQL("SELECT 1 FROM {} WHERE partition = %s AND key = %s").format(
                    self.tables.live
                ),
                (DEFAULT_PARTITION, key),
            ).fetchone()
        return row is not None

    def count(self, partition: str | None = None) -> int:
        cond, params = self._partition_filter(partition)
        with translate(self.name):
            row = self.conn.execute(
                sql.SQL("SELECT count(*) FROM {}{}").format(self.tables.live, cond), params
            ).fetchone()
        return int(row[0]) if row else 0

    def __len__(self) -> int:
        return self.count()

    def _partition_filter(self, partition: str | None) -> tuple[sql.Composable, tuple[Any, ...]]:
        if partition is None:
            return sql.SQL(""), ()
        return sql.SQL(" WHERE partition = %s"), (self._partition(partition),)

    def iterator(
        self, partition: str | None = None, *, with_metadata: bool = False
    ) -> Iterator[tuple[Any, ...]]:
        """Yield `(key, vector)` pairs (all partitions unless one is given), in key order.

        Pages through the table by key, so no transaction stays open between pages.
        """
        part = None if partition is None else self._partition(partition)
        return self._pages(self.tables.live, part, with_metadata, version=None)

    def _pages(
        self, source: sql.Composable, part: str | None, with_metadata: bool, version: int | None
    ) -> Iterator[Any]:
        after: tuple[str, str] = ("", "")
        conds = [sql.SQL("(partition, key) > (%s, %s)")]
        base_params: list[Any] = []
        if part is not None:
            conds.append(sql.SQL("partition = %s"))
            base_params.append(part)
        query = sql.SQL(
            "SELECT partition, key, embedding, metadata FROM {} WHERE {}"
            " ORDER BY partition, key LIMIT {}"
        ).format(source, sql.SQL(" AND ").join(conds), sql.Literal(ITERATOR_PAGE))
        while True:
            with translate(self.name):
                rows = self.conn.execute(query, [*after, *base_params]).fetchall()
            for _part, k, emb, meta in rows:
                yield (k, _to_numpy(emb), meta) if with_metadata else (k, _to_numpy(emb))
            if len(rows) < ITERATOR_PAGE:
                return
            after = (rows[-1][0], rows[-1][1])

    def __iter__(self) -> Iterator[Any]:
        return self.iterator()

    # -- nearest neighbours -----------------------------------------------------------
    def nearest_neighbors(
        self,
        num: int,
        key: str | None = None,
        vector: Any = None,
        partition: str | None = None,
        where: Mapping[str, Any] | None = None,
        version: int | str | None = None,
        *,
        ef_search: int | None = None,
        key_partition: str | None = None,
    ) -> list[Neighbor]:
        """The `num` nearest embeddings to `key`'s vector or to `vector`, closest first.

        With `key`, the key itself is left out. `partition` searches one partition's
        own HNSW index; without it, all partitions are searched and merged. The key is
        looked up in `key_partition` (default: `partition`, else the default partition).
        """
        results = self.multi_nearest_neighbors(
            num,
            keys=None if key is None else [key],
            vectors=None if vector is None else self._vector(vector).reshape(1, -1),
            partition=partition,
            where=where,
            version=version,
            ef_search=ef_search,
            key_partition=key_partition,
            _single=(key is None) == (vector is None),
        )
        return results[0]

    def multi_nearest_neighbors(
        self,
        num: int,
        keys: Sequence[str] | None = None,
        vectors: Any = None,
        partition: str | None = None,
        where: Mapping[str, Any] | None = None,
        version: int | str | None = None,
        *,
        ef_search: int | None = None,
        key_partition: str | None = None,
        _single: bool = False,
    ) -> list[list[Neighbor]]:
        """Nearest neighbours of many keys or vectors, answered in one round trip."""
        if (keys is None) == (vectors is None):
            what = "both" if keys is not None else "neither"
            raise errors.InvalidArgument(
                f"space {self.name!r}: pass exactly one of key(s) or vector(s), got {what}"
            )
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise errors.InvalidArgument(
                f"space {self.name!r}: num must be a positive integer, not {num!r}"
            )
        ef = self.ef_search if ef_search is None else ef_search
        if isinstance(ef, bool) or not isinstance(ef, int) or not 1 <= ef <= 1000:
            raise errors.InvalidArgument(
                f"space {self.name!r}: ef_search must be from 1 to 1000, not {ef!r}"
            )
        if version is not None:
            from .versions import search_at_version

            return search_at_version(
                self, num, keys, vectors, partition, where, version, ef, key_partition
            )
        part = None if partition is None else self._partition(partition)
        matrix, exclude, conditions, params = self._search_inputs(
            num, keys, vectors, part, where, key_partition, self
        )
        iterative = bool(where)
        query = knn_query(self.tables, conditions=conditions)
        # pgvector's HNSW scan yields at most ef_search rows unless it scans iteratively.
        ef = min(EF_SEARCH_MAX, max(ef, params["k"]))
        iterative = iterative or params["k"] > ef
        out: list[list[Neighbor]] = []
        short: list[int] = []
        with translate(self.name):
            found = run_knn(
                self.conn, self.tables, conditions, [{**params, "q": q} for q in matrix], ef,
                iterative,
            )
        for i, (rows, skip) in enumerate(zip(found, exclude, strict=True)):
            if len(rows) < params["k"]:
                short.append(i)
            out.append(_neighbors(rows, skip, num))
        if short:
            # The index gave fewer rows than asked: the filter is selective (an iterative
            # scan stops after hnsw.max_scan_tuples) or the rows are few. Answer exactly.
            if part is not None and part not in self._known_partitions:
                with translate(self.name), self.conn.cursor() as cur:
                    self._ensure_partitions(cur, [part], create=False)
            with translate(self.name), self.conn.pipeline(), self.conn.transaction():
                self.conn.execute("SET LOCAL enable_indexscan = off")
                cursors = [self.conn.execute(query, {**params, "q": matrix[i]}) for i in short]
                for i, cur in zip(short, cursors, strict=True):
                    out[i] = _neighbors(cur.fetchall(), exclude[i], num)
        return out

    def _search_inputs(
        self,
        num: int,
        keys: Sequence[str] | None,
        vectors: Any,
        part: str | None,
        where: Mapping[str, Any] | None,
        key_partition: str | None,
        reader: Any,
    ) -> tuple[np.ndarray, list[tuple[str, str] | None], list[sql.Composable], dict[str, Any]]:
        """Query vectors, the (partition, key) each query leaves out, and the WHERE conditions
        with their parameters: shared by working-state and versioned searches. `reader`
        (the space or a version of it) looks the query keys up."""
        exclude: list[tuple[str, str] | None]
        if keys is not None:
            if isinstance(keys, str):
                raise errors.InvalidArgument(f"space {self.name!r}: keys must be a list of keys")
            key_list = [check_key(self.name, k) for k in keys]
            key_part = self._partition(part if key_partition is None else key_partition)
            matrix = reader.multiget(key_list, partition=key_part)
            exclude = [(key_part, k) for k in key_list]
        else:
            matrix = self._matrix(vectors)
            exclude = [None] * len(matrix)
        conditions: list[sql.Composable] = []
        params: dict[str, Any] = {"k": num + (1 if keys is not None else 0)}
        if part is not None:
            conditions.append(sql.SQL("partition = %(part)s"))
            params["part"] = part
        if where:
            from .filters import compile_where

            cond, fparams = compile_where(self.name, where)
            conditions.append(cond)
            params.update(fparams)
        return matrix, exclude, conditions, params

    # -- partitions -------------------------------------------------------------------
    def create_partition(self, name: str) -> None:
        """A new list partition with its own HNSW index."""
        validate_name("partition", name)
        with translate(self.name), self.conn.transaction(), self.conn.cursor() as cur:
            self._refuse_if_frozen(cur)
            cur.execute(
                "SELECT 1 FROM embeddinghub.partitions WHERE space_id = %s AND name = %s",
                (self.id, name),
            )
            if cur.fetchone():
                raise errors.InvalidArgument(
                    f"partition {name!r} already exists in space {self.name!r}"
                )
            self._create_partition(cur, name)

    def _refuse_if_frozen(self, cur: psycopg.Cursor[Any]) -> None:
        """Partition DDL is no row write, so the row trigger cannot refuse it: check here,
        holding the writers' lock so a concurrent freeze() waits for this transaction."""
        cur.execute("SELECT embeddinghub.lock_space_for_write(%s)", (self.id,))
        row = cur.fetchone()
        if row and row[0]:
            raise errors.SpaceFrozen(self.name, "it is frozen: partitions cannot change")

    def _create_partition(self, cur: psycopg.Cursor[Any], name: str) -> None:
        from .hub import _add_partition

        _add_partition(cur, self.tables, name)
        self._known_partitions.add(name)

    def list_partitions(self) -> list[dict[str, Any]]:
        """Partitions with their row counts."""
        with translate(self.name), self.conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT p.name, coalesce(c.rows, 0), p.created_at"
                    " FROM embeddinghub.partitions p"
                    " LEFT JOIN (SELECT partition, count(*) AS rows FROM {} GROUP BY partition) c"
                    "   ON c.partition = p.name"
                    " WHERE p.space_id = %s ORDER BY p.name"
                ).format(self.tables.live),
                (self.id,),
            )
            return [{"name": n, "rows": int(r), "created_at": c} for n, r, c in cur.fetchall()]

    def drop_partition(self, name: str) -> None:
        """Drop a partition, its rows and its index. Its rows stay readable in old versions."""
        validate_name("partition", name)
        if name == DEFAULT_PARTITION:  # writes without partition= need it
            raise errors.InvalidArgument(
                f"space {self.name!r}: the default partition cannot be dropped;"
                " use delete_all(partition='default') to empty it"
            )
        with translate(self.name), self.conn.transaction(), self.conn.cursor() as cur:
            self._refuse_if_frozen(cur)
            cur.execute(
                "DELETE FROM embeddinghub.partitions WHERE space_id = %s AND name = %s RETURNING id",
                (self.id, name),
            )
            row = cur.fetchone()
            if row is None:
                raise errors.PartitionNotFound(self.name, name)
            # Delete through the row trigger first, so snapshots keep the rows in history.
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE partition = %s").format(self.tables.live), (name,)
            )
            cur.execute(sql.SQL("DROP TABLE {}").format(self.tables.partition(row[0])))
        self._known_partitions.discard(name)

    # -- index ------------------------------------------------------------------------
    def create_index(self, m: int = 16, ef_construction: int = 64) -> None:
        """Rebuild the HNSW index (every partition's) with new parameters."""
        from .hub import _check_index_params

        _check_index_params(self.name, m, ef_construction, self.ef_search)
        with translate(self.name), self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute("SET LOCAL maintenance_work_mem = '1GB'")
            storage.drop_index(cur, self.tables)
            storage.create_index(cur, self.tables, m, ef_construction)
            cur.execute(
                "UPDATE embeddinghub.spaces SET hnsw_m = %s, hnsw_ef_construction = %s WHERE id = %s",
                (m, ef_construction, self.id),
            )
        self.m, self.ef_construction = m, ef_construction

    def set_ef_search(self, ef_search: int) -> None:
        """The space's default `ef_search` for every search that does not pass one."""
        from .hub import _check_index_params

        _check_index_params(self.name, self.m, self.ef_construction, ef_search)
        with translate(self.name):
            self.conn.execute(
                "UPDATE embeddinghub.spaces SET ef_search = %s WHERE id = %s", (ef_search, self.id)
            )
        self.ef_search = ef_search

    def tune(
        self,
        target_recall: float = 0.95,
        *,
        k: int = 10,
        sample: int = 100,
        queries: Any = None,
        apply: bool = True,
    ) -> Any:
        """Measure recall@k against exact search and set the smallest `ef_search` that
        reaches `target_recall` (see embeddinghub.tuning). Returns a TuneResult."""
        from .tuning import tune

        return tune(self, target_recall, k=k, sample=sample, queries=queries, apply=apply)

    def freeze(self) -> None:
        """Make the space immutable; the database refuses every later write, raw SQL too."""
        with translate(self.name):  # waits for running writers (sql/versions.sql)
            self.conn.execute("SELECT embeddinghub.freeze(%s)", (self.name,))

    # -- averaging and recommendations (recommend.py) -----------------------------------
    def average(
        self,
        keys: Sequence[str],
        weights: Sequence[float] | None = None,
        partition: str | None = None,
    ) -> np.ndarray:
        """The (weighted) mean of the keys' embeddings."""
        from .recommend import average

        return average(self, keys, weights, partition)

    def centroid(self, partition: str | None = None) -> np.ndarray:
        """The mean of every embedding in the space (or one partition)."""
        from .recommend import centroid

        return centroid(self, partition)

    def recommend(
        self,
        num: int,
        positive: Sequence[str] = (),
        negative: Sequence[str] = (),
        partition: str | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> list[Neighbor]:
        """Neighbours of the positives' mean, pushed away from the negatives; inputs excluded."""
        from .recommend import recommend

        return recommend(self, num, positive, negative, partition, where)

    # -- versions (versions.py) ---------------------------------------------------------
    def snapshot(self, tag: str | None = None, note: str | None = None) -> Any:
        """Record the working state as a new version, in O(1): no data is copied."""
        from .versions import snapshot

        return snapshot(self, tag, note)

    def versions(self) -> list[Any]:
        from .versions import list_versions

        return list_versions(self)

    def as_of(self, version: int | str) -> Any:
        """A read-only view of the space as it was at `version` (number or tag)."""
        from .versions import AsOf

        return AsOf(self, version)

    def diff(self, a: int | str, b: int | str | None = None) -> Any:
        """Keys added, removed and changed from version `a` to `b` (default: working state)."""
        from .versions import diff

        return diff(self, a, b)

    def rollback(self, version: int | str) -> Any:
        """Make the working state equal to `version`, recorded as a new version."""
        from .versions import rollback

        return rollback(self, version)

    def prune_versions(self, keep: int) -> int:
        """Drop history that none of the newest `keep` versions needs; returns rows freed."""
        from .versions import prune_versions

        return prune_versions(self, keep)

    # -- access control (acl.py) --------------------------------------------------------
    def grant(self, role: str, privilege: str, partition: str | None = None) -> None:
        from .acl import grant

        grant(self, role, privilege, partition)

    def revoke(self, role: str, privilege: str | None = None, partition: str | None = None) -> None:
        from .acl import revoke

        revoke(self, role, privilege, partition)

    def grants(self) -> list[Any]:
        from .acl import list_grants

        return list_grants(self)

    def table(self) -> Any:
        """The space's live table as a SQLAlchemy `Table` (pgvector `Vector` column)."""
        from .models import space_table

        return space_table(self)


def _neighbors(rows: list[Any], skip: tuple[str, str] | None, num: int) -> list[Neighbor]:
    """Rows of `knn_query` as Neighbors in exact distance order, without the query's own key.

    Sorted here because a relaxed iterative scan may return rows slightly out of order.
    """
    hits = [Neighbor(k, float(d), p, m) for k, p, d, m in rows if skip is None or (p, k) != skip]
    hits.sort(key=lambda h: h.distance)
    return hits[:num]


def _jsonb(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value.astype(np.float32, copy=False)
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)
