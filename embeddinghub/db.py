"""Connections, names, and the one translation of database errors into embeddinghub's errors."""

from __future__ import annotations

import re
from typing import Any, Protocol

import psycopg
from pgvector.psycopg import register_vector
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from . import errors
from .compat import redact_dsn

__all__ = [
    "SupportsConnection",
    "apply_session_settings",
    "configure",
    "from_db_error",
    "open_connection",
    "translate",
    "unencodable_text",
    "validate_name",
    "with_keepalives",
]

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,62}$")


def validate_name(kind: str, name: object) -> str:
    """Names of spaces, partitions, roles, tags: 1-63 of [A-Za-z0-9_.-], not starting with . or -."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise errors.InvalidArgument(
            f"invalid {kind} name {name!r}: use 1-63 characters from A-Z a-z 0-9 _ . -"
            " (not starting with . or -)"
        )
    return name


# Client-side keepalives notice a vanished server host (libpq's idle default is 2 h).
KEEPALIVES = {"keepalives_idle": "30", "keepalives_interval": "10", "keepalives_count": "3"}
# A backend whose client died stops within seconds (it polls the socket) instead of running
# its statement, and holding its locks, to the end; TCP keepalives do the same for a client
# whose host vanished. Session settings, so a server that lacks one (or a platform that
# can't poll, e.g. Windows) still connects.
#
# No call waits more than 10 s for a lock (then SpaceBusy, naming the space): a
# tenant may hold a lock on a table it shares with others (Postgres lets any holder of
# UPDATE or DELETE `LOCK` a table), and a read or write queued behind it must fail fast
# rather than hang. Unless the server, database, role or DSN (`options=-c lock_timeout=..`)
# sets lock_timeout already: then theirs holds, 0 included.
SESSION_SETTINGS = (
    "SELECT set_config('lock_timeout', '10s', false) FROM pg_catalog.pg_settings"
    " WHERE name = 'lock_timeout' AND source = 'default'",
    "SELECT set_config('client_connection_check_interval', '2s', false)",
    "SELECT set_config('tcp_keepalives_idle', '30', false),"
    " set_config('tcp_keepalives_interval', '10', false), set_config('tcp_keepalives_count', '3', false)",
)


def with_keepalives(dsn: str) -> str:
    """`dsn` with client keepalives; options already in the DSN win."""
    given = conninfo_to_dict(dsn)
    return make_conninfo(dsn, **{k: v for k, v in KEEPALIVES.items() if k not in given})


def apply_session_settings(conn: psycopg.Connection[Any]) -> None:
    """The session settings above, each skipped where the server refuses it."""
    for statement in SESSION_SETTINGS:
        try:
            conn.execute(statement)
        except psycopg.Error:
            pass


def configure(conn: psycopg.Connection[Any]) -> None:
    """Set up a new connection: the session settings and pgvector's types."""
    apply_session_settings(conn)
    register_vector(conn)


def open_connection(dsn: str) -> psycopg.Connection[Any]:
    """A configured autocommit connection; ConnectionFailed if the server is unreachable."""
    try:
        conn = psycopg.connect(with_keepalives(dsn), autocommit=True)
        configure(conn)
    except psycopg.Error as exc:
        raise errors.ConnectionFailed(f"cannot connect to {redact_dsn(dsn)}: {exc}") from exc
    return conn


class SupportsConnection(Protocol):
    """Anything that holds a connection: a Hub, a Session, a space handle."""

    @property
    def conn(self) -> psycopg.Connection[Any]: ...


class translate:  # noqa: N801 (a context manager, named like a function: `with translate(...)`)
    """Re-raise database errors as embeddinghub errors naming the space (key, version) at fault.

    A class, not a generator: every call of the API enters one, searches included."""

    __slots__ = ("key", "space", "version")

    def __init__(self, space: str | None = None, *, key: str | None = None, version: object = None) -> None:
        self.space, self.key, self.version = space, key, version

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, psycopg.Error):
            raise from_db_error(exc, self.space, key=self.key, version=self.version) from exc
        if isinstance(exc, UnicodeEncodeError):  # raised by psycopg's dumpers and our COPY rows
            raise unencodable_text(exc, self.space) from exc


def unencodable_text(exc: UnicodeEncodeError, space: str | None) -> errors.InvalidArgument:
    """Text (a key, partition or filter value) the connection's client encoding cannot hold."""
    where = f"space {space!r}: " if space else ""
    return errors.InvalidArgument(
        f"{where}{exc.object[exc.start:exc.end]!r} cannot be sent in the connection's encoding"
        f" ({exc.encoding}); use a UTF8 database or add client_encoding=UTF8 to the DSN"
    )


