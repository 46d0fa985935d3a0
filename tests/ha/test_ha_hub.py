"""The Hub through a failover on the real 3-node Patroni cluster: a writer of multiset batches
and a snapshotter ride out a kill -9 of the leader node and a planned switchover by
themselves, replica readers keep answering, and read-your-writes holds.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import embeddinghub as eh
from embeddinghub.failover import RetryPolicy

RETRY = RetryPolicy(deadline=50)  # Patroni's minimum ttl is 20 s; slack for a loaded machine
BATCH = 50
MAX_SECONDS = 120.0


@dataclass
class HubOutcome:
    acked: list[int] = field(default_factory=list)
    writer_error: BaseException | None = None
    reads: int = 0
    read_times: list[float] = field(default_factory=list)
    reader_error: BaseException | None = None
    snapshots_ok: list[str] = field(default_factory=list)
    snapshots_interrupted: list[str] = field(default_factory=list)
    snapshot_errors: list[BaseException] = field(default_factory=list)


class HubWorkload:
    """Three threads, each with its own Hub on the cluster's multi-host DSN."""

    def __init__(self, cluster: Any, vectors: np.ndarray) -> None:
        self.cluster, self.vectors = cluster, vectors
        self.name = f"hahub_{uuid.uuid4().hex[:8]}"
        self.out = HubOutcome()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        with eh.connect(cluster.dsn(), retry=RETRY) as hub:
            space = hub.create_space(self.name, dims=vectors.shape[1], metric="cosine")
            space.multiset(*self._batch(-1))

    def _batch(self, b: int) -> tuple[list[str], np.ndarray]:
        rows = [(b * BATCH + i) % len(self.vectors) for i in range(BATCH)]
        return [f"{b}:{i}" for i in range(BATCH)], self.vectors[rows]

    def _writer(self) -> None:
        started = time.monotonic()
        try:
            with eh.connect(self.cluster.dsn(), retry=RETRY) as hub:
                space = hub.get_space(self.name)
                for b in range(10_000):
                    if self._stop.is_set() or time.monotonic() - started > MAX_SECONDS:
                        return
                    space.multiset(*self._batch(b))  # keyed upserts: re-run after a lost connection
                    self.out.acked.append(b)
        except BaseException as exc:  # noqa: BLE001 - asserted on
            self.out.writer_error = exc

    def _reader(self) -> None:
        started = time.monotonic()
        try:
            with eh.connect(self.cluster.dsn(), retry=RETRY, reads="replica") as hub:
                space = hub.get_space(self.name)
                for i in range(100_000):
                    if self._stop.is_set() or time.monotonic() - started > MAX_SECONDS:
                        return
                    hits = space.nearest_neighbors(5, vector=self.vectors[i % len(self.vectors)])
                    assert hits, "a search on a replica found nothing"
                    self.out.reads += 1
                    self.out.read_times.append(time.monotonic())
                    time.sleep(0.01)
        except BaseException as exc:  # noqa: BLE001 - asserted on
            self.out.reader_error = exc

    def _snapshotter(self) -> None:
        started = time.monotonic()
        with eh.connect(self.cluster.dsn(), retry=RETRY) as hub:
            space = hub.get_space(self.name)
            for i in range(1000):
                if self._stop.is_set() or time.monotonic() - started > MAX_SECONDS:
                    return
                tag = f"t{i}"
                try:
                    space.snapshot(tag=tag)  # not safe to repeat: a typed error, never a double
                    self.out.snapshots_ok.append(tag)
                except eh.OperationInterrupted:
                    self.out.snapshots_interrupted.append(tag)
                except BaseException as exc:  # noqa: BLE001 - asserted on
                    self.out.snapshot_errors.append(exc)
                time.sleep(0.2)

    def start(self) -> HubWorkload:
        for target in (self._writer, self._reader, self._snapshotter):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def wait_for(self, what: str, ready: Any, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.out.writer_error is None, f"the writer failed: {self.out.writer_error!r}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    def stop(self) -> HubOutcome:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=RETRY.deadline + 15)
            assert not thread.is_alive(), "a workload thread did not stop"
        return self.out

    def check(self) -> None:
        out = self.out
        assert out.writer_error is None, f"the writer gave up: {out.writer_error!r}"
        assert out.reader_error is None, f"the reader gave up: {out.reader_error!r}"
        assert not out.snapshot_errors, f"untyped snapshot failures: {out.snapshot_errors[:3]!r}"
        with eh.connect(self.cluster.dsn(), retry=RETRY) as hub:
            space = hub.get_space(self.name)
            per_batch: dict[int, int] = {}
            for key, _vec in space.iterator():
                b = int(key.split(":")[0])
                per_batch[b] = per_batch.get(b, 0) + 1
            per_batch.pop(-1, None)
            lost = sorted(set(out.acked) - set(per_batch))
            assert not lost, f"acknowledged batches lost: {lost[:20]}"
            assert all(n == BATCH for n in per_batch.values()), "a partial batch landed"
            keys, matrix = self._batch(out.acked[-1])
            np.testing.assert_allclose(space.multiget(keys), matrix, rtol=1e-6)
            tags = [v.tag for v in space.versions()]
            assert len(tags) == len(set(tags)), "a snapshot landed twice"
            assert set(out.snapshots_ok) <= set(tags), "an acknowledged snapshot is missing"
            assert set(tags) <= set(out.snapshots_ok) | set(out.snapshots_interrupted)
            hub.delete_space(self.name)


@pytest.fixture
def hub_workload(healthy_cluster: Any, demo_vectors: tuple[list[str], np.ndarray]) -> Iterator[HubWorkload]:
    w = HubWorkload(healthy_cluster, demo_vectors[1])
    yield w
    w._stop.set()


def test_hub_rides_out_a_kill_of_the_leader_node(hub_workload: HubWorkload, healthy_cluster: Any) -> None:
    w = hub_workload.start()
    w.wait_for("15 batches before the kill", lambda: len(w.out.acked) >= 15)
    old = healthy_cluster.wait_leader()
    healthy_cluster.kill_node(old)
    killed_at, acked_at_kill = time.monotonic(), len(w.out.acked)
    healthy_cluster.wait_leader(timeout=90, other_than=old)
    w.wait_for("10 batches on the new leader", lambda: len(w.out.acked) >= acked_at_kill + 10)
    out = w.stop()
    w.check()
    assert any(t > killed_at for t in out.read_times), "no replica read succeeded after the kill"
    healthy_cluster.start_node(old)


def test_hub_rides_out_a_planned_switchover(hub_workload: HubWorkload, healthy_cluster: Any) -> None:
    w = hub_workload.start()
    w.wait_for("10 batches", lambda: len(w.out.acked) >= 10)
    old = healthy_cluster.wait_leader()
    healthy_cluster.switchover()
    healthy_cluster.wait_leader(timeout=60, other_than=old)
    before = len(w.out.acked)
    w.wait_for("10 batches after the switchover", lambda: len(w.out.acked) >= before + 10)
    w.stop()
    w.check()


def test_hub_reads_its_own_writes_on_replicas(healthy_cluster: Any) -> None:
    name = f"harw_{uuid.uuid4().hex[:8]}"
    with eh.connect(healthy_cluster.dsn(), retry=RETRY, reads="replica", read_your_writes=True) as hub:
        space = hub.create_space(name, dims=3)
        try:
            for i in range(40):
                space.set("k", [float(i), 1.0, 0.0])
                assert space.get("k").tolist() == [float(i), 1.0, 0.0]
                assert space.count() == 1
        finally:
            hub.delete_space(name)
    with pytest.raises(eh.InvalidArgument, match="reads"):
        eh.connect(healthy_cluster.dsn(), reads="standby")


def test_versioned_reads_sql_functions_and_views_answer_on_standbys(
    healthy_cluster: Any, demo_vectors: tuple[list[str], np.ndarray]
) -> None:
    import psycopg
    from pgvector.psycopg import register_vector

    from embeddinghub import failover

    keys, vectors = demo_vectors
    name = f"hasb_{uuid.uuid4().hex[:8]}"
    with eh.connect(healthy_cluster.dsn(), retry=RETRY) as writer:
        space = writer.create_space(name, dims=vectors.shape[1], metric="cosine")
        try:
            space.multiset(keys[:300], vectors[:300])
            v1 = space.snapshot(tag="v1")
            space.delete(keys[0])
            lsn = failover.write_lsn(writer.conn)
            with eh.connect(healthy_cluster.dsn(), retry=RETRY, reads="replica") as reader:
                on_replica = reader.get_space(name)
                old = on_replica.as_of("v1")
                assert np.allclose(old.get(keys[0]), vectors[0], atol=1e-6)  # deleted since v1
                assert keys[0] not in on_replica
            for node in healthy_cluster.nodes:
                with psycopg.connect(healthy_cluster.node_dsn(node.name), autocommit=True) as c:
                    register_vector(c)
                    assert failover.wait_for_lsn(c, lsn, timeout=30)
                    standby = c.execute("SELECT pg_is_in_recovery()").fetchone()
                    got = c.execute(
                        "SELECT key FROM embeddinghub.nearest_neighbors(%s, %s, 3)", (name, vectors[1])
                    ).fetchall()
                    assert got[0][0] == keys[1], node.name
                    at_v1 = c.execute(
                        "SELECT count(*) FROM embeddinghub.as_of(%s, %s)", (name, v1.number)
                    ).fetchone()
                    assert at_v1 == (300,), (node.name, standby)
                    view = c.execute(
                        psycopg.sql.SQL("SELECT count(*) FROM embeddinghub_views.{}").format(
                            psycopg.sql.Identifier(name)
                        )
                    ).fetchone()
                    assert view == (299,), node.name
        finally:
            writer.delete_space(name)
