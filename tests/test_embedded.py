"""The embedded server: persistence, sharing one home across processes, seed-product quickstart."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import embeddinghub as eh
from embeddinghub.server import EmbeddedServer


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ehhome-"))
    yield path
    EmbeddedServer(path).stop()
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env, "PYTHONWARNINGS": "ignore"},
    )


QUICKSTART = """
    import embeddinghub as eh, sys
    hub = eh.connect(eh.LocalConfig(sys.argv[1] if len(sys.argv) > 1 else {path!r}))
    space = hub.create_space("quickstart", dims=3)
    embeddings = {{
        "apple": [1, 0, 0],
        "orange": [1, 1, 0],
        "potato": [0, 1, 0],
        "chicken": [-1, -1, 0],
    }}
    space.multiset(embeddings)
    neighbors = space.nearest_neighbors(key="apple", num=2)
    print([n.key for n in neighbors])
"""


def test_seed_quickstart_runs_and_persists(home: Path) -> None:
    first = run_python(QUICKSTART.format(path=str(home / "data")))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "['orange', 'potato']"
    # a new process sees the data: local mode persists
    second = run_python(f"""
        import embeddinghub as eh
        hub = eh.connect(eh.LocalConfig({str(home / "data")!r}))
        space = hub.get_space("quickstart")
        print(len(space), space.get("apple").tolist(), sorted(k for k, _ in space.iterator()))
        print(space.multiget(["apple", "potato"]).tolist())
        space.delete("chicken")
        hub.delete_space("quickstart")
        print(hub.has_space("quickstart"))
    """)
    assert second.returncode == 0, second.stderr
    lines = second.stdout.strip().splitlines()
    assert lines[0] == "4 [1.0, 0.0, 0.0] ['apple', 'chicken', 'orange', 'potato']"
    assert lines[1] == "[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]"
    assert lines[2] == "False"
    EmbeddedServer(home / "data").stop()


def test_two_processes_share_one_home(home: Path) -> None:
    shared = home / "shared"
    code = """
        import embeddinghub as eh, os, time
        hub = eh.connect()
        pid = hub.execute("SELECT pg_backend_pid()")[0][0]
        server = hub.execute("SELECT setting FROM pg_settings WHERE name = 'data_directory'")[0][0]
        name = "proc_" + str(os.getpid())
        space = hub.create_space(name, dims=2)
        space.set("k", [1, 2])
        time.sleep(1)
        print(server, len(hub.list_spaces()))
    """
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "EMBEDDINGHUB_HOME": str(shared),
                "PYTHONWARNINGS": "ignore",
                "EMBEDDINGHUB_DSN": "",
            },
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for proc, (_out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
    dirs = {o.split()[0] for o, _ in outs}
    assert len(dirs) == 1  # one server, one data directory
    status = EmbeddedServer(shared).status()
    assert status.running and status.url and str(shared) in status.url
    with eh.connect(status.url) as hub:
        assert len([s for s in hub.list_spaces() if s["name"].startswith("proc_")]) == 2
    assert EmbeddedServer(shared).stop() is True
    assert EmbeddedServer(shared).status().running is False
    assert EmbeddedServer(shared).stop() is False


def test_config_connects_to_a_server(dsn: str) -> None:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    password = params.get("password")
    if password is None and "EMBEDDINGHUB_TEST_HOME" in os.environ:
        # the embedded server's DSN reaches the password through its passfile
        password = EmbeddedServer(os.environ["EMBEDDINGHUB_TEST_HOME"]).password()
    config = eh.Config(
        host=str(params.get("host", "localhost")),
        port=int(str(params.get("port", 5432))),
        user=str(params.get("user")),
        password=str(password) if password else None,
        database=str(params.get("dbname")),
    )
    with eh.connect(config) as hub:
        assert hub.execute("SELECT 1")[0][0] == 1
    if password:  # neither the repr nor str of a Config shows it
        assert str(password) not in repr(config) and str(password) not in str(config)
        assert "password=***" in repr(config)
        assert str(password) in config.dsn()  # the real DSN still connects


def test_server_settings_and_restart_in_one_process(home: Path) -> None:
    target = home / "restart"
    server = EmbeddedServer(target)
    for _ in range(2):  # stop, then start again from the same process
        with eh.connect(eh.LocalConfig(target)) as hub:
            shared = hub.execute("SELECT setting::bigint * 8 / 1024 FROM pg_settings"
                                 " WHERE name = 'shared_buffers'")[0][0]
            assert 128 <= shared <= 1024  # MB: an eighth of memory, within bounds
            # WAL kept small and reserved, so a full disk fails a statement, not the server
            assert hub.execute("SHOW max_wal_size")[0][0] == "512MB"
            assert hub.execute("SHOW min_wal_size")[0][0] == "256MB"
            assert hub.execute("SHOW wal_level")[0][0] == "minimal"
            assert hub.execute("SHOW max_replication_slots")[0][0] == "0"
        assert server.stop() is True
        assert server.status().running is False
    conf = (target / "pgdata" / "postgresql.conf").read_text()
    assert conf.count("# embeddinghub: settings") == 1  # written once, at creation
