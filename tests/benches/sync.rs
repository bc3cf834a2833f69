//! Server-side sync benchmarks (issue 7) against the real release server binary on
//! 127.0.0.1: ingest from many concurrent devices, initial sync of a territory to a fresh
//! device, incremental sync of one changed line, storage per visit on the server, and how
//! these grow with visits and devices. Also exports the visit documents for the peer
//! comparison (`tests/peer/`).
//!
//! Run through `scripts/bench.sh` (builds the release server first), or:
//! `cargo build --release -p fieldsync-server && cargo bench -p fieldsync-tests --bench sync`.
//!
//! Environment (defaults in brackets):
//! * `FIELDSYNC_BENCH_SERVER_BIN` [`<workspace>/target/release/fieldsync-server`];
//! * `FIELDSYNC_BENCH_RUNS` — `visits:devices[:push]`, comma separated
//!   [`10000:100,1000:100,10000:10,10000:500,10000:100:batch8,10000:100:planned,1000:100:action`]; the first
//!   one is the headline run (initial sync, incremental sync, storage are measured after
//!   it). `push` is how devices send their visits ([`Push`]): `visit` (the default), `batchN`,
//!   `action` or `planned`;
//! * `FIELDSYNC_BENCH_WHOLE` [`1`] — `0` pushes the visits as changes, as devices did before
//!   servers took whole documents (`SyncResponse::takes_documents`); otherwise a visit's
//!   first push is its whole document, as the client sends a visit made, or planned and
//!   filled in, on the device (`action` pushes changes either way: one change per request);
//! * `FIELDSYNC_BENCH_DATABASE_URL` — also run the headline run's ingest and wire pull on
//!   PostgreSQL (`serve --database-url`); the database must be fresh (`scripts/pg.sh`);
//! * `FIELDSYNC_BENCH_EXPORT` — directory to write `visits-<n>/<i>.automerge` (VisitDoc::save
//!   bytes) for the sizes in `FIELDSYNC_BENCH_EXPORT_SIZES` [`1000,10000`];
//! * `FIELDSYNC_BENCH_JSON` — file to write all results to (read by `scripts/bench_report.py`);
//! * `FIELDSYNC_BENCH_DIR` [system temp dir] — where the server's data dir lives;
//! * `FIELDSYNC_BENCH_REFERENCE` — `stores:products`, the size of the reference data: stores
//!   per territory (two territories) and products [the fixture's `20:60`].
//!
//! The corpus: every device is one rep (all reps in territory `t-1`); each of its visits is
//! an ad-hoc visit created on the device with the typical audit of the device benchmarks
//! (`fieldsync_core::fixtures::TypicalVisit`: check in, 20 inventory lines, 10 planogram
//! positions, 2 promotion checks, one survey answer, notes, check out: 37 Automerge
//! changes), pushed as one sync request per visit,
//! as a rep's phone does when it gets signal after a visit (or as [`Push`] says): as its
//! whole document, as the client pushes a visit made on the device
//! (`FIELDSYNC_BENCH_WHOLE`). In `planned` runs a manager planned each visit first (its
//! plan, one change, is on the server before the run and on the device after its first
//! sync); the rep's device then records the same 36 actions on it.

use automerge::ActorId;
use fieldsync_core::document::{VisitDoc, pack_document};
use fieldsync_core::fixtures::{self, FixtureSize};
use fieldsync_core::model::{ReferenceData, Role};
use fieldsync_core::store::DeviceStore;
use fieldsync_core::sync::protocol::{
    PROTOCOL_VERSION, SyncRequest, SyncResponse, VisitChanges, VisitDocument, encode_change,
};
use fieldsync_core::sync::{Compression, SyncClient, SyncConfig};
use fieldsync_core::visit::{Author, InventoryInput};
use fieldsync_server::Store;
use fieldsync_server::ingest::Writer;
use fieldsync_server::store::NewUser;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

// ------------------------------------------------------------------------------ stats

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn latency_json(mut ms: Vec<f64>) -> Value {
    ms.sort_by(f64::total_cmp);
    json!({
        "n": ms.len(),
        "median_ms": percentile(&ms, 0.5),
        "p90_ms": percentile(&ms, 0.9),
        "p99_ms": percentile(&ms, 0.99),
        "max_ms": ms.last().copied().unwrap_or(0.0),
    })
}

// ------------------------------------------------------------------------------ server

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(bin: &Path, data_dir: &Path, database_url: Option<&str>) -> Server {
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir);
        if let Some(url) = database_url {
            cmd.args(["--database-url", url]);
        }
        let mut child = cmd
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("fieldsync-server listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server did not start");
        Server { child, base }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds (user + system) the server process has used so far.
    fn cpu_seconds(&self) -> f64 {
        process_cpu_seconds(&self.pid().to_string())
    }

    fn rss_mb(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..400 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) a process (`self` for this one) has used so far.
