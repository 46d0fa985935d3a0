"""A per-space recall target (`Space.set_target_recall`, aimed at by `tune()`) and the kind
of a space's HNSW index (over the vectors, their halfvec copies, or their binary quantization).

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE embeddinghub.spaces ADD COLUMN target_recall real"
        " CHECK (target_recall > 0 AND target_recall <= 1)"
    )
    op.execute(
        "ALTER TABLE embeddinghub.spaces ADD COLUMN index_kind text NOT NULL DEFAULT 'hnsw'"
        " CHECK (index_kind IN ('hnsw', 'hnsw_halfvec', 'hnsw_bit'))"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE embeddinghub.spaces DROP COLUMN index_kind")
    op.execute("ALTER TABLE embeddinghub.spaces DROP COLUMN target_recall")
