"""SQLAlchemy: declarative models of the catalog, and a space's tables as `Table`s with
pgvector's types, composable into queries that use the space's HNSW index."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import sqlalchemy
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

import embeddinghub as eh
from embeddinghub import models


@pytest.fixture
def engine(dsn: str) -> Iterator[sqlalchemy.Engine]:
    eng = models.engine(dsn)
    yield eng
    eng.dispose()


def _filled(make_space: Callable[..., eh.Space], **kw: Any) -> tuple[eh.Space, np.ndarray]:
    space = make_space(dims=6, **kw)
    data = np.random.default_rng(3).standard_normal((300, 6)).astype(np.float32)
    space.multiset([f"k{i}" for i in range(300)], data)
    return space, data


@pytest.mark.parametrize(
    ("metric", "dtype", "method"),
    [("cosine", "float32", "cosine_distance"), ("l2", "float32", "l2_distance"),
     ("ip", "float32", "max_inner_product"), ("l2", "float16", "l2_distance")],
)
def test_space_table_queries_match_nearest_neighbors(
    engine: sqlalchemy.Engine, make_space: Callable[..., eh.Space],
    metric: str, dtype: str, method: str,
) -> None:
    space, data = _filled(make_space, metric=metric, dtype=dtype)
    table = space.table()
    assert table.fullname == f"embeddinghub_data.s{space.id}"
    q = data[10] + 0.05
    distance = getattr(table.c.embedding, method)(q)
    stmt = select(table.c.key, distance.label("d")).order_by(distance).limit(5)
    with engine.connect() as conn:
        conn.exec_driver_sql(f"SET hnsw.ef_search = {space.ef_search}")
        conn.exec_driver_sql("SET enable_seqscan = off")  # 300 rows: show the index can serve it
        rows = conn.execute(stmt).all()
        plan = "\n".join(r[0] for r in conn.execute(
            sqlalchemy.text("EXPLAIN " + str(stmt.compile(engine, compile_kwargs={"literal_binds": True})))
        ))
    want = space.nearest_neighbors(5, vector=q)
    assert [r.key for r in rows] == [n.key for n in want]
    assert np.allclose([r.d for r in rows], [n.distance for n in want], atol=1e-3)
    assert "Index Scan" in plan and "Order By" in plan  # the HNSW index serves the ORDER BY


def test_space_table_reads_and_writes(engine: sqlalchemy.Engine, space: eh.Space) -> None:
    table = models.space_table(space)
    with engine.begin() as conn:
        conn.execute(insert(table).values(partition="default", key="orm", embedding=[1, 2, 3, 4],
                                          metadata={"via": "sqlalchemy"}))
    assert space.get("orm").tolist() == [1.0, 2.0, 3.0, 4.0]
    assert space.get_metadata("orm") == {"via": "sqlalchemy"}
    with engine.connect() as conn:
        row = conn.execute(select(table).where(table.c.key == "orm")).one()
    assert np.allclose(row.embedding, [1, 2, 3, 4])
    assert row.version >= 1  # stamped by the row trigger, as for any writer


def test_history_table(engine: sqlalchemy.Engine, space: eh.Space) -> None:
    space.set("k", np.zeros(4))
    space.hub.execute("SELECT embeddinghub.snapshot(%s)", (space.name,))
    space.set("k", np.ones(4))
    hist = models.history_table(space)
    with engine.connect() as conn:
        rows = conn.execute(select(hist.c.key, hist.c.embedding, hist.c.valid_to)).all()
    assert len(rows) == 1 and rows[0].key == "k" and np.allclose(rows[0].embedding, 0)


def test_catalog_models(engine: sqlalchemy.Engine, space: eh.Space, make_role: Any) -> None:
    space.create_partition("p1")
    role = make_role("orm")
    space.grant(role.name, "read", partition="p1")
    space.hub.execute("SELECT embeddinghub.snapshot(%s, 'orm-tag')", (space.name,))
    with Session(engine) as session:
        record = session.scalars(
            select(models.SpaceRecord).where(models.SpaceRecord.name == space.name)
        ).one()
        assert (record.id, record.dims, record.metric, record.dtype) == (space.id, 4, "l2", "float32")
        assert [p.name for p in record.partitions] == ["default", "p1"]
        assert [(g.role, g.privilege, g.partition) for g in record.grants] == [(role.name, "read", "p1")]
        assert [v.tag for v in record.versions] == ["orm-tag"]
        assert record.partitions[0].space is record
        count = session.scalar(
            select(func.count()).select_from(models.GrantRecord)
            .where(models.GrantRecord.space_id == space.id)
        )
        assert count == 1


def test_models_obey_row_level_security(space: eh.Space, make_role: Any) -> None:
    space.create_partition("p1")
    space.set("mine", np.ones(4), partition="p1")
    space.set("theirs", np.ones(4))
    role = make_role("orm")
    space.grant(role.name, "read", partition="p1")
    eng = models.engine(eh.acl.role_dsn(role.dsn, role.name, role.password))
    try:
        table = space.table()
        with Session(eng) as session:
            assert session.scalars(select(table.c.key)).all() == ["mine"]
            names = session.scalars(select(models.PartitionRecord.name)).all()
            assert names == ["p1"]
            assert session.scalars(select(models.SpaceRecord.name)).all() == [space.name]
    finally:
        eng.dispose()
