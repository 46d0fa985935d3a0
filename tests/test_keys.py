"""Keys and vectors: set/get/multiset/multiget/delete/iterate, upserts, bad input, atomicity."""

from __future__ import annotations

import numpy as np
import pytest

import embeddinghub as eh
from embeddinghub.rows import ITERATOR_PAGE

HOSTILE_KEYS = [
    "x'; DROP TABLE embeddinghub.spaces; --",
    'double "quoted"',
    "semi;colon",
    "back\\slash",
    "ünïcødé 日本語 🙂",
    "new\nline\ttab",
    "%s %(q)s {}",
    "k" * 1000,
]


def test_set_get_roundtrip(space: eh.Space) -> None:
    space.set("a", [1, 2, 3, 4], metadata={"lang": "en", "n": 3})
    np.testing.assert_array_equal(space.get("a"), np.array([1, 2, 3, 4], dtype=np.float32))
    assert space.get("a").dtype == np.float32
    assert space.get_metadata("a") == {"lang": "en", "n": 3}


def test_set_is_an_upsert_that_replaces_the_row(space: eh.Space) -> None:
    space.set("a", [1, 1, 1, 1], metadata={"v": 1})
    space.set("a", [2, 2, 2, 2])
    np.testing.assert_array_equal(space.get("a"), [2, 2, 2, 2])
    assert space.get_metadata("a") is None
    assert len(space) == 1


def test_multiset_forms(space: eh.Space) -> None:
    assert space.multiset({"a": [1, 0, 0, 0], "b": [0, 1, 0, 0]}) == 2
    assert space.multiset(["c", "d"], np.eye(4, dtype=np.float32)[2:]) == 2
    assert space.multiset([("e", [1, 1, 0, 0]), ("f", np.ones(4))]) == 2
    assert space.multiset({}) == 0
    assert len(space) == 6
    np.testing.assert_array_equal(space.multiget(["d", "a"]), [[0, 0, 0, 1], [1, 0, 0, 0]])


def test_multiset_metadata_and_upsert(space: eh.Space) -> None:
    space.multiset(["a", "b"], np.zeros((2, 4)), metadata=[{"i": 0}, None])
    space.multiset(["b", "c"], np.ones((2, 4)), metadata=[{"i": 1}, {"i": 2}])
    assert len(space) == 3
    assert space.get_metadata("a") == {"i": 0}
    assert space.get_metadata("b") == {"i": 1}
    np.testing.assert_array_equal(space.get("b"), np.ones(4))


def test_multiget_order_and_missing(space: eh.Space) -> None:
    space.multiset({"a": [1] * 4, "b": [2] * 4, "c": [3] * 4})
    got = space.multiget(["c", "a", "b", "a"])
    np.testing.assert_array_equal(got[:, 0], [3, 1, 2, 1])
    with pytest.raises(eh.KeyNotFound, match="'zz'") as info:
        space.multiget(["a", "zz"])
    assert isinstance(info.value, KeyError)
    assert space.name in str(info.value)
    assert space.multiget([]).shape == (0, 4)


def test_get_missing_key(space: eh.Space) -> None:
    with pytest.raises(KeyError):
        space.get("missing")


def test_delete_multidelete_delete_all(space: eh.Space) -> None:
    space.multiset({k: [i] * 4 for i, k in enumerate("abcdef")})
    space.delete("a")
    assert "a" not in space and len(space) == 5
    with pytest.raises(eh.KeyNotFound, match="'a'"):
        space.delete("a")
    # strict: a batch with a missing key deletes nothing
    with pytest.raises(eh.KeyNotFound, match="'nope'"):
        space.multidelete(["b", "nope"], strict=True)
    assert "b" in space
    # by default the keys that exist are deleted and counted
    assert space.multidelete(["b", "nope"]) == 1
    assert "b" not in space
    assert space.multidelete(["c", "d"]) == 2
    assert space.delete_all() == 2
    assert len(space) == 0


def test_contains_and_len(space: eh.Space) -> None:
    assert len(space) == 0 and "a" not in space
    space.set("a", [0] * 4)
    assert "a" in space and len(space) == 1
    assert 42 not in space and "" not in space


def test_iterator_pages_through_everything(make_space) -> None:  # type: ignore[no-untyped-def]
    space = make_space(dims=2)
    n = ITERATOR_PAGE * 2 + 17
    keys = [f"k{i:05d}" for i in range(n)]
    matrix = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    space.multiset(keys, matrix)
    seen = list(space.iterator())
    assert [k for k, _ in seen] == sorted(keys)
    np.testing.assert_array_equal(np.stack([v for _, v in seen]), matrix)
    assert len(list(space)) == n


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_keys_are_stored_faithfully(space: eh.Space, key: str) -> None:
    space.set(key, [1, 2, 3, 4], metadata={key: key})
    assert key in space
    np.testing.assert_array_equal(space.get(key), [1, 2, 3, 4])
    assert space.get_metadata(key) == {key: key}
    assert [k for k, _ in space.iterator()] == [key]
    assert space.nearest_neighbors(1, vector=[1, 2, 3, 4])[0].key == key
    space.delete(key)
    assert len(space) == 0


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "empty"),
        ("k" * 10_000, "longer than"),
        ("nul\x00byte", "NUL"),
        (42, "strings"),
        (None, "strings"),
        ("\udcff", "UTF-8"),
    ],
)
def test_bad_keys_write_nothing(space: eh.Space, key: object, message: str) -> None:
    with pytest.raises(eh.InvalidArgument, match=message):
        space.set(key, [0] * 4)  # type: ignore[arg-type]
    with pytest.raises(eh.InvalidArgument, match=message):
        space.multiset(["ok", key], np.zeros((2, 4)))  # type: ignore[list-item]
    assert len(space) == 0


