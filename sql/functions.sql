-- The SQL API (DESIGN §5): nearest neighbours, get and average, callable from psql or any
-- client. Every function is SECURITY INVOKER: it reads the catalog and the space's tables as
-- the caller, through their row-level security, so it never shows more than a plain SELECT
-- would. A space the caller may not see is reported exactly like one that does not exist.
-- Errors carry the SQLSTATEs embeddinghub.db maps to Python errors:
--   EHNSP space not found, EHKEY key not found, EHARG bad argument.
-- Space tables are named from the space id (never user text); pgvector's types, functions
-- and operators are schema-qualified (@vector@ is its schema, written in by the migration),
-- and search_path is pinned to pg_catalog, so neither the caller's path nor objects planted
-- in a writable schema (pgvector's own `public` included) change what a name means here.

-- The catalog row of `space`, or EHNSP.
CREATE OR REPLACE FUNCTION embeddinghub.space_row(space text) RETURNS embeddinghub.spaces
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $$
DECLARE
    s embeddinghub.spaces;
BEGIN
    IF space IS NULL THEN
        RAISE EXCEPTION 'space name must not be null' USING ERRCODE = 'EHARG';
    END IF;
    SELECT * INTO s FROM embeddinghub.spaces AS c WHERE c.name = space;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'space "%" does not exist', space USING ERRCODE = 'EHNSP';
    END IF;
    RETURN s;
END
$$;

-- The schema pgvector is installed in (public by default), quoted for format().
CREATE OR REPLACE FUNCTION embeddinghub.vector_schema() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT quote_ident(n.nspname) FROM pg_catalog.pg_extension e
    JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'
$$;

-- The partition a key lookup goes to: `part`, or 'default'. A partition the caller cannot
-- see is reported like a missing one (EHARG).
CREATE OR REPLACE FUNCTION embeddinghub.check_partition(s embeddinghub.spaces, part text)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $$
BEGIN
    IF part IS NULL THEN
        RETURN 'default';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM embeddinghub.partitions p
                   WHERE p.space_id = s.id AND p.name = part) THEN
        RAISE EXCEPTION 'partition "%" does not exist in space "%"', part, s.name
            USING ERRCODE = 'EHARG';
    END IF;
    RETURN part;
END
$$;

-- The stored embedding of (partition, key) as a vector, or EHKEY.
CREATE OR REPLACE FUNCTION embeddinghub.key_vector(s embeddinghub.spaces, k text, part text)
RETURNS @vector@.vector
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $$
DECLARE
    vs text := embeddinghub.vector_schema();
    v @vector@.vector;
BEGIN
    IF k IS NULL THEN
        RAISE EXCEPTION 'space "%": key must not be null', s.name USING ERRCODE = 'EHARG';
    END IF;
    EXECUTE format('SELECT t.embedding::%s.vector FROM embeddinghub_data.%I t'
                   ' WHERE t.partition = $1 AND t.key = $2', vs, 's' || s.id)
        INTO v USING part, k;
    IF v IS NULL THEN
        RAISE EXCEPTION 'key "%" not found in space "%" (partition "%")', k, s.name, part
            USING ERRCODE = 'EHKEY';
    END IF;
    RETURN v;
END
$$;

-- The k-NN query of a space: $1 query vector, $2 limit, $3 partition (when `scoped`).
CREATE OR REPLACE FUNCTION embeddinghub.knn_sql(s embeddinghub.spaces, scoped boolean)
RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    vs text := embeddinghub.vector_schema();
    op text := CASE s.metric WHEN 'l2' THEN '<->' WHEN 'cosine' THEN '<=>' ELSE '<#>' END;
    vt text := CASE s.dtype WHEN 'float16' THEN 'halfvec' ELSE 'vector' END;
    dist text;
BEGIN
    dist := format('t.embedding OPERATOR(%s.%s) $1::%s.%s', vs, op, vs, vt);
    RETURN format(
        'SELECT t.key, t.partition, (%s)::float8 AS distance FROM embeddinghub_data.%I t%s'
        ' ORDER BY %s LIMIT $2',
        dist, 's' || s.id, CASE WHEN scoped THEN ' WHERE t.partition = $3' ELSE '' END, dist);
END
$$;

