-- Access control: Postgres roles are the principals, embeddinghub.grants is the ACL, and
-- row-level security on every table that holds a space's rows enforces it in the database,
-- so raw SQL, COPY, views and the SQL API obey exactly what the Python API obeys.
--
-- Who may do what:
--  * The hub owner: the role owning the catalog (it ran the migrations), the roles that
--    inherit from it, and superusers. It creates and drops spaces and roles, sees everything
--    and grants anything. Spaces must be created by it (their tables are then its own).
--  * Grantees: roles named in embeddinghub.grants, with read < write < admin on a whole space
--    (partition NULL) or on one partition. A role that inherits from a grantee role (plain
--    GRANT reader TO alice) holds its grants, so a group role such as `reader` can be
--    granted once for many logins.
--      read:  SELECT the rows (live and history) of the space or partition;
--      write: read + INSERT/UPDATE/DELETE those rows;
--      admin: write + grant and revoke on that space (a partition admin: on that partition).
--
-- How it is enforced. The grants table is the single source of truth; everything on the
-- data tables is derived from its rows by the AFTER trigger below (SECURITY DEFINER, so the
-- catalog owner is the one grantor of every privilege and a revoke always works):
--  * Table privileges: SELECT on the live table, its history table and its BI view for
--    read; INSERT/UPDATE/DELETE on the live table for write and admin. Nobody but the hub
--    owner can write a history table: old row images are written by the SECURITY DEFINER
--    row trigger (on_row_write) only. Partition tables get no grants: a grantee reaches rows
--    through the parent only.
--  * Row-level security, ENABLE + FORCE on the live table, each partition and the history
--    table (FORCE: the owning role obeys it too). Each grant row becomes policies
--    `TO <its role>` on the live table (and a SELECT policy on history) whose condition is
--    `true` for a whole-space grant or `partition = '<name>'` for a partition grant. Postgres
--    picks the policies that apply to the current user when it plans the query, so the check
--    costs nothing per row or per query: no function call, no lookup, and a partition grant
--    even prunes the other partitions at plan time. The hub owner's path is a policy
--    `TO <catalog owner>` on every table. A role that matches no policy sees no rows.
--  * The catalog (spaces, partitions, versions, grants) has RLS too (ENABLE, not FORCE: the
--    catalog owner -- and so the SECURITY DEFINER functions it owns, such as on_row_write --
--    reads it unfiltered). A role sees the spaces it holds a grant on, the partitions in its
--    scope, and its own grants (an admin: every grant in its scope). SELECT on the catalog is
--    granted to PUBLIC, so a role with no grant sees empty tables.
--  * Granting is INSERT on embeddinghub.grants; revoking is INSERT of the grant's id into
--    embeddinghub.grant_revocations, whose trigger deletes the grant. Each table's RLS admits
--    the row only inside the caller's admin scope (and granted_by must be the caller); only
--    admins hold INSERT on them at all, and nobody but the hub owner holds DELETE or UPDATE
--    on the grants table: those privileges would let an admin LOCK it in ACCESS EXCLUSIVE
--    mode and stall every policy check of every space, where INSERT allows no lock above ROW
--    EXCLUSIVE, which blocks no reader and no writer. A read or write role cannot grant; an
--    admin cannot reach beyond its space or partition, nor change a grant in place.
--  * Grants name roles by name, and policies and privileges depend on the role: Postgres
--    refuses to drop a role while a grant of it stands (Hub.drop_role deletes them first).
--
-- Re-runnable: CREATE OR REPLACE, policies re-derived, existing spaces secured at the end.

-- -- schemas and catalog: visible to everyone, filtered by RLS --------------------------------
GRANT USAGE ON SCHEMA embeddinghub, embeddinghub_data, embeddinghub_views TO PUBLIC;
GRANT SELECT ON embeddinghub.spaces, embeddinghub.partitions, embeddinghub.grants TO PUBLIC;
-- Read through the view embeddinghub.versions (below), never directly.
REVOKE ALL ON embeddinghub.version_log FROM PUBLIC;
-- connect() reads the schema revision before anything else.
GRANT SELECT ON embeddinghub.alembic_version TO PUBLIC;

