"""SQL API, versioning functions, access control and BI views (from sql/).

Revision ID: 0002
Revises: 0001
"""

from embeddinghub.migrate import run_sql_file

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Order matters: later files call functions defined in earlier ones.
SQL_FILES = ("versions.sql", "functions.sql", "acl.sql", "views.sql")


def upgrade() -> None:
    for name in SQL_FILES:
        run_sql_file(name)
