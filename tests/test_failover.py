"""The failover toolkit against a real single server: conninfo handling, the error
classifier on real server errors, retries after a terminated session, at-most-once calls.

The same toolkit through a real Patroni failover is in tests/ha/.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from embeddinghub import errors, failover
from embeddinghub.failover import ConnectionSource, Failure, RetryPolicy

FAST = RetryPolicy(deadline=5, initial_backoff=0.01, max_backoff=0.1)


def _closed_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()  # nothing listens there now
    return port


@pytest.fixture
def admin(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


def _terminate_when_active(dsn: str, pid: int) -> None:
    """pg_terminate_backend(pid) once that session runs a statement (bounded wait)."""
    with psycopg.connect(dsn, autocommit=True) as admin:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = admin.execute(
                "SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
            if row and row[0] == "active":
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                return
            time.sleep(0.01)
    raise AssertionError(f"backend {pid} never became active")


def _terminate_soon(dsn: str, pid: int) -> None:
    threading.Thread(target=_terminate_when_active, args=(dsn, pid), daemon=True).start()


# -- conninfo ----------------------------------------------------------------------------------
def test_merge_list_of_dsns_into_one_multi_host_conninfo() -> None:
    merged = failover.merge_conninfo(
        ["postgresql://app:pw@db1:5432/emb", "host=db2 port=5433 user=app password=pw dbname=emb"]
    )
    params = conninfo_to_dict(merged)
    assert params["host"] == "db1,db2"
    assert params["port"] == "5432,5433"
    assert (params["user"], params["dbname"]) == ("app", "emb")


def test_merge_keeps_a_multi_host_dsn_and_spreads_a_single_port() -> None:
    params = conninfo_to_dict(failover.merge_conninfo("host=a,b,c port=6432 dbname=x"))
    assert params["host"] == "a,b,c"
    assert params["port"] == "6432,6432,6432"


def test_merge_refuses_dsns_that_disagree() -> None:
    with pytest.raises(errors.InvalidArgument, match="dbname"):
        failover.merge_conninfo(["host=a dbname=one", "host=b dbname=two"])
    with pytest.raises(errors.InvalidArgument, match="2 hosts but 3 port"):
        failover.merge_conninfo("host=a,b port=1,2,3")
    with pytest.raises(errors.InvalidArgument, match="no DSN"):
        failover.merge_conninfo([])


def test_target_conninfo_selects_hosts_with_libpq() -> None:
    primary = conninfo_to_dict(failover.target_conninfo("host=a,b port=1,2"))
    assert primary["target_session_attrs"] == "read-write"
    replica = conninfo_to_dict(failover.target_conninfo("host=a,b port=1,2", "replica"))
    assert replica["target_session_attrs"] == "prefer-standby"
    assert replica["load_balance_hosts"] == "random"
    with pytest.raises(errors.InvalidArgument, match="unknown target"):
        failover.target_conninfo("host=a", "leader")  # type: ignore[arg-type]


def test_host_conninfos_splits_hosts_and_drops_host_selection() -> None:
    hosts = failover.host_conninfos("host=a,b port=1,2 dbname=x target_session_attrs=read-write")
    assert [label for label, _ in hosts] == ["a:1", "b:2"]
    one = conninfo_to_dict(hosts[1][1])
    assert (one["host"], one["port"], one["dbname"]) == ("b", "2", "x")
    assert "target_session_attrs" not in one



def test_retry_policy_validates_and_backs_off_up_to_its_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=0.4, jitter=0)
    assert [policy.backoff(n) for n in (1, 2, 3, 4, 5)] == [0.1, 0.2, 0.4, 0.4, 0.4]
    assert RetryPolicy().deadline < 60
    with pytest.raises(errors.InvalidArgument, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(errors.InvalidArgument, match="initial_backoff"):
        RetryPolicy(initial_backoff=2, max_backoff=1)


# -- classifying real errors -------------------------------------------------------------------
def test_classify_real_server_errors(dsn: str, admin: psycopg.Connection[Any]) -> None:
    # a terminated session: 57P01 admin_shutdown (or a closed socket, depending on timing)
    victim = psycopg.connect(dsn, autocommit=True)
    admin.execute("SELECT pg_terminate_backend(%s)", (victim.info.backend_pid,))
    with pytest.raises(psycopg.OperationalError) as lost:
        for _ in range(50):  # the FATAL reaches the client with its next statement
            victim.execute("SELECT 1")
            time.sleep(0.02)
    assert failover.classify(lost.value) is Failure.CONNECTION_LOST
    # the same connection, already closed
    with pytest.raises(psycopg.OperationalError) as closed:
        victim.execute("SELECT 1")
    assert failover.classify(closed.value) is Failure.CONNECTION_LOST
    victim.close()

    # a write refused by a read-only session: 25006, what a demoted primary answers
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as ro:
        with admin.transaction():
            admin.execute("SET TRANSACTION READ ONLY")
            admin.execute("CREATE TEMP TABLE t_ro (x int)")
    assert failover.classify(ro.value) is Failure.READ_ONLY

    # nothing listening
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(f"host=127.0.0.1 port={_closed_port()} connect_timeout=1")
    assert failover.classify(refused.value) is Failure.CONNECTION_LOST

    # real errors are not failovers
    with pytest.raises(psycopg.errors.SyntaxError) as syntax:
        admin.execute("SELEC 1")
    assert failover.classify(syntax.value) is None
    with pytest.raises(psycopg.errors.UniqueViolation) as dup:
        admin.execute("CREATE TEMP TABLE t_dup (x int primary key)")
        admin.execute("INSERT INTO t_dup VALUES (1), (1)")
    assert not failover.is_retryable(dup.value)
    assert not failover.is_retryable(ValueError("not a database error"))


# -- connecting --------------------------------------------------------------------------------
def test_reconnect_gives_up_within_the_deadline_naming_the_hosts() -> None:
    port = _closed_port()
    policy = RetryPolicy(deadline=1.0, initial_backoff=0.05, max_backoff=0.2, connect_timeout=1)
    with pytest.raises(errors.ConnectionFailed) as exc:
        failover.reconnect(f"host=127.0.0.1,127.0.0.1 port={port},{port} password=pw", policy)
    msg = str(exc.value)
    assert f"port={port},{port}" in msg and "cluster status" in msg
    assert "pw" not in msg.replace("password=***", "")


def test_reconnect_fails_at_once_on_a_permanent_error(dsn: str) -> None:
    bad = psycopg.conninfo.make_conninfo(dsn, dbname=f"no_such_db_{uuid.uuid4().hex[:6]}")
    with pytest.raises(errors.ConnectionFailed, match="does not exist") as exc:
        failover.reconnect(bad, RetryPolicy(deadline=20))
    assert "no_such_db_" in str(exc.value)


def test_reconnect_reaches_the_primary_of_a_list_with_a_dead_host(dsn: str) -> None:
    dead = f"host=127.0.0.1 port={_closed_port()} connect_timeout=1"
    params = conninfo_to_dict(dsn)
    params.pop("port", None)
    live = psycopg.conninfo.make_conninfo("", **params)
    # the same dbname/user for both: libpq tries the dead host, then the live one
    dead = psycopg.conninfo.make_conninfo(
        dead, **{k: v for k, v in params.items() if k not in ("host", "hostaddr")}
    )
    with failover.reconnect([dead, live], FAST) as conn:
        assert conn.execute("SELECT NOT pg_is_in_recovery()").fetchone() == (True,)


# -- retrying and at-most-once -----------------------------------------------------------------
def test_run_idempotent_reruns_on_a_fresh_connection_after_a_terminated_session(
    dsn: str, admin: psycopg.Connection[Any]
) -> None:
    table = f"t_idem_{uuid.uuid4().hex[:8]}"
    admin.execute(psycopg.sql.SQL("CREATE TABLE {} (k text PRIMARY KEY, v int)").format(
        psycopg.sql.Identifier(table)))
    calls: list[int] = []
    with ConnectionSource(dsn, FAST) as source:

        def upsert(conn: psycopg.Connection[Any]) -> int:
            calls.append(conn.info.backend_pid)
            with conn.transaction():
                if len(calls) == 1:  # the first run's session is terminated mid-transaction
                    _terminate_soon(dsn, conn.info.backend_pid)
                    conn.execute("SELECT pg_sleep(5)")
                conn.execute(
                    psycopg.sql.SQL(
                        "INSERT INTO {} VALUES ('a', 1), ('b', 2)"
                        " ON CONFLICT (k) DO UPDATE SET v = excluded.v"
                    ).format(psycopg.sql.Identifier(table))
                )
            return len(calls)

        assert failover.run_idempotent(source, upsert, FAST, what="upsert") == 2
        assert source.reconnects == 1
    assert calls[0] != calls[1]
    rows = admin.execute(psycopg.sql.SQL("SELECT k, v FROM {} ORDER BY k").format(
        psycopg.sql.Identifier(table))).fetchall()
    assert rows == [("a", 1), ("b", 2)]
    admin.execute(psycopg.sql.SQL("DROP TABLE {}").format(psycopg.sql.Identifier(table)))


def test_run_idempotent_lets_real_errors_through(dsn: str) -> None:
    with ConnectionSource(dsn, FAST) as source:
        with pytest.raises(psycopg.errors.DivisionByZero):
            failover.run_idempotent(source, lambda c: c.execute("SELECT 1/0"), FAST)
        assert source.reconnects == 0


def test_run_idempotent_gives_up_with_a_clear_error() -> None:
    policy = RetryPolicy(deadline=1.0, initial_backoff=0.05, max_backoff=0.2, connect_timeout=1)
    source = ConnectionSource(f"host=127.0.0.1 port={_closed_port()}", policy)
    with pytest.raises(errors.ConnectionFailed, match="unreachable|answered"):
        failover.run_idempotent(source, lambda c: c.execute("SELECT 1"), policy, what="load of 'items'")


def test_at_most_once_interrupted_before_commit_says_it_did_not_commit(
    dsn: str, admin: psycopg.Connection[Any]
) -> None:
    table = f"t_once_{uuid.uuid4().hex[:8]}"
    ident = psycopg.sql.Identifier(table)
    admin.execute(psycopg.sql.SQL("CREATE TABLE {} (id bigserial PRIMARY KEY, note text)").format(ident))
    with ConnectionSource(dsn, FAST) as source:

        def append(conn: psycopg.Connection[Any]) -> None:
            conn.execute(psycopg.sql.SQL("INSERT INTO {} (note) VALUES ('once')").format(ident))
            _terminate_soon(dsn, conn.info.backend_pid)
            conn.execute("SELECT pg_sleep(5)")

        with pytest.raises(errors.OperationInterrupted) as exc:
            failover.run_at_most_once(source, append, FAST, what=f"append to {table!r}",
                                      check="count its rows")
        assert exc.value.may_have_committed is False
        assert isinstance(exc.value, errors.ConnectionFailed)
        assert table in str(exc.value) and "did not take effect" in str(exc.value)
        assert "safe to run it again" in str(exc.value)
        # the source hands out a working connection again, and nothing was written
        assert failover.run_idempotent(source, lambda c: c.execute("SELECT 1").fetchone()) == (1,)
    count = admin.execute(psycopg.sql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()
    assert count == (0,)
    admin.execute(psycopg.sql.SQL("DROP TABLE {}").format(ident))


def test_at_most_once_can_retry_when_nothing_committed(dsn: str, admin: psycopg.Connection[Any]) -> None:
    table = f"t_once_{uuid.uuid4().hex[:8]}"
    ident = psycopg.sql.Identifier(table)
    admin.execute(psycopg.sql.SQL("CREATE TABLE {} (id bigserial PRIMARY KEY, note text)").format(ident))
    runs = 0
    with ConnectionSource(dsn, FAST) as source:

        def append(conn: psycopg.Connection[Any]) -> int:
            nonlocal runs
            runs += 1
            conn.execute(psycopg.sql.SQL("INSERT INTO {} (note) VALUES ('once')").format(ident))
            if runs == 1:
                _terminate_soon(dsn, conn.info.backend_pid)
                conn.execute("SELECT pg_sleep(5)")
            return runs

        assert failover.run_at_most_once(source, append, FAST, what="append", retry_uncommitted=True) == 2
    count = admin.execute(psycopg.sql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()
    assert count == (1,)
    admin.execute(psycopg.sql.SQL("DROP TABLE {}").format(ident))


def test_operation_interrupted_message_when_it_may_have_committed() -> None:
    exc = errors.OperationInterrupted(
        "snapshot of space 'items' (tag 'v3')", may_have_committed=True,
        check="see whether tag 'v3' is in `embeddinghub version list items`",
    )
    msg = str(exc)
    assert "space 'items'" in msg and "may or may not have committed" in msg
    assert "version list items" in msg


# -- read-your-writes on a single server -------------------------------------------------------
def test_wait_for_lsn_is_immediate_on_a_primary(admin: psycopg.Connection[Any]) -> None:
    lsn = failover.write_lsn(admin)
    assert failover.wait_for_lsn(admin, lsn, timeout=0.5) is True
    assert failover.read_your_writes(admin, lambda: pytest.fail("no fallback needed"), lsn) is admin


def test_cluster_status_of_a_single_server_and_a_dead_host(dsn: str) -> None:
    dead = f"host=127.0.0.1 port={_closed_port()} connect_timeout=1"
    status = failover.cluster_status([dsn, dead])
    assert [m.role for m in status.members] == ["primary", "unreachable"]
    assert status.members[0].lsn and status.members[0].timeline == 1
    assert status.members[1].error and "refused" in status.members[1].error
