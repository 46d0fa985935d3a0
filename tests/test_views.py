"""BI views: `embeddinghub_views."<space>"` per space and `embeddinghub.spaces_overview`, kept
in step with the spaces, read-only, obeying row-level security; through psycopg and psql."""

from __future__ import annotations

import csv
import io
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql

import embeddinghub as eh
from embeddinghub import views


def _view(space: eh.Space | str) -> sql.Identifier:
    return views.view_name(space if isinstance(space, str) else space.name)


def _exists(hub: eh.Hub, name: str) -> bool:
    return bool(hub.execute("SELECT to_regclass(%s) IS NOT NULL",
                            (_view(name).as_string(hub.conn),))[0][0])


def test_view_follows_the_space(hub: eh.Hub, make_space: Callable[..., eh.Space]) -> None:
    space = make_space(dims=3)
    space.set("k1", [1, 2, 3], metadata={"lang": "en"})
    rows = hub.execute(sql.SQL("SELECT * FROM {}").format(_view(space)))
    assert len(rows) == 1
    key, partition, metadata, version, updated_at, embedding = rows[0]
    assert (key, partition, metadata, embedding) == ("k1", "default", {"lang": "en"}, [1.0, 2.0, 3.0])
    assert version >= 1 and updated_at is not None
    cols = hub.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'embeddinghub_views' AND table_name = %s ORDER BY ordinal_position",
        (space.name,),
    )
    assert cols == [("key", "text"), ("partition", "text"), ("metadata", "jsonb"),
                    ("version", "bigint"), ("updated_at", "timestamp with time zone"),
                    ("embedding", "ARRAY")]
    options = hub.execute("SELECT reloptions FROM pg_class WHERE oid = %s::regclass",
                          (_view(space).as_string(hub.conn),))[0][0]
    assert "security_invoker=true" in options

    renamed = f"{space.name}-renamed"
    hub.execute("UPDATE embeddinghub.spaces SET name = %s WHERE id = %s", (renamed, space.id))
    try:
        assert not _exists(hub, space.name) and _exists(hub, renamed)
        assert hub.execute(sql.SQL("SELECT key FROM {}").format(_view(renamed))) == [("k1",)]
    finally:
        hub.execute("UPDATE embeddinghub.spaces SET name = %s WHERE id = %s", (space.name, space.id))
    hub.delete_space(space.name)
    assert not _exists(hub, space.name)


def test_float16_space_view(hub: eh.Hub, make_space: Callable[..., eh.Space]) -> None:
    space = make_space(dims=2, dtype="float16")
    space.set("h", [0.5, -2.0])
    assert hub.execute(sql.SQL("SELECT embedding FROM {}").format(_view(space))) == [([0.5, -2.0],)]


def test_view_is_read_only_for_grantees(space: eh.Space, make_role: Any) -> None:
    space.set("k", np.ones(4))
    writer = make_role("view")
    space.grant(writer.name, "write")
    conn = writer.connect()
    assert conn.execute(sql.SQL("SELECT key FROM {}").format(_view(space))).fetchall() == [("k",)]
    for statement in (
        "UPDATE {} SET metadata = '{{}}'",
        "DELETE FROM {}",
        "INSERT INTO {} (key, partition) VALUES ('x', 'default')",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL(statement).format(_view(space)))
    assert len(space) == 1


def test_spaces_overview(hub: eh.Hub, make_space: Callable[..., eh.Space], make_role: Any) -> None:
    space = make_space(dims=4, metric="cosine", description="for the overview")
    space.create_partition("p1")
    space.multiset(["a", "b", "c"], np.eye(4)[:3])
    space.set("d", np.ones(4), partition="p1")
    hub.execute("SELECT embeddinghub.snapshot(%s)", (space.name,))
    [row] = [r for r in views.overview(hub) if r["name"] == space.name]
    assert {k: row[k] for k in ("dims", "metric", "dtype", "rows", "partitions", "versions",
                                "frozen", "description")} == {
        "dims": 4, "metric": "cosine", "dtype": "float32", "rows": 4, "partitions": 2,
        "versions": 1, "frozen": False, "description": "for the overview",
    }
    assert row["index_bytes"] > 0 and row["index_size"].endswith(("bytes", "kB", "MB"))
    assert row["last_write"] is not None

    reader = make_role("view")
    space.grant(reader.name, "read", partition="p1")
    rows = reader.connect().execute(
        "SELECT name, rows, partitions FROM embeddinghub.spaces_overview"
    ).fetchall()
    assert rows == [(space.name, 1, 1)]  # its space only, counted as it sees it


def test_views_through_psql(psql: str, hub: eh.Hub, make_role: Any) -> None:
    """The reader-role pattern for a BI tool: a login that may read, querying with psql."""
    name = f"Sales.EU-{uuid.uuid4().hex[:6]}"  # a name that needs quoting
    space = hub.create_space(name, dims=2)
    try:
        space.multiset(["x", "y"], [[1, 0], [0, 1]], metadata=[{"n": 1}, {"n": 2}])
        bi = make_role("bi")
        space.grant(bi.name, "read")
        query = sql.SQL("SELECT key, metadata->>'n' AS n, embedding FROM {} ORDER BY key").format(
            _view(space)).as_string(hub.conn)
        done = subprocess.run([psql, bi.dsn, "-X", "--csv", "-v", "ON_ERROR_STOP=1", "-c", query],
                              env=bi.env(), capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert list(csv.reader(io.StringIO(done.stdout))) == [
            ["key", "n", "embedding"], ["x", "1", "{1,0}"], ["y", "2", "{0,1}"]
        ]
        done = subprocess.run(
            [psql, bi.dsn, "-X", "--csv", "-c",
             "SELECT name, rows FROM embeddinghub.spaces_overview"],
            env=bi.env(), capture_output=True, text=True, timeout=30,
        )
        assert done.stdout.splitlines() == ["name,rows", f"{name},2"]
    finally:
        hub.delete_space(name)
