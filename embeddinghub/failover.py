"""Riding through a failover: multi-host connections, retries, read-your-writes, cluster status.

A self-contained toolkit (it imports only psycopg and embeddinghub.errors) for clients of a
replicated PostgreSQL, e.g. a Patroni cluster. Patroni moves the primary; libpq finds it:
a multi-host conninfo (`host=a,b,c port=...`) with `target_session_attrs=read-write`
connects to whichever host accepts writes now, `prefer-standby` to a replica for reads.

- `RetryPolicy`: bounded attempts with exponential back-off and one total deadline.
- `classify` / `is_retryable`: which errors mean "the connection or the server went away,
  or we reached a server that is not (or no longer) the primary" rather than a real error.
- `reconnect`: a connection to the primary (or a replica), retried under a policy.
- `ConnectionSource`: holds the current connection and opens a new one when it is lost.
- `run_idempotent`: re-runs a call that is safe to repeat (reads, keyed upserts/deletes)
  on a fresh connection after a lost connection.
- `run_at_most_once`: runs a call that is not safe to repeat; a lost connection raises
  `errors.OperationInterrupted`, saying whether it may have committed.
- `write_lsn`, `wait_for_lsn`, `read_your_writes`: a read on a replica sees the caller's
  last write, or goes to the primary.
- `cluster_status`: every host's role and replication lag.
"""

from __future__ import annotations

import contextvars
import enum
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import PoolTimeout

from . import errors
from .compat import redact_dsn
from .db import with_keepalives

__all__ = [
    "ClusterStatus",
    "ConnectionSource",
    "Failure",
    "MemberStatus",
    "RetryPolicy",
    "Target",
    "classify",
    "cluster_status",
    "host_conninfos",
    "is_retryable",
    "keep_trying",
    "merge_conninfo",
    "read_your_writes",
    "reconnect",
    "run_at_most_once",
    "run_idempotent",
    "target_conninfo",
    "wait_for_lsn",
    "write_lsn",
]

T = TypeVar("T")
Target = Literal["primary", "replica", "any"]
Conn = psycopg.Connection[Any]


# -- retry policy ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying: at most `attempts` tries within `deadline` seconds in total.

    Between tries the wait grows from `initial_backoff` by `multiplier` up to `max_backoff`,
    with +-`jitter` (a fraction) so that many clients do not reconnect in lock step. The
    default deadline of 30 s covers a Patroni failover with its minimum `ttl` of 20 s (the
    leader key must expire before a standby is promoted); a planned switchover takes 2-3 s.
    """

    attempts: int = 50
    initial_backoff: float = 0.05
    max_backoff: float = 1.0
    multiplier: float = 2.0
    deadline: float = 30.0
    jitter: float = 0.2
    connect_timeout: int = 2

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise errors.InvalidArgument(f"RetryPolicy.attempts must be >= 1, not {self.attempts}")
        if not 0 <= self.initial_backoff <= self.max_backoff:
            raise errors.InvalidArgument(
                f"RetryPolicy needs 0 <= initial_backoff <= max_backoff, not {self.initial_backoff}"
                f" and {self.max_backoff}"
            )
        if self.deadline <= 0 or self.multiplier < 1 or not 0 <= self.jitter < 1:
            raise errors.InvalidArgument(
                "RetryPolicy needs deadline > 0, multiplier >= 1 and 0 <= jitter < 1"
            )
        if self.connect_timeout < 1:
            raise errors.InvalidArgument("RetryPolicy.connect_timeout must be >= 1 second")

    def backoff(self, attempt: int) -> float:
        """The wait after failed try number `attempt` (1-based)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return base * (1 + random.uniform(-self.jitter, self.jitter))  # noqa: S311 - not crypto


DEFAULT_POLICY = RetryPolicy()

# The absolute deadline of the retried operation in progress, so that a reconnect inside it
# does not start a fresh deadline of its own.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("eh_failover_deadline", default=None)


@contextmanager
def _bounded(policy: RetryPolicy) -> Iterator[float]:
    outer = _deadline.get()
    mine = time.monotonic() + policy.deadline
    deadline = mine if outer is None else min(outer, mine)
    token = _deadline.set(deadline)
    try:
        yield deadline
    finally:
        _deadline.reset(token)


# -- classifying errors ------------------------------------------------------------------------
class Failure(enum.Enum):
    """Why a call failed, when the cause is the server's availability, not the call itself."""

    CONNECTION_LOST = "connection lost"
    """The session is gone (server killed, shut down, network). A COMMIT in flight may or may not
    have been applied; anything before it was rolled back."""
    READ_ONLY = "read-only server"
    """The server refused a write because it is a standby (demoted, or not yet promoted).
    Nothing was written."""
    NOT_ACCEPTING = "server not accepting connections"
    """The server is starting, stopping or recovering (57P03). Nothing was run."""


# SQLSTATEs that mean the session ended because of the server's state, not the statement.
_LOST_STATES = {"57P01", "57P02", "57P05"}  # admin_shutdown, crash_shutdown, idle_session_timeout


def classify(exc: BaseException) -> Failure | None:
    """The availability failure behind `exc`, or None when it is a real error (don't retry)."""
    if isinstance(exc, errors.OperationInterrupted):
        return None
    if isinstance(exc, errors.ConnectionFailed):
        return Failure.CONNECTION_LOST
    if not isinstance(exc, psycopg.Error):
        return None
    state = exc.sqlstate
    if state is None:
        # libpq's own errors carry no SQLSTATE: the server closed the connection, a connect
        # failed, or the connection object is already closed.
        return Failure.CONNECTION_LOST if isinstance(exc, psycopg.OperationalError) else None
    if state in _LOST_STATES or state.startswith("08"):
        return Failure.CONNECTION_LOST
    if state == "57P03":
        return Failure.NOT_ACCEPTING
    if state == "25006":  # read_only_sql_transaction: a write reached a standby
        return Failure.READ_ONLY
    return None


def is_retryable(exc: BaseException) -> bool:
    """True when `exc` means the server went away or is not the primary now."""
    return classify(exc) is not None


_PERMANENT_CONNECT = (
    "password authentication failed",
    "no pg_hba.conf entry",
    "does not exist",  # database or role
    "invalid connection option",
)


def _permanent_connect_error(exc: psycopg.Error) -> bool:
    # libpq reports every host's failure in one message without a SQLSTATE; when any host
    # refused us for who we are (not because it is down or read-only) waiting will not help.
    text = str(exc)
    return any(marker in text for marker in _PERMANENT_CONNECT)


# -- conninfo ----------------------------------------------------------------------------------
_LIST_KEYS = ("host", "hostaddr", "port")


def merge_conninfo(dsns: str | Sequence[str]) -> str:
    """One libpq multi-host conninfo from a conninfo/URI or a list of them.

    `["postgresql://u@a:5432/db", "postgresql://u@b:5432/db"]` becomes
    `host=a,b port=5432,5432 user=u dbname=db`; every other parameter must agree.
    """
    if isinstance(dsns, str):  # one server: the DSN as the user wrote it (messages show it)
        try:
            given = conninfo_to_dict(dsns)
        except psycopg.ProgrammingError as exc:
            raise errors.InvalidArgument(f"invalid DSN {redact_dsn(dsns)!r}: {exc}") from None
        if not any("," in str(given.get(k) or "") for k in _LIST_KEYS):
            return dsns
    items = [dsns] if isinstance(dsns, str) else list(dsns)
    if not items:
        raise errors.InvalidArgument("no DSN given: pass a conninfo string or a list of them")
    lists: dict[str, list[str]] = {k: [] for k in _LIST_KEYS}
    common: dict[str, Any] = {}
    for dsn in items:
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            raise errors.InvalidArgument(f"invalid DSN {redact_dsn(dsn)!r}: {exc}") from None
        hosts = _split(params.pop("host", None))
        addrs = _split(params.pop("hostaddr", None))
        ports = _split(params.pop("port", None))
        count = max(len(hosts), len(addrs), 1)
        for key, values in (("host", hosts), ("hostaddr", addrs), ("port", ports)):
            if len(values) == 1 and count > 1 and key == "port":
                values = values * count  # one port for every host of this DSN
            if values and len(values) != count:
                raise errors.InvalidArgument(
                    f"DSN {redact_dsn(dsn)!r} lists {count} hosts but {len(values)} {key} values"
                )
            lists[key] += values or [""] * count
        for key, value in params.items():
            if key in common and common[key] != value:
                shown = "***" if key == "password" else f"{common[key]!r} vs {value!r}"
                raise errors.InvalidArgument(
                    f"the DSNs disagree on {key!r} ({shown}): a multi-host connection uses one value"
                    " for every host"
                )
            common[key] = value
    merged = {k: ",".join(v) for k, v in lists.items() if any(v)}
    return make_conninfo("", **merged, **common)


