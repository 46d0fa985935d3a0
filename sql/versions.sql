-- Versioning: O(1) snapshots, time-travel reads, diff, rollback, retention, freeze.
--
-- The mechanism (see triggers.sql for the write side):
--  * a space has a working version, spaces.head_version (starts at 1); every written row
--    is stamped with it, and a row committed in an earlier snapshot (version < head) is
--    copied to the history table with [valid_from = its version, valid_to = head) before
--    it is updated or deleted;
--  * snapshot() records version N = head and bumps head to N + 1: one catalog row, no
--    copy and no count, whatever the size of the space;
--  * the rows of version N are: live rows with version <= N, plus history rows with
--    valid_from <= N < valid_to. Rows written or changed after N are exactly the live
--    rows with version > N and the history rows with valid_to > N, both indexed, so
--    diff and rollback cost O(changes since N), not O(rows);
--  * row_count is not counted at snapshot time (that would be O(rows)): list_versions()
--    computes the missing counts on first read, from the newest counted version plus the
--    rows born and ended in between (O(changes)), and caches them in version_log.row_count.
--    The cache holds whole-space counts, so the view embeddinghub.versions shows it only to
--    the hub owner and whole-space readers; for a partition grantee every count reads as
--    missing, and list_versions() counts its own rows (through row-level security);
--  * version numbers are contiguous (every head value below the current head is a version)
--    and prune_versions() only ever removes the oldest ones, so the kept versions are
--    always one contiguous range.
-- Concurrency: writers hold the space lock (a row lock on the space's catalog row, see
-- triggers.sql) shared; snapshot, rollback, prune and freeze take it exclusively through
-- lock_space_exclusive(), which only the hub owner can, waiting at most
-- owner_lock_timeout() (then SQLSTATE 55P03, naming the space). None of them lands between
-- a writer reading head and committing, and no reader ever sees half of a rollback (MVCC).
--
-- Every function is SECURITY INVOKER: it can do no more than its caller could with plain
-- SQL on the same tables. Errors use embeddinghub's SQLSTATEs: EHNSP unknown space,
-- EHVER unknown version, EHFRZ frozen space, EHARG bad argument.

-- The catalog row of a space, or EHNSP. `exclusive` takes the space's exclusive lock first
-- (hub owner only), so the row read is the one every later writer will see.
CREATE OR REPLACE FUNCTION embeddinghub.version_space(space text, exclusive boolean DEFAULT false)
RETURNS embeddinghub.spaces
LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    s embeddinghub.spaces;
BEGIN
    SELECT * INTO s FROM embeddinghub.spaces sp WHERE sp.name = version_space.space;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'space "%" does not exist', version_space.space USING ERRCODE = 'EHNSP';
    END IF;
    IF exclusive THEN
        -- Permission denied for anyone but the hub owner: a reader cannot hold writers off.
        s := embeddinghub.lock_space_exclusive(s.id);  -- the row as of the lock
        IF s.id IS NULL THEN
            RAISE EXCEPTION 'space "%" does not exist', version_space.space USING ERRCODE = 'EHNSP';
        END IF;
    END IF;
    RETURN s;
END
$$;

-- true if `version` is a recorded version of the space, else EHVER naming both. STABLE, so
-- a query can use it as a one-time guard: a read of a version that prune_versions() removed
-- fails instead of returning a partial state.
CREATE OR REPLACE FUNCTION embeddinghub.check_version(space_id integer, version bigint)
RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $$
BEGIN
    IF version IS NULL OR NOT EXISTS (
        SELECT 1 FROM embeddinghub.versions v
        WHERE v.space_id = check_version.space_id AND v.number = check_version.version
    ) THEN
        RAISE EXCEPTION 'space "%" has no version %',
            (SELECT sp.name FROM embeddinghub.spaces sp WHERE sp.id = check_version.space_id),
            coalesce(version::text, 'NULL')
            USING ERRCODE = 'EHVER';
    END IF;
    RETURN true;
END
$$;

