//! Records and enums that mirror the core's types, with `From` conversions both ways
//! where the foreign side passes them in. No logic lives here: maps become lists in key
//! order, ratios become their value (`None` without data).

use chrono::NaiveDate;
use fieldsync_core::kpi;
use fieldsync_core::model::{AnswerType as CoreAnswerType, TaskKind as CoreTaskKind};
use fieldsync_core::rules;
use fieldsync_core::store as core_store;
use fieldsync_core::visit as core_visit;

use crate::error::{FieldsyncError, Result};

/// Milliseconds since the Unix epoch (device time).
pub type Millis = i64;

/// Parses a `YYYY-MM-DD` day.
pub(crate) fn parse_day(day_iso: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(day_iso, "%Y-%m-%d")
        .map_err(|_| FieldsyncError::validation("a day must be written YYYY-MM-DD"))
}

/// A GPS position in degrees.
#[derive(Clone, Copy, Debug, PartialEq, uniffi::Record)]
pub struct GeoPoint {
    /// Latitude, −90 to 90.
    pub lat: f64,
    /// Longitude, −180 to 180.
    pub lng: f64,
}

impl From<GeoPoint> for core_visit::GeoPoint {
    fn from(p: GeoPoint) -> Self {
        Self {
            lat: p.lat,
            lng: p.lng,
        }
    }
}

impl From<core_visit::GeoPoint> for GeoPoint {
    fn from(p: core_visit::GeoPoint) -> Self {
        Self {
            lat: p.lat,
            lng: p.lng,
        }
    }
}

/// A check-in or check-out: when, where, and whether it was outside the store's geofence.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct CheckPoint {
    /// Device time of the check.
    pub at: Millis,
    /// Where the rep was.
    pub position: GeoPoint,
    /// Distance from the store's coordinates in metres.
    pub distance_m: f64,
    /// Flagged, not refused: the rep may stand in the car park.
    pub outside_geofence: bool,
}

impl From<core_visit::CheckPoint> for CheckPoint {
    fn from(c: core_visit::CheckPoint) -> Self {
        Self {
            at: c.at,
            position: c.position.into(),
            distance_m: c.distance_m,
            outside_geofence: c.outside_geofence,
        }
    }
}

/// Where a visit is in its life: `Planned → InProgress → Completed`,
/// `Planned → Canceled`, `InProgress → Abandoned`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum VisitStatus {
    /// Not started yet.
    Planned,
    /// Checked in.
    InProgress,
    /// Completed with every required task done.
    Completed,
    /// Canceled before it started, with a reason.
    Canceled,
    /// Given up after it started, with a reason.
    Abandoned,
}

impl From<core_visit::VisitStatus> for VisitStatus {
    fn from(s: core_visit::VisitStatus) -> Self {
        use core_visit::VisitStatus as S;
        match s {
            S::Planned => Self::Planned,
            S::InProgress => Self::InProgress,
            S::Completed => Self::Completed,
            S::Canceled => Self::Canceled,
            S::Abandoned => Self::Abandoned,
        }
    }
}

/// The kinds of task a visit can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum TaskKind {
    /// Count every product of the store's assortment.
    InventoryCheck,
    /// Audit every planogram position.
    PlanogramCheck,
    /// Check every promotion running in the store.
    PromotionCheck,
    /// Answer the template's questions.
    Survey,
    /// Take (or decline) an order.
    Order,
}

impl From<CoreTaskKind> for TaskKind {
    fn from(k: CoreTaskKind) -> Self {
        match k {
            CoreTaskKind::InventoryCheck => Self::InventoryCheck,
            CoreTaskKind::PlanogramCheck => Self::PlanogramCheck,
            CoreTaskKind::PromotionCheck => Self::PromotionCheck,
            CoreTaskKind::Survey => Self::Survey,
            CoreTaskKind::Order => Self::Order,
        }
    }
}

/// Progress of one task of a visit.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct TaskState {
    /// Which task.
    pub kind: TaskKind,
    /// Whether the visit cannot be completed while this task is open.
    pub required: bool,
    /// Items done (products counted, positions audited, …).
    pub done: u32,
    /// Items to do.
    pub total: u32,
    /// Every item done.
    pub complete: bool,
}