-- Shared by both searches: checks, and the per-query HNSW settings (restored on return
-- by the callers' SET clauses).
CREATE OR REPLACE FUNCTION embeddinghub.prepare_search(
    s embeddinghub.spaces, query @vector@.vector, k integer
) RETURNS void
LANGUAGE plpgsql SECURITY INVOKER AS $$
BEGIN
    IF query IS NULL THEN
        RAISE EXCEPTION 'space "%": the query vector must not be null', s.name
            USING ERRCODE = 'EHARG';
    END IF;
    IF @vector@.vector_dims(query) <> s.dims THEN
        RAISE EXCEPTION 'space "%" has % dims; got a query vector of % dims',
            s.name, s.dims, @vector@.vector_dims(query) USING ERRCODE = 'EHARG';
    END IF;
    IF k IS NULL OR k < 1 THEN
        RAISE EXCEPTION 'space "%": k must be a positive integer, not %', s.name,
            coalesce(k::text, 'NULL') USING ERRCODE = 'EHARG';
    END IF;
    -- An HNSW scan yields at most ef_search rows; beyond pgvector's cap of 1000, scan on
    -- iteratively (strict order keeps the result sorted).
    PERFORM set_config('hnsw.ef_search', least(1000, greatest(s.ef_search, k))::text, true);
    IF k > 1000 THEN
        PERFORM set_config('hnsw.iterative_scan', 'strict_order', true);
    END IF;
END
$$;

-- The k nearest rows to `query` in `space` (all partitions, or only `part`), closest first.
-- distance is pgvector's for the space's metric: L2, cosine distance, or negative inner product.
CREATE OR REPLACE FUNCTION embeddinghub.nearest_neighbors(
    space text, query @vector@.vector, k integer DEFAULT 10, part text DEFAULT NULL
) RETURNS TABLE (key text, partition text, distance double precision)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET hnsw.ef_search = 40 SET hnsw.iterative_scan = 'off' AS $$
DECLARE
    s embeddinghub.spaces := embeddinghub.space_row(space);
BEGIN
    IF part IS NOT NULL THEN
        PERFORM embeddinghub.check_partition(s, part);
    END IF;
    PERFORM embeddinghub.prepare_search(s, query, k);
    RETURN QUERY EXECUTE embeddinghub.knn_sql(s, part IS NOT NULL) USING query, k, part;
END
$$;

-- The k nearest rows to the vector of `query_key` (looked up in `part`, or 'default'), the
-- key itself left out. Searches `part` only when given, else every partition. (The key
-- argument is named query_key because `key` is already the name of a result column.)
CREATE OR REPLACE FUNCTION embeddinghub.nearest_neighbors_of(
    space text, query_key text, k integer DEFAULT 10, part text DEFAULT NULL
) RETURNS TABLE (key text, partition text, distance double precision)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET hnsw.ef_search = 40 SET hnsw.iterative_scan = 'off' AS $$
DECLARE
    s embeddinghub.spaces := embeddinghub.space_row(space);
    key_part text := embeddinghub.check_partition(s, part);
    q @vector@.vector := embeddinghub.key_vector(s, query_key, key_part);
BEGIN
    PERFORM embeddinghub.prepare_search(s, q, k);
    RETURN QUERY EXECUTE format(
        'SELECT n.key, n.partition, n.distance FROM (%s) n'
        ' WHERE NOT (n.partition = $4 AND n.key = $5) ORDER BY n.distance LIMIT $2 - 1',
        embeddinghub.knn_sql(s, part IS NOT NULL))
        USING q, k + 1, part, key_part, query_key;
END
$$;

-- The embedding of `key` (in `part`, or 'default') as a vector.
CREATE OR REPLACE FUNCTION embeddinghub.get(space text, key text, part text DEFAULT NULL)
RETURNS @vector@.vector
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $$
DECLARE
    s embeddinghub.spaces := embeddinghub.space_row(space);
BEGIN
    RETURN embeddinghub.key_vector(s, get.key, embeddinghub.check_partition(s, part));
END
$$;

-- The mean of the embeddings of `keys` (in `part`, or 'default'); a key listed twice counts
-- twice. EHKEY names the first missing key.
CREATE OR REPLACE FUNCTION embeddinghub.average(space text, keys text[], part text DEFAULT NULL)
RETURNS @vector@.vector
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $$
DECLARE
    s embeddinghub.spaces := embeddinghub.space_row(space);
    key_part text := embeddinghub.check_partition(s, part);
    vs text := embeddinghub.vector_schema();
    missing text;
    result @vector@.vector;
BEGIN
    IF keys IS NULL OR cardinality(keys) = 0 THEN
        RAISE EXCEPTION 'space "%": average needs at least one key', s.name
            USING ERRCODE = 'EHARG';
    END IF;
    IF array_position(keys, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'space "%": keys must not contain null', s.name USING ERRCODE = 'EHARG';
    END IF;
    EXECUTE format(
        'SELECT u.k FROM unnest($1) WITH ORDINALITY AS u(k, i)'
        ' WHERE NOT EXISTS (SELECT 1 FROM embeddinghub_data.%I t'
        '                   WHERE t.partition = $2 AND t.key = u.k)'
        ' ORDER BY u.i LIMIT 1', 's' || s.id)
        INTO missing USING keys, key_part;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'key "%" not found in space "%" (partition "%")', missing, s.name, key_part
            USING ERRCODE = 'EHKEY';
    END IF;
    -- Cosine spaces average unit vectors and return the unit-length mean direction, exactly
    -- as Space.average does (embeddinghub/recommend.py); l2 and ip spaces take the plain mean.
    EXECUTE format(
        CASE WHEN s.metric = 'cosine'
             THEN 'SELECT %1$s.l2_normalize(%1$s.avg(%1$s.l2_normalize(t.embedding::%1$s.vector)))'
             ELSE 'SELECT %1$s.avg(t.embedding::%1$s.vector)' END
        || ' FROM unnest($1) AS u(k) JOIN embeddinghub_data.%2$I t'
           ' ON t.partition = $2 AND t.key = u.k', vs, 's' || s.id)
        INTO result USING keys, key_part;
    IF s.metric = 'cosine' AND @vector@.vector_norm(result) = 0 THEN
        RAISE EXCEPTION 'space "%": the directions of the keys cancel out; their average has no direction', s.name
            USING ERRCODE = 'EHARG';
    END IF;
    RETURN result;
END
$$;

-- Every function here gets search_path = pg_catalog, pg_temp at the end of views.sql.
