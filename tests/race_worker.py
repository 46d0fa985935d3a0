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


# -- soak: writers with a model, readers, snapshots and rollbacks ------------------------------
def _deadline(args: dict[str, Any]) -> Callable[[int], bool]:
    end = time.monotonic() + args["seconds"]
    return lambda i: i < args["max_calls"] and time.monotonic() < end


def soak_writer(hub: eh.Hub, args: dict[str, Any]) -> Outcomes:
    """Writes its own keys in partition w<id> (keeping a model of them) and upserts the
    shared keys in the default partition in a random order (logging what committed)."""
    space = hub.get_space(args["space"])
    wid, dims, rng = args["id"], space.dims, np.random.default_rng(args["id"])
    part, own = f"w{wid}", [f"w{wid}-{i}" for i in range(args["keys"])]
    shared = [f"s-{i}" for i in range(args["shared"])]
    model: dict[str, list[float]] = {}
    out, going = Outcomes(), _deadline(args)
    i = 0
    while going(i):
        i += 1
        kind = i % 4
        if kind == 0:  # overlapping upsert, every key, this writer's own random order
            order = [shared[j] for j in rng.permutation(len(shared))]
            vecs = np.tile(np.array([wid, i] + [0] * (dims - 2), dtype=np.float32), (len(order), 1))
            if out.run(lambda order=order, vecs=vecs: space.multiset(order, vecs)):
                out.log.append(i)
            continue
        keys = [own[j] for j in rng.choice(len(own), size=int(rng.integers(1, 30)), replace=False)]
        if kind == 3:
            if out.run(lambda keys=keys: space.multidelete(keys, partition=part)):
                for k in keys:
                    model.pop(k, None)
            continue
        vecs = rng.integers(-64, 64, size=(len(keys), dims)).astype(np.float32) / 4
        if out.run(lambda keys=keys, vecs=vecs: space.multiset(keys, vecs, partition=part)):
            model.update({k: v.tolist() for k, v in zip(keys, vecs, strict=True)})
    out.log = [out.log, model]  # type: ignore[list-item]
    return out


def soak_reader(hub: eh.Hub, args: dict[str, Any]) -> Outcomes:
    space = hub.get_space(args["space"])
    q = np.ones(space.dims, dtype=np.float32)
    out, going = Outcomes(), _deadline(args)
    i = 0
    while going(i):
        i += 1
        part = f"w{i % args['writers']}"
        if i % 3 == 0:
            out.run(lambda part=part: space.nearest_neighbors(5, vector=q, partition=part))
        elif i % 3 == 1:
            out.run(lambda: space.nearest_neighbors(10, vector=q))
        else:
            out.run(lambda part=part: sum(1 for _ in space.iterator(partition=part)))
    return out


def _fingerprint(rows: Any) -> list[Any]:
    return sorted([k, v.tolist()] for k, v in rows)


def soak_versions(hub: eh.Hub, args: dict[str, Any]) -> Outcomes:
    """Snapshots under load, each read back at once and again at the end (a version never
    changes); rollbacks to them, each undone in the same transaction (writers wait, then
    find the working state as they left it), checking the rolled-back state on the way."""
    space = hub.get_space(args["space"])
    out, going = Outcomes(), _deadline(args)
    seen: dict[int, list[Any]] = {}

    def snapshot() -> None:
        v = space.snapshot()
        seen[v.number] = _fingerprint(space.as_of(v.number).iterator())

    def roll_and_undo() -> None:
        number = max(seen)
        with hub.conn.transaction():
            r = space.rollback(number)
            if _fingerprint(space.iterator()) != seen[number]:
                raise AssertionError(f"rollback to {number} did not restore it")
            space.rollback(r.number - 1)

    i, hard_end = 0, time.monotonic() + args["seconds"] + 60
    # Two snapshots and two rollbacks at least, even on a slow machine (bounded all the same).
    while going(i) or (i < 4 and time.monotonic() < hard_end):
        i += 1
        out.run(snapshot if i % 2 or not seen else roll_and_undo)
        time.sleep(args.get("pause", 0.2))
    for number, rows in seen.items():
        if _fingerprint(space.as_of(number).iterator()) != rows:
            out.errors["version changed"] += 1
    out.log = [len(seen)]
    return out


MODES = {"writer": writer, "reader": reader, "partitions": partitions, "upserts": upserts,
         "soak_writer": soak_writer, "soak_reader": soak_reader, "soak_versions": soak_versions}


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
