//! Reference data: what flows down from head office to the device, read-only there.
//!
//! Ids are opaque strings chosen by head office (`"st-0012"`, `"p-cola-330"`). Dates of
//! validity are calendar dates; instants are milliseconds since the Unix epoch (UTC).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::error::Error;
use crate::gtin::Gtin13;

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// A sales territory; reps and managers are assigned to territories, stores belong to one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Territory {
    pub id: String,
    pub name: String,
}

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A field rep: records visits in their territories.
    Rep,
    /// A manager: plans visits and reviews their territories.
    Manager,
    /// An administrator: manages users and reference data everywhere.
    Admin,
}

impl Role {
    /// The lower-case name used in APIs and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Rep => "rep",
            Role::Manager => "manager",
            Role::Admin => "admin",
        }
    }

    /// Parses `rep`, `manager` or `admin`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rep" => Ok(Role::Rep),
            "manager" => Ok(Role::Manager),
            "admin" => Ok(Role::Admin),
            other => Err(Error::invalid(format!(
                "unknown role {other:?}: use rep, manager or admin"
            ))),
        }
    }
}

/// A person who uses fieldsync.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    #[serde(default)]
    pub territory_ids: Vec<String>,
}

/// A retail store a rep visits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Store {
    pub id: String,
    pub name: String,
    pub territory_id: String,
    #[serde(default)]
    pub address: String,
    pub lat: f64,
    pub lng: f64,
    /// Check-ins farther than this from the store's coordinates are flagged.
    pub geofence_radius_m: f64,
    /// IANA time zone, e.g. `Europe/Berlin`; decides what "today" means for this store.
    pub timezone: String,
    #[serde(default)]
    pub store_group_ids: Vec<String>,
    /// 1 (highest) to 5.
    #[serde(default = "default_priority")]
    pub priority: u8,
}

fn default_priority() -> u8 {
    3
}

/// A group of stores (a chain, a format, a region) that assortments, planograms,
/// promotions and KPI targets apply to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoreGroup {
    pub id: String,
    pub name: String,
}

/// A product a store may stock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Product {
    pub id: String,
    pub gtin: Gtin13,
    pub name: String,
    #[serde(default)]
    pub brand: String,
    #[serde(default)]
    pub category: String,
    /// True for the company's own products (counted in share of shelf).
    #[serde(default = "default_true")]
    pub own_brand: bool,
    /// Target shelf price in minor currency units (cents).
    pub list_price_cents: i64,
}

fn default_true() -> bool {
    true
}

/// The products every store of the listed groups must stock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Assortment {
    pub id: String,
    pub store_group_ids: Vec<String>,
    pub product_ids: Vec<String>,
}

/// One slot of a planogram.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanogramPosition {
    pub id: String,
    pub shelf: u32,
    pub position: u32,
    pub product_id: String,
    /// Expected facings.
    pub facings: u32,
}

/// The intended shelf layout for stores of the listed groups.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Planogram {
    pub id: String,
    pub name: String,
    pub store_group_ids: Vec<String>,
    pub positions: Vec<PlanogramPosition>,
}

/// Where a promotion's display stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DisplayLocation {
    FrontEndCap,
    BackEndCap,
    InAisle,
    InShelf,
    Checkout,
    Other,
}

/// A trade promotion running in stores of the listed groups.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Promotion {
    pub id: String,
    pub name: String,
    pub product_ids: Vec<String>,
    pub promo_price_cents: i64,
    pub display_location: DisplayLocation,
    pub valid_from: NaiveDate,
    pub valid_to: NaiveDate,
    pub store_group_ids: Vec<String>,
}

impl Promotion {
    /// Whether the promotion runs on `day` (both ends inclusive).
    pub fn active_on(&self, day: NaiveDate) -> bool {
        self.valid_from <= day && day <= self.valid_to
    }
}

