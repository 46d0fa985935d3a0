"""Reading embedding files (.npy, .npz, .parquet, .csv, .jsonl) and loading them into a space.

`iter_batches(path)` yields `Batch`es of at most `batch_size` rows: keys, a float32
matrix, and per-row metadata and partitions when the file has them. Files are streamed
where the format allows (.npy is memory-mapped; .parquet, .csv and .jsonl are read
chunk by chunk); an .npz is a zip archive and is read whole. Every error names the file
and the line (text formats) or the row index (binary formats) at fault.

`load(space, path)` writes the batches, each in its own transaction (or all in one with
`atomic=True`), and is what `embeddinghub load` runs.

Field names: the key is `key` (or `id`), the vector `embedding` (or `vector`), plus
optional `partition` and `metadata` (a JSON object). In an .npz the arrays are
`embeddings`/`vectors`, `keys`/`ids`, and optional `partitions` and `metadata` (JSON text).
"""

from __future__ import annotations

import csv
import json
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from psycopg import sql

from . import catalog, errors, rows
from .catalog import SpaceHandle, SupportsHandle, handle_of
from .db import translate

__all__ = [
    "EXPORT_FORMATS",
    "FORMATS",
    "Batch",
    "FileFormatError",
    "check_export_path",
    "count_rows",
    "iter_batches",
    "load",
    "read",
    "write",
]

FORMATS = (".npy", ".npz", ".parquet", ".csv", ".jsonl")
KEY_FIELDS = ("key", "id")
VECTOR_FIELDS = ("embedding", "vector")
NPZ_VECTORS = ("embeddings", "vectors", "embedding")
NPZ_KEYS = ("keys", "ids")
DEFAULT_BATCH = 10_000

Row = tuple[Any, Any, Any, Any, int]  # key, embedding, metadata, partition, line number


class FileFormatError(errors.InvalidArgument):
    """A file that cannot be loaded; the message names the file and the line or row."""


@dataclass
class Batch:
    """Rows of one file: keys, a float32 (n, dims) matrix, and optional per-row extras."""

    keys: list[str]
    vectors: np.ndarray
    metadata: list[dict[str, Any] | None] | None = None
    partitions: list[str | None] | None = None

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def dims(self) -> int:
        return int(self.vectors.shape[1])

    def slice(self, start: int, stop: int) -> Batch:
        return Batch(
            self.keys[start:stop],
            self.vectors[start:stop],
            None if self.metadata is None else self.metadata[start:stop],
            None if self.partitions is None else self.partitions[start:stop],
        )

    def deduplicated(self) -> Batch:
        """Keep the last row of each (partition, key): a repeated key replaces the earlier row."""
        parts = self.partitions or [None] * len(self.keys)
        last = {pk: i for i, pk in enumerate(zip(parts, self.keys, strict=True))}
        if len(last) == len(self.keys):
            return self
        keep = sorted(last.values())
        return Batch(
            [self.keys[i] for i in keep],
            self.vectors[keep],
            None if self.metadata is None else [self.metadata[i] for i in keep],
            None if self.partitions is None else [self.partitions[i] for i in keep],
        )


def _concat(batches: Sequence[Batch], dims: int) -> Batch:
    keys = [k for b in batches for k in b.keys]
    vectors = (
        np.concatenate([b.vectors for b in batches])
        if batches
        else np.empty((0, dims), dtype=np.float32)
    )

    def extra(field: str) -> list[Any] | None:
        if all(getattr(b, field) is None for b in batches):
            return None
        return [x for b in batches for x in (getattr(b, field) or [None] * len(b))]

    return Batch(keys, vectors, extra("metadata"), extra("partitions"))


# -- entry points -------------------------------------------------------------------------
def read(path: str | Path, *, keys_file: str | Path | None = None) -> Batch:
    """The whole file as one `Batch`."""
    batches = list(iter_batches(path, batch_size=DEFAULT_BATCH, keys_file=keys_file))
    return _concat(batches, batches[0].dims if batches else 0)