fn process_cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------------------ corpus

/// Reference data with `reps` reps, all in territory `t-1`.
fn reference(reps: usize) -> ReferenceData {
    let defaults = FixtureSize::default();
    let spec = env_or(
        "FIELDSYNC_BENCH_REFERENCE",
        &format!("{}:{}", defaults.stores_per_territory, defaults.products),
    );
    let parsed = spec
        .split_once(':')
        .and_then(|(s, p)| Some((s.parse().ok()?, p.parse().ok()?)));
    let Some((stores_per_territory, products)) = parsed else {
        panic!("FIELDSYNC_BENCH_REFERENCE: {spec:?} is not stores:products");
    };
    let size = FixtureSize {
        reps_per_territory: reps.div_ceil(2).max(1),
        stores_per_territory,
        products,
    };
    let mut r = fixtures::reference_data(5, &size, chrono::Utc::now().date_naive());
    for u in &mut r.users {
        if u.role == Role::Rep {
            u.territory_ids = vec!["t-1".into()];
        }
    }
    r
}

/// A device of the load: its token and its visits, pre-encoded.
struct LoadDevice {
    device_id: String,
    token: String,
    visits: Vec<LoadVisit>,
}

/// One visit of the load, both ways a device may push it.
#[derive(Clone)]
struct LoadVisit {
    /// The device's own changes (its outbox).
    changes: VisitChanges,
    whole: VisitDocument,
    /// The changes of the whole document (the acknowledgements it gets): more than the
    /// device's own when a manager planned the visit.
    whole_changes: usize,
}

/// What one request pushes.
#[derive(Default)]
struct Pushes {
    changes: Vec<VisitChanges>,
    documents: Vec<VisitDocument>,
    /// Changes in them (the acknowledgements expected).
    count: usize,
    /// Each document's visit, heads and number of changes.
    whole: Vec<(String, Vec<String>, usize)>,
}

impl Pushes {
    /// The changes `resp` acknowledges: in `acks`, and in the documents it acknowledges
    /// whole (with the heads they were pushed with).
    fn acknowledged(whole: &[(String, Vec<String>, usize)], resp: &SyncResponse) -> usize {
        let in_documents: usize = resp
            .acked_documents
            .iter()
            .filter_map(|a| {
                whole
                    .iter()
                    .find(|(v, heads, _)| *v == a.visit_id && *heads == a.heads)
                    .map(|(.., n)| n)
            })
            .sum();
        resp.acks.len() + in_documents
    }
}

impl Pushes {
    fn add(&mut self, v: LoadVisit, whole: bool) {
        if whole {
            self.count += v.whole_changes;
            let w = &v.whole;
            self.whole
                .push((w.visit_id.clone(), w.heads.clone(), v.whole_changes));
            self.documents.push(v.whole);
        } else {
            self.count += v.changes.changes.len();
            self.changes.push(v.changes);
        }
    }
}

/// The manager who plans the visits of `planned` runs, on one tablet.
const PLANNER: (&str, &str) = ("manager-1", "bench-planner-tablet");

/// The planner's Automerge actor.
fn planner_actor() -> ActorId {
    ActorId::from(&[0x4d; 16][..])
}

/// Builds `visits` typical visits spread over `devices` devices (in parallel threads),
/// each planned by [`PLANNER`] first when `planned`.
fn corpus(
    r: &ReferenceData,
    visits: usize,
    devices: usize,
    tag: &str,
    planned: bool,
) -> Vec<(String, Vec<VisitDoc>)> {
    let cs = fixtures::typical_visits(r, "t-1", chrono::Utc::now().date_naive());
    assert!(!cs.is_empty(), "no store fits a typical visit");
    let reps: Vec<String> = r
        .users
        .iter()
        .filter(|u| u.role == Role::Rep)
        .map(|u| u.id.clone())
        .collect();
    assert!(
        reps.len() >= devices,
        "{} reps < {devices} devices",
        reps.len()
    );
    let now = now_ms();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per_thread = devices.div_ceil(threads);
    let mut out: Vec<(String, Vec<VisitDoc>)> = Vec::new();
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let (cs, reps) = (&cs, &reps);
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for d in (t * per_thread)..((t + 1) * per_thread).min(devices) {
                        let device_id = format!("{tag}-dev-{d}");
                        let rep = &reps[d];
                        let author = Author {
                            user_id: rep.clone(),
                            device_id: device_id.clone(),
                        };
                        let actor = ActorId::random();
                        let n = visits / devices + usize::from(d < visits % devices);
                        let docs = (0..n)
                            .map(|i| {
                                let id = format!("{tag}-{d:04}-{i:06}");
                                let c = &cs[(d + i) % cs.len()];
                                // Spread over the last few days, all inside a rep's window.
                                let start = now - ((i % 72) as i64) * 3_600_000;
                                if planned {
                                    let planner = Author {
                                        user_id: PLANNER.0.into(),
                                        device_id: PLANNER.1.into(),
                                    };
                                    let (pa, a) = (planner_actor(), actor.clone());
                                    c.planned_document(&id, rep, &planner, pa, &author, a, start)
                                        .unwrap()
                                } else {
                                    c.document(&id, rep, &author, actor.clone(), start).unwrap()
                                }
                            })
                            .collect();
                        mine.push((device_id, docs));
                    }
                    mine
                })
            })
            .collect();
        for h in hs {
            out.extend(h.join().unwrap());
        }
    });
    out
}

