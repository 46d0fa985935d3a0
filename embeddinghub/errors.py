"""The exceptions of embeddinghub. Every message names the space, key or version at fault."""

from __future__ import annotations

__all__ = [
    "AdminRequired",
    "Conflict",
    "ConnectionFailed",
    "DimensionMismatch",
    "DiskFull",
    "EmbeddingHubError",
    "InvalidArgument",
    "InvalidEmbedding",
    "KeyNotFound",
    "LockTimeout",
    "OperationCancelled",
    "OperationInterrupted",
    "PartitionExists",
    "PartitionNotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "ServerError",
    "SpaceBusy",
    "SpaceExists",
    "SpaceFrozen",
    "SpaceNotFound",
    "VersionNotFound",
]


class EmbeddingHubError(Exception):
    """Base class of every error raised by embeddinghub."""

    def hint(self, advice: str) -> EmbeddingHubError:
        """The error with `advice` (what to do) appended to its message; returns itself."""
        self.args = (f"{self.args[0] if self.args else ''}: {advice}", *self.args[1:])
        return self


class SpaceNotFound(EmbeddingHubError):
    def __init__(self, space: str) -> None:
        super().__init__(f"space {space!r} does not exist")
        self.space = space


class SpaceExists(EmbeddingHubError):
    def __init__(self, space: str) -> None:
        super().__init__(f"space {space!r} already exists")
        self.space = space


class KeyNotFound(EmbeddingHubError, KeyError):
    def __init__(self, space: str, key: str, partition: str | None = None) -> None:
        where = f" in partition {partition!r}" if partition is not None else ""
        msg = f"key {key!r} not found in space {space!r}{where}"
        super().__init__(msg)
        self.space, self.key, self.partition = space, key, partition

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class InvalidArgument(EmbeddingHubError, ValueError):
    """A bad argument: both or neither of key/vector, a bad name, an unknown metric..."""


class DimensionMismatch(InvalidArgument):
    pass


class InvalidEmbedding(InvalidArgument):
    """A vector holding NaN or infinity."""


class PartitionNotFound(InvalidArgument):
    def __init__(self, space: str, partition: str) -> None:
        super().__init__(f"partition {partition!r} does not exist in space {space!r}")
        self.space, self.partition = space, partition


class PartitionExists(InvalidArgument):
    def __init__(self, space: str, partition: str) -> None:
        super().__init__(f"partition {partition!r} already exists in space {space!r}")
        self.space, self.partition = space, partition


class SpaceFrozen(EmbeddingHubError):
    def __init__(self, space: str, detail: str = "it is frozen") -> None:
        super().__init__(f"space {space!r} is read-only: {detail}")
        self.space = space


class VersionNotFound(EmbeddingHubError):
    def __init__(self, space: str, version: object) -> None:
        super().__init__(f"version {version!r} not found in space {space!r}")
        self.space, self.version = space, version


class PermissionDenied(EmbeddingHubError):
    pass


class ConnectionFailed(EmbeddingHubError):
    pass


class AdminRequired(PermissionDenied):
    """The database lacks something only an administrator can provide (the pgvector
    extension, CREATEROLE, CREATE on the database, a locked-down `public` schema).
    The message gives the exact SQL to ask the administrator to run; `sql` holds it too."""

    def __init__(self, message: str, sql: str) -> None:
        super().__init__(f"{message}; ask an administrator to run: {sql}")
        self.sql = sql


class OperationInterrupted(ConnectionFailed):
    """The connection was lost (e.g. a failover) while a call that is not safe to repeat ran.

    `may_have_committed` tells the two cases apart: lost before the COMMIT was sent, the
    call did not take effect and may be run again; lost during the COMMIT, it may or may not
    have taken effect, so check (`check` says how) before running it again.
    """

    def __init__(
        self, operation: str, *, may_have_committed: bool, check: str | None = None, cause: str = ""
    ) -> None:
        if may_have_committed:
            outcome = "the connection was lost during its COMMIT, so it may or may not have committed"
            advice = f"check before running it again: {check}" if check else "check before running it again"
        else:
            outcome = "the connection was lost before it committed, so it did not take effect"
            advice = "it is safe to run it again"
        detail = f" ({cause})" if cause else ""
        super().__init__(f"{operation} was interrupted{detail}: {outcome}; {advice}")
        self.operation, self.may_have_committed, self.check = operation, may_have_committed, check


class ServerError(EmbeddingHubError):
    """The server refused or aborted the statement for a reason of its own (not a lost
    connection): the message says which."""


class Conflict(ServerError):
    """A concurrent transaction conflicted with this one (a deadlock or a serialization
    failure) and the server rolled this one back: nothing was written; retry the call."""


class OperationCancelled(ServerError):
    """The statement was cancelled (a statement timeout, or a cancel request); nothing was
    written."""


class LockTimeout(ServerError):
    """The statement waited longer than `lock_timeout` for another transaction's lock."""


class SpaceBusy(LockTimeout):
    """An owner-side operation (snapshot, rollback, prune, freeze, partition change), or any
    statement, waited longer than its lock timeout for the space's writers; nothing was
    changed."""


class ResourceExhausted(ServerError):
    """The server ran out of a resource: memory, connections, disk."""


class DiskFull(ResourceExhausted):
    """The server's disk is full: nothing was written; free disk space and retry."""