-- The number of the version tagged `tag`, or EHVER. Lets SQL clients roll back by tag:
-- SELECT embeddinghub.rollback('items', embeddinghub.tagged_version('items', 'good'))
CREATE OR REPLACE FUNCTION embeddinghub.tagged_version(space text, tag text)
RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $$
DECLARE
    s embeddinghub.spaces := embeddinghub.version_space(space);
    n bigint;
BEGIN
    SELECT v.number INTO n FROM embeddinghub.versions v
    WHERE v.space_id = s.id AND v.tag = tagged_version.tag;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'space "%" has no version tagged "%"', s.name, tag USING ERRCODE = 'EHVER';
    END IF;
    RETURN n;
END
$$;

-- Record the working state as version N = head and bump head: O(1), no data is touched.
-- Allowed on a frozen space (it writes only the catalog): tagging a frozen state is useful.
CREATE OR REPLACE FUNCTION embeddinghub.snapshot(space text, tag text DEFAULT NULL,
                                                 note text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    s embeddinghub.spaces;
BEGIN
    IF tag IS NOT NULL AND (tag !~ '^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,62}$' OR tag ~ '^[0-9]+$') THEN
        RAISE EXCEPTION 'space "%": invalid tag "%": use 1-63 characters from A-Z a-z 0-9 _ . - (not starting with . or -, not all digits)',
            space, tag USING ERRCODE = 'EHARG';
    END IF;
    s := embeddinghub.version_space(space, exclusive => true);
    RETURN embeddinghub.record_version(s, tag, note);
END
$$;

-- Record head as a version and bump it. The caller holds the space's exclusive lock.
CREATE OR REPLACE FUNCTION embeddinghub.record_version(s embeddinghub.spaces, tag text,
                                                       note text, row_count bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    taken bigint;
BEGIN
    -- Every snapshot of the space holds its lock, so checking first is race-free.
    SELECT v.number INTO taken FROM embeddinghub.versions v
    WHERE v.space_id = s.id AND v.tag = record_version.tag;
    IF FOUND THEN
        RAISE EXCEPTION 'space "%": tag "%" already names version %', s.name, tag, taken
            USING ERRCODE = 'EHARG';
    END IF;
    INSERT INTO embeddinghub.version_log (space_id, number, tag, note, row_count)
    VALUES (s.id, s.head_version, record_version.tag, record_version.note,
            record_version.row_count);
    UPDATE embeddinghub.spaces SET head_version = s.head_version + 1 WHERE id = s.id;
    RETURN s.head_version;
END
$$;

-- Row counts of the versions that have none yet, as (number, row_count), without caching.
-- From the newest counted version M below them: count(N) = count(M) + rows born in (M, N]
-- - rows ended in (M, N]. A row image born at v is a live row with version v or a history
-- row with valid_from v; one ended at v is a history row with valid_to v. All of these have
-- valid_to (or version) > M, so the scan is O(changes since M). With no counted version
-- below (first listing, or the counted ones were pruned) the oldest missing version is
-- counted once from scratch.
CREATE OR REPLACE FUNCTION embeddinghub.missing_row_counts(space_id integer)
RETURNS TABLE (number bigint, row_count bigint)
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $$
#variable_conflict use_column
DECLARE
    live text := format('%I.%I', 'embeddinghub_data', 's' || space_id);
    hist text := format('%I.%I', 'embeddinghub_data', 's' || space_id || '_history');
    first_missing bigint;
    last_missing bigint;
    base_n bigint;
    base_c bigint;
    running bigint;
    vs bigint[];
    ds bigint[];
    i integer := 1;
    r record;
BEGIN
    SELECT min(v.number), max(v.number) INTO first_missing, last_missing
    FROM embeddinghub.versions v WHERE v.space_id = missing_row_counts.space_id AND v.row_count IS NULL;
    IF first_missing IS NULL THEN
        RETURN;
    END IF;
    SELECT v.number, v.row_count INTO base_n, base_c FROM embeddinghub.versions v
    WHERE v.space_id = missing_row_counts.space_id AND v.number < first_missing
      AND v.row_count IS NOT NULL
    ORDER BY v.number DESC LIMIT 1;
    IF base_n IS NULL THEN
        base_n := first_missing;
        EXECUTE format('SELECT (SELECT count(*) FROM %s WHERE version <= $1)'
                       ' + (SELECT count(*) FROM %s WHERE valid_to > $1 AND valid_from <= $1)',
                       live, hist)
            INTO base_c USING base_n;
        number := base_n;
        row_count := base_c;
        RETURN NEXT;
    END IF;
    -- One statement, so the three parts see one snapshot.
    EXECUTE format(
        'SELECT array_agg(v ORDER BY v), array_agg(d ORDER BY v) FROM ('
        '  SELECT v, sum(d)::bigint AS d FROM ('
        '    SELECT version AS v, count(*) AS d FROM %1$s'
        '     WHERE version > $1 AND version <= $2 GROUP BY version'
        '    UNION ALL SELECT valid_from, count(*) FROM %2$s'
        '     WHERE valid_to > $1 AND valid_from > $1 AND valid_from <= $2 GROUP BY valid_from'
        '    UNION ALL SELECT valid_to, -count(*) FROM %2$s'
        '     WHERE valid_to > $1 AND valid_to <= $2 GROUP BY valid_to'
        '  ) e GROUP BY v'
        ') g', live, hist)
        INTO vs, ds USING base_n, last_missing;
    running := base_c;
    FOR r IN SELECT v.number, v.row_count FROM embeddinghub.versions v
             WHERE v.space_id = missing_row_counts.space_id
               AND v.number > base_n AND v.number <= last_missing
             ORDER BY v.number
    LOOP
        WHILE vs IS NOT NULL AND i <= array_length(vs, 1) AND vs[i] <= r.number LOOP
            running := running + ds[i];
            i := i + 1;
        END LOOP;
        IF r.row_count IS NULL THEN
            number := r.number;
            row_count := running;
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;

-- The versions of a space, oldest first. Missing row counts are computed (see above) and
-- cached when the caller may update the catalog; a read-only caller or a read replica
-- gets the same numbers without the cache.
CREATE OR REPLACE FUNCTION embeddinghub.list_versions(space text)
RETURNS TABLE (number bigint, tag text, note text, created_at timestamptz, created_by name,
               row_count bigint)
LANGUAGE plpgsql SECURITY INVOKER AS $$
#variable_conflict use_column
DECLARE
    s embeddinghub.spaces := embeddinghub.version_space(space);
    nums bigint[];
    counts bigint[];
BEGIN
    SELECT array_agg(m.number), array_agg(m.row_count) INTO nums, counts
    FROM embeddinghub.missing_row_counts(s.id) m;
    IF nums IS NOT NULL THEN
        BEGIN
            UPDATE embeddinghub.version_log v SET row_count = c.row_count
            FROM unnest(nums, counts) AS c(number, row_count)
            WHERE v.space_id = s.id AND v.number = c.number AND v.row_count IS NULL;
        EXCEPTION WHEN insufficient_privilege OR read_only_sql_transaction THEN
            NULL;  -- the counts are still returned, just not cached
        END;
    END IF;
    RETURN QUERY
        SELECT v.number, v.tag, v.note, v.created_at, v.created_by,
               coalesce(v.row_count, c.row_count)
        FROM embeddinghub.versions v
        LEFT JOIN unnest(nums, counts) AS c(number, row_count) ON c.number = v.number
        WHERE v.space_id = s.id
        ORDER BY v.number;
END
$$;

-- The rows of `version`: table(partition, key, embedding, metadata). The embedding is
-- returned as `vector` for every space (a float16 space's halfvec converts exactly), so
-- one signature serves all spaces; order is unspecified (add ORDER BY as needed).
CREATE OR REPLACE FUNCTION embeddinghub.as_of(space text, version bigint)
RETURNS TABLE (partition text, key text, embedding @vector@.vector, metadata jsonb)
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $$
DECLARE
    s embeddinghub.spaces := embeddinghub.version_space(space);
BEGIN
    PERFORM embeddinghub.check_version(s.id, as_of.version);
    RETURN QUERY EXECUTE format(
        'SELECT partition, key, embedding::@vector@.vector, metadata FROM %1$s WHERE version <= $1'
        ' UNION ALL'
        ' SELECT partition, key, embedding::@vector@.vector, metadata FROM %2$s'
        ' WHERE valid_to > $1 AND valid_from <= $1',
        format('%I.%I', 'embeddinghub_data', 's' || s.id),
        format('%I.%I', 'embeddinghub_data', 's' || s.id || '_history'))
        USING as_of.version;
END
$$;

-- Keys added, removed and changed (embedding or metadata) from version a to version b
-- (NULL: the working state). Only keys written after min(a, b) can differ, and those are
-- found through the version indexes, so the cost is O(changes), not O(rows).
CREATE OR REPLACE FUNCTION embeddinghub.diff(space text, a bigint, b bigint DEFAULT NULL)
RETURNS TABLE (partition text, key text, change text)
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $$
DECLARE
    s embeddinghub.spaces := embeddinghub.version_space(space);
    live text := format('%I.%I', 'embeddinghub_data', 's' || s.id);
    hist text := format('%I.%I', 'embeddinghub_data', 's' || s.id || '_history');
    lo bigint;
BEGIN
    PERFORM embeddinghub.check_version(s.id, a);
    IF b IS NOT NULL THEN
        PERFORM embeddinghub.check_version(s.id, b);
    END IF;
    lo := least(a, coalesce(b, s.head_version));
    -- Among keys written after lo, the image at x is the live row with lo < version <= x
    -- or the history row alive at x; in the working state it is the live row.
    RETURN QUERY EXECUTE format(
        'WITH img_a AS ('
        '  SELECT partition, key, embedding, metadata FROM %1$s WHERE version > $1 AND version <= $2'
        '  UNION ALL SELECT partition, key, embedding, metadata FROM %2$s'
        '  WHERE valid_to > $2 AND valid_from <= $2'
        '), img_b AS ('
        '  SELECT partition, key, embedding, metadata FROM %1$s'
        '  WHERE version > $1 AND ($3 IS NULL OR version <= $3)'
        '  UNION ALL SELECT partition, key, embedding, metadata FROM %2$s'
        '  WHERE $3 IS NOT NULL AND valid_to > $3 AND valid_from <= $3'
        ')'
        ' SELECT coalesce(x.partition, y.partition), coalesce(x.key, y.key),'
        '        CASE WHEN x.key IS NULL THEN ''added'' WHEN y.key IS NULL THEN ''removed'''
        '             ELSE ''changed'' END'
        ' FROM img_a x FULL JOIN img_b y ON x.partition = y.partition AND x.key = y.key'
        ' WHERE x.key IS NULL OR y.key IS NULL'
        '    OR NOT (x.embedding OPERATOR(@vector@.=) y.embedding)'  -- both NOT NULL
        '    OR x.metadata IS DISTINCT FROM y.metadata'
        ' ORDER BY 1, 2', live, hist)
        USING lo, a, b;
END
$$;

-- Partitions that held rows at `version` and no longer exist (dropped since).
CREATE OR REPLACE FUNCTION embeddinghub.dropped_partitions(space_id integer, version bigint)
RETURNS SETOF text
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $$
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT DISTINCT h.partition FROM %s h'
        ' WHERE h.valid_to > $1 AND h.valid_from <= $1 AND NOT EXISTS ('
        '   SELECT 1 FROM embeddinghub.partitions p WHERE p.space_id = $2 AND p.name = h.partition)'
        ' ORDER BY 1',
        format('%I.%I', 'embeddinghub_data', 's' || space_id || '_history'))
        USING version, space_id;
END
$$;

-- Re-create a dropped partition for plain SQL clients, as storage.create_partition_table and
-- the access-control hook do (catalog row, list partition inheriting the parent's indexes
-- and row trigger, its own statement triggers, its history partition, row-level security).
-- The Python API re-creates partitions through catalog.add_partition instead, so the
-- partition hooks run.
CREATE OR REPLACE FUNCTION embeddinghub.restore_partition(space_id integer, name text)
RETURNS integer
LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    pid integer;
    tbl text;
    hist text;
BEGIN
    INSERT INTO embeddinghub.partitions (space_id, name)
    VALUES (restore_partition.space_id, restore_partition.name) RETURNING id INTO pid;
    tbl := format('%I.%I', 'embeddinghub_data', 's' || space_id || '_p' || pid);
    EXECUTE format('CREATE TABLE %s PARTITION OF %s FOR VALUES IN (%L)', tbl,
                   format('%I.%I', 'embeddinghub_data', 's' || space_id), name);
    EXECUTE format('CREATE TRIGGER write_lock BEFORE INSERT OR UPDATE OR DELETE ON %s'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION embeddinghub.on_write_statement(%L)',
                   tbl, space_id::text);
    EXECUTE format('CREATE TRIGGER no_truncate BEFORE TRUNCATE ON %s'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION embeddinghub.on_truncate()', tbl);
    hist := format('%I.%I', 'embeddinghub_data', 's' || space_id || '_history_p' || pid);
    EXECUTE format('CREATE TABLE %s PARTITION OF %s FOR VALUES IN (%s)', hist,
                   format('%I.%I', 'embeddinghub_data', 's' || space_id || '_history'), pid);
    EXECUTE format('CREATE TRIGGER no_truncate BEFORE TRUNCATE ON %s'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION embeddinghub.on_truncate()', hist);
    -- What the access-control partition hook does (sql/acl.sql, applied after this file).
    IF to_regprocedure('embeddinghub.secure_space_table(regclass)') IS NOT NULL THEN
        PERFORM embeddinghub.secure_space_table(tbl::regclass);
        PERFORM embeddinghub.secure_space_table(hist::regclass);
    END IF;
    RETURN pid;
END
$$;

-- Make the working state equal to `version`, in this transaction, and record it as a new
-- version (note 'rollback to N'); returns that version's number. Cost O(changes since N):
-- live rows written after N are deleted (new keys) or overwritten with their image at N
-- (through the row trigger, so what they replace goes to history and stays readable), and
-- rows deleted since N are re-inserted. Partitions dropped since N are re-created.
-- Unsnapshotted work in the working state is first recorded as its own version (note
-- 'before rollback to N'), so a rollback never loses anything and can itself be undone.
-- Writers wait on the exclusive lock; readers see the old state until commit.
CREATE OR REPLACE FUNCTION embeddinghub.rollback(space text, version bigint)
RETURNS bigint
LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    s embeddinghub.spaces := embeddinghub.version_space(space);
    live text := format('%I.%I', 'embeddinghub_data', 's' || s.id);
    hist text := format('%I.%I', 'embeddinghub_data', 's' || s.id || '_history');
    dirty boolean;
    part text;
    target_count bigint;
    caller_timeout text;
BEGIN
    -- It must see every write committed before it got the space lock: a repeatable-read
    -- snapshot may predate some, and rows it cannot see would survive the rollback.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'space "%": rollback needs a READ COMMITTED transaction, not %',
            s.name, upper(current_setting('transaction_isolation')) USING ERRCODE = 'EHARG';
    END IF;
    IF version IS NULL THEN
        PERFORM embeddinghub.check_version(s.id, version);
    END IF;
    -- Creating a partition locks the parent table; take that lock before the space lock,
    -- in the order writers take them, so the two cannot deadlock.
    IF EXISTS (SELECT 1 FROM embeddinghub.dropped_partitions(s.id, version)) THEN
        caller_timeout := current_setting('lock_timeout');
        PERFORM set_config('lock_timeout', embeddinghub.owner_lock_timeout(), true);
        BEGIN
            EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', live);
        EXCEPTION WHEN lock_not_available THEN
            PERFORM embeddinghub.raise_space_busy(s.id, format('rollback to version %s', version));
        END;
        PERFORM set_config('lock_timeout', caller_timeout, true);
    END IF;
    s := embeddinghub.version_space(space, exclusive => true);
    IF s.frozen THEN
        RAISE EXCEPTION 'space "%" is frozen: cannot roll back to version %', s.name, version
            USING ERRCODE = 'EHFRZ';
    END IF;
    PERFORM embeddinghub.check_version(s.id, version);
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE version = $1)'
                   ' OR EXISTS (SELECT 1 FROM %s WHERE valid_to = $1)', live, hist)
        INTO dirty USING s.head_version;
    IF dirty THEN
        PERFORM embeddinghub.record_version(s, NULL, format('before rollback to %s', version));
        s.head_version := s.head_version + 1;
    END IF;
    FOR part IN SELECT * FROM embeddinghub.dropped_partitions(s.id, version) LOOP
        PERFORM embeddinghub.restore_partition(s.id, part);
    END LOOP;
    EXECUTE format(
        'DELETE FROM %1$s l WHERE l.version > $1 AND NOT EXISTS ('
        '  SELECT 1 FROM %2$s h WHERE h.partition = l.partition AND h.key = l.key'
        '  AND h.valid_to > $1 AND h.valid_from <= $1)', live, hist)
        USING version;
    EXECUTE format(
        'INSERT INTO %1$s (partition, key, embedding, metadata)'
        ' SELECT partition, key, embedding, metadata FROM %2$s'
        ' WHERE valid_to > $1 AND valid_from <= $1'
        ' ON CONFLICT (partition, key) DO UPDATE'
        ' SET embedding = EXCLUDED.embedding, metadata = EXCLUDED.metadata', live, hist)
        USING version;
    SELECT v.row_count INTO target_count FROM embeddinghub.versions v
    WHERE v.space_id = s.id AND v.number = rollback.version;
    RETURN embeddinghub.record_version(s, NULL, format('rollback to %s', version), target_count);
END
$$;

-- Keep the newest `keep` versions; delete the older ones and every history row that no
-- kept version needs (valid_to <= the oldest kept version: the kept versions are one
-- contiguous range). Returns the number of history rows freed. Refused on a frozen space.
CREATE OR REPLACE FUNCTION embeddinghub.prune_versions(space text, keep integer)
RETURNS bigint
LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    s embeddinghub.spaces;
    oldest_kept bigint;
    freed bigint;
BEGIN
    IF keep IS NULL OR keep < 0 THEN
        RAISE EXCEPTION 'space "%": keep must be a non-negative number of versions, not %',
            space, coalesce(keep::text, 'NULL') USING ERRCODE = 'EHARG';
    END IF;
    s := embeddinghub.version_space(space, exclusive => true);
    IF s.frozen THEN
        RAISE EXCEPTION 'space "%" is frozen: its versions cannot be pruned', s.name
            USING ERRCODE = 'EHFRZ';
    END IF;
    IF keep = 0 THEN
        oldest_kept := s.head_version;
    ELSE
        SELECT v.number INTO oldest_kept FROM embeddinghub.versions v WHERE v.space_id = s.id
        ORDER BY v.number DESC OFFSET keep - 1 LIMIT 1;
        IF NOT FOUND THEN
            RETURN 0;  -- fewer versions than keep
        END IF;
    END IF;
    DELETE FROM embeddinghub.version_log v WHERE v.space_id = s.id AND v.number < oldest_kept;
    EXECUTE format('DELETE FROM %I.%I WHERE valid_to <= $1', 'embeddinghub_data',
                   's' || s.id || '_history')
        USING oldest_kept;
    GET DIAGNOSTICS freed = ROW_COUNT;
    RETURN freed;
END
$$;

-- Make a space immutable. Takes the exclusive lock, so writers already running finish
-- first and every later write sees frozen = true (the row trigger refuses it).
CREATE OR REPLACE FUNCTION embeddinghub.freeze(space text)
RETURNS void
LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    s embeddinghub.spaces := embeddinghub.version_space(space, exclusive => true);
BEGIN
    UPDATE embeddinghub.spaces SET frozen = true WHERE id = s.id;
END
$$;