def _split(value: Any) -> list[str]:
    return [] if value in (None, "") else str(value).split(",")


def target_conninfo(
    conninfo: str | Sequence[str], target: Target = "primary", connect_timeout: int = 2
) -> str:
    """The conninfo with libpq's host selection for `target`.

    primary: `target_session_attrs=read-write`; replica: `prefer-standby` with
    `load_balance_hosts=random` (spread over the standbys, the primary when none is up);
    any: any host, load-balanced.
    """
    base = merge_conninfo(conninfo)
    params = conninfo_to_dict(base)
    extra: dict[str, Any] = {}
    if target == "primary":
        extra["target_session_attrs"] = "read-write"
    elif target == "replica":
        extra.update(target_session_attrs="prefer-standby", load_balance_hosts="random")
    elif target == "any":
        extra.update(target_session_attrs="any", load_balance_hosts="random")
    else:
        raise errors.InvalidArgument(f"unknown target {target!r}: use 'primary', 'replica' or 'any'")
    if "connect_timeout" not in params:
        extra["connect_timeout"] = connect_timeout
    return make_conninfo(with_keepalives(base), **extra)


def host_conninfos(conninfo: str | Sequence[str]) -> list[tuple[str, str]]:
    """(label 'host:port', single-host conninfo) for every host of a multi-host conninfo."""
    params = conninfo_to_dict(merge_conninfo(conninfo))
    hosts, addrs, ports = (_split(params.pop(k, None)) for k in _LIST_KEYS)
    for key in ("target_session_attrs", "load_balance_hosts"):
        params.pop(key, None)
    count = max(len(hosts), len(addrs), 1)
    if len(ports) == 1:
        ports *= count
    out = []
    for i in range(count):
        one = dict(params)
        host = hosts[i] if i < len(hosts) else ""
        addr = addrs[i] if i < len(addrs) else ""
        port = ports[i] if i < len(ports) else ""
        if host:
            one["host"] = host
        if addr:
            one["hostaddr"] = addr
        if port:
            one["port"] = port
        one.setdefault("connect_timeout", 2)
        out.append((f"{host or addr or 'local'}:{port or '5432'}", make_conninfo("", **one)))
    return out


def keep_trying(
    attempt: Callable[[], None],
    policy: RetryPolicy,
    deadline: float,
    conninfo: str,
    sleep: Callable[[float], Any] = time.sleep,
) -> None:
    """Run `attempt` until it succeeds, backing off under `policy` until `deadline`
    (monotonic); then ConnectionFailed naming the server. `sleep` lets the async API wait
    on its event loop."""
    tries, last = 0, None
    while True:
        tries += 1
        try:
            attempt()
            return
        except (errors.ConnectionFailed, psycopg.Error, PoolTimeout) as exc:
            last = exc
        pause = policy.backoff(tries)
        if time.monotonic() + pause > deadline:
            raise errors.ConnectionFailed(
                f"lost the connection to {redact_dsn(conninfo)} and could not get it back"
                f" within {policy.deadline:g} s: {_first_line(last)}"
            ) from last
        sleep(pause)


