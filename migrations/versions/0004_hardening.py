"""Hardening: grants tied to partition identity, no grants to the hub owner, row locks
instead of advisory locks, pinned search_path everywhere, unfreeze() (sql/ re-applied).

Revision ID: 0004
Revises: 0003

 * partitions.created_version: the working version when the partition was created. A
   partition grant admits history rows born at or after it only, so a partition re-created
   under an old name (a new tenant) never exposes the rows of its predecessor.
 * grants.partition_id references the partition (ON DELETE CASCADE): dropping a partition
   drops its grants, and with them their policies and table privileges. Grants of
   partitions already dropped are deleted here.
 * Grants naming the hub owner, a superuser or a BYPASSRLS role are deleted (and refused
   from now on), and the owner's own privileges on space tables are restored: such a grant
   made the privilege sync revoke the owner's privileges.
 * The versions table is renamed version_log and read through the view
   embeddinghub.versions (same columns), which shows the cached whole-space row_count only
   to the hub owner and whole-space readers: a partition grantee sees NULL there, and
   list_versions() counts its partitions' rows for it.
"""

from alembic import op

from embeddinghub.migrate import apply_sql_files

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE embeddinghub.partitions"
        " ADD COLUMN IF NOT EXISTS created_version bigint NOT NULL DEFAULT 0"
    )
    op.execute(
        "ALTER TABLE embeddinghub.grants ADD COLUMN IF NOT EXISTS partition_id integer"
        " REFERENCES embeddinghub.partitions (id) ON DELETE CASCADE"
    )
    op.execute("CREATE INDEX IF NOT EXISTS grants_partition_id ON embeddinghub.grants (partition_id)")
    # Backfill without the grants trigger: it refuses updates in place (and re-derives
    # nothing that changes here).
    op.execute(
        "DO $$ BEGIN"
        " IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgname = 'sync_privileges'"
        "            AND tgrelid = 'embeddinghub.grants'::pg_catalog.regclass) THEN"
        "   ALTER TABLE embeddinghub.grants DISABLE TRIGGER sync_privileges;"
        "   UPDATE embeddinghub.grants g SET partition_id = p.id FROM embeddinghub.partitions p"
        "    WHERE p.space_id = g.space_id AND p.name = g.partition AND g.partition_id IS NULL;"
        "   ALTER TABLE embeddinghub.grants ENABLE TRIGGER sync_privileges;"
        " END IF; END $$"
    )
    op.execute(
        "DO $$ BEGIN"
        " IF (SELECT c.relkind FROM pg_catalog.pg_class c"
        "     WHERE c.oid = 'embeddinghub.versions'::pg_catalog.regclass) = 'r' THEN"
        "   DROP VIEW IF EXISTS embeddinghub.spaces_overview;"  # re-created by views.sql
        "   ALTER TABLE embeddinghub.versions RENAME TO version_log;"
        " END IF; END $$"
    )
    apply_sql_files()
    # With the new definitions in place (their revokes never touch the hub owner):
    op.execute(
        """
        DELETE FROM embeddinghub.grants g
        WHERE (g.partition IS NOT NULL AND g.partition_id IS NULL)
           OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                      WHERE r.rolname = g.role AND embeddinghub.is_privileged_role(r.oid))
        """
    )
    op.execute(
        """
        DO $$
        DECLARE
            t regclass;
        BEGIN
            FOR t IN SELECT c.oid FROM pg_catalog.pg_class c
                     WHERE c.relnamespace = 'embeddinghub_data'::pg_catalog.regnamespace
                       AND c.relkind IN ('r', 'p')
                       AND pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE')
            LOOP
                EXECUTE pg_catalog.format('GRANT ALL ON %s TO %s', t,
                    (SELECT c.relowner::pg_catalog.regrole::text FROM pg_catalog.pg_class c
                     WHERE c.oid = t));
            END LOOP;
        END
        $$
        """
    )
