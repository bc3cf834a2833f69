//! End-to-end: the real `fieldsync-server` binary on 127.0.0.1 with a free port and a
//! temp data dir, driven by several device stores through `fieldsync-core`'s sync client.

mod common;

use common::*;
use fieldsync_core::fixtures::Rng;
use fieldsync_core::store::DeviceStore;
use fieldsync_core::sync::SyncClient;
use fieldsync_core::sync::client::{HttpTransport, Transport, TransportFuture};
use fieldsync_core::sync::protocol::*;
use fieldsync_core::visit::{GeoPoint, InventoryInput, VisitPlan, VisitStatus};
use fieldsync_server::Store as _;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

fn pos(store: &DeviceStore, store_id: &str) -> GeoPoint {
    let r = store.reference_data();
    let s = r.stores.iter().find(|s| s.id == store_id).unwrap();
    GeoPoint {
        lat: s.lat,
        lng: s.lng,
    }
}

/// Checks in and records `n` inventory lines (the first one out of stock).
fn work(store: &DeviceStore, visit_id: &str, n: usize, base_qty: i64) {
    let v = store.visit(visit_id).unwrap();
    if v.status == VisitStatus::Planned {
        store
            .check_in(visit_id, pos(store, &v.plan.store_id))
            .unwrap();
    }
    let r = store.reference_data();
    let idx = r.index();
    let shop = idx.store(&v.plan.store_id).unwrap();
    for (i, p) in idx.assortment_for(shop).into_iter().take(n).enumerate() {
        let qty = if i == 0 { 0 } else { base_qty + i as i64 };
        store
            .record_inventory(
                visit_id,
                p,
                &InventoryInput {
                    shelf_qty: Some(qty),
                    out_of_stock: Some(qty == 0),
                    ..Default::default()
                },
            )
            .unwrap();
    }
}

