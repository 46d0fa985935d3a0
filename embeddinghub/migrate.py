"""Schema migrations: Alembic owns the catalog; `sql/` holds functions, policies and views.

Both folders ship inside the wheel (as `_migrations` and `_sql`); in a source checkout
they are read from the repository root.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic import command, op
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

__all__ = ["current_revision", "head_revision", "read_sql", "run_sql_file", "upgrade"]

_PACKAGE = Path(__file__).resolve().parent
MIGRATION_LOCK = 0x6568_0001  # advisory lock key: one migrator at a time


def _resource(installed: str, source: str) -> Path:
    inside = _PACKAGE / installed
    return inside if inside.is_dir() else _PACKAGE.parent / source


def migrations_dir() -> Path:
    return _resource("_migrations", "migrations")


def sql_dir() -> Path:
    return _resource("_sql", "sql")


def read_sql(name: str) -> str:
    """The text of `sql/<name>`, for migrations to execute."""
    return (sql_dir() / name).read_text(encoding="utf-8")


def run_sql_file(name: str) -> None:
    """Execute `sql/<name>` inside the running migration, passed to the driver verbatim."""
    text = read_sql(name)
    if any(line.strip() and not line.strip().startswith("--") for line in text.splitlines()):
        # Straight to psycopg with no parameters, so '%' in function bodies stays literal.
        dbapi = op.get_bind().connection.dbapi_connection
        assert dbapi is not None
        dbapi.cursor().execute(text)


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(conn: psycopg.Connection) -> str | None:
    row = conn.execute("SELECT to_regclass('embeddinghub.alembic_version') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    got = conn.execute("SELECT version_num FROM embeddinghub.alembic_version").fetchone()
    return got[0] if got else None


def upgrade(dsn: str, conn: psycopg.Connection) -> bool:
    """Bring the database at `dsn` to the newest schema; return True if anything ran.

    Cheap when already at head (one query), so every `connect()` can call it.
    """
    head = head_revision()
    if current_revision(conn) == head:
        return False
    # Any libpq DSN form works: SQLAlchemy gets connections from psycopg directly.
    engine = create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(dsn), poolclass=pool.NullPool
    )
    try:
        with engine.begin() as sa_conn:
            raw = sa_conn.exec_driver_sql
            raw(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            cfg = _alembic_config()
            cfg.attributes["connection"] = sa_conn
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()
    return True