-- -- lookups for the catalog policies and for people --------------------------------------------
-- The helpers the catalog policies call have SQL-standard bodies: parsed once, here, under
-- the migration's search_path (pg_catalog only), so no object planted later in any schema
-- can change what an operator or function in them means, for any caller. Pinned as well.
CREATE OR REPLACE FUNCTION embeddinghub.privilege_level(privilege text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
RETURN CASE privilege WHEN 'read' THEN 1 WHEN 'write' THEN 2 WHEN 'admin' THEN 3 END;

-- The grants the current user holds, directly or inherited through role membership ('USAGE':
-- the same rule Postgres applies to table privileges and to policies TO a role). A plain
-- view (not security_invoker) reads embeddinghub.grants with its owner's rights, i.e.
-- unfiltered, and filters by current_user itself: this is what lets the catalog policies
-- read the ACL without recursing into the grants table's own policies. security_barrier
-- keeps a caller's leaky functions from seeing rows before the filter.
CREATE OR REPLACE VIEW embeddinghub.my_grants WITH (security_barrier = true) AS
SELECT g.space_id, g.partition, g.privilege, g.role
FROM embeddinghub.grants g
JOIN pg_catalog.pg_roles r ON r.rolname = g.role
WHERE pg_catalog.pg_has_role(current_user, r.oid, 'USAGE');
GRANT SELECT ON embeddinghub.my_grants TO PUBLIC;

-- Superusers, the catalog owner and the roles that inherit from it.
CREATE OR REPLACE FUNCTION embeddinghub.is_hub_owner() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
RETURN (SELECT pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE')
        FROM pg_catalog.pg_class c
        WHERE c.oid = 'embeddinghub.spaces'::pg_catalog.regclass);

-- Roles a grant must never name: the hub owner (and its members), superusers and BYPASSRLS
-- roles. They see everything already, and the privilege sync would revoke the owner's own
-- table privileges (an admin could lock the owner out of its hub).
CREATE OR REPLACE FUNCTION embeddinghub.is_privileged_role(role_oid oid) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
RETURN (SELECT r.rolsuper OR r.rolbypassrls OR pg_catalog.pg_has_role(r.oid, c.relowner, 'MEMBER')
        FROM pg_catalog.pg_roles r, pg_catalog.pg_class c
        WHERE r.oid = role_oid AND c.oid = 'embeddinghub.spaces'::pg_catalog.regclass);

-- May the current user `need` (read|write|admin) every partition of space `sid`?
CREATE OR REPLACE FUNCTION embeddinghub.acl_space(sid integer, need text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
RETURN embeddinghub.is_hub_owner() OR EXISTS (
    SELECT 1 FROM embeddinghub.my_grants a
    WHERE a.space_id = sid AND a.partition IS NULL
      AND embeddinghub.privilege_level(a.privilege) >= embeddinghub.privilege_level(need));

-- May the current user grant and revoke on (space `sid`, partition `part`; NULL = whole space)?
CREATE OR REPLACE FUNCTION embeddinghub.acl_can_admin(sid integer, part text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
RETURN embeddinghub.acl_space(sid, 'admin') OR (part IS NOT NULL AND EXISTS (
    SELECT 1 FROM embeddinghub.my_grants a
    WHERE a.space_id = sid AND a.partition = part AND a.privilege = 'admin'));

-- For people and tools: may the current user `need` (read|write|admin) space `space`, or
-- one partition of it? False for a space it cannot see, exactly as for a missing one.
CREATE OR REPLACE FUNCTION embeddinghub.has_access(
    space text, need text DEFAULT 'read', part text DEFAULT NULL
) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $$
DECLARE
    sid integer;
BEGIN
    IF embeddinghub.privilege_level(need) IS NULL THEN
        RAISE EXCEPTION 'privilege must be read, write or admin, not %', quote_nullable(need)
            USING ERRCODE = 'EHARG';
    END IF;
    SELECT s.id INTO sid FROM embeddinghub.spaces s WHERE s.name = space;
    IF sid IS NULL THEN
        RETURN false;
    END IF;
    RETURN embeddinghub.acl_space(sid, need) OR (part IS NOT NULL AND EXISTS (
        SELECT 1 FROM embeddinghub.my_grants a
        WHERE a.space_id = sid AND a.partition = part
          AND embeddinghub.privilege_level(a.privilege) >= embeddinghub.privilege_level(need)));
END
$$;

-- -- row-level security on a space's tables ----------------------------------------------------
-- ENABLE + FORCE, and the hub owner's policy. Called by the Python hooks (embeddinghub.acl)
-- as each table of a space is created, inside the creating transaction.
CREATE OR REPLACE FUNCTION embeddinghub.secure_space_table(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t text := tbl::text;  -- schema-qualified and quoted: search_path is pg_catalog only
    hub_owner text := (SELECT c.relowner::regrole::text FROM pg_class c
                       WHERE c.oid = 'embeddinghub.spaces'::regclass);
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
    IF EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = tbl AND polname = 'eh_owner') THEN
        EXECUTE format('DROP POLICY eh_owner ON %s', t);
    END IF;
    EXECUTE format('CREATE POLICY eh_owner ON %s FOR ALL TO %s USING (true) WITH CHECK (true)',
                   t, hub_owner);
END
$$;

-- The policies of one grant row: dropped, then (unless `remove`) created afresh.
CREATE OR REPLACE FUNCTION embeddinghub.grant_policies(g embeddinghub.grants, remove boolean)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    live regclass := to_regclass(format('embeddinghub_data.%I', 's' || g.space_id));
    hist regclass := to_regclass(format('embeddinghub_data.%I', 's' || g.space_id || '_history'));
    rows_of text := CASE WHEN g.partition IS NULL THEN 'true'
                         ELSE format('partition = %L', g.partition) END;
    -- History is partitioned by partition identity (storage.py): a partition grant admits
    -- its own partition's images only, never an earlier partition's of the same name, and
    -- the condition on the partition key prunes every other history partition at plan time.
    hist_rows_of text := CASE WHEN g.partition IS NULL THEN 'true'
                              ELSE format('partition_id = %s', coalesce(g.partition_id, -1)) END;
    prefix text := 'eh_g' || g.id || '_';
    p record;
BEGIN
    FOR p IN SELECT polrelid::regclass::text AS tbl, polname FROM pg_policy
             WHERE polrelid IN (live, hist) AND starts_with(polname, prefix)
    LOOP
        EXECUTE format('DROP POLICY %I ON %s', p.polname, p.tbl);
    END LOOP;
    IF remove OR live IS NULL OR hist IS NULL
       OR NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = g.role) THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE POLICY %I ON %s FOR SELECT TO %I USING (%s)',
                   prefix || 'select', live, g.role, rows_of);
    EXECUTE format('CREATE POLICY %I ON %s FOR SELECT TO %I USING (%s)',
                   prefix || 'select', hist, g.role, hist_rows_of);
    IF embeddinghub.privilege_level(g.privilege) >= 2 THEN
        EXECUTE format('CREATE POLICY %I ON %s FOR INSERT TO %I WITH CHECK (%s)',
                       prefix || 'insert', live, g.role, rows_of);
        EXECUTE format('CREATE POLICY %I ON %s FOR UPDATE TO %I USING (%s) WITH CHECK (%s)',
                       prefix || 'update', live, g.role, rows_of, rows_of);
        EXECUTE format('CREATE POLICY %I ON %s FOR DELETE TO %I USING (%s)',
                       prefix || 'delete', live, g.role, rows_of);
    END IF;
END
$$;

-- Every table of space `sid` (live parent, its partitions, history), and its grants' policies.
CREATE OR REPLACE FUNCTION embeddinghub.secure_space(sid integer) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    tbl regclass;
    g embeddinghub.grants;
BEGIN
    FOR tbl IN
        SELECT relid FROM pg_partition_tree(format('embeddinghub_data.%I', 's' || sid)::regclass)
        UNION ALL
        SELECT relid FROM pg_partition_tree(format('embeddinghub_data.%I', 's' || sid || '_history')::regclass)
    LOOP
        PERFORM embeddinghub.secure_space_table(tbl);
    END LOOP;
    FOR g IN SELECT * FROM embeddinghub.grants WHERE space_id = sid LOOP
        PERFORM embeddinghub.grant_policies(g, false);
    END LOOP;
END
$$;

-- -- revoking: an insert-only request table ---------------------------------------------------
-- A revocation is a row naming the grant; it passes this table's RLS only inside the
-- inserter's admin scope, and the trigger below (as the catalog owner) deletes the grant and
-- the request at once, so the table stays empty.
CREATE TABLE IF NOT EXISTS embeddinghub.grant_revocations (grant_id integer NOT NULL);
REVOKE ALL ON embeddinghub.grant_revocations FROM PUBLIC;
ALTER TABLE embeddinghub.grant_revocations ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS eh_owner ON embeddinghub.grant_revocations;
CREATE POLICY eh_owner ON embeddinghub.grant_revocations FOR ALL
    USING ((SELECT embeddinghub.is_hub_owner())) WITH CHECK ((SELECT embeddinghub.is_hub_owner()));
DROP POLICY IF EXISTS eh_revoke ON embeddinghub.grant_revocations;
CREATE POLICY eh_revoke ON embeddinghub.grant_revocations FOR INSERT WITH CHECK (
    EXISTS (SELECT 1 FROM embeddinghub.grants g
            WHERE g.id = grant_revocations.grant_id
              AND embeddinghub.acl_can_admin(g.space_id, g.partition)));

CREATE OR REPLACE FUNCTION embeddinghub.on_grant_revocation() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_RELID <> 'embeddinghub.grant_revocations'::regclass THEN
        RAISE EXCEPTION 'on_grant_revocation fires on embeddinghub.grant_revocations only'
            USING ERRCODE = '42501';
    END IF;
    -- AFTER INSERT: the request passed the table's RLS check, so the inserter administers
    -- the grant's scope. Deleting the grant fires on_grant_change, as for the owner's DELETE.
    DELETE FROM embeddinghub.grants g WHERE g.id = NEW.grant_id;
    DELETE FROM embeddinghub.grant_revocations r WHERE r.grant_id = NEW.grant_id;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION embeddinghub.on_grant_revocation() FROM PUBLIC;
DROP TRIGGER IF EXISTS revoke_grant ON embeddinghub.grant_revocations;
CREATE TRIGGER revoke_grant AFTER INSERT ON embeddinghub.grant_revocations
FOR EACH ROW EXECUTE FUNCTION embeddinghub.on_grant_revocation();

-- -- table privileges follow the grants ---------------------------------------------------------
-- Re-derive what role `rname` may do on space `sid`'s tables from its rows in grants.
CREATE OR REPLACE FUNCTION embeddinghub.sync_privileges(sid integer, rname text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    top integer;
    tbl text;
    view_name text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = rname) THEN
        RETURN;  -- the role is gone, and its privileges with it
    END IF;
    IF embeddinghub.is_privileged_role((SELECT oid FROM pg_roles WHERE rolname = rname)) THEN
        RETURN;  -- never revoke the hub owner's own privileges (such grants are refused)
    END IF;
    SELECT max(embeddinghub.privilege_level(g.privilege)) INTO top
    FROM embeddinghub.grants g WHERE g.space_id = sid AND g.role = rname;
    FOREACH tbl IN ARRAY ARRAY['s' || sid, 's' || sid || '_history'] LOOP
        IF to_regclass(format('embeddinghub_data.%I', tbl)) IS NOT NULL THEN  -- gone on drop
            EXECUTE format('REVOKE ALL ON embeddinghub_data.%I FROM %I', tbl, rname);
            IF top >= 1 THEN
                EXECUTE format('GRANT SELECT ON embeddinghub_data.%I TO %I', tbl, rname);
            END IF;
        END IF;
    END LOOP;
    IF top >= 2 AND to_regclass(format('embeddinghub_data.%I', 's' || sid)) IS NOT NULL THEN
        EXECUTE format('GRANT INSERT, UPDATE, DELETE ON embeddinghub_data.%I TO %I',
                       's' || sid, rname);
    END IF;
    SELECT s.name INTO view_name FROM embeddinghub.spaces s WHERE s.id = sid;
    IF view_name IS NOT NULL
       AND to_regclass(format('embeddinghub_views.%I', view_name)) IS NOT NULL THEN
        EXECUTE format('REVOKE ALL ON embeddinghub_views.%I FROM %I', view_name, rname);
        IF top >= 1 THEN
            EXECUTE format('GRANT SELECT ON embeddinghub_views.%I TO %I', view_name, rname);
        END IF;
    END IF;
    -- Admins (of any space) grant and revoke by INSERT, gated by the two tables' RLS.
    EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON embeddinghub.grants FROM %I', rname);
    IF EXISTS (SELECT 1 FROM embeddinghub.grants g WHERE g.role = rname AND g.privilege = 'admin')
    THEN
        EXECUTE format('GRANT INSERT ON embeddinghub.grants, embeddinghub.grant_revocations TO %I',
                       rname);
        EXECUTE format('GRANT USAGE ON SEQUENCE embeddinghub.grants_id_seq TO %I', rname);
    ELSE
        EXECUTE format('REVOKE INSERT ON embeddinghub.grants, embeddinghub.grant_revocations FROM %I',
                       rname);
        EXECUTE format('REVOKE USAGE ON SEQUENCE embeddinghub.grants_id_seq FROM %I', rname);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION embeddinghub.on_grant_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    space_name text;
BEGIN
    IF TG_RELID <> 'embeddinghub.grants'::regclass THEN
        RAISE EXCEPTION 'on_grant_change fires on embeddinghub.grants only'
            USING ERRCODE = '42501';
    END IF;
    IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION 'grants cannot be changed in place: revoke and grant again'
            USING ERRCODE = 'EHARG';
    END IF;
    IF TG_OP = 'DELETE' THEN
        PERFORM embeddinghub.grant_policies(OLD, true);
        PERFORM embeddinghub.sync_privileges(OLD.space_id, OLD.role);
        RETURN NULL;
    END IF;
    -- AFTER INSERT: the row already passed the grants table's RLS check, so the inserter
    -- administers this scope and may learn what the checks below reveal.
    SELECT s.name INTO space_name FROM embeddinghub.spaces s WHERE s.id = NEW.space_id;
    IF NEW.role !~ '^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,62}$' OR NEW.role ~ '^pg_' THEN
        RAISE EXCEPTION 'space "%": invalid role name %', space_name, quote_literal(NEW.role)
            USING ERRCODE = 'EHARG';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = NEW.role) THEN
        RAISE EXCEPTION 'space "%": role "%" does not exist', space_name, NEW.role
            USING ERRCODE = 'EHARG';
    END IF;
    IF embeddinghub.is_privileged_role((SELECT oid FROM pg_roles WHERE rolname = NEW.role)) THEN
        RAISE EXCEPTION 'space "%": role "%" is the hub owner, a member of it, a superuser or a BYPASSRLS role: it sees everything already, so grants to it are refused',
            space_name, NEW.role USING ERRCODE = 'EHARG';
    END IF;
    IF NEW.partition IS NOT NULL AND (NEW.partition_id IS NULL OR NOT EXISTS (
        SELECT 1 FROM embeddinghub.partitions p
        WHERE p.id = NEW.partition_id AND p.space_id = NEW.space_id AND p.name = NEW.partition
    )) THEN
        RAISE EXCEPTION 'partition "%" does not exist in space "%"', NEW.partition, space_name
            USING ERRCODE = 'EHARG';
    END IF;
    PERFORM embeddinghub.grant_policies(NEW, false);
    PERFORM embeddinghub.sync_privileges(NEW.space_id, NEW.role);
    RETURN NULL;
