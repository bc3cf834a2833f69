//! The report API behind the dashboard. Every number is computed by `fieldsync-core`'s
//! KPI engine ([`fieldsync_core::kpi::visit_kpis`] per visit, [`KpiSummary::aggregate`]
//! over a set) from the stored visit documents, so the dashboard shows what the phones
//! compute. Ratios are returned as numerator and denominator (`num`, `den`) plus `pct`.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/reports/context` | the viewer, territories, reps, stores, templates, KPI targets, latest change |
//! | `GET /v1/reports/overview` | KPIs for a date range and filters, per rep, per store |
//! | `GET /v1/reports/trends` | KPIs per day of the range |
//! | `GET /v1/reports/visits` | the visits of the range, one row each |
//! | `GET /v1/reports/visits/{id}` | one visit: tasks, lines, field history, conflicts |
//! | `GET /v1/reports/stores/{id}` | one store: KPIs, last visits, out-of-stock products, non-compliant positions, promotions |
//! | `GET /v1/reports/changes?since=N` | the latest change sequence number and the visits changed after `N` (cheap; polled) |
//!
//! Filters (query): `from`, `to` (store-local days `YYYY-MM-DD`, inclusive; default the
//! last 7 days up to today where the viewer's stores are, [`viewer_today`]), `territory`,
//! `rep`, `store`, `status`. A visit belongs to the store's local
//! day of its planned start ([`fieldsync_core::kpi::store_local_day`]).

use crate::reference::IndexedReference;
use crate::store::StoredVisit;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use fieldsync_core::document::VisitDoc;
use fieldsync_core::kpi::{self, KpiSummary, Ratio, VisitKpis};
use fieldsync_core::model::{DisplayLocation, ReferenceData, ReferenceIndex, Role};
use fieldsync_core::rules;
use fieldsync_core::visit::{
    AnswerValue, InventoryLine, PositionResult, PromotionCheck, Visit, VisitStatus,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

use super::Viewer;
use super::openapi::ReportErrors;
use crate::api::{AppError, AppState};

const DAY_MS: i64 = 86_400_000;
/// Longest report range in days.
pub const MAX_RANGE_DAYS: i64 = 366;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/reports/context", get(context))
        .route("/v1/reports/overview", get(overview))
        .route("/v1/reports/trends", get(trends))
        .route("/v1/reports/visits", get(visit_list))
        .route("/v1/reports/visits/{id}", get(visit_detail))
        .route("/v1/reports/stores/{id}", get(store_detail))
        .route("/v1/reports/changes", get(changes))
        .route(
            "/v1/reports/export/visits.csv",
            get(super::export::visits_csv),
        )
        .route(
            "/v1/reports/export/inventory.csv",
            get(super::export::inventory_csv),
        )
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AppError::internal(format!("worker failed: {e}")))?
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

// ------------------------------------------------------------------ filters

/// The report filters as sent in the query string.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilterQuery {
    /// First store-local day, `YYYY-MM-DD` (default: 6 days before `to`).
    #[param(format = Date)]
    pub from: Option<String>,
    /// Last store-local day, `YYYY-MM-DD` (default: today where the viewer's stores are).
    #[param(format = Date)]
    pub to: Option<String>,
    /// One territory (must be one of the viewer's).
    pub territory: Option<String>,
    /// One rep id.
    pub rep: Option<String>,
    /// One store id.
    pub store: Option<String>,
    /// One visit status.
    #[param(value_type = Option<VisitStatus>)]
    pub status: Option<String>,
}

/// Validated filters.
#[derive(Clone, Debug)]
pub struct Filter {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub territory: Option<String>,
    pub rep: Option<String>,
    pub store: Option<String>,
    pub status: Option<VisitStatus>,
}

fn nonempty(o: &Option<String>) -> Option<String> {
    o.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn parse_day(s: &str, what: &str) -> Result<NaiveDate, AppError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| AppError::bad_request(format!("{what} must be a date YYYY-MM-DD, not {s:?}")))
}

const STATUSES: [VisitStatus; 5] = [
    VisitStatus::Planned,
    VisitStatus::InProgress,
    VisitStatus::Completed,
    VisitStatus::Canceled,
    VisitStatus::Abandoned,
];

impl FilterQuery {
    /// The filters checked, with `today` for the default range.
    pub fn resolve(&self, today: NaiveDate) -> Result<Filter, AppError> {
        let to = match nonempty(&self.to) {
            Some(t) => parse_day(&t, "to")?,
            None => today,
        };
        let from = match nonempty(&self.from) {
            Some(f) => parse_day(&f, "from")?,
            None => to - Duration::days(6),
        };
        if from > to {
            return Err(AppError::bad_request("from is after to"));
        }
        if (to - from).num_days() >= MAX_RANGE_DAYS {
            return Err(AppError::bad_request(format!(
                "the range is longer than {MAX_RANGE_DAYS} days"
            )));
        }
        let status = match nonempty(&self.status) {
            None => None,
            Some(s) => Some(
                STATUSES
                    .into_iter()
                    .find(|st| st.as_str() == s)
                    .ok_or_else(|| AppError::bad_request(format!("unknown status {s:?}")))?,
            ),
        };
        Ok(Filter {
            from,
            to,
            territory: nonempty(&self.territory),
            rep: nonempty(&self.rep),
            store: nonempty(&self.store),
            status,
        })
    }
}

/// Today for a report's default range: the latest local date among the time zones of the
/// stores the viewer covers (reports count a visit on its store's local day, so the range
/// holds every store's today), or the UTC date when they cover none.
pub fn viewer_today(state: &AppState, viewer: &Viewer) -> Result<NaiveDate, AppError> {
    let refs = state.reference.get(state.store.as_ref())?;
    Ok(today_for(refs.data(), |t| viewer.covers(t), Utc::now()))
}

fn today_for(refs: &ReferenceData, covers: impl Fn(&str) -> bool, now: DateTime<Utc>) -> NaiveDate {
    let zones: std::collections::HashSet<&str> = refs
        .stores
        .iter()
        .filter(|s| covers(&s.territory_id))
        .map(|s| s.timezone.as_str())
        .collect();
    zones
        .into_iter()
        .filter_map(|z| fieldsync_core::tz::local_date(z, now))
        .max()
        .unwrap_or_else(|| now.date_naive())
}

