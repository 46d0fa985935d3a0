"""The wheel ships what an installed package needs: SQL, migrations, demo data, the CLI."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contents(tmp_path: Path) -> None:
    # Build isolation fetches hatchling from the configured package index (a local one here).
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp_path),
         str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("embeddinghub-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = zf.read(entry_points).decode()
    sql_files = {p.name for p in (ROOT / "sql").glob("*.sql")}
    assert sql_files and {f"embeddinghub/_sql/{n}" for n in sql_files} <= names
    assert "embeddinghub/_migrations/env.py" in names
    migrations = {p.name for p in (ROOT / "migrations" / "versions").glob("*.py")}
    assert {f"embeddinghub/_migrations/versions/{n}" for n in migrations} <= names
    assert "embeddinghub/data/pydocs_demo.npz" in names
    assert {"embeddinghub/py.typed", "embeddinghub/cli/__init__.py", "embeddinghub/ingest.py"} <= names
    assert "embeddinghub = embeddinghub.cli:main" in scripts
