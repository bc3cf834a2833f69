//! What keeping every import of the reference data costs (`store::pack_reference`, table
//! `reference_history`): the stored size of one version, the time to pack it on import and
//! to read it back for a report, for the fixture catalogue at three sizes; and the merge of
//! the newest 64 kept versions that the first push after an import builds
//! (`ReferenceCache::ever_listed`, SQLite in a temporary directory, each version with one
//! price changed).
//!
//! ```sh
//! cargo run --release -p fieldsync-server --example reference_history
//! ```

use fieldsync_core::fixtures::{self, FixtureSize};
use fieldsync_server::reference::{EVER_LISTED_VERSIONS, IndexedReference, ReferenceCache};
use fieldsync_server::{SqliteStore, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RUNS: u32 = 5;

fn mean(f: &mut dyn FnMut()) -> Duration {
    let t = Instant::now();
    for _ in 0..RUNS {
        f();
    }
    t.elapsed() / RUNS
}

fn main() {
    let today = chrono::Utc::now().date_naive();
    println!(
        "| stores | products | JSON | stored (zstd) | pack | read back and index | merge of {EVER_LISTED_VERSIONS} versions |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (stores_per_territory, products) in [(20, 60), (500, 2_000), (5_000, 2_000)] {
        let size = FixtureSize {
            stores_per_territory,
            products,
            reps_per_territory: 3,
        };
        let r = fixtures::reference_data(5, &size, today);
        let json = serde_json::to_vec(&r).expect("serializable");
        let packed = fieldsync_server::store::pack_reference(&r).expect("packs");
        let pack = mean(&mut || {
            fieldsync_server::store::pack_reference(&r).expect("packs");
        });
        let read = mean(&mut || {
            let data = fieldsync_server::store::unpack_reference(&packed).expect("unpacks");
            let _ = IndexedReference::of(Arc::new(data));
        });
        let merge = merge_of_kept_versions(&r);
        println!(
            "| {} | {} | {} B | {} B | {:.1} ms | {:.1} ms | {:.0} ms |",
            r.stores.len(),
            r.products.len(),
            json.len(),
            packed.len(),
            pack.as_secs_f64() * 1e3,
            read.as_secs_f64() * 1e3,
            merge.as_secs_f64() * 1e3
        );
    }
}

/// The time `ever_listed` takes to build from cold over [`EVER_LISTED_VERSIONS`] kept
/// versions of `r` (the best of three fresh caches).
fn merge_of_kept_versions(r: &fieldsync_core::model::ReferenceData) -> Duration {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open_dir(dir.path()).expect("database");
    let mut next = r.clone();
    for i in 0..EVER_LISTED_VERSIONS {
        store.import_reference(next.clone()).expect("imports");
        let n = next.products.len();
        next.products[i % n].list_price_cents += 1;
    }
    (0..3)
        .map(|_| {
            let cache = ReferenceCache::default();
            let current = cache.get(&store).expect("current data");
            let t = Instant::now();
            let merged = cache.ever_listed(&store, &current).expect("merges");
            let took = t.elapsed();
            let merged = merged.expect("several versions kept");
            assert_eq!(merged.data().products.len(), r.products.len());
            took
        })
        .min()
        .expect("three runs")
}
