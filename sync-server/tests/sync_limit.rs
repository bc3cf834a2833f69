//! Sync storms: `POST /v1/sync` is served at most `Config::max_concurrent_syncs` at a
//! time (`serve --max-concurrent-syncs`). A sync that cannot get a slot within the wait is
//! answered 503 with `Retry-After` and a clear JSON message, having read and changed
//! nothing; the server keeps serving, and serves syncs again as soon as the storm is over.
//! The core's client and sign-in retry a busy server by themselves: devices turned away
//! still finish their syncs and sign-ins.

mod common;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use fieldsync_core::fixtures::{self, FixtureSize};
use fieldsync_core::store::DeviceStore;
use fieldsync_core::sync::protocol::*;
use fieldsync_core::sync::{SyncClient, SyncConfig, SyncObserver, SyncState};
use fieldsync_server::store::NewUser;
use fieldsync_server::{AppState, Config, SqliteStore, Store};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt as _;

const VISIT: &str = "v-sync-limit";
const REPS: usize = 4;

struct World {
    app: axum::Router,
    state: AppState,
    store: Arc<SqliteStore>,
    refs: fieldsync_core::model::ReferenceData,
    dir: tempfile::TempDir,
}

struct Resp {
    status: StatusCode,
    retry_after: Option<String>,
    body: String,
}

/// A server whose sync gate has `slots` slots and waits `wait` for one (and whose password
/// gate has `password_checks` slots and waits as long); one visit planned for rep-1; a
/// device token `tok-rep-<n>` (device `phone-<n>`) per rep, passwords `pw-<username>`.
async fn world(slots: usize, wait: Duration, password_checks: usize) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("limit.db")).unwrap());
    let size = FixtureSize {
        stores_per_territory: 3,
        products: 12,
        reps_per_territory: REPS,
    };
    let refs = fixtures::reference_data(5, &size, chrono::Utc::now().date_naive());
    store.import_reference(refs.clone()).unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    for u in &refs.users {
        store
            .create_user(&NewUser {
                id: u.id.clone(),
                username: u.username.clone(),
                role: u.role,
                territories: u.territory_ids.clone(),
                password_hash: fieldsync_server::auth::hash_password(&format!("pw-{}", u.username))
                    .unwrap(),
            })
            .unwrap();
    }
    for n in 1..=REPS {
        let hash = fieldsync_server::api::hash_token(&format!("tok-rep-{n}"));
        store
            .create_token(&format!("rep-{n}"), &format!("phone-{n}"), &hash, now)
            .unwrap();
    }
    let hash = fieldsync_server::api::hash_token("tok-mgr");
    store
        .create_token("manager-1", "tablet", &hash, now)
        .unwrap();
    let state = AppState::new(
        store.clone(),
        Config {
            max_concurrent_syncs: slots,
            sync_wait: wait,
            password_checks,
            password_wait: wait,
            ..Config::default()
        },
    );
    assert_eq!(state.syncs.size(), slots);
    let w = World {
        app: fieldsync_server::app(state.clone()),
        state,
        store,
        refs,
        dir,
    };
    let shop = w
        .refs
        .stores
        .iter()
        .find(|s| s.territory_id == "t-1")
        .unwrap()
        .id
        .clone();
    let start = now + 3_600_000;
    let plan = serde_json::json!({"store_id": shop, "rep_id": "rep-1", "planned_start": start,
        "planned_end": start + 1_800_000, "template_id": "tt-standard", "visit_id": VISIT});
    let r = send(&w.app, post("/v1/visits", "tok-mgr", plan.to_string())).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    w
}

fn post(uri: &str, token: &str, body: String) -> Request<Body> {
    Request::post(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap()
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

async fn send(app: &axum::Router, mut req: Request<Body>) -> Resp {
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40005))));
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Resp {
        status,
        retry_after,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// A sync request of rep `n`'s phone (a first sync: everything in scope comes back).
fn sync_request(n: usize, changes: Vec<VisitChanges>) -> Request<Body> {
    let body = serde_json::to_string(&SyncRequest {
        protocol: PROTOCOL_VERSION,
        device_id: format!("phone-{n}"),
        changes,
        ..Default::default()
    })
    .unwrap();
    post("/v1/sync", &format!("tok-rep-{n}"), body)
}

/// rep-1's phone holding the visit, with notes written and not yet pushed.
fn rep1_with_notes(w: &World, notes: &str) -> (DeviceStore, Vec<VisitChanges>) {
    let d = DeviceStore::open(w.dir.path().join("rep1.db"), "rep-1", "phone-1").unwrap();
    d.replace_reference_data(w.refs.clone()).unwrap();
    let doc = automerge::Automerge::load(&w.store.visit(VISIT).unwrap().unwrap().doc).unwrap();
    let changes: Vec<Vec<u8>> = doc
        .get_changes(&[])
        .into_iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    d.apply_remote(VISIT, &changes).unwrap();
    d.edit_notes(VISIT, 0, 0, notes).unwrap();
    let group = VisitChanges {
        visit_id: VISIT.into(),
        changes: d
            .outbox(100)
            .unwrap()
            .iter()
            .map(|c| encode_change(&c.bytes))
            .collect(),
    };
    (d, vec![group])
}

fn assert_busy_json(r: &Resp) {
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.retry_after.as_deref(), Some("1"));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["error"], "busy", "{v}");
    let m = v["message"].as_str().unwrap();
    assert!(
        m.contains("busy with other devices' syncs") && m.contains("try again"),
        "{v}"
    );
}

