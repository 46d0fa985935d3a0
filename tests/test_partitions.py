"""Partitions: isolation, sub-indices (shown with EXPLAIN), global search, lifecycle, CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from psycopg import sql

import embeddinghub as eh
from embeddinghub.cli import main
from embeddinghub.search import knn_query
from embeddinghub.storage import DATA_SCHEMA

MakeSpace = Callable[..., eh.Space]


def distances(matrix: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    if metric == "l2":
        return np.linalg.norm(matrix - query, axis=1)  # type: ignore[no-any-return]
    if metric == "cosine":
        norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(query)
        return 1 - (matrix @ query) / norms  # type: ignore[no-any-return]
    return -(matrix @ query)  # type: ignore[no-any-return]


def fill(space: eh.Space, parts: dict[str, int], dims: int, seed: int = 0) -> dict[str, Any]:
    """`rows` per partition (keys `<part>-<i>`); returns {partition: (keys, matrix)}."""
    rng = np.random.default_rng(seed)
    out = {}
    for part, rows in parts.items():
        if part != "default":
            space.create_partition(part)
        keys = [f"{part}-{i}" for i in range(rows)]
        matrix = rng.normal(size=(rows, dims)).astype(np.float32)
        space.multiset(keys, matrix, partition=part)
        out[part] = (keys, matrix)
    return out


def partition_tables(hub: eh.Hub, space: eh.Space) -> dict[str, str]:
    """{partition name: its table name}, from the catalog."""
    rows = hub.execute(
        "SELECT name, id FROM embeddinghub.partitions WHERE space_id = %s", (space.id,)
    )
    return {name: f"s{space.id}_p{pid}" for name, pid in rows}


def indexes_of(hub: eh.Hub, table: str) -> dict[str, str]:
    """{index name: access method} of a table, from pg_class."""
    rows = hub.execute(
        "SELECT i.relname, am.amname FROM pg_index x"
        " JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid"
        " JOIN pg_namespace n ON n.oid = t.relnamespace JOIN pg_am am ON am.oid = i.relam"
        " WHERE n.nspname = %s AND t.relname = %s",
        (DATA_SCHEMA, table),
    )
    return dict(rows)  # type: ignore[arg-type]


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes.extend(plan_nodes(child))
    return nodes


# -- isolation --------------------------------------------------------------------------
def test_a_key_in_one_partition_never_appears_in_a_search_of_another(make_space: MakeSpace) -> None:
    space = make_space(dims=4)
    data = fill(space, {"a": 40, "b": 40}, dims=4)
    a_keys, a_matrix = data["a"]
    # Query with A's own vectors: the best matches are in A, yet a search of B never sees them.
    for hits in space.multi_nearest_neighbors(10, vectors=a_matrix[:10], partition="b"):
        assert len(hits) == 10
        assert {h.partition for h in hits} == {"b"}
        assert not {h.key for h in hits} & set(a_keys)
    hits = space.nearest_neighbors(5, vector=a_matrix[0], partition="a")
    assert hits[0].key == a_keys[0] and hits[0].distance == pytest.approx(0, abs=1e-6)
    # where= combines with partition=.
    space.set("b-tagged", a_matrix[0], metadata={"t": 1}, partition="b")
    hits = space.nearest_neighbors(5, vector=a_matrix[0], partition="b", where={"t": 1})
    assert [(h.key, h.partition) for h in hits] == [("b-tagged", "b")]


def test_the_same_key_in_two_partitions(make_space: MakeSpace) -> None:
    space = make_space(dims=2)
    space.create_partition("a")
    space.create_partition("b")
    space.set("x", [1, 0], metadata={"p": "a"}, partition="a")
    space.set("x", [0, 1], metadata={"p": "b"}, partition="b")
    np.testing.assert_array_equal(space.get("x", partition="a"), [1, 0])
    np.testing.assert_array_equal(space.get("x", partition="b"), [0, 1])
    np.testing.assert_array_equal(space.multiget(["x"], partition="b"), [[0, 1]])
    assert "x" not in space  # `in` looks at the default partition
    hits = space.nearest_neighbors(5, vector=[1, 1])
    assert sorted((h.partition, h.key) for h in hits) == [("a", "x"), ("b", "x")]
    # By key: the key's own row is left out, its twin in the other partition is not.
    hits = space.nearest_neighbors(5, key="x", partition="a")
    assert hits == []
    space.delete("x", partition="a")
    with pytest.raises(eh.KeyNotFound, match="'x'.*partition 'a'"):
        space.get("x", partition="a")
    np.testing.assert_array_equal(space.get("x", partition="b"), [0, 1])
    assert space.get_metadata("x", partition="b") == {"p": "b"}


def test_partition_scoped_reads_and_deletes(make_space: MakeSpace) -> None:
    space = make_space(dims=2)
    data = fill(space, {"default": 3, "a": 5, "b": 2}, dims=2)
    assert [k for k, _ in space.iterator(partition="a")] == sorted(data["a"][0])
    assert len(list(space.iterator())) == 10
    assert space.count(partition="a") == 5 and len(space) == 10
    with pytest.raises(eh.KeyNotFound, match="'a-0'.*partition 'b'"):
        space.delete("a-0", partition="b")
    with pytest.raises(eh.KeyNotFound):
        space.multidelete(["a-0", "nope"], partition="a")
    assert space.count(partition="a") == 5  # a failed batch deletes nothing
    assert space.multidelete(["a-0", "a-1"], partition="a") == 2
    assert space.delete_all(partition="b") == 2
    listed = {p["name"]: p["rows"] for p in space.list_partitions()}
    assert listed == {"default": 3, "a": 3, "b": 0}


# -- sub-indices --------------------------------------------------------------------------
def test_dropping_a_partition_drops_its_rows_and_its_indexes(hub: eh.Hub, make_space: MakeSpace) -> None:
    space = make_space(dims=4)
    fill(space, {"default": 5, "keep": 20, "gone": 20}, dims=4)
    tables = partition_tables(hub, space)
    gone = tables["gone"]
    before = indexes_of(hub, gone)
    # Its own HNSW sub-index, metadata GIN and primary key (btree), at least.
    assert list(before.values()).count("hnsw") == 1 and {"gin", "btree"} <= set(before.values())
    space.drop_partition("gone")
    assert hub.execute("SELECT to_regclass(%s)", (f"{DATA_SCHEMA}.{gone}",)) == [(None,)]
    for index in before:
        assert hub.execute("SELECT count(*) FROM pg_class WHERE relname = %s", (index,)) == [(0,)]
    assert hub.execute(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
        (DATA_SCHEMA, gone),
    ) == [(0,)]
    assert {p["name"] for p in space.list_partitions()} == {"default", "keep"}
    assert len(space) == 25
    assert all(h.partition != "gone" for h in space.nearest_neighbors(30, vector=np.zeros(4)))
    kept = sorted(indexes_of(hub, tables["keep"]).values())
    assert kept == sorted(indexes_of(hub, tables["default"]).values()) == sorted(before.values())
    with pytest.raises(eh.PartitionNotFound, match="'gone'"):
        space.set("k", np.zeros(4), partition="gone")
    with pytest.raises(eh.PartitionNotFound, match="'gone'"):
        space.nearest_neighbors(3, vector=np.zeros(4), partition="gone")
    with pytest.raises(eh.PartitionNotFound, match="'gone'"):
        space.drop_partition("gone")
    space.create_partition("gone")  # the name can be used again, empty
    assert space.count(partition="gone") == 0


def explain(hub: eh.Hub, space: eh.Space, part: str | None, force: bool = True) -> dict[str, Any]:
    """The JSON plan of the search `nearest_neighbors` runs. On a few rows the planner
    rightly prefers reading the table and sorting (exact, and cheap there), so `force`
    switches those plans off: what is left is the ordered HNSW scan."""
    conditions: list[sql.Composable] = [] if part is None else [sql.SQL("partition = %(part)s")]
    query = knn_query(space.tables, 5, conditions=conditions)
    params: dict[str, Any] = {"q": np.ones(space.dims, dtype=np.float32)}
    if part is not None:
        params["part"] = part
    with hub.conn.transaction():
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort") if force else ():
            hub.conn.execute(sql.SQL("SET LOCAL {} = off").format(sql.Identifier(setting)))
        row = hub.conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) ") + query, params).fetchone()
    assert row is not None
    return row[0][0]["Plan"]  # type: ignore[no-any-return]


def test_a_partition_search_touches_only_that_partitions_index(hub: eh.Hub, make_space: MakeSpace) -> None:
    space = make_space(dims=4)
    fill(space, {"default": 30, "a": 30, "b": 30}, dims=4)
    tables = partition_tables(hub, space)
    hnsw = {name: next(i for i, am in indexes_of(hub, t).items() if am == "hnsw")
            for name, t in tables.items()}
    nodes = plan_nodes(explain(hub, space, "b"))
    scans = [n for n in nodes if "Relation Name" in n]
    assert [(n["Node Type"], n["Relation Name"], n["Index Name"]) for n in scans] == [
        ("Index Scan", tables["b"], hnsw["b"])
    ]
    # Whatever plan the planner prefers, it reads no other partition.
    nodes = plan_nodes(explain(hub, space, "b", force=False))
    assert {n["Relation Name"] for n in nodes if "Relation Name" in n} == {tables["b"]}
    # Without partition=: one index scan per partition, merged in distance order.
    nodes = plan_nodes(explain(hub, space, None))
    assert nodes[1]["Node Type"] == "Merge Append"
    scans = [n for n in nodes if "Relation Name" in n]
    assert sorted(n["Index Name"] for n in scans) == sorted(hnsw.values())
    assert {n["Node Type"] for n in scans} == {"Index Scan"}


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_global_search_equals_exact_search(make_space: MakeSpace, metric: str) -> None:
    space = make_space(dims=8, metric=metric)
    data = fill(space, {"default": 60, "a": 80, "b": 7, "c": 50}, dims=8, seed=3)
    keys = [(part, k) for part, (ks, _) in data.items() for k in ks]
    matrix = np.vstack([m for _, m in data.values()])
    queries = np.random.default_rng(4).normal(size=(20, 8)).astype(np.float32)
    for k in (1, 5, 10):
        results = space.multi_nearest_neighbors(k, vectors=queries)
        for query, hits in zip(queries, results, strict=True):
            dist = distances(matrix, query, metric)
            order = np.argsort(dist, kind="stable")[:k]
            assert [(h.partition, h.key) for h in hits] == [keys[i] for i in order]
            np.testing.assert_allclose([h.distance for h in hits], dist[order], rtol=1e-4, atol=1e-5)
    # Within one partition: exact too.
    part_keys, part_matrix = data["a"]
    for query in queries[:5]:
        order = np.argsort(distances(part_matrix, query, metric), kind="stable")[:10]
        hits = space.nearest_neighbors(10, vector=query, partition="a")
        assert [h.key for h in hits] == [part_keys[i] for i in order]


def test_asking_for_more_than_ef_search_still_returns_num(make_space: MakeSpace) -> None:
    space = make_space(dims=4, ef_search=10)
    fill(space, {"default": 100, "a": 100}, dims=4)
    assert len(space.nearest_neighbors(60, vector=np.ones(4), partition="a")) == 60
    hits = space.nearest_neighbors(150, vector=np.ones(4))
    assert len(hits) == 150 and [h.distance for h in hits] == sorted(h.distance for h in hits)
    assert len(space.nearest_neighbors(500, vector=np.ones(4))) == 200


# -- lifecycle and errors ---------------------------------------------------------------------
def test_unknown_partition_writes_are_refused(make_space: MakeSpace) -> None:
    space = make_space(dims=2)
    with pytest.raises(eh.PartitionNotFound, match="'nope'.*space '" + space.name):
        space.set("k", [0, 0], partition="nope")
    with pytest.raises(eh.PartitionNotFound, match="'nope'"):
        space.multiset(["a", "b"], [[0, 0], [1, 1]], partition=["default", "nope"])
    assert len(space) == 0  # the whole batch failed
    with pytest.raises(eh.PartitionNotFound):
        space.drop_partition("nope")
    with pytest.raises(eh.PartitionNotFound):
        space.centroid(partition="nope")
    assert space.nearest_neighbors(3, vector=[0, 0]) == []
    with pytest.raises(eh.InvalidArgument, match="partition name"):
        space.create_partition("bad name!")
    with pytest.raises(eh.InvalidArgument, match="partition name"):
        space.set("k", [0, 0], partition="")
    space.create_partition("p1")
    with pytest.raises(eh.InvalidArgument, match="already exists"):
        space.create_partition("p1")
    with pytest.raises(eh.InvalidArgument, match="default"):
        space.drop_partition("default")


def test_auto_partition_creates_partitions_on_write(hub: eh.Hub, make_space: MakeSpace) -> None:
    space = make_space(dims=2, auto_partition=True)
    space.set("k", [1, 0], partition="new")
    space.multiset(["a", "b", "c"], [[0, 1], [1, 1], [2, 2]], partition=["x", "y", "x"])
    assert {p["name"]: p["rows"] for p in space.list_partitions()} == {
        "default": 0, "new": 1, "x": 2, "y": 1
    }
    tables = partition_tables(hub, space)
    assert "hnsw" in indexes_of(hub, tables["x"]).values()  # a created partition is indexed
    assert [h.key for h in space.nearest_neighbors(5, vector=[0, 1], partition="x")] == ["a", "c"]
    # Reads never create partitions.
    with pytest.raises(eh.PartitionNotFound):
        space.nearest_neighbors(3, vector=[0, 0], partition="ghost")
    assert "ghost" not in {p["name"] for p in space.list_partitions()}


# -- CLI ------------------------------------------------------------------------------------
def test_cli_partition_commands(dsn: str, make_space: MakeSpace) -> None:
    space = make_space(dims=2)
    runner = CliRunner()

    def cli(*args: str) -> Any:
        return runner.invoke(main, ["--dsn", dsn, *args], catch_exceptions=False)

    assert cli("partition", "create", space.name, "en").exit_code == 0
    space.multiset(["a", "b", "c"], [[1, 0], [0, 1], [1, 1]], partition="en")
    result = cli("partition", "list", space.name, "--json")
    assert result.exit_code == 0
    assert [(p["name"], p["rows"]) for p in json.loads(result.output)] == [("default", 0), ("en", 3)]
    table = cli("partition", "list", space.name, "--table")
    assert table.exit_code == 0 and "en" in table.output and "rows" in table.output

    result = cli("avg", space.name, "a", "b", "-p", "en", "--weights", "[3, 1]", "--json")
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(json.loads(result.output)["vector"], [0.75, 0.25], rtol=1e-6)

    result = cli("recommend", space.name, "-P", "a", "-k", "5", "-p", "en", "--json")
    assert result.exit_code == 0, result.output
    assert [h["key"] for h in json.loads(result.output)] == ["c", "b"]
    result = cli("recommend", space.name, "-P", "a", "-p", "en", "--where", '{"x": {"$bad": 1}}')
    assert result.exit_code != 0 and "'$bad'" in result.output
    assert "Traceback" not in result.output

    result = cli("partition", "create", space.name, "en")
    assert result.exit_code != 0 and "already exists" in result.output
    result = cli("avg", space.name, "zz", "-p", "en")
    assert result.exit_code != 0 and "'zz'" in result.output
    result = cli("partition", "drop", space.name, "nope", "--yes")
    assert result.exit_code != 0 and "'nope'" in result.output
    assert cli("partition", "drop", space.name, "en").exit_code != 0  # not confirmed
    assert space.count(partition="en") == 3
    result = cli("partition", "drop", space.name, "en", "--yes")
    assert result.exit_code == 0 and "dropped" in result.output
    assert [p["name"] for p in space.list_partitions()] == ["default"]
    for group in (["partition"], ["avg"], ["recommend"]):
        help_text = cli(*group, "--help").output
        assert "Example:" in help_text


def test_frozen_space_refuses_partition_changes(make_space) -> None:  # type: ignore[no-untyped-def]
    space = make_space(dims=2)
    space.create_partition("empty")
    space.freeze()
    with pytest.raises(eh.SpaceFrozen, match="partitions cannot change"):
        space.create_partition("new")
    with pytest.raises(eh.SpaceFrozen, match="partitions cannot change"):
        space.drop_partition("empty")
    assert sorted(p["name"] for p in space.list_partitions()) == ["default", "empty"]


def test_key_partition_searches_around_a_key_of_another_partition(make_space) -> None:  # type: ignore[no-untyped-def]
    space = make_space(dims=2)
    space.create_partition("a")
    space.create_partition("b")
    space.multiset({"q": [1, 0], "a1": [1, 0.1]}, partition="a")
    space.multiset({"b1": [1, 0.05], "b2": [0, 1]}, partition="b")
    everywhere = space.nearest_neighbors(2, key="q", key_partition="a")
    assert [(h.partition, h.key) for h in everywhere] == [("b", "b1"), ("a", "a1")]
    only_b = space.nearest_neighbors(5, key="q", key_partition="a", partition="b")
    assert [h.key for h in only_b] == ["b1", "b2"]
    version = space.snapshot()
    at = space.as_of(version.number).nearest_neighbors(1, key="q", key_partition="a")
    assert [h.key for h in at] == ["b1"]
    with pytest.raises(eh.KeyNotFound, match="'q'.*partition 'b'"):
        space.nearest_neighbors(1, key="q", key_partition="b")