fn day_start_ms(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp_millis())
}

fn utc_day(ms: i64) -> NaiveDate {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or(NaiveDate::MIN, |t| t.date_naive())
}

/// One visit of a report with its KPIs.
#[derive(Clone, Debug)]
pub struct Row {
    /// As read from the stored document (kept between requests,
    /// [`ReadVisits`](super::read_visits::ReadVisits)).
    pub visit: Arc<Visit>,
    /// The reference data in effect when the visit was worked
    /// ([`crate::reference::AsOf::of`]): its KPIs, product and store names come from it.
    pub refs: Arc<IndexedReference>,
    pub kpis: VisitKpis,
    /// The store's local day of the planned start.
    pub day: NaiveDate,
    pub territory_id: String,
    /// The current reference data no longer lists the store (closed by an import).
    pub store_closed: bool,
}

/// The territories a report covers: the filter's (when the viewer covers it) or all the
/// viewer's (`None`: every territory).
pub fn territories_of(viewer: &Viewer, filter: &Filter) -> Result<Option<Vec<String>>, AppError> {
    match &filter.territory {
        Some(t) if !viewer.covers(t) => Err(AppError::forbidden(format!(
            "territory {t} is outside your territories"
        ))),
        Some(t) => Ok(Some(vec![t.clone()])),
        None => Ok(viewer.territories()),
    }
}

/// The visits of `stored` as read from their documents, through the server's kept reads
/// ([`super::read_visits::ReadVisits`]), which take a miss from the read stored with the
/// document when there is one. A store that cannot give those reads leaves the documents
/// to be read.
fn read_stored(
    state: &AppState,
    stored: &[StoredVisit],
) -> Vec<fieldsync_core::Result<Arc<fieldsync_core::visit::Visit>>> {
    let store = state.store.clone();
    state.read_visits.read_all(stored, &|ids| {
        store.visit_reads(ids).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the stored reads of visits could not be read");
            Vec::new()
        })
    })
}

/// The visits of a report (sorted by planned start), each judged with the reference data in
/// effect when it was worked, and the current reference data (indexed).
pub fn load_rows(
    state: &AppState,
    viewer: &Viewer,
    filter: &Filter,
) -> Result<(Arc<IndexedReference>, Vec<Row>), AppError> {
    let territories = territories_of(viewer, filter)?;
    let as_of = state.reference.as_of(state.store.as_ref())?;
    // Local days differ from UTC days by less than a day: fetch a margin, then filter.
    let from_ms = day_start_ms(filter.from) - 2 * DAY_MS;
    let to_ms = day_start_ms(filter.to) + 3 * DAY_MS;
    let stored = state
        .store
        .visits_in_range(territories.as_deref(), from_ms, to_ms)?;
    let read = read_stored(state, &stored);
    let mut rows = Vec::with_capacity(stored.len());
    for (sv, visit) in stored.into_iter().zip(read) {
        let visit = match visit {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(visit = %sv.meta.visit_id, error = %e, "unreadable visit skipped in a report");
                continue;
            }
        };
        let row = Row::of(&as_of, visit, sv.meta.territory_id)?;
        let v = &row.visit;
        if row.day < filter.from
            || row.day > filter.to
            || filter.rep.as_ref().is_some_and(|r| *r != v.plan.rep_id)
            || filter.store.as_ref().is_some_and(|s| *s != v.plan.store_id)
            || filter.status.is_some_and(|s| s != v.status)
        {
            continue;
        }
        rows.push(row);
    }
    Ok((as_of.current().clone(), rows))
}

impl Row {
    /// `visit` (of `territory_id`) with its KPIs, judged with the reference data in effect
    /// when it was worked.
    fn of(
        as_of: &crate::reference::AsOf<'_>,
        visit: Arc<Visit>,
        territory_id: String,
    ) -> Result<Self, AppError> {
        let refs = as_of.of(&visit)?;
        let kpis = kpi::visit_kpis(&visit, refs.index());
        let day = kpis
            .local_day
            .unwrap_or_else(|| utc_day(visit.plan.planned_start));
        Ok(Row {
            store_closed: as_of.closed(&visit.plan.store_id),
            visit,
            refs,
            kpis,
            day,
            territory_id,
        })
    }
}

// ------------------------------------------------------------------ output shapes

/// A ratio: numerator, denominator and percentage (`null` without data).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
#[schema(as = Ratio)]
pub struct RatioOut {
    pub num: u64,
    pub den: u64,
    pub pct: Option<f64>,
}

impl From<Ratio> for RatioOut {
    fn from(r: Ratio) -> Self {
        RatioOut {
            num: r.numerator,
            den: r.denominator,
            pct: r.percent(),
        }
    }
}

/// The KPIs of a set of visits, from a core [`KpiSummary`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
#[schema(as = Kpis)]
pub struct KpiOut {
    /// Every visit.
    pub visits: u64,
    /// Visits planned by a manager (not ad hoc), any status.
    pub planned: u64,
    pub ad_hoc: u64,
    pub completed: u64,
    pub canceled: u64,
    /// Status planned or in progress.
    pub open: u64,
    pub abandoned: u64,
    pub visit_compliance: RatioOut,
    pub out_of_stock: RatioOut,
    pub on_shelf_availability: RatioOut,
    pub planogram_compliance: RatioOut,
    pub promotion_compliance: RatioOut,
    pub price_compliance: RatioOut,
    pub share_of_shelf: RatioOut,
    pub strike_rate: RatioOut,
    /// 0–100.
    pub perfect_store_score: Option<f64>,
    pub avg_time_in_store_min: Option<f64>,
}

impl From<&KpiSummary> for KpiOut {
    fn from(s: &KpiSummary) -> Self {
        KpiOut {
            visits: s.counts.total,
            planned: s.counts.total - s.counts.ad_hoc,
            ad_hoc: s.counts.ad_hoc,
            completed: s.counts.completed,
            canceled: s.counts.canceled,
            open: s.counts.planned + s.counts.in_progress,
            abandoned: s.counts.abandoned,
            visit_compliance: s.visit_compliance.into(),
            out_of_stock: s.audit.out_of_stock.into(),
            on_shelf_availability: s.audit.on_shelf_availability.into(),
            planogram_compliance: s.audit.planogram_compliance.into(),
            promotion_compliance: s.audit.promotion_compliance.into(),
            price_compliance: s.audit.price_compliance.into(),
            share_of_shelf: s.audit.share_of_shelf.into(),
            strike_rate: s.strike_rate.into(),
            perfect_store_score: s.perfect_store_score,
            avg_time_in_store_min: s.time_in_store.mean_minutes(),
        }
    }
}