def iter_batches(
    path: str | Path, batch_size: int = DEFAULT_BATCH, *, keys_file: str | Path | None = None
) -> Iterator[Batch]:
    """Yield the file's rows in batches of at most `batch_size`, every batch of one dims."""
    file = _existing(path)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise errors.InvalidArgument(f"batch size must be a positive integer, not {batch_size!r}")
    suffix = _suffix(file)
    if keys_file is not None and suffix not in (".npy", ".npz"):
        raise FileFormatError(
            f"{file}: a keys file applies to .npy and .npz files only; {suffix} files hold their keys"
        )
    if suffix == ".npy":
        yield from _npy(file, batch_size, keys_file)
    elif suffix == ".npz":
        yield from _npz(file, batch_size, keys_file)
    elif suffix == ".parquet":
        yield from _parquet(file, batch_size)
    else:
        rows = _csv_rows(file) if suffix == ".csv" else _jsonl_rows(file)
        yield from _assemble(file, rows, batch_size)


def count_rows(path: str | Path) -> int:
    """The number of rows in the file, for a progress bar: cheap, without parsing rows."""
    file = _existing(path)
    suffix = _suffix(file)
    if suffix == ".npy":
        return int(_open_npy(file).shape[0])
    if suffix == ".npz":
        return _npz_rows(file)
    if suffix == ".parquet":
        return int(_parquet_file(file).metadata.num_rows)
    with file.open("rb") as fh:
        lines = sum(1 for line in fh if not line.isspace())
    # CSV: less the header; a quoted field spanning lines makes this an upper bound.
    return max(0, lines - 1) if suffix == ".csv" else lines


def _existing(path: str | Path) -> Path:
    file = Path(path)
    if not file.exists():
        raise FileFormatError(f"{file}: no such file")
    if not file.is_file():
        raise FileFormatError(f"{file}: not a file")
    return file


def _suffix(file: Path) -> str:
    suffix = file.suffix.lower()
    if suffix not in FORMATS:
        raise FileFormatError(
            f"{file}: unknown file type {suffix or '(no extension)'!r};"
            f" use one of {', '.join(FORMATS)}"
        )
    return suffix