async fn metric(app: &axum::Router, line_start: &str) -> String {
    let m = send(app, get("/metrics")).await.body;
    m.lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_else(|| panic!("no {line_start} in {m}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_that_cannot_get_a_slot_is_told_to_retry_and_changes_nothing() {
    let w = world(1, Duration::from_millis(100), 2).await;
    let (_device, push) = rep1_with_notes(&w, "Cola display fixed");
    let before = (
        w.store.counts().unwrap(),
        w.store.visit(VISIT).unwrap().unwrap().doc,
    );
    // Every slot taken, as by a long sync.
    let slot = w.state.syncs.enter().await.unwrap();
    let r = send(&w.app, sync_request(1, push.clone())).await;
    assert_busy_json(&r);
    assert_eq!(
        (
            w.store.counts().unwrap(),
            w.store.visit(VISIT).unwrap().unwrap().doc
        ),
        before
    );
    // Other routes still answer; the metrics show the slot held and the sync turned away.
    assert_eq!(send(&w.app, get("/healthz")).await.status, StatusCode::OK);
    assert_eq!(
        metric(&w.app, "fieldsync_busy_total{gate=\"sync\"}").await,
        "fieldsync_busy_total{gate=\"sync\"} 1"
    );
    assert_eq!(
        metric(&w.app, "fieldsync_gate_slots_in_use{gate=\"sync\"}").await,
        "fieldsync_gate_slots_in_use{gate=\"sync\"} 1"
    );
    assert_eq!(
        metric(&w.app, "fieldsync_gate_slots{gate=\"sync\"}").await,
        "fieldsync_gate_slots{gate=\"sync\"} 1"
    );
    // A sync that finds the slot freed within its wait is served.
    let freed = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(slot);
    });
    let r = send(&w.app, sync_request(1, push.clone())).await;
    freed.await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.retry_after.is_none());
    let resp: SyncResponse = serde_json::from_str(&r.body).unwrap();
    assert_eq!(resp.acks.len(), push[0].changes.len(), "{resp:?}");
    assert!(resp.rejections.is_empty(), "{resp:?}");
    assert_eq!(w.state.syncs.in_use(), 0);
}

