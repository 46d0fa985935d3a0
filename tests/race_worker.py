"""A second (third...) process for the race and soak tests: `python race_worker.py MODE JSON`.

Each mode connects on its own, prints `ready` once connected, then works until its bound
(a count and a deadline) and prints one JSON line of outcomes: how many calls succeeded
and, per error type, how many failed and one example message. Every loop is bounded in
count and in time, so a stuck race fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

import embeddinghub as eh


class Outcomes:
    def __init__(self) -> None:
        self.ok = 0
        self.errors: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.log: list[Any] = []

    def run(self, call: Callable[[], Any]) -> bool:
        try:
            call()
        except eh.EmbeddingHubError as exc:
            name = type(exc).__name__
            self.errors[name] += 1
            self.examples.setdefault(name, str(exc))
            return False
        except Exception as exc:  # a raw exception is exactly what the tests look for
            name = f"raw:{type(exc).__module__}.{type(exc).__name__}"
            self.errors[name] += 1
            self.examples.setdefault(name, str(exc))
            return False
        self.ok += 1
        return True

    def report(self) -> None:
        print(json.dumps({"ok": self.ok, "errors": dict(self.errors),
                          "examples": self.examples, "log": self.log}), flush=True)


def until_failing(args: dict[str, Any], call: Callable[[int], Any]) -> Outcomes:
    """Call `call(i)` until `max_errors` errors, `max_calls` calls or `seconds` pass."""
    out = Outcomes()
    deadline = time.monotonic() + args.get("seconds", 20)
    failures = 0
    for i in range(args.get("max_calls", 100_000)):
        if time.monotonic() > deadline:
            break
        if not out.run(lambda i=i: call(i)):
            failures += 1
            if failures >= args.get("max_errors", 5):
                break
    return out


def writer(hub: eh.Hub, args: dict[str, Any]) -> Outcomes:
    space = hub.get_space(args["space"])
    rng = np.random.default_rng(args.get("seed", 0))
    dims, part = space.dims, args.get("partition")

    def write(i: int) -> None:
        keys = [f"w{args.get('seed', 0)}-{(i * 7 + j) % 200}" for j in range(20)]
        if i % 2:
            space.multiset(keys, rng.random((20, dims), dtype=np.float32), partition=part)
        else:
            space.set(keys[0], rng.random(dims, dtype=np.float32), partition=part)

    return until_failing(args, write)


def reader(hub: eh.Hub, args: dict[str, Any]) -> Outcomes:
    space = hub.get_space(args["space"])
    q = np.ones(space.dims, dtype=np.float32)

    def read(i: int) -> None:
        if i % 3 == 0:
            space.nearest_neighbors(5, vector=q)
        elif i % 3 == 1:
            len(space)
        else:
            list(space.iterator())

    return until_failing(args, read)


def partitions(hub: eh.Hub, args: dict[str, Any]) -> Outcomes:
    """Create partitions p0..pN in order; log which calls succeeded."""
    space = hub.get_space(args["space"])
    out = Outcomes()
    deadline = time.monotonic() + args.get("seconds", 20)
    for i in range(args["count"]):
        if time.monotonic() > deadline:
            break
        name = f"p{i}"
        out.log.append([name, out.run(lambda name=name: space.create_partition(name))])
    return out


def upserts(hub: eh.Hub, args: dict[str, Any]) -> Outcomes:
    """Upsert the same keys every round, ascending or descending, one batch per round."""
    space = hub.get_space(args["space"])
    keys = [f"k{i:05d}" for i in range(args["keys"])]
    if args["descending"]:
        keys.reverse()
    out = Outcomes()
    deadline = time.monotonic() + args.get("seconds", 30)
    for r in range(args["rounds"]):
        if time.monotonic() > deadline:
            break
        value = np.full((len(keys), space.dims), args["id"] * 1000 + r, dtype=np.float32)
        out.run(lambda value=value: space.multiset(keys, value))
    return out


MODES = {"writer": writer, "reader": reader, "partitions": partitions, "upserts": upserts}


def main() -> None:
    mode, args = sys.argv[1], json.loads(sys.argv[2])
    with eh.connect(args["dsn"]) as hub:
        print("ready", flush=True)
        if args.get("go"):  # wait until the test says go (a file appears): start together
            deadline = time.monotonic() + 30
            while not os.path.exists(args["go"]) and time.monotonic() < deadline:
                time.sleep(0.005)
        MODES[mode](hub, args).report()


if __name__ == "__main__":
    main()
