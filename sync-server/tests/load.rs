//! Load and soak: many simulated devices record and sync against the real server binary
//! on 127.0.0.1 for a while; every sync must succeed. Prints p50/p99/max sync latency,
//! syncs and changes per second, and the server's resident memory (VmRSS, peak VmHWM).
//!
//! CI runs a short version (20 devices, 5 s, debug build). The long run of
//! docs/RELIABILITY.md — 200 devices for 60 s against the release server:
//!
//! ```text
//! FIELDSYNC_LOAD_DEVICES=200 FIELDSYNC_LOAD_SECONDS=60 \
//!   cargo test --release -p fieldsync-server --test load -- --nocapture
//! ```

mod common;

use common::*;
use fieldsync_core::fixtures::Rng;
use fieldsync_core::store::DeviceStore;
use fieldsync_core::sync::SyncClient;
use fieldsync_core::visit::{GeoPoint, InventoryInput};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn proc_status(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn scratch() -> tempfile::TempDir {
    // Device databases in memory when possible: the devices are load generators here,
    // the server's database is on disk.
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

/// The server under load: `FIELDSYNC_LOAD_SERVER_BIN` (e.g. `target/release/fieldsync-server`
/// from `cargo build --release -p fieldsync-server`), else the binary of this build.
struct LoadServer {
    inner: Server,
    base: String,
}

impl LoadServer {
    fn start(data: &std::path::Path) -> LoadServer {
        let Ok(bin) = std::env::var("FIELDSYNC_LOAD_SERVER_BIN") else {
            let inner = Server::start(data, 0);
            return LoadServer {
                base: inner.base.clone(),
                inner,
            };
        };
        let mut child = std::process::Command::new(&bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn the server");
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let base = loop {
            line.clear();
            assert!(
                std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
                "{bin} exited"
            );
            if let Some(url) = line.trim().strip_prefix("fieldsync-server listening on ") {
                break url.to_string();
            }
        };
        std::thread::spawn(move || {
            let mut sink = String::new();
            while std::io::BufRead::read_line(&mut out, &mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        });
        let port = base.rsplit(':').next().unwrap().parse().unwrap();
        LoadServer {
            inner: Server {
                child,
                base: base.clone(),
                port,
                data_dir: data.to_path_buf(),
            },
            base,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_devices_sync_for_a_while_without_errors() {
    let devices = env_usize("FIELDSYNC_LOAD_DEVICES", 20);
    let seconds = env_usize("FIELDSYNC_LOAD_SECONDS", 5) as u64;
    let tmp = tempfile::tempdir().unwrap();
    let devdir = scratch();
    let data = tmp.path().join("server");
    let r = seed(&data);
    // One rep per device, like the field: the fixture's reps would put dozens of devices on
    // one rep, and each would receive every other's changes.
    {
        let store = fieldsync_server::SqliteStore::open_dir(&data).unwrap();
        for i in 0..devices {
            let name = format!("loadrep{i}");
            fieldsync_server::admin::create_user(
                &store,
                &name,
                fieldsync_core::model::Role::Rep,
                &[format!("t-{}", 1 + i % 2)],
                Some(&password(&name)),
            )
            .unwrap();
        }
    }
    let server = LoadServer::start(&data);
    let base = server.base.clone();
    let mgr1 = device(&server.inner, tmp.path(), "manager1", "mgr1").await;
    let mgr2 = device(&server.inner, tmp.path(), "manager2", "mgr2").await;
    // Sign-ins one after the other: each costs an argon2 hash (19 MiB, tens of ms); a storm
    // of 200 concurrent ones is not what this test measures (see docs/RELIABILITY.md).
    let mut sessions = Vec::new();
    for i in 0..devices {
        let username = format!("loadrep{i}");
        let device_id = format!("load-{i}");
        let s = fieldsync_core::sync::login(&base, &username, &password(&username), &device_id)
            .await
            .expect("login");
        sessions.push((device_id, s));
    }
    // One planned visit per device, for the device's rep.
    let mut plans = Vec::new();
    for (i, (_, session)) in sessions.iter().enumerate() {
        let territory = &session.user.territories[0];
        let stores = stores_of(&r, territory);
        let token = if territory == "t-1" {
            &mgr1.token
        } else {
            &mgr2.token
        };
        let v = plan_visit(
            &server.inner,
            token,
            &stores[i % stores.len()],
            &session.user.id,
            now() + (i as i64 % 8) * HOUR,
        )
        .await;
        plans.push((session.user.id.clone(), v));
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for ((i, (rep_id, visit)), (device_id, session)) in plans.into_iter().enumerate().zip(sessions)
    {
        let base = base.clone();
        let path = devdir.path().join(format!("load-{i}.db"));
        tasks.push(tokio::spawn(async move {
            let store = Arc::new(DeviceStore::open(&path, &rep_id, &device_id).unwrap());
            let client = SyncClient::with_config(&base, &session.token, fast_config()).unwrap();
            let mut rng = Rng::new(i as u64);
            let mut latencies = Vec::new();
            let mut errors = Vec::new();
            let mut changes = 0u64;
            let mut checked_in = false;
            while Instant::now() < deadline {
                let t = Instant::now();
                match client.sync(&store, None).await {
                    Ok(rep) => changes += rep.acked as u64 + rep.applied as u64,
                    Err(e) => errors.push(e.to_string()),
                }
                latencies.push(t.elapsed());
                let s2 = store.clone();
                let v = visit.clone();
                let ci = checked_in;
                let n = rng.below(3) + 1;
                let seed = rng.next_u64();
                checked_in = tokio::task::spawn_blocking(move || {
                    let mut rng = Rng::new(seed);
                    let refs = s2.reference_data();
                    let Ok(visit) = s2.visit(&v) else { return ci };
                    let idx = refs.index();
                    let shop = idx.store(&visit.plan.store_id).unwrap();
                    if !ci {
                        s2.check_in(
                            &v,
                            GeoPoint {
                                lat: shop.lat,
                                lng: shop.lng,
                            },
                        )
                        .unwrap();
                    }
                    let products = idx.assortment_for(shop);
                    for _ in 0..n {
                        let p = products[rng.below(products.len() as u64) as usize];
                        s2.record_inventory(
                            &v,
                            p,
                            &InventoryInput {
                                shelf_qty: Some(rng.below(50) as i64),
                                ..Default::default()
                            },
                        )
                        .unwrap();
                    }
                    true
                })
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(200 + rng.below(300))).await;
            }
            (latencies, errors, changes)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    let mut changes = 0;
    let mut peak_rss = 0;
    let started = Instant::now();
    for t in tasks {
        let (l, e, c) = t.await.unwrap();
        latencies.extend(l);
        errors.extend(e);
        changes += c;
        peak_rss = peak_rss.max(proc_status(server.inner.child.id(), "VmRSS:").unwrap_or(0));
    }
    let _ = started;
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    let rss = proc_status(server.inner.child.id(), "VmRSS:").unwrap_or(0);
    let hwm = proc_status(server.inner.child.id(), "VmHWM:").unwrap_or(0);
    eprintln!(
        "load: {devices} devices for {seconds}s: {} syncs ({:.1}/s), {changes} changes acked or applied, {} errors; sync latency p50 {:?}, p99 {:?}, max {:?}; server memory {} MiB now, {} MiB peak",
        latencies.len(),
        latencies.len() as f64 / seconds as f64,
        errors.len(),
        pct(0.5),
        pct(0.99),
        latencies.last().unwrap(),
        rss.max(peak_rss) / 1024,
        hwm / 1024
    );
    assert!(
        errors.is_empty(),
        "sync errors: {:?}",
        &errors[..errors.len().min(10)]
    );
}
