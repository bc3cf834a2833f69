//! Several `fieldsync-server` processes on one PostgreSQL database: devices sync with
//! either instance at random, concurrently, while changes are pushed from everywhere; all
//! converge and no device misses a change the server has.
//!
//! Needs `FIELDSYNC_TEST_DATABASE_URL` (scripts/test-postgres.sh); see `common/pg.rs`.

mod common;
#[path = "common/pg.rs"]
mod pg;

use automerge::Automerge;
use common::*;
use fieldsync_core::fixtures::Rng;
use fieldsync_core::store::DeviceStore;
use fieldsync_core::sync::{SyncClient, login};
use fieldsync_core::visit::{GeoPoint, InventoryInput, VisitStatus};
use fieldsync_server::{PgOptions, PgStore, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Imports the fixture reference data and creates `users` (password `password-<name>`)
/// through the PostgreSQL backend.
fn seed_pg(url: &str, users: &[&str]) -> fieldsync_core::model::ReferenceData {
    let store = PgStore::connect(url, &PgOptions::default()).unwrap();
    let r = refs();
    store.import_reference(r.clone()).unwrap();
    for u in r
        .users
        .iter()
        .filter(|u| users.contains(&u.username.as_str()))
    {
        fieldsync_server::admin::create_user(
            &store,
            &u.username,
            u.role,
            &u.territory_ids,
            Some(&password(&u.username)),
        )
        .unwrap();
    }
    store.reference().unwrap().as_ref().clone()
}

/// A device with a client for each server instance (same token: one database).
struct Dev {
    name: String,
    store: DeviceStore,
    clients: Vec<SyncClient>,
}

async fn dev(servers: &[Server], dir: &Path, username: &str, device_id: &str) -> Dev {
    let session = login(&servers[0].base, username, &password(username), device_id)
        .await
        .expect("login");
    let store = DeviceStore::open(
        dir.join(format!("{device_id}.db")),
        &session.user.id,
        device_id,
    )
    .unwrap();
    let clients = servers
        .iter()
        .map(|s| SyncClient::with_config(&s.base, &session.token, fast_config()).unwrap())
        .collect();
    Dev {
        name: device_id.into(),
        store,
        clients,
    }
}

fn check_in(store: &DeviceStore, visit_id: &str) {
    let v = store.visit(visit_id).unwrap();
    let r = store.reference_data();
    let shop = r.index().store(&v.plan.store_id).unwrap().clone();
    if v.status == VisitStatus::Planned {
        store
            .check_in(
                visit_id,
                GeoPoint {
                    lat: shop.lat,
                    lng: shop.lng,
                },
            )
            .unwrap();
    }
}

fn work(store: &DeviceStore, visit_id: &str, line: usize, qty: i64) {
    let v = store.visit(visit_id).unwrap();
    assert_eq!(v.status, VisitStatus::InProgress);
    let r = store.reference_data();
    let idx = r.index();
    let shop = idx.store(&v.plan.store_id).unwrap();
    let products = idx.assortment_for(shop);
    let p = products[line % products.len()];
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

/// Syncs with a random instance until the outbox is empty and nothing more is waiting.
async fn sync_random(d: &Dev, rng_seed: u64) {
    let mut rng = Rng::new(rng_seed);
    let i = rng.below(d.clients.len() as u64) as usize;
    d.clients[i]
        .sync(&d.store, None)
        .await
        .unwrap_or_else(|e| panic!("{} syncing with instance {i}: {e}", d.name));
}

#[test]
fn two_instances_many_devices_converge_and_no_change_is_missing() {
    let Some(db) = pg::TestDb::create("two_instances_many_devices_converge") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let users = ["manager1", "rep1", "rep2", "rep3"];
    let r = seed_pg(&db.url, &users);
    let mut servers: Vec<Server> = ["a", "b"]
        .iter()
        .map(|n| {
            Server::start_with(
                &tmp.path().join(n),
                0,
                &["--database-url", &db.url, "--db-pool-size", "8"],
            )
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let t1 = stores_of(&r, "t-1");
    let reps: Vec<String> = ["rep1", "rep2", "rep3"]
        .iter()
        .map(|u| user_id(&r, u))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(240);

    let (devices, visits) = rt.block_on(async {
        let mgr_session = login(
            &servers[0].base,
            "manager1",
            &password("manager1"),
            "mgr-laptop",
        )
        .await
        .unwrap();
        // Two visits per rep, planned through either instance.
        let start = now() + HOUR;
        let mut visits: BTreeMap<String, String> = BTreeMap::new(); // visit -> rep
        for (i, rep) in reps.iter().enumerate() {
            for k in 0..2 {
                let server = &servers[(i + k) % 2];
                let id = plan_visit(
                    server,
                    &mgr_session.token,
                    &t1[i * 2 + k],
                    rep,
                    start + k as i64 * HOUR,
                )
                .await;
                visits.insert(id, rep.clone());
            }
        }
        // Two phones per rep and two manager devices: eight devices.
        let mut devices = Vec::new();
        for (u, n) in [("manager1", 2), ("rep1", 2), ("rep2", 2), ("rep3", 2)] {
            for k in 0..n {
                devices.push(Arc::new(
                    dev(&servers, tmp.path(), u, &format!("{u}-dev{k}")).await,
                ));
            }
        }
        // Everyone gets their visits; the first phone of each rep checks in (once: two
        // phones checking in to one visit is a conflict of its own, tested elsewhere).
        for d in &devices {
            sync_random(d, 1).await;
        }
        for d in devices
            .iter()
            .filter(|d| d.name.ends_with("-dev0") && d.name.starts_with("rep"))
        {
            for v in d.store.visit_ids().unwrap() {
                check_in(&d.store, &v);
            }
            sync_random(d, 2).await;
        }
        for d in &devices {
            sync_random(d, 3).await;
        }
        (devices, visits)
    });

    // Rounds of offline work on every device, then every device syncs at once with a
    // random instance (the phones of one rep edit the same visits concurrently).
    let rounds = 10;
    for round in 0..rounds {
        assert!(Instant::now() < deadline, "took too long");
        // Mid-test, instance A dies (SIGKILL) while devices sync, and comes back on the
        // same address: in-flight transactions roll back, devices retry and resend.
        let killer = (round == rounds / 2).then(|| {
            let pid = servers[0].child.id();
            let port = servers[0].port;
            let dir = tmp.path().join("a");
            let url = db.url.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(150));
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
                std::thread::sleep(Duration::from_millis(300));
                Server::start_with(&dir, port, &["--database-url", &url, "--db-pool-size", "8"])
            })
        });
        rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for (i, d) in devices.iter().enumerate() {
                let d = d.clone();
                set.spawn(async move {
                    // First sync gets the visits; afterwards work on the ones held.
                    let seed = (round * 100 + i) as u64;
                    let mut rng = Rng::new(seed + 7);
                    let held = d.store.visit_ids().unwrap();
                    for v in &held {
                        if rng.below(3) > 0 {
                            if d.name.starts_with("manager") {
                                d.store
                                    .edit_notes(v, 0, 0, &format!("{}#{round} ", d.name))
                                    .unwrap();
                            } else {
                                for _ in 0..2 {
                                    work(&d.store, v, rng.below(20) as usize, rng.below(30) as i64);
                                }
                            }
                        }
                    }
                    sync_random(&d, seed).await;
                    // A second, overlapping sync with the other instance now and then.
                    if rng.below(2) == 0 {
                        sync_random(&d, seed + 1).await;
                    }
                });
            }
            while let Some(res) = set.join_next().await {
                res.expect("device task");
            }
        });
        if let Some(k) = killer {
            servers[0] = k.join().expect("restart instance A");
        }
    }
    // Quiesce: everyone syncs (sequentially, random instance) until nothing is pending.
    rt.block_on(async {
        for pass in 0..3 {
            for (i, d) in devices.iter().enumerate() {
                sync_random(d, 9_000 + pass * 100 + i as u64).await;
            }
        }
    });
    drop(rt);

    // The server's full set, read directly from the database.
    let server = PgStore::connect(&db.url, &PgOptions::default()).unwrap();
    let mut server_heads: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut server_changes = 0;
    for id in visits.keys() {
        let v = server.visit(id).unwrap().expect("visit on the server");
        let doc = Automerge::load(&v.doc).unwrap();
        server_changes += doc.get_changes(&[]).len();
        server_heads.insert(
            id.clone(),
            doc.get_heads().iter().map(ToString::to_string).collect(),
        );
    }
    let (n_visits, n_changes) = server.counts().unwrap();
    assert_eq!(n_visits as usize, visits.len());
    assert_eq!(
        n_changes as usize, server_changes,
        "change log and documents agree"
    );
    assert!(
        n_changes > 200,
        "only {n_changes} changes: the test did little"
    );
    eprintln!(
        "{} devices, 2 instances (one killed and restarted), {n_visits} visits, {n_changes} changes: converged",
        devices.len()
    );
    for d in &devices {
        assert_eq!(d.store.outbox_len().unwrap(), 0, "{} has an outbox", d.name);
        let held: BTreeMap<String, BTreeSet<String>> = d
            .store
            .all_heads()
            .unwrap()
            .into_iter()
            .map(|(v, h)| (v, h.into_iter().collect()))
            .collect();
        let expected: BTreeSet<&String> = if d.name.starts_with("manager") {
            visits.keys().collect()
        } else {
            let me = user_id(&r, d.name.split('-').next().unwrap());
            visits
                .iter()
                .filter(|(_, rep)| **rep == me)
                .map(|(v, _)| v)
                .collect()
        };
        assert_eq!(
            held.keys().collect::<BTreeSet<_>>(),
            expected,
            "{} holds the wrong visits",
            d.name
        );
        for (v, heads) in &held {
            assert_eq!(
                heads, &server_heads[v],
                "{} is missing changes of {v} (or has some the server lacks)",
                d.name
            );
        }
    }
    drop(servers);
}

