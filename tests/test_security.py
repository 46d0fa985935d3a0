"""Attacks on access control, run as non-superuser LOGIN roles over raw psycopg connections
(and a few through psql): what a role was not granted, it cannot read, change, copy, call,
view, time-travel to, or find in the catalog, by any route.

The world (module-scoped): spaces A (partitions default, p1, p2) and B, each with a
snapshot and history rows, and these roles:
    ta    write on all of A           tb    read on all of B
    pr    read on A, partition p1     pw    write on A, partition p1
    adm   admin on A                  padm  admin on A, partition p1
    nobody  no grant at all
Every attack runs in a transaction that is rolled back, so none can disturb the next.
ATTACKS below is the table of attack queries; the tests after it add the attacks that need
more than one statement (leaky functions, prepared statements, psql, revoke timing, hostile
names). `attack_count()` counts them all.
"""

from __future__ import annotations

import ast
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

import embeddinghub as eh
from embeddinghub import errors
from embeddinghub.acl import role_dsn
from embeddinghub.rows import BULK_REBUILD_ROWS

ROLES = ("ta", "tb", "pr", "pw", "adm", "padm", "nobody")

# (id, role, SQL template, expectation). Placeholders: {A} {B} live tables, {A_hist}
# {B_hist} history tables, {A_view} {B_view} BI views, {A_part_<p>} {B_part_default}
# partition tables, {A_name} {B_name} space names as literals, {A_id} {B_id} space ids,
# {A_v1} {B_v1} the snapshot versions, {tb} {pr} ... role identifiers, {tb_lit} a literal.
# Expectations: "denied" (SQLSTATE 42501), "state:X|Y" (one of those SQLSTATEs), "none" (no
# rows, nothing changed), "keys:a,b" (the first column holds exactly these values),
# "value:<python literal>" (exactly these rows).
ATTACKS: list[tuple[str, str, str, str]] = [
    # -- a tenant against another tenant's space -------------------------------------------
    ("select-live", "ta", "SELECT key FROM {B}", "denied"),
    ("select-history", "ta", "SELECT key FROM {B_hist}", "denied"),
    ("select-partition-table", "ta", "SELECT key FROM {B_part_default}", "denied"),
    ("select-count", "ta", "SELECT count(*) FROM {B}", "denied"),
    ("update", "ta", "UPDATE {B} SET metadata = '{{}}'", "denied"),
    ("delete", "ta", "DELETE FROM {B}", "denied"),
    ("insert", "ta", "INSERT INTO {B} (partition, key, embedding) VALUES ('default', 'evil', '[1,1,1]')",
     "denied"),
    ("truncate", "ta", "TRUNCATE {B}", "denied"),
    ("copy-to", "ta", "COPY {B} TO STDOUT", "denied"),
    ("copy-query-to", "ta", "COPY (SELECT * FROM {B}) TO STDOUT", "denied"),
    ("copy-history-to", "ta", "COPY {B_hist} TO STDOUT", "denied"),
    ("lock", "ta", "LOCK TABLE {B} IN ACCESS SHARE MODE", "denied"),
    ("view", "ta", "SELECT key, embedding FROM {B_view}", "denied"),
    ("overview", "ta", "SELECT name FROM embeddinghub.spaces_overview WHERE name = {B_name}", "none"),
    ("catalog-spaces", "ta", "SELECT name FROM embeddinghub.spaces WHERE id = {B_id}", "none"),
    ("catalog-partitions", "ta", "SELECT name FROM embeddinghub.partitions WHERE space_id = {B_id}",
     "none"),
    ("catalog-versions", "ta", "SELECT number FROM embeddinghub.versions WHERE space_id = {B_id}",
     "none"),
    ("catalog-grants", "ta", "SELECT role FROM embeddinghub.grants WHERE space_id = {B_id}", "none"),
    ("my-grants", "ta", "SELECT role FROM embeddinghub.my_grants WHERE space_id = {B_id}", "none"),
    ("fn-nearest", "ta", "SELECT * FROM embeddinghub.nearest_neighbors({B_name}, '[1,0,0]', 5)",
     "state:EHNSP"),
    ("fn-nearest-of", "ta", "SELECT * FROM embeddinghub.nearest_neighbors_of({B_name}, 'b1', 5)",
     "state:EHNSP"),
    ("fn-get", "ta", "SELECT embeddinghub.get({B_name}, 'b1')", "state:EHNSP"),
    ("fn-average", "ta", "SELECT embeddinghub.average({B_name}, ARRAY['b1'])", "state:EHNSP"),
    ("fn-as-of", "ta", "SELECT key FROM embeddinghub.as_of({B_name}, {B_v1})", "state:EHNSP"),
    ("fn-diff", "ta", "SELECT key FROM embeddinghub.diff({B_name}, {B_v1})", "state:EHNSP"),
    ("fn-list-versions", "ta", "SELECT * FROM embeddinghub.list_versions({B_name})", "state:EHNSP"),
    ("fn-snapshot", "ta", "SELECT embeddinghub.snapshot({B_name})", "state:EHNSP"),
    ("fn-rollback", "ta", "SELECT embeddinghub.rollback({B_name}, {B_v1})", "state:EHNSP"),
    ("fn-freeze", "ta", "SELECT embeddinghub.freeze({B_name})", "state:EHNSP"),
    ("fn-has-access", "ta", "SELECT embeddinghub.has_access({B_name})", "value:[(False,)]"),
    ("fn-space-stats", "ta", "SELECT * FROM embeddinghub.space_stats({B_id})", "value:[(None, None)]"),
    ("grant-self", "ta",
     "INSERT INTO embeddinghub.grants (space_id, role, privilege) VALUES ({B_id}, current_user, 'read')",
     "denied"),
    ("revoke-others", "ta", "DELETE FROM embeddinghub.grants WHERE space_id = {B_id}", "denied"),
    ("revoke-others-by-request", "ta",
     "INSERT INTO embeddinghub.grant_revocations (grant_id) SELECT id FROM embeddinghub.grants",
     "denied"),
    ("unfreeze", "ta", "UPDATE embeddinghub.spaces SET frozen = false", "denied"),
    ("disable-rls", "ta", "ALTER TABLE {B} DISABLE ROW LEVEL SECURITY", "denied"),
    ("no-force-rls", "ta", "ALTER TABLE {B} NO FORCE ROW LEVEL SECURITY", "denied"),
    ("drop-policy", "ta", "DROP POLICY eh_owner ON {B}", "denied"),
    ("create-policy", "ta", "CREATE POLICY evil ON {B} USING (true)", "denied"),
    ("grant-table", "ta", "GRANT SELECT ON {B} TO PUBLIC", "denied"),
    ("drop-table", "ta", "DROP TABLE {B}", "denied"),
    ("alter-view", "ta", "ALTER VIEW {B_view} RENAME TO stolen", "denied"),
    ("fn-sync-privileges", "ta", "SELECT embeddinghub.sync_privileges({B_id}, current_user)", "denied"),
    ("fn-secure-space", "ta", "SELECT embeddinghub.secure_space({B_id})", "denied"),
    ("fn-secure-table", "ta", "SELECT embeddinghub.secure_space_table('{B_qualified}'::regclass)",
     "denied"),
    ("fn-create-view", "ta", "SELECT embeddinghub.create_space_view({B_id})", "denied"),
    ("set-role", "ta", "SET ROLE {tb}", "denied"),
    # SECURITY DEFINER trigger functions must not be attachable elsewhere: on_row_write on a
    # temp table of one's own would write B's history as the catalog owner.
    ("definer-trigger-row-write", "ta",
     "CREATE TEMP TABLE t (partition text, key text, embedding vector, metadata jsonb,"
     " version bigint, updated_at timestamptz);"
     " CREATE TRIGGER t BEFORE UPDATE ON t FOR EACH ROW"
     " EXECUTE FUNCTION embeddinghub.on_row_write('{B_id}')", "denied"),
    ("definer-trigger-grants", "ta",
     "CREATE TEMP TABLE g (LIKE embeddinghub.grants);"
     " CREATE TRIGGER g AFTER INSERT ON g FOR EACH ROW"
     " EXECUTE FUNCTION embeddinghub.on_grant_change()", "denied"),
    # -- a partition reader (p1 of A) against the rest of A --------------------------------------
    ("select-live", "pr", "SELECT key FROM {A}", "keys:x2"),
    ("select-other-partition", "pr", "SELECT key FROM {A} WHERE partition = 'default'", "none"),
    ("select-history", "pr", "SELECT key FROM {A_hist}", "keys:x1"),
    ("select-partition-table", "pr", "SELECT key FROM {A_part_default}", "denied"),
    ("select-own-partition-table", "pr", "SELECT key FROM {A_part_p1}", "denied"),
    ("copy-to", "pr", "COPY (SELECT key FROM {A}) TO STDOUT", "keys:x2"),
    # History is partitioned: a plain COPY under RLS reads the parent ONLY (nothing there).
    ("copy-history-to", "pr", "COPY {A_hist} (key) TO STDOUT", "none"),
    ("copy-query-history-to", "pr", "COPY (SELECT key FROM {A_hist}) TO STDOUT", "keys:x1"),
    ("view", "pr", "SELECT key FROM {A_view}", "keys:x2"),
    ("fn-nearest", "pr", "SELECT key FROM embeddinghub.nearest_neighbors({A_name}, '[1,0,0]', 10)",
     "keys:x2"),
    ("fn-nearest-other-partition", "pr",
     "SELECT key FROM embeddinghub.nearest_neighbors({A_name}, '[1,0,0]', 10, 'default')",
     "state:EHARG"),
    ("fn-nearest-of-hidden-key", "pr",
     "SELECT key FROM embeddinghub.nearest_neighbors_of({A_name}, 'a1', 5)", "state:EHKEY"),
    ("fn-get-hidden-key", "pr", "SELECT embeddinghub.get({A_name}, 'a1')", "state:EHKEY"),
    ("fn-average-hidden-key", "pr", "SELECT embeddinghub.average({A_name}, ARRAY['a1'])",
     "state:EHKEY"),
    ("fn-as-of", "pr", "SELECT key FROM embeddinghub.as_of({A_name}, {A_v1})", "keys:x1,x2"),
    ("fn-diff", "pr", "SELECT key FROM embeddinghub.diff({A_name}, {A_v1})", "keys:x1"),
    ("catalog-partitions", "pr", "SELECT name FROM embeddinghub.partitions WHERE space_id = {A_id}",
     "keys:p1"),
    ("catalog-grants", "pr", "SELECT role FROM embeddinghub.grants WHERE space_id = {A_id}",
     "keys:{pr_name}"),
    ("overview-rows", "pr", "SELECT rows FROM embeddinghub.spaces_overview WHERE name = {A_name}",
     "value:[(1,)]"),
    ("update", "pr", "UPDATE {A} SET metadata = '{{}}'", "denied"),
    ("delete", "pr", "DELETE FROM {A}", "denied"),
    ("insert-own-partition", "pr",
     "INSERT INTO {A} (partition, key, embedding) VALUES ('p1', 'evil', '[1,1,1]')", "denied"),
    ("row-security-off", "pr", "SET LOCAL row_security = off; SELECT key FROM {A}", "denied"),
    ("fn-snapshot", "pr", "SELECT embeddinghub.snapshot({A_name})", "denied"),
    ("grant", "pr",
     "INSERT INTO embeddinghub.grants (space_id, partition, role, privilege)"
     " VALUES ({A_id}, 'p1', {tb_lit}, 'read')", "denied"),
    # -- a partition writer (p1 of A) ----------------------------------------------------------
    ("insert-other-partition", "pw",
     "INSERT INTO {A} (partition, key, embedding) VALUES ('default', 'evil', '[1,1,1]')", "denied"),
    ("insert-p2", "pw", "INSERT INTO {A} (partition, key, embedding) VALUES ('p2', 'evil', '[1,1,1]')",
     "denied"),
    ("upsert-other-partition", "pw",
     "INSERT INTO {A} (partition, key, embedding) VALUES ('default', 'a1', '[1,1,1]')"
     " ON CONFLICT (partition, key) DO UPDATE SET metadata = '{{\"pwned\": true}}'", "denied"),
    ("update-all", "pw", "UPDATE {A} SET metadata = '{{\"pw\": 1}}' RETURNING key", "keys:x2"),
    ("delete-all", "pw", "DELETE FROM {A} RETURNING key", "keys:x2"),
    ("move-row-out", "pw", "UPDATE {A} SET partition = 'default' WHERE key = 'x2'", "state:EHARG|42501"),
    ("history-insert", "pw",
     "INSERT INTO {A_hist} SELECT partition, 'evil', embedding, metadata, 0, 1, now() FROM {A}",
     "denied"),
    ("history-update", "pw", "UPDATE {A_hist} SET valid_to = 0", "denied"),
    ("history-delete", "pw", "DELETE FROM {A_hist}", "denied"),
    ("copy-from", "pw", "COPY {A} FROM STDIN", "state:0A000|42501"),
    ("catalog-version-insert", "pw",
     "INSERT INTO embeddinghub.versions (space_id, number) VALUES ({A_id}, 999)", "denied"),
    ("catalog-head-bump", "pw", "UPDATE embeddinghub.spaces SET head_version = 1", "denied"),
    ("fn-snapshot", "pw", "SELECT embeddinghub.snapshot({A_name})", "denied"),
    ("fn-rollback", "pw", "SELECT embeddinghub.rollback({A_name}, {A_v1})", "denied"),
    ("fn-prune", "pw", "SELECT embeddinghub.prune_versions({A_name}, 0)", "denied"),
    ("fn-freeze", "pw", "SELECT embeddinghub.freeze({A_name})", "denied"),
    ("grant", "pw",
     "INSERT INTO embeddinghub.grants (space_id, partition, role, privilege)"
     " VALUES ({A_id}, 'p1', {tb_lit}, 'read')", "denied"),
    # -- a whole-space writer on its own space --------------------------------------------------
    ("history-delete", "ta", "DELETE FROM {A_hist}", "denied"),
    ("truncate-own", "ta", "TRUNCATE {A}", "denied"),
    ("disable-rls-own", "ta", "ALTER TABLE {A} DISABLE ROW LEVEL SECURITY", "denied"),
    ("grant-own", "ta",
     "INSERT INTO embeddinghub.grants (space_id, role, privilege) VALUES ({A_id}, {tb_lit}, 'read')",
     "denied"),
    # -- an admin of A ----------------------------------------------------------------------
    ("grant-other-space", "adm",
     "INSERT INTO embeddinghub.grants (space_id, role, privilege) VALUES ({B_id}, current_user, 'admin')",
     "denied"),
    ("forged-granted-by", "adm",
     "INSERT INTO embeddinghub.grants (space_id, role, privilege, granted_by)"
     " VALUES ({A_id}, {tb_lit}, 'read', 'postgres')", "denied"),
    ("update-grant", "adm", "UPDATE embeddinghub.grants SET privilege = 'admin'", "denied"),
    # Revoking is an INSERT into grant_revocations: no DELETE on grants, so no LOCK on it.
    ("revoke-other-space", "adm",
     "DELETE FROM embeddinghub.grants WHERE space_id = {B_id} RETURNING id", "denied"),
    ("revoke-own-space-by-delete", "adm",
     "DELETE FROM embeddinghub.grants WHERE space_id = {A_id} RETURNING id", "denied"),
    ("revoke-other-space-by-request", "adm",
     "INSERT INTO embeddinghub.grant_revocations (grant_id)"
     " SELECT id FROM embeddinghub.grants WHERE space_id = {B_id}", "none"),
    ("revoke-guessed-ids", "adm",
     "INSERT INTO embeddinghub.grant_revocations (grant_id) SELECT generate_series(1, 100000)",
     "denied"),
    ("truncate-grants", "adm", "TRUNCATE embeddinghub.grants", "denied"),
    ("lock-grants", "adm", "LOCK TABLE embeddinghub.grants IN ACCESS EXCLUSIVE MODE", "denied"),
    ("lock-grants-share", "adm", "LOCK TABLE embeddinghub.grants IN SHARE MODE", "denied"),
    ("lock-revocations", "adm",
     "LOCK TABLE embeddinghub.grant_revocations IN EXCLUSIVE MODE", "denied"),
    ("delete-revocations", "adm", "DELETE FROM embeddinghub.grant_revocations", "denied"),
    ("see-revocations", "adm", "SELECT grant_id FROM embeddinghub.grant_revocations", "denied"),
    ("see-other-space-grants", "adm",
     "SELECT role FROM embeddinghub.grants WHERE space_id = {B_id}", "none"),
    ("grant-public", "adm",
     "INSERT INTO embeddinghub.grants (space_id, role, privilege) VALUES ({A_id}, 'public', 'read')",
     "state:EHARG"),
    ("grant-pg-role", "adm",
     "INSERT INTO embeddinghub.grants (space_id, role, privilege)"
     " VALUES ({A_id}, 'pg_read_all_data', 'read')", "state:EHARG"),
    ("grant-hostile-role-name", "adm",
     "INSERT INTO embeddinghub.grants (space_id, role, privilege)"
     " VALUES ({A_id}, 'x\"; DROP TABLE embeddinghub.spaces; --', 'read')", "state:EHARG"),
    ("grant-missing-partition", "adm",
     "INSERT INTO embeddinghub.grants (space_id, partition, role, privilege)"
     " VALUES ({A_id}, 'p9', {tb_lit}, 'read')", "state:EHARG"),
    ("disable-rls", "adm", "ALTER TABLE {A} DISABLE ROW LEVEL SECURITY", "denied"),
    ("drop-table", "adm", "DROP TABLE {A}", "denied"),
    ("drop-policy", "adm", "DROP POLICY eh_owner ON {A}", "denied"),
    ("history-delete", "adm", "DELETE FROM {A_hist}", "denied"),
    ("fn-snapshot", "adm", "SELECT embeddinghub.snapshot({A_name})", "denied"),
    # -- an admin of partition p1 of A ---------------------------------------------------------
    ("grant-whole-space", "padm",
     "INSERT INTO embeddinghub.grants (space_id, role, privilege) VALUES ({A_id}, {tb_lit}, 'read')",
     "denied"),
    ("grant-other-partition", "padm",
     "INSERT INTO embeddinghub.grants (space_id, partition, role, privilege)"
     " VALUES ({A_id}, 'p2', {tb_lit}, 'read')", "denied"),
    ("revoke-whole-space-grant", "padm",
     "DELETE FROM embeddinghub.grants WHERE space_id = {A_id} AND partition IS NULL RETURNING id",
     "denied"),
    ("revoke-whole-space-grant-by-request", "padm",
     "INSERT INTO embeddinghub.grant_revocations (grant_id)"
     " SELECT id FROM embeddinghub.grants WHERE space_id = {A_id} AND partition IS NULL", "none"),
    ("revoke-guessed-whole-space-ids", "padm",
     "INSERT INTO embeddinghub.grant_revocations (grant_id) SELECT generate_series(1, 100000)",
     "denied"),
    ("lock-grants", "padm", "LOCK TABLE embeddinghub.grants IN SHARE ROW EXCLUSIVE MODE", "denied"),
    ("see-whole-space-grants", "padm",
     "SELECT role FROM embeddinghub.grants WHERE space_id = {A_id} AND partition IS NULL", "none"),
    ("read-other-partition", "padm", "SELECT key FROM {A} WHERE partition <> 'p1'", "none"),
    # -- a role with no grant at all --------------------------------------------------------------
    ("select-live", "nobody", "SELECT key FROM {A}", "denied"),
    ("copy-to", "nobody", "COPY {A} TO STDOUT", "denied"),
    ("view", "nobody", "SELECT key FROM {A_view}", "denied"),
    ("catalog-spaces", "nobody", "SELECT name FROM embeddinghub.spaces", "none"),
    ("catalog-partitions", "nobody", "SELECT name FROM embeddinghub.partitions", "none"),
    ("catalog-versions", "nobody", "SELECT number FROM embeddinghub.versions", "none"),
    ("catalog-grants", "nobody", "SELECT role FROM embeddinghub.grants", "none"),
    ("overview", "nobody", "SELECT name FROM embeddinghub.spaces_overview", "none"),
    ("fn-nearest", "nobody", "SELECT * FROM embeddinghub.nearest_neighbors({A_name}, '[1,0,0]')",
     "state:EHNSP"),
    ("fn-as-of", "nobody", "SELECT key FROM embeddinghub.as_of({A_name}, {A_v1})", "state:EHNSP"),
    # -- the space lock (orders writers against snapshot/rollback/freeze): a row lock on the
    # catalog, which only the hub owner and the definer write trigger can take -----------------
    ("lock-catalog-row", "ta", "SELECT 1 FROM embeddinghub.spaces WHERE id = {A_id} FOR SHARE",
     "denied"),
    ("lock-catalog-row", "nobody", "SELECT 1 FROM embeddinghub.spaces FOR NO KEY UPDATE", "denied"),
    ("lock-catalog-row", "adm", "SELECT 1 FROM embeddinghub.spaces WHERE id = {A_id} FOR UPDATE",
     "denied"),
    ("lock-catalog-row-key-share", "pw",
     "SELECT 1 FROM embeddinghub.spaces WHERE id = {A_id} FOR KEY SHARE", "denied"),
    ("fn-lock-shared", "ta", "SELECT embeddinghub.lock_space_shared({A_id})", "denied"),
    ("fn-lock-shared", "nobody", "SELECT embeddinghub.lock_space_shared({A_id})", "denied"),
    ("fn-lock-exclusive", "pr", "SELECT embeddinghub.lock_space_exclusive({A_id})", "denied"),
    ("fn-lock-exclusive", "adm", "SELECT embeddinghub.lock_space_exclusive({A_id})", "denied"),
    ("fn-lock-for-write", "pw", "SELECT embeddinghub.lock_space_for_write({A_id})", "denied"),
    ("fn-lock-for-write", "ta", "SELECT embeddinghub.lock_space_for_write({A_id})", "denied"),
    ("fn-version-space-exclusive", "pr",
     "SELECT id FROM embeddinghub.version_space({A_name}, exclusive => true)", "denied"),
    ("fn-version-space-exclusive", "ta",
     "SELECT id FROM embeddinghub.version_space({A_name}, exclusive => true)", "denied"),
    ("fn-version-space-exclusive", "adm",
     "SELECT id FROM embeddinghub.version_space({A_name}, exclusive => true)", "denied"),
    ("definer-trigger-write-lock", "ta",
     "CREATE TEMP TABLE w (x int); CREATE TRIGGER w BEFORE INSERT ON w FOR EACH STATEMENT"
     " EXECUTE FUNCTION embeddinghub.on_write_statement('{B_id}')", "denied"),
    ("definer-trigger-revocation", "adm",
     "CREATE TEMP TABLE r (grant_id integer); CREATE TRIGGER r AFTER INSERT ON r"
     " FOR EACH ROW EXECUTE FUNCTION embeddinghub.on_grant_revocation()", "denied"),
    ("definer-trigger-grant-insert", "adm",
     "CREATE TEMP TABLE g (LIKE embeddinghub.grants); CREATE TRIGGER g BEFORE INSERT ON g"
     " FOR EACH ROW EXECUTE FUNCTION embeddinghub.on_grant_insert()", "denied"),
    # -- LOCK TABLE on shared tables ------------------------------------------------------------
    ("lock-exclusive", "pr", "LOCK TABLE {A} IN ACCESS EXCLUSIVE MODE", "denied"),
    ("lock-share", "pr", "LOCK TABLE {A} IN SHARE MODE", "denied"),
    ("lock-row-exclusive", "pr", "LOCK TABLE {A} IN ROW EXCLUSIVE MODE", "denied"),
    ("lock-history", "pw", "LOCK TABLE {A_hist} IN ACCESS EXCLUSIVE MODE", "denied"),
    ("lock-history", "ta", "LOCK TABLE {A_hist} IN EXCLUSIVE MODE", "denied"),
    ("lock-view", "pr", "LOCK TABLE {A_view} IN ACCESS EXCLUSIVE MODE", "denied"),
    ("lock-partition-table", "pw", "LOCK TABLE {A_part_p1} IN ACCESS EXCLUSIVE MODE", "denied"),
    ("lock-catalog-spaces", "ta", "LOCK TABLE embeddinghub.spaces IN ACCESS EXCLUSIVE MODE",
     "denied"),
    ("lock-catalog-partitions", "pw", "LOCK TABLE embeddinghub.partitions IN SHARE MODE", "denied"),
    ("lock-catalog-versions", "ta", "LOCK TABLE embeddinghub.versions IN EXCLUSIVE MODE", "denied"),
    ("lock-catalog-grants", "ta", "LOCK TABLE embeddinghub.grants IN ACCESS EXCLUSIVE MODE",
     "denied"),
    ("lock-migrations", "nobody",
     "LOCK TABLE embeddinghub.alembic_version IN ACCESS EXCLUSIVE MODE", "denied"),
    # -- grants that would lock the owner out, or give nothing but trouble -----------------------
    ("grant-hub-owner", "adm",
     "INSERT INTO embeddinghub.grants (space_id, role, privilege) VALUES ({A_id}, {owner_lit}, 'read')",
     "state:EHARG"),
    ("grant-hub-owner-partition", "padm",
     "INSERT INTO embeddinghub.grants (space_id, partition, role, privilege)"
     " VALUES ({A_id}, 'p1', {owner_lit}, 'admin')", "state:EHARG"),
    ("grant-superuser", "adm",
     "INSERT INTO embeddinghub.grants (space_id, role, privilege) VALUES ({A_id}, {super_lit}, 'write')",
     "state:EHARG"),
    # -- grants name partitions by identity: a forged partition_id is overwritten ----------------
    ("grant-forged-partition-id", "padm",
     "INSERT INTO embeddinghub.grants (space_id, partition, partition_id, role, privilege)"
     " VALUES ({A_id}, 'p1', {A_p2_id}, {tb_lit}, 'read') RETURNING partition_id::text",
     "keys:{A_p1_id}"),
    # -- side channels: sizes and counts in the caller's scope only -------------------------------
    ("catalog-version-row-count", "pr",
     "SELECT row_count FROM embeddinghub.versions WHERE space_id = {A_id}", "value:[(None,)]"),
    ("fn-list-versions-row-count", "pr",
     "SELECT row_count FROM embeddinghub.list_versions({A_name}) WHERE number = {A_v1}",
     "value:[(2,)]"),
    ("fn-list-versions-row-count", "ta",
     "SELECT row_count FROM embeddinghub.list_versions({A_name}) WHERE number = {A_v1}",
     "value:[(5,)]"),
    ("version-log", "pr", "SELECT row_count FROM embeddinghub.version_log", "denied"),
    ("version-log", "nobody", "SELECT number FROM embeddinghub.version_log", "denied"),
    ("fn-index-bytes", "nobody", "SELECT embeddinghub.space_index_bytes({A_id})", "value:[(None,)]"),
    ("fn-index-bytes", "ta", "SELECT embeddinghub.space_index_bytes({B_id})", "value:[(None,)]"),
    ("fn-index-bytes-own-partition", "pr",
     "SELECT embeddinghub.space_index_bytes({A_id}) = {A_p1_index_bytes}", "value:[(True,)]"),
    ("overview-index-bytes", "pr",
     "SELECT index_bytes = {A_p1_index_bytes}, partitions FROM embeddinghub.spaces_overview"
     " WHERE name = {A_name}", "value:[(True, 1)]"),
    ("overview-index-bytes", "ta",
     "SELECT index_bytes FROM embeddinghub.spaces_overview WHERE name = {B_name}", "none"),
]

