//! The KPI engine: one implementation for the device and the server, so the dashboard's
//! numbers equal the phone's.
//!
//! Every ratio KPI is kept as a [`Ratio`] — a numerator and a denominator — and never as a
//! percentage. Over many visits the numerators are summed and the denominators are summed
//! (as `DOMAIN.md` prescribes); per-visit percentages are never averaged. Two visits with
//! "1 of 4 out of stock" and "1 of 2 out of stock" give 2 of 6 (33 %), not the 37.5 %
//! mean of 25 % and 50 %.
//!
//! Entry points:
//!
//! * [`visit_kpis`] — the KPIs of one visit ([`VisitKpis`]).
//! * [`summarize`] — the KPIs of a set of visits ([`KpiSummary`]); [`KpiSummary::aggregate`]
//!   does the same from already computed [`VisitKpis`] (e.g. rows the server stored).
//!
//! Which findings count:
//!
//! * The store-dependent KPIs (out-of-stock, on-shelf availability, planogram, promotion
//!   and price compliance) need the visit's store in the reference data; for a visit whose
//!   store id is unknown they are empty (0 ÷ 0) rather than an error.
//! * The store's **local day** of a visit is `plan.planned_start` converted to the store's
//!   IANA time zone (UTC when the zone does not parse); it decides which promotions are
//!   active ([`store_local_day`]).
//! * A summary counts the findings of every visit it is given, whatever its status (an
//!   abandoned visit's audits are still observations); filter the visits beforehand to
//!   report on completed visits only.
//!
//! Everything here is pure: no I/O, no clock (the caller passes `as_of`).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::{Add, AddAssign};

use crate::model::{KpiKind, KpiSettings, Millis, ReferenceIndex, Store};
use crate::visit::{Visit, VisitStatus};

/// A fraction kept as its two counts, so it aggregates by summing both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ratio {
    pub numerator: u64,
    pub denominator: u64,
}

impl Ratio {
    /// 0 ÷ 0: no data.
    pub const EMPTY: Ratio = Ratio {
        numerator: 0,
        denominator: 0,
    };

    /// `numerator ÷ denominator`.
    pub const fn new(numerator: u64, denominator: u64) -> Self {
        Self {
            numerator,
            denominator,
        }
    }

    /// `numerator ÷ denominator`, or `None` when the denominator is 0 (never NaN).
    pub fn value(self) -> Option<f64> {
        (self.denominator != 0).then(|| self.numerator as f64 / self.denominator as f64)
    }

    /// [`Ratio::value`] × 100.
    pub fn percent(self) -> Option<f64> {
        self.value().map(|v| v * 100.0)
    }

    /// True when there is no data (denominator 0).
    pub fn is_empty(self) -> bool {
        self.denominator == 0
    }

    /// `(denominator − numerator) ÷ denominator`: the complementary fraction (e.g. on-shelf
    /// availability from out-of-stock).
    pub fn complement(self) -> Self {
        Self::new(
            self.denominator.saturating_sub(self.numerator),
            self.denominator,
        )
    }

    /// Adds one observation: the denominator grows by 1, the numerator by 1 when `hit`.
    pub fn count(&mut self, hit: bool) {
        self.denominator += 1;
        self.numerator += u64::from(hit);
    }
}

impl Add for Ratio {
    type Output = Ratio;

    /// Sums numerators and sums denominators.
    fn add(self, rhs: Ratio) -> Ratio {
        Ratio::new(
            self.numerator + rhs.numerator,
            self.denominator + rhs.denominator,
        )
    }
}

impl AddAssign for Ratio {
    fn add_assign(&mut self, rhs: Ratio) {
        *self = *self + rhs;
    }
}

impl std::iter::Sum for Ratio {
    fn sum<I: Iterator<Item = Ratio>>(iter: I) -> Ratio {
        iter.fold(Ratio::EMPTY, Add::add)
    }
}

/// Time spent in store, kept as a sum and a count so it aggregates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimeInStore {
    /// Σ (check_out.at − check_in.at) in milliseconds.
    pub total_ms: i64,
    /// Completed visits with both a check-in and a check-out (check-out not before check-in).
    pub visits: u64,
}

impl TimeInStore {
    /// Average time in store = `total_ms ÷ visits`, in milliseconds; `None` with no visits.
    pub fn mean_ms(self) -> Option<f64> {
        (self.visits != 0).then(|| self.total_ms as f64 / self.visits as f64)
    }

    /// [`TimeInStore::mean_ms`] in minutes.
    pub fn mean_minutes(self) -> Option<f64> {
        self.mean_ms().map(|ms| ms / 60_000.0)
    }
}

impl Add for TimeInStore {
    type Output = TimeInStore;

    fn add(self, rhs: TimeInStore) -> TimeInStore {
        TimeInStore {
            total_ms: self.total_ms.saturating_add(rhs.total_ms),
            visits: self.visits + rhs.visits,
        }
    }
}

impl AddAssign for TimeInStore {
    fn add_assign(&mut self, rhs: TimeInStore) {
        *self = *self + rhs;
    }
}

/// The in-store audit KPIs: what the rep found on the shelf. Shared by [`VisitKpis`] and
/// [`KpiSummary`]; adding two of these sums every numerator and denominator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditKpis {
    /// Out-of-stock rate = assortment products audited and found out of stock ÷ assortment
    /// products audited.
    ///
    /// The assortment is the store's ([`ReferenceIndex::assortment_for`]). A product is
    /// audited when the visit has an inventory line for it whose
    /// [`is_out_of_stock`](crate::visit::InventoryLine::is_out_of_stock) is `Some` (the
    /// rep's out-of-stock toggle, else shelf quantity = 0). Lines for products outside the
    /// assortment are ignored.
    pub out_of_stock: Ratio,
    /// On-shelf availability = 1 − out-of-stock rate = assortment products audited and
    /// found in stock ÷ assortment products audited (same denominator as `out_of_stock`).
    pub on_shelf_availability: Ratio,
    /// Planogram compliance = positions audited and found correct ÷ positions audited.
    ///
    /// Positions are those of the store's planogram ([`ReferenceIndex::planogram_for`]);
    /// results for other position ids are ignored. A position is audited when any of
    /// `present`, `actual_facings`, `correct_position` is `Some`. It is correct when
    /// `present == Some(true)` and `correct_position == Some(true)` and
    /// `actual_facings == Some(f)` with `f ≥` the position's expected facings; anything
    /// unrecorded counts as not correct.
    pub planogram_compliance: Ratio,
    /// Share of shelf = own-brand facings ÷ all facings, summed over the categories present.
    ///
    /// Facings come from inventory lines with `facings == Some(f)` (negative counts as 0)
    /// for products known to the reference data (brand and category from
    /// [`Product`](crate::model::Product); lines for unknown products are ignored). A
    /// category is present when at least one own-brand product of it has facings recorded
    /// (even 0); competitor facings in categories where none of the company's products was
    /// counted are left out. The result is in [0, 1]. Does not depend on the store.
    pub share_of_shelf: Ratio,
    /// Share of shelf per category present: own-brand facings in the category ÷ all
    /// facings in the category (same rules as `share_of_shelf`, whose numerator and
    /// denominator are the sums of these).
    pub share_of_shelf_by_category: BTreeMap<String, Ratio>,
    /// Promotion compliance = promotions audited with `display_in_place`,
    /// `promo_price_correct` and `materials_present` all `Some(true)` ÷ promotions audited.
    ///
    /// Only promotions running in the store on the visit's local day count
    /// ([`ReferenceIndex::promotions_for`]). A promotion is audited when its check has any
    /// of `display_in_place`, `promo_price_correct`, `materials_present`,
    /// `observed_price_cents` recorded.
    pub promotion_compliance: Ratio,
    /// Price compliance = inventory lines with an observed price within tolerance of the
    /// target ÷ inventory lines with an observed price.
    ///
    /// Only lines for products known to the reference data count. The target is the lowest
    /// `promo_price_cents` among the promotions running in the store on the visit's local
    /// day that include the product, else the product's `list_price_cents`. Within
    /// tolerance means `|observed − target| ≤ price_tolerance × target` (both ends
    /// inclusive; `price_tolerance` from [`KpiSettings`]).
    pub price_compliance: Ratio,
}

