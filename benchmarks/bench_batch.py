"""Batched search: `multi_nearest_neighbors` of 300 queries against a raw pipelined loop.

pydocs (30,165 x 384, cosine; --quick: 5,000 rows), k=10, ef_search 40. Contenders, taking
turns round by round (the best of ROUNDS kept):
  * raw: a pipelined loop of prepared `SELECT key FROM t ORDER BY embedding <=> $1 LIMIT 10`
    on one connection (a plain table with the same HNSW index), what a pgvector user writes;
  * hub: `space.multi_nearest_neighbors(10, vectors=Q)` on a plain Hub (one pipeline);
  * pooled hub: the same call on `connect(pool=2)`, which spreads a large batch over free
    pooled connections so the server's cores search in parallel.
"""

from __future__ import annotations

import time
from typing import Any

import embeddinghub as eh

from .common import Report, load_pydocs

K = 10
BATCH = 300
ROUNDS = 5
NAME = "bench_batch"


def run(hub: eh.Hub, report: Report, quick: bool) -> None:
    ds = load_pydocs(limit=5000 if quick else None, queries=BATCH)
    if hub.has_space(NAME):
        hub.delete_space(NAME)
    space = hub.create_space(NAME, dims=ds.dims, metric=ds.metric)
    conn = hub.conn
    try:
        space.multiset(ds.keys, ds.corpus)
        conn.execute("DROP TABLE IF EXISTS eh_bench_batch_raw")
        conn.execute(f"CREATE TABLE eh_bench_batch_raw (key text PRIMARY KEY, embedding vector({ds.dims}))")
        with conn.cursor() as cur, cur.copy("COPY eh_bench_batch_raw FROM STDIN WITH (FORMAT BINARY)") as cp:
            cp.set_types(["text", "vector"])
            for key, vec in zip(ds.keys, ds.corpus, strict=True):
                cp.write_row((key, vec))
        conn.execute("CREATE INDEX ON eh_bench_batch_raw USING hnsw (embedding vector_cosine_ops)")
        conn.execute("ANALYZE eh_bench_batch_raw")
        with eh.connect(hub.dsn, pool=2) as pooled:
            contenders = _contenders(conn, space, pooled.get_space(NAME), ds.queries)
            best = _race(contenders)
        base = best["raw pipelined loop"]
        for label, seconds in best.items():
            report({"dataset": f"{ds.name} {len(ds):,}x{ds.dims}", "contender": label,
                    "queries_per_s": round(len(ds.queries) / seconds), "vs_raw": round(base / seconds, 2)})
    finally:
        conn.execute("DROP TABLE IF EXISTS eh_bench_batch_raw")
        hub.delete_space(NAME)


def _contenders(conn: Any, space: eh.Space, pooled: eh.Space, queries: Any) -> dict[str, Any]:
    query = f"SELECT key FROM eh_bench_batch_raw ORDER BY embedding <=> %s LIMIT {K}"  # noqa: S608

    def raw() -> None:
        with conn.pipeline():
            cursors = [conn.execute(query, (q,), prepare=True) for q in queries]
        for cur in cursors:
            cur.fetchall()

    return {
        "raw pipelined loop": raw,
        "multi_nearest_neighbors (Hub)": lambda: space.multi_nearest_neighbors(K, vectors=queries),
        "multi_nearest_neighbors (pool=2)": lambda: pooled.multi_nearest_neighbors(K, vectors=queries),
    }


def _race(contenders: dict[str, Any]) -> dict[str, float]:
    for fn in contenders.values():
        fn()  # warm: statements prepared, pages cached, pooled connections open
    times: dict[str, list[float]] = {label: [] for label in contenders}
    labels = list(contenders)
    for r in range(ROUNDS):
        for label in labels[r % len(labels):] + labels[: r % len(labels)]:
            started = time.perf_counter()
            contenders[label]()
            times[label].append(time.perf_counter() - started)
    return {label: min(t) for label, t in times.items()}
