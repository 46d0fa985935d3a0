"""Compatibility with the original Embeddinghub client: `LocalConfig` and `Config`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from psycopg.conninfo import make_conninfo

__all__ = ["Config", "LocalConfig", "redact_dsn"]


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

    def __repr__(self) -> str:
        # print(config) and tracebacks must not show the password in clear
        fields = ", ".join(
            f"{name}={'***' if name == 'password' and value is not None else repr(value)}"
            for name, value in (
                ("host", self.host),
                ("port", self.port),
                ("user", self.user),
                ("password", self.password),
                ("database", self.database),
                ("sslmode", self.sslmode),
            )
        )
        return f"Config({fields})"

    def dsn(self) -> str:
        """The libpq DSN, password included (it is what connects); show `redact_dsn(dsn)`."""
        parts = {
            "host": self.host,
            "port": str(self.port),
            "user": self.user,
            "password": self.password,
            "dbname": self.database,
            "sslmode": self.sslmode,
        }
        return make_conninfo(**{k: v for k, v in parts.items() if v is not None})


def redact_dsn(dsn: str) -> str:
    """`dsn` with any password replaced by `***`, for messages, reprs and logs.

    Handles both libpq forms: `key=value` (`password=...`, quoted or not) and URIs
    (`postgresql://user:secret@host/db`, `?password=...`). Everything else is kept.
    """
    out = re.sub(
        r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'&]+)", r"\1***", dsn, flags=re.IGNORECASE
    )
    # URI userinfo: scheme://user:password@ (an empty password has nothing to hide)
    return re.sub(r"^(postgres(?:ql)?://[^:/@?#]*:)[^@/?#]+@", r"\1***@", out)