# -- numpy ----------------------------------------------------------------------------------
def _open_npy(file: Path) -> np.ndarray:
    try:
        array = np.load(file, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise FileFormatError(f"{file}: not a readable .npy file ({exc})") from None
    return _check_matrix(file, array, "the array")


def _check_matrix(file: Path, array: np.ndarray, what: str) -> np.ndarray:
    if array.ndim != 2:
        raise FileFormatError(
            f"{file}: {what} must be 2-D (rows, dims), not of shape {tuple(array.shape)}"
        )
    if array.dtype.kind not in "fiu":
        raise FileFormatError(f"{file}: {what} must hold numbers, not {array.dtype}")
    return array


def _npy(file: Path, batch_size: int, keys_file: str | Path | None) -> Iterator[Batch]:
    array = _open_npy(file)
    keys = _keys_for(file, array.shape[0], keys_file)
    yield from _slices(file, array, keys, None, None, batch_size)


def _keys_for(file: Path, n: int, keys_file: str | Path | None) -> list[str]:
    """Keys from a text file, one per line; without one, the row numbers "0".."n-1"."""
    if keys_file is None:
        return [str(i) for i in range(n)]
    kfile = _existing(keys_file)
    with kfile.open(encoding="utf-8", newline="") as fh:
        keys = [line.rstrip("\r\n") for line in fh]
    for i, key in enumerate(keys):
        if not key:
            raise FileFormatError(f"{kfile} line {i + 1}: empty key")
    if len(keys) != n:
        raise FileFormatError(f"{kfile} has {len(keys)} keys but {file} has {n} rows")
    return keys


def _slices(
    file: Path,
    array: np.ndarray,
    keys: list[str],
    partitions: list[str | None] | None,
    metadata: list[dict[str, Any] | None] | None,
    batch_size: int,
) -> Iterator[Batch]:
    for start in range(0, array.shape[0], batch_size):
        stop = start + batch_size
        block = np.asarray(array[start:stop], dtype=np.float32)
        _check_finite(file, block, lambda i, s=start: f"row #{s + i}")  # type: ignore[misc]
        yield Batch(
            keys[start:stop],
            np.ascontiguousarray(block),
            None if metadata is None else metadata[start:stop],
            None if partitions is None else partitions[start:stop],
        )


def _open_npz(file: Path) -> Any:
    try:
        return np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise FileFormatError(f"{file}: not a readable .npz file ({exc})") from None


def _npz_array(file: Path, npz: Any, names: Sequence[str], label: str) -> np.ndarray:
    name = next((n for n in names if n in npz.files), None)
    if name is None:
        raise FileFormatError(
            f"{file}: no {label} array; expected one of {', '.join(names)}"
            f" (found: {', '.join(npz.files) or 'none'})"
        )
    try:
        array = npz[name]
    except ValueError as exc:  # an object array needs pickle, which is never allowed
        raise FileFormatError(
            f"{file}: array {name!r} cannot be read without pickle ({exc});"
            " save strings as a str array, e.g. np.array(keys, dtype=str)"
        ) from None
    return array  # type: ignore[no-any-return]


def _npz_rows(file: Path) -> int:
    """Rows of the embeddings array, from its header alone (no decompression)."""
    with _open_npz(file) as npz:
        name = next((n for n in NPZ_VECTORS if n in npz.files), None)
        if name is None:
            _npz_array(file, npz, NPZ_VECTORS, "embeddings")  # raises, naming what is there
        with npz.zip.open(f"{name}.npy") as fh:
            version = np.lib.format.read_magic(fh)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape = read(fh)[0]
    return int(shape[0]) if shape else 0


def _npz(file: Path, batch_size: int, keys_file: str | Path | None) -> Iterator[Batch]:
    with _open_npz(file) as npz:
        vectors = _check_matrix(file, _npz_array(file, npz, NPZ_VECTORS, "embeddings"), "'embeddings'")
        n = vectors.shape[0]
        has_keys = any(name in npz.files for name in NPZ_KEYS)
        if has_keys and keys_file is not None:
            raise FileFormatError(f"{file} has its own keys array; drop the keys file")
        if has_keys:
            keys = _strings(file, _npz_array(file, npz, NPZ_KEYS, "keys"), "keys", n, empty_ok=False)
        else:
            keys = _keys_for(file, n, keys_file)
        partitions = None
        if "partitions" in npz.files:
            partitions = [
                p or None
                for p in _strings(file, _npz_array(file, npz, ["partitions"], ""), "partitions", n)
            ]
        metadata = None
        if "metadata" in npz.files:
            texts = _strings(file, _npz_array(file, npz, ["metadata"], ""), "metadata", n)
            metadata = [_json_object(file, f"row #{i}", t) for i, t in enumerate(texts)]
    yield from _slices(file, vectors, keys, partitions, metadata, batch_size)


def _strings(file: Path, array: np.ndarray, name: str, n: int, *, empty_ok: bool = True) -> list[str]:
    if array.ndim != 1 or array.shape[0] != n:
        raise FileFormatError(
            f"{file}: array {name!r} has shape {tuple(array.shape)}; expected ({n},), one per row"
        )
    if array.dtype.kind == "S":
        array = np.char.decode(array, "utf-8")
    if array.dtype.kind not in "Uiu":
        raise FileFormatError(f"{file}: array {name!r} must hold strings, not {array.dtype}")
    values = [str(v) for v in array.tolist()]
    if not empty_ok:
        for i, v in enumerate(values):
            if not v:
                raise FileFormatError(f"{file} row #{i}: empty key")
    return values


# -- parquet --------------------------------------------------------------------------------
def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.compute
        import pyarrow.parquet
    except ImportError:
        raise errors.EmbeddingHubError(
            "reading .parquet files needs pyarrow: pip install 'embeddinghub[parquet]'"
        ) from None
    return pyarrow


def _parquet_file(file: Path) -> Any:
    pa = _pyarrow()
    try:
        return pa.parquet.ParquetFile(file)
    except (pa.ArrowException, OSError) as exc:
        raise FileFormatError(f"{file}: not a readable .parquet file ({exc})") from None


def _parquet(file: Path, batch_size: int) -> Iterator[Batch]:
    pa = _pyarrow()
    pf = _parquet_file(file)
    names = pf.schema_arrow.names
    kcol = _field(file, names, KEY_FIELDS, "key")
    vcol = _field(file, names, VECTOR_FIELDS, "embedding")
    pcol = "partition" if "partition" in names else None
    mcol = "metadata" if "metadata" in names else None
    columns = [c for c in (kcol, vcol, pcol, mcol) if c is not None]
    offset = 0
    dims: int | None = None
    try:
        for rb in pf.iter_batches(batch_size=batch_size, columns=columns):
            n = rb.num_rows
            keys = _arrow_keys(file, rb.column(kcol).to_pylist(), offset)
            vectors = _arrow_matrix(pa, file, vcol, rb.column(vcol), offset, dims)
            dims = vectors.shape[1]
            partitions = None
            if pcol is not None:
                partitions = [
                    _partition(file, f"row #{offset + i}", p)
                    for i, p in enumerate(rb.column(pcol).to_pylist())
                ]
            metadata = None
            if mcol is not None:
                metadata = _arrow_metadata(pa, file, rb.column(mcol), offset)
            yield Batch(keys, vectors, metadata, partitions)
            offset += n
    except pa.ArrowException as exc:
        raise FileFormatError(f"{file}: cannot read rows after row #{offset} ({exc})") from None


def _arrow_keys(file: Path, values: list[Any], offset: int) -> list[str]:
    keys = []
    for i, v in enumerate(values):
        keys.append(_key(file, f"row #{offset + i}", v))
    return keys


def _arrow_matrix(
    pa: Any, file: Path, name: str, column: Any, offset: int, dims: int | None
) -> np.ndarray:
    typ = column.type
    lists = pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ)
    if not lists or not (pa.types.is_floating(typ.value_type) or pa.types.is_integer(typ.value_type)):
        raise FileFormatError(f"{file}: column {name!r} must be a list of numbers, not {typ}")
    if column.null_count:
        i = column.is_null().to_pylist().index(True)
        raise FileFormatError(f"{file} row #{offset + i}: the embedding is null")
    lengths = pa.compute.list_value_length(column).to_numpy(zero_copy_only=False)
    want = dims if dims is not None else (int(lengths[0]) if len(lengths) else 0)
    bad = np.flatnonzero(lengths != want)
    if bad.size:
        i = int(bad[0])
        raise FileFormatError(
            f"{file} row #{offset + i}: embedding has {lengths[i]} values; expected {want}"
        )
    if want == 0 and len(lengths):
        raise FileFormatError(f"{file} row #{offset}: the embedding is empty")
    values = column.flatten().to_numpy(zero_copy_only=False)
    matrix = np.asarray(values, dtype=np.float32).reshape(len(lengths), want)
    _check_finite(file, matrix, lambda i: f"row #{offset + i}")
    return matrix


