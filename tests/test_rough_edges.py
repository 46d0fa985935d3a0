"""The rough edges a new user hit, each fixed: settings kept through export and load, clear
errors for what was silently ignored or refused, partial reads, confirmation before losing
tagged versions, progress for the long phases."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import Result
from psycopg.conninfo import make_conninfo

import embeddinghub as eh
from embeddinghub import ingest
from embeddinghub.rows import BULK_REBUILD_ROWS


@pytest.fixture
def names(hub: eh.Hub) -> Iterator[Callable[[], str]]:
    made: list[str] = []

    def new() -> str:
        made.append(f"re_{uuid.uuid4().hex[:10]}")
        return made[-1]

    yield new
    for name in made:
        if hub.has_space(name):
            hub.delete_space(name)


def jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


ROWS = [{"key": "a", "embedding": [1, 0, 0]}, {"key": "b", "embedding": [0, 1, 0]}]


def test_load_create_into_an_existing_space_with_other_settings_is_refused(
    cli: Callable[..., Result], names: Callable[[], str], tmp_path: Path
) -> None:
    name, src = names(), jsonl(tmp_path / "r.jsonl", ROWS)
    cli("load", str(src), "-s", name, "--create", "--metric", "cosine", "--silent")
    out = cli("load", str(src), "-s", name, "--create", "--metric", "l2", "--silent", code=1)
    assert f"space {name!r} already exists with metric cosine, not l2" in out.stderr
    out = cli("load", str(src), "-s", name, "--create", "--dtype", "float16", "--silent", code=1)
    assert "dtype float32, not float16" in out.stderr
    # The same settings (or none) load into it.
    assert "loaded 2 rows" in cli("load", str(src), "-s", name, "--create", "--metric", "cosine",
                                  "--silent").stdout


@pytest.mark.parametrize("fmt", ["npz", "jsonl"])
def test_export_keeps_the_settings_and_load_create_uses_them(
    cli: Callable[..., Result], names: Callable[[], str], hub: eh.Hub, tmp_path: Path, fmt: str
) -> None:
    name, copy = names(), names()
    space = hub.create_space(name, dims=3, metric="ip", dtype="float16")
    space.multiset({"a": [1, 0, 0], "b": [0, 1, 0]})
    dest = tmp_path / f"out.{fmt}"
    cli("export", name, str(dest), "--silent")
    assert ingest.file_settings(dest) == {"dims": 3, "metric": "ip", "dtype": "float16"}
    cli("load", str(dest), "-s", copy, "--create", "--silent")
    made = hub.get_space(copy)
    assert (made.dims, made.metric, made.dtype) == (3, "ip", "float16") and len(made) == 2


@pytest.mark.parametrize("fmt", ["npz", "jsonl"])
def test_export_of_an_empty_space_or_partition_loads_back(
    cli: Callable[..., Result], names: Callable[[], str], hub: eh.Hub, tmp_path: Path, fmt: str
) -> None:
    name, copy = names(), names()
    space = hub.create_space(name, dims=5, metric="cosine")
    space.create_partition("empty")
    space.set("x", [1, 2, 3, 4, 5])
    for partition in (["--partition", "empty"], []):
        dest = tmp_path / f"e{len(partition)}.{fmt}"
        if not partition:
            space.delete_all()
        assert "exported 0 rows" in cli("export", name, str(dest), *partition, "--silent").stdout
        assert len(ingest.read(dest)) == 0
    cli("load", str(dest), "-s", copy, "--create", "--silent")  # dims from the settings
    assert (hub.get_space(copy).dims, len(hub.get_space(copy))) == (5, 0)


def test_export_of_an_unknown_partition_is_partition_not_found(
    cli: Callable[..., Result], names: Callable[[], str], hub: eh.Hub, tmp_path: Path
) -> None:
    name = names()
    hub.create_space(name, dims=3)
    out = cli("export", name, str(tmp_path / "x.jsonl"), "--partition", "nope", code=1)
    assert out.stderr.strip() == f"Error: partition 'nope' does not exist in space {name!r}"
    assert not (tmp_path / "x.jsonl").exists()


def test_multiget_partial_results(space: eh.Space) -> None:
    space.multiset({"a": [1, 1, 1, 1], "b": [2, 2, 2, 2]})
    with pytest.raises(eh.KeyNotFound, match="'zz'"):
        space.multiget(["a", "zz"])
    got = space.multiget(["a", "zz", "b"], missing="nan")
    assert got[0].tolist() == [1] * 4 and np.isnan(got[1]).all() and got[2].tolist() == [2] * 4
    with pytest.raises(eh.InvalidArgument, match="missing must be one of"):
        space.multiget(["a"], missing="skip")


def test_iterator_tells_partitions_apart(space: eh.Space) -> None:
    space.create_partition("p")
    space.set("k", [1, 0, 0, 0])
    space.set("k", [0, 1, 0, 0], partition="p", metadata={"m": 1})
    rows = [(k, v.tolist(), part) for k, v, part in space.iterator(with_partition=True)]
    assert rows == [("k", [1, 0, 0, 0], "default"), ("k", [0, 1, 0, 0], "p")]
    full = list(space.iterator(partition="p", with_metadata=True, with_partition=True))
    assert [(k, m, p) for k, _, m, p in full] == [("k", {"m": 1}, "p")]


def test_csv_with_a_utf8_byte_order_mark_loads(space: eh.Space, tmp_path: Path) -> None:
    src = tmp_path / "excel.csv"
    src.write_bytes("\ufeffkey,x0,x1,x2,x3\nfirst,1,2,3,4\n".encode())
    assert ingest.load(space, src) == 1
    assert space.get("first").tolist() == [1, 2, 3, 4]


def test_partitioned_rows_into_a_new_space_suggest_create_partitions(
    cli: Callable[..., Result], names: Callable[[], str], tmp_path: Path
) -> None:
    src = jsonl(tmp_path / "p.jsonl", [{"key": "a", "embedding": [1, 2], "partition": "eu"}])
    out = cli("load", str(src), "-s", names(), "--create", "--silent", code=1)
    assert "partition 'eu' does not exist" in out.stderr and "--create-partitions" in out.stderr


def test_dimension_errors_name_the_file(space: eh.Space, tmp_path: Path) -> None:
    src = tmp_path / "wide.npy"
    np.save(src, np.ones((3, 7), dtype=np.float32))
    with pytest.raises(eh.DimensionMismatch, match=r"wide\.npy.*4 dims"):
        ingest.load(space, src)


def test_version_prune_asks_before_deleting_tagged_versions(
    cli: Callable[..., Result], space: eh.Space
) -> None:
    space.set("a", [1, 1, 1, 1])
    space.snapshot(tag="keepme")
    space.set("a", [2, 2, 2, 2])
    space.snapshot()
    out = cli("version", "prune", space.name, "--keep", "1", input="n\n", code=1)
    assert "1 (keepme)" in out.output and "Aborted" in out.output
    assert [v.number for v in space.versions()] == [1, 2]
    assert "freed" in cli("version", "prune", space.name, "--keep", "1", input="y\n").stdout
    assert [v.number for v in space.versions()] == [2]
    # Nothing tagged to lose: no question.
    space.snapshot()
    assert "freed" in cli("version", "prune", space.name, "--keep", "1").stdout


def test_load_reports_the_index_build_phase(space: eh.Space, tmp_path: Path) -> None:
    src = tmp_path / "m.npy"
    np.save(src, np.random.default_rng(0).random((6000, 4), dtype=np.float32))
    phases: list[str] = []
    ingest.load(space, src, batch_size=2000, phase=phases.append)
    assert phases == ["building the index"] and space.info()["index_state"] == "present"
    other = tmp_path / "one.npy"  # one batch: the rebuild happens inside it, reported too
    space.delete_all()
    np.save(other, np.random.default_rng(1).random((6000, 4), dtype=np.float32))
    phases.clear()
    ingest.load(space, other, phase=phases.append)
    assert phases == ["building the index"]


def test_reindex_and_rollback_say_what_they_do(cli: Callable[..., Result], space: eh.Space) -> None:
    space.set("a", [1, 1, 1, 1])
    out = cli("space", "reindex", space.name, "--m", "8", "--ef-construction", "32")
    assert f"building the HNSW index of space {space.name!r} (1 rows)" in out.stderr
    assert "m=8, ef_construction=32" in out.stdout
    assert (space.hub.get_space(space.name).m, space.info()["index_state"]) == (8, "present")
    space.snapshot()
    space.set("a", [2, 2, 2, 2])
    out = cli("version", "rollback", space.name, "1")
    assert "rolling back space" in out.stderr and "recorded as version" in out.stdout


def test_text_the_client_encoding_cannot_hold_is_an_invalid_argument(
    dsn: str, make_space: Callable[..., eh.Space]
) -> None:
    """A key a LATIN1 client cannot send: InvalidArgument saying what to do, for one row, an
    upsert and a first bulk load (its own COPY rows); nothing is written."""
    name = make_space(dims=2).name
    with eh.connect(make_conninfo(dsn, client_encoding="LATIN1")) as hub:
        space = hub.get_space(name)
        with pytest.raises(eh.InvalidArgument, match="client_encoding=UTF8"):
            space.set("\u0101", [1, 0])
        n = BULK_REBUILD_ROWS + 1
        keys = [f"k{i}" for i in range(n - 1)] + ["\u0101"]
        for batch in (keys[-3:], keys):  # an upsert, then a first bulk load
            with pytest.raises(eh.InvalidArgument, match=f"space {name!r}: '\u0101'"):
                space.multiset(batch, np.ones((len(batch), 2), dtype=np.float32))
        assert len(space) == 0
        space.set("\u00e9", [1, 0])  # LATIN1 holds this one
        assert space.get("\u00e9").tolist() == [1.0, 0.0]
