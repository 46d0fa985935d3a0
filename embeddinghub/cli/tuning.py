"""CLI command: `bench` (recall@k against exact search, latency, and tuning of ef_search)."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from .. import errors
from ..tuning import EF_LADDER, measure, tune
from .base import emit, handle_errors, hub_from, main, output_options, progress

__all__ = ["bench"]


@main.command()
@click.argument("space_name", metavar="SPACE")
@click.option("-k", "--num", "k", default=10, show_default=True, type=click.IntRange(1, 1000),
              help="Neighbours per query (recall@k).")
@click.option("--sample", default=100, show_default=True, type=click.IntRange(1, 10_000),
              help="How many queries to run.")
@click.option("--queries", "queries_file", type=click.Path(exists=True, dir_okay=False),
              default=None, help="A .npy matrix of your own query vectors (the faithful figure); "
              "default: the hub's recent queries if kept, else a sample of the stored vectors.")
@click.option("--ef", "ef_values", default=None,
              help="Comma-separated ef_search values to try [default: 10,20,...,1000].")
@click.option("--tune", "target", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Set the space's ef_search to the smallest value reaching this recall@k.")
@click.option("--silent", is_flag=True, help="No progress bar.")
@output_options
@click.pass_context
@handle_errors
def bench(
    ctx: click.Context,
    space_name: str,
    k: int,
    sample: int,
    queries_file: str | None,
    ef_values: str | None,
    target: float | None,
    silent: bool,
    fmt: str | None,
) -> None:
    """Measure a space's recall@k against exact search, and its latency, per ef_search.

    Ground truth is an exact scan in the database. With --tune, the smallest ef_search
    that reaches the target becomes the space's default. (The project's benchmarks against
    raw pgvector live in benchmarks/ of the source tree: `make bench`.)

    Example: embeddinghub bench items --queries queries.npy --tune 0.95
    """
    space = hub_from(ctx).get_space(space_name)
    queries = None if queries_file is None else _load_queries(queries_file)
    if target is not None:
        if ef_values is not None:
            raise errors.InvalidArgument("--tune walks its own ef_search ladder; drop --ef")
        with progress(len(EF_LADDER), "tuning", silent) as step:
            result = tune(space, target, k=k, sample=sample, queries=queries, progress=step)
        points = result.points
    else:
        ladder = EF_LADDER if ef_values is None else _parse_ef(ef_values)
        with progress(len(ladder), "measuring", silent) as step:
            points = measure(space, ladder, k=k, sample=sample, queries=queries, progress=step)
    rows = [
        {"ef_search": p.ef_search, f"recall@{k}": round(p.recall, 4),
         "latency_ms": round(p.latency_ms, 3)}
        for p in points
    ]
    if fmt == "json":
        payload: dict[str, object] = {"space": space.name, "k": k, "points": rows}
        if target is not None:
            payload.update(ef_search=result.ef_search, recall=round(result.recall, 4),
                           reached=result.reached, measured_with=result.method)
        emit(payload, fmt)
        return
    emit(rows, fmt)
    if target is not None:
        verdict = "reaches" if result.reached else "does NOT reach (best tried; rebuild the index " \
            "with larger m/ef_construction to go further)"
        click.echo(f"ef_search = {result.ef_search} {verdict} recall@{k} {target}"
                   f" (measured with {result.method}); set as the default of space {space.name!r}")


def _parse_ef(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise errors.InvalidArgument(f"--ef takes comma-separated integers, not {text!r}") from None
    if not values:
        raise errors.InvalidArgument("--ef needs at least one value")
    return values


def _load_queries(path: str) -> np.ndarray:
    if Path(path).suffix != ".npy":
        raise errors.InvalidArgument(f"--queries takes a .npy matrix, not {path!r}")
    queries: np.ndarray = np.load(path, allow_pickle=False).astype(np.float32)
    return queries
