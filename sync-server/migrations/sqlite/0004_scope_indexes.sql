-- fieldsync-server SQLite schema, version 4: indexes for computing a pull's scope changes
-- in the database (src/feed.rs: the visits leaving a device's scope and those entering it
-- are anti-joins of the scope's conditions on `visits` and the device's `device_visits`
-- rows, whose primary key (device_id, visit_id) serves the device's side).
--
-- The scope indexes also hold the other scope columns and the id, so a scope is read from
-- an index alone, without the visit rows (a row carries the document: reading ~1,000 of
-- them per push for a rep's scope was most of the cost of a pull).
DROP INDEX IF EXISTS visits_scope;
CREATE INDEX visits_scope ON visits (territory_id, planned_start, rep_id, visit_id);
DROP INDEX IF EXISTS visits_rep;
CREATE INDEX visits_rep ON visits (rep_id, planned_start, territory_id, visit_id);
-- By id, with the scope columns: whether a held visit is still in scope (one index probe
-- per held visit), and the visits of whole territories read in id order from where a
-- device's holdings end (an initial pull reads each page's visits, not the territories).
CREATE INDEX visits_id_scope ON visits (visit_id, territory_id, rep_id, planned_start);
