"""Versioning benchmark: O(1) snapshots, rollback of 1 % of a big space, time-travel search.

Data: seeded Gaussian clusters (benchmarks.common.synthetic_clusters), 8 dims, l2, so a
1,000,000-row space loads in one `Space.multiset(keys, matrix)` call (its bulk path:
binary COPY, then one HNSW build). `quick` uses 100,000 rows instead of 1,000,000.

Measured:
  * snapshot: median of 30 snapshots of a 10,000-row space and of the big space, taken
    in turns; target: big/small <= 2 (a snapshot writes one catalog row, whatever the size);
  * rollback: 1 % of the big space's rows re-embedded (one multiset, timed for scale: a
    rollback rewrites the same rows, so it costs about the same), then `rollback()` to the
    version before; the state is then checked to equal that version (`diff` is empty);
    plus the `diff` of the same change;
  * search: `nearest_neighbors(10)` in the working state against the same search
    `as_of` the version before a 1 % re-embedding, taking turns per query, with the
    recall@10 of both against exact numpy search of their own state.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

import embeddinghub as eh

from .common import (
    Report,
    exact_top_k,
    interleaved_latency,
    recall_at_k,
    summarise_ms,
    synthetic_clusters,
    timed,
)

BENCH = "versions"
DIMS = 8
K = 10
SNAPSHOTS = 30
TARGET_SNAPSHOT_RATIO = 2.0  # big/small median snapshot time, at most


def run(hub: eh.Hub, report: Report, quick: bool) -> None:
    big_n = 100_000 if quick else 1_000_000
    queries = 200 if quick else 500
    made: list[str] = []

    def space_of(n: int) -> tuple[eh.Space, Any]:
        ds = synthetic_clusters(n, DIMS, queries, seed=n)
        name = f"bench_versions_{n}_{uuid.uuid4().hex[:6]}"
        made.append(name)
        space = hub.create_space(name, dims=DIMS)
        load_s, _ = timed(lambda: space.multiset(ds.keys, ds.corpus))
        report(_row(f"{n:,}x{DIMS}", "load (multiset, one call) s", load_s))
        return space, ds

    try:
        small, _ = space_of(10_000)
        big, ds = space_of(big_n)
        bench_snapshots(report, small, big)
        bench_rollback(report, big, ds)
        bench_search(report, big, ds)
    finally:
        for name in made:
            if hub.has_space(name):
                hub.delete_space(name)


def _row(dataset: str, measure: str, value: float, **extra: Any) -> dict[str, Any]:
    return {"bench": BENCH, "dataset": dataset, "measure": measure, "value": value,
            "target": "", "ok": None, **extra}


def bench_snapshots(report: Report, small: eh.Space, big: eh.Space) -> None:
    samples: dict[str, list[float]] = {"small": [], "big": []}
    for i in range(SNAPSHOTS):
        order = ("small", "big") if i % 2 == 0 else ("big", "small")
        for which in order:
            space = small if which == "small" else big
            seconds, _ = timed(space.snapshot)
            samples[which].append(seconds)
    small_ms = summarise_ms(samples["small"])
    big_ms = summarise_ms(samples["big"])
    ratio = big_ms["median_ms"] / small_ms["median_ms"]
    n_big = big.count()
    report(_row("10,000x8", "snapshot median ms", small_ms["median_ms"],
                p95_ms=small_ms["p95_ms"]))
    report(_row(f"{n_big:,}x8", "snapshot median ms", big_ms["median_ms"],
                p95_ms=big_ms["p95_ms"]))
    report(_row(f"{n_big:,} vs 10,000", "snapshot time ratio", ratio,
                target=f"<= {TARGET_SNAPSHOT_RATIO}", ok=ratio <= TARGET_SNAPSHOT_RATIO))


def _reembed(space: eh.Space, ds: Any, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Overwrite `fraction` of the rows with fresh vectors (one multiset); returns the
    row indices and the new vectors."""
    rng = np.random.default_rng(seed)
    n = len(ds)
    idx = np.sort(rng.choice(n, size=max(1, int(n * fraction)), replace=False))
    fresh = ds.corpus[rng.integers(0, n, len(idx))] + rng.standard_normal(
        (len(idx), DIMS), dtype=np.float32
    ) * np.float32(0.1)
    space.multiset([ds.keys[i] for i in idx], fresh)
    return idx, fresh.astype(np.float32)


def bench_rollback(report: Report, big: eh.Space, ds: Any) -> None:
    label = f"{len(ds):,}x8"
    before = big.snapshot(tag="before-reembed")
    reembed_s, (idx, _) = timed(lambda: _reembed(big, ds, 0.01, seed=1))
    report(_row(label, f"re-embed {len(idx):,} rows (multiset, for scale) ms", reembed_s * 1e3))
    big.snapshot(tag="reembedded")
    diff_s, d = timed(lambda: big.diff(before, "reembedded"))
    assert len(d.changed) == len(idx) and not d.added and not d.removed, d
    report(_row(label, f"diff of {len(idx):,} changed rows ms", diff_s * 1e3))
    rollback_s, version = timed(lambda: big.rollback(before))
    assert not big.diff(before), "rollback did not restore the version"
    report(_row(label, f"rollback of {len(idx):,} changed rows (1 %) ms", rollback_s * 1e3,
                _version=version.number))


def bench_search(report: Report, big: eh.Space, ds: Any) -> None:
    label = f"{len(ds):,}x8"
    base = big.snapshot(tag="search-base")
    # The working state moves on: 1 % re-embedded, so 1 % of base's rows live in history.
    idx, fresh = _reembed(big, ds, 0.01, seed=2)
    working = ds.corpus.copy()
    working[idx] = fresh

    def now(q: np.ndarray) -> list[str]:
        return [n.key for n in big.nearest_neighbors(K, vector=q)]

    def then(q: np.ndarray) -> list[str]:
        return [n.key for n in big.nearest_neighbors(K, vector=q, version=base)]

    samples, results = interleaved_latency({"working": now, "as_of": then}, ds.queries,
                                           warmup=min(50, len(ds.queries)))
    truth_now = exact_top_k(working, ds.queries, K, "l2")
    truth_then = exact_top_k(ds.corpus, ds.queries, K, "l2")
    now_ms, then_ms = summarise_ms(samples["working"]), summarise_ms(samples["as_of"])
    report(_row(label, "nn@10 working state median ms", now_ms["median_ms"],
                p95_ms=now_ms["p95_ms"],
                recall=recall_at_k(results["working"], truth_now, ds.keys)))
    report(_row(label, "nn@10 as_of (1 % changed since) median ms", then_ms["median_ms"],
                p95_ms=then_ms["p95_ms"],
                recall=recall_at_k(results["as_of"], truth_then, ds.keys)))
    report(_row(label, "nn@10 as_of / working latency", then_ms["median_ms"] / now_ms["median_ms"]))