async fn converged(server: &Server, manager_token: &str, devices: &[&Device]) {
    for d in devices {
        assert_eq!(
            d.store.outbox_len().unwrap(),
            0,
            "{} still has an outbox",
            d.device_id
        );
        for id in d.store.visit_ids().unwrap() {
            let on_server = server_visit(server, manager_token, &id)
                .await
                .expect("visit on server");
            assert_eq!(
                d.store.visit(&id).unwrap(),
                on_server,
                "visit {id} on {} differs from the server",
                d.device_id
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_reps_and_a_manager_converge_in_random_orders_with_duplicates() {
    let (tmp, _, r, server) = seeded_server();
    let t1 = stores_of(&r, "t-1");
    let (rep1, rep2, rep3) = (
        user_id(&r, "rep1"),
        user_id(&r, "rep2"),
        user_id(&r, "rep3"),
    );

    let mgr = device(&server, tmp.path(), "manager1", "mgr-tablet").await;
    let start = now() + HOUR;
    let mut visits = Vec::new();
    for (i, rep) in [&rep1, &rep2, &rep3].into_iter().enumerate() {
        for k in 0..2 {
            visits.push((
                rep.clone(),
                plan_visit(
                    &server,
                    &mgr.token,
                    &t1[i * 2 + k],
                    rep,
                    start + k as i64 * HOUR,
                )
                .await,
            ));
        }
    }
    let a = device(&server, tmp.path(), "rep1", "phone-a").await;
    let b = device(&server, tmp.path(), "rep2", "phone-b").await;
    let c = device(&server, tmp.path(), "rep3", "phone-c").await;
    for d in [&mgr, &a, &b, &c] {
        let rep = d.client.sync(&d.store, None).await.unwrap();
        assert!(rep.reference_updated);
    }
    // Each rep holds exactly their own visits; the manager all six.
    for (d, rep) in [(&a, &rep1), (&b, &rep2), (&c, &rep3)] {
        let mine: BTreeSet<String> = visits
            .iter()
            .filter(|(r, _)| r == rep)
            .map(|(_, v)| v.clone())
            .collect();
        assert_eq!(
            d.store
                .visit_ids()
                .unwrap()
                .into_iter()
                .collect::<BTreeSet<_>>(),
            mine
        );
    }
    assert_eq!(mgr.store.visit_ids().unwrap().len(), 6);

    // Offline work everywhere.
    let mut rng = Rng::new(11);
    for round in 0..3 {
        for (d, rep) in [(&a, &rep1), (&b, &rep2), (&c, &rep3)] {
            for (_, v) in visits.iter().filter(|(r, _)| r == rep) {
                work(&d.store, v, 3 + round, 5 * round as i64 + 1);
                d.store.edit_notes(v, 0, 0, &format!("r{round} ")).unwrap();
            }
        }
        if round == 0 {
            a.store.create_ad_hoc_visit(&t1[10], "tt-quick").unwrap();
        }
        // The manager edits notes and replans a still-planned visit concurrently.
        let v = &visits[(round * 2 + 1) % visits.len()].1;
        mgr.store.edit_notes(v, 0, 0, "Manager: ").unwrap();
        // Sync in a random order, some devices twice (duplicates are harmless).
        let mut order = vec![0usize, 1, 2, 3, 0, 2];
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for i in order {
            let d = [&mgr, &a, &b, &c][i];
            d.client.sync(&d.store, None).await.unwrap();
        }
    }
    // A manager reschedules a visit through the HTTP API; it reaches the rep.
    let target = visits.iter().find(|(r, _)| *r == rep3).unwrap().1.clone();
    let other_planned = {
        // rep3's visits are in progress; plan a fresh one and reschedule it.
        let id = plan_visit(&server, &mgr.token, &t1[7], &rep3, start + 3 * HOUR).await;
        let resp = http()
            .patch(server.url(&format!("/v1/visits/{id}")))
            .bearer_auth(&mgr.token)
            .json(&serde_json::json!({"planned_start": start + 5 * HOUR, "instructions": "Moved"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        id
    };
    let _ = target;
    // Resend already-acknowledged changes by hand: acknowledged again, stored once.
    let before = counts(&server).await;
    let changes = a.store.changes_since(&visits[0].1, &[]).unwrap();
    let req = SyncRequest {
        protocol: PROTOCOL_VERSION,
        device_id: "phone-a".into(),
        cursor: a.store.sync_state("sync.cursor").unwrap(),
        epoch: a.store.sync_state("sync.epoch").unwrap(),
        reference_version: a.store.reference_data().version,
        changes: vec![VisitChanges {
            visit_id: visits[0].1.clone(),
            changes: changes.iter().map(|b| encode_change(b)).collect(),
        }],
        ..Default::default()
    };
    let (resp, ..) = a.client.post_once(&req).await.unwrap();
    assert!(resp.rejections.is_empty(), "{:?}", resp.rejections);
    assert_eq!(resp.acks.len(), changes.len());
    assert_eq!(
        counts(&server).await.1,
        before.1,
        "duplicates must not be stored twice"
    );

    for _ in 0..2 {
        for d in [&a, &b, &c, &mgr] {
            d.client.sync(&d.store, None).await.unwrap();
        }
    }
    converged(&server, &mgr.token, &[&mgr, &a, &b, &c]).await;
    // Every device holding a visit has the same heads as every other.
    let heads_a: std::collections::BTreeMap<_, _> =
        a.store.all_heads().unwrap().into_iter().collect();
    for (id, h) in mgr.store.all_heads().unwrap() {
        if let Some(ha) = heads_a.get(&id) {
            assert_eq!(ha, &h, "heads of {id}");
        }
    }
    let moved = c.store.visit(&other_planned).unwrap();
    assert_eq!(
        (moved.plan.planned_start, moved.plan.instructions.as_str()),
        (start + 5 * HOUR, "Moved")
    );
    let v0 = mgr.store.visit(&visits[1].1).unwrap();
    assert!(v0.notes.contains("Manager: "), "{:?}", v0.notes);
    assert!(
        v0.notes.contains("r2 ") && v0.notes.contains("r0 "),
        "{:?}",
        v0.notes
    );
    // The rep's ad-hoc visit reached the manager.
    assert_eq!(mgr.store.visit_ids().unwrap().len(), 8);
    assert!(a.store.quarantined().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reps_never_see_or_change_another_territory_and_forgeries_are_rejected() {
    let (tmp, _, r, server) = seeded_server();
    let t1 = stores_of(&r, "t-1");
    let rep1 = user_id(&r, "rep1");
    let mgr = device(&server, tmp.path(), "manager1", "mgr-tablet").await;
    let v1 = plan_visit(&server, &mgr.token, &t1[0], &rep1, now() + HOUR).await;
    let v2 = plan_visit(&server, &mgr.token, &t1[1], &rep1, now() + 2 * HOUR).await;

    // rep4 works in t-2: sees none of t-1.
    let d4 = device(&server, tmp.path(), "rep4", "phone-4").await;
    d4.client.sync(&d4.store, None).await.unwrap();
    assert!(d4.store.visit_ids().unwrap().is_empty());
    let refs4 = d4.store.reference_data();
    assert!(
        refs4.stores.iter().all(|s| s.territory_id == "t-2"),
        "rep4 received stores of another territory"
    );
    assert!(!refs4.stores.is_empty());
    assert_eq!(
        server_visit(&server, &d4.token, &v1).await.unwrap_err(),
        403
    );
    // Another manager's territory is forbidden for planning too.
    let mgr2 = device(&server, tmp.path(), "manager2", "mgr2").await;
    let resp = http()
        .post(server.url("/v1/visits"))
        .bearer_auth(&mgr2.token)
        .json(&serde_json::json!({"store_id": t1[0], "rep_id": rep1, "planned_start": now(), "planned_end": now() + HOUR, "template_id": "tt-standard"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // rep4 forges: an ad-hoc visit in t-1 (its device is given the full reference data).
    d4.store.replace_reference_data(r.clone()).unwrap();
    let forged = d4.store.create_ad_hoc_visit(&t1[3], "tt-quick").unwrap();
    // …and edits rep1's visit (copied onto its device).
    let d1 = device(&server, tmp.path(), "rep1", "phone-1").await;
    d1.client.sync(&d1.store, None).await.unwrap();
    d4.store
        .apply_remote(&v1, &d1.store.changes_since(&v1, &[]).unwrap())
        .unwrap();
    d4.store.check_in(&v1, pos(&d4.store, &t1[0])).unwrap();
    let before = counts(&server).await;
    let rep = d4.client.sync(&d4.store, None).await.unwrap();
    let reasons: Vec<_> = rep
        .rejections
        .iter()
        .map(|x| (x.visit_id.clone(), x.reason.clone()))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons.iter().all(|(_, why)| why.starts_with("forbidden")),
        "{reasons:?}"
    );
    assert_eq!(
        server_visit(&server, &mgr.token, &forged)
            .await
            .unwrap_err(),
        404
    );
    assert_eq!(
        server_visit(&server, &mgr.token, &v1).await.unwrap().status,
        VisitStatus::Planned
    );
    assert_eq!(counts(&server).await, before, "nothing stored");
    assert_eq!(d4.store.quarantined().unwrap().len(), 2);

    // rep1 changes the plan of their own visit: not theirs to change.
    let before_v2 = server_visit(&server, &mgr.token, &v2).await.unwrap();
    let mut plan = d1.store.visit(&v2).unwrap().plan;
    plan.rep_id = "rep-2".into();
    plan.planned_start += HOUR;
    d1.store.update_plan(&v2, &plan).unwrap();
    // ...while a valid change to another visit goes through in the same request.
    work(&d1.store, &v1, 2, 4);
    let rep = d1.client.sync(&d1.store, None).await.unwrap();
    assert_eq!(rep.rejections.len(), 1, "{:?}", rep.rejections);
    assert_eq!(rep.rejections[0].visit_id, v2);
    assert!(
        rep.rejections[0]
            .reason
            .contains("a rep may not write plan/"),
        "{}",
        rep.rejections[0].reason
    );
    assert_eq!(
        server_visit(&server, &mgr.token, &v2).await.unwrap(),
        before_v2
    );
    assert_eq!(
        server_visit(&server, &mgr.token, &v1).await.unwrap(),
        d1.store.visit(&v1).unwrap()
    );

    // The manager forges a check-in on a device.
    mgr.client.sync(&mgr.store, None).await.unwrap();
    mgr.store.check_in(&v2, pos(&mgr.store, &t1[1])).unwrap();
    let rep = mgr.client.sync(&mgr.store, None).await.unwrap();
    assert_eq!(rep.rejections.len(), 1, "{:?}", rep.rejections);
    assert!(
        rep.rejections[0]
            .reason
            .contains("a manager may not write actual/"),
        "{}",
        rep.rejections[0].reason
    );
    assert_eq!(
        server_visit(&server, &mgr.token, &v2).await.unwrap(),
        before_v2
    );

    // Another device of rep1 replays a fresh change of phone-1's actor: refused.
    let other = device(&server, tmp.path(), "rep1", "phone-1b").await;
    d1.store.edit_notes(&v1, 0, 0, "mine ").unwrap();
    let stolen: Vec<_> = d1
        .store
        .outbox(10)
        .unwrap()
        .into_iter()
        .filter(|c| c.visit_id == v1)
        .collect();
    assert_eq!(stolen.len(), 1);
    let req = SyncRequest {
        protocol: PROTOCOL_VERSION,
        device_id: "phone-1b".into(),
        changes: vec![VisitChanges {
            visit_id: v1.clone(),
            changes: stolen.iter().map(|c| encode_change(&c.bytes)).collect(),
        }],
        ..Default::default()
    };
    let (resp, ..) = other.client.post_once(&req).await.unwrap();
    assert_eq!(resp.rejections.len(), 1, "{:?}", resp.rejections);
    assert!(
        resp.rejections[0]
            .reason
            .contains("belongs to another device"),
        "{}",
        resp.rejections[0].reason
    );
    // The real device still gets it through.
    let rep = d1.client.sync(&d1.store, None).await.unwrap();
    assert!(rep.rejections.is_empty(), "{:?}", rep.rejections);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_and_the_server_keeps_serving() {
    let (tmp, data, r, server) = seeded_server();
    let d = device(&server, tmp.path(), "rep1", "phone-x").await;
    d.client.sync(&d.store, None).await.unwrap();
    let before = counts(&server).await;
    let h = http();
    let post = |body: Vec<u8>, token: Option<&str>| {
        let mut rb = h
            .post(server.url("/v1/sync"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        rb.send()
    };
    let token = Some(d.token.as_str());
    let cases: [(&[u8], Option<&str>, u16, &str); 5] = [
        (b"{not json", token, 400, "malformed JSON"),
        (
            br#"{"protocol": 99, "device_id": "phone-x"}"#,
            token,
            400,
            "unsupported protocol version 99",
        ),
        (
            br#"{"protocol": 1, "device_id": "phone-x"}"#,
            None,
            401,
            "missing Authorization",
        ),
        (
            br#"{"protocol": 1, "device_id": "phone-x"}"#,
            Some("nope"),
            401,
            "unknown or revoked token",
        ),
        (
            br#"{"protocol": 1, "device_id": "someone-else"}"#,
            token,
            403,
            "issued to device",
        ),
    ];
    for (body, token, want, needle) in cases {
        let resp = post(body.to_vec(), token).await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "{needle}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(
            body["message"].as_str().unwrap_or("").contains(needle),
            "{body} lacks {needle:?}"
        );
        assert!(body["error"].is_string(), "{body}");
    }
    // Garbage change payloads: a per-visit rejection, nothing stored.
    let body = serde_json::json!({"protocol": 1, "device_id": "phone-x", "changes": [
        {"visit_id": "v-garbage", "changes": ["%%% not base64 %%%"]},
        {"visit_id": "v-junk", "changes": [encode_change(b"definitely not automerge")]}]});
    let resp = post(serde_json::to_vec(&body).unwrap(), Some(&d.token))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sr: SyncResponse = resp.json().await.unwrap();
    assert_eq!(sr.rejections.len(), 2, "{:?}", sr.rejections);
    assert!(
        sr.rejections[0].reason.contains("invalid base64"),
        "{:?}",
        sr.rejections
    );
    assert!(
        sr.rejections[1].reason.contains("not an Automerge change"),
        "{:?}",
        sr.rejections
    );
    // Too large.
    let resp = post(vec![b' '; 17 * 1024 * 1024], Some(&d.token))
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // Unknown visit.
    assert_eq!(
        server_visit(&server, &d.token, "no-such-visit")
            .await
            .unwrap_err(),
        404
    );
    // Failed logins are rate-limited.
    for _ in 0..5 {
        let e = fieldsync_core::sync::login(&server.base, "rep2", "wrong password", "p")
            .await
            .unwrap_err();
        assert!(matches!(e, fieldsync_core::Error::Unauthorized(_)), "{e}");
    }
    let e = fieldsync_core::sync::login(&server.base, "rep2", &password("rep2"), "p")
        .await
        .unwrap_err();
    assert!(
        matches!(e, fieldsync_core::Error::Server { status: 429, .. }),
        "{e}"
    );
    // A revoked token stops working at once.
    let out = std::process::Command::new(BIN)
        .args(["admin", "revoke", "--username", "rep1", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = d.client.sync(&d.store, None).await.unwrap_err();
    assert!(matches!(e, fieldsync_core::Error::Unauthorized(_)), "{e}");
    // Still serving, nothing changed.
    assert_eq!(counts(&server).await, before);
    let ok = fieldsync_core::sync::login(&server.base, "rep3", &password("rep3"), "p3")
        .await
        .unwrap();
    assert_eq!(ok.user.territories, vec!["t-1".to_string()]);
    let _ = r;
    let m = metrics(&server).await;
    assert!(m.contains("fieldsync_rejections_total 2"), "{m}");
    assert!(m.contains("fieldsync_sync_seconds_bucket"));
    let api: serde_json::Value = http()
        .get(server.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(api["paths"]["/v1/sync"]["post"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_pushes_loses_nothing_acknowledged_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let r = seed(&data);
    let mut server = Server::start(&data, 0);
    let port = server.port;
    let t1 = stores_of(&r, "t-1");
    let rep1 = user_id(&r, "rep1");
    let mgr = device(&server, tmp.path(), "manager1", "mgr").await;
    let mut visits = Vec::new();
    for (i, shop) in t1.iter().take(4).enumerate() {
        visits.push(plan_visit(&server, &mgr.token, shop, &rep1, now() + i as i64 * HOUR).await);
    }
    let mut d = device(&server, tmp.path(), "rep1", "phone-k").await;
    d.client.sync(&d.store, None).await.unwrap();
    for v in &visits {
        work(&d.store, v, 30, 3);
    }
    let total = d.store.outbox_len().unwrap();
    assert!(total > 100);
    let (_, changes_before) = counts(&server).await;
    // Small batches: many pushes, one of which the kill interrupts.
    d.client = fieldsync_core::sync::SyncClient::with_config(
        &server.base,
        &d.token,
        fieldsync_core::sync::SyncConfig {
            batch: 4,
            ..fast_config()
        },
    )
    .unwrap();
    let killed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killed2 = killed.clone();
    let killer = tokio::task::spawn_blocking(move || {
        // Kill once the server has stored part of the backlog: mid-push.
        let db = rusqlite::Connection::open(server.data_dir.join("fieldsync.db")).unwrap();
        for _ in 0..4000 {
            let n: i64 = db
                .query_row(
                    "SELECT COALESCE(SUM(changes), 0) FROM change_log",
                    [],
                    |r| r.get(0),
                )
                .unwrap_or(0);
            if n >= changes_before + 24 {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(db);
        server.kill9();
        killed2.store(true, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(700));
        let s = Server::start(&server.data_dir, port);
        (server, s)
    });
    let obs = Recorder::default();
    let first = d.client.sync(&d.store, Some(&obs)).await;
    let backoffs = obs
        .states
        .lock()
        .unwrap()
        .iter()
        .filter(|s| matches!(s, fieldsync_core::sync::SyncState::Backoff { .. }))
        .count();
    assert!(
        backoffs > 0,
        "the client should have backed off while the server was down"
    );
    // The kill happened while this sync was still pushing (it retried through it).
    assert!(
        killed.load(std::sync::atomic::Ordering::SeqCst),
        "the sync ended before the kill"
    );
    let (_old, server) = killer.await.unwrap();
    let left_after_kill = d.store.outbox_len().unwrap();
    eprintln!(
        "outbox: {total} before, {left_after_kill} after the kill; first sync: {:?}",
        first.as_ref().map(|r| r.rounds)
    );
    // Whatever happened, syncing again completes.
    for _ in 0..3 {
        if d.store.outbox_len().unwrap() == 0 {
            break;
        }
        let _ = d.client.sync(&d.store, None).await;
    }
    assert!(first.is_ok() || left_after_kill > 0, "{first:?}");
    assert_eq!(d.store.outbox_len().unwrap(), 0);
    let (_, changes_after) = counts(&server).await;
    assert_eq!(
        changes_after - changes_before,
        total as i64,
        "every change stored exactly once"
    );
    for v in &visits {
        assert_eq!(
            server_visit(&server, &mgr.token, v).await.unwrap(),
            d.store.visit(v).unwrap()
        );
    }
}

/// One round of a recorded sync: what the request said of its epochs, and whether the
/// answer carried the reference data.
#[derive(Clone, Debug)]
struct Round {
    epoch: Option<String>,
    reference_epoch: Option<String>,
    got_reference: bool,
}

#[derive(Debug, Default)]
struct Rounds(std::sync::Mutex<Vec<Round>>);

/// The HTTP transport, recording each round.
#[derive(Debug)]
struct Recording {
    inner: HttpTransport,
    rounds: Arc<Rounds>,
}

impl Transport for Recording {
    fn post_sync<'a>(&'a self, req: &'a SyncRequest) -> TransportFuture<'a> {
        Box::pin(async move {
            let out = self.inner.post_sync(req).await?;
            self.rounds.0.lock().unwrap().push(Round {
                epoch: req.epoch.clone(),
                reference_epoch: req.reference_epoch.clone(),
                got_reference: out.0.reference_data.is_some(),
            });
            Ok(out)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restored_from_an_older_backup_gets_lost_changes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let r = seed(&data);
    let mut server = Server::start(&data, 0);
    let t1 = stores_of(&r, "t-1");
    let (rep1, rep2) = (user_id(&r, "rep1"), user_id(&r, "rep2"));
    let mgr = device(&server, tmp.path(), "manager1", "mgr").await;
    let va = plan_visit(&server, &mgr.token, &t1[0], &rep1, now() + HOUR).await;
    let vb = plan_visit(&server, &mgr.token, &t1[1], &rep2, now() + HOUR).await;
    let a = device(&server, tmp.path(), "rep1", "phone-a").await;
    let b = device(&server, tmp.path(), "rep2", "phone-b").await;
    for d in [&a, &b, &mgr] {
        d.client.sync(&d.store, None).await.unwrap();
    }
    work(&a.store, &va, 2, 1);
    a.client.sync(&a.store, None).await.unwrap();

    // Back up (online), then keep working: these changes are acknowledged, then lost.
    let backup = tmp.path().join("backup.db");
    admin_backup(&data, &backup);
    work(&a.store, &va, 6, 10);
    let ad_hoc = a.store.create_ad_hoc_visit(&t1[5], "tt-quick").unwrap();
    work(&b.store, &vb, 4, 2);
    for d in [&a, &b, &mgr, &a] {
        d.client.sync(&d.store, None).await.unwrap();
    }
    assert_eq!(
        a.store.outbox_len().unwrap() + b.store.outbox_len().unwrap(),
        0,
        "{:?}",
        a.store.quarantined()
    );
    let expected_a = a.store.visit(&va).unwrap();
    let expected_b = b.store.visit(&vb).unwrap();
    assert_eq!(mgr.store.visit(&va).unwrap(), expected_a);

    // Restore the older backup.
    assert!(server.stop(), "SIGTERM should stop the server gracefully");
    replace_database(&data, &backup);
    let server = Server::start(&data, server.port);
    assert_ne!(
        server_visit(&server, &mgr.token, &va).await.unwrap(),
        expected_a,
        "the restore lost changes"
    );

    // The manager syncs first (it holds rep1's changes but may not resend them), then the reps.
    // Phone a's rounds are recorded: the reconciliation takes several, and only one answer
    // carries the reference data (the restored database counts versions anew, so the
    // phone's copy, from before the restore, is sent again, but once).
    let rounds = Arc::new(Rounds::default());
    let recorded = SyncClient::with_transport(
        Arc::new(Recording {
            inner: HttpTransport::new(&server.base, &a.token, &fast_config()).unwrap(),
            rounds: rounds.clone(),
        }),
        fast_config(),
    );
    mgr.client.sync(&mgr.store, None).await.unwrap();
    recorded.sync(&a.store, None).await.unwrap();
    for d in [&b, &mgr] {
        d.client.sync(&d.store, None).await.unwrap();
    }
    let new_epoch = a.store.sync_state("sync.epoch").unwrap().unwrap();
    let rounds = rounds.0.lock().unwrap().clone();
    let with_reference: Vec<usize> = (0..rounds.len())
        .filter(|&i| rounds[i].got_reference)
        .collect();
    assert_eq!(with_reference.len(), 1, "{rounds:?}");
    let first = with_reference[0];
    assert!(first + 1 < rounds.len(), "more rounds after it: {rounds:?}");
    assert_eq!(rounds[first].reference_epoch, None, "{rounds:?}");
    for r in &rounds[first + 1..] {
        if r.epoch.as_ref() != Some(&new_epoch) {
            assert_eq!(r.reference_epoch.as_ref(), Some(&new_epoch), "{rounds:?}");
        } else {
            assert_eq!(r.reference_epoch, None, "the same as epoch: {rounds:?}");
        }
    }
    assert_eq!(
        server_visit(&server, &mgr.token, &va).await.unwrap(),
        expected_a
    );
    assert_eq!(
        server_visit(&server, &mgr.token, &vb).await.unwrap(),
        expected_b
    );
    assert_eq!(
        server_visit(&server, &mgr.token, &ad_hoc).await.unwrap(),
        a.store.visit(&ad_hoc).unwrap()
    );
    converged(&server, &mgr.token, &[&mgr, &a, &b]).await;
    let epoch = a.store.sync_state("sync.epoch").unwrap();
    assert_eq!(epoch, mgr.store.sync_state("sync.epoch").unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_work_lost_in_a_restore_arrives_after_a_reassignment() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let r = seed(&data);
    let mut server = Server::start(&data, 0);
    let t1 = stores_of(&r, "t-1");
    let rep1 = user_id(&r, "rep1");
    let mgr = device(&server, tmp.path(), "manager1", "mgr").await;
    let va = plan_visit(&server, &mgr.token, &t1[0], &rep1, now() + HOUR).await;
    let a = device(&server, tmp.path(), "rep1", "phone-a").await;
    a.client.sync(&a.store, None).await.unwrap();
    let backup = tmp.path().join("backup.db");
    admin_backup(&data, &backup);

    // rep1 does the visit; the server acknowledges every change.
    work(&a.store, &va, 5, 3);
    a.client.sync(&a.store, None).await.unwrap();
    assert_eq!(a.store.outbox_len().unwrap(), 0);
    let done = a.store.visit(&va).unwrap();

    // The server is restored from the backup (the work is gone there) and, before the
    // phone reconnects, the manager reassigns the visit to rep2.
    assert!(server.stop());
    replace_database(&data, &backup);
    let server = Server::start(&data, server.port);
    assert!(
        server_visit(&server, &mgr.token, &va)
            .await
            .unwrap()
            .inventory
            .is_empty()
    );
    let resp = http()
        .patch(server.url(&format!("/v1/visits/{va}")))
        .bearer_auth(&mgr.token)
        .json(&serde_json::json!({"rep_id": "rep-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // The phone resends what the server lost: accepted (made while the visit was rep1's),
    // then the visit leaves the phone.
    for _ in 0..2 {
        let rep = a.client.sync(&a.store, None).await.unwrap();
        assert!(rep.rejections.is_empty(), "{rep:?}");
    }
    let on_server = server_visit(&server, &mgr.token, &va).await.unwrap();
    assert_eq!(on_server.plan.rep_id, "rep-2");
    assert_eq!(on_server.inventory, done.inventory);
    assert_eq!(on_server.check_in, done.check_in);
    assert!(a.store.visit_ids().unwrap().is_empty(), "purged from rep1");
    let b = device(&server, tmp.path(), "rep2", "phone-b").await;
    b.client.sync(&b.store, None).await.unwrap();
    assert_eq!(b.store.visit(&va).unwrap().inventory, done.inventory);
}

/// After a restore, a phone's check-in on a visit waits for the reassignment it builds on,
/// which only the manager's tablet can give back: the phone's syncs stop after a few
/// rounds (before: all 64 rounds of the limit, 1.9 MB of reference data down each time)
/// and the check-in arrives once the tablet has resent; the phone also gets a concurrent
/// manager note it never had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_waiting_for_another_devices_resend_stops_the_sync_and_arrives_later() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let r = seed(&data);
    let mut server = Server::start(&data, 0);
    let t1 = stores_of(&r, "t-1");
    let rep1 = user_id(&r, "rep1");
    let rep2 = user_id(&r, "rep2");
    let planner = device(&server, tmp.path(), "manager1", "tablet-a").await;
    let other = device(&server, tmp.path(), "manager1", "tablet-b").await;
    let phone = device(&server, tmp.path(), "rep1", "phone").await;
    for d in [&planner, &other, &phone] {
        d.client.sync(&d.store, None).await.unwrap();
    }
    let backup = tmp.path().join("backup.db");
    admin_backup(&data, &backup);

    // One tablet plans the visit for rep2 and, offline, adds a note; the other tablet
    // reassigns it to rep1, whose phone receives it.
    let start = now() + HOUR;
    let v = other
        .store
        .create_visit(VisitPlan {
            store_id: t1[0].clone(),
            rep_id: rep2.clone(),
            planned_start: start,
            planned_end: start + HOUR,
            priority: 2,
            instructions: "Check the cola display".into(),
            template_id: "tt-standard".into(),
            ad_hoc: false,
        })
        .unwrap();
    other.client.sync(&other.store, None).await.unwrap();
    other
        .store
        .set_notes(&v, "Bring the new price tags")
        .unwrap();
    planner.client.sync(&planner.store, None).await.unwrap();
    let mut plan = planner.store.visit(&v).unwrap().plan;
    plan.rep_id = rep1.clone();
    planner.store.update_plan(&v, &plan).unwrap();
    planner.client.sync(&planner.store, None).await.unwrap();
    phone.client.sync(&phone.store, None).await.unwrap();
    assert_eq!(phone.store.visit(&v).unwrap().plan.rep_id, rep1);

    // The server is restored from the backup (the visit is gone there). The rep checks in
    // offline; the note's tablet resends first (the visit is back, assigned to rep2).
    assert!(server.stop());
    replace_database(&data, &backup);
    let server = Server::start(&data, server.port);
    phone.store.check_in(&v, pos(&phone.store, &t1[0])).unwrap();
    for _ in 0..2 {
        other.client.sync(&other.store, None).await.unwrap();
    }
    // The phone's check-in waits for the reassignment it builds on; the visit, out of its
    // scope on the server for now, stays on the phone (its change is pending).
    for _ in 0..2 {
        let rep = phone.client.sync(&phone.store, None).await.unwrap();
        assert!(!rep.incomplete && rep.rounds <= 6, "{rep:?}");
    }
    assert!(phone.store.outbox_len().unwrap() > 0);
    // The planner resends the reassignment; then the phone's check-in is taken.
    for _ in 0..2 {
        planner.client.sync(&planner.store, None).await.unwrap();
    }
    for _ in 0..3 {
        phone.client.sync(&phone.store, None).await.unwrap();
    }
    assert_eq!(phone.store.outbox_len().unwrap(), 0);
    let on_server = server_visit(&server, &planner.token, &v).await.unwrap();
    assert_eq!(on_server.plan.rep_id, rep1);
    assert!(on_server.check_in.is_some());
    let on_phone = phone.store.visit(&v).unwrap();
    assert_eq!(
        on_phone.notes, "Bring the new price tags",
        "the note reached the phone"
    );
    assert_eq!(on_phone, on_server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visits_leaving_the_scope_are_purged_only_once_nothing_is_pending() {
    let (tmp, _, r, server) = seeded_server();
    let t1 = stores_of(&r, "t-1");
    let rep1 = user_id(&r, "rep1");
    let mgr = device(&server, tmp.path(), "manager1", "mgr").await;
    let v1 = plan_visit(&server, &mgr.token, &t1[0], &rep1, now() + HOUR).await;
    let v2 = plan_visit(&server, &mgr.token, &t1[1], &rep1, now() + 2 * HOUR).await;
    let a = device(&server, tmp.path(), "rep1", "phone-a").await;
    a.client.sync(&a.store, None).await.unwrap();
    assert_eq!(a.store.visit_ids().unwrap().len(), 2);

    // Rescheduled ten days ahead: out of the rep's 7-day window, purged from the device.
    let patch = |id: &str, body: serde_json::Value| {
        http()
            .patch(server.url(&format!("/v1/visits/{id}")))
            .bearer_auth(&mgr.token)
            .json(&body)
            .send()
    };
    let resp = patch(
        &v1,
        serde_json::json!({"planned_start": now() + 10 * 24 * HOUR}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let rep = a.client.sync(&a.store, None).await.unwrap();
    assert_eq!(rep.purged, vec![v1.clone()]);
    assert_eq!(a.store.visit_ids().unwrap(), vec![v2.clone()]);

    // The rep's second phone holds v2 too (synced before the reassignment below).
    let c = device(&server, tmp.path(), "rep1", "phone-c").await;
    c.client.sync(&c.store, None).await.unwrap();
    assert_eq!(c.store.visit_ids().unwrap(), vec![v2.clone()]);

    // The rep checks in offline while the manager reassigns the visit to rep2: the work
    // was done while the visit was theirs, so it arrives, and the visit then leaves the
    // phone (nothing of it is pending any more).
    a.store.check_in(&v2, pos(&a.store, &t1[1])).unwrap();
    let resp = patch(&v2, serde_json::json!({"rep_id": "rep-2"}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let rep = a.client.sync(&a.store, None).await.unwrap();
    assert!(rep.rejections.is_empty(), "{rep:?}");
    assert_eq!(a.store.outbox_len().unwrap(), 0);
    assert_eq!(rep.purged, vec![v2.clone()]);
    assert!(a.store.visit_ids().unwrap().is_empty());
    // rep2 receives it, with rep1's check-in.
    let b = device(&server, tmp.path(), "rep2", "phone-b").await;
    b.client.sync(&b.store, None).await.unwrap();
    assert_eq!(b.store.visit_ids().unwrap(), vec![v2.clone()]);
    let on_b = b.store.visit(&v2).unwrap();
    assert_eq!(on_b.plan.rep_id, "rep-2");
    assert!(on_b.check_in.is_some(), "rep1's offline check-in arrived");

    // Phone c learns of the reassignment (applied from rep2's copy, as a page of changes
    // would deliver it) and the rep writes after it: refused, and the visit stays on the
    // phone, quarantined with its unsent change, although it left the rep's scope.
    let all = b.store.changes_since(&v2, &[]).unwrap();
    c.store.apply_remote(&v2, &all).unwrap();
    assert_eq!(c.store.visit(&v2).unwrap().plan.rep_id, "rep-2");
    c.store.set_notes(&v2, "shelf 3 was empty").unwrap();
    let rep = c.client.sync(&c.store, None).await.unwrap();
    assert_eq!(rep.rejections.len(), 1, "{rep:?}");
    assert!(
        rep.rejections[0].reason.contains("outside your scope"),
        "{rep:?}"
    );
    assert!(rep.purged.is_empty());
    assert_eq!(c.store.visit_ids().unwrap(), vec![v2.clone()]);
    assert_eq!(c.store.outbox_len().unwrap(), 1);
    assert_eq!(c.store.quarantined().unwrap()[0].0, v2);
    assert_eq!(
        server_visit(&server, &mgr.token, &v2).await.unwrap().notes,
        "",
        "the refused note did not reach the server"
    );
}

#[derive(Default)]
struct Recorder {
    states: std::sync::Mutex<Vec<fieldsync_core::sync::SyncState>>,
    progress: std::sync::Mutex<Vec<(u64, u64)>>,
    changed: std::sync::Mutex<BTreeSet<String>>,
}

impl fieldsync_core::sync::SyncObserver for Recorder {
    fn on_state(&self, state: fieldsync_core::sync::SyncState) {
        self.states.lock().unwrap().push(state);
    }
    fn on_progress(&self, done: u64, total: u64) {
        self.progress.lock().unwrap().push((done, total));
    }
    fn on_data_changed(&self, visit_ids: &[String]) {
        self.changed
            .lock()
            .unwrap()
            .extend(visit_ids.iter().cloned());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_backlogs_page_and_the_observer_sees_state_progress_and_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let r = seed(&data);
    let server = Server::start_with(&data, 0, &["--page-changes", "5"]);
    let t1 = stores_of(&r, "t-1");
    let rep1 = user_id(&r, "rep1");
    let planner = device(&server, tmp.path(), "manager1", "planner").await;
    let mut visits = Vec::new();
    for i in 0..12 {
        visits.push(
            plan_visit(
                &server,
                &planner.token,
                &t1[i % t1.len()],
                &rep1,
                now() + i as i64 * HOUR,
            )
            .await,
        );
    }
    let mgr = device(&server, tmp.path(), "manager1", "mgr").await;
    let obs = Recorder::default();
    let rep = mgr.client.sync(&mgr.store, Some(&obs)).await.unwrap();
    assert!(rep.rounds >= 3, "12 changes in pages of 5: {rep:?}");
    assert_eq!(mgr.store.visit_ids().unwrap().len(), 12);
    assert_eq!(obs.changed.lock().unwrap().len(), 12);

    let a = device(&server, tmp.path(), "rep1", "phone-a").await;
    a.client.sync(&a.store, None).await.unwrap();
    for v in visits.iter().take(3) {
        work(&a.store, v, 6, 2);
    }
    let pushed = a.store.outbox_len().unwrap();
    let obs_a = Recorder::default();
    a.client.sync(&a.store, Some(&obs_a)).await.unwrap();
    let last = *obs_a.progress.lock().unwrap().last().unwrap();
    assert_eq!(last, (pushed, pushed));
    assert_eq!(
        obs_a.states.lock().unwrap().last(),
        Some(&fieldsync_core::sync::SyncState::Idle)
    );

    // The three visits were pushed in one request: three log rows (one per visit) of more
    // than 5 changes each. A page holds at most 5 changes unless one push alone has more
    // (a push is never split): one page per push.
    assert!(pushed > 15, "{pushed}");
    let obs = Recorder::default();
    let rep = mgr.client.sync(&mgr.store, Some(&obs)).await.unwrap();
    assert!(rep.rounds >= 3, "{rep:?}");
    assert_eq!(rep.applied as u64, pushed, "{rep:?}");
    assert_eq!(obs.changed.lock().unwrap().len(), 3);
    converged(&server, &mgr.token, &[&mgr, &a]).await;
}

#[test]
#[allow(clippy::result_large_err)] // StoreError is server_edit's error type
fn admin_cli_imports_csv_with_errors_by_line_creates_users_and_backs_up() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    seed(&data);
    let admin = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .arg("admin")
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let csv = tmp.path().join("stores.csv");
    // A file without a column stores need: one error naming it, not one per line.
    std::fs::write(&csv, "id,name,territory_id\nst-900,Good Store,t-1\n").unwrap();
    let (ok, _, err) = admin(&["import", csv.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("line 1: a stores CSV needs the column(s) lat, lng, geofence_radius_m; this one has id, name, territory_id"),
        "{err}"
    );
    assert_eq!(err.matches("stores.csv:").count(), 1, "{err}");
    std::fs::write(
        &csv,
        "id,name,territory_id,address,lat,lng,geofence_radius_m,timezone,store_group_ids,priority\n\
         st-900,Good Store,t-1,1 Main St,52.5,13.4,100,Europe/Berlin,g-1,2\n\
         st-901,Bad Lat,t-1,2 Main St,north,13.4,100,Europe/Berlin,g-1,2\n\
         st-902,No Territory,t-9,3 Main St,52.5,13.4,100,Europe/Berlin,g-1,2\n",
    )
    .unwrap();
    let (ok, _, err) = admin(&["import", csv.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("line 3: lat \"north\" is not a number"),
        "{err}"
    );
    let store = fieldsync_server::SqliteStore::open_dir(&data).unwrap();
    let before = store.reference().unwrap();
    drop(store);
    std::fs::write(
        &csv,
        "id,name,territory_id,address,lat,lng,geofence_radius_m,timezone,store_group_ids,priority\n\
         st-900,Good Store,t-1,1 Main St,52.5,13.4,100,Europe/Berlin,g-1,2\n\
         st-902,No Territory,t-9,3 Main St,52.5,13.4,100,Europe/Berlin,g-1,2\n",
    )
    .unwrap();
    let (ok, _, err) = admin(&["import", csv.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("line 3: store st-902: unknown territory t-9"),
        "{err}"
    );
    std::fs::write(
        &csv,
        "id,name,territory_id,address,lat,lng,geofence_radius_m,timezone,store_group_ids,priority\n\
         st-900,Good Store,t-1,1 Main St,52.5,13.4,100,Europe/Berlin,g-1,2\n",
    )
    .unwrap();
    // A store with an open visit is not removed by accident: its visit would vanish from
    // the rep's route.
    let doomed = before
        .stores
        .iter()
        .find(|s| s.territory_id == "t-1")
        .unwrap();
    let rep = before.users.iter().find(|u| u.id == "rep-1").unwrap();
    let store = fieldsync_server::SqliteStore::open_dir(&data).unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let plan = VisitPlan {
        store_id: doomed.id.clone(),
        rep_id: rep.id.clone(),
        planned_start: now + 3_600_000,
        planned_end: now + 7_200_000,
        priority: 3,
        instructions: String::new(),
        template_id: String::new(),
        ad_hoc: false,
    };
    let author = fieldsync_core::visit::Author {
        user_id: "manager-1".into(),
        device_id: "server".into(),
    };
    let doc = fieldsync_core::document::VisitDoc::create(
        "v-open",
        &plan,
        automerge::ActorId::random(),
        &author,
        now,
    )
    .unwrap();
    fieldsync_server::ingest::server_edit(&store, "v-open", |_| Ok(doc.clone()), &before.index())
        .unwrap();
    drop(store);
    let (ok, _, err) = admin(&["import", csv.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "store {} would be removed but has 1 open visit(s) (v-open)",
            doomed.id
        )) && err.contains("--allow-removals"),
        "{err}"
    );
    // A dry run says what would change (the CSV's one store replaces the others) and
    // changes nothing.
    let stores_before = before.stores.len();
    let summary = format!("stores: 1 added, {stores_before} removed ({stores_before} → 1)");
    let (ok, out, err) = admin(&[
        "import",
        "--dry-run",
        "--allow-removals",
        csv.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&summary) && out.contains("dry run: nothing imported"),
        "{out}"
    );
    let store = fieldsync_server::SqliteStore::open_dir(&data).unwrap();
    assert_eq!(store.reference().unwrap(), before);
    drop(store);
    let (ok, out, err) = admin(&["import", "--allow-removals", csv.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("version 2") && out.contains(&summary), "{out}");
    // The operator is told which open visits the closing leaves to follow up.
    let note = format!(
        "store {} is removed with 1 open visit(s) (v-open)",
        doomed.id
    );
    assert!(out.contains(&note), "{out}");
    let store = fieldsync_server::SqliteStore::open_dir(&data).unwrap();
    let after = store.reference().unwrap();
    assert_eq!(after.stores.len(), 1);
    assert_eq!(after.products, before.products);
    drop(store);

    let (ok, out, err) = admin(&[
        "create-user",
        "--username",
        "rep9",
        "--role",
        "rep",
        "--territories",
        "t-1",
    ]);
    assert!(ok, "{err}");
    let pw = out
        .lines()
        .find_map(|l| l.strip_prefix("password (shown once): "))
        .unwrap()
        .to_string();
    let (ok, _, err) = admin(&["create-user", "--username", "rep9", "--role", "rep"]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = admin(&["create-user", "--username", "x", "--role", "boss"]);
    assert!(!ok && err.contains("unknown role"), "{err}");
    let store = fieldsync_server::SqliteStore::open_dir(&data).unwrap();
    let u = store.user_by_username("rep9").unwrap().unwrap();
    assert!(u.password_hash.starts_with("$argon2id$"));
    assert!(fieldsync_server::auth::verify_password(
        &pw,
        &u.password_hash
    ));
    let epoch = store.epoch().unwrap();
    drop(store);
    let backup = tmp.path().join("b.db");
    let (ok, _, err) = admin(&["backup", backup.to_str().unwrap()]);
    assert!(ok, "{err}");
    let copy = fieldsync_server::SqliteStore::open(&backup).unwrap();
    assert_ne!(copy.epoch().unwrap(), epoch, "a backup carries a new epoch");
    assert!(copy.user_by_username("rep9").unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_changed_inventory_line_is_one_small_round_trip() {
    let (tmp, _, r, server) = seeded_server();
    let t1 = stores_of(&r, "t-1");
    let rep1 = user_id(&r, "rep1");
    let mgr = device(&server, tmp.path(), "manager1", "mgr").await;
    let v = plan_visit(&server, &mgr.token, &t1[0], &rep1, now() + HOUR).await;
    let a = device(&server, tmp.path(), "rep1", "phone-a").await;
    a.client.sync(&a.store, None).await.unwrap();
    work(&a.store, &v, 5, 3);
    a.client.sync(&a.store, None).await.unwrap();
    let refs = a.store.reference_data();
    let p = refs
        .index()
        .assortment_for(refs.index().store(&t1[0]).unwrap())[1]
        .to_string();
    a.store
        .record_inventory(
            &v,
            &p,
            &InventoryInput {
                shelf_qty: Some(17),
                ..Default::default()
            },
        )
        .unwrap();
    let rep = a.client.sync(&a.store, None).await.unwrap();
    eprintln!(
        "incremental sync of one changed line: {} round trip(s), {} bytes up (zstd), {} bytes down (JSON)",
        rep.rounds, rep.bytes_up, rep.bytes_down
    );
    assert_eq!(rep.rounds, 1);
    assert_eq!(rep.acked, 1);
    assert!(rep.bytes_up <= 400, "{rep:?}");
    assert!(rep.bytes_down <= 300, "{rep:?}");
}