impl From<rules::TaskState> for TaskState {
    fn from(t: rules::TaskState) -> Self {
        Self {
            kind: t.kind.into(),
            required: t.required,
            done: t.done,
            total: t.total,
            complete: t.complete,
        }
    }
}

/// One stop on the rep's route.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct RouteEntry {
    /// The visit.
    pub visit_id: String,
    /// The store visited.
    pub store_id: String,
    /// The store's name, for the route screen.
    pub store_name: String,
    /// Planned start (device time, ms).
    pub planned_start: Millis,
    /// Planned end (device time, ms).
    pub planned_end: Millis,
    /// Where the visit is in its life.
    pub status: VisitStatus,
    /// 1 (highest) to 5.
    pub priority: u8,
    /// Created on the spot rather than planned.
    pub ad_hoc: bool,
    /// Head office closed the store after this visit was planned: the rep can still
    /// finish and check out; the store takes no new visits.
    pub store_closed: bool,
}

impl From<core_store::RouteEntry> for RouteEntry {
    fn from(e: core_store::RouteEntry) -> Self {
        Self {
            visit_id: e.visit_id,
            store_id: e.store_id,
            store_name: e.store_name,
            planned_start: e.planned_start,
            planned_end: e.planned_end,
            status: e.status.into(),
            priority: e.priority,
            ad_hoc: e.ad_hoc,
            store_closed: e.store_closed,
        }
    }
}

/// The manager-owned part of a visit.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct VisitPlan {
    /// The store to visit.
    pub store_id: String,
    /// The rep who makes the visit.
    pub rep_id: String,
    /// Planned start (ms).
    pub planned_start: Millis,
    /// Planned end (ms), not before the start.
    pub planned_end: Millis,
    /// 1 (highest) to 5.
    pub priority: u8,
    /// What the manager asks the rep to do.
    pub instructions: String,
    /// The task template (`tt-standard`, `tt-quick`, …).
    pub template_id: String,
    /// Created by the rep on the spot rather than planned by a manager.
    pub ad_hoc: bool,
}

impl From<VisitPlan> for core_visit::VisitPlan {
    fn from(p: VisitPlan) -> Self {
        Self {
            store_id: p.store_id,
            rep_id: p.rep_id,
            planned_start: p.planned_start,
            planned_end: p.planned_end,
            priority: p.priority,
            instructions: p.instructions,
            template_id: p.template_id,
            ad_hoc: p.ad_hoc,
        }
    }
}

impl From<core_visit::VisitPlan> for VisitPlan {
    fn from(p: core_visit::VisitPlan) -> Self {
        Self {
            store_id: p.store_id,
            rep_id: p.rep_id,
            planned_start: p.planned_start,
            planned_end: p.planned_end,
            priority: p.priority,
            instructions: p.instructions,
            template_id: p.template_id,
            ad_hoc: p.ad_hoc,
        }
    }
}

/// What a rep records for one inventory line; `None` leaves a field as it was.
#[derive(Clone, Debug, Default, PartialEq, Eq, uniffi::Record)]
pub struct InventoryInput {
    /// Units on the shelf (not negative).
    #[uniffi(default = None)]
    pub shelf_qty: Option<i64>,
    /// Units in the back room (not negative).
    #[uniffi(default = None)]
    pub backroom_qty: Option<i64>,
    /// The rep's out-of-stock toggle.
    #[uniffi(default = None)]
    pub out_of_stock: Option<bool>,
    /// Shelf price seen, in cents (not negative).
    #[uniffi(default = None)]
    pub observed_price_cents: Option<i64>,
    /// Facings counted (not negative).
    #[uniffi(default = None)]
    pub facings: Option<i64>,
}

impl From<InventoryInput> for core_visit::InventoryInput {
    fn from(i: InventoryInput) -> Self {
        Self {
            shelf_qty: i.shelf_qty,
            backroom_qty: i.backroom_qty,
            out_of_stock: i.out_of_stock,
            observed_price_cents: i.observed_price_cents,
            facings: i.facings,
        }
    }
}

/// What a rep records for one planogram position; `None` leaves a field as it was.
#[derive(Clone, Debug, Default, PartialEq, Eq, uniffi::Record)]
pub struct PositionInput {
    /// The product is on the shelf at this position.
    #[uniffi(default = None)]
    pub present: Option<bool>,
    /// Facings counted (not negative).
    #[uniffi(default = None)]
    pub actual_facings: Option<i64>,
    /// The product is where the planogram puts it.
    #[uniffi(default = None)]
    pub correct_position: Option<bool>,
}

