//! Real processes, SIGKILL: a device process records and syncs against the real server
//! binary and is killed at a random point — while recording, or in the middle of a sync
//! (between the server committing a push and the device storing the answer). The server
//! is also SIGKILLed now and then while the device pushes. After each kill the device
//! database passes `PRAGMA integrity_check`, every action the child reported done is on
//! the device, and once a fresh process syncs, the server holds each of the device's
//! changes exactly once and the same visit as the device.
//!
//! `FIELDSYNC_CRASH_SYNC_ITERATIONS` sets the number of kills (default 24; the long run
//! in docs/RELIABILITY.md uses 1000). The server-side kill while ingesting a large push is
//! `e2e.rs::sigkill_during_pushes_loses_nothing_acknowledged_and_duplicates_nothing`.

mod common;

use common::*;
use fieldsync_core::fixtures::Rng;
use fieldsync_core::store::DeviceStore;
use fieldsync_core::visit::{GeoPoint, InventoryInput, VisitStatus};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const CHILD_DB: &str = "FIELDSYNC_CRASH_SYNC_DB";
const CHILD_URL: &str = "FIELDSYNC_CRASH_SYNC_URL";
const CHILD_TOKEN: &str = "FIELDSYNC_CRASH_SYNC_TOKEN";
const CHILD_SEED: &str = "FIELDSYNC_CRASH_SYNC_SEED";