impl AuditKpis {
    /// Perfect-store score = Σ (weight × component value) ÷ Σ weight × 100, over the
    /// components on-shelf availability, planogram compliance, promotion compliance and
    /// price compliance, weighted by [`KpiSettings`]. See [`perfect_store_score`].
    pub fn perfect_store_score(&self, settings: &KpiSettings) -> Option<f64> {
        perfect_store_score(
            settings,
            self.on_shelf_availability,
            self.planogram_compliance,
            self.promotion_compliance,
            self.price_compliance,
        )
    }
}

impl AddAssign<&AuditKpis> for AuditKpis {
    fn add_assign(&mut self, rhs: &AuditKpis) {
        self.out_of_stock += rhs.out_of_stock;
        self.on_shelf_availability += rhs.on_shelf_availability;
        self.planogram_compliance += rhs.planogram_compliance;
        self.share_of_shelf += rhs.share_of_shelf;
        for (category, r) in &rhs.share_of_shelf_by_category {
            *self
                .share_of_shelf_by_category
                .entry(category.clone())
                .or_default() += *r;
        }
        self.promotion_compliance += rhs.promotion_compliance;
        self.price_compliance += rhs.price_compliance;
    }
}

/// Perfect-store score = Σ (weight × component value) ÷ Σ weight × 100.
///
/// The components are on-shelf availability (`weight_on_shelf_availability`), planogram
/// compliance (`weight_planogram`), promotion compliance (`weight_promotion`) and price
/// compliance (`weight_price`); a component's value is its [`Ratio::value`] in [0, 1].
/// A component with no data (denominator 0) is left out of both sums, and so is one whose
/// weight is not a finite positive number. `None` when no component is left. The result
/// is in [0, 100].
pub fn perfect_store_score(
    settings: &KpiSettings,
    on_shelf_availability: Ratio,
    planogram: Ratio,
    promotion: Ratio,
    price: Ratio,
) -> Option<f64> {
    let components = [
        (on_shelf_availability, settings.weight_on_shelf_availability),
        (planogram, settings.weight_planogram),
        (promotion, settings.weight_promotion),
        (price, settings.weight_price),
    ];
    let (mut weighted, mut weights) = (0.0, 0.0);
    for (ratio, weight) in components {
        let Some(v) = ratio.value() else { continue };
        if weight.is_finite() && weight > 0.0 {
            weighted += weight * v;
            weights += weight;
        }
    }
    (weights > 0.0).then(|| weighted / weights * 100.0)
}

/// The store's local calendar day at `at`: `at` converted to the store's IANA time zone
/// (`Store::timezone`), or to UTC when the zone does not parse. `None` only when `at` is
/// outside chrono's range.
pub fn store_local_day(store: &Store, at: Millis) -> Option<NaiveDate> {
    let utc = DateTime::<Utc>::from_timestamp_millis(at)?;
    Some(crate::tz::local_date(&store.timezone, utc).unwrap_or_else(|| utc.date_naive()))
}

/// Visit compliance of one visit, as 0 ÷ 0, 0 ÷ 1 or 1 ÷ 1, judged at `as_of`.
///
/// * Denominator (the visit is *due*): the visit is planned (`plan.ad_hoc == false`) and
///   either its status is final (completed, canceled, abandoned) or its window has closed
///   (`plan.planned_end < as_of`). Ad-hoc visits and planned visits whose window is still
///   open and that are not final count nowhere.
/// * Numerator: a due visit that is completed and whose check-in time lies in its planned
///   window, `plan.planned_start ≤ check_in.at ≤ plan.planned_end`.
///
/// So canceled, abandoned and missed (still planned or in progress after the window)
/// visits count as not compliant, as does a completed visit checked in outside its window.
pub fn visit_compliance(visit: &Visit, as_of: Millis) -> Ratio {
    visit_compliance_of(
        visit.plan.ad_hoc,
        visit.status,
        visit.plan.planned_start,
        visit.plan.planned_end,
        visit.check_in.map(|c| c.at),
        as_of,
    )
}

fn visit_compliance_of(
    ad_hoc: bool,
    status: VisitStatus,
    planned_start: Millis,
    planned_end: Millis,
    check_in_at: Option<Millis>,
    as_of: Millis,
) -> Ratio {
    let due = !ad_hoc && (status.is_final() || planned_end < as_of);
    if !due {
        return Ratio::EMPTY;
    }
    let in_window = check_in_at.is_some_and(|at| planned_start <= at && at <= planned_end);
    Ratio::new(u64::from(status == VisitStatus::Completed && in_window), 1)
}

/// The KPIs of one visit. Everything here aggregates (see [`KpiSummary::aggregate`]); it
/// also carries the plan facts visit compliance needs, so stored rows can be summarized
/// later without the visit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VisitKpis {
    pub visit_id: String,
    pub store_id: String,
    pub rep_id: String,
    pub status: VisitStatus,
    pub ad_hoc: bool,
    pub planned_start: Millis,
    pub planned_end: Millis,
    /// `check_in.at`, if checked in.
    pub check_in_at: Option<Millis>,
    /// Whether the store id was found in the reference data; when not, the store-dependent
    /// KPIs are empty.
    pub store_known: bool,
    /// The store's local day of `planned_start` ([`store_local_day`]); `None` when the
    /// store is unknown.
    pub local_day: Option<NaiveDate>,
    pub audit: AuditKpis,
    /// For a completed visit with check-in and check-out (check-out not before
    /// check-in): that one duration; else empty.
    pub time_in_store: TimeInStore,
    /// Strike rate = completed visits with at least one order line of quantity > 0 ÷
    /// completed visits. For one visit: 0 ÷ 0 unless completed, then 1 ÷ 1 or 0 ÷ 1.
    /// (`order_submitted` is not consulted: the lines are the order.)
    pub strike_rate: Ratio,
    /// Lines per productive call = order lines with quantity > 0 on productive calls ÷
    /// productive calls, where a productive call is a completed visit with at least one
    /// such line (the numerator of `strike_rate`). For one visit: n ÷ 1 for a productive
    /// call with n lines, else 0 ÷ 0. May exceed 1.
    pub lines_per_productive_call: Ratio,
    /// [`AuditKpis::perfect_store_score`] of this visit with the reference data's settings.
    pub perfect_store_score: Option<f64>,
}

impl VisitKpis {
    /// This visit's [`visit_compliance`] at `as_of`.
    pub fn visit_compliance(&self, as_of: Millis) -> Ratio {
        visit_compliance_of(
            self.ad_hoc,
            self.status,
            self.planned_start,
            self.planned_end,
            self.check_in_at,
            as_of,
        )
    }

    /// The value of `kind` for this visit: ratios as a fraction in [0, 1] (share of shelf
    /// too), the perfect-store score in [0, 100], average time in store in milliseconds,
    /// visit compliance judged at `as_of`. `None` without data.
    pub fn value(&self, kind: KpiKind, as_of: Millis) -> Option<f64> {
        match kind {
            KpiKind::VisitCompliance => self.visit_compliance(as_of).value(),
            KpiKind::AverageTimeInStore => self.time_in_store.mean_ms(),
            KpiKind::PerfectStoreScore => self.perfect_store_score,
            other => audit_value(&self.audit, other),
        }
    }
}

