"""CLI commands on a space's rows: `load`, `get`, `nn`, `export`, and the `demo`."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from .. import demo, errors, ingest
from ..catalog import DTYPES, METRICS
from ..hub import Hub
from ..space import Space
from .base import (
    emit,
    emit_neighbors,
    handle_errors,
    hub_from,
    main,
    output_options,
    parse_json,
    parse_version,
    progress,
)

__all__ = ["count", "delete", "demo_", "export", "get", "load", "metadata_", "nn", "parse_json"]


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--space", "-s", "space_name", required=True, help="The space to load into.")
@click.option("--create", is_flag=True,
              help="Create the space if it does not exist, with the file's dims.")
@click.option("--metric", type=click.Choice(METRICS), default=None,
              help="With --create: the space's metric [default: the export's, else l2].")
@click.option("--dtype", type=click.Choice(DTYPES), default=None,
              help="With --create: the space's storage type [default: the export's, else"
              " float32].")
@click.option("--partition", "-p", default=None,
              help="Load every row into this partition (overrides the file's partitions).")
@click.option("--create-partitions", is_flag=True,
              help="Create the partitions the file names that do not exist yet.")
@click.option("--keys", "keys_file", type=click.Path(dir_okay=False), default=None,
              help="For .npy (or an .npz without keys): a text file of keys, one per line"
              " [default: the row numbers 0..n-1].")
@click.option("--batch-size", type=click.IntRange(min=1), default=ingest.DEFAULT_BATCH,
              show_default=True, help="Rows per batch; each batch is its own transaction.")
@click.option("--atomic", is_flag=True,
              help="Load the whole file in one transaction: every row or none.")
@click.option("--silent", is_flag=True, help="No progress bar.")
@click.pass_context
@handle_errors
def load(
    ctx: click.Context, file: str, space_name: str, create: bool, metric: str | None,
    dtype: str | None, partition: str | None, create_partitions: bool, keys_file: str | None,
    batch_size: int, atomic: bool, silent: bool,
) -> None:
    """Load a file of embeddings into a space.

    FILE is .npy, .npz, .parquet, .csv or .jsonl (see below); a progress bar shows
    how far it is, --silent turns it off.

    Rows are upserted: a key already in the partition is replaced. Every batch is
    loaded in its own transaction, so if the load fails the batches before it stay
    loaded (the error says how many rows); --atomic makes the file all or nothing.
    A key repeated in the file: the last row wins. A space made by --create is
    dropped again if the load fails before any row is in.

    \b
    File formats (key field `key` or `id`, vector field `embedding` or `vector`):
      .npy      a 2-D array; keys from --keys, else 0..n-1
      .npz      arrays embeddings, keys, optional partitions and metadata (JSON text)
      .parquet  columns key, embedding (list of floats), optional partition, metadata
      .csv      a key column and an `embedding` column holding a JSON list, or one
                numeric column per dimension; optional partition, metadata columns
      .jsonl    one object per line: key, embedding, optional partition, metadata

    Example: embeddinghub load vecs.parquet -s items --create --metric cosine
    """
    hub = hub_from(ctx)
    if (metric or dtype) and not create:
        raise errors.InvalidArgument("--metric and --dtype apply only with --create")
    created = create and not hub.has_space(space_name)
    if created:
        _create_for(hub, space_name, file, keys_file, metric, dtype)
    sp = hub.get_space(space_name)
    if create and not created:
        _check_settings(sp, metric, dtype)
    options = dict(batch_size=batch_size, partition=partition, keys_file=keys_file,
                   create_partitions=create_partitions, atomic=atomic)
    try:
        _load_with_progress(sp, file, silent, options)
    except BaseException:
        if created and len(sp) == 0:  # leave nothing behind but what the user asked for
            hub.delete_space(space_name)
        raise


def _check_settings(sp: Space, metric: str | None, dtype: str | None) -> None:
    """`load --create` into a space that exists: its settings must be the ones asked for."""
    for option, asked, have in (("--metric", metric, sp.metric), ("--dtype", dtype, sp.dtype)):
        if asked is not None and asked != have:
            raise errors.InvalidArgument(
                f"space {sp.name!r} already exists with {option.lstrip('-')} {have}, not {asked}:"
                f" drop {option} to load into it, or load into a new space"
            )


def _create_for(
    hub: Hub, name: str, file: str, keys_file: str | None, metric: str | None, dtype: str | None
) -> None:
    """Create the space `load --create` loads into: the settings an export recorded in the
    file (options given win), else the dims of the file's first row."""
    settings = ingest.file_settings(file)
    dims = settings.get("dims")
    if dims is None:
        first = next(ingest.iter_batches(file, 1, keys_file=keys_file), None)
        if first is None:
            raise errors.InvalidArgument(f"{file} has no rows, so --create cannot tell the dims")
        dims = first.dims
    hub.create_space(name, dims, metric or settings.get("metric", "l2"),
                     dtype or settings.get("dtype", "float32"))


