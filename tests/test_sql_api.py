"""The SQL API (DESIGN §5) through psycopg and through `psql -c`: the same answers as the
Python API, the same errors (SQLSTATE + a message naming the space/key), never more access."""

from __future__ import annotations

import csv
import io
import subprocess
from collections.abc import Callable
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg import sql

import embeddinghub as eh


@pytest.fixture
def conn(dsn: str) -> Any:
    with psycopg.connect(dsn, autocommit=True) as c:
        register_vector(c)
        yield c


def _filled(make_space: Callable[..., eh.Space], n: int = 200, dims: int = 8,
            **kw: Any) -> tuple[eh.Space, np.ndarray]:
    space = make_space(dims=dims, **kw)
    data = np.random.default_rng(7).standard_normal((n, dims)).astype(np.float32)
    space.multiset([f"k{i}" for i in range(n)], data)
    return space, data


def _sqlstate(conn: psycopg.Connection[Any], query: str, params: Any) -> tuple[str, str]:
    with pytest.raises(psycopg.Error) as info:
        conn.execute(query, params).fetchall()
    return info.value.sqlstate or "", info.value.diag.message_primary or ""


@pytest.mark.parametrize(
    ("metric", "dtype"), [("l2", "float32"), ("cosine", "float32"), ("ip", "float32"),
                          ("cosine", "float16")]
)
def test_nearest_neighbors_matches_the_python_api(
    conn: psycopg.Connection[Any], make_space: Callable[..., eh.Space], metric: str, dtype: str
) -> None:
    space, data = _filled(make_space, metric=metric, dtype=dtype)
    for q in data[:5] + 0.01:
        want = [(n.key, n.partition, n.distance) for n in space.nearest_neighbors(7, vector=q)]
        got = conn.execute(
            "SELECT key, partition, distance FROM embeddinghub.nearest_neighbors(%s, %s, 7)",
            (space.name, q),
        ).fetchall()
        assert [(k, p) for k, p, _ in got] == [(k, p) for k, p, _ in want]
        assert np.allclose([d for *_, d in got], [d for *_, d in want], atol=1e-5)
    # k defaults to 10; the columns are named as documented
    cur = conn.execute("SELECT * FROM embeddinghub.nearest_neighbors(%s, %s)", (space.name, data[0]))
    assert [c.name for c in cur.description] == ["key", "partition", "distance"]
    assert len(cur.fetchall()) == 10


def test_nearest_neighbors_of_excludes_the_key(
    conn: psycopg.Connection[Any], make_space: Callable[..., eh.Space]
) -> None:
    space, _ = _filled(make_space)
    want = [n.key for n in space.nearest_neighbors(5, key="k3")]
    got = conn.execute(
        "SELECT key FROM embeddinghub.nearest_neighbors_of(%s, 'k3', 5)", (space.name,)
    ).fetchall()
    assert [r[0] for r in got] == want and "k3" not in want


def test_partition_argument(conn: psycopg.Connection[Any], make_space: Callable[..., eh.Space]) -> None:
    space, data = _filled(make_space, n=50)
    space.create_partition("p1")
    space.multiset(["p-a", "p-b"], data[:2], partition="p1")
    rows = conn.execute(
        "SELECT key, partition FROM embeddinghub.nearest_neighbors(%s, %s, 5, 'p1')",
        (space.name, data[0]),
    ).fetchall()
    assert rows == [("p-a", "p1"), ("p-b", "p1")]
    rows = conn.execute(
        "SELECT key, partition FROM embeddinghub.nearest_neighbors(%s, %s, 3)", (space.name, data[0])
    ).fetchall()
    assert {rows[0], rows[1]} == {("k0", "default"), ("p-a", "p1")}
    # of a key in a partition: searched only there, the key itself left out
    rows = conn.execute(
        "SELECT key FROM embeddinghub.nearest_neighbors_of(%s, 'p-a', 5, 'p1')", (space.name,)
    ).fetchall()
    assert rows == [("p-b",)]
    got = conn.execute("SELECT embeddinghub.get(%s, 'p-b', 'p1')", (space.name,)).fetchone()
    assert np.allclose(got[0].to_numpy(), data[1])


def test_large_k_returns_everything_in_order(
    conn: psycopg.Connection[Any], make_space: Callable[..., eh.Space]
) -> None:
    space, data = _filled(make_space, n=1100, dims=4)
    rows = conn.execute(
        "SELECT key, distance FROM embeddinghub.nearest_neighbors(%s, %s, 1500)",
        (space.name, data[0]),
    ).fetchall()
    assert len(rows) == 1100
    distances = [d for _, d in rows]
    assert distances == sorted(distances)


def test_get_and_average(conn: psycopg.Connection[Any], make_space: Callable[..., eh.Space]) -> None:
    for dtype in ("float32", "float16"):
        space, data = _filled(make_space, n=10, dtype=dtype)
        got = conn.execute("SELECT embeddinghub.get(%s, 'k4')", (space.name,)).fetchone()[0]
        assert np.allclose(got.to_numpy(), space.get("k4"))
        avg = conn.execute(
            "SELECT embeddinghub.average(%s, ARRAY['k1', 'k2', 'k2'])", (space.name,)
        ).fetchone()[0]
        assert np.allclose(avg.to_numpy(), (space.get("k1") + 2 * space.get("k2")) / 3, atol=1e-5)


