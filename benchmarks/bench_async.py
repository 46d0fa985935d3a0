"""Async throughput: 32 concurrent async searches on a pool of 4 against the sync Hub in a loop.

pydocs (30,165 x 384, cosine; --quick: 5,000 rows), k=10 at the space's default ef_search.
Each round: the sync Hub answers N queries one after another on its connection; the async
hub answers the same N queries as tasks, at most 32 in flight, over 4 pooled connections.
Rounds alternate which goes first; the best round of each is kept. On 2 vCPUs the server's
CPUs, not the client, bound both.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import embeddinghub as eh
import embeddinghub.aio as eha

from .common import Report, load_pydocs

K = 10
IN_FLIGHT = 32
POOL = 4
ROUNDS = 3
NAME = "bench_async"


def run(hub: eh.Hub, report: Report, quick: bool) -> None:
    ds = load_pydocs(limit=5000 if quick else None, queries=200 if quick else None)
    if hub.has_space(NAME):
        hub.delete_space(NAME)
    space = hub.create_space(NAME, dims=ds.dims, metric=ds.metric)
    try:
        space.multiset(ds.keys, ds.corpus)
        sync_best, async_best = asyncio.run(_rounds(hub, space, ds))
        n = len(ds.queries)
        report({"dataset": f"{ds.name} {len(ds):,}x{ds.dims}", "contender": "sync Hub, one loop",
                "queries_per_s": round(n / sync_best), "ratio": 1.0})
        report({"dataset": f"{ds.name} {len(ds):,}x{ds.dims}",
                "contender": f"async, {IN_FLIGHT} in flight, pool={POOL}",
                "queries_per_s": round(n / async_best), "ratio": round(sync_best / async_best, 2)})
    finally:
        hub.delete_space(NAME)


async def _rounds(hub: eh.Hub, space: eh.Space, ds: Any) -> tuple[float, float]:
    async with await eha.connect(hub.dsn, pool=POOL) as ahub:
        aspace = await ahub.get_space(NAME)
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def one(q: Any) -> None:
            async with gate:
                await aspace.nearest_neighbors(K, vector=q)

        async def run_async() -> float:
            started = time.perf_counter()
            await asyncio.gather(*(one(q) for q in ds.queries))
            return time.perf_counter() - started

        def run_sync() -> float:
            started = time.perf_counter()
            for q in ds.queries:
                space.nearest_neighbors(K, vector=q)
            return time.perf_counter() - started

        await run_async()  # warm both: connections opened, statements prepared
        run_sync()
        sync_times, async_times = [], []
        for i in range(ROUNDS):
            if i % 2:
                sync_times.append(run_sync())
                async_times.append(await run_async())
            else:
                async_times.append(await run_async())
                sync_times.append(run_sync())
        return min(sync_times), min(async_times)
