-- The visit as the server read it from the stored document (fieldsync_core's pack_visit,
-- in its VISIT_FORMAT), sent with the document to devices that take it. NULL for
-- documents stored before: they are sent without it.
ALTER TABLE visits ADD COLUMN visit BLOB;