# Attacks made by the tests after ATTACKS (test name -> attempts), counted as they are sent.
EXTRA_ATTACKS = {
    "test_leaky_function_sees_only_admitted_rows": 1,
    "test_revoke_takes_effect_for_new_transactions": 4,
    "test_psql_attacks_fail": 4,
    "test_sql_injection_in_arguments_is_inert": 4,
    "test_hostile_role_names_are_refused": 28,  # 13 names x (create_role, grant) + 2
    "test_tricky_but_valid_names_work_end_to_end": 4,  # hostile space names
    "test_python_api_as_a_tenant": 6,
    "test_python_api_as_a_partition_writer": 2,
    "test_advisory_locks_hold_nobody_off": 4,  # 4 advisory locks held; writer, snapshot, freeze go on
    "test_a_writer_holding_the_space_lock_blocks_no_tenant": 5,  # 2 writes, a read, 2 owner ops
    "test_a_snapshot_waiting_for_a_held_writer_delays_other_tenants_a_bounded_time": 1,  # writes
    "test_an_admin_holding_its_strongest_grants_lock_blocks_nobody": 3,  # a read, owner grant, revoke
    "test_admins_revoke_in_their_scope_through_the_api": 3,  # out of scope kept, tenant refused
    "test_a_tenant_locking_its_space_table_makes_others_fail_fast": 3,  # a search, a get, a write
    "test_explain_analyze_counts_no_history_rows_of_other_partitions": 2,  # two queries
    # 6 formats + 9 operators planted; 3 victims x 15 calls (+ 10 owner calls for 2 of them)
    "test_trojans_in_a_writable_public_never_run": 15 + 3 * 15 + 2 * 10 + 4,
    "test_admin_cannot_lock_the_owner_out": 4,
    "test_dropped_partition_takes_its_grants_and_history_along": 6,
    "test_a_first_bulk_load_shows_a_partition_reader_nothing_more": 2,  # a read during, one after
}