def _load_with_progress(sp: Space, file: str, silent: bool, options: dict[str, Any]) -> None:
    started = time.perf_counter()

    def phase(what: str) -> None:  # the bar is full: say what the wait is for (as the bar,
        if not silent and sys.stderr.isatty():  # only on a terminal)
            click.echo(f"\n{what} of space {sp.name!r}...", err=True)

    with progress(ingest.count_rows(file), f"loading {file}", silent) as update:
        done = ingest.load(sp, file, progress=update, phase=phase, **options)
    seconds = time.perf_counter() - started
    click.echo(
        f"loaded {done} rows into space {sp.name!r} in {seconds:.1f} s"
        f" ({done / max(seconds, 1e-9):,.0f} rows/s)"
    )


@main.command()
@click.argument("space_name", metavar="SPACE")
@click.argument("key")
@click.option("--partition", "-p", default=None, help="The key's partition [default: default].")
@click.option("--version", "at_version", default=None, metavar="VERSION",
              help="Read KEY as it was at this version (a number or a tag).")
@output_options
@click.pass_context
@handle_errors
def get(ctx: click.Context, space_name: str, key: str, partition: str | None,
        at_version: str | None, fmt: str | None) -> None:
    """The vector and metadata of KEY in SPACE.

    Example: embeddinghub get items item-42 --json
    """
    space = hub_from(ctx).get_space(space_name)
    sp = space if at_version is None else space.as_of(parse_version(at_version))
    emit(
        {
            "key": key,
            "partition": partition or "default",
            "vector": sp.get(key, partition=partition),
            "metadata": sp.get_metadata(key, partition=partition),
        },
        fmt,
    )


@main.command()
@click.argument("space_name", metavar="SPACE")
@click.option("--key", "-K", default=None, help="Search around this key's vector (left out).")
@click.option("--vector", default=None, help="Search around this vector, a JSON list.")
@click.option("-k", "--num", default=10, show_default=True, type=click.IntRange(min=1),
              help="Number of neighbours.")
@click.option("--partition", "-p", default=None,
              help="Search only this partition (and look --key up in it).")
@click.option("--key-partition", default=None,
              help="The partition holding --key [default: --partition, else default].")
@click.option("--where", default=None,
              help='Metadata filter, a JSON object, e.g. \'{"lang": "en", "year": {"$gte": 2020}}\'.')
@click.option("--ef-search", type=int, default=None,
              help="HNSW candidate list size for this search (higher: better recall, slower).")
@click.option("--version", "at_version", default=None, metavar="VERSION",
              help="Search the space as it was at this version (a number or a tag).")
@click.option("--offset", type=click.IntRange(min=0), default=0,
              help="Skip this many of the closest (the next page: --offset K with -k K).")
@click.option("--include-vectors", is_flag=True, help="Add each neighbour's vector.")
@output_options
@click.pass_context
@handle_errors
def nn(
    ctx: click.Context,
    space_name: str,
    key: str | None,
    vector: str | None,
    num: int,
    partition: str | None,
    key_partition: str | None,
    where: str | None,
    ef_search: int | None,
    at_version: str | None,
    offset: int,
    include_vectors: bool,
    fmt: str | None,
) -> None:
    """Nearest neighbours of a key or a vector.

    Searches SPACE around --key's vector or around --vector; closest first.

    The key itself is left out. --partition limits the search to one partition (its
    own HNSW index); name the partition that holds the key with --key-partition.

    Example: embeddinghub nn items --key item-42 -k 5 --where '{"lang": "en"}'
    """
    if (key is None) == (vector is None):
        raise errors.InvalidArgument("pass exactly one of --key or --vector")
    query = None if vector is None else parse_json("--vector", vector, list)
    filt = None if where is None else parse_json("--where", where, dict)
    if key_partition is not None and key is None:
        raise errors.InvalidArgument("--key-partition goes with --key")
    space = hub_from(ctx).get_space(space_name)
    if at_version is None:
        hits = space.nearest_neighbors(
            num, key=key, vector=query, partition=partition, where=filt, ef_search=ef_search,
            key_partition=key_partition, offset=offset, include_vectors=include_vectors,
        )
    else:
        if offset or include_vectors:
            raise errors.InvalidArgument("--offset and --include-vectors apply to the working state;"
                                         " drop --version")
        hits = space.as_of(parse_version(at_version)).nearest_neighbors(
            num, key=key, vector=query, partition=partition, where=filt, ef_search=ef_search,
            key_partition=key_partition,
        )
    emit_neighbors(hits, fmt, first_rank=offset + 1)


