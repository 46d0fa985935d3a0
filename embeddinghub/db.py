"""Connections and the translation of database errors into embeddinghub's errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from pgvector.psycopg import register_vector

from . import errors

__all__ = ["open_connection", "translate", "validate_name"]

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,62}$")


def validate_name(kind: str, name: object) -> str:
    """Names of spaces, partitions, roles, tags: 1-63 of [A-Za-z0-9_.-], not starting with . or -."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise errors.InvalidArgument(
            f"invalid {kind} name {name!r}: use 1-63 characters from A-Z a-z 0-9 _ . -"
            " (not starting with . or -)"
        )
    return name


def open_connection(dsn: str) -> psycopg.Connection:
    try:
        conn = psycopg.connect(dsn, autocommit=True)
    except psycopg.OperationalError as exc:
        raise errors.ConnectionFailed(f"cannot connect to {_redact(dsn)}: {exc}") from exc
    return conn


def register_types(conn: psycopg.Connection) -> None:
    register_vector(conn)


def _redact(dsn: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", re.sub(r"password=\S+", "password=***", dsn))


@contextmanager
def translate(space: str | None = None) -> Iterator[None]:
    """Re-raise database errors as embeddinghub errors that name the space at fault."""
    try:
        yield
    except psycopg.Error as exc:
        raise from_db_error(exc, space) from exc


def from_db_error(exc: psycopg.Error, space: str | None) -> errors.EmbeddingHubError:
    state = exc.sqlstate or ""
    diag = exc.diag.message_primary or str(exc)
    where = f"space {space!r}: " if space else ""
    # The server's own messages for these already name the space, key or version.
    if state == "EHFRZ":
        return _verbatim(errors.SpaceFrozen(space or "?"), diag)
    if state == "EHNSP":
        return _verbatim(errors.SpaceNotFound(space or "?"), diag)
    if state == "EHKEY":
        return _verbatim(errors.KeyNotFound(space or "?", "?"), diag)
    if state == "EHVER":
        return _verbatim(errors.VersionNotFound(space or "?", "?"), diag)
    if state == "55P03":  # lock_timeout: the SQL message names the space and what to do
        if diag.startswith('space "'):
            return errors.SpaceBusy(diag)
        return errors.SpaceBusy(f"{where}{diag}: another transaction holds a lock this needs;"
                                " nothing was changed, retry later")
    if state in ("EHARG", "22P02", "22023", "22000", "22P05", "23514", "54000"):
        return errors.InvalidArgument(f"{where}{diag}")
    if state == "42501" or state.startswith("28"):
        return errors.PermissionDenied(f"{where}{diag}")
    if isinstance(exc, psycopg.OperationalError):
        return errors.ConnectionFailed(f"{where}{diag}")
    return errors.EmbeddingHubError(f"{where}{diag}")


def _verbatim(error: errors.EmbeddingHubError, message: str) -> errors.EmbeddingHubError:
    error.args = (message,)
    return error
