-- Schema 4: the documents table becomes a rowid table (the visit id keeps its unique
-- index). Clustered by visit id (WITHOUT ROWID), every 1–2 KB snapshot went into the
-- table's b-tree at a random key, splitting and rebalancing pages; an initial sync
-- inserting pages of hundreds of visits spent a large part of its write there. Now the
-- snapshots are appended and only the small index entries go in at random keys
-- (docs/BENCHMARKS.md, "Initial sync").
CREATE TABLE documents_by_rowid (
    visit_id TEXT PRIMARY KEY,
    snapshot BLOB NOT NULL,
    chunks   INTEGER NOT NULL DEFAULT 0
);
INSERT INTO documents_by_rowid (visit_id, snapshot, chunks)
    SELECT visit_id, snapshot, chunks FROM documents;
DROP TABLE documents;
ALTER TABLE documents_by_rowid RENAME TO documents;