def test_average_matches_python_in_cosine_spaces(
    conn: psycopg.Connection[Any], make_space: Callable[..., eh.Space]
) -> None:
    space = make_space(dims=3, metric="cosine")
    space.multiset({"a": [3, 0, 0], "b": [0, 0.5, 0], "c": [-1, 0, 0], "z": [0, 0, 0]})
    for keys in (["a", "b"], ["a", "b", "b", "z"]):
        got = conn.execute("SELECT embeddinghub.average(%s, %s)", (space.name, keys)).fetchone()[0]
        np.testing.assert_allclose(got.to_numpy(), space.average(keys), atol=1e-6)
    assert np.linalg.norm(space.average(["a", "b"])) == pytest.approx(1.0)
    with pytest.raises(psycopg.Error, match="cancel out") as info:
        conn.execute("SELECT embeddinghub.average(%s, ARRAY['a', 'c'])", (space.name,))
    assert info.value.sqlstate == "EHARG"
    conn.rollback()
    with pytest.raises(eh.InvalidArgument):
        space.average(["a", "c"])


@pytest.mark.parametrize(
    ("query", "args", "state", "message"),
    [
        ("SELECT * FROM embeddinghub.nearest_neighbors(%s, '[1,2]')", ("nope",), "EHNSP",
         'space "nope" does not exist'),
        ("SELECT * FROM embeddinghub.nearest_neighbors(NULL, '[1,2]')", (), "EHARG",
         "space name must not be null"),
        ("SELECT * FROM embeddinghub.nearest_neighbors(%(s)s, '[1,2,3]')", None, "EHARG",
         'space "{s}" has 8 dims; got a query vector of 3 dims'),
        ("SELECT * FROM embeddinghub.nearest_neighbors(%(s)s, NULL)", None, "EHARG",
         'space "{s}": the query vector must not be null'),
        ("SELECT * FROM embeddinghub.nearest_neighbors(%(s)s, array_fill(0, ARRAY[8])::vector, 0)",
         None, "EHARG", 'space "{s}": k must be a positive integer, not 0'),
        ("SELECT * FROM embeddinghub.nearest_neighbors(%(s)s, array_fill(0, ARRAY[8])::vector, 3, 'zz')",
         None, "EHARG", 'partition "zz" does not exist in space "{s}"'),
        ("SELECT * FROM embeddinghub.nearest_neighbors_of(%(s)s, 'ghost')", None, "EHKEY",
         'key "ghost" not found in space "{s}" (partition "default")'),
        ("SELECT embeddinghub.get(%(s)s, 'ghost')", None, "EHKEY",
         'key "ghost" not found in space "{s}" (partition "default")'),
        ("SELECT embeddinghub.average(%(s)s, ARRAY['k1', 'ghost', 'gone'])", None, "EHKEY",
         'key "ghost" not found in space "{s}" (partition "default")'),
        ("SELECT embeddinghub.average(%(s)s, ARRAY[]::text[])", None, "EHARG",
         'space "{s}": average needs at least one key'),
        ("SELECT embeddinghub.average(%(s)s, ARRAY['k1', NULL])", None, "EHARG",
         'space "{s}": keys must not contain null'),
    ],
    ids=["no-space", "null-space", "dims", "null-query", "k-zero", "no-partition", "of-no-key",
         "get-no-key", "average-no-key", "average-empty", "average-null"],
)
def test_errors(
    conn: psycopg.Connection[Any], make_space: Callable[..., eh.Space],
    query: str, args: Any, state: str, message: str,
) -> None:
    space, _ = _filled(make_space, n=5)
    params = {"s": space.name} if args is None else args
    got_state, got_message = _sqlstate(conn, query, params)
    assert (got_state, got_message) == (state, message.format(s=space.name))


def test_errors_map_to_python_errors(hub: eh.Hub, make_space: Callable[..., eh.Space]) -> None:
    space, _ = _filled(make_space, n=5)
    with pytest.raises(eh.SpaceNotFound):
        hub.execute("SELECT * FROM embeddinghub.nearest_neighbors('nope', '[1]')")
    with pytest.raises(eh.KeyNotFound):
        hub.execute("SELECT embeddinghub.get(%s, 'ghost')", (space.name,))
    with pytest.raises(eh.InvalidArgument):
        hub.execute("SELECT * FROM embeddinghub.nearest_neighbors(%s, '[1]')", (space.name,))


