"""Filtered search: partitions (one HNSW sub-index each) against a WHERE on one global index.

The pydocs corpus (30,165 x 384, cosine, 1000 real queries) split by its top-level
documentation section: 15 sections from 16,794 rows down to 1. For every section:

  * partition: `Space.nearest_neighbors(10, vector=q, partition=section)` on a space with one
    partition per section, each with its own HNSW index (the space's defaults: m=16,
    ef_construction=64, ef_search=40);
  * where: `Space.nearest_neighbors(10, vector=q, where={"section": section})` on a space
    with one partition and the section in metadata: pgvector's iterative index scan, the
    metadata GIN index when the planner prefers it, and an exact answer when the index
    runs dry;
  * plain_where: what a pgvector user writes, the thing we beat: a plain table
    `(key, section, embedding)` with ONE HNSW index (same m / ef_construction), analysed,
    queried with `WHERE section = %s ORDER BY embedding <=> %s LIMIT 10` at the default
    ef_search = 40 and no iterative scan (pgvector filters after the index scan).

recall@10 is against exact numpy top-10 within the section (over min(10, rows) for a
section smaller than 10 rows); `*_returned` is the mean number of rows a query got back.
Latency: the median per query, the contenders taking turns on every query on one
connection (benchmarks.common.interleaved_latency). Target: partition recall@10 >= 0.95
in every section, the smallest included.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from pgvector import Vector
from psycopg import sql

import embeddinghub as eh

from .common import (
    Dataset,
    Report,
    exact_top_k,
    interleaved_latency,
    load_pydocs,
    recall_at_k,
    summarise_ms,
    timed,
)

K = 10
TARGET_RECALL = 0.95
PARTITIONED = "bench_filtered_partitioned"
GLOBAL = "bench_filtered_global"
PLAIN = sql.Identifier("eh_bench_filtered_plain")


def run(hub: eh.Hub, report: Report, quick: bool) -> None:
    ds = load_pydocs(queries=100 if quick else None)
    assert ds.sections is not None
    _cleanup(hub)
    try:
        loads = _load(hub, ds)
        _measure(hub, ds, report, warmup=10 if quick else 50, extra={"_load_s": loads})
    finally:
        _cleanup(hub)


def _cleanup(hub: eh.Hub) -> None:
    for name in (PARTITIONED, GLOBAL):
        if hub.has_space(name):
            hub.delete_space(name)
    hub.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(PLAIN))


def _load(hub: eh.Hub, ds: Dataset) -> dict[str, float]:
    assert ds.sections is not None
    parts = hub.create_space(PARTITIONED, dims=ds.dims, metric=ds.metric)
    for section in sorted(set(ds.sections) - {"default"}):
        parts.create_partition(section)
    partitioned_s, _ = timed(lambda: parts.multiset(ds.keys, ds.corpus, partition=ds.sections))

    flat = hub.create_space(GLOBAL, dims=ds.dims, metric=ds.metric)
    meta = [{"section": s} for s in ds.sections]
    global_s, _ = timed(lambda: flat.multiset(ds.keys, ds.corpus, metadata=meta))

    def plain() -> None:
        conn = hub.conn
        conn.execute(
            sql.SQL("CREATE TABLE {} (key text, section text, embedding vector({}))").format(
                PLAIN, sql.Literal(ds.dims)
            )
        )
        with conn.cursor() as cur, cur.copy(
            sql.SQL("COPY {} (key, section, embedding) FROM STDIN WITH (FORMAT BINARY)").format(
                PLAIN
            )
        ) as copy:
            copy.set_types(["text", "text", "vector"])
            for row in zip(ds.keys, ds.sections or [], ds.corpus, strict=True):
                copy.write_row([row[0], row[1], Vector(row[2])])
        with conn.transaction():
            conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
            conn.execute(
                sql.SQL(
                    "CREATE INDEX ON {} USING hnsw (embedding vector_cosine_ops)"
                    " WITH (m = {}, ef_construction = {})"
                ).format(PLAIN, sql.Literal(parts.m), sql.Literal(parts.ef_construction))
            )
        conn.execute(sql.SQL("ANALYZE {}").format(PLAIN))

    plain_s, _ = timed(plain)
    return {"partition_load_s": partitioned_s, "where_load_s": global_s, "plain_load_s": plain_s}


def _measure(
    hub: eh.Hub, ds: Dataset, report: Report, warmup: int, extra: dict[str, Any]
) -> None:
    assert ds.sections is not None
    parts, flat = hub.get_space(PARTITIONED), hub.get_space(GLOBAL)
    sections = np.asarray(ds.sections)
    keys = np.asarray(ds.keys)
    conn = hub.conn
    # The plain query runs as a pgvector user would: session defaults, no iterative scan.
    conn.execute("SELECT set_config('hnsw.ef_search', '40', false)")
    conn.execute("SELECT set_config('hnsw.iterative_scan', 'off', false)")
    plain_query = sql.SQL(
        "SELECT key FROM {} WHERE section = %s ORDER BY embedding <=> %s LIMIT {}"
    ).format(PLAIN, sql.Literal(K))
    worst = 1.0
    for section, rows in Counter(ds.sections).most_common():
        idx = np.flatnonzero(sections == section)
        k = min(K, rows)
        truth = exact_top_k(ds.corpus[idx], ds.queries, k, ds.metric)
        part_keys = keys[idx].tolist()

        def partition_nn(q: np.ndarray, section: str = section) -> list[str]:
            return [h.key for h in parts.nearest_neighbors(K, vector=q, partition=section)]

        def where_nn(q: np.ndarray, section: str = section) -> list[str]:
            return [h.key for h in flat.nearest_neighbors(K, vector=q, where={"section": section})]

        def plain_nn(q: np.ndarray, section: str = section) -> list[str]:
            found = conn.execute(plain_query, (section, Vector(q)), prepare=True).fetchall()
            return [r[0] for r in found]

        samples, results = interleaved_latency(
            {"partition": partition_nn, "where": where_nn, "plain_where": plain_nn},
            ds.queries,
            warmup=min(warmup, len(ds.queries)),
        )
        row: dict[str, Any] = {"partition": section, "rows": rows}
        for name in ("partition", "where", "plain_where"):
            prefix = "" if name == "partition" else f"{name}_"
            row[f"{prefix}recall_at_10"] = recall_at_k(results[name], truth, part_keys)
            row[f"{prefix}latency_ms"] = summarise_ms(samples[name])["median_ms"]
            if name != "partition":
                row[f"{name}_returned"] = float(np.mean([len(r) for r in results[name]]))
        row["target_met"] = row["recall_at_10"] >= TARGET_RECALL
        row["_queries"] = len(ds.queries)
        row["_p95_ms"] = {n: summarise_ms(s)["p95_ms"] for n, s in samples.items()}
        worst = min(worst, row["recall_at_10"])
        report(row)
    report({"partition": "(worst partition)", "recall_at_10": worst,
            "target_met": worst >= TARGET_RECALL, **extra})
