"""Peak client memory of one large `multiset`, against the size of the vectors it writes.

`python -m benchmarks.bench_memory [--rows 1000000] [--dims 384] [--index] [--dsn DSN]`

Each measurement runs in a fresh child process, so its peak RSS (`ru_maxrss`) is the
multiset's alone: the child connects, makes a float32 matrix of `rows x dims` and string
keys, then writes them with one `multiset` call into a new space. The ratio is that peak
less the process's size once connected (interpreter and libraries, ~0.1 GiB at any size)
over the bytes of the vectors, so it counts the input matrix, its keys and everything the
multiset adds; the target is <= 1.5. `total_ratio` is the whole peak over the vectors.
The HNSW build after the load runs in the server and adds no client memory, so by default
it is skipped (`--index` includes it: the public `Space.multiset` path, slower at a million
rows); the rows go through the same chunked COPY + INSERT either way. In `make bench`
(`run`) it measures 200k x 384, or 50k x 384 with `--quick`.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import uuid
from typing import Any

import numpy as np

import embeddinghub as eh
from embeddinghub import catalog, rows

from . import common
from .run import target_database

TARGET = 1.5


def child(dsn: str, n: int, dims: int, index: bool) -> dict[str, Any]:
    """In the measuring process: one multiset of n x dims; peak RSS before and after."""
    name = f"bench_memory_{uuid.uuid4().hex[:8]}"
    with eh.connect(dsn) as hub:
        space = hub.create_space(name, dims=dims)
        try:
            base = _peak()
            matrix = np.random.default_rng(0).random((n, dims), dtype=np.float32)
            keys = [f"item-{i}" for i in range(n)]
            before = _peak()
            started = time.perf_counter()
            if index:
                space.multiset(keys, matrix)
            else:  # the same rows path, without the (server-side) index build
                with hub.conn.transaction(), hub.conn.cursor() as cur:
                    catalog.drop_index(space.handle, cur)
                rows.multiset(space.handle, rows.make_batch(space.handle, keys, matrix),
                              rebuild_index=False)
            seconds = time.perf_counter() - started
            assert len(space) == n
            return {"rows": n, "dims": dims, "vector_bytes": matrix.nbytes, "start_rss": base,
                    "input_rss": before, "peak_rss": _peak(), "seconds": seconds}
        finally:
            hub.delete_space(name)


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def measure(dsn: str, n: int, dims: int, index: bool = False) -> dict[str, Any]:
    """Run `child` in a fresh interpreter and return its figures."""
    cmd = [sys.executable, "-m", "benchmarks.bench_memory", "--child", "--dsn", dsn,
           "--rows", str(n), "--dims", str(dims)] + (["--index"] if index else [])
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=6 * 3600)
    if done.returncode != 0:
        raise RuntimeError(f"memory bench child failed: {done.stderr.strip()[-2000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    # What the multiset's data costs: the peak over the process as it stood connected, before
    # making the input (interpreter, numpy, psycopg: ~0.1 GiB, the same at any size).
    figures["ratio"] = (figures["peak_rss"] - figures["start_rss"]) / figures["vector_bytes"]
    figures["total_ratio"] = figures["peak_rss"] / figures["vector_bytes"]
    return figures


def row(figures: dict[str, Any]) -> dict[str, Any]:
    gib = 1 << 30
    return {
        "measure": f"multiset {figures['rows']:,} x {figures['dims']} float32:"
                   " peak RSS over the connected baseline / vectors",
        "value": round(figures["ratio"], 3),
        "target": f"<= {TARGET}",
        "ok": figures["ratio"] <= TARGET,
        "total_ratio": round(figures["total_ratio"], 3),
        "vectors_gib": round(figures["vector_bytes"] / gib, 3),
        "baseline_gib": round(figures["start_rss"] / gib, 3),
        "peak_gib": round(figures["peak_rss"] / gib, 3),
        "peak_over_input_gib": round((figures["peak_rss"] - figures["input_rss"]) / gib, 3),
        "seconds": round(figures["seconds"], 1),
    }


def run(hub: eh.Hub, report: common.Report, quick: bool) -> None:
    report(row(measure(hub.dsn, 50_000 if quick else 200_000, 384)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_memory", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--index", action="store_true", help="include the HNSW build (slower)")
    parser.add_argument("--dsn", default=None, help="default: $EMBEDDINGHUB_DSN, else embedded")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.dsn, args.rows, args.dims, args.index)))
        return 0
    with target_database(args.dsn) as (dsn, where):
        print(f"on {where}", flush=True)
        result = row(measure(dsn, args.rows, args.dims, args.index))
    print(common.format_table([{"bench": "memory", **result}]))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
