"""The root command, the shared `--dsn`, output in JSON or table form, and error handling."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from functools import wraps
from typing import Any, TypeVar

import click
import numpy as np
import psycopg

import embeddinghub as eh

F = TypeVar("F", bound=Callable[..., Any])


class State:
    def __init__(self, dsn: str | None) -> None:
        self.dsn = dsn
        self._hub: eh.Hub | None = None

    def hub(self) -> eh.Hub:
        if self._hub is None:
            self._hub = eh.connect(self.dsn or None)
        return self._hub

    def close(self) -> None:
        if self._hub is not None:
            self._hub.close()
            self._hub = None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--dsn",
    envvar="EMBEDDINGHUB_DSN",
    default=None,
    help="PostgreSQL DSN (default: $EMBEDDINGHUB_DSN, else the embedded server).",
)
@click.version_option(eh.__version__, prog_name="embeddinghub")
@click.pass_context
def main(ctx: click.Context, dsn: str | None) -> None:
    """embeddinghub: a database for machine-learning embeddings on PostgreSQL + pgvector.

    Example: embeddinghub space create items --dims 384 --metric cosine
    """
    ctx.obj = State(dsn)
    ctx.call_on_close(ctx.obj.close)


def parse_json(option: str, text: str, kind: type) -> Any:
    """The JSON value of a command-line option, or one clear error naming the option."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise eh.InvalidArgument(f"{option} is not valid JSON ({exc}): {text!r:.80}") from None
    if not isinstance(value, kind):
        want = "a JSON list of numbers" if kind is list else "a JSON object"
        raise eh.InvalidArgument(f"{option} must be {want}, not {text!r:.80}")
    return value


def parse_version(text: str) -> int | str:
    """A CLI version argument: `3` is version 3, anything else a tag."""
    return int(text) if text.isdigit() else text


def hub_from(ctx: click.Context) -> eh.Hub:
    state = ctx.find_object(State)
    assert state is not None
    return state.hub()


def handle_errors(fn: F) -> F:
    """Errors become one clear line on stderr and a non-zero exit, never a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except eh.EmbeddingHubError as exc:
            raise click.ClickException(str(exc)) from None
        except BrokenPipeError:  # the reader went away (`| head`): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(1) from None
        except psycopg.Error as exc:  # a database error no module translated
            raise click.ClickException(f"database error: {exc}".splitlines()[0]) from None
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None

    return wrapper  # type: ignore[return-value]


def output_options(fn: F) -> F:
    """`--json` / `--table` on every read command (a table is the default)."""
    fn = click.option("--table", "fmt", flag_value="table", help="Output a table.")(fn)
    fn = click.option("--json", "fmt", flag_value="json", help="Output JSON.")(fn)
    return fn


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [float(x) for x in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def emit(data: Any, fmt: str | None, columns: Sequence[str] | None = None) -> None:
    """Print rows (list of dicts) or one record (dict) as JSON or as a table.

    One record prints as a two-column table, one field per line.
    """
    if fmt == "json":
        click.echo(json.dumps(_jsonable(data), indent=2, ensure_ascii=False))
        return
    if isinstance(data, dict):
        fields = list(columns or data.keys())
        data = [{"field": f, "value": data.get(f)} for f in fields]
        columns = ["field", "value"]
    rows = list(data)
    if not rows:
        click.echo("(none)")
        return
    cols = list(columns or rows[0].keys())
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    click.echo("  ".join("-" * w for w in widths))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def emit_neighbors(hits: Sequence[eh.Neighbor], fmt: str | None) -> None:
    """Search results, ranked; the metadata column only when some hit has metadata."""
    rows = [
        {"rank": i, "key": h.key, "partition": h.partition, "distance": h.distance,
         "metadata": h.metadata}
        for i, h in enumerate(hits, start=1)
    ]
    columns = ["rank", "key", "partition", "distance"]
    if any(h.metadata is not None for h in hits):
        columns.append("metadata")
    emit(rows, fmt, columns)


def _cell(value: Any) -> str:
    value = _jsonable(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value)  # names (partitions, roles) in full
    if isinstance(value, list) and len(value) > 8:
        head = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value[:6])
        return f"[{head}, ... ({len(value)})]"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


@contextmanager
def progress(total: int, label: str, silent: bool) -> Iterator[Callable[[int], None]]:
    """A click progress bar fed with absolute counts; `--silent` turns it off.

    Shown only when stderr is a terminal, so logs and pipes stay clean.
    """
    if silent or not sys.stderr.isatty():
        yield lambda done: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        shown = 0

        def update(done: int) -> None:
            nonlocal shown
            bar.update(max(0, done - shown))
            shown = max(shown, done)

        yield update
