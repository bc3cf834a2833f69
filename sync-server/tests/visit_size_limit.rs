//! The size of one visit over all pushes (`fieldsync_server::ingest::VisitLimits`): the
//! change guard bounds one request, these bound what a visit's document may grow to over
//! many. A push that would take a visit over a limit is rejected for that visit with a
//! reason that says so; the other visits of the same request go through, and the refused
//! visit's stored document is unchanged. A typical visit stays far below the defaults, and
//! the defaults stay within what a device accepts as one document.

use automerge::ReadDoc as _;
mod common;
#[path = "common/inproc.rs"]
mod inproc;

use fieldsync_core::fixtures::FixtureSize;
use fieldsync_core::store::DeviceStore;
use fieldsync_core::sync::doc_check;
use fieldsync_core::sync::protocol::*;
use fieldsync_core::visit::{GeoPoint, InventoryInput};
use fieldsync_server::ingest::{MAX_VISIT_DOC_BYTES, MAX_VISIT_OPS, VisitLimits};
use fieldsync_server::{AppState, Config, SqliteStore, Store};
use inproc::{post_json, seeded_store};
use std::sync::Arc;

const A: &str = "v-size-a";
const B: &str = "v-size-b";

struct Env {
    store: Arc<SqliteStore>,
    refs: fieldsync_core::model::ReferenceData,
    shop: String,
    dir: tempfile::TempDir,
}

fn router(e: &Env, limits: VisitLimits) -> axum::Router {
    fieldsync_server::app(AppState::new(
        e.store.clone(),
        Config {
            visit_limits: limits,
            ..Config::default()
        },
    ))
}

/// A server with visits A and B planned for rep-1 in t-1.
async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let size = FixtureSize {
        stores_per_territory: 2,
        products: 30,
        reps_per_territory: 1,
    };
    let (store, refs) = seeded_store(&dir.path().join("size.db"), 4, &size);
    let now = chrono::Utc::now().timestamp_millis();
    let shop = inproc::store_in(&refs, "t-1");
    let e = Env {
        store,
        refs,
        shop,
        dir,
    };
    let r = router(&e, VisitLimits::default());
    for (i, v) in [A, B].iter().enumerate() {
        let start = now - 600_000 + 60_000 * i as i64;
        inproc::plan_rep_visit(&r, &e.shop, v, start, start + 3_600_000).await;
    }
    e
}

/// rep-1's phone holding visits A and B.
fn rep_device(e: &Env) -> DeviceStore {
    inproc::rep_device(e.dir.path(), &e.store, &e.refs, &[A, B])
}

/// The device's pending changes, by visit, as one sync request's groups.
fn outbox_groups(d: &DeviceStore) -> Vec<VisitChanges> {
    let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for c in d.outbox(10_000).unwrap() {
        groups
            .entry(c.visit_id.clone())
            .or_default()
            .push(encode_change(&c.bytes));
    }
    groups
        .into_iter()
        .map(|(visit_id, changes)| VisitChanges { visit_id, changes })
        .collect()
}

