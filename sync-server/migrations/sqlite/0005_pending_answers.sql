-- fieldsync-server SQLite schema, version 5: a device may have several unconfirmed
-- answers at once (a duplicated or retried request is answered twice), and the one it
-- confirms must still be there. Pending answers are now kept until the device confirms one
-- of them (the rest are dropped then), the newest few at most; this orders them.
ALTER TABLE device_pending ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0;