/// One device's precomputed pushes: its token-less identity and its change batches.
struct BenchDevice {
    device_id: String,
    username: String,
    batches: Vec<Vec<fieldsync_core::sync::protocol::VisitChanges>>,
}

/// Builds `devices` devices (spread over the fixture's reps), each creating an ad-hoc
/// visit, checking in, then recording two inventory lines per batch.
fn bench_devices(
    r: &fieldsync_core::model::ReferenceData,
    dir: &Path,
    devices: usize,
    batches: usize,
) -> Vec<BenchDevice> {
    use fieldsync_core::model::Role;
    use fieldsync_core::sync::protocol::{VisitChanges, encode_change};
    let reps: Vec<_> = r.users.iter().filter(|u| u.role == Role::Rep).collect();
    std::fs::create_dir_all(dir).unwrap();
    let mut out = Vec::new();
    for i in 0..devices {
        let rep = reps[i % reps.len()];
        let device_id = format!("bench-{i}");
        let store =
            DeviceStore::open(dir.join(format!("{device_id}.db")), &rep.id, &device_id).unwrap();
        store.replace_reference_data(r.clone()).unwrap();
        let shops = stores_of(r, &rep.territory_ids[0]);
        let vid = store
            .create_ad_hoc_visit(&shops[i % shops.len()], "tt-quick")
            .unwrap();
        check_in(&store, &vid);
        let mut list = Vec::new();
        for b in 0..=batches {
            if b > 0 {
                for k in 0..2 {
                    work(&store, &vid, b * 2 + k, (b * 3 + k) as i64);
                }
            }
            let pending = store.outbox(10_000).unwrap();
            store
                .acknowledge(&pending.iter().map(|c| c.hash.clone()).collect::<Vec<_>>())
                .unwrap();
            list.push(vec![VisitChanges {
                visit_id: vid.clone(),
                changes: pending.iter().map(|c| encode_change(&c.bytes)).collect(),
            }]);
        }
        out.push(BenchDevice {
            device_id,
            username: rep.username.clone(),
            batches: list,
        });
    }
    out
}

