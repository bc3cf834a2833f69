//! The change guard (`fieldsync_core::sync::guard`) on both sides of `/v1/sync`: change
//! bytes that would make Automerge allocate gigabytes (the fuzzing findings and hand-made
//! ones, kept in `tests/fuzz/regressions/`) are refused with a clear reason, quickly, and
//! change nothing; large legitimate changes still pass; one request's work is bounded, the
//! visits over its budget waiting for the next request.

#[path = "common/inproc.rs"]
mod inproc;

use fieldsync_core::fixtures::FixtureSize;
use fieldsync_core::model::Role;
use fieldsync_core::store::DeviceStore;
use fieldsync_core::sync::guard::{self, OpBudget};
use fieldsync_core::sync::protocol::*;
use fieldsync_server::ingest::{self, Writer};
use fieldsync_server::{AppState, Config, SqliteStore, Store};
use inproc::{post_json, seeded_store};
use std::sync::Arc;
use std::time::{Duration, Instant};

const VISITS: [&str; 3] = ["v-guard-1", "v-guard-2", "v-guard-3"];

struct Env {
    router: axum::Router,
    store: Arc<SqliteStore>,
    refs: fieldsync_core::model::ReferenceData,
    dir: tempfile::TempDir,
}

/// A server with three visits planned for rep-1 in t-1.
async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let size = FixtureSize {
        stores_per_territory: 2,
        products: 6,
        reps_per_territory: 1,
    };
    let (store, refs) = seeded_store(&dir.path().join("guard.db"), 2, &size);
    let now = chrono::Utc::now().timestamp_millis();
    let router = fieldsync_server::app(AppState::new(store.clone(), Config::default()));
    let shop = inproc::store_in(&refs, "t-1");
    for (i, v) in VISITS.iter().enumerate() {
        let start = now + 3_600_000 * (i as i64 + 1);
        inproc::plan_rep_visit(&router, &shop, v, start, start + 1_800_000).await;
    }
    Env {
        router,
        store,
        refs,
        dir,
    }
}

/// rep-1's phone holding the three visits.
fn rep_device(e: &Env) -> DeviceStore {
    inproc::rep_device(e.dir.path(), &e.store, &e.refs, &VISITS)
}

/// The device's pending changes for `visit`, taken out of its outbox.
fn take_outbox(d: &DeviceStore, visit: &str) -> Vec<Vec<u8>> {
    let out: Vec<_> = d
        .outbox(1000)
        .unwrap()
        .into_iter()
        .filter(|c| c.visit_id == visit)
        .collect();
    let hashes: Vec<String> = out.iter().map(|c| c.hash.clone()).collect();
    d.acknowledge(&hashes).unwrap();
    out.into_iter().map(|c| c.bytes).collect()
}

fn group(visit: &str, changes: &[Vec<u8>]) -> VisitChanges {
    VisitChanges {
        visit_id: visit.into(),
        changes: changes.iter().map(|b| encode_change(b)).collect(),
    }
}

async fn push(e: &Env, changes: Vec<VisitChanges>) -> SyncResponse {
    let body = serde_json::to_vec(&SyncRequest {
        protocol: PROTOCOL_VERSION,
        device_id: "phone".into(),
        changes,
        ..Default::default()
    })
    .unwrap();
    let (status, body) = post_json(&e.router, "/v1/sync", "rep-token", body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// Everything stored that a refused push must not change.
fn snapshot(store: &SqliteStore) -> (i64, i64, Vec<Vec<u8>>) {
    let (visits, changes) = store.counts().unwrap();
    let docs = VISITS
        .iter()
        .map(|v| store.visit(v).unwrap().unwrap().doc)
        .collect();
    (visits, changes, docs)
}

/// The raw change bytes of the resource findings (`oom-*`, `slow-*`, `bomb-*`) pushed to
/// the server by the `sync_ingest` fuzz target (odd first byte, then the change).
fn findings() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fuzz/regressions/sync_ingest");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            ["oom-", "slow-", "bomb-"].iter().any(|x| n.starts_with(x))
        })
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            assert!(data[0] & 1 == 1, "{p:?}");
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                data[1..].to_vec(),
            )
        })
        .collect();
    out.sort();
    assert!(out.len() >= 9, "{out:?}");
    out
}

