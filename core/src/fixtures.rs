//! Realistic, deterministic demo data: territories, stores with real-looking coordinates,
//! products with valid GTIN-13s, assortments, planograms, promotions, KPI targets and
//! task templates, and the typical visit a rep records in a store ([`TypicalVisit`]).
//! Used by tests, benchmarks and the server's `--demo`.

use automerge::ActorId;
use chrono::{Duration, NaiveDate};

use crate::document::{CheckKind, VisitDoc};
use crate::error::Result;
use crate::gtin::Gtin13;
use crate::model::*;
use crate::visit::{
    AnswerValue, Author, CheckPoint, GeoPoint, InventoryInput, PositionInput, PromotionInput,
    VisitPlan, VisitStatus,
};

/// A small deterministic PRNG (SplitMix64), so the same seed gives the same data everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fills `out` with random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes()[..chunk.len()]);
        }
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A random element.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Sizes of generated reference data.
#[derive(Debug, Clone)]
pub struct FixtureSize {
    pub stores_per_territory: usize,
    pub products: usize,
    pub reps_per_territory: usize,
}

impl Default for FixtureSize {
    fn default() -> Self {
        Self {
            stores_per_territory: 20,
            products: 60,
            reps_per_territory: 3,
        }
    }
}

const CITIES: [(&str, f64, f64, &str); 2] = [
    ("Berlin", 52.520, 13.405, "Europe/Berlin"),
    ("Lyon", 45.764, 4.835, "Europe/Paris"),
];
const CHAINS: [&str; 4] = ["FreshMart", "CornerShop", "MegaSave", "CityGrocer"];
const CATEGORIES: [(&str, [&str; 5]); 4] = [
    (
        "Soft drinks",
        [
            "Cola 330ml",
            "Lemon Soda 500ml",
            "Orange Fizz 1.5l",
            "Iced Tea 500ml",
            "Energy 250ml",
        ],
    ),
    (
        "Snacks",
        [
            "Salted Crisps 150g",
            "Paprika Crisps 150g",
            "Pretzels 200g",
            "Tortilla Chips 200g",
            "Peanuts 250g",
        ],
    ),
    (
        "Dairy",
        [
            "Whole Milk 1l",
            "Greek Yogurt 500g",
            "Butter 250g",
            "Cheddar 200g",
            "Skyr 450g",
        ],
    ),
    (
        "Coffee",
        [
            "Espresso Beans 1kg",
            "Ground Coffee 500g",
            "Instant Coffee 200g",
            "Decaf 250g",
            "Capsules x10",
        ],
    ),
];
const BRANDS: [&str; 3] = ["Northwind", "Contoso", "Fabrikam"];

/// Demo reference data: 2 territories (Berlin, Lyon), `stores_per_territory` stores each,
/// `products` products, planograms of 10–40 positions, 2–5 promotions running around
/// `today`, KPI targets and two task templates. Users: `rep-1…`, `manager-1`, `manager-2`,
/// `admin`.
pub fn reference_data(seed: u64, size: &FixtureSize, today: NaiveDate) -> ReferenceData {
    let mut rng = Rng::new(seed);
    let mut d = ReferenceData {
        version: 1,
        ..Default::default()
    };
    for (i, (city, ..)) in CITIES.iter().enumerate() {
        d.territories.push(Territory {
            id: format!("t-{}", i + 1),
            name: format!("{city} territory"),
        });
    }
    for (i, chain) in CHAINS.iter().enumerate() {
        d.store_groups.push(StoreGroup {
            id: format!("g-{}", i + 1),
            name: chain.to_string(),
        });
    }
    let mut rep = 0;
    for (ti, t) in d.territories.clone().iter().enumerate() {
        for _ in 0..size.reps_per_territory {
            rep += 1;
            d.users.push(User {
                id: format!("rep-{rep}"),
                username: format!("rep{rep}"),
                display_name: format!("Rep {rep}"),
                role: Role::Rep,
                territory_ids: vec![t.id.clone()],
            });
        }
        d.users.push(User {
            id: format!("manager-{}", ti + 1),
            username: format!("manager{}", ti + 1),
            display_name: format!("Manager {}", ti + 1),
            role: Role::Manager,
            territory_ids: vec![t.id.clone()],
        });
    }
    d.users.push(User {
        id: "admin".into(),
        username: "admin".into(),
        display_name: "Administrator".into(),
        role: Role::Admin,
        territory_ids: d.territories.iter().map(|t| t.id.clone()).collect(),
    });
    let mut n = 0;
    for (ti, (city, lat, lng, tz)) in CITIES.iter().enumerate() {
        for s in 0..size.stores_per_territory {
            n += 1;
            let chain = s % CHAINS.len();
            d.stores.push(Store {
                id: format!("st-{n:03}"),
                name: format!("{} {city} {}", CHAINS[chain], s + 1),
                territory_id: format!("t-{}", ti + 1),
                address: format!("{} Market Street, {city}", 1 + rng.below(200)),
                lat: lat + (rng.unit() - 0.5) * 0.15,
                lng: lng + (rng.unit() - 0.5) * 0.25,
                geofence_radius_m: [75.0, 100.0, 150.0, 200.0][rng.below(4) as usize],
                timezone: tz.to_string(),
                store_group_ids: vec![format!("g-{}", chain + 1)],
                priority: 1 + rng.below(5) as u8,
            });
        }
    }
    for p in 0..size.products {
        let (cat, names) = CATEGORIES[p % CATEGORIES.len()];
        let name = names[(p / CATEGORIES.len()) % names.len()];
        let brand = BRANDS[(p / (CATEGORIES.len() * names.len())) % BRANDS.len()];
        d.products.push(Product {
            id: format!("p-{:03}", p + 1),
            gtin: Gtin13::from_prefix(400_638_100_000 + p as u64 * 7),
            name: format!("{brand} {name}"),
            brand: brand.into(),
            category: cat.into(),
            own_brand: brand != "Fabrikam",
            list_price_cents: 99 + rng.below(900) as i64,
        });
    }
    for (gi, g) in d.store_groups.clone().iter().enumerate() {
        let count = (size.products * 2 / 3).max(1);
        let start = gi * 5;
        let product_ids: Vec<String> = (0..count)
            .map(|k| d.products[(start + k) % size.products].id.clone())
            .collect();
        d.assortments.push(Assortment {
            id: format!("a-{}", gi + 1),
            store_group_ids: vec![g.id.clone()],
            product_ids: product_ids.clone(),
        });
        let positions = 10 + rng.below(31) as usize;
        d.planograms.push(Planogram {
            id: format!("pg-{}", gi + 1),
            name: format!("{} main aisle", g.name),
            store_group_ids: vec![g.id.clone()],
            positions: (0..positions)
                .map(|k| PlanogramPosition {
                    id: format!("pg-{}-pos-{:02}", gi + 1, k + 1),
                    shelf: 1 + (k / 8) as u32,
                    position: 1 + (k % 8) as u32,
                    product_id: product_ids[k % product_ids.len()].clone(),
                    facings: 1 + rng.below(4) as u32,
                })
                .collect(),
        });
        for k in 0..(2 + rng.below(4)) {
            let pid = product_ids[rng.below(product_ids.len() as u64) as usize].clone();
            let list = d
                .products
                .iter()
                .find(|p| p.id == pid)
                .map_or(199, |p| p.list_price_cents);
            d.promotions.push(Promotion {
                id: format!("promo-{}-{}", gi + 1, k + 1),
                name: format!("{} spring deal {}", g.name, k + 1),
                product_ids: vec![pid],
                promo_price_cents: list * 8 / 10,
                display_location: [
                    DisplayLocation::FrontEndCap,
                    DisplayLocation::InAisle,
                    DisplayLocation::Checkout,
                ][rng.below(3) as usize],
                valid_from: today - Duration::days(14),
                valid_to: today + Duration::days(14),
                store_group_ids: vec![g.id.clone()],
            });
        }
    }
    for (i, (kpi, target)) in [
        (KpiKind::OnShelfAvailability, 0.95),
        (KpiKind::PlanogramCompliance, 0.85),
        (KpiKind::PromotionCompliance, 0.9),
        (KpiKind::PriceCompliance, 0.9),
        (KpiKind::VisitCompliance, 0.9),
    ]
    .into_iter()
    .enumerate()
    {
        d.kpi_targets.push(KpiTarget {
            id: format!("kt-{}", i + 1),
            kpi,
            store_group_id: None,
            target,
            valid_from: today - Duration::days(365),
            valid_to: today + Duration::days(365),
        });
    }
    d.task_templates.push(TaskTemplate {
        id: "tt-standard".into(),
        name: "Standard store visit".into(),
        tasks: vec![
            TaskDefinition {
                kind: TaskKind::InventoryCheck,
                required: true,
                questions: vec![],
            },
            TaskDefinition {
                kind: TaskKind::PlanogramCheck,
                required: true,
                questions: vec![],
            },
            TaskDefinition {
                kind: TaskKind::PromotionCheck,
                required: false,
                questions: vec![],
            },
            TaskDefinition {
                kind: TaskKind::Survey,
                required: false,
                questions: vec![
                    SurveyQuestion {
                        id: "q-manager-met".into(),
                        text: "Did you meet the store manager?".into(),
                        answer_type: AnswerType::Boolean,
                        required: true,
                    },
                    SurveyQuestion {
                        id: "q-competitor-facings".into(),
                        text: "Competitor facings in the aisle".into(),
                        answer_type: AnswerType::Number,
                        required: false,
                    },
                    SurveyQuestion {
                        id: "q-remarks".into(),
                        text: "Remarks".into(),
                        answer_type: AnswerType::Text,
                        required: false,
                    },
                ],
            },
            TaskDefinition {
                kind: TaskKind::Order,
                required: false,
                questions: vec![],
            },
        ],
    });
    d.task_templates.push(TaskTemplate {
        id: "tt-quick".into(),
        name: "Quick stock check".into(),
        tasks: vec![TaskDefinition {
            kind: TaskKind::InventoryCheck,
            required: false,
            questions: vec![],
        }],
    });
    d
}

/// Inventory lines in a typical visit.
pub const TYPICAL_LINES: usize = 20;
/// Planogram positions checked in a typical visit.
pub const TYPICAL_POSITIONS: usize = 10;
/// Promotions checked in a typical visit.
pub const TYPICAL_PROMOTIONS: usize = 2;
/// The survey question a typical visit answers (of the `tt-standard` template).
pub const TYPICAL_QUESTION: &str = "q-manager-met";
/// The notes a typical visit leaves.
pub const TYPICAL_NOTES: &str =
    "Cola display missing its header card; store manager will reorder shelf strips.";

/// The audit a rep records in one typical visit to one store, the workload of the
/// benchmarks: check in, [`TYPICAL_LINES`] (20) inventory lines, [`TYPICAL_POSITIONS`] (10)
/// planogram positions, [`TYPICAL_PROMOTIONS`] (2) promotion checks, one survey answer
/// (`q-manager-met`: yes), notes ([`TYPICAL_NOTES`]) and check out: 36 actions, so with
/// the visit's plan 37 Automerge changes. [`typical_visits`] finds the stores that can
/// hold one; [`TypicalVisit::actions`] lists what is recorded and when, for any layer
/// (device store, plain SQL); [`TypicalVisit::document`] records it into a device's
/// visit document.
#[derive(Debug, Clone)]
pub struct TypicalVisit {
    /// The store visited.
    pub store_id: String,
    /// Where the rep checks in and out: the store's own coordinates (inside its geofence).
    pub position: GeoPoint,
    /// (product id, list price in cents): the first 20 products of the store's assortment.
    pub products: Vec<(String, i64)>,
    /// (planogram position id, planned facings): the first 10 positions of its planogram.
    pub positions: Vec<(String, i64)>,
    /// (promotion id, promo price in cents): the first 2 promotions running that day.
    pub promotions: Vec<(String, i64)>,
}

/// One action of a [`TypicalVisit`], as a rep does it on the device.
#[derive(Debug, Clone)]
pub enum TypicalAction<'a> {
    /// Check in at [`TypicalVisit::position`] (the visit goes in progress).
    CheckIn,
    /// Record an inventory line: product id, what was counted.
    Inventory(&'a str, InventoryInput),
    /// Record a planogram position: position id, what was seen.
    Position(&'a str, PositionInput),
    /// Record a promotion check: promotion id, what was seen.
    Promotion(&'a str, PromotionInput),
    /// Answer a survey question: question id, answer.
    Answer(&'a str, AnswerValue),
    /// Set the visit's notes.
    Notes(&'a str),
    /// Check out at [`TypicalVisit::position`].
    CheckOut,
}

/// The stores of `territory_id` that can hold a [`TypicalVisit`] on `today` (at least 20
/// assortment products, 10 planogram positions and 2 running promotions), in the order of
/// `r.stores`, each with what its typical visit records. Empty if none fits.
pub fn typical_visits(
    r: &ReferenceData,
    territory_id: &str,
    today: NaiveDate,
) -> Vec<TypicalVisit> {
    let idx = r.index();
    let mut out = Vec::new();
    for s in r.stores.iter().filter(|s| s.territory_id == territory_id) {
        let products: Vec<(String, i64)> = idx
            .assortment_for(s)
            .into_iter()
            .take(TYPICAL_LINES)
            .filter_map(|p| Some((p.to_string(), idx.product(p).ok()?.list_price_cents)))
            .collect();
        let positions: Vec<(String, i64)> = idx
            .planogram_for(s)
            .map(|p| {
                p.positions
                    .iter()
                    .take(TYPICAL_POSITIONS)
                    .map(|x| (x.id.clone(), i64::from(x.facings)))
                    .collect()
            })
            .unwrap_or_default();
        let promotions: Vec<(String, i64)> = idx
            .promotions_for(s, today)
            .into_iter()
            .take(TYPICAL_PROMOTIONS)
            .map(|p| (p.id.clone(), p.promo_price_cents))
            .collect();
        if products.len() == TYPICAL_LINES
            && positions.len() == TYPICAL_POSITIONS
            && promotions.len() == TYPICAL_PROMOTIONS
        {
            out.push(TypicalVisit {
                store_id: s.id.clone(),
                position: GeoPoint {
                    lat: s.lat,
                    lng: s.lng,
                },
                products,
                positions,
                promotions,
            });
        }
    }
    out
}

/// One typical visit recorded by `rep-1`'s device (`dev-1`, Automerge actor `07…07`) in
/// the first store of its territory that fits one, starting at `start`: the document as
/// the device holds it ([`reference_data`] seed 5, default size, on `today`). For
/// instruction counts of what the server and the devices do with a visit.
pub fn typical_visit_document(id: &str, today: NaiveDate, start: Millis) -> Result<VisitDoc> {
    let r = reference_data(5, &FixtureSize::default(), today);
    let rep = r
        .users
        .iter()
        .find(|u| u.id == "rep-1")
        .ok_or_else(|| crate::error::Error::not_found("user", "rep-1"))?;
    let visit = typical_visits(&r, &rep.territory_ids[0], today)
        .into_iter()
        .next()
        .ok_or_else(|| crate::error::Error::invalid("no store fits a typical visit"))?;
    let author = Author {
        user_id: rep.id.clone(),
        device_id: "dev-1".into(),
    };
    visit.document(id, &rep.id, &author, ActorId::from(&[7u8; 16][..]), start)
}

/// The `i`-th inventory line of a typical visit for a product listed at `price` cents: all
/// five fields, every tenth line (the 4th, 14th, …) out of stock, the price as listed.
pub fn typical_line(i: usize, price: i64) -> InventoryInput {
    InventoryInput {
        shelf_qty: Some(if i % 10 == 3 {
            0
        } else {
            4 + (i as i64 * 7) % 23
        }),
        backroom_qty: Some((i as i64 * 5) % 13),
        out_of_stock: Some(i % 10 == 3),
        observed_price_cents: Some(price),
        facings: Some(1 + (i as i64) % 4),
    }
}

impl TypicalVisit {
    /// The visit's 36 actions in order, each with the time it is done at, for a visit
    /// that starts at `start`: check in 1 min after `start`, an inventory line every 15 s,
    /// a planogram position every 10 s (every fifth out of position), a promotion check
    /// every 20 s (display in place, price correct, materials missing), the answer and the
    /// notes 5 s apart, check out 1 min later (9.5 min after `start`).
    pub fn actions(&self, start: Millis) -> Vec<(Millis, TypicalAction<'_>)> {
        let mut out = Vec::with_capacity(
            4 + self.products.len() + self.positions.len() + self.promotions.len(),
        );
        let mut at = start + 60_000;
        out.push((at, TypicalAction::CheckIn));
        for (i, (pid, price)) in self.products.iter().enumerate() {
            at += 15_000;
            out.push((at, TypicalAction::Inventory(pid, typical_line(i, *price))));
        }
        for (i, (pos, facings)) in self.positions.iter().enumerate() {
            at += 10_000;
            let input = PositionInput {
                present: Some(true),
                actual_facings: Some(*facings),
                correct_position: Some(i % 5 != 0),
            };
            out.push((at, TypicalAction::Position(pos, input)));
        }
        for (promo, price) in &self.promotions {
            at += 20_000;
            let input = PromotionInput {
                display_in_place: Some(true),
                promo_price_correct: Some(true),
                materials_present: Some(false),
                observed_price_cents: Some(*price),
            };
            out.push((at, TypicalAction::Promotion(promo, input)));
        }
        at += 5_000;
        out.push((
            at,
            TypicalAction::Answer(TYPICAL_QUESTION, AnswerValue::Bool(true)),
        ));
        at += 5_000;
        out.push((at, TypicalAction::Notes(TYPICAL_NOTES)));
        at += 60_000;
        out.push((at, TypicalAction::CheckOut));
        out
    }

    /// The visit as `author`'s device records it, straight into a [`VisitDoc`] (no device
    /// store): an ad-hoc visit `id` of `rep_id` planned at `start` for an hour (template
    /// `tt-standard`), then one change per action of [`TypicalVisit::actions`]: 37
    /// changes, all by `actor`.
    pub fn document(
        &self,
        id: &str,
        rep_id: &str,
        author: &Author,
        actor: ActorId,
        start: Millis,
    ) -> Result<VisitDoc> {
        let mut doc = VisitDoc::create(id, &self.plan(rep_id, start, true), actor, author, start)?;
        self.record(&mut doc, author, start)?;
        Ok(doc)
    }

    /// The visit planned by a manager (`planner`, actor `planner_actor`: one change), then
    /// recorded by the rep's device (`author`, `actor`: one change per action, 36): a
    /// planned visit `id` of `rep_id` at `start` for an hour (template `tt-standard`).
    /// The plan alone is the document at its first change.
    #[allow(clippy::too_many_arguments)]
    pub fn planned_document(
        &self,
        id: &str,
        rep_id: &str,
        planner: &Author,
        planner_actor: ActorId,
        author: &Author,
        actor: ActorId,
        start: Millis,
    ) -> Result<VisitDoc> {
        let plan = self.plan(rep_id, start, false);
        let mut doc = VisitDoc::create(id, &plan, planner_actor, planner, start - 86_400_000)?;
        doc.automerge_mut().set_actor(actor);
        self.record(&mut doc, author, start)?;
        Ok(doc)
    }

    fn plan(&self, rep_id: &str, start: Millis, ad_hoc: bool) -> VisitPlan {
        VisitPlan {
            store_id: self.store_id.clone(),
            rep_id: rep_id.into(),
            planned_start: start,
            planned_end: start + 3_600_000,
            priority: 3,
            instructions: String::new(),
            template_id: "tt-standard".into(),
            ad_hoc,
        }
    }

    /// Records [`TypicalVisit::actions`] into `doc` as `author` (one change each, by the
    /// document's actor).
    pub fn record(&self, doc: &mut VisitDoc, author: &Author, start: Millis) -> Result<()> {
        let cp = |at: Millis| CheckPoint {
            at,
            position: self.position,
            distance_m: 0.0,
            outside_geofence: false,
        };
        for (at, action) in self.actions(start) {
            doc.edit(author, at, |w| match &action {
                TypicalAction::CheckIn => {
                    w.set_checkpoint(CheckKind::In, &cp(at))?;
                    w.set_status(VisitStatus::InProgress)
                }
                TypicalAction::Inventory(pid, input) => w.record_inventory(pid, input),
                TypicalAction::Position(pos, input) => w.record_position(pos, input),
                TypicalAction::Promotion(promo, input) => w.record_promotion(promo, input),
                TypicalAction::Answer(q, value) => w.answer(q, value),
                TypicalAction::Notes(text) => w.set_notes(text),
                TypicalAction::CheckOut => w.set_checkpoint(CheckKind::Out, &cp(at)),
            })?;
        }
        Ok(())
    }
}

/// For tests of what must be refused: the document `saved` (`Automerge::save_nocompress`
/// bytes) forged so that the last op of its last change (in the document's columns; a
/// head with at least one op) belongs to no change: that change's `max_op` is one lower,
/// the heads name its new hash and the checksum is mended. Automerge 0.12 loads such a
/// document, the op in its state, while its changes leave the op out. `None` if `saved`
/// is not laid out so.
pub fn with_an_op_outside_its_changes(saved: &[u8]) -> Option<Vec<u8>> {
    use crate::document::ColumnBytes;
    use crate::sync::guard::MAGIC;
    use sha2::Digest;
    if saved.get(..4)? != MAGIC || *saved.get(8)? != 0 {
        return None;
    }
    let mut r = ColumnBytes::new(saved);
    r.take(9)?;
    let len = usize::try_from(r.uleb()?).ok()?;
    let body = r.take(len)?;
    let mut b = ColumnBytes::new(body);
    let n = |b: &mut ColumnBytes<'_>| usize::try_from(b.uleb()?).ok();
    for _ in 0..b.uleb()? {
        let len = n(&mut b)?;
        b.take(len)?;
    }
    let heads = n(&mut b)?;
    let heads_at = body.len() - b.left();
    b.take(32 * heads)?;
    let prefix = &body[..body.len() - b.left()];
    let meta = |b: &mut ColumnBytes<'_>| -> Option<Vec<(u64, usize)>> {
        (0..b.uleb()?).map(|_| Some((b.uleb()?, n(b)?))).collect()
    };
    let (changes, ops) = (meta(&mut b)?, meta(&mut b)?);
    let mut columns = Vec::new();
    for (spec, len) in changes.iter().chain(&ops) {
        columns.push((*spec, b.take(*len)?.to_vec()));
    }
    let rest = b.rest();
    // The changes' `max_op` column (delta, run-length): one lower for the last row,
    // written back as one literal run.
    let max_op = columns
        .iter_mut()
        .take(changes.len())
        .find(|(s, _)| *s == 0x13)?;
    let mut c = ColumnBytes::new(&max_op.1);
    let mut values = Vec::new();
    let mut at = 0i64;
    while !c.done() {
        match c.sleb()? {
            run @ 1.. => {
                let delta = c.sleb()?;
                for _ in 0..run {
                    at = at.checked_add(delta)?;
                    values.push(at);
                }
            }
            run @ ..0 => {
                for _ in 0..run.unsigned_abs() {
                    at = at.checked_add(c.sleb()?)?;
                    values.push(at);
                }
            }
            0 => return None,
        }
    }
    *values.last_mut()? -= 1;
    let mut column = Vec::new();
    write_sleb(&mut column, -(values.len() as i64));
    let mut prev = 0;
    for v in values {
        write_sleb(&mut column, v - prev);
        prev = v;
    }
    max_op.1 = column;
    let mut body = prefix.to_vec();
    for (list, cols) in [
        (&changes, &columns[..changes.len()]),
        (&ops, &columns[changes.len()..]),
    ] {
        write_uleb(&mut body, list.len() as u64);
        for (spec, data) in cols {
            write_uleb(&mut body, *spec);
            write_uleb(&mut body, data.len() as u64);
        }
    }
    for (_, data) in &columns {
        body.extend(data);
    }
    body.extend(rest);
    let chunk = |body: &[u8]| {
        let mut out = MAGIC.to_vec();
        out.extend([0, 0, 0, 0, 0]);
        write_uleb(&mut out, body.len() as u64);
        out.extend(body);
        let sum = sha2::Sha256::digest(&out[8..]);
        out[4..8].copy_from_slice(&sum[..4]);
        out
    };
    // The heads of the changes as they now are.
    let forged = automerge::Automerge::load_unverified_heads(&chunk(&body)).ok()?;
    let mut rebuilt = automerge::Automerge::new();
    rebuilt.apply_changes(forged.get_changes(&[])).ok()?;
    let new_heads = rebuilt.get_heads();
    if new_heads.len() != heads {
        return None;
    }
    for (i, h) in new_heads.iter().enumerate() {
        body[heads_at + 32 * i..heads_at + 32 * (i + 1)].copy_from_slice(&h.0);
    }
    Some(chunk(&body))
}

/// Appends `v` as unsigned LEB128.
pub(crate) fn write_uleb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Appends `v` as signed LEB128.
pub(crate) fn write_sleb(out: &mut Vec<u8>, mut v: i64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if (v == 0 && b & 0x40 == 0) || (v == -1 && b & 0x40 != 0) {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typical_visit_is_37_changes() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let r = reference_data(5, &FixtureSize::default(), today);
        let visits = typical_visits(&r, "t-1", today);
        assert!(!visits.is_empty());
        let v = &visits[0];
        assert_eq!(
            (v.products.len(), v.positions.len(), v.promotions.len()),
            (20, 10, 2)
        );
        let start = 1_795_770_000_000;
        let actions = v.actions(start);
        assert_eq!(actions.len(), 36);
        assert!(actions.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(actions.last().unwrap().0, start + 570_000);
        let author = Author {
            user_id: "rep-1".into(),
            device_id: "dev-1".into(),
        };
        let actor = ActorId::from(&[7u8; 16][..]);
        let doc = v
            .document("v-typical", "rep-1", &author, actor, start)
            .unwrap();
        assert_eq!(doc.automerge().get_changes(&[]).len(), 37);
        let planner = Author {
            user_id: "manager-1".into(),
            device_id: "tablet".into(),
        };
        let planned = v
            .planned_document(
                "v-planned",
                "rep-1",
                &planner,
                ActorId::from(&[9u8; 16][..]),
                &author,
                ActorId::from(&[7u8; 16][..]),
                start,
            )
            .unwrap();
        let changes = planned.automerge().get_changes(&[]);
        assert_eq!(changes.len(), 37);
        assert_eq!(changes[0].actor_id(), &ActorId::from(&[9u8; 16][..]));
        assert!(
            changes[1..]
                .iter()
                .all(|c| c.actor_id() == &ActorId::from(&[7u8; 16][..]))
        );
        let read = planned.read().unwrap();
        assert!(!read.plan.ad_hoc);
        assert_eq!(planned.author_of(changes[0].actor_id()), Some(planner));
        assert_eq!(planned.author_of(changes[1].actor_id()), Some(author));
        assert!(typical_visits(&r, "no-such-territory", today).is_empty());
    }
}
