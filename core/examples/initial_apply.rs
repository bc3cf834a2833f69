//! The device's side of an initial sync without the network: `N` typical visits (first
//! argument, default 5,000) arrive as whole packed documents in pages of 625, as the
//! server sends them, and `DeviceStore::apply_remote_documents` stores them into a fresh
//! store on disk (docs/BENCHMARKS.md, "Initial sync"): once as documents alone, once
//! with the visits the server read from them (`RemoteDocument::visit`, as a server sends
//! them to a client that accepts them). A second argument `documents` or `visits` runs
//! only that one. For profiles of that work:
//!
//! ```text
//! cargo build --release -p fieldsync-core --example initial_apply
//! perf record -g target/release/examples/initial_apply 5000 visits
//! ```

use chrono::NaiveDate;
use fieldsync_core::document::{pack_document, pack_visit};
use fieldsync_core::fixtures;
use fieldsync_core::store::{DeviceStore, RemoteDocument};
use std::time::Instant;

/// 2026-11-27 09:00 UTC (the benchmarks' "now").
const NOW: i64 = 1_795_770_000_000;
const PAGE: usize = 625;

fn main() {
    let visits: usize = std::env::args()
        .nth(1)
        .map_or(5_000, |a| a.parse().expect("N: a number of visits"));
    let only = std::env::args().nth(2);
    let today = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
    eprintln!("building {visits} documents");
    // Packed as the server stores and sends them.
    let docs: Vec<RemoteDocument> = (0..visits)
        .map(|i| {
            let id = format!("v-typical-{i}");
            let doc = fixtures::typical_visit_document(&id, today, NOW).unwrap();
            let am = doc.automerge();
            RemoteDocument {
                visit_id: id,
                doc: pack_document(&am.save_nocompress()),
                heads: am.get_heads().iter().map(|h| h.to_string()).collect(),
                visit: Some(pack_visit(&doc.read().unwrap())),
            }
        })
        .collect();
    for with_visits in [false, true] {
        let name = if with_visits { "visits" } else { "documents" };
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let docs: Vec<RemoteDocument> = docs
            .iter()
            .map(|d| RemoteDocument {
                visit: d.visit.clone().filter(|_| with_visits),
                ..d.clone()
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let store =
            DeviceStore::open(dir.path().join("device.db"), "manager-1", "phone-1").unwrap();
        let started = Instant::now();
        for page in docs.chunks(PAGE) {
            let outcomes = store.apply_remote_documents(page).unwrap();
            assert_eq!(outcomes.len(), page.len());
        }
        let elapsed = started.elapsed();
        println!(
            "{name:>9}: {visits} visits in {:.2} s: {:.0} visits/s, {:.1} µs per visit",
            elapsed.as_secs_f64(),
            visits as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1e6 / visits as f64
        );
    }
}