def _arrow_metadata(pa: Any, file: Path, column: Any, offset: int) -> list[dict[str, Any] | None]:
    typ = column.type
    values = column.to_pylist()
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return [_json_object(file, f"row #{offset + i}", v) for i, v in enumerate(values)]
    if pa.types.is_struct(typ):
        return values  # type: ignore[no-any-return]
    raise FileFormatError(
        f"{file}: column 'metadata' must hold JSON text or a struct, not {typ}"
    )


def _field(file: Path, names: Sequence[str], choices: Sequence[str], label: str) -> str:
    for name in choices:
        if name in names:
            return name
    raise FileFormatError(
        f"{file}: no {label} column; expected one of {', '.join(choices)}"
        f" (found: {', '.join(names) or 'none'})"
    )


# -- csv and jsonl ----------------------------------------------------------------------------
def _csv_rows(file: Path) -> Iterator[Row]:
    """Rows of a CSV: a key column plus an `embedding` column (JSON list) or numeric columns."""
    with file.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise FileFormatError(f"{file}: empty file, expected a header line") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise FileFormatError(f"{file} line 1: {exc}") from None
        names = [h.strip() for h in header]
        kcol = names.index(_field(file, names, KEY_FIELDS, "key"))
        pcol = names.index("partition") if "partition" in names else None
        mcol = names.index("metadata") if "metadata" in names else None
        vname = next((v for v in VECTOR_FIELDS if v in names), None)
        vcol = names.index(vname) if vname is not None else None
        used = {kcol, pcol, mcol}
        dcols = [i for i in range(len(names)) if i not in used] if vcol is None else []
        if vcol is None and not dcols:
            raise FileFormatError(
                f"{file}: no embedding; expected an 'embedding' column (a JSON list)"
                " or one numeric column per dimension"
            )
        line = 1
        try:
            for row in reader:
                line = reader.line_num
                if not row:
                    continue
                if len(row) != len(names):
                    raise FileFormatError(
                        f"{file} line {line}: {len(row)} fields; the header has {len(names)}"
                    )
                if vcol is not None:
                    vector: Any = _json(file, f"line {line}", row[vcol], "embedding")
                else:
                    vector = [_number(file, line, names[i], row[i]) for i in dcols]
                meta = row[mcol] if mcol is not None else None
                part = row[pcol] if pcol is not None else None
                yield row[kcol], vector, meta or None, part or None, line
        except (csv.Error, UnicodeDecodeError) as exc:
            raise FileFormatError(f"{file} line {line + 1}: {exc}") from None


