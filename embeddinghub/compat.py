"""Compatibility with the original Embeddinghub client: `LocalConfig` and `Config`."""

from __future__ import annotations

import os
from dataclasses import dataclass

from psycopg.conninfo import make_conninfo

__all__ = ["Config", "LocalConfig"]


@dataclass(frozen=True)
class LocalConfig:
    """Run embedded, with data under `path`. Unlike the original, data persists."""

    path: str | os.PathLike[str] = "data/"


@dataclass(frozen=True)
class Config:
    """A PostgreSQL server by host and port (the original client's server mode)."""

    host: str = "localhost"
    port: int = 5432
    user: str | None = None
    password: str | None = None
    database: str = "postgres"
    sslmode: str | None = None

    def dsn(self) -> str:
        parts = {
            "host": self.host,
            "port": str(self.port),
            "user": self.user,
            "password": self.password,
            "dbname": self.database,
            "sslmode": self.sslmode,
        }
        return make_conninfo(**{k: v for k, v in parts.items() if v is not None})
