-- fieldsync-server SQLite schema, version 6: when a device last had exactly its scope.
-- A row says: after the answer the device confirmed, it held every visit of `scope` (a
-- scope of whole territories, as `feed::scope_key` writes it) and no other, as of change
-- log sequence number `seq`. Only visits with log rows after `seq` can differ since, so a
-- pull checks those instead of the device's whole holdings. No row: the pull checks all.
CREATE TABLE device_synced (
    device_id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    seq INTEGER NOT NULL
);
