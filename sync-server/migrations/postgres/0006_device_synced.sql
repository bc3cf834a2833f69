-- fieldsync-server PostgreSQL schema, version 6 (same change as
-- migrations/sqlite/0006_device_synced.sql; see there): when a device last held exactly
-- its scope of whole territories, as of which change-log sequence number.
CREATE TABLE device_synced (
    device_id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    seq BIGINT NOT NULL
);