def attack_count() -> int:
    return len(ATTACKS) + sum(EXTRA_ATTACKS.values())


@dataclass
class World:
    a: eh.Space
    b: eh.Space
    names: dict[str, str]  # placeholder -> SQL text
    roles: dict[str, Any]
    conns: dict[str, psycopg.Connection[Any]] = field(default_factory=dict)

    def sql(self, template: str) -> str:
        return template.format(**self.names)


def _ident(conn: psycopg.Connection[Any], *parts: str) -> str:
    return sql.Identifier(*parts).as_string(conn)


def _partition_table(hub: eh.Hub, space: eh.Space, name: str) -> str:
    rows = hub.execute(
        "SELECT id FROM embeddinghub.partitions WHERE space_id = %s AND name = %s", (space.id, name)
    )
    return _ident(hub.conn, "embeddinghub_data", f"s{space.id}_p{rows[0][0]}")


@pytest.fixture(scope="module")
def world(hub: eh.Hub, make_module_role: Any) -> Iterator[World]:
    tag = uuid.uuid4().hex[:8]
    a = hub.create_space(f"sec_a_{tag}", dims=3)
    b = hub.create_space(f"sec_b_{tag}", dims=3)
    try:
        a.create_partition("p1")
        a.create_partition("p2")
        a.multiset(["a1", "a2"], [[1, 0, 0], [0, 1, 0]])
        a.multiset(["x1", "x2"], [[1, 0, 0], [0, 0, 1]], partition="p1")
        a.set("y1", [1, 1, 0], partition="p2")
        b.multiset(["b1", "b2"], [[1, 0, 0], [0, 1, 0]])
        a_v1 = hub.execute("SELECT embeddinghub.snapshot(%s)", (a.name,))[0][0]
        b_v1 = hub.execute("SELECT embeddinghub.snapshot(%s)", (b.name,))[0][0]
        a.set("a1", [0.9, 0.1, 0])  # old images go to history: (default, a1) and (p1, x1)
        a.delete("x1", partition="p1")
        b.set("b1", [0.5, 0.5, 0])

        roles = {r: make_module_role(f"sec_{r}") for r in ROLES}
        a.grant(roles["ta"].name, "write")
        b.grant(roles["tb"].name, "read")
        a.grant(roles["pr"].name, "read", partition="p1")
        a.grant(roles["pw"].name, "write", partition="p1")
        a.grant(roles["adm"].name, "admin")
        a.grant(roles["padm"].name, "admin", partition="p1")

        c = hub.conn
        names: dict[str, str] = {
            "A": _ident(c, "embeddinghub_data", f"s{a.id}"),
            "B": _ident(c, "embeddinghub_data", f"s{b.id}"),
            "B_qualified": f"embeddinghub_data.s{b.id}",
            "A_hist": _ident(c, "embeddinghub_data", f"s{a.id}_history"),
            "B_hist": _ident(c, "embeddinghub_data", f"s{b.id}_history"),
            "A_view": _ident(c, "embeddinghub_views", a.name),
            "B_view": _ident(c, "embeddinghub_views", b.name),
            "A_part_default": _partition_table(hub, a, "default"),
            "A_part_p1": _partition_table(hub, a, "p1"),
            "B_part_default": _partition_table(hub, b, "default"),
            "A_name": sql.Literal(a.name).as_string(c),
            "B_name": sql.Literal(b.name).as_string(c),
            "A_id": str(a.id),
            "B_id": str(b.id),
            "A_v1": str(a_v1),
            "B_v1": str(b_v1),
        }
        owner = hub.execute("SELECT current_user")[0][0]
        superuser = hub.execute("SELECT rolname FROM pg_roles WHERE rolsuper ORDER BY 1 LIMIT 1")
        p_ids = dict(hub.execute(
            "SELECT name, id FROM embeddinghub.partitions WHERE space_id = %s", (a.id,)))
        names["owner_lit"] = sql.Literal(owner).as_string(c)
        names["super_lit"] = sql.Literal(superuser[0][0]).as_string(c)
        names["A_p1_id"], names["A_p2_id"] = str(p_ids["p1"]), str(p_ids["p2"])
        names["A_p1_index_bytes"] = str(hub.execute(
            "SELECT coalesce(sum(pg_relation_size(i.indexrelid)), 0) FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam"
            " WHERE i.indrelid = %s::regclass AND am.amname = 'hnsw'",
            (f"embeddinghub_data.s{a.id}_p{p_ids['p1']}",))[0][0])
        for r, role in roles.items():
            names[r] = _ident(c, role.name)
            names[f"{r}_lit"] = sql.Literal(role.name).as_string(c)
            names[f"{r}_name"] = role.name
        w = World(a, b, names, roles)
        w.conns = {r: role.connect() for r, role in roles.items()}
        yield w
    finally:
        for space in (a, b):
            if hub.has_space(space.name):
                hub.delete_space(space.name)