@main.command()
@click.argument("space_name", metavar="SPACE")
@click.option("--partition", "-p", default=None, help="Count only this partition.")
@click.option("--where", default=None, help="Count only rows whose metadata match this filter (JSON).")
@output_options
@click.pass_context
@handle_errors
def count(ctx: click.Context, space_name: str, partition: str | None, where: str | None,
          fmt: str | None) -> None:
    """The number of rows in SPACE (in one partition, matching a metadata filter).

    Example: embeddinghub count items --where '{"lang": "en"}'
    """
    filt = None if where is None else parse_json("--where", where, dict)
    n = hub_from(ctx).get_space(space_name).count(partition, where=filt)
    emit({"space": space_name, "partition": partition, "where": filt, "rows": n}, fmt)


@main.command()
@click.argument("space_name", metavar="SPACE")
@click.argument("keys", nargs=-1)
@click.option("--where", default=None, help="Delete the rows whose metadata match this filter (JSON).")
@click.option("--partition", "-p", default=None, help="The partition [default: default, or all for --where].")
@click.option("--strict", is_flag=True, help="With KEYS: every key or none (a missing key is an error).")
@click.option("--yes", "-y", is_flag=True, help="With --where: do not ask for confirmation.")
@click.pass_context
@handle_errors
def delete(ctx: click.Context, space_name: str, keys: tuple[str, ...], where: str | None,
           partition: str | None, strict: bool, yes: bool) -> None:
    """Delete KEYS from SPACE, or the rows matching --where; prints how many went.

    Keys that are not there are skipped (--strict: then nothing is deleted).

    Example: embeddinghub delete items --where '{"source": "crawl-7"}' --yes
    """
    if bool(keys) == (where is not None):
        raise errors.InvalidArgument("pass KEYS or --where (one of them)")
    sp = hub_from(ctx).get_space(space_name)
    if where is None:
        n = sp.multidelete(list(keys), partition=partition, strict=strict)
    else:
        filt = parse_json("--where", where, dict)
        if not yes:
            matched = sp.count(partition, where=filt)
            click.confirm(f"Delete {matched} rows of space {space_name!r}?", abort=True, err=True)
        n = sp.delete_where(filt, partition=partition)
    click.echo(f"deleted {n} row{'' if n == 1 else 's'} of space {space_name!r}")


@main.command("metadata")
@click.argument("space_name", metavar="SPACE")
@click.argument("key")
@click.argument("metadata", metavar="JSON")
@click.option("--partition", "-p", default=None, help="The key's partition [default: default].")
@click.option("--merge", is_flag=True, help="Add these fields to the stored metadata.")
@click.pass_context
@handle_errors
def metadata_(ctx: click.Context, space_name: str, key: str, metadata: str, partition: str | None,
              merge: bool) -> None:
    """Set the metadata of KEY to JSON (an object), leaving its vector as it is.

    Example: embeddinghub metadata items item-42 '{"lang": "en"}' --merge
    """
    value = parse_json("JSON", metadata, dict)
    hub_from(ctx).get_space(space_name).update_metadata(key, value, partition, merge=merge)
    click.echo(f"{'merged' if merge else 'set'} the metadata of {key!r} in space {space_name!r}")


@main.command()
@click.argument("space_name", metavar="SPACE")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--partition", "-p", default=None, help="Export only this partition.")
@click.option("--silent", is_flag=True, help="No progress bar.")
@click.pass_context
@handle_errors
def export(ctx: click.Context, space_name: str, file: str, partition: str | None, silent: bool) -> None:
    """Write the rows of SPACE to FILE (.npz or .jsonl).

    `embeddinghub load` reads the file back.

    Every row keeps its key, partition and metadata, and the file records the space's
    dims, metric and dtype: `load --create` of it makes the same kind of space.

    Example: embeddinghub export items items.jsonl
    """
    ingest.check_export_path(file)
    sp = hub_from(ctx).get_space(space_name)
    if partition is not None and partition not in {p["name"] for p in sp.list_partitions()}:
        raise errors.PartitionNotFound(sp.name, partition)
    rows = sp.iterator(partition=partition, with_metadata=True, with_partition=True)
    settings = {"dims": sp.dims, "metric": sp.metric, "dtype": sp.dtype}
    with progress(sp.count(partition), f"exporting {sp.name}", silent) as update:
        count = ingest.write(file, rows, dtype=sp.dtype, progress=update, settings=settings)
    click.echo(f"exported {count} rows of space {sp.name!r} to {file}")


@main.command("demo")
@click.pass_context
@handle_errors
def demo_(ctx: click.Context) -> None:
    """Load and search real embeddings of the Python docs.

    About 3,000 paragraphs of the Python documentation, embedded with a sentence model.

    Creates (or recreates) the space `pydocs-demo`, one partition per documentation
    section, builds the index and prints a few nearest-neighbour searches.
    Needs no setup: without a DSN it runs on the embedded server.

    Example: embeddinghub demo
    """
    demo.run(hub_from(ctx), click.echo, lambda found: emit(found, "table"))
