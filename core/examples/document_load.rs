//! What a device does per visit of an initial sync, on one typical visit, for
//! instruction counts (docs/BENCHMARKS.md, "Initial sync"): `Automerge::load` of the
//! visit's saved document, then `VisitDoc::read` (the projection's input), `N` times each
//! (first argument, default 1,000), timed apart.
//!
//! ```text
//! cargo build --release -p fieldsync-core --example document_load
//! valgrind --tool=callgrind target/release/examples/document_load 100
//! callgrind_annotate --inclusive=yes callgrind.out.<pid> | grep -E 'Automerge::load|VisitDoc::read'
//! ```

use automerge::Automerge;
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
    let today = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
    let doc = fixtures::typical_visit_document("v-typical", today, NOW).unwrap();
    // Uncompressed, as both stores keep documents (packed with zstd, unpacked before
    // loading): `Automerge::save`'s DEFLATE would add its inflate to every load.
    let bytes = doc.automerge().save_nocompress();

    let started = Instant::now();
    for _ in 0..runs {
        black_box(Automerge::load(black_box(&bytes)).unwrap());
    }
    let load = started.elapsed();
    let loaded = VisitDoc::from_automerge(Automerge::load(&bytes).unwrap()).unwrap();
    let started = Instant::now();
    for _ in 0..runs {
        black_box(black_box(&loaded).read().unwrap());
    }
    let read = started.elapsed();
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / runs.max(1) as f64;
    println!(
        "{} B document; {runs} runs: load {:.1} µs, read {:.1} µs per visit",
        bytes.len(),
        per(load),
        per(read)
    );
}
