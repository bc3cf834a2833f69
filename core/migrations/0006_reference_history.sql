-- The reference data versions this device held before its current one, each with the time
-- it was in effect from (the server's import time, else when the device received it) and
-- when it was replaced: past visits are judged with the data in effect when they were
-- worked (DeviceStore::reference_for), as the dashboard judges them. JSON, zstd-packed.
CREATE TABLE reference_history (
  since INTEGER NOT NULL,
  until INTEGER NOT NULL,
  version INTEGER NOT NULL,
  data BLOB NOT NULL
);
CREATE INDEX reference_history_since ON reference_history (since);