fn summarize<'a>(
    rows: impl IntoIterator<Item = &'a Row>,
    as_of: i64,
    refs: &ReferenceData,
) -> KpiOut {
    (&KpiSummary::aggregate(rows.into_iter().map(|r| &r.kpis), as_of, &refs.settings)).into()
}

fn user_names(refs: &ReferenceData) -> HashMap<&str, &str> {
    refs.users
        .iter()
        .map(|u| (u.id.as_str(), u.display_name.as_str()))
        .collect()
}

fn latest_seq(state: &AppState, territories: Option<&[String]>) -> Result<i64, AppError> {
    Ok(state.store.changes_since(territories, 0, 0)?.0)
}

// ------------------------------------------------------------------ context

#[derive(Debug, Serialize, ToSchema)]
struct IdName {
    id: String,
    name: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct RepOut {
    id: String,
    name: String,
    username: String,
    territories: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct StoreOut {
    id: String,
    name: String,
    territory_id: String,
    address: String,
}

/// The viewer as the reports see them.
#[derive(Debug, Serialize, ToSchema)]
struct ViewerOut {
    id: String,
    username: String,
    role: Role,
    territories: Vec<String>,
}

/// `GET /v1/reports/context`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ReportContext)]
struct ContextOut {
    user: ViewerOut,
    today: NaiveDate,
    default_from: NaiveDate,
    default_to: NaiveDate,
    territories: Vec<IdName>,
    reps: Vec<RepOut>,
    stores: Vec<StoreOut>,
    templates: Vec<IdName>,
    /// KPI targets valid today for every store group, by KPI name (fractions; the
    /// perfect-store score in 0–100).
    targets: BTreeMap<String, f64>,
    latest_seq: i64,
}

#[utoipa::path(get, path = "/v1/reports/context", tag = "reports",
    summary = "The viewer, their territories, reps, stores, templates, KPI targets and the latest change",
    responses((status = 200, description = "the report", body = ContextOut), ReportErrors),
    security(("session" = []), ("bearer" = [])))]
async fn context(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Json<ContextOut>, AppError> {
    blocking(move || {
        let refs = state.store.reference()?;
        let terrs = viewer.territories();
        let covers = |t: &str| viewer.covers(t);
        let today = today_for(&refs, covers, Utc::now());
        let mut targets = BTreeMap::new();
        for t in &refs.kpi_targets {
            if t.store_group_id.is_none()
                && t.valid_from <= today
                && today <= t.valid_to
                && let Ok(serde_json::Value::String(k)) = serde_json::to_value(t.kpi)
            {
                targets.insert(k, t.target);
            }
        }
        let out = ContextOut {
            user: ViewerOut {
                id: viewer.user.id.clone(),
                username: viewer.user.username.clone(),
                role: viewer.user.role,
                territories: viewer.user.territories.clone(),
            },
            today,
            default_from: today - Duration::days(6),
            default_to: today,
            territories: refs
                .territories
                .iter()
                .filter(|t| covers(&t.id))
                .map(|t| IdName {
                    id: t.id.clone(),
                    name: t.name.clone(),
                })
                .collect(),
            reps: refs
                .users
                .iter()
                .filter(|u| u.role == Role::Rep && u.territory_ids.iter().any(|t| covers(t)))
                .map(|u| RepOut {
                    id: u.id.clone(),
                    name: u.display_name.clone(),
                    username: u.username.clone(),
                    territories: u
                        .territory_ids
                        .iter()
                        .filter(|t| covers(t))
                        .cloned()
                        .collect(),
                })
                .collect(),
            stores: refs
                .stores
                .iter()
                .filter(|s| covers(&s.territory_id))
                .map(|s| StoreOut {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    territory_id: s.territory_id.clone(),
                    address: s.address.clone(),
                })
                .collect(),
            templates: refs
                .task_templates
                .iter()
                .map(|t| IdName {
                    id: t.id.clone(),
                    name: t.name.clone(),
                })
                .collect(),
            targets,
            latest_seq: latest_seq(&state, terrs.as_deref())?,
        };
        Ok(Json(out))
    })
    .await
}

// ------------------------------------------------------------------ overview

#[derive(Debug, Serialize, ToSchema)]
struct RepRow {
    rep_id: String,
    name: String,
    summary: KpiOut,
}

#[derive(Debug, Serialize, ToSchema)]
struct StoreRow {
    store_id: String,
    name: String,
    territory_id: String,
    last_visit_day: Option<NaiveDate>,
    summary: KpiOut,
}

/// `GET /v1/reports/overview`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Overview)]
struct OverviewOut {
    from: NaiveDate,
    to: NaiveDate,
    as_of: i64,
    latest_seq: i64,
    summary: KpiOut,
    reps: Vec<RepRow>,
    stores: Vec<StoreRow>,
}

#[utoipa::path(get, path = "/v1/reports/overview", tag = "reports",
    summary = "KPIs of a date range and filters, per rep and per store",
    params(FilterQuery),
    responses((status = 200, description = "the report", body = OverviewOut), ReportErrors),
    security(("session" = []), ("bearer" = [])))]
