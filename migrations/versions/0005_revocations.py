"""Revoking without DELETE: admins revoke by inserting into embeddinghub.grant_revocations
(sql/ re-applied).

Revision ID: 0005
Revises: 0004

DELETE (or UPDATE) on embeddinghub.grants also let a space admin `LOCK` the grants table in
ACCESS EXCLUSIVE mode, and every policy check of every space reads that table: one admin
could stall the whole hub. Admins now hold INSERT only (no lock above ROW EXCLUSIVE, which
blocks no reader or writer); a revocation is a row naming the grant, admitted by the
table's RLS inside the admin's scope, and its trigger deletes the grant as the catalog
owner. Re-applying sql/acl.sql re-derives every grantee's privileges (DELETE goes).
"""

from embeddinghub.migrate import apply_sql_files

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql_files()
