"""Access control through the Python API and the CLI: roles, grants, revokes, and what the
database derives from them (table privileges, policies, catalog visibility)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg import sql

import embeddinghub as eh
from embeddinghub import acl, errors
from embeddinghub.cli import main


def _privileges(hub: eh.Hub, role: str, space: eh.Space) -> dict[str, set[str]]:
    """What `role` may do on the space's live table, history table and view."""
    out: dict[str, set[str]] = {}
    for label, table in (
        ("live", f"embeddinghub_data.s{space.id}"),
        ("history", f"embeddinghub_data.s{space.id}_history"),
        ("view", sql.Identifier("embeddinghub_views", space.name).as_string(hub.conn)),
    ):
        out[label] = {
            p
            for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
            if hub.execute("SELECT has_table_privilege(%s, %s, %s)", (role, table, p))[0][0]
        }
    return out


def _policies(hub: eh.Hub, space: eh.Space) -> set[str]:
    rows = hub.execute(
        "SELECT polname FROM pg_policy WHERE polrelid IN (%s::regclass, %s::regclass)",
        (f"embeddinghub_data.s{space.id}", f"embeddinghub_data.s{space.id}_history"),
    )
    return {r[0] for r in rows}


# -- roles ------------------------------------------------------------------------------------------
def test_create_role_has_no_special_powers(hub: eh.Hub) -> None:
    name = f"acl_{uuid.uuid4().hex[:8]}"
    hub.create_role(name, login=True, password="s3cret")
    try:
        row = hub.execute(
            "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolinherit"
            " FROM pg_roles WHERE rolname = %s",
            (name,),
        )
        assert row == [(True, False, False, False, False, True)]
        if hub.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")[0][0]:
            stored = hub.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (name,))
            assert stored[0][0].startswith(("SCRAM-SHA-256$", "md5"))  # hashed client-side
            assert "s3cret" not in stored[0][0]
        with pytest.raises(errors.InvalidArgument, match="already exists"):
            hub.create_role(name)
    finally:
        hub.drop_role(name)
    assert not hub.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
    with pytest.raises(errors.InvalidArgument, match="does not exist"):
        hub.drop_role(name)


def test_create_role_checks_its_arguments(hub: eh.Hub) -> None:
    with pytest.raises(errors.InvalidArgument, match="needs login=True"):
        hub.create_role(f"acl_{uuid.uuid4().hex[:8]}", password="x")
    with pytest.raises(errors.InvalidArgument, match="reserved"):
        hub.create_role("pg_evil")
    with pytest.raises(errors.InvalidArgument, match="does not exist"):
        acl.create_role(hub, f"acl_{uuid.uuid4().hex[:8]}", member_of=["no_such_group_x"])


def test_drop_role_refuses_a_role_that_owns_objects(hub: eh.Hub) -> None:
    name = f"acl_{uuid.uuid4().hex[:8]}"
    hub.create_role(name)
    try:
        # A non-superuser owner (CREATEROLE) must be a member to give the role a schema.
        hub.execute(sql.SQL("GRANT {} TO current_user").format(sql.Identifier(name)))
        hub.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
            sql.Identifier(name), sql.Identifier(name)))
        with pytest.raises(errors.InvalidArgument, match="cannot be dropped"):
            hub.drop_role(name)
        hub.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(name)))
    finally:
        hub.drop_role(name)


def test_role_dsn_swaps_the_user() -> None:
    dsn = acl.role_dsn("postgresql://owner:pw@/db?host=/tmp/sock", "alice", "p w'")
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    assert params["user"] == "alice" and params["password"] == "p w'"
    assert params["dbname"] == "db" and params["host"] == "/tmp/sock"
    assert "password" not in psycopg.conninfo.conninfo_to_dict(acl.role_dsn(dsn, "bob"))


