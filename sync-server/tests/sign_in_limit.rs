//! Sign-in storms: every sign-in (`POST /v1/auth/login`, the dashboard's `POST /login`)
//! checks its password through one gate (`fieldsync_server::auth::PasswordGate`) that runs
//! a bounded number of argon2id checks at once. A sign-in that cannot get a slot within
//! the wait is answered 503 with `Retry-After` and a clear message, hashing nothing; the
//! server keeps serving, and signs in again as soon as the burst is over.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use fieldsync_server::store::NewUser;
use fieldsync_server::{AppState, Config, SqliteStore, Store};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tower::ServiceExt as _;

struct World {
    app: axum::Router,
    state: AppState,
    _dir: tempfile::TempDir,
}

struct Resp {
    status: StatusCode,
    retry_after: Option<String>,
    body: String,
    cookies: Vec<String>,
}

/// A server whose gate runs `slots` checks at once and waits `wait` for one; users
/// `rep1` (password `pw-rep1`) and `manager1` (`pw-manager1`) with real argon2id hashes.
fn world(slots: usize, wait: Duration) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("signin.db")).unwrap());
    for (id, name, role) in [
        ("rep-1", "rep1", fieldsync_core::model::Role::Rep),
        (
            "manager-1",
            "manager1",
            fieldsync_core::model::Role::Manager,
        ),
    ] {
        store
            .create_user(&NewUser {
                id: id.into(),
                username: name.into(),
                role,
                territories: vec!["t-1".into()],
                password_hash: fieldsync_server::auth::hash_password(&format!("pw-{name}"))
                    .unwrap(),
            })
            .unwrap();
    }
    let state = AppState::new(
        store,
        Config {
            password_checks: slots,
            password_wait: wait,
            ..Config::default()
        },
    );
    assert_eq!(state.passwords.size(), slots);
    World {
        app: fieldsync_server::app(state.clone()),
        state,
        _dir: dir,
    }
}

async fn send(app: &axum::Router, mut req: Request<Body>) -> Resp {
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40003))));
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_string());
    let cookies = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Resp {
        status,
        retry_after,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        cookies,
    }
}

fn api_login(username: &str, device: &str) -> Request<Body> {
    let body = serde_json::json!({"username": username, "password": format!("pw-{username}"), "device_id": device});
    Request::post("/v1/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// The dashboard's sign-in form, with the CSRF cookie the form page set.
async fn dashboard_login(app: &axum::Router, username: &str) -> Request<Body> {
    let page = send(app, Request::get("/login").body(Body::empty()).unwrap()).await;
    let csrf = page
        .cookies
        .iter()
        .find_map(|c| c.strip_prefix("fs_login_csrf="))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string();
    Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, format!("fs_login_csrf={csrf}"))
        .body(Body::from(format!(
            "username={username}&password=pw-{username}&csrf={csrf}"
        )))
        .unwrap()
}

/// Takes the gate's only slot for `hold`, as a long password check would.
async fn occupy(w: &World, hold: Duration) -> tokio::task::JoinHandle<()> {
    let gate = w.state.passwords.clone();
    let task = tokio::spawn(async move {
        gate.run(move || std::thread::sleep(hold)).await.unwrap();
    });
    while w.state.passwords.in_use() == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    task
}

fn assert_busy_json(r: &Resp) {
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.retry_after.as_deref(), Some("1"));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["error"], "busy", "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("too many sign-ins at once"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_that_cannot_get_a_password_slot_is_told_to_retry() {
    let w = world(1, Duration::from_millis(100));
    let hold = occupy(&w, Duration::from_millis(800)).await;
    let r = send(&w.app, api_login("rep1", "phone-1")).await;
    assert_busy_json(&r);
    // Nothing was counted as a failed sign-in, and other routes still answer.
    let health = send(
        &w.app,
        Request::get("/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(health.status, StatusCode::OK);
    hold.await.unwrap();
    let r = send(&w.app, api_login("rep1", "phone-1")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("\"token\""));
    assert!(r.retry_after.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_sign_in_goes_through_the_same_gate() {
    let w = world(1, Duration::from_millis(100));
    let form = dashboard_login(&w.app, "manager1").await;
    let hold = occupy(&w, Duration::from_millis(800)).await;
    let r = send(&w.app, form).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.retry_after.as_deref(), Some("1"));
    assert!(
        r.body
            .contains("The server is busy signing other people in"),
        "{}",
        r.body
    );
    // The page is the sign-in form again (with a fresh CSRF token), not a session.
    assert!(r.cookies.iter().all(|c| !c.starts_with("fs_session=")));
    assert!(r.cookies.iter().any(|c| c.starts_with("fs_login_csrf=")));
    hold.await.unwrap();
    let form = dashboard_login(&w.app, "manager1").await;
    let r = send(&w.app, form).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.cookies.iter().any(|c| c.starts_with("fs_session=")));
}

/// Many concurrent sign-ins at a small limit: never more checks at once than the limit,
/// some answered 503 + `Retry-After`, the others signed in, and the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_sign_ins_is_bounded_and_the_server_keeps_serving() {
    let w = Arc::new(world(2, Duration::from_millis(150)));
    let peak = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (w, peak, stop) = (w.clone(), peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(w.state.passwords.in_use(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let mut tasks = Vec::new();
    for i in 0..40 {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            send(&w.app, api_login("rep1", &format!("phone-{i}"))).await
        }));
    }
    let (mut ok, mut busy) = (0, 0);
    let mut tokens = std::collections::BTreeSet::new();
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            StatusCode::OK => {
                let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
                tokens.insert(v["token"].as_str().unwrap().to_string());
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
    assert!(ok >= 2, "ok {ok}, busy {busy}");
    assert!(busy >= 1, "ok {ok}, busy {busy}");
    assert_eq!(ok + busy, 40);
    let peak = peak.load(Ordering::SeqCst);
    assert!((1..=2).contains(&peak), "peak {peak}");
    // Every successful sign-in got its own working token.
    assert_eq!(tokens.len(), ok);
    for t in &tokens {
        let hash = fieldsync_server::api::hash_token(t);
        assert!(w.state.store.authenticate(&hash).unwrap().is_some());
    }
    // After the burst: sign-ins and everything else work.
    assert_eq!(w.state.passwords.in_use(), 0);
    let r = send(&w.app, api_login("rep1", "phone-after")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let health = send(
        &w.app,
        Request::get("/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(health.status, StatusCode::OK);
}

#[tokio::test]
async fn the_openapi_document_lists_the_busy_answer_of_sign_in() {
    let w = world(1, Duration::from_millis(10));
    let r = send(
        &w.app,
        Request::get("/v1/openapi.json")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let doc: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let busy = &doc["paths"]["/v1/auth/login"]["post"]["responses"]["503"];
    assert!(busy["headers"]["Retry-After"].is_object(), "{busy}");
    assert_eq!(
        busy["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
}
