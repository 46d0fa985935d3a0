"""The `embeddinghub` command line: every command, JSON output, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import numpy as np
import pytest
from click.testing import CliRunner, Result
from psycopg.conninfo import conninfo_to_dict

import embeddinghub as eh
from embeddinghub import demo, ingest
from embeddinghub.cli import main
from embeddinghub.server import EmbeddedServer

EXE = str(Path(sys.executable).parent / "embeddinghub")


@pytest.fixture
def cli(dsn: str) -> Callable[..., Result]:
    """Run the CLI in-process against the test database; check the exit code."""
    runner = CliRunner()

    def run(*args: str, code: int = 0, input: str | None = None) -> Result:
        result = runner.invoke(
            main, ["--dsn", dsn, *args], input=input, env={"EMBEDDINGHUB_DSN": None}
        )
        assert result.exit_code == code, (result.output, result.exception)
        if code:
            assert result.exception is None or isinstance(result.exception, SystemExit)
        return result

    return run


@pytest.fixture
def name(hub: eh.Hub) -> Iterator[str]:
    """A unique space name, dropped after the test."""
    space = f"c_{uuid.uuid4().hex[:10]}"
    yield space
    if hub.has_space(space):
        hub.delete_space(space)


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


def error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


ROWS = [
    {"key": "apple", "embedding": [1.0, 0.0, 0.0], "metadata": {"kind": "fruit"}},
    {"key": "pear", "embedding": [0.9, 0.1, 0.0], "metadata": {"kind": "fruit"}},
    {"key": "carrot", "embedding": [0.0, 1.0, 0.0], "metadata": {"kind": "veg"}},
    {"key": "leek", "embedding": [0.0, 0.9, 0.1], "partition": "green"},
]


def all_commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for cmd_name, cmd in sorted(group.commands.items()):
        yield f"{prefix}{cmd_name}", cmd
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, f"{prefix}{cmd_name} ")


def test_every_command_has_an_example_and_read_commands_take_json() -> None:
    missing = [n for n, c in all_commands(main) if "Example:" not in (c.help or "")]
    assert missing == []
    for read in ("space list", "space show", "get", "nn", "server status", "init"):
        cmd = dict(all_commands(main))[read]
        assert {"--json", "--table"} <= {o for p in cmd.params for o in p.opts}, read


def test_init_prints_redacted_dsn_and_revision(cli: Callable[..., Result], dsn: str) -> None:
    info = as_json(cli("init", "--json"))
    assert info["schema_revision"] == info["head_revision"] is not None
    assert conninfo_to_dict(dsn)["dbname"] in info["dsn"]  # whatever the test database is
    table = cli("init").stdout
    assert "schema_revision" in table and info["head_revision"] in table


def test_space_lifecycle(cli: Callable[..., Result], name: str) -> None:
    out = cli("space", "create", name, "--dims", "3", "--metric", "cosine", "--dtype", "float16",
              "--description", "fruit", "--auto-partition")
    assert f"created space {name!r} (3 dims, cosine, float16)" in out.stdout
    listed = {s["name"]: s for s in as_json(cli("space", "list", "--json"))}
    assert listed[name]["dims"] == 3 and listed[name]["metric"] == "cosine"
    assert name in cli("space", "list", "--table").stdout
    info = as_json(cli("space", "show", name, "--json"))
    assert info["rows"] == 0 and info["auto_partition"] is True and info["description"] == "fruit"
    assert info["partitions"] == ["default"]
    table = cli("space", "show", name).stdout
    assert "dtype" in table and "float16" in table
    cli("space", "create", name, "--dims", "3", code=1)
    cli("space", "freeze", name)
    assert as_json(cli("space", "show", name, "--json"))["frozen"] is True
    # drop asks first; "n" keeps the space.
    kept = cli("space", "drop", name, input="n\n", code=1)
    assert "Drop space" in kept.stderr and "Aborted" in kept.stderr
    assert as_json(cli("space", "show", name, "--json"))["name"] == name
    assert "dropped" in cli("space", "drop", name, input="y\n").stdout
    error = error_line(cli("space", "show", name, code=1))
    assert error == f"Error: space {name!r} does not exist"


def test_space_create_rejects_bad_arguments(cli: Callable[..., Result], name: str) -> None:
    assert "dims must be an integer" in error_line(cli("space", "create", name, "--dims", "0", code=1))
    bad = cli("space", "create", name, "--dims", "3", "--metric", "manhattan", code=2)
    assert "manhattan" in bad.stderr
    assert "invalid space name" in error_line(cli("space", "create", "no spaces", "--dims", "3", code=1))
    error_line(cli("space", "drop", name, "--yes", code=1))
    error_line(cli("space", "freeze", name, code=1))


def test_load_get_nn_export(cli: Callable[..., Result], name: str, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "rows.jsonl", ROWS)
    # A file naming a missing partition fails until --create-partitions.
    failed = error_line(cli("load", str(src), "--space", name, "--create", "--metric", "cosine",
                            "--silent", code=1))
    assert "partition 'green' does not exist" in failed
    assert "does not exist" in error_line(cli("space", "show", name, code=1))  # --create undone
    out = cli("load", str(src), "--space", name, "--create", "--metric", "cosine",
              "--create-partitions")
    assert f"loaded 4 rows into space {name!r}" in out.stdout
    assert out.stderr == ""  # no progress bar when stderr is not a terminal
    info = as_json(cli("space", "show", name, "--json"))
    assert (info["dims"], info["metric"], info["rows"]) == (3, "cosine", 4)
    assert info["partitions"] == ["default", "green"]

    got = as_json(cli("get", name, "apple", "--json"))
    assert got == {"key": "apple", "partition": "default", "vector": [1.0, 0.0, 0.0],
                   "metadata": {"kind": "fruit"}}
    assert "apple" in cli("get", name, "apple").stdout
    leek = as_json(cli("get", name, "leek", "--partition", "green", "--json"))
    assert leek["vector"] == pytest.approx([0.0, 0.9, 0.1])
    assert "'leek' not found" in error_line(cli("get", name, "leek", code=1))

    hits = as_json(cli("nn", name, "--key", "apple", "-k", "2", "--json"))
    assert [h["key"] for h in hits] == ["pear", "carrot"]
    assert hits[0]["rank"] == 1 and hits[0]["metadata"] == {"kind": "fruit"}
    table = cli("nn", name, "--key", "apple", "-k", "2").stdout
    assert "pear" in table and "distance" in table
    hits = as_json(cli("nn", name, "--vector", "[0, 1, 0]", "-k", "3", "--json"))
    assert [(h["key"], h["partition"]) for h in hits] == [
        ("carrot", "default"), ("leek", "green"), ("pear", "default")  # every partition
    ]
    hits = as_json(cli("nn", name, "--vector", "[0, 1, 0]", "-k", "1", "--partition", "green",
                       "--json"))
    assert [(h["key"], h["partition"]) for h in hits] == [("leek", "green")]
    hits = as_json(cli("nn", name, "--key", "leek", "--key-partition", "green", "-k", "1", "--json"))
    assert hits[0]["key"] == "carrot"
    hits = as_json(cli("nn", name, "--vector", "[1, 0, 0]", "--where", '{"kind": "veg"}',
                       "--ef-search", "100", "--json"))
    assert [h["key"] for h in hits] == ["carrot"]

    for fmt in ("npz", "jsonl"):
        dest = tmp_path / f"export.{fmt}"
        out = cli("export", name, str(dest), "--silent")
        assert f"exported 4 rows of space {name!r}" in out.stdout
        batch = ingest.read(dest)
        assert sorted(zip(batch.partitions or [], batch.keys, strict=True)) == [
            ("default", "apple"), ("default", "carrot"), ("default", "pear"), ("green", "leek")
        ]
        assert dict(zip(batch.keys, batch.metadata or [], strict=True))["apple"] == {"kind": "fruit"}
        copy = f"{name}_{fmt}"
        try:
            cli("load", str(dest), "-s", copy, "--create", "--metric", "cosine",
                "--create-partitions", "--silent")
            assert as_json(cli("nn", copy, "--key", "apple", "-k", "1", "--json"))[0]["key"] == "pear"
        finally:
            cli("space", "drop", copy, "--yes")
    green = tmp_path / "green.jsonl"
    cli("export", name, str(green), "--partition", "green", "--silent")
    header, *lines = map(json.loads, green.read_text().splitlines())
    assert header == {"embeddinghub": {"dims": 3, "metric": "cosine", "dtype": "float32"}}
    assert [r["key"] for r in lines] == ["leek"]


def test_load_npy_with_keys_into_one_partition(cli: Callable[..., Result], name: str,
                                               tmp_path: Path) -> None:
    matrix = np.eye(4, dtype=np.float32)
    np.save(tmp_path / "m.npy", matrix)
    keys = tmp_path / "keys.txt"
    keys.write_text("a\nb\nc\nd\n", encoding="utf-8")
    cli("space", "create", name, "--dims", "4")
    cli("load", str(tmp_path / "m.npy"), "-s", name, "--keys", str(keys), "-p", "p1",
        "--create-partitions", "--batch-size", "3", "--atomic", "--silent")
    assert as_json(cli("get", name, "c", "-p", "p1", "--json"))["vector"] == [0, 0, 1, 0]
    cli("load", str(tmp_path / "m.npy"), "-s", name, "--silent")  # keys 0..3, default partition
    assert as_json(cli("space", "show", name, "--json"))["rows"] == 8


def test_load_and_nn_bad_inputs(
    cli: Callable[..., Result], name: str, tmp_path: Path, hub: eh.Hub
) -> None:
    cli("space", "create", name, "--dims", "2")
    wide = write_jsonl(tmp_path / "wide.jsonl", ROWS[:1])
    assert "has 2 dims" in error_line(cli("load", str(wide), "-s", name, "--silent", code=1))
    assert "no such file" in error_line(cli("load", str(tmp_path / "nope.csv"), "-s", name, code=1))
    unknown = tmp_path / "x.xlsx"
    unknown.write_text("x")
    assert "unknown file type '.xlsx'" in error_line(cli("load", str(unknown), "-s", name, code=1))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert "has no rows" in error_line(cli("load", str(empty), "-s", f"{name}_new", "--create",
                                           code=1))
    error = error_line(cli("load", str(wide), "-s", name, "--metric", "cosine", code=1))
    assert "--metric and --dtype apply only with --create" in error
    assert "does not exist" in error_line(cli("load", str(wide), "-s", f"{name}_x", code=1))
    # A space made by --create goes again when the load fails with nothing loaded.
    bad = write_jsonl(tmp_path / "bad.jsonl", [ROWS[0], {"key": "b", "embedding": [1.0, 2.0]}])
    assert "line 2: embedding has 2 values; expected 3" in error_line(
        cli("load", str(bad), "-s", f"{name}_new", "--create", code=1))
    assert not hub.has_space(f"{name}_new")

    assert "exactly one of --key or --vector" in error_line(cli("nn", name, code=1))
    error_line(cli("nn", name, "--key", "a", "--vector", "[1, 2]", code=1))
    assert "--vector is not valid JSON" in error_line(cli("nn", name, "--vector", "[1,", code=1))
    assert "--vector must be a JSON list" in error_line(cli("nn", name, "--vector", "{}", code=1))
    assert "has 2 dims" in error_line(cli("nn", name, "--vector", "[1, 2, 3]", code=1))
    assert "--where is not valid JSON" in error_line(
        cli("nn", name, "--vector", "[1, 2]", "--where", "{kind: 1}", code=1))
    assert "--where must be a JSON object" in error_line(
        cli("nn", name, "--vector", "[1, 2]", "--where", "[1]", code=1))
    assert "where filter" in error_line(
        cli("nn", name, "--vector", "[1, 2]", "--where", '{"a": {"$regex": "x"}}', code=1))
    assert "ef_search must be from 1 to 1000" in error_line(
        cli("nn", name, "--vector", "[1, 2]", "--ef-search", "0", code=1))
    assert "does not exist" in error_line(cli("nn", "no-such-space", "--key", "a", code=1))
    assert "does not exist" in error_line(cli("export", "no-such-space", str(tmp_path / "e.npz"),
                                              code=1))
    assert "can export to .npz or .jsonl" in error_line(
        cli("export", name, str(tmp_path / "e.csv"), code=1))


def test_demo(cli: Callable[..., Result], hub: eh.Hub) -> None:
    try:
        out = cli("demo").stdout
        sp = hub.get_space(demo.SPACE)
        batch = ingest.read(demo.data_path())
        assert len(sp) == len(batch) and 2500 <= len(batch) <= 3500
        assert {p["name"] for p in sp.list_partitions()} == {"default", *(batch.partitions or [])}
        assert sp.dtype == "float16" and sp.metric == "cosine"
        for _, key, _ in demo.QUERIES:
            assert key in out
        assert "library/bisect#7523" in out  # heapq's nearest neighbour
        assert f"embeddinghub nn {demo.SPACE}" in out
    finally:
        if hub.has_space(demo.SPACE):
            hub.delete_space(demo.SPACE)


def test_demo_data_is_small_and_well_formed() -> None:
    path = demo.data_path()
    assert path.stat().st_size < 4 << 20
    with np.load(path) as z:
        assert z["embeddings"].dtype == np.float16 and z["embeddings"].shape[1] == 384
        assert len(set(z["keys"].tolist())) == len(z["keys"])
        assert len(set(z["partitions"].tolist())) == 15


def test_build_data_keeps_whole_documents_deterministically(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    ids, sections = [], []
    for section, docs in (("library", 12), ("faq", 3), ("tiny", 1)):
        for d in range(docs):
            for _ in range(5 if section != "tiny" else 1):
                ids.append(f"{section}/doc{d}#{len(ids)}")
                sections.append(section)
    np.save(src / "corpus.npy", np.random.default_rng(0).random((len(ids), 8)).astype(np.float16))
    (src / "corpus_ids.txt").write_text("\n".join(ids) + "\n")
    (src / "corpus_sections.txt").write_text("\n".join(sections) + "\n")
    first = demo.build_data(src, tmp_path / "a.npz", rows=38)
    second = demo.build_data(src, tmp_path / "b.npz", rows=38)
    assert first.read_bytes() == second.read_bytes()
    batch = ingest.read(first)
    # Shares in proportion to section size, at least 20 rows (or the whole section).
    assert {s: (batch.partitions or []).count(s) for s in ("library", "faq", "tiny")} == {
        "library": 30, "faq": 15, "tiny": 1}
    per_doc: dict[str, int] = {}
    for key in batch.keys:
        per_doc[key.split("#")[0]] = per_doc.get(key.split("#")[0], 0) + 1
    assert set(per_doc.values()) == {5, 1}  # whole documents only
    # A share no whole document fits is topped up with part of one.
    batch = ingest.read(demo.build_data(src, tmp_path / "c.npz", rows=40))
    assert (batch.partitions or []).count("library") == 32


# -- the installed entry point, as a user runs it ----------------------------------------------
def run_exe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "EMBEDDINGHUB_DSN"}
    full.update(env or {})
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=full, timeout=120)


def test_entry_point_errors_are_one_line_without_traceback(dsn: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"key": "a", "embedding": [1, 2]}\n{"key": "b", "embedding": [1,\n')
    cases = [
        (["space", "show", "no-such-space"], "Error: space 'no-such-space' does not exist"),
        (["nn", "no-such-space", "--vector", "[1,"], "Error: --vector is not valid JSON"),
        (["load", str(bad), "-s", "x", "--create"], f"Error: {bad} line 2: the line is not valid JSON"),
    ]
    for args, message in cases:
        proc = run_exe("--dsn", dsn, *args)
        assert proc.returncode == 1, proc
        assert "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
        assert proc.stderr.startswith(message), proc.stderr
    proc = run_exe("--dsn", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", "space", "list")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Error: cannot connect to postgresql://nobody@127.0.0.1:1/none")
    version = run_exe("--version")
    assert version.returncode == 0 and eh.__version__ in version.stdout


def test_server_start_status_url_stop() -> None:
    # A short home: the Unix socket path must stay under ~100 bytes.
    home = Path(tempfile.mkdtemp(prefix="ehs", dir="/tmp"))
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Result:
        result = runner.invoke(main, list(args),
                               env={"EMBEDDINGHUB_HOME": str(home), "EMBEDDINGHUB_DSN": None})
        assert result.exit_code == code, (result.output, result.exception)
        return result

    try:
        status = json.loads(run("server", "status", "--json").stdout)
        assert status == {"home": str(home), "running": False, "pid": None, "url": None}
        assert "no server running" in error_line(run("server", "url", code=1))
        url = run("server", "start").stdout.strip()
        assert url.startswith("postgresql://") and str(home) in url
        status = json.loads(run("server", "status", "--home", str(home), "--json").stdout)
        assert status["running"] is True and status["url"] == url and status["pid"] > 0
        assert run("server", "url").stdout.strip() == url
        # Without --dsn, commands use the embedded server in $EMBEDDINGHUB_HOME.
        info = json.loads(run("init", "--json").stdout)
        assert info["schema_revision"] == info["head_revision"]
        assert str(home) in info["dsn"]
        assert "stopped the server" in run("server", "stop").stdout
        assert json.loads(run("server", "status", "--json").stdout)["running"] is False
        assert "no server running" in run("server", "stop", "--home", str(home)).stdout
    finally:
        EmbeddedServer(home).stop()
        shutil.rmtree(home, ignore_errors=True)