async fn overview(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<FilterQuery>,
) -> Result<Json<OverviewOut>, AppError> {
    blocking(move || {
        let filter = q.resolve(viewer_today(&state, &viewer)?)?;
        let terrs = territories_of(&viewer, &filter)?;
        let seq = latest_seq(&state, terrs.as_deref())?;
        let (indexed, rows) = load_rows(&state, &viewer, &filter)?;
        let refs = indexed.data();
        let as_of = now_ms();
        let in_scope = |t: &String| terrs.as_ref().is_none_or(|ts| ts.contains(t));
        let mut by_rep: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
        let mut by_store: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
        for r in &rows {
            by_rep.entry(&r.visit.plan.rep_id).or_default().push(r);
            by_store.entry(&r.visit.plan.store_id).or_default().push(r);
        }
        let names = user_names(refs);
        let mut rep_ids: Vec<String> = refs
            .users
            .iter()
            .filter(|u| u.role == Role::Rep && u.territory_ids.iter().any(in_scope))
            .filter(|u| filter.rep.as_ref().is_none_or(|r| *r == u.id))
            .map(|u| u.id.clone())
            .collect();
        for r in by_rep.keys() {
            if !rep_ids.iter().any(|x| x == r) {
                rep_ids.push((*r).to_string());
            }
        }
        let reps = rep_ids
            .iter()
            .map(|id| RepRow {
                rep_id: id.clone(),
                name: names
                    .get(id.as_str())
                    .map_or_else(|| id.clone(), |n| (*n).to_string()),
                summary: summarize(
                    by_rep.get(id.as_str()).into_iter().flatten().copied(),
                    as_of,
                    refs,
                ),
            })
            .collect();
        let stores = refs
            .stores
            .iter()
            .filter(|s| in_scope(&s.territory_id))
            .filter(|s| filter.store.as_ref().is_none_or(|x| *x == s.id))
            .filter(|s| filter.rep.is_none() || by_store.contains_key(s.id.as_str()))
            .map(|s| {
                let rs = by_store.get(s.id.as_str());
                StoreRow {
                    store_id: s.id.clone(),
                    name: s.name.clone(),
                    territory_id: s.territory_id.clone(),
                    last_visit_day: rs.and_then(|rs| rs.iter().map(|r| r.day).max()),
                    summary: summarize(rs.into_iter().flatten().copied(), as_of, refs),
                }
            })
            .collect();
        let out = OverviewOut {
            from: filter.from,
            to: filter.to,
            as_of,
            latest_seq: seq,
            summary: summarize(&rows, as_of, refs),
            reps,
            stores,
        };
        Ok(Json(out))
    })
    .await
}

// ------------------------------------------------------------------ trends

#[derive(Debug, Serialize, ToSchema)]
struct DayOut {
    day: NaiveDate,
    summary: KpiOut,
}

/// `GET /v1/reports/trends`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Trends)]
struct TrendsOut {
    from: NaiveDate,
    to: NaiveDate,
    as_of: i64,
    latest_seq: i64,
    summary: KpiOut,
    days: Vec<DayOut>,
}

#[utoipa::path(get, path = "/v1/reports/trends", tag = "reports",
    summary = "KPIs per store-local day of the range",
    params(FilterQuery),
    responses((status = 200, description = "the report", body = TrendsOut), ReportErrors),
    security(("session" = []), ("bearer" = [])))]
async fn trends(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<FilterQuery>,
) -> Result<Json<TrendsOut>, AppError> {
    blocking(move || {
        let filter = q.resolve(viewer_today(&state, &viewer)?)?;
        let terrs = territories_of(&viewer, &filter)?;
        let seq = latest_seq(&state, terrs.as_deref())?;
        let (indexed, rows) = load_rows(&state, &viewer, &filter)?;
        let refs = indexed.data();
        let as_of = now_ms();
        let mut by_day: BTreeMap<NaiveDate, Vec<&Row>> = BTreeMap::new();
        for r in &rows {
            by_day.entry(r.day).or_default().push(r);
        }
        let mut days = Vec::new();
        let mut d = filter.from;
        while d <= filter.to {
            days.push(DayOut {
                day: d,
                summary: summarize(by_day.get(&d).into_iter().flatten().copied(), as_of, refs),
            });
            d += Duration::days(1);
        }
        Ok(Json(TrendsOut {
            from: filter.from,
            to: filter.to,
            as_of,
            latest_seq: seq,
            summary: summarize(&rows, as_of, refs),
            days,
        }))
    })
    .await
}

// ------------------------------------------------------------------ visit list

/// One visit as a table row.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct VisitRow {
    pub visit_id: String,
    pub day: NaiveDate,
    pub territory_id: String,
    pub store_id: String,
    pub store_name: String,
    /// Head office closed the store (the current reference data no longer lists it).
    pub store_closed: bool,
    pub rep_id: String,
    pub rep_name: String,
    pub status: VisitStatus,
    pub ad_hoc: bool,
    pub priority: u8,
    pub template_id: String,
    pub instructions: String,
    pub planned_start: i64,
    pub planned_end: i64,
    pub check_in_at: Option<i64>,
    pub check_out_at: Option<i64>,
    pub outside_geofence: bool,
    pub visit_compliance: RatioOut,
    pub out_of_stock: RatioOut,
    pub planogram_compliance: RatioOut,
    pub promotion_compliance: RatioOut,
    pub price_compliance: RatioOut,
    pub perfect_store_score: Option<f64>,
}

pub fn visit_row(r: &Row, names: &HashMap<&str, &str>, as_of: i64) -> VisitRow {
    let v = &r.visit;
    let store_name = r
        .refs
        .index()
        .stores
        .get(v.plan.store_id.as_str())
        .map_or_else(|| v.plan.store_id.clone(), |s| s.name.clone());
    VisitRow {
        visit_id: v.id.clone(),
        day: r.day,
        territory_id: r.territory_id.clone(),
        store_id: v.plan.store_id.clone(),
        store_name,
        store_closed: r.store_closed,
        rep_id: v.plan.rep_id.clone(),
        rep_name: names
            .get(v.plan.rep_id.as_str())
            .map_or_else(|| v.plan.rep_id.clone(), |n| (*n).to_string()),
        status: v.status,
        ad_hoc: v.plan.ad_hoc,
        priority: v.plan.priority,
        template_id: v.plan.template_id.clone(),
        instructions: v.plan.instructions.clone(),
        planned_start: v.plan.planned_start,
        planned_end: v.plan.planned_end,
        check_in_at: v.check_in.map(|c| c.at),
        check_out_at: v.check_out.map(|c| c.at),
        outside_geofence: v.check_in.is_some_and(|c| c.outside_geofence)
            || v.check_out.is_some_and(|c| c.outside_geofence),
        visit_compliance: r.kpis.visit_compliance(as_of).into(),
        out_of_stock: r.kpis.audit.out_of_stock.into(),
        planogram_compliance: r.kpis.audit.planogram_compliance.into(),
        promotion_compliance: r.kpis.audit.promotion_compliance.into(),
        price_compliance: r.kpis.audit.price_compliance.into(),
        perfect_store_score: r.kpis.perfect_store_score,
    }
}

