"""Behind PgBouncer in transaction mode: `connect(transaction_pooler=True)` works.

PgBouncer (Debian's package; .ci/run installs it) runs on 127.0.0.1 in front of the suite's
server, in transaction pooling mode with fewer server connections than clients, so
consecutive transactions of one client land on different server sessions. psycopg's
automatic prepared statements fail there (`prepared statement "_pg3_0" already exists`);
with `transaction_pooler=True` the hub prepares nothing and assumes no server-session state.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import embeddinghub as eh

PGBOUNCER = shutil.which("pgbouncer") or next(
    (p for p in ("/usr/sbin/pgbouncer",) if Path(p).exists()), None
)


def _password(params: dict[str, str]) -> str | None:
    if params.get("password"):
        return params["password"]
    passfile = params.get("passfile")
    if passfile and Path(passfile).exists():
        for line in Path(passfile).read_text().splitlines():
            if line and not line.startswith("#"):
                return line.rsplit(":", 1)[1]
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def bouncer(dsn: str) -> Iterator[str]:
    """A DSN through a PgBouncer in transaction mode in front of the suite's server."""
    if PGBOUNCER is None:
        if os.environ.get("CI"):
            pytest.fail("pgbouncer is not installed: .ci/run installs it (apt-get install pgbouncer)")
        pytest.skip("pgbouncer is not installed here (apt-get install pgbouncer); CI runs this test")
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items()}
    work = Path(tempfile.mkdtemp(prefix="ehpgb-"))
    port = _free_port()
    server = make_conninfo(
        "", host=params.get("host", "localhost"), port=params.get("port", "5432"),
        dbname=params.get("dbname", "embeddinghub"), user=params.get("user", "postgres"),
        password=_password(params) or "",
    )
    (work / "pgbouncer.ini").write_text(
        f"[databases]\nehdb = {server}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n"
        f"unix_socket_dir =\nauth_type = trust\nauth_file = {work}/users.txt\npool_mode = transaction\n"
        "default_pool_size = 2\nmax_client_conn = 100\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
        f"logfile = {work}/pgbouncer.log\npidfile = {work}/pgbouncer.pid\n"
    )
    (work / "users.txt").write_text(f'"{params.get("user", "postgres")}" ""\n')
    command = [PGBOUNCER, str(work / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root; the server's OS user can reach its socket
        shutil.chown(work, "embedded_postgres")
        for f in work.iterdir():
            shutil.chown(f, "embedded_postgres")
        command = ["runuser", "-u", "embedded_postgres", "--", *command]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = make_conninfo(
        "", host="127.0.0.1", port=port, dbname="ehdb", user=params.get("user", "postgres"),
        connect_timeout=5,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                psycopg.connect(client, autocommit=True).close()
                break
            except psycopg.OperationalError:
                assert proc.poll() is None, (work / "pgbouncer.log").read_text()
                assert time.monotonic() < deadline, (work / "pgbouncer.log").read_text()
                time.sleep(0.1)
        yield client
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def test_a_hub_works_behind_pgbouncer_in_transaction_mode(bouncer: str) -> None:
    name = f"pgb_{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(8)
    data = rng.normal(size=(200, 8)).astype(np.float32)
    failures: list[BaseException] = []
    with eh.connect(bouncer, transaction_pooler=True, pool=6) as hub:
        space = hub.create_space(name, dims=8)
        try:
            space.multiset([f"k{i}" for i in range(200)], data)

            def work(t: int) -> None:
                try:
                    for i in range(t, 200, 8):  # the same statements, many times, from 8 threads
                        assert space.nearest_neighbors(1, vector=data[i])[0].key == f"k{i}"
                        assert space.nearest_neighbors(3, vector=data[i], ef_search=20 + t)
                        space.set(f"k{i}", data[i], {"t": t})
                    space.snapshot(tag=f"t{t}")
                except BaseException as exc:  # reported below
                    failures.append(exc)

            threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(120)
            assert not failures, failures[:3]
            assert space.count() == 200 and len(space.versions()) == 8
        finally:
            hub.delete_space(name)


def test_the_async_api_works_behind_pgbouncer(bouncer: str) -> None:
    import asyncio

    import embeddinghub.aio as eha

    name = f"pgba_{uuid.uuid4().hex[:8]}"
    data = np.random.default_rng(9).normal(size=(100, 8)).astype(np.float32)

    async def main() -> list[str]:
        async with await eha.connect(bouncer, transaction_pooler=True, pool=4) as hub:
            space = await hub.create_space(name, dims=8)
            try:
                await space.multiset([f"k{i}" for i in range(100)], data)
                hits = await asyncio.gather(*(space.nearest_neighbors(1, vector=v) for v in data))
                return [h[0].key for h in hits]
            finally:
                await hub.delete_space(name)

    assert asyncio.run(main()) == [f"k{i}" for i in range(100)]
