"""DDL of a space's tables. Every name here derives from the space id, never user text.

Per space, in schema `embeddinghub_data`:
  s<id>            live rows, PARTITION BY LIST (partition), primary key (partition, key)
  s<id>_p<pid>     one list partition per named partition, with its own HNSW index
  s<id>_history    old row images with [valid_from, valid_to) version bounds,
                   PARTITION BY LIST (partition_id):
  s<id>_history_p<pid>   the images of partition <pid> (kept when the partition is dropped)
  s<id>_history_default  images whose partition is not known (from before partitioning)

History is partitioned by partition identity, like the live table by name, so a partition
grant's policy prunes every other partition's history at plan time: not even EXPLAIN
ANALYZE can count rows it may not see, and a partition re-created under an old name (a
new tenant) shares nothing with its predecessor's history.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from psycopg import Cursor, sql

DATA_SCHEMA = "embeddinghub_data"

OPCLASS = {
    ("float32", "l2"): "vector_l2_ops",
    ("float32", "cosine"): "vector_cosine_ops",
    ("float32", "ip"): "vector_ip_ops",
    ("float16", "l2"): "halfvec_l2_ops",
    ("float16", "cosine"): "halfvec_cosine_ops",
    ("float16", "ip"): "halfvec_ip_ops",
}
OPERATOR = {"l2": "<->", "cosine": "<=>", "ip": "<#>"}
VECTOR_TYPE = {"float32": "vector", "float16": "halfvec"}
MAX_INDEXED_DIMS = {"float32": 2000, "float16": 4000}
# The HNSW index of a space: over the stored vectors, over their half-precision copies (half
# the size, float32 spaces only), or over their binary quantization (1 bit a dimension,
# searched by Hamming distance, then re-ranked by the exact distance).
INDEX_KINDS = ("hnsw", "hnsw_halfvec", "hnsw_bit")
RERANK = 4  # a binary-quantized search fetches RERANK * k candidates to re-rank exactly


@dataclass(frozen=True)
class SpaceTables:
    """Quoted SQL names of one space's objects."""

    space_id: int
    dims: int
    metric: str
    dtype: str
    index_kind: str = "hnsw"

    @property
    def live_name(self) -> str:
        """The live table's name inside DATA_SCHEMA (the one place the naming is spelt)."""
        return f"s{self.space_id}"

    @property
    def history_name(self) -> str:
        return f"s{self.space_id}_history"

    @functools.cached_property
    def live(self) -> sql.Identifier:  # cached: every search names it (frozen: fields only)
        return sql.Identifier(DATA_SCHEMA, self.live_name)

    @property
    def history(self) -> sql.Identifier:
        return sql.Identifier(DATA_SCHEMA, self.history_name)

    def history_partition(self, partition_id: int) -> sql.Identifier:
        return sql.Identifier(DATA_SCHEMA, f"s{self.space_id}_history_p{partition_id}")

    @property
    def history_default(self) -> sql.Identifier:
        return sql.Identifier(DATA_SCHEMA, f"s{self.space_id}_history_default")

    def partition(self, partition_id: int) -> sql.Identifier:
        return sql.Identifier(DATA_SCHEMA, f"s{self.space_id}_p{partition_id}")

    @property
    def index_name(self) -> sql.Identifier:
        return sql.Identifier(f"s{self.space_id}_hnsw")

    @property
    def metadata_index_name(self) -> sql.Identifier:
        return sql.Identifier(f"s{self.space_id}_metadata")

    @property
    def qualified_metadata_index(self) -> sql.Identifier:
        return sql.Identifier(DATA_SCHEMA, f"s{self.space_id}_metadata")

    @property
    def qualified_index(self) -> sql.Identifier:
        return sql.Identifier(DATA_SCHEMA, f"s{self.space_id}_hnsw")

    @property
    def vector_type(self) -> sql.SQL:
        return sql.SQL(VECTOR_TYPE[self.dtype])

    @property
    def column_type(self) -> sql.Composable:
        return sql.SQL("{}({})").format(self.vector_type, sql.Literal(self.dims))

    @property
    def operator(self) -> sql.SQL:
        return sql.SQL(OPERATOR[self.metric])

    @property
    def opclass(self) -> sql.SQL:
        if self.index_kind == "hnsw_halfvec":
            return sql.SQL(OPCLASS[("float16", self.metric)])
        if self.index_kind == "hnsw_bit":
            return sql.SQL("bit_hamming_ops")
        return sql.SQL(OPCLASS[(self.dtype, self.metric)])

    @property
    def indexed(self) -> sql.Composable:
        """What the HNSW index is built over: the column, or an expression of it."""
        d = sql.Literal(self.dims)
        if self.index_kind == "hnsw_halfvec":
            return sql.SQL("(embedding::halfvec({}))").format(d)
        if self.index_kind == "hnsw_bit":
            return sql.SQL("(binary_quantize(embedding)::bit({}))").format(d)
        return sql.SQL("embedding")

    def distance(self) -> sql.Composable:
        """The exact distance to the query vector `%(q)s`."""
        return sql.SQL("embedding {} %(q)s::{}").format(self.operator, self.vector_type)

    @property
    def index_order_is_exact(self) -> bool:
        """Whether an index scan yields rows in exact distance order (a halfvec index orders
        by the halfvec distance; binary-quantized candidates are re-ranked exactly)."""
        return self.index_kind != "hnsw_halfvec"

    def index_order(self) -> sql.Composable:
        """The ORDER BY that the space's HNSW index serves (approximate for halfvec and bit)."""
        d = sql.Literal(self.dims)
        if self.index_kind == "hnsw_halfvec":
            return sql.SQL("(embedding::halfvec({d})) {op} %(q)s::halfvec({d})").format(d=d, op=self.operator)
        if self.index_kind == "hnsw_bit":
            return sql.SQL("(binary_quantize(embedding)::bit({d})) <~> binary_quantize(%(q)s::{vt})").format(
                d=d, vt=self.vector_type
            )
        return self.distance()

    def candidates(self, k: int) -> int:
        """How many rows the index scan must yield for an answer of k."""
        return k * RERANK if self.index_kind == "hnsw_bit" else k


