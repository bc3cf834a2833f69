//! Bad input over HTTP, table-driven, for every JSON endpoint: malformed JSON, wrong
//! types, invalid UTF-8, bodies that are too large, lying `Content-Encoding`, unknown
//! protocol versions, bad cursors, bad path and query parameters, bad `Authorization`
//! headers, wrong methods, and forged document changes (fields the role does not own, a
//! store outside the scope, changes with missing dependencies).
//!
//! Each case expects a 4xx with a JSON `{"error", "message"}` whose message names the
//! problem (forged changes: a 200 whose per-visit rejection or resend says why); after
//! each case the server still answers and the stored data is byte-for-byte unchanged.
//! The end-to-end suite (`e2e.rs`) covers the same over real TCP for `/v1/sync`.

#[path = "common/inproc.rs"]
mod inproc;

use automerge::ReadDoc as _;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use fieldsync_core::fixtures::FixtureSize;
use fieldsync_core::store::DeviceStore;
use fieldsync_core::sync::protocol::*;
use fieldsync_server::{AppState, Config, SqliteStore, Store};
use inproc::seeded_store;
use std::sync::Arc;

const VISIT: &str = "v-bad-input";
const LIMIT: usize = 1024 * 1024;

struct Env {
    router: axum::Router,
    store: Arc<SqliteStore>,
    rep: String,
    mgr: String,
    t1_store: String,
    t2_store: String,
    refs: fieldsync_core::model::ReferenceData,
    dir: tempfile::TempDir,
}

async fn send(
    router: &axum::Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &[u8])],
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, axum::http::HeaderValue::from_bytes(v).unwrap());
    }
    inproc::call(router, b.body(Body::from(body)).unwrap()).await
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let size = FixtureSize {
        stores_per_territory: 3,
        products: 8,
        reps_per_territory: 1,
    };
    let (store, refs) = seeded_store(&dir.path().join("bad.db"), 3, &size);
    let now = chrono::Utc::now().timestamp_millis();
    let router = fieldsync_server::app(AppState::new(
        store.clone(),
        Config {
            body_limit: LIMIT,
            ..Config::default()
        },
    ));
    let store_in = |t: &str| inproc::store_in(&refs, t);
    let e = Env {
        router,
        store,
        rep: "rep-token".into(),
        mgr: "mgr-token".into(),
        t1_store: store_in("t-1"),
        t2_store: store_in("t-2"),
        refs: refs.clone(),
        dir,
    };
    let start = now + 3_600_000;
    let plan = serde_json::json!({"store_id": e.t1_store, "rep_id": "rep-1", "planned_start": start,
        "planned_end": start + 3_600_000, "template_id": "tt-standard", "visit_id": VISIT});
    let (s, b) = send(
        &e.router,
        "POST",
        "/v1/visits",
        &[
            ("authorization", b"Bearer mgr-token"),
            ("content-type", b"application/json"),
        ],
        serde_json::to_vec(&plan).unwrap(),
    )
    .await;
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
    e
}

/// Everything stored that a bad request must not change.
fn snapshot(store: &SqliteStore) -> (i64, i64, Vec<u8>, i64) {
    let (visits, changes) = store.counts().unwrap();
    let doc = store.visit(VISIT).unwrap().unwrap().doc;
    (visits, changes, doc, store.reference().unwrap().version)
}

/// One case: request and what must come back.
struct Case {
    name: &'static str,
    method: &'static str,
    uri: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
    status: u16,
    /// A piece of the error message (or, for 200s, of the rejection/resend).
    says: &'static str,
}

fn json_headers(token: &str) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("authorization", format!("Bearer {token}").into_bytes()),
        ("content-type", b"application/json".to_vec()),
    ]
}

