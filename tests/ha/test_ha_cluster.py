"""Failover on a real 3-node Patroni cluster (synchronous_mode) with raw psycopg and
embeddinghub.failover: kill -9 of the leader node, a planned switchover, readers on
replicas, read-your-writes, an interrupted COMMIT, HNSW answers on standbys, cluster status.

No mocks: the servers are real PostgreSQL 18 + pgvector processes managed by Patroni.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner
from pgvector.psycopg import register_vector
from psycopg import sql

from embeddinghub import errors, failover
from embeddinghub.cli import main as cli
from embeddinghub.failover import ConnectionSource, RetryPolicy

# The default deadline (30 s) covers Patroni's minimum ttl of 20 s; a loaded CI machine
# gets some slack on top.
POLICY = RetryPolicy(deadline=50)
BATCH = 40  # rows per batch, one transaction each
MAX_BATCHES = 4000  # bounds the writer whatever happens
MAX_SECONDS = 150.0


def _configure(conn: psycopg.Connection[Any]) -> None:
    register_vector(conn)


@dataclass
class Outcome:
    acked: list[int] = field(default_factory=list)
    ack_times: list[float] = field(default_factory=list)
    ack_ports: list[int] = field(default_factory=list)  # the server that acknowledged each batch
    writer_error: BaseException | None = None
    writer_reconnects: int = 0
    read_times: list[float] = field(default_factory=list)
    read_on_primary: int = 0
    reader_error: BaseException | None = None
    once_ok: list[str] = field(default_factory=list)
    once_interrupted: list[tuple[str, bool]] = field(default_factory=list)
    once_errors: list[BaseException] = field(default_factory=list)


class Workload:
    """A writer of keyed batches, a reader on replicas and a not-safe-to-repeat appender,
    each in its own thread on its own connection, all bounded in count and time."""

    def __init__(self, cluster: Any, keys: list[str], vectors: np.ndarray) -> None:
        self.cluster, self.keys, self.vectors = cluster, keys, vectors
        suffix = uuid.uuid4().hex[:8]
        self.items, self.log = sql.Identifier(f"ha_items_{suffix}"), sql.Identifier(f"ha_log_{suffix}")
        self.out = Outcome()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        with failover.reconnect(cluster.dsn(), POLICY, configure=_configure) as conn:
            conn.execute(sql.SQL(
                "CREATE TABLE {} (key text PRIMARY KEY, batch int NOT NULL, embedding vector(384) NOT NULL)"
            ).format(self.items))
            conn.execute(
                sql.SQL("CREATE TABLE {} (id bigserial PRIMARY KEY, token text NOT NULL)").format(self.log)
            )
            self._write_batch(conn, -1)  # something for the readers to find from the start
            lsn = failover.write_lsn(conn)
        for node in cluster.nodes:  # the tables exist on every standby before the readers start
            with psycopg.connect(cluster.node_dsn(node.name)) as c:
                assert failover.wait_for_lsn(c, lsn, timeout=30), f"{node.name} did not replay {lsn}"

    def _rows(self, batch: int) -> list[tuple[str, int, np.ndarray]]:
        n = len(self.keys)
        return [
            (f"{batch}:{self.keys[(batch * BATCH + i) % n]}", batch, self.vectors[(batch * BATCH + i) % n])
            for i in range(BATCH)
        ]

    def _write_batch(self, conn: psycopg.Connection[Any], batch: int) -> int:
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                sql.SQL(
                    "INSERT INTO {} (key, batch, embedding) VALUES (%s, %s, %s)"
                    " ON CONFLICT (key) DO UPDATE SET batch = excluded.batch, embedding = excluded.embedding"
                ).format(self.items),
                self._rows(batch),
            )
        return int(conn.info.port)

    # -- threads ---------------------------------------------------------------------------------
    def _writer(self) -> None:
        start = time.monotonic()
        with ConnectionSource(self.cluster.dsn(), POLICY, configure=_configure) as source:
            try:
                for batch in range(MAX_BATCHES):
                    if self._stop.is_set() or time.monotonic() - start > MAX_SECONDS:
                        break
                    port = failover.run_idempotent(
                        source, lambda c, b=batch: self._write_batch(c, b), POLICY, what=f"batch {batch}"
                    )
                    self.out.ack_ports.append(port)
                    self.out.acked.append(batch)
                    self.out.ack_times.append(time.monotonic())
            except BaseException as exc:  # noqa: BLE001 - recorded and asserted on
                self.out.writer_error = exc
            self.out.writer_reconnects = source.reconnects

    def _reader(self) -> None:
        start = time.monotonic()
        query = sql.SQL(
            "SELECT pg_is_in_recovery(), (SELECT array_agg(key) FROM"
            " (SELECT key FROM {} ORDER BY embedding <-> %s LIMIT 5) nn)"
        ).format(self.items)
        with ConnectionSource(self.cluster.dsn(), POLICY, target="replica", configure=_configure) as source:
            try:
                for i in range(100_000):
                    if self._stop.is_set() or time.monotonic() - start > MAX_SECONDS:
                        break
                    q = self.vectors[i % len(self.vectors)]
                    row = failover.run_idempotent(source, lambda c, q=q: c.execute(query, (q,)).fetchone())
                    assert row is not None and row[1], "a read on a replica found nothing"
                    self.out.read_times.append(time.monotonic())
                    self.out.read_on_primary += 0 if row[0] else 1
                    time.sleep(0.01)
            except BaseException as exc:  # noqa: BLE001 - recorded and asserted on
                self.out.reader_error = exc

    def _appender(self) -> None:
        start = time.monotonic()
        stmt = sql.SQL("INSERT INTO {} (token) VALUES (%s)").format(self.log)
        with ConnectionSource(self.cluster.dsn(), POLICY) as source:
            for i in range(20_000):
                if self._stop.is_set() or time.monotonic() - start > MAX_SECONDS:
                    break
                token = f"t{i}"
                try:
                    failover.run_at_most_once(
                        source, lambda c, t=token: c.execute(stmt, (t,)), POLICY,
                        what=f"append {token}", check=f"look for token {token!r}",
                    )
                    self.out.once_ok.append(token)
                except errors.OperationInterrupted as exc:
                    self.out.once_interrupted.append((token, exc.may_have_committed))
                except BaseException as exc:  # noqa: BLE001 - recorded and asserted on
                    self.out.once_errors.append(exc)
                time.sleep(0.02)

    def start(self) -> Workload:
        for target in (self._writer, self._reader, self._appender):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> Outcome:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=POLICY.deadline + 10)
            assert not thread.is_alive(), "a workload thread did not stop"
        return self.out

    def wait(self, what: str, ready: Any, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.out.writer_error is not None:
                raise AssertionError(f"the writer failed: {self.out.writer_error!r}")
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    def acks_on(self, port: int) -> list[float]:
        """When each batch acknowledged by the server on `port` was acknowledged."""
        return [t for t, p in zip(self.out.ack_times, self.out.ack_ports, strict=False) if p == port]

    # -- checks ----------------------------------------------------------------------------------
    def stored_batches(self) -> dict[int, int]:
        with failover.reconnect(self.cluster.dsn(), POLICY) as conn:
            rows = conn.execute(sql.SQL("SELECT batch, count(*) FROM {} GROUP BY batch").format(self.items))
            return {int(b): int(n) for b, n in rows}

    def stored_tokens(self) -> list[str]:
        with failover.reconnect(self.cluster.dsn(), POLICY) as conn:
            return [str(r[0]) for r in conn.execute(sql.SQL("SELECT token FROM {}").format(self.log))]

    def check_writes(self) -> None:
        """Zero acknowledged batches lost, zero partial batches, nothing but acknowledged ones."""
        out = self.out
        assert out.writer_error is None, f"the writer gave up: {out.writer_error!r}"
        stored = self.stored_batches()
        stored.pop(-1, None)
        lost = sorted(set(out.acked) - set(stored))
        partial = {b: n for b, n in stored.items() if n != BATCH}
        assert not lost, f"acknowledged batches lost: {lost[:20]}"
        assert not partial, f"partial batches (batch: rows): {partial}"
        assert set(stored) == set(out.acked), "a batch is stored that was never acknowledged"
        # the stored vectors are the ones written
        with failover.reconnect(self.cluster.dsn(), POLICY, configure=_configure) as conn:
            batch = out.acked[-1]
            rows = dict(conn.execute(
                sql.SQL("SELECT key, embedding FROM {} WHERE batch = %s").format(self.items), (batch,)
            ).fetchall())
        for key, _, vec in self._rows(batch):
            np.testing.assert_array_equal(rows[key].to_numpy(), vec)

    def check_at_most_once(self) -> None:
        """Completed appends are stored once; interrupted ones that did not commit are absent."""
        out = self.out
        assert not out.once_errors, f"untyped failures of a not-safe-to-repeat call: {out.once_errors[:3]!r}"
        tokens = self.stored_tokens()
        assert len(tokens) == len(set(tokens)), "a not-safe-to-repeat call landed twice"
        stored = set(tokens)
        assert set(out.once_ok) <= stored, "a completed append is missing"
        for token, may_have in out.once_interrupted:
            if not may_have:
                assert token not in stored, f"{token} was reported as not committed but is stored"
        assert stored <= set(out.once_ok) | {t for t, m in out.once_interrupted if m}


@pytest.fixture
def workload(healthy_cluster: Any, demo_vectors: tuple[list[str], np.ndarray]) -> Iterator[Workload]:
    keys, vectors = demo_vectors
    w = Workload(healthy_cluster, keys, vectors)
    yield w
    w._stop.set()


# -- kill -9 of the leader node ------------------------------------------------------------------
@pytest.fixture(scope="module")
def leader_kill(cluster: Any, demo_vectors: tuple[list[str], np.ndarray]) -> Iterator[dict[str, Any]]:
    """One kill -9 of the leader node (Patroni and every server process) under load."""
    for node in cluster.nodes:
        if node.process is None or node.process.poll() is not None:
            cluster.start_node(node.name)
    cluster.wait_healthy(timeout=90)
    keys, vectors = demo_vectors
    w = Workload(cluster, keys, vectors).start()
    try:
        w.wait("20 batches before the kill", lambda: len(w.out.acked) >= 20)
        old = cluster.wait_leader()
        t_kill = time.monotonic()
        acked_at_kill = len(w.out.acked)
        cluster.kill_node(old)
        new = cluster.wait_leader(timeout=90, other_than=old)
        port = cluster.node(new).pg_port
        w.wait("10 batches on the new leader", lambda: len(w.acks_on(port)) >= 10)
        first_after = min(w.acks_on(port))
    finally:
        out = w.stop()
    yield {"workload": w, "out": out, "old": old, "new": new, "t_kill": t_kill,
           "first_ack_after": first_after, "acked_at_kill": acked_at_kill}
    cluster.start_node(old)


def test_kill_leader_loses_no_acknowledged_batch_and_leaves_none_partial(leader_kill: dict[str, Any]) -> None:
    leader_kill["workload"].check_writes()


def test_kill_leader_writer_continues_on_the_new_leader_by_itself(leader_kill: dict[str, Any]) -> None:
    out = leader_kill["out"]
    assert leader_kill["new"] != leader_kill["old"]
    assert out.writer_error is None
    assert out.writer_reconnects >= 1
    assert len(out.acked) > leader_kill["acked_at_kill"]
    assert out.acked == list(range(len(out.acked))), "the writer skipped or repeated a batch"


def test_kill_leader_readers_on_replicas_keep_answering(leader_kill: dict[str, Any]) -> None:
    out = leader_kill["out"]
    assert out.reader_error is None, f"the reader failed: {out.reader_error!r}"
    # reads answered while no primary accepted writes
    during = [t for t in out.read_times if leader_kill["t_kill"] < t < leader_kill["first_ack_after"]]
    t0 = leader_kill["t_kill"]
    around = [round(t - t0, 2) for t in out.read_times if t0 - 2 < t < leader_kill["first_ack_after"] + 2]
    assert len(during) >= 5, (
        f"only {len(during)} reads answered during the write outage of"
        f" {leader_kill['first_ack_after'] - t0:.1f} s (reads at {around} s from the kill)"
    )


def test_kill_leader_not_safe_to_repeat_calls_raise_the_typed_error(leader_kill: dict[str, Any]) -> None:
    out = leader_kill["out"]
    assert out.once_interrupted, "the kill interrupted no not-safe-to-repeat call"
    leader_kill["workload"].check_at_most_once()


def test_killed_leader_rejoins_as_a_replica(cluster: Any, leader_kill: dict[str, Any]) -> None:
    old = leader_kill["old"]
    cluster.start_node(old)
    cluster.wait_healthy(timeout=90)
    roles = {m["name"]: m["role"] for m in cluster.members()}
    assert roles[old] in ("replica", "sync_standby")


# -- planned switchover --------------------------------------------------------------------------
def test_switchover_under_load(workload: Workload, healthy_cluster: Any) -> None:
    w = workload.start()
    try:
        w.wait("20 batches before the switchover", lambda: len(w.out.acked) >= 20)
        old = healthy_cluster.wait_leader()
        new = healthy_cluster.switchover()
        assert new != old
        port = healthy_cluster.node(new).pg_port
        w.wait("10 batches on the new leader", lambda: len(w.acks_on(port)) >= 10)
    finally:
        out = w.stop()
    w.check_writes()
    w.check_at_most_once()
    assert out.reader_error is None
    assert out.writer_reconnects >= 1
    healthy_cluster.wait_healthy(timeout=90)  # the old leader follows the new one by itself
    roles = {m["name"]: m["role"] for m in healthy_cluster.members()}
    assert roles[old] in ("replica", "sync_standby") and roles[new] == "leader"


# -- a COMMIT interrupted while a standby holds it back ------------------------------------------
def test_interrupted_commit_says_it_may_have_committed(healthy_cluster: Any) -> None:
    cluster = healthy_cluster
    table = sql.Identifier(f"ha_once_{uuid.uuid4().hex[:8]}")
    with failover.reconnect(cluster.dsn()) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY)").format(table))
    sync = cluster.sync_standby()
    assert sync is not None
    pid: list[int] = []
    with cluster.maintenance(), psycopg.connect(cluster.node_dsn(sync), autocommit=True) as standby, \
            ConnectionSource(cluster.dsn(), POLICY) as source, \
            psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        # The COMMIT waits until the synchronous standby has applied it; it is paused, so the
        # COMMIT is in flight when the session is terminated.
        standby.execute("SELECT pg_wal_replay_pause()")
        try:
            def insert(conn: psycopg.Connection[Any]) -> None:
                conn.execute("SET LOCAL synchronous_commit = remote_apply")
                conn.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(table))
                pid.append(conn.info.backend_pid)

            def terminate_in_commit() -> None:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    if pid and admin.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event = 'SyncRep'", (pid[0],)
                    ).fetchone():
                        admin.execute("SELECT pg_terminate_backend(%s)", (pid[0],))
                        return
                    time.sleep(0.01)

            killer = threading.Thread(target=terminate_in_commit, daemon=True)
            killer.start()
            with pytest.raises(errors.OperationInterrupted) as exc:
                failover.run_at_most_once(source, insert, POLICY, what=f"insert into {table.as_string()}",
                                          check="SELECT the row with id 1")
            killer.join(timeout=30)
        finally:
            standby.execute("SELECT pg_wal_replay_resume()")
        assert exc.value.may_have_committed is True
        assert "may or may not have committed" in str(exc.value) and "id 1" in str(exc.value)
        # here it did commit (locally, then on the standby once replay resumed): checking is
        # the only way to know, which is what the message says
        assert admin.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone() == (1,)


# -- read-your-writes ----------------------------------------------------------------------------
def test_read_your_writes_on_a_replica(healthy_cluster: Any) -> None:
    cluster = healthy_cluster
    table = sql.Identifier(f"ha_ryw_{uuid.uuid4().hex[:8]}")
    async_standby = next(m["name"] for m in cluster.members() if m["role"] == "replica")
    with ConnectionSource(cluster.dsn(), POLICY) as primary, \
            psycopg.connect(cluster.node_dsn(async_standby), autocommit=True) as replica:
        primary().execute(sql.SQL("CREATE TABLE {} (k int PRIMARY KEY, v int)").format(table))
        served_by_replica = 0
        for i in range(60):
            conn = primary()
            conn.execute(sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(table), (i, i * i))
            lsn = failover.write_lsn(conn)
            reader = failover.read_your_writes(replica, primary, lsn, timeout=5)
            served_by_replica += reader is replica
            row = reader.execute(sql.SQL("SELECT v FROM {} WHERE k = %s").format(table), (i,)).fetchone()
            where = "replica" if reader is replica else "primary"
            assert row == (i * i,), f"write {i} not visible on the {where}"
        assert served_by_replica > 0

    # a replica that cannot catch up (replay paused): the read goes to the primary
    with cluster.maintenance(), ConnectionSource(cluster.dsn(), POLICY) as primary, \
            psycopg.connect(cluster.node_dsn(async_standby), autocommit=True) as replica:
        replica.execute("SELECT pg_wal_replay_pause()")
        try:
            conn = primary()
            conn.execute(sql.SQL("INSERT INTO {} VALUES (1000, 7)").format(table))
            lsn = failover.write_lsn(conn)
            reader = failover.read_your_writes(replica, primary, lsn, timeout=0.3)
            assert reader is conn
            probe = sql.SQL("SELECT v FROM {} WHERE k = 1000").format(table)
            assert reader.execute(probe).fetchone() == (7,)
            assert replica.execute(probe).fetchone() is None
        finally:
            replica.execute("SELECT pg_wal_replay_resume()")


# -- HNSW on standbys ----------------------------------------------------------------------------
def test_standbys_answer_the_same_hnsw_neighbours(
    healthy_cluster: Any, demo_vectors: tuple[list[str], np.ndarray]
) -> None:
    cluster = healthy_cluster
    keys, vectors = demo_vectors
    table = sql.Identifier(f"ha_hnsw_{uuid.uuid4().hex[:8]}")
    index_name = f"ha_hnsw_idx_{uuid.uuid4().hex[:8]}"
    index = sql.Identifier(index_name)
    with failover.reconnect(cluster.dsn(), configure=_configure) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (key text PRIMARY KEY, embedding vector(384))").format(table))
        with conn.cursor().copy(
            sql.SQL("COPY {} (key, embedding) FROM STDIN WITH (FORMAT BINARY)").format(table)
        ) as copy:
            copy.set_types(["text", "vector"])
            for key, vec in zip(keys, vectors, strict=True):
                copy.write_row((key, vec))
        conn.execute(sql.SQL("CREATE INDEX {} ON {} USING hnsw (embedding vector_cosine_ops)").format(
            index, table))
        lsn = failover.write_lsn(conn)
    queries = vectors[::101][:30] + np.float32(0.01)
    search = sql.SQL("SELECT key FROM {} ORDER BY embedding <=> %s LIMIT 10").format(table)
    answers: dict[str, list[list[str]]] = {}
    for node in cluster.nodes:
        with psycopg.connect(cluster.node_dsn(node.name), autocommit=True) as c:
            register_vector(c)
            assert failover.wait_for_lsn(c, lsn, timeout=30), f"{node.name} did not replay the index build"
            c.execute("SET enable_seqscan = off")
            c.execute("SET hnsw.ef_search = 40")
            plan = " ".join(r[0] for r in c.execute(sql.SQL("EXPLAIN ") + search, (queries[0],)))
            assert f"Index Scan using {index_name}" in plan, f"{node.name} does not search the index"
            answers[node.name] = [[r[0] for r in c.execute(search, (q,))] for q in queries]
    first, *rest = answers.values()
    assert all(len(a) == 10 for a in first)
    for name, other in answers.items():
        assert other == first, f"{name} answers differently"


# -- cluster status ------------------------------------------------------------------------------
def test_cluster_status_shows_roles_and_lag(healthy_cluster: Any) -> None:
    cluster = healthy_cluster
    status = failover.cluster_status(cluster.dsn())
    assert len(status.primaries) == 1 and len(status.standbys) == 2
    leader = cluster.node(cluster.wait_leader())
    assert status.primaries[0].host == f"127.0.0.1:{leader.pg_port}"
    names = {m["name"] for m in cluster.members()}
    assert {m.name for m in status.standbys} <= names
    assert {m.sync_state for m in status.standbys} >= {"sync"}
    assert all(m.lag_bytes is not None and m.lag_bytes >= 0 for m in status.standbys)


def test_cli_cluster_status(healthy_cluster: Any) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["--dsn", healthy_cluster.dsn(), "cluster", "status", "--json"])
    assert result.exit_code == 0, result.output
    members = json.loads(result.output)["members"]
    assert sorted(m["role"] for m in members) == ["primary", "standby", "standby"]
    table = runner.invoke(cli, ["--dsn", healthy_cluster.dsn(), "cluster", "status"])
    assert table.exit_code == 0 and "primary" in table.output and "lag_bytes" in table.output
    assert healthy_cluster.password not in table.output + result.output


def test_cli_cluster_status_lists_an_unreachable_host_without_a_traceback(healthy_cluster: Any) -> None:
    node = healthy_cluster.nodes[0]
    dead = "host=127.0.0.1 port=1 connect_timeout=2"
    result = CliRunner().invoke(cli, ["cluster", "status", healthy_cluster.node_dsn(node.name), dead])
    assert result.exit_code == 0, result.output
    assert "unreachable" in result.output and "Traceback" not in result.output
    bad = CliRunner().invoke(cli, ["cluster", "status", "host=a dbname=x", "host=b dbname=y"])
    assert bad.exit_code != 0 and "disagree" in bad.output and "Traceback" not in bad.output


# -- the Hub on a multi-host DSN -----------------------------------------------------------------
def test_hub_connects_to_the_primary_of_a_multi_host_dsn(
    healthy_cluster: Any, demo_vectors: tuple[list[str], np.ndarray]
) -> None:
    import embeddinghub as eh

    keys, vectors = demo_vectors
    name = f"ha_{uuid.uuid4().hex[:8]}"
    with eh.connect(healthy_cluster.dsn()) as hub:
        space = hub.create_space(name, dims=384, metric="cosine")
        space.multiset(keys[:200], vectors[:200])
        hits = space.nearest_neighbors(5, key=keys[0])
        assert len(hits) == 5 and keys[0] not in {h.key for h in hits}
        lsn = failover.write_lsn(hub.conn)
        # the space's rows reached every standby through WAL, with the catalog and its views
        for node in healthy_cluster.nodes:
            with psycopg.connect(healthy_cluster.node_dsn(node.name), autocommit=True) as c:
                assert failover.wait_for_lsn(c, lsn, timeout=30)
                row = c.execute("SELECT rows FROM embeddinghub.spaces_overview WHERE name = %s", (name,))
                assert row.fetchone() == (200,), f"{node.name} does not show the space"
        hub.delete_space(name)
