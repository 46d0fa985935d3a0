-- Read-only views for BI tools that know SQL but not pgvector.
--
--  * embeddinghub.spaces_overview: one row per space the caller can see.
--  * embeddinghub_views."<space name>": the space's rows, embedding as real[].
--
-- Both are security_invoker views: they read the catalog and the space tables as the
-- caller, so row-level security applies exactly as to a direct SELECT (a partition-scoped
-- role sees, and counts, only its partitions' rows). A per-space view is created and dropped
-- with its space (hooks in embeddinghub.views) and renamed with it (trigger below); reading
-- it needs SELECT on it, which a read grant gives (embeddinghub.sync_privileges).

-- Rows and last write of space `sid` as the caller sees them (RLS applies); NULLs when the
-- caller holds no privilege on its table.
CREATE OR REPLACE FUNCTION embeddinghub.space_stats(sid integer)
RETURNS TABLE (row_count bigint, last_write timestamptz)
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $$
DECLARE
    live text := format('embeddinghub_data.%I', 's' || sid);
BEGIN
    IF to_regclass(live) IS NULL OR NOT has_table_privilege(live, 'SELECT') THEN
        RETURN QUERY SELECT NULL::bigint, NULL::timestamptz;
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format('SELECT count(*), max(t.updated_at) FROM %s t', live);
END
$$;

-- Bytes of the HNSW index of space `sid` as the caller may know them: the sum over the
-- partitions it can see (all for the owner and whole-space grantees, its own for a partition
-- grantee); NULL when it holds no privilege on the space's table. (Postgres itself lets
-- anyone call pg_relation_size on any table: see SECURITY.md.)
CREATE OR REPLACE FUNCTION embeddinghub.space_index_bytes(sid integer) RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT CASE WHEN pg_catalog.has_table_privilege(live.oid, 'SELECT') THEN (
        SELECT coalesce(sum(pg_catalog.pg_relation_size(i.indexrelid)), 0)::bigint
        FROM embeddinghub.partitions p  -- row-level security: the caller's partitions
        JOIN pg_catalog.pg_class t ON t.relnamespace = live.relnamespace
         AND t.relname = 's' || sid || '_p' || p.id
        JOIN pg_catalog.pg_index i ON i.indrelid = t.oid
        JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
        JOIN pg_catalog.pg_am am ON am.oid = c.relam
        WHERE p.space_id = sid AND am.amname = 'hnsw') END
    FROM pg_catalog.pg_class live
    WHERE live.relnamespace = 'embeddinghub_data'::pg_catalog.regnamespace
      AND live.relname = 's' || sid;
END;

DROP VIEW IF EXISTS embeddinghub.spaces_overview;
CREATE VIEW embeddinghub.spaces_overview WITH (security_invoker = true) AS
SELECT s.name,
       s.dims,
       s.metric,
       s.dtype,
       st.row_count AS rows,
       (SELECT count(*) FROM embeddinghub.partitions p WHERE p.space_id = s.id) AS partitions,
       (SELECT count(*) FROM embeddinghub.versions v WHERE v.space_id = s.id) AS versions,
       ix.bytes AS index_bytes,
       pg_catalog.pg_size_pretty(ix.bytes) AS index_size,
       st.last_write,
       s.frozen,
       s.description
FROM embeddinghub.spaces s
CROSS JOIN LATERAL embeddinghub.space_stats(s.id) st
CROSS JOIN LATERAL (SELECT embeddinghub.space_index_bytes(s.id) AS bytes) ix;
GRANT SELECT ON embeddinghub.spaces_overview TO PUBLIC;

-- (Re)create the view of space `sid`, named after the space.
CREATE OR REPLACE FUNCTION embeddinghub.create_space_view(sid integer) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    view_name text;
BEGIN
    SELECT s.name INTO view_name FROM embeddinghub.spaces s WHERE s.id = sid;
    IF view_name IS NULL THEN
        RAISE EXCEPTION 'space id % does not exist', sid USING ERRCODE = 'EHNSP';
    END IF;
    EXECUTE format(
        'CREATE OR REPLACE VIEW embeddinghub_views.%I WITH (security_invoker = true) AS'
        ' SELECT t.key, t.partition, t.metadata, t.version, t.updated_at,'
        '        t.embedding::real[] AS embedding'
        ' FROM embeddinghub_data.%I t', view_name, 's' || sid);
    -- Read-only for its owner too (grantees only ever get SELECT on it).
    EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON embeddinghub_views.%I FROM %I',
                   view_name, current_user);
    EXECUTE format('COMMENT ON VIEW embeddinghub_views.%I IS %L', view_name,
                   format('embeddinghub space %s: rows with the embedding as real[] (read-only)',
                          view_name));
END
$$;
REVOKE ALL ON FUNCTION embeddinghub.create_space_view(integer) FROM PUBLIC;

-- A renamed space keeps its view, under the new name.
CREATE OR REPLACE FUNCTION embeddinghub.on_space_renamed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF to_regclass(format('embeddinghub_views.%I', OLD.name)) IS NOT NULL THEN
        EXECUTE format('ALTER VIEW embeddinghub_views.%I RENAME TO %I', OLD.name, NEW.name);
        EXECUTE format('COMMENT ON VIEW embeddinghub_views.%I IS %L', NEW.name,
                       format('embeddinghub space %s: rows with the embedding as real[] (read-only)',
                              NEW.name));
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS rename_view ON embeddinghub.spaces;
CREATE TRIGGER rename_view AFTER UPDATE OF name ON embeddinghub.spaces
FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name)
EXECUTE FUNCTION embeddinghub.on_space_renamed();

-- Spaces made before this file ran.
DO $$
DECLARE
    sid integer;
BEGIN
    FOR sid IN SELECT id FROM embeddinghub.spaces LOOP
        IF to_regclass(format('embeddinghub_data.%I', 's' || sid)) IS NOT NULL THEN
            PERFORM embeddinghub.create_space_view(sid);
        END IF;
    END LOOP;
END
$$;

-- -- every function of the hub resolves names in pg_catalog only ---------------------------------
-- Whatever schema is on the caller's search_path, or writable by others (pgvector's `public`
-- included: its names are qualified in the bodies), no function body here can bind a planted
-- operator or function. Trigger and definer functions are pinned where they are defined; this
-- pins the rest, and every function added later in sql/.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'embeddinghub'::pg_catalog.regnamespace AND p.prokind = 'f'
          AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp', f);
    END LOOP;
END
$$;