def _run(conn: psycopg.Connection[Any], text: str) -> list[tuple[Any, ...]]:
    """Run `text` in a transaction that is always rolled back; COPY TO STDOUT included."""
    with conn.transaction(force_rollback=True), conn.cursor() as cur:
        if text.startswith("COPY") and "TO STDOUT" in text:
            with cur.copy(text) as copy:
                return [tuple(row) for row in copy.rows()]
        if text.startswith("COPY") and "FROM STDIN" in text:
            with cur.copy(text) as copy:
                copy.write_row(("default", "evil", "[1,1,1]", None, 1, "now"))
            return []
        cur.execute(text)
        while cur.nextset():  # several statements: judge the last one's result
            pass
        if cur.description is None:
            assert cur.rowcount <= 0, f"{cur.rowcount} rows changed"
            return []
        return cur.fetchall()


def _check(world: World, role: str, template: str, expect: str) -> None:
    text = world.sql(template)
    conn = world.conns[role]
    if expect == "denied" or expect.startswith("state:"):
        states = ["42501"] if expect == "denied" else expect.removeprefix("state:").split("|")
        with pytest.raises(psycopg.Error) as info:
            _run(conn, text)
        assert info.value.sqlstate in states, f"{info.value.sqlstate}: {info.value}"
        return
    rows = _run(conn, text)
    if expect == "none":
        assert rows == []
    elif expect.startswith("keys:"):
        want = {world.sql(k) for k in expect.removeprefix("keys:").split(",")}
        assert {r[0] for r in rows} == want
    elif expect.startswith("value:"):
        assert rows == ast.literal_eval(expect.removeprefix("value:"))
    else:
        raise AssertionError(f"unknown expectation {expect!r}")