impl From<PositionInput> for core_visit::PositionInput {
    fn from(i: PositionInput) -> Self {
        Self {
            present: i.present,
            actual_facings: i.actual_facings,
            correct_position: i.correct_position,
        }
    }
}

/// What a rep records for one promotion; `None` leaves a field as it was.
#[derive(Clone, Debug, Default, PartialEq, Eq, uniffi::Record)]
pub struct PromotionInput {
    /// The promotion's display is set up.
    #[uniffi(default = None)]
    pub display_in_place: Option<bool>,
    /// The shelf shows the promotion price.
    #[uniffi(default = None)]
    pub promo_price_correct: Option<bool>,
    /// Point-of-sale materials are present.
    #[uniffi(default = None)]
    pub materials_present: Option<bool>,
    /// Price seen, in cents (not negative).
    #[uniffi(default = None)]
    pub observed_price_cents: Option<i64>,
}

impl From<PromotionInput> for core_visit::PromotionInput {
    fn from(i: PromotionInput) -> Self {
        Self {
            display_in_place: i.display_in_place,
            promo_price_correct: i.promo_price_correct,
            materials_present: i.materials_present,
            observed_price_cents: i.observed_price_cents,
        }
    }
}

/// A survey answer; its kind must match the question's answer type.
#[derive(Clone, Debug, PartialEq, uniffi::Enum)]
pub enum AnswerValue {
    /// Yes or no.
    Bool { value: bool },
    /// A finite number.
    Number { value: f64 },
    /// Free text.
    Text { value: String },
}

impl From<AnswerValue> for core_visit::AnswerValue {
    fn from(a: AnswerValue) -> Self {
        match a {
            AnswerValue::Bool { value } => Self::Bool(value),
            AnswerValue::Number { value } => Self::Number(value),
            AnswerValue::Text { value } => Self::Text(value),
        }
    }
}

impl From<core_visit::AnswerValue> for AnswerValue {
    fn from(a: core_visit::AnswerValue) -> Self {
        match a {
            core_visit::AnswerValue::Bool(value) => Self::Bool { value },
            core_visit::AnswerValue::Number(value) => Self::Number { value },
            core_visit::AnswerValue::Text(value) => Self::Text { value },
        }
    }
}

/// One product's inventory finding. Fields not recorded are `None`.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct InventoryLine {
    /// The product.
    pub product_id: String,
    /// Units on the shelf.
    pub shelf_qty: Option<i64>,
    /// Units in the back room.
    pub backroom_qty: Option<i64>,
    /// The rep's out-of-stock toggle.
    pub out_of_stock: Option<bool>,
    /// Shelf price seen, in cents.
    pub observed_price_cents: Option<i64>,
    /// Facings counted.
    pub facings: Option<i64>,
    /// Device time of the latest observation on this line.
    pub observed_at: Millis,
}

impl From<core_visit::InventoryLine> for InventoryLine {
    fn from(l: core_visit::InventoryLine) -> Self {
        Self {
            product_id: l.product_id,
            shelf_qty: l.shelf_qty,
            backroom_qty: l.backroom_qty,
            out_of_stock: l.out_of_stock,
            observed_price_cents: l.observed_price_cents,
            facings: l.facings,
            observed_at: l.observed_at,
        }
    }
}

/// The finding for one planogram position.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct PositionResult {
    /// The planogram position.
    pub position_id: String,
    /// The product is on the shelf at this position.
    pub present: Option<bool>,
    /// Facings counted.
    pub actual_facings: Option<i64>,
    /// The product is where the planogram puts it.
    pub correct_position: Option<bool>,
    /// Device time of the latest observation.
    pub observed_at: Millis,
}

impl From<core_visit::PositionResult> for PositionResult {
    fn from(r: core_visit::PositionResult) -> Self {
        Self {
            position_id: r.position_id,
            present: r.present,
            actual_facings: r.actual_facings,
            correct_position: r.correct_position,
            observed_at: r.observed_at,
        }
    }
}

