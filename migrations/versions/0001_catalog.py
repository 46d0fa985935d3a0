"""Catalog: spaces, partitions, versions, grants; the row trigger of space tables.

Revision ID: 0001
Revises:
"""

from alembic import op

from embeddinghub.migrate import run_sql_file

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute("CREATE SCHEMA IF NOT EXISTS embeddinghub_data")
    op.execute("CREATE SCHEMA IF NOT EXISTS embeddinghub_views")
    op.execute(
        """
        CREATE TABLE embeddinghub.spaces (
            id                   serial PRIMARY KEY,
            name                 text NOT NULL UNIQUE,
            dims                 integer NOT NULL CHECK (dims BETWEEN 1 AND 4000),
            metric               text NOT NULL CHECK (metric IN ('l2', 'cosine', 'ip')),
            dtype                text NOT NULL CHECK (dtype IN ('float32', 'float16')),
            frozen               boolean NOT NULL DEFAULT false,
            head_version         bigint NOT NULL DEFAULT 1,
            hnsw_m               integer NOT NULL DEFAULT 16,
            hnsw_ef_construction integer NOT NULL DEFAULT 64,
            ef_search            integer NOT NULL DEFAULT 40,
            auto_partition       boolean NOT NULL DEFAULT false,
            description          text,
            owner                name NOT NULL DEFAULT current_user,
            created_at           timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE embeddinghub.partitions (
            id         serial PRIMARY KEY,
            space_id   integer NOT NULL REFERENCES embeddinghub.spaces ON DELETE CASCADE,
            name       text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (space_id, name)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE embeddinghub.versions (
            space_id   integer NOT NULL REFERENCES embeddinghub.spaces ON DELETE CASCADE,
            number     bigint NOT NULL,
            tag        text,
            note       text,
            created_at timestamptz NOT NULL DEFAULT now(),
            created_by name NOT NULL DEFAULT current_user,
            row_count  bigint,
            PRIMARY KEY (space_id, number),
            UNIQUE (space_id, tag)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE embeddinghub.grants (
            id         serial PRIMARY KEY,
            space_id   integer NOT NULL REFERENCES embeddinghub.spaces ON DELETE CASCADE,
            partition  text,
            role       name NOT NULL,
            privilege  text NOT NULL CHECK (privilege IN ('read', 'write', 'admin')),
            granted_by name NOT NULL DEFAULT current_user,
            granted_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE NULLS NOT DISTINCT (space_id, partition, role, privilege)
        )
        """
    )
    run_sql_file("triggers.sql")