@pytest.mark.parametrize(
    ("role", "template", "expect"),
    [a[1:] for a in ATTACKS],
    ids=[f"{a[1]}-{a[0]}" for a in ATTACKS],
)
def test_attack(world: World, role: str, template: str, expect: str) -> None:
    _check(world, role, template, expect)


def test_attack_ids_are_unique() -> None:
    ids = [f"{a[1]}-{a[0]}" for a in ATTACKS]
    assert len(ids) == len(set(ids))
    assert attack_count() >= 120


# -- what the grants do allow (so the denials above are not vacuous) -------------------------------
def test_grantees_reach_what_they_were_granted(world: World) -> None:
    assert _run(world.conns["ta"], world.sql("SELECT key FROM {A} ORDER BY key")) == [
        ("a1",), ("a2",), ("x2",), ("y1",)
    ]
    assert {r[0] for r in _run(world.conns["tb"], world.sql("SELECT key FROM {B}"))} == {"b1", "b2"}
    assert {r[0] for r in _run(world.conns["tb"], world.sql("SELECT key FROM {B_hist}"))} == {"b1"}
    as_of = world.sql("SELECT key FROM embeddinghub.as_of({A_name}, {A_v1})")
    assert {r[0] for r in _run(world.conns["ta"], as_of)} == {"a1", "a2", "x1", "x2", "y1"}
    # The partition writer really writes its partition, and the trigger still versions it.
    rows = _run(
        world.conns["pw"],
        world.sql(
            "INSERT INTO {A} (partition, key, embedding) VALUES ('p1', 'new', '[0,1,1]')"
            " RETURNING key, version"
        ),
    )
    assert rows[0][0] == "new" and rows[0][1] > int(world.names["A_v1"])
    # Admins grant within their scope.
    for admin, values in (
        ("adm", "VALUES ({A_id}, NULL, {tb_lit}, 'read')"),
        ("padm", "VALUES ({A_id}, 'p1', {tb_lit}, 'read')"),
    ):
        insert = "INSERT INTO embeddinghub.grants (space_id, partition, role, privilege) {values}"
        rows = _run(world.conns[admin], world.sql(insert.format(values=values) + " RETURNING role"))
        assert rows == [(world.roles["tb"].name,)]


def test_admin_sees_every_grant_of_its_space(world: World) -> None:
    query = world.sql("SELECT role FROM embeddinghub.grants WHERE space_id = {A_id}")
    rows = _run(world.conns["adm"], query)
    assert {r[0] for r in rows} == {world.roles[r].name for r in ("ta", "pr", "pw", "adm", "padm")}
    rows = _run(world.conns["padm"], query)
    assert {r[0] for r in rows} == {world.roles[r].name for r in ("pr", "pw", "padm")}


# -- attacks that take more than one statement ------------------------------------------------------
def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def test_explain_analyze_counts_no_history_rows_of_other_partitions(world: World) -> None:
    """A partition grant's history policy is on the history's partition key, so the plan
    holds that partition's images only: no "Rows Removed by Filter" to count the others'
    (the history holds default-partition images too, which pr may not see)."""
    pid = world.a.hub.execute(
        "SELECT id FROM embeddinghub.partitions WHERE space_id = %s AND name = 'p1'", (world.a.id,)
    )[0][0]
    for query in ("SELECT key FROM {A_hist}", "SELECT count(*) FROM {A_hist} WHERE valid_to > 0"):
        (plan,) = _run(world.conns["pr"], world.sql("EXPLAIN (ANALYZE, FORMAT JSON) " + query))[0][0]
        nodes = list(_plan_nodes(plan["Plan"]))
        scanned = {n["Relation Name"] for n in nodes if "Relation Name" in n}
        assert scanned == {f"s{world.a.id}_history_p{pid}"}, scanned
        assert sum(n.get("Rows Removed by Filter", 0) for n in nodes) == 0
    assert world.a.hub.execute(world.sql("SELECT count(*) FROM {A_hist} WHERE partition <> 'p1'"))[0][0] > 0


def test_leaky_function_sees_only_admitted_rows(world: World) -> None:
    """A cheap non-leakproof function in WHERE would run before an ordinary filter; RLS
    keeps the policy first, so it never sees a row the role may not read."""
    conn = world.conns["pr"]
    leaked: list[str] = []

    def handler(diag: psycopg.errors.Diagnostic) -> None:
        leaked.append(diag.message_primary or "")

    conn.add_notice_handler(handler)
    try:
        rows = _run(
            conn,
            world.sql(
                "CREATE FUNCTION pg_temp.leak(k text) RETURNS boolean LANGUAGE plpgsql COST 0.0001"
                " AS $$ BEGIN RAISE NOTICE 'leak %', k; RETURN true; END $$;"
                " SELECT key FROM {A} WHERE pg_temp.leak(key)"
            ),
        )
    finally:
        conn.remove_notice_handler(handler)
    assert rows == [("x2",)]
    assert leaked == ["leak x2"]


def test_revoke_takes_effect_for_new_transactions(world: World, make_role: Any) -> None:
    role = make_role("sec_rev")
    world.b.grant(role.name, "read")
    conn = role.connect()
    query = world.sql("SELECT key FROM {B} ORDER BY key")
    assert conn.execute(query, prepare=True).fetchall() == [("b1",), ("b2",)]
    assert conn.execute(query, prepare=True).fetchall() == [("b1",), ("b2",)]
    world.b.revoke(role.name)
    # The same session and its prepared statement: refused from the next transaction on.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(query, prepare=True)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(query)
    assert conn.execute(
        "SELECT count(*) FROM embeddinghub.spaces WHERE id = %s", (world.b.id,)
    ).fetchone() == (0,)
    with pytest.raises(psycopg.Error) as info:
        conn.execute("SELECT * FROM embeddinghub.nearest_neighbors(%s, '[1,0,0]')", (world.b.name,))
    assert info.value.sqlstate == "EHNSP"


