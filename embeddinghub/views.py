"""Read-only BI views, kept in step with the spaces.

Every space has a view `embeddinghub_views."<space name>"` (key, partition, metadata,
version, updated_at, embedding as real[]) for tools that know SQL but not pgvector, and
`embeddinghub.spaces_overview` summarises all spaces. Both are `security_invoker` views, so
row-level security applies to whoever reads them (see sql/views.sql). The hooks below (run by the
Hub) create the view with its space and drop it with its space; a rename is followed by a trigger on
the catalog, so raw SQL renames are covered too.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from .db import SupportsConnection, translate
from .storage import SpaceTables

__all__ = ["VIEWS_SCHEMA", "create_view", "drop_view", "overview", "view_name"]

VIEWS_SCHEMA = "embeddinghub_views"


def view_name(space: str) -> sql.Identifier:
    """The quoted name of a space's BI view."""
    return sql.Identifier(VIEWS_SCHEMA, space)


def overview(owner: SupportsConnection) -> list[dict[str, Any]]:
    """`embeddinghub.spaces_overview` as dicts: the spaces the current role can see."""
    with translate(), owner.conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("SELECT * FROM embeddinghub.spaces_overview ORDER BY name")
        return cur.fetchall()


def create_view(cur: psycopg.Cursor[Any], tables: SpaceTables, name: str) -> None:
    cur.execute("SELECT embeddinghub.create_space_view(%s)", (tables.space_id,))


def drop_view(cur: psycopg.Cursor[Any], tables: SpaceTables, name: str) -> None:
    cur.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(view_name(name)))
