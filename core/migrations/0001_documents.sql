-- Schema 1: documents, outbox, reference data, sync state.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- One compacted Automerge snapshot per visit, plus changes appended since.
CREATE TABLE documents (
    visit_id TEXT PRIMARY KEY,
    snapshot BLOB NOT NULL,
    chunks   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE doc_chunks (
    visit_id TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    bytes    BLOB NOT NULL,
    PRIMARY KEY (visit_id, seq)
) WITHOUT ROWID;

-- Local changes the server has not acknowledged yet, in the order they were made.
CREATE TABLE outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    hash       TEXT NOT NULL UNIQUE,
    visit_id   TEXT NOT NULL,
    bytes      BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

-- Reference data as sent by the server, one JSON record per entity.
CREATE TABLE reference (
    kind TEXT NOT NULL,
    id   TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;

CREATE TABLE sync_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Visits whose changes the server rejected, with its reason.
CREATE TABLE quarantine (
    visit_id TEXT PRIMARY KEY,
    reason   TEXT NOT NULL,
    hashes   TEXT NOT NULL,
    at       INTEGER NOT NULL
) WITHOUT ROWID;
