"""CLI commands: `init` and `server start|stop|status|url` (the embedded PostgreSQL server)."""

from __future__ import annotations

from typing import Any

import click

from .. import migrate
from ..server import EmbeddedServer, redact_dsn
from .base import F, emit, handle_errors, hub_from, main, output_options

__all__ = ["init", "server"]


@main.command()
@output_options
@click.pass_context
@handle_errors
def init(ctx: click.Context, fmt: str | None) -> None:
    """Connect to the database and bring its schema up to date.

    With no --dsn (and no $EMBEDDINGHUB_DSN) this starts the embedded server first.
    Safe to run again: an up-to-date database is left as it is.

    Example: embeddinghub init
    """
    hub = hub_from(ctx)
    emit(
        {
            "dsn": redact_dsn(hub.dsn),
            "schema_revision": migrate.current_revision(hub.conn),
            "head_revision": migrate.head_revision(),
        },
        fmt,
    )


def home_option(fn: F) -> F:
    return click.option(
        "--home",
        type=click.Path(file_okay=False),
        default=None,
        help="Data directory of the embedded server (default: $EMBEDDINGHUB_HOME,"
        " else the platform's user data dir).",
    )(fn)


@main.group()
def server() -> None:
    """The embedded PostgreSQL server used when no DSN is given.

    It keeps running after the command that started it, so later commands attach
    at once; `server stop` stops it.

    Example: embeddinghub server status
    """


@server.command()
@home_option
@handle_errors
def start(home: str | None) -> None:
    """Start the embedded server (or attach to the running one) and print its URL.

    Example: embeddinghub server start --home /srv/embeddings
    """
    click.echo(EmbeddedServer(home).start())


@server.command()
@home_option
@handle_errors
def stop(home: str | None) -> None:
    """Stop the embedded server.

    Example: embeddinghub server stop
    """
    srv = EmbeddedServer(home)
    if srv.stop():
        click.echo(f"stopped the server in {srv.home}")
    else:
        click.echo(f"no server running in {srv.home}")


@server.command()
@home_option
@output_options
@handle_errors
def status(home: str | None, fmt: str | None) -> None:
    """Whether the embedded server runs, its home, process id and URL (DSN, redacted).

    The URL carries no password: it names the home's passfile (mode 0600).

    Example: embeddinghub server status --json
    """
    st = EmbeddedServer(home).status()
    url = redact_dsn(st.url) if st.url else None
    record: dict[str, Any] = {"home": st.home, "running": st.running, "pid": st.pid, "url": url}
    emit(record, fmt)


@server.command()
@home_option
@handle_errors
def url(home: str | None) -> None:
    """Print the URL (DSN) of the running embedded server, for psql or another client.

    Exits with status 1 if the server is not running.

    Example: psql "$(embeddinghub server url)"
    """
    srv = EmbeddedServer(home)
    found = srv.url()
    if found is None:
        raise click.ClickException(f"no server running in {srv.home}; run: embeddinghub server start")
    click.echo(found)