/// (changes/s, requests/s, p50 ms, p99 ms, max ms) of all devices pushing their batches
/// concurrently, each batch one sync round trip (push + pull).
async fn bench_run(
    server: &Server,
    devices: &[BenchDevice],
    refs_version: i64,
) -> (f64, f64, f64, f64, f64) {
    use fieldsync_core::sync::protocol::{PROTOCOL_VERSION, SyncRequest, SyncResponse};
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(200)
        .build()
        .unwrap();
    let mut tokens = Vec::new();
    for d in devices {
        let s = login(
            &server.base,
            &d.username,
            &password(&d.username),
            &d.device_id,
        )
        .await
        .expect("login");
        tokens.push(s.token);
    }
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (d, token) in devices.iter().zip(tokens) {
        let client = client.clone();
        let url = server.url("/v1/sync");
        let batches = d.batches.clone();
        let device_id = d.device_id.clone();
        set.spawn(async move {
            let mut cursor = None;
            let mut lat = Vec::new();
            let mut changes = 0usize;
            for b in batches {
                let n: usize = b.iter().map(|v| v.changes.len()).sum();
                let req = SyncRequest {
                    protocol: PROTOCOL_VERSION,
                    device_id: device_id.clone(),
                    cursor: cursor.clone(),
                    epoch: None,
                    reference_version: refs_version,
                    changes: b,
                    ..Default::default()
                };
                let t = Instant::now();
                let resp = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&req)
                    .send()
                    .await
                    .unwrap();
                assert!(resp.status().is_success(), "{}", resp.status());
                let body: SyncResponse = resp.json().await.unwrap();
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                assert!(body.rejections.is_empty(), "{:?}", body.rejections);
                assert_eq!(body.acks.len(), n);
                changes += n;
                cursor = Some(body.cursor);
            }
            (lat, changes)
        });
    }
    let mut lat = Vec::new();
    let mut changes = 0;
    while let Some(res) = set.join_next().await {
        let (l, c) = res.unwrap();
        lat.extend(l);
        changes += c;
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    (
        changes as f64 / secs,
        lat.len() as f64 / secs,
        pct(0.50),
        pct(0.99),
        *lat.last().unwrap(),
    )
}