/// The KPIs fieldsync computes (see [`crate::kpi`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum KpiKind {
    OutOfStockRate,
    OnShelfAvailability,
    PlanogramCompliance,
    ShareOfShelf,
    PromotionCompliance,
    PriceCompliance,
    VisitCompliance,
    AverageTimeInStore,
    PerfectStoreScore,
}

/// A target value for a KPI, for a store group (or every store when `store_group_id` is
/// `None`), valid over a date range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KpiTarget {
    pub id: String,
    pub kpi: KpiKind,
    #[serde(default)]
    pub store_group_id: Option<String>,
    pub target: f64,
    pub valid_from: NaiveDate,
    pub valid_to: NaiveDate,
}

/// The kinds of task a visit can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    InventoryCheck,
    PlanogramCheck,
    PromotionCheck,
    Survey,
    Order,
}

impl TaskKind {
    /// Every task kind, in the order screens show them.
    pub const ALL: [TaskKind; 5] = [
        TaskKind::InventoryCheck,
        TaskKind::PlanogramCheck,
        TaskKind::PromotionCheck,
        TaskKind::Survey,
        TaskKind::Order,
    ];

    /// A name a rep reads ("inventory check").
    pub fn label(self) -> &'static str {
        match self {
            TaskKind::InventoryCheck => "inventory check",
            TaskKind::PlanogramCheck => "planogram check",
            TaskKind::PromotionCheck => "promotion check",
            TaskKind::Survey => "survey",
            TaskKind::Order => "order",
        }
    }
}

/// The type of answer a survey question takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AnswerType {
    Boolean,
    Number,
    Text,
}

/// One question of a survey task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SurveyQuestion {
    pub id: String,
    pub text: String,
    pub answer_type: AnswerType,
    #[serde(default)]
    pub required: bool,
}

/// One task in a template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskDefinition {
    pub kind: TaskKind,
    /// A required task blocks completing the visit while it is open.
    pub required: bool,
    /// Questions, for a survey task.
    #[serde(default)]
    pub questions: Vec<SurveyQuestion>,
}

/// The set of tasks a visit holds (the industry's action plan template).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskTemplate {
    pub id: String,
    pub name: String,
    pub tasks: Vec<TaskDefinition>,
}

impl TaskTemplate {
    /// The definition of `kind` in this template, if the template has that task.
    pub fn task(&self, kind: TaskKind) -> Option<&TaskDefinition> {
        self.tasks.iter().find(|t| t.kind == kind)
    }
}

/// Weights of the perfect-store score's components and the price tolerance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KpiSettings {
    /// An observed price within this fraction of the target counts as compliant (0.05 = ±5 %).
    pub price_tolerance: f64,
    pub weight_on_shelf_availability: f64,
    pub weight_planogram: f64,
    pub weight_promotion: f64,
    pub weight_price: f64,
}

impl Default for KpiSettings {
    fn default() -> Self {
        Self {
            price_tolerance: 0.05,
            weight_on_shelf_availability: 0.4,
            weight_planogram: 0.2,
            weight_promotion: 0.2,
            weight_price: 0.2,
        }
    }
}

/// Everything the device needs to know that it does not record itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReferenceData {
    /// Increases whenever head office changes anything.
    #[serde(default)]
    pub version: i64,
    #[serde(default)]
    pub territories: Vec<Territory>,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub stores: Vec<Store>,
    #[serde(default)]
    pub store_groups: Vec<StoreGroup>,
    #[serde(default)]
    pub products: Vec<Product>,
    #[serde(default)]
    pub assortments: Vec<Assortment>,
    #[serde(default)]
    pub planograms: Vec<Planogram>,
    #[serde(default)]
    pub promotions: Vec<Promotion>,
    #[serde(default)]
    pub kpi_targets: Vec<KpiTarget>,
    #[serde(default)]
    pub task_templates: Vec<TaskTemplate>,
    #[serde(default)]
    pub settings: KpiSettings,
}