def _number(file: Path, line: int, column: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise FileFormatError(
            f"{file} line {line}: column {column!r} holds {text!r}, not a number"
        ) from None


def _jsonl_rows(file: Path) -> Iterator[Row]:
    with file.open(encoding="utf-8") as fh:
        line = 0
        try:
            for line, text in enumerate(fh, start=1):  # noqa: B007 (used after the loop)
                if not text.strip():
                    continue
                obj = _json(file, f"line {line}", text, "the line")
                if not isinstance(obj, dict):
                    raise FileFormatError(f"{file} line {line}: expected a JSON object")
                kname = next((k for k in KEY_FIELDS if k in obj), None)
                vname = next((v for v in VECTOR_FIELDS if v in obj), None)
                if kname is None or vname is None:
                    missing = "key" if kname is None else "embedding"
                    raise FileFormatError(f"{file} line {line}: no {missing!r} field")
                yield obj[kname], obj[vname], obj.get("metadata"), obj.get("partition"), line
        except UnicodeDecodeError as exc:
            raise FileFormatError(f"{file} line {line + 1}: not UTF-8 ({exc})") from None


def _json(file: Path, where: str, text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileFormatError(f"{file} {where}: {what} is not valid JSON ({exc})") from None


def _json_object(file: Path, where: str, value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        value = _json(file, where, value, "metadata") if value.strip() else None
    if value is not None and not isinstance(value, dict):
        raise FileFormatError(f"{file} {where}: metadata must be a JSON object, not {value!r:.60}")
    return value


def _key(file: Path, where: str, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise FileFormatError(f"{file} {where}: the key must be a string, not {value!r:.40}")
    if not value:
        raise FileFormatError(f"{file} {where}: empty key")
    return value


def _assemble(file: Path, rows: Iterable[Row], batch_size: int) -> Iterator[Batch]:
    """Check parsed text rows and pack them into batches."""
    dims: int | None = None
    pending: list[Row] = []

    def flush() -> Batch:
        nonlocal dims
        lines = [r[4] for r in pending]
        vectors = [r[1] for r in pending]
        for vec, line in zip(vectors, lines, strict=True):
            if not isinstance(vec, list) or not vec:
                raise FileFormatError(
                    f"{file} line {line}: the embedding must be a non-empty list of numbers"
                )
            if dims is None:
                dims = len(vec)
            if len(vec) != dims:
                raise FileFormatError(
                    f"{file} line {line}: embedding has {len(vec)} values; expected {dims}"
                )
        matrix = np.array(vectors)  # dtype inferred, so strings or nulls show up as such
        if matrix.dtype.kind not in "fiu":
            for vec, line in zip(vectors, lines, strict=True):
                if np.array(vec).dtype.kind not in "fiu":
                    bad = next(v for v in vec if isinstance(v, bool) or not isinstance(v, int | float))
                    raise FileFormatError(
                        f"{file} line {line}: the embedding holds {bad!r:.40}, not a number"
                    )
        with np.errstate(over="ignore"):
            matrix = matrix.astype(np.float32)
        _check_finite(file, matrix, lambda i: f"line {lines[i]}")
        keys = [_key(file, f"line {r[4]}", r[0]) for r in pending]
        metas = [_json_object(file, f"line {r[4]}", r[2]) for r in pending]
        parts = [_partition(file, f"line {r[4]}", r[3]) for r in pending]
        return Batch(
            keys,
            matrix,
            metas if any(m is not None for m in metas) else None,
            parts if any(p is not None for p in parts) else None,
        )

    for row in rows:
        pending.append(row)
        if len(pending) >= batch_size:
            yield flush()
            pending = []
    if pending:
        yield flush()


def _partition(file: Path, where: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise FileFormatError(f"{file} {where}: the partition must be a string, not {value!r:.40}")
    return value


def _check_finite(file: Path, matrix: np.ndarray, where: Callable[[int], str]) -> None:
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(matrix).all(axis=1)
    if not ok.all():
        raise FileFormatError(
            f"{file} {where(int(np.flatnonzero(~ok)[0]))}: the embedding holds NaN or infinity"
        )


# -- writing ----------------------------------------------------------------------------------
EXPORT_FORMATS = (".npz", ".jsonl")


def check_export_path(path: str | Path) -> Path:
    """`path` if `write` can write it (by its extension), else a FileFormatError."""
    file = Path(path)
    if file.suffix.lower() not in EXPORT_FORMATS:
        raise FileFormatError(
            f"{file}: can export to {' or '.join(EXPORT_FORMATS)}, not {file.suffix or 'no extension'!r}"
        )
    return file


def write(
    path: str | Path,
    rows: Iterable[tuple[str, np.ndarray, dict[str, Any] | None, str]],
    *,
    dtype: str = "float32",
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write `(key, vector, metadata, partition)` rows to an .npz or .jsonl file; return the count.

    The file reads back with `read()` (and `embeddinghub load`).
    """
    file = check_export_path(path)
    suffix = file.suffix.lower()
    count = 0
    vtype = np.float16 if dtype == "float16" else np.float32
    if suffix == ".jsonl":
        with file.open("w", encoding="utf-8") as fh:
            for key, vec, meta, part in rows:
                values = np.asarray(vec, dtype=vtype).tolist()
                obj: dict[str, Any] = {"key": key, "partition": part, "embedding": values}
                if meta is not None:
                    obj["metadata"] = meta
                fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
                count += 1
                if progress is not None and count % 1000 == 0:
                    progress(count)
    else:
        keys, vecs, metas, parts = [], [], [], []
        for key, vec, meta, part in rows:
            keys.append(key)
            vecs.append(vec)
            metas.append(meta)
            parts.append(part)
            count += 1
            if progress is not None and count % 1000 == 0:
                progress(count)
        arrays: dict[str, np.ndarray] = {
            "keys": np.array(keys, dtype=str),
            "embeddings": np.array(vecs, dtype=vtype).reshape(count, -1),
            "partitions": np.array(parts, dtype=str),
        }
        if any(m is not None for m in metas):
            arrays["metadata"] = np.array(
                ["" if m is None else json.dumps(m, ensure_ascii=False) for m in metas], dtype=str
            )
        with file.open("wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
    if progress is not None:
        progress(count)
    return count


# -- loading into a space -----------------------------------------------------------------------
def load(
    space: SpaceHandle | SupportsHandle,
    path: str | Path,
    *,
    batch_size: int = DEFAULT_BATCH,
    partition: str | None = None,
    keys_file: str | Path | None = None,
    create_partitions: bool = False,
    atomic: bool = False,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Load a file into `space`; return the number of rows read from it.

    Each batch of `batch_size` rows is written in its own transaction, so a failure
    leaves the earlier batches loaded (the error says how many rows that is); with
    `atomic=True` the whole file is one transaction. `partition` sends every row to
    one partition, overriding the file's. A key repeated in the file is an upsert:
    the last row wins. Rows go in with binary COPY; into an empty space, the HNSW index
    is built once after the last batch (about 4x faster than growing it row by row).
    """
    h = handle_of(space)
    writer = _Writer(h, partition, create_partitions, progress)
    total = count_rows(path)
    scope = h.conn.transaction() if atomic else nullcontext()
    try:
        with scope:
            # One batch alone rebuilds the index itself (rows.multiset); several defer it.
            writer.deferred = total > batch_size and total >= rows.BULK_REBUILD_ROWS and _drop_index(h)
            try:
                for raw in iter_batches(path, batch_size, keys_file=keys_file):
                    writer.write(raw)
            except BaseException:
                # The earlier batches of a per-batch load stay, so they get their index back;
                # a failed atomic load rolls back, the dropped index included.
                if writer.deferred and not atomic:
                    with suppress(errors.EmbeddingHubError):
                        catalog.create_index(h, h.m, h.ef_construction)
                raise
            if writer.deferred:
                catalog.create_index(h, h.m, h.ef_construction)
            with translate(h.name):
                h.conn.execute(sql.SQL("ANALYZE {}").format(h.tables.live))
    except errors.EmbeddingHubError as exc:
        if writer.done and not atomic:
            exc.args = (f"{exc} ({writer.done} rows from earlier batches stay loaded)", *exc.args[1:])
        raise
    return writer.done


def _drop_index(h: SpaceHandle) -> bool:
    """Drop the indexes before a load into an empty space this role owns; False if it may not."""
    with translate(h.name), h.conn.transaction(), h.conn.cursor() as cur:
        if not catalog.may_rebuild_index(h, cur):
            return False
        catalog.drop_index(h, cur)
    return True


class _Writer:
    """Writes a file's batches to a space, creating partitions on the way when asked."""

    def __init__(
        self,
        h: SpaceHandle,
        partition: str | None,
        create_partitions: bool,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.h, self.partition, self.create_partitions = h, partition, create_partitions
        self.progress = progress
        self.deferred = False  # the index was dropped and is rebuilt after the last batch
        self.done = 0
        self.known: set[str] | None = None

    def write(self, raw: Batch) -> None:
        if self.partition:  # every row goes to one partition: keys collide there
            raw = replace(raw, partitions=None)
        batch = raw.deduplicated()
        parts = self.partition or batch.partitions
        if self.create_partitions and parts:
            self._create_partitions({parts} if isinstance(parts, str) else {p for p in parts if p})
        checked = rows.make_batch(self.h, batch.keys, batch.vectors, batch.metadata, parts)
        base = self.done

        def report(n: int) -> None:
            if self.progress is not None:
                self.progress(base + n)

        rows.multiset(self.h, checked, progress=report, rebuild_index=not self.deferred)
        self.done += len(raw)
        if self.progress is not None:
            self.progress(self.done)

    def _create_partitions(self, wanted: set[str]) -> None:
        if self.known is None:
            self.known = {p["name"] for p in catalog.list_partitions(self.h)}
        for name in sorted(wanted - self.known):
            catalog.create_partition(self.h, name)
            self.known.add(name)
