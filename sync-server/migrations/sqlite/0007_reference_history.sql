-- fieldsync-server SQLite schema, version 7: the reference data of each import, kept for
-- reports. A report judges a visit against the reference data in effect when the visit was
-- worked (its assortment, planogram, promotions, prices and names), not against today's.
-- `imported_at`: milliseconds since the Unix epoch (0: in effect since before this table
-- existed). `data`: the reference data as JSON in one Zstandard frame. An import deletes
-- the versions no longer in effect within `store::REFERENCE_HISTORY_DAYS`.
CREATE TABLE reference_history (
    version INTEGER PRIMARY KEY,
    imported_at INTEGER NOT NULL,
    data BLOB NOT NULL
);