def test_psql_attacks_fail(world: World, psql: str) -> None:
    role = world.roles["ta"]
    for template in (
        "SELECT key FROM {B}",
        "COPY {B} TO STDOUT",
        "SELECT * FROM embeddinghub.nearest_neighbors({B_name}, '[1,0,0]')",
        "SELECT key FROM {B_view}",
    ):
        done = subprocess.run(
            [psql, role.dsn, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", world.sql(template)],
            env=role.env(), capture_output=True, text=True, timeout=30,
        )
        assert done.returncode != 0
        assert done.stdout == ""
        assert "permission denied" in done.stderr or "does not exist" in done.stderr


def test_sql_injection_in_arguments_is_inert(world: World) -> None:
    conn = world.conns["ta"]
    hostile = [
        "x'; DROP TABLE embeddinghub.spaces; --",
        f'{world.a.name}" OR true --',
        f"{world.b.name}' OR name = '{world.a.name}",
    ]
    for name in hostile:
        with pytest.raises(psycopg.Error) as info:
            conn.execute("SELECT * FROM embeddinghub.nearest_neighbors(%s, '[1,0,0]')", (name,))
        assert info.value.sqlstate == "EHNSP"
    with pytest.raises(psycopg.Error) as info:
        conn.execute(
            "SELECT * FROM embeddinghub.nearest_neighbors(%s, '[1,0,0]', 5, %s)",
            (world.a.name, "p1' OR partition = 'default"),
        )
    assert info.value.sqlstate == "EHARG"
    assert world.a.hub.has_space(world.a.name)


def test_hostile_role_names_are_refused(hub: eh.Hub, world: World) -> None:
    for name in ("x'; DROP ROLE postgres; --", 'a"b', "has space", "", "-x", ".x", "a" * 64,
                 "public", "PUBLIC", "pg_monitor", "none", "current_user", "session_user"):
        with pytest.raises(errors.InvalidArgument):
            hub.create_role(name)
        with pytest.raises(errors.InvalidArgument):
            world.a.grant(name, "read")
    with pytest.raises(errors.InvalidArgument):
        world.a.grant(world.roles["tb"].name, "superuser")
    with pytest.raises(errors.InvalidArgument, match="does not exist"):
        world.a.grant(f"ghost_{uuid.uuid4().hex[:8]}", "read")


def test_tricky_but_valid_names_work_end_to_end(hub: eh.Hub, make_role: Any, psql: str) -> None:
    """Mixed case, dots and dashes: quoted everywhere (roles, views, policies), never lost."""
    tag = uuid.uuid4().hex[:6]
    space = hub.create_space(f"Mixed.Case-{tag}", dims=3)
    try:
        space.multiset(["k1", "k2"], [[1, 0, 0], [0, 1, 0]])
        name = f"Role.Mixed-{tag}"
        password = "pw-" + tag
        hub.create_role(name, login=True, password=password)
        try:
            space.grant(name, "read")
            role_conn = psycopg.connect(role_dsn(hub.dsn, name), password=password, autocommit=True)
            with role_conn:
                rows = role_conn.execute(
                    sql.SQL("SELECT key FROM {} ORDER BY key").format(
                        sql.Identifier("embeddinghub_views", space.name)
                    )
                ).fetchall()
            assert rows == [("k1",), ("k2",)]
            done = subprocess.run(
                [psql, role_dsn(hub.dsn, name), "-X", "-A", "-t", "-c",
                 sql.SQL("SELECT count(*) FROM {}").format(
                     sql.Identifier("embeddinghub_views", space.name)).as_string(hub.conn)],
                env={**os.environ, "PGPASSWORD": password}, capture_output=True, text=True,
                timeout=30,
            )
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip() == "2"
        finally:
            hub.drop_role(name)
    finally:
        hub.delete_space(space.name)
    for bad in ('x"; DROP TABLE embeddinghub.spaces; --', "a b", "../x", "x'y"):
        with pytest.raises(errors.InvalidArgument):
            hub.create_space(bad, dims=3)


def test_python_api_as_a_tenant(world: World) -> None:
    tenant = world.roles["ta"].hub()
    names = {s["name"] for s in tenant.list_spaces()}
    assert world.a.name in names and world.b.name not in names
    with pytest.raises(errors.SpaceNotFound):
        tenant.get_space(world.b.name)
    assert not tenant.has_space(world.b.name)
    a = tenant.get_space(world.a.name)
    assert {n.key for n in a.nearest_neighbors(10, vector=[1, 0, 0])} == {"a1", "a2", "x2", "y1"}
    with pytest.raises(errors.PermissionDenied):
        a.grant(world.roles["tb"].name, "read")
    with pytest.raises(errors.PermissionDenied):
        a.snapshot()
    with pytest.raises(errors.PermissionDenied):
        a.create_partition("mine")


def test_python_api_as_a_partition_writer(world: World) -> None:
    writer = world.roles["pw"].hub()
    a = writer.get_space(world.a.name)
    assert [p["name"] for p in a.list_partitions()] == ["p1"]
    with pytest.raises(errors.PartitionNotFound):
        a.set("evil", [1, 1, 1])  # 'default' is not in its scope: not even visible
    with pytest.raises(errors.PartitionNotFound):
        a.set("evil", [1, 1, 1], partition="p2")
    a.set("mine", np.array([0, 1, 1], dtype=np.float32), partition="p1")
    try:
        assert {n.key for n in a.nearest_neighbors(10, vector=[1, 0, 0])} == {"x2", "mine"}
        assert len(a) == 2
    finally:
        a.delete("mine", partition="p1")


# -- locks: a tenant can neither block other tenants nor hold the owner off for long -----------------
def test_advisory_locks_hold_nobody_off(world: World, make_role: Any) -> None:
    """The space lock of earlier versions was an advisory lock any role could take
    exclusively. Holding those keys now blocks no writer, snapshot or rollback."""
    holder = world.roles["nobody"].connect()
    tenant = world.roles["ta"].connect(options="-c lock_timeout=5s")  # blocked -> error, not hang
    hub = world.a.hub
    with holder.transaction():
        for sid in (world.a.id, world.b.id):
            holder.execute("SELECT pg_advisory_xact_lock(1701343744, %s)", (sid,))
            holder.execute("SELECT pg_advisory_xact_lock(%s)", (sid,))
        with tenant.transaction(force_rollback=True):
            rows = tenant.execute(world.sql(
                "INSERT INTO {A} (partition, key, embedding) VALUES ('default', 'adv', '[1,1,0]')"
                " RETURNING key")).fetchall()
            assert rows == [("adv",)]
        hub.execute("SET embeddinghub.lock_timeout = '5s'")
        try:
            with hub.conn.transaction(force_rollback=True):
                assert hub.execute("SELECT embeddinghub.snapshot(%s)", (world.b.name,))
                hub.execute("SELECT embeddinghub.freeze(%s)", (world.b.name,))
                assert hub.execute("SELECT frozen FROM embeddinghub.spaces WHERE id = %s",
                                   (world.b.id,)) == [(True,)]
        finally:
            hub.execute("RESET embeddinghub.lock_timeout")


def test_a_writer_holding_the_space_lock_blocks_no_tenant(world: World) -> None:
    """A writer that keeps its transaction open holds the writers' (shared) space lock:
    other writers and readers go on; the owner's snapshot fails fast with SpaceBusy."""
    writer = world.roles["pw"].connect()
    other = world.roles["ta"].connect(options="-c lock_timeout=5s")
    reader = world.roles["pr"].connect(options="-c lock_timeout=5s")
    with writer.transaction(force_rollback=True):
        writer.execute(world.sql(
            "INSERT INTO {A} (partition, key, embedding) VALUES ('p1', 'held', '[0,1,1]')"))
        with other.transaction(force_rollback=True):
            other.execute(world.sql("UPDATE {A} SET metadata = '{{\"t\": 1}}' WHERE key = 'a2'"))
            other.execute(world.sql(
                "INSERT INTO {A} (partition, key, embedding) VALUES ('p2', 'o', '[1,0,1]')"))
        assert reader.execute(world.sql("SELECT key FROM {A}")).fetchall() == [("x2",)]
        hub = world.a.hub
        hub.execute("SET embeddinghub.lock_timeout = '300ms'")
        try:
            with pytest.raises(errors.SpaceBusy, match=world.a.name) as info:
                world.a.snapshot()
            assert "retry" in str(info.value)
            with pytest.raises(errors.SpaceBusy, match=world.a.name):
                world.a.create_partition("busy")
        finally:
            hub.execute("RESET embeddinghub.lock_timeout")
    assert world.a.snapshot().number > int(world.names["A_v1"])  # free again once it commits


def test_a_snapshot_waiting_for_a_held_writer_delays_other_tenants_a_bounded_time(world: World) -> None:
    """While the owner's snapshot waits for a writer that keeps its transaction open, it
    queues for the space's table in attempts of at most 1 s: another tenant's writes, each
    allowed to wait 2.5 s for a lock, all get through; the snapshot raises SpaceBusy."""
    holder = world.roles["pw"].connect()
    other = world.roles["ta"].connect(options="-c lock_timeout=2500ms")
    outcome: list[BaseException | None] = []
    with holder.transaction(force_rollback=True):
        holder.execute(world.sql(
            "INSERT INTO {A} (partition, key, embedding) VALUES ('p1', 'held', '[0,1,1]')"))
        hub = world.a.hub
        hub.execute("SET embeddinghub.lock_timeout = '4s'")
        try:
            def snapshot() -> None:
                try:
                    world.a.snapshot()
                    outcome.append(None)
                except eh.EmbeddingHubError as exc:
                    outcome.append(exc)

            waiting = threading.Thread(target=snapshot)
            waiting.start()
            written = 0
            while waiting.is_alive() and written < 40:  # bounded: 40 writes, about 4 s
                with other.transaction(force_rollback=True):
                    other.execute(world.sql(
                        "INSERT INTO {A} (partition, key, embedding) VALUES ('p2', 'o', '[1,0,1]')"))
                written += 1
                time.sleep(0.1)
            waiting.join(30)
        finally:
            hub.execute("RESET embeddinghub.lock_timeout")
    assert written >= 3  # the writes ran while the snapshot waited
    assert len(outcome) == 1 and isinstance(outcome[0], errors.SpaceBusy), outcome


def test_an_admin_holding_its_strongest_grants_lock_blocks_nobody(world: World) -> None:
    """An admin mid-revocation holds the strongest lock it can take on the grants table (ROW
    EXCLUSIVE, from INSERT): every policy check reads that table, and none of them waits."""
    admin = world.roles["adm"].connect()
    reader = world.roles["tb"].connect(options="-c lock_timeout=5s")
    with admin.transaction(force_rollback=True):
        admin.execute("LOCK TABLE embeddinghub.grants IN ROW EXCLUSIVE MODE")
        admin.execute("LOCK TABLE embeddinghub.grant_revocations IN ROW EXCLUSIVE MODE")
        admin.execute(world.sql(
            "INSERT INTO embeddinghub.grant_revocations (grant_id) SELECT id FROM embeddinghub.grants"
            " WHERE space_id = {A_id} AND role = {tb_lit}"))
        # The catalog's policies read the grants table; so do the SQL API's lookups.
        spaces = reader.execute("SELECT name FROM embeddinghub.spaces").fetchall()
        assert (world.b.name,) in spaces
        found = reader.execute(
            "SELECT key FROM embeddinghub.nearest_neighbors(%s, '[1,0,0]')", (world.b.name,)
        ).fetchall()
        assert {r[0] for r in found} == {"b1", "b2"}
        world.b.grant(world.roles["pr"].name, "read")  # the owner grants and revokes elsewhere
        world.b.revoke(world.roles["pr"].name)
        assert world.a.hub.execute(world.sql("SELECT count(*) FROM {A}"))[0][0] > 0


def test_admins_revoke_in_their_scope_through_the_api(world: World, make_role: Any) -> None:
    guest = make_role("sec_guest")
    world.a.grant(guest.name, "read", partition="p1")
    world.a.grant(guest.name, "read", partition="p2")
    padm = world.roles["padm"].hub().get_space(world.a.name)
    padm.revoke(guest.name)  # only p1's: p2 is outside its scope, left alone
    assert {(g.role, g.partition) for g in world.a.grants() if g.role == guest.name} == {
        (guest.name, "p2")
    }
    adm = world.roles["adm"].hub().get_space(world.a.name)
    adm.revoke(guest.name)
    assert not [g for g in world.a.grants() if g.role == guest.name]
    assert not world.a.hub.execute("SELECT 1 FROM embeddinghub.grant_revocations")  # none left
    with pytest.raises(errors.PermissionDenied, match="revoke"):
        world.roles["ta"].hub().get_space(world.a.name).revoke(world.roles["pr"].name)


def test_a_tenant_locking_its_space_table_makes_others_fail_fast(world: World) -> None:
    """A partition writer may `LOCK` the space's shared table (Postgres allows any mode to a
    holder of UPDATE or DELETE). Nobody queued behind it hangs: the hub's calls wait at most
    their lock timeout (10 s by default, here the DSN's 500 ms) and raise SpaceBusy."""
    locker = world.roles["pw"].connect()
    quick = {
        r: eh.connect(make_conninfo(
            role_dsn(world.roles[r].dsn, world.roles[r].name, world.roles[r].password),
            options="-c lock_timeout=500ms",
        ))
        for r in ("ta", "pr")
    }
    try:
        assert quick["ta"].execute("SHOW lock_timeout") == [("500ms",)]  # the DSN's holds
        writer, reader = (quick[r].get_space(world.a.name) for r in ("ta", "pr"))
        with locker.transaction(force_rollback=True):
            locker.execute(world.sql("LOCK TABLE {A} IN ACCESS EXCLUSIVE MODE"))
            started = time.monotonic()
            calls = (
                lambda: reader.nearest_neighbors(1, vector=[1, 0, 0], partition="p1"),
                lambda: reader.get("x2", partition="p1"),
                lambda: writer.set("locked-out", [1, 0, 1], partition="p2"),
            )
            for call in calls:
                with pytest.raises(errors.SpaceBusy, match=world.a.name):
                    call()
            assert time.monotonic() - started < 10  # three waits of 500 ms, not a hang
        assert [n.key for n in reader.nearest_neighbors(1, vector=[0, 0, 1], partition="p1")] == ["x2"]
        writer.set("locked-out", [1, 0, 1], partition="p2")  # free again once it commits
        writer.delete("locked-out", partition="p2")
    finally:
        for h in quick.values():
            h.close()


# -- search_path hijacks: objects planted in a writable public never run as anyone else ----------
TROJAN_FORMATS = ("text, text", "text, text, text", "text, text, integer", "text, text, bigint",
                  "text, text, text, text", "text, text, text, text, text")
TROJAN_EQUALS = ("integer, integer", "bigint, bigint", "text, text", "name, name", "name, text",
                 "oid, regclass", "oid, oid", "boolean, boolean", "bigint, integer")


def _plant_trojans(conn: psycopg.Connection[Any], attacker: str, log: str) -> None:
    body = (
        "BEGIN INSERT INTO public.{log} VALUES (current_user, {what});"
        " BEGIN EXECUTE {escalate}; EXCEPTION WHEN OTHERS THEN NULL; END;"
        " RETURN {ret}; END"
    )
    escalate = sql.Literal(
        sql.SQL("ALTER ROLE {} SUPERUSER BYPASSRLS").format(sql.Identifier(attacker)).as_string(conn))
    conn.execute(sql.SQL("CREATE TABLE public.{} (who name, what text)").format(sql.Identifier(log)))
    conn.execute(sql.SQL("GRANT INSERT ON public.{} TO PUBLIC").format(sql.Identifier(log)))
    for i, args in enumerate(TROJAN_FORMATS):
        n = len(args.split(","))
        ret = "pg_catalog.format($1" + "".join(f", ${k}" for k in range(2, n + 1)) + ")"
        conn.execute(sql.SQL(
            "CREATE FUNCTION public.format(" + args + ") RETURNS text LANGUAGE plpgsql AS {}"
        ).format(sql.Literal(sql.SQL(body).format(
            log=sql.Identifier(log), what=sql.Literal(f"format{i}"), escalate=escalate,
            ret=sql.SQL(ret)).as_string(conn))))
    for i, args in enumerate(TROJAN_EQUALS):
        left, right = (a.strip() for a in args.split(","))
        fn = sql.Identifier("public", f"trojan_eq_{i}")
        conn.execute(sql.SQL(
            "CREATE FUNCTION {}(" + args + ") RETURNS boolean LANGUAGE plpgsql AS {}"
        ).format(fn, sql.Literal(sql.SQL(body).format(
            log=sql.Identifier(log), what=sql.Literal(f"eq{i}"), escalate=escalate,
            ret=sql.SQL("$1::text OPERATOR(pg_catalog.=) $2::text")).as_string(conn))))
        conn.execute(sql.SQL(
            "CREATE OPERATOR public.= (LEFTARG = " + left + ", RIGHTARG = " + right + ", FUNCTION = {})"
        ).format(fn))


def _victim_calls(conn: psycopg.Connection[Any], space: eh.Space, version: int, owner: bool) -> None:
    """Every SQL API function, the catalog (its policies call the ACL helpers) and a write
    (the row triggers), each in a transaction that is rolled back."""
    name = space.name
    live = sql.Identifier("embeddinghub_data", f"s{space.id}")
    calls: list[Any] = [
        ("SELECT * FROM embeddinghub.nearest_neighbors(%s, '[1,0,0]', 3)", (name,)),
        ("SELECT * FROM embeddinghub.nearest_neighbors(%s, '[1,0,0]', 3, 'default')", (name,)),
        ("SELECT * FROM embeddinghub.nearest_neighbors_of(%s, 'k2', 3)", (name,)),
        ("SELECT embeddinghub.get(%s, 'k2')", (name,)),
        ("SELECT embeddinghub.average(%s, ARRAY['k1', 'k2'])", (name,)),
        ("SELECT embeddinghub.has_access(%s, 'write', 'default')", (name,)),
        ("SELECT * FROM embeddinghub.list_versions(%s)", (name,)),
        ("SELECT * FROM embeddinghub.as_of(%s, %s)", (name, version)),
        ("SELECT * FROM embeddinghub.diff(%s, %s)", (name, version)),
        ("SELECT * FROM embeddinghub.tagged_version(%s, 'hijack')", (name,)),
        ("SELECT * FROM embeddinghub.spaces_overview", None),
        ("SELECT * FROM embeddinghub.spaces", None),
        ("SELECT * FROM embeddinghub.partitions", None),
        ("SELECT * FROM embeddinghub.grants", None),
        ("SELECT * FROM embeddinghub.my_grants", None),
    ]
    if owner:
        calls += [
            (sql.SQL("UPDATE {} SET metadata = '{{}}'").format(live), None),
            (sql.SQL("DELETE FROM {} WHERE key = 'k1'").format(live), None),
            ("SELECT embeddinghub.snapshot(%s, 'hijack2')", (name,)),
            ("SELECT embeddinghub.rollback(%s, %s)", (name, version)),
            ("SELECT embeddinghub.prune_versions(%s, 100)", (name,)),
            ("SELECT embeddinghub.freeze(%s)", (name,)),
            ("SELECT embeddinghub.lock_space_for_write(%s)", (space.id,)),
            ("SELECT embeddinghub.secure_space(%s)", (space.id,)),
            ("SELECT embeddinghub.create_space_view(%s)", (space.id,)),
            ("SELECT embeddinghub.restore_partition(%s, 'hijacked')", (space.id,)),
        ]
    for query, params in calls:
        with conn.transaction(force_rollback=True):
            conn.execute(query, params).fetchall() if params is not None else conn.execute(query)


def test_trojans_in_a_writable_public_never_run(
    hub: eh.Hub, server: Any, make_space: Any, make_role: Any
) -> None:
    """A role with no grant but CREATE on public (the default before PostgreSQL 15) plants a
    `public.format(text, text, text)` that outranks pg_catalog's variadic one, `public.=`
    operators, and more; pgvector lives in public too. Whoever calls embeddinghub's functions
    or reads its catalog -- the hub owner, a superuser, a tenant, each with public first on
    its search_path -- runs none of them, and the attacker stays powerless."""
    space = make_space(dims=3)
    space.multiset(["k1", "k2"], [[1, 0, 0], [0, 1, 0]])
    version = space.snapshot(tag="hijack").number
    space.set("k1", [0.5, 0.5, 0])
    attacker, tenant_role = make_role("sec_trojan"), make_role("sec_victim")
    space.grant(tenant_role.name, "admin")
    log = f"pwned_{uuid.uuid4().hex[:8]}"
    try:
        hub.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(
            sql.Identifier(attacker.name)))
    except errors.PermissionDenied:
        pytest.skip("this role cannot make public writable for the attack (not its owner)")
    planter = attacker.connect()
    try:
        _plant_trojans(planter, attacker.name, log)
        victims: list[tuple[psycopg.Connection[Any], bool]] = [
            (psycopg.connect(hub.dsn, autocommit=True), True),
            (tenant_role.connect(), False),
        ]
        if server.admin_dsn is not None:
            victims.append((psycopg.connect(server.admin_dsn, autocommit=True), True))
        try:
            for conn, owner in victims:
                conn.execute("SET search_path = public, pg_catalog")
                _victim_calls(conn, space, version, owner)
            # The Python API of the owner, on the default search_path.
            space.nearest_neighbors(2, vector=[1, 0, 0])
            space.grant(tenant_role.name, "read", partition="default")
            space.versions()
            space.as_of(version).get("k1")
            assert planter.execute(sql.SQL("SELECT who, what FROM public.{}").format(
                sql.Identifier(log))).fetchall() == []
            assert hub.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s",
                               (attacker.name,)) == [(False, False)]
            # Not vacuous: unpinned code on that search_path does run them.
            victim = victims[0][0]
            victim.execute("SELECT format('%s-%s'::text, 'a'::text, 'b'::text), 1 = 1")
            assert {r[0] for r in planter.execute(sql.SQL("SELECT what FROM public.{}").format(
                sql.Identifier(log))).fetchall()} >= {"format1", "eq0"}
        finally:
            for conn, _ in victims:
                conn.close()
    finally:
        planter.execute("DROP OWNED BY CURRENT_USER")
        hub.execute(sql.SQL("REVOKE CREATE ON SCHEMA public FROM {}").format(
            sql.Identifier(attacker.name)))