/// `GET /v1/reports/visits`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = VisitList)]
struct VisitListOut {
    from: NaiveDate,
    to: NaiveDate,
    latest_seq: i64,
    visits: Vec<VisitRow>,
}

#[utoipa::path(get, path = "/v1/reports/visits", tag = "reports",
    summary = "The visits of the range, one row each",
    params(FilterQuery),
    responses((status = 200, description = "the report", body = VisitListOut), ReportErrors),
    security(("session" = []), ("bearer" = [])))]
async fn visit_list(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<FilterQuery>,
) -> Result<Json<VisitListOut>, AppError> {
    blocking(move || {
        let filter = q.resolve(viewer_today(&state, &viewer)?)?;
        let terrs = territories_of(&viewer, &filter)?;
        let seq = latest_seq(&state, terrs.as_deref())?;
        let (indexed, rows) = load_rows(&state, &viewer, &filter)?;
        let refs = indexed.data();
        let names = user_names(refs);
        let as_of = now_ms();
        let visits: Vec<VisitRow> = rows.iter().map(|r| visit_row(r, &names, as_of)).collect();
        Ok(Json(VisitListOut {
            from: filter.from,
            to: filter.to,
            latest_seq: seq,
            visits,
        }))
    })
    .await
}

// ------------------------------------------------------------------ per-line judgements

/// Judges single lines with the core's KPI engine: a copy of the visit without findings,
/// into which one line at a time is put.
struct Judge<'a> {
    bare: Visit,
    idx: &'a ReferenceIndex<'a>,
}

impl<'a> Judge<'a> {
    fn new(visit: &Visit, idx: &'a ReferenceIndex<'a>) -> Self {
        let mut bare = visit.clone();
        bare.inventory.clear();
        bare.planogram.clear();
        bare.promotions.clear();
        bare.orders.clear();
        bare.survey.clear();
        Judge { bare, idx }
    }

    fn hit(r: Ratio) -> Option<bool> {
        (r.denominator > 0).then_some(r.numerator == r.denominator)
    }

    /// (out of stock, price within tolerance) of one inventory line.
    fn inventory(&mut self, line: &InventoryLine) -> (Option<bool>, Option<bool>) {
        self.bare
            .inventory
            .insert(line.product_id.clone(), line.clone());
        let k = kpi::visit_kpis(&self.bare, self.idx);
        self.bare.inventory.clear();
        (
            Self::hit(k.audit.out_of_stock),
            Self::hit(k.audit.price_compliance),
        )
    }

    fn position(&mut self, r: &PositionResult) -> Option<bool> {
        self.bare.planogram.insert(r.position_id.clone(), r.clone());
        let k = kpi::visit_kpis(&self.bare, self.idx);
        self.bare.planogram.clear();
        Self::hit(k.audit.planogram_compliance)
    }

    fn promotion(&mut self, c: &PromotionCheck) -> Option<bool> {
        self.bare
            .promotions
            .insert(c.promotion_id.clone(), c.clone());
        let k = kpi::visit_kpis(&self.bare, self.idx);
        self.bare.promotions.clear();
        Self::hit(k.audit.promotion_compliance)
    }
}

// ------------------------------------------------------------------ store drill-down

/// The store of a store report.
#[derive(Debug, Serialize, ToSchema)]
struct StoreInfo {
    id: String,
    name: String,
    address: String,
    territory_id: String,
    territory_name: Option<String>,
    lat: f64,
    lng: f64,
    geofence_radius_m: f64,
    timezone: String,
    /// Names of the store's groups.
    groups: Vec<String>,
    priority: u8,
}

/// A product out of stock in the store's latest audit of it (the visit and day of that
/// audit), with how often it was audited and found out of stock in the range. Names are
/// `null` for a product no longer in the reference data.
#[derive(Debug, Serialize, ToSchema)]
struct OutOfStockOut {
    product_id: String,
    name: Option<String>,
    gtin: Option<String>,
    category: Option<String>,
    visit_id: String,
    day: NaiveDate,
    shelf_qty: Option<i64>,
    backroom_qty: Option<i64>,
    audits: u64,
    out_of_stock_audits: u64,
}

/// A planogram position as last audited in the range.
#[derive(Debug, Serialize, ToSchema)]
struct PositionOut {
    position_id: String,
    compliant: bool,
    shelf: Option<u32>,
    position: Option<u32>,
    product_id: Option<String>,
    product_name: Option<String>,
    expected_facings: Option<u32>,
    present: Option<bool>,
    actual_facings: Option<i64>,
    correct_position: Option<bool>,
    visit_id: String,
    day: NaiveDate,
}

/// A promotion as last checked in the range.
#[derive(Debug, Serialize, ToSchema)]
struct PromotionOut {
    promotion_id: String,
    compliant: bool,
    name: Option<String>,
    display_location: Option<DisplayLocation>,
    promo_price_cents: Option<i64>,
    display_in_place: Option<bool>,
    promo_price_correct: Option<bool>,
    materials_present: Option<bool>,
    observed_price_cents: Option<i64>,
    visit_id: String,
    day: NaiveDate,
}

/// `GET /v1/reports/stores/{id}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = StoreReport)]
struct StoreReportOut {
    store: StoreInfo,
    from: NaiveDate,
    to: NaiveDate,
    latest_seq: i64,
    summary: KpiOut,
    /// The latest 30 visits of the range.
    visits: Vec<VisitRow>,
    out_of_stock: Vec<OutOfStockOut>,
    /// The non-compliant positions only.
    positions: Vec<PositionOut>,
    promotions: Vec<PromotionOut>,
}

#[utoipa::path(get, path = "/v1/reports/stores/{id}", tag = "reports",
    summary = "One store: KPIs, last visits, out-of-stock products, non-compliant positions, promotions",
    params(
        ("id" = String, Path, description = "store id"),
        ("from" = Option<String>, Query, format = Date, description = "first store-local day (default: 6 days before `to`)"),
        ("to" = Option<String>, Query, format = Date, description = "last store-local day (default: today where the viewer's stores are)"),
    ),
    responses((status = 200, description = "the report", body = StoreReportOut), ReportErrors),
    security(("session" = []), ("bearer" = [])))]
