"""Index options per space: HNSW over the vectors, over halfvec copies, or over their binary
quantization re-ranked by the exact distance."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from psycopg import sql

import embeddinghub as eh
from embeddinghub.search import knn_query

DIMS = 32


def clustered(n: int = 3000, seed: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(30, DIMS))
    return (centres[rng.integers(0, 30, n)] + rng.normal(scale=0.2, size=(n, DIMS))).astype(np.float32)


def plan(space: eh.Space) -> str:
    query = knn_query(space.tables, 10)
    with space.hub.conn.transaction():
        space.hub.conn.execute("SET LOCAL enable_seqscan = off")
        rows = space.hub.conn.execute(
            sql.SQL("EXPLAIN ") + query, {"q": np.ones(DIMS, dtype=np.float32)}
        ).fetchall()
    return "\n".join(r[0] for r in rows)


@pytest.mark.parametrize("kind", ["hnsw", "hnsw_halfvec", "hnsw_bit"])
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_each_index_kind_serves_searches(make_space: Callable[..., eh.Space], kind: str, metric: str) -> None:
    data = clustered()
    space = make_space(dims=DIMS, metric=metric, index=kind)
    assert space.index == kind and space.info()["index"] == kind
    space.multiset([f"k{i}" for i in range(len(data))], data)
    assert "Index Scan" in plan(space)
    hits = space.nearest_neighbors(10, vector=data[7])
    assert hits[0].key == "k7" and len(hits) == 10
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)  # exact distances
    exact = space.nearest_neighbors(10, vector=data[7], ef_search=1000)
    assert {h.key for h in exact} & {h.key for h in hits}


def test_create_index_switches_kind_and_keeps_answers_exact(make_space: Callable[..., eh.Space]) -> None:
    # Binary quantization is for real, high-dimensional embeddings: the package's demo data.
    demo = np.load(Path(eh.__file__).parent / "data" / "pydocs_demo.npz")
    data = demo["embeddings"].astype(np.float32)
    space = make_space(dims=data.shape[1], metric="cosine")
    space.multiset([f"k{i}" for i in range(len(data))], data)
    rng = np.random.default_rng(9)
    queries = data[rng.integers(0, len(data), 40)] + rng.normal(scale=0.02, size=(40, data.shape[1]))
    space.create_index(m=16, ef_construction=64, index="hnsw_bit")
    assert space.refresh().index == "hnsw_bit"
    defs = space.hub.execute(
        "SELECT indexdef FROM pg_indexes WHERE tablename = %s", (space.tables.live_name,)
    )
    assert any("binary_quantize" in d[0] and "bit_hamming_ops" in d[0] for d in defs), defs
    truth = _exact(data, queries)
    got = [{h.key for h in hits} for hits in space.multi_nearest_neighbors(10, vectors=queries)]
    recall = np.mean([len(g & t) / 10 for g, t in zip(got, truth, strict=True)])
    assert recall > 0.6  # Hamming candidates re-ranked exactly
    space.create_index(index="hnsw")
    assert space.refresh().index == "hnsw"


def _exact(data: np.ndarray, queries: np.ndarray) -> list[set[str]]:
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    return [{f"k{i}" for i in np.argsort(-(unit @ v))[:10]} for v in q]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"index": "ivfflat"}, "index must be one of"),
        ({"index": "hnsw_halfvec", "dtype": "float16"}, "halfvec already"),
    ],
)
def test_bad_index_kinds(make_space: Callable[..., eh.Space], kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(eh.InvalidArgument, match=match):
        make_space(dims=DIMS, **kwargs)
