//! The server's CPU for ingesting one typical visit pushed whole, without HTTP: what
//! `POST /v1/sync` spends in [`fieldsync_server::ingest::ingest_document`] per visit
//! (parse, load, ownership, validation, the write), single-threaded, release build, with
//! the server's allocator. For A/B comparisons of the ingest path (docs/BENCHMARKS.md):
//!
//! ```text
//! cargo run --release -p fieldsync-server --example ingest_cpu -- [visits] [rounds] [planned]
//! ```
//!
//! Each round ingests `visits` (default 2,000) new visits of one rep into a fresh SQLite
//! store in a temporary directory and prints the thread's CPU per visit; the store's
//! commits (one `fsync` per visit here, nobody else waiting) cost wall time, not CPU.
//! `planned` pushes visits a manager planned first (their plan is stored beforehand).
//! With `FIELDSYNC_INGEST_CORPUS=<file>`, the visits of the first round are written to the
//! file, or read from it when it exists, so that a run is (nearly) only the ingest, e.g.
//! for `perf stat -e instructions` (not for `planned`). `FIELDSYNC_INGEST_STORES` and
//! `FIELDSYNC_INGEST_PRODUCTS` size the reference data; `FIELDSYNC_INGEST_INDEX_EACH=1`
//! indexes it again for every visit, as the server did before
//! [`fieldsync_server::reference::ReferenceCache`].

use automerge::ActorId;
use fieldsync_core::fixtures::{self, FixtureSize};
use fieldsync_core::model::Role;
use fieldsync_core::sync::guard::OpBudget;
use fieldsync_core::sync::protocol::{VisitDocument, encode_change};
use fieldsync_core::visit::Author;
use fieldsync_server::SqliteStore;
use fieldsync_server::ingest::{self, VisitLimits, Writer};
use fieldsync_server::reference::ReferenceCache;
use fieldsync_server::store::Store;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// This thread's CPU time in seconds (`/proc/thread-self/stat`, clock ticks of 10 ms).
fn thread_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // The fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    (tick(11) + tick(12)) / 100.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let visits: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let rounds: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(3);
    let planned = args.next().as_deref() == Some("planned");
    let today = chrono::Utc::now().date_naive();
    // A company's reference data: `FIELDSYNC_INGEST_STORES` stores per territory (two
    // territories) and `FIELDSYNC_INGEST_PRODUCTS` products [the fixture's 20 and 60].
    let size = |var: &str, default: usize| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let defaults = FixtureSize::default();
    let fixture = FixtureSize {
        stores_per_territory: size("FIELDSYNC_INGEST_STORES", defaults.stores_per_territory),
        products: size("FIELDSYNC_INGEST_PRODUCTS", defaults.products),
        ..defaults
    };
    let refs = fixtures::reference_data(5, &fixture, today);
    println!(
        "reference data: {} stores, {} products, {} promotions, {} planograms",
        refs.stores.len(),
        refs.products.len(),
        refs.promotions.len(),
        refs.planograms.len()
    );
    let rep = refs
        .users
        .iter()
        .find(|u| u.role == Role::Rep)
        .expect("a rep")
        .clone();
    let manager = refs
        .users
        .iter()
        .find(|u| u.role == Role::Manager && u.territory_ids == rep.territory_ids)
        .expect("a manager of the rep's territory")
        .clone();
    let typical = fixtures::typical_visits(&refs, &rep.territory_ids[0], today);
    let author = Author {
        user_id: rep.id.clone(),
        device_id: "bench-phone".into(),
    };
    let planner = Author {
        user_id: manager.id.clone(),
        device_id: "bench-desk".into(),
    };
    let writer = |a: &Author, role: Role, territories: &[String]| Writer {
        user_id: a.user_id.clone(),
        role,
        territories: territories.to_vec(),
        device_id: a.device_id.clone(),
        scope: None,
        ever_listed: None,
    };
    let rep_writer = writer(&author, Role::Rep, &rep.territory_ids);
    let planner_writer = writer(&planner, Role::Manager, &manager.territory_ids);
    let now = chrono::Utc::now().timestamp_millis();
    for round in 0..rounds {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open_dir(dir.path()).expect("store");
        store
            .import_reference(refs.clone())
            .expect("reference data");
        // As the server looks the reference data up: indexed once per version.
        let indexed = ReferenceCache::default()
            .get(&store)
            .expect("reference data");
        let (actor, planner_actor) = (ActorId::random(), ActorId::random());
        let corpus = std::env::var_os("FIELDSYNC_INGEST_CORPUS").filter(|_| !planned);
        let cached: Option<Vec<VisitDocument>> = corpus
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .map(|b| serde_json::from_slice(&b).expect("corpus file"));
        let made = cached.is_none();
        let pushes: Vec<VisitDocument> = cached.unwrap_or_else(|| {
            (0..visits)
                .map(|i| {
                    let id = format!("bench-{round}-{i:06}");
                    let t = &typical[i % typical.len()];
                    let start = now - ((i % 72) as i64) * 3_600_000;
                    let doc = if planned {
                        let d = t
                            .planned_document(
                                &id,
                                &rep.id,
                                &planner,
                                planner_actor.clone(),
                                &author,
                                actor.clone(),
                                start,
                            )
                            .expect("planned visit");
                        let plan = d.automerge().get_changes(&[])[0].clone();
                        let pushed = ingest::ingest(
                            &store,
                            &planner_writer,
                            indexed.index(),
                            &fieldsync_core::sync::protocol::VisitChanges {
                                visit_id: id.clone(),
                                changes: vec![encode_change(plan.raw_bytes())],
                            },
                        )
                        .expect("plan stored");
                        assert!(pushed.rejection.is_none(), "{:?}", pushed.rejection);
                        d
                    } else {
                        t.document(&id, &rep.id, &author, actor.clone(), start)
                            .expect("visit")
                    };
                    let am = doc.automerge();
                    VisitDocument {
                        visit_id: id,
                        doc: encode_change(&fieldsync_core::document::pack_document(
                            &am.save_nocompress(),
                        )),
                        heads: am.get_heads().iter().map(ToString::to_string).collect(),
                        visit: None,
                    }
                })
                .collect()
        });
        if let Some(f) = corpus.filter(|_| made) {
            std::fs::write(f, serde_json::to_vec(&pushes).expect("json")).expect("corpus file");
        }
        let visits = pushes.len();
        let limits = VisitLimits::default();
        let (cpu, wall) = (thread_cpu(), Instant::now());
        let mut acks = 0;
        let index_each = std::env::var_os("FIELDSYNC_INGEST_INDEX_EACH").is_some();
        for p in &pushes {
            let mut budget = OpBudget::per_request();
            // (As the server did before it kept the index: built for every visit.)
            let each = index_each.then(|| indexed.data().index());
            let o = ingest::ingest_document(
                &store,
                &rep_writer,
                each.as_ref().unwrap_or(indexed.index()),
                p,
                &mut budget,
                &limits,
            )
            .expect("ingest");
            assert!(o.rejection.is_none(), "{:?}", o.rejection);
            assert!(o.whole, "visit {} not stored whole", p.visit_id);
            acks += o.acks.len();
        }
        let cpu = thread_cpu() - cpu;
        println!(
            "round {round}: {visits} visits{}, {acks} acks, CPU {:.1} µs/visit, wall {:.1} s",
            if planned { " (planned)" } else { "" },
            cpu * 1e6 / visits as f64,
            wall.elapsed().as_secs_f64()
        );
    }
}
