-- fieldsync-server PostgreSQL schema, version 1. Same tables as the SQLite backend
-- (see src/store.rs); applied once by pg_store::migrate, recorded in schema_migrations.
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE users (
  id TEXT PRIMARY KEY,
  username TEXT NOT NULL UNIQUE,
  role TEXT NOT NULL,
  territories TEXT NOT NULL,
  password_hash TEXT NOT NULL,
  disabled BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE tokens (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES users(id),
  device_id TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  created_at BIGINT NOT NULL,
  revoked_at BIGINT
);
CREATE INDEX tokens_user ON tokens (user_id);

CREATE TABLE actors (actor TEXT PRIMARY KEY, device_id TEXT NOT NULL, user_id TEXT NOT NULL);

CREATE TABLE visits (
  visit_id TEXT PRIMARY KEY,
  store_id TEXT NOT NULL,
  territory_id TEXT NOT NULL,
  rep_id TEXT NOT NULL,
  planned_start BIGINT NOT NULL,
  status TEXT NOT NULL,
  doc BYTEA NOT NULL
);
CREATE INDEX visits_scope ON visits (territory_id, planned_start);

-- seq is assigned as MAX(seq) + n while holding the cluster-wide change-log advisory lock,
-- which is released only after the transaction is visible: seq order = commit order.
CREATE TABLE change_log (
  seq BIGINT PRIMARY KEY,
  visit_id TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  bytes BYTEA NOT NULL,
  device_id TEXT NOT NULL,
  territory_id TEXT NOT NULL,
  planned_start BIGINT NOT NULL
);
CREATE INDEX change_log_visit ON change_log (visit_id, seq);
CREATE INDEX change_log_territory ON change_log (territory_id, seq);

CREATE TABLE device_visits (
  device_id TEXT NOT NULL,
  visit_id TEXT NOT NULL,
  PRIMARY KEY (device_id, visit_id)
);

CREATE TABLE reference (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  version BIGINT NOT NULL,
  data TEXT NOT NULL
);
