-- Unfreeze: make a frozen space writable again (the inverse of embeddinghub.freeze).
--
-- Takes the space's exclusive lock through version_space(), as freeze() does, so it orders
-- with snapshots, rollbacks and writers the same way. SECURITY INVOKER: only a role that may
-- update the catalog row (the hub owner) can unfreeze. Errors: EHNSP for an unknown space.
CREATE OR REPLACE FUNCTION embeddinghub.unfreeze(space text)
RETURNS void
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s embeddinghub.spaces := embeddinghub.version_space(space, exclusive => true);
BEGIN
    UPDATE embeddinghub.spaces SET frozen = false WHERE id = s.id;
END
$$;
