"""Races between real processes end in a typed error naming the space or partition, or in a
consistent success; server-side failures map to the fitting embeddinghub error.

Every worker (tests/race_worker.py) is a separate Python process with its own connection,
bounded in calls and in time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from processes import Worker, workers_fixture  # noqa: F401 (the `workers` fixture)

import embeddinghub as eh
from embeddinghub import catalog, db, errors


def wait_for_calls(space: eh.Space, rows: int = 1, seconds: float = 20) -> None:
    """Until the workers have written `rows` rows (so they are busy)."""
    deadline = time.monotonic() + seconds
    while len(space) < rows:
        assert time.monotonic() < deadline, "the workers never started writing"
        time.sleep(0.01)


def only(result: dict[str, Any], *allowed: str) -> None:
    unexpected = {k: v for k, v in result["errors"].items() if k not in allowed}
    assert not unexpected, result["examples"]


def test_delete_space_under_writers_and_readers(
    hub: eh.Hub, dsn: str, make_space: Callable[..., eh.Space], workers: Callable[..., Worker]
) -> None:
    space = make_space(dims=8)
    space.multiset({f"r{i}": np.ones(8) * i for i in range(50)})
    ws = [workers("writer", dsn=dsn, space=space.name, seed=s) for s in (1, 2)]
    rs = [workers("reader", dsn=dsn, space=space.name)]
    wait_for_calls(space, 60)
    hub.delete_space(space.name)
    for w in ws + rs:
        result = w.result()
        assert result["errors"].get("SpaceNotFound"), result  # each one saw it go
        only(result, "SpaceNotFound")
        assert space.name in result["examples"]["SpaceNotFound"]
    with pytest.raises(eh.SpaceNotFound):
        hub.delete_space(space.name)


def test_two_deletes_of_one_space(hub: eh.Hub, dsn: str, make_space: Callable[..., eh.Space]) -> None:
    space = make_space(dims=4)
    with eh.connect(dsn) as other:
        with hub.conn.transaction():  # hold the table so both deletes queue up behind it
            hub.execute(psycopg.sql.SQL("LOCK TABLE {} IN SHARE MODE").format(space.tables.live))
            outcome: list[BaseException | None] = []
            t = threading.Thread(target=lambda: outcome.append(_try(other.delete_space, space.name)))
            t.start()
            time.sleep(0.3)  # the other delete is now waiting for the lock (not asserted on)
        t.join(30)
        second = _try(hub.delete_space, space.name)
    results = [outcome[0], second]
    assert sum(r is None for r in results) == 1, results
    assert any(isinstance(r, eh.SpaceNotFound) for r in results), results


def _try(call: Callable[..., Any], *args: Any) -> BaseException | None:
    try:
        call(*args)
    except eh.EmbeddingHubError as exc:
        return exc
    return None


def test_two_create_partition_of_one_name(
    dsn: str, make_space: Callable[..., eh.Space], workers: Callable[..., Worker], tmp_path: Path
) -> None:
    space = make_space(dims=4)
    go = tmp_path / "go"
    ws = [workers("partitions", dsn=dsn, space=space.name, count=25, go=str(go)) for _ in range(2)]
    go.touch()
    logs = [w.result() for w in ws]
    for log in logs:
        only(log, "PartitionExists")
    for (name, a), (_, b) in zip(logs[0]["log"], logs[1]["log"], strict=True):
        assert a != b, f"partition {name}: exactly one creation succeeds"
    if logs[0]["errors"] or logs[1]["errors"]:
        example = next(iter({**logs[0]["examples"], **logs[1]["examples"]}.values()))
        assert "already exists" in example and space.name in example
    assert len(space.list_partitions()) == 26


def test_drop_partition_under_writers(
    hub: eh.Hub, dsn: str, make_space: Callable[..., eh.Space], workers: Callable[..., Worker]
) -> None:
    space = make_space(dims=8)
    space.create_partition("x")
    ws = [workers("writer", dsn=dsn, space=space.name, seed=s, partition="x") for s in (1, 2)]
    wait_for_calls(space, 40)
    space.drop_partition("x")
    for w in ws:
        result = w.result()
        assert result["errors"].get("PartitionNotFound"), result
        only(result, "PartitionNotFound")
        assert "'x'" in result["examples"]["PartitionNotFound"]
    assert [p["name"] for p in space.list_partitions()] == ["default"]


def test_opposite_order_upserts_do_not_deadlock(
    hub: eh.Hub, dsn: str, make_space: Callable[..., eh.Space], workers: Callable[..., Worker],
    tmp_path: Path,
) -> None:
    space = make_space(dims=4)
    go = tmp_path / "go"
    ws = [workers("upserts", dsn=dsn, space=space.name, keys=1000, rounds=6, descending=d, id=i,
                  go=str(go), seconds=80)
          for i, d in ((1, False), (2, True))]
    go.touch()
    results = [w.result() for w in ws]
    for r in results:
        assert r["ok"] == 6 and not r["errors"], r
    # Each batch is one transaction over every key: the last to commit wrote them all.
    matrix = np.stack([v for _, v in space.iterator()])
    assert len(matrix) == 1000 and (matrix == matrix[0]).all()


def test_a_delete_that_waited_for_a_rollback_sees_the_rows_it_put_back(
    dsn: str, make_space: Callable[..., eh.Space]
) -> None:
    space = make_space(dims=4)
    space.set("k", [1, 2, 3, 4])
    v1 = space.snapshot()
    space.delete("k")
    outcome: list[BaseException | None] = []
    with eh.connect(dsn) as other:
        theirs = other.get_space(space.name)
        with other.conn.transaction():
            theirs.rollback(v1.number)  # puts "k" back, and holds the space until commit
            t = threading.Thread(target=lambda: outcome.append(_try(space.delete, "k")))
            t.start()
            time.sleep(0.3)  # the delete now waits for the rollback (not asserted on)
        t.join(30)
    assert outcome == [None]  # it found "k" (a strict delete)
    assert "k" not in space


def _relay_writer(dsn: str, space: str, name: str, offset: float, stop: threading.Event,
                  finished: list[str], failures: list[BaseException]) -> None:
    """Write, hold the transaction 150 ms, commit; again, 100 times (about 15 s) or until
    `stop`; `finished` gets `name` if all 100 ran."""
    with eh.connect(dsn) as hub:
        mine = hub.get_space(space)
        time.sleep(offset)
        for n in range(100):
            if stop.is_set():
                return
            try:
                with hub.conn.transaction():
                    mine.set(f"{name}-{n}", [1, 2, 3, 4])
                    time.sleep(0.15)
            except eh.EmbeddingHubError as exc:
                failures.append(exc)
        finished.append(name)


def test_steady_writers_do_not_starve_a_snapshot(dsn: str, make_space: Callable[..., eh.Space]) -> None:
    """Two writers whose transactions overlap (each holds 150 ms, half a period apart), so
    at every instant some writer holds the writers' side of the space lock. A share lock on
    a row is granted past a waiting exclusive request, so a snapshot waiting on the row
    alone would wait until the writers stop (lock_timeout bounds each wait, not the chain).
    It queues for the parent table first: snapshots and a rollback complete while both
    writers are still writing."""
    space = make_space(dims=4)
    stop, finished, failures = threading.Event(), [], []
    threads = [threading.Thread(target=_relay_writer,
                                args=(dsn, space.name, f"w{i}", 0.075 * i, stop, finished, failures))
               for i in range(2)]
    for t in threads:
        t.start()
    try:
        with eh.connect(dsn) as owner:
            owner.execute("SET embeddinghub.lock_timeout = '3s'")
            theirs = owner.get_space(space.name)
            wait_for_calls(theirs, rows=2)  # both writers running
            numbers = [theirs.snapshot().number for _ in range(5)]
            theirs.rollback(numbers[0])
            assert not finished, "the snapshots waited for the writers to stop"
            assert len(set(numbers)) == 5
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures, failures


def test_partition_change_behind_a_waiting_snapshot_does_not_deadlock(
    dsn: str, make_space: Callable[..., eh.Space]
) -> None:
    """A snapshot waits for a writer; create_partition and drop_partition queue behind it:
    all of them complete once the writer commits. (Partition changes lock the parent table
    before the space lock; the other way round, the snapshot, first in the parent's queue,
    would wait for create_partition's space lock and create_partition for the parent.)"""
    space = make_space(dims=4)
    space.create_partition("old")
    outcome: dict[str, BaseException | None] = {}

    def run(what: str, call: Callable[[eh.Space], object], timeout: str = "20s") -> threading.Thread:
        def go() -> None:
            with eh.connect(dsn) as owner:
                owner.execute("SELECT set_config('embeddinghub.lock_timeout', %s, false)", (timeout,))
                outcome[what] = _try(call, owner.get_space(space.name))
        t = threading.Thread(target=go)
        t.start()
        return t

    with eh.connect(dsn) as writer, writer.conn.transaction():
        writer.get_space(space.name).set("held", [1, 2, 3, 4])
        # No timeout: one wait in the parent's queue, so it is first there when the writer ends.
        threads = [run("snapshot", lambda s: s.snapshot(), timeout="0")]
        time.sleep(0.3)  # the snapshot now queues behind the writer (not asserted on)
        threads += [run("create", lambda s: s.create_partition("new")),
                    run("drop", lambda s: s.drop_partition("old"))]
        time.sleep(0.5)
    for t in threads:
        t.join(30)
    assert outcome == {"snapshot": None, "create": None, "drop": None}
    assert {p["name"] for p in space.list_partitions()} == {"default", "new"}


# -- server errors, each to its own type ------------------------------------------------------
def raised_by(hub: eh.Hub, statement: str, space: str | None = "s1") -> eh.EmbeddingHubError:
    try:
        hub.conn.execute(statement)
    except psycopg.Error as exc:
        return db.from_db_error(exc, space)
    raise AssertionError(f"{statement} did not fail")


def test_statement_timeout_is_operation_cancelled(hub: eh.Hub) -> None:
    hub.execute("SET statement_timeout = '50ms'")
    try:
        with pytest.raises(errors.OperationCancelled, match="cancel"):
            hub.execute("SELECT pg_sleep(5)")
    finally:
        hub.execute("RESET statement_timeout")


def test_lock_timeout_names_the_space(hub: eh.Hub, dsn: str, make_space: Callable[..., eh.Space]) -> None:
    space = make_space(dims=4)
    with eh.connect(dsn) as other, other.conn.transaction():
        other.execute(psycopg.sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(space.tables.live))
        (before,) = hub.execute("SHOW lock_timeout")[0]  # the hub's own, not the server's
        hub.execute("SET lock_timeout = '100ms'")
        try:
            with pytest.raises(errors.LockTimeout, match=space.name):
                space.set("a", [1, 2, 3, 4])
        finally:
            hub.execute(psycopg.sql.SQL("SET lock_timeout = {}").format(psycopg.sql.Literal(before)))
    space.set("a", [1, 2, 3, 4])  # and the space works once the lock is gone


def test_deadlock_is_a_conflict_not_a_lost_connection(hub: eh.Hub, dsn: str) -> None:
    found: list[eh.EmbeddingHubError] = []
    with psycopg.connect(dsn, autocommit=True) as a, psycopg.connect(dsn, autocommit=True) as b:
        a.execute("CREATE TABLE IF NOT EXISTS public.eh_deadlock (id int PRIMARY KEY)")
        a.execute("INSERT INTO public.eh_deadlock VALUES (1), (2) ON CONFLICT DO NOTHING")
        barrier = threading.Barrier(2, timeout=20)

        def lock(conn: psycopg.Connection[Any], first: int, second: int) -> None:
            try:
                with conn.transaction():
                    conn.execute("UPDATE public.eh_deadlock SET id = id WHERE id = %s", (first,))
                    barrier.wait()
                    conn.execute("UPDATE public.eh_deadlock SET id = id WHERE id = %s", (second,))
            except psycopg.Error as exc:
                found.append(db.from_db_error(exc, "s1"))

        threads = [threading.Thread(target=lock, args=(conn, x, y)) for conn, x, y in ((a, 1, 2), (b, 2, 1))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        a.execute("DROP TABLE public.eh_deadlock")
    assert len(found) == 1 and isinstance(found[0], errors.Conflict), found
    assert "retry" in str(found[0]) and "'s1'" in str(found[0])
    assert not isinstance(found[0], errors.ConnectionFailed)


@pytest.mark.parametrize(
    ("state", "kind", "words"),
    [
        ("disk_full", errors.DiskFull, "disk is full"),
        ("out_of_memory", errors.ResourceExhausted, "ran out"),
        ("serialization_failure", errors.Conflict, "retry"),
        ("object_in_use", errors.ServerError, "busy"),
        ("lock_not_available", errors.SpaceBusy, "lock"),  # a LockTimeout naming the space
    ],
)
def test_server_states_map_to_types(hub: eh.Hub, state: str, kind: type, words: str) -> None:
    exc = raised_by(hub, f"DO $$ BEGIN RAISE EXCEPTION 'busy' USING ERRCODE = '{state}'; END $$")
    assert type(exc) is kind and words in str(exc) and "'s1'" in str(exc)
    assert not isinstance(exc, errors.ConnectionFailed)


def test_a_lost_connection_is_connection_failed(dsn: str) -> None:
    with eh.connect(dsn) as victim, eh.connect(dsn) as killer:
        pid = victim.conn.info.backend_pid
        killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(errors.ConnectionFailed):
            victim.execute("SELECT 1")


# -- a load killed mid-way ----------------------------------------------------------------------
EXE = str(Path(sys.executable).parent / "embeddinghub")


def test_load_killed_after_the_index_was_dropped_gets_its_index_back(
    hub: eh.Hub, dsn: str, tmp_path: Path
) -> None:
    name = f"killed_{time.monotonic_ns()}"
    data = tmp_path / "big.npy"
    np.save(data, np.random.default_rng(0).random((100_000, 8), dtype=np.float32))
    load = subprocess.Popen(
        [EXE, "--dsn", dsn, "load", str(data), "-s", name, "--create", "--batch-size", "500",
         "--silent"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (hub.has_space(name) and len(hub.get_space(name)) > 0):
            assert load.poll() is None, f"the load ended early ({load.returncode})"
            assert time.monotonic() < deadline, "the load never wrote a row"
            time.sleep(0.01)
        space = hub.get_space(name)
        with hub.conn.transaction():  # park the loader between two batches, then kill it
            hub.execute(psycopg.sql.SQL("LOCK TABLE {} IN SHARE MODE").format(space.tables.live))
            assert space.info()["index_state"] == "building"  # the loader holds the load lock
            load.kill()
            load.wait(30)
        assert 0 < len(space) < 100_000
        deadline = time.monotonic() + 30  # the killed client's session ends on the server
        while space.info()["index_state"] != "missing":
            assert time.monotonic() < deadline, space.info()["index_state"]
            time.sleep(0.05)
        shown = subprocess.run([EXE, "--dsn", dsn, "space", "show", name, "--json"],
                               capture_output=True, text=True, timeout=60)
        assert json.loads(shown.stdout)["index_state"] == "missing"
        # The next load, however small, builds the index the killed one dropped.
        more = tmp_path / "more.jsonl"
        more.write_text(json.dumps({"key": "extra", "embedding": [1.0] * 8}) + "\n")
        again = subprocess.run([EXE, "--dsn", dsn, "load", str(more), "-s", name, "--silent"],
                               capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        assert space.info()["index_state"] == "present"
        with hub.conn.transaction():  # the searches can use it (the table is small)
            hub.execute("SET LOCAL enable_seqscan = off")
            plan = hub.execute(psycopg.sql.SQL(
                "EXPLAIN SELECT key FROM {} ORDER BY embedding <-> '[1,1,1,1,1,1,1,1]' LIMIT 5"
            ).format(space.tables.live))
        assert "Index Scan" in " ".join(r[0] for r in plan)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait(30)
        if hub.has_space(name):
            hub.delete_space(name)


def test_ensure_index_restores_a_missing_index(make_space: Callable[..., eh.Space], hub: eh.Hub) -> None:
    space = make_space(dims=4)
    space.multiset({f"k{i}": [i, 1, 2, 3] for i in range(20)})
    assert space.info()["index_state"] == "present" and not space.ensure_index()
    with hub.conn.transaction(), hub.conn.cursor() as cur:
        catalog.drop_index(space.handle, cur)
    assert space.info()["index_state"] == "missing"
    assert space.ensure_index() and space.info()["index_state"] == "present"
