"""Recall you can state: measure recall@k against exact search, and tune `ef_search` to a target.

Ground truth is each query answered with index scans off (an exact scan in the database, so
it uses the stored values and the space's own distance); the approximate answer is the
space's normal search path. What the queries are decides how honest the figure is, in this
order: vectors the caller passes; the space's recent queries the hub kept (opt-in,
`connect(keep_queries=N)`); a sample of stored rows (each left out of its own answer), which
reads optimistic because stored rows sit where the data is densest. A tuning measured on
stored rows alone therefore never lowers `ef_search` below the space's current setting.
In a space with several non-empty partitions, recall is measured per partition with
partition-scoped searches, and the setting chosen reaches the target in every one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from psycopg import sql

from . import catalog, errors, rows, search
from .catalog import SpaceHandle, SupportsHandle, handle_of
from .db import translate
from .search import knn_query, run_knn
from .vectors import as_matrix

__all__ = ["EF_LADDER", "RecallPoint", "TuneResult", "measure", "tune"]

EF_LADDER = (10, 20, 40, 80, 160, 320, 640, 1000)
DEFAULT_TARGET = 0.95
# How the queries of a measurement were obtained (TuneResult.method), most faithful first.
GIVEN, RECENT, STORED = "given queries", "recent queries", "stored rows"


@dataclass(frozen=True)
class RecallPoint:
    ef_search: int
    recall: float  # mean recall@k over the sample (the worst partition's, per partition)
    latency_ms: float  # median single-query latency
    partitions: dict[str, float] = field(default_factory=dict)  # recall per partition, if split


@dataclass(frozen=True)
class TuneResult:
    """The chosen `ef_search` and every setting tried, cheapest first."""

    ef_search: int
    recall: float
    reached: bool  # False: even the largest ef_search tried stays below the target
    k: int
    sample: int
    points: list[RecallPoint] = field(default_factory=list)
    method: str = GIVEN  # what the queries were: GIVEN, RECENT or STORED
    target: float = DEFAULT_TARGET
    applied: bool = False  # whether it became the space's default


class _Probe:
    """Queries with their exact top-k (within one partition, or the whole space), measured once."""

    def __init__(self, h: SpaceHandle, k: int, queries: _Queries, partition: str | None = None) -> None:
        self.h, self.k, self.partition = h, k, partition
        self.conditions: list[sql.Composable] = []
        self.params: dict[str, Any] = {}
        if partition is not None:
            self.conditions, self.params = [sql.SQL("partition = %(part)s")], {"part": partition}
        self.queries, self.selves = queries.vectors, queries.selves
        exact = knn_query(h.tables, k + 1, conditions=self.conditions, exact=True)
        self.truth: list[set[tuple[str, str]]] = []
        with translate(h.name), h.conn.transaction():
            h.conn.execute("SET LOCAL enable_indexscan = off")  # an exact scan
            for q, me in zip(self.queries, self.selves, strict=True):
                found = h.conn.execute(exact, {**self.params, "q": q}, prepare=False).fetchall()
                self.truth.append(_top(found, me, k))  # prepare=False: never cached, see search

    def point(self, ef: int) -> tuple[float, list[float]]:
        """Mean recall@k at `ef`, and each query's latency in seconds."""
        catalog.check_ef_search(self.h.name, ef)
        recalls, times = [], []
        for q, me, want in zip(self.queries, self.selves, self.truth, strict=True):
            started = time.perf_counter()
            with translate(self.h.name):
                (found,) = run_knn(
                    self.h.session, self.h.tables, self.conditions, [{**self.params, "q": q}],
                    min(catalog.EF_SEARCH_MAX, max(ef, self.h.tables.candidates(self.k + 1))), k=self.k + 1,
                )
            times.append(time.perf_counter() - started)
            got = _top(found, me, self.k)
            recalls.append(len(got & want) / len(want) if want else 1.0)
        return float(np.mean(recalls)), times


@dataclass(frozen=True)
class _Queries:
    vectors: list[np.ndarray]
    selves: list[tuple[str, str] | None]  # the stored row each query is, left out of its answer
    method: str


def _queries(h: SpaceHandle, sample: int, given: Any, partition: str | None) -> _Queries:
    if given is not None:  # the caller's own queries: the faithful measurement
        matrix = as_matrix(h.name, h.dims, h.dtype, given)
        return _Queries(list(matrix[:sample]), [None] * min(sample, len(matrix)), GIVEN)
    recent = search.recent_queries(h)
    if len(recent):
        return _Queries(list(recent[-sample:]), [None] * min(sample, len(recent)), RECENT)
    where: sql.Composable = sql.SQL("")
    params: tuple[str, ...] = ()
    if partition is not None:
        where, params = sql.SQL(" WHERE partition = %s"), (partition,)
    with translate(h.name):
        found = h.conn.execute(
            sql.SQL("SELECT partition, key, embedding FROM {}{} ORDER BY random() LIMIT %s").format(
                h.tables.live, where
            ),
            (*params, sample),
        ).fetchall()
    # Each query is a stored row: it is left out of both answers, or every query would
    # trivially find itself and flatter the recall.
    return _Queries([rows.to_numpy(r[2]) for r in found], [(r[0], r[1]) for r in found], STORED)


