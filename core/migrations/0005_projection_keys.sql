-- Schema 5: projection rows keyed by an integer visit key instead of the visit id's text.
-- A typical visit has ~33 projection rows, and each repeated the 36-character id (~1.2 KB
-- of a visit's ~5.3 KB of pages on the device); the visits row now carries an integer
-- `key` (its rowid) next to its unique `id`, and the other tables refer to it. Projection
-- tables are derived: they are recreated empty and rebuilt from the documents.
DROP TABLE order_lines;
DROP TABLE survey_answers;
DROP TABLE promotion_checks;
DROP TABLE planogram_results;
DROP TABLE inventory_lines;
DROP TABLE visits;

CREATE TABLE visits (
    key               INTEGER PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    store_id          TEXT NOT NULL,
    rep_id            TEXT NOT NULL,
    planned_start     INTEGER NOT NULL,
    planned_end       INTEGER NOT NULL,
    priority          INTEGER NOT NULL,
    status            TEXT NOT NULL,
    ad_hoc            INTEGER NOT NULL,
    template_id       TEXT NOT NULL,
    instructions      TEXT NOT NULL,
    check_in_at       INTEGER,
    check_in_outside  INTEGER,
    check_out_at      INTEGER,
    check_out_outside INTEGER,
    cancel_reason     TEXT,
    abandon_reason    TEXT,
    order_submitted   INTEGER NOT NULL,
    notes             TEXT NOT NULL,
    last_observed_at  INTEGER
);
CREATE INDEX visits_by_rep_start ON visits (rep_id, planned_start);
CREATE INDEX visits_by_start ON visits (planned_start);
CREATE INDEX visits_by_store ON visits (store_id, planned_start);

CREATE TABLE inventory_lines (
    visit_key            INTEGER NOT NULL,
    product_id           TEXT NOT NULL,
    shelf_qty            INTEGER,
    backroom_qty         INTEGER,
    out_of_stock         INTEGER,
    observed_price_cents INTEGER,
    facings              INTEGER,
    observed_at          INTEGER NOT NULL,
    PRIMARY KEY (visit_key, product_id)
) WITHOUT ROWID;

CREATE TABLE planogram_results (
    visit_key        INTEGER NOT NULL,
    position_id      TEXT NOT NULL,
    present          INTEGER,
    actual_facings   INTEGER,
    correct_position INTEGER,
    observed_at      INTEGER NOT NULL,
    PRIMARY KEY (visit_key, position_id)
) WITHOUT ROWID;

CREATE TABLE promotion_checks (
    visit_key            INTEGER NOT NULL,
    promotion_id         TEXT NOT NULL,
    display_in_place     INTEGER,
    promo_price_correct  INTEGER,
    materials_present    INTEGER,
    observed_price_cents INTEGER,
    observed_at          INTEGER NOT NULL,
    PRIMARY KEY (visit_key, promotion_id)
) WITHOUT ROWID;

CREATE TABLE survey_answers (
    visit_key   INTEGER NOT NULL,
    question_id TEXT NOT NULL,
    answer      TEXT NOT NULL,
    observed_at INTEGER NOT NULL,
    PRIMARY KEY (visit_key, question_id)
) WITHOUT ROWID;

CREATE TABLE order_lines (
    visit_key   INTEGER NOT NULL,
    product_id  TEXT NOT NULL,
    quantity    INTEGER NOT NULL,
    observed_at INTEGER NOT NULL,
    PRIMARY KEY (visit_key, product_id)
) WITHOUT ROWID;