// ------------------------------------------------------------------------------ seeding

struct Seeded {
    devices: Vec<LoadDevice>,
    manager_tokens: Vec<(String, String)>,
    rep1_token: (String, String),
}

fn seed(
    store: &dyn Store,
    r: &ReferenceData,
    corpus: Vec<(String, Vec<VisitDoc>)>,
    planned: bool,
) -> Seeded {
    store.import_reference(r.clone()).unwrap();
    for u in &r.users {
        store
            .create_user(&NewUser {
                id: u.id.clone(),
                username: u.username.clone(),
                role: u.role,
                territories: u.territory_ids.clone(),
                // Never used: the bench signs in with tokens made here (no argon2).
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$unused$unused".into(),
            })
            .unwrap();
    }
    let now = now_ms();
    let token = |user: &str, device: &str| {
        let t = format!("bench-token-{user}-{device}");
        store
            .create_token(user, device, &fieldsync_server::api::hash_token(&t), now)
            .unwrap();
        t
    };
    let reps: Vec<String> = r
        .users
        .iter()
        .filter(|u| u.role == Role::Rep)
        .map(|u| u.id.clone())
        .collect();
    if planned {
        plan_visits(store, r, &corpus);
    }
    let devices = corpus
        .into_iter()
        .enumerate()
        .map(|(d, (device_id, docs))| LoadDevice {
            token: token(&reps[d], &device_id),
            visits: docs
                .iter()
                .map(|doc| {
                    let am = doc.automerge();
                    let visit_id = doc.id().unwrap();
                    let all = am.get_changes(&[]);
                    LoadVisit {
                        changes: VisitChanges {
                            visit_id: visit_id.clone(),
                            changes: all
                                .iter()
                                .filter(|c| !planned || *c.actor_id() != planner_actor())
                                .map(|c| encode_change(c.raw_bytes()))
                                .collect(),
                        },
                        whole_changes: all.len(),
                        whole: VisitDocument {
                            visit_id,
                            doc: encode_change(&pack_document(&am.save_nocompress())),
                            heads: am.get_heads().iter().map(ToString::to_string).collect(),
                            visit: None,
                        },
                    }
                })
                .collect(),
            device_id,
        })
        .collect();
    let manager_tokens = (0..4)
        .map(|i| {
            let d = format!("mgr-fresh-{i}");
            (d.clone(), token("manager-1", &d))
        })
        .collect();
    let rep1_token = ("rep1-phone".to_string(), token("rep-1", "rep1-phone"));
    Seeded {
        devices,
        manager_tokens,
        rep1_token,
    }
}

/// Stores each visit's plan (its first change, by [`PLANNER`]) as the manager's push,
/// from several threads (so the store commits them in groups).
fn plan_visits(store: &dyn Store, r: &ReferenceData, corpus: &[(String, Vec<VisitDoc>)]) {
    let manager = r.users.iter().find(|u| u.id == PLANNER.0).unwrap();
    let writer = Writer {
        user_id: manager.id.clone(),
        role: Role::Manager,
        territories: manager.territory_ids.clone(),
        device_id: PLANNER.1.into(),
        scope: None,
        ever_listed: None,
    };
    let plans: Vec<VisitChanges> = corpus
        .iter()
        .flat_map(|(_, docs)| docs)
        .map(|doc| VisitChanges {
            visit_id: doc.id().unwrap(),
            changes: vec![encode_change(
                doc.automerge().get_changes(&[])[0].raw_bytes(),
            )],
        })
        .collect();
    let data = store.reference().unwrap();
    let refs = data.index();
    std::thread::scope(|s| {
        for part in plans.chunks(plans.len().div_ceil(8).max(1)) {
            let (writer, refs) = (&writer, &refs);
            s.spawn(move || {
                for p in part {
                    let o = fieldsync_server::ingest::ingest(store, writer, refs, p).unwrap();
                    assert_eq!((o.applied, &o.rejection), (1, &None), "plan {}", p.visit_id);
                }
            });
        }
    });
}

