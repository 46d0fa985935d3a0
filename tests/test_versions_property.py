"""Property test: random histories of writes, partition changes, snapshots, rollbacks and
prunes, checked step by step against a pure-Python model of the space.

The model is {version number: {(partition, key): (vector, metadata)}} plus the working
state. Every as_of read, every diff, every row count and every rollback must match it
exactly (vectors are small integers, so float comparison is exact).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

import embeddinghub as eh

Row = tuple[tuple[float, ...], Any]
State = dict[tuple[str, str], Row]

KEYS = ["a", "b", "c", "d"]
PARTS = ["default", "p1", "p2"]
TAGS = ["t1", "t2", "t3"]

vectors = st.tuples(st.integers(-3, 3), st.integers(-3, 3)).map(
    lambda v: tuple(float(x) for x in v)
)
metadata = st.none() | st.fixed_dictionaries({"m": st.integers(0, 2)})
parts = st.sampled_from(["default", "default", "p1", "p1", "p2"])
write = st.one_of(
    st.tuples(st.just("set"), parts, st.sampled_from(KEYS), vectors, metadata),
    st.tuples(
        st.just("multiset"),
        parts,
        st.lists(st.tuples(st.sampled_from(KEYS), vectors, metadata), min_size=1, max_size=4,
                 unique_by=lambda t: t[0]),
    ),
    st.tuples(st.just("delete"), parts,
              st.lists(st.sampled_from(KEYS), min_size=1, max_size=2, unique=True)),
)
ops = st.one_of(
    write,
    write,
    write,
    st.tuples(st.just("snapshot"), st.none() | st.sampled_from(TAGS)),
    st.tuples(st.just("snapshot"), st.none()),
    st.tuples(st.just("rollback"), st.integers(0, 50), st.booleans()),
    st.tuples(st.just("rollback"), st.integers(0, 50), st.booleans()),
    st.tuples(st.just("check"), st.integers(0, 50)),
    st.tuples(st.just("delete_all"), st.sampled_from([None, None, *PARTS])),
    st.tuples(st.sampled_from(["create_partition", "drop_partition"]),
              st.sampled_from(PARTS[1:])),
    st.one_of(st.tuples(st.just("prune"), st.integers(0, 3)), write),
)


@dataclass
class Model:
    working: State = field(default_factory=dict)
    parts: set[str] = field(default_factory=lambda: {"default", "p1"})
    versions: dict[int, State] = field(default_factory=dict)
    tags: dict[str, int] = field(default_factory=dict)
    head: int = 1

    def pick(self, index: int) -> int | None:
        numbers = sorted(self.versions)
        return numbers[index % len(numbers)] if numbers else None


def read_live(space: eh.Space) -> State:
    rows = space.hub.execute(
        sql.SQL("SELECT partition, key, embedding, metadata FROM {}").format(space.tables.live)
    )
    return {(p, k): (tuple(e.to_list()), m) for p, k, e, m in rows}


def read_version(space: eh.Space, number: int) -> State:
    rows = space.hub.execute(
        "SELECT partition, key, embedding, metadata FROM embeddinghub.as_of(%s, %s)",
        (space.name, number),
    )
    state = {(p, k): (tuple(e.to_list()), m) for p, k, e, m in rows}
    assert len(state) == len(rows), "a key appears twice in one version"
    return state


def model_diff(a: State, b: State) -> tuple[list[Any], list[Any], list[Any]]:
    added = sorted(k for k in b if k not in a)
    removed = sorted(k for k in a if k not in b)
    changed = sorted(k for k in a if k in b and a[k] != b[k])
    return added, removed, changed


def check_version(space: eh.Space, model: Model, number: int) -> None:
    want = model.versions[number]
    assert read_version(space, number) == want, f"as_of({number}) differs from the model"
    view = space.as_of(number)
    for part in PARTS:
        got = {(part, k): (tuple(v.tolist()), m)
               for k, v, m in view.iterator(partition=part, with_metadata=True)}
        assert got == {pk: row for pk, row in want.items() if pk[0] == part}
    d = space.diff(number)
    assert (d.added, d.removed, d.changed) == model_diff(want, model.working)
    if want:
        (part, key), (vec, meta) = min(want.items())
        assert tuple(view.get(key, partition=part).tolist()) == vec
        assert view.get_metadata(key, partition=part) == meta


def apply(space: eh.Space, model: Model, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "set":
        _, part, key, vec, meta = op
        if part not in model.parts:
            with pytest.raises(eh.PartitionNotFound):
                space.set(key, vec, metadata=meta, partition=part)
            return
        space.set(key, vec, metadata=meta, partition=part)
        model.working[(part, key)] = (vec, meta)
    elif kind == "multiset":
        _, part, items = op
        batch = {k: v for k, v, _ in items}
        metas = [m for _, _, m in items]
        if part not in model.parts:
            with pytest.raises(eh.PartitionNotFound):
                space.multiset(batch, metadata=metas, partition=part)
            return
        space.multiset(batch, metadata=metas, partition=part)
        for key, vec, meta in items:
            model.working[(part, key)] = (vec, meta)
    elif kind == "delete":
        _, part, keys = op
        if any((part, k) not in model.working for k in keys):
            with pytest.raises(eh.KeyNotFound):
                space.multidelete(keys, partition=part, strict=True)
            return
        assert space.multidelete(keys, partition=part) == len(keys)
        for key in keys:
            del model.working[(part, key)]
    elif kind == "delete_all":
        _, part = op
        gone = [pk for pk in model.working if part is None or pk[0] == part]
        assert space.delete_all(partition=part) == len(gone)
        for pk in gone:
            del model.working[pk]
    elif kind == "create_partition":
        _, part = op
        if part in model.parts:
            with pytest.raises(eh.InvalidArgument, match="already exists"):
                space.create_partition(part)
            return
        space.create_partition(part)
        model.parts.add(part)
    elif kind == "drop_partition":
        _, part = op
        if part not in model.parts:
            with pytest.raises(eh.PartitionNotFound):
                space.drop_partition(part)
            return
        space.drop_partition(part)
        model.parts.discard(part)
        for pk in [pk for pk in model.working if pk[0] == part]:
            del model.working[pk]
    elif kind == "snapshot":
        _, tag = op
        if tag in model.tags:
            with pytest.raises(eh.InvalidArgument, match="already names"):
                space.snapshot(tag=tag)
            return
        v = space.snapshot(tag=tag)
        assert v.number == model.head and v.tag == tag
        model.versions[v.number] = dict(model.working)
        if tag is not None:
            model.tags[tag] = v.number
        model.head += 1
    elif kind == "rollback":
        _, index, by_tag = op
        target = model.pick(index)
        if target is None:
            with pytest.raises(eh.VersionNotFound):
                space.rollback(model.head)
            return
        tag = next((t for t, n in model.tags.items() if n == target), None)
        ref: int | str = tag if by_tag and tag is not None else target
        r = space.rollback(ref)
        assert r.note == f"rollback to {target}" and r.tag is None
        if r.number == model.head + 1:
            # unsnapshotted work was recorded first
            model.versions[model.head] = dict(model.working)
            assert space.as_of(model.head).version.note == f"before rollback to {target}"
        else:
            # nothing recorded: then nothing was lost, the working state was the last version
            assert r.number == model.head
            if model.head - 1 in model.versions:
                assert model.working == model.versions[model.head - 1]
        model.working = dict(model.versions[target])
        model.parts |= {p for p, _ in model.working}
        model.versions[r.number] = dict(model.working)
        model.head = r.number + 1
    elif kind == "check":
        _, index = op
        number = model.pick(index)
        if number is not None:
            check_version(space, model, number)
    elif kind == "prune":
        _, keep = op
        space.prune_versions(keep=keep)
        numbers = sorted(model.versions)
        for number in numbers[: max(0, len(numbers) - keep)]:
            del model.versions[number]
            with pytest.raises(eh.VersionNotFound):
                space.as_of(number)
        model.tags = {t: n for t, n in model.tags.items() if n in model.versions}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=8, max_size=30))
def test_random_histories_match_the_model(hub: eh.Hub, history: list[tuple[Any, ...]]) -> None:
    space = hub.create_space(f"prop_{uuid.uuid4().hex[:10]}", dims=2)
    try:
        space.create_partition("p1")  # p1 exists at the start, p2 only when created
        model = Model()
        for op in history:
            apply(space, model, op)
            assert read_live(space) == model.working, f"working state differs after {op}"
            assert {p["name"] for p in space.list_partitions()} == model.parts
        for number in sorted(model.versions):
            check_version(space, model, number)
        listed = space.versions()
        assert [v.number for v in listed] == sorted(model.versions)
        assert [v.row_count for v in listed] == [len(model.versions[v.number]) for v in listed]
        assert {v.tag: v.number for v in listed if v.tag} == model.tags
        assert space.info()["head_version"] == model.head
        numbers = sorted(model.versions)
        for a, b in zip(numbers, numbers[1:], strict=False):
            d = space.diff(a, b)
            assert (d.added, d.removed, d.changed) == model_diff(model.versions[a],
                                                                 model.versions[b])
    finally:
        hub.delete_space(space.name)
