"""History partitioned by partition identity (sql/ re-applied; sql/history.sql converts).

Revision ID: 0006
Revises: 0005

Each space's history table becomes LIST-partitioned on a new partition_id column: one
partition per space partition (kept when the partition is dropped) and a default one. A
partition grant's history policy is `partition_id = <its partition>`, which prunes every
other partition's images at plan time, so EXPLAIN ANALYZE no longer lets a partition
grantee count history rows it may not see. Existing histories are rewritten once, every
row image kept (time: about that of copying the table).
"""

from embeddinghub.migrate import apply_sql_files

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql_files()
