"""CLI commands: `version snapshot|list|diff|rollback|prune`.

`parse_version` is shared with `get --version` / `nn --version`: an all-digit argument is a
version number, anything else a tag (tags are never all digits).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from .base import emit, handle_errors, hub_from, main, output_options, parse_version

__all__ = ["parse_version", "version"]

VERSION_COLUMNS = ["number", "tag", "note", "created_at", "row_count", "created_by"]


def _record(v: Any) -> dict[str, Any]:
    return dataclasses.asdict(v)


@main.group()
def version() -> None:
    """Snapshot, list, compare and roll back versions of a space.

    Example: embeddinghub version snapshot items --tag before-reembed
    """


@version.command("snapshot")
@click.argument("space_name", metavar="SPACE")
@click.option("--tag", default=None, help="A unique name for the version (not all digits).")
@click.option("--note", default=None, help="Free text stored with the version.")
@output_options
@click.pass_context
@handle_errors
def snapshot(
    ctx: click.Context, space_name: str, tag: str | None, note: str | None, fmt: str | None
) -> None:
    """Record the working state of SPACE as a new version (O(1): nothing is copied).

    Example: embeddinghub version snapshot items --tag v1 --note "first load"
    """
    v = hub_from(ctx).get_space(space_name).snapshot(tag=tag, note=note)
    if fmt is None:
        click.echo(f"space {space_name!r}: recorded version {v.number}"
                   + (f" (tag {v.tag!r})" if v.tag else ""))
        return
    emit(_record(v), fmt, VERSION_COLUMNS)


@version.command("list")
@click.argument("space_name", metavar="SPACE")
@output_options
@click.pass_context
@handle_errors
def list_(ctx: click.Context, space_name: str, fmt: str | None) -> None:
    """List the versions of SPACE, oldest first, with their row counts.

    Example: embeddinghub version list items --json
    """
    emit([_record(v) for v in hub_from(ctx).get_space(space_name).versions()], fmt,
         VERSION_COLUMNS)


@version.command("diff")
@click.argument("space_name", metavar="SPACE")
@click.argument("a")
@click.argument("b", required=False)
@output_options
@click.pass_context
@handle_errors
def diff(ctx: click.Context, space_name: str, a: str, b: str | None, fmt: str | None) -> None:
    """Keys added, removed and changed from version A to version B (default: the working
    state). A and B are version numbers or tags.

    Example: embeddinghub version diff items v1 v2
    """
    d = hub_from(ctx).get_space(space_name).diff(
        parse_version(a), None if b is None else parse_version(b)
    )
    rows = [
        {"change": change, "partition": part, "key": key}
        for change in ("added", "removed", "changed")
        for part, key in getattr(d, change)
    ]
    emit(rows, fmt, ["change", "partition", "key"])


@version.command("rollback")
@click.argument("space_name", metavar="SPACE")
@click.argument("target", metavar="VERSION")
@output_options
@click.pass_context
@handle_errors
def rollback(ctx: click.Context, space_name: str, target: str, fmt: str | None) -> None:
    """Make the working state of SPACE equal to VERSION (a number or a tag), in one
    transaction, recorded as a new version (so it can be undone in turn).

    Example: embeddinghub version rollback items before-reembed
    """
    v = hub_from(ctx).get_space(space_name).rollback(parse_version(target))
    if fmt is None:
        click.echo(f"space {space_name!r}: rolled back to version {target}, recorded as"
                   f" version {v.number}")
        return
    emit(_record(v), fmt, VERSION_COLUMNS)


@version.command("prune")
@click.argument("space_name", metavar="SPACE")
@click.option("--keep", type=click.IntRange(min=0), required=True,
              help="How many of the newest versions to keep.")
@click.pass_context
@handle_errors
def prune(ctx: click.Context, space_name: str, keep: int) -> None:
    """Delete all but the newest KEEP versions of SPACE and the history only they needed.

    Example: embeddinghub version prune items --keep 10
    """
    freed = hub_from(ctx).get_space(space_name).prune_versions(keep)
    click.echo(f"space {space_name!r}: kept the newest {keep} versions,"
               f" freed {freed} history rows")
