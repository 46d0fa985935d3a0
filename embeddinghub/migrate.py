"""Schema migrations: Alembic owns the catalog; `sql/` holds functions, policies and views.

Both folders ship inside the wheel (as `_migrations` and `_sql`); in a source checkout
they are read from the repository root.

Migrations never need a superuser: the application role owns its database (CREATE on it),
and an administrator has created the `vector` extension. Before any revision runs,
`upgrade()` checks what only an administrator can provide and raises `AdminRequired` with
the exact SQL to ask for. Every migration runs with `search_path = pg_catalog, pg_temp`, so
an object planted in a writable schema can never be bound into a view, policy or function;
pgvector's schema is written into `sql/` files where they say `@vector@`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import psycopg
from alembic import command, op
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from psycopg import sql
from sqlalchemy import create_engine, pool

from . import errors
from .db import from_db_error

__all__ = [
    "SQL_FILES",
    "apply_sql_files",
    "current_revision",
    "head_revision",
    "read_sql",
    "run_sql_file",
    "upgrade",
]

log = logging.getLogger(__name__)

_PACKAGE = Path(__file__).resolve().parent
MIGRATION_LOCK = 0x6568_0001  # advisory lock key: one migrator at a time
MIGRATION_LOCK_TIMEOUT = "60s"
SAFE_SEARCH_PATH = "pg_catalog, pg_temp"
# The definitions in sql/, in dependency order (later files call functions of earlier ones).
SQL_FILES = ("triggers.sql", "versions.sql", "functions.sql", "history.sql", "acl.sql", "views.sql",
             "unfreeze.sql")


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


def _vector_schema(cur: psycopg.Cursor[Any]) -> str | None:
    cur.execute(
        "SELECT n.nspname FROM pg_catalog.pg_extension e"
        " JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
    )
    row = cur.fetchone()
    return None if row is None else str(row[0])


def run_sql_file(name: str) -> None:
    """Execute `sql/<name>` inside the running migration, passed to the driver verbatim
    but for `@vector@`, which becomes pgvector's schema (quoted)."""
    text = read_sql(name)
    if any(line.strip() and not line.strip().startswith("--") for line in text.splitlines()):
        # Straight to psycopg with no parameters, so '%' in function bodies stays literal.
        dbapi = op.get_bind().connection.dbapi_connection
        assert isinstance(dbapi, psycopg.Connection)  # SQLAlchemy's psycopg driver
        cur = dbapi.cursor()
        schema = _vector_schema(cur)
        if schema is None:
            raise errors.AdminRequired("the pgvector extension is not installed",
                                       "CREATE EXTENSION vector;")
        text = text.replace("@vector@", sql.Identifier(schema).as_string(dbapi))
        cur.execute(text)


def apply_sql_files() -> None:
    """(Re)apply every definition in sql/: they are re-runnable and always describe the
    newest catalog, so each revision that changes the catalog or sql/ ends with this."""
    for name in SQL_FILES:
        run_sql_file(name)


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


# -- what only an administrator can provide ------------------------------------------------------
def preflight(cur: psycopg.Cursor[Any]) -> None:
    """Check (and where it may, fix) what migrations need and only an admin can give.

    Runs inside the migration transaction, before any revision."""
    cur.execute("SELECT current_database(), current_user")
    db, user = cur.fetchone()  # type: ignore[misc]
    qdb, quser = (sql.Identifier(x).as_string(cur.connection) for x in (db, user))
    schema = _vector_schema(cur)
    if schema is None:
        try:
            cur.execute("SAVEPOINT eh_extension")
            cur.execute("CREATE EXTENSION vector")
            cur.execute("RELEASE SAVEPOINT eh_extension")
        except psycopg.errors.InsufficientPrivilege:
            cur.execute("ROLLBACK TO SAVEPOINT eh_extension")
            raise errors.AdminRequired(
                f"database {db!r}: the pgvector extension is not installed and role {user!r}"
                " may not create it",
                f"CREATE EXTENSION vector;  -- connected to database {db!r}",
            ) from None
        except psycopg.errors.FeatureNotSupported as exc:  # not installed on the server
            raise errors.AdminRequired(
                f"database {db!r}: the server has no pgvector ({exc.diag.message_primary})",
                f"CREATE EXTENSION vector;  -- after installing pgvector >= 0.8 on the server;"
                f" connected to database {db!r}",
            ) from None
        schema = _vector_schema(cur)
        assert schema is not None
    cur.execute(
        "SELECT to_regnamespace('embeddinghub') IS NOT NULL,"
        " has_database_privilege(current_database(), 'CREATE')"
    )
    has_schema, can_create = cur.fetchone()  # type: ignore[misc]
    if not has_schema and not can_create:
        raise errors.AdminRequired(
            f"database {db!r}: role {user!r} may not create schemas in it",
            f"ALTER DATABASE {qdb} OWNER TO {quser};  -- or: GRANT CREATE ON DATABASE {qdb}"
            f" TO {quser};",
        )
    # pgvector's library defines hnsw.* settings; loading it (any call into it does) makes
    # them known, so functions may name them in SET clauses without superuser.
    cur.execute(
        sql.SQL("SELECT {}.vector_dims('[0]'::{}.vector)").format(
            sql.Identifier(schema), sql.Identifier(schema)
        )
    )
    _lock_down_public(cur, user)