async fn push(r: &axum::Router, changes: Vec<VisitChanges>) -> SyncResponse {
    let body = serde_json::to_vec(&SyncRequest {
        protocol: PROTOCOL_VERSION,
        device_id: "phone".into(),
        changes,
        ..Default::default()
    })
    .unwrap();
    let (status, body) = post_json(r, "/v1/sync", "rep-token", body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// Pushes the device's outbox and applies the answer's acks and rejections to the device.
async fn sync_outbox(r: &axum::Router, d: &DeviceStore) -> SyncResponse {
    let resp = push(r, outbox_groups(d)).await;
    d.acknowledge(&resp.acks).unwrap();
    for x in &resp.rejections {
        d.quarantine(&x.visit_id, &x.reason, &x.hashes).unwrap();
    }
    resp
}

/// (operations, bytes saved without compression) of the server's document of `visit`.
fn size_on_server(store: &SqliteStore, visit: &str) -> (u64, usize) {
    let am = automerge::Automerge::load(&store.visit(visit).unwrap().unwrap().doc).unwrap();
    (am.stats().num_ops, am.save_nocompress().len())
}

fn stored_doc(store: &SqliteStore, visit: &str) -> Vec<u8> {
    store.visit(visit).unwrap().unwrap().doc
}

fn notes_on_server(store: &SqliteStore, visit: &str) -> String {
    fieldsync_core::document::VisitDoc::load(&stored_doc(store, visit))
        .unwrap()
        .notes()
        .unwrap()
}

fn assert_too_large(r: &Rejection, what: &str, limit: u64) {
    assert_eq!(r.visit_id, A, "{r:?}");
    for part in [
        format!("visit {A} is too large"),
        format!("over the server's limit of {limit} {what} per visit"),
        "Nothing of them was stored".to_string(),
        "Report this visit to your administrator".to_string(),
    ] {
        assert!(r.reason.contains(&part), "{part:?} not in {:?}", r.reason);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_visit_cannot_grow_past_the_op_limit_over_many_pushes() {
    let e = env().await;
    let d = rep_device(&e);
    let base = size_on_server(&e.store, A)
        .0
        .max(size_on_server(&e.store, B).0);
    let limit = base + 300;
    let r = router(
        &e,
        VisitLimits {
            ops: limit,
            ..VisitLimits::default()
        },
    );
    // First push: within the limit (each character of the notes is one operation).
    d.edit_notes(A, 0, 0, &"a".repeat(150)).unwrap();
    let first = sync_outbox(&r, &d).await;
    assert!(first.rejections.is_empty(), "{first:?}");
    assert!(!first.acks.is_empty());
    let (ops, _) = size_on_server(&e.store, A);
    assert!(ops > base + 150 && ops <= limit, "{ops} of {limit}");
    // Second push: no larger than the first, but it would take A over; B goes through.
    let a_before = stored_doc(&e.store, A);
    let (visits_before, changes_before) = e.store.counts().unwrap();
    d.edit_notes(A, 150, 0, &"b".repeat(200)).unwrap();
    d.edit_notes(B, 0, 0, "shelf strips reordered").unwrap();
    let groups = outbox_groups(&d);
    let a_hashes = groups
        .iter()
        .find(|g| g.visit_id == A)
        .unwrap()
        .changes
        .len();
    let b_hashes = groups
        .iter()
        .find(|g| g.visit_id == B)
        .unwrap()
        .changes
        .len();
    let second = sync_outbox(&r, &d).await;
    assert_eq!(second.rejections.len(), 1, "{second:?}");
    let rej = &second.rejections[0];
    assert_too_large(rej, "operations", limit);
    assert!(rej.reason.contains("operations"), "{}", rej.reason);
    assert_eq!(rej.hashes.len(), a_hashes);
    assert_eq!(second.acks.len(), b_hashes, "{second:?}");
    // A is exactly as before; B holds the new notes.
    assert_eq!(stored_doc(&e.store, A), a_before);
    assert_eq!(notes_on_server(&e.store, A), "a".repeat(150));
    assert_eq!(notes_on_server(&e.store, B), "shelf strips reordered");
    assert_eq!(
        e.store.counts().unwrap(),
        (visits_before, changes_before + b_hashes as i64)
    );
    // The device keeps A's refused changes in quarantine with the reason.
    let quarantined = d.quarantined().unwrap();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert_eq!(quarantined[0].0, A);
}

#[tokio::test(flavor = "current_thread")]
async fn a_push_that_would_make_a_visit_too_many_bytes_is_rejected_for_that_visit_only() {
    let e = env().await;
    let d = rep_device(&e);
    let base = size_on_server(&e.store, A)
        .1
        .max(size_on_server(&e.store, B).1);
    let limit = base + 2_000;
    let r = router(
        &e,
        VisitLimits {
            doc_bytes: limit,
            ..VisitLimits::default()
        },
    );
    let a_before = stored_doc(&e.store, A);
    // Few operations, many bytes: one long line of notes would be cheap in operations
    // but not in bytes, so the text is varied (no run-length compression of the values).
    let text: String = (0..6_000)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect();
    d.edit_notes(A, 0, 0, &text).unwrap();
    d.edit_notes(B, 0, 0, "ok").unwrap();
    let resp = sync_outbox(&r, &d).await;
    assert_eq!(resp.rejections.len(), 1, "{resp:?}");
    assert_too_large(&resp.rejections[0], "bytes", limit as u64);
    assert!(!resp.acks.is_empty(), "{resp:?}");
    assert_eq!(stored_doc(&e.store, A), a_before);
    assert_eq!(notes_on_server(&e.store, B), "ok");
    assert!(size_on_server(&e.store, B).1 <= limit);
}

#[tokio::test(flavor = "current_thread")]
async fn a_typical_visit_is_far_below_the_default_limits() {
    let e = env().await;
    let d = rep_device(&e);
    let idx = e.refs.index();
    let shop = idx.store(&e.shop).unwrap();
    let at = GeoPoint {
        lat: shop.lat,
        lng: shop.lng,
    };
    let products: Vec<String> = idx
        .assortment_for(shop)
        .into_iter()
        .take(20)
        .map(str::to_string)
        .collect();
    assert!(products.len() >= 10, "{products:?}");
    d.check_in(A, at).unwrap();
    for (i, p) in products.iter().enumerate() {
        let input = InventoryInput {
            shelf_qty: Some(4 + i as i64),
            backroom_qty: Some(i as i64 % 5),
            out_of_stock: Some(false),
            observed_price_cents: Some(199 + i as i64),
            facings: Some(1 + i as i64 % 4),
        };
        d.record_inventory(A, p, &input).unwrap();
    }
    d.set_notes(
        A,
        "Cola display missing its header card; store manager will reorder shelf strips.",
    )
    .unwrap();
    d.check_out(A, at).unwrap();
    let resp = sync_outbox(&router(&e, VisitLimits::default()), &d).await;
    assert!(resp.rejections.is_empty(), "{resp:?}");
    let (ops, bytes) = size_on_server(&e.store, A);
    eprintln!(
        "typical visit on the server: {ops} operations (limit {MAX_VISIT_OPS}), {bytes} bytes \
         (limit {MAX_VISIT_DOC_BYTES})"
    );
    assert!(ops * 200 < MAX_VISIT_OPS, "{ops}");
    assert!(bytes * 1_000 < MAX_VISIT_DOC_BYTES, "{bytes}");
}

#[test]
fn the_default_limits_keep_every_visit_deliverable_to_a_device() {
    // A visit entering a device's scope arrives as one document: the device must accept
    // any visit the server accepted (doc_check), with room for predecessor references.
    let d = VisitLimits::default();
    assert_eq!((d.ops, d.doc_bytes), (MAX_VISIT_OPS, MAX_VISIT_DOC_BYTES));
    assert!(d.ops * 4 <= doc_check::MAX_DOCUMENT_ROWS);
    assert!(d.ops * 4 <= fieldsync_core::sync::guard::MAX_WORK_PER_APPLY);
    assert!(d.doc_bytes * 4 <= doc_check::MAX_DOCUMENT_BYTES);
    assert_eq!(Config::default().visit_limits, d);
}

/// `serve --max-visit-ops` / `--max-visit-bytes`: the binary refuses limits of zero or
/// above the defaults (the defaults are what every device accepts as one document), and
/// lowers them: a rep's visit that grows over the lowered limit is rejected with a reason
/// naming it and kept on the phone, while the rep's small visit of the same sync goes
/// through.
#[tokio::test]
async fn the_serve_flags_lower_the_limits() {
    let data = tempfile::tempdir().unwrap();
    for (flag, value) in [
        ("--max-visit-ops", "0".to_string()),
        ("--max-visit-ops", (MAX_VISIT_OPS + 1).to_string()),
        ("--max-visit-bytes", (MAX_VISIT_DOC_BYTES + 1).to_string()),
    ] {
        let out = std::process::Command::new(common::BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                flag,
                &value,
                "--data-dir",
            ])
            .arg(data.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} {value} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{err}");
    }

    let refs = common::seed(data.path());
    let server = common::Server::start_with(data.path(), 0, &["--max-visit-ops", "150"]);
    let rep = refs
        .users
        .iter()
        .find(|u| u.role == fieldsync_core::model::Role::Rep)
        .unwrap();
    let phone = common::device(&server, data.path(), &rep.username, "phone-limits").await;
    phone.client.sync(&phone.store, None).await.unwrap();
    let shop = phone.store.reference_data().stores[0].clone();
    let at = GeoPoint {
        lat: shop.lat,
        lng: shop.lng,
    };
    let small = phone
        .store
        .create_ad_hoc_visit(&shop.id, "tt-quick")
        .unwrap();
    phone.store.check_in(&small, at).unwrap();
    let big = phone
        .store
        .create_ad_hoc_visit(&shop.id, "tt-standard")
        .unwrap();
    phone.store.check_in(&big, at).unwrap();
    let products = phone.store.visit_checklist(&big).unwrap().product_ids;
    for (i, p) in products.iter().cycle().take(100).enumerate() {
        let line = InventoryInput {
            shelf_qty: Some(i as i64),
            facings: Some(2),
            ..Default::default()
        };
        phone.store.record_inventory(&big, p, &line).unwrap();
    }
    let ops = |visit: &str| {
        let mut doc = automerge::Automerge::new();
        for c in phone.store.changes_since(visit, &[]).unwrap() {
            doc.load_incremental(&c).unwrap();
        }
        doc.stats().num_ops
    };
    assert!(
        ops(&small) < 150 && ops(&big) > 150,
        "{} {}",
        ops(&small),
        ops(&big)
    );
    let report = phone.client.sync(&phone.store, None).await.unwrap();
    assert_eq!(report.rejections.len(), 1, "{:?}", report.rejections);
    let r = &report.rejections[0];
    assert_eq!(r.visit_id, big);
    assert!(
        r.reason
            .contains("over the server's limit of 150 operations per visit"),
        "{}",
        r.reason
    );
    assert_eq!(phone.store.quarantined().unwrap().len(), 1);
    let token = &phone.token;
    assert!(common::server_visit(&server, token, &small).await.is_ok());
    assert_eq!(
        common::server_visit(&server, token, &big)
            .await
            .unwrap_err(),
        404
    );
}
