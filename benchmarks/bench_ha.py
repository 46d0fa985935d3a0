"""High availability on a local 3-node Patroni cluster (deploy/devcluster.py, synchronous mode).

    python -m benchmarks.bench_ha [--quick]      # or as part of `make bench`

It starts its own cluster on 127.0.0.1 (the runner's database is not used) and measures:

- **kill -9 of the leader node** (Patroni and every server process) under a writer of keyed
  batches through `failover.run_idempotent`: time from the kill to the first acknowledged
  write, the longest gap between acknowledgements (the outage the writer sees), batches lost;
- **kill -9 of the postmaster alone** (Patroni restarts it in place) and a **planned
  switchover**: the same outage;
- **read QPS** of HNSW searches on the primary alone, on 1 replica, on 2 replicas (the same
  reader threads, pinned to those servers);
- **replica lag under a bulk load**: peak bytes and seconds behind while batches are
  COPYed and an HNSW index is built, and how long after the last commit the standbys caught up.

All three servers share this machine's CPUs, so read QPS measures the overhead of spreading
reads, not the gain of separate machines. Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from embeddinghub import failover
from embeddinghub.failover import ConnectionSource, RetryPolicy

from . import common

ROOT = Path(__file__).resolve().parents[1]
POLICY = RetryPolicy(deadline=50)
BATCH = 100


def load_devcluster() -> Any:
    name = "embeddinghub_devcluster"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "deploy" / "devcluster.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def dataset(quick: bool) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(keys, corpus, queries): the pydocs corpus when present, else the package's demo data."""
    if not quick and (common.PYDOCS_DIR / "corpus.npy").exists():
        ds = common.load_pydocs()
        return ds.keys, ds.corpus, ds.queries
    data = np.load(ROOT / "embeddinghub" / "data" / "pydocs_demo.npz")
    vectors = data["embeddings"].astype(np.float32)
    return [str(k) for k in data["keys"]], vectors, vectors[::7] + np.float32(0.01)


def _configure(conn: psycopg.Connection[Any]) -> None:
    register_vector(conn)