def create_space_tables(cur: Cursor[Any], t: SpaceTables) -> None:
    cur.execute(
        sql.SQL(
            """
            CREATE TABLE {live} (
                partition  text NOT NULL,
                key        text NOT NULL,
                embedding  {vtype} NOT NULL,
                metadata   jsonb,
                version    bigint NOT NULL DEFAULT 0,
                updated_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (partition, key)
            ) PARTITION BY LIST (partition)
            """
        ).format(live=t.live, vtype=t.column_type)
    )
    cur.execute(
        sql.SQL(
            """
            CREATE TABLE {history} (
                partition  text NOT NULL,
                key        text NOT NULL,
                embedding  {vtype} NOT NULL,
                metadata   jsonb,
                valid_from bigint NOT NULL,
                valid_to   bigint NOT NULL,
                updated_at timestamptz NOT NULL,
                partition_id integer
            ) PARTITION BY LIST (partition_id)
            """
        ).format(history=t.history, vtype=t.column_type)
    )
    cur.execute(sql.SQL("CREATE INDEX ON {} (valid_to, valid_from)").format(t.history))
    cur.execute(sql.SQL("CREATE INDEX ON {} (partition, key)").format(t.history))
    cur.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(t.history_default, t.history))
    # Rows written since version N are `version > N`: diff and rollback cost O(changes).
    cur.execute(sql.SQL("CREATE INDEX ON {} (version)").format(t.live))
    cur.execute(
        sql.SQL(
            "CREATE TRIGGER row_write BEFORE INSERT OR UPDATE OR DELETE ON {} "
            "FOR EACH ROW EXECUTE FUNCTION embeddinghub.on_row_write({})"
        ).format(t.live, sql.Literal(str(t.space_id)))
    )
    create_write_lock_trigger(cur, t, t.live)
    for table in (t.live, t.history, t.history_default):
        refuse_truncate(cur, table)


def refuse_truncate(cur: Cursor[Any], table: sql.Identifier) -> None:
    """TRUNCATE would bypass the history and the freeze (statement triggers are not
    inherited: each table gets its own)."""
    cur.execute(
        sql.SQL(
            "CREATE TRIGGER no_truncate BEFORE TRUNCATE ON {} "
            "FOR EACH STATEMENT EXECUTE FUNCTION embeddinghub.on_truncate()"
        ).format(table)
    )


def create_write_lock_trigger(cur: Cursor[Any], t: SpaceTables, table: sql.Identifier) -> None:
    """Writers take the space lock before locking rows (see sql/triggers.sql)."""
    cur.execute(
        sql.SQL(
            "CREATE TRIGGER write_lock BEFORE INSERT OR UPDATE OR DELETE ON {} "
            "FOR EACH STATEMENT EXECUTE FUNCTION embeddinghub.on_write_statement({})"
        ).format(table, sql.Literal(str(t.space_id)))
    )


def create_partition_table(cur: Cursor[Any], t: SpaceTables, partition_id: int, name: str) -> None:
    """A list partition for `name`, which inherits the parent's HNSW index and row trigger,
    and the history partition for its old row images."""
    table = t.partition(partition_id)
    cur.execute(
        sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES IN ({})").format(
            table, t.live, sql.Literal(name)
        )
    )
    create_write_lock_trigger(cur, t, table)  # statement triggers are not inherited
    refuse_truncate(cur, table)
    history = t.history_partition(partition_id)
    cur.execute(
        sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES IN ({})").format(
            history, t.history, sql.Literal(partition_id)
        )
    )
    refuse_truncate(cur, history)


def create_index(cur: Cursor[Any], t: SpaceTables, m: int, ef_construction: int) -> None:
    """One HNSW index on the parent: Postgres builds one per partition (the sub-indices).

    Also (re)creates the metadata GIN index, which `drop_index` drops alongside.
    """
    cur.execute(
        sql.SQL(
            "CREATE INDEX {name} ON {live} USING hnsw ({indexed} {opclass}) "
            "WITH (m = {m}, ef_construction = {efc})"
        ).format(
            name=t.index_name,
            live=t.live,
            indexed=t.indexed,
            opclass=t.opclass,
            m=sql.Literal(m),
            efc=sql.Literal(ef_construction),
        )
    )
    create_metadata_index(cur, t)


def create_metadata_index(cur: Cursor[Any], t: SpaceTables) -> None:
    """GIN on `metadata` (one per partition). Metadata filters compile equality and `$in`
    to `metadata @> ...`, so the planner answers a selective filter exactly from a bitmap
    scan instead of filtering an HNSW scan. Built after a bulk load it costs little."""
    cur.execute(
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gin (metadata jsonb_path_ops)").format(
            t.metadata_index_name, t.live
        )
    )


def drop_index(cur: Cursor[Any], t: SpaceTables) -> None:
    """Drop the HNSW index, and the metadata index with it: `create_index` rebuilds both
    (a bulk load drops them first; building them afterwards is much faster)."""
    cur.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(t.qualified_index))
    cur.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(t.qualified_metadata_index))


def drop_space_tables(cur: Cursor[Any], t: SpaceTables) -> None:
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}, {} CASCADE").format(t.live, t.history))
