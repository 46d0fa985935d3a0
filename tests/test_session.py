"""Pooled hubs shared by threads, and riding out a lost connection (the backend killed)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

import embeddinghub as eh
from embeddinghub.failover import RetryPolicy

VICTIM = "eh_test_victim"  # the application_name of hubs whose backends the tests kill


@pytest.fixture
def victim(dsn: str) -> str:
    """The suite's DSN, naming its connections so that only they are killed."""
    return make_conninfo(dsn, application_name=VICTIM)


@pytest.fixture
def pooled(victim: str) -> Iterator[eh.Hub]:
    with eh.connect(victim, pool=4, pool_timeout=10) as hub:
        yield hub


def kill_backends(dsn: str, hub: eh.Hub) -> int:
    """Terminate the backends of the victim hubs (what a server restart does to them)."""
    with psycopg.connect(dsn, autocommit=True) as admin:
        pids = [r[0] for r in admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (VICTIM,)
        ).fetchall()]
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    return len(pids)


def test_threads_share_a_pooled_hub(pooled: eh.Hub, make_space: Callable[..., eh.Space]) -> None:
    name = make_space(dims=8).name
    space = pooled.get_space(name)
    rng = np.random.default_rng(1)
    data = {t: rng.normal(size=(50, 8)).astype(np.float32) for t in range(8)}
    failures: list[BaseException] = []

    def work(t: int) -> None:
        try:
            keys = [f"t{t}_{i}" for i in range(50)]
            space.multiset(keys, data[t], partition=None)
            for i in range(0, 50, 7):
                hit = space.nearest_neighbors(1, vector=data[t][i])[0]
                assert hit.key == keys[i] and hit.distance == pytest.approx(0, abs=1e-5)
            assert np.allclose(space.multiget(keys[:5]), data[t][:5])
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not failures, failures
    assert len(space) == 400
    assert sum(1 for _ in space.iterator()) == 400  # pages lease a connection each


def test_a_pooled_hub_lends_connections_for_own_sql(pooled: eh.Hub) -> None:
    with pytest.raises(eh.InvalidArgument, match="connection"):
        pooled.conn  # noqa: B018 (no single connection outside a call)
    with pooled.connection() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert pooled.conn is conn  # inside, the hub's calls use the lent connection
    assert pooled.execute("SELECT 2") == [(2,)]


def test_calls_wait_at_most_ten_seconds_for_a_lock_unless_configured(pooled: eh.Hub, dsn: str) -> None:
    with eh.connect(dsn) as hub:
        assert hub.execute("SHOW lock_timeout") == [("10s",)]
    with pooled.connection() as conn:
        assert conn.execute("SHOW lock_timeout").fetchone() == ("10s",)
    # A setting of the DSN (or of the role, database or server) holds, 0 included.
    with eh.connect(make_conninfo(dsn, options="-c lock_timeout=0")) as waiting:
        assert waiting.execute("SHOW lock_timeout") == [("0",)]


def test_pool_timeout_is_a_typed_error(dsn: str) -> None:
    with eh.connect(dsn, pool=1, pool_timeout=0.5) as hub:
        taken = threading.Event()
        release = threading.Event()

        def hold() -> None:
            with hub.connection():
                taken.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        taken.wait(10)
        try:
            with pytest.raises(eh.ConnectionFailed, match="pool="):
                hub.list_spaces()
        finally:
            release.set()
            holder.join(10)
        assert isinstance(hub.list_spaces(), list)
    with pytest.raises(eh.InvalidArgument, match="pool"):
        eh.connect(dsn, pool=0)


def test_reads_and_keyed_writes_ride_out_a_lost_connection(
    dsn: str, victim: str, make_space: Callable[..., eh.Space]
) -> None:
    name = make_space(dims=3).name
    with eh.connect(victim) as hub:
        space = hub.get_space(name)
        space.multiset({"a": [1, 0, 0], "b": [0, 1, 0]})
        assert kill_backends(dsn, hub) >= 1
        assert space.get("a").tolist() == [1, 0, 0]  # reconnected and read again
        kill_backends(dsn, hub)
        space.multiset({"c": [0, 0, 1], "a": [2, 0, 0]})  # an upsert by key: safe to repeat
        assert len(space) == 3 and space.get("a").tolist() == [2, 0, 0]
        kill_backends(dsn, hub)
        assert [n.key for n in space.nearest_neighbors(1, vector=[0, 0, 1])] == ["c"]


def test_calls_not_safe_to_repeat_say_they_may_have_committed(
    dsn: str, victim: str, make_space: Callable[..., eh.Space]
) -> None:
    name = make_space(dims=3).name
    with eh.connect(victim) as hub:
        space = hub.get_space(name)
        space.set("a", [1, 0, 0])
        kill_backends(dsn, hub)
        with pytest.raises(eh.errors.OperationInterrupted, match="may or may not have committed") as err:
            space.snapshot(tag="v1")
        assert isinstance(err.value, eh.ConnectionFailed) and "snapshot" in str(err.value)
        assert [v.tag for v in space.versions()] == []  # the hub is back: check, then retry
        assert space.snapshot(tag="v1").tag == "v1"


def test_pooled_hubs_ride_out_lost_connections(
    pooled: eh.Hub, dsn: str, make_space: Callable[..., eh.Space]
) -> None:
    space = pooled.get_space(make_space(dims=3).name)
    space.set("a", [1, 0, 0])
    kill_backends(dsn, pooled)
    assert space.get("a").tolist() == [1, 0, 0]
    assert space.count() == 1


def test_reconnect_gives_up_after_its_deadline(
    dsn: str, victim: str, make_space: Callable[..., eh.Space]
) -> None:
    name = make_space(dims=3).name
    with eh.connect(victim, retry=RetryPolicy(attempts=1, deadline=1)) as hub:
        space = hub.get_space(name)
        assert space.count() == 0
        kill_backends(dsn, hub)
        assert space.count() == 0  # one immediate reconnect is always tried
        hub.session.primary.conninfo = "host=/nonexistent-socket-dir dbname=x connect_timeout=1"
        kill_backends(dsn, hub)
        with pytest.raises(eh.ConnectionFailed, match="could not get it back within 1 s"):
            space.count()


def test_a_pooled_hub_spreads_a_large_batch_over_free_connections(
    pooled: eh.Hub, make_space: Callable[..., eh.Space], monkeypatch: pytest.MonkeyPatch
) -> None:
    space = pooled.get_space(make_space(dims=8).name)
    rng = np.random.default_rng(4)
    data = rng.normal(size=(300, 8)).astype(np.float32)
    space.multiset([f"k{i}" for i in range(300)], data)
    lent: list[int] = []
    spare = pooled.session.spare_lease

    @contextmanager
    def counting() -> Iterator[psycopg.Connection[Any] | None]:
        with spare() as conn:
            if conn is not None:
                lent.append(conn.info.backend_pid)
            yield conn

    monkeypatch.setattr(pooled.session, "spare_lease", counting)
    batched = space.multi_nearest_neighbors(3, vectors=data)  # 300 queries: fanned out
    assert lent, "no other pooled connection took part"
    assert [hits[0].key for hits in batched] == [f"k{i}" for i in range(300)]
    assert batched[:40] == [space.nearest_neighbors(3, vector=v) for v in data[:40]]
