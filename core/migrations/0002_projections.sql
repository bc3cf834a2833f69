-- Schema 2: projection tables for screens. Derived from the documents only, so they can
-- be dropped and rebuilt at any time (the migration rebuilds them).
CREATE TABLE visits (
    id                TEXT PRIMARY KEY,
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
) WITHOUT ROWID;
CREATE INDEX visits_by_rep_start ON visits (rep_id, planned_start);
CREATE INDEX visits_by_start ON visits (planned_start);
CREATE INDEX visits_by_store ON visits (store_id, planned_start);

CREATE TABLE inventory_lines (
    visit_id             TEXT NOT NULL,
    product_id           TEXT NOT NULL,
    shelf_qty            INTEGER,
    backroom_qty         INTEGER,
    out_of_stock         INTEGER,
    observed_price_cents INTEGER,
    facings              INTEGER,
    observed_at          INTEGER NOT NULL,
    PRIMARY KEY (visit_id, product_id)
) WITHOUT ROWID;

CREATE TABLE planogram_results (
    visit_id         TEXT NOT NULL,
    position_id      TEXT NOT NULL,
    present          INTEGER,
    actual_facings   INTEGER,
    correct_position INTEGER,
    observed_at      INTEGER NOT NULL,
    PRIMARY KEY (visit_id, position_id)
) WITHOUT ROWID;

CREATE TABLE promotion_checks (
    visit_id             TEXT NOT NULL,
    promotion_id         TEXT NOT NULL,
    display_in_place     INTEGER,
    promo_price_correct  INTEGER,
    materials_present    INTEGER,
    observed_price_cents INTEGER,
    observed_at          INTEGER NOT NULL,
    PRIMARY KEY (visit_id, promotion_id)
) WITHOUT ROWID;

CREATE TABLE survey_answers (
    visit_id    TEXT NOT NULL,
    question_id TEXT NOT NULL,
    answer      TEXT NOT NULL,
    observed_at INTEGER NOT NULL,
    PRIMARY KEY (visit_id, question_id)
) WITHOUT ROWID;

CREATE TABLE order_lines (
    visit_id    TEXT NOT NULL,
    product_id  TEXT NOT NULL,
    quantity    INTEGER NOT NULL,
    observed_at INTEGER NOT NULL,
    PRIMARY KEY (visit_id, product_id)
) WITHOUT ROWID;
