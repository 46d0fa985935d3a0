"""Nearest-neighbour queries: result type and SQL composition."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from .storage import SpaceTables

__all__ = ["Neighbor"]


@dataclass(frozen=True)
class Neighbor:
    """One search hit. `distance` is pgvector's: L2, cosine distance, or negative inner product."""

    key: str
    distance: float
    partition: str = "default"
    metadata: dict[str, Any] | None = field(default=None, compare=False)


def knn_query(
    t: SpaceTables,
    *,
    source: sql.Composable | None = None,
    conditions: list[sql.Composable] | None = None,
) -> sql.Composed:
    """`SELECT key, partition, distance, metadata ... ORDER BY distance LIMIT %(k)s`.

    The query vector is the `%(q)s` parameter, cast to the space's vector type so
    the HNSW index on `embedding` serves the ORDER BY.
    """
    where = sql.SQL("")
    if conditions:
        where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)
    distance = sql.SQL("embedding {op} %(q)s::{vt}").format(op=t.operator, vt=t.vector_type)
    return sql.SQL(
        "SELECT key, partition, {distance} AS distance, metadata FROM {source}{where}"
        " ORDER BY {distance} LIMIT %(k)s"
    ).format(distance=distance, source=source or t.live, where=where)