# -- connecting --------------------------------------------------------------------------------
def reconnect(
    conninfo: str | Sequence[str],
    policy: RetryPolicy | None = None,
    *,
    target: Target = "primary",
    configure: Callable[[Conn], None] | None = None,
) -> Conn:
    """An autocommit connection to the current primary (or a replica), retried under `policy`.

    `configure(conn)` runs on the new connection (e.g. registering the vector types). Raises
    `errors.ConnectionFailed` naming the hosts when no suitable server answers in time.
    """
    policy = policy or DEFAULT_POLICY
    dsn = target_conninfo(conninfo, target, policy.connect_timeout)
    last: BaseException | None = None
    started = time.monotonic()
    with _bounded(policy) as deadline:
        for attempt in range(1, policy.attempts + 1):
            try:
                conn = psycopg.connect(dsn, autocommit=True)
            except psycopg.Error as exc:
                last = exc
                if exc.sqlstate is None and _permanent_connect_error(exc) or (
                    exc.sqlstate is not None and not is_retryable(exc)
                ):
                    raise errors.ConnectionFailed(
                        f"cannot connect to {redact_dsn(dsn)}: {_first_line(exc)}"
                    ) from exc
            else:
                try:
                    if configure is not None:
                        configure(conn)
                    return conn
                except BaseException as exc:
                    conn.close()
                    if not is_retryable(exc):
                        raise
                    last = exc
            pause = policy.backoff(attempt)
            if attempt == policy.attempts or time.monotonic() + pause > deadline:
                break
            time.sleep(pause)
    role = {"primary": "primary (read-write)", "replica": "replica or primary", "any": "server"}[target]
    tried = f"{attempt} attempt{'s' if attempt > 1 else ''} in {time.monotonic() - started:.1f} s"
    raise errors.ConnectionFailed(
        f"cannot connect to {redact_dsn(merge_conninfo(conninfo))}: no {role} answered ({tried}); last error:"
        f" {_first_line(last)}. Check that the server is up; for a cluster, a failover may"
        " still be in progress: see `embeddinghub cluster status`, or raise RetryPolicy.deadline"
    ) from last


def _first_line(exc: BaseException | None) -> str:
    text = str(exc) if exc is not None else "none"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return "; ".join(lines[:2]) if lines else type(exc).__name__


class ConnectionSource:
    """The current connection to a target of a (multi-host) conninfo; a new one once it is lost.

    Calling it returns an open connection, reconnecting (under the policy) when the last one
    is closed or broken. `run_idempotent` and `run_at_most_once` close a connection that
    failed, so the next call gets a fresh one.
    """

    def __init__(
        self,
        conninfo: str | Sequence[str],
        policy: RetryPolicy | None = None,
        *,
        target: Target = "primary",
        configure: Callable[[Conn], None] | None = None,
    ) -> None:
        self.conninfo = merge_conninfo(conninfo)
        self.policy = policy or DEFAULT_POLICY
        self.target: Target = target
        self.configure = configure
        self._conn: Conn | None = None
        self.reconnects = 0

    def __call__(self) -> Conn:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
                self.reconnects += 1
            self._conn = reconnect(self.conninfo, self.policy, target=self.target, configure=self.configure)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> ConnectionSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- running calls through a failover ----------------------------------------------------------
def run_idempotent(
    get_conn: Callable[[], Conn],
    fn: Callable[[Conn], T],
    policy: RetryPolicy | None = None,
    *,
    what: str = "the call",
) -> T:
    """Run `fn(conn)`; after a lost connection, run it again on a fresh connection.

    Only for calls that are safe to repeat: reads, and writes idempotent by key (upserts,
    deletes), each in one transaction, so a repeat after a COMMIT whose outcome was lost
    lands the same rows once. `get_conn()` must return an open connection (a new one after
    the last was closed: see `ConnectionSource`). Real errors propagate unchanged; when the
    policy runs out, `errors.ConnectionFailed` names `what`.
    """
    policy = policy or DEFAULT_POLICY
    last: BaseException | None = None
    with _bounded(policy) as deadline:
        for attempt in range(1, policy.attempts + 1):
            conn: Conn | None = None
            try:
                conn = get_conn()
                return fn(conn)
            except BaseException as exc:
                if not is_retryable(exc):
                    raise
                last = exc
                _discard(conn, exc)
            pause = policy.backoff(attempt)
            if attempt == policy.attempts or time.monotonic() + pause > deadline:
                break
            time.sleep(pause)
    raise errors.ConnectionFailed(
        f"{what} failed: the database was unreachable for {policy.deadline:g} s ({attempt} attempts);"
        f" last error: {_first_line(last)}. Nothing is half-written: run it again when"
        " `embeddinghub cluster status` shows a primary"
    ) from last


