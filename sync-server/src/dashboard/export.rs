//! CSV exports of a report's visits and of their inventory lines, for the same filters as
//! the report API (`from`, `to`, `territory`, `rep`, `store`, `status`). UTF-8, a header
//! row, RFC 4180 quoting; times in RFC 3339 UTC; ratios as numerator and denominator.

use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::Viewer;
use super::openapi::ReportErrors;
use super::reports::{FilterQuery, blocking, load_rows, viewer_today, visit_row};
use crate::api::{AppError, AppState};

fn time(ms: Option<i64>) -> String {
    ms.and_then(DateTime::<Utc>::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

fn csv_err(e: impl std::fmt::Display) -> AppError {
    AppError::internal(format!("CSV: {e}"))
}

fn attachment(name: String, body: Vec<u8>) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `GET /v1/reports/export/visits.csv`: one row per visit.
#[utoipa::path(get, path = "/v1/reports/export/visits.csv", tag = "reports",
    summary = "CSV of the visits of the range and filters",
    params(FilterQuery),
    responses((status = 200, description = "CSV with a header row (attachment)", content_type = "text/csv", body = String), ReportErrors),
    security(("session" = []), ("bearer" = [])))]
pub async fn visits_csv(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<FilterQuery>,
) -> Result<Response, AppError> {
    let (name, body) = blocking(move || {
        let filter = q.resolve(viewer_today(&state, &viewer)?)?;
        let name = format!("visits-{}-{}.csv", filter.from, filter.to);
        let (indexed, rows) = load_rows(&state, &viewer, &filter)?;
        let refs = indexed.data();
        let names = refs
            .users
            .iter()
            .map(|u| (u.id.as_str(), u.display_name.as_str()))
            .collect();
        let as_of = Utc::now().timestamp_millis();
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record([
            "visit_id",
            "day",
            "territory_id",
            "store_id",
            "store_name",
            "rep_id",
            "rep_name",
            "status",
            "ad_hoc",
            "priority",
            "planned_start",
            "planned_end",
            "check_in_at",
            "check_out_at",
            "outside_geofence",
            "visit_compliant",
            "oos_products",
            "audited_products",
            "planogram_correct",
            "planogram_audited",
            "promotions_compliant",
            "promotions_audited",
            "prices_compliant",
            "prices_observed",
            "perfect_store_score",
        ])
        .map_err(csv_err)?;
        for r in &rows {
            let v = visit_row(r, &names, as_of);
            let vc = if v.visit_compliance.den == 0 {
                String::new()
            } else {
                (v.visit_compliance.num == 1).to_string()
            };
            w.write_record([
                v.visit_id,
                v.day.to_string(),
                v.territory_id,
                v.store_id,
                v.store_name,
                v.rep_id,
                v.rep_name,
                v.status.as_str().to_string(),
                v.ad_hoc.to_string(),
                v.priority.to_string(),
                time(Some(v.planned_start)),
                time(Some(v.planned_end)),
                time(v.check_in_at),
                time(v.check_out_at),
                v.outside_geofence.to_string(),
                vc,
                v.out_of_stock.num.to_string(),
                v.out_of_stock.den.to_string(),
                v.planogram_compliance.num.to_string(),
                v.planogram_compliance.den.to_string(),
                v.promotion_compliance.num.to_string(),
                v.promotion_compliance.den.to_string(),
                v.price_compliance.num.to_string(),
                v.price_compliance.den.to_string(),
                v.perfect_store_score
                    .map(|s| format!("{s:.2}"))
                    .unwrap_or_default(),
            ])
            .map_err(csv_err)?;
        }
        Ok((name, w.into_inner().map_err(csv_err)?))
    })
    .await?;
    Ok(attachment(name, body))
}

/// `GET /v1/reports/export/inventory.csv`: one row per inventory line of the visits.
#[utoipa::path(get, path = "/v1/reports/export/inventory.csv", tag = "reports",
    summary = "CSV of the inventory lines of those visits",
    params(FilterQuery),
    responses((status = 200, description = "CSV with a header row (attachment)", content_type = "text/csv", body = String), ReportErrors),
    security(("session" = []), ("bearer" = [])))]
pub async fn inventory_csv(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<FilterQuery>,
) -> Result<Response, AppError> {
    let (name, body) = blocking(move || {
        let filter = q.resolve(viewer_today(&state, &viewer)?)?;
        let name = format!("inventory-{}-{}.csv", filter.from, filter.to);
        let (_, rows) = load_rows(&state, &viewer, &filter)?;
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record([
            "visit_id",
            "day",
            "store_id",
            "rep_id",
            "status",
            "product_id",
            "gtin",
            "product_name",
            "category",
            "shelf_qty",
            "backroom_qty",
            "out_of_stock",
            "observed_price_cents",
            "facings",
            "observed_at",
        ])
        .map_err(csv_err)?;
        for r in &rows {
            for l in r.visit.inventory.values() {
                let p = r.refs.index().products.get(l.product_id.as_str());
                w.write_record([
                    r.visit.id.clone(),
                    r.day.to_string(),
                    r.visit.plan.store_id.clone(),
                    r.visit.plan.rep_id.clone(),
                    r.visit.status.as_str().to_string(),
                    l.product_id.clone(),
                    opt(p.map(|p| p.gtin.to_string())),
                    opt(p.map(|p| p.name.clone())),
                    opt(p.map(|p| p.category.clone())),
                    opt(l.shelf_qty),
                    opt(l.backroom_qty),
                    opt(l.is_out_of_stock()),
                    opt(l.observed_price_cents),
                    opt(l.facings),
                    time(Some(l.observed_at)),
                ])
                .map_err(csv_err)?;
            }
        }
        Ok((name, w.into_inner().map_err(csv_err)?))
    })
    .await?;
    Ok(attachment(name, body))
}
