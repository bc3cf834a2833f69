//! The server's ownership diff (`VisitDoc::touched_values_each`) on one typical visit,
//! for instruction counts (docs/BENCHMARKS.md, "Ownership diff").
//!
//! Builds a typical visit the way a device records it (plan, check in, 20 inventory
//! lines, 10 planogram positions, 2 promotion checks, one survey answer, notes, check
//! out: 37 changes), applies its changes to a new document as the server does on a push,
//! then runs the diff `N` times (first argument, default 1,000) and prints the time per
//! run. Instructions per visit with callgrind, as the difference of two runs (the result
//! is dropped inside the loop, so freeing it is counted, as on the server):
//!
//! ```text
//! cargo build --release -p fieldsync-core --example ownership_diff
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/ownership_diff 0
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/ownership_diff 100
//! # (total instructions of the second − the first) ÷ 100
//! ```

use automerge::{ActorId, Automerge, Change};
use chrono::NaiveDate;
use fieldsync_core::document::{CheckKind, VisitDoc};
use fieldsync_core::fixtures::{self, FixtureSize};
use fieldsync_core::visit::{
    AnswerValue, Author, CheckPoint, GeoPoint, InventoryInput, PositionInput, PromotionInput,
    VisitPlan, VisitStatus,
};
use std::hint::black_box;
use std::time::Instant;

/// 2026-11-27 09:00 UTC (the benchmarks' "now").
const NOW: i64 = 1_795_770_000_000;
const NOTES: &str =
    "Cola display missing its header card; store manager will reorder shelf strips.";

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map_or(1_000, |a| a.parse().expect("N: a number of runs"));
    let changes = typical_visit_changes();
    // As the server sees them: parsed from the bytes a device sends.
    let changes: Vec<Change> = changes
        .into_iter()
        .map(|c| Change::from_bytes(c.raw_bytes().to_vec()).unwrap())
        .collect();
    let mut am = Automerge::new();
    am.apply_changes(changes.clone()).unwrap();
    let doc = VisitDoc::from_automerge(am).unwrap();
    let touched = doc.touched_values_each(&changes).unwrap();
    let ops: usize = touched.iter().map(Vec::len).sum();
    let started = Instant::now();
    for _ in 0..runs {
        black_box(doc.touched_values_each(black_box(&changes)).unwrap());
    }
    let elapsed = started.elapsed();
    println!(
        "{} changes, {ops} ops; {runs} runs: {:.1} µs per visit",
        changes.len(),
        elapsed.as_secs_f64() * 1e6 / runs.max(1) as f64
    );
}

/// The changes of one typical visit, made by a rep's device.
fn typical_visit_changes() -> Vec<Change> {
    let today = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
    let r = fixtures::reference_data(5, &FixtureSize::default(), today);
    let idx = r.index();
    let rep = r.users.iter().find(|u| u.id == "rep-1").unwrap();
    let (store, products, positions, promotions) = r
        .stores
        .iter()
        .filter(|s| s.territory_id == rep.territory_ids[0])
        .find_map(|s| {
            let products: Vec<(String, i64)> = idx
                .assortment_for(s)
                .into_iter()
                .take(20)
                .map(|p| (p.to_string(), idx.product(p).unwrap().list_price_cents))
                .collect();
            let positions: Vec<(String, i64)> = idx
                .planogram_for(s)
                .map(|p| {
                    p.positions
                        .iter()
                        .take(10)
                        .map(|x| (x.id.clone(), i64::from(x.facings)))
                        .collect()
                })
                .unwrap_or_default();
            let promotions: Vec<(String, i64)> = idx
                .promotions_for(s, today)
                .into_iter()
                .take(2)
                .map(|p| (p.id.clone(), p.promo_price_cents))
                .collect();
            (products.len() == 20 && positions.len() == 10 && promotions.len() == 2)
                .then_some((s, products, positions, promotions))
        })
        .expect("a store fits a typical visit");
    let author = Author {
        user_id: rep.id.clone(),
        device_id: "dev-1".into(),
    };
    let plan = VisitPlan {
        store_id: store.id.clone(),
        rep_id: rep.id.clone(),
        planned_start: NOW,
        planned_end: NOW + 3_600_000,
        priority: 3,
        instructions: String::new(),
        template_id: "tt-standard".into(),
        ad_hoc: true,
    };
    let actor = ActorId::from(&[7u8; 16][..]);
    let mut doc = VisitDoc::create("v-typical", &plan, actor, &author, NOW).unwrap();
    let cp = |at: i64| CheckPoint {
        at,
        position: GeoPoint {
            lat: store.lat,
            lng: store.lng,
        },
        distance_m: 0.0,
        outside_geofence: false,
    };
    let mut at = NOW + 60_000;
    doc.edit(&author, at, |w| {
        w.set_checkpoint(CheckKind::In, &cp(at))?;
        w.set_status(VisitStatus::InProgress)
    })
    .unwrap();
    for (i, (pid, price)) in products.iter().enumerate() {
        at += 15_000;
        let input = InventoryInput {
            shelf_qty: Some(if i % 10 == 3 {
                0
            } else {
                4 + (i as i64 * 7) % 23
            }),
            backroom_qty: Some((i as i64 * 5) % 13),
            out_of_stock: Some(i % 10 == 3),
            observed_price_cents: Some(*price),
            facings: Some(1 + (i as i64 % 4)),
        };
        doc.edit(&author, at, |w| w.record_inventory(pid, &input))
            .unwrap();
    }
    for (i, (pos, facings)) in positions.iter().enumerate() {
        at += 10_000;
        let input = PositionInput {
            present: Some(true),
            actual_facings: Some(*facings),
            correct_position: Some(i % 5 != 0),
        };
        doc.edit(&author, at, |w| w.record_position(pos, &input))
            .unwrap();
    }
    for (promo, price) in &promotions {
        at += 20_000;
        let input = PromotionInput {
            display_in_place: Some(true),
            promo_price_correct: Some(true),
            materials_present: Some(false),
            observed_price_cents: Some(*price),
        };
        doc.edit(&author, at, |w| w.record_promotion(promo, &input))
            .unwrap();
    }
    at += 5_000;
    doc.edit(&author, at, |w| {
        w.answer("q-manager-met", &AnswerValue::Bool(true))
    })
    .unwrap();
    at += 5_000;
    doc.edit(&author, at, |w| w.set_notes(NOTES)).unwrap();
    at += 60_000;
    doc.edit(&author, at, |w| w.set_checkpoint(CheckKind::Out, &cp(at)))
        .unwrap();
    doc.automerge().get_changes(&[])
}
