"""SQL API, versioning functions, access control and BI views (from sql/).

Revision ID: 0002
Revises: 0001

The files in sql/ always describe the newest catalog, so since revision 0004 they are
applied by the newest revision (`apply_sql_files()`), after its catalog changes: applied
here, on a new database, they would meet the catalog of 0001. A database already past 0002
got them here and gets the new definitions from 0004.
"""

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # sql/ is applied by the newest revision (see the docstring)
