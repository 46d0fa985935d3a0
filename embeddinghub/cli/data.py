"""CLI commands on a space's rows: `load`, `get`, `nn`, `export`, and the `demo`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import click
import numpy as np

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

__all__ = ["demo_", "export", "get", "load", "nn", "parse_json"]


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--space", "-s", "space_name", required=True, help="The space to load into.")
@click.option("--create", is_flag=True,
              help="Create the space if it does not exist, with the file's dims.")
@click.option("--metric", type=click.Choice(METRICS), default=None,
              help="With --create: the space's metric [default: l2].")
@click.option("--dtype", type=click.Choice(DTYPES), default=None,
              help="With --create: the space's storage type [default: float32].")
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
    options = dict(batch_size=batch_size, partition=partition, keys_file=keys_file,
                   create_partitions=create_partitions, atomic=atomic)
    try:
        _load_with_progress(sp, file, silent, options)
    except BaseException:
        if created and len(sp) == 0:  # leave nothing behind but what the user asked for
            hub.delete_space(space_name)
        raise


def _create_for(
    hub: Hub, name: str, file: str, keys_file: str | None, metric: str | None, dtype: str | None
) -> None:
    """Create the space `load --create` loads into, with the dims of the file's first row."""
    first = next(ingest.iter_batches(file, 1, keys_file=keys_file), None)
    if first is None:
        raise errors.InvalidArgument(f"{file} has no rows, so --create cannot tell the dims")
    hub.create_space(name, first.dims, metric or "l2", dtype or "float32")


def _load_with_progress(sp: Space, file: str, silent: bool, options: dict[str, Any]) -> None:
    started = time.perf_counter()
    with progress(ingest.count_rows(file), f"loading {file}", silent) as update:
        done = ingest.load(sp, file, progress=update, **options)
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
    sp = space if at_version is None else space.as_of(parse_version(at_version))
    hits = sp.nearest_neighbors(
        num, key=key, vector=query, partition=partition, where=filt, ef_search=ef_search,
        key_partition=key_partition,
    )
    emit_neighbors(hits, fmt)


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

    Every row keeps its key, partition and metadata.

    Example: embeddinghub export items items.jsonl
    """
    ingest.check_export_path(file)
    sp = hub_from(ctx).get_space(space_name)
    parts = [partition] if partition else [p["name"] for p in sp.list_partitions()]

    def rows() -> Iterator[tuple[str, np.ndarray, Any, str]]:
        for part in parts:
            for key, vec, meta in sp.iterator(partition=part, with_metadata=True):
                yield key, vec, meta, part

    with progress(sp.count(partition), f"exporting {sp.name}", silent) as update:
        count = ingest.write(file, rows(), dtype=sp.dtype, progress=update)
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