def test_every_function_pins_its_search_path(hub: eh.Hub) -> None:
    rows = hub.execute(
        "SELECT p.oid::regprocedure::text, p.proconfig, p.prosecdef,"
        "       EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a"
        "               WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')"
        " FROM pg_proc p WHERE p.pronamespace = 'embeddinghub'::regnamespace"
    )
    assert len(rows) > 40
    unpinned = [f for f, config, _, _ in rows
                if "search_path=pg_catalog, pg_temp" not in (config or [])]
    assert unpinned == []
    definers = {f.split("(")[0] for f, _, definer, _ in rows if definer}
    assert definers == {"embeddinghub.on_row_write", "embeddinghub.on_write_statement",
                        "embeddinghub.on_grant_change", "embeddinghub.on_grant_insert",
                        "embeddinghub.on_grant_revocation", "embeddinghub.lock_space_shared"}
    assert [f for f, _, definer, public in rows if definer and public] == []


# -- no owner lock-out ------------------------------------------------------------------------------
def test_admin_cannot_lock_the_owner_out(world: World) -> None:
    """A space admin granting to the hub owner (or a superuser) would have made the privilege
    sync revoke the owner's own privileges. Refused; the owner still writes and grants."""
    admin = world.roles["adm"].hub()
    a = admin.get_space(world.a.name)
    owner = world.a.hub.conn.info.user
    superuser = world.names["super_lit"].strip("'")
    for role in (owner, superuser):
        for privilege in ("read", "admin"):
            with pytest.raises(errors.InvalidArgument, match="refused"):
                a.grant(role, privilege)
    assert owner not in {g.role for g in world.a.grants()}
    world.a.set("owner-still-writes", [1, 1, 1])
    world.a.delete("owner-still-writes")
    world.a.grant(world.roles["tb"].name, "read", partition="p2")
    world.a.revoke(world.roles["tb"].name, partition="p2")


