//! Projection tables: plain rows derived from visit documents, for screens.

use rusqlite::{Connection, params};

use crate::error::Result;
use crate::visit::{AnswerValue, Visit};

/// The projection tables, in the order a rebuild fills them.
pub(crate) const TABLES: [&str; 6] = [
    "visits",
    "inventory_lines",
    "planogram_results",
    "promotion_checks",
    "survey_answers",
    "order_lines",
];

/// Removes every projected row of one visit.
pub(crate) fn remove(conn: &Connection, visit_id: &str) -> Result<()> {
    for t in TABLES {
        let key = if t == "visits" { "id" } else { "visit_id" };
        conn.prepare_cached(&format!("DELETE FROM {t} WHERE {key} = ?1"))?
            .execute([visit_id])?;
    }
    Ok(())
}

/// Replaces the projected rows of one visit.
pub(crate) fn write(conn: &Connection, v: &Visit) -> Result<()> {
    remove(conn, &v.id)?;
    insert(conn, v)
}

/// Writes the projected rows of a visit that has none yet.
pub(crate) fn insert(conn: &Connection, v: &Visit) -> Result<()> {
    let last_observed = v
        .inventory
        .values()
        .map(|l| l.observed_at)
        .chain(v.planogram.values().map(|l| l.observed_at))
        .chain(v.promotions.values().map(|l| l.observed_at))
        .max();
    conn.prepare_cached(
        "INSERT INTO visits (id, store_id, rep_id, planned_start, planned_end, priority, status, ad_hoc,
            template_id, instructions, check_in_at, check_in_outside, check_out_at, check_out_outside,
            cancel_reason, abandon_reason, order_submitted, notes, last_observed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
    )?
    .execute(params![
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
    ])?;
    let mut stmt = conn.prepare_cached(
        "INSERT INTO inventory_lines (visit_id, product_id, shelf_qty, backroom_qty, out_of_stock,
            observed_price_cents, facings, observed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for l in v.inventory.values() {
        stmt.execute(params![
            v.id,
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
        "INSERT INTO planogram_results (visit_id, position_id, present, actual_facings, correct_position,
            observed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for r in v.planogram.values() {
        stmt.execute(params![
            v.id,
            r.position_id,
            r.present,
            r.actual_facings,
            r.correct_position,
            r.observed_at
        ])?;
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO promotion_checks (visit_id, promotion_id, display_in_place, promo_price_correct,
            materials_present, observed_price_cents, observed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for c in v.promotions.values() {
        stmt.execute(params![
            v.id,
            c.promotion_id,
            c.display_in_place,
            c.promo_price_correct,
            c.materials_present,
            c.observed_price_cents,
            c.observed_at
        ])?;
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO survey_answers (visit_id, question_id, answer, observed_at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for a in v.survey.values() {
        let answer = match &a.value {
            AnswerValue::Bool(b) => b.to_string(),
            AnswerValue::Number(n) => n.to_string(),
            AnswerValue::Text(t) => t.clone(),
        };
        stmt.execute(params![v.id, a.question_id, answer, a.observed_at])?;
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO order_lines (visit_id, product_id, quantity, observed_at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for o in v.orders.values() {
        stmt.execute(params![v.id, o.product_id, o.quantity, o.observed_at])?;
    }
    Ok(())
}

/// Every projected row, as text, in a stable order: used to prove a rebuild yields
/// identical rows.
pub fn dump(conn: &Connection) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for t in TABLES {
        let mut stmt = conn.prepare(&format!("SELECT * FROM {t} ORDER BY 1, 2"))?;
        let n = stmt.column_count();
        let rows = stmt.query_map([], |r| {
            let mut s = String::from(t);
            for i in 0..n {
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
