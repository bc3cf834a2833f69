-- fieldsync-server PostgreSQL schema, version 7 (same change as
-- migrations/sqlite/0007_reference_history.sql; see there): the reference data of each
-- import, kept for reports, as JSON in one Zstandard frame.
CREATE TABLE reference_history (
    version BIGINT PRIMARY KEY,
    imported_at BIGINT NOT NULL,
    data BYTEA NOT NULL
);
