"""The benchmark harness: ground truth, recall, tables, JSON, isolation, where it connects."""

from __future__ import annotations

import json
import math
import os
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import embeddinghub as eh

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks` is not installed

from benchmarks import bench_core, common, run  # noqa: E402


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_exact_top_k_matches_a_full_sort(metric: str) -> None:
    rng = np.random.default_rng(1)
    corpus = rng.standard_normal((500, 16)).astype(np.float32)
    queries = rng.standard_normal((37, 16)).astype(np.float32)
    if metric == "l2":
        dist = ((queries[:, None, :] - corpus[None, :, :]) ** 2).sum(-1)
    elif metric == "cosine":
        unit = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
        dist = -(queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    else:
        dist = -queries @ corpus.T
    expected = np.argsort(dist, axis=1, kind="stable")[:, :10]
    got = common.exact_top_k(corpus, queries, 10, metric, chunk=8)
    assert (got == expected).all()


def test_interleaving_puts_each_contender_before_each_other_equally_often() -> None:
    calls: list[str] = []
    contenders = {name: (lambda q, name=name: calls.append(name)) for name in "abc"}
    queries = np.zeros((12, 2), dtype=np.float32)
    samples, _ = common.interleaved_latency(contenders, queries, warmup=0)
    assert {name: len(s) for name, s in samples.items()} == {"a": 12, "b": 12, "c": 12}
    rounds = [calls[i : i + 3] for i in range(0, len(calls), 3)]
    assert len({tuple(r) for r in rounds}) == 6  # every order, twice
    for x, y in (("a", "b"), ("a", "c"), ("b", "c")):
        assert sum(r.index(x) < r.index(y) for r in rounds) == 6


def test_recall_at_k() -> None:
    keys = [f"k{i}" for i in range(6)]
    truth = np.array([[0, 1], [2, 3]])
    assert common.recall_at_k([["k0", "k1"], ["k2", "k3"]], truth, keys) == 1.0
    assert common.recall_at_k([["k1", "k5"], ["k4", "k5"]], truth, keys) == 0.25
    assert common.recall_at_k([["k0", "k5", "k1"], []], truth, keys) == 0.25  # only top k count


def test_table_hides_details_and_json_is_strict(tmp_path: Path) -> None:
    rows = [
        {"bench": "x", "measure": "a", "value": 1234.5, "ok": True, "_samples": [1.0]},
        {"bench": "x", "measure": "b", "value": float("nan"), "extra": 0.1234, "ok": False},
    ]
    table = common.format_table(rows).splitlines()
    assert [c.strip() for c in table[0].split("|")[1:-1]] == ["measure", "value", "ok", "extra"]
    assert "1,234" in table[2] and "yes" in table[2] and "-" in table[3] and "NO" in table[3]
    path = common.write_json(tmp_path / "r.json", {"rows": rows, "n": np.int64(3)})
    data = json.loads(path.read_text())  # strict: NaN would not parse with allow_nan=False
    assert data["rows"][1]["value"] is None and data["n"] == 3
    assert data["rows"][0]["_samples"] == [1.0]


def _fake_bench(monkeypatch: pytest.MonkeyPatch, name: str, body: Any) -> None:
    module = types.ModuleType(f"benchmarks.bench_{name}")
    module.run = body  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)


def test_a_failing_bench_is_reported_and_the_next_still_runs(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(hub: eh.Hub, report: Any, quick: bool) -> None:
        report({"measure": "before the failure", "value": 1.0})
        raise RuntimeError("boom")

    def passing(hub: eh.Hub, report: Any, quick: bool) -> None:
        assert quick
        report({"measure": "server", "value": hub.execute("SELECT 2")[0][0]})

    _fake_bench(monkeypatch, "zz_failing", failing)
    _fake_bench(monkeypatch, "zz_passing", passing)
    failed = run.run_bench("zz_failing", dsn, quick=True)
    assert "RuntimeError: boom" in failed["error"]
    assert failed["rows"] == [{"bench": "zz_failing", "measure": "before the failure", "value": 1.0}]
    ok = run.run_bench("zz_passing", dsn, quick=True)
    assert ok["error"] is None and ok["rows"][0]["value"] == 2


def test_discovery_and_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    names = run.discover()
    assert names[0] == "core"
    assert run.main(["--only", "no_such_bench"]) == 2
    assert "unknown bench no_such_bench" in capsys.readouterr().err


def test_given_dsn_is_used_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDINGHUB_DSN", "postgresql://example/db")
    with run.target_database(None) as (dsn, where):
        assert dsn == "postgresql://example/db" and "EMBEDDINGHUB_DSN" in where
    with run.target_database("postgresql://other/db") as (dsn, _):
        assert dsn == "postgresql://other/db"


def test_default_is_a_private_embedded_server_removed_afterwards(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("EMBEDDINGHUB_DSN", raising=False)
    monkeypatch.setenv("EMBEDDINGHUB_HOME", str(tmp_path / "users-home"))
    with run.target_database(None) as (dsn, where):
        home = Path(os.environ["EMBEDDINGHUB_HOME"])
        assert home != tmp_path / "users-home" and str(home) in where
        assert os.environ["EMBEDDINGHUB_DSN"] == dsn
        with eh.connect(dsn) as hub:
            assert hub.execute("SELECT 1") == [(1,)]
    assert not home.exists()
    assert os.environ["EMBEDDINGHUB_HOME"] == str(tmp_path / "users-home")
    assert "EMBEDDINGHUB_DSN" not in os.environ
    assert not (tmp_path / "users-home").exists()


def test_core_bench_on_a_small_dataset(hub: eh.Hub) -> None:
    ds = common.synthetic_clusters(600, 16, 30, clusters=5, seed=3)
    rows: list[dict[str, Any]] = []
    bench_core.bench_dataset(hub, hub.conn, ds, rows.append, ingest_runs=2, quick=True)
    by_measure = {r["measure"].strip(): r for r in rows}
    ingest = by_measure["ingest rows/s, load + index (best of 2)"]
    assert len(ingest["_ours_runs"]) == len(ingest["_raw_runs"]) == 2
    assert ingest["embeddinghub"] > 0 and ingest["raw_pgvector"] > 0
    latency = by_measure["query latency median ms"]
    assert len(latency["_ours_ms"]) == len(latency["_raw_ms"]) == 30
    assert not math.isnan(latency["ratio"])
    own = by_measure["same, raw SQL on the space's own table"]
    assert len(own["_own_ms"]) == 30 and own["raw_pgvector"] > 0
    indexed = by_measure[f"load {bench_core.INDEXED_LOAD_ROWS // 5:,} rows into the indexed table s"]
    assert indexed["embeddinghub"] > 0 and indexed["raw_pgvector"] > 0 and indexed["ok"] is not None
    recall = by_measure["recall@10 (ef_search=40)"]
    assert recall["embeddinghub"] >= 0.9 and recall["raw_pgvector"] >= 0.9
    assert not hub.has_space(f"bench_core_{ds.name}")  # cleaned up
    assert not hub.execute("SELECT 1 FROM pg_tables WHERE tablename LIKE 'eh_bench_raw_%'")


def test_index_bench_draws_its_plot(hub: eh.Hub) -> None:
    from benchmarks import bench_index

    demo = np.load(Path(eh.__file__).parent / "data" / "pydocs_demo.npz")
    vectors = demo["embeddings"].astype(np.float32)
    keys = [str(k) for k in demo["keys"]][:2000]
    ds = common.Dataset("demo", keys, vectors[:2000], vectors[2000:2060], "cosine")
    rows: list[dict[str, Any]] = []
    bench_index.bench(hub, rows.append, ds, warmup=5)
    labels = {r["index"] for r in rows}
    assert labels == {*bench_index.KINDS, bench_index.RAW_LABEL}
    assert all(0 <= r["recall@10"] <= 1 and r["qps (1/median)"] > 0 for r in rows)
    assert bench_index.PLOT.stat().st_size > 10_000  # a PNG with something drawn in it