// ------------------------------------------------------------------------------ wire

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap()
}

/// One raw `POST /v1/sync` (zstd body like the client); returns the response and the
/// compressed request size.
async fn post_sync(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    req: &SyncRequest,
) -> (SyncResponse, usize, usize) {
    let json = serde_json::to_vec(req).unwrap();
    // As a device compresses it (`SyncClient`).
    let body = fieldsync_core::sync::client::compress(&json, Compression::Zstd).unwrap();
    let up = body.len();
    let resp = client
        .post(format!("{base}/v1/sync"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("content-encoding", "zstd")
        .body(body)
        .send()
        .await
        .expect("sync request");
    let status = resp.status();
    let bytes = resp.bytes().await.expect("sync body");
    assert!(
        status.is_success(),
        "sync failed: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    (serde_json::from_slice(&bytes).unwrap(), up, bytes.len())
}

fn request(device_id: &str, cursor: Option<String>, epoch: Option<String>) -> SyncRequest {
    SyncRequest {
        protocol: PROTOCOL_VERSION,
        device_id: device_id.into(),
        cursor,
        epoch,
        reference_version: 0,
        reference_epoch: None,
        changes: Vec::new(),
        heads: None,
        // As the core's client asks: visits entering the scope come as whole documents,
        // with the visits the server read from them.
        accept_documents: true,
        accept_visits: Some(fieldsync_core::document::VISIT_FORMAT),
        documents: Vec::new(),
    }
}

/// How the devices of a run send their visits.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Push {
    /// One request per visit, its 37 changes together: a phone that gets signal after
    /// each visit (the headline).
    Visit,
    /// `n` visits per request: a phone reconnecting after `n` visits offline (its client
    /// sends up to 500 outbox changes per request, i.e. 13 typical visits).
    Batch(usize),
    /// One request per change: a rep online all along whose app syncs after every
    /// action (check in, each line, check out).
    Action,
    /// As `Visit`, each visit planned by a manager beforehand (the common case).
    Planned,
}

impl Push {
    fn parse(s: &str) -> Push {
        match s {
            "visit" => Push::Visit,
            "action" => Push::Action,
            "planned" => Push::Planned,
            _ => match s.strip_prefix("batch").and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => Push::Batch(n),
                _ => panic!("push {s:?}: visit, batchN, action or planned"),
            },
        }
    }

    fn name(self) -> String {
        match self {
            Push::Visit => "visit".into(),
            Push::Batch(n) => format!("batch{n}"),
            Push::Action => "action".into(),
            Push::Planned => "planned".into(),
        }
    }

    /// A device's visits as what its requests push, in order: each visit whole when
    /// `whole` (not in `action`: one change per request).
    fn requests(self, visits: Vec<LoadVisit>, whole: bool) -> Vec<Pushes> {
        let each = |chunk: &[LoadVisit]| {
            let mut p = Pushes::default();
            for v in chunk {
                p.add(v.clone(), whole);
            }
            p
        };
        match self {
            Push::Visit | Push::Planned => visits.chunks(1).map(each).collect(),
            Push::Batch(n) => visits.chunks(n).map(each).collect(),
            Push::Action => visits
                .into_iter()
                .flat_map(|v| {
                    let visit_id = v.changes.visit_id;
                    v.changes.changes.into_iter().map(move |c| Pushes {
                        changes: vec![VisitChanges {
                            visit_id: visit_id.clone(),
                            changes: vec![c],
                        }],
                        documents: Vec::new(),
                        count: 1,
                        whole: Vec::new(),
                    })
                })
                .collect(),
        }
    }
}

/// Every device pushes its visits (one request per visit, or as `push` says), all devices
/// at once, each device one request after the other.
async fn ingest(base: &str, devices: Vec<LoadDevice>, push: Push, whole: bool) -> Value {
    let client = http();
    // Each device first does its (untimed) initial sync, as a phone does at sign-in.
    let mut prepared = Vec::new();
    for d in devices {
        let (resp, ..) =
            post_sync(&client, base, &d.token, &request(&d.device_id, None, None)).await;
        let version = resp.reference_data.as_ref().map_or(0, |r| r.version);
        prepared.push((d, resp.cursor, resp.epoch, version));
    }
    let visits: usize = prepared.iter().map(|(d, ..)| d.visits.len()).sum();
    let changes: usize = prepared
        .iter()
        .flat_map(|(d, ..)| d.visits.iter().map(|v| v.changes.changes.len()))
        .sum();
    let prepared: Vec<_> = prepared
        .into_iter()
        .map(|(d, cursor, epoch, version)| {
            let requests = push.requests(d.visits, whole);
            (d.device_id, d.token, requests, cursor, epoch, version)
        })
        .collect();
    let requests: usize = prepared.iter().map(|p| p.2.len()).sum();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (device_id, token, requests, cursor, epoch, version) in prepared {
        let client = client.clone();
        let base = base.to_string();
        tasks.push(tokio::spawn(async move {
            let mut cursor = cursor;
            let mut lat = Vec::with_capacity(requests.len());
            let (mut up, mut down) = (0usize, 0usize);
            let mut bad = 0usize;
            for pushes in requests {
                let n = pushes.count;
                let mut req = request(&device_id, Some(cursor.clone()), Some(epoch.clone()));
                req.reference_version = version;
                req.changes = pushes.changes;
                req.documents = pushes.documents;
                let whole = pushes.whole;
                let t = Instant::now();
                let (resp, u, dn) = post_sync(&client, &base, &token, &req).await;
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                up += u;
                down += dn;
                let acked = Pushes::acknowledged(&whole, &resp);
                if acked != n || !resp.rejections.is_empty() {
                    bad += 1;
                    if bad == 1 {
                        eprintln!(
                            "  ! {}: {} acks of {n}, rejections {:?}",
                            device_id, acked, resp.rejections
                        );
                    }
                }
                cursor = resp.cursor;
            }
            (lat, up, down, bad)
        }));
    }
    let mut lat = Vec::new();
    let (mut up, mut down, mut bad) = (0, 0, 0);
    for t in tasks {
        let (l, u, dn, b) = t.await.unwrap();
        lat.extend(l);
        up += u;
        down += dn;
        bad += b;
    }
    let secs = start.elapsed().as_secs_f64();
    json!({
        "requests": requests,
        "visits": visits,
        "changes": changes,
        "seconds": secs,
        "visits_per_s": visits as f64 / secs,
        "changes_per_s": changes as f64 / secs,
        "request_bytes_up_per_visit": up as f64 / visits.max(1) as f64,
        // The answers' JSON (reqwest decompresses them).
        "response_bytes_down_per_visit": down as f64 / visits.max(1) as f64,
        "failed_visits": bad,
        "latency": latency_json(lat),
    })
}

/// A fresh manager device pulls the whole territory over the wire only (no device
/// store): pages until `more` is false.
async fn initial_pull_wire(base: &str, device: &str, token: &str, expect: usize) -> Value {
    let client = http();
    let start = Instant::now();
    let mut cursor = None;
    let mut epoch = None;
    let (mut pages, mut visits, mut changes, mut documents, mut down) =
        (0, std::collections::BTreeSet::new(), 0, 0, 0);
    let mut lat = Vec::new();
    loop {
        let t = Instant::now();
        let (resp, _, d) = post_sync(&client, base, token, &request(device, cursor, epoch)).await;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        pages += 1;
        down += d;
        for g in &resp.changes {
            visits.insert(g.visit_id.clone());
            changes += g.changes.len();
        }
        for d in &resp.documents {
            visits.insert(d.visit_id.clone());
            documents += 1;
        }
        cursor = Some(resp.cursor);
        epoch = Some(resp.epoch);
        if !resp.more {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if visits.len() != expect {
        eprintln!(
            "  ! wire pull got {} visits, expected {expect}",
            visits.len()
        );
    }
    json!({
        "visits": visits.len(),
        "changes": changes,
        "documents": documents,
        "pages": pages,
        "seconds": secs,
        "visits_per_s": visits.len() as f64 / secs,
        "bytes_down": down,
        "page_latency": latency_json(lat),
    })
}

/// A fresh manager device (a real `DeviceStore` on disk) syncs the whole territory with
/// the core's `SyncClient`.
async fn initial_sync_device(base: &str, device: &str, token: &str, dir: &Path) -> Value {
    let store = DeviceStore::open(dir.join(format!("{device}.db")), "manager-1", device).unwrap();
    let client = SyncClient::with_config(
        base,
        token,
        SyncConfig {
            max_rounds: 10_000,
            ..SyncConfig::default()
        },
    )
    .unwrap();
    let start = Instant::now();
    let rep = client.sync(&store, None).await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    let visits = store.visit_ids().unwrap().len();
    json!({
        "visits": visits,
        "rounds": rep.rounds,
        "seconds": secs,
        "visits_per_s": visits as f64 / secs,
        "bytes_up": rep.bytes_up,
        "bytes_down": rep.bytes_down,
    })
}

/// The device of [`initial_sync_device`] syncing `n` more times with nothing new: what a
/// manager's app costs the server for each sync while it holds the whole territory
/// (their scope is checked against every held visit on each pull).
async fn idle_syncs(base: &str, device: &str, token: &str, dir: &Path, n: usize) -> Value {
    let store = DeviceStore::open(dir.join(format!("{device}.db")), "manager-1", device).unwrap();
    let client = SyncClient::new(base, token).unwrap();
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let rep = client.sync(&store, None).await.unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(rep.rounds, 1, "a sync with nothing new is one round trip");
    }
    ms.sort_by(f64::total_cmp);
    json!({
        "syncs": n,
        "held": store.visit_ids().unwrap().len(),
        "median_ms": percentile(&ms, 0.5),
    })
}

/// A rep's phone: initial sync, record one inventory line, sync again.
async fn incremental(base: &str, device: &str, token: &str, dir: &Path) -> Value {
    let store = DeviceStore::open(dir.join(format!("{device}.db")), "rep-1", device).unwrap();
    let client = SyncClient::new(base, token).unwrap();
    client.sync(&store, None).await.unwrap();
    let ids = store.visit_ids().unwrap();
    let refs = store.reference_data();
    let v = ids.first().expect("rep-1 has visits").clone();
    let visit = store.visit(&v).unwrap();
    let idx = refs.index();
    let p = idx.assortment_for(idx.store(&visit.plan.store_id).unwrap())[1].to_string();
    // This phone's first write into the visit registers its actor in the document (a
    // bigger change); sync that first, then measure a plain recount of the line, as in
    // the e2e test `one_changed_inventory_line_is_one_small_round_trip`.
    for qty in [12, 17] {
        if qty == 17 {
            client.sync(&store, None).await.unwrap();
        }
        store
            .record_inventory(
                &v,
                &p,
                &InventoryInput {
                    shelf_qty: Some(qty),
                    ..Default::default()
                },
            )
            .unwrap();
    }
    let t = Instant::now();
    let rep = client.sync(&store, None).await.unwrap();
    json!({
        "rounds": rep.rounds,
        "bytes_up": rep.bytes_up,
        "bytes_down": rep.bytes_down,
        "acked": rep.acked,
        "ms": t.elapsed().as_secs_f64() * 1e3,
    })
}

/// Bytes on the server per visit (SQLite): file size after a checkpoint, and the parts.
fn sqlite_storage(dir: &Path, visits: usize) -> Value {
    let path = dir.join("fieldsync.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    let q = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap_or(0) };
    let page = q("PRAGMA page_size");
    let pages = q("PRAGMA page_count");
    let free = q("PRAGMA freelist_count");
    let docs = q("SELECT COALESCE(SUM(length(doc)), 0) FROM visits");
    let log =
        q("SELECT COALESCE(SUM(length(heads_before) + length(heads_after)), 0) FROM change_log");
    let log_rows = q("SELECT COUNT(*) FROM change_log");
    let log_changes = q("SELECT COALESCE(SUM(changes), 0) FROM change_log");
    // Bytes of each table and index (the dbstat virtual table, when compiled in).
    let mut tables = serde_json::Map::new();
    if let Ok(mut stmt) =
        conn.prepare("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")
    {
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map(|it| it.filter_map(Result::ok).collect::<Vec<_>>())
            .unwrap_or_default();
        for (name, bytes) in rows {
            tables.insert(name, json!(bytes as f64 / visits.max(1) as f64));
        }
    }
    let file = std::fs::metadata(&path).map_or(0, |m| m.len()) as i64;
    let n = visits.max(1) as f64;
    json!({
        "file_bytes": file,
        "used_bytes": (pages - free) * page,
        "used_per_visit": ((pages - free) * page) as f64 / n,
        "file_per_visit": file as f64 / n,
        "doc_bytes_per_visit": docs as f64 / n,
        "change_log_heads_bytes_per_visit": log as f64 / n,
        "change_log_rows_per_visit": log_rows as f64 / n,
        "change_log_changes_per_visit": log_changes as f64 / n,
        "bytes_per_visit_by_table": tables,
    })
}

fn export(dir: &Path, corpus: &[(String, Vec<VisitDoc>)], n: usize) -> usize {
    let out = dir.join(format!("visits-{n}"));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let mut bytes = 0;
    for (i, doc) in corpus
        .iter()
        .flat_map(|(_, d)| d.iter())
        .take(n)
        .enumerate()
    {
        let b = doc.save();
        bytes += b.len();
        std::fs::write(out.join(format!("{i:06}.automerge")), b).unwrap();
    }
    bytes
}

// ------------------------------------------------------------------------------ runs

struct Run {
    visits: usize,
    devices: usize,
    push: Push,
    headline: bool,
    database_url: Option<String>,
}

fn run(
    bin: &Path,
    base_dir: &Path,
    r: &Run,
    export_dir: Option<&Path>,
    export_sizes: &[usize],
) -> Value {
    let backend = if r.database_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    eprintln!(
        "== {backend}: {} visits from {} devices, push {}{}",
        r.visits,
        r.devices,
        r.push.name(),
        if r.headline { " (headline)" } else { "" }
    );
    let dir = tempfile::Builder::new()
        .prefix("fieldsync-syncbench-")
        .tempdir_in(base_dir)
        .unwrap();
    let data = dir.path().join("server");
    let refs = reference(r.devices.max(3));
    let t = Instant::now();
    let tag = format!("b{}x{}", r.visits, r.devices);
    let planned = r.push == Push::Planned;
    let docs = corpus(&refs, r.visits, r.devices, &tag, planned);
    eprintln!("  corpus built in {:.1} s", t.elapsed().as_secs_f64());
    let mut exported = json!({});
    if let Some(ed) = export_dir {
        for &n in export_sizes {
            if n <= r.visits && r.headline {
                let b = export(ed, &docs, n);
                exported[n.to_string()] = json!({ "bytes": b });
            }
        }
    }
    let seeded = {
        let store: Arc<dyn Store> = match &r.database_url {
            Some(url) => Arc::new(
                fieldsync_server::PgStore::connect(url, &fieldsync_server::PgOptions::default())
                    .expect("PostgreSQL"),
            ),
            None => Arc::new(fieldsync_server::SqliteStore::open_dir(&data).unwrap()),
        };
        seed(store.as_ref(), &refs, docs, planned)
    };
    let mut server = Server::start(bin, &data, r.database_url.as_deref());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cpu0 = server.cpu_seconds();
    let own0 = process_cpu_seconds("self");
    let whole = env_or("FIELDSYNC_BENCH_WHOLE", "1") != "0";
    let ing = rt.block_on(ingest(&server.base, seeded.devices, r.push, whole));
    let cpu1 = server.cpu_seconds();
    let own1 = process_cpu_seconds("self");
    let mut ing = ing;
    ing["whole_documents"] = json!(whole && !matches!(r.push, Push::Action));
    ing["server_cpu_s"] = json!(cpu1 - cpu0);
    ing["server_cpu_ms_per_visit"] = json!((cpu1 - cpu0) * 1e3 / r.visits.max(1) as f64);
    // The load generator shares the machine's cores with the server.
    ing["client_cpu_ms_per_visit"] = json!((own1 - own0) * 1e3 / r.visits.max(1) as f64);
    eprintln!(
        "  ingest: {:.0} visits/s, p99 {:.1} ms, server CPU {:.2} ms/visit, load generator CPU {:.2} ms/visit",
        ing["visits_per_s"].as_f64().unwrap_or(0.0),
        ing["latency"]["p99_ms"].as_f64().unwrap_or(0.0),
        ing["server_cpu_ms_per_visit"].as_f64().unwrap_or(0.0),
        ing["client_cpu_ms_per_visit"].as_f64().unwrap_or(0.0)
    );
    let mut out = json!({
        "backend": backend,
        "visits": r.visits,
        "devices": r.devices,
        "push": r.push.name(),
        "headline": r.headline,
        "ingest": ing,
        "exported": exported,
    });
    // The initial sync of the whole territory, wire only and into a device store.
    let (d0, t0) = &seeded.manager_tokens[0];
    let c0 = server.cpu_seconds();
    let own0 = process_cpu_seconds("self");
    let wire = rt.block_on(initial_pull_wire(&server.base, d0, t0, r.visits));
    let mut wire = wire;
    wire["server_cpu_s"] = json!(server.cpu_seconds() - c0);
    wire["client_cpu_s"] = json!(process_cpu_seconds("self") - own0);
    eprintln!(
        "  initial pull (wire): {:.0} visits/s in {:.2} s, {} pages",
        wire["visits_per_s"].as_f64().unwrap_or(0.0),
        wire["seconds"].as_f64().unwrap_or(0.0),
        wire["pages"]
    );
    out["initial_wire"] = wire;
    if r.headline {
        let (d1, t1) = &seeded.manager_tokens[1];
        let (c0, own0) = (server.cpu_seconds(), process_cpu_seconds("self"));
        let mut dev = rt.block_on(initial_sync_device(&server.base, d1, t1, dir.path()));
        dev["server_cpu_s"] = json!(server.cpu_seconds() - c0);
        dev["device_cpu_s"] = json!(process_cpu_seconds("self") - own0);
        eprintln!(
            "  initial sync (device store): {:.0} visits/s in {:.2} s (device CPU {:.2} s, server CPU {:.2} s)",
            dev["visits_per_s"].as_f64().unwrap_or(0.0),
            dev["seconds"].as_f64().unwrap_or(0.0),
            dev["device_cpu_s"].as_f64().unwrap_or(0.0),
            dev["server_cpu_s"].as_f64().unwrap_or(0.0)
        );
        out["initial_device"] = dev;
        const IDLE_SYNCS: usize = 50;
        let c0 = server.cpu_seconds();
        let mut idle = rt.block_on(idle_syncs(&server.base, d1, t1, dir.path(), IDLE_SYNCS));
        idle["server_cpu_ms"] = json!((server.cpu_seconds() - c0) * 1e3 / IDLE_SYNCS as f64);
        eprintln!(
            "  manager's sync with nothing new ({} visits held): median {:.1} ms, server CPU {:.1} ms",
            idle["held"],
            idle["median_ms"].as_f64().unwrap_or(0.0),
            idle["server_cpu_ms"].as_f64().unwrap_or(0.0)
        );
        out["idle_sync"] = idle;
        let (d, t) = &seeded.rep1_token;
        let inc = rt.block_on(incremental(&server.base, d, t, dir.path()));
        eprintln!("  incremental: {inc}");
        out["incremental"] = inc;
    }
    out["server_rss_hwm_mb"] = json!(server.rss_mb());
    server.stop();
    if r.database_url.is_none() {
        out["storage"] = sqlite_storage(&data, r.visits);
        eprintln!("  storage: {}", out["storage"]);
    }
    out
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    json!({
        "cpu": cpu,
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "mem": mem,
        "loadavg": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
    })
}

fn main() {
    // `cargo test --benches` runs bench targets without `--bench`: stay quick there.
    let benching = std::env::args().any(|a| a == "--bench");
    let bin = PathBuf::from(env_or(
        "FIELDSYNC_BENCH_SERVER_BIN",
        &workspace()
            .join("target/release/fieldsync-server")
            .to_string_lossy(),
    ));
    if !bin.exists() {
        eprintln!(
            "sync bench: {} not found; build it first: cargo build --release -p fieldsync-server",
            bin.display()
        );
        if benching {
            std::process::exit(2);
        }
        return;
    }
    let runs_spec = env_or(
        "FIELDSYNC_BENCH_RUNS",
        if benching {
            "10000:100,1000:100,10000:10,10000:500,10000:100:batch8,10000:100:planned,1000:100:action"
        } else {
            "200:10"
        },
    );
    let base_dir = PathBuf::from(env_or(
        "FIELDSYNC_BENCH_DIR",
        &std::env::temp_dir().to_string_lossy(),
    ));
    let export_dir = std::env::var("FIELDSYNC_BENCH_EXPORT")
        .ok()
        .map(PathBuf::from);
    let export_sizes: Vec<usize> = env_or("FIELDSYNC_BENCH_EXPORT_SIZES", "1000,10000")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut runs = Vec::new();
    for (i, spec) in runs_spec.split(',').enumerate() {
        let mut parts = spec.trim().split(':');
        let (Some(v), Some(d)) = (parts.next(), parts.next()) else {
            panic!("FIELDSYNC_BENCH_RUNS: {spec:?} is not visits:devices[:push]");
        };
        runs.push(Run {
            visits: v.parse().unwrap(),
            devices: d.parse().unwrap(),
            push: parts.next().map_or(Push::Visit, Push::parse),
            headline: i == 0,
            database_url: None,
        });
    }
    if let Ok(url) = std::env::var("FIELDSYNC_BENCH_DATABASE_URL")
        && !url.trim().is_empty()
    {
        runs.push(Run {
            visits: runs[0].visits,
            devices: runs[0].devices,
            push: runs[0].push,
            headline: false,
            database_url: Some(url),
        });
    }
    let machine_before = machine();
    let results: Vec<Value> = runs
        .iter()
        .map(|r| run(&bin, &base_dir, r, export_dir.as_deref(), &export_sizes))
        .collect();
    let all = json!({
        "machine": machine_before,
        "loadavg_after": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "date": chrono::Utc::now().to_rfc3339(),
        "runs": results,
    });
    if let Ok(path) = std::env::var("FIELDSYNC_BENCH_JSON") {
        std::fs::write(&path, serde_json::to_string_pretty(&all).unwrap()).unwrap();
        eprintln!("results written to {path}");
    } else {
        println!("{}", serde_json::to_string_pretty(&all).unwrap());
    }
}
