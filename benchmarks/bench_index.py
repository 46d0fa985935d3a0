"""Index options: HNSW over the vectors, over halfvec copies, over their binary quantization
(re-ranked by the exact distance), against raw pgvector SQL on a plain table.

pydocs (30,165 x 384, cosine, 1000 real queries; --quick: 5,000 rows, 200 queries). Per
index kind: the index build time (`create_index`, best of the run), the size of its HNSW
indexes, and recall@10 against exact numpy search with the throughput of one client
(1 / median latency, the contenders taking turns on every query) at ef_search 20, 40,
80, 160. Raw pgvector is the same
HNSW (m=16, ef_construction=64) on `(key, embedding)` queried with a prepared statement.
Writes `benchmarks/results/recall_qps.png`: recall against QPS for every contender.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from psycopg import sql

import embeddinghub as eh

from .common import Report, exact_top_k, index_bytes, interleaved_latency, load_pydocs, recall_at_k

K = 10
EF_VALUES = (20, 40, 80, 160)
KINDS = ("hnsw", "hnsw_halfvec", "hnsw_bit")
RAW = sql.Identifier("eh_bench_index_raw")
RAW_LABEL = "raw pgvector (hnsw)"
PLOT = Path(__file__).resolve().parent / "results" / "recall_qps.png"


def run(hub: eh.Hub, report: Report, quick: bool) -> None:
    ds = load_pydocs(limit=5000 if quick else None, queries=200 if quick else None)
    bench(hub, report, ds, warmup=10 if quick else 50)


def bench(hub: eh.Hub, report: Report, ds: Any, warmup: int) -> None:
    """Every index kind and raw pgvector on `ds`; draws PLOT."""
    truth = exact_top_k(ds.corpus, ds.queries, K, ds.metric)
    searches: dict[str, Callable[[np.ndarray, int], list[str]]] = {}
    built: dict[str, tuple[float, int]] = {}
    try:
        for kind in KINDS:
            space = _space(hub, ds, kind)
            started = time.perf_counter()
            space.create_index(m=16, ef_construction=64, index=kind)
            built[kind] = (time.perf_counter() - started, index_bytes(hub, space))

            def ours(q: np.ndarray, ef: int, s: eh.Space = space) -> list[str]:
                return [n.key for n in s.nearest_neighbors(K, vector=q, ef_search=ef)]

            searches[kind] = ours
        built[RAW_LABEL], searches[RAW_LABEL] = _raw(hub, ds)
        curves = _sweep(report, ds, truth, searches, built, warmup=warmup)
        _plot(curves, ds)
    finally:
        for kind in KINDS:
            if hub.has_space(f"bench_index_{kind}"):
                hub.delete_space(f"bench_index_{kind}")
        hub.conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(RAW))
        hub.execute("RESET hnsw.ef_search")


def _space(hub: eh.Hub, ds: Any, kind: str) -> eh.Space:
    name = f"bench_index_{kind}"
    if hub.has_space(name):
        hub.delete_space(name)
    space = hub.create_space(name, dims=ds.dims, metric=ds.metric, index=kind)
    space.multiset(ds.keys, ds.corpus)
    return space


def _sweep(
    report: Report, ds: Any, truth: np.ndarray, searches: dict[str, Callable[[np.ndarray, int], list[str]]],
    built: dict[str, tuple[float, int]], warmup: int,
) -> dict[str, list[tuple[float, float]]]:
    """Per ef_search: every contender on every query, taking turns (interleaved_latency)."""
    curves: dict[str, list[tuple[float, float]]] = {label: [] for label in searches}
    for ef in EF_VALUES:
        contenders = {label: functools.partial(fn, ef=ef) for label, fn in searches.items()}
        samples, results = interleaved_latency(contenders, ds.queries, warmup=warmup)
        for label in searches:
            recall = recall_at_k(results[label], truth, ds.keys)
            qps = 1.0 / float(np.median(samples[label]))
            curves[label].append((recall, qps))
            build, size = built[label]
            report({"dataset": f"{ds.name} {len(ds):,}x{ds.dims}", "index": label, "ef_search": ef,
                    "recall@10": round(recall, 4), "qps (1/median)": round(qps),
                    "build_s": round(build, 2), "index_mb": round(size / 2**20, 1)})
    return curves


def _raw(hub: eh.Hub, ds: Any) -> tuple[tuple[float, int], Callable[[np.ndarray, int], list[str]]]:
    """A plain table with the same HNSW index, searched with a prepared statement."""
    conn = hub.conn
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(RAW))
    conn.execute(sql.SQL("CREATE TABLE {} (key text PRIMARY KEY, embedding vector({}))").format(
        RAW, sql.Literal(ds.dims)))
    with conn.cursor() as cur, cur.copy(
        sql.SQL("COPY {} (key, embedding) FROM STDIN WITH (FORMAT BINARY)").format(RAW)
    ) as cp:
        cp.set_types(["text", "vector"])
        for key, vec in zip(ds.keys, ds.corpus, strict=True):
            cp.write_row((key, vec))
    started = time.perf_counter()
    with conn.transaction():
        conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
        conn.execute(sql.SQL(
            "CREATE INDEX eh_bench_index_raw_hnsw ON {} USING hnsw (embedding vector_cosine_ops)"
            " WITH (m = 16, ef_construction = 64)").format(RAW))
    build = time.perf_counter() - started
    row = conn.execute("SELECT pg_relation_size('eh_bench_index_raw_hnsw')").fetchone()
    query = sql.SQL("SELECT key FROM {} ORDER BY embedding <=> %s LIMIT {}").format(RAW, sql.Literal(K))
    session_ef: list[int] = [0]

    def search(q: np.ndarray, ef: int) -> list[str]:
        if session_ef[0] != ef:  # raw SQL sets ef_search once per session, as its users do
            conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(ef),))
            session_ef[0] = ef
        return [r[0] for r in conn.execute(query, (q,), prepare=True).fetchall()]

    return (build, int(row[0]) if row else 0), search


def _plot(curves: dict[str, list[tuple[float, float]]], ds: Any) -> None:
    import matplotlib  # optional: only `make bench` draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in curves.items():
        recall, qps = zip(*points, strict=True)
        ax.plot(recall, qps, marker="o", label=label)
        for (r, q), ef in zip(points, EF_VALUES, strict=True):
            ax.annotate(str(ef), (r, q), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries per second (one client)")
    ax.set_title(f"{ds.name} {len(ds):,} x {ds.dims}: recall vs QPS by ef_search")
    ax.grid(True, alpha=0.3)
    ax.legend()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=120)
    plt.close(fig)