async fn store_detail(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(mut q): Query<FilterQuery>,
) -> Result<Json<StoreReportOut>, AppError> {
    blocking(move || {
        let refs = state.store.reference()?;
        let store = refs
            .stores
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| AppError::not_found(format!("unknown store {id:?}")))?
            .clone();
        if !viewer.covers(&store.territory_id) {
            return Err(AppError::forbidden(format!(
                "store {id} is outside your territories"
            )));
        }
        q.store = Some(id.clone());
        q.territory = Some(store.territory_id.clone());
        q.rep = None;
        let filter = q.resolve(viewer_today(&state, &viewer)?)?;
        let seq = latest_seq(&state, Some(std::slice::from_ref(&store.territory_id)))?;
        let (indexed, rows) = load_rows(&state, &viewer, &filter)?;
        let refs = indexed.data();
        let names = user_names(refs);
        let as_of = now_ms();
        // Latest observation first.
        let mut latest: Vec<&Row> = rows.iter().collect();
        latest.sort_by_key(|r| std::cmp::Reverse(r.visit.plan.planned_start));
        let mut oos: BTreeMap<String, OutOfStockOut> = BTreeMap::new();
        let mut audits: HashMap<String, (u64, u64)> = HashMap::new();
        let mut positions: BTreeMap<String, PositionOut> = BTreeMap::new();
        let mut promos: BTreeMap<String, PromotionOut> = BTreeMap::new();
        let mut seen_products = std::collections::HashSet::new();
        for r in &latest {
            let idx = r.refs.index();
            let shop = idx.stores.get(store.id.as_str()).copied().unwrap_or(&store);
            let mut judge = Judge::new(&r.visit, idx);
            for line in r.visit.inventory.values() {
                let (is_oos, _) = judge.inventory(line);
                let Some(is_oos) = is_oos else { continue };
                let a = audits.entry(line.product_id.clone()).or_default();
                a.0 += 1;
                a.1 += u64::from(is_oos);
                if seen_products.insert(line.product_id.clone()) && is_oos {
                    let p = idx.products.get(line.product_id.as_str());
                    oos.insert(
                        line.product_id.clone(),
                        OutOfStockOut {
                            product_id: line.product_id.clone(),
                            name: p.map(|p| p.name.clone()),
                            gtin: p.map(|p| p.gtin.to_string()),
                            category: p.map(|p| p.category.clone()),
                            visit_id: r.visit.id.clone(),
                            day: r.day,
                            shelf_qty: line.shelf_qty,
                            backroom_qty: line.backroom_qty,
                            audits: 0,
                            out_of_stock_audits: 0,
                        },
                    );
                }
            }
            for res in r.visit.planogram.values() {
                if positions.contains_key(&res.position_id) {
                    continue;
                }
                let Some(ok) = judge.position(res) else {
                    continue;
                };
                let def = idx
                    .planogram_for(shop)
                    .and_then(|pg| pg.positions.iter().find(|p| p.id == res.position_id));
                positions.insert(
                    res.position_id.clone(),
                    PositionOut {
                        position_id: res.position_id.clone(),
                        compliant: ok,
                        shelf: def.map(|d| d.shelf),
                        position: def.map(|d| d.position),
                        product_id: def.map(|d| d.product_id.clone()),
                        product_name: def
                            .and_then(|d| idx.products.get(d.product_id.as_str()))
                            .map(|p| p.name.clone()),
                        expected_facings: def.map(|d| d.facings),
                        present: res.present,
                        actual_facings: res.actual_facings,
                        correct_position: res.correct_position,
                        visit_id: r.visit.id.clone(),
                        day: r.day,
                    },
                );
            }
            for c in r.visit.promotions.values() {
                if promos.contains_key(&c.promotion_id) {
                    continue;
                }
                let Some(ok) = judge.promotion(c) else {
                    continue;
                };
                let p = idx.promotions.get(c.promotion_id.as_str());
                promos.insert(
                    c.promotion_id.clone(),
                    PromotionOut {
                        promotion_id: c.promotion_id.clone(),
                        compliant: ok,
                        name: p.map(|p| p.name.clone()),
                        display_location: p.map(|p| p.display_location),
                        promo_price_cents: p.map(|p| p.promo_price_cents),
                        display_in_place: c.display_in_place,
                        promo_price_correct: c.promo_price_correct,
                        materials_present: c.materials_present,
                        observed_price_cents: c.observed_price_cents,
                        visit_id: r.visit.id.clone(),
                        day: r.day,
                    },
                );
            }
        }
        let oos: Vec<OutOfStockOut> = oos
            .into_iter()
            .map(|(pid, mut v)| {
                (v.audits, v.out_of_stock_audits) = audits.get(&pid).copied().unwrap_or_default();
                v
            })
            .collect();
        let visits: Vec<VisitRow> = latest
            .iter()
            .take(30)
            .map(|r| visit_row(r, &names, as_of))
            .collect();
        let territory_name = refs
            .territories
            .iter()
            .find(|t| t.id == store.territory_id)
            .map(|t| t.name.clone());
        let groups: Vec<String> = refs
            .store_groups
            .iter()
            .filter(|g| store.store_group_ids.contains(&g.id))
            .map(|g| g.name.clone())
            .collect();
        Ok(Json(StoreReportOut {
            store: StoreInfo {
                id: store.id,
                name: store.name,
                address: store.address,
                territory_id: store.territory_id,
                territory_name,
                lat: store.lat,
                lng: store.lng,
                geofence_radius_m: store.geofence_radius_m,
                timezone: store.timezone,
                groups,
                priority: store.priority,
            },
            from: filter.from,
            to: filter.to,
            latest_seq: seq,
            summary: summarize(&rows, as_of, refs),
            visits,
            out_of_stock: oos,
            positions: positions.into_values().filter(|p| !p.compliant).collect(),
            promotions: promos.into_values().collect(),
        }))
    })
    .await
}

// ------------------------------------------------------------------ visit detail

/// The store of a visit report.
#[derive(Debug, Serialize, ToSchema)]
struct VisitStoreOut {
    id: String,
    name: String,
    address: String,
    timezone: String,
    /// Head office closed the store (the current reference data no longer lists it).
    closed: bool,
}

/// An inventory line with its product and verdicts (`null`: not judged).
#[derive(Debug, Serialize, ToSchema)]
struct InventoryItemOut {
    line: InventoryLine,
    name: Option<String>,
    gtin: Option<String>,
    category: Option<String>,
    list_price_cents: Option<i64>,
    out_of_stock: Option<bool>,
    price_ok: Option<bool>,
}