/// The finding for one promotion.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct PromotionCheck {
    /// The promotion.
    pub promotion_id: String,
    /// The display is set up.
    pub display_in_place: Option<bool>,
    /// The shelf shows the promotion price.
    pub promo_price_correct: Option<bool>,
    /// Point-of-sale materials are present.
    pub materials_present: Option<bool>,
    /// Price seen, in cents.
    pub observed_price_cents: Option<i64>,
    /// Device time of the latest observation.
    pub observed_at: Millis,
}

impl From<core_visit::PromotionCheck> for PromotionCheck {
    fn from(c: core_visit::PromotionCheck) -> Self {
        Self {
            promotion_id: c.promotion_id,
            display_in_place: c.display_in_place,
            promo_price_correct: c.promo_price_correct,
            materials_present: c.materials_present,
            observed_price_cents: c.observed_price_cents,
            observed_at: c.observed_at,
        }
    }
}

/// One survey answer with when it was given.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct SurveyAnswer {
    /// The question.
    pub question_id: String,
    /// The answer.
    pub value: AnswerValue,
    /// Device time of the answer.
    pub observed_at: Millis,
}

impl From<core_visit::SurveyAnswer> for SurveyAnswer {
    fn from(a: core_visit::SurveyAnswer) -> Self {
        Self {
            question_id: a.question_id,
            value: a.value.into(),
            observed_at: a.observed_at,
        }
    }
}

/// One order line.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct OrderLine {
    /// The product ordered.
    pub product_id: String,
    /// Units ordered.
    pub quantity: i64,
    /// Device time of the latest change.
    pub observed_at: Millis,
}

impl From<core_visit::OrderLine> for OrderLine {
    fn from(l: core_visit::OrderLine) -> Self {
        Self {
            product_id: l.product_id,
            quantity: l.quantity,
            observed_at: l.observed_at,
        }
    }
}

/// A whole visit, resolved: where two observations of one field conflict, the later
/// device time wins (every value stays available through `conflicts`). Lists are in id
/// order.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct Visit {
    /// The visit's id.
    pub id: String,
    /// The manager-owned plan.
    pub plan: VisitPlan,
    /// Where the visit is in its life.
    pub status: VisitStatus,
    /// The check-in, once checked in.
    pub check_in: Option<CheckPoint>,
    /// The check-out, once checked out.
    pub check_out: Option<CheckPoint>,
    /// Why the visit was canceled.
    pub cancel_reason: Option<String>,
    /// Why the visit was abandoned.
    pub abandon_reason: Option<String>,
    /// Inventory lines, by product id.
    pub inventory: Vec<InventoryLine>,
    /// Planogram results, by position id.
    pub planogram: Vec<PositionResult>,
    /// Promotion checks, by promotion id.
    pub promotions: Vec<PromotionCheck>,
    /// Survey answers, by question id.
    pub survey: Vec<SurveyAnswer>,
    /// Order lines, by product id.
    pub orders: Vec<OrderLine>,
    /// The rep submitted the order (an order with no lines is "no order").
    pub order_submitted: bool,
    /// Free-text notes.
    pub notes: String,
}

fn values<K, V, T: From<V>>(map: std::collections::BTreeMap<K, V>) -> Vec<T> {
    map.into_values().map(T::from).collect()
}

impl From<core_visit::Visit> for Visit {
    fn from(v: core_visit::Visit) -> Self {
        Self {
            id: v.id,
            plan: v.plan.into(),
            status: v.status.into(),
            check_in: v.check_in.map(Into::into),
            check_out: v.check_out.map(Into::into),
            cancel_reason: v.cancel_reason,
            abandon_reason: v.abandon_reason,
            inventory: values(v.inventory),
            planogram: values(v.planogram),
            promotions: values(v.promotions),
            survey: values(v.survey),
            orders: values(v.orders),
            order_submitted: v.order_submitted,
            notes: v.notes,
        }
    }
}

/// Who made a change: the user and the device they used.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Author {
    /// The user.
    pub user_id: String,
    /// Their device.
    pub device_id: String,
}

impl From<core_visit::Author> for Author {
    fn from(a: core_visit::Author) -> Self {
        Self {
            user_id: a.user_id,
            device_id: a.device_id,
        }
    }
}

