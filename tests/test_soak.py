"""A bounded soak: writer, reader and snapshot/rollback processes on one space at once.

Writers keep a model of their own keys (one partition each) and all upsert one shared key
set in random orders; readers search and iterate; one process snapshots, reads every
snapshot back, and rolls back (undoing each rollback in the same transaction, so the
writers' models stay true). The run is bounded in calls and in seconds (about 20 s of
work). Afterwards: no process saw an error, the working state equals the writers' models,
every shared row holds a value some writer committed, and no version changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from processes import Worker, workers_fixture  # noqa: F401 (the `workers` fixture)

import embeddinghub as eh

SECONDS = float(os.environ.get("EMBEDDINGHUB_SOAK_SECONDS", "20"))
WRITERS, READERS, KEYS, SHARED, DIMS = 4, 2, 150, 60, 8


def test_soak_writers_readers_snapshots_rollbacks(
    dsn: str, make_space: Callable[..., eh.Space], workers: Callable[..., Worker], tmp_path: Path
) -> None:
    space = make_space(dims=DIMS)
    for i in range(WRITERS):
        space.create_partition(f"w{i}")
    go = tmp_path / "go"
    common = {"dsn": dsn, "space": space.name, "seconds": SECONDS, "go": str(go)}
    ws = [workers("soak_writer", id=i, keys=KEYS, shared=SHARED, max_calls=5000, **common)
          for i in range(WRITERS)]
    rs = [workers("soak_reader", writers=WRITERS, max_calls=20000, **common) for _ in range(READERS)]
    vs = workers("soak_versions", max_calls=200, **common)
    go.touch()
    results = {f"writer {i}": w.result(timeout=SECONDS + 120) for i, w in enumerate(ws)}
    results.update({f"reader {i}": r.result(timeout=SECONDS + 120) for i, r in enumerate(rs)})
    results["versions"] = vs.result(timeout=SECONDS + 300)
    errors = {who: (r["errors"], r["examples"]) for who, r in results.items() if r["errors"]}
    assert not errors
    for who, r in results.items():
        assert r["ok"] > 0, f"{who} made no call"
    assert results["versions"]["log"][0] >= 2  # snapshots were taken (and rolled back to)

    for i in range(WRITERS):
        committed, model = results[f"writer {i}"]["log"]
        stored = {k: v.tolist() for k, v in space.iterator(partition=f"w{i}")}
        assert stored == model, f"partition w{i} differs from writer {i}'s model"
        results[f"writer {i}"]["committed"] = set(committed)
    shared = dict(space.iterator(partition="default"))
    assert len(shared) == SHARED
    for key, vec in shared.items():
        writer, call = int(vec[0]), int(vec[1])
        assert call in results[f"writer {writer}"]["committed"], key
        assert np.all(vec[2:] == 0)
