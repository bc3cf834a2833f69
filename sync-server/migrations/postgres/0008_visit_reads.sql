-- fieldsync-server PostgreSQL schema, version 8 (same change as
-- migrations/sqlite/0008_visit_reads.sql; see there): the visit the server read from
-- each stored document. A table of its own, so a `visits` row stays small enough to be
-- kept inline (a 2.3 KB row would be moved to TOAST).
CREATE TABLE visit_reads (visit_id TEXT PRIMARY KEY, visit BYTEA NOT NULL);
