"""Access-control overhead: nearest neighbours as a granted role under row-level security
against the same search by the owner, on the same space.

Data: pydocs, 30,165 x 384 cosine (float16 on disk -> float32) in the 'default' partition,
plus a 'tenant_b' partition holding 10% of the rows again, so there is something RLS must
hide. Contenders, taking turns on every one of the 1000 real queries (k = 10):

  * owner: the hub's role (the catalog owner; a superuser on the embedded server, so RLS
    does not apply to it at all) -- the baseline;
  * reader: a LOGIN role with a whole-space read grant, through RLS;
  * partition reader: a LOGIN role granted only the 'default' partition, through RLS, its
    search not naming a partition (so RLS alone keeps tenant_b's rows out).

Measured twice: through the Python API (`Space.nearest_neighbors`) and through the SQL
API (`SELECT * FROM embeddinghub.nearest_neighbors(...)` as a prepared statement). The
target: median latency under RLS <= 1.3x the owner's. Also checked: the readers' answers
are the owner's answers minus rows they may not see.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

import embeddinghub as eh
from embeddinghub.acl import role_dsn

from .common import Report, interleaved_latency, load_pydocs, summarise_ms

BENCH = "acl"
K = 10
TARGET = 1.3  # RLS / owner median latency, at most
OTHER = "tenant_b"


def run(hub: eh.Hub, report: Report, quick: bool) -> None:
    ds = load_pydocs(limit=6000, queries=200) if quick else load_pydocs()
    tag = uuid.uuid4().hex[:8]
    name = f"bench_acl_{tag}"
    password = secrets.token_hex(12)
    roles = {"reader": f"bench_acl_r_{tag}", "partition reader": f"bench_acl_p_{tag}"}
    space = hub.create_space(name, dims=ds.dims, metric=ds.metric)
    made: list[str] = []
    opened: list[Any] = []
    try:
        space.multiset(ds.keys, ds.corpus)
        space.create_partition(OTHER)
        tenth = len(ds) // 10
        space.multiset(ds.keys[:tenth], ds.corpus[:tenth], partition=OTHER)
        for role in roles.values():
            hub.create_role(role, login=True, password=password)
            made.append(role)
        space.grant(roles["reader"], "read")
        space.grant(roles["partition reader"], "read", partition="default")

        hubs = {"owner": hub}
        for label, role in roles.items():
            hubs[label] = eh.connect(role_dsn(hub.dsn, role, password))
            opened.append(hubs[label])
        spaces = {label: h.get_space(name) for label, h in hubs.items()}
        python_api = {
            label: _python_search(s) for label, s in spaces.items()
        }
        sql_api: dict[str, Callable[[np.ndarray], list[str]]] = {}
        for label, h in hubs.items():
            conn = psycopg.connect(h.dsn, autocommit=True)
            opened.append(conn)
            register_vector(conn)
            sql_api[label] = _sql_search(conn, name)

        for surface, contenders in (("Python API", python_api), ("SQL API", sql_api)):
            samples, results = interleaved_latency(contenders, ds.queries, warmup=20)
            _check_answers(results)
            _report(report, ds, surface, samples)
    finally:
        for thing in opened:
            thing.close()
        hub.delete_space(name)
        for role in made:
            hub.drop_role(role)


def _python_search(space: eh.Space) -> Callable[[np.ndarray], list[str]]:
    def search(q: np.ndarray) -> list[str]:
        return [f"{n.partition}/{n.key}" for n in space.nearest_neighbors(K, vector=q)]

    return search


def _sql_search(conn: psycopg.Connection[Any], name: str) -> Callable[[np.ndarray], list[str]]:
    query = "SELECT key, partition FROM embeddinghub.nearest_neighbors(%s, %s, %s)"

    def search(q: np.ndarray) -> list[str]:
        rows = conn.execute(query, (name, q, K), prepare=True).fetchall()
        return [f"{p}/{k}" for k, p in rows]

    return search


def _check_answers(results: dict[str, list[list[str]]]) -> None:
    """RLS must change what a role sees, never how well it is searched."""
    for owner, reader, scoped in zip(
        results["owner"], results["reader"], results["partition reader"], strict=True
    ):
        if reader != owner:
            raise AssertionError(f"a whole-space reader got {reader}, the owner {owner}")
        if any(hit.startswith(f"{OTHER}/") for hit in scoped):
            raise AssertionError(f"a partition reader saw {OTHER} rows: {scoped}")
        visible = [hit for hit in owner if not hit.startswith(f"{OTHER}/")]
        if scoped[: len(visible)] != visible:
            raise AssertionError(f"a partition reader got {scoped}, expected {visible} first")


def _report(report: Report, ds: Any, surface: str, samples: dict[str, list[float]]) -> None:
    owner = summarise_ms(samples["owner"])
    label = f"{ds.name} {len(ds):,}x{ds.dims} {ds.metric} (+10% in {OTHER})"
    for contender in ("owner", "reader", "partition reader"):
        stats = summarise_ms(samples[contender])
        ratio = stats["median_ms"] / owner["median_ms"]
        baseline = contender == "owner"
        report({
            "bench": BENCH,
            "dataset": label,
            "surface": surface,
            "measure": f"nearest_neighbors k={K} as {contender}",
            "median_ms": stats["median_ms"],
            "p95_ms": stats["p95_ms"],
            "ratio_vs_owner": ratio,
            "target": "" if baseline else f"<= {TARGET}",
            "ok": None if baseline else ratio <= TARGET,
            "_queries": len(samples[contender]),
        })