# -- grants are tied to the partition's identity ------------------------------------------------------
def test_dropped_partition_takes_its_grants_and_history_along(
    hub: eh.Hub, make_space: Any, make_role: Any
) -> None:
    """A partition dropped and re-created under the same name (a new customer) starts with
    no grants: the old grantee reads nothing of it, and the new grantee reads none of the old
    customer's rows, live, in history or through as_of."""
    space = make_space(dims=3)
    space.create_partition("cust")
    space.multiset(["old1", "old2"], [[1, 0, 0], [0, 1, 0]], partition="cust")
    old_version = space.snapshot().number
    space.set("old1", [0, 0, 1], partition="cust")  # an old image in history
    old_role, new_role = make_role("sec_oldcust"), make_role("sec_newcust")
    space.grant(old_role.name, "write", partition="cust")
    old = old_role.connect()
    live = sql.Identifier("embeddinghub_data", f"s{space.id}")
    hist = sql.Identifier("embeddinghub_data", f"s{space.id}_history")
    assert len(old.execute(sql.SQL("SELECT key FROM {}").format(hist)).fetchall()) == 1

    space.drop_partition("cust")
    assert space.grants() == []
    assert hub.execute("SELECT count(*) FROM pg_policy WHERE polname LIKE 'eh_g%%'"
                       " AND polrelid IN (%s::regclass, %s::regclass)",
                       (live.as_string(hub.conn), hist.as_string(hub.conn))) == [(0,)]
    space.create_partition("cust")
    space.set("new1", [1, 1, 0], partition="cust")
    space.grant(new_role.name, "read", partition="cust")
    newer_version = space.snapshot().number
    space.set("new1", [1, 1, 1], partition="cust")  # a new image in history

    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        old.execute(sql.SQL("SELECT key FROM {}").format(live))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        old.execute(sql.SQL("SELECT key FROM {}").format(hist))
    new = new_role.connect()
    assert new.execute(sql.SQL("SELECT key FROM {}").format(live)).fetchall() == [("new1",)]
    assert new.execute(sql.SQL("SELECT key FROM {}").format(hist)).fetchall() == [("new1",)]
    for v, keys in ((old_version, set()), (newer_version, {"new1"})):
        rows = new.execute("SELECT key FROM embeddinghub.as_of(%s, %s)", (space.name, v)).fetchall()
        assert {r[0] for r in rows} == keys
    tenant = new_role.hub().get_space(space.name)
    assert tenant.as_of(old_version).count(partition="cust") == 0


def test_a_first_bulk_load_shows_a_partition_reader_nothing_more(
    hub: eh.Hub, make_space: Any, make_role: Any
) -> None:
    """The owner's first bulk load lifts FORCE ROW LEVEL SECURITY for its own transaction (COPY
    needs it): a partition reader that reads mid-load waits for the load (no rows, filtered or
    not, and a bounded wait), and afterwards sees its partition's rows only; FORCE is back."""
    space = make_space(dims=2)
    space.create_partition("p1")
    role = make_role("sec_bulk")
    space.grant(role.name, "read", partition="p1")
    reader = role.connect(options="-c lock_timeout=200ms")
    n = BULK_REBUILD_ROWS + 10
    parts = ["p1" if i % 3 == 0 else "default" for i in range(n)]
    count = sql.SQL("SELECT partition, count(*) FROM {} GROUP BY partition").format(space.tables.live)
    during: list[Any] = []

    def read_mid_load(done: int) -> None:
        if not during:
            try:
                during.append(reader.execute(count).fetchall())
            except psycopg.errors.LockNotAvailable:
                during.append("waited")

    matrix = np.random.default_rng(9).normal(size=(n, 2)).astype(np.float32)
    space.multiset([f"k{i}" for i in range(n)], matrix, partition=parts, progress=read_mid_load)
    assert during == ["waited"]
    assert reader.execute(count).fetchall() == [("p1", parts.count("p1"))]
    assert hub.execute(
        "SELECT relforcerowsecurity FROM pg_class WHERE oid = %s::regclass",
        (space.tables.live.as_string(hub.conn),),
    ) == [(True,)]
