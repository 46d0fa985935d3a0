"""CLI commands: `partition create|list|drop`, `avg` and `recommend`."""

from __future__ import annotations

import click

from .. import errors
from .base import emit, emit_neighbors, handle_errors, hub_from, main, output_options, parse_json

__all__ = ["avg", "partition", "recommend"]


@main.group()
def partition() -> None:
    """Create, list and drop the partitions of a space (each has its own HNSW index).

    Example: embeddinghub partition list items
    """


@partition.command("create")
@click.argument("space_name", metavar="SPACE")
@click.argument("name")
@click.pass_context
@handle_errors
def create(ctx: click.Context, space_name: str, name: str) -> None:
    """Create the partition NAME in SPACE.

    Example: embeddinghub partition create items en
    """
    hub_from(ctx).get_space(space_name).create_partition(name)
    click.echo(f"created partition {name!r} in space {space_name!r}")


@partition.command("list")
@click.argument("space_name", metavar="SPACE")
@output_options
@click.pass_context
@handle_errors
def list_(ctx: click.Context, space_name: str, fmt: str | None) -> None:
    """List the partitions of SPACE with their row counts.

    Example: embeddinghub partition list items --json
    """
    emit(hub_from(ctx).get_space(space_name).list_partitions(), fmt, ["name", "rows", "created_at"])


@partition.command("drop")
@click.argument("space_name", metavar="SPACE")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@handle_errors
def drop(ctx: click.Context, space_name: str, name: str, yes: bool) -> None:
    """Drop the partition NAME of SPACE, with its rows and its index.

    Snapshots taken earlier still hold its rows. Asks for confirmation unless --yes.

    Example: embeddinghub partition drop items en --yes
    """
    sp = hub_from(ctx).get_space(space_name)
    known = {p["name"]: p["rows"] for p in sp.list_partitions()}
    if name not in known:
        raise errors.PartitionNotFound(space_name, name)
    if not yes:
        click.confirm(
            f"Drop partition {name!r} of space {space_name!r} and its {known[name]} rows?",
            abort=True,
            err=True,
        )
    sp.drop_partition(name)
    click.echo(f"dropped partition {name!r} of space {space_name!r}")


@main.command()
@click.argument("space_name", metavar="SPACE")
@click.argument("keys", nargs=-1, required=True)
@click.option("--partition", "-p", default=None, help="The keys' partition [default: default].")
@click.option("--weights", default=None,
              help="One weight per key, a JSON list, e.g. '[2, 1, 1]' [default: equal].")
@output_options
@click.pass_context
@handle_errors
def avg(
    ctx: click.Context,
    space_name: str,
    keys: tuple[str, ...],
    partition: str | None,
    weights: str | None,
    fmt: str | None,
) -> None:
    """The (weighted) mean of the vectors of KEYS in SPACE.

    In a cosine space the result is the unit-length mean direction; in l2 and ip
    spaces it is the plain mean.

    Example: embeddinghub avg items item-1 item-2 item-3 --weights '[2, 1, 1]' --json
    """
    w = None if weights is None else parse_json("--weights", weights, list)
    sp = hub_from(ctx).get_space(space_name)
    vector = sp.average(list(keys), weights=w, partition=partition)
    emit(
        {"space": sp.name, "partition": partition or "default", "keys": list(keys),
         "vector": vector},
        fmt,
    )


@main.command()
@click.argument("space_name", metavar="SPACE")
@click.option("--positive", "-P", "positive", multiple=True, required=True,
              help="A key to find more like (repeatable).")
@click.option("--negative", "-N", "negative", multiple=True,
              help="A key to steer away from (repeatable).")
@click.option("-k", "--num", default=10, show_default=True, type=click.IntRange(min=1),
              help="Number of recommendations.")
@click.option("--partition", "-p", default=None,
              help="Read the examples from, and search only, this partition.")
@click.option("--where", default=None,
              help='Metadata filter, a JSON object, e.g. \'{"lang": "en"}\'.')
@output_options
@click.pass_context
@handle_errors
def recommend(
    ctx: click.Context,
    space_name: str,
    positive: tuple[str, ...],
    negative: tuple[str, ...],
    num: int,
    partition: str | None,
    where: str | None,
    fmt: str | None,
) -> None:
    """Keys like the --positive examples and unlike the --negative ones.

    Searches around mean(positive) + 0.5 * (mean(positive) - mean(negative)); the
    examples themselves are never returned.

    Example: embeddinghub recommend items -P item-1 -P item-7 -N item-3 -k 5
    """
    filt = None if where is None else parse_json("--where", where, dict)
    sp = hub_from(ctx).get_space(space_name)
    hits = sp.recommend(num, list(positive), list(negative), partition=partition, where=filt)
    emit_neighbors(hits, fmt)