def _discard(conn: Conn | None, exc: BaseException) -> None:
    # A lost session cannot be reused; a read-only one (a standby) must be replaced by a
    # connection to the new primary. Either way the next get_conn() opens a new one.
    if conn is not None and classify(exc) is not None:
        conn.close()


def run_at_most_once(
    get_conn: Callable[[], Conn],
    fn: Callable[[Conn], T],
    policy: RetryPolicy | None = None,
    *,
    what: str,
    check: str | None = None,
    transaction: bool = True,
    retry_uncommitted: bool = False,
) -> T:
    """Run `fn(conn)`, which is not safe to repeat (a snapshot, a rollback, DDL), at most once.

    `fn` runs inside one transaction opened here, so the outcome of a lost connection is
    known: lost before the COMMIT was sent, nothing happened; lost during the COMMIT, it may
    have committed. Either way `errors.OperationInterrupted` is raised, naming `what`, with
    `check` (how to see whether it took effect) when it may have committed. Getting the
    connection is retried under `policy` (nothing has run yet). `transaction=False` for
    statements that cannot run in a transaction: any loss then "may have committed".
    `retry_uncommitted=True` runs it again on a new connection when the loss provably came
    before the COMMIT, and raises only when it may have committed.
    """
    policy = policy or DEFAULT_POLICY
    with _bounded(policy):
        while True:
            conn = run_idempotent(get_conn, lambda c: c, policy, what=what)
            stage = "body"
            try:
                if not transaction:
                    stage = "commit"  # autocommit statements commit as they run
                    return fn(conn)
                with conn.transaction():
                    result = fn(conn)
                    stage = "commit"
                return result
            except BaseException as exc:
                failure = classify(exc)
                if failure is None:
                    raise
                _discard(conn, exc)
                may_have = stage == "commit" and failure is Failure.CONNECTION_LOST
                remaining = (_deadline.get() or 0) - time.monotonic()
                if retry_uncommitted and not may_have and remaining > 0:
                    continue  # provably nothing happened: run it on the new connection
                raise errors.OperationInterrupted(
                    what, may_have_committed=may_have, check=check, cause=_first_line(exc)
                ) from exc


# -- read-your-writes --------------------------------------------------------------------------
def write_lsn(conn: Conn) -> str:
    """A WAL position at or after the caller's last commit on the primary (`pg_lsn` text).

    Run it after the write's COMMIT: the commit record is already inserted, so a standby
    that has replayed up to this LSN shows the write.
    """
    row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    assert row is not None
    return str(row[0])


def wait_for_lsn(conn: Conn, lsn: str, timeout: float = 1.0) -> bool:
    """Wait (at most `timeout` s) until the server behind `conn` has replayed `lsn`.

    True at once on a primary (it has everything it wrote); False when a standby does not
    catch up in time (lagging, or its replay paused).
    """
    query = "SELECT NOT pg_is_in_recovery() OR coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false)"
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        row = conn.execute(query, (lsn,)).fetchone()
        if row is not None and row[0]:
            return True
        if time.monotonic() + pause > deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.02)


def read_your_writes(
    replica: Conn, primary: Callable[[], Conn], lsn: str | None, timeout: float = 1.0
) -> Conn:
    """The connection to read on so the read sees the write at `lsn`.

    The replica once it has replayed `lsn` (no write yet: the replica at once), else the
    primary (`primary()` gives its connection), so a read never misses the caller's write.
    """
    if lsn is None or wait_for_lsn(replica, lsn, timeout):
        return replica
    return primary()


