"""CLI commands: `space create|list|show|drop|freeze`."""

from __future__ import annotations

import time

import click

from ..hub import DTYPES, METRICS
from .base import emit, handle_errors, hub_from, main, output_options

__all__ = ["space"]


@main.group()
def space() -> None:
    """Create, list, inspect, drop and freeze spaces.

    Example: embeddinghub space list
    """


@space.command("create")
@click.argument("name")
@click.option("--dims", type=int, required=True, help="Number of dimensions of every vector.")
@click.option("--metric", type=click.Choice(METRICS), default="l2", show_default=True,
              help="Distance used for nearest neighbours.")
@click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True,
              help="Storage type (float16 halves the size; pgvector halfvec).")
@click.option("--description", default=None, help="Free text shown by `space show`.")
@click.option("--auto-partition", is_flag=True,
              help="Create partitions on first write instead of refusing unknown ones.")
@click.pass_context
@handle_errors
def create(
    ctx: click.Context,
    name: str,
    dims: int,
    metric: str,
    dtype: str,
    description: str | None,
    auto_partition: bool,
) -> None:
    """Create the space NAME.

    Example: embeddinghub space create items --dims 384 --metric cosine
    """
    sp = hub_from(ctx).create_space(
        name, dims, metric, dtype, description=description, auto_partition=auto_partition
    )
    click.echo(f"created space {sp.name!r} ({sp.dims} dims, {sp.metric}, {sp.dtype})")


@space.command("list")
@output_options
@click.pass_context
@handle_errors
def list_(ctx: click.Context, fmt: str | None) -> None:
    """List the spaces.

    Example: embeddinghub space list --json
    """
    emit(
        hub_from(ctx).list_spaces(),
        fmt,
        ["name", "dims", "metric", "dtype", "frozen", "head_version", "description"],
    )


@space.command()
@click.argument("name")
@output_options
@click.pass_context
@handle_errors
def show(ctx: click.Context, name: str, fmt: str | None) -> None:
    """Settings and statistics of the space NAME: rows, partitions, index parameters.

    Example: embeddinghub space show items
    """
    emit(hub_from(ctx).get_space(name).info(), fmt)


@space.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@handle_errors
def drop(ctx: click.Context, name: str, yes: bool) -> None:
    """Drop the space NAME with its rows, history, partitions and grants.

    Asks for confirmation unless --yes is given.

    Example: embeddinghub space drop items --yes
    """
    hub = hub_from(ctx)
    sp = hub.get_space(name)  # raises SpaceNotFound before asking
    if not yes:
        click.confirm(f"Drop space {name!r} and its {len(sp)} rows?", abort=True, err=True)
    hub.delete_space(name)
    click.echo(f"dropped space {name!r}")


@space.command()
@click.argument("name")
@click.pass_context
@handle_errors
def freeze(ctx: click.Context, name: str) -> None:
    """Make the space NAME read-only; the database refuses every later write, raw SQL too.

    Example: embeddinghub space freeze items
    """
    hub_from(ctx).freeze_space(name)
    click.echo(f"froze space {name!r}")


@space.command()
@click.argument("name")
@click.option("--m", "m", type=int, default=None,
              help="HNSW links per node [default: the space's current m].")
@click.option("--ef-construction", type=int, default=None,
              help="HNSW build-time candidate list [default: the space's current value].")
@click.pass_context
@handle_errors
def reindex(ctx: click.Context, name: str, m: int | None, ef_construction: int | None) -> None:
    """Build the HNSW index of the space NAME again (every partition's).

    Use it when `space show` says the index is missing or invalid (a load that was
    killed before it rebuilt the index), or to change m and ef_construction.

    Example: embeddinghub space reindex items --m 32 --ef-construction 128
    """
    sp = hub_from(ctx).get_space(name)
    click.echo(f"building the HNSW index of space {name!r} ({len(sp)} rows)...", err=True)
    started = time.perf_counter()
    sp.create_index(m if m is not None else sp.m,
                    ef_construction if ef_construction is not None else sp.ef_construction)
    click.echo(f"built the index of space {name!r} in {time.perf_counter() - started:.1f} s"
               f" (m={sp.m}, ef_construction={sp.ef_construction})")


@space.command()
@click.argument("name")
@click.pass_context
@handle_errors
def unfreeze(ctx: click.Context, name: str) -> None:
    """Make the frozen space NAME writable again.

    Example: embeddinghub space unfreeze items
    """
    hub_from(ctx).unfreeze_space(name)
    click.echo(f"unfroze space {name!r}")


@space.command()
@click.argument("old")
@click.argument("new")
@click.pass_context
@handle_errors
def rename(ctx: click.Context, old: str, new: str) -> None:
    """Rename the space OLD to NEW; rows, versions, grants and its BI view go with it.

    Example: embeddinghub space rename items items-v1
    """
    hub_from(ctx).rename_space(old, new)
    click.echo(f"renamed space {old!r} to {new!r}")