# -- grants -------------------------------------------------------------------------------------------
def test_grant_derives_privileges_and_policies(hub: eh.Hub, space: eh.Space, make_role: Any) -> None:
    role = make_role("acl")
    assert _privileges(hub, role.name, space) == {"live": set(), "history": set(), "view": set()}
    space.grant(role.name, "read")
    assert _privileges(hub, role.name, space) == {
        "live": {"SELECT"}, "history": {"SELECT"}, "view": {"SELECT"}
    }
    [g] = space.grants()
    assert (g.role, g.privilege, g.partition) == (role.name, "read", None)
    policies = _policies(hub, space)
    assert {p for p in policies if p.startswith("eh_g")} == {f"eh_g{_grant_id(hub, space)}_select"}

    space.grant(role.name, "write")  # replaces read: one privilege per scope
    assert [(g.privilege, g.partition) for g in space.grants()] == [("write", None)]
    assert _privileges(hub, role.name, space) == {
        "live": {"SELECT", "INSERT", "UPDATE", "DELETE"},  # never TRUNCATE
        "history": {"SELECT"},  # history is written by the row trigger only
        "view": {"SELECT"},
    }
    gid = _grant_id(hub, space)
    assert {p for p in _policies(hub, space) if p.startswith("eh_g")} == {
        f"eh_g{gid}_{cmd}" for cmd in ("select", "insert", "update", "delete")
    }

    space.grant(role.name, "read")  # and downgrades
    assert _privileges(hub, role.name, space)["live"] == {"SELECT"}
    assert space.revoke(role.name) is None
    assert space.grants() == []
    assert _privileges(hub, role.name, space) == {"live": set(), "history": set(), "view": set()}
    assert not {p for p in _policies(hub, space) if p.startswith("eh_g")}


def _grant_id(hub: eh.Hub, space: eh.Space) -> int:
    return int(hub.execute("SELECT max(id) FROM embeddinghub.grants WHERE space_id = %s",
                           (space.id,))[0][0])


def test_grant_checks_its_arguments(space: eh.Space, make_role: Any) -> None:
    role = make_role("acl")
    with pytest.raises(errors.InvalidArgument, match="privilege"):
        space.grant(role.name, "owner")
    with pytest.raises(errors.PartitionNotFound):
        space.grant(role.name, "read", partition="nope")
    with pytest.raises(errors.InvalidArgument):
        space.grant(role.name, "read", partition="bad name")
    with pytest.raises(errors.InvalidArgument, match="does not exist"):
        space.grant(f"ghost_{uuid.uuid4().hex[:8]}", "read")
    assert space.grants() == []


def test_revoke_narrows_by_privilege_and_partition(
    hub: eh.Hub, make_space: Callable[..., eh.Space], make_role: Any
) -> None:
    space = make_space()
    space.create_partition("p1")
    space.create_partition("p2")
    role = make_role("acl")
    space.grant(role.name, "read")
    space.grant(role.name, "write", partition="p1")
    space.grant(role.name, "admin", partition="p2")
    assert [(g.privilege, g.partition) for g in space.grants()] == [
        ("read", None), ("write", "p1"), ("admin", "p2")
    ]
    assert acl.revoke(space, role.name, partition="p1") == 1
    assert acl.revoke(space, role.name, privilege="write") == 0
    assert acl.revoke(space, role.name, privilege="admin", partition="p2") == 1
    assert [(g.privilege, g.partition) for g in space.grants()] == [("read", None)]
    assert acl.revoke(space, role.name) == 1
    # Its last admin grant anywhere gone, the role may no longer write to the grants table.
    assert not hub.execute("SELECT has_table_privilege(%s, 'embeddinghub.grants', 'INSERT')",
                           (role.name,))[0][0]


def test_partition_grant_scopes_rows(
    make_space: Callable[..., eh.Space], make_role: Any
) -> None:
    space = make_space()
    space.create_partition("en")
    space.create_partition("de")
    space.multiset(["a", "b"], np.eye(4)[:2], partition="en")
    space.multiset(["c"], np.eye(4)[2:3], partition="de")
    space.multiset(["d"], np.eye(4)[3:])
    role = make_role("acl")
    space.grant(role.name, "write", partition="en")
    mine = role.hub().get_space(space.name)
    assert sorted(k for k, _ in mine.iterator()) == ["a", "b"]
    assert len(mine) == 2 and mine.count("de") == 0
    assert [n.key for n in mine.nearest_neighbors(4, vector=np.eye(4)[2])] != []
    assert {n.partition for n in mine.nearest_neighbors(4, vector=np.eye(4)[2])} == {"en"}
    mine.set("e", np.ones(4), partition="en")
    assert mine.count("en") == 3 and space.count() == 5
    mine.delete_all()  # every row it can see, and only those
    assert space.count("en") == 0 and space.count() == 2