#[tokio::test(flavor = "current_thread")]
async fn oversized_changes_are_refused_over_http_and_change_nothing() {
    let e = env().await;
    let d = rep_device(&e);
    let before = snapshot(&e.store);
    for (name, bytes) in findings() {
        let start = Instant::now();
        // The bad change next to a good visit's change: the good one goes through.
        d.edit_notes(VISITS[1], 0, 0, &format!("{name} ")).unwrap();
        let good = take_outbox(&d, VISITS[1]);
        let resp = push(
            &e,
            vec![group(VISITS[0], &[bytes]), group(VISITS[1], &good)],
        )
        .await;
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{name}: {:?}",
            start.elapsed()
        );
        assert_eq!(resp.rejections.len(), 1, "{name}: {resp:?}");
        let r = &resp.rejections[0];
        assert_eq!(r.visit_id, VISITS[0]);
        assert!(
            r.reason
                .starts_with("change #0 of visit v-guard-1: not an Automerge change: "),
            "{name}: {}",
            r.reason
        );
        let why = if name.starts_with("bomb-") {
            "inflates to more than"
        } else if name.contains("pred-count") {
            "predecessor references"
        } else if name.contains("op-count") {
            "operations a change may hold"
        } else {
            "a bundle of changes"
        };
        assert!(r.reason.contains(why), "{name}: {}", r.reason);
        assert_eq!(resp.acks.len(), good.len(), "{name}: {resp:?}");
    }
    // Nothing of the refused visit changed; the good one holds every note.
    let after = snapshot(&e.store);
    assert_eq!(after.2[0], before.2[0]);
    assert_eq!(after.2[2], before.2[2]);
    assert_eq!(after.1, before.1 + findings().len() as i64);
    let server_doc = fieldsync_core::document::VisitDoc::load(&after.2[1]).unwrap();
    assert_eq!(
        server_doc.notes().unwrap(),
        d.visit(VISITS[1]).unwrap().notes
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_device_refuses_oversized_changes_from_the_server() {
    let e = env().await;
    let d = rep_device(&e);
    let before = d.visit(VISITS[0]).unwrap();
    let heads = d.all_heads().unwrap();
    for (name, bytes) in findings() {
        let start = Instant::now();
        let err = d.apply_remote(VISITS[0], &[bytes]).unwrap_err().to_string();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{name}: {:?}",
            start.elapsed()
        );
        assert!(
            err.contains("visit v-guard-1: malformed change: not an Automerge change: "),
            "{name}: {err}"
        );
    }
    assert_eq!(d.visit(VISITS[0]).unwrap(), before);
    assert_eq!(d.all_heads().unwrap(), heads);
}

/// A change of 90,000 operations (a 90,000-character note) is legitimate: it passes the
/// guard on the server and on another device.
#[tokio::test(flavor = "current_thread")]
async fn a_large_legitimate_change_passes_both_ways() {
    let e = env().await;
    let d = rep_device(&e);
    let text = "0123456789".repeat(9_000);
    d.edit_notes(VISITS[0], 0, 0, &text).unwrap();
    let changes = take_outbox(&d, VISITS[0]);
    assert_eq!(changes.len(), 1);
    let shape = guard::check_change(&changes[0]).unwrap();
    assert!(shape.ops >= 90_000, "{shape:?}");
    let resp = push(&e, vec![group(VISITS[0], &changes)]).await;
    assert!(resp.rejections.is_empty(), "{:?}", resp.rejections);
    assert_eq!(resp.acks.len(), 1);
    let other = DeviceStore::open(e.dir.path().join("other.db"), "rep-1", "phone-2").unwrap();
    other.replace_reference_data(e.refs.clone()).unwrap();
    let doc = automerge::Automerge::load(&e.store.visit(VISITS[0]).unwrap().unwrap().doc).unwrap();
    let all: Vec<Vec<u8>> = doc
        .get_changes(&[])
        .into_iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    other.apply_remote(VISITS[0], &all).unwrap();
    assert_eq!(other.visit(VISITS[0]).unwrap().notes, text);
}

