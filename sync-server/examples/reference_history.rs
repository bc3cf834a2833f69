//! What keeping every import of the reference data costs (`store::pack_reference`, table
//! `reference_history`): the stored size of one version, the time to pack it on import and
//! to read it back for a report, for the fixture catalogue at three sizes.
//!
//! ```sh
//! cargo run --release -p fieldsync-server --example reference_history
//! ```

use fieldsync_core::fixtures::{self, FixtureSize};
use fieldsync_server::reference::IndexedReference;
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
    println!("| stores | products | JSON | stored (zstd) | pack | read back and index |");
    println!("|---:|---:|---:|---:|---:|---:|");
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
        println!(
            "| {} | {} | {} B | {} B | {:.1} ms | {:.1} ms |",
            r.stores.len(),
            r.products.len(),
            json.len(),
            packed.len(),
            pack.as_secs_f64() * 1e3,
            read.as_secs_f64() * 1e3
        );
    }
}
