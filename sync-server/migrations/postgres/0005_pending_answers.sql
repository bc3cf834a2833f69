-- fieldsync-server PostgreSQL schema, version 5 (same change as
-- migrations/sqlite/0005_pending_answers.sql; see there): pending answers are ordered, so
-- the newest few are kept until the device confirms one.
ALTER TABLE device_pending ADD COLUMN created_at BIGINT NOT NULL DEFAULT 0;
