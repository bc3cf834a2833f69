//! Realistic, deterministic demo data: territories, stores with real-looking coordinates,
//! products with valid GTIN-13s, assortments, planograms, promotions, KPI targets and
//! task templates. Used by tests, benchmarks and the server's `--demo`.

use chrono::{Duration, NaiveDate};

use crate::gtin::Gtin13;
use crate::model::*;

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
