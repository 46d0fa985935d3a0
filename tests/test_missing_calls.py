"""Calls users of other embedding stores look for: search results with vectors, metadata
updates, count and delete by filter, paged searches, rename and unfreeze — API and CLI."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import numpy as np
import pytest
from click.testing import Result
from psycopg import sql

import embeddinghub as eh


@pytest.fixture
def filled(space: eh.Space) -> eh.Space:
    space.create_partition("p")
    keys = [f"k{i}" for i in range(10)]
    space.multiset(keys, np.array([[i, 0, 0, 0] for i in range(10)], dtype=np.float32),
                   metadata=[{"even": i % 2 == 0, "i": i} for i in range(10)])
    space.set("k0", [0, 0, 0, 0.5], partition="p", metadata={"even": True})
    return space


def test_include_vectors(filled: eh.Space) -> None:
    hits = filled.nearest_neighbors(3, vector=[0, 0, 0, 0], include_vectors=True)
    assert [(h.key, h.partition) for h in hits] == [("k0", "default"), ("k0", "p"), ("k1", "default")]
    assert [h.vector.tolist() for h in hits if h.vector is not None] == [
        [0, 0, 0, 0], [0, 0, 0, 0.5], [1, 0, 0, 0]]
    assert all(h.vector is None for h in filled.nearest_neighbors(3, vector=[0, 0, 0, 0]))
    many = filled.multi_nearest_neighbors(1, vectors=[[9, 0, 0, 0], [5, 0, 0, 0]], include_vectors=True)
    assert [(m[0].key, m[0].vector.tolist()) for m in many if m[0].vector is not None] == [
        ("k9", [9, 0, 0, 0]), ("k5", [5, 0, 0, 0])]


def test_offset_pages_through_results(filled: eh.Space) -> None:
    every = filled.nearest_neighbors(11, vector=[0, 0, 0, 0])
    pages = [filled.nearest_neighbors(4, vector=[0, 0, 0, 0], offset=o) for o in (0, 4, 8)]
    assert [h for page in pages for h in page] == every
    assert len(pages[2]) == 3  # the last page is short
    assert filled.nearest_neighbors(4, vector=[0, 0, 0, 0], offset=50) == []
    with pytest.raises(eh.InvalidArgument, match="offset"):
        filled.nearest_neighbors(4, vector=[0, 0, 0, 0], offset=-1)


def test_update_metadata_leaves_the_vector(filled: eh.Space) -> None:
    before = filled.get("k3")
    filled.update_metadata("k3", {"tag": "new"})
    assert filled.get_metadata("k3") == {"tag": "new"} and (filled.get("k3") == before).all()
    filled.update_metadata("k3", {"more": 1}, merge=True)
    assert filled.get_metadata("k3") == {"tag": "new", "more": 1}
    filled.update_metadata("k0", {"in": "p"}, partition="p")
    assert filled.get_metadata("k0", partition="p") == {"in": "p"}
    with pytest.raises(eh.KeyNotFound, match="'nope'"):
        filled.update_metadata("nope", {})
    v = filled.snapshot()
    filled.update_metadata("k3", None)
    assert filled.get_metadata("k3") is None
    assert filled.as_of(v.number).get_metadata("k3") == {"tag": "new", "more": 1}  # versioned


def test_count_and_delete_where(filled: eh.Space) -> None:
    assert filled.count(where={"even": True}) == 6
    assert filled.count("p", where={"even": True}) == 1
    assert filled.count(where={"i": {"$gte": 7}}) == 3
    assert filled.delete_where({"i": {"$gte": 7}}) == 3
    assert len(filled) == 8 and "k7" not in filled
    assert filled.delete_where({"even": True}, partition="p") == 1
    assert filled.count("p") == 0 and filled.count(where={"even": True}) == 4
    with pytest.raises(eh.InvalidArgument, match="delete_all"):
        filled.delete_where({})


def test_rename_space_keeps_everything_and_its_view(hub: eh.Hub, filled: eh.Space) -> None:
    old, new = filled.name, f"renamed_{uuid.uuid4().hex[:8]}"
    filled.snapshot(tag="t")
    try:
        renamed = hub.rename_space(old, new)
        assert len(renamed) == 11 and renamed.versions()[0].tag == "t"
        assert not hub.has_space(old)
        view = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("embeddinghub_views", new))
        assert hub.execute(view)[0][0] == 11
        with pytest.raises(eh.SpaceNotFound):
            hub.rename_space(old, "x")
        other = hub.create_space(old, dims=2)
        with pytest.raises(eh.SpaceExists):
            hub.rename_space(new, other.name)
        with pytest.raises(eh.InvalidArgument):
            hub.rename_space(new, "bad name")
        hub.delete_space(old)
    finally:
        if hub.has_space(new):
            hub.rename_space(new, old)  # so the fixture drops it


def test_unfreeze(hub: eh.Hub, filled: eh.Space) -> None:
    filled.freeze()
    with pytest.raises(eh.SpaceFrozen):
        filled.set("x", [1, 1, 1, 1])
    hub.unfreeze_space(filled.name)
    filled.set("x", [1, 1, 1, 1])
    assert "x" in filled and not hub.get_space(filled.name).info()["frozen"]
    with pytest.raises(eh.SpaceNotFound):
        hub.unfreeze_space("no-such-space")
    assert hub.execute("SELECT embeddinghub.freeze(%s), embeddinghub.unfreeze(%s)",
                       (filled.name, filled.name))  # the SQL functions too


def test_cli_missing_calls(cli: Callable[..., Result], filled: eh.Space, hub: eh.Hub) -> None:
    name = filled.name
    hits = json.loads(cli("nn", name, "--vector", "[0,0,0,0]", "-k", "2", "--offset", "1",
                          "--include-vectors", "--json").stdout)
    assert [(h["rank"], h["key"], h["partition"], h["vector"]) for h in hits] == [
        (2, "k0", "p", [0, 0, 0, 0.5]), (3, "k1", "default", [1, 0, 0, 0])]
    assert json.loads(cli("count", name, "--where", '{"even": true}', "--json").stdout)["rows"] == 6
    assert "set the metadata of 'k1'" in cli("metadata", name, "k1", '{"x": 1}').stdout
    cli("metadata", name, "k1", '{"y": 2}', "--merge")
    assert filled.get_metadata("k1") == {"x": 1, "y": 2}
    assert "deleted 1 row of space" in cli("delete", name, "k1", "nope").stdout
    assert "'nope'" in cli("delete", name, "k2", "nope", "--strict", code=1).stderr
    out = cli("delete", name, "--where", '{"even": true}', input="n\n", code=1)
    assert "Delete 6 rows" in out.output and filled.count(where={"even": True}) == 6
    assert "deleted 6 rows" in cli("delete", name, "--where", '{"even": true}', "--yes").stdout
    cli("space", "freeze", name)
    assert "unfroze space" in cli("space", "unfreeze", name).stdout
    new = f"{name}-r"
    assert f"renamed space {name!r} to {new!r}" in cli("space", "rename", name, new).stdout
    hub.rename_space(new, name)
