"""The Hub: a connection to an embeddinghub database and its catalog of spaces."""

from __future__ import annotations

import os
from typing import Any

import psycopg
from psycopg import sql

from . import acl, catalog, errors, migrate, views
from .catalog import DTYPES, METRICS
from .compat import Config, LocalConfig
from .db import Session, open_connection, register_types, translate
from .server import EmbeddedServer
from .space import Space

__all__ = ["DTYPES", "HOOKS", "METRICS", "Hub", "connect"]

# What keeps per-space objects in step: row-level security on every new table, BI views.
HOOKS = catalog.Hooks(
    space_created=(acl.secure_space, views.create_view),
    space_dropped=(views.drop_view,),
    partition_created=(acl.secure_partition,),
)


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
        conn = open_connection(dsn)
        try:
            if migrate_schema:
                with translate():
                    migrate.upgrade(dsn, conn)
            register_types(conn)
        except Exception:
            conn.close()
            raise
        self.session = Session(dsn, conn)

    @property
    def dsn(self) -> str:
        return self.session.dsn

    @property
    def conn(self) -> psycopg.Connection[Any]:
        return self.session.conn

    # -- lifecycle ------------------------------------------------------------------
    def close(self) -> None:
        self.session.close()

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
        settings = catalog.SpaceSettings(
            name, dims, metric, dtype, description, m, ef_construction, ef_search, auto_partition
        )
        return Space(self, catalog.create_space(self.session, HOOKS, settings))

    def get_space(self, name: str) -> Space:
        return Space(self, catalog.load(self.session, HOOKS, name))

    def list_spaces(self) -> list[dict[str, Any]]:
        """Every space this role can see, with its settings."""
        return catalog.list_spaces(self.session)

    def has_space(self, name: str) -> bool:
        return catalog.has_space(self.session, name)

    def delete_space(self, name: str) -> None:
        """Drop a space, its rows, history, partitions and grants."""
        catalog.delete_space(self.session, HOOKS, name)

    def freeze_space(self, name: str) -> None:
        """Make a space immutable. Enforced by the row trigger, so raw SQL is refused too."""
        self.get_space(name).freeze()

    def unfreeze_space(self, name: str) -> None:
        """Make a frozen space writable again."""
        self.get_space(name).unfreeze()

    def rename_space(self, old: str, new: str) -> Space:
        """Rename a space (its rows, versions, grants and BI view go with it); returns it.
        Space objects still holding the old name should be fetched again."""
        catalog.rename_space(self.session, old, new)
        return self.get_space(new)

    # -- roles ------------------------------------------------------------------------
    def create_role(self, name: str, login: bool = False, password: str | None = None) -> None:
        """Create a Postgres role to grant spaces to."""
        acl.create_role(self, name, login, password)

    def drop_role(self, name: str) -> None:
        acl.drop_role(self, name)

    def execute(self, query: sql.Composable | str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run SQL on the hub's connection and return its rows (a convenience for scripts)."""
        with translate():
            cur = self.conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []
