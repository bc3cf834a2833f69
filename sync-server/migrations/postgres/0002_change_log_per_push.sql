-- fieldsync-server PostgreSQL schema, version 2: the change log becomes an index of pushes
-- (same change as migrations/sqlite/0002_change_log_per_push.sql; see there for why).
--
-- One row per stored push of a visit: sequence number, visit, device, territory, how many
-- changes it stored, the document's heads before and after it (concatenated 32-byte
-- hashes). The changes live in the visit's document. Version 1 rows (one per change) fold
-- into one row per visit and device at the highest sequence number with unknown heads,
-- which stands for the whole visit.
CREATE TABLE change_log_v2 (
  seq BIGINT PRIMARY KEY,
  visit_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  territory_id TEXT NOT NULL,
  changes INTEGER NOT NULL,
  heads_before BYTEA NOT NULL,
  heads_after BYTEA NOT NULL
);
INSERT INTO change_log_v2 (seq, visit_id, device_id, territory_id, changes, heads_before, heads_after)
  SELECT MAX(seq), visit_id, device_id, (array_agg(territory_id ORDER BY seq DESC))[1],
         COUNT(*), ''::bytea, ''::bytea
  FROM change_log GROUP BY visit_id, device_id;
DROP TABLE change_log;
ALTER TABLE change_log_v2 RENAME TO change_log;
ALTER INDEX change_log_v2_pkey RENAME TO change_log_pkey;
ALTER TABLE visits ADD COLUMN heads BYTEA NOT NULL DEFAULT ''::bytea;
