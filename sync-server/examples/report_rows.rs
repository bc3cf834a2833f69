//! What a dashboard report costs the server before it computes anything: reading the
//! visits of the report's week ([`fieldsync_server::dashboard::reports::load_rows`], behind
//! the overview, trends, visit list, store pages and exports), with a manager of the
//! territory as the viewer. For the numbers in docs/BENCHMARKS.md ("Dashboard reports"):
//!
//! ```text
//! cargo run --release -p fieldsync-server --example report_rows -- [visits] [rounds]
//! ```
//!
//! `visits` (default 5,000) typical visits of one rep are ingested into a fresh SQLite
//! store, planned over the last seven days; then the week's rows are read `rounds` times
//! (default 4). The first read is the one after a server start; the others are every page
//! a manager opens or filter they change afterwards, with nothing pushed meanwhile. One
//! more read follows a push of 1 % of the visits again, changed (a check-out note). Before
//! them, the visits alone are read cold twice: from the reads the server stored with the
//! documents, and from the documents.

use automerge::ActorId;
use fieldsync_core::fixtures::{self, FixtureSize};
use fieldsync_core::model::Role;
use fieldsync_core::sync::guard::OpBudget;
use fieldsync_core::sync::protocol::{VisitDocument, encode_change};
use fieldsync_core::visit::Author;
use fieldsync_server::SqliteStore;
use fieldsync_server::api::{AppState, Config};
use fieldsync_server::dashboard::Viewer;
use fieldsync_server::dashboard::read_visits::StoredReads;
use fieldsync_server::dashboard::reports::{Filter, load_rows};
use fieldsync_server::ingest::{self, VisitLimits, Writer};
use fieldsync_server::reference::ReferenceCache;
use fieldsync_server::store::{Store, UserRecord};
use std::sync::Arc;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The process's resident set in KB (`/proc/self/status`).
fn rss_kb() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let visits: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let rounds: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(4);
    let today = chrono::Utc::now().date_naive();
    let refs = fixtures::reference_data(5, &FixtureSize::default(), today);
    let rep = refs
        .users
        .iter()
        .find(|u| u.role == Role::Rep)
        .expect("a rep");
    let manager = refs
        .users
        .iter()
        .find(|u| u.role == Role::Manager && u.territory_ids == rep.territory_ids)
        .expect("a manager of the rep's territory");
    let typical = fixtures::typical_visits(&refs, &rep.territory_ids[0], today);
    let author = Author {
        user_id: rep.id.clone(),
        device_id: "bench-phone".into(),
    };
    let writer = Writer {
        user_id: rep.id.clone(),
        role: Role::Rep,
        territories: rep.territory_ids.clone(),
        device_id: author.device_id.clone(),
        scope: None,
        ever_listed: None,
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open_dir(dir.path()).expect("store"));
    store
        .import_reference(refs.clone())
        .expect("reference data");
    let indexed = ReferenceCache::default()
        .get(store.as_ref())
        .expect("reference data");
    let actor = ActorId::random();
    let now = chrono::Utc::now().timestamp_millis();
    let push = |doc: &fieldsync_core::document::VisitDoc, id: &str| {
        let am = doc.automerge();
        let pushed = VisitDocument {
            visit_id: id.to_string(),
            doc: encode_change(&fieldsync_core::document::pack_document(
                &am.save_nocompress(),
            )),
            heads: am.get_heads().iter().map(ToString::to_string).collect(),
            visit: None,
        };
        let o = ingest::ingest_document(
            store.as_ref(),
            &writer,
            indexed.index(),
            &pushed,
            &mut OpBudget::per_request(),
            &VisitLimits::default(),
        )
        .expect("ingest");
        assert!(o.rejection.is_none(), "{:?}", o.rejection);
    };
    eprintln!("ingesting {visits} visits");
    let mut docs = Vec::with_capacity(visits);
    for i in 0..visits {
        let id = format!("report-{i:06}");
        // Planned over the last seven days, at most one hour ago.
        let start = now - 3_600_000 - ((i % 160) as i64) * 3_600_000;
        let doc = typical[i % typical.len()]
            .document(&id, &rep.id, &author, actor.clone(), start)
            .expect("visit");
        push(&doc, &id);
        docs.push((id, doc));
    }
    let state = AppState::new(store.clone(), Config::default());
    let viewer = Viewer {
        user: UserRecord {
            id: manager.id.clone(),
            username: manager.id.clone(),
            role: Role::Manager,
            territories: manager.territory_ids.clone(),
            password_hash: String::new(),
            disabled: false,
        },
    };
    let filter = Filter {
        from: today - chrono::Days::new(7),
        to: today,
        territory: None,
        rep: None,
        store: None,
        status: None,
    };
    let read = |what: &str| {
        let started = Instant::now();
        let (_, rows) = load_rows(&state, &viewer, &filter).expect("rows");
        let ms = started.elapsed().as_secs_f64() * 1e3;
        println!(
            "{what}: {} rows in {ms:.1} ms ({:.1} µs per visit)",
            rows.len(),
            ms * 1e3 / rows.len().max(1) as f64
        );
        rows.len()
    };
    // The documents alone, read into a cache of their own (what a first report's reads
    // cost without the reference data's first indexing and the KPIs): taken from the
    // reads stored with them, and read from the documents themselves (as for documents
    // stored before the server kept their reads).
    let stored = state
        .store
        .visits_in_range(None, 0, i64::MAX)
        .expect("stored visits");
    let store = state.store.clone();
    let stored_reads = |ids: &[&str]| store.visit_reads(ids).expect("stored reads");
    let no_reads = |_: &[&str]| Vec::new();
    let sources: [(&str, StoredReads<'_>); 2] =
        [("stored reads", &stored_reads), ("documents", &no_reads)];
    for (from, reads) in sources {
        let (started, rss_before) = (Instant::now(), rss_kb());
        let alone = fieldsync_server::dashboard::read_visits::ReadVisits::default();
        let read_alone = alone.read_all(&stored, reads);
        let ms = started.elapsed().as_secs_f64() * 1e3;
        drop(read_alone);
        println!(
            "the {} visits alone, cold, from their {from}: {ms:.1} ms; kept, they take {:.1} KB each (RSS)",
            alone.len(),
            (rss_kb() - rss_before) as f64 / alone.len().max(1) as f64
        );
    }
    let first = read("read 1 (after a start)");
    assert!(
        first * 10 >= visits * 9,
        "the week's visits are in the report"
    );
    for r in 2..=rounds {
        read(&format!("read {r}"));
    }
    // 1 % of the visits changed by their rep: a note added, pushed again whole.
    for (id, doc) in docs.iter_mut().step_by(100) {
        doc.edit(&author, now, |w| w.set_notes("Back room checked again."))
            .expect("note");
        push(doc, id);
    }
    read("read after 1 % of the visits changed");
}