impl ReferenceData {
    /// This data with each of `stores` it does not list added, in only the store groups it
    /// lists. The data a visit is judged by when the data in effect then does not list its
    /// store (head office closed it before the rep worked the visit offline): everything of
    /// that time, and the store as it was last listed. The phone keeps a closed store this
    /// way while it holds a visit there, and the dashboard judges such a visit the same.
    pub fn with_stores<'a>(&self, stores: impl IntoIterator<Item = &'a Store>) -> ReferenceData {
        let mut listed: HashSet<&str> = self.stores.iter().map(|s| s.id.as_str()).collect();
        let groups: HashSet<&str> = self.store_groups.iter().map(|g| g.id.as_str()).collect();
        let mut added = Vec::new();
        for s in stores {
            if !listed.insert(s.id.as_str()) {
                continue;
            }
            let mut s = s.clone();
            s.store_group_ids.retain(|g| groups.contains(g.as_str()));
            added.push(s);
        }
        let mut out = self.clone();
        out.stores.extend(added);
        out
    }

    /// Delists product `id` everywhere: from the products, the assortments, the planograms
    /// (its positions) and the promotions (a promotion of no other product goes).
    pub fn delist_product(&mut self, id: &str) {
        self.products.retain(|p| p.id != id);
        for a in &mut self.assortments {
            a.product_ids.retain(|p| p != id);
        }
        for pg in &mut self.planograms {
            pg.positions.retain(|p| p.product_id != id);
        }
        for promo in &mut self.promotions {
            promo.product_ids.retain(|p| p != id);
        }
        self.promotions.retain(|p| !p.product_ids.is_empty());
    }

    /// Checks that the data hangs together: ids unique, references resolve, coordinates,
    /// radii, time zones, prices and dates make sense. Returns every problem found.
    pub fn validate(&self) -> Result<(), Error> {
        let mut problems = Vec::new();
        let territories = unique_ids(
            &mut problems,
            "territory",
            self.territories.iter().map(|t| &t.id),
        );
        let groups = unique_ids(
            &mut problems,
            "store group",
            self.store_groups.iter().map(|g| &g.id),
        );
        let products = unique_ids(
            &mut problems,
            "product",
            self.products.iter().map(|p| &p.id),
        );
        unique_ids(&mut problems, "user", self.users.iter().map(|u| &u.id));
        unique_ids(&mut problems, "store", self.stores.iter().map(|s| &s.id));
        unique_ids(
            &mut problems,
            "assortment",
            self.assortments.iter().map(|a| &a.id),
        );
        unique_ids(
            &mut problems,
            "planogram",
            self.planograms.iter().map(|p| &p.id),
        );
        unique_ids(
            &mut problems,
            "promotion",
            self.promotions.iter().map(|p| &p.id),
        );
        unique_ids(
            &mut problems,
            "task template",
            self.task_templates.iter().map(|t| &t.id),
        );

        for u in &self.users {
            for t in &u.territory_ids {
                if !territories.contains(t.as_str()) {
                    problems.push(format!("user {}: unknown territory {t}", u.id));
                }
            }
        }
        for s in &self.stores {
            problems.extend(store_problems(s, &territories, &groups));
        }
        for p in &self.products {
            if p.list_price_cents < 0 {
                problems.push(format!("product {}: negative list price", p.id));
            }
        }
        for a in &self.assortments {
            check_refs(
                &mut problems,
                "assortment",
                &a.id,
                "store group",
                &a.store_group_ids,
                &groups,
            );
            check_refs(
                &mut problems,
                "assortment",
                &a.id,
                "product",
                &a.product_ids,
                &products,
            );
        }
        for pg in &self.planograms {
            check_refs(
                &mut problems,
                "planogram",
                &pg.id,
                "store group",
                &pg.store_group_ids,
                &groups,
            );
            let mut seen = HashSet::new();
            for pos in &pg.positions {
                if !seen.insert(pos.id.as_str()) {
                    problems.push(format!(
                        "planogram {}: duplicate position {}",
                        pg.id, pos.id
                    ));
                }
                if !products.contains(pos.product_id.as_str()) {
                    problems.push(format!(
                        "planogram {} position {}: unknown product {}",
                        pg.id, pos.id, pos.product_id
                    ));
                }
            }
        }
        for pr in &self.promotions {
            check_refs(
                &mut problems,
                "promotion",
                &pr.id,
                "store group",
                &pr.store_group_ids,
                &groups,
            );
            check_refs(
                &mut problems,
                "promotion",
                &pr.id,
                "product",
                &pr.product_ids,
                &products,
            );
            if pr.valid_to < pr.valid_from {
                problems.push(format!(
                    "promotion {}: valid_to is before valid_from",
                    pr.id
                ));
            }
            if pr.promo_price_cents < 0 {
                problems.push(format!("promotion {}: negative promo price", pr.id));
            }
        }
        for kt in &self.kpi_targets {
            if let Some(g) = &kt.store_group_id
                && !groups.contains(g.as_str())
            {
                problems.push(format!("KPI target {}: unknown store group {g}", kt.id));
            }
        }
        let s = &self.settings;
        if !(0.0..=1.0).contains(&s.price_tolerance) {
            problems.push("settings: price_tolerance must be between 0 and 1".into());
        }
        let weights = [
            s.weight_on_shelf_availability,
            s.weight_planogram,
            s.weight_promotion,
            s.weight_price,
        ];
        if weights.iter().any(|w| !w.is_finite() || *w < 0.0) || weights.iter().sum::<f64>() <= 0.0
        {
            problems.push(
                "settings: perfect-store weights must be non-negative and not all zero".into(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidReferenceData { problems })
        }
    }

    /// Builds lookup maps over this data.
    pub fn index(&self) -> ReferenceIndex<'_> {
        ReferenceIndex::new(self)
    }
}

