"""Averaging, centroids and recommendations from positive/negative examples.

Normalisation, the same everywhere:
- l2 and ip spaces: `average` is the plain (weighted) arithmetic mean of the stored
  vectors and `centroid` the mean of every row; nothing is normalised (in an ip space the
  length of a vector is part of its score).
- cosine spaces: only directions matter, so every input vector is scaled to unit length
  first, and the (weighted) mean is scaled to unit length again: the result is the
  normalised mean direction (a "spherical mean"). `average`, `centroid` and `recommend`
  all follow this rule, so `centroid()` equals `average(all keys)`. A zero vector has no
  direction and adds nothing; if the directions cancel out, InvalidArgument says so.

Recommendation query (Rocchio-style, as in Qdrant's "average vector" strategy):
    query = p + NEGATIVE_WEIGHT * (p - n)
where p is `average(positive)` and n is `average(negative)`: start at the positives' mean
and step away from the negatives' mean. Without negatives, query = p. For cosine spaces
p and n are unit vectors and the query is normalised again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from psycopg import sql

from . import catalog, errors, rows, search
from .catalog import SpaceHandle, SupportsHandle, handle_of
from .db import translate
from .search import Neighbor
from .vectors import check_key

__all__ = ["NEGATIVE_WEIGHT", "average", "centroid", "recommend"]

NEGATIVE_WEIGHT = 0.5  # how far the query steps away from the negatives' mean
_TINY = 1e-12  # below this length a mean has no direction


def average(
    space: SpaceHandle | SupportsHandle,
    keys: Sequence[str],
    weights: Sequence[float] | None = None,
    partition: str | None = None,
) -> np.ndarray:
    """The (weighted) mean of the keys' embeddings (read from `partition`, default 'default').

    Weights must be finite, non-negative, one per key, and not all zero. Cosine spaces
    return the unit-length mean direction (see the module docstring). Computed in float64
    from the stored vectors, returned as float32.
    """
    h = handle_of(space)
    if isinstance(keys, str) or not isinstance(keys, Sequence):
        raise errors.InvalidArgument(f"space {h.name!r}: average takes a list of keys")
    if not keys:
        raise errors.InvalidArgument(f"space {h.name!r}: average of no keys")
    w = _weights(h.name, weights, len(keys))
    matrix = rows.multiget(h, rows.live(h), [check_key(h.name, k) for k in keys], partition)
    return _mean(h, matrix.astype(np.float64), w, what=f"average of {len(keys)} keys")


def centroid(space: SpaceHandle | SupportsHandle, partition: str | None = None) -> np.ndarray:
    """The mean of every embedding in the space, or in one partition, computed in SQL.

    pgvector's `avg` accumulates in double precision; float16 spaces are averaged as
    `vector` so the result is not rounded to half precision. Cosine spaces average unit
    vectors and return the unit-length result.
    """
    h = handle_of(space)
    part = None if partition is None else catalog.partition_name(partition)
    vec = sql.SQL("{}::vector").format(sql.Identifier("embedding"))
    if h.metric == "cosine":
        vec = sql.SQL("l2_normalize({})").format(vec)
    where: sql.Composable = sql.SQL("")
    params: tuple[str, ...] = ()
    with translate(h.name):
        if part is not None:
            where, params = sql.SQL(" WHERE partition = %s"), (part,)
            with h.conn.cursor() as cur:
                catalog.ensure_partitions(h, cur, [part], create=False)
        row = h.conn.execute(
            sql.SQL("SELECT avg({}) FROM {}{}").format(vec, h.tables.live, where), params
        ).fetchone()
    if row is None or row[0] is None:
        scope = f" partition {part!r}" if part is not None else ""
        raise errors.InvalidArgument(f"space {h.name!r}{scope} is empty: it has no centroid")
    mean = np.asarray(row[0].to_numpy(), dtype=np.float64)
    if h.metric == "cosine":
        mean = _unit(h.name, mean, "centroid")
    return mean.astype(np.float32)


def recommend(
    space: SpaceHandle | SupportsHandle,
    num: int,
    positive: Sequence[str],
    negative: Sequence[str] = (),
    partition: str | None = None,
    where: Mapping[str, Any] | None = None,
) -> list[Neighbor]:
    """The `num` nearest neighbours of `p + NEGATIVE_WEIGHT * (p - n)` (see module docstring).

    Example keys are read from `partition` (default 'default'); the search covers that
    partition, or every partition when `partition` is None, and never returns an example.
    """
    h = handle_of(space)
    for name, keys in (("positive", positive), ("negative", negative)):
        if isinstance(keys, str) or not isinstance(keys, Sequence):
            raise errors.InvalidArgument(
                f"space {h.name!r}: recommend({name}=...) takes a list of keys"
            )
    if not positive:
        raise errors.InvalidArgument(
            f"space {h.name!r}: recommend needs at least one positive example"
        )
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise errors.InvalidArgument(
            f"space {h.name!r}: num must be a positive integer, not {num!r}"
        )
    key_part = catalog.partition_name(partition)
    query = average(h, positive, partition=key_part).astype(np.float64)
    if negative:
        away = average(h, negative, partition=key_part).astype(np.float64)
        query = query + NEGATIVE_WEIGHT * (query - away)
        if h.metric == "cosine":
            query = _unit(h.name, query, "recommendation query")
    examples = {(key_part, k) for k in (*positive, *negative)}
    # Ask for enough extra rows that dropping the examples still leaves `num`.
    (hits,) = search.search(
        h, rows.live(h), num + len(examples), vectors=query.astype(np.float32).reshape(1, -1),
        partition=partition, where=where,
    )
    return [h for h in hits if (h.partition, h.key) not in examples][:num]


def _weights(space: str, weights: Sequence[float] | None, n: int) -> np.ndarray | None:
    if weights is None:
        return None
    if isinstance(weights, str | bytes | Mapping):
        raise errors.InvalidArgument(f"space {space!r}: weights must be a list of numbers")
    items = list(weights)
    if len(items) != n:
        raise errors.InvalidArgument(f"space {space!r}: {n} keys but {len(items)} weights")
    for i, x in enumerate(items):
        if isinstance(x, bool) or not isinstance(x, int | float | np.integer | np.floating):
            raise errors.InvalidArgument(f"space {space!r}: weight #{i} ({x!r:.40}) is not a number")
        if not math.isfinite(x) or x < 0:
            raise errors.InvalidArgument(
                f"space {space!r}: weight #{i} is {x!r}; weights must be finite and >= 0"
            )
    w = np.asarray(items, dtype=np.float64)
    if not w.sum() > 0:
        raise errors.InvalidArgument(f"space {space!r}: the weights sum to zero")
    return w


def _mean(h: SpaceHandle, matrix: np.ndarray, w: np.ndarray | None, what: str) -> np.ndarray:
    if h.metric == "cosine":
        # As pgvector's l2_normalize: a zero vector has no direction and stays zero.
        matrix = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), _TINY)
    mean = np.average(matrix, axis=0, weights=w)
    if h.metric == "cosine":
        mean = _unit(h.name, mean, what)
    return mean.astype(np.float32)


def _unit(space: str, vector: np.ndarray, what: str) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if norm <= _TINY:
        raise errors.InvalidArgument(
            f"space {space!r}: {what}: the vectors cancel out, so there is no mean direction"
        )
    return vector / norm
