"""The async API: the same scenario through the sync and async hubs gives the same results and
the same errors; many tasks share one pool; a cancelled multiset writes nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import embeddinghub as eh
import embeddinghub.aio as eha
from embeddinghub.rows import BULK_REBUILD_ROWS

DIMS = 6


Step = tuple[str, str, tuple[Any, ...], dict[str, Any], Callable[[Any], Any]]


def same(value: Any) -> Any:
    return value


def scenario_steps() -> list[Step]:
    """(label, method, args, kwargs, post): one call on a space, sync or async, and what of
    its result to compare."""
    rng = np.random.default_rng(5)
    matrix = rng.normal(size=(40, DIMS)).astype(np.float32)
    keys = [f"k{i}" for i in range(40)]
    meta = [{"group": i % 3} for i in range(40)]
    q = matrix[3] + 0.01
    number = lambda v: v.number  # noqa: E731
    return [
        ("multiset", "multiset", (keys, matrix), {"metadata": meta}, same),
        ("set", "set", ("extra", matrix[0], {"group": 9}), {}, same),
        ("get", "get", ("k5",), {}, same),
        ("multiget", "multiget", (["k1", "k2"],), {}, same),
        ("metadata", "get_metadata", ("extra",), {}, same),
        ("count", "count", (), {}, same),
        ("nn", "nearest_neighbors", (5,), {"vector": q}, same),
        ("nn by key", "nearest_neighbors", (3,), {"key": "k7"}, same),
        ("batch nn", "multi_nearest_neighbors", (4,), {"vectors": matrix[:5]}, same),
        ("filter", "nearest_neighbors", (5,), {"vector": q, "where": {"group": 1}}, same),
        ("partition", "create_partition", ("p1",), {}, same),
        ("partition set", "multiset", ({"pk": matrix[9]},), {"partition": "p1"}, same),
        ("partitions", "list_partitions", (), {}, lambda ps: [(p["name"], p["rows"]) for p in ps]),
        ("in partition", "nearest_neighbors", (1,), {"vector": matrix[9], "partition": "p1"}, same),
        ("snapshot", "snapshot", (), {"tag": "v1"}, number),
        ("delete", "delete", ("k1",), {}, same),
        ("diff", "diff", ("v1",), {}, same),
        ("versions", "versions", (), {}, lambda vs: [v.tag for v in vs]),
        ("average", "average", (["k2", "k3"],), {}, same),
        ("recommend", "recommend", (3,), {"positive": ["k4"], "negative": ["k5"]}, same),
        ("grants", "grants", (), {}, same),
        ("missing key", "get", ("nope",), {}, same),
        ("bad dims", "set", ("x", [1, 2]), {}, same),
        ("bad partition", "nearest_neighbors", (1,), {"vector": q, "partition": "zz"}, same),
        ("missing version", "diff", ("v9",), {}, same),
        ("rollback", "rollback", ("v1",), {}, number),
        ("count after", "count", (), {}, same),
    ]


def outcome(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return np.round(value.astype(np.float64), 5).tolist()
    if isinstance(value, list):
        return [outcome(v) for v in value]
    if isinstance(value, eh.Neighbor):
        return (value.key, round(value.distance, 5), value.partition, value.metadata)
    return value


def run_sync(hub: eh.Hub, name: str) -> list[Any]:
    space = hub.create_space(name, dims=DIMS)
    results = []
    for label, method, args, kwargs, post in scenario_steps():
        try:
            results.append((label, outcome(post(getattr(space, method)(*args, **kwargs)))))
        except eh.EmbeddingHubError as exc:
            results.append((label, type(exc).__name__))
    return results


async def run_async(hub: eha.AsyncHub, name: str) -> list[Any]:
    space = await hub.create_space(name, dims=DIMS)
    results = []
    for label, method, args, kwargs, post in scenario_steps():
        try:
            results.append((label, outcome(post(await getattr(space, method)(*args, **kwargs)))))
        except eh.EmbeddingHubError as exc:
            results.append((label, type(exc).__name__))
    return results


def test_the_same_scenario_through_both_apis(hub: eh.Hub, dsn: str) -> None:
    sync_name, async_name = f"s_{uuid.uuid4().hex[:8]}", f"a_{uuid.uuid4().hex[:8]}"

    async def main() -> list[Any]:
        async with await eha.connect(dsn, pool=2) as ahub:
            try:
                return await run_async(ahub, async_name)
            finally:
                await ahub.delete_space(async_name)

    try:
        expected = run_sync(hub, sync_name)
    finally:
        hub.delete_space(sync_name)
    got = asyncio.run(main())
    assert [label for label, _ in got] == [label for label, _ in expected]
    for (label, a), (_, b) in zip(got, expected, strict=True):
        assert a == b, label
    errors = dict(expected)
    assert errors["missing key"] == "KeyNotFound" and errors["bad dims"] == "DimensionMismatch"
    assert errors["bad partition"] == "PartitionNotFound" and errors["missing version"] == "VersionNotFound"


def test_many_tasks_share_one_pool(dsn: str) -> None:
    name = f"t_{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(2)
    data = rng.normal(size=(16, 30, DIMS)).astype(np.float32)

    async def task(space: eha.AsyncSpace, t: int) -> None:
        keys = [f"t{t}_{i}" for i in range(30)]
        await space.multiset(keys, data[t])
        for i in range(0, 30, 10):
            hit = (await space.nearest_neighbors(1, vector=data[t][i]))[0]
            assert hit.key == keys[i]

    async def main() -> int:
        async with await eha.connect(dsn, pool=3) as ahub:
            assert await ahub.execute("SHOW lock_timeout") == [("10s",)]  # as the sync hub's
            space = await ahub.create_space(name, dims=DIMS)
            try:
                await asyncio.gather(*(task(space, t) for t in range(16)))
                seen = [key async for key, _ in space.iterator()]
                assert len(seen) == len(set(seen))
                return len(seen)
            finally:
                await ahub.delete_space(name)

    assert asyncio.run(main()) == 16 * 30


def test_a_first_bulk_load_through_the_async_api(dsn: str) -> None:
    """A first load into an empty space COPYs straight into the live table: through the
    async connection too, every row, vector and metadata lands, and it is searchable."""
    name = f"b_{uuid.uuid4().hex[:8]}"
    n = BULK_REBUILD_ROWS + 5
    matrix = np.random.default_rng(6).normal(size=(n, DIMS)).astype(np.float32)
    keys = [f"k{i}" for i in range(n)]

    async def main() -> None:
        async with await eha.connect(dsn, pool=2) as ahub:
            space = await ahub.create_space(name, dims=DIMS)
            try:
                assert await space.multiset(keys, matrix, metadata=[{"i": i} for i in range(n)]) == n
                assert await space.count() == n
                assert np.array_equal(await space.get("k17"), matrix[17])
                assert await space.get_metadata("k17") == {"i": 17}
                assert (await space.nearest_neighbors(1, vector=matrix[3]))[0].key == "k3"
            finally:
                await ahub.delete_space(name)

    asyncio.run(main())


def test_a_cancelled_multiset_writes_nothing_and_the_pool_stays_usable(dsn: str) -> None:
    name = f"c_{uuid.uuid4().hex[:8]}"
    big = np.random.default_rng(1).normal(size=(300_000, 32)).astype(np.float32)
    keys = [f"k{i}" for i in range(len(big))]

    async def main() -> tuple[int, int]:
        async with await eha.connect(dsn, pool=1) as ahub:
            space = await ahub.create_space(name, dims=32)
            try:
                load = asyncio.ensure_future(space.multiset(keys, big))
                await asyncio.sleep(0.3)  # well inside the COPY and INSERT of 300k rows
                load.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await load
                rows = await space.count()  # the one pooled connection serves the next call
                await space.set("after", big[0])
                return rows, await space.count()
            finally:
                await ahub.delete_space(name)

    assert asyncio.run(main()) == (0, 1)


def test_bad_arguments_fail_alike(dsn: str) -> None:
    async def main() -> None:
        with pytest.raises(eh.InvalidArgument, match="reads"):
            await eha.connect(dsn, reads="standby")
        with pytest.raises(eh.InvalidArgument, match="pool"):
            await eha.connect(dsn, pool=0)
        async with await eha.connect(dsn) as ahub:
            with pytest.raises(eh.SpaceNotFound):
                await ahub.get_space("no_such_space_here")

    asyncio.run(main())