# -- cluster status ----------------------------------------------------------------------------
@dataclass
class MemberStatus:
    """One host of a multi-host target as it answers now."""

    host: str
    role: str  # "primary", "standby" or "unreachable"
    name: str | None = None  # the standby's application_name (Patroni: the member name)
    timeline: int | None = None
    lsn: str | None = None  # primary: current WAL position; standby: last replayed
    lag_bytes: int | None = None  # how far the standby's replay is behind the primary
    replay_lag_s: float | None = None  # primary's pg_stat_replication.replay_lag
    sync_state: str | None = None  # sync / async / quorum / potential, seen from the primary
    replay_paused: bool | None = None
    error: str | None = None


@dataclass
class ClusterStatus:
    members: list[MemberStatus] = field(default_factory=list)

    @property
    def primaries(self) -> list[MemberStatus]:
        return [m for m in self.members if m.role == "primary"]

    @property
    def standbys(self) -> list[MemberStatus]:
        return [m for m in self.members if m.role == "standby"]

    def as_dict(self) -> dict[str, Any]:
        return {"members": [asdict(m) for m in self.members]}


_PRIMARY_SQL = """
SELECT pg_current_wal_lsn()::text,
       (SELECT timeline_id FROM pg_control_checkpoint()),
       coalesce((SELECT json_agg(json_build_object(
            'name', application_name, 'sync_state', sync_state,
            'replay_lsn', replay_lsn::text,
            'replay_lag_s', extract(epoch FROM replay_lag)::float8))
         FROM pg_stat_replication), '[]'::json)
"""

_STANDBY_SQL = """
SELECT pg_last_wal_replay_lsn()::text,
       (SELECT received_tli FROM pg_stat_wal_receiver),
       (SELECT conninfo FROM pg_stat_wal_receiver),
       pg_is_wal_replay_paused()
"""


def cluster_status(conninfo: str | Sequence[str], connect_timeout: int = 2) -> ClusterStatus:
    """The role, WAL position and replication lag of every host of a multi-host conninfo.

    Each host is asked directly (`pg_is_in_recovery()`); the primary's `pg_stat_replication`
    gives each standby's sync state and replay lag, matched by application_name.
    Unreachable hosts are listed with the error. Lag needs the pg_read_all_stats role (or
    superuser) to be seen in full.
    """
    status = ClusterStatus()
    replication: dict[str, dict[str, Any]] = {}
    primary_lsn: str | None = None
    for label, dsn in host_conninfos(conninfo):
        member = MemberStatus(host=label, role="unreachable")
        status.members.append(member)
        try:
            one = make_conninfo(dsn, connect_timeout=connect_timeout)
            with psycopg.connect(one, autocommit=True) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                in_recovery = bool(row and row[0])
                if not in_recovery:
                    member.role = "primary"
                    lsn, tli, reps = conn.execute(_PRIMARY_SQL).fetchone() or (None, None, [])
                    member.lsn, member.timeline = lsn, tli
                    primary_lsn = primary_lsn or lsn
                    for rep in reps or []:
                        if rep.get("name"):
                            replication[rep["name"]] = rep
                else:
                    member.role = "standby"
                    lsn, tli, receiver, paused = conn.execute(_STANDBY_SQL).fetchone() or (None,) * 4
                    member.lsn, member.timeline, member.replay_paused = lsn, tli, paused
                    if receiver:
                        try:
                            app = conninfo_to_dict(receiver).get("application_name")
                            member.name = str(app) if app else None
                        except psycopg.ProgrammingError:
                            member.name = None
        except psycopg.Error as exc:
            member.error = _first_line(exc)
    if primary_lsn is not None:
        for member in status.standbys:
            if member.lsn is not None:
                member.lag_bytes = max(0, _lsn_int(primary_lsn) - _lsn_int(member.lsn))
            rep = replication.get(member.name or "")
            if rep:
                member.sync_state = rep.get("sync_state")
                member.replay_lag_s = rep.get("replay_lag_s")
    return status


def _lsn_int(lsn: str) -> int:
    hi, lo = lsn.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)
