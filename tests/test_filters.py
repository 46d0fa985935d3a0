"""Metadata filters: every operator against a Python reference, hostile input, selectivity."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from psycopg import sql

import embeddinghub as eh
from embeddinghub.filters import MAX_IN_EXPANDED, compile_where

MISSING = object()

# Rows chosen so every operator meets: numbers (int/float, equal as 1 == 1.0), strings,
# bools (never equal to numbers), null, missing fields, nested objects, arrays, and
# fields whose type differs from row to row.
METADATA: list[dict[str, Any] | None] = [
    {"lang": "en", "year": 2020, "score": 0.5, "draft": False, "tags": ["a", "b"]},
    {"lang": "en", "year": 2021, "score": 1.0, "draft": True, "author": {"name": "ann"}},
    {"lang": "fr", "year": 2019, "score": 1, "author": {"name": "bob", "age": 40}},
    {"lang": "de", "year": "2022", "score": None, "author": "carl"},
    {"lang": "fr", "year": 2023.5, "draft": None, "author": {"name": "Ann"}},
    {"lang": "EN", "year": True, "score": -3},
    {"year": 1999, "score": 7.25, "author": {"name": {"first": "dee"}}},
    {"lang": "", "year": 0, "tags": "a"},
    {"lang": "ünï", "year": -5, "score": 1e10, "draft": False},
    {},
    None,
    {"lang": "en", "year": 2020, "score": 2, "draft": False, "nested": {"deep": {"x": 1}}},
]


def lookup(meta: dict[str, Any] | None, path: str) -> Any:
    value: Any = meta
    for segment in path.split("."):
        if not isinstance(value, dict) or segment not in value:
            return MISSING
        value = value[segment]
    return value


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def json_eq(v: Any, x: Any) -> bool:
    if v is MISSING:
        return False
    if x is None or isinstance(x, bool):
        return v is x if x is None else isinstance(v, bool) and v == x
    if is_number(x):
        return is_number(v) and v == x
    return isinstance(v, str) and v == x


COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le,
}


def check(v: Any, op: str, x: Any) -> bool:
    if op == "$eq":
        return json_eq(v, x)
    if op == "$ne":
        return not json_eq(v, x)
    if op == "$in":
        return any(json_eq(v, y) for y in x)
    if op == "$nin":
        return not any(json_eq(v, y) for y in x)
    if op == "$exists":
        return (v is not MISSING) == x
    if is_number(x):
        return is_number(v) and COMPARE[op](v, x)
    return isinstance(v, str) and COMPARE[op](v, x)


def reference(meta: dict[str, Any] | None, where: dict[str, Any]) -> bool:
    """The documented semantics, in Python."""
    for field, cond in where.items():
        if field == "$and":
            ok = all(reference(meta, f) for f in cond)
        elif field == "$or":
            ok = any(reference(meta, f) for f in cond)
        elif isinstance(cond, dict):
            ok = all(check(lookup(meta, field), op, x) for op, x in cond.items())
        else:
            ok = json_eq(lookup(meta, field), cond)
        if not ok:
            return False
    return True


FILTERS: list[dict[str, Any]] = [
    {"lang": "en"},
    {"lang": {"$eq": "en"}},
    {"lang": "EN"},
    {"lang": ""},
    {"lang": "ünï"},
    {"year": 2020},
    {"year": 2020.0},
    {"year": "2022"},
    {"year": True},
    {"score": 1},
    {"score": 1.0},
    {"score": None},
    {"draft": False},
    {"draft": None},
    {"draft": {"$ne": False}},
    {"lang": {"$ne": "en"}},
    {"score": {"$ne": None}},
    {"lang": {"$in": ["en", "fr"]}},
    {"year": {"$in": [2020, "2022", True]}},
    {"score": {"$in": [None, 1]}},
    {"lang": {"$in": []}},
    {"lang": {"$nin": ["en", "fr"]}},
    {"lang": {"$nin": []}},
    {"year": {"$gt": 2020}},
    {"year": {"$gte": 2020}},
    {"year": {"$lt": 2020}},
    {"year": {"$lte": 0}},
    {"year": {"$gt": 2019.5, "$lt": 2023}},
    {"score": {"$gte": -3, "$lte": 1}},
    {"score": {"$gt": 1e9}},
    {"lang": {"$gt": "en"}},
    {"lang": {"$lt": "en"}},
    {"lang": {"$gte": "EN", "$lte": "en"}},
    {"year": {"$gt": "2000"}},
    {"author.name": "ann"},
    {"author.name": {"$gt": "a"}},
    {"author.name.first": "dee"},
    {"author.age": {"$gte": 40}},
    {"nested.deep.x": 1},
    {"author": {"$exists": True}},
    {"author": {"$exists": False}},
    {"author.name": {"$exists": True}},
    {"draft": {"$exists": True}},
    {"tags": {"$exists": True}},
    {"tags": "a"},
    {"$and": [{"lang": "en"}, {"year": {"$gte": 2021}}]},
    {"$or": [{"lang": "fr"}, {"score": {"$lt": 0}}]},
    {"$or": [{"$and": [{"lang": "en"}, {"draft": True}]}, {"author.name": "bob"}]},
    {"lang": "en", "year": 2020},
    {"$and": [{"lang": {"$ne": "en"}}, {"$or": [{"year": {"$exists": False}}, {"year": 0}]}]},
    {"missing.deeper": {"$ne": 1}},
    {"year": {"$in": list(range(1990, 1990 + MAX_IN_EXPANDED + 10))}},  # the = ANY form
    {"year": {"$nin": list(range(1990, 1990 + MAX_IN_EXPANDED + 10))}},
    {},
]


@pytest.fixture(scope="module")
def meta_space(hub: eh.Hub) -> Any:
    name = "t_filters_reference"
    if hub.has_space(name):
        hub.delete_space(name)
    space = hub.create_space(name, dims=2)
    rng = np.random.default_rng(1)
    space.multiset(
        [f"r{i}" for i in range(len(METADATA))],
        rng.normal(size=(len(METADATA), 2)),
        metadata=METADATA,
    )
    yield space
    hub.delete_space(name)


@pytest.mark.parametrize("where", FILTERS, ids=[repr(f)[:60] for f in FILTERS])
def test_operator_matches_reference(meta_space: eh.Space, where: dict[str, Any]) -> None:
    hits = meta_space.nearest_neighbors(len(METADATA), vector=[0.0, 0.0], where=where)
    got = {h.key for h in hits}
    want = {f"r{i}" for i, m in enumerate(METADATA) if reference(m, where)}
    assert got == want
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)


def test_every_operator_is_covered() -> None:
    used = {op for f in FILTERS for cond in f.values() if isinstance(cond, dict) for op in cond}
    used |= {k for f in FILTERS for k in f if k.startswith("$")}
    assert used >= {"$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists",
                    "$and", "$or"}


HOSTILE = [
    "'; DROP TABLE embeddinghub.spaces; --",
    'a"b',
    "back\\slash",
    "%(q)s",
    "%s %% {0} {}",
    "not $where",
    "ключ 🔑 漢字",
    "' OR '1'='1",
    ") OR TRUE --",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_keys_and_values_are_data(hub: eh.Hub, make_space: Callable[..., eh.Space],
                                          text: str) -> None:
    space = make_space(dims=2)

    def nest(value: Any) -> dict[str, Any]:  # dots in a field name walk into objects
        for segment in reversed(text.split(".")):
            value = {segment: value}
        return value  # type: ignore[no-any-return]

    space.multiset(
        ["hit", "miss", "other"],
        [[1, 0], [0, 1], [1, 1]],
        metadata=[nest(text), nest("x"), {"k": text}],
    )
    spaces_before = hub.execute("SELECT count(*) FROM embeddinghub.spaces")
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({text: text}, {"hit"}),
        ({text: {"$in": [text, "y"]}}, {"hit"}),
        ({text: {"$ne": text}}, {"miss", "other"}),
        ({text: {"$gte": text}}, {"hit", "miss"} if "x" >= text else {"hit"}),
        ({text: {"$exists": True}}, {"hit", "miss"}),
        ({"k": text}, {"other"}),
        ({"$or": [{"k": {"$eq": text}}, {text: "x"}]}, {"other", "miss"}),
    ]
    for where, want in cases:
        got = {h.key for h in space.nearest_neighbors(3, vector=[0, 0], where=where)}
        assert got == want, where
    # The text travelled as parameters only: it never appears in the SQL itself.
    cond, params = compile_where(space.name, {text: {"$in": [text]}, "k": {"$gt": text}})
    assert text not in cond.as_string(hub.conn)
    assert set(params) <= {f"f{i}" for i in range(len(params))}
    assert hub.execute("SELECT count(*) FROM embeddinghub.spaces") == spaces_before
    assert len(space) == 3


@pytest.mark.parametrize(
    ("where", "fragment"),
    [
        ({"$where": "1 = 1"}, "'$where'"),
        ({"lang": {"$regex": "e.*"}}, "'$regex'"),
        ({"lang": {"$eq": "en", "$foo": 1}}, "'$foo'"),
        ({"$nor": [{"a": 1}]}, "'$nor'"),
        ({"lang": ["en"]}, "JSON scalars"),
        ({"lang": {"$in": "en"}}, "$in takes a list"),
        ({"lang": {"$in": [["en"]]}}, "JSON scalars"),
        ({"lang": {"$exists": 1}}, "$exists takes true or false"),
        ({"year": {"$gt": None}}, "a number or a string"),
        ({"year": {"$gt": True}}, "a number or a string"),
        ({"year": {"$lt": [1]}}, "a number or a string"),
        ({"score": float("nan")}, "not finite"),
        ({"score": {"$gt": float("inf")}}, "not finite"),
        ({"lang": "a\x00b"}, "NUL"),
        ({"a\x00b": 1}, "NUL"),
        ({"lang": "\ud800"}, "UTF-8"),
        ({"lang": {}}, "only operators"),
        ({"author": {"name": "ann"}}, "use dots for nested fields"),
        ({"a..b": 1}, "bad field path"),
        ({".a": 1}, "bad field path"),
        ({"$and": []}, "non-empty list"),
        ({"$or": {"a": 1}}, "non-empty list"),
        ({"$and": ["lang"]}, "expected a dict"),
        ({1: "x"}, "field names must be strings"),
    ],
)
def test_bad_filters_raise_invalid_argument(meta_space: eh.Space, where: Any,
                                            fragment: str) -> None:
    with pytest.raises(eh.InvalidArgument) as info:
        meta_space.nearest_neighbors(3, vector=[0, 0], where=where)
    assert meta_space.name in str(info.value)
    assert fragment in str(info.value)


def test_deep_nesting_is_refused(meta_space: eh.Space) -> None:
    where: dict[str, Any] = {"lang": "en"}
    for _ in range(40):
        where = {"$and": [where]}
    with pytest.raises(eh.InvalidArgument, match="nested deeper"):
        meta_space.nearest_neighbors(3, vector=[0, 0], where=where)


def test_placeholders_never_collide_with_the_search_query() -> None:
    cond, params = compile_where("s", {"a": 1, "b": {"$in": [1, 2]}, "c.d": {"$gt": 3}})
    assert params and all(name.startswith("f") for name in params)
    assert not {"q", "k", "part"} & set(params)
    assert isinstance(cond, sql.Composable)


@pytest.fixture(scope="module")
def selective_space(hub: eh.Hub) -> Any:
    """2,000 rows of which 12 are `rare` (with `rank` 0..11): a filter keeping 0.6 %."""
    name = "t_filters_selective"
    if hub.has_space(name):
        hub.delete_space(name)
    space = hub.create_space(name, dims=8)
    rng = np.random.default_rng(5)
    matrix = rng.normal(size=(2000, 8)).astype(np.float32)
    rare = set(rng.choice(2000, size=12, replace=False).tolist())
    ranks = iter(range(12))
    meta = [{"rare": True, "rank": next(ranks)} if i in rare else {"rare": False, "rank": -1}
            for i in range(2000)]
    space.multiset([f"k{i}" for i in range(2000)], matrix, metadata=meta)
    yield space, matrix, sorted(rare)
    hub.delete_space(name)


@pytest.mark.parametrize(
    "where",
    [
        {"rare": True},
        {"rank": {"$gte": 0}},
        {"$or": [{"rank": {"$gt": 5}}, {"rank": {"$lte": 5, "$gte": 0}}]},
    ],
    ids=["equality (GIN)", "range (HNSW scan)", "or of ranges"],
)
def test_selective_filter_returns_num_exact_results(selective_space: Any, where: Any) -> None:
    space, matrix, rare = selective_space
    rng = np.random.default_rng(9)
    queries = rng.normal(size=(5, 8)).astype(np.float32)
    results = space.multi_nearest_neighbors(10, vectors=queries, where=where)
    recall = []
    for query, hits in zip(queries, results, strict=True):
        # num results, all matching, in exact distance order with exact distances.
        assert len(hits) == 10
        assert all(h.metadata["rare"] is True for h in hits)
        got = np.array([int(h.key[1:]) for h in hits])
        np.testing.assert_allclose(
            [h.distance for h in hits], np.linalg.norm(matrix[got] - query, axis=1), rtol=1e-5
        )
        assert [h.distance for h in hits] == sorted(h.distance for h in hits)
        dist = np.linalg.norm(matrix[rare] - query, axis=1)
        want = {rare[i] for i in np.argsort(dist)[:10]}
        recall.append(len(want & set(got.tolist())) / 10)
    assert np.mean(recall) >= 0.9


def test_filter_with_fewer_matches_than_num_returns_them_all(selective_space: Any) -> None:
    space, _, rare = selective_space
    hits = space.nearest_neighbors(10, vector=np.zeros(8), where={"rank": {"$gte": 9}})
    assert sorted(h.key for h in hits) == sorted(f"k{i}" for i in rare[9:])
    assert space.nearest_neighbors(10, vector=np.zeros(8), where={"rank": 99}) == []


def test_filter_by_key_excludes_the_key(selective_space: Any) -> None:
    space, _, rare = selective_space
    key = f"k{rare[0]}"
    hits = space.nearest_neighbors(20, key=key, where={"rare": True})
    assert len(hits) == 11 and key not in {h.key for h in hits}
    assert all(h.metadata["rare"] is True for h in hits)