# -- writes through a failure ------------------------------------------------------------------
class Writer:
    """Keyed batches (one transaction each) through run_idempotent, in a thread."""

    def __init__(self, cluster: Any, table: sql.Identifier, vectors: np.ndarray) -> None:
        self.cluster, self.table, self.vectors = cluster, table, vectors
        self.acks: list[tuple[float, int]] = []  # (when, port of the server that acknowledged)
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _batch(self, conn: psycopg.Connection[Any], b: int) -> int:
        n = len(self.vectors)
        rows = [(f"w{b}:{i}", b, self.vectors[(b * BATCH + i) % n]) for i in range(BATCH)]
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                sql.SQL("INSERT INTO {} (key, batch, embedding) VALUES (%s, %s, %s)"
                        " ON CONFLICT (key) DO UPDATE SET embedding = excluded.embedding").format(self.table),
                rows,
            )
        return int(conn.info.port)

    def _run(self) -> None:
        start = time.monotonic()
        with ConnectionSource(self.cluster.dsn(), POLICY, configure=_configure) as source:
            try:
                for b in range(100_000):
                    if self.stop.is_set() or time.monotonic() - start > 180:
                        break
                    port = failover.run_idempotent(source, lambda c, b=b: self._batch(c, b), POLICY)
                    self.acks.append((time.monotonic(), port))
            except BaseException as exc:  # noqa: BLE001 - reported
                self.error = exc

    def wait(self, ready: Callable[[], bool], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.error is not None:
                raise RuntimeError(f"the writer failed: {self.error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("timed out waiting for the writer")
            time.sleep(0.02)

    def acks_on(self, port: int, after: float) -> list[float]:
        return [t for t, p in self.acks if p == port and t > after]


def _setup_table(cluster: Any, name: str, dims: int) -> sql.Identifier:
    table = sql.Identifier(name)
    with failover.reconnect(cluster.dsn()) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        conn.execute(sql.SQL(
            "CREATE TABLE {} (key text PRIMARY KEY, batch int NOT NULL, embedding vector({}) NOT NULL)"
        ).format(table, sql.Literal(dims)))
    return table


def _lost(cluster: Any, table: sql.Identifier, writer: Writer) -> int:
    with failover.reconnect(cluster.dsn()) as conn:
        stored = {b for (b,) in conn.execute(sql.SQL("SELECT DISTINCT batch FROM {}").format(table))}
    return len(writer.acks) - len(stored & set(range(len(writer.acks))))


def failure_under_writes(cluster: Any, vectors: np.ndarray, kind: str) -> dict[str, Any]:
    """One failure (`leader`, `postmaster` or `switchover`) under the writer."""
    for node in cluster.nodes:
        if node.process is None or node.process.poll() is not None:
            cluster.start_node(node.name)
    cluster.wait_healthy(120)
    table = _setup_table(cluster, f"bench_ha_{kind}", vectors.shape[1])
    writer = Writer(cluster, table, vectors)
    writer.thread.start()
    try:
        writer.wait(lambda: len(writer.acks) >= 50)
        old = cluster.wait_leader()
        t0 = time.monotonic()
        if kind == "leader":
            cluster.kill_node(old)
            new = cluster.wait_leader(90, other_than=old)
        elif kind == "postmaster":
            cluster.kill_postmaster(old)
            new = old  # Patroni restarts it in place
        else:
            new = cluster.switchover()
        port = cluster.node(new).pg_port
        # a fresh acknowledgement by the (new) leader after the failure
        writer.wait(lambda: len(writer.acks_on(port, t0 + 0.5 if kind == "postmaster" else t0)) >= 20, 120)
    finally:
        writer.stop.set()
        writer.thread.join(POLICY.deadline + 10)
    times = [t for t, _ in writer.acks]
    # The outage is the longest gap between acknowledgements around the failure; it ends
    # with the first write the (new) primary acknowledged.
    gaps = [(b - a, b) for a, b in zip(times, times[1:], strict=False) if b > t0]
    outage, resumed = max(gaps)
    row = {
        "_group": "failover",
        "measure": {"leader": "kill -9 leader node", "postmaster": "kill -9 postmaster only",
                    "switchover": "planned switchover"}[kind],
        "kill_to_first_write_s": round(resumed - t0, 2),
        "write_outage_s": round(outage, 2),
        "batches_acked": len(writer.acks),
        "batches_lost": _lost(cluster, table, writer),
        "leader": "new" if new != old else "same",
    }
    if kind == "leader":
        cluster.start_node(old)
        t_rejoin = time.monotonic()
        cluster.wait_healthy(120)
        row["old_leader_rejoined_s"] = round(time.monotonic() - t_rejoin, 1)
    return row


# -- read QPS ----------------------------------------------------------------------------------
def read_qps(cluster: Any, keys: list[str], corpus: np.ndarray, queries: np.ndarray,
             quick: bool) -> list[dict[str, Any]]:
    cluster.wait_healthy(120)
    table = sql.Identifier("bench_ha_reads")
    with failover.reconnect(cluster.dsn(), configure=_configure) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        conn.execute(sql.SQL("CREATE TABLE {} (key text PRIMARY KEY, embedding vector({}))").format(
            table, sql.Literal(corpus.shape[1])))
        with conn.cursor().copy(sql.SQL("COPY {} FROM STDIN WITH (FORMAT BINARY)").format(table)) as copy:
            copy.set_types(["text", "vector"])
            for key, vec in zip(keys, corpus, strict=True):
                copy.write_row((key, vec))
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute(sql.SQL("CREATE INDEX ON {} USING hnsw (embedding vector_cosine_ops)").format(table))
        conn.execute(sql.SQL("ANALYZE {}").format(table))
        lsn = failover.write_lsn(conn)
    leader = cluster.wait_leader()
    standbys = [n.name for n in cluster.nodes if n.name != leader]
    for name in standbys:
        with psycopg.connect(cluster.node_dsn(name)) as c:
            failover.wait_for_lsn(c, lsn, timeout=60)
    threads_n, per_thread = 4, (100 if quick else 500)
    search = sql.SQL("SELECT key FROM {} ORDER BY embedding <=> %s LIMIT 10").format(table)
    rows = []
    setups = (("primary alone", [leader]), ("1 replica", standbys[:1]), ("2 replicas", standbys))
    for label, targets in setups:
        conns = []
        for i in range(threads_n):
            c = psycopg.connect(cluster.node_dsn(targets[i % len(targets)]), autocommit=True)
            register_vector(c)
            c.execute("SET hnsw.ef_search = 40")
            c.execute(search, (queries[0],)).fetchall()  # warm
            conns.append(c)
        latencies: list[float] = []
        lock = threading.Lock()

        def work(c: psycopg.Connection[Any], offset: int, latencies: list[float] = latencies,
                 lock: threading.Lock = lock) -> None:
            mine = []
            for j in range(per_thread):
                q = queries[(offset + j) % len(queries)]
                t = time.perf_counter()
                c.execute(search, (q,)).fetchall()
                mine.append(time.perf_counter() - t)
            with lock:
                latencies.extend(mine)

        workers = [threading.Thread(target=work, args=(c, i * 97)) for i, c in enumerate(conns)]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join(120)
        elapsed = time.perf_counter() - t0
        for c in conns:
            c.close()
        rows.append({
            "_group": "reads", "measure": f"read QPS, {label}", "servers": ", ".join(targets),
            "threads": threads_n,
            "queries": len(latencies), "qps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(common.percentile(latencies, 50) * 1000, 2),
            "p99_ms": round(common.percentile(latencies, 99) * 1000, 2),
        })
    return rows


# -- replica lag under a bulk load -------------------------------------------------------------
def lag_under_load(cluster: Any, keys: list[str], corpus: np.ndarray) -> dict[str, Any]:
    cluster.wait_healthy(120)
    leader = cluster.wait_leader()
    table = sql.Identifier("bench_ha_bulk")
    samples: list[tuple[int, float]] = []
    stop = threading.Event()

    def sample() -> None:
        with psycopg.connect(cluster.node_dsn(leader), autocommit=True) as c:
            for _ in range(20_000):
                if stop.is_set():
                    break
                for lag_b, lag_s in c.execute(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint,"
                    " coalesce(extract(epoch FROM replay_lag), 0)::float8 FROM pg_stat_replication"
                ):
                    samples.append((int(lag_b or 0), float(lag_s)))
                time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    with psycopg.connect(cluster.node_dsn(leader), autocommit=True) as conn:
        register_vector(conn)
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        conn.execute(sql.SQL("CREATE TABLE {} (key text PRIMARY KEY, embedding vector({}))").format(
            table, sql.Literal(corpus.shape[1])))
        step = 5000
        for start in range(0, len(keys), step):
            with conn.transaction(), conn.cursor().copy(
                sql.SQL("COPY {} FROM STDIN WITH (FORMAT BINARY)").format(table)
            ) as copy:
                copy.set_types(["text", "vector"])
                for key, vec in zip(keys[start:start + step], corpus[start:start + step], strict=True):
                    copy.write_row((key, vec))
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute(sql.SQL("CREATE INDEX ON {} USING hnsw (embedding vector_cosine_ops)").format(table))
        lsn = failover.write_lsn(conn)
        wal = conn.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, '0/0')::bigint", (lsn,)).fetchone()
    load_s = time.perf_counter() - t0
    t_done = time.perf_counter()
    for node in cluster.nodes:
        if node.name != leader:
            with psycopg.connect(cluster.node_dsn(node.name)) as c:
                failover.wait_for_lsn(c, lsn, timeout=120)
    caught_up = time.perf_counter() - t_done
    stop.set()
    sampler.join(10)
    return {
        "_group": "lag", "measure": "replica lag under bulk load", "rows": len(keys),
        "load_and_index_s": round(load_s, 2),
        "peak_lag_bytes": max((b for b, _ in samples), default=0),
        "peak_replay_lag_s": round(max((s for _, s in samples), default=0.0), 3),
        "caught_up_after_s": round(caught_up, 3), "_wal_position": wal[0] if wal else None,
    }


# -- entry points ------------------------------------------------------------------------------
def run(hub: Any, report: common.Report, quick: bool) -> None:
    """The runner's entry point; the bench starts its own cluster and ignores `hub`."""
    del hub
    keys, corpus, queries = dataset(quick)
    devcluster = load_devcluster()
    with devcluster.DevCluster() as cluster:
        for kind in ("leader", "postmaster", "switchover"):
            report(failure_under_writes(cluster, corpus, kind))
        for row in read_qps(cluster, keys, corpus, queries, quick):
            report(row)
        report(lag_under_load(cluster, keys, corpus))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_ha", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the demo data instead of the pydocs corpus")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    run(None, rows.append, args.quick)
    for group in ("failover", "reads", "lag"):
        print(common.format_table([r for r in rows if r["_group"] == group]) + "\n")
    print(f"(bench_ha: {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