def _lock_down_public(cur: psycopg.Cursor[Any], user: str) -> None:
    """A `public` schema others can CREATE in lets them plant operators and functions that
    outrank pg_catalog's for callers with public on their search_path (the PostgreSQL
    default before 15). Revoke PUBLIC's CREATE where this role owns the schema, and say so;
    refuse when it cannot, and for explicit grants to other roles."""
    cur.execute(
        """
        SELECT a.grantee, coalesce(r.rolname, 'PUBLIC'),
               pg_catalog.pg_has_role(current_user, n.nspowner, 'USAGE')
        FROM pg_catalog.pg_namespace n
        CROSS JOIN LATERAL pg_catalog.aclexplode(n.nspacl) a
        LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
        WHERE n.nspname = 'public' AND a.privilege_type = 'CREATE'
          AND a.grantee <> n.nspowner
          AND NOT coalesce(r.rolsuper, false)
          AND NOT (a.grantee <> 0 AND pg_catalog.pg_has_role(a.grantee, n.nspowner, 'USAGE'))
        """
    )
    for grantee, name, owned in cur.fetchall():
        if grantee == 0 and owned:
            cur.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            log.warning(
                "embeddinghub: revoked CREATE on schema public from PUBLIC: every role could"
                " plant objects there that hijack other roles' queries"
            )
            continue
        target = "PUBLIC" if grantee == 0 else sql.Identifier(name).as_string(cur.connection)
        raise errors.AdminRequired(
            f"schema public is writable by {name!r}: objects planted there can hijack the"
            f" queries of other roles (role {user!r} runs the migrations)",
            f"REVOKE CREATE ON SCHEMA public FROM {target};",
        )


def upgrade(dsn: str, conn: psycopg.Connection, target: str = "head") -> bool:
    """Bring the database at `dsn` to the newest schema (or revision `target`); return True
    if anything ran.

    Cheap when already there (one query), so every `connect()` can call it.
    """
    wanted = head_revision() if target == "head" else target
    if current_revision(conn) == wanted:
        return False
    # Any libpq DSN form works: SQLAlchemy gets connections from psycopg directly.
    engine = create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(dsn), poolclass=pool.NullPool
    )
    try:
        with engine.begin() as sa_conn:
            raw = sa_conn.exec_driver_sql
            raw(f"SET LOCAL lock_timeout = '{MIGRATION_LOCK_TIMEOUT}'")
            try:
                raw(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            except Exception as exc:  # sqlalchemy wraps the driver's error
                if getattr(getattr(exc, "orig", None), "sqlstate", None) == "55P03":
                    raise errors.SpaceBusy(
                        f"another session has been migrating this database for over"
                        f" {MIGRATION_LOCK_TIMEOUT}; retry when it has finished"
                    ) from None
                raise
            raw("SET LOCAL lock_timeout = 0")
            dbapi = sa_conn.connection.dbapi_connection
            assert dbapi is not None
            preflight(dbapi.cursor())  # type: ignore[arg-type]
            raw(f"SET LOCAL search_path = {SAFE_SEARCH_PATH}")
            cfg = _alembic_config()
            cfg.attributes["connection"] = sa_conn
            command.upgrade(cfg, target)
    except Exception as exc:
        orig = getattr(exc, "orig", None)
        if isinstance(orig, psycopg.Error):  # a migration statement failed
            raise from_db_error(orig, None) from exc
        raise
    finally:
        engine.dispose()
    return True
