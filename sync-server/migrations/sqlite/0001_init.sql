-- fieldsync-server SQLite schema, version 1 (see src/store.rs). Written with IF NOT EXISTS:
-- databases created before the schema was numbered (PRAGMA user_version 0) already hold
-- these tables and are brought to version 1 by running it again.
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
  id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, role TEXT NOT NULL, territories TEXT NOT NULL,
  password_hash TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS tokens (
  id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), device_id TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL, revoked_at INTEGER);
CREATE TABLE IF NOT EXISTS actors (actor TEXT PRIMARY KEY, device_id TEXT NOT NULL, user_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS visits (
  visit_id TEXT PRIMARY KEY, store_id TEXT NOT NULL, territory_id TEXT NOT NULL, rep_id TEXT NOT NULL,
  planned_start INTEGER NOT NULL, status TEXT NOT NULL, doc BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS visits_scope ON visits (territory_id, planned_start);
CREATE INDEX IF NOT EXISTS visits_rep ON visits (rep_id, planned_start);
CREATE TABLE IF NOT EXISTS change_log (
  seq INTEGER PRIMARY KEY, visit_id TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, bytes BLOB NOT NULL,
  device_id TEXT NOT NULL, territory_id TEXT NOT NULL, planned_start INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS change_log_visit ON change_log (visit_id, seq);
CREATE INDEX IF NOT EXISTS change_log_territory ON change_log (territory_id, seq);
CREATE TABLE IF NOT EXISTS device_visits (device_id TEXT NOT NULL, visit_id TEXT NOT NULL,
  PRIMARY KEY (device_id, visit_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reference (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL, data TEXT NOT NULL);
