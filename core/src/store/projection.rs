//! Projection tables: plain rows derived from visit documents, for screens.

use rusqlite::{Connection, OptionalExtension as _, params};

use crate::error::Result;
use crate::visit::{AnswerValue, Visit};

/// The projection tables, in the order a rebuild fills them: `visits`, then the tables of
/// a visit's other rows ([`LINE_TABLES`]).
pub(crate) const TABLES: [&str; 6] = [
    "visits",
    "inventory_lines",
    "planogram_results",
    "promotion_checks",
    "survey_answers",
    "order_lines",
];

/// The tables of a visit's rows, which refer to its `visits` row by `visit_key`.
const LINE_TABLES: &[&str] = TABLES.split_at(1).1;

/// The key of a visit's row, if it has one.
fn key_of(conn: &Connection, visit_id: &str) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT key FROM visits WHERE id = ?1")?
        .query_row([visit_id], |r| r.get(0))
        .optional()?)
}

/// Removes the rows of the visit with row key `key`, except its `visits` row.
fn remove_lines(conn: &Connection, key: i64) -> Result<()> {
    for t in LINE_TABLES {
        conn.prepare_cached(&format!("DELETE FROM {t} WHERE visit_key = ?1"))?
            .execute([key])?;
    }
    Ok(())
}

/// Removes every projected row of one visit.
pub(crate) fn remove(conn: &Connection, visit_id: &str) -> Result<()> {
    if let Some(key) = key_of(conn, visit_id)? {
        remove_lines(conn, key)?;
        conn.prepare_cached("DELETE FROM visits WHERE key = ?1")?
            .execute([key])?;
    }
    Ok(())
}

/// Replaces the projected rows of one visit. Its `visits` row is updated in place (it
/// keeps its key; indexes change only where their columns do); its other rows are
/// written again.
pub(crate) fn write(conn: &Connection, v: &Visit) -> Result<()> {
    let key = upsert_visit(conn, v)?;
    remove_lines(conn, key)?;
    insert_lines(conn, key, v)
}

/// Writes the projected rows of a visit that has none yet.
pub(crate) fn insert(conn: &Connection, v: &Visit) -> Result<()> {
    let key = upsert_visit(conn, v)?;
    insert_lines(conn, key, v)
}

/// Inserts a visit's `visits` row, or updates the one it has; returns the row's key, by
/// which the visit's other rows refer to it.
fn upsert_visit(conn: &Connection, v: &Visit) -> Result<i64> {
    let last_observed = v
        .inventory
        .values()
        .map(|l| l.observed_at)
        .chain(v.planogram.values().map(|l| l.observed_at))
        .chain(v.promotions.values().map(|l| l.observed_at))
        .max();
    Ok(conn
        .prepare_cached(
            "INSERT INTO visits (id, store_id, rep_id, planned_start, planned_end, priority, status, ad_hoc,
            template_id, instructions, check_in_at, check_in_outside, check_out_at, check_out_outside,
            cancel_reason, abandon_reason, order_submitted, notes, last_observed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
         ON CONFLICT (id) DO UPDATE SET store_id = excluded.store_id, rep_id = excluded.rep_id,
            planned_start = excluded.planned_start, planned_end = excluded.planned_end,
            priority = excluded.priority, status = excluded.status, ad_hoc = excluded.ad_hoc,
            template_id = excluded.template_id, instructions = excluded.instructions,
            check_in_at = excluded.check_in_at, check_in_outside = excluded.check_in_outside,
            check_out_at = excluded.check_out_at, check_out_outside = excluded.check_out_outside,
            cancel_reason = excluded.cancel_reason, abandon_reason = excluded.abandon_reason,
            order_submitted = excluded.order_submitted, notes = excluded.notes,
            last_observed_at = excluded.last_observed_at
         RETURNING key",
        )?
        .query_row(
            params![
                v.id,
                v.plan.store_id,
                v.plan.rep_id,
                v.plan.planned_start,
                v.plan.planned_end,
                v.plan.priority,
                v.status.as_str(),
                v.plan.ad_hoc,
                v.plan.template_id,
                v.plan.instructions,
                v.check_in.map(|c| c.at),
                v.check_in.map(|c| c.outside_geofence),
                v.check_out.map(|c| c.at),
                v.check_out.map(|c| c.outside_geofence),
                v.cancel_reason,
                v.abandon_reason,
                v.order_submitted,
                v.notes,
                last_observed,
            ],
            |r| r.get(0),
        )?)
}

/// Inserts the rows of a visit other than its `visits` row, under the row key `key`.
fn insert_lines(conn: &Connection, key: i64, v: &Visit) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO inventory_lines (visit_key, product_id, shelf_qty, backroom_qty, out_of_stock,
            observed_price_cents, facings, observed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for l in v.inventory.values() {
        stmt.execute(params![
            key,
            l.product_id,
            l.shelf_qty,
            l.backroom_qty,
            l.is_out_of_stock(),
            l.observed_price_cents,
            l.facings,
            l.observed_at
        ])?;
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO planogram_results (visit_key, position_id, present, actual_facings, correct_position,
            observed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for r in v.planogram.values() {
        stmt.execute(params![
            key,
            r.position_id,
            r.present,
            r.actual_facings,
            r.correct_position,
            r.observed_at
        ])?;
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO promotion_checks (visit_key, promotion_id, display_in_place, promo_price_correct,
            materials_present, observed_price_cents, observed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for c in v.promotions.values() {
        stmt.execute(params![
            key,
            c.promotion_id,
            c.display_in_place,
            c.promo_price_correct,
            c.materials_present,
            c.observed_price_cents,
            c.observed_at
        ])?;
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO survey_answers (visit_key, question_id, answer, observed_at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for a in v.survey.values() {
        let answer = match &a.value {
            AnswerValue::Bool(b) => b.to_string(),
            AnswerValue::Number(n) => n.to_string(),
            AnswerValue::Text(t) => t.clone(),
        };
        stmt.execute(params![key, a.question_id, answer, a.observed_at])?;
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO order_lines (visit_key, product_id, quantity, observed_at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for o in v.orders.values() {
        stmt.execute(params![key, o.product_id, o.quantity, o.observed_at])?;
    }
    Ok(())
}

/// Every projected row, as text, in a stable order: used to prove a rebuild yields
/// identical rows.
pub fn dump(conn: &Connection) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for t in TABLES {
        // Rows name their visit by id, not by its row's key (which a rebuild renumbers):
        // the key is column 1 of a visit row and column 2 of the other rows (after the
        // id joined in); a row whose visit is missing shows with a NULL id.
        let (sql, key_column) = if t == "visits" {
            ("SELECT * FROM visits ORDER BY id".to_string(), 0)
        } else {
            (
                format!(
                    "SELECT v.id, r.* FROM {t} r LEFT JOIN visits v ON v.key = r.visit_key
                     ORDER BY 1, 3"
                ),
                1,
            )
        };
        let mut stmt = conn.prepare(&sql)?;
        let n = stmt.column_count();
        let rows = stmt.query_map([], |r| {
            let mut s = String::from(t);
            for i in (0..n).filter(|&i| i != key_column) {
                let v: rusqlite::types::Value = r.get(i)?;
                s.push_str(&format!("|{v:?}"));
            }
            Ok(s)
        })?;
        for r in rows {
            out.push(r?);
        }
    }
    Ok(out)
}