/// One value of a field that was changed concurrently.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct ConflictValue {
    /// The value as JSON text.
    pub value: String,
    /// Device time of the change that wrote it.
    pub at: Millis,
    /// Who wrote it, when known.
    pub author: Option<Author>,
    /// The value projections and KPIs use.
    pub winner: bool,
}

impl From<core_visit::ConflictValue> for ConflictValue {
    fn from(c: core_visit::ConflictValue) -> Self {
        Self {
            value: c.value,
            at: c.at,
            author: c.author.map(Into::into),
            winner: c.winner,
        }
    }
}

/// A field with more than one concurrent value.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct FieldConflict {
    /// e.g. `inventory/p-cola/shelf`.
    pub path: String,
    /// Every concurrent value, the winner marked.
    pub values: Vec<ConflictValue>,
}

impl From<core_visit::FieldConflict> for FieldConflict {
    fn from(c: core_visit::FieldConflict) -> Self {
        Self {
            path: c.path,
            values: c.values.into_iter().map(Into::into).collect(),
        }
    }
}

/// One field written by one change: the visit's field history.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct FieldChange {
    /// e.g. `inventory/p-cola/shelf`, `actual/status`, `notes`.
    pub path: String,
    /// The value written, as JSON text (`null` for a deletion; notes edits show the text
    /// inserted).
    pub value: String,
    /// Device time of the change.
    pub at: Millis,
    /// Who wrote it, when known.
    pub author: Option<Author>,
    /// Hex hash of the change.
    pub change_hash: String,
}

impl From<core_visit::FieldChange> for FieldChange {
    fn from(c: core_visit::FieldChange) -> Self {
        Self {
            path: c.path,
            value: c.value,
            at: c.at,
            author: c.author.map(Into::into),
            change_hash: c.change_hash,
        }
    }
}

/// A visit with its store name, task progress and conflicts, for the visit screen.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct VisitDetail {
    /// The visit.
    pub visit: Visit,
    /// The store's name.
    pub store_name: String,
    /// The store was closed by head office (see `RouteEntry.store_closed`).
    pub store_closed: bool,
    /// Every task of the visit's template with its progress.
    pub tasks: Vec<TaskState>,
    /// Fields changed concurrently.
    pub conflicts: Vec<FieldConflict>,
}

impl From<core_store::VisitDetail> for VisitDetail {
    fn from(d: core_store::VisitDetail) -> Self {
        Self {
            visit: d.visit.into(),
            store_name: d.store_name,
            store_closed: d.store_closed,
            tasks: d.tasks.into_iter().map(Into::into).collect(),
            conflicts: d.conflicts.into_iter().map(Into::into).collect(),
        }
    }
}

/// The findings of a store's latest audited visit.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct StoreFindings {
    /// The store.
    pub store_id: String,
    /// The latest visit that recorded findings, if any.
    pub visit_id: Option<String>,
    /// When that visit last observed something.
    pub visited_at: Option<Millis>,
    /// Products found out of stock.
    pub out_of_stock_product_ids: Vec<String>,
    /// Planogram positions found missing or misplaced.
    pub non_compliant_position_ids: Vec<String>,
    /// Promotions found not fully in place.
    pub non_compliant_promotion_ids: Vec<String>,
}

impl From<core_store::StoreFindings> for StoreFindings {
    fn from(f: core_store::StoreFindings) -> Self {
        Self {
            store_id: f.store_id,
            visit_id: f.visit_id,
            visited_at: f.visited_at,
            out_of_stock_product_ids: f.out_of_stock_product_ids,
            non_compliant_position_ids: f.non_compliant_position_ids,
            non_compliant_promotion_ids: f.non_compliant_promotion_ids,
        }
    }
}

/// The in-store audit KPIs as fractions in [0, 1]; `None` where there is no data.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct AuditKpis {
    /// Assortment products found out of stock ÷ assortment products audited.
    pub out_of_stock_rate: Option<f64>,
    /// 1 − out-of-stock rate.
    pub on_shelf_availability: Option<f64>,
    /// Positions found correct ÷ positions audited.
    pub planogram_compliance: Option<f64>,
    /// Own-brand facings ÷ all facings in the categories present.
    pub share_of_shelf: Option<f64>,
    /// Promotions fully in place ÷ promotions audited.
    pub promotion_compliance: Option<f64>,
    /// Lines priced within tolerance ÷ lines with an observed price.
    pub price_compliance: Option<f64>,
}