/// Each pooled connection keeps its prepared statements: the same text is prepared once,
/// a statement prepared in a rolled-back or failed transaction stays usable, and text
/// that does not prepare is not kept.
#[test]
fn pooled_connections_keep_their_statements() {
    let Some(db) = pg::TestDb::create("pooled_connections_keep_their_statements") else {
        return;
    };
    use fieldsync_server::pg_conn::Manager;
    use r2d2::ManageConnection as _;
    let manager = Manager::new(db.url.parse().unwrap());
    let mut conn = manager.connect().unwrap();
    let add = "SELECT $1::INT + 1";
    for n in [1, 41] {
        let r: i32 = conn.query_one(add, &[&n]).unwrap().get(0);
        assert_eq!(r, n + 1);
    }
    assert_eq!(conn.prepared(), 1, "the same text was prepared again");
    {
        let mut tx = conn.transaction().unwrap();
        let r: String = tx
            .query_one("SELECT $1::TEXT || '!'", &[&"hi"])
            .unwrap()
            .get(0);
        assert_eq!(r, "hi!");
        // Dropped: rolled back.
    }
    assert_eq!(conn.prepared(), 2);
    let r: String = conn
        .query_one("SELECT $1::TEXT || '!'", &[&"again"])
        .unwrap()
        .get(0);
    assert_eq!(r, "again!");
    // A failing statement aborts its transaction; the kept statements outlive it.
    {
        let mut tx = conn.transaction().unwrap();
        let err = tx.query_one("SELECT 1 / $1::INT", &[&0]).unwrap_err();
        assert_eq!(
            err.code(),
            Some(&postgres::error::SqlState::DIVISION_BY_ZERO),
            "{err:?}"
        );
        assert!(
            tx.query_one(add, &[&1]).is_err(),
            "an aborted transaction ran a statement"
        );
    }
    assert!(conn.query_one("SELEC 1", &[]).is_err());
    assert_eq!(conn.prepared(), 3, "text that does not prepare was kept");
    let r: i32 = conn.query_one(add, &[&2]).unwrap().get(0);
    assert_eq!(r, 3);
    let r: i32 = conn.query_one("SELECT 1 / $1::INT", &[&1]).unwrap().get(0);
    assert_eq!(r, 1);
    assert!(manager.is_valid(&mut conn).is_ok());
}