/// One request's budget: visits are taken in order while it lasts; the next visit gets no
/// verdict (nothing stored, nothing acknowledged) and goes through in a later request; a
/// visit over a whole budget on its own is refused.
#[tokio::test(flavor = "current_thread")]
async fn a_request_budget_leaves_the_visits_it_cannot_take_for_later() {
    let e = env().await;
    let d = rep_device(&e);
    let writer = Writer {
        user_id: "rep-1".into(),
        role: Role::Rep,
        territories: vec!["t-1".into()],
        device_id: "phone".into(),
        scope: None,
        ever_listed: None,
    };
    let mut groups = Vec::new();
    let mut work = Vec::new();
    for v in VISITS {
        d.edit_notes(v, 0, 0, &"x".repeat(400)).unwrap();
        let changes = take_outbox(&d, v);
        work.push(
            changes
                .iter()
                .map(|c| guard::check_change(c).unwrap().work())
                .sum::<u64>(),
        );
        groups.push(group(v, &changes));
    }
    assert!(work.iter().all(|w| *w >= 400), "{work:?}");
    let before = snapshot(&e.store);

    // Room for the first two visits only.
    let refs = e.refs.index();
    let mut budget = OpBudget::new(work[0] + work[1] + work[2] / 2);
    let first = ingest::ingest_within(&*e.store, &writer, &refs, &groups[0], &mut budget).unwrap();
    let second = ingest::ingest_within(&*e.store, &writer, &refs, &groups[1], &mut budget).unwrap();
    let third = ingest::ingest_within(&*e.store, &writer, &refs, &groups[2], &mut budget).unwrap();
    assert_eq!(
        (first.applied, second.applied),
        (1, 1),
        "{first:?} {second:?}"
    );
    assert_eq!(third, ingest::Outcome::default());
    assert_eq!(budget.used(), work[0] + work[1]);
    let after = snapshot(&e.store);
    assert_eq!(after.1, before.1 + 2);
    assert_eq!(after.2[2], before.2[2]);

    // The next request takes it.
    let mut next = OpBudget::new(work[2]);
    let third = ingest::ingest_within(&*e.store, &writer, &refs, &groups[2], &mut next).unwrap();
    assert_eq!(third.applied, 1, "{third:?}");

    // Over a whole budget on its own: refused, naming the budget.
    d.edit_notes(VISITS[0], 0, 0, &"y".repeat(100)).unwrap();
    let big = group(VISITS[0], &take_outbox(&d, VISITS[0]));
    let before = snapshot(&e.store);
    let out =
        ingest::ingest_within(&*e.store, &writer, &refs, &big, &mut OpBudget::new(50)).unwrap();
    let reason = &out.rejection.as_ref().expect("refused").reason;
    assert!(reason.contains("too many operations at once"), "{reason}");
    assert_eq!(snapshot(&e.store), before);
}

/// Over HTTP, the server spends one budget per request (`guard::MAX_WORK_PER_REQUEST`):
/// three visits of 90,000 operations each do not fit in one request; the third gets no
/// verdict and is taken by the next request.
#[tokio::test(flavor = "current_thread")]
async fn one_request_holds_at_most_its_budget_of_operations() {
    let e = env().await;
    let d = rep_device(&e);
    let mut groups = Vec::new();
    for v in VISITS {
        d.edit_notes(v, 0, 0, &"n".repeat(90_000)).unwrap();
        groups.push(group(v, &take_outbox(&d, v)));
    }
    const {
        assert!(
            3 * 90_000 > guard::MAX_WORK_PER_REQUEST && 2 * 90_010 < guard::MAX_WORK_PER_REQUEST
        );
    };
    let before = snapshot(&e.store);
    let resp = push(&e, groups.clone()).await;
    assert!(resp.rejections.is_empty(), "{:?}", resp.rejections);
    assert!(resp.resend.is_empty(), "{:?}", resp.resend);
    assert_eq!(resp.acks.len(), 2, "{:?}", resp.acks);
    let after = snapshot(&e.store);
    assert_eq!(after.1, before.1 + 2);
    assert_eq!(
        after.2[2], before.2[2],
        "the third visit was not left alone"
    );
    // The device sends it again: taken.
    let resp = push(&e, vec![groups[2].clone()]).await;
    assert_eq!(resp.acks.len(), 1, "{resp:?}");
    assert_eq!(snapshot(&e.store).1, before.1 + 3);
}
