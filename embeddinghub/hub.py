"""The Hub: a connection to an embeddinghub database and its catalog of spaces."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from . import errors, migrate, storage
from .compat import Config, LocalConfig
from .db import open_connection, register_types, translate, validate_name
from .server import EmbeddedServer

if TYPE_CHECKING:
    from .space import Space

__all__ = ["Hub", "connect"]

METRICS = ("l2", "cosine", "ip")
DTYPES = ("float32", "float16")


def resolve_dsn(target: str | Config | LocalConfig | None = None) -> str:
    """The DSN for `target`: a DSN, a Config, a LocalConfig (embedded), or the defaults."""
    if isinstance(target, Config):
        return target.dsn()
    if isinstance(target, LocalConfig):
        return EmbeddedServer(target.path).start()
    if isinstance(target, str) and target:
        return target
    if target is not None and not isinstance(target, str):
        raise errors.InvalidArgument(
            f"connect() takes a DSN, Config or LocalConfig, not {target!r}"
        )
    env = os.environ.get("EMBEDDINGHUB_DSN")
    return env if env else EmbeddedServer().start()


def connect(
    target: str | Config | LocalConfig | None = None, *, migrate_schema: bool = True
) -> Hub:
    """Connect to an embeddinghub database.

    With no argument: `$EMBEDDINGHUB_DSN` if set, else the embedded server under
    `$EMBEDDINGHUB_HOME`. The catalog is upgraded to the newest schema on connect.
    """
    return Hub(resolve_dsn(target), migrate_schema=migrate_schema)


class Hub:
    """A connection to an embeddinghub database."""

    def __init__(self, dsn: str, *, migrate_schema: bool = True) -> None:
        self.dsn = dsn
        self.conn: psycopg.Connection[Any] = open_connection(dsn)
        try:
            if migrate_schema:
                with translate():
                    migrate.upgrade(dsn, self.conn)
            register_types(self.conn)
        except Exception:
            self.conn.close()
            raise

    # -- lifecycle ------------------------------------------------------------------
    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Hub {self.conn.info.dbname!r} as {self.conn.info.user!r}>"

    # -- spaces ---------------------------------------------------------------------
    def create_space(
        self,
        name: str,
        dims: int,
        metric: str = "l2",
        dtype: str = "float32",
        *,
        description: str | None = None,
        m: int = 16,
        ef_construction: int = 64,
        ef_search: int = 40,
        auto_partition: bool = False,
    ) -> Space:
        """Create a space of `dims`-dimensional vectors, compared with `metric`."""
        validate_name("space", name)
        if metric not in METRICS:
            raise errors.InvalidArgument(
                f"space {name!r}: metric must be one of {METRICS}, not {metric!r}"
            )
        if dtype not in DTYPES:
            raise errors.InvalidArgument(
                f"space {name!r}: dtype must be one of {DTYPES}, not {dtype!r}"
            )
        limit = storage.MAX_INDEXED_DIMS[dtype]
        if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= limit:
            raise errors.InvalidArgument(
                f"space {name!r}: dims must be an integer from 1 to {limit} for {dtype}, not {dims!r}"
            )
        _check_index_params(name, m, ef_construction, ef_search)
        with translate(name), self.conn.transaction(), self.conn.cursor() as cur:
            try:
                cur.execute(
                    """
                    INSERT INTO embeddinghub.spaces (name, dims, metric, dtype, description,
                        hnsw_m, hnsw_ef_construction, ef_search, auto_partition)
                    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id
                    """,
                    (
                        name,
                        dims,
                        metric,
                        dtype,
                        description,
                        m,
                        ef_construction,
                        ef_search,
                        auto_partition,
                    ),
                )
            except psycopg.errors.UniqueViolation:
                raise errors.SpaceExists(name) from None
            row = cur.fetchone()
            assert row is not None
            tables = storage.SpaceTables(row[0], dims, metric, dtype)
            storage.create_space_tables(cur, tables)
            storage.create_index(cur, tables, m, ef_construction)
            _add_partition(cur, tables, "default")
            for hook in SPACE_CREATED_HOOKS:
                hook(cur, tables, name)
        return self.get_space(name)

    def get_space(self, name: str) -> Space:
        from .space import Space

        if not isinstance(name, str):
            raise errors.InvalidArgument(f"space name must be a string, not {name!r}")
        row = self._space_row(name)
        return Space(self, row)

    def _space_row(self, name: str) -> dict[str, Any]:
        with translate(name), self.conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            cur.execute("SELECT * FROM embeddinghub.spaces WHERE name = %s", (name,))
            row = cur.fetchone()
        if row is None:
            raise errors.SpaceNotFound(name)
        return row

    def list_spaces(self) -> list[dict[str, Any]]:
        """Every space this role can see, with its settings."""
        with translate(), self.conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            cur.execute(
                "SELECT name, dims, metric, dtype, frozen, head_version, description, created_at"
                " FROM embeddinghub.spaces ORDER BY name"
            )
            return cur.fetchall()

    def has_space(self, name: str) -> bool:
        with translate(name):
            row = self.conn.execute(
                "SELECT 1 FROM embeddinghub.spaces WHERE name = %s", (name,)
            ).fetchone()
        return row is not None

    def delete_space(self, name: str) -> None:
        """Drop a space, its rows, history, partitions and grants."""
        row = self._space_row(name)
        tables = storage.SpaceTables(row["id"], row["dims"], row["metric"], row["dtype"])
        with translate(name), self.conn.transaction(), self.conn.cursor() as cur:
            for hook in SPACE_DROPPED_HOOKS:
                hook(cur, tables, name)
            storage.drop_space_tables(cur, tables)
            cur.execute("DELETE FROM embeddinghub.spaces WHERE id = %s", (row["id"],))

    def freeze_space(self, name: str) -> None:
        """Make a space immutable. Enforced by the row trigger, so raw SQL is refused too."""
        self.get_space(name).freeze()

    # -- roles (acl.py) ---------------------------------------------------------------
    def create_role(self, name: str, login: bool = False, password: str | None = None) -> None:
        """Create a Postgres role to grant spaces to."""
        from .acl import create_role

        create_role(self, name, login, password)

    def drop_role(self, name: str) -> None:
        from .acl import drop_role

        drop_role(self, name)

    def execute(self, query: sql.Composable | str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run SQL on the hub's connection and return its rows (a convenience for scripts)."""
        with translate():
            cur = self.conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []


# Extension points: other modules (views, access control) keep per-space objects in step.
SPACE_CREATED_HOOKS: list[Any] = []
SPACE_DROPPED_HOOKS: list[Any] = []


def _check_index_params(space: str, m: int, ef_construction: int, ef_search: int) -> None:
    if not (isinstance(m, int) and 2 <= m <= 100):
        raise errors.InvalidArgument(f"space {space!r}: m must be from 2 to 100, not {m!r}")
    if not (
        isinstance(ef_construction, int)
        and 4 <= ef_construction <= 1000
        and ef_construction >= 2 * m
    ):
        raise errors.InvalidArgument(
            f"space {space!r}: ef_construction must be from 4 to 1000 and at least 2*m,"
            f" not {ef_construction!r}"
        )
    if not (isinstance(ef_search, int) and 1 <= ef_search <= 1000):
        raise errors.InvalidArgument(
            f"space {space!r}: ef_search must be from 1 to 1000, not {ef_search!r}"
        )


def _add_partition(cur: psycopg.Cursor[Any], tables: storage.SpaceTables, name: str) -> int:
    cur.execute(
        "INSERT INTO embeddinghub.partitions (space_id, name) VALUES (%s, %s) RETURNING id",
        (tables.space_id, name),
    )
    row = cur.fetchone()
    assert row is not None
    storage.create_partition_table(cur, tables, row[0], name)
    for hook in PARTITION_CREATED_HOOKS:
        hook(cur, tables, row[0], name)
    return int(row[0])


PARTITION_CREATED_HOOKS: list[Any] = []