/// Many concurrent syncs at a small limit: never more at once than the limit, some
/// answered 503 + `Retry-After`, the others served, no other error; afterwards the server
/// serves syncs as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_syncs_is_bounded_and_the_server_keeps_serving() {
    let w = Arc::new(world(2, Duration::from_millis(5), 2).await);
    let peak = Arc::new(AtomicUsize::new(0));
    let (mut ok, mut busy) = (0, 0);
    // Whether syncs collide depends on timing: bursts until one did (bounded).
    for burst in 0..5 {
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (w, peak, stop) = (w.clone(), peak.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    peak.fetch_max(w.state.syncs.in_use(), Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        };
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let w = w.clone();
                tokio::spawn(async move { send(&w.app, sync_request(1 + i % REPS, vec![])).await })
            })
            .collect();
        for t in tasks {
            let r = t.await.unwrap();
            match r.status {
                StatusCode::OK => {
                    let resp: SyncResponse = serde_json::from_str(&r.body).unwrap();
                    assert!(resp.reference_data.is_some());
                    assert!(r.retry_after.is_none());
                    ok += 1;
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert_busy_json(&r);
                    busy += 1;
                }
                s => panic!("unexpected {s}: {}", r.body),
            }
        }
        stop.store(true, Ordering::SeqCst);
        sampler.await.unwrap();
        assert_eq!(ok + busy, 40 * (burst + 1));
        if busy > 0 {
            break;
        }
    }
    assert!(ok >= 2, "ok {ok}, busy {busy}");
    assert!(busy >= 1, "ok {ok}, busy {busy}");
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= 2, "peak {peak}");
    assert_eq!(
        metric(&w.app, "fieldsync_busy_total{gate=\"sync\"}").await,
        format!("fieldsync_busy_total{{gate=\"sync\"}} {busy}")
    );
    // After the burst: syncs, pushes included, and everything else work.
    assert_eq!(w.state.syncs.in_use(), 0);
    let (_device, push) = rep1_with_notes(&w, "after the storm");
    let r = send(&w.app, sync_request(1, push.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let resp: SyncResponse = serde_json::from_str(&r.body).unwrap();
    assert_eq!(resp.acks.len(), push[0].changes.len());
    assert_eq!(send(&w.app, get("/healthz")).await.status, StatusCode::OK);
}

#[derive(Default)]
struct Busy(Mutex<Vec<String>>);

impl SyncObserver for Busy {
    fn on_state(&self, state: SyncState) {
        if let SyncState::Backoff { error, .. } = state {
            self.0.lock().unwrap().push(error);
        }
    }
    fn on_progress(&self, _: u64, _: u64) {}
    fn on_data_changed(&self, _: &[String]) {}
}

/// Over real TCP, one sync slot and no wait, one password check and no wait: devices
/// syncing and signing in at once are turned away and come back by themselves (the core's
/// client retries 503, waiting the `Retry-After`, capped by its `max_delay`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_turned_away_retry_and_finish() {
    let w = world(1, Duration::ZERO, 1).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = w.app.clone();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    let config = SyncConfig {
        max_attempts: 30,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(150),
        timeout: Duration::from_secs(20),
        ..SyncConfig::default()
    };
    // Sign-ins at once through one password check.
    let logins: Vec<_> = (1..=REPS)
        .map(|n| {
            let (base, config) = (base.clone(), config.clone());
            tokio::spawn(async move {
                fieldsync_core::sync::client::login_with(
                    &base,
                    &format!("rep{n}"),
                    &format!("pw-rep{n}"),
                    &format!("tablet-{n}"),
                    &config,
                )
                .await
            })
        })
        .collect();
    for l in logins {
        let session = l.await.unwrap().expect("sign-in retried until served");
        assert!(!session.token.is_empty());
    }
    // Syncs at once through one slot, three rounds each.
    let mut tasks = Vec::new();
    for n in 1..=REPS {
        let (base, config, dir) = (base.clone(), config.clone(), w.dir.path().to_path_buf());
        tasks.push(tokio::spawn(async move {
            let store = DeviceStore::open(
                dir.join(format!("d{n}.db")),
                &format!("rep-{n}"),
                &format!("phone-{n}"),
            )
            .unwrap();
            let client = SyncClient::with_config(&base, &format!("tok-rep-{n}"), config).unwrap();
            let busy = Busy::default();
            for _ in 0..3 {
                client
                    .sync(&store, Some(&busy))
                    .await
                    .expect("sync retried until served");
            }
            let errors = busy.0.lock().unwrap().clone();
            (store.reference_data().version, errors)
        }));
    }
    let mut turned_away = 0;
    for t in tasks {
        let (version, errors) = t.await.unwrap();
        assert!(version > 0);
        for e in &errors {
            assert!(
                e.contains("503") && e.contains("busy with other devices' syncs"),
                "{e}"
            );
        }
        turned_away += errors.len();
    }
    let line = metric(&w.app, "fieldsync_busy_total{gate=\"sync\"}").await;
    assert_eq!(
        line,
        format!("fieldsync_busy_total{{gate=\"sync\"}} {turned_away}")
    );
    eprintln!(
        "{turned_away} syncs turned away and retried; {}",
        metric(&w.app, "fieldsync_busy_total{gate=\"sign_in\"}").await
    );
    assert_eq!(w.state.syncs.in_use(), 0);
    server.abort();
}

#[tokio::test]
async fn the_openapi_document_lists_the_busy_answer_of_sync() {
    let w = world(1, Duration::from_millis(10), 1).await;
    let doc: serde_json::Value =
        serde_json::from_str(&send(&w.app, get("/v1/openapi.json")).await.body).unwrap();
    let busy = &doc["paths"]["/v1/sync"]["post"]["responses"]["503"];
    assert!(busy["headers"]["Retry-After"].is_object(), "{busy}");
    assert_eq!(
        busy["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
}

/// `serve --max-concurrent-syncs`: the binary takes the limit (and refuses 0).
#[tokio::test]
async fn the_serve_flag_sets_the_limit() {
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-concurrent-syncs",
            "0",
            "--data-dir",
        ])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--max-concurrent-syncs"), "{err}");
    let server = common::Server::start_with(data.path(), 0, &["--max-concurrent-syncs", "3"]);
    let m = common::metrics(&server).await;
    assert!(
        m.lines()
            .any(|l| l == "fieldsync_gate_slots{gate=\"sync\"} 3"),
        "{m}"
    );
}
