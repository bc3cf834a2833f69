-- A purged visit's own changes (those this device authored), kept for a retention period:
-- a server restored from a backup older than their acknowledgement asks for them again
-- (see DeviceStore::purge_visit).
CREATE TABLE purged_changes (
  hash TEXT PRIMARY KEY,
  visit_id TEXT NOT NULL,
  bytes BLOB NOT NULL,
  purged_at INTEGER NOT NULL
);
CREATE INDEX purged_changes_visit ON purged_changes (visit_id);