/// Problems with one store record (shared with the server's CSV importer).
pub fn store_problems(
    s: &Store,
    territories: &HashSet<&str>,
    groups: &HashSet<&str>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if !territories.contains(s.territory_id.as_str()) {
        problems.push(format!(
            "store {}: unknown territory {}",
            s.id, s.territory_id
        ));
    }
    if !(-90.0..=90.0).contains(&s.lat) || !(-180.0..=180.0).contains(&s.lng) {
        problems.push(format!("store {}: coordinates out of range", s.id));
    }
    if !(s.geofence_radius_m.is_finite() && s.geofence_radius_m > 0.0) {
        problems.push(format!("store {}: geofence radius must be positive", s.id));
    }
    if !crate::tz::is_known(&s.timezone) {
        problems.push(format!(
            "store {}: unknown time zone {:?}",
            s.id, s.timezone
        ));
    }
    for g in &s.store_group_ids {
        if !groups.contains(g.as_str()) {
            problems.push(format!("store {}: unknown store group {g}", s.id));
        }
    }
    problems
}

fn unique_ids<'a>(
    problems: &mut Vec<String>,
    what: &str,
    ids: impl Iterator<Item = &'a String>,
) -> HashSet<&'a str> {
    let mut set = HashSet::new();
    for id in ids {
        if id.trim().is_empty() {
            problems.push(format!("{what} with an empty id"));
        } else if !set.insert(id.as_str()) {
            problems.push(format!("duplicate {what} id {id}"));
        }
    }
    set
}

fn check_refs(
    problems: &mut Vec<String>,
    owner_kind: &str,
    owner: &str,
    what: &str,
    refs: &[String],
    known: &HashSet<&str>,
) {
    for r in refs {
        if !known.contains(r.as_str()) {
            problems.push(format!("{owner_kind} {owner}: unknown {what} {r}"));
        }
    }
}

