"""Spaces: create/get/list/delete, names, settings, migrations."""

from __future__ import annotations

import psycopg
import pytest

import embeddinghub as eh
from embeddinghub import migrate


def test_create_get_list_delete(hub: eh.Hub) -> None:
    space = hub.create_space(
        "spaces_crud", dims=8, metric="cosine", dtype="float16", description="docs"
    )
    try:
        assert (space.name, space.dims, space.metric, space.dtype) == (
            "spaces_crud",
            8,
            "cosine",
            "float16",
        )
        again = hub.get_space("spaces_crud")
        assert again.id == space.id and again.description == "docs"
        assert "spaces_crud" in [s["name"] for s in hub.list_spaces()]
        with pytest.raises(eh.SpaceExists, match="spaces_crud"):
            hub.create_space("spaces_crud", dims=8)
    finally:
        hub.delete_space("spaces_crud")
    assert not hub.has_space("spaces_crud")
    with pytest.raises(eh.SpaceNotFound, match="spaces_crud"):
        hub.get_space("spaces_crud")
    with pytest.raises(eh.SpaceNotFound, match="spaces_crud"):
        hub.delete_space("spaces_crud")


def test_delete_drops_tables(hub: eh.Hub) -> None:
    space = hub.create_space("spaces_drop", dims=2)
    live = f"embeddinghub_data.s{space.id}"
    assert hub.execute("SELECT to_regclass(%s)", (live,))[0][0] is not None
    hub.delete_space("spaces_drop")
    assert hub.execute("SELECT to_regclass(%s)", (live,))[0][0] is None
    assert hub.execute("SELECT to_regclass(%s)", (live + "_history",))[0][0] is None


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a b",
        "x'; DROP TABLE embeddinghub.spaces; --",
        'quote"d',
        "ünïcode",
        "a" * 64,
        "-lead",
        ".lead",
        "semi;colon",
        "new\nline",
        42,
        None,
    ],
)
def test_hostile_space_names_are_refused(hub: eh.Hub, name: object) -> None:
    before = len(hub.list_spaces())
    with pytest.raises(eh.InvalidArgument, match="invalid space name"):
        hub.create_space(name, dims=3)  # type: ignore[arg-type]
    assert len(hub.list_spaces()) == before
    assert hub.execute("SELECT to_regclass('embeddinghub.spaces')")[0][0] is not None


def test_lookup_by_hostile_name_is_just_not_found(hub: eh.Hub) -> None:
    with pytest.raises(eh.SpaceNotFound):
        hub.get_space("x'; DROP TABLE embeddinghub.spaces; --")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dims": 0}, "dims"),
        ({"dims": 2001}, "dims"),
        ({"dims": 3.5}, "dims"),
        ({"dims": True}, "dims"),
        ({"dims": 3, "metric": "hamming"}, "metric"),
        ({"dims": 3, "dtype": "int8"}, "dtype"),
        ({"dims": 3, "m": 1}, "m must"),
        ({"dims": 3, "ef_construction": 10, "m": 16}, "ef_construction"),
        ({"dims": 3, "ef_search": 0}, "ef_search"),
    ],
)
def test_bad_space_settings(hub: eh.Hub, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(eh.InvalidArgument, match=message):
        hub.create_space("bad_settings", **kwargs)  # type: ignore[arg-type]
    assert not hub.has_space("bad_settings")


def test_float16_allows_more_dims(make_space) -> None:  # type: ignore[no-untyped-def]
    space = make_space(dims=3000, dtype="float16")
    assert space.dims == 3000


def test_tables_are_named_from_the_id_not_the_name(hub: eh.Hub, make_space) -> None:  # type: ignore[no-untyped-def]
    space = make_space()
    rows = hub.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'embeddinghub_data'"
        " AND tablename LIKE %s",
        (f"s{space.id}%",),
    )
    assert rows and all(space.name not in r[0] for r in rows)


def test_migrations_are_at_head_and_idempotent(hub: eh.Hub, dsn: str) -> None:
    assert migrate.current_revision(hub.conn) == migrate.head_revision()
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert migrate.upgrade(dsn, conn) is False


def test_catalog_has_room_for_later_features(hub: eh.Hub) -> None:
    tables = {
        r[0]
        for r in hub.execute(  # versions is a view (over version_log) since revision 0004
            "SELECT relname FROM pg_class WHERE relnamespace = 'embeddinghub'::regnamespace"
            " AND relkind IN ('r', 'v')"
        )
    }
    assert {"spaces", "partitions", "versions", "grants", "alembic_version"} <= tables


def test_connection_failure_is_typed() -> None:
    with pytest.raises(eh.ConnectionFailed, match="cannot connect"):
        eh.connect("postgresql://nobody:secret@127.0.0.1:1/none?connect_timeout=2")


def test_connection_failure_hides_password() -> None:
    with pytest.raises(eh.ConnectionFailed) as info:
        eh.connect("postgresql://nobody:hunter2@127.0.0.1:1/none?connect_timeout=2")
    assert "hunter2" not in str(info.value)


def test_connect_rejects_other_types() -> None:
    with pytest.raises(eh.InvalidArgument):
        eh.connect(42)  # type: ignore[arg-type]
