"""Recall you can state: measure() and tune() against exact search, and the `bench` command."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
from click.testing import CliRunner

import embeddinghub as eh
from embeddinghub import search
from embeddinghub.cli import main
from embeddinghub.tuning import EF_LADDER, measure


def _clustered(make_space: Callable[..., eh.Space], m: int, ef_construction: int) -> eh.Space:
    rng = np.random.default_rng(11)
    centres = rng.normal(size=(20, 16))
    data = centres[rng.integers(0, 20, 3000)] + rng.normal(scale=0.3, size=(3000, 16))
    space = make_space(dims=16, metric="cosine", m=m, ef_construction=ef_construction)
    space.multiset([f"k{i}" for i in range(len(data))], data.astype(np.float32))
    return space


@pytest.fixture
def clustered(make_space: Callable[..., eh.Space]) -> eh.Space:
    return _clustered(make_space, m=8, ef_construction=16)  # low recall at small ef_search


def _queries_near(space: eh.Space, n: int, seed: int) -> np.ndarray:
    """Query vectors near stored rows, fixed by `seed`: with them, a measurement of one
    graph is deterministic (pgvector draws each build's graph at random, a search is not)."""
    stored = space.multiget([f"k{i}" for i in range(0, 3000, 3000 // n)][:n])
    return stored + np.random.default_rng(seed).normal(scale=0.05, size=stored.shape)


def _recall_by_hand(space: eh.Space, queries: np.ndarray, ef: int, k: int = 10) -> float:
    """Recall@k of the space's own search at `ef` against a brute force in numpy (cosine)."""
    keys = [f"k{i}" for i in range(3000)]
    data = space.multiget(keys)
    data = data / np.linalg.norm(data, axis=1, keepdims=True)
    found = []
    for q in queries:
        want = {keys[i] for i in np.argsort(-(data @ (q / np.linalg.norm(q))))[:k]}
        got = {h.key for h in space.nearest_neighbors(k, vector=q, ef_search=ef)}
        found.append(len(got & want) / k)
    return float(np.mean(found))


def test_measure_counts_recall_against_exact_search(clustered: eh.Space) -> None:
    queries = _queries_near(clustered, 30, seed=1)
    points = measure(clustered, (20, 200), k=10, queries=queries)
    assert [p.ef_search for p in points] == [20, 200]
    assert all(0 <= p.recall <= 1 and p.latency_ms > 0 for p in points)
    for point in points:  # the same figure as an independent count
        assert point.recall == pytest.approx(_recall_by_hand(clustered, queries, point.ef_search))


def test_measure_recall_rises_with_ef_search(make_space: Callable[..., eh.Space]) -> None:
    weak = _clustered(make_space, m=2, ef_construction=4)  # recall 0.2-0.4 at ef 10
    queries = _queries_near(weak, 40, seed=2)
    low, high = measure(weak, (10, 1000), k=10, queries=queries)
    assert high.recall > low.recall  # over 30 builds the gap was 0.10 to 0.30


def test_exact_ground_truth_makes_perfect_recall_possible(make_space: Callable[..., eh.Space]) -> None:
    space = make_space(dims=4)
    rng = np.random.default_rng(4)
    space.multiset({f"k{i}": rng.normal(size=4) for i in range(30)})  # no distance ties
    (point,) = measure(space, (400,), k=5, sample=30)
    assert point.recall == 1.0


def test_tune_picks_the_smallest_setting_that_reaches_the_target(clustered: eh.Space) -> None:
    queries = _queries_near(clustered, 30, seed=3)
    ladder = measure(clustered, EF_LADDER, queries=queries)
    # A target between the cheapest and the best recall of this build (a search is
    # deterministic, so tune() measures the same figures).
    target = (ladder[0].recall + max(p.recall for p in ladder)) / 2
    expected = next(p for p in ladder if p.recall >= target)
    result = clustered.tune(target, queries=queries)
    assert result.reached and result.ef_search == expected.ef_search
    assert result.recall == pytest.approx(expected.recall) and result.recall >= target
    assert [p.ef_search for p in result.points] == list(EF_LADDER[: len(result.points)])
    assert all(p.recall < target for p in result.points[:-1])
    assert clustered.refresh().ef_search == result.ef_search


def test_tune_with_own_queries_and_without_applying(clustered: eh.Space) -> None:
    before = clustered.ef_search
    queries = np.random.default_rng(5).normal(size=(30, 16))
    result = clustered.tune(0.99, queries=queries, apply=False)
    assert result.sample == 30
    assert clustered.refresh().ef_search == before


def test_unreachable_target_keeps_the_best_setting(make_space: Callable[..., eh.Space]) -> None:
    weak = _clustered(make_space, m=2, ef_construction=4)  # a graph no ef_search can rescue
    result = weak.tune(1.0, sample=20)
    assert not result.reached
    assert [p.ef_search for p in result.points] == list(EF_LADDER)
    assert result.recall == max(p.recall for p in result.points) < 1.0
    assert weak.refresh().ef_search == result.ef_search


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"target_recall": 0}, "target_recall"), ({"target_recall": 1.5}, "target_recall"),
     ({"k": 0}, "k must"), ({"sample": 0}, "sample must")],
)
def test_bad_arguments(space: eh.Space, kwargs: dict[str, float], message: str) -> None:
    space.set("a", [1, 0, 0, 0])
    with pytest.raises(eh.InvalidArgument, match=message):
        space.tune(**kwargs)  # type: ignore[arg-type]


def test_empty_space(space: eh.Space) -> None:
    with pytest.raises(eh.InvalidArgument, match="empty"):
        space.tune()


def test_bench_command(dsn: str, clustered: eh.Space, tmp_path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    out = runner.invoke(main, ["--dsn", dsn, "bench", clustered.name, "--ef", "10,100",
                               "--sample", "20", "--json", "--silent"])
    assert out.exit_code == 0, out.output
    points = json.loads(out.output)["points"]
    assert [p["ef_search"] for p in points] == [10, 100]
    queries = tmp_path / "q.npy"
    np.save(queries, np.random.default_rng(2).normal(size=(15, 16)).astype(np.float32))
    tuned = runner.invoke(main, ["--dsn", dsn, "bench", clustered.name, "--tune", "0.9",
                                 "--queries", str(queries), "--silent"])
    assert tuned.exit_code == 0, tuned.output
    assert "set as the default" in tuned.output
    bad = runner.invoke(main, ["--dsn", dsn, "bench", clustered.name, "--ef", "x"])
    assert bad.exit_code != 0 and "comma-separated" in bad.output
    wrong_dims = tmp_path / "w.npy"
    np.save(wrong_dims, np.zeros((3, 5), dtype=np.float32))
    bad = runner.invoke(main, ["--dsn", dsn, "bench", clustered.name, "--queries", str(wrong_dims)])
    assert bad.exit_code != 0 and "16 dims" in bad.output


# -- honest targets ----------------------------------------------------------------------------
def _random_space(make_space: Callable[..., eh.Space], n: int = 6000, parts: bool = False) -> eh.Space:
    rng = np.random.default_rng(21)
    space = make_space(dims=32, metric="l2")
    data = rng.normal(size=(n, 32)).astype(np.float32)
    if parts:
        space.create_partition("small")
        names = ["small" if i % 10 == 0 else "default" for i in range(n)]
        space.multiset([f"k{i}" for i in range(n)], data, partition=names)
    else:
        space.multiset([f"k{i}" for i in range(n)], data)
    return space


def test_stored_row_estimates_never_lower_ef_search(make_space: Callable[..., eh.Space]) -> None:
    space = _random_space(make_space)
    result = space.tune(0.95, sample=50)
    assert result.method == "stored rows"
    assert result.ef_search >= 40  # the default stays unless real queries justify less
    assert space.refresh().ef_search == result.ef_search


def test_real_queries_reach_the_target_they_report(make_space: Callable[..., eh.Space]) -> None:
    space = _random_space(make_space)
    queries = np.random.default_rng(5).normal(size=(60, 32)).astype(np.float32)
    result = space.tune(0.95, queries=queries)
    assert result.method == "given queries" and result.reached
    (check,) = measure(space, (result.ef_search,), queries=queries)
    assert check.recall >= 0.95 and check.recall == result.recall


def test_every_partition_meets_the_target(make_space: Callable[..., eh.Space]) -> None:
    space = _random_space(make_space, parts=True)
    queries = np.random.default_rng(6).normal(size=(40, 32)).astype(np.float32)
    result = space.tune(0.95, queries=queries)
    chosen = next(p for p in result.points if p.ef_search == result.ef_search)
    assert set(chosen.partitions) == {"default", "small"}
    assert min(chosen.partitions.values()) >= 0.95 and result.reached
    whole = measure(space, (result.ef_search,), queries=queries, per_partition=False)
    assert whole[0].partitions == {}


def test_recent_queries_kept_by_the_hub(dsn: str, make_space: Callable[..., eh.Space]) -> None:
    name = _random_space(make_space, n=800).name
    with eh.connect(dsn, keep_queries=25) as hub:
        space = hub.get_space(name)
        queries = np.random.default_rng(8).normal(size=(30, 32)).astype(np.float32)
        space.multi_nearest_neighbors(5, vectors=queries)
        space.nearest_neighbors(5, key="k1")  # by key: no query vector to keep
        with pytest.raises(eh.InvalidEmbedding):  # refused by the server: not kept either
            space.nearest_neighbors(5, vector=np.full(32, np.nan, dtype=np.float32))
        space.nearest_neighbors(5, vector=queries[0])  # one vector: kept as well
        assert np.array_equal(search.recent_queries(space.handle)[-1], queries[0])
        result = space.tune(0.9, apply=False)
        assert result.method == "recent queries" and result.sample == 25
    with pytest.raises(eh.InvalidArgument, match="keep_queries"):
        eh.connect(dsn, keep_queries=-1)


def test_target_recall_is_a_space_setting(space: eh.Space) -> None:
    space.multiset({f"k{i}": np.random.default_rng(i).normal(size=4) for i in range(50)})
    assert space.target_recall is None
    space.set_target_recall(0.9)
    assert space.refresh().target_recall == pytest.approx(0.9)
    assert space.info()["target_recall"] == pytest.approx(0.9)
    assert space.tune(apply=False).target == pytest.approx(0.9)
    for bad in (0, 1.5, "high", True):
        with pytest.raises(eh.InvalidArgument, match="target_recall"):
            space.set_target_recall(bad)  # type: ignore[arg-type]
    space.set_target_recall(None)
    assert space.refresh().target_recall is None