/// A planogram result with its position's definition.
#[derive(Debug, Serialize, ToSchema)]
struct PlanogramItemOut {
    result: PositionResult,
    compliant: Option<bool>,
    shelf: Option<u32>,
    position: Option<u32>,
    expected_facings: Option<u32>,
    product_name: Option<String>,
}

/// A promotion check with its promotion.
#[derive(Debug, Serialize, ToSchema)]
struct PromotionItemOut {
    check: PromotionCheck,
    compliant: Option<bool>,
    name: Option<String>,
    display_location: Option<DisplayLocation>,
}

/// A survey answer with its question's text.
#[derive(Debug, Serialize, ToSchema)]
struct SurveyItemOut {
    question_id: String,
    text: Option<String>,
    value: AnswerValue,
}

/// An order line with its product's name.
#[derive(Debug, Serialize, ToSchema)]
struct OrderItemOut {
    product_id: String,
    name: Option<String>,
    quantity: i64,
}

/// One field written by one change, with who wrote it.
#[derive(Debug, Serialize, ToSchema)]
struct HistoryOut {
    path: String,
    /// The value written, as JSON text.
    value: String,
    at: i64,
    change_hash: String,
    user_id: Option<String>,
    user_name: Option<String>,
    device_id: Option<String>,
    /// The field has concurrent values.
    conflict: bool,
}

/// One of a field's concurrent values.
#[derive(Debug, Serialize, ToSchema)]
struct ConflictValueOut {
    /// The value as JSON text.
    value: String,
    at: i64,
    /// The value projections and KPIs use.
    winner: bool,
    user_id: Option<String>,
    user_name: Option<String>,
    device_id: Option<String>,
}

/// A field with concurrent values.
#[derive(Debug, Serialize, ToSchema)]
struct ConflictOut {
    path: String,
    values: Vec<ConflictValueOut>,
}

/// `GET /v1/reports/visits/{id}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = VisitReport)]
struct VisitReportOut {
    visit_id: String,
    territory_id: String,
    latest_seq: i64,
    store: Option<VisitStoreOut>,
    rep: IdName,
    template_name: Option<String>,
    /// The store-local day of the visit.
    day: Option<NaiveDate>,
    /// The version of the reference data the visit is judged with: the one in effect when
    /// it was worked (its check-in, else its planned start).
    reference_version: i64,
    visit: Visit,
    summary: KpiOut,
    tasks: Vec<rules::TaskState>,
    inventory: Vec<InventoryItemOut>,
    planogram: Vec<PlanogramItemOut>,
    promotions: Vec<PromotionItemOut>,
    survey: Vec<SurveyItemOut>,
    orders: Vec<OrderItemOut>,
    history: Vec<HistoryOut>,
    conflicts: Vec<ConflictOut>,
}

#[utoipa::path(get, path = "/v1/reports/visits/{id}", tag = "reports",
    summary = "One visit: tasks, lines, field history (user, device, time) and conflicts",
    params(("id" = String, Path, description = "visit id")),
    responses((status = 200, description = "the report", body = VisitReportOut), ReportErrors),
    security(("session" = []), ("bearer" = [])))]
