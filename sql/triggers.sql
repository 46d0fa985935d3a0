-- Row trigger of every space table (live rows, all partitions).
--
-- One place enforces what raw SQL must obey as much as the Python API:
--  * a frozen space refuses every write;
--  * every written row is stamped with the space's working version (head);
--  * a row committed in an earlier snapshot (version < head) is copied to the space's
--    history table before it is updated or deleted, so every snapshot stays readable.
-- Writers hold the space's advisory lock in shared mode; snapshot() takes it exclusively,
-- so a snapshot never lands between a writer reading head and committing.
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
    SELECT name, head_version, frozen INTO space FROM embeddinghub.spaces WHERE id = sid;
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

-- TRUNCATE would bypass the history (and the freeze), so it is refused outright.
CREATE OR REPLACE FUNCTION embeddinghub.on_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'TRUNCATE is not allowed on embeddinghub space tables; use delete_all()'
        USING ERRCODE = 'EHFRZ';
END
$$;
