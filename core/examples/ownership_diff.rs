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

use automerge::{Automerge, Change};
use chrono::NaiveDate;
use fieldsync_core::document::VisitDoc;
use fieldsync_core::fixtures;
use std::hint::black_box;
use std::time::Instant;

/// 2026-11-27 09:00 UTC (the benchmarks' "now").
const NOW: i64 = 1_795_770_000_000;

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

/// The changes of one typical visit ([`fixtures::typical_visit_document`]), made by a
/// rep's device.
fn typical_visit_changes() -> Vec<Change> {
    let today = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
    fixtures::typical_visit_document("v-typical", today, NOW)
        .unwrap()
        .automerge()
        .get_changes(&[])
}
