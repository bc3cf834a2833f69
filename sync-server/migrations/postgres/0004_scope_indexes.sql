-- fieldsync-server PostgreSQL schema, version 4: indexes for computing a pull's scope
-- changes in the database (same change as migrations/sqlite/0004_scope_indexes.sql; see
-- there). The visits leaving a device's scope and those entering it are anti-joins of the
-- scope's conditions on `visits` and the device's `device_visits` rows (primary key
-- (device_id, visit_id)). The scope indexes carry the other scope columns and the id, for
-- index-only scans (as far as the visibility map allows); a rep's scope had no index here.
DROP INDEX IF EXISTS visits_scope;
CREATE INDEX visits_scope ON visits (territory_id, planned_start) INCLUDE (rep_id, visit_id);
CREATE INDEX visits_rep ON visits (rep_id, planned_start) INCLUDE (territory_id, visit_id);
-- By id with the scope columns: whether a held visit is still in scope, and the visits of
-- whole territories read in id order from where a device's holdings end, without reading
-- the visit rows (which carry the documents).
CREATE INDEX visits_id_scope ON visits (visit_id) INCLUDE (territory_id, rep_id, planned_start);
