"""Server mode on a managed-style Postgres: the application role is no superuser; it owns
its database (with CREATEROLE to manage roles) and an administrator created `vector`.

Each test plays the administrator (the `admin_dsn` fixture, a superuser) to set up a fresh
role and database the way a managed Postgres would, then connects as the application.
What only an administrator can give is reported as `AdminRequired`, with the exact SQL.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import embeddinghub as eh
from embeddinghub import errors, migrate
from embeddinghub.cli import main

Setup = Callable[..., str]


@pytest.fixture
def fresh_database(admin_dsn: str) -> Iterator[Setup]:
    """`make(extension=True, createrole=True, before=None)` -> the DSN of a new LOGIN role
    owning a new database, as an administrator would set them up; both dropped afterwards.
    `before(admin_conn)` runs as the administrator in that database before the app connects."""
    made: list[tuple[str, str]] = []

    def make(extension: bool = True, createrole: bool = True,
             before: Callable[[psycopg.Connection[Any]], None] | None = None) -> str:
        tag = uuid.uuid4().hex[:8]
        role, database, password = f"app_{tag}", f"appdb_{tag}", secrets.token_hex(12)
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            hashed = admin.pgconn.encrypt_password(password.encode(), role.encode(), None)
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN {} PASSWORD {}").format(
                sql.Identifier(role), sql.SQL("CREATEROLE" if createrole else "NOCREATEROLE"),
                sql.Literal(hashed.decode())))
            admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(role)))
        made.append((role, database))
        params = conninfo_to_dict(admin_dsn)
        with psycopg.connect(make_conninfo("", **{**params, "dbname": database}),
                             autocommit=True) as db:
            if extension:
                db.execute("CREATE EXTENSION vector")
            if before is not None:
                before(db)
        params.pop("passfile", None)
        return make_conninfo("", **{**params, "dbname": database, "user": role,
                                    "password": password})

    yield make
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        for role, database in made:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(database)))
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            for (child,) in admin.execute(
                "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
                " JOIN pg_roles g ON g.oid = m.member WHERE g.rolname = %s AND m.admin_option"
                " AND r.rolname LIKE 'app\\_%%'", (role,)).fetchall():
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(child)))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_everything_works_as_a_non_superuser_owner(fresh_database: Setup) -> None:
    dsn = fresh_database()
    with eh.connect(dsn) as hub:
        assert hub.execute("SELECT rolsuper, rolbypassrls FROM pg_roles"
                           " WHERE rolname = current_user") == [(False, False)]
        space = hub.create_space("items", dims=3, metric="cosine")
        space.multiset(["a", "b", "c"], [[1, 0, 0], [0, 1, 0], [0.9, 0.1, 0]])
        space.create_partition("p1")
        v = space.snapshot(tag="v1")
        space.set("a", [0, 0, 1])
        # The SQL API sets hnsw.ef_search / hnsw.iterative_scan in every search.
        rows = hub.execute("SELECT key FROM embeddinghub.nearest_neighbors('items', '[1,0,0]', 2000)")
        assert {r[0] for r in rows} == {"a", "b", "c"}
        assert [n.key for n in space.nearest_neighbors(1, vector=[1, 0, 0])] == ["c"]
        assert space.rollback(v).number > v.number
        name = f"app_{uuid.uuid4().hex[:8]}"  # dropped with the database's owner
        hub.create_role(name, login=True, password="pw")
        space.grant(name, "read", partition="p1")
        assert [g.role for g in space.grants()] == [name]
        hub.drop_role(name)


def test_upgrading_a_hub_takes_delete_on_grants_from_its_admins(fresh_database: Setup) -> None:
    """Revision 0005: admins revoke through grant_revocations; the DELETE (and with it the
    ACCESS EXCLUSIVE lock on the grants table) that 0004 gave them goes on upgrade."""
    dsn = fresh_database()
    admin = f"app_{uuid.uuid4().hex[:8]}"  # dropped with the database's owner
    privileges = (
        "SELECT has_table_privilege(%(r)s, 'embeddinghub.grants', 'DELETE'),"
        "       has_table_privilege(%(r)s, 'embeddinghub.grants', 'INSERT'),"
        "       to_regclass('embeddinghub.grant_revocations') IS NOT NULL"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert migrate.upgrade(dsn, conn, target="0004")
        assert migrate.current_revision(conn) == "0004"
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(admin)))
        (sid,) = conn.execute(
            "INSERT INTO embeddinghub.spaces (name, dims, metric, dtype)"
            " VALUES ('old', 3, 'l2', 'float32') RETURNING id"
        ).fetchone()  # type: ignore[misc]
        conn.execute(
            "INSERT INTO embeddinghub.grants (space_id, role, privilege) VALUES (%s, %s, 'admin')",
            (sid, admin),
        )
        # Revision 0004 applies the newest sql/; put back what 0004's own sql/ left behind.
        conn.execute("DROP TABLE embeddinghub.grant_revocations")
        conn.execute(sql.SQL("GRANT INSERT, DELETE ON embeddinghub.grants TO {}").format(
            sql.Identifier(admin)))
        assert conn.execute(privileges, {"r": admin}).fetchone() == (True, True, False)
    with eh.connect(dsn) as hub:  # connect() upgrades to the newest revision
        assert migrate.current_revision(hub.conn) == migrate.head_revision()
        assert hub.execute(privileges, {"r": admin}) == [(False, True, True)]
        assert hub.execute(
            "SELECT has_table_privilege(%s, 'embeddinghub.grant_revocations', 'INSERT')", (admin,)
        ) == [(True,)]


def test_upgrading_converts_each_history_to_partitions_keeping_every_image(
    fresh_database: Setup,
) -> None:
    """Revision 0006 (sql/history.sql): a space's plain history table becomes partitioned by
    partition identity. Made here by hand as earlier versions made it, with images of a
    dropped partition whose name lives on."""
    dsn = fresh_database()
    reader = f"app_{uuid.uuid4().hex[:8]}"
    with eh.connect(dsn) as hub:
        space = hub.create_space("old", dims=2)
        space.create_partition("p1")
        space.set("a", [1, 0])
        space.set("x", [1, 1], partition="p1")
        v1 = space.snapshot()
        space.drop_partition("p1")  # x's image: an earlier p1's
        space.create_partition("p1")
        space.set("y", [0, 1], partition="p1")
        v2 = space.snapshot()
        space.set("a", [0, 2])
        space.set("y", [2, 2], partition="p1")
        hub.create_role(reader, login=True, password="pw")
        space.grant(reader, "read", partition="p1")
        hist = space.tables.history
        images = sql.SQL("SELECT partition, key, valid_from, valid_to FROM {}").format(hist)
        before = sorted(hub.execute(images))
        hub.execute(sql.SQL("ALTER TABLE {} RENAME TO history_copy").format(hist))
        hub.execute(sql.SQL(
            "CREATE TABLE {} (partition text NOT NULL, key text NOT NULL,"
            " embedding vector(2) NOT NULL, metadata jsonb, valid_from bigint NOT NULL,"
            " valid_to bigint NOT NULL, updated_at timestamptz NOT NULL)"
        ).format(hist))
        hub.execute(sql.SQL(
            "INSERT INTO {} SELECT partition, key, embedding, metadata, valid_from, valid_to,"
            " updated_at FROM embeddinghub_data.history_copy"
        ).format(hist))
        hub.execute("DROP TABLE embeddinghub_data.history_copy CASCADE")
        hub.execute("UPDATE embeddinghub.alembic_version SET version_num = '0005'")
    with eh.connect(dsn) as hub:  # connect() upgrades: 0006 converts the history
        space = hub.get_space("old")
        assert hub.execute(
            "SELECT relkind FROM pg_class WHERE oid = %s::regclass", (hist.as_string(hub.conn),)
        ) == [("p",)]
        assert sorted(hub.execute(images)) == before
        where = dict(hub.execute(sql.SQL("SELECT key, tableoid::regclass::text FROM {}").format(hist)))
        assert where["x"].endswith("_history_default")  # the dropped p1's image: no grant admits it
        ids = dict(hub.execute("SELECT name, id FROM embeddinghub.partitions WHERE space_id = %s",
                               (space.id,)))
        assert where["y"].endswith(f"_history_p{ids['p1']}")
        assert where["a"].endswith(f"_history_p{ids['default']}")
        assert {k for k, _ in space.as_of(v1).iterator()} == {"a", "x"}
        assert {k for k, _ in space.as_of(v2).iterator()} == {"a", "y"}
        assert space.as_of(v2).get("y", partition="p1").tolist() == [0, 1]
        space.snapshot()
        space.set("y", [3, 3], partition="p1")  # the row trigger writes into the new layout
    with psycopg.connect(make_conninfo(dsn, user=reader, password="pw"), autocommit=True) as conn:
        seen = conn.execute(sql.SQL("SELECT key FROM {} ORDER BY valid_from").format(hist)).fetchall()
        assert seen == [("y",), ("y",)]  # its partition's images only, not the earlier p1's x


def test_a_missing_extension_names_the_sql_to_ask_for(fresh_database: Setup) -> None:
    dsn = fresh_database(extension=False)
    with pytest.raises(errors.AdminRequired) as info:
        eh.connect(dsn)
    assert "CREATE EXTENSION vector;" in str(info.value) and info.value.sql.startswith(
        "CREATE EXTENSION vector;")
    assert isinstance(info.value, errors.PermissionDenied)
    result = CliRunner().invoke(main, ["--dsn", dsn, "space", "list"],
                                env={"EMBEDDINGHUB_DSN": None})
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "CREATE EXTENSION vector" in lines[0], result.output
    assert "Traceback" not in result.output and "sqlalchemy" not in result.output


def test_creating_roles_without_createrole_names_the_sql(fresh_database: Setup) -> None:
    dsn = fresh_database(createrole=False)
    user = conninfo_to_dict(dsn)["user"]
    with eh.connect(dsn) as hub:
        with pytest.raises(errors.AdminRequired, match=f'ALTER ROLE "{user}" CREATEROLE;'):
            hub.create_role(f"app_{uuid.uuid4().hex[:8]}")
    result = CliRunner().invoke(main, ["--dsn", dsn, "acl", "role", "create", f"app_{uuid.uuid4().hex[:6]}"],
                                env={"EMBEDDINGHUB_DSN": None})
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "CREATEROLE;" in lines[0], result.output
    assert "Traceback" not in result.output


def test_migrations_revoke_create_on_public_from_public(
    fresh_database: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    """The pre-15 default (anyone may CREATE in public), where the app owns public: fixed,
    and said so."""
    dsn = fresh_database(before=lambda db: db.execute("GRANT CREATE ON SCHEMA public TO PUBLIC"))
    with caplog.at_level(logging.WARNING, logger="embeddinghub.migrate"), eh.connect(dsn) as hub:
        assert hub.execute(
            "SELECT count(*) FROM pg_namespace n, aclexplode(n.nspacl) a WHERE n.nspname = 'public'"
            " AND a.grantee = 0 AND a.privilege_type = 'CREATE'") == [(0,)]
    assert any("revoked CREATE on schema public from PUBLIC" in r.message for r in caplog.records)


def test_migrations_refuse_a_public_schema_others_can_create_in(
    fresh_database: Setup, admin_dsn: str
) -> None:
    """Where the app cannot fix it (an administrator owns public), or a role was given CREATE
    there explicitly: refused, with the SQL to ask for, and nothing is migrated."""
    admin_user = conninfo_to_dict(admin_dsn).get("user") or "postgres"

    def admin_owned(db: psycopg.Connection[Any]) -> None:
        db.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(admin_user)))
        db.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")

    dsn = fresh_database(before=admin_owned)
    with pytest.raises(errors.AdminRequired,
                       match="REVOKE CREATE ON SCHEMA public FROM PUBLIC;") as info:
        eh.connect(dsn)
    assert "writable by 'PUBLIC'" in str(info.value)
    with psycopg.connect(dsn) as app:
        assert app.execute("SELECT to_regnamespace('embeddinghub')").fetchone() == (None,)


    dsn = fresh_database()
    other = f"app_other_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(dsn, autocommit=True) as app:
        app.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(other)))
        app.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(other)))
    with pytest.raises(errors.AdminRequired, match=f'REVOKE CREATE ON SCHEMA public FROM "{other}";'):
        eh.connect(dsn)
    with psycopg.connect(dsn, autocommit=True) as app:
        app.execute(sql.SQL("REVOKE CREATE ON SCHEMA public FROM {}").format(
            sql.Identifier(other)))  # what the administrator was asked to run
        app.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(other)))
    with eh.connect(dsn) as hub:  # fixed: migrates
        assert hub.list_spaces() == []