END
$$;

-- A partition grant names the partition by identity (partition_id, filled in here from its
-- name; a value given by the inserter is ignored), so dropping the partition drops the grant
-- (ON DELETE CASCADE) and a partition re-created under the same name starts with none.
-- SECURITY DEFINER: a partition admin may not see the partition row's id otherwise; it only
-- fills a column of a row the grants table's RLS then checks.
CREATE OR REPLACE FUNCTION embeddinghub.on_grant_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_RELID <> 'embeddinghub.grants'::regclass THEN
        RAISE EXCEPTION 'on_grant_insert fires on embeddinghub.grants only' USING ERRCODE = '42501';
    END IF;
    NEW.partition_id := (SELECT p.id FROM embeddinghub.partitions p
                         WHERE p.space_id = NEW.space_id AND p.name = NEW.partition);
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION embeddinghub.on_grant_insert() FROM PUBLIC;
DROP TRIGGER IF EXISTS partition_identity ON embeddinghub.grants;
CREATE TRIGGER partition_identity BEFORE INSERT ON embeddinghub.grants
FOR EACH ROW EXECUTE FUNCTION embeddinghub.on_grant_insert();

-- Every partition records the working version it was born at (see grant_policies).
CREATE OR REPLACE FUNCTION embeddinghub.on_partition_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.created_version := (SELECT s.head_version FROM embeddinghub.spaces s
                            WHERE s.id = NEW.space_id);
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS created_version ON embeddinghub.partitions;
CREATE TRIGGER created_version BEFORE INSERT ON embeddinghub.partitions
FOR EACH ROW EXECUTE FUNCTION embeddinghub.on_partition_insert();

