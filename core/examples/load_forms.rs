//! What loading one typical visit costs Automerge in each form a device could push it in
//! (docs/BENCHMARKS.md, "Server ingest"): the whole document saved without compression
//! (what the client pushes), the same with Automerge's final check of the heads skipped
//! (`VerificationMode::DontCheck`), and its 37 changes concatenated, loaded whole or
//! applied to an empty document. The server loads every pushed visit once, so this is a
//! floor under its CPU per pushed visit.
//!
//! ```text
//! cargo run --release -p fieldsync-core --example load_forms
//! ```

use automerge::{Automerge, LoadOptions, VerificationMode};
use chrono::NaiveDate;
use fieldsync_core::fixtures;
use std::time::Instant;

/// 2026-11-27 09:00 UTC (the benchmarks' "now").
const NOW: i64 = 1_795_770_000_000;
const LOADS: u32 = 2_000;

/// Mean µs per call of `f` over [`LOADS`] calls.
fn per_load(f: &dyn Fn() -> Automerge) -> f64 {
    let t = Instant::now();
    for _ in 0..LOADS {
        std::hint::black_box(f());
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(LOADS)
}

fn main() {
    let today = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
    let doc = fixtures::typical_visit_document("v-1", today, NOW).unwrap();
    let am = doc.automerge();
    let saved = am.save_nocompress();
    let all = am.get_changes(&[]);
    let changes: Vec<u8> = all.iter().flat_map(|c| c.raw_bytes().to_vec()).collect();
    println!(
        "document {} B; {} changes, {} B",
        saved.len(),
        all.len(),
        changes.len()
    );
    let unchecked = || LoadOptions::new().verification_mode(VerificationMode::DontCheck);
    for round in 1..=3 {
        let whole = per_load(&|| Automerge::load(&saved).unwrap());
        let dont_check = per_load(&|| Automerge::load_with_options(&saved, unchecked()).unwrap());
        let as_changes = per_load(&|| Automerge::load(&changes).unwrap());
        let applied = per_load(&|| {
            let mut d = Automerge::new();
            d.load_incremental(&changes).unwrap();
            d
        });
        println!(
            "round {round}: document {whole:.0} µs, document without the heads check \
             {dont_check:.0} µs, changes loaded {as_changes:.0} µs, changes applied {applied:.0} µs"
        );
    }
}
