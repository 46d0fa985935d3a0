"""SQLAlchemy 2 models of the catalog, and any space's table as a SQLAlchemy `Table`.

For composing your own queries next to the Python API::

    from sqlalchemy import select
    from embeddinghub import models

    engine = models.engine(hub.dsn)
    items = hub.get_space("items").table()            # Table with a pgvector Vector column
    stmt = (select(items.c.key, items.c.embedding.cosine_distance(q).label("distance"))
            .order_by(items.c.embedding.cosine_distance(q)).limit(10))
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()

Queries run as whoever the engine connects as, so row-level security applies to them as to
any SQL. The catalog is owned by the Alembic migrations: these models describe it for
querying (`select(SpaceRecord)`), they are not used to create it. The record classes are
named `...Record` so they do not clash with `embeddinghub.Space`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy
from pgvector.sqlalchemy import HALFVEC, VECTOR
from sqlalchemy import (
    REAL,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .catalog import SpaceHandle, SupportsHandle, handle_of
from .storage import DATA_SCHEMA

__all__ = [
    "CATALOG_SCHEMA",
    "Base",
    "GrantRecord",
    "PartitionRecord",
    "SpaceRecord",
    "VersionRecord",
    "engine",
    "history_table",
    "space_table",
]

CATALOG_SCHEMA = "embeddinghub"


class Base(DeclarativeBase):
    metadata = MetaData(schema=CATALOG_SCHEMA)


# Postgres `name` columns (role names) are mapped as Text: they compare and print alike.
class SpaceRecord(Base):
    """A row of `embeddinghub.spaces`."""

    __tablename__ = "spaces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    dims: Mapped[int] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(Text)
    dtype: Mapped[str] = mapped_column(Text)
    frozen: Mapped[bool] = mapped_column(Boolean, default=False)
    head_version: Mapped[int] = mapped_column(BigInteger)
    hnsw_m: Mapped[int] = mapped_column(Integer)
    hnsw_ef_construction: Mapped[int] = mapped_column(Integer)
    ef_search: Mapped[int] = mapped_column(Integer)
    auto_partition: Mapped[bool] = mapped_column(Boolean)
    description: Mapped[str | None] = mapped_column(Text)
    target_recall: Mapped[float | None] = mapped_column(REAL)
    index_kind: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    partitions: Mapped[list[PartitionRecord]] = relationship(
        back_populates="space", order_by="PartitionRecord.name", viewonly=True
    )
    versions: Mapped[list[VersionRecord]] = relationship(
        back_populates="space", order_by="VersionRecord.number", viewonly=True
    )
    grants: Mapped[list[GrantRecord]] = relationship(
        back_populates="space", order_by="GrantRecord.id", viewonly=True
    )

    def __repr__(self) -> str:
        return f"<SpaceRecord {self.name!r} dims={self.dims} metric={self.metric}>"


class PartitionRecord(Base):
    """A row of `embeddinghub.partitions`."""

    __tablename__ = "partitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    space: Mapped[SpaceRecord] = relationship(back_populates="partitions", viewonly=True)

    def __repr__(self) -> str:
        return f"<PartitionRecord {self.name!r} of space {self.space_id}>"


class VersionRecord(Base):
    """A row of `embeddinghub.versions`: one snapshot of a space."""

    __tablename__ = "versions"

    space_id: Mapped[int] = mapped_column(
        ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tag: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(Text)
    row_count: Mapped[int | None] = mapped_column(BigInteger)

    space: Mapped[SpaceRecord] = relationship(back_populates="versions", viewonly=True)

    def __repr__(self) -> str:
        return f"<VersionRecord {self.number} of space {self.space_id} tag={self.tag!r}>"


class GrantRecord(Base):
    """A row of `embeddinghub.grants`. `partition` None means the whole space."""

    __tablename__ = "grants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"))
    partition: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    privilege: Mapped[str] = mapped_column(Text)
    granted_by: Mapped[str] = mapped_column(Text)
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    space: Mapped[SpaceRecord] = relationship(back_populates="grants", viewonly=True)

    def __repr__(self) -> str:
        scope = "all" if self.partition is None else repr(self.partition)
        return f"<GrantRecord {self.privilege} to {self.role!r} on space {self.space_id} ({scope})>"


# -- space tables ------------------------------------------------------------------------------
def _vector_type(h: SpaceHandle) -> Any:
    return HALFVEC(h.dims) if h.dtype == "float16" else VECTOR(h.dims)


def space_table(space: SpaceHandle | SupportsHandle, metadata: MetaData | None = None) -> Table:
    """The live table of `space` (all partitions) as a SQLAlchemy `Table`.

    `embedding` is pgvector's `VECTOR(dims)` (or `HALFVEC(dims)` for float16 spaces), so
    `.l2_distance(q)`, `.cosine_distance(q)` and `.max_inner_product(q)` order by the
    space's HNSW index when they match its metric. Pass `metadata` to collect tables in one
    MetaData; by default each call gets its own.
    """
    h = handle_of(space)
    return Table(
        h.tables.live_name,
        metadata if metadata is not None else MetaData(),
        Column("partition", Text, primary_key=True),
        Column("key", Text, primary_key=True),
        Column("embedding", _vector_type(h), nullable=False),
        Column("metadata", JSONB),
        Column("version", BigInteger, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        schema=DATA_SCHEMA,
        comment=f"embeddinghub space {h.name!r}",
    )


def history_table(space: SpaceHandle | SupportsHandle, metadata: MetaData | None = None) -> Table:
    """The history table of `space`: old row images valid for versions [valid_from, valid_to)."""
    h = handle_of(space)
    return Table(
        h.tables.history_name,
        metadata if metadata is not None else MetaData(),
        Column("partition", Text, nullable=False),
        Column("key", Text, nullable=False),
        Column("embedding", _vector_type(h), nullable=False),
        Column("metadata", JSONB),
        Column("valid_from", BigInteger, nullable=False),
        Column("valid_to", BigInteger, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Column("partition_id", Integer),  # the partition's identity (the history's partition key)
        schema=DATA_SCHEMA,
        comment=f"embeddinghub space {h.name!r}: history",
    )


def engine(dsn: str, **kwargs: Any) -> sqlalchemy.Engine:
    """A SQLAlchemy engine (psycopg 3) for a DSN in any libpq form, e.g. `hub.dsn`."""
    return sqlalchemy.create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(dsn), **kwargs
    )
