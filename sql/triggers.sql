-- Row trigger of every space table (live rows, all partitions).
--
-- One place enforces what raw SQL must obey as much as the Python API:
--  * a frozen space refuses every write;
--  * every written row is stamped with the space's working version (head);
--  * a row committed in an earlier snapshot (version < head) is copied to the space's
--    history table before it is updated or deleted, so every snapshot stays readable.
-- Writers hold the space's advisory lock in shared mode; snapshot() takes it exclusively,
-- so a snapshot never lands between a writer reading head and committing. The statement
-- trigger takes it before the first row is touched: an UPDATE or DELETE locks each row
-- before its row trigger runs, and a writer holding a row lock while waiting for the space
-- lock would deadlock with a rollback that holds the space lock and rewrites that row.
-- SECURITY DEFINER: writers need no privilege on the history table; the function reads
-- only the catalog row of its own space and writes only that space's history.

CREATE OR REPLACE FUNCTION embeddinghub.space_lock_key() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 1701343744 $$;  -- classid of embeddinghub's advisory locks

CREATE OR REPLACE FUNCTION embeddinghub.on_row_write() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    sid integer := TG_ARGV[0]::integer;
    space record;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(embeddinghub.space_lock_key(), sid);
    IF current_setting('transaction_isolation') = 'read committed' THEN
        SELECT name, head_version, frozen INTO space FROM embeddinghub.spaces WHERE id = sid;
    ELSE
        -- A repeatable-read snapshot may predate a snapshot() or freeze() that committed
        -- before this writer got the lock; stamping that stale head would put the row in a
        -- version already recorded. FOR SHARE raises a serialization failure instead.
        SELECT name, head_version, frozen INTO space FROM embeddinghub.spaces WHERE id = sid
            FOR SHARE;
    END IF;
    IF space.frozen THEN
        RAISE EXCEPTION 'space "%" is frozen: writes are refused', space.name
            USING ERRCODE = 'EHFRZ';
    END IF;
    IF TG_OP <> 'INSERT' AND OLD.version < space.head_version THEN
        EXECUTE format(
            'INSERT INTO embeddinghub_data.%I (partition, key, embedding, metadata, valid_from, valid_to, updated_at)'
            ' VALUES ($1, $2, $3, $4, $5, $6, $7)', 's' || sid || '_history')
        USING OLD.partition, OLD.key, OLD.embedding, OLD.metadata, OLD.version,
              space.head_version, OLD.updated_at;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.partition IS DISTINCT FROM OLD.partition THEN
        RAISE EXCEPTION 'space "%": a row cannot move between partitions', space.name
            USING ERRCODE = 'EHARG';
    END IF;
    NEW.version := space.head_version;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- Statement trigger of every space table (parent and each partition): the shared space
-- lock, taken before any row is locked (see the top of this file).
CREATE OR REPLACE FUNCTION embeddinghub.on_write_statement() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(embeddinghub.space_lock_key(), TG_ARGV[0]::integer);
    RETURN NULL;
END
$$;

-- TRUNCATE would bypass the history (and the freeze), so it is refused outright.
CREATE OR REPLACE FUNCTION embeddinghub.on_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'TRUNCATE is not allowed on embeddinghub space tables; use delete_all()'
        USING ERRCODE = 'EHFRZ';
END
$$;
