"""Versioning: snapshots, tags, time-travel reads, diff, rollback, retention, freeze, SQL, CLI."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

import embeddinghub as eh
from embeddinghub import rows as rows_module
from embeddinghub.cli import main
from embeddinghub.versions import AsOf, Diff, Version

MakeSpace = Callable[..., eh.Space]


def rows_of(view: eh.Space | AsOf) -> dict[tuple[str, str], tuple[list[float], Any]]:
    """Every row of a space or version as {(partition, key): (vector, metadata)}."""
    parts = {"default", "p", "q"}
    return {
        (p, k): (v.tolist(), m)
        for p in sorted(parts)
        for k, v, m in view.iterator(partition=p, with_metadata=True)
    }


@pytest.fixture
def filled(make_space: MakeSpace) -> eh.Space:
    space = make_space(dims=3)
    space.multiset({"a": [1, 0, 0], "b": [0, 1, 0], "c": [0, 0, 1]},
                   metadata=[{"n": 1}, {"n": 2}, None])
    return space


def sqlstate_of(fn: Callable[[], Any]) -> str | None:
    with pytest.raises(psycopg.Error) as info:
        fn()
    return info.value.sqlstate


def raw_sqlstate(hub: eh.Hub, query: sql.Composed) -> str | None:
    """The SQLSTATE that raw SQL `query` fails with."""
    return sqlstate_of(lambda: hub.conn.execute(query))


# -- snapshot, tags, listing ---------------------------------------------------------------
def test_snapshot_records_head_and_bumps_it(filled: eh.Space) -> None:
    assert filled.info()["head_version"] == 1
    v1 = filled.snapshot(tag="first", note="three rows")
    assert isinstance(v1, Version)
    assert (v1.number, v1.tag, v1.note, v1.row_count) == (1, "first", "three rows", None)
    assert v1.created_by and v1.created_at is not None
    filled.set("d", [1, 1, 1])
    v2 = filled.snapshot()
    assert (v2.number, v2.tag) == (2, None)
    assert filled.info()["head_version"] == 3
    listed = filled.versions()
    assert [(v.number, v.tag, v.row_count) for v in listed] == [(1, "first", 3), (2, None, 4)]
    # Counts are cached after the first listing.
    cached = filled.hub.execute(
        "SELECT number, row_count FROM embeddinghub.versions WHERE space_id = %s ORDER BY 1",
        (filled.id,),
    )
    assert cached == [(1, 3), (2, 4)]


def test_row_counts_follow_changes(filled: eh.Space) -> None:
    filled.snapshot()  # 1: a b c
    filled.delete("a")
    filled.set("b", [9, 9, 9])
    filled.snapshot()  # 2: b c
    filled.multiset({"x": [1, 1, 1], "y": [2, 2, 2], "a": [3, 3, 3]})
    filled.snapshot()  # 3: a b c x y
    assert [v.row_count for v in filled.versions()] == [3, 2, 5]
    filled.delete_all()
    filled.snapshot()  # 4: empty
    filled.set("z", [0, 0, 1])
    filled.snapshot()  # 5: z
    assert [v.row_count for v in filled.versions()] == [3, 2, 5, 0, 1]
    assert [len(filled.as_of(n)) for n in range(1, 6)] == [3, 2, 5, 0, 1]


def test_tags_are_unique_names(filled: eh.Space) -> None:
    filled.snapshot(tag="good")
    with pytest.raises(eh.InvalidArgument, match=r"tag \"good\" already names version 1") as e:
        filled.snapshot(tag="good")
    assert filled.name in str(e.value)
    assert filled.info()["head_version"] == 2  # the failed snapshot recorded nothing
    with pytest.raises(eh.InvalidArgument, match="all digits"):
        filled.snapshot(tag="42")
    with pytest.raises(eh.InvalidArgument, match="invalid tag"):
        filled.snapshot(tag="bad tag")
    with pytest.raises(eh.InvalidArgument, match="note"):
        filled.snapshot(note=3)  # type: ignore[arg-type]
    assert [v.number for v in filled.versions()] == [1]


def test_unknown_versions(filled: eh.Space) -> None:
    v1 = filled.snapshot(tag="t1")
    assert filled.as_of(v1).number == 1
    assert filled.as_of("t1").number == 1
    assert filled.as_of(np.int64(1)).number == 1  # type: ignore[arg-type]
    for ref in (2, 0, -1, "nope"):
        with pytest.raises(eh.VersionNotFound) as e:
            filled.as_of(ref)
        assert repr(ref) in str(e.value) and filled.name in str(e.value)
    with pytest.raises(eh.VersionNotFound, match="7"):
        filled.rollback(7)
    with pytest.raises(eh.VersionNotFound, match="nope"):
        filled.diff("nope")
    with pytest.raises(eh.VersionNotFound, match="9"):
        filled.nearest_neighbors(1, vector=[0, 0, 0], version=9)
    with pytest.raises(eh.InvalidArgument, match="number or a tag"):
        filled.as_of(True)
    with pytest.raises(eh.InvalidArgument, match="number or a tag"):
        filled.as_of(1.0)  # type: ignore[arg-type]


# -- time travel -----------------------------------------------------------------------------
def test_as_of_reads_the_state_of_its_version(filled: eh.Space) -> None:
    before = rows_of(filled)
    filled.snapshot()
    filled.set("a", [5, 5, 5], metadata={"n": 10})
    filled.delete("b")
    filled.set("d", [0, 1, 1])
    filled.create_partition("p")
    filled.set("pk", [1, 2, 3], partition="p")
    filled.snapshot()
    middle = rows_of(filled)
    filled.drop_partition("p")
    filled.set("a", [6, 6, 6])
    v1, v2 = filled.as_of(1), filled.as_of(2)
    assert rows_of(v1) == before and rows_of(v2) == middle
    assert v1.get("a").tolist() == [1, 0, 0] and v2.get("a").tolist() == [5, 5, 5]
    assert v1.get_metadata("a") == {"n": 1} and v2.get_metadata("a") == {"n": 10}
    assert v1.multiget(["c", "b"]).tolist() == [[0, 0, 1], [0, 1, 0]]
    assert "b" in v1 and "b" not in v2 and "d" in v2 and 3 not in v2
    assert [k for k, _ in v1] == ["a", "b", "c"]
    assert len(v1) == 3 and len(v2) == 4 and v2.count("p") == 1 and v2.count("default") == 3
    # A partition dropped since stays readable in the versions that had it.
    assert v2.get("pk", partition="p").tolist() == [1, 2, 3]
    with pytest.raises(eh.KeyNotFound, match="at version 2") as e:
        v2.get("b")
    assert filled.name in str(e.value) and "'b'" in str(e.value)
    assert filled.get("a").tolist() == [6, 6, 6]  # the working state is untouched
    assert v2.version.number == 2 and "version=2" in repr(v2)


def test_as_of_float16(make_space: MakeSpace) -> None:
    space = make_space(dims=2, dtype="float16", metric="cosine")
    space.multiset({"a": [1, 0.5], "b": [0, 1]})
    space.snapshot()
    space.set("a", [0.25, 1])
    assert space.as_of(1).get("a").tolist() == [1, 0.5]
    hits = space.nearest_neighbors(1, vector=[1, 0.5], version=1)
    assert [h.key for h in hits] == ["a"] and hits[0].distance == pytest.approx(0, abs=1e-3)
    rows = space.hub.execute(
        "SELECT key, embedding, pg_typeof(embedding)::text FROM embeddinghub.as_of(%s, 1)"
        " ORDER BY key", (space.name,)
    )
    assert [(k, e.to_list(), t) for k, e, t in rows] == [
        ("a", [1, 0.5], "vector"), ("b", [0, 1], "vector")
    ]


def test_as_of_nearest_neighbors_match_brute_force(make_space: MakeSpace) -> None:
    rng = np.random.default_rng(7)
    space = make_space(dims=4)
    space.create_partition("p")
    keys = [f"k{i}" for i in range(60)]
    first = rng.standard_normal((60, 4)).astype(np.float32)
    space.multiset(keys, first, metadata=[{"even": i % 2 == 0} for i in range(60)])
    space.multiset(keys[:10], first[:10], partition="p")
    space.snapshot()
    changed = rng.standard_normal((20, 4)).astype(np.float32)
    space.multiset(keys[::3], changed)  # rows changed after version 1 live in history
    space.multidelete(keys[1:10:3])
    for q in rng.standard_normal((5, 4)).astype(np.float32):
        hits = space.nearest_neighbors(5, vector=q, version=1)
        dist = np.linalg.norm(first - q, axis=1)
        order = np.argsort(dist, kind="stable")
        # default partition only holds keys[i] -> first[i]; p holds keys[:10] too
        all_rows = [("default", keys[i], dist[i]) for i in range(60)] + [
            ("p", keys[i], dist[i]) for i in range(10)
        ]
        want = sorted(all_rows, key=lambda r: r[2])[:5]
        assert [round(h.distance, 4) for h in hits] == [round(float(d), 4) for *_, d in want]
        in_p = space.nearest_neighbors(3, vector=q, version=1, partition="p")
        assert all(h.partition == "p" for h in in_p)
        assert [h.key for h in in_p] == [keys[i] for i in order if i < 10][:3]
        evens = space.nearest_neighbors(3, vector=q, version=1, where={"even": True})
        assert [h.key for h in evens] == [keys[i] for i in order if i % 2 == 0][:3]
    by_key = space.as_of(1).nearest_neighbors(3, key="k12")  # k12 was changed since
    dist = np.linalg.norm(first - first[12], axis=1)
    rows = [("default", keys[i], dist[i]) for i in range(60) if i != 12] + [
        ("p", keys[i], dist[i]) for i in range(10)
    ]
    want = sorted(rows, key=lambda r: r[2])[:3]
    # (k0 is in both partitions at the same distance: compare keys, not partitions)
    assert [(h.key, round(h.distance, 4)) for h in by_key] == [
        (k, round(float(d), 4)) for _, k, d in want
    ]
    assert space.as_of(1).get("k1").tolist() == first[1].tolist()  # deleted since
    multi = space.as_of(1).multi_nearest_neighbors(2, vectors=first[:2])
    assert [m[0].key for m in multi] == ["k0", "k1"]
    # Asking for more than the version holds returns all of it, exactly ordered.
    many = space.nearest_neighbors(100, vector=first[0], version=1, partition="p")
    assert len(many) == 10 and [h.key for h in many][0] == "k0"


def test_as_of_is_read_only(filled: eh.Space) -> None:
    filled.snapshot()
    view = filled.as_of(1)
    for call in (
        lambda: view.set("a", [1, 1, 1]),
        lambda: view.multiset({"a": [1, 1, 1]}),
        lambda: view.delete("a"),
        lambda: view.multidelete(["a"]),
        lambda: view.delete_all(),
        lambda: view.create_partition("p"),
        lambda: view.drop_partition("default"),
    ):
        with pytest.raises(eh.SpaceFrozen, match="version 1 is a read-only view") as e:
            call()
        assert filled.name in str(e.value)
    assert filled.get("a").tolist() == [1, 0, 0]


# -- diff --------------------------------------------------------------------------------
def test_diff(filled: eh.Space) -> None:
    filled.create_partition("p")
    filled.snapshot()
    filled.set("a", [1, 0, 0], metadata={"n": 99})  # metadata-only change
    filled.set("b", [0, 1, 0], metadata={"n": 2})  # rewritten, identical: no change
    filled.delete("c")
    filled.set("d", [1, 1, 1])
    filled.set("e", [1, 1, 1], partition="p")
    filled.snapshot()
    filled.set("d", [2, 2, 2])
    d = filled.diff(1, 2)
    assert d == Diff(
        added=[("default", "d"), ("p", "e")], removed=[("default", "c")],
        changed=[("default", "a")],
    )
    assert bool(d) and len(d) == 4
    back = filled.diff(2, 1)
    assert (back.added, back.removed, back.changed) == (d.removed, d.added, d.changed)
    assert filled.diff(2).changed == [("default", "d")]  # b=None: the working state
    assert filled.diff(1).added == [("default", "d"), ("p", "e")]
    assert not filled.diff(2, 2)
    sql_rows = filled.hub.execute("SELECT * FROM embeddinghub.diff(%s, 1, 2)", (filled.name,))
    assert sql_rows == [("default", "a", "changed"), ("default", "c", "removed"),
                        ("default", "d", "added"), ("p", "e", "added")]


# -- rollback ------------------------------------------------------------------------------
def test_rollback_restores_and_records_a_version(filled: eh.Space) -> None:
    original = rows_of(filled)
    filled.snapshot(tag="good")
    filled.multiset({"a": [9, 9, 9], "z": [7, 7, 7]})
    filled.delete("b")
    bad = rows_of(filled)
    filled.snapshot(tag="bad")
    r = filled.rollback("good")
    assert (r.number, r.tag, r.note) == (3, None, "rollback to 1")
    assert r.row_count is None  # version 1 was never counted; versions() counts it
    assert rows_of(filled) == original
    assert filled.info()["head_version"] == 4
    # The rollback can itself be rolled back: nothing was lost.
    r2 = filled.rollback("bad")
    assert r2.note == "rollback to 2" and rows_of(filled) == bad
    assert [v.row_count for v in filled.versions()] == [3, 3, 3, 3]
    r3 = filled.rollback(r)
    assert r3.number == 5 and rows_of(filled) == original
    assert r3.row_count == 3  # copied from the (now counted) target
    assert [(v.number, v.note) for v in filled.versions()] == [
        (1, None), (2, None), (3, "rollback to 1"), (4, "rollback to 2"), (5, "rollback to 3")
    ]
    assert rows_of(filled.as_of(4)) == bad and rows_of(filled.as_of(2)) == bad


def test_rollback_records_unsnapshotted_work_first(filled: eh.Space) -> None:
    filled.snapshot()
    filled.set("a", [4, 4, 4])
    dirty = rows_of(filled)
    r = filled.rollback(1)
    assert r.number == 3
    auto = filled.as_of(2)
    assert auto.version.note == "before rollback to 1" and rows_of(auto) == dirty
    assert filled.get("a").tolist() == [1, 0, 0]
    # A clean working state is not recorded again.
    r2 = filled.rollback(1)
    assert r2.number == 4 and [v.number for v in filled.versions()] == [1, 2, 3, 4]


def with_hook(space: eh.Space, hook: Any) -> None:
    """Run `hook` too whenever this space handle creates a partition."""
    hooks = space.handle.hooks
    space.handle.hooks = dataclasses.replace(hooks, partition_created=(*hooks.partition_created, hook))


def test_rollback_recreates_dropped_partitions_with_hooks(filled: eh.Space) -> None:
    seen: list[str] = []

    def hook(cur: Any, tables: Any, partition_id: int, name: str) -> None:
        seen.append(name)

    filled.create_partition("p")
    filled.multiset({"x": [1, 1, 1], "y": [2, 2, 2]}, partition="p")
    filled.snapshot()
    filled.drop_partition("p")
    filled.snapshot()
    with_hook(filled, hook)
    filled.rollback(1)
    assert seen == ["p"]
    assert [p["name"] for p in filled.list_partitions()] == ["default", "p"]
    assert filled.get("y", partition="p").tolist() == [2, 2, 2]
    filled.set("w", [3, 3, 3], partition="p")  # the partition is fully usable


def test_failed_rollback_changes_nothing(filled: eh.Space) -> None:
    def explode(cur: Any, tables: Any, partition_id: int, name: str) -> None:
        raise RuntimeError("hook failed")

    filled.create_partition("p")
    filled.set("x", [1, 1, 1], partition="p")
    filled.snapshot()
    filled.drop_partition("p")
    filled.set("a", [8, 8, 8])  # unsnapshotted work: the rollback records it first...
    state = rows_of(filled)
    catalog = filled.hub.execute(
        "SELECT head_version, (SELECT count(*) FROM embeddinghub.versions WHERE space_id = s.id),"
        " (SELECT array_agg(name ORDER BY name) FROM embeddinghub.partitions WHERE space_id = s.id)"
        " FROM embeddinghub.spaces s WHERE id = %s", (filled.id,)
    )
    history = filled.hub.execute(
        sql.SQL("SELECT count(*) FROM {}").format(filled.tables.history)
    )
    hooks = filled.handle.hooks
    with_hook(filled, explode)
    with pytest.raises(RuntimeError, match="hook failed"):
        filled.rollback(1)  # ...then fails re-creating the partition
    filled.handle.hooks = hooks
    assert rows_of(filled) == state
    assert filled.hub.execute(
        "SELECT head_version, (SELECT count(*) FROM embeddinghub.versions WHERE space_id = s.id),"
        " (SELECT array_agg(name ORDER BY name) FROM embeddinghub.partitions WHERE space_id = s.id)"
        " FROM embeddinghub.spaces s WHERE id = %s", (filled.id,)
    ) == catalog
    assert filled.hub.execute(
        sql.SQL("SELECT count(*) FROM {}").format(filled.tables.history)
    ) == history
    with pytest.raises(eh.PartitionNotFound):  # the undone partition is not cached as real
        filled.set("x", [1, 1, 1], partition="p")
    r = filled.rollback(1)  # and the same rollback succeeds afterwards
    assert filled.get("x", partition="p").tolist() == [1, 1, 1] and r.number == 3


def test_sql_rollback_recreates_partition(filled: eh.Space) -> None:
    hub = filled.hub
    filled.create_partition("q")
    filled.set("x", [1, 2, 3], partition="q")
    assert hub.execute("SELECT embeddinghub.snapshot(%s, 'with-q')", (filled.name,)) == [(1,)]
    filled.drop_partition("q")
    number = hub.execute(
        "SELECT embeddinghub.rollback(%s, embeddinghub.tagged_version(%s, 'with-q'))",
        (filled.name, filled.name),
    )[0][0]
    assert number == 3  # 2 recorded the unsnapshotted drop
    fresh = hub.get_space(filled.name)
    assert fresh.get("x", partition="q").tolist() == [1, 2, 3]
    fresh.set("y", [0, 0, 0], partition="q")
    triggers = hub.execute(
        "SELECT tgname FROM pg_trigger t JOIN pg_inherits i ON i.inhrelid = t.tgrelid"
        " WHERE i.inhparent = %s::regclass AND NOT tgisinternal ORDER BY 1",
        (f"embeddinghub_data.s{filled.id}",),
    )
    # both partitions carry the same own triggers (the row trigger is a clone)...
    assert {t for (t,) in triggers} == {"no_truncate", "row_write", "write_lock"}
    assert len(triggers) == 6
    # ...and the same row-level security settings and policies (the access-control hook's)
    security = hub.execute(
        "SELECT c.relrowsecurity, c.relforcerowsecurity,"
        " array(SELECT polname FROM pg_policy WHERE polrelid = c.oid ORDER BY 1)::text"
        " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = %s::regclass", (f"embeddinghub_data.s{filled.id}",),
    )
    assert len(security) == 2 and security[0] == security[1]


# -- retention -----------------------------------------------------------------------------
def test_prune_versions(filled: eh.Space) -> None:
    states = {}
    for i in range(1, 6):
        filled.set("a", [i, i, i])
        if i == 2:
            filled.delete("b")
        states[filled.snapshot().number] = rows_of(filled)
    old_view = filled.as_of(1)
    freed = filled.prune_versions(keep=2)  # keeps 4 and 5
    assert freed > 0
    assert [v.number for v in filled.versions()] == [4, 5]
    for n in (4, 5):
        assert rows_of(filled.as_of(n)) == states[n]
    for n in (1, 2, 3):
        with pytest.raises(eh.VersionNotFound):
            filled.as_of(n)
    with pytest.raises(eh.VersionNotFound, match="1"):
        old_view.get("a")  # a view made before the prune notices it
    with pytest.raises(eh.VersionNotFound):
        list(old_view)
    assert [v.row_count for v in filled.versions()] == [2, 2]
    assert filled.prune_versions(keep=5) == 0
    with pytest.raises(eh.InvalidArgument, match="keep"):
        filled.prune_versions(keep=-1)
    filled.set("c", [7, 7, 7])
    filled.prune_versions(keep=0)
    assert filled.versions() == []
    assert filled.hub.execute(sql.SQL("SELECT count(*) FROM {}").format(filled.tables.history)) \
        == [(0,)]
    assert filled.get("c").tolist() == [7, 7, 7]  # the working state is never pruned


def test_row_counts_after_prune(filled: eh.Space) -> None:
    filled.snapshot()
    filled.set("d", [1, 1, 1])
    filled.snapshot()
    filled.delete("a")
    filled.snapshot()
    filled.prune_versions(keep=2)  # version 2 and 3 are kept, never counted
    assert [(v.number, v.row_count) for v in filled.versions()] == [(2, 4), (3, 3)]


# -- freeze --------------------------------------------------------------------------------
def test_freeze_refuses_raw_sql_and_python_writes(filled: eh.Space) -> None:
    hub = filled.hub
    filled.create_partition("p")
    filled.set("x", [1, 1, 1], partition="p")
    hub.freeze_space(filled.name)
    assert filled.info()["frozen"] is True
    pid = hub.execute(
        "SELECT id FROM embeddinghub.partitions WHERE space_id = %s AND name = 'p'", (filled.id,)
    )[0][0]
    for table in (filled.tables.live, filled.tables.partition(pid)):
        part = "default" if table == filled.tables.live else "p"
        for stmt in (
            sql.SQL("INSERT INTO {} (partition, key, embedding) VALUES ({}, 'new', '[1,2,3]')"),
            sql.SQL("UPDATE {} SET metadata = '{{}}' WHERE partition = {}"),
            sql.SQL("DELETE FROM {} WHERE partition = {}"),
        ):
            assert raw_sqlstate(hub, stmt.format(table, sql.Literal(part))) == "EHFRZ"
        assert raw_sqlstate(hub, sql.SQL("TRUNCATE {}").format(table)) == "EHFRZ"
    for call in (
        lambda: filled.set("a", [0, 0, 0]),
        lambda: filled.multiset({"n": [0, 0, 0]}),
        lambda: filled.delete("a"),
        lambda: filled.delete_all(),
        lambda: filled.drop_partition("p"),
    ):
        with pytest.raises(eh.SpaceFrozen, match=filled.name):
            call()
    assert len(filled) == 4
    # Snapshots only write the catalog: allowed, e.g. to tag the frozen state.
    v = filled.snapshot(tag="final")
    assert filled.as_of("final").count() == 4 and v.number == 1
    with pytest.raises(eh.SpaceFrozen, match="roll back"):
        filled.rollback(1)
    with pytest.raises(eh.SpaceFrozen, match="pruned"):
        filled.prune_versions(keep=0)


def test_freeze_waits_for_running_writers(filled: eh.Space, dsn: str) -> None:
    with psycopg.connect(dsn) as writer:  # a transaction that has written and not committed
        writer.execute(
            sql.SQL("INSERT INTO {} (partition, key, embedding) VALUES ('default', 'w', '[1,1,1]')")
            .format(filled.tables.live)
        )
        done = threading.Event()
        with eh.connect(dsn) as other:
            other_space = other.get_space(filled.name)

            def freeze() -> None:
                other_space.freeze()
                done.set()

            thread = threading.Thread(target=freeze)
            thread.start()
            time.sleep(0.3)
            assert not done.is_set()  # freeze waits for the writer...
            writer.commit()
            thread.join(10)
    assert done.is_set() and "w" in filled  # ...whose write lands before the freeze


# -- SQL API -------------------------------------------------------------------------------
def test_sql_api(filled: eh.Space) -> None:
    hub, name = filled.hub, filled.name
    assert hub.execute("SELECT embeddinghub.snapshot(%s)", (name,)) == [(1,)]
    filled.set("a", [2, 2, 2])
    assert hub.execute("SELECT embeddinghub.snapshot(%s, 'v2', 'note')", (name,)) == [(2,)]
    rows = hub.execute(
        "SELECT partition, key, embedding::text, metadata FROM embeddinghub.as_of(%s, 1)"
        " ORDER BY key", (name,)
    )
    assert rows == [("default", "a", "[1,0,0]", {"n": 1}), ("default", "b", "[0,1,0]", {"n": 2}),
                    ("default", "c", "[0,0,1]", None)]
    assert hub.execute("SELECT number, tag, row_count FROM embeddinghub.list_versions(%s)",
                       (name,)) == [(1, None, 3), (2, "v2", 3)]
    assert hub.execute("SELECT embeddinghub.rollback(%s, 1)", (name,)) == [(3,)]
    assert filled.get("a").tolist() == [1, 0, 0]
    conn = hub.conn
    assert sqlstate_of(lambda: conn.execute("SELECT embeddinghub.snapshot('no_such')")) == "EHNSP"
    assert sqlstate_of(lambda: conn.execute(
        "SELECT * FROM embeddinghub.as_of(%s, 99)", (name,))) == "EHVER"
    assert sqlstate_of(lambda: conn.execute(
        "SELECT embeddinghub.rollback(%s, 99)", (name,))) == "EHVER"
    assert sqlstate_of(lambda: conn.execute(
        "SELECT embeddinghub.tagged_version(%s, 'zz')", (name,))) == "EHVER"
    assert sqlstate_of(lambda: conn.execute(
        "SELECT embeddinghub.snapshot(%s, 'v2')", (name,))) == "EHARG"
    with pytest.raises(psycopg.Error, match=rf'space "{name}" has no version 99'):
        conn.execute("SELECT * FROM embeddinghub.as_of(%s, 99)", (name,))
    # Every versioning function runs with the caller's rights, never widening them.
    definers = hub.execute(
        "SELECT proname FROM pg_proc WHERE pronamespace = 'embeddinghub'::regnamespace"
        " AND prosecdef AND proname = ANY(%s)",
        (["snapshot", "rollback", "as_of", "diff", "list_versions", "prune_versions", "freeze",
          "tagged_version", "check_version", "version_space", "record_version",
          "missing_row_counts", "dropped_partitions", "restore_partition"],),
    )
    assert definers == []


def test_repeatable_read_writer_cannot_stamp_a_recorded_version(filled: eh.Space,
                                                                 dsn: str) -> None:
    with psycopg.connect(dsn) as rr:
        rr.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        rr.execute("SELECT 1 FROM embeddinghub.spaces").fetchall()  # its snapshot starts here
        filled.snapshot()
        with pytest.raises(psycopg.errors.SerializationFailure):
            rr.execute(
                sql.SQL("INSERT INTO {} (partition, key, embedding)"
                        " VALUES ('default', 'late', '[1,1,1]')").format(filled.tables.live)
            )
        rr.rollback()
    assert rows_of(filled.as_of(1)) == rows_of(filled)
    with psycopg.connect(dsn) as rr:  # a rollback must see every committed write
        rr.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with pytest.raises(psycopg.Error, match="needs a READ COMMITTED transaction") as e:
            rr.execute("SELECT embeddinghub.rollback(%s, 1)", (filled.name,))
        assert e.value.sqlstate == "EHARG"
        rr.rollback()


# -- concurrency ---------------------------------------------------------------------------
def test_concurrent_writer_never_sees_or_leaves_half_states(make_space: MakeSpace,
                                                            dsn: str) -> None:
    """A writer commits batches (delete 10 keys, re-set all 40 to the batch number) while
    this thread snapshots and rolls back: every version and every read is one state the
    writer committed, never half a batch and never half a rollback."""
    space = make_space(dims=2)
    keys = [f"k{i:02d}" for i in range(40)]
    space.multiset(keys, np.zeros((40, 2)))
    committed = {0}
    errors_seen: list[BaseException] = []
    stop = threading.Event()

    def uniform(view: eh.Space | AsOf) -> float:
        matrix = view.multiget(keys)
        values = set(matrix.ravel().tolist())
        assert len(values) == 1, f"half-applied state: {sorted(values)}"
        return values.pop()

    def writer() -> None:
        try:
            with eh.connect(dsn) as hub:
                mine = hub.get_space(space.name)
                for i in range(1, 400):
                    if stop.is_set():
                        return
                    with hub.conn.transaction():
                        mine.multidelete(keys[i % 4 :: 4])
                        mine.multiset(keys, np.full((40, 2), i, dtype=np.float32))
                        committed.add(i)  # before COMMIT returns, others may see it
                    uniform(mine)
        except BaseException as exc:  # reported by the main thread
            errors_seen.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    snapshots: list[int] = []
    deadline = time.monotonic() + 4
    try:
        while time.monotonic() < deadline and thread.is_alive():
            v = space.snapshot()
            snapshots.append(v.number)
            assert uniform(space.as_of(v)) in committed
            if len(snapshots) % 3 == 0:
                r = space.rollback(snapshots[len(snapshots) // 2])
                assert uniform(space.as_of(r)) in committed
            assert uniform(space) in committed
    finally:
        stop.set()
        thread.join(30)
    assert not errors_seen, errors_seen
    assert len(snapshots) >= 3 and len(committed) > 3
    for v in space.versions():
        assert uniform(space.as_of(v)) in committed


# -- CLI -----------------------------------------------------------------------------------
@pytest.fixture
def cli(dsn: str) -> Iterator[Callable[..., Any]]:
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True) -> Any:
        result = runner.invoke(main, ["--dsn", dsn, *args])
        assert (result.exit_code == 0) == ok, result.output
        return result

    yield invoke


def test_cli(filled: eh.Space, cli: Callable[..., Any]) -> None:
    name = filled.name
    out = cli("version", "snapshot", name, "--tag", "v1", "--note", "first")
    assert "recorded version 1" in out.output and "'v1'" in out.output
    filled.set("z", [1, 1, 1])
    data = json.loads(cli("version", "snapshot", name, "--json").output)
    assert data["number"] == 2 and data["tag"] is None
    listed = json.loads(cli("version", "list", name, "--json").output)
    assert [(v["number"], v["tag"], v["row_count"]) for v in listed] == [(1, "v1", 3), (2, None, 4)]
    table = cli("version", "list", name).output
    assert "row_count" in table and "first" in table
    changes = json.loads(cli("version", "diff", name, "v1", "2", "--json").output)
    assert changes == [{"change": "added", "partition": "default", "key": "z"}]
    assert "(none)" in cli("version", "diff", name, "2").output
    filled.set("a", [0, 0, 9])
    got = json.loads(cli("get", name, "a", "--version", "v1", "--json").output)
    assert got["vector"] == [1, 0, 0] and got["metadata"] == {"n": 1}
    assert json.loads(cli("get", name, "a", "--json").output)["vector"] == [0, 0, 9]
    hits = json.loads(cli("nn", name, "--vector", "[0, 0, 9]", "-k", "1", "--version", "1",
                          "--json").output)
    assert [h["key"] for h in hits] == ["c"]
    hits = json.loads(cli("nn", name, "--key", "a", "-k", "1", "--version", "v1", "--json").output)
    assert hits[0]["key"] in {"b", "c"} and hits[0]["distance"] == pytest.approx(2 ** 0.5)
    assert "version 7 not found" in cli("get", name, "a", "--version", "7", ok=False).output
    out = cli("version", "rollback", name, "v1")
    assert "recorded as version 4" in out.output and "z" not in filled
    assert "freed" in cli("version", "prune", name, "--keep", "1", "--yes").output
    assert [v.number for v in filled.versions()] == [4]
    bad = cli("version", "rollback", name, "nope", ok=False)
    assert "version 'nope' not found" in bad.output and "Traceback" not in bad.output
    cli("version", "snapshot", name, "--tag", "t")
    dup = cli("version", "snapshot", name, "--tag", "t", ok=False)
    assert f'space "{name}": tag "t" already names version 5' in dup.output


# -- a bulk load into an empty space: the row trigger's bookkeeping done once ---------------------
def _row_trigger_states(space: eh.Space) -> set[str]:
    return {r[0] for r in space.hub.execute(
        "SELECT t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " WHERE t.tgname = 'row_write' AND c.relname LIKE %s", (f"s{space.id}%",)
    )}


def _row_security_forced(space: eh.Space) -> bool:
    """A bulk load lifts FORCE ROW LEVEL SECURITY on the live table for its transaction."""
    return space.hub.execute(
        "SELECT relforcerowsecurity FROM pg_class WHERE oid = %s::regclass",
        (space.tables.live.as_string(space.hub.conn),),
    ) == [(True,)]


def test_a_bulk_load_into_an_empty_space_is_stamped_as_the_trigger_would(
    make_space: Callable[..., eh.Space],
) -> None:
    space = make_space(dims=4)
    space.create_partition("p1")
    space.snapshot()  # head is now 2: the load's rows must carry it, not a default
    n = rows_module.BULK_REBUILD_ROWS + 10
    matrix = np.random.default_rng(3).random((n, 4)).astype(np.float32)
    parts = ["p1" if i % 3 == 0 else "default" for i in range(n)]
    space.multiset([f"k{i}" for i in range(n)], matrix, [{"i": i} for i in range(n)], parts)
    assert _row_trigger_states(space) == {"O"} and _row_security_forced(space)  # as before
    stamps = space.hub.execute(sql.SQL(
        "SELECT version, count(*), bool_and(updated_at IS NOT NULL AND updated_at <= now())"
        " FROM {} GROUP BY version"
    ).format(space.tables.live))
    assert stamps == [(space.refresh().info()["head_version"], n, True)]
    assert space.get_metadata("k9", partition="p1") == {"i": 9}
    v = space.snapshot()
    space.set("k1", [9, 9, 9, 9])  # the trigger works again: the old image goes to history
    assert space.as_of(v).get("k1").tolist() == pytest.approx(matrix[1].tolist())


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_bulk_load_into_an_empty_space_keeps_every_value(
    make_space: Callable[..., eh.Space], dtype: str
) -> None:
    """The rows COPYed straight into the live table: keys, vectors (float16 spaces store
    halfvec), metadata and partitions as given, searchable once the index is built."""
    space = make_space(dims=3, dtype=dtype)
    space.create_partition("p1")
    n = rows_module.BULK_REBUILD_ROWS + 10
    matrix = np.random.default_rng(5).normal(size=(n, 3)).astype(np.float32)
    keys = [f"k{i}" for i in range(n)]
    parts = ["p1" if i % 2 else "default" for i in range(n)]
    meta = [{"i": i, "s": "é\u00e9"} if i % 4 else None for i in range(n)]
    assert space.multiset(keys, matrix, meta, parts) == n
    stored = np.stack([space.get(f"k{i}", partition=parts[i]) for i in (0, 1, 7, n - 1)])
    expected = matrix[[0, 1, 7, n - 1]].astype(dtype).astype(np.float32)  # float16 rounds
    assert np.array_equal(stored, expected)
    assert space.get_metadata("k5", partition="p1") == {"i": 5, "s": "éé"}
    assert space.get_metadata("k4") is None and space.count() == n
    assert space.info()["index_state"] == "present"
    assert space.nearest_neighbors(1, vector=matrix[8], partition="default")[0].key == "k8"


def test_a_failed_or_refused_bulk_load_leaves_the_trigger_on_and_nothing_written(
    make_space: Callable[..., eh.Space],
) -> None:
    space = make_space(dims=4)
    n = rows_module.BULK_REBUILD_ROWS + 10
    matrix = np.random.default_rng(4).random((n, 4)).astype(np.float32)

    def stop(done: int) -> None:
        raise RuntimeError("stopped mid-load")

    with pytest.raises(RuntimeError, match="mid-load"):
        space.multiset([f"k{i}" for i in range(n)], matrix, progress=stop)
    assert len(space) == 0 and _row_trigger_states(space) == {"O"} and _row_security_forced(space)
    space.hub.freeze_space(space.name)
    with pytest.raises(eh.SpaceFrozen, match=space.name):
        space.multiset([f"k{i}" for i in range(n)], matrix)
    assert len(space) == 0 and _row_trigger_states(space) == {"O"} and _row_security_forced(space)