def test_whole_space_grant_covers_partitions_made_later(space: eh.Space, make_role: Any) -> None:
    role = make_role("acl")
    space.grant(role.name, "read")
    space.create_partition("later")
    space.set("k", np.ones(4), partition="later")
    mine = role.hub().get_space(space.name)
    assert mine.get("k", partition="later").tolist() == [1.0] * 4
    assert [p["name"] for p in mine.list_partitions()] == ["default", "later"]


def test_writer_bulk_load_keeps_the_index(space: eh.Space, make_role: Any) -> None:
    """A first big load by the owner rebuilds the index; a grantee cannot, and must not try."""
    role = make_role("acl")
    space.grant(role.name, "write")
    mine = role.hub().get_space(space.name)
    n = 5000
    assert mine.multiset([f"k{i}" for i in range(n)], np.random.default_rng(0).random((n, 4))) == n
    assert len(space) == n
    assert space.nearest_neighbors(1, key="k7")


def test_admin_grants_to_others_within_its_scope(
    make_space: Callable[..., eh.Space], make_role: Any
) -> None:
    space = make_space()
    other = make_space()
    space.create_partition("p1")
    space.set("k", np.ones(4), partition="p1")
    admin, padmin, friend = make_role("acl_adm"), make_role("acl_padm"), make_role("acl_friend")
    space.grant(admin.name, "admin")
    space.grant(padmin.name, "admin", partition="p1")

    as_admin = admin.hub().get_space(space.name)
    as_admin.grant(friend.name, "read")
    assert {g.role for g in as_admin.grants()} == {admin.name, padmin.name, friend.name}
    assert friend.hub().get_space(space.name).get("k", partition="p1").tolist() == [1.0] * 4
    assert as_admin.revoke(friend.name) is None
    with pytest.raises(errors.SpaceNotFound):
        friend.hub().get_space(space.name)
    with pytest.raises(errors.SpaceNotFound):  # not even visible to it
        admin.hub().get_space(other.name)

    as_padmin = padmin.hub().get_space(space.name)
    with pytest.raises(errors.PermissionDenied, match="admin"):
        as_padmin.grant(friend.name, "read")  # the whole space: beyond its scope
    as_padmin.grant(friend.name, "write", partition="p1")
    assert {(g.role, g.partition) for g in as_padmin.grants()} == {
        (padmin.name, "p1"), (friend.name, "p1")
    }
    assert acl.revoke(as_padmin, admin.name) == 0  # out of its reach, silently untouched
    assert {g.role for g in space.grants()} == {admin.name, padmin.name, friend.name}

    reader = make_role("acl_reader")
    space.grant(reader.name, "read")
    with pytest.raises(errors.PermissionDenied, match="may not grant"):
        reader.hub().get_space(space.name).grant(friend.name, "read")
    with pytest.raises(errors.PermissionDenied, match="may not revoke"):
        reader.hub().get_space(space.name).revoke(friend.name)


def test_reader_group_role_pattern(hub: eh.Hub, space: eh.Space, make_role: Any) -> None:
    """Grant a NOLOGIN group once; every login that inherits from it reads, and stops
    reading the moment its membership goes."""
    space.set("k", np.ones(4))
    group = f"reader_{uuid.uuid4().hex[:8]}"
    hub.create_role(group)
    try:
        space.grant(group, "read")
        bi = make_role("acl_bi")
        hub.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(bi.name)))
        conn = bi.connect()
        view = sql.Identifier("embeddinghub_views", space.name)
        assert conn.execute(sql.SQL("SELECT key, embedding FROM {}").format(view)).fetchall() == [
            ("k", [1.0] * 4)
        ]
        assert conn.execute("SELECT name FROM embeddinghub.spaces").fetchall() == [(space.name,)]
        hub.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), sql.Identifier(bi.name)))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("SELECT key FROM {}").format(view))
        assert conn.execute("SELECT name FROM embeddinghub.spaces").fetchall() == []
    finally:
        hub.drop_role(group)