def from_db_error(
    exc: psycopg.Error, space: str | None, *, key: str | None = None, version: object = None
) -> errors.EmbeddingHubError:
    state = exc.sqlstate or ""
    diag = exc.diag.message_primary or str(exc)
    where = f"space {space!r}: " if space else ""
    # The server's own messages for these already name the space, key or version.
    if state == "EHFRZ":
        return _verbatim(errors.SpaceFrozen(space or "?"), diag)
    if state == "EHNSP":
        return _verbatim(errors.SpaceNotFound(space or "?"), diag)
    if state == "EHKEY":
        return _verbatim(errors.KeyNotFound(space or "?", key or "?"), diag)
    if state == "EHVER":
        if version is not None:  # the version the caller asked for, by number or tag
            return errors.VersionNotFound(space or "?", version)
        return _verbatim(errors.VersionNotFound(space or "?", "?"), diag)
    if state == "55P03":  # lock_timeout: the SQL message names the space and what to do
        if diag.startswith('space "'):
            return errors.SpaceBusy(diag)
        return errors.SpaceBusy(f"{where}{diag}: another transaction holds a lock this needs;"
                                " nothing was changed, retry later")
    if state == "EHARG":  # most SQL messages already name the space
        return errors.InvalidArgument(diag if diag.startswith("space ") else f"{where}{diag}")
    raced = _raced(exc, state, space)
    if raced is not None:
        return raced
    if state == "22000" and diag.endswith("not allowed in vector"):  # pgvector: NaN, infinity
        return errors.InvalidEmbedding(f"{where}a vector holds NaN or infinity ({diag})")
    if state in ("22P02", "22023", "22000", "22P05", "23514", "54000"):
        return errors.InvalidArgument(f"{where}{diag}")
    if state == "42501" or state.startswith("28"):
        return errors.PermissionDenied(f"{where}{diag}")
    server = _server_error(exc, state, where, diag)
    if server is not None:
        return server
    return errors.EmbeddingHubError(f"{where}{diag}")


# "Partition key of the failing row contains (partition) = (fr)."
_NO_PARTITION = re.compile(r"contains \(partition\) = \((.*)\)\.?$", re.DOTALL)


def _raced(exc: psycopg.Error, state: str, space: str | None) -> errors.EmbeddingHubError | None:
    """Errors of a call that raced a DDL statement: the space or a partition was dropped
    (or created) by another session while this call ran."""
    if space is None:
        return None
    diag = exc.diag.message_primary or ""
    if state == "42P01" and ("embeddinghub_data." in diag or "embeddinghub_views." in diag):
        error = errors.SpaceNotFound(space)
        error.args = (f"space {space!r} does not exist (it was dropped while this call ran)",)
        return error
    if "could not open relation with OID" in diag:  # the space or a partition went meanwhile
        return errors.Conflict(
            f"space {space!r}: its tables changed while this call ran (the space or a partition"
            " was dropped); nothing was written: retry it"
        )
    if state == "23514" and diag.startswith("no partition of relation"):
        found = _NO_PARTITION.search(exc.diag.message_detail or "")
        return errors.PartitionNotFound(space, found.group(1) if found else "?")
    if state == "23505" and exc.diag.table_name == "partitions":
        found = re.search(r"=\(\d+, (.*)\) already exists", exc.diag.message_detail or "")
        return errors.PartitionExists(space, found.group(1) if found else "?")
    return None


# SQLSTATEs of a lost connection: class 08, and the server shutting down or dropping us.
_CONNECTION_LOST = ("57P01", "57P02", "57P03", "57P04", "57P05")


def _server_error(
    exc: psycopg.Error, state: str, where: str, diag: str
) -> errors.EmbeddingHubError | None:
    if state in ("40P01", "40001"):
        what = "a deadlock" if state == "40P01" else "a serialization failure"
        return errors.Conflict(
            f"{where}{what} with a concurrent transaction rolled this call back"
            f" (nothing was written): retry it ({diag})"
        )
    if state == "57014":
        return errors.OperationCancelled(f"{where}the statement was cancelled ({diag}); nothing was written")
    if state == "53100":
        return errors.DiskFull(
            f"{where}the database server's disk is full ({diag}); nothing was written:"
            " free disk space on the server, then retry"
        )
    if state.startswith("53"):
        return errors.ResourceExhausted(f"{where}the database server ran out of resources ({diag})")
    if not isinstance(exc, psycopg.OperationalError):
        return None
    if not state or state.startswith("08") or state in _CONNECTION_LOST:
        if "No space left on device" in str(exc):  # the server stopped: its WAL filled the disk
            diag = f"the database server's disk is full; free disk space on it, then reconnect ({diag})"
        return errors.ConnectionFailed(f"{where}{diag}")
    return errors.ServerError(f"{where}{diag}")


def _verbatim(error: errors.EmbeddingHubError, message: str) -> errors.EmbeddingHubError:
    error.args = (message,)
    return error
