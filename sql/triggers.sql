-- Row trigger of every space table (live rows, all partitions), and the space locks.
--
-- One place enforces what raw SQL must obey as much as the Python API:
--  * a frozen space refuses every write;
--  * every written row is stamped with the space's working version (head);
--  * a row committed in an earlier snapshot (version < head) is copied to the space's
--    history table before it is updated or deleted, so every snapshot stays readable.
--
-- The space lock orders writers against snapshot, rollback, prune and freeze: a row lock on
-- the space's catalog row. Writers hold it FOR SHARE, the owner-side operations FOR NO KEY
-- UPDATE (which leaves the foreign-key checks of new partitions, versions and grants
-- unblocked), so a snapshot never lands between a writer reading head and committing.
-- The owner side queues for SHARE on the space's parent table first, so steady writers
-- cannot starve it (lock_space_exclusive). Locks on the parent always come before the row
-- lock: writers hold ROW EXCLUSIVE on it from their statement's start.
-- Locking a catalog row needs UPDATE on embeddinghub.spaces, which only the hub owner has:
-- writers take it in the SECURITY DEFINER statement trigger, which fires only for a role
-- the table's privileges and row-level security already let write. So no tenant can take
-- or hold the lock except by writing, and a writer's hold blocks no other writer or reader.
-- (The advisory locks of earlier versions could be taken by any role, exclusively.)
-- The statement trigger takes it before the first row is touched: an UPDATE or DELETE locks
-- each row before its row trigger runs, and a writer holding a row lock while waiting for
-- the space lock would deadlock with a rollback that holds the space lock and rewrites it.
--
-- Every function pins search_path to pg_catalog (and pg_temp, last): the caller's path can
-- neither break nor hijack a name used in a body. SECURITY DEFINER trigger functions have
-- EXECUTE revoked from PUBLIC (sql/acl.sql), so nobody can attach them elsewhere.

-- Kept for clients of earlier versions; the space lock no longer uses advisory locks.
CREATE OR REPLACE FUNCTION embeddinghub.space_lock_key() RETURNS integer
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
RETURN 1701343744;

-- The lock timeout of owner-side waits for the space lock: `embeddinghub.lock_timeout` if
-- the session set it (e.g. SET embeddinghub.lock_timeout = '2s'), else 10 s.
CREATE OR REPLACE FUNCTION embeddinghub.owner_lock_timeout() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
RETURN coalesce(nullif(pg_catalog.current_setting('embeddinghub.lock_timeout', true), ''), '10s');

-- Writers' side, for the statement trigger: FOR SHARE on the catalog row of space `sid`.
CREATE OR REPLACE FUNCTION embeddinghub.lock_space_shared(sid integer) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM 1 FROM embeddinghub.spaces s WHERE s.id = sid FOR SHARE;
END
$$;