impl From<kpi::AuditKpis> for AuditKpis {
    fn from(a: kpi::AuditKpis) -> Self {
        Self {
            out_of_stock_rate: a.out_of_stock.value(),
            on_shelf_availability: a.on_shelf_availability.value(),
            planogram_compliance: a.planogram_compliance.value(),
            share_of_shelf: a.share_of_shelf.value(),
            promotion_compliance: a.promotion_compliance.value(),
            price_compliance: a.price_compliance.value(),
        }
    }
}

/// The KPIs of one visit.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct VisitKpis {
    /// The visit.
    pub visit_id: String,
    /// Its store.
    pub store_id: String,
    /// Its status.
    pub status: VisitStatus,
    /// The in-store audit KPIs.
    pub audit: AuditKpis,
    /// Check-out − check-in for a completed visit, in milliseconds.
    pub time_in_store_ms: Option<f64>,
    /// 1 for a completed visit with an order line, 0 for one without; `None` otherwise.
    pub strike_rate: Option<f64>,
    /// Order lines on a productive call.
    pub lines_per_productive_call: Option<f64>,
    /// Weighted perfect-store score in [0, 100].
    pub perfect_store_score: Option<f64>,
}

impl From<kpi::VisitKpis> for VisitKpis {
    fn from(k: kpi::VisitKpis) -> Self {
        Self {
            visit_id: k.visit_id,
            store_id: k.store_id,
            status: k.status.into(),
            audit: k.audit.into(),
            time_in_store_ms: k.time_in_store.mean_ms(),
            strike_rate: k.strike_rate.value(),
            lines_per_productive_call: k.lines_per_productive_call.value(),
            perfect_store_score: k.perfect_store_score,
        }
    }
}

/// The KPIs of a set of visits.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct KpiSummary {
    /// The instant visit compliance was judged at.
    pub as_of: Millis,
    /// Visits summarized.
    pub visits: u64,
    /// Of those, completed.
    pub completed: u64,
    /// Sum of the visits' audits.
    pub audit: AuditKpis,
    /// Planned visits completed in their window ÷ planned visits due.
    pub visit_compliance: Option<f64>,
    /// Average time in store, in milliseconds.
    pub average_time_in_store_ms: Option<f64>,
    /// Completed visits with an order ÷ completed visits.
    pub strike_rate: Option<f64>,
    /// Order lines ÷ productive calls.
    pub lines_per_productive_call: Option<f64>,
    /// Perfect-store score of the aggregated audit, in [0, 100].
    pub perfect_store_score: Option<f64>,
}

impl From<kpi::KpiSummary> for KpiSummary {
    fn from(s: kpi::KpiSummary) -> Self {
        Self {
            as_of: s.as_of,
            visits: s.counts.total,
            completed: s.counts.completed,
            audit: s.audit.into(),
            visit_compliance: s.visit_compliance.value(),
            average_time_in_store_ms: s.time_in_store.mean_ms(),
            strike_rate: s.strike_rate.value(),
            lines_per_productive_call: s.lines_per_productive_call.value(),
            perfect_store_score: s.perfect_store_score,
        }
    }
}

/// The type of answer a survey question takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum AnswerType {
    /// Answer with `AnswerValue.Bool`.
    Boolean,
    /// Answer with `AnswerValue.Number`.
    Number,
    /// Answer with `AnswerValue.Text`.
    Text,
}

impl From<CoreAnswerType> for AnswerType {
    fn from(t: CoreAnswerType) -> Self {
        match t {
            CoreAnswerType::Boolean => Self::Boolean,
            CoreAnswerType::Number => Self::Number,
            CoreAnswerType::Text => Self::Text,
        }
    }
}

/// One planogram position to audit.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct ChecklistPosition {
    /// The position's id.
    pub position_id: String,
    /// The product that belongs there.
    pub product_id: String,
    /// Facings the planogram expects.
    pub expected_facings: u32,
}

/// One promotion to check.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct ChecklistPromotion {
    /// The promotion's id.
    pub promotion_id: String,
    /// Its name.
    pub name: String,
    /// The promotion price, in cents.
    pub promo_price_cents: i64,
}