/// Lookups over [`ReferenceData`] by id and by store.
#[derive(Debug)]
pub struct ReferenceIndex<'a> {
    pub data: &'a ReferenceData,
    pub stores: HashMap<&'a str, &'a Store>,
    pub products: HashMap<&'a str, &'a Product>,
    pub templates: HashMap<&'a str, &'a TaskTemplate>,
    pub promotions: HashMap<&'a str, &'a Promotion>,
}

impl<'a> ReferenceIndex<'a> {
    fn new(data: &'a ReferenceData) -> Self {
        Self {
            data,
            stores: data.stores.iter().map(|s| (s.id.as_str(), s)).collect(),
            products: data.products.iter().map(|p| (p.id.as_str(), p)).collect(),
            templates: data
                .task_templates
                .iter()
                .map(|t| (t.id.as_str(), t))
                .collect(),
            promotions: data.promotions.iter().map(|p| (p.id.as_str(), p)).collect(),
        }
    }

    /// The store with this id, or a `NotFound` error naming it.
    pub fn store(&self, id: &str) -> Result<&'a Store, Error> {
        self.stores
            .get(id)
            .copied()
            .ok_or_else(|| Error::not_found("store", id))
    }

    /// The product with this id, or a `NotFound` error naming it.
    pub fn product(&self, id: &str) -> Result<&'a Product, Error> {
        self.products
            .get(id)
            .copied()
            .ok_or_else(|| Error::not_found("product", id))
    }

    fn in_groups(store: &Store, groups: &[String]) -> bool {
        groups.iter().any(|g| store.store_group_ids.contains(g))
    }

    /// Products the store must stock, sorted by id (the union of its groups' assortments).
    pub fn assortment_for(&self, store: &Store) -> Vec<&'a str> {
        let mut ids: Vec<&str> = self
            .data
            .assortments
            .iter()
            .filter(|a| Self::in_groups(store, &a.store_group_ids))
            .flat_map(|a| a.product_ids.iter().map(String::as_str))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The planogram that applies to the store (the first listed for any of its groups).
    pub fn planogram_for(&self, store: &Store) -> Option<&'a Planogram> {
        self.data
            .planograms
            .iter()
            .find(|p| Self::in_groups(store, &p.store_group_ids))
    }

    /// Promotions running in the store on `day`.
    pub fn promotions_for(&self, store: &Store, day: NaiveDate) -> Vec<&'a Promotion> {
        self.data
            .promotions
            .iter()
            .filter(|p| p.active_on(day) && Self::in_groups(store, &p.store_group_ids))
            .collect()
    }

    /// The KPI targets for the store on `day`, one per KPI (a group-specific target wins
    /// over a target for every store).
    pub fn targets_for(&self, store: &Store, day: NaiveDate) -> BTreeMap<KpiKind, f64> {
        let mut out = BTreeMap::new();
        let valid = |t: &&KpiTarget| t.valid_from <= day && day <= t.valid_to;
        for t in self
            .data
            .kpi_targets
            .iter()
            .filter(valid)
            .filter(|t| t.store_group_id.is_none())
        {
            out.insert(t.kpi, t.target);
        }
        for t in self.data.kpi_targets.iter().filter(valid) {
            if let Some(g) = &t.store_group_id
                && store.store_group_ids.contains(g)
            {
                out.insert(t.kpi, t.target);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    /// Reference data is kept and sent as JSON (the phone's and the server's kept
    /// versions): a store's coordinates must come back as the same numbers, or a version
    /// read back differs from the one held (serde_json's `float_roundtrip`; without it this
    /// longitude came back one unit in the last place off).
    #[test]
    fn coordinates_survive_a_json_round_trip_exactly() {
        for x in [13.505190170151721_f64, 52.44751824417923, -0.1, 1e-300] {
            let back: f64 = serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap();
            assert_eq!(back.to_bits(), x.to_bits(), "{x}");
        }
    }
}