-- SECURITY DEFINER trigger functions must fire only where they were attached: anyone may
-- put a trigger on a temp table of their own, naming any function they may EXECUTE, and
-- on_row_write would then write into another space's history as the catalog owner.
-- (EXECUTE is checked when a trigger is created, not when it fires, so existing triggers
-- keep working.)
REVOKE ALL ON FUNCTION embeddinghub.on_grant_change() FROM PUBLIC;
REVOKE ALL ON FUNCTION embeddinghub.on_row_write() FROM PUBLIC;

DROP TRIGGER IF EXISTS sync_privileges ON embeddinghub.grants;
CREATE TRIGGER sync_privileges AFTER INSERT OR UPDATE OR DELETE ON embeddinghub.grants
FOR EACH ROW EXECUTE FUNCTION embeddinghub.on_grant_change();

REVOKE ALL ON FUNCTION embeddinghub.secure_space_table(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION embeddinghub.grant_policies(embeddinghub.grants, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION embeddinghub.secure_space(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION embeddinghub.sync_privileges(integer, text) FROM PUBLIC;

-- -- row-level security on the catalog ------------------------------------------------------
ALTER TABLE embeddinghub.spaces ENABLE ROW LEVEL SECURITY;
ALTER TABLE embeddinghub.partitions ENABLE ROW LEVEL SECURITY;
ALTER TABLE embeddinghub.version_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE embeddinghub.grants ENABLE ROW LEVEL SECURITY;

DO $$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT polrelid::regclass::text AS tbl, polname FROM pg_policy
             WHERE polrelid IN ('embeddinghub.spaces'::regclass, 'embeddinghub.partitions'::regclass,
                                'embeddinghub.version_log'::regclass, 'embeddinghub.grants'::regclass)
    LOOP
        EXECUTE format('DROP POLICY %I ON %s', p.polname, p.tbl);
    END LOOP;
END
$$;

-- Roles inheriting from the catalog owner are not its owner, so they need a policy of their own.
CREATE POLICY eh_owner ON embeddinghub.spaces FOR ALL
    USING ((SELECT embeddinghub.is_hub_owner())) WITH CHECK ((SELECT embeddinghub.is_hub_owner()));
CREATE POLICY eh_owner ON embeddinghub.partitions FOR ALL
    USING ((SELECT embeddinghub.is_hub_owner())) WITH CHECK ((SELECT embeddinghub.is_hub_owner()));
CREATE POLICY eh_owner ON embeddinghub.version_log FOR ALL
    USING ((SELECT embeddinghub.is_hub_owner())) WITH CHECK ((SELECT embeddinghub.is_hub_owner()));
CREATE POLICY eh_owner ON embeddinghub.grants FOR ALL
    USING ((SELECT embeddinghub.is_hub_owner())) WITH CHECK ((SELECT embeddinghub.is_hub_owner()));

CREATE POLICY eh_visible ON embeddinghub.spaces FOR SELECT USING (
    EXISTS (SELECT 1 FROM embeddinghub.my_grants a WHERE a.space_id = spaces.id));
CREATE POLICY eh_visible ON embeddinghub.partitions FOR SELECT USING (
    EXISTS (SELECT 1 FROM embeddinghub.my_grants a
            WHERE a.space_id = partitions.space_id
              AND (a.partition IS NULL OR a.partition = partitions.name)));
CREATE POLICY eh_visible ON embeddinghub.version_log FOR SELECT USING (
    EXISTS (SELECT 1 FROM embeddinghub.my_grants a WHERE a.space_id = version_log.space_id));

-- The versions of the spaces the caller can see. The cached row_count is a whole-space
-- figure: shown to the hub owner and whole-space grantees, NULL for partition grantees
-- (list_versions() counts their rows). A plain view (its owner reads version_log) that
-- filters by the caller itself, like my_grants; security_barrier keeps leaky functions of
-- the caller behind the filter.
CREATE OR REPLACE VIEW embeddinghub.versions WITH (security_barrier = true) AS
SELECT v.space_id, v.number, v.tag, v.note, v.created_at, v.created_by,
       CASE WHEN embeddinghub.acl_space(v.space_id, 'read') THEN v.row_count END AS row_count
FROM embeddinghub.version_log v
WHERE embeddinghub.is_hub_owner()
   OR EXISTS (SELECT 1 FROM embeddinghub.my_grants a WHERE a.space_id = v.space_id);
GRANT SELECT ON embeddinghub.versions TO PUBLIC;
-- Your own grants (any role you inherit from), and every grant in a scope you administer.
CREATE POLICY eh_visible ON embeddinghub.grants FOR SELECT USING (
    EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
            WHERE r.rolname = grants.role
              AND pg_catalog.pg_has_role(current_user, r.oid, 'USAGE'))
    OR embeddinghub.acl_can_admin(space_id, partition));
CREATE POLICY eh_grant ON embeddinghub.grants FOR INSERT WITH CHECK (
    granted_by = current_user AND embeddinghub.acl_can_admin(space_id, partition));

-- -- spaces and grants made before this file ran ------------------------------------------------
DO $$
DECLARE
    sid integer;
    g record;
BEGIN
    FOR sid IN SELECT id FROM embeddinghub.spaces LOOP
        IF to_regclass(format('embeddinghub_data.%I', 's' || sid)) IS NOT NULL THEN
            PERFORM embeddinghub.secure_space(sid);
        END IF;
    END LOOP;
    FOR g IN SELECT DISTINCT space_id, role FROM embeddinghub.grants LOOP
        PERFORM embeddinghub.sync_privileges(g.space_id, g.role);  -- e.g. DELETE on grants goes
    END LOOP;
END
$$;