-- The lock-timeout error of the owner-side locks: names the space, says what to do.
CREATE OR REPLACE FUNCTION embeddinghub.raise_space_busy(sid integer, what text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'space "%" is busy: % waited % for transactions writing it; nothing was changed, retry later',
        (SELECT s.name FROM embeddinghub.spaces s WHERE s.id = sid), what,
        embeddinghub.owner_lock_timeout()
        USING ERRCODE = '55P03',
              HINT = 'SELECT pid, usename, xact_start FROM pg_stat_activity WHERE pid = ANY (pg_blocking_pids(<waiting pid>)) shows who holds it; SET embeddinghub.lock_timeout changes the wait';
END
$$;

-- Owner side (snapshot, rollback, prune, freeze): the exclusive space lock, waiting at most
-- owner_lock_timeout(); returns the catalog row as of the lock. Needs UPDATE on the catalog
-- (only the hub owner has it), so a reader or writer gets "permission denied".
--
-- A row lock alone is not fair: a FOR SHARE request on a row only share-locked joins the
-- holders at once, even while a FOR NO KEY UPDATE waits, so under steady writes the owner
-- could wait until it gives up. So it first queues, in the lock manager (first come, first
-- served), for SHARE on the space's parent table: granted once the writers that hold ROW
-- EXCLUSIVE on it (every write through the table, hence every tenant's) have ended, while
-- the writers that come later wait behind it. Each attempt waits at most 100 ms, doubling to
-- 1 s, with as long a pause between attempts: a tenant that keeps its write transaction open
-- holds the owner off (until SpaceBusy) but no other writer more than one attempt at a time.
-- ONLY: the parent alone (autovacuum works on the partitions and never waits for it).
CREATE OR REPLACE FUNCTION embeddinghub.lock_space_exclusive(sid integer)
RETURNS embeddinghub.spaces
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp SET lock_timeout = '10s'
AS $$
DECLARE
    s embeddinghub.spaces;
    budget_ms bigint;
    deadline timestamptz;
    attempt_ms bigint := 100;
BEGIN
    IF NOT pg_catalog.has_table_privilege('embeddinghub.spaces', 'UPDATE') THEN
        RAISE EXCEPTION 'permission denied: only the hub owner takes the exclusive lock of a space'
            USING ERRCODE = '42501';
    END IF;
    PERFORM pg_catalog.set_config('lock_timeout', embeddinghub.owner_lock_timeout(), true);
    budget_ms := extract(epoch FROM pg_catalog.current_setting('lock_timeout')::interval) * 1000;
    deadline := pg_catalog.clock_timestamp() + budget_ms * interval '1 ms';
    LOOP
        IF budget_ms > 0 THEN  -- 0: no timeout, one attempt that waits as long as it takes
            attempt_ms := least(attempt_ms, greatest(1, ceil(extract(epoch FROM
                deadline - pg_catalog.clock_timestamp()) * 1000)::bigint));
            PERFORM pg_catalog.set_config('lock_timeout', attempt_ms || 'ms', true);
        END IF;
        BEGIN
            EXECUTE pg_catalog.format('LOCK TABLE ONLY embeddinghub_data.%I IN SHARE MODE', 's' || sid);
            EXIT;
        EXCEPTION
            WHEN lock_not_available THEN
                IF pg_catalog.clock_timestamp() >= deadline THEN
                    PERFORM embeddinghub.raise_space_busy(sid, 'this change');
                END IF;
            WHEN undefined_table THEN
                RETURN NULL;  -- the space is being dropped: as if its row were gone
        END;
        PERFORM pg_catalog.pg_sleep(attempt_ms / 1000.0);  -- the writers queued behind go on
        attempt_ms := least(attempt_ms * 2, 1000);
    END LOOP;
    IF budget_ms > 0 THEN
        PERFORM pg_catalog.set_config('lock_timeout', greatest(1, ceil(extract(epoch FROM
            deadline - pg_catalog.clock_timestamp()) * 1000)::bigint) || 'ms', true);
    END IF;
    BEGIN
        SELECT * INTO s FROM embeddinghub.spaces sp WHERE sp.id = sid FOR NO KEY UPDATE;
    EXCEPTION WHEN lock_not_available THEN
        PERFORM embeddinghub.raise_space_busy(sid, 'this change');
    END;
    RETURN s;
END
$$;

-- Owner side, for partition DDL: the writers' (shared) space lock, so a concurrent freeze,
-- snapshot or rollback waits for it; returns whether the space is frozen. For the Python
-- API's create_partition and drop_partition (hub owner only: needs UPDATE on the catalog).
-- Creating or dropping a partition locks the parent table ACCESS EXCLUSIVE: that lock comes
-- first, as every lock on the parent comes before the space lock (an owner-side operation
-- holding SHARE on the parent while it waits for this row lock would otherwise deadlock).
-- The lock timeout stays set for the rest of the transaction: the DDL that follows waits for
-- the table's writers, and must fail fast too (SQLSTATE 55P03) rather than queue every
-- reader of the space behind it.
CREATE OR REPLACE FUNCTION embeddinghub.lock_space_for_write(sid integer) RETURNS boolean
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    is_frozen boolean;
BEGIN
    IF NOT pg_catalog.has_table_privilege('embeddinghub.spaces', 'UPDATE') THEN
        RAISE EXCEPTION 'permission denied: only the hub owner changes the partitions of a space'
            USING ERRCODE = '42501';
    END IF;
    PERFORM pg_catalog.set_config('lock_timeout', embeddinghub.owner_lock_timeout(), true);
    BEGIN
        EXECUTE pg_catalog.format('LOCK TABLE ONLY embeddinghub_data.%I IN ACCESS EXCLUSIVE MODE', 's' || sid);
        SELECT s.frozen INTO is_frozen FROM embeddinghub.spaces s WHERE s.id = sid FOR SHARE;
    EXCEPTION WHEN lock_not_available THEN
        PERFORM embeddinghub.raise_space_busy(sid, 'this partition change');
    END;
    RETURN is_frozen;
END
$$;

CREATE OR REPLACE FUNCTION embeddinghub.on_row_write() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    sid integer := TG_ARGV[0]::integer;
    space record;
BEGIN
    -- The statement trigger (on_write_statement) already holds the space lock.
    IF pg_catalog.current_setting('transaction_isolation') = 'read committed' THEN
        SELECT s.name, s.head_version, s.frozen INTO space FROM embeddinghub.spaces s WHERE s.id = sid;
    ELSE
        -- A repeatable-read snapshot may predate a snapshot() or freeze() that committed
        -- before this writer got the lock; stamping that stale head would put the row in a
        -- version already recorded. FOR SHARE raises a serialization failure instead.
        SELECT s.name, s.head_version, s.frozen INTO space FROM embeddinghub.spaces s WHERE s.id = sid
            FOR SHARE;
    END IF;
    IF space.frozen THEN
        RAISE EXCEPTION 'space "%" is frozen: writes are refused', space.name
            USING ERRCODE = 'EHFRZ';
    END IF;
    IF TG_OP <> 'INSERT' AND OLD.version < space.head_version THEN
        -- Into the history partition of this row's partition: the row trigger fires on the
        -- leaf, s<sid>_p<pid> (storage.py), whose id names it even while the partition is
        -- being dropped (its catalog row already gone).
        EXECUTE pg_catalog.format(
            'INSERT INTO embeddinghub_data.%I (partition, key, embedding, metadata, valid_from, valid_to,'
            ' updated_at, partition_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)', 's' || sid || '_history')
        USING OLD.partition, OLD.key, OLD.embedding, OLD.metadata, OLD.version,
              space.head_version, OLD.updated_at,
              pg_catalog.substring(TG_TABLE_NAME, '_p([0-9]+)$')::integer;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.partition IS DISTINCT FROM OLD.partition THEN
        RAISE EXCEPTION 'space "%": a row cannot move between partitions', space.name
            USING ERRCODE = 'EHARG';
    END IF;
    NEW.version := space.head_version;
    NEW.updated_at := pg_catalog.now();
    RETURN NEW;
END
$$;

-- Statement trigger of every space table (parent and each partition): the shared space
-- lock, taken before any row is locked (see the top of this file).
CREATE OR REPLACE FUNCTION embeddinghub.on_write_statement() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_TABLE_SCHEMA <> 'embeddinghub_data' THEN
        RAISE EXCEPTION 'on_write_statement fires on embeddinghub space tables only'
            USING ERRCODE = '42501';
    END IF;
    PERFORM embeddinghub.lock_space_shared(TG_ARGV[0]::integer);
    RETURN NULL;
END
$$;

-- TRUNCATE would bypass the history (and the freeze), so it is refused outright.
CREATE OR REPLACE FUNCTION embeddinghub.on_truncate() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'TRUNCATE is not allowed on embeddinghub space tables; use delete_all()'
        USING ERRCODE = 'EHFRZ';
END
$$;

REVOKE ALL ON FUNCTION embeddinghub.lock_space_shared(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION embeddinghub.on_write_statement() FROM PUBLIC;
REVOKE ALL ON FUNCTION embeddinghub.on_row_write() FROM PUBLIC;
