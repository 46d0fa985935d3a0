"""Access control: Postgres roles are the principals; the database enforces every grant.

`space.grant(role, "read"|"write"|"admin", partition=None)` is one row in
`embeddinghub.grants`. A trigger there derives the role's table privileges, and row-level
security (ENABLE + FORCE) on the space's live table, each partition and the history table
admits a row only when the current user is a member of a role granted on its space and
partition (see sql/acl.sql). Raw SQL, COPY, the SQL functions and the BI views therefore
obey exactly what the Python API obeys. The catalog shows a role only what it was granted.

Granting is an INSERT into `embeddinghub.grants`, revoking an INSERT of the grant's id into
`embeddinghub.grant_revocations` (its trigger deletes the grant); each table's RLS admits the
row inside the caller's admin scope only, so an admin connected as itself can call `grant()`
and `revoke()` too. Nobody but the hub owner may UPDATE or DELETE the grants table (or, with
that, LOCK it and stall every policy check).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from . import catalog, errors
from .catalog import SpaceHandle, SupportsHandle, handle_of
from .db import SupportsConnection, translate, validate_name
from .storage import SpaceTables

__all__ = [
    "PRIVILEGES",
    "Grant",
    "create_role",
    "drop_role",
    "grant",
    "list_grants",
    "revoke",
    "role_dsn",
    "secure_partition",
    "secure_space",
]

PRIVILEGES = ("read", "write", "admin")  # each includes the ones before it
# Names Postgres reserves, or that GRANT would read as a keyword rather than a role.
RESERVED_ROLES = frozenset({"public", "none", "current_user", "current_role", "session_user"})


@dataclass(frozen=True)
class Grant:
    """One grant on a space. `partition` None means the whole space."""

    role: str
    privilege: str
    partition: str | None
    granted_by: str
    granted_at: datetime


def check_role_name(name: object) -> str:
    role = validate_name("role", name)
    if role.lower() in RESERVED_ROLES or role.startswith("pg_"):
        raise errors.InvalidArgument(f"invalid role name {role!r}: the name is reserved")
    return role


def _check_privilege(space: str, privilege: object) -> str:
    if privilege not in PRIVILEGES:
        raise errors.InvalidArgument(
            f"space {space!r}: privilege must be one of {PRIVILEGES}, not {privilege!r}"
        )
    return str(privilege)


# -- roles ------------------------------------------------------------------------------------
def role_dsn(dsn: str, role: str, password: str | None = None) -> str:
    """`dsn` with its user (and password) replaced: how to connect as a role you created.

    `eh.connect(role_dsn(hub.dsn, "alice", "secret"))` is a hub that sees what alice may.
    """
    params = conninfo_to_dict(dsn)
    params["user"] = check_role_name(role)
    params.pop("password", None)
    if password is not None:
        params["password"] = password
    return make_conninfo("", **params)


def create_role(
    owner: SupportsConnection,
    name: str,
    login: bool = False,
    password: str | None = None,
    member_of: tuple[str, ...] | list[str] = (),
) -> None:
    """Create a role with no special powers (no superuser, no CREATEROLE, no BYPASSRLS).

    The password is hashed on the client (SCRAM or md5, as the server asks), so it never
    travels or lands in a server log in clear. `member_of` makes it a member of group roles,
    e.g. a `reader` role that holds read grants (see the reader-role pattern in the README).
    """
    role = check_role_name(name)
    groups = [check_role_name(g) for g in member_of]
    if password is not None and not login:
        raise errors.InvalidArgument(f"role {role!r}: a password needs login=True")
    if password is not None and not isinstance(password, str):
        raise errors.InvalidArgument(f"role {role!r}: the password must be a string")
    options = sql.SQL(
        "{} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
    ).format(sql.SQL("LOGIN" if login else "NOLOGIN"))
    if password is not None:
        hashed = owner.conn.pgconn.encrypt_password(password.encode(), role.encode(), None)
        options += sql.SQL(" PASSWORD {}").format(sql.Literal(hashed.decode()))
    conn = owner.conn
    with translate(), conn.transaction(), conn.cursor() as cur:
        try:
            cur.execute(sql.SQL("CREATE ROLE {} WITH ").format(sql.Identifier(role)) + options)
        except psycopg.errors.DuplicateObject:
            raise errors.InvalidArgument(f"role {role!r} already exists") from None
        except psycopg.errors.InsufficientPrivilege:
            user = sql.Identifier(conn.info.user).as_string(cur)
            raise errors.AdminRequired(
                f"role {conn.info.user!r} may not create role {role!r}",
                f"ALTER ROLE {user} CREATEROLE;",
            ) from None
        for group in groups:
            _require_role(cur, group)
            cur.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(role)))


def drop_role(owner: SupportsConnection, name: str) -> None:
    conn = owner.conn
    """Revoke every grant the role holds, then drop it."""
    role = check_role_name(name)
    with translate(), conn.transaction(), conn.cursor() as cur:
        _require_role(cur, role)
        # The grants trigger revokes the table privileges as each row goes.
        cur.execute("DELETE FROM embeddinghub.grants WHERE role = %s", (role,))
        try:
            cur.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
        except psycopg.errors.DependentObjectsStillExist as exc:
            detail = (exc.diag.message_detail or "").replace("\n", "; ")
            raise errors.InvalidArgument(
                f"role {role!r} cannot be dropped: it still owns or holds objects ({detail})"
            ) from None


def _require_role(cur: psycopg.Cursor[Any], role: str) -> None:
    cur.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (role,))
    if cur.fetchone() is None:
        raise errors.InvalidArgument(f"role {role!r} does not exist")


# -- grants -----------------------------------------------------------------------------------
def grant(
    space: SpaceHandle | SupportsHandle, role: str, privilege: str, partition: str | None = None
) -> None:
    """Give `role` read, write or admin on the space (or one partition of it).

    One privilege per (role, scope): granting again replaces it, so this also downgrades.
    """
    h = handle_of(space)
    role = check_role_name(role)
    privilege = _check_privilege(h.name, privilege)
    part = None if partition is None else validate_name("partition", partition)
    where = f" partition {part!r} of" if part is not None else ""
    with translate(h.name), h.conn.transaction(), h.conn.cursor() as cur:
        _require_role(cur, role)
        if part is not None:
            catalog.ensure_partitions(h, cur, [part], create=False)
        try:
            _revoke_where(
                cur,
                [sql.SQL("space_id = %s"), sql.SQL("role = %s"),
                 sql.SQL("partition IS NOT DISTINCT FROM %s"), sql.SQL("privilege <> %s")],
                [h.id, role, part, privilege],
            )
            cur.execute(
                "INSERT INTO embeddinghub.grants (space_id, partition, role, privilege)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (h.id, part, role, privilege),
            )
        except psycopg.errors.InsufficientPrivilege:
            raise errors.PermissionDenied(
                f"space {h.name!r}: {h.conn.info.user!r} may not grant on{where} it"
                " (that needs the admin privilege on it)"
            ) from None


def revoke(
    space: SpaceHandle | SupportsHandle, role: str, privilege: str | None = None, partition: str | None = None
) -> int:
    """Take grants away from `role`; returns how many went.

    With no `privilege` and no `partition`, every grant the role holds on the space goes;
    each given argument narrows that down. Takes effect for transactions that start after
    this one commits. An admin only reaches grants in its own scope.
    """
    h = handle_of(space)
    role = check_role_name(role)
    conds = [sql.SQL("space_id = %s"), sql.SQL("role = %s")]
    params: list[Any] = [h.id, role]
    if privilege is not None:
        conds.append(sql.SQL("privilege = %s"))
        params.append(_check_privilege(h.name, privilege))
    if partition is not None:
        conds.append(sql.SQL("partition = %s"))
        params.append(validate_name("partition", partition))
    with translate(h.name), h.conn.transaction(), h.conn.cursor() as cur:
        try:
            return _revoke_where(cur, conds, params)
        except psycopg.errors.InsufficientPrivilege:
            raise errors.PermissionDenied(
                f"space {h.name!r}: {h.conn.info.user!r} may not revoke on it"
                " (that needs the admin privilege on it)"
            ) from None


def _revoke_where(cur: psycopg.Cursor[Any], conds: Sequence[sql.Composable], params: list[Any]) -> int:
    """Revoke the grants matching `conds` that the caller administers; returns how many.

    A revocation request per grant: its trigger deletes the grant (sql/acl.sql). Grants the
    caller sees but does not administer (its own, elsewhere) are left alone, not refused."""
    cur.execute(
        sql.SQL(
            "INSERT INTO embeddinghub.grant_revocations (grant_id)"
            " SELECT id FROM embeddinghub.grants"
            " WHERE {} AND embeddinghub.acl_can_admin(space_id, partition)"
        ).format(sql.SQL(" AND ").join(conds)),
        params,
    )
    return cur.rowcount


def list_grants(space: SpaceHandle | SupportsHandle) -> list[Grant]:
    """The grants on the space the current role may see: all of them for the hub owner and
    the space's admins, else only the role's own."""
    h = handle_of(space)
    with translate(h.name), h.conn.cursor() as cur:
        cur.execute(
            "SELECT role, privilege, partition, granted_by, granted_at FROM embeddinghub.grants"
            " WHERE space_id = %s"
            " ORDER BY role, partition NULLS FIRST, embeddinghub.privilege_level(privilege)",
            (h.id,),
        )
        return [Grant(*row) for row in cur.fetchall()]


# -- hooks: every new space table is born with row-level security ---------------------------------
def secure_space(cur: psycopg.Cursor[Any], tables: SpaceTables, name: str) -> None:
    cur.execute("SELECT embeddinghub.secure_space(%s)", (tables.space_id,))


def secure_partition(cur: psycopg.Cursor[Any], tables: SpaceTables, partition_id: int, name: str) -> None:
    for table in (tables.partition(partition_id), tables.history_partition(partition_id)):
        cur.execute("SELECT embeddinghub.secure_space_table(%s::regclass)", (table.as_string(cur),))
