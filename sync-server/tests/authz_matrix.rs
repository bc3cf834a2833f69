//! Authorization matrix: every route × {no token, revoked token, rep in territory, rep
//! outside, manager in territory, manager outside, admin}, with the expected status for
//! each cell.
//!
//! The routes are enumerated twice so that a new endpoint cannot escape: from the OpenAPI
//! document the server serves (`GET /v1/openapi.json`) and from every `.route("…", …)` in
//! the server's source. A route found either way without a row in [`EXPECTED`] fails the
//! test, as does a row for a route that no longer exists, and an API route the document
//! does not list (only the pages are left out of it). Besides the status, no cell
//! outside the territory (and no unauthenticated cell) may see the territory's visit id.
//!
//! The server is the real router driven in-process (`tower::ServiceExt::oneshot`).

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use fieldsync_core::fixtures::{self, FixtureSize};
use fieldsync_server::store::NewUser;
use fieldsync_server::{AppState, Config, SqliteStore, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use tower::ServiceExt as _;

/// The cells of a row, in this order.
const ROLES: [&str; 7] = [
    "no token",
    "revoked token",
    "rep in territory",
    "rep outside",
    "manager in territory",
    "manager outside",
    "admin",
];

/// The visit every cell is about: in t-1, assigned to rep-1.
const VISIT: &str = "v-authz-t1-secret";

/// (method, path, expected status per role). Bearer tokens only: the dashboard's session
/// cookie is a separate credential covered by `tests/dashboard.rs`.
const EXPECTED: &[(&str, &str, [u16; 7])] = &[
    // Public.
    (
        "POST",
        "/v1/auth/login",
        [200, 200, 200, 200, 200, 200, 200],
    ),
    ("GET", "/healthz", [200, 200, 200, 200, 200, 200, 200]),
    ("GET", "/metrics", [200, 200, 200, 200, 200, 200, 200]),
    (
        "GET",
        "/v1/openapi.json",
        [200, 200, 200, 200, 200, 200, 200],
    ),
    // Device API: any signed-in user syncs (scope is checked on the content below).
    ("POST", "/v1/sync", [401, 401, 200, 200, 200, 200, 200]),
    // Planning API: managers of the territory and admins.
    ("POST", "/v1/visits", [401, 401, 403, 403, 201, 403, 201]),
    (
        "GET",
        "/v1/visits/{id}",
        [401, 401, 200, 403, 200, 403, 200],
    ),
    (
        "PATCH",
        "/v1/visits/{id}",
        [401, 401, 403, 403, 200, 403, 200],
    ),
    // Dashboard pages: without a session cookie every page redirects to the sign-in form
    // (a bearer token is not a browser session); the shell holds no data.
    ("GET", "/", [303; 7]),
    ("GET", "/trends", [303; 7]),
    ("GET", "/planning", [303; 7]),
    ("GET", "/export", [303; 7]),
    ("GET", "/stores/{id}", [303; 7]),
    ("GET", "/visits/{id}", [303; 7]),
    ("GET", "/assets/{file}", [200; 7]),
    ("GET", "/login", [200; 7]),
    ("POST", "/login", [400; 7]), // a JSON body without the form's CSRF pair,
    ("POST", "/logout", [303; 7]), // no session: back to the sign-in form,
    // Dashboard planning API (session + CSRF; bearer tokens are not accepted here).
    ("POST", "/v1/dashboard/visits", [401; 7]),
    ("PATCH", "/v1/dashboard/visits/{id}", [401; 7]),
    // Report API (bearer token or session): managers (their territories only: the
    // leak check below covers lists) and admins; reps never.
    (
        "GET",
        "/v1/reports/context",
        [401, 401, 403, 403, 200, 200, 200],
    ),
    (
        "GET",
        "/v1/reports/overview",
        [401, 401, 403, 403, 200, 200, 200],
    ),
    (
        "GET",
        "/v1/reports/trends",
        [401, 401, 403, 403, 200, 200, 200],
    ),
    (
        "GET",
        "/v1/reports/visits",
        [401, 401, 403, 403, 200, 200, 200],
    ),
    (
        "GET",
        "/v1/reports/visits/{id}",
        [401, 401, 403, 403, 200, 403, 200],
    ),
    (
        "GET",
        "/v1/reports/stores/{id}",
        [401, 401, 403, 403, 200, 403, 200],
    ),
    (
        "GET",
        "/v1/reports/changes",
        [401, 401, 403, 403, 200, 200, 200],
    ),
    (
        "GET",
        "/v1/reports/export/visits.csv",
        [401, 401, 403, 403, 200, 200, 200],
    ),
    (
        "GET",
        "/v1/reports/export/inventory.csv",
        [401, 401, 403, 403, 200, 200, 200],
    ),
];

fn hash_password(p: &str) -> String {
    fieldsync_server::auth::hash_password(p).unwrap()
}

struct Fixture {
    router: axum::Router,
    /// Bearer token per role (None: no header).
    tokens: [Option<String>; 7],
    /// Username per role, for sign-in bodies.
    users: [&'static str; 7],
    t1_store: String,
    _dir: tempfile::TempDir,
}

async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (StatusCode, String) {
    let mut b = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(uri);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some(v) => {
            b = b.header("content-type", "application/json");
            Body::from(serde_json::to_vec(&v).unwrap())
        }
        None => Body::empty(),
    };
    let mut req = b.body(body).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("authz.db")).unwrap());
    let today = chrono::Utc::now().date_naive();
    let size = FixtureSize {
        stores_per_territory: 3,
        products: 8,
        reps_per_territory: 2,
    };
    let refs = fixtures::reference_data(7, &size, today);
    store.import_reference(refs.clone()).unwrap();
    for u in &refs.users {
        store
            .create_user(&NewUser {
                id: u.id.clone(),
                username: u.username.clone(),
                role: u.role,
                territories: u.territory_ids.clone(),
                password_hash: hash_password(&format!("pw-{}", u.username)),
            })
            .unwrap();
    }
    let now = chrono::Utc::now().timestamp_millis();
    let tok = |user: &str, device: &str| {
        let t = format!("tok-{user}-{device}");
        let id = store
            .create_token(user, device, &fieldsync_server::api::hash_token(&t), now)
            .unwrap();
        (t, id)
    };
    let (revoked, revoked_id) = tok("rep-1", "revoked-phone");
    let tokens = [
        None,
        Some(revoked),
        Some(tok("rep-1", "rep-in").0),
        Some(tok("rep-3", "rep-out").0),
        Some(tok("manager-1", "mgr-in").0),
        Some(tok("manager-2", "mgr-out").0),
        Some(tok("admin", "admin").0),
    ];
    store.revoke_token(&revoked_id, now).unwrap();
    let t1_store = refs
        .stores
        .iter()
        .find(|s| s.territory_id == "t-1")
        .unwrap()
        .id
        .clone();
    let router = fieldsync_server::app(AppState::new(store, Config::default()));
    // The visit of the matrix, planned by the admin.
    let (status, body) = call(
        &router,
        "POST",
        "/v1/visits",
        tokens[6].as_deref(),
        Some(plan_body(&t1_store, VISIT)),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    Fixture {
        router,
        tokens,
        users: [
            "manager1", "rep1", "rep1", "rep3", "manager1", "manager2", "admin",
        ],
        t1_store,
        _dir: dir,
    }
}