fn audit_value(audit: &AuditKpis, kind: KpiKind) -> Option<f64> {
    match kind {
        KpiKind::OutOfStockRate => audit.out_of_stock.value(),
        KpiKind::OnShelfAvailability => audit.on_shelf_availability.value(),
        KpiKind::PlanogramCompliance => audit.planogram_compliance.value(),
        KpiKind::ShareOfShelf => audit.share_of_shelf.value(),
        KpiKind::PromotionCompliance => audit.promotion_compliance.value(),
        KpiKind::PriceCompliance => audit.price_compliance.value(),
        KpiKind::VisitCompliance | KpiKind::AverageTimeInStore | KpiKind::PerfectStoreScore => None,
    }
}

/// Computes the KPIs of one visit against the reference data. Never panics: an unknown
/// store leaves the store-dependent KPIs empty, unknown products are skipped.
pub fn visit_kpis(visit: &Visit, refs: &ReferenceIndex<'_>) -> VisitKpis {
    let store = refs.stores.get(visit.plan.store_id.as_str()).copied();
    let local_day = store.and_then(|s| store_local_day(s, visit.plan.planned_start));

    let mut audit = AuditKpis::default();
    share_of_shelf(visit, refs, &mut audit);
    if let Some(store) = store {
        availability(visit, refs, store, &mut audit);
        planogram(visit, refs, store, &mut audit);
        let running = local_day
            .map(|d| refs.promotions_for(store, d))
            .unwrap_or_default();
        promotions(visit, &running, &mut audit);
        prices(visit, refs, &running, &mut audit);
    }

    let completed = visit.status == VisitStatus::Completed;
    let time_in_store = match visit.time_in_store_ms() {
        Some(ms) if completed => TimeInStore {
            total_ms: ms,
            visits: 1,
        },
        _ => TimeInStore::default(),
    };
    let lines = visit.orders.values().filter(|l| l.quantity > 0).count() as u64;
    let productive = completed && lines > 0;
    let strike_rate = if completed {
        Ratio::new(u64::from(productive), 1)
    } else {
        Ratio::EMPTY
    };
    let lines_per_productive_call = if productive {
        Ratio::new(lines, 1)
    } else {
        Ratio::EMPTY
    };
    let perfect_store_score = audit.perfect_store_score(&refs.data.settings);

    VisitKpis {
        visit_id: visit.id.clone(),
        store_id: visit.plan.store_id.clone(),
        rep_id: visit.plan.rep_id.clone(),
        status: visit.status,
        ad_hoc: visit.plan.ad_hoc,
        planned_start: visit.plan.planned_start,
        planned_end: visit.plan.planned_end,
        check_in_at: visit.check_in.map(|c| c.at),
        store_known: store.is_some(),
        local_day,
        audit,
        time_in_store,
        strike_rate,
        lines_per_productive_call,
        perfect_store_score,
    }
}

fn availability(visit: &Visit, refs: &ReferenceIndex<'_>, store: &Store, audit: &mut AuditKpis) {
    let mut oos = Ratio::EMPTY;
    for product_id in refs.assortment_for(store) {
        if let Some(out) = visit
            .inventory
            .get(product_id)
            .and_then(|l| l.is_out_of_stock())
        {
            oos.count(out);
        }
    }
    audit.out_of_stock = oos;
    audit.on_shelf_availability = oos.complement();
}

fn planogram(visit: &Visit, refs: &ReferenceIndex<'_>, store: &Store, audit: &mut AuditKpis) {
    let Some(planogram) = refs.planogram_for(store) else {
        return;
    };
    let mut seen = HashSet::new();
    for pos in &planogram.positions {
        if !seen.insert(pos.id.as_str()) {
            continue; // a duplicate position id is one position
        }
        let Some(r) = visit.planogram.get(&pos.id) else {
            continue;
        };
        let audited =
            r.present.is_some() || r.actual_facings.is_some() || r.correct_position.is_some();
        if audited {
            let correct = r.present == Some(true)
                && r.correct_position == Some(true)
                && r.actual_facings
                    .is_some_and(|f| f >= i64::from(pos.facings));
            audit.planogram_compliance.count(correct);
        }
    }
}

fn share_of_shelf(visit: &Visit, refs: &ReferenceIndex<'_>, audit: &mut AuditKpis) {
    let mut by_category: BTreeMap<&str, Ratio> = BTreeMap::new();
    let mut present: BTreeSet<&str> = BTreeSet::new();
    for line in visit.inventory.values() {
        let (Some(facings), Some(product)) =
            (line.facings, refs.products.get(line.product_id.as_str()))
        else {
            continue;
        };
        let facings = u64::try_from(facings).unwrap_or(0);
        let r = by_category.entry(product.category.as_str()).or_default();
        r.denominator += facings;
        if product.own_brand {
            r.numerator += facings;
            present.insert(product.category.as_str());
        }
    }
    for (category, r) in by_category {
        if present.contains(category) {
            audit.share_of_shelf += r;
            audit
                .share_of_shelf_by_category
                .insert(category.to_string(), r);
        }
    }
}

fn promotions(visit: &Visit, running: &[&crate::model::Promotion], audit: &mut AuditKpis) {
    let mut seen = HashSet::new();
    for promo in running {
        if !seen.insert(promo.id.as_str()) {
            continue;
        }
        let Some(c) = visit.promotions.get(&promo.id) else {
            continue;
        };
        let audited = c.display_in_place.is_some()
            || c.promo_price_correct.is_some()
            || c.materials_present.is_some()
            || c.observed_price_cents.is_some();
        if audited {
            let compliant = c.display_in_place == Some(true)
                && c.promo_price_correct == Some(true)
                && c.materials_present == Some(true);
            audit.promotion_compliance.count(compliant);
        }
    }
}

fn prices(
    visit: &Visit,
    refs: &ReferenceIndex<'_>,
    running: &[&crate::model::Promotion],
    audit: &mut AuditKpis,
) {
    let tolerance = refs.data.settings.price_tolerance;
    for line in visit.inventory.values() {
        let (Some(observed), Some(product)) = (
            line.observed_price_cents,
            refs.products.get(line.product_id.as_str()),
        ) else {
            continue;
        };
        let target = running
            .iter()
            .filter(|p| p.product_ids.contains(&product.id))
            .map(|p| p.promo_price_cents)
            .min()
            .unwrap_or(product.list_price_cents);
        audit
            .price_compliance
            .count(within_tolerance(observed, target, tolerance));
    }
}

/// `|observed − target| ≤ tolerance × |target|`, with a guard against floating-point
/// rounding at the boundary (prices are whole cents, so 1e-6 cents of slack changes no
/// real comparison).
fn within_tolerance(observed: i64, target: i64, tolerance: f64) -> bool {
    let diff = observed.abs_diff(target) as f64;
    diff <= tolerance * target.unsigned_abs() as f64 + 1e-6
}

/// How many visits a summary covers, by status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VisitCounts {
    /// Every visit summarized.
    pub total: u64,
    /// Ad-hoc visits (any status); they are also counted under their status.
    pub ad_hoc: u64,
    /// Status planned (not started yet).
    pub planned: u64,
    pub in_progress: u64,
    pub completed: u64,
    pub canceled: u64,
    pub abandoned: u64,
    /// Visits whose store id is not in the reference data (their store-dependent KPIs are
    /// empty).
    pub unknown_store: u64,
}

impl VisitCounts {
    fn add(&mut self, k: &VisitKpis) {
        self.total += 1;
        self.ad_hoc += u64::from(k.ad_hoc);
        match k.status {
            VisitStatus::Planned => self.planned += 1,
            VisitStatus::InProgress => self.in_progress += 1,
            VisitStatus::Completed => self.completed += 1,
            VisitStatus::Canceled => self.canceled += 1,
            VisitStatus::Abandoned => self.abandoned += 1,
        }
        self.unknown_store += u64::from(!k.store_known);
    }

    fn merge(&mut self, o: &VisitCounts) {
        self.total += o.total;
        self.ad_hoc += o.ad_hoc;
        self.planned += o.planned;
        self.in_progress += o.in_progress;
        self.completed += o.completed;
        self.canceled += o.canceled;
        self.abandoned += o.abandoned;
        self.unknown_store += o.unknown_store;
    }
}

/// The KPIs of a set of visits: every ratio is the sum of the visits' numerators over the
/// sum of their denominators.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KpiSummary {
    /// The instant visit compliance was judged at.
    pub as_of: Millis,
    pub counts: VisitCounts,
    /// Σ of the visits' [`VisitKpis::audit`].
    pub audit: AuditKpis,
    /// Σ of the visits' [`visit_compliance`] at `as_of`: planned visits completed with
    /// check-in in their window ÷ planned visits that are due (final, or window closed
    /// before `as_of`).
    pub visit_compliance: Ratio,
    /// Average time in store = Σ (check_out.at − check_in.at) ÷ number of completed visits
    /// with both ([`TimeInStore::mean_ms`]).
    pub time_in_store: TimeInStore,
    /// Strike rate = completed visits with an order line of quantity > 0 ÷ completed visits.
    pub strike_rate: Ratio,
    /// Lines per productive call = order lines with quantity > 0 on productive calls ÷
    /// productive calls (completed visits with such a line).
    pub lines_per_productive_call: Ratio,
    /// Perfect-store score of the aggregated audit ratios ([`AuditKpis::perfect_store_score`]
    /// of `audit`, not a mean of per-visit scores), with the settings given when built.
    pub perfect_store_score: Option<f64>,
}

impl KpiSummary {
    /// An empty summary (no visits; every KPI `None`).
    pub fn empty(as_of: Millis) -> Self {
        Self {
            as_of,
            counts: VisitCounts::default(),
            audit: AuditKpis::default(),
            visit_compliance: Ratio::EMPTY,
            time_in_store: TimeInStore::default(),
            strike_rate: Ratio::EMPTY,
            lines_per_productive_call: Ratio::EMPTY,
            perfect_store_score: None,
        }
    }

    /// Summarizes already computed per-visit KPIs (each from [`visit_kpis`]), judging visit
    /// compliance at `as_of` and scoring with `settings`.
    pub fn aggregate<'k>(
        kpis: impl IntoIterator<Item = &'k VisitKpis>,
        as_of: Millis,
        settings: &KpiSettings,
    ) -> Self {
        let mut s = Self::empty(as_of);
        for k in kpis {
            s.add(k);
        }
        s.perfect_store_score = s.audit.perfect_store_score(settings);
        s
    }

    fn add(&mut self, k: &VisitKpis) {
        self.counts.add(k);
        self.audit += &k.audit;
        self.visit_compliance += k.visit_compliance(self.as_of);
        self.time_in_store += k.time_in_store;
        self.strike_rate += k.strike_rate;
        self.lines_per_productive_call += k.lines_per_productive_call;
    }

    /// Adds another summary's visits to this one (e.g. per-territory summaries into a
    /// company one), re-scoring with `settings`. `as_of` becomes the later of the two; both
    /// should have been built with the same `as_of` for visit compliance to be coherent.
    pub fn merge(&mut self, other: &KpiSummary, settings: &KpiSettings) {
        self.as_of = self.as_of.max(other.as_of);
        self.counts.merge(&other.counts);
        self.audit += &other.audit;
        self.visit_compliance += other.visit_compliance;
        self.time_in_store += other.time_in_store;
        self.strike_rate += other.strike_rate;
        self.lines_per_productive_call += other.lines_per_productive_call;
        self.perfect_store_score = self.audit.perfect_store_score(settings);
    }

    /// The perfect-store score of this summary with other `settings` (e.g. weights changed
    /// since it was built).
    pub fn perfect_store_score_with(&self, settings: &KpiSettings) -> Option<f64> {
        self.audit.perfect_store_score(settings)
    }

    /// The value of `kind` over the summarized visits: ratios as a fraction in [0, 1]
    /// (share of shelf too), the perfect-store score in [0, 100], average time in store in
    /// milliseconds. `None` without data.
    pub fn value(&self, kind: KpiKind) -> Option<f64> {
        match kind {
            KpiKind::VisitCompliance => self.visit_compliance.value(),
            KpiKind::AverageTimeInStore => self.time_in_store.mean_ms(),
            KpiKind::PerfectStoreScore => self.perfect_store_score,
            other => audit_value(&self.audit, other),
        }
    }
}

/// When a visit was worked, for the reference data it is judged with: its check-in, or its
/// planned start when it was never checked in.
pub fn worked_at(visit: &Visit) -> Millis {
    visit.check_in.map_or(visit.plan.planned_start, |c| c.at)
}

