"""embeddinghub.unfreeze(space): make a frozen space writable again (from sql/unfreeze.sql).

Revision ID: 0004
Revises: 0003
"""

from embeddinghub.migrate import run_sql_file

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("unfreeze.sql")
