-- What a device will be recorded as holding once it confirms a page: the holdings changes
-- of a sync answer wait here under a token carried in the answer's cursor, and apply when
-- the device's next request presents that cursor. An answer that never arrived (lost,
-- duplicated, delivered late) is never confirmed, so it never changes the record.
CREATE TABLE device_pending (
  device_id TEXT NOT NULL,
  token TEXT NOT NULL,
  writes TEXT NOT NULL,
  PRIMARY KEY (device_id, token)
);
