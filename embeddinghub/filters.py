"""Metadata filters: a Mongo-style `where={...}` compiled to parameterised SQL on `metadata`.

Grammar (a filter is a dict; its entries are ANDed):

    {"lang": "en"}                          field equals a scalar
    {"lang": {"$ne": "en"}}                 an operator dict (several operators are ANDed)
    {"meta.author.name": "guido"}           dots walk into nested objects
    {"$and": [filter, ...]}, {"$or": [filter, ...]}

Operators: `$eq $ne $in $nin $gt $gte $lt $lte $exists`. Values are JSON scalars
(str, int, float, bool, None); `$in`/`$nin` take a list of them, `$exists` a bool.

Semantics, chosen so that no row can make the query fail:
- `$eq` is JSON equality of the value at the path: numbers compare numerically (1 == 1.0),
  a bool never equals a number, and `None` matches an explicit JSON `null` only (use
  `{"$exists": false}` for a missing field). Arrays are not searched for members.
  It compiles to `metadata @> {...}`, which a GIN index on `metadata` can serve.
- `$ne` and `$nin` are the negation of `$eq` / `$in`: they also match rows without the field.
- `$gt $gte $lt $lte` take a number or a string. A number matches numeric values only
  (compared as jsonb numerics), a string matches string values only, compared by code
  point (`COLLATE "C"`), so the answer does not depend on the server's locale. Values of
  another type never match, and never raise.
- `$exists: true` matches a present field, even when it holds `null`.
- A path's segments are object keys (dots separate them; a key that itself contains a dot
  cannot be addressed). Keys and values travel as bind parameters `%(f0)s, %(f1)s, ...`,
  which never collide with the search query's own `%(q)s %(k)s %(part)s`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from . import errors

__all__ = ["OPERATORS", "compile_where"]

OPERATORS = ("$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists")
LOGICAL = ("$and", "$or")
MAX_DEPTH = 32  # nesting of $and/$or; deeper filters are certainly not hand-written
MAX_PATH_DEPTH = 32
MAX_IN_EXPANDED = 64  # longer $in lists compare `metadata -> path = ANY(...)` (same semantics)
_COMPARE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def compile_where(space_name: str, where: Mapping[str, Any]) -> tuple[sql.Composable, dict[str, Any]]:
    """`(condition, params)` for a `where` filter; the condition is parenthesised.

    Raises InvalidArgument, naming the space (and the operator), for a malformed filter.
    """
    compiler = _Compiler(space_name)
    return compiler.filter(where, 0), compiler.params


class _Compiler:
    def __init__(self, space: str) -> None:
        self.space = space
        self.params: dict[str, Any] = {}

    def error(self, message: str) -> errors.InvalidArgument:
        return errors.InvalidArgument(f"space {self.space!r}: where filter: {message}")

    def param(self, value: Any) -> sql.Composable:
        name = f"f{len(self.params)}"
        self.params[name] = value
        return sql.Placeholder(name)

    # -- structure ----------------------------------------------------------------------
    def filter(self, where: Any, depth: int) -> sql.Composable:
        if not isinstance(where, Mapping):
            raise self.error(f"expected a dict, got {type(where).__name__}")
        if depth > MAX_DEPTH:
            raise self.error(f"nested deeper than {MAX_DEPTH} levels")
        parts: list[sql.Composable] = []
        for field, cond in where.items():
            if not isinstance(field, str):
                raise self.error(f"field names must be strings, not {field!r:.60}")
            if field in LOGICAL:
                parts.append(self.logical(field, cond, depth))
            elif field.startswith("$"):
                raise self.error(
                    f"unknown operator {field!r:.60} (logical operators: {', '.join(LOGICAL)})"
                )
            else:
                parts.append(self.field(field, cond))
        return _join(parts, "AND")

    def logical(self, op: str, items: Any, depth: int) -> sql.Composable:
        if not isinstance(items, list | tuple) or not items:
            raise self.error(f"{op} takes a non-empty list of filters")
        return _join([self.filter(item, depth + 1) for item in items], op[1:].upper())

    def field(self, field: str, cond: Any) -> sql.Composable:
        path = self.path(field)
        if isinstance(cond, Mapping):
            ops = list(cond)
            if not ops or not all(isinstance(o, str) and o.startswith("$") for o in ops):
                raise self.error(
                    f"field {field!r:.60}: a dict value must hold only operators"
                    f" ({', '.join(OPERATORS)}); use dots for nested fields, e.g. 'a.b'"
                )
            return _join([self.operator(field, path, op, cond[op]) for op in ops], "AND")
        return self.operator(field, path, "$eq", cond)

    def path(self, field: str) -> list[str]:
        segments = field.split(".")
        if any(not s for s in segments) or len(segments) > MAX_PATH_DEPTH:
            raise self.error(f"bad field path {field!r:.60}: empty segment or too deep")
        for s in segments:
            self.check_text(s, "field name")
        return segments

    # -- operators ----------------------------------------------------------------------
    def operator(self, field: str, path: list[str], op: str, value: Any) -> sql.Composable:
        if op in ("$eq", "$ne"):
            self.scalar(field, op, value)
            match = self.equals(path, value)
        elif op in ("$in", "$nin"):
            if not isinstance(value, list | tuple):
                raise self.error(f"field {field!r:.60}: {op} takes a list of values")
            for v in value:
                self.scalar(field, op, v)
            if not value:  # nothing is in the empty list
                return sql.SQL("FALSE" if op == "$in" else "TRUE")
            if len(value) <= MAX_IN_EXPANDED:  # an OR of containments: GIN-indexable
                match = _join([self.equals(path, v) for v in value], "OR")
            else:
                match = sql.SQL("{} = ANY({}::jsonb[])").format(
                    self.extract(path), self.param([Jsonb(v) for v in value])
                )
        else:
            return self.other(field, path, op, value)
        if op in ("$eq", "$in"):
            return match
        return sql.SQL("({}) IS NOT TRUE").format(match)  # also true where the field is missing

    def equals(self, path: list[str], value: Any) -> sql.Composable:
        """JSON equality of a scalar as containment, which the space's GIN index serves."""
        return sql.SQL("metadata @> {}").format(self.param(Jsonb(_nest(path, value))))

    def other(self, field: str, path: list[str], op: str, value: Any) -> sql.Composable:
        if op in _COMPARE:
            return self.compare(field, path, op, value)
        if op == "$exists":
            if not isinstance(value, bool):
                raise self.error(f"field {field!r:.60}: $exists takes true or false")
            return sql.SQL("{} IS {}NULL").format(
                self.extract(path), sql.SQL("NOT " if value else "")
            )
        raise self.error(
            f"unknown operator {op!r:.60} on field {field!r:.60} (known: {', '.join(OPERATORS)})"
        )

    def compare(self, field: str, path: list[str], op: str, value: Any) -> sql.Composable:
        symbol = sql.SQL(_COMPARE[op])
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise self.error(f"field {field!r:.60}: {op} takes a number or a string, not {value!r:.60}")
        self.scalar(field, op, value)
        value_at = self.extract(path)
        if isinstance(value, str):
            # Code-point order, whatever the database's collation; `#>> '{}'` never fails.
            return sql.SQL(
                "(jsonb_typeof({v}) = 'string' AND ({v} #>> '{{}}') COLLATE \"C\" {op} {x})"
            ).format(v=value_at, op=symbol, x=self.param(value))
        # jsonb compares numbers as numerics; the type test keeps strings/bools out.
        return sql.SQL("(jsonb_typeof({v}) = 'number' AND {v} {op} {x})").format(
            v=value_at, op=symbol, x=self.param(Jsonb(value))
        )

    def extract(self, path: list[str]) -> sql.Composable:
        """`metadata -> %(fi)s::text -> ...`: object keys only (a text key never indexes arrays)."""
        out: sql.Composable = sql.SQL("metadata")
        for segment in path:
            out = sql.SQL("{} -> {}::text").format(out, self.param(segment))
        return sql.SQL("({})").format(out)

    # -- values ---------------------------------------------------------------------------
    def scalar(self, field: str, op: str, value: Any) -> None:
        if value is None or isinstance(value, bool | int):
            return
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.error(f"field {field!r:.60}: {op} value {value!r} is not finite")
            return
        if isinstance(value, str):
            self.check_text(value, "value")
            return
        raise self.error(
            f"field {field!r:.60}: {op} takes JSON scalars (str, int, float, bool, None),"
            f" not {type(value).__name__}"
        )

    def check_text(self, text: str, what: str) -> None:
        # Postgres text and jsonb cannot hold NUL; a lone surrogate cannot be encoded.
        if "\x00" in text:
            raise self.error(f"{what} {text!r:.60} holds a NUL character")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise self.error(f"{what} {text!r:.60} is not valid UTF-8") from None


def _nest(path: list[str], value: Any) -> Any:
    for segment in reversed(path):
        value = {segment: value}
    return value


def _join(parts: list[sql.Composable], op: str) -> sql.Composable:
    if not parts:
        return sql.SQL("TRUE")  # {} matches every row
    if len(parts) == 1:
        return sql.SQL("({})").format(parts[0])
    return sql.SQL("({})").format(sql.SQL(f" {op} ").join(parts))
