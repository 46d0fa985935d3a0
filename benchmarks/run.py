"""Run the benchmarks: `python -m benchmarks.run [--quick] [--only NAME] [--out FILE] [--dsn DSN]`.

Every `benchmarks/bench_<name>.py` with `run(hub, report, quick)` is discovered and run in
isolation: a fresh `Hub` each, and an exception in one is printed and recorded while the
others still run (the exit status is then 1). Each bench's rows are printed as one table
and all of them are written to `benchmarks/results/<timestamp>.json` (or `--out FILE`).

Where it connects: `--dsn` or `$EMBEDDINGHUB_DSN` if given; otherwise a dedicated embedded
server in a temporary `$EMBEDDINGHUB_HOME`, stopped and deleted at the end, so a benchmark
never touches a user's data.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import embeddinghub as eh
from embeddinghub.server import EmbeddedServer

from . import common

PACKAGE = "benchmarks"
PREFIX = "bench_"
FIRST = ("core",)  # printed first; the rest alphabetically


def discover() -> list[str]:
    """Names of the bench modules present (`bench_core.py` -> "core")."""
    here = Path(__file__).resolve().parent
    names = [m.name[len(PREFIX):] for m in pkgutil.iter_modules([str(here)])
             if m.name.startswith(PREFIX)]
    return sorted(names, key=lambda n: (n not in FIRST, FIRST.index(n) if n in FIRST else 0, n))


@contextmanager
def target_database(dsn: str | None) -> Iterator[tuple[str, str]]:
    """(dsn, description) of the database to benchmark; a private embedded server by default."""
    dsn = dsn or os.environ.get("EMBEDDINGHUB_DSN")
    if dsn:
        yield dsn, "server from --dsn / $EMBEDDINGHUB_DSN"
        return
    home = Path(tempfile.mkdtemp(prefix="eh-bench-"))
    server = EmbeddedServer(home)
    saved = {k: os.environ.get(k) for k in ("EMBEDDINGHUB_HOME", "EMBEDDINGHUB_DSN")}
    try:
        url = server.start()
        # A bench that calls eh.connect() itself lands on this server too, never the user's.
        os.environ["EMBEDDINGHUB_HOME"] = str(home)
        os.environ["EMBEDDINGHUB_DSN"] = url
        yield url, f"embedded server in a temporary home ({home})"
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        try:
            server.stop()
        finally:
            shutil.rmtree(home, ignore_errors=True)


def run_bench(name: str, dsn: str, quick: bool) -> dict[str, Any]:
    """Run one bench module in isolation; never raises (except on Ctrl-C)."""
    rows: list[dict[str, Any]] = []

    def report(row: dict[str, Any]) -> None:
        rows.append({"bench": name, **row})

    started = time.perf_counter()
    error = None
    try:
        module = importlib.import_module(f"{PACKAGE}.{PREFIX}{name}")
        with eh.connect(dsn) as hub:
            module.run(hub, report, quick)
    except Exception:
        error = traceback.format_exc()
    return {"rows": rows, "error": error, "seconds": time.perf_counter() - started}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmark embeddinghub against raw pgvector; prints tables, writes JSON.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="small sizes for development (minutes, not tens of minutes)")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only this bench (core, filtered, ...); repeatable or a,b")
    parser.add_argument("--out", metavar="FILE",
                        help="JSON output path (default: benchmarks/results/<timestamp>.json)")
    parser.add_argument("--dsn", help="benchmark this database instead of a private embedded server")
    parser.add_argument("--list", action="store_true", help="list the benches found and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    available = discover()
    if args.list:
        print("\n".join(available))
        return 0
    wanted = available
    if args.only:
        wanted = [n.removeprefix(PREFIX) for item in args.only for n in item.split(",") if n]
        unknown = [n for n in wanted if n not in available]
        if unknown:
            print(f"unknown bench {', '.join(unknown)}; available: {', '.join(available)}",
                  file=sys.stderr)
            return 2
    out_path = common.result_path(args.out)
    payload: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": args.quick,
        "benches": {},
    }
    failed: list[str] = []
    with target_database(args.dsn) as (dsn, where):
        payload["database"] = where
        with eh.connect(dsn) as hub:
            payload["environment"] = common.environment(hub.conn)
        env = payload["environment"]
        print(f"benchmarking on {where}: PostgreSQL {env.get('postgres')}, pgvector"
              f" {env.get('pgvector')}, {env.get('cpus')} CPUs{' (quick)' if args.quick else ''}",
              flush=True)
        for name in wanted:
            print(f"\n## {name}", flush=True)
            result = run_bench(name, dsn, args.quick)
            payload["benches"][name] = result
            if result["rows"]:
                print(common.format_table(result["rows"]))
            if result["error"]:
                failed.append(name)
                print(f"\nbench {name!r} FAILED:\n{result['error']}", file=sys.stderr)
            print(f"({name}: {result['seconds']:.1f} s)", flush=True)
    payload["failed"] = failed
    common.write_json(out_path, payload)
    print(f"\nresults written to {out_path}")
    missed = [r for res in payload["benches"].values() for r in res["rows"] if r.get("ok") is False]
    if missed:
        print("targets missed: " + "; ".join(f"{r['bench']}/{r.get('dataset', '')}"
                                             f"/{r.get('measure', '')}" for r in missed))
    if failed:
        print(f"failed benches: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