def test_settings_and_search_path_do_not_leak(
    conn: psycopg.Connection[Any], make_space: Callable[..., eh.Space]
) -> None:
    space, data = _filled(make_space, n=20, ef_search=77)
    with conn.transaction():
        conn.execute("SET LOCAL search_path = pg_catalog")  # pgvector is not on it
        conn.execute("SET LOCAL hnsw.ef_search = 55")
        rows = conn.execute(
            "SELECT key FROM embeddinghub.nearest_neighbors(%s, %s::public.vector, 3)",
            (space.name, data[0]),
        ).fetchall()
        assert rows[0] == ("k0",)
        # the function used the space's ef_search (77) and put the caller's back
        assert conn.execute("SHOW hnsw.ef_search").fetchone() == ("55",)
        assert conn.execute("SHOW search_path").fetchone() == ("pg_catalog",)


def test_functions_are_security_invoker(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute(
        "SELECT p.proname, p.prosecdef FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'embeddinghub' AND p.proname = ANY(%s)",
        (["nearest_neighbors", "nearest_neighbors_of", "get", "average", "snapshot", "rollback",
          "as_of", "has_access", "space_stats"],),
    ).fetchall()
    assert {name for name, _ in rows} == {"nearest_neighbors", "nearest_neighbors_of", "get",
                                          "average", "snapshot", "rollback", "as_of",
                                          "has_access", "space_stats"}
    assert all(not definer for _, definer in rows)


def test_functions_as_a_grantee(make_space: Callable[..., eh.Space], make_role: Any) -> None:
    space, data = _filled(make_space, n=30)
    space.create_partition("p1")
    space.multiset(["p-a"], data[:1], partition="p1")
    role = make_role("sql")
    space.grant(role.name, "read", partition="p1")
    conn = role.connect()
    rows = conn.execute(
        "SELECT key FROM embeddinghub.nearest_neighbors(%s, %s, 10)", (space.name, data[0])
    ).fetchall()
    assert rows == [("p-a",)]  # RLS inside the function: the other partition is not there
    assert conn.execute("SELECT embeddinghub.get(%s, 'p-a', 'p1')", (space.name,)).fetchone()
    with pytest.raises(psycopg.Error) as info:
        conn.execute("SELECT embeddinghub.get(%s, 'k0')", (space.name,))
    assert info.value.sqlstate == "EHKEY"


def _psql(psql: str, dsn: str, command: sql.Composable, conn: psycopg.Connection[Any]
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [psql, dsn, "-X", "--csv", "-v", "ON_ERROR_STOP=1", "-c", command.as_string(conn)],
        capture_output=True, text=True, timeout=30,
    )


def test_through_psql(psql: str, dsn: str, conn: psycopg.Connection[Any],
                      make_space: Callable[..., eh.Space]) -> None:
    space, data = _filled(make_space, n=50, metric="cosine")
    name = sql.Literal(space.name)

    def run(query: str, *args: Any) -> subprocess.CompletedProcess[str]:
        return _psql(psql, dsn, sql.SQL(query).format(*args), conn)

    want = [(n.key, n.partition) for n in space.nearest_neighbors(5, key="k1")]
    done = run("SELECT * FROM embeddinghub.nearest_neighbors_of({}, 'k1', 5)", name)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [(r["key"], r["partition"]) for r in rows] == want

    vec = sql.Literal("[" + ",".join(f"{x:.6f}" for x in data[2]) + "]")
    done = run("SELECT key FROM embeddinghub.nearest_neighbors({}, {}, 1)", name, vec)
    assert done.stdout.splitlines() == ["key", "k2"]

    done = run("SELECT embeddinghub.get({}, 'k3')", name)
    got = np.array(done.stdout.splitlines()[1].strip('"[]').split(","), dtype=np.float32)
    assert np.allclose(got, space.get("k3"), atol=1e-5)

    done = run("SELECT embeddinghub.average({}, ARRAY['k1', 'k2'])", name)
    assert done.returncode == 0 and done.stdout.startswith("average\n")

    done = run("SELECT embeddinghub.get({}, 'ghost')", name)
    assert done.returncode != 0
    assert f'ERROR:  key "ghost" not found in space "{space.name}"' in done.stderr
    done = run("SELECT * FROM embeddinghub.nearest_neighbors('nope', '[1,2]')")
    assert 'ERROR:  space "nope" does not exist' in done.stderr


def test_versions_through_psql(psql: str, dsn: str, conn: psycopg.Connection[Any],
                               make_space: Callable[..., eh.Space]) -> None:
    """snapshot / as_of / rollback from a plain SQL client, as README shows them."""
    space, _ = _filled(make_space, n=3)
    name = sql.Literal(space.name)

    def run(query: str, *args: Any) -> subprocess.CompletedProcess[str]:
        return _psql(psql, dsn, sql.SQL(query).format(*args), conn)

    done = run("SELECT embeddinghub.snapshot({}, 'v-one')", name)
    assert done.returncode == 0, done.stderr
    version = sql.Literal(int(done.stdout.splitlines()[1]))
    space.delete("k0")
    done = run("SELECT key FROM embeddinghub.as_of({}, {}) ORDER BY key", name, version)
    assert done.stdout.splitlines() == ["key", "k0", "k1", "k2"]
    done = run("SELECT embeddinghub.rollback({}, {})", name, version)
    assert done.returncode == 0, done.stderr
    assert "k0" in space