/// Malformed bodies, for every route that takes a JSON body.
fn body_cases(e: &Env) -> Vec<Case> {
    let routes: [(&str, String, &str); 5] = [
        ("POST", "/v1/auth/login".into(), ""),
        ("POST", "/v1/sync".into(), "rep"),
        ("POST", "/v1/visits".into(), "mgr"),
        ("PATCH", format!("/v1/visits/{VISIT}"), "mgr"),
        ("POST", "/v1/dashboard/visits".into(), ""),
    ];
    let mut out = Vec::new();
    for (method, uri, who) in routes {
        let token = match who {
            "rep" => e.rep.as_str(),
            "mgr" => e.mgr.as_str(),
            _ => "",
        };
        let h = json_headers(token);
        let dashboard = uri.starts_with("/v1/dashboard");
        // The dashboard's planning API wants a session first: 401 before any parsing.
        let (bad, says_json) = if dashboard {
            (401, "not signed in")
        } else {
            (400, "malformed JSON")
        };
        let bodies: [(&'static str, Vec<u8>); 6] = [
            ("malformed JSON", b"{not json".to_vec()),
            ("truncated JSON", b"{\"protocol\": 1, \"device_id\": \"ph".to_vec()),
            (
                "wrong types",
                br#"{"protocol": "one", "device_id": 7, "username": 1, "password": [], "store_id": 5, "priority": "high", "planned_start": "soon"}"#.to_vec(),
            ),
            ("invalid UTF-8", vec![b'{', b'"', 0xff, 0xfe, 0xfd, b'"', b':', b'1', b'}']),
            ("an array", b"[1, 2, 3]".to_vec()),
            ("empty body", Vec::new()),
        ];
        for (name, body) in bodies {
            out.push(Case {
                name,
                method,
                uri: uri.clone(),
                headers: h.clone(),
                body,
                status: bad,
                says: says_json,
            });
        }
        out.push(Case {
            name: "a body over the limit",
            method,
            uri: uri.clone(),
            headers: h.clone(),
            body: vec![b' '; LIMIT + 10],
            status: if dashboard { 401 } else { 413 },
            says: if dashboard {
                "not signed in"
            } else {
                "too large"
            },
        });
        let mut lying = h.clone();
        lying.push(("content-encoding", b"zstd".to_vec()));
        out.push(Case {
            name: "Content-Encoding: zstd on a plain body",
            method,
            uri: uri.clone(),
            headers: lying,
            body: b"{\"protocol\": 1}".to_vec(),
            status: if dashboard { 401 } else { 400 },
            says: if dashboard { "not signed in" } else { "body" },
        });
        // A few KB that decompress past the limit (`/v1/sync` decompresses Zstandard
        // itself, the other routes through tower-http: both refuse it).
        let mut packed = h.clone();
        packed.push(("content-encoding", b"zstd".to_vec()));
        let mut bomb = b"{\"protocol\": 1, \"device_id\": \"".to_vec();
        bomb.extend(std::iter::repeat_n(b'a', 4 * LIMIT));
        bomb.extend(b"\"}");
        out.push(Case {
            name: "a Zstandard body that decompresses past the limit",
            method,
            uri: uri.clone(),
            headers: packed,
            body: zstd::encode_all(&bomb[..], 19).unwrap(),
            status: if dashboard { 401 } else { 413 },
            says: if dashboard {
                "not signed in"
            } else {
                "too large"
            },
        });
        let mut brotli = h.clone();
        brotli.push(("content-encoding", b"br".to_vec()));
        out.push(Case {
            name: "Content-Encoding: br (not supported)",
            method,
            uri: uri.clone(),
            headers: brotli,
            body: b"{\"protocol\": 1}".to_vec(),
            // Refused before anything else, the dashboard's sign-in check included.
            status: 415,
            says: "upported",
        });
    }
    out
}

/// Bad values in well-formed requests, per endpoint.
fn value_cases(e: &Env) -> Vec<Case> {
    let rep = json_headers(&e.rep);
    let mgr = json_headers(&e.mgr);
    let now = chrono::Utc::now().timestamp_millis();
    let j = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
    let long = "x".repeat(5_000);
    vec![
        Case {
            name: "unknown protocol version",
            method: "POST",
            uri: "/v1/sync".into(),
            headers: rep.clone(),
            body: j(serde_json::json!({"protocol": 99, "device_id": "phone"})),
            status: 400,
            says: "unsupported protocol version 99",
        },
        Case {
            name: "protocol version 0",
            method: "POST",
            uri: "/v1/sync".into(),
            headers: rep.clone(),
            body: j(serde_json::json!({"protocol": 0, "device_id": "phone"})),
            status: 400,
            says: "unsupported protocol version 0",
        },
        Case {
            name: "a cursor that is not one",
            method: "POST",
            uri: "/v1/sync".into(),
            headers: rep.clone(),
            body: j(serde_json::json!({"protocol": 1, "device_id": "phone", "cursor": "abc"})),
            status: 400,
            says: "invalid cursor",
        },
        Case {
            name: "another device's id",
            method: "POST",
            uri: "/v1/sync".into(),
            headers: rep.clone(),
            body: j(serde_json::json!({"protocol": 1, "device_id": "not-my-phone"})),
            status: 403,
            says: "issued to device",
        },
        Case {
            name: "a visit id of 5000 characters",
            method: "POST",
            uri: "/v1/sync".into(),
            headers: rep.clone(),
            body: j(serde_json::json!({"protocol": 1, "device_id": "phone",
                "changes": [{"visit_id": long, "changes": [encode_change(b"x")]}]})),
            status: 200,
            says: "invalid visit id",
        },
        Case {
            name: "changes that are not base64",
            method: "POST",
            uri: "/v1/sync".into(),
            headers: rep.clone(),
            body: j(serde_json::json!({"protocol": 1, "device_id": "phone",
                "changes": [{"visit_id": VISIT, "changes": ["%%%"]}]})),
            status: 200,
            says: "invalid base64",
        },
        Case {
            name: "changes that are not Automerge",
            method: "POST",
            uri: "/v1/sync".into(),
            headers: rep.clone(),
            body: j(serde_json::json!({"protocol": 1, "device_id": "phone",
                "changes": [{"visit_id": VISIT, "changes": [encode_change(b"\x85\x6f\x4a\x83garbage")]}]})),
            status: 200,
            says: "not an Automerge change",
        },
        Case {
            name: "heads that are not hashes",
            method: "POST",
            uri: "/v1/sync".into(),
            headers: rep.clone(),
            body: j(serde_json::json!({"protocol": 1, "device_id": "phone",
                "heads": [{"visit_id": VISIT, "heads": ["zz", long]}]})),
            status: 200,
            says: "",
        },
        Case {
            name: "a login without a device id",
            method: "POST",
            uri: "/v1/auth/login".into(),
            headers: json_headers(""),
            body: j(serde_json::json!({"username": "rep1", "password": "x", "device_id": " "})),
            status: 400,
            says: "device_id",
        },
        Case {
            name: "a plan at an unknown store",
            method: "POST",
            uri: "/v1/visits".into(),
            headers: mgr.clone(),
            body: j(
                serde_json::json!({"store_id": "st-nope", "rep_id": "rep-1", "planned_start": now,
                "planned_end": now + 1, "template_id": "tt-standard"}),
            ),
            status: 400,
            says: "st-nope",
        },
        Case {
            name: "a plan that ends before it starts",
            method: "POST",
            uri: "/v1/visits".into(),
            headers: mgr.clone(),
            body: j(
                serde_json::json!({"store_id": e.t1_store, "rep_id": "rep-1", "planned_start": now,
                "planned_end": now - 1, "template_id": "tt-standard"}),
            ),
            status: 400,
            says: "before planned_start",
        },
        Case {
            name: "a plan for a rep of another territory",
            method: "POST",
            uri: "/v1/visits".into(),
            headers: mgr.clone(),
            body: j(
                serde_json::json!({"store_id": e.t1_store, "rep_id": "rep-2", "planned_start": now,
                "planned_end": now + 1, "template_id": "tt-standard"}),
            ),
            status: 400,
            says: "is not a rep of territory",
        },
        Case {
            name: "a plan in another territory",
            method: "POST",
            uri: "/v1/visits".into(),
            headers: mgr.clone(),
            body: j(
                serde_json::json!({"store_id": e.t2_store, "rep_id": "rep-2", "planned_start": now,
                "planned_end": now + 1, "template_id": "tt-standard"}),
            ),
            status: 403,
            says: "outside your territories",
        },
        Case {
            name: "a plan with an id of 5000 characters",
            method: "POST",
            uri: "/v1/visits".into(),
            headers: mgr.clone(),
            body: j(
                serde_json::json!({"store_id": e.t1_store, "rep_id": "rep-1", "planned_start": now,
                "planned_end": now + 1, "template_id": "tt-standard", "visit_id": long}),
            ),
            status: 400,
            says: "visit_id must be",
        },
        Case {
            name: "a plan under an existing id",
            method: "POST",
            uri: "/v1/visits".into(),
            headers: mgr.clone(),
            body: j(
                serde_json::json!({"store_id": e.t1_store, "rep_id": "rep-1", "planned_start": now,
                "planned_end": now + 1, "template_id": "tt-standard", "visit_id": VISIT}),
            ),
            status: 409,
            says: "already exists",
        },
        Case {
            name: "a status other than canceled",
            method: "PATCH",
            uri: format!("/v1/visits/{VISIT}"),
            headers: mgr.clone(),
            body: j(serde_json::json!({"status": "completed"})),
            status: 400,
            says: "only set status to canceled",
        },
        Case {
            name: "reassigning to an unknown rep",
            method: "PATCH",
            uri: format!("/v1/visits/{VISIT}"),
            headers: mgr.clone(),
            body: j(serde_json::json!({"rep_id": "rep-nope"})),
            status: 400,
            says: "unknown rep",
        },
        Case {
            name: "a window that ends before it starts",
            method: "PATCH",
            uri: format!("/v1/visits/{VISIT}"),
            headers: mgr.clone(),
            body: j(serde_json::json!({"planned_start": now, "planned_end": now - 10})),
            status: 400,
            says: "before planned_start",
        },
        Case {
            name: "an unknown visit",
            method: "PATCH",
            uri: "/v1/visits/no-such-visit".into(),
            headers: mgr.clone(),
            body: j(serde_json::json!({"priority": 1})),
            status: 404,
            says: "unknown visit",
        },
        Case {
            name: "an id of 5000 characters",
            method: "GET",
            uri: format!("/v1/visits/{long}"),
            headers: mgr.clone(),
            body: Vec::new(),
            status: 404,
            says: "unknown visit",
        },
        Case {
            name: "an id that is not UTF-8",
            method: "GET",
            uri: "/v1/visits/%FF%FE".into(),
            headers: mgr.clone(),
            body: Vec::new(),
            status: 400,
            says: "UTF-8",
        },
        Case {
            name: "a report with a date that is not one",
            method: "GET",
            uri: "/v1/reports/overview?from=yesterday".into(),
            headers: mgr.clone(),
            body: Vec::new(),
            status: 400,
            says: "must be a date",
        },
        Case {
            name: "a report range of ten years",
            method: "GET",
            uri: "/v1/reports/visits?from=2016-01-01&to=2026-01-01".into(),
            headers: mgr.clone(),
            body: Vec::new(),
            status: 400,
            says: "longer than",
        },
        Case {
            name: "a report range backwards",
            method: "GET",
            uri: "/v1/reports/trends?from=2026-02-01&to=2026-01-01".into(),
            headers: mgr.clone(),
            body: Vec::new(),
            status: 400,
            says: "after",
        },
        Case {
            name: "a report for an unknown store",
            method: "GET",
            uri: "/v1/reports/stores/st-nope".into(),
            headers: mgr.clone(),
            body: Vec::new(),
            status: 404,
            says: "",
        },
        Case {
            name: "Authorization: Basic",
            method: "POST",
            uri: "/v1/sync".into(),
            headers: vec![("authorization", b"Basic cmVwMTpwdw==".to_vec())],
            body: j(serde_json::json!({"protocol": 1, "device_id": "phone"})),
            status: 401,
            says: "Bearer <token>",
        },
        Case {
            name: "an empty bearer token",
            method: "GET",
            uri: format!("/v1/visits/{VISIT}"),
            headers: vec![("authorization", b"Bearer ".to_vec())],
            body: Vec::new(),
            status: 401,
            says: "Bearer <token>",
        },
        Case {
            name: "a token that is not UTF-8",
            method: "GET",
            uri: format!("/v1/visits/{VISIT}"),
            headers: vec![("authorization", b"Bearer \xff\xfe".to_vec())],
            body: Vec::new(),
            status: 401,
            says: "Bearer <token>",
        },
        Case {
            name: "a wrong method",
            method: "DELETE",
            uri: format!("/v1/visits/{VISIT}"),
            headers: mgr.clone(),
            body: Vec::new(),
            status: 405,
            says: "not allowed",
        },
        Case {
            name: "an unknown route",
            method: "GET",
            uri: "/v1/nothing-here".into(),
            headers: mgr,
            body: Vec::new(),
            status: 404,
            says: "no such route",
        },
    ]
}

async fn run(e: &Env, cases: Vec<Case>) -> Vec<String> {
    let mut failures = Vec::new();
    for c in cases {
        let before = snapshot(&e.store);
        let headers: Vec<(&str, &[u8])> =
            c.headers.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let (status, body) = send(&e.router, c.method, &c.uri, &headers, c.body).await;
        let text = String::from_utf8_lossy(&body);
        let label = format!(
            "{} {} ({})",
            c.method,
            &c.uri[..c.uri.len().min(60)],
            c.name
        );
        if status.as_u16() != c.status {
            failures.push(format!(
                "{label}: expected {}, got {status}: {text:.200}",
                c.status
            ));
        } else if status.is_client_error() {
            let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let msg = parsed["message"].as_str().unwrap_or("");
            if !parsed["error"].is_string() || msg.is_empty() {
                failures.push(format!(
                    "{label}: {status} without a JSON error: {text:.200}"
                ));
            } else if !msg.contains(c.says) {
                failures.push(format!("{label}: message {msg:?} lacks {:?}", c.says));
            }
        } else if status == 200 && !c.says.is_empty() && !text.contains(c.says) {
            failures.push(format!("{label}: answer lacks {:?}: {text:.300}", c.says));
        }
        if snapshot(&e.store) != before {
            failures.push(format!("{label}: stored data changed"));
        }
        let (s, _) = send(&e.router, "GET", "/healthz", &[], Vec::new()).await;
        assert_eq!(s, 200, "the server stopped answering after {label}");
    }
    failures
}

#[tokio::test(flavor = "current_thread")]
async fn malformed_bodies_and_bad_values_get_a_clear_4xx_and_change_nothing() {
    let e = env().await;
    let mut cases = body_cases(&e);
    cases.extend(value_cases(&e));
    let n = cases.len();
    let failures = run(&e, cases).await;
    eprintln!("bad input: {n} cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A rep's device holding the visit (synced through the router).
async fn rep_device(e: &Env) -> DeviceStore {
    let d = DeviceStore::open(e.dir.path().join("rep.db"), "rep-1", "phone").unwrap();
    d.replace_reference_data(e.refs.clone()).unwrap();
    let doc = automerge::Automerge::load(&e.store.visit(VISIT).unwrap().unwrap().doc).unwrap();
    let changes: Vec<Vec<u8>> = doc
        .get_changes(&[])
        .into_iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    d.apply_remote(VISIT, &changes).unwrap();
    assert!(doc.get(automerge::ROOT, "v").unwrap().is_some());
    d
}

async fn push(e: &Env, changes: Vec<VisitChanges>) -> SyncResponse {
    let body = serde_json::to_vec(&SyncRequest {
        protocol: PROTOCOL_VERSION,
        device_id: "phone".into(),
        changes,
        ..Default::default()
    })
    .unwrap();
    let h = json_headers(&e.rep);
    let headers: Vec<(&str, &[u8])> = h.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    let (status, body) = send(&e.router, "POST", "/v1/sync", &headers, body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

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

#[tokio::test(flavor = "current_thread")]
async fn forged_document_changes_are_refused_per_visit_and_change_nothing() {
    let e = env().await;
    let d = rep_device(&e).await;
    let before = snapshot(&e.store);
    let group = |visit: &str, changes: &[Vec<u8>]| VisitChanges {
        visit_id: visit.into(),
        changes: changes.iter().map(|b| encode_change(b)).collect(),
    };

    // 1. A field the rep does not own: the plan.
    let mut plan = d.visit(VISIT).unwrap().plan;
    plan.instructions = "forged by the rep".into();
    plan.priority = 1;
    d.update_plan(VISIT, &plan).unwrap();
    let forged_plan = take_outbox(&d, VISIT);
    let resp = push(&e, vec![group(VISIT, &forged_plan)]).await;
    assert_eq!(resp.rejections.len(), 1, "{resp:?}");
    assert!(
        resp.rejections[0]
            .reason
            .contains("a rep may not write plan/"),
        "{:?}",
        resp.rejections
    );
    assert!(resp.acks.is_empty());
    assert_eq!(snapshot(&e.store), before);

    // 2. A store outside the rep's territory (an ad-hoc visit in t-2).
    let outside = d.create_ad_hoc_visit(&e.t2_store, "tt-quick").unwrap();
    let forged_store = take_outbox(&d, &outside);
    let resp = push(&e, vec![group(&outside, &forged_store)]).await;
    assert_eq!(resp.rejections.len(), 1, "{resp:?}");
    assert!(
        resp.rejections[0].reason.starts_with("forbidden: store")
            && resp.rejections[0]
                .reason
                .contains("outside your territories"),
        "{:?}",
        resp.rejections
    );
    assert_eq!(snapshot(&e.store), before);
    assert!(e.store.visit(&outside).unwrap().is_none());

    // 3. Changes whose dependencies the server lacks: a resend request, nothing stored.
    let fresh = rep_device_at(&e, "rep2.db").await;
    let pos = e
        .refs
        .stores
        .iter()
        .find(|s| s.id == e.t1_store)
        .map(|s| fieldsync_core::visit::GeoPoint {
            lat: s.lat,
            lng: s.lng,
        })
        .unwrap();
    fresh.check_in(VISIT, pos).unwrap();
    let first = take_outbox(&fresh, VISIT);
    fresh.edit_notes(VISIT, 0, 0, "second").unwrap();
    let second = take_outbox(&fresh, VISIT);
    let resp = push(&e, vec![group(VISIT, &second)]).await;
    assert!(
        resp.acks.is_empty() && resp.rejections.is_empty(),
        "{resp:?}"
    );
    assert_eq!(resp.resend.len(), 1, "{resp:?}");
    assert_eq!(resp.resend[0].visit_id, VISIT);
    assert_eq!(snapshot(&e.store), before);

    // 4. One forged visit never blocks a good one in the same request.
    let resp = push(
        &e,
        vec![group(VISIT, &first), group(&outside, &forged_store)],
    )
    .await;
    assert_eq!(resp.rejections.len(), 1, "{resp:?}");
    assert_eq!(resp.acks.len(), first.len(), "{resp:?}");
    assert_eq!(e.store.counts().unwrap().1, before.1 + first.len() as i64);
}

async fn rep_device_at(e: &Env, file: &str) -> DeviceStore {
    let d = DeviceStore::open(e.dir.path().join(file), "rep-1", "phone").unwrap();
    d.replace_reference_data(e.refs.clone()).unwrap();
    let doc = automerge::Automerge::load(&e.store.visit(VISIT).unwrap().unwrap().doc).unwrap();
    let changes: Vec<Vec<u8>> = doc
        .get_changes(&[])
        .into_iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    d.apply_remote(VISIT, &changes).unwrap();
    d
}

/// The change a rep's phone would push after `edit` on the stored visit, made with a fresh
/// actor of that phone outside the phone's API (which refuses such values itself).
fn forged_edit(
    e: &Env,
    edit: impl FnOnce(&mut fieldsync_core::document::VisitWriter<'_, '_>) -> fieldsync_core::Result<()>,
) -> Vec<u8> {
    let stored = e.store.visit(VISIT).unwrap().unwrap().doc;
    let mut doc = fieldsync_core::document::VisitDoc::load(&stored).unwrap();
    doc.set_actor(automerge::ActorId::random());
    let author = fieldsync_core::visit::Author {
        user_id: "rep-1".into(),
        device_id: "phone".into(),
    };
    let now = chrono::Utc::now().timestamp_millis();
    let (_, hash) = doc.edit(&author, now, edit).unwrap();
    doc.automerge()
        .get_change_by_hash(&hash.unwrap())
        .unwrap()
        .raw_bytes()
        .to_vec()
}

#[tokio::test(flavor = "current_thread")]
async fn numbers_a_phone_refuses_are_refused_in_forged_changes_too() {
    use fieldsync_core::document::CheckKind;
    use fieldsync_core::visit::{AnswerValue, CheckPoint, GeoPoint};
    let e = env().await;
    let before = snapshot(&e.store);
    let point = |lat: f64, distance_m: f64| CheckPoint {
        at: chrono::Utc::now().timestamp_millis(),
        position: GeoPoint { lat, lng: 13.4 },
        distance_m,
        outside_geofence: false,
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "check-in position (NaN, 13.4) is not on Earth",
            forged_edit(&e, |w| {
                w.set_checkpoint(CheckKind::In, &point(f64::NAN, 0.0))
            }),
        ),
        (
            "check-in position (91, 13.4) is not on Earth",
            forged_edit(&e, |w| w.set_checkpoint(CheckKind::In, &point(91.0, 0.0))),
        ),
        (
            "check-in distance -5 m is no distance",
            forged_edit(&e, |w| w.set_checkpoint(CheckKind::In, &point(52.5, -5.0))),
        ),
        (
            "is not a finite number",
            forged_edit(&e, |w| {
                w.answer("q-any", &AnswerValue::Number(f64::INFINITY))
            }),
        ),
    ];
    for (says, change) in cases {
        let resp = push(
            &e,
            vec![VisitChanges {
                visit_id: VISIT.into(),
                changes: vec![encode_change(&change)],
            }],
        )
        .await;
        assert_eq!(resp.rejections.len(), 1, "{says}: {resp:?}");
        assert!(
            resp.rejections[0].reason.contains(says),
            "{says}: {:?}",
            resp.rejections
        );
        assert_eq!(snapshot(&e.store), before, "{says}");
    }
}
