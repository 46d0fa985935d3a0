"""CLI commands: `acl role create|drop`, `acl grant`, `acl revoke`, `acl list`."""

from __future__ import annotations

import dataclasses

import click

from .. import acl as acl_api
from .base import emit, handle_errors, hub_from, main, output_options

__all__ = ["acl"]

PROMPT = "\0prompt"  # `--password` given without a value: ask for it


@main.group()
def acl() -> None:
    """Access control: Postgres roles, and grants on spaces enforced by row-level security.

    Example: embeddinghub acl grant items alice read --partition en
    """


@acl.group()
def role() -> None:
    """Create and drop Postgres roles to grant spaces to.

    Example: embeddinghub acl role create alice --login --password
    """


@role.command("create")
@click.argument("name")
@click.option("--login", is_flag=True, help="The role can log in (a user, not a group).")
@click.option(
    "--password",
    is_flag=False,
    flag_value=PROMPT,
    default=None,
    help="Set a password (needs --login); given without a value, it is asked for.",
)
@click.option(
    "--member-of",
    "member_of",
    multiple=True,
    help="Make the role a member of this group role, e.g. reader (repeatable).",
)
@click.pass_context
@handle_errors
def role_create(
    ctx: click.Context,
    name: str,
    login: bool,
    password: str | None,
    member_of: tuple[str, ...],
) -> None:
    """Create the role NAME: no superuser, no CREATEROLE, no BYPASSRLS.

    The password is hashed before it leaves this machine.

    Example: embeddinghub acl role create metabase --login --password --member-of reader
    """
    if password == PROMPT:
        password = click.prompt(
            f"Password for {name}", hide_input=True, confirmation_prompt=True, err=True
        )
    acl_api.create_role(hub_from(ctx), name, login, password, member_of)
    kind = "login role" if login else "role"
    groups = f" (member of {', '.join(member_of)})" if member_of else ""
    click.echo(f"created {kind} {name!r}{groups}")


@role.command("drop")
@click.argument("name")
@click.pass_context
@handle_errors
def role_drop(ctx: click.Context, name: str) -> None:
    """Revoke every grant of the role NAME, then drop it.

    Example: embeddinghub acl role drop alice
    """
    hub_from(ctx).drop_role(name)
    click.echo(f"dropped role {name!r}")


@acl.command()
@click.argument("space_name", metavar="SPACE")
@click.argument("role_name", metavar="ROLE")
@click.argument("privilege", type=click.Choice(acl_api.PRIVILEGES))
@click.option("--partition", "-p", default=None, help="Only this partition of the space.")
@click.pass_context
@handle_errors
def grant(
    ctx: click.Context, space_name: str, role_name: str, privilege: str, partition: str | None
) -> None:
    """Give ROLE read, write or admin on SPACE (or one partition of it).

    read: see the rows; write: also insert, update and delete them; admin: also grant and
    revoke on the space. Granting again replaces the role's privilege on that scope.

    Example: embeddinghub acl grant items alice write --partition en
    """
    hub_from(ctx).get_space(space_name).grant(role_name, privilege, partition=partition)
    scope = f"partition {partition!r} of space" if partition else "space"
    click.echo(f"granted {privilege} on {scope} {space_name!r} to {role_name!r}")


@acl.command()
@click.argument("space_name", metavar="SPACE")
@click.argument("role_name", metavar="ROLE")
@click.argument("privilege", type=click.Choice(acl_api.PRIVILEGES), required=False)
@click.option("--partition", "-p", default=None, help="Only the grant on this partition.")
@click.pass_context
@handle_errors
def revoke(
    ctx: click.Context,
    space_name: str,
    role_name: str,
    privilege: str | None,
    partition: str | None,
) -> None:
    """Take grants on SPACE away from ROLE: all of them, or those matching PRIVILEGE and
    --partition. Takes effect for transactions that start afterwards.

    Example: embeddinghub acl revoke items alice
    """
    sp = hub_from(ctx).get_space(space_name)
    count = acl_api.revoke(sp, role_name, privilege, partition)
    click.echo(f"revoked {count} grant{'' if count == 1 else 's'} on space {space_name!r}"
               f" from {role_name!r}")


@acl.command("list")
@click.argument("space_name", metavar="SPACE")
@output_options
@click.pass_context
@handle_errors
def list_(ctx: click.Context, space_name: str, fmt: str | None) -> None:
    """List the grants on SPACE (all of them for its admins, else your own).

    Example: embeddinghub acl list items --json
    """
    rows = [dataclasses.asdict(g) for g in hub_from(ctx).get_space(space_name).grants()]
    if fmt != "json":  # JSON keeps null for a grant on the whole space
        for row in rows:
            row["partition"] = row["partition"] or "(all)"
    emit(rows, fmt, ["role", "privilege", "partition", "granted_by", "granted_at"])