/// One survey question of the visit's template.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct ChecklistQuestion {
    /// The question's id.
    pub question_id: String,
    /// What is asked.
    pub text: String,
    /// The kind of answer it takes.
    pub answer_type: AnswerType,
    /// Whether the survey task needs it.
    pub required: bool,
}

/// What a visit asks the rep to check, from reference data: the items behind the task
/// totals of `VisitDetail.tasks`.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct VisitChecklist {
    /// The store's assortment (the inventory check).
    pub product_ids: Vec<String>,
    /// The store's planogram positions (the planogram check).
    pub positions: Vec<ChecklistPosition>,
    /// Promotions running in the store on the visit's local day (the promotion check).
    pub promotions: Vec<ChecklistPromotion>,
    /// The template's survey questions.
    pub questions: Vec<ChecklistQuestion>,
}

impl From<core_store::VisitChecklist> for VisitChecklist {
    fn from(c: core_store::VisitChecklist) -> Self {
        Self {
            product_ids: c.product_ids,
            positions: c
                .positions
                .into_iter()
                .map(|x| ChecklistPosition {
                    position_id: x.id,
                    product_id: x.product_id,
                    expected_facings: x.facings,
                })
                .collect(),
            promotions: c
                .promotions
                .into_iter()
                .map(|p| ChecklistPromotion {
                    promotion_id: p.id,
                    name: p.name,
                    promo_price_cents: p.promo_price_cents,
                })
                .collect(),
            questions: c
                .questions
                .into_iter()
                .map(|q| ChecklistQuestion {
                    question_id: q.id,
                    text: q.text,
                    answer_type: q.answer_type.into(),
                    required: q.required,
                })
                .collect(),
        }
    }
}

/// Who uses a store.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Identity {
    /// The signed-in user.
    pub user_id: String,
    /// This device.
    pub device_id: String,
}

impl From<core_store::Identity> for Identity {
    fn from(i: core_store::Identity) -> Self {
        Self {
            user_id: i.user_id,
            device_id: i.device_id,
        }
    }
}

/// A store from the reference data, for route and map screens.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct StoreInfo {
    /// The store's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The territory it belongs to.
    pub territory_id: String,
    /// Street address.
    pub address: String,
    /// Latitude of the store.
    pub lat: f64,
    /// Longitude of the store.
    pub lng: f64,
    /// Check-ins farther than this (metres) are flagged.
    pub geofence_radius_m: f64,
    /// IANA time zone, e.g. `Europe/Berlin`.
    pub timezone: String,
    /// 1 (highest) to 5.
    pub priority: u8,
    /// Closed by head office: listed only while this device holds a visit there; it takes
    /// no new visits.
    pub closed: bool,
}

impl StoreInfo {
    /// `s`, closed or not.
    pub(crate) fn of(s: &fieldsync_core::model::Store, closed: bool) -> Self {
        Self {
            id: s.id.clone(),
            name: s.name.clone(),
            territory_id: s.territory_id.clone(),
            address: s.address.clone(),
            lat: s.lat,
            lng: s.lng,
            geofence_radius_m: s.geofence_radius_m,
            timezone: s.timezone.clone(),
            priority: s.priority,
            closed,
        }
    }
}

/// A visit whose changes the server refused.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct QuarantinedVisit {
    /// The visit.
    pub visit_id: String,
    /// The server's reason, readable by the rep.
    pub reason: String,
}

/// The device's stored sync status.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct SyncStatusInfo {
    /// Local changes the server has not acknowledged yet.
    pub pending_changes: u64,
    /// Device time (ms since the epoch) of the last successful sync.
    pub last_sync_at: Option<i64>,
    /// The last sync error, if the last attempt failed.
    pub last_error: Option<String>,
    /// Visits the server refused.
    pub quarantined: Vec<QuarantinedVisit>,
}

impl From<fieldsync_core::sync::SyncStatus> for SyncStatusInfo {
    fn from(s: fieldsync_core::sync::SyncStatus) -> Self {
        Self {
            pending_changes: s.pending_changes,
            last_sync_at: s.last_sync_at,
            last_error: s.last_error,
            quarantined: s
                .quarantined
                .into_iter()
                .map(|q| QuarantinedVisit {
                    visit_id: q.visit_id,
                    reason: q.reason,
                })
                .collect(),
        }
    }
}
