-- History partitioned by partition identity (embeddinghub/storage.py: s<id>_history is
-- LIST-partitioned on partition_id, one partition per space partition and a default). A
-- partition grant's policy then prunes every other partition's images at plan time, so not
-- even EXPLAIN ANALYZE ("Rows Removed by Filter") can count rows it may not see.
--
-- Spaces created before that have one plain history table: each is converted here, every
-- row image kept. An image belongs to the partition of its name that existed when it was
-- born; images of an earlier partition of that name (dropped since) were born before the
-- current one was created, and go to the default partition, which no grant admits.
-- Re-runnable: a space whose history is partitioned already is left alone.
DO $$
DECLARE
    sid integer;
    hist text;
    old text;
    pid integer;
    tbl regclass;
BEGIN
    FOR sid IN
        SELECT s.id FROM embeddinghub.spaces s
        JOIN pg_catalog.pg_class c ON c.relname = 's' || s.id || '_history'
         AND c.relnamespace = 'embeddinghub_data'::pg_catalog.regnamespace
        WHERE c.relkind = 'r'
        ORDER BY s.id
    LOOP
        hist := pg_catalog.format('%I.%I', 'embeddinghub_data', 's' || sid || '_history');
        old := pg_catalog.format('%I.%I', 'embeddinghub_data', 's' || sid || '_history_unpartitioned');
        EXECUTE pg_catalog.format('ALTER TABLE %s RENAME TO %I', hist, 's' || sid || '_history_unpartitioned');
        EXECUTE pg_catalog.format(
            'CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS, partition_id integer)'
            ' PARTITION BY LIST (partition_id)', hist, old);
        EXECUTE pg_catalog.format('CREATE INDEX ON %s (valid_to, valid_from)', hist);
        EXECUTE pg_catalog.format('CREATE INDEX ON %s (partition, key)', hist);
        EXECUTE pg_catalog.format('CREATE TABLE %I.%I PARTITION OF %s DEFAULT',
                                  'embeddinghub_data', 's' || sid || '_history_default', hist);
        FOR pid IN SELECT p.id FROM embeddinghub.partitions p WHERE p.space_id = sid ORDER BY p.id LOOP
            EXECUTE pg_catalog.format('CREATE TABLE %I.%I PARTITION OF %s FOR VALUES IN (%s)',
                                      'embeddinghub_data', 's' || sid || '_history_p' || pid, hist, pid);
        END LOOP;
        EXECUTE pg_catalog.format(
            'INSERT INTO %s SELECT o.*, p.id FROM %s o LEFT JOIN embeddinghub.partitions p'
            ' ON p.space_id = %s AND p.name = o.partition AND o.valid_from >= p.created_version',
            hist, old, sid);
        EXECUTE pg_catalog.format('DROP TABLE %s', old);
        FOR tbl IN SELECT t.relid FROM pg_catalog.pg_partition_tree(hist::regclass) t LOOP
            EXECUTE pg_catalog.format(
                'CREATE TRIGGER no_truncate BEFORE TRUNCATE ON %s'
                ' FOR EACH STATEMENT EXECUTE FUNCTION embeddinghub.on_truncate()', tbl);
        END LOOP;
        -- Row-level security, grant policies and privileges: sql/acl.sql, which runs next.
    END LOOP;
END
$$;