async fn visit_detail(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Json<VisitReportOut>, AppError> {
    blocking(move || {
        let stored = state
            .store
            .visit(&id)?
            .ok_or_else(|| AppError::not_found(format!("unknown visit {id:?}")))?;
        if !viewer.covers(&stored.meta.territory_id) {
            return Err(AppError::forbidden(format!(
                "visit {id} is outside your territories"
            )));
        }
        let seq = latest_seq(
            &state,
            Some(std::slice::from_ref(&stored.meta.territory_id)),
        )?;
        let doc = VisitDoc::load(&stored.doc)?;
        let visit = doc.read()?;
        let history = doc.history()?;
        let conflicts = doc.conflicts()?;
        // The reference data the visit was worked with: its KPIs and names.
        let as_of = state.reference.as_of(state.store.as_ref())?;
        let indexed = as_of.of(&visit)?;
        let closed = as_of.closed(&visit.plan.store_id);
        let (refs, idx) = (indexed.data(), indexed.index());
        let names = user_names(refs);
        let name_of = |u: &str| {
            names
                .get(u)
                .map_or_else(|| u.to_string(), |n| (*n).to_string())
        };
        let as_of = now_ms();
        let k = kpi::visit_kpis(&visit, idx);
        let summary: KpiOut = (&KpiSummary::aggregate([&k], as_of, &refs.settings)).into();
        let store = idx.stores.get(visit.plan.store_id.as_str()).copied();
        let tasks = rules::task_states(&visit, idx).unwrap_or_default();
        let mut judge = Judge::new(&visit, idx);
        let inventory: Vec<InventoryItemOut> = visit
            .inventory
            .values()
            .map(|l| {
                let (out_of_stock, price_ok) = judge.inventory(l);
                let p = idx.products.get(l.product_id.as_str());
                InventoryItemOut {
                    line: l.clone(),
                    name: p.map(|p| p.name.clone()),
                    gtin: p.map(|p| p.gtin.to_string()),
                    category: p.map(|p| p.category.clone()),
                    list_price_cents: p.map(|p| p.list_price_cents),
                    out_of_stock,
                    price_ok,
                }
            })
            .collect();
        let pg = store.and_then(|s| idx.planogram_for(s));
        let planogram: Vec<PlanogramItemOut> = visit
            .planogram
            .values()
            .map(|r| {
                let def = pg.and_then(|pg| pg.positions.iter().find(|p| p.id == r.position_id));
                PlanogramItemOut {
                    result: r.clone(),
                    compliant: judge.position(r),
                    shelf: def.map(|d| d.shelf),
                    position: def.map(|d| d.position),
                    expected_facings: def.map(|d| d.facings),
                    product_name: def
                        .and_then(|d| idx.products.get(d.product_id.as_str()))
                        .map(|p| p.name.clone()),
                }
            })
            .collect();
        let promotions: Vec<PromotionItemOut> = visit
            .promotions
            .values()
            .map(|c| {
                let p = idx.promotions.get(c.promotion_id.as_str());
                PromotionItemOut {
                    check: c.clone(),
                    compliant: judge.promotion(c),
                    name: p.map(|p| p.name.clone()),
                    display_location: p.map(|p| p.display_location),
                }
            })
            .collect();
        let questions: HashMap<&str, &str> = idx
            .templates
            .get(visit.plan.template_id.as_str())
            .map(|t| {
                t.tasks
                    .iter()
                    .flat_map(|d| d.questions.iter())
                    .map(|q| (q.id.as_str(), q.text.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        let survey: Vec<SurveyItemOut> = visit
            .survey
            .values()
            .map(|a| SurveyItemOut {
                question_id: a.question_id.clone(),
                text: questions
                    .get(a.question_id.as_str())
                    .map(|t| (*t).to_string()),
                value: a.value.clone(),
            })
            .collect();
        let orders: Vec<OrderItemOut> = visit
            .orders
            .values()
            .map(|o| OrderItemOut {
                product_id: o.product_id.clone(),
                name: idx
                    .products
                    .get(o.product_id.as_str())
                    .map(|p| p.name.clone()),
                quantity: o.quantity,
            })
            .collect();
        let conflict_paths: std::collections::HashSet<&str> =
            conflicts.iter().map(|c| c.path.as_str()).collect();
        let history_out: Vec<HistoryOut> = history
            .into_iter()
            .map(|h| HistoryOut {
                conflict: conflict_paths.contains(h.path.as_str()),
                user_name: h.author.as_ref().map(|a| name_of(&a.user_id)),
                user_id: h.author.as_ref().map(|a| a.user_id.clone()),
                device_id: h.author.map(|a| a.device_id),
                path: h.path,
                value: h.value,
                at: h.at,
                change_hash: h.change_hash,
            })
            .collect();
        let conflicts_out: Vec<ConflictOut> = conflicts
            .iter()
            .map(|c| ConflictOut {
                path: c.path.clone(),
                values: c
                    .values
                    .iter()
                    .map(|v| ConflictValueOut {
                        value: v.value.clone(),
                        at: v.at,
                        winner: v.winner,
                        user_id: v.author.as_ref().map(|a| a.user_id.clone()),
                        user_name: v.author.as_ref().map(|a| name_of(&a.user_id)),
                        device_id: v.author.as_ref().map(|a| a.device_id.clone()),
                    })
                    .collect(),
            })
            .collect();
        let template_name = idx
            .templates
            .get(visit.plan.template_id.as_str())
            .map(|t| t.name.clone());
        Ok(Json(VisitReportOut {
            visit_id: id,
            territory_id: stored.meta.territory_id,
            latest_seq: seq,
            store: store.map(|s| VisitStoreOut {
                id: s.id.clone(),
                name: s.name.clone(),
                address: s.address.clone(),
                timezone: s.timezone.clone(),
                closed,
            }),
            rep: IdName {
                id: visit.plan.rep_id.clone(),
                name: name_of(&visit.plan.rep_id),
            },
            template_name,
            day: k.local_day,
            reference_version: refs.version,
            visit,
            summary,
            tasks,
            inventory,
            planogram,
            promotions,
            survey,
            orders,
            history: history_out,
            conflicts: conflicts_out,
        }))
    })
    .await
}

// ------------------------------------------------------------------ changes

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ChangesQuery {
    /// A `latest_seq` seen before.
    #[serde(default)]
    since: i64,
    /// Describe up to 20 changed visits (store, rep, status); else ids only.
    #[serde(default)]
    describe: bool,
}

/// `GET /v1/reports/changes`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Changes)]
struct ChangesOut {
    since: i64,
    latest_seq: i64,
    /// Ids of the visits changed after `since` (at most 50).
    changed: Vec<String>,
    /// Rows of up to 20 of them, with `describe`.
    visits: Vec<VisitRow>,
}

#[utoipa::path(get, path = "/v1/reports/changes", tag = "reports",
    summary = "The latest change sequence number and the visits changed after `since` (poll this)",
    params(ChangesQuery),
    responses((status = 200, description = "the report", body = ChangesOut), ReportErrors),
    security(("session" = []), ("bearer" = [])))]
async fn changes(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<ChangesQuery>,
) -> Result<Json<ChangesOut>, AppError> {
    blocking(move || {
        let terrs = viewer.territories();
        let (latest, ids) = state
            .store
            .changes_since(terrs.as_deref(), q.since.max(0), 50)?;
        let mut described = Vec::new();
        if q.describe {
            let as_of = state.reference.as_of(state.store.as_ref())?;
            let names = user_names(as_of.current().data());
            let mut stored = Vec::new();
            for id in ids.iter().take(20) {
                if let Some(sv) = state.store.visit(id)?
                    && viewer.covers(&sv.meta.territory_id)
                {
                    stored.push(sv);
                }
            }
            let read = read_stored(&state, &stored);
            for (sv, visit) in stored.into_iter().zip(read) {
                let Ok(visit) = visit else {
                    continue;
                };
                let row = Row::of(&as_of, visit, sv.meta.territory_id)?;
                described.push(visit_row(&row, &names, now_ms()));
            }
        }
        Ok(Json(ChangesOut {
            since: q.since,
            latest_seq: latest,
            changed: ids,
            visits: described,
        }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldsync_core::fixtures::{self, FixtureSize};

    #[test]
    fn today_is_the_latest_local_date_among_the_viewers_stores() {
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let mut refs = fixtures::reference_data(5, &FixtureSize::default(), day("2026-06-30"));
        for s in &mut refs.stores {
            s.timezone = "Europe/Berlin".into();
        }
        refs.stores[0].timezone = "Pacific/Kiritimati".into();
        let far = refs.stores[0].territory_id.clone();
        let everyone = |_: &str| true;
        // 22:30 UTC is already 1 July in Berlin.
        assert_eq!(
            today_for(&refs, everyone, at("2026-06-30T22:30:00Z")),
            day("2026-07-01")
        );
        // 12:00 UTC is 1 July only in Kiritimati (UTC+14), for a viewer who covers it.
        assert_eq!(
            today_for(&refs, everyone, at("2026-06-30T12:00:00Z")),
            day("2026-07-01")
        );
        assert_eq!(
            today_for(&refs, |t| t != far, at("2026-06-30T12:00:00Z")),
            day("2026-06-30")
        );
        // No store: the UTC date.
        assert_eq!(
            today_for(&refs, |_| false, at("2026-06-30T23:30:00Z")),
            day("2026-06-30")
        );
    }
}