/// Computes the KPIs of every visit and aggregates them ([`KpiSummary::aggregate`]):
/// visit compliance judged at `as_of`, perfect-store score with the reference data's
/// settings.
pub fn summarize<'v>(
    visits: impl IntoIterator<Item = &'v Visit>,
    refs: &ReferenceIndex<'_>,
    as_of: Millis,
) -> KpiSummary {
    let mut s = KpiSummary::empty(as_of);
    for v in visits {
        s.add(&visit_kpis(v, refs));
    }
    s.perfect_store_score = s.audit.perfect_store_score(&refs.data.settings);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gtin::Gtin13;
    use crate::model::{
        Assortment, DisplayLocation, Planogram, PlanogramPosition, Product, Promotion,
        ReferenceData, StoreGroup, Territory,
    };
    use crate::visit::{
        CheckPoint, GeoPoint, InventoryLine, OrderLine, PositionResult, PromotionCheck, VisitPlan,
    };

    fn ms(y: i32, m: u32, d: u32, h: u32, min: u32) -> Millis {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, min, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis()
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn store(id: &str, timezone: &str, groups: &[&str]) -> Store {
        Store {
            id: id.into(),
            name: format!("Store {id}"),
            territory_id: "t1".into(),
            address: String::new(),
            lat: 52.52,
            lng: 13.405,
            geofence_radius_m: 150.0,
            timezone: timezone.into(),
            store_group_ids: groups.iter().map(|g| g.to_string()).collect(),
            priority: 3,
        }
    }

    fn product(n: u64, id: &str, category: &str, own_brand: bool, price: i64) -> Product {
        Product {
            id: id.into(),
            gtin: Gtin13::from_prefix(400_638_133_390 + n),
            name: id.into(),
            brand: if own_brand {
                "Acme".into()
            } else {
                "Rival".into()
            },
            category: category.into(),
            own_brand,
            list_price_cents: price,
        }
    }

    fn position(id: &str, product_id: &str, facings: u32) -> PlanogramPosition {
        PlanogramPosition {
            id: id.into(),
            shelf: 1,
            position: 1,
            product_id: product_id.into(),
            facings,
        }
    }

    fn promotion(
        id: &str,
        product: &str,
        price: i64,
        from: NaiveDate,
        to: NaiveDate,
        group: &str,
    ) -> Promotion {
        Promotion {
            id: id.into(),
            name: id.into(),
            product_ids: vec![product.into()],
            promo_price_cents: price,
            display_location: DisplayLocation::FrontEndCap,
            valid_from: from,
            valid_to: to,
            store_group_ids: vec![group.into()],
        }
    }

    /// s-ber (Europe/Berlin), s-utc (UTC), s-bad (unparsable zone) are all in group g1.
    fn refs() -> ReferenceData {
        let mut data = ReferenceData {
            version: 1,
            territories: vec![Territory {
                id: "t1".into(),
                name: "North".into(),
            }],
            users: vec![],
            stores: vec![
                store("s-ber", "Europe/Berlin", &["g1"]),
                store("s-utc", "UTC", &["g1"]),
            ],
            store_groups: vec![
                StoreGroup {
                    id: "g1".into(),
                    name: "Hypermarkets".into(),
                },
                StoreGroup {
                    id: "g2".into(),
                    name: "Kiosks".into(),
                },
            ],
            products: vec![
                product(1, "p1", "soda", true, 200),
                product(2, "p2", "soda", true, 150),
                product(3, "p3", "snacks", true, 300),
                product(4, "p4", "snacks", true, 100),
                product(5, "pc", "soda", false, 180),
                product(6, "pcs", "snacks", false, 250),
                product(7, "pz", "beer", false, 500),
                product(8, "px", "water", true, 99),
            ],
            assortments: vec![Assortment {
                id: "a1".into(),
                store_group_ids: vec!["g1".into()],
                product_ids: vec!["p1".into(), "p2".into(), "p3".into(), "p4".into()],
            }],
            planograms: vec![Planogram {
                id: "pg1".into(),
                name: "Soda & snacks".into(),
                store_group_ids: vec!["g1".into()],
                positions: vec![
                    position("pos1", "p1", 3),
                    position("pos2", "p2", 2),
                    position("pos3", "p3", 1),
                    position("pos4", "p4", 2),
                    position("pos5", "p1", 1),
                    position("pos6", "p2", 1),
                ],
            }],
            promotions: vec![
                // p1 at 1.60 on 10 March 2025 only.
                promotion(
                    "promo1",
                    "p1",
                    160,
                    day(2025, 3, 10),
                    day(2025, 3, 10),
                    "g1",
                ),
                // p2 at 1.20 all of March 2025.
                promotion("promo2", "p2", 120, day(2025, 3, 1), day(2025, 3, 31), "g1"),
                // Other store group: never applies to the test stores.
                promotion(
                    "promo-g2",
                    "p3",
                    10,
                    day(2025, 1, 1),
                    day(2025, 12, 31),
                    "g2",
                ),
            ],
            kpi_targets: vec![],
            task_templates: vec![],
            settings: KpiSettings::default(),
        };
        data.validate().unwrap();
        // Invalid on purpose (validation would refuse it): the zone falls back to UTC.
        data.stores
            .push(store("s-bad", "Mars/Olympus_Mons", &["g1"]));
        data
    }

    /// A visit planned 10:00–12:00 UTC on 12 March 2025 (no promotion of p1 that day).
    fn visit(id: &str, store_id: &str) -> Visit {
        visit_at(id, store_id, ms(2025, 3, 12, 10, 0))
    }

    fn visit_at(id: &str, store_id: &str, planned_start: Millis) -> Visit {
        Visit {
            id: id.into(),
            plan: VisitPlan {
                store_id: store_id.into(),
                rep_id: "rep-1".into(),
                planned_start,
                planned_end: planned_start + 2 * 3_600_000,
                priority: 3,
                instructions: String::new(),
                template_id: "tpl".into(),
                ad_hoc: false,
            },
            status: VisitStatus::InProgress,
            check_in: None,
            check_out: None,
            cancel_reason: None,
            abandon_reason: None,
            inventory: BTreeMap::new(),
            planogram: BTreeMap::new(),
            promotions: BTreeMap::new(),
            survey: BTreeMap::new(),
            orders: BTreeMap::new(),
            order_submitted: false,
            notes: String::new(),
        }
    }

    fn checkpoint(at: Millis) -> CheckPoint {
        CheckPoint {
            at,
            position: GeoPoint {
                lat: 52.52,
                lng: 13.405,
            },
            distance_m: 3.0,
            outside_geofence: false,
        }
    }

    fn line(v: &mut Visit, product_id: &str, f: impl FnOnce(&mut InventoryLine)) {
        let mut l = InventoryLine {
            product_id: product_id.into(),
            ..Default::default()
        };
        f(&mut l);
        v.inventory.insert(product_id.into(), l);
    }

    fn pos(
        v: &mut Visit,
        id: &str,
        present: Option<bool>,
        correct: Option<bool>,
        facings: Option<i64>,
    ) {
        v.planogram.insert(
            id.into(),
            PositionResult {
                position_id: id.into(),
                present,
                actual_facings: facings,
                correct_position: correct,
                observed_at: 0,
            },
        );
    }

    fn promo_check(
        v: &mut Visit,
        id: &str,
        display: Option<bool>,
        price_ok: Option<bool>,
        materials: Option<bool>,
    ) {
        v.promotions.insert(
            id.into(),
            PromotionCheck {
                promotion_id: id.into(),
                display_in_place: display,
                promo_price_correct: price_ok,
                materials_present: materials,
                observed_price_cents: None,
                observed_at: 0,
            },
        );
    }

    fn order(v: &mut Visit, product_id: &str, quantity: i64) {
        v.orders.insert(
            product_id.into(),
            OrderLine {
                product_id: product_id.into(),
                quantity,
                observed_at: 0,
            },
        );
    }

    fn complete(v: &mut Visit, minutes: i64) {
        let start = v.plan.planned_start + 5 * 60_000;
        v.status = VisitStatus::Completed;
        v.check_in = Some(checkpoint(start));
        v.check_out = Some(checkpoint(start + minutes * 60_000));
    }

    fn assert_close(actual: Option<f64>, expected: f64) {
        let a = actual.expect("a value");
        assert!((a - expected).abs() < 1e-9, "expected {expected}, got {a}");
    }

    /// One out-of-stock in four audited assortment products.
    fn visit_one_in_four() -> Visit {
        let mut v = visit("v1", "s-ber");
        line(&mut v, "p1", |l| l.out_of_stock = Some(false));
        line(&mut v, "p2", |l| l.shelf_qty = Some(5));
        line(&mut v, "p3", |l| l.shelf_qty = Some(0)); // out of stock by count
        line(&mut v, "p4", |l| {
            // The explicit toggle wins over the count.
            l.shelf_qty = Some(0);
            l.out_of_stock = Some(false);
        });
        line(&mut v, "px", |l| l.out_of_stock = Some(true)); // not in the assortment
        line(&mut v, "pc", |l| l.facings = Some(3)); // not audited for stock
        v
    }

    #[test]
    fn out_of_stock_counts_audited_assortment_products_only() {
        let data = refs();
        let k = visit_kpis(&visit_one_in_four(), &data.index());
        assert_eq!(k.audit.out_of_stock, Ratio::new(1, 4));
        assert_close(k.audit.out_of_stock.value(), 0.25);
        assert_eq!(k.audit.on_shelf_availability, Ratio::new(3, 4));
        assert_close(k.value(KpiKind::OnShelfAvailability, 0), 0.75);
        assert_close(k.audit.out_of_stock.percent(), 25.0);

        // Unaudited assortment products (no line, or a line without stock data) don't count.
        let mut v = visit("v2", "s-ber");
        line(&mut v, "p1", |l| l.facings = Some(2));
        line(&mut v, "p2", |l| l.out_of_stock = Some(true));
        let k = visit_kpis(&v, &data.index());
        assert_eq!(k.audit.out_of_stock, Ratio::new(1, 1));
        assert_eq!(k.audit.on_shelf_availability, Ratio::new(0, 1));
    }

    #[test]
    fn aggregation_sums_numerators_and_denominators() {
        let data = refs();
        let a = visit_one_in_four();
        let mut b = visit("v2", "s-utc");
        line(&mut b, "p1", |l| l.out_of_stock = Some(true));
        line(&mut b, "p2", |l| l.shelf_qty = Some(7));

        let s = summarize([&a, &b], &data.index(), ms(2025, 3, 13, 0, 0));
        assert_eq!(s.audit.out_of_stock, Ratio::new(2, 6));
        assert_close(s.value(KpiKind::OutOfStockRate), 2.0 / 6.0);
        assert!((s.audit.out_of_stock.value().unwrap() - 0.375).abs() > 0.04);
        assert_eq!(s.audit.on_shelf_availability, Ratio::new(4, 6));
    }

    #[test]
    fn planogram_compliance() {
        let data = refs();
        let mut v = visit("v1", "s-ber");
        pos(&mut v, "pos1", Some(true), Some(true), Some(3)); // correct (facings = expected)
        pos(&mut v, "pos2", Some(true), None, Some(5)); // position not confirmed
        pos(&mut v, "pos3", Some(true), Some(true), Some(0)); // too few facings
        pos(&mut v, "pos4", Some(false), None, None); // missing
        pos(&mut v, "pos5", Some(true), Some(true), None); // facings not counted
        pos(&mut v, "pos6", None, None, None); // not audited
        pos(&mut v, "pos-elsewhere", Some(true), Some(true), Some(9)); // not in the planogram
        let k = visit_kpis(&v, &data.index());
        assert_eq!(k.audit.planogram_compliance, Ratio::new(1, 5));

        // More facings than expected is fine.
        let mut v = visit("v2", "s-ber");
        pos(&mut v, "pos2", Some(true), Some(true), Some(4));
        assert_eq!(
            visit_kpis(&v, &data.index()).audit.planogram_compliance,
            Ratio::new(1, 1)
        );
    }

    #[test]
    fn share_of_shelf_over_present_categories() {
        let data = refs();
        let mut v = visit("v1", "s-ber");
        line(&mut v, "p1", |l| l.facings = Some(4)); // own soda
        line(&mut v, "p2", |l| l.facings = Some(2)); // own soda
        line(&mut v, "pc", |l| l.facings = Some(3)); // rival soda
        line(&mut v, "p3", |l| l.facings = Some(0)); // own snacks, none on shelf
        line(&mut v, "pcs", |l| l.facings = Some(2)); // rival snacks
        line(&mut v, "pz", |l| l.facings = Some(5)); // rival beer: no own product counted there
        line(&mut v, "p-unknown", |l| l.facings = Some(7)); // not in the product master
        line(&mut v, "p4", |l| l.shelf_qty = Some(3)); // no facings recorded
        let k = visit_kpis(&v, &data.index());
        assert_eq!(k.audit.share_of_shelf, Ratio::new(6, 11));
        assert_eq!(
            k.audit.share_of_shelf_by_category,
            BTreeMap::from([
                ("snacks".to_string(), Ratio::new(0, 2)),
                ("soda".to_string(), Ratio::new(6, 9)),
            ])
        );
        let share = k.audit.share_of_shelf.value().unwrap();
        assert!((0.0..=1.0).contains(&share));
    }

    #[test]
    fn promotion_compliance_counts_running_promotions_audited() {
        let data = refs();
        // 10 March 2025, 10:00 UTC: promo1 and promo2 run in Berlin.
        let mut v = visit_at("v1", "s-ber", ms(2025, 3, 10, 10, 0));
        promo_check(&mut v, "promo1", Some(true), Some(true), Some(true));
        promo_check(&mut v, "promo2", Some(true), Some(true), None); // materials unknown
        promo_check(&mut v, "promo-g2", Some(true), Some(true), Some(true)); // other group
        promo_check(&mut v, "promo-unknown", Some(true), Some(true), Some(true));
        let k = visit_kpis(&v, &data.index());
        assert_eq!(k.audit.promotion_compliance, Ratio::new(1, 2));

        // A check with nothing recorded is not an audit; one with only a price is.
        let mut v = visit_at("v2", "s-ber", ms(2025, 3, 10, 10, 0));
        promo_check(&mut v, "promo1", None, None, None);
        let mut c = PromotionCheck {
            promotion_id: "promo2".into(),
            ..Default::default()
        };
        c.observed_price_cents = Some(120);
        v.promotions.insert("promo2".into(), c);
        assert_eq!(
            visit_kpis(&v, &data.index()).audit.promotion_compliance,
            Ratio::new(0, 1)
        );

        // On 12 March promo1 has ended: its check no longer counts.
        let mut v = visit("v3", "s-ber");
        promo_check(&mut v, "promo1", Some(true), Some(true), Some(true));
        assert_eq!(
            visit_kpis(&v, &data.index()).audit.promotion_compliance,
            Ratio::EMPTY
        );
    }

    fn price_kpi(
        data: &ReferenceData,
        product_id: &str,
        observed: i64,
        planned_start: Millis,
    ) -> Ratio {
        let mut v = visit_at("v", "s-ber", planned_start);
        line(&mut v, product_id, |l| {
            l.observed_price_cents = Some(observed);
        });
        visit_kpis(&v, &data.index()).audit.price_compliance
    }

    #[test]
    fn price_tolerance_boundaries() {
        let data = refs();
        let t = ms(2025, 3, 12, 10, 0);
        // p3: list 3.00, no promotion, ±5 % = ±15 cents, both ends inclusive.
        for (observed, ok) in [
            (300, true),
            (315, true),
            (285, true),
            (316, false),
            (284, false),
        ] {
            assert_eq!(
                price_kpi(&data, "p3", observed, t),
                Ratio::new(u64::from(ok), 1),
                "{observed}"
            );
        }
        // 0.29 × 100 is 28.999999999999996 in floating point; 129 is still within.
        let mut data = refs();
        data.settings.price_tolerance = 0.29;
        assert_eq!(price_kpi(&data, "p4", 129, t), Ratio::new(1, 1));
        assert_eq!(price_kpi(&data, "p4", 71, t), Ratio::new(1, 1));
        assert_eq!(price_kpi(&data, "p4", 130, t), Ratio::new(0, 1));
        data.settings.price_tolerance = 0.0;
        assert_eq!(price_kpi(&data, "p4", 100, t), Ratio::new(1, 1));
        assert_eq!(price_kpi(&data, "p4", 101, t), Ratio::new(0, 1));

        // Lines without a price or for unknown products don't count.
        let data = refs();
        let mut v = visit("v", "s-ber");
        line(&mut v, "p1", |l| l.shelf_qty = Some(3));
        line(&mut v, "p-unknown", |l| l.observed_price_cents = Some(100));
        line(&mut v, "p3", |l| l.observed_price_cents = Some(300));
        line(&mut v, "p4", |l| l.observed_price_cents = Some(90));
        assert_eq!(
            visit_kpis(&v, &data.index()).audit.price_compliance,
            Ratio::new(1, 2)
        );
    }

    #[test]
    fn promo_price_is_the_target_while_the_promotion_runs() {
        let data = refs();
        let promo_day = ms(2025, 3, 10, 10, 0);
        let after = ms(2025, 3, 11, 10, 0);
        // p1: list 2.00, promo1 1.60 on 10 March only.
        assert_eq!(price_kpi(&data, "p1", 160, promo_day), Ratio::new(1, 1));
        assert_eq!(price_kpi(&data, "p1", 200, promo_day), Ratio::new(0, 1));
        assert_eq!(price_kpi(&data, "p1", 168, promo_day), Ratio::new(1, 1)); // 160 + 5 %
        assert_eq!(price_kpi(&data, "p1", 200, after), Ratio::new(1, 1));
        assert_eq!(price_kpi(&data, "p1", 160, after), Ratio::new(0, 1));
        // A promotion of another store group never sets the target (p3 list 3.00).
        assert_eq!(price_kpi(&data, "p3", 300, promo_day), Ratio::new(1, 1));
        assert_eq!(price_kpi(&data, "p3", 10, promo_day), Ratio::new(0, 1));
    }

    #[test]
    fn the_stores_local_day_decides_promotion_activity() {
        let data = refs();
        let idx = data.index();
        // 9 March 2025 23:30 UTC is 10 March 00:30 in Berlin (CET, UTC+1).
        let late = ms(2025, 3, 9, 23, 30);
        let build = |store_id: &str| {
            let mut v = visit_at("v", store_id, late);
            line(&mut v, "p1", |l| l.observed_price_cents = Some(160));
            promo_check(&mut v, "promo1", Some(true), Some(true), Some(true));
            visit_kpis(&v, &idx)
        };

        let berlin = build("s-ber");
        assert_eq!(berlin.local_day, Some(day(2025, 3, 10)));
        assert_eq!(berlin.audit.price_compliance, Ratio::new(1, 1));
        assert_eq!(berlin.audit.promotion_compliance, Ratio::new(1, 1));

        let utc = build("s-utc");
        assert_eq!(utc.local_day, Some(day(2025, 3, 9)));
        assert_eq!(utc.audit.price_compliance, Ratio::new(0, 1)); // list 2.00 applies
        assert_eq!(utc.audit.promotion_compliance, Ratio::EMPTY);

        // An unparsable zone falls back to UTC.
        let bad = build("s-bad");
        assert_eq!(bad.local_day, Some(day(2025, 3, 9)));
        assert_eq!(bad.audit.price_compliance, Ratio::new(0, 1));

        let berlin_store = idx.store("s-ber").unwrap();
        assert_eq!(store_local_day(berlin_store, late), Some(day(2025, 3, 10)));
        // Summer time (CEST, UTC+2): 21:59 UTC is still the same day, 22:00 UTC is the next.
        assert_eq!(
            store_local_day(berlin_store, ms(2025, 7, 1, 21, 59)),
            Some(day(2025, 7, 1))
        );
        assert_eq!(
            store_local_day(berlin_store, ms(2025, 7, 1, 22, 0)),
            Some(day(2025, 7, 2))
        );
    }

    #[test]
    fn perfect_store_weights_leave_out_missing_components() {
        let data = refs();
        let mut v = visit("v1", "s-ber");
        // OSA 3/4.
        line(&mut v, "p1", |l| l.out_of_stock = Some(true));
        line(&mut v, "p2", |l| l.out_of_stock = Some(false));
        line(&mut v, "p3", |l| l.out_of_stock = Some(false));
        line(&mut v, "p4", |l| {
            l.out_of_stock = Some(false);
            l.observed_price_cents = Some(100); // price 1/1
        });
        // Planogram 1/2.
        pos(&mut v, "pos1", Some(true), Some(true), Some(3));
        pos(&mut v, "pos2", Some(false), None, None);
        // No promotion audited.
        let k = visit_kpis(&v, &data.index());
        assert_eq!(k.audit.on_shelf_availability, Ratio::new(3, 4));
        assert_eq!(k.audit.planogram_compliance, Ratio::new(1, 2));
        assert_eq!(k.audit.price_compliance, Ratio::new(1, 1));
        assert!(k.audit.promotion_compliance.is_empty());
        // (0.4 × 0.75 + 0.2 × 0.5 + 0.2 × 1) ÷ (0.4 + 0.2 + 0.2) × 100 = 75.
        assert_close(k.perfect_store_score, 75.0);
        assert_close(k.value(KpiKind::PerfectStoreScore, 0), 75.0);

        // Other weights; a zero weight drops its component.
        let settings = KpiSettings {
            price_tolerance: 0.05,
            weight_on_shelf_availability: 1.0,
            weight_planogram: 0.0,
            weight_promotion: 5.0,
            weight_price: 3.0,
        };
        // (1 × 0.75 + 3 × 1) ÷ (1 + 3) × 100 = 93.75.
        assert_close(k.audit.perfect_store_score(&settings), 93.75);

        let s = KpiSettings::default();
        assert_eq!(
            perfect_store_score(&s, Ratio::EMPTY, Ratio::EMPTY, Ratio::EMPTY, Ratio::EMPTY),
            None
        );
        assert_close(
            perfect_store_score(
                &s,
                Ratio::EMPTY,
                Ratio::EMPTY,
                Ratio::new(1, 4),
                Ratio::EMPTY,
            ),
            25.0,
        );
        let zero = KpiSettings {
            weight_on_shelf_availability: 0.0,
            weight_planogram: 0.0,
            weight_promotion: 0.0,
            weight_price: 0.0,
            ..KpiSettings::default()
        };
        assert_eq!(
            perfect_store_score(
                &zero,
                Ratio::new(1, 1),
                Ratio::EMPTY,
                Ratio::EMPTY,
                Ratio::EMPTY
            ),
            None
        );
    }

    #[test]
    fn summary_perfect_store_uses_aggregated_ratios() {
        let data = refs();
        let mut a = visit("a", "s-ber");
        line(&mut a, "p1", |l| l.out_of_stock = Some(false)); // OSA 1/1, score 100
        let mut b = visit("b", "s-ber");
        for p in ["p1", "p2", "p3", "p4"] {
            line(&mut b, p, |l| l.out_of_stock = Some(true)); // OSA 0/4, score 0
        }
        let s = summarize([&a, &b], &data.index(), 0);
        assert_eq!(s.audit.on_shelf_availability, Ratio::new(1, 5));
        assert_close(s.perfect_store_score, 20.0); // not (100 + 0) / 2
        assert_close(s.perfect_store_score_with(&KpiSettings::default()), 20.0);
    }

    #[test]
    fn empty_inputs_give_none_not_nan() {
        let data = refs();
        let s = summarize(std::iter::empty(), &data.index(), 0);
        assert_eq!(s, KpiSummary::empty(0));
        assert_eq!(s.counts.total, 0);
        for kind in [
            KpiKind::OutOfStockRate,
            KpiKind::OnShelfAvailability,
            KpiKind::PlanogramCompliance,
            KpiKind::ShareOfShelf,
            KpiKind::PromotionCompliance,
            KpiKind::PriceCompliance,
            KpiKind::VisitCompliance,
            KpiKind::AverageTimeInStore,
            KpiKind::PerfectStoreScore,
        ] {
            assert_eq!(s.value(kind), None, "{kind:?}");
        }
        assert_eq!(s.strike_rate.value(), None);
        assert_eq!(s.lines_per_productive_call.value(), None);
        assert_eq!(s.time_in_store.mean_minutes(), None);

        let k = visit_kpis(&visit("v", "s-ber"), &data.index());
        assert_eq!(k.audit, AuditKpis::default());
        assert_eq!(k.perfect_store_score, None);
        assert_eq!(k.strike_rate, Ratio::EMPTY);
        assert_eq!(Ratio::EMPTY.value(), None);
        assert_eq!(Ratio::EMPTY.complement(), Ratio::EMPTY);
        assert_eq!(Ratio::new(0, 3).value(), Some(0.0));
    }

    #[test]
    fn unknown_store_leaves_store_kpis_empty() {
        let data = refs();
        let mut v = visit("v", "s-gone");
        line(&mut v, "p1", |l| {
            l.out_of_stock = Some(true);
            l.observed_price_cents = Some(200);
            l.facings = Some(2);
        });
        pos(&mut v, "pos1", Some(true), Some(true), Some(3));
        promo_check(&mut v, "promo2", Some(true), Some(true), Some(true));
        complete(&mut v, 15);
        order(&mut v, "p1", 2);
        let k = visit_kpis(&v, &data.index());
        assert!(!k.store_known);
        assert_eq!(k.local_day, None);
        assert!(k.audit.out_of_stock.is_empty());
        assert!(k.audit.on_shelf_availability.is_empty());
        assert!(k.audit.planogram_compliance.is_empty());
        assert!(k.audit.promotion_compliance.is_empty());
        assert!(k.audit.price_compliance.is_empty());
        assert_eq!(k.perfect_store_score, None);
        // Not store-dependent:
        assert_eq!(k.audit.share_of_shelf, Ratio::new(2, 2));
        assert_eq!(k.strike_rate, Ratio::new(1, 1));
        assert_eq!(
            k.time_in_store,
            TimeInStore {
                total_ms: 15 * 60_000,
                visits: 1
            }
        );

        let s = summarize([&v], &data.index(), 0);
        assert_eq!(s.counts.unknown_store, 1);
        assert_eq!(s.counts.completed, 1);
    }

    #[test]
    fn visit_compliance_rules() {
        let data = refs();
        let start = ms(2025, 3, 12, 10, 0);
        let end = start + 2 * 3_600_000;
        let as_of = ms(2025, 3, 13, 0, 0);
        let completed_at = |id: &str, check_in: Millis| {
            let mut v = visit_at(id, "s-ber", start);
            v.status = VisitStatus::Completed;
            v.check_in = Some(checkpoint(check_in));
            v.check_out = Some(checkpoint(check_in + 60_000));
            v
        };

        let on_time = completed_at("on-time", start + 60_000);
        let at_start = completed_at("at-start", start);
        let at_end = completed_at("at-end", end);
        let late = completed_at("late", end + 1);
        let early = completed_at("early", start - 1);
        let mut canceled = visit_at("canceled", "s-ber", as_of + 86_400_000); // future window
        canceled.status = VisitStatus::Canceled;
        let mut abandoned = visit_at("abandoned", "s-ber", start);
        abandoned.status = VisitStatus::Abandoned;
        abandoned.check_in = Some(checkpoint(start + 60_000));
        let mut missed = visit_at("missed", "s-ber", start);
        missed.status = VisitStatus::Planned;
        let mut upcoming = visit_at("upcoming", "s-ber", as_of + 3_600_000);
        upcoming.status = VisitStatus::Planned;
        let mut ongoing = visit_at("ongoing", "s-ber", as_of - 3_600_000); // window open at as_of
        ongoing.check_in = Some(checkpoint(as_of - 3_000_000));
        let mut overdue = visit_at("overdue", "s-ber", start); // still in progress after its window
        overdue.check_in = Some(checkpoint(start + 60_000));
        let mut ad_hoc = completed_at("ad-hoc", start + 60_000);
        ad_hoc.plan.ad_hoc = true;

        let r = |v: &Visit| visit_compliance(v, as_of);
        assert_eq!(r(&on_time), Ratio::new(1, 1));
        assert_eq!(r(&at_start), Ratio::new(1, 1));
        assert_eq!(r(&at_end), Ratio::new(1, 1));
        assert_eq!(r(&late), Ratio::new(0, 1));
        assert_eq!(r(&early), Ratio::new(0, 1));
        assert_eq!(r(&canceled), Ratio::new(0, 1));
        assert_eq!(r(&abandoned), Ratio::new(0, 1));
        assert_eq!(r(&missed), Ratio::new(0, 1));
        assert_eq!(r(&overdue), Ratio::new(0, 1));
        assert_eq!(r(&upcoming), Ratio::EMPTY);
        assert_eq!(r(&ongoing), Ratio::EMPTY);
        assert_eq!(r(&ad_hoc), Ratio::EMPTY);
        // The window is closed only once as_of has passed planned_end.
        assert_eq!(visit_compliance(&missed, end), Ratio::EMPTY);
        assert_eq!(visit_compliance(&missed, end + 1), Ratio::new(0, 1));

        let all = [
            &on_time, &at_start, &at_end, &late, &early, &canceled, &abandoned, &missed, &upcoming,
            &ongoing, &overdue, &ad_hoc,
        ];
        let s = summarize(all, &data.index(), as_of);
        assert_eq!(s.visit_compliance, Ratio::new(3, 9));
        assert_eq!(
            s.counts,
            VisitCounts {
                total: 12,
                ad_hoc: 1,
                planned: 2,
                in_progress: 2,
                completed: 6,
                canceled: 1,
                abandoned: 1,
                unknown_store: 0,
            }
        );
        assert_eq!(
            visit_kpis(&on_time, &data.index()).visit_compliance(as_of),
            Ratio::new(1, 1)
        );
    }

    #[test]
    fn time_in_store_strike_rate_and_lines_per_productive_call() {
        let data = refs();
        let mut a = visit("a", "s-ber");
        complete(&mut a, 30);
        order(&mut a, "p1", 3);
        order(&mut a, "p2", 0); // kept line, nothing ordered
        order(&mut a, "p3", 2);
        let mut b = visit("b", "s-ber");
        complete(&mut b, 60);
        let mut c = visit("c", "s-utc");
        complete(&mut c, 20);
        order(&mut c, "p1", 1);
        let mut d = visit("d", "s-ber"); // in progress: not counted
        d.check_in = Some(checkpoint(d.plan.planned_start));
        order(&mut d, "p1", 5);
        let mut e = visit("e", "s-ber"); // abandoned: not counted
        complete(&mut e, 45);
        e.status = VisitStatus::Abandoned;
        order(&mut e, "p1", 5);
        let mut f = visit("f", "s-ber"); // completed, check-out missing: no duration
        complete(&mut f, 10);
        f.check_out = None;

        let ka = visit_kpis(&a, &data.index());
        assert_eq!(ka.strike_rate, Ratio::new(1, 1));
        assert_eq!(ka.lines_per_productive_call, Ratio::new(2, 1));
        assert_eq!(
            ka.time_in_store,
            TimeInStore {
                total_ms: 30 * 60_000,
                visits: 1
            }
        );

        let s = summarize([&a, &b, &c, &d, &e, &f], &data.index(), 0);
        assert_eq!(
            s.time_in_store,
            TimeInStore {
                total_ms: 110 * 60_000,
                visits: 3
            }
        );
        assert_close(s.time_in_store.mean_minutes(), 110.0 / 3.0);
        assert_close(s.value(KpiKind::AverageTimeInStore), 110.0 / 3.0 * 60_000.0);
        assert_eq!(s.strike_rate, Ratio::new(2, 4));
        assert_eq!(s.lines_per_productive_call, Ratio::new(3, 2));
        assert_close(s.lines_per_productive_call.value(), 1.5);
    }

    #[test]
    fn aggregate_and_merge_agree_with_summarize() {
        let data = refs();
        let idx = data.index();
        let as_of = ms(2025, 3, 13, 0, 0);
        let mut a = visit_one_in_four();
        complete(&mut a, 25);
        order(&mut a, "p1", 1);
        line(&mut a, "p1", |l| {
            l.out_of_stock = Some(false);
            l.facings = Some(3);
            l.observed_price_cents = Some(200);
        });
        pos(&mut a, "pos1", Some(true), Some(true), Some(3));
        let mut b = visit_at("b", "s-ber", ms(2025, 3, 10, 9, 0));
        promo_check(&mut b, "promo1", Some(true), Some(false), Some(true));
        line(&mut b, "p2", |l| l.shelf_qty = Some(0));
        let mut c = visit("c", "s-gone");
        complete(&mut c, 50);

        let whole = summarize([&a, &b, &c], &idx, as_of);
        let rows: Vec<VisitKpis> = [&a, &b, &c].iter().map(|v| visit_kpis(v, &idx)).collect();
        assert_eq!(KpiSummary::aggregate(&rows, as_of, &data.settings), whole);

        let mut merged = summarize([&a], &idx, as_of);
        merged.merge(&summarize([&b, &c], &idx, as_of), &data.settings);
        assert_eq!(merged, whole);
        assert_eq!(whole.counts.total, 3);
        assert_eq!(whole.audit.out_of_stock, Ratio::new(2, 5));
        assert_eq!(whole.audit.promotion_compliance, Ratio::new(0, 1));
    }

    #[test]
    fn outputs_round_trip_through_json() {
        let data = refs();
        let mut v = visit_one_in_four();
        complete(&mut v, 12);
        line(&mut v, "p1", |l| l.facings = Some(2));
        let k = visit_kpis(&v, &data.index());
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(serde_json::from_str::<VisitKpis>(&json).unwrap(), k);

        let s = summarize([&v], &data.index(), 0);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<KpiSummary>(&json).unwrap(), s);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["audit"]["out_of_stock"]["numerator"], 1); // p3 (p1 re-recorded without stock data)
        assert_eq!(value["audit"]["out_of_stock"]["denominator"], 3);
    }
}
