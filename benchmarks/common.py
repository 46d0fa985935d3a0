"""Shared helpers of the benchmarks: data, exact ground truth, recall, timing, tables, JSON.

Every bench module exposes `run(hub, report, quick)`; `report(row)` takes one table row
(a dict with a "bench" key). These helpers keep the benches short and their numbers
comparable.
"""

from __future__ import annotations

import gc
import itertools
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def _data_dir() -> Path:
    # $EMBEDDINGHUB_BENCH_DATA, else shared/data beside the checkout, else the workplace copy.
    given = os.environ.get("EMBEDDINGHUB_BENCH_DATA")
    if given:
        return Path(given)
    beside = Path(__file__).resolve().parents[2] / "shared" / "data"
    return beside if beside.is_dir() else Path("/work/shared/data")


DATA_DIR = _data_dir()
PYDOCS_DIR = DATA_DIR / "pydocs"
RESULTS_DIR = Path(__file__).resolve().parent / "results"

Report = Callable[[dict[str, Any]], None]


# -- data -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Dataset:
    """A corpus with row-aligned keys, held-out queries and the metric to search with."""

    name: str
    keys: list[str]
    corpus: np.ndarray  # float32 (n, dims), C-contiguous
    queries: np.ndarray  # float32 (q, dims)
    metric: str  # "l2" | "cosine" | "ip"
    sections: list[str] | None = None  # pydocs only: top-level doc folder per row

    @property
    def dims(self) -> int:
        return int(self.corpus.shape[1])

    def __len__(self) -> int:
        return int(self.corpus.shape[0])


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def load_pydocs(limit: int | None = None, queries: int | None = None) -> Dataset:
    """The pydocs corpus (30,165 x 384, float16 on disk -> float32), its keys and 1000 queries.

    `limit` keeps the first rows (quick runs); ground truth is then computed on that subset.
    """
    corpus = np.load(PYDOCS_DIR / "corpus.npy")[:limit].astype(np.float32)
    keys = _lines(PYDOCS_DIR / "corpus_ids.txt")[: len(corpus)]
    sections = _lines(PYDOCS_DIR / "corpus_sections.txt")[: len(corpus)]
    qs = np.load(PYDOCS_DIR / "queries.npy")[:queries].astype(np.float32)
    if len(keys) != len(corpus) or len(set(keys)) != len(keys):
        raise RuntimeError(f"{PYDOCS_DIR}: keys are not unique and row-aligned with corpus.npy")
    return Dataset("pydocs", keys, np.ascontiguousarray(corpus), qs, "cosine", sections)


def synthetic_clusters(
    n: int, dims: int, queries: int, *, clusters: int = 100, spread: float = 0.5, seed: int = 42,
    metric: str = "l2",
) -> Dataset:
    """Seeded Gaussian clusters: centres ~ N(0, 1), points = centre + N(0, spread^2).

    Queries are fresh draws from the same mixture (not corpus rows). Clustered data gives
    neighbours that mean something, unlike uniform noise where every point is about
    equally far from every other.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dims), dtype=np.float32)

    def draw(count: int) -> np.ndarray:
        labels = rng.integers(0, clusters, count)
        noise = rng.standard_normal((count, dims), dtype=np.float32) * np.float32(spread)
        return np.ascontiguousarray(centres[labels] + noise)

    corpus, qs = draw(n), draw(queries)
    keys = [f"syn{i}" for i in range(n)]
    return Dataset(f"synthetic-{n // 1000}k", keys, corpus, qs, metric)


def index_bytes(hub: Any, space: Any) -> int:
    """The size of a space's HNSW indexes (one per partition), in bytes."""
    row = hub.execute(
        "SELECT coalesce(sum(pg_relation_size(i.indexrelid)), 0) FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam"
        " JOIN pg_inherits h ON h.inhrelid = i.indrelid"
        " WHERE a.amname = 'hnsw' AND h.inhparent = %s::regclass",
        (space.tables.live.as_string(hub.conn),),
    )
    return int(row[0][0])


