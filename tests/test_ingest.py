"""File ingest: every format round-trips, bad files fail with errors naming file and line/row."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import embeddinghub as eh
from embeddinghub import ingest
from embeddinghub.ingest import FileFormatError
from embeddinghub.rows import BULK_REBUILD_ROWS

N, DIMS = 7, 4
KEYS = [f"k{i}" for i in range(N)]
MATRIX = np.arange(N * DIMS, dtype=np.float32).reshape(N, DIMS) / 7
META: list[dict[str, Any] | None] = [{"i": i, "tag": "é"} if i % 2 else None for i in range(N)]
PARTS = ["a" if i < 3 else "b" for i in range(N)]


# -- writers for each format ------------------------------------------------------------------
def write_npz(path: Path) -> None:
    np.savez(
        path,
        embeddings=MATRIX,
        keys=np.array(KEYS),
        partitions=np.array(PARTS),
        metadata=np.array(["" if m is None else json.dumps(m) for m in META]),
    )


def write_parquet(path: Path, struct_metadata: bool = False) -> None:
    meta: Any = [None if m is None else json.dumps(m) for m in META]
    if struct_metadata:
        meta = pa.array(META, type=pa.struct([("i", pa.int64()), ("tag", pa.string())]))
    table = pa.table(
        {
            "key": KEYS,
            "embedding": pa.array(MATRIX.tolist(), type=pa.list_(pa.float32())),
            "partition": PARTS,
            "metadata": meta,
        }
    )
    pq.write_table(table, path, row_group_size=3)


def write_csv_json(path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["key", "partition", "embedding", "metadata"])
        for k, p, v, m in zip(KEYS, PARTS, MATRIX.tolist(), META, strict=True):
            w.writerow([k, p, json.dumps(v), "" if m is None else json.dumps(m)])


def write_csv_columns(path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", *[f"d{i}" for i in range(DIMS)], "partition", "metadata"])
        for k, p, v, m in zip(KEYS, PARTS, MATRIX.tolist(), META, strict=True):
            w.writerow([k, *[repr(x) for x in v], p, "" if m is None else json.dumps(m)])


def write_jsonl(path: Path) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for k, p, v, m in zip(KEYS, PARTS, MATRIX.tolist(), META, strict=True):
            obj: dict[str, Any] = {"key": k, "embedding": v, "partition": p}
            if m is not None:
                obj["metadata"] = m
            fh.write(json.dumps(obj) + "\n")
            if k == "k3":
                fh.write("\n")  # blank lines are skipped


WRITERS: dict[str, Callable[[Path], None]] = {
    "x.npz": write_npz,
    "x.parquet": write_parquet,
    "struct.parquet": lambda p: write_parquet(p, struct_metadata=True),
    "embedding.csv": write_csv_json,
    "columns.csv": write_csv_columns,
    "x.jsonl": write_jsonl,
}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_each_format_round_trips(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    WRITERS[name](path)
    batch = ingest.read(path)
    assert batch.keys == KEYS
    assert batch.vectors.dtype == np.float32
    np.testing.assert_array_equal(batch.vectors, MATRIX)
    assert batch.partitions == PARTS
    assert batch.metadata == META
    assert ingest.count_rows(path) == N
    sizes = [len(b) for b in ingest.iter_batches(path, batch_size=3)]
    assert sizes == [3, 3, 1]


def test_npy_with_and_without_keys_file(tmp_path: Path) -> None:
    path = tmp_path / "m.npy"
    np.save(path, MATRIX.astype(np.float16))
    batch = ingest.read(path)
    assert batch.keys == [str(i) for i in range(N)]
    assert batch.metadata is None and batch.partitions is None
    np.testing.assert_array_equal(batch.vectors, MATRIX.astype(np.float16).astype(np.float32))
    keys = tmp_path / "keys.txt"
    keys.write_text("\n".join(KEYS) + "\n", encoding="utf-8")
    assert ingest.read(path, keys_file=keys).keys == KEYS
    assert [len(b) for b in ingest.iter_batches(path, 4, keys_file=keys)] == [4, 3]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("suffix", [".npz", ".jsonl"])
def test_write_reads_back(tmp_path: Path, suffix: str, dtype: str) -> None:
    path = tmp_path / f"out{suffix}"
    rows = list(zip(KEYS, MATRIX, META, PARTS, strict=True))
    seen: list[int] = []
    assert ingest.write(path, rows, dtype=dtype, progress=seen.append) == N
    assert seen[-1] == N
    batch = ingest.read(path)
    assert batch.keys == KEYS and batch.partitions == PARTS and batch.metadata == META
    want = MATRIX.astype(np.float16).astype(np.float32) if dtype == "float16" else MATRIX
    np.testing.assert_array_equal(batch.vectors, want)


def test_deduplicated_keeps_the_last_row_per_partition_and_key() -> None:
    batch = ingest.Batch(
        ["a", "b", "a", "a"],
        np.arange(8, dtype=np.float32).reshape(4, 2),
        None,
        ["p", "p", "p", "q"],
    )
    out = batch.deduplicated()
    assert out.keys == ["b", "a", "a"] and out.partitions == ["p", "p", "q"]
    np.testing.assert_array_equal(out.vectors[:, 0], [2, 4, 6])


# -- bad files ----------------------------------------------------------------------------------
def _lines(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = '{"key": "a", "embedding": [1, 2]}'


def _npz_object_keys(path: Path) -> Path:
    np.savez(path, embeddings=MATRIX, keys=np.array(KEYS, dtype=object))
    return path


def _parquet(path: Path, **columns: Any) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


BAD: dict[str, tuple[Callable[[Path], Path], str]] = {
    "unknown extension": (lambda d: _lines(d / "x.txt", "a"), r"x\.txt: unknown file type '\.txt'"),
    "no extension": (lambda d: _lines(d / "x", "a"), r"unknown file type '\(no extension\)'"),
    "missing file": (lambda d: d / "missing.jsonl", r"missing\.jsonl: no such file"),
    "1-D npy": (
        lambda d: (np.save(d / "v.npy", np.zeros(3)), d / "v.npy")[1],
        r"v\.npy: the array must be 2-D \(rows, dims\), not of shape \(3,\)",
    ),
    "not an npy": (lambda d: _lines(d / "v.npy", "hello"), r"v\.npy: not a readable \.npy file"),
    "npy nan": (
        lambda d: (np.save(d / "n.npy", np.array([[1.0, 2.0], [np.nan, 0.0]])), d / "n.npy")[1],
        r"n\.npy row #1: the embedding holds NaN or infinity",
    ),
    "npz no embeddings": (
        lambda d: (np.savez(d / "z.npz", keys=np.array(KEYS)), d / "z.npz")[1],
        r"z\.npz: no embeddings array; expected one of embeddings, vectors, embedding \(found: keys\)",
    ),
    "npz object keys": (
        lambda d: _npz_object_keys(d / "o.npz"),
        r"o\.npz: array 'keys' cannot be read without pickle",
    ),
    "npz keys length": (
        lambda d: (np.savez(d / "l.npz", embeddings=MATRIX, keys=np.array(KEYS[:3])), d / "l.npz")[1],
        r"l\.npz: array 'keys' has shape \(3,\); expected \(7,\)",
    ),
    "jsonl bad json": (
        lambda d: _lines(d / "b.jsonl", GOOD, "", '{"key": "b", "embedding": [1,'),
        r"b\.jsonl line 3: the line is not valid JSON",
    ),
    "jsonl dims": (
        lambda d: _lines(d / "d.jsonl", GOOD, '{"key": "b", "embedding": [1, 2, 3]}'),
        r"d\.jsonl line 2: embedding has 3 values; expected 2",
    ),
    "jsonl string value": (
        lambda d: _lines(d / "s.jsonl", GOOD, '{"key": "b", "embedding": [1, "x"]}'),
        r"s\.jsonl line 2: the embedding holds 'x', not a number",
    ),
    "jsonl null value": (
        lambda d: _lines(d / "s.jsonl", '{"key": "a", "embedding": [1, null]}'),
        r"s\.jsonl line 1: the embedding holds None, not a number",
    ),
    "jsonl nan": (
        lambda d: _lines(d / "n.jsonl", GOOD, '{"key": "b", "embedding": [NaN, 2]}'),
        r"n\.jsonl line 2: the embedding holds NaN or infinity",
    ),
    "jsonl overflow": (
        lambda d: _lines(d / "o.jsonl", '{"key": "a", "embedding": [1e300, 2]}'),
        r"o\.jsonl line 1: the embedding holds NaN or infinity",
    ),
    "jsonl no key": (
        lambda d: _lines(d / "k.jsonl", '{"embedding": [1]}'),
        r"k\.jsonl line 1: no 'key' field",
    ),
    "jsonl empty key": (
        lambda d: _lines(d / "k.jsonl", '{"key": "", "embedding": [1]}'),
        r"k\.jsonl line 1: empty key",
    ),
    "jsonl not object": (
        lambda d: _lines(d / "a.jsonl", "[1, 2]"),
        r"a\.jsonl line 1: expected a JSON object",
    ),
    "jsonl bad metadata": (
        lambda d: _lines(d / "m.jsonl", '{"key": "a", "embedding": [1], "metadata": [1]}'),
        r"m\.jsonl line 1: metadata must be a JSON object",
    ),
    "jsonl bad partition": (
        lambda d: _lines(d / "p.jsonl", '{"key": "a", "embedding": [1], "partition": 3}'),
        r"p\.jsonl line 1: the partition must be a string",
    ),
    "csv not a number": (
        lambda d: _lines(d / "c.csv", "key,x,y", "a,1,2", "b,1,two"),
        r"c\.csv line 3: column 'y' holds 'two', not a number",
    ),
    "csv field count": (
        lambda d: _lines(d / "c.csv", "key,x,y", "a,1,2", "b,1"),
        r"c\.csv line 3: 2 fields; the header has 3",
    ),
    "csv no key": (
        lambda d: _lines(d / "c.csv", "name,x", "a,1"),
        r"c\.csv: no key column; expected one of key, id",
    ),
    "csv no vector": (lambda d: _lines(d / "c.csv", "key,partition", "a,p"), r"c\.csv: no embedding"),
    "csv empty": (lambda d: _lines(d / "c.csv", ""), r"c\.csv: no key column"),
    "csv bad embedding json": (
        lambda d: _lines(d / "c.csv", "key,embedding", 'a,"[1, 2]"', 'b,"[1, 2"'),
        r"c\.csv line 3: embedding is not valid JSON",
    ),
    "csv bad metadata json": (
        lambda d: _lines(d / "c.csv", "key,embedding,metadata", 'a,"[1, 2]",{oops'),
        r"c\.csv line 2: metadata is not valid JSON",
    ),
    "parquet no embedding": (
        lambda d: _parquet(d / "p.parquet", key=["a"], emb=[[1.0]]),
        r"p\.parquet: no embedding column; expected one of embedding, vector \(found: key, emb\)",
    ),
    "parquet wrong type": (
        lambda d: _parquet(d / "p.parquet", key=["a"], embedding=["1,2"]),
        r"p\.parquet: column 'embedding' must be a list of numbers, not string",
    ),
    "parquet dims": (
        lambda d: _parquet(d / "p.parquet", key=["a", "b"], embedding=[[1.0, 2.0], [1.0]]),
        r"p\.parquet row #1: embedding has 1 values; expected 2",
    ),
    "parquet null embedding": (
        lambda d: _parquet(d / "p.parquet", key=["a", "b"], embedding=[[1.0], None]),
        r"p\.parquet row #1: the embedding is null",
    ),
    "parquet null key": (
        lambda d: _parquet(d / "p.parquet", key=["a", None], embedding=[[1.0], [2.0]]),
        r"p\.parquet row #1: the key must be a string, not None",
    ),
    "parquet bad metadata": (
        lambda d: _parquet(d / "p.parquet", key=["a"], embedding=[[1.0]], metadata=["[1]"]),
        r"p\.parquet row #0: metadata must be a JSON object",
    ),
    "not a parquet": (lambda d: _lines(d / "p.parquet", "x"), r"p\.parquet: not a readable \.parquet file"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_name_the_file_and_the_line(tmp_path: Path, case: str) -> None:
    make, message = BAD[case]
    path = make(tmp_path)
    with pytest.raises(FileFormatError, match=message):
        ingest.read(path)


def test_bad_keys_files(tmp_path: Path) -> None:
    path = tmp_path / "m.npy"
    np.save(path, MATRIX)
    short = _lines(tmp_path / "short.txt", "a", "b")
    with pytest.raises(FileFormatError, match=r"short\.txt has 2 keys but .*m\.npy has 7 rows"):
        ingest.read(path, keys_file=short)
    blank = _lines(tmp_path / "blank.txt", "a", "", *KEYS[2:])
    with pytest.raises(FileFormatError, match=r"blank\.txt line 2: empty key"):
        ingest.read(path, keys_file=blank)
    jsonl = tmp_path / "x.jsonl"
    write_jsonl(jsonl)
    with pytest.raises(FileFormatError, match="keys file applies to .npy and .npz files only"):
        ingest.read(jsonl, keys_file=short)
    npz = tmp_path / "x.npz"
    write_npz(npz)
    with pytest.raises(FileFormatError, match="has its own keys array"):
        ingest.read(npz, keys_file=short)
    with pytest.raises(eh.InvalidArgument, match="batch size must be a positive integer"):
        next(ingest.iter_batches(npz, 0))


# -- loading into a space ---------------------------------------------------------------------
def test_load_with_partitions_and_repeated_keys(make_space: Callable[..., eh.Space], tmp_path: Path) -> None:
    sp = make_space(dims=DIMS)
    path = tmp_path / "x.jsonl"
    write_jsonl(path)
    with path.open("a", encoding="utf-8") as fh:  # k0 again, in partition a: the last row wins
        fh.write(json.dumps({"key": "k0", "embedding": [9, 9, 9, 9], "partition": "a"}) + "\n")
    with pytest.raises(eh.PartitionNotFound, match="partition 'a' does not exist"):
        ingest.load(sp, path)
    for batch_size in (3, 100):  # the repeat in a later batch, then in the same batch
        seen: list[int] = []
        load = ingest.load(sp, path, batch_size=batch_size, create_partitions=True, progress=seen.append)
        assert load == N + 1
        assert seen == sorted(seen) and seen[-1] == N + 1
        assert sp.count("a") == 3 and sp.count("b") == 4
        np.testing.assert_array_equal(sp.get("k0", partition="a"), [9, 9, 9, 9])
    assert sp.get_metadata("k1", partition="a") == META[1]
    # --partition sends every row to one partition.
    ingest.load(sp, path, partition="default")
    assert sp.count("default") == N


def _index_exists(sp: eh.Space) -> bool:
    row = sp.hub.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (f"embeddinghub_data.s{sp.id}_hnsw",)
    )
    return bool(row[0][0])


def _big_jsonl(path: Path, rows: int, bad_line: int | None = None) -> Path:
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((rows, 8)).astype(np.float32)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(rows):
            emb: Any = vecs[i].tolist() if i + 1 != bad_line else "oops"
            fh.write(json.dumps({"key": f"r{i}", "embedding": emb}) + "\n")
    return path


def test_large_load_into_empty_space_builds_the_index_once(
    make_space: Callable[..., eh.Space], tmp_path: Path
) -> None:
    rows = BULK_REBUILD_ROWS + 1000
    path = _big_jsonl(tmp_path / "big.jsonl", rows)
    sp = make_space(dims=8)
    assert ingest.load(sp, path, batch_size=2000) == rows
    assert len(sp) == rows and _index_exists(sp)
    vec = sp.get("r77")
    assert sp.nearest_neighbors(1, vector=vec)[0].key == "r77"


def test_failed_load_keeps_earlier_batches_and_the_index(
    make_space: Callable[..., eh.Space], tmp_path: Path
) -> None:
    rows = BULK_REBUILD_ROWS + 1000
    path = _big_jsonl(tmp_path / "bad.jsonl", rows, bad_line=rows - 10)
    sp = make_space(dims=8)
    message = rf"bad\.jsonl line {rows - 10}: .*\(4000 rows from earlier batches stay loaded\)"
    with pytest.raises(FileFormatError, match=message):
        ingest.load(sp, path, batch_size=2000)
    assert len(sp) == 4000 and _index_exists(sp)
    other = make_space(dims=8)
    with pytest.raises(FileFormatError, match=rf"line {rows - 10}") as info:
        ingest.load(other, path, batch_size=2000, atomic=True)
    assert "stay loaded" not in str(info.value)
    assert len(other) == 0 and _index_exists(other)


def test_load_checks_dims_against_the_space(make_space: Callable[..., eh.Space], tmp_path: Path) -> None:
    sp = make_space(dims=3)
    path = tmp_path / "x.npz"
    write_npz(path)
    with pytest.raises(eh.DimensionMismatch, match="has 3 dims"):
        ingest.load(sp, path, create_partitions=True)
    assert len(sp) == 0
