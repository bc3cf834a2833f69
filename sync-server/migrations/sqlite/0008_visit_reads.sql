-- fieldsync-server SQLite schema, version 8: the visit the server read from each stored
-- document (fieldsync_core's pack_visit, in its VISIT_FORMAT), sent with the document to
-- devices that take it, so they need not read it again. Written with the document by
-- every save; documents stored before have none and are sent alone. A table of its own:
-- beside the document in `visits`, a row (~2.3 KB) would leave room for one per 4 KB
-- page instead of three.
CREATE TABLE visit_reads (visit_id TEXT PRIMARY KEY, visit BLOB NOT NULL);