class _Bench:
    """Probes of a space: one per non-empty partition when there are several, else one."""

    def __init__(self, h: SpaceHandle, k: int, sample: int, given: Any, split: bool | None) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
            raise errors.InvalidArgument(f"space {h.name!r}: k must be from 1 to 1000, not {k!r}")
        if isinstance(sample, bool) or not isinstance(sample, int) or not 1 <= sample <= 10_000:
            raise errors.InvalidArgument(f"space {h.name!r}: sample must be from 1 to 10000, not {sample!r}")
        parts = [p["name"] for p in catalog.list_partitions(h) if p["rows"] > 0]
        if not parts:
            raise errors.InvalidArgument(f"space {h.name!r} is empty: no recall to measure")
        split = len(parts) > 1 if split is None else split
        self.probes: dict[str | None, _Probe] = {}
        self.method = GIVEN
        for part in parts if split else [None]:
            queries = _queries(h, sample, given, part)
            self.method = queries.method
            if queries.vectors:
                self.probes[part] = _Probe(h, k, queries, part)
        self.sample = max(len(p.queries) for p in self.probes.values())

    def point(self, ef: int) -> RecallPoint:
        by_part, times = {}, []
        for part, probe in self.probes.items():
            by_part[part], took = probe.point(ef)
            times += took
        named = {str(p): r for p, r in by_part.items() if p is not None}
        return RecallPoint(ef, min(by_part.values()), float(np.median(times) * 1000), named)


def _top(rows: list[tuple[object, ...]], me: tuple[str, str] | None, k: int) -> set[tuple[str, str]]:
    """(partition, key) of the first k rows of a knn answer, the query's own row left out."""
    hits = [(str(part), str(key)) for key, part, *_rest in rows]
    return set([h for h in hits if h != me][:k])


def measure(
    space: SpaceHandle | SupportsHandle,
    ef_values: tuple[int, ...] = EF_LADDER,
    *,
    k: int = 10,
    sample: int = 100,
    queries: Any = None,
    per_partition: bool | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[RecallPoint]:
    """Recall@k and median latency of the space's search at each `ef_search` in `ef_values`.

    `queries` (a matrix of your own query vectors) gives the faithful figure; without it,
    the space's recent queries (if the hub keeps them) or `sample` stored rows are used
    (see the module docstring). `per_partition` (default: when the space has several
    non-empty partitions) measures partition-scoped searches and reports the worst.
    """
    h = handle_of(space)
    bench = _Bench(h, k, sample, queries, per_partition)
    points = []
    for ef in ef_values:
        points.append(bench.point(ef))
        if progress is not None:
            progress(len(points))
    return points


def tune(
    space: SpaceHandle | SupportsHandle,
    target_recall: float | None = None,
    *,
    k: int = 10,
    sample: int = 100,
    queries: Any = None,
    apply: bool = True,
    per_partition: bool | None = None,
    progress: Callable[[int], None] | None = None,
) -> TuneResult:
    """The smallest `ef_search` (from EF_LADDER) whose measured recall@k reaches the target:
    `target_recall`, else the space's own target (`Space.set_target_recall`), else 0.95.

    With `apply`, it becomes the space's default, except that a measurement on stored rows
    alone never lowers it (it only raises it). When no setting reaches the target, the best
    one tried is chosen and `reached` is False: raise recall further by rebuilding the index
    with larger `m` / `ef_construction` (`Space.create_index`).
    """
    h = handle_of(space)
    target = _target(h, target_recall)
    bench = _Bench(h, k, sample, queries, per_partition)
    points: list[RecallPoint] = []
    for ef in EF_LADDER:  # cheapest first: stop at the first setting that reaches the target
        points.append(bench.point(ef))
        if progress is not None:
            progress(len(points))
        if points[-1].recall >= target:
            break
    reached = points[-1].recall >= target
    best = points[-1] if reached else max(points, key=lambda p: (p.recall, -p.ef_search))
    chosen = best.ef_search
    if bench.method == STORED and chosen < h.ef_search:
        chosen = h.ef_search  # an optimistic estimate must not lower real recall
    at_chosen = next((p for p in points if p.ef_search == chosen), None) or bench.point(chosen)
    if apply and chosen != h.ef_search:
        catalog.set_ef_search(h, chosen)
    return TuneResult(
        chosen, at_chosen.recall, reached, k, bench.sample, points, bench.method, target, apply
    )


def _target(h: SpaceHandle, target_recall: float | None) -> float:
    if target_recall is None:
        return h.target_recall if h.target_recall is not None else DEFAULT_TARGET
    return catalog.check_target_recall(h.name, target_recall)
