"""Checking vectors and keys, and encoding matrices for binary COPY."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from . import errors

MAX_KEY_BYTES = 1024  # keeps (partition, key) well inside a B-tree entry


def check_key(space: str, key: object) -> str:
    if not isinstance(key, str):
        raise errors.InvalidArgument(
            f"space {space!r}: keys must be strings, not {type(key).__name__}"
        )
    if not key:
        raise errors.InvalidArgument(f"space {space!r}: keys must not be empty")
    if "\x00" in key:
        raise errors.InvalidArgument(f"space {space!r}: key {key[:40]!r} holds a NUL character")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise errors.InvalidArgument(
            f"space {space!r}: key {key[:40]!r}... is longer than {MAX_KEY_BYTES} bytes"
        )
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise errors.InvalidArgument(
            f"space {space!r}: key {key[:40]!r} is not valid UTF-8"
        ) from None
    return key


def check_keys(space: str, keys: Iterable[object]) -> list[str]:
    checked = [check_key(space, k) for k in keys]
    if len(set(checked)) != len(checked):
        seen: set[str] = set()
        dup = next(k for k in checked if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise errors.InvalidArgument(f"space {space!r}: key {dup!r} appears twice in one batch")
    return checked


def as_matrix(space: str, dims: int, dtype: str, data: Any, rows: int | None = None) -> np.ndarray:
    """`data` as a C-contiguous float32 (n, dims) matrix, or a typed error naming the space."""
    try:
        matrix = np.asarray(data, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise errors.InvalidEmbedding(
            f"space {space!r}: not a numeric vector/matrix ({exc})"
        ) from None
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2 or matrix.shape[1] != dims:
        got = matrix.shape[-1] if matrix.ndim else 0
        raise errors.DimensionMismatch(
            f"space {space!r} has {dims} dims; got vectors of shape {tuple(matrix.shape)}"
            f" ({got} dims)"
        )
    if rows is not None and matrix.shape[0] != rows:
        raise errors.InvalidArgument(f"space {space!r}: {rows} keys but {matrix.shape[0]} vectors")
    step = 1 << 16  # rows at a time, so checking a large matrix needs little memory
    for start in range(0, matrix.shape[0], step):
        block = matrix[start : start + step]
        if dtype == "float16":
            with np.errstate(over="ignore"):
                block = block.astype(np.float16)
        check_finite(space, block, start)
    return np.ascontiguousarray(matrix)


def query_matrix(space: str, dims: int, dtype: str, data: Any) -> np.ndarray:
    """Search vectors as an (n, dims) float32 matrix. A float32 array of the right shape for
    a float32 space is taken as it is, without a NaN/infinity check: pgvector refuses such a
    query vector itself (db.translate makes that InvalidEmbedding naming the space), and the
    checks cost a fixed share of every search. Anything else goes through as_matrix."""
    if sent_as_is(data, dims, dtype, ndim=2):
        return data  # type: ignore[no-any-return]
    if sent_as_is(data, dims, dtype, ndim=1):
        return data.reshape(1, dims)  # type: ignore[no-any-return]
    return as_matrix(space, dims, dtype, data)


def sent_as_is(data: Any, dims: int, dtype: str, *, ndim: int) -> bool:
    """Whether search vectors go to the server unchecked: a float32 array of `ndim`
    dimensions, rows of `dims`, for a float32 space (pgvector refuses NaN and infinity)."""
    return (
        type(data) is np.ndarray and data.dtype == np.float32 and dtype == "float32"
        and data.ndim == ndim and data.shape[-1] == dims
    )


def as_vector(space: str, dims: int, dtype: str, data: Any) -> np.ndarray:
    array = np.asarray(data) if not isinstance(data, np.ndarray) else data
    if array.ndim != 1:
        raise errors.DimensionMismatch(
            f"space {space!r} has {dims} dims; expected one vector, got shape {tuple(array.shape)}"
        )
    row: np.ndarray = as_matrix(space, dims, dtype, array)[0]
    return row


def check_finite(space: str, matrix: np.ndarray, offset: int = 0) -> None:
    finite = np.isfinite(matrix)  # a classification: it never warns, so no errstate
    if not finite.all():
        row = offset + int(np.argwhere(~finite.all(axis=1))[0][0])
        raise errors.InvalidEmbedding(
            f"space {space!r}: vector #{row} holds NaN or infinity"
            " (or a value outside float16 range)"
        )


def copy_rows(matrix: np.ndarray) -> bytes:
    """Binary COPY payload of rows (idx int4, embedding vector) built with numpy, no Python loop.

    Each row: int16 field count, int32 length + int32 index, int32 length + pgvector's
    binary vector (int16 dims, int16 unused, float32 values), all big-endian.
    """
    n, dims = matrix.shape
    row = np.dtype(
        [
            ("fields", ">i2"),
            ("idx_len", ">i4"),
            ("idx", ">i4"),
            ("vec_len", ">i4"),
            ("dims", ">i2"),
            ("unused", ">i2"),
            ("values", ">f4", (dims,)),
        ]
    )
    out = np.empty(n, dtype=row)
    out["fields"] = 2
    out["idx_len"] = 4
    out["idx"] = np.arange(1, n + 1, dtype=np.int32)
    out["vec_len"] = 4 + 4 * dims
    out["dims"] = dims
    out["unused"] = 0
    out["values"] = matrix
    return COPY_HEADER + out.tobytes() + COPY_TRAILER


COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"  # binary COPY
COPY_TRAILER = b"\xff\xff"


def vector_fields(matrix: np.ndarray, dtype: str) -> list[memoryview]:
    """Each row of `matrix` as a binary COPY field of the space's column type: int32 length,
    then pgvector's binary vector or halfvec (int16 dims, int16 unused, big-endian float32
    or float16 values). Built with numpy, no Python loop; the values are checked already."""
    n, dims = matrix.shape
    values = ">f4" if dtype == "float32" else ">f2"
    row = np.dtype([("len", ">i4"), ("dims", ">i2"), ("unused", ">i2"), ("values", values, (dims,))])
    out = np.empty(n, dtype=row)
    out["len"] = row.itemsize - 4
    out["dims"] = dims
    out["unused"] = 0
    out["values"] = matrix
    block = memoryview(out.tobytes())
    size = row.itemsize
    return [block[i * size : (i + 1) * size] for i in range(n)]


def normalise_metadata(space: str, metadata: Any) -> Any:
    """Metadata must be a JSON object (dict) or None."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise errors.InvalidArgument(
            f"space {space!r}: metadata must be a dict (JSON object), not {type(metadata).__name__}"
        )
    return metadata


def metadata_list(space: str, metadata: Any, n: int) -> Sequence[Any]:
    if metadata is None:
        return [None] * n
    if isinstance(metadata, dict):
        raise errors.InvalidArgument(
            f"space {space!r}: pass one metadata dict per key (a list), not a single dict"
        )
    items = list(metadata)
    if len(items) != n:
        raise errors.InvalidArgument(f"space {space!r}: {n} keys but {len(items)} metadata entries")
    return [normalise_metadata(space, m) for m in items]