fn plan_body(store: &str, visit_id: &str) -> serde_json::Value {
    let start = chrono::Utc::now().timestamp_millis() + 3_600_000;
    serde_json::json!({
        "store_id": store, "rep_id": "rep-1", "planned_start": start,
        "planned_end": start + 3_600_000, "template_id": "tt-standard", "visit_id": visit_id
    })
}

/// The device id each role's token was issued to (sync bodies must name it).
const DEVICES: [&str; 7] = [
    "none",
    "revoked-phone",
    "rep-in",
    "rep-out",
    "mgr-in",
    "mgr-out",
    "admin",
];

/// A request for one cell: the concrete URI and body.
fn request_for(
    f: &Fixture,
    method: &str,
    path: &str,
    role: usize,
    n: usize,
) -> (String, Option<serde_json::Value>) {
    let uri = path
        .replace(
            "{id}",
            if path.contains("stores") {
                &f.t1_store
            } else {
                VISIT
            },
        )
        .replace("{file}", "app.css");
    let body = match (method, path) {
        ("POST", "/v1/auth/login") => Some(serde_json::json!({
            "username": f.users[role], "password": format!("pw-{}", f.users[role]),
            "device_id": format!("login-{n}")
        })),
        ("POST", "/v1/sync") => {
            Some(serde_json::json!({"protocol": 1, "device_id": DEVICES[role]}))
        }
        ("POST", p) if p.ends_with("/visits") => {
            Some(plan_body(&f.t1_store, &format!("v-authz-new-{n}")))
        }
        ("PATCH", _) => Some(serde_json::json!({"priority": 1 + (n % 5)})),
        _ => None,
    };
    (uri, body)
}

