//! What keeping every import of the reference data costs (`store::pack_reference`, table
//! `reference_history`): the stored size of one version, the time to pack it on import and
//! to read it back for a report, for the fixture catalogue at three sizes; and the merge of
//! the newest 64 kept versions (`ReferenceCache::ever_listed`, SQLite in a temporary
//! directory, each version with one price changed), and what the first push after an
//! import takes: a typical visit at an open store (which no longer waits for that merge)
//! and one at a store the import closed (which needs it).
//!
//! ```sh
//! cargo run --release -p fieldsync-server --example reference_history
//! ```

use automerge::ActorId;
use fieldsync_core::fixtures::{self, FixtureSize};
use fieldsync_core::sync::guard::OpBudget;
use fieldsync_core::sync::protocol::VisitDocument;
use fieldsync_core::visit::Author;
use fieldsync_server::ingest::{self, VisitLimits, Writer};
use fieldsync_server::reference::{
    EVER_LISTED_VERSIONS, EverListed, IndexedReference, ReferenceCache,
};
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
        "| stores | products | JSON | stored (zstd) | pack | read back and index | merge of {EVER_LISTED_VERSIONS} versions | first push after an import: open store / closed store |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
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
        let (merge, open, closed) = merge_of_kept_versions(&r, today);
        println!(
            "| {} | {} | {} B | {} B | {:.1} ms | {:.1} ms | {:.0} ms | {:.1} ms / {:.0} ms |",
            r.stores.len(),
            r.products.len(),
            json.len(),
            packed.len(),
            pack.as_secs_f64() * 1e3,
            read.as_secs_f64() * 1e3,
            merge.as_secs_f64() * 1e3,
            open.as_secs_f64() * 1e3,
            closed.as_secs_f64() * 1e3
        );
    }
}

/// The time `ever_listed` takes to build from cold over [`EVER_LISTED_VERSIONS`] kept
/// versions of `r`, then the first push after the last import (a fresh cache) of a typical
/// visit at an open store, and of one at a store that import closed (each the best of
/// three fresh caches).
fn merge_of_kept_versions(
    r: &fieldsync_core::model::ReferenceData,
    today: chrono::NaiveDate,
) -> (Duration, Duration, Duration) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open_dir(dir.path()).expect("database");
    let typical = fixtures::typical_visits(r, "t-1", today);
    let mut next = r.clone();
    for i in 0..EVER_LISTED_VERSIONS {
        if i + 1 == EVER_LISTED_VERSIONS {
            next.stores.retain(|s| s.id != typical[1].store_id);
        }
        store.import_reference(next.clone()).expect("imports");
        let n = next.products.len();
        next.products[i % n].list_price_cents += 1;
    }
    let rep = r.users.iter().find(|u| u.username == "rep1").expect("rep1");
    let writer = |cache: &Arc<ReferenceCache>, current: &Arc<IndexedReference>| Writer {
        user_id: rep.id.clone(),
        role: rep.role,
        territories: rep.territory_ids.clone(),
        device_id: "phone".into(),
        scope: None,
        ever_listed: Some(EverListed::new(cache.clone(), current.clone())),
    };
    let mut pushes = 0;
    let mut push = |cache: &Arc<ReferenceCache>, current: &Arc<IndexedReference>, at: usize| {
        pushes += 1;
        let id = format!("v-{pushes}");
        let author = Author {
            user_id: rep.id.clone(),
            device_id: "phone".into(),
        };
        let now = chrono::Utc::now().timestamp_millis();
        let doc = typical[at]
            .document(&id, &rep.id, &author, ActorId::random(), now)
            .expect("visit");
        let pushed = VisitDocument::of(&id, doc.automerge());
        let t = Instant::now();
        let o = ingest::ingest_document(
            &store,
            &writer(cache, current),
            current.index(),
            &pushed,
            &mut OpBudget::per_request(),
            &VisitLimits::default(),
        )
        .expect("ingest");
        let took = t.elapsed();
        assert!(o.rejection.is_none() && o.whole, "{o:?}");
        took
    };
    let (mut merge, mut open, mut closed) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        let cache = Arc::new(ReferenceCache::default());
        let current = cache.get(&store).expect("current data");
        let t = Instant::now();
        let merged = cache.ever_listed(&store, &current).expect("merges");
        merge = merge.min(t.elapsed());
        let merged = merged.expect("several versions kept");
        assert_eq!(merged.data().products.len(), r.products.len());

        let cache = Arc::new(ReferenceCache::default());
        let current = cache.get(&store).expect("current data");
        open = open.min(push(&cache, &current, 0));
        assert!(cache.ever_built(&current).is_none(), "merged for nothing");
        closed = closed.min(push(&cache, &current, 1));
        assert!(cache.ever_built(&current).is_some(), "merged when needed");
    }
    (merge, open, closed)
}
