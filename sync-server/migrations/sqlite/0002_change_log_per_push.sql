-- fieldsync-server SQLite schema, version 2: the change log becomes an index of pushes.
--
-- One row per stored push of a visit: its sequence number (the cursor), visit, device and
-- territory, how many changes it stored, and the document's heads before and after it
-- (concatenated 32-byte hashes). The changes themselves live in the visit's document, which
-- is all a pull needs to send them (docs/BENCHMARKS.md: per change, the old rows with their
-- bytes, hex hash, UNIQUE index and two more indexes took ~11 KB of a visit's 18.6 KB).
-- The visit's heads are stored next to its document.
--
-- Version 1 rows (one per change) fold into one row per visit and device at the highest
-- sequence number, with unknown heads: such a row stands for the whole visit, so a device
-- whose cursor is before it gets the whole visit again (nothing is skipped; changes it
-- already holds are harmless duplicates). The highest sequence number is kept, so new rows
-- continue after every cursor handed out.
CREATE TABLE change_log_v2 (
  seq INTEGER PRIMARY KEY,
  visit_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  territory_id TEXT NOT NULL,
  changes INTEGER NOT NULL,
  heads_before BLOB NOT NULL,
  heads_after BLOB NOT NULL);
INSERT INTO change_log_v2 (seq, visit_id, device_id, territory_id, changes, heads_before, heads_after)
  SELECT MAX(seq), visit_id, device_id, territory_id, COUNT(*), x'', x''
  FROM change_log GROUP BY visit_id, device_id;
DROP TABLE change_log;
ALTER TABLE change_log_v2 RENAME TO change_log;
ALTER TABLE visits ADD COLUMN heads BLOB NOT NULL DEFAULT x'';
