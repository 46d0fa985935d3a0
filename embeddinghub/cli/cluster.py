"""CLI commands: `cluster status` (the members, roles and replication lag of a multi-host target)."""

from __future__ import annotations

import click

from .. import failover
from ..errors import InvalidArgument
from .base import State, emit, handle_errors, main, output_options

__all__ = ["cluster"]

COLUMNS = ["host", "role", "name", "sync_state", "timeline", "lsn", "lag_bytes", "replay_lag_s", "error"]


@main.group()
def cluster() -> None:
    """A replicated deployment (e.g. Patroni): which host is the primary, how far replicas lag.

    Example: embeddinghub --dsn "host=db1,db2,db3 dbname=embeddinghub user=app" cluster status
    """


@cluster.command()
@click.argument("dsns", nargs=-1)
@output_options
@click.pass_context
@handle_errors
def status(ctx: click.Context, dsns: tuple[str, ...], fmt: str | None) -> None:
    """Every host's role (primary / standby / unreachable), WAL position and replication lag.

    The hosts come from DSN arguments (merged into one multi-host target) or from --dsn /
    $EMBEDDINGHUB_DSN (a libpq multi-host conninfo). Each host is asked directly; lag is the
    bytes of WAL a standby has still to replay, and the primary's replay_lag in seconds.

    Example: embeddinghub cluster status "host=db1 dbname=emb" "host=db2 dbname=emb" --json
    """
    state = ctx.find_object(State)
    target: list[str] | str | None = list(dsns) or (state.dsn if state else None)
    if not target:
        raise InvalidArgument(
            "cluster status needs the cluster's hosts: give DSN arguments, --dsn 'host=a,b,c ...'"
            " or $EMBEDDINGHUB_DSN"
        )
    result = failover.cluster_status(target)
    if fmt == "json":
        emit(result.as_dict(), fmt)
    else:
        emit([m.__dict__ for m in result.members], fmt, COLUMNS)
    primaries = len(result.primaries)
    if primaries != 1:
        # Printed after the table so scripts still get it; a failover may be in progress.
        problem = "no host is a primary" if primaries == 0 else f"{primaries} hosts are primaries"
        click.echo(f"warning: {problem}; a failover may be in progress", err=True)