def test_noinherit_member_must_set_role(hub: eh.Hub, space: eh.Space, make_role: Any) -> None:
    """Postgres' own rule, applied to catalog, privileges and policies alike."""
    space.set("k", np.ones(4))
    group = f"reader_{uuid.uuid4().hex[:8]}"
    hub.create_role(group)
    try:
        space.grant(group, "read")
        member = make_role("acl_noinh")
        hub.execute(sql.SQL("ALTER ROLE {} NOINHERIT").format(sql.Identifier(member.name)))
        hub.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(member.name)))
        conn = member.connect()
        live = sql.SQL("SELECT key FROM {}").format(sql.Identifier("embeddinghub_data", f"s{space.id}"))
        assert conn.execute("SELECT count(*) FROM embeddinghub.spaces").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(live)
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(group)))
        assert conn.execute(live).fetchall() == [("k",)]
        conn.execute("RESET ROLE")
    finally:
        hub.drop_role(group)


def test_drop_space_and_role_with_grants(hub: eh.Hub, make_space: Callable[..., eh.Space],
                                          make_role: Any) -> None:
    space = make_space()
    role = make_role("acl")
    space.grant(role.name, "admin")
    # Postgres itself refuses to drop a role a grant still depends on.
    with pytest.raises(errors.EmbeddingHubError, match="depend"):
        hub.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role.name)))
    hub.delete_space(space.name)
    assert not hub.execute("SELECT 1 FROM embeddinghub.grants WHERE role = %s", (role.name,))
    hub.drop_role(role.name)


def test_has_access(space: eh.Space, make_role: Any) -> None:
    space.create_partition("p1")
    role = make_role("acl")
    space.grant(role.name, "write", partition="p1")
    conn = role.connect()

    def has(*args: Any) -> bool:
        return bool(conn.execute("SELECT embeddinghub.has_access(%s, %s, %s)", args).fetchone()[0])

    assert has(space.name, "read", "p1") and has(space.name, "write", "p1")
    assert not has(space.name, "admin", "p1")
    assert not has(space.name, "read", None) and not has(space.name, "read", "default")
    assert not has("no-such-space", "read", None)
    with pytest.raises(psycopg.Error) as info:
        has(space.name, "root", None)
    assert info.value.sqlstate == "EHARG"


# -- CLI --------------------------------------------------------------------------------------------
def _cli(dsn: str, *args: str, code: int = 0, input: str | None = None) -> Result:
    result = CliRunner().invoke(main, ["--dsn", dsn, *args], input=input,
                                env={"EMBEDDINGHUB_DSN": None})
    assert result.exit_code == code, (result.output, result.exception)
    return result


def test_cli_roles_and_grants(dsn: str, hub: eh.Hub, space: eh.Space) -> None:
    space.create_partition("en")
    name = f"acl_cli_{uuid.uuid4().hex[:8]}"
    group = f"acl_grp_{uuid.uuid4().hex[:8]}"
    try:
        assert "created role" in _cli(dsn, "acl", "role", "create", group).stdout
        out = _cli(dsn, "acl", "role", "create", name, "--login", "--password",
                   "--member-of", group, input="pw\npw\n").stdout
        assert f"created login role {name!r} (member of {group})" in out
        assert hub.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (name, group))[0][0]
        _cli(dsn, "acl", "grant", space.name, name, "write", "--partition", "en")
        _cli(dsn, "acl", "grant", space.name, group, "read")
        rows = json.loads(_cli(dsn, "acl", "list", space.name, "--json").stdout)
        assert [(r["role"], r["privilege"], r["partition"]) for r in rows] == sorted(
            [(name, "write", "en"), (group, "read", None)]  # null: the whole space
        )
        table = _cli(dsn, "acl", "list", space.name, "--table").stdout
        assert table.splitlines()[0].split() == ["role", "privilege", "partition", "granted_by",
                                                 "granted_at"]
        assert "revoked 1 grant on" in _cli(dsn, "acl", "revoke", space.name, name).stdout
        assert "revoked 0 grants" in _cli(dsn, "acl", "revoke", space.name, name, "admin").stdout
        bad = _cli(dsn, "acl", "grant", space.name, name, "read", "--partition", "zz", code=1)
        assert "partition 'zz' does not exist" in bad.stderr
        bad = _cli(dsn, "acl", "grant", space.name, "x'; drop", "read", code=1)
        assert "invalid role name" in bad.stderr and "Traceback" not in bad.output
        _cli(dsn, "acl", "grant", space.name, name, "superuser", code=2)
    finally:
        for role in (name, group):
            if hub.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)):
                _cli(dsn, "acl", "role", "drop", role)
    assert space.grants() == []