/// Every `.route("path", method(…)…)` in the server's source: (METHOD, path).
fn routes_in_source() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(
                !text.contains(".nest("),
                "{}: nested routers are not enumerated by this test; extend routes_in_source",
                p.display()
            );
            let mut rest = text.as_str();
            while let Some(i) = rest.find(".route(") {
                rest = &rest[i + ".route(".len()..];
                // The call's text up to its closing parenthesis.
                let mut depth = 1;
                let mut end = 0;
                for (j, ch) in rest.char_indices() {
                    match ch {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                end = j;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let call = &rest[..end];
                let Some(q1) = call.find('"') else { continue };
                let Some(q2) = call[q1 + 1..].find('"') else {
                    continue;
                };
                let path = &call[q1 + 1..q1 + 1 + q2];
                let handlers = &call[q1 + 2 + q2..];
                for m in ["get", "post", "patch", "put", "delete"] {
                    let calls = handlers.match_indices(&format!("{m}(")).any(|(k, _)| {
                        k == 0
                            || !handlers.as_bytes()[k - 1].is_ascii_alphanumeric()
                                && handlers.as_bytes()[k - 1] != b'_'
                    });
                    if calls {
                        out.insert((m.to_uppercase(), path.to_string()));
                    }
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "current_thread")]
async fn every_route_has_an_expected_outcome_for_every_role() {
    let f = fixture().await;
    // Routes from the served OpenAPI document.
    let (status, doc) = call(&f.router, "GET", "/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let mut routes: BTreeSet<(String, String)> = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.insert((method.to_uppercase(), path.clone()));
        }
    }
    let documented = routes.clone();
    let in_source = routes_in_source();
    assert!(
        in_source.contains(&("POST".into(), "/v1/sync".into())),
        "the source scan found no routes: {in_source:?}"
    );
    routes.extend(in_source.iter().cloned());
    let expected: BTreeMap<(String, String), [u16; 7]> = EXPECTED
        .iter()
        .map(|(m, p, e)| (((*m).to_string(), (*p).to_string()), *e))
        .collect();
    let missing: Vec<_> = routes
        .iter()
        .filter(|r| !expected.contains_key(*r))
        .collect();
    let stale: Vec<_> = expected.keys().filter(|r| !routes.contains(*r)).collect();
    let undocumented: Vec<_> = in_source
        .iter()
        .filter(|r| !documented.contains(*r))
        .collect();
    // Every API route is documented; only the HTML pages, their assets and the document
    // itself are not.
    let api = |p: &str| {
        (p.starts_with("/v1/") && p != "/v1/openapi.json") || p == "/healthz" || p == "/metrics"
    };
    let undocumented_api: Vec<_> = undocumented.iter().filter(|r| api(&r.1)).collect();
    assert!(
        undocumented_api.is_empty(),
        "API routes in the router source but not in the OpenAPI document: {undocumented_api:?}"
    );
    assert!(
        missing.is_empty(),
        "routes without a row in EXPECTED (add one per route, 7 cells: {ROLES:?}): {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "rows for routes that no longer exist: {stale:?}"
    );

    let mut failures = Vec::new();
    let mut cells = 0;
    for (n, ((method, path), want)) in expected.iter().enumerate() {
        for (role, &want) in want.iter().enumerate() {
            let (uri, body) = request_for(&f, method, path, role, n * 10 + role);
            let (status, text) =
                call(&f.router, method, &uri, f.tokens[role].as_deref(), body).await;
            cells += 1;
            if status.as_u16() != want {
                failures.push(format!(
                    "{method} {path} as {}: expected {want}, got {status}: {}",
                    ROLES[role],
                    text.chars().take(160).collect::<String>()
                ));
            }
            // Errors are JSON with a readable message (except the HTML/asset routes).
            if !status.is_success() && status.is_client_error() && path.starts_with("/v1/") {
                let e: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if e["message"].as_str().is_none_or(str::is_empty) {
                    failures.push(format!(
                        "{method} {path} as {}: {status} without a JSON message: {text:.160}",
                        ROLES[role]
                    ));
                }
            }
            // Nothing of t-1's visit outside the territory or without a valid token.
            let outsider = matches!(role, 0 | 1 | 3 | 5);
            if outsider && status.is_success() && text.contains(VISIT) {
                failures.push(format!(
                    "{method} {path} as {} leaks visit {VISIT}: {status}",
                    ROLES[role]
                ));
            }
            if !outsider && status.is_success() && path == "/v1/sync" && !text.contains(VISIT) {
                failures.push(format!(
                    "{method} {path} as {}: the territory's visit is missing",
                    ROLES[role]
                ));
            }
        }
    }
    eprintln!(
        "authorization matrix: {} routes × {} roles = {cells} cells",
        expected.len(),
        ROLES.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