/// `cargo test -p fieldsync-server --test pg_cluster -- --ignored --nocapture ingest`
/// (with `FIELDSYNC_TEST_DATABASE_URL`; `FIELDSYNC_BENCH_BIN` may name a release build
/// of the server, `FIELDSYNC_BENCH_DEVICES` / `FIELDSYNC_BENCH_BATCHES` change the load).
#[test]
#[ignore = "benchmark: run by hand, see docs/BENCHMARKS.md"]
fn ingest_benchmark_sqlite_vs_postgres() {
    let Some(cluster) = pg::cluster_url("ingest_benchmark_sqlite_vs_postgres") else {
        return;
    };
    let env_num = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let n_devices = env_num("FIELDSYNC_BENCH_DEVICES", 100);
    let n_batches = env_num("FIELDSYNC_BENCH_BATCHES", 5);
    let bin = std::env::var("FIELDSYNC_BENCH_BIN").unwrap_or_else(|_| BIN.to_string());
    let tmp = tempfile::tempdir().unwrap();
    let r = refs();
    let t = Instant::now();
    let devices = bench_devices(&r, &tmp.path().join("devices"), n_devices, n_batches);
    eprintln!(
        "prepared {n_devices} devices x {} batches in {:.1}s",
        n_batches + 1,
        t.elapsed().as_secs_f64()
    );
    let all_users: Vec<&str> = r.users.iter().map(|u| u.username.as_str()).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let start = |dir: &Path, extra: &[&str]| -> Server {
        // Like Server::start_with, for another binary.
        use std::io::BufRead as _;
        let mut child = std::process::Command::new(&bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn server");
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let base = out
            .lines()
            .map_while(Result::ok)
            .find_map(|l| {
                l.strip_prefix("fieldsync-server listening on ")
                    .map(str::to_string)
            })
            .expect("server started");
        let port = base.rsplit(':').next().unwrap().parse().unwrap();
        Server {
            child,
            base,
            port,
            data_dir: dir.to_path_buf(),
        }
    };
    let mut rows = Vec::new();
    {
        let dir = tmp.path().join("sqlite");
        let stored = seed(&dir);
        let server = start(&dir, &[]);
        rows.push((
            "SQLite (1 instance)",
            rt.block_on(bench_run(&server, &devices, stored.version)),
        ));
    }
    for instances in [1usize, 2] {
        let db = pg::TestDb::create_on(&cluster);
        let stored = seed_pg(&db.url, &all_users);
        let servers: Vec<Server> = (0..instances)
            .map(|i| {
                start(
                    &tmp.path().join(format!("pg{instances}-{i}")),
                    &["--database-url", &db.url],
                )
            })
            .collect();
        let res = rt.block_on(async {
            if instances == 1 {
                bench_run(&servers[0], &devices, stored.version).await
            } else {
                // Half the devices on each instance, at the same time.
                let (a, b) = devices.split_at(devices.len() / 2);
                let t = Instant::now();
                let (ra, rb) = tokio::join!(
                    bench_run(&servers[0], a, stored.version),
                    bench_run(&servers[1], b, stored.version)
                );
                let _ = t;
                // Throughputs add; latencies: the worse of the two.
                (
                    ra.0 + rb.0,
                    ra.1 + rb.1,
                    ra.2.max(rb.2),
                    ra.3.max(rb.3),
                    ra.4.max(rb.4),
                )
            }
        });
        rows.push((
            if instances == 1 {
                "PostgreSQL (1 instance)"
            } else {
                "PostgreSQL (2 instances)"
            },
            res,
        ));
        drop(servers);
    }
    eprintln!(
        "\n| backend | changes/s | syncs/s | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|"
    );
    for (name, (cps, rps, p50, p99, max)) in rows {
        eprintln!("| {name} | {cps:.0} | {rps:.0} | {p50:.1} | {p99:.1} | {max:.1} |");
    }
}