# -- ground truth and recall -------------------------------------------------------------
def exact_top_k(
    corpus: np.ndarray, queries: np.ndarray, k: int, metric: str, *, chunk: int = 256
) -> np.ndarray:
    """Row indices of the exact k nearest corpus rows per query, closest first (numpy only)."""
    if metric == "cosine":
        corpus = corpus / np.maximum(np.linalg.norm(corpus, axis=1, keepdims=True), 1e-30)
        queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-30)
    sq_norms = np.einsum("ij,ij->i", corpus, corpus) if metric == "l2" else None
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        dots = q @ corpus.T
        # Smaller is closer: l2 -> |x|^2 - 2 x.q (|q|^2 is constant per query); else -x.q.
        score = sq_norms - 2.0 * dots if sq_norms is not None else -dots
        part = np.argpartition(score, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(score, part, axis=1), axis=1, kind="stable")
        out[start : start + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def recall_at_k(found: Sequence[Iterable[str]], truth: np.ndarray, keys: Sequence[str]) -> float:
    """Mean of |ANN top-k ∩ exact top-k| / k over queries (k = truth.shape[1])."""
    k = truth.shape[1]
    total = 0.0
    for hits, exact in zip(found, truth, strict=True):
        want = {keys[i] for i in exact}
        total += len(want.intersection(list(hits)[:k])) / k
    return total / len(truth) if len(truth) else math.nan


# -- timing ---------------------------------------------------------------------------
def percentile(samples: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples, dtype=np.float64), q)) if samples else math.nan


def summarise_ms(samples: Sequence[float]) -> dict[str, float]:
    """Median, p95 and mean of samples in seconds, as milliseconds."""
    return {
        "median_ms": percentile(samples, 50) * 1e3,
        "p95_ms": percentile(samples, 95) * 1e3,
        "mean_ms": float(np.mean(samples)) * 1e3 if samples else math.nan,
    }


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def interleaved_latency(
    contenders: dict[str, Callable[[np.ndarray], Any]],
    queries: np.ndarray,
    *,
    warmup: int = 50,
) -> tuple[dict[str, list[float]], dict[str, list[Any]]]:
    """Per-query latency of each contender, taking turns on every query.

    Query i runs every contender back to back, in each of their orders in turn, so machine
    noise (other processes, cache state, CPU frequency) lands on all of them alike. All
    orders, not just rotations: the second to search a query's path through a graph finds
    its pages in the CPU caches, and with three contenders a rotation puts one of a pair
    that share a graph after the other twice as often as before it. The first
    `warmup` queries run untimed first (connections warm, statements prepared, index pages
    cached). The garbage collector is off while timing, as in `timeit`: its pauses scale
    with the benchmark's own data, not with the code measured. Returns the samples
    (seconds) and each contender's result per query.
    """
    names = list(contenders)
    orders = list(itertools.permutations(names))
    for q in queries[:warmup]:
        for name in names:
            contenders[name](q)
    samples: dict[str, list[float]] = {name: [] for name in names}
    results: dict[str, list[Any]] = {name: [] for name in names}
    clock = time.perf_counter
    gc.collect()
    gc.disable()
    try:
        for i, q in enumerate(queries):
            for name in orders[i % len(orders)]:
                fn = contenders[name]
                t0 = clock()
                result = fn(q)
                samples[name].append(clock() - t0)
                results[name].append(result)
    finally:
        gc.enable()
    return samples, results


# -- output ---------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value == 0 or abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]], *, skip: Sequence[str] = ("bench",)) -> str:
    """A Markdown table of `rows`; columns in order of first appearance.

    Keys starting with "_" are details for the JSON file only.
    """
    columns: list[str] = []
    for row in rows:
        columns.extend(
            c for c in row if c not in columns and c not in skip and not c.startswith("_")
        )
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(columns), sep, *(line(r) for r in cells)])


def environment(conn: Any = None) -> dict[str, Any]:
    """Machine and server facts stored with every result file."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
    }
    try:
        env["loadavg_1m"] = os.getloadavg()[0]
    except OSError:
        pass
    if conn is not None:
        row = conn.execute(
            "SELECT current_setting('server_version'),"
            " (SELECT extversion FROM pg_extension WHERE extname = 'vector'),"
            " current_setting('shared_buffers'), current_setting('max_parallel_maintenance_workers')"
        ).fetchone()
        if row:
            env.update(
                postgres=row[0], pgvector=row[1], shared_buffers=row[2],
                max_parallel_maintenance_workers=row[3],
            )
    return env


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_finite(payload), indent=2, default=_json_default, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def _finite(value: Any) -> Any:
    """NaN/inf become null: strict JSON has no NaN."""
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def result_path(out: str | None) -> Path:
    if out:
        return Path(out)
    return RESULTS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
