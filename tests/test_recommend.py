"""Averaging, centroids and recommendations: equal to numpy, normalised as documented."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import embeddinghub as eh
from embeddinghub.recommend import NEGATIVE_WEIGHT

MakeSpace = Callable[..., eh.Space]


def unit(m: np.ndarray) -> np.ndarray:
    return m / np.linalg.norm(m, axis=-1, keepdims=True)  # type: ignore[no-any-return]


def numpy_mean(matrix: np.ndarray, metric: str, weights: Any = None) -> np.ndarray:
    """The documented rule: cosine averages unit vectors and returns a unit vector."""
    m = matrix.astype(np.float64)
    if metric == "cosine":
        return unit(np.average(unit(m), axis=0, weights=weights))
    return np.average(m, axis=0, weights=weights)  # type: ignore[no-any-return]


def loaded(make_space: MakeSpace, metric: str = "l2", dtype: str = "float32",
           rows: int = 200, dims: int = 16, seed: int = 0) -> tuple[eh.Space, list[str], np.ndarray]:
    space = make_space(dims=dims, metric=metric, dtype=dtype)
    rng = np.random.default_rng(seed)
    matrix = (rng.normal(size=(rows, dims)) * 3 + 1).astype(np.float32)
    keys = [f"k{i}" for i in range(rows)]
    space.multiset(keys, matrix)
    # Compare with what is stored (float16 spaces round on the way in).
    return space, keys, space.multiget(keys)


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_average_and_centroid_equal_numpy(make_space: MakeSpace, metric: str, dtype: str) -> None:
    space, keys, stored = loaded(make_space, metric, dtype)
    pick = [3, 17, 17, 42, 199]  # a repeated key counts twice
    got = space.average([keys[i] for i in pick])
    assert got.dtype == np.float32 and got.shape == (16,)
    np.testing.assert_allclose(got, numpy_mean(stored[pick], metric), rtol=1e-5, atol=1e-5)
    weights = [0.5, 2, 0, 1.25, 3]
    got = space.average([keys[i] for i in pick], weights=weights)
    np.testing.assert_allclose(got, numpy_mean(stored[pick], metric, weights), rtol=1e-5, atol=1e-5)
    centroid = space.centroid()
    assert centroid.dtype == np.float32
    np.testing.assert_allclose(centroid, numpy_mean(stored, metric), rtol=1e-5, atol=1e-5)
    # centroid() is the average of every key.
    np.testing.assert_allclose(centroid, space.average(keys), rtol=1e-5, atol=1e-5)
    if metric == "cosine":
        assert np.linalg.norm(centroid) == pytest.approx(1, abs=1e-6)
        assert np.linalg.norm(space.average(keys[:2])) == pytest.approx(1, abs=1e-6)


def test_partition_average_and_centroid(make_space: MakeSpace) -> None:
    space = make_space(dims=3)
    space.create_partition("p")
    space.multiset(["a", "b"], [[1, 2, 3], [3, 2, 1]])
    space.multiset(["a", "c"], [[10, 0, 0], [0, 10, 0]], partition="p")
    np.testing.assert_allclose(space.average(["a", "b"]), [2, 2, 2])
    np.testing.assert_allclose(space.average(["a", "c"], partition="p"), [5, 5, 0])
    np.testing.assert_allclose(space.centroid(partition="p"), [5, 5, 0])
    np.testing.assert_allclose(space.centroid(partition="default"), [2, 2, 2])
    np.testing.assert_allclose(space.centroid(), [14 / 4, 14 / 4, 4 / 4])
    with pytest.raises(eh.KeyNotFound, match="'c'.*partition 'default'"):
        space.average(["a", "c"])
    space.create_partition("empty")
    with pytest.raises(eh.InvalidArgument, match="partition 'empty' is empty"):
        space.centroid(partition="empty")
    with pytest.raises(eh.PartitionNotFound, match="'nope'"):
        space.centroid(partition="nope")


def test_average_argument_errors(make_space: MakeSpace) -> None:
    space, keys, _ = loaded(make_space, rows=5, dims=2)
    with pytest.raises(eh.KeyNotFound, match="key 'missing' not found in space") as info:
        space.average([keys[0], "missing"])
    assert info.value.key == "missing"
    cases: list[tuple[Any, Any, str]] = [
        ([], None, "no keys"),
        ("k0", None, "list of keys"),
        (keys[:2], [1], "2 keys but 1 weights"),
        (keys[:2], [1, -1], "finite and >= 0"),
        (keys[:2], [1, float("nan")], "finite and >= 0"),
        (keys[:2], [1, float("inf")], "finite and >= 0"),
        (keys[:2], [0, 0], "sum to zero"),
        (keys[:2], [True, 1], "not a number"),
        (keys[:2], ["1", 1], "not a number"),
        (keys[:2], "11", "list of numbers"),
    ]
    for ks, weights, message in cases:
        with pytest.raises(eh.InvalidArgument, match=message) as err:
            space.average(ks, weights=weights)
        assert space.name in str(err.value)
    numpy_weights: Any = np.array([1.0, 3.0])  # a numpy array works as well as a list
    np.testing.assert_allclose(space.average(keys[:2], weights=numpy_weights),
                               space.average(keys[:2], weights=[1, 3]), rtol=1e-6)


def test_cosine_directions_that_cancel_out(make_space: MakeSpace) -> None:
    space = make_space(dims=2, metric="cosine")
    space.multiset(["up", "down", "zero", "right"], [[0, 1], [0, -2], [0, 0], [3, 0]])
    with pytest.raises(eh.InvalidArgument, match="cancel out"):
        space.average(["up", "down"])
    # A zero vector has no direction: it adds nothing, like pgvector's l2_normalize.
    np.testing.assert_allclose(space.average(["up", "zero"]), [0, 1])
    np.testing.assert_allclose(space.average(["up", "right"]), unit(np.array([1.0, 1.0])),
                               rtol=1e-6)
    np.testing.assert_allclose(space.centroid(), [1, 0], atol=1e-6)  # up, down cancel; zero adds 0


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_recommend_is_exact_and_excludes_its_examples(make_space: MakeSpace, metric: str) -> None:
    space, keys, stored = loaded(make_space, metric, rows=150, dims=8, seed=2)
    positive, negative = ["k1", "k2", "k3"], ["k10", "k11"]
    p = numpy_mean(stored[[1, 2, 3]], metric)
    n = numpy_mean(stored[[10, 11]], metric)
    query = p + NEGATIVE_WEIGHT * (p - n)
    if metric == "l2":
        dist = np.linalg.norm(stored - query, axis=1)
    else:
        dist = 1 - unit(stored) @ unit(query)
    examples = {1, 2, 3, 10, 11}
    want = [keys[i] for i in np.argsort(dist) if i not in examples][:10]
    hits = space.recommend(10, positive=positive, negative=negative)
    assert [h.key for h in hits] == want
    assert not {h.key for h in hits} & set(positive + negative)
    # Positives alone: the neighbours of their mean, minus the positives themselves.
    hits = space.recommend(5, positive=["k1"])
    assert "k1" not in {h.key for h in hits} and len(hits) == 5
    near = space.nearest_neighbors(5, key="k1")
    assert [h.key for h in hits] == [h.key for h in near]
    # Asking for everything returns everything but the examples.
    everything = space.recommend(1000, positive=positive, negative=negative)
    assert len(everything) == 150 - len(examples)


def test_recommend_with_partition_and_where(make_space: MakeSpace) -> None:
    space = make_space(dims=2)
    space.create_partition("shop")
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(60, 2)).astype(np.float32)
    meta = [{"in_stock": i % 3 != 0} for i in range(60)]
    space.multiset([f"i{i}" for i in range(60)], matrix, metadata=meta, partition="shop")
    space.multiset(["i1", "elsewhere"], matrix[[1, 2]])  # same key in the default partition
    hits = space.recommend(5, positive=["i1", "i2"], negative=["i4"], partition="shop",
                           where={"in_stock": True})
    assert len(hits) == 5
    assert all(h.partition == "shop" and h.metadata == {"in_stock": True} for h in hits)
    assert not {h.key for h in hits} & {"i1", "i2", "i4"}
    # Without partition=, examples come from the default partition and every partition
    # is searched: only the examples' own rows are left out, not their namesakes.
    hits = space.recommend(3, positive=["i1"])
    assert ("default", "i1") not in {(h.partition, h.key) for h in hits}
    assert ("shop", "i1") in {(h.partition, h.key) for h in hits}


def test_recommend_argument_errors(make_space: MakeSpace) -> None:
    space, keys, _ = loaded(make_space, rows=5, dims=2)
    with pytest.raises(eh.InvalidArgument, match="at least one positive"):
        space.recommend(3, positive=[], negative=[keys[0]])
    with pytest.raises(eh.InvalidArgument, match="list of keys"):
        space.recommend(3, positive="k0")
    with pytest.raises(eh.InvalidArgument, match="num must be"):
        space.recommend(0, positive=[keys[0]])
    with pytest.raises(eh.KeyNotFound, match="'ghost'"):
        space.recommend(3, positive=[keys[0]], negative=["ghost"])
    with pytest.raises(eh.KeyNotFound, match="'ghost'"):
        space.recommend(3, positive=["ghost"])
    with pytest.raises(eh.KeyNotFound, match="'k0' not found .* partition 'nope'"):
        space.recommend(3, positive=[keys[0]], partition="nope")
