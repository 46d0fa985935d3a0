"""Nearest neighbours: exact on small data for every metric and dtype, key/vector rules, ef_search."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from psycopg import sql

import embeddinghub as eh


def exact(matrix: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    if metric == "l2":
        dist = np.linalg.norm(matrix - query, axis=1)
    elif metric == "cosine":
        dist = 1 - (matrix @ query) / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(query))
    else:
        dist = -(matrix @ query)
    return dist


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_matches_exact_search(make_space, metric: str, dtype: str) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    space = make_space(dims=8, metric=metric, dtype=dtype)
    matrix = rng.normal(size=(300, 8)).astype(np.float32)
    if dtype == "float16":
        matrix = matrix.astype(np.float16).astype(np.float32)
    keys = [f"k{i}" for i in range(len(matrix))]
    space.multiset(keys, matrix)
    for qi in range(5):
        query = rng.normal(size=8).astype(np.float32)
        want = np.argsort(exact(matrix, query, metric), kind="stable")[:10]
        got = space.nearest_neighbors(10, vector=query, ef_search=200)
        assert [h.key for h in got] == [keys[i] for i in want], (metric, dtype, qi)
        dists = exact(matrix, query, metric)[want]
        np.testing.assert_allclose([h.distance for h in got], dists, rtol=1e-3, atol=2e-3)
        assert [h.distance for h in got] == sorted(h.distance for h in got)


def test_by_key_excludes_the_key(space: eh.Space) -> None:
    space.multiset(
        {
            "apple": [1, 0, 0, 0],
            "orange": [1, 1, 0, 0],
            "potato": [0, 1, 0, 0],
            "chicken": [-1, -1, 0, 0],
        }
    )
    got = space.nearest_neighbors(2, key="apple")
    assert [h.key for h in got] == ["orange", "potato"]
    assert got[0].partition == "default" and got[0].distance == pytest.approx(1.0)
    everything = space.nearest_neighbors(10, key="apple")
    assert "apple" not in [h.key for h in everything] and len(everything) == 3


def test_metadata_comes_back(space: eh.Space) -> None:
    space.set("a", [1, 0, 0, 0], metadata={"title": "A"})
    assert space.nearest_neighbors(1, vector=[1, 0, 0, 0])[0].metadata == {"title": "A"}


def test_key_or_vector_exactly_one(space: eh.Space) -> None:
    space.set("a", [1, 0, 0, 0])
    with pytest.raises(eh.InvalidArgument, match="both"):
        space.nearest_neighbors(1, key="a", vector=[1, 0, 0, 0])
    with pytest.raises(eh.InvalidArgument, match="neither"):
        space.nearest_neighbors(1)


@pytest.mark.parametrize("num", [0, -1, 1.5, True, "3"])
def test_bad_num(space: eh.Space, num: object) -> None:
    with pytest.raises(eh.InvalidArgument, match="num"):
        space.nearest_neighbors(num, vector=[0, 0, 0, 1])  # type: ignore[arg-type]


def test_bad_query_vectors(space: eh.Space) -> None:
    with pytest.raises(eh.DimensionMismatch):
        space.nearest_neighbors(1, vector=[1, 2])
    with pytest.raises(eh.InvalidEmbedding):
        space.nearest_neighbors(1, vector=[np.nan, 0, 0, 0])
    with pytest.raises(eh.KeyNotFound, match="'ghost'"):
        space.nearest_neighbors(1, key="ghost")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float32_queries_are_refused_by_the_server(space: eh.Space, bad: float) -> None:
    """A float32 array goes to the server unchecked (pgvector refuses NaN and infinity):
    still InvalidEmbedding naming the space, for one query, a batch and an exact re-run."""
    space.set("a", [1, 0, 0, 0])
    one = np.array([0, bad, 0, 0], dtype=np.float32)
    with pytest.raises(eh.InvalidEmbedding, match=f"space {space.name!r}.*NaN or infinity"):
        space.nearest_neighbors(1, vector=one)
    batch = np.zeros((3, 4), dtype=np.float32)
    batch[2] = one
    with pytest.raises(eh.InvalidEmbedding, match=space.name):
        space.multi_nearest_neighbors(1, vectors=batch)
    with pytest.raises(eh.InvalidEmbedding, match=space.name):
        space.nearest_neighbors(1, vector=one, where={"t": 1})
    assert space.nearest_neighbors(1, vector=np.ones(4, dtype=np.float32))[0].key == "a"


def test_empty_space_returns_nothing(space: eh.Space) -> None:
    assert space.nearest_neighbors(5, vector=[1, 0, 0, 0]) == []


def test_multi_equals_single(make_space) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    space = make_space(dims=6, metric="cosine")
    matrix = rng.normal(size=(200, 6)).astype(np.float32)
    keys = [f"k{i}" for i in range(200)]
    space.multiset(keys, matrix)
    queries = rng.normal(size=(7, 6))
    multi = space.multi_nearest_neighbors(5, vectors=queries)
    assert multi == [space.nearest_neighbors(5, vector=q) for q in queries]
    by_keys = space.multi_nearest_neighbors(3, keys=["k1", "k2"])
    assert by_keys == [space.nearest_neighbors(3, key="k1"), space.nearest_neighbors(3, key="k2")]
    assert all("k1" != h.key for h in by_keys[0])


@pytest.mark.parametrize("index", ["hnsw", "hnsw_halfvec", "hnsw_bit"])
def test_one_vector_search_answers_as_the_pipeline(hub: eh.Hub, make_space, index: str) -> None:  # type: ignore[no-untyped-def]
    """One float32 vector over a whole space is sent as a single statement when the session
    is at the space's ef_search: its hits (keys, distances, partitions, metadata, order) are
    the pipeline's, whatever the index, and so are those of the calls that take the
    pipeline (other vector types, num above ef_search, a transaction, a session at another
    ef_search)."""
    rng = np.random.default_rng(11)
    space = make_space(dims=8, index=index)
    keys = [f"k{i}" for i in range(400)]
    vectors = rng.normal(size=(400, 8)).astype(np.float32)
    space.multiset(keys, vectors, metadata=[{"i": i} for i in range(400)])
    space.create_partition("other")
    space.multiset(["p1", "p2"], rng.normal(size=(2, 8)).astype(np.float32), partition="other")
    queries = rng.normal(size=(12, 8)).astype(np.float32)
    space.nearest_neighbors(1, vector=queries[0])  # the session now knows its ef_search

    def same(a: list[eh.Neighbor], b: list[eh.Neighbor]) -> None:
        assert a == b and [n.metadata for n in a] == [n.metadata for n in b]

    for q in queries:
        pipeline = space.multi_nearest_neighbors(10, vectors=q[None, :])[0]
        assert len(pipeline) == 10
        same(space.nearest_neighbors(10, vector=q), pipeline)
        same(space.nearest_neighbors(10, vector=q.astype(np.float64)), pipeline)
        same(space.nearest_neighbors(10, vector=q.tolist()), pipeline)
    q = queries[1]
    same(space.nearest_neighbors(60, vector=q), space.multi_nearest_neighbors(60, vectors=[q])[0])
    with hub.connection() as conn, conn.transaction():
        same(space.nearest_neighbors(10, vector=q), space.multi_nearest_neighbors(10, vectors=[q])[0])
    hub.execute("SET hnsw.ef_search = 7")
    try:
        same(space.nearest_neighbors(10, vector=q), space.multi_nearest_neighbors(10, vectors=[q])[0])
    finally:
        hub.execute("RESET hnsw.ef_search")


def test_one_vector_search_answered_short_by_the_index_is_exact(make_space) -> None:  # type: ignore[no-untyped-def]
    """The index can answer short (here: the entries nearest the query are of deleted rows,
    not yet vacuumed): the search is answered exactly, as the pipeline does. Fewer rows than
    num: every row, closest first."""
    space = make_space(dims=2)
    near = np.array([[0.01 * i, 0] for i in range(1, 101)], dtype=np.float32)
    space.multiset([f"n{i}" for i in range(100)], near)
    space.multiset(["a", "b", "c"], np.array([[5, 0], [3, 0], [4, 0]], dtype=np.float32))
    q = np.zeros(2, dtype=np.float32)
    space.nearest_neighbors(1, vector=q)  # the session now knows its ef_search
    space.multidelete([f"n{i}" for i in range(100)])
    hits = space.nearest_neighbors(3, vector=q)
    assert [(n.key, n.distance) for n in hits] == [("b", 3.0), ("c", 4.0), ("a", 5.0)]
    assert [n.key for n in space.nearest_neighbors(10, vector=q)] == ["b", "c", "a"]


def test_ef_search_per_call_and_per_space(space: eh.Space) -> None:
    space.set("a", [1, 0, 0, 0])
    with pytest.raises(eh.InvalidArgument, match="ef_search"):
        space.nearest_neighbors(1, vector=[1, 0, 0, 0], ef_search=0)
    assert space.nearest_neighbors(1, vector=[1, 0, 0, 0], ef_search=5)[0].key == "a"
    space.set_ef_search(123)
    assert space.refresh().ef_search == 123
    # SET LOCAL: the setting does not leak into the session
    assert space.hub.execute("SHOW hnsw.ef_search")[0][0] == "40"


def test_search_uses_the_hnsw_index(hub: eh.Hub, make_space) -> None:  # type: ignore[no-untyped-def]
    space = make_space(dims=4, metric="cosine")
    space.multiset({f"k{i}": np.random.default_rng(i).normal(size=4) for i in range(50)})
    query = sql.SQL("EXPLAIN SELECT key FROM {} ORDER BY embedding <=> '[1,0,0,0]' LIMIT 5")
    rows = hub.execute(query.format(space.tables.live))
    plan = "\n".join(r[0] for r in rows)
    assert "hnsw" in plan.lower() or "Index Scan" in plan


def test_create_index_rebuilds_with_new_parameters(hub: eh.Hub, space: eh.Space) -> None:
    space.multiset({f"k{i}": [i, 1, 0, 0] for i in range(20)})
    space.create_index(m=24, ef_construction=100)
    defs = hub.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'embeddinghub_data' AND tablename = %s",
        (f"s{space.id}",),
    )
    assert any("m='24'" in d[0] and "ef_construction='100'" in d[0] for d in defs), defs
    assert space.refresh().m == 24
    assert space.nearest_neighbors(1, vector=[3, 1, 0, 0])[0].key == "k3"
    with pytest.raises(eh.InvalidArgument):
        space.create_index(m=200)


def test_hits_are_whole_frozen_neighbors(make_space) -> None:  # type: ignore[no-untyped-def]
    """Search hits are built without Neighbor's __init__: they are still complete, equal,
    hashable, immutable Neighbors that dataclasses can copy and convert."""
    space = make_space(dims=2)
    space.set("a", [1, 0], metadata={"t": 1})
    space.set("b", [0, 1])
    hit = space.nearest_neighbors(1, vector=[1, 0])[0]
    assert type(hit) is eh.Neighbor and type(hit.distance) is float
    assert hit == eh.Neighbor("a", 0.0, "default", {"t": 1}) and hash(hit) == hash(eh.Neighbor("a", 0.0))
    assert dataclasses.asdict(hit) == {"key": "a", "distance": 0.0, "partition": "default",
                                       "metadata": {"t": 1}, "vector": None}
    with pytest.raises(dataclasses.FrozenInstanceError):
        hit.key = "b"  # type: ignore[misc]
    assert dataclasses.replace(hit, vector=np.ones(2)).vector.tolist() == [1.0, 1.0]
    assert repr(hit) == "Neighbor(key='a', distance=0.0, partition='default', metadata={'t': 1})"
    one = space.nearest_neighbors(1, vector=np.array([1, 0], dtype=np.float32))[0]  # one statement
    assert type(one.distance) is float and dataclasses.asdict(one) == dataclasses.asdict(hit)
