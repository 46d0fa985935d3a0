"""Recall you can state: measure recall@k against exact search, and tune `ef_search` to a target.

Queries are a random sample of the space's own vectors. Ground truth is the same query with
index scans turned off (an exact scan in the database, so it uses the stored values and the
space's own distance), and the approximate answer is the space's normal search path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from psycopg import sql

from . import catalog, errors, rows
from .catalog import SpaceHandle, SupportsHandle, handle_of
from .db import translate
from .search import knn_query, run_knn
from .vectors import as_matrix

__all__ = ["EF_LADDER", "RecallPoint", "TuneResult", "measure", "tune"]

EF_LADDER = (10, 20, 40, 80, 160, 320, 640, 1000)


@dataclass(frozen=True)
class RecallPoint:
    ef_search: int
    recall: float  # mean recall@k over the sample
    latency_ms: float  # median single-query latency


@dataclass(frozen=True)
class TuneResult:
    """The chosen `ef_search` and every setting tried, cheapest first."""

    ef_search: int
    recall: float
    reached: bool  # False: even the largest ef_search tried stays below the target
    k: int
    sample: int
    points: list[RecallPoint] = field(default_factory=list)


class _Probe:
    """A sample of the space's own vectors as queries, with their exact top-k, measured once."""

    def __init__(self, h: SpaceHandle, k: int, sample: int, queries: Any = None) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
            raise errors.InvalidArgument(f"space {h.name!r}: k must be from 1 to 1000, not {k!r}")
        if isinstance(sample, bool) or not isinstance(sample, int) or not 1 <= sample <= 10_000:
            raise errors.InvalidArgument(
                f"space {h.name!r}: sample must be from 1 to 10000, not {sample!r}"
            )
        self.h, self.k = h, k
        if queries is not None:  # the caller's own queries: the faithful measurement
            matrix = as_matrix(h.name, h.dims, h.dtype, queries)
            self.queries = list(matrix[:sample])
            self.selves: list[tuple[str, str] | None] = [None] * len(self.queries)
        else:
            self._sample_rows(sample)
        exact = knn_query(h.tables, k + 1)
        self.truth: list[set[tuple[str, str]]] = []
        with translate(h.name), h.conn.transaction():
            h.conn.execute("SET LOCAL enable_indexscan = off")  # an exact scan
            for q, me in zip(self.queries, self.selves, strict=True):
                found = h.conn.execute(exact, {"q": q}, prepare=False).fetchall()  # never cached
                self.truth.append(_top(found, me, k))

    def _sample_rows(self, sample: int) -> None:
        h = self.h
        with translate(h.name):
            found = h.conn.execute(
                sql.SQL("SELECT partition, key, embedding FROM {} ORDER BY random() LIMIT %s").format(
                    h.tables.live
                ),
                (sample,),
            ).fetchall()
        if not found:
            raise errors.InvalidArgument(f"space {h.name!r} is empty: no recall to measure")
        # Each query is a stored row: it is left out of both answers, or every query would
        # trivially find itself and flatter the recall.
        self.queries = [rows.to_numpy(r[2]) for r in found]
        self.selves = [(r[0], r[1]) for r in found]

    def point(self, ef: int) -> RecallPoint:
        catalog.check_ef_search(self.h.name, ef)
        recalls, times = [], []
        for q, me, want in zip(self.queries, self.selves, self.truth, strict=True):
            started = time.perf_counter()
            with translate(self.h.name):
                (found,) = run_knn(
                    self.h.session, self.h.tables, [], [{"q": q}], max(ef, self.k + 1), k=self.k + 1
                )
            times.append(time.perf_counter() - started)
            got = _top(found, me, self.k)
            recalls.append(len(got & want) / len(want) if want else 1.0)
        return RecallPoint(ef, float(np.mean(recalls)), float(np.median(times) * 1000))


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
    progress: Callable[[int], None] | None = None,
) -> list[RecallPoint]:
    """Recall@k and median latency of the space's search at each `ef_search` in `ef_values`.

    `queries` (a matrix of your own query vectors) gives the faithful figure; without it,
    `sample` stored rows are the queries (each left out of its own answer), which tends to
    read a little optimistic because stored rows sit where the data is densest.
    """
    h = handle_of(space)
    probe = _Probe(h, k, sample, queries)
    points = []
    for ef in ef_values:
        points.append(probe.point(ef))
        if progress is not None:
            progress(len(points))
    return points


def tune(
    space: SpaceHandle | SupportsHandle,
    target_recall: float = 0.95,
    *,
    k: int = 10,
    sample: int = 100,
    queries: Any = None,
    apply: bool = True,
    progress: Callable[[int], None] | None = None,
) -> TuneResult:
    """The smallest `ef_search` (from EF_LADDER) whose measured recall@k reaches `target_recall`.

    With `apply`, it becomes the space's default. When no setting reaches the target, the
    best one tried is chosen and `reached` is False: raise recall further by rebuilding the
    index with larger `m` / `ef_construction` (`Space.create_index`).
    """
    h = handle_of(space)
    if isinstance(target_recall, bool) or not isinstance(target_recall, int | float) or not (
        0 < target_recall <= 1
    ):
        raise errors.InvalidArgument(
            f"space {h.name!r}: target_recall must be in (0, 1], not {target_recall!r}"
        )
    probe = _Probe(h, k, sample, queries)
    points: list[RecallPoint] = []
    for ef in EF_LADDER:  # cheapest first: stop at the first setting that reaches the target
        points.append(probe.point(ef))
        if progress is not None:
            progress(len(points))
        if points[-1].recall >= target_recall:
            break
    reached = points[-1].recall >= target_recall
    best = points[-1] if reached else max(points, key=lambda p: (p.recall, -p.ef_search))
    if apply:
        catalog.set_ef_search(h, best.ef_search)
    return TuneResult(best.ef_search, best.recall, reached, k, len(probe.queries), points)
