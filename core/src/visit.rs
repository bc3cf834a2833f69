//! The visit as screens, KPIs and rules see it: a typed, resolved view of one visit
//! document (see [`crate::document`] for how it is stored and merged).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::error::Error;
use crate::model::Millis;

/// Where a visit is in its life.
///
/// `Planned → InProgress → Completed`; `Planned → Canceled` (with a reason);
/// `InProgress → Abandoned`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum VisitStatus {
    Planned,
    InProgress,
    Completed,
    Canceled,
    Abandoned,
}

impl VisitStatus {
    /// The stored, lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            VisitStatus::Planned => "planned",
            VisitStatus::InProgress => "in_progress",
            VisitStatus::Completed => "completed",
            VisitStatus::Canceled => "canceled",
            VisitStatus::Abandoned => "abandoned",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "planned" => VisitStatus::Planned,
            "in_progress" => VisitStatus::InProgress,
            "completed" => VisitStatus::Completed,
            "canceled" => VisitStatus::Canceled,
            "abandoned" => VisitStatus::Abandoned,
            other => return Err(Error::Corrupt(format!("unknown visit status {other:?}"))),
        })
    }

    /// Completed, canceled and abandoned visits take no more findings.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            VisitStatus::Completed | VisitStatus::Canceled | VisitStatus::Abandoned
        )
    }
}

impl std::fmt::Display for VisitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_str().replace('_', " "))
    }
}

/// The manager-owned part of a visit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VisitPlan {
    pub store_id: String,
    /// The rep who makes the visit.
    pub rep_id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub planned_start: Millis,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub planned_end: Millis,
    /// 1 (highest) to 5.
    pub priority: u8,
    pub instructions: String,
    pub template_id: String,
    /// Created by the rep on the spot rather than planned by a manager.
    pub ad_hoc: bool,
}

/// A GPS position.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GeoPoint {
    pub lat: f64,
    pub lng: f64,
}

impl GeoPoint {
    /// Whether it is a position on Earth: latitude in [-90, 90], longitude in [-180, 180]
    /// (so neither is NaN).
    pub fn on_earth(self) -> bool {
        (-90.0..=90.0).contains(&self.lat) && (-180.0..=180.0).contains(&self.lng)
    }

    /// Great-circle distance in metres (haversine, mean Earth radius 6,371,008.8 m).
    pub fn distance_m(self, other: GeoPoint) -> f64 {
        const R: f64 = 6_371_008.8;
        let (la1, la2) = (self.lat.to_radians(), other.lat.to_radians());
        let dla = la2 - la1;
        let dlo = (other.lng - self.lng).to_radians();
        let a = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
        2.0 * R * a.sqrt().asin()
    }
}

/// A check-in or check-out: when, where, and whether it was outside the store's geofence.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckPoint {
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub at: Millis,
    pub position: GeoPoint,
    /// Distance from the store's coordinates.
    pub distance_m: f64,
    /// Flagged, not refused: the rep may stand in the car park.
    pub outside_geofence: bool,
}

/// One product's inventory finding. Fields the rep did not record are `None`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InventoryLine {
    pub product_id: String,
    pub shelf_qty: Option<i64>,
    pub backroom_qty: Option<i64>,
    pub out_of_stock: Option<bool>,
    pub observed_price_cents: Option<i64>,
    pub facings: Option<i64>,
    /// Device time of the latest observation on this line.
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub observed_at: Millis,
}

impl InventoryLine {
    /// Whether the product was found out of stock: the rep's explicit toggle when set,
    /// otherwise a shelf count of zero. `None` when neither was recorded.
    pub fn is_out_of_stock(&self) -> Option<bool> {
        self.out_of_stock.or(self.shelf_qty.map(|q| q == 0))
    }
}

/// The finding for one planogram position.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PositionResult {
    pub position_id: String,
    pub present: Option<bool>,
    pub actual_facings: Option<i64>,
    pub correct_position: Option<bool>,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub observed_at: Millis,
}

/// The finding for one promotion.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PromotionCheck {
    pub promotion_id: String,
    pub display_in_place: Option<bool>,
    pub promo_price_correct: Option<bool>,
    pub materials_present: Option<bool>,
    pub observed_price_cents: Option<i64>,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub observed_at: Millis,
}

/// A survey answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum AnswerValue {
    Bool(bool),
    Number(f64),
    Text(String),
}

/// One survey answer with when it was given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SurveyAnswer {
    pub question_id: String,
    pub value: AnswerValue,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub observed_at: Millis,
}

/// One order line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderLine {
    pub product_id: String,
    pub quantity: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub observed_at: Millis,
}

/// A whole visit, resolved: where two observations of one field conflict, the later
/// device time wins here (every value stays available through
/// [`crate::document::VisitDoc::conflicts`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Visit {
    pub id: String,
    pub plan: VisitPlan,
    pub status: VisitStatus,
    pub check_in: Option<CheckPoint>,
    pub check_out: Option<CheckPoint>,
    pub cancel_reason: Option<String>,
    pub abandon_reason: Option<String>,
    pub inventory: BTreeMap<String, InventoryLine>,
    pub planogram: BTreeMap<String, PositionResult>,
    pub promotions: BTreeMap<String, PromotionCheck>,
    pub survey: BTreeMap<String, SurveyAnswer>,
    pub orders: BTreeMap<String, OrderLine>,
    /// The rep marked the order as submitted (an order task with no lines is "no order").
    pub order_submitted: bool,
    pub notes: String,
}

impl Visit {
    /// Minutes between check-in and check-out, for a checked-out visit.
    pub fn time_in_store_ms(&self) -> Option<Millis> {
        match (self.check_in, self.check_out) {
            (Some(i), Some(o)) if o.at >= i.at => Some(o.at - i.at),
            _ => None,
        }
    }
}

/// What a rep records for one inventory line; `None` leaves a field as it was, so two
/// reps recording different fields of one line both keep theirs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InventoryInput {
    pub shelf_qty: Option<i64>,
    pub backroom_qty: Option<i64>,
    pub out_of_stock: Option<bool>,
    pub observed_price_cents: Option<i64>,
    pub facings: Option<i64>,
}

/// What a rep records for one planogram position.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PositionInput {
    pub present: Option<bool>,
    pub actual_facings: Option<i64>,
    pub correct_position: Option<bool>,
}

/// What a rep records for one promotion.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PromotionInput {
    pub display_in_place: Option<bool>,
    pub promo_price_correct: Option<bool>,
    pub materials_present: Option<bool>,
    pub observed_price_cents: Option<i64>,
}

/// Who made a change: the user and the device they used.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Author {
    pub user_id: String,
    pub device_id: String,
}

/// One value of a field that was changed concurrently.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConflictValue {
    /// The value as JSON text.
    pub value: String,
    /// Device time of the change that wrote it.
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub at: Millis,
    pub author: Option<Author>,
    /// The value projections and KPIs use.
    pub winner: bool,
}

/// A field with more than one concurrent value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldConflict {
    /// e.g. `inventory/p-cola/shelf`.
    pub path: String,
    pub values: Vec<ConflictValue>,
}

/// One field written by one change: the visit's field history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldChange {
    pub path: String,
    /// The value written, as JSON text (`null` for a deletion; notes edits show the text inserted).
    pub value: String,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub at: Millis,
    pub author: Option<Author>,
    /// Hex hash of the Automerge change.
    pub change_hash: String,
}