@pytest.mark.parametrize("vector", [[1, 2, 3], [1, 2, 3, 4, 5], [[1, 2, 3, 4]], [], 7.0])
def test_wrong_dims(space: eh.Space, vector: object) -> None:
    with pytest.raises(eh.DimensionMismatch, match=space.name):
        space.set("a", vector)
    assert len(space) == 0


def test_wrong_dims_in_batch_writes_nothing(space: eh.Space) -> None:
    with pytest.raises(eh.DimensionMismatch):
        space.multiset(["a", "b"], np.zeros((2, 5)))
    with pytest.raises(eh.DimensionMismatch):
        space.multiset({"a": [0] * 4, "b": [0] * 3})
    with pytest.raises(eh.InvalidArgument, match="2 keys but 3 vectors"):
        space.multiset(["a", "b"], np.zeros((3, 4)))
    assert len(space) == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_vectors(space: eh.Space, bad: float) -> None:
    with pytest.raises(eh.InvalidEmbedding, match="NaN or infinity"):
        space.set("a", [0, bad, 0, 0])
    matrix = np.zeros((10, 4))
    matrix[7, 2] = bad
    with pytest.raises(eh.InvalidEmbedding, match="#7"):
        space.multiset([f"k{i}" for i in range(10)], matrix)
    assert len(space) == 0


def test_finite_check_of_opposite_infinities_and_of_the_largest_values(space: eh.Space) -> None:
    with pytest.raises(eh.InvalidEmbedding, match="#1"):  # inf - inf: a NaN sum, caught
        space.multiset(["a", "b"], [[0, 0, 0, 0], [np.inf, -np.inf, 0, 0]])
    with pytest.raises(eh.InvalidEmbedding):
        space.nearest_neighbors(1, vector=[np.inf, -np.inf, 1, 1])
    big = float(np.finfo(np.float32).max)
    space.set("big", [big, big, big, big])  # finite, however large their sum
    assert space.get("big").tolist() == [big] * 4
    assert [n.key for n in space.nearest_neighbors(1, vector=[big, big, big, -big])] == ["big"]


def test_non_numeric_vector(space: eh.Space) -> None:
    with pytest.raises(eh.InvalidEmbedding):
        space.set("a", ["x", "y", "z", "w"])


def test_float16_roundtrip_and_overflow(make_space) -> None:  # type: ignore[no-untyped-def]
    space = make_space(dims=3, dtype="float16")
    space.set("a", [0.1, 0.2, 0.3])
    np.testing.assert_allclose(space.get("a"), [0.1, 0.2, 0.3], atol=1e-3)
    with pytest.raises(eh.InvalidEmbedding, match="float16"):
        space.set("b", [1e6, 0, 0])
    assert len(space) == 1


def test_duplicate_key_in_batch(space: eh.Space) -> None:
    with pytest.raises(eh.InvalidArgument, match="'a' appears twice"):
        space.multiset(["a", "b", "a"], np.zeros((3, 4)))
    assert len(space) == 0


def test_bad_metadata(space: eh.Space) -> None:
    with pytest.raises(eh.InvalidArgument, match="metadata must be a dict"):
        space.set("a", [0] * 4, metadata=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(eh.InvalidArgument, match="one metadata dict per key"):
        space.multiset(["a"], np.zeros((1, 4)), metadata={"x": 1})  # type: ignore[arg-type]
    with pytest.raises(eh.InvalidArgument, match="metadata entries"):
        space.multiset(["a", "b"], np.zeros((2, 4)), metadata=[{}])
    assert len(space) == 0


def test_database_side_failure_rolls_back_whole_batch(space: eh.Space) -> None:
    # jsonb refuses \u0000 in text: the error comes from the server mid-statement.
    space.set("keep", [9] * 4)
    with pytest.raises(eh.EmbeddingHubError):
        space.multiset(["a", "b"], np.zeros((2, 4)), metadata=[{"ok": 1}, {"bad": "\x00"}])
    assert len(space) == 1 and "a" not in space
    # the connection is usable after the failure
    space.set("after", [1] * 4)
    assert len(space) == 2


def test_large_first_load_rebuilds_index(make_space) -> None:  # type: ignore[no-untyped-def]
    space = make_space(dims=16, metric="cosine")
    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(6000, 16)).astype(np.float32)
    keys = [f"k{i}" for i in range(len(matrix))]
    space.multiset(keys, matrix)
    assert len(space) == 6000
    indexes = space.hub.execute(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = 'embeddinghub_data'"
        " AND tablename LIKE %s AND indexdef LIKE %s",
        (f"s{space.id}_p%", "%hnsw%"),
    )
    assert indexes[0][0] == 1
    hit = space.nearest_neighbors(1, vector=matrix[123])[0]
    assert hit.key == "k123"
    # a second large batch goes through the live index (no rebuild) and upserts
    space.multiset(keys[:5000], matrix[:5000] * 2)
    assert len(space) == 6000


def test_multiset_reports_progress(space: eh.Space) -> None:
    seen: list[int] = []
    space.multiset([f"k{i}" for i in range(50)], np.zeros((50, 4)), progress=seen.append)
    assert seen and seen[-1] == 50