/// Runs only inside the child process: record, and sync every few actions, forever.
#[test]
fn crash_sync_child_process_entry() {
    let (Ok(db), Ok(url), Ok(token), Ok(seed)) = (
        std::env::var(CHILD_DB),
        std::env::var(CHILD_URL),
        std::env::var(CHILD_TOKEN),
        std::env::var(CHILD_SEED),
    ) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = DeviceStore::open(&db, "rep-1", "phone-crash").unwrap();
    let client = fieldsync_core::sync::SyncClient::with_config(
        &url,
        &token,
        fieldsync_core::sync::SyncConfig {
            batch: 3,
            ..fast_config()
        },
    )
    .unwrap();
    let seed: i64 = seed.parse().unwrap();
    let mut rng = Rng::new(seed as u64);
    let mut out = std::io::stdout().lock();
    // Values grow across processes: a later write always holds a larger number.
    for i in seed * 1_000_000..(seed + 1) * 1_000_000 {
        let r = store.reference_data();
        let ids = store.visit_ids().unwrap();
        if r.stores.is_empty() || ids.is_empty() || rng.chance(0.25) {
            writeln!(out, "SYNC {i}").unwrap();
            out.flush().unwrap();
            let rep = rt.block_on(client.sync(&store, None));
            writeln!(out, "SYNCED {i} {}", rep.is_ok()).unwrap();
            out.flush().unwrap();
            continue;
        }
        let v = ids[rng.below(ids.len() as u64) as usize].clone();
        let visit = store.visit(&v).unwrap();
        if visit.status == VisitStatus::Planned {
            let s = r
                .stores
                .iter()
                .find(|s| s.id == visit.plan.store_id)
                .unwrap();
            store
                .check_in(
                    &v,
                    GeoPoint {
                        lat: s.lat,
                        lng: s.lng,
                    },
                )
                .unwrap();
            continue;
        }
        let idx = r.index();
        let shop = idx.store(&visit.plan.store_id).unwrap();
        let products = idx.assortment_for(shop);
        let p = products[rng.below(products.len() as u64) as usize].to_string();
        store
            .record_inventory(
                &v,
                &p,
                &InventoryInput {
                    shelf_qty: Some(i),
                    ..Default::default()
                },
            )
            .unwrap();
        writeln!(out, "REC {v} {p} {i}").unwrap();
        out.flush().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_killed_while_recording_and_syncing_lose_and_duplicate_nothing() {
    let iterations: usize = std::env::var("FIELDSYNC_CRASH_SYNC_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let (tmp, data, r, mut server) = seeded_server();
    let t1 = stores_of(&r, "t-1");
    let rep1 = user_id(&r, "rep1");
    let mgr = device(&server, tmp.path(), "manager1", "mgr").await;
    for (i, shop) in t1.iter().take(3).enumerate() {
        plan_visit(&server, &mgr.token, shop, &rep1, now() + i as i64 * HOUR).await;
    }
    let session =
        fieldsync_core::sync::login(&server.base, "rep1", &password("rep1"), "phone-crash")
            .await
            .unwrap();
    let db = tmp.path().join("phone-crash.db");
    let mut rng = Rng::new(7);
    // The latest acknowledged-to-the-user value per (visit, product).
    let mut done: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut mid_sync_kills = 0;
    let mut server_kills = 0;
    for iteration in 0..iterations {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_sync_child_process_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DB, &db)
            .env(CHILD_URL, &server.base)
            .env(CHILD_TOKEN, &session.token)
            .env(CHILD_SEED, iteration.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let kill_after = 3 + rng.below(40) as usize;
        let kill_in_sync = rng.chance(0.5);
        let kill_server = rng.chance(0.15);
        let mut lines = 0;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 {
                panic!("iteration {iteration}: the child stopped");
            }
            let l = line.trim();
            if let Some(rest) = l.strip_prefix("REC ") {
                let mut it = rest.split(' ');
                let (v, p, q) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
                done.insert((v.into(), p.into()), q.parse().unwrap());
            }
            lines += 1;
            if lines < kill_after {
                continue;
            }
            if !kill_in_sync || l.starts_with("SYNC ") {
                break;
            }
        }
        if kill_in_sync {
            // Somewhere inside the round trips of this sync.
            if kill_server {
                server.kill9();
                server_kills += 1;
                server = Server::start(&data, server.port);
            }
            std::thread::sleep(Duration::from_millis(rng.below(40)));
            mid_sync_kills += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let s = DeviceStore::open(&db, "rep-1", "phone-crash").unwrap();
        assert_eq!(s.integrity_check().unwrap(), "ok", "iteration {iteration}");
        for ((v, p), q) in &done {
            let got = s.visit(v).unwrap().inventory[p].shelf_qty.unwrap();
            assert!(
                got >= *q,
                "iteration {iteration}: {v}/{p} lost {q}, has {got}"
            );
        }
    }
    // A fresh process syncs everything; the server has each change once.
    let s = DeviceStore::open(&db, "rep-1", "phone-crash").unwrap();
    let client =
        fieldsync_core::sync::SyncClient::with_config(&server.base, &session.token, fast_config())
            .unwrap();
    for _ in 0..3 {
        client.sync(&s, None).await.unwrap();
    }
    assert_eq!(s.outbox_len().unwrap(), 0);
    let conn = rusqlite::Connection::open(data.join("fieldsync.db")).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let mine = s.actor_hex();
    for v in s.visit_ids().unwrap() {
        let own = s
            .changes_since(&v, &[])
            .unwrap()
            .into_iter()
            .filter(|b| {
                automerge::Change::from_bytes(b.clone())
                    .unwrap()
                    .actor_id()
                    .to_hex_string()
                    == mine
            })
            .count() as i64;
        let on_server: i64 = conn
            .query_row(
                "SELECT COALESCE(SUM(changes), 0) FROM change_log WHERE visit_id = ?1 AND device_id = 'phone-crash'",
                [&v],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(on_server, own, "visit {v}: each change stored exactly once");
        assert_eq!(
            server_visit(&server, &mgr.token, &v).await.unwrap(),
            s.visit(&v).unwrap(),
            "visit {v}"
        );
    }
    eprintln!(
        "crash while syncing: {iterations} device kills ({mid_sync_kills} mid-sync, {server_kills} with a server kill), {} acknowledged lines checked",
        done.len()
    );
}
