"""Scale: how a space grows from 100k to 1M rows (synthetic 128-d Gaussian clusters, l2).

Per size (100k and 1M; --quick: 20k and 50k; $EMBEDDINGHUB_BENCH_SCALE="100000,300000"
overrides, and $EMBEDDINGHUB_BENCH_SCALE_DIMS=384 the 128 dimensions): load-to-searchable
(one `multiset` of the whole matrix into a new space: COPY, upsert, HNSW build, ANALYZE),
the HNSW index size, the client's peak RSS growth and the
server backend's peak RSS while loading, and recall@10 (against exact numpy search on 200
queries) with the median latency at ef_search 20, 40, 80, 160.

The 1M build takes several minutes on 2 vCPUs; run this bench alone with
`python -m benchmarks.run --only scale`.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from typing import Any

import numpy as np
import psutil

import embeddinghub as eh

from .common import Report, exact_top_k, index_bytes, interleaved_latency, recall_at_k, synthetic_clusters

K = 10
EF_VALUES = (20, 40, 80, 160)
QUERIES = 200


def sizes(quick: bool) -> list[int]:
    given = os.environ.get("EMBEDDINGHUB_BENCH_SCALE")
    if given:
        return [int(x) for x in given.split(",") if x.strip()]
    return [20_000, 50_000] if quick else [100_000, 1_000_000]


def run(hub: eh.Hub, report: Report, quick: bool) -> None:
    dims = int(os.environ.get("EMBEDDINGHUB_BENCH_SCALE_DIMS") or 128)
    for n in sizes(quick):
        ds = synthetic_clusters(n, dims, QUERIES, seed=7)
        name = f"bench_scale_{n}"
        if hub.has_space(name):
            hub.delete_space(name)
        space = hub.create_space(name, dims=dims, metric="l2")
        try:
            seconds, client_mb, server_mb = _load(hub, space, ds)
            size = index_bytes(hub, space)
            truth = exact_top_k(ds.corpus, ds.queries, K, ds.metric)
            base = {"dataset": f"{n:,} x {dims} l2", "load_to_searchable_s": round(seconds, 1),
                    "rows_per_s": round(n / seconds), "index_mb": round(int(size) / 2**20, 1),
                    "client_peak_mb": round(client_mb), "server_peak_mb": round(server_mb)}
            for ef in EF_VALUES:
                def ours(q: np.ndarray, e: int = ef, s: eh.Space = space) -> list[str]:
                    return [h.key for h in s.nearest_neighbors(K, vector=q, ef_search=e)]

                samples, results = interleaved_latency({"ours": ours}, ds.queries, warmup=20)
                report({**base, "ef_search": ef,
                        "recall@10": round(recall_at_k(results["ours"], truth, ds.keys), 4),
                        "median_ms": round(float(np.median(samples["ours"])) * 1000, 3)})
        finally:
            hub.delete_space(name)


def _load(hub: eh.Hub, space: eh.Space, ds: Any) -> tuple[float, float, float]:
    """Seconds to searchable, client RSS growth (MB), the server backend's peak RSS (MB)."""
    backend = psutil.Process(hub.conn.info.backend_pid) if _local(hub) else None
    peak = [0.0]
    done = threading.Event()

    def watch() -> None:  # bounded: ends with the load
        while not done.wait(0.2):
            if backend is not None:
                try:
                    peak[0] = max(peak[0], backend.memory_info().rss / 2**20)
                except psutil.Error:
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    try:
        space.multiset(ds.keys, ds.corpus)
    finally:
        done.set()
        watcher.join(5)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return seconds, max(0.0, after - before), peak[0]


def _local(hub: eh.Hub) -> bool:
    try:
        return psutil.pid_exists(hub.conn.info.backend_pid)
    except psutil.Error:
        return False
