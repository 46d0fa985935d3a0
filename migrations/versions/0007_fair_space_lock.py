"""A fair space lock for snapshot, rollback, prune and freeze (sql/ re-applied).

Revision ID: 0007
Revises: 0006

The owner-side operations queue for SHARE on the space's parent table before they take the
exclusive row lock on its catalog row, so a steady stream of writers can no longer hold a
snapshot off until it gives up; partition changes take their ACCESS EXCLUSIVE lock on the
parent before the row lock. Function bodies only: nothing is rewritten.
"""

from embeddinghub.migrate import apply_sql_files

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql_files()
