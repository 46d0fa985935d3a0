"""embeddinghub: a database for machine-learning embeddings on PostgreSQL + pgvector."""

from . import errors
from .client import EmbeddingHubClient
from .compat import Config, LocalConfig
from .errors import (
    ConnectionFailed,
    DimensionMismatch,
    EmbeddingHubError,
    InvalidArgument,
    InvalidEmbedding,
    KeyNotFound,
    OperationInterrupted,
    PartitionNotFound,
    PermissionDenied,
    SpaceExists,
    SpaceFrozen,
    SpaceNotFound,
    VersionNotFound,
)
from .hub import Hub, connect
from .search import Neighbor
from .space import Space

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConnectionFailed",
    "DimensionMismatch",
    "EmbeddingHubClient",
    "EmbeddingHubError",
    "Hub",
    "InvalidArgument",
    "InvalidEmbedding",
    "KeyNotFound",
    "LocalConfig",
    "Neighbor",
    "OperationInterrupted",
    "PartitionNotFound",
    "PermissionDenied",
    "Space",
    "SpaceExists",
    "SpaceFrozen",
    "SpaceNotFound",
    "VersionNotFound",
    "connect",
    "errors",
]
