//! The dashboard's sessions, CSRF protection, scoping and report API, through the router
//! in-process (`tower::ServiceExt::oneshot`). The browser test (`tests/browser/`) drives the
//! pages against the real binary.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use fieldsync_core::fixtures::{self, FixtureSize};
use fieldsync_core::model::ReferenceData;
use fieldsync_server::api::hash_token;
use fieldsync_server::{AppState, Config, SqliteStore, Store, app};
use std::sync::Arc;
use tower::ServiceExt;

const HOUR: i64 = 3_600_000;

struct World {
    app: Router,
    store: Arc<SqliteStore>,
    refs: ReferenceData,
    _dir: tempfile::TempDir,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open_dir(dir.path()).unwrap());
    let refs =
        fixtures::reference_data(9, &FixtureSize::default(), chrono::Utc::now().date_naive());
    store.import_reference(refs.clone()).unwrap();
    for u in &refs.users {
        fieldsync_server::admin::create_user(
            store.as_ref(),
            &u.username,
            u.role,
            &u.territory_ids,
            Some(&format!("password-{}", u.username)),
        )
        .unwrap();
    }
    let app = app(AppState::new(store.clone(), Config::default()));
    World {
        app,
        store,
        refs,
        _dir: dir,
    }
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Resp {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    fn cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }
}

async fn send(app: &Router, req: Request<Body>) -> Resp {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).unwrap()
}

fn cookie_value(set_cookie: &[String], name: &str) -> Option<String> {
    set_cookie.iter().find_map(|c| {
        c.strip_prefix(&format!("{name}="))
            .map(|rest| rest.split(';').next().unwrap().to_string())
    })
}

/// Signs in through the form; returns (status, session cookie, Set-Cookie headers).
async fn sign_in(
    w: &World,
    username: &str,
    password: &str,
) -> (StatusCode, Option<String>, Vec<String>) {
    let page = send(&w.app, get("/login", None)).await;
    assert_eq!(page.status, StatusCode::OK);
    let login_csrf = cookie_value(&page.cookies(), "fs_login_csrf").unwrap();
    assert!(
        page.body.contains(&login_csrf),
        "the form carries the token"
    );
    let form = format!("username={username}&password={password}&csrf={login_csrf}");
    let resp = send(
        &w.app,
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, format!("fs_login_csrf={login_csrf}"))
            .body(Body::from(form))
            .unwrap(),
    )
    .await;
    let cookies = resp.cookies();
    let session = cookie_value(&cookies, "fs_session")
        .filter(|v| !v.is_empty())
        .map(|v| format!("fs_session={v}"));
    (resp.status, session, cookies)
}

/// The CSRF token of the page served to a session.
async fn csrf(w: &World, session: &str) -> String {
    let page = send(&w.app, get("/", Some(session))).await;
    assert_eq!(page.status, StatusCode::OK);
    let marker = r#"<meta name="csrf-token" content=""#;
    let start = page.body.find(marker).unwrap() + marker.len();
    page.body[start..start + 64].to_string()
}

fn bearer(w: &World, user_id: &str) -> String {
    let token = format!("test-token-{user_id}");
    w.store
        .create_token(user_id, "test-device", &hash_token(&token), 0)
        .unwrap();
    token
}

fn plan_body(store_id: &str, rep_id: &str, start: i64) -> String {
    serde_json::json!({"store_id": store_id, "rep_id": rep_id, "planned_start": start,
        "planned_end": start + HOUR, "template_id": "tt-standard"})
    .to_string()
}

async fn plan(w: &World, session: &str, csrf: Option<&str>, body: String) -> Resp {
    let mut b = Request::post("/v1/dashboard/visits")
        .header(header::COOKIE, session)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(c) = csrf {
        b = b.header("x-csrf-token", c);
    }
    send(&w.app, b.body(Body::from(body)).unwrap()).await
}

/// `PATCH /v1/dashboard/visits/{id}` with `body`, in a manager's session.
async fn replan(w: &World, session: &str, csrf: &str, id: &str, body: serde_json::Value) -> Resp {
    let req = Request::patch(format!("/v1/dashboard/visits/{id}"))
        .header(header::COOKIE, session)
        .header("x-csrf-token", csrf)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    send(&w.app, req).await
}

fn store_in(w: &World, territory: &str) -> String {
    w.refs
        .stores
        .iter()
        .find(|s| s.territory_id == territory)
        .unwrap()
        .id
        .clone()
}

#[tokio::test]
async fn sessions_refuse_reps_and_strangers_and_carry_safe_cookies() {
    let w = world();
    // Nobody signed in: pages redirect, reports refuse.
    let page = send(&w.app, get("/", None)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.headers[header::LOCATION], "/login");
    assert_eq!(
        send(&w.app, get("/v1/reports/overview", None)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // A rep with the right password gets no session.
    let (status, session, _) = sign_in(&w, "rep1", "password-rep1").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(session, None);
    // Nor does a wrong password.
    let (status, session, _) = sign_in(&w, "manager1", "nope").await;
    assert_eq!((status, session), (StatusCode::UNAUTHORIZED, None));
    // A forged form without the login CSRF cookie is refused.
    let forged = send(
        &w.app,
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(
                "username=manager1&password=password-manager1&csrf=x",
            ))
            .unwrap(),
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(cookie_value(&forged.cookies(), "fs_session").is_none());
    // A manager gets an HttpOnly, SameSite=Strict, expiring cookie.
    let (status, session, cookies) = sign_in(&w, "manager1", "password-manager1").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let set = cookies
        .iter()
        .find(|c| c.starts_with("fs_session="))
        .unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Max-Age=28800", "Path=/"] {
        assert!(set.contains(attr), "{set} lacks {attr}");
    }
    let session = session.unwrap();
    let page = send(&w.app, get("/trends", Some(&session))).await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'"));
    // A device token in the cookie is not a session; a rep's bearer token reads no report.
    let rep_token = bearer(&w, "rep-1");
    let as_cookie = send(
        &w.app,
        get(
            "/v1/reports/context",
            Some(&format!("fs_session={rep_token}")),
        ),
    )
    .await;
    assert_eq!(as_cookie.status, StatusCode::UNAUTHORIZED);
    let rep_bearer = send(
        &w.app,
        Request::get("/v1/reports/overview")
            .header(header::AUTHORIZATION, format!("Bearer {rep_token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(rep_bearer.status, StatusCode::FORBIDDEN);
    // Nor is a session a device token: it cannot be replayed as a bearer token.
    let session_value = session.trim_start_matches("fs_session=");
    let replay = send(
        &w.app,
        Request::get("/v1/reports/overview")
            .header(header::AUTHORIZATION, format!("Bearer {session_value}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    // Sign-out needs the CSRF token, then revokes the session.
    let token = csrf(&w, &session).await;
    let bad = send(
        &w.app,
        Request::post("/logout")
            .header(header::COOKIE, &session)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("csrf=wrong"))
            .unwrap(),
    )
    .await;
    assert_eq!(bad.status, StatusCode::FORBIDDEN);
    let out = send(
        &w.app,
        Request::post("/logout")
            .header(header::COOKIE, &session)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf={token}")))
            .unwrap(),
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(
        send(&w.app, get("/v1/reports/context", Some(&session)))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn planning_needs_csrf_and_reports_stay_in_the_managers_territories() {
    let w = world();
    let (_, m1, _) = sign_in(&w, "manager1", "password-manager1").await;
    let m1 = m1.unwrap();
    let (_, admin, _) = sign_in(&w, "admin", "password-admin").await;
    let admin = admin.unwrap();
    let c1 = csrf(&w, &m1).await;
    let ca = csrf(&w, &admin).await;
    let now = chrono::Utc::now().timestamp_millis();
    let (s1, s2) = (store_in(&w, "t-1"), store_in(&w, "t-2"));

    // Without (or with a wrong) CSRF token nothing is planned.
    let body = plan_body(&s1, "rep-1", now + HOUR);
    assert_eq!(
        plan(&w, &m1, None, body.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        plan(&w, &m1, Some(&ca), body.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    let created = plan(&w, &m1, Some(&c1), body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let v1 = created.json()["visit_id"].as_str().unwrap().to_string();
    assert_eq!(
        plan(&w, &m1, Some(&c1), plan_body(&s1, "rep-2", now + 2 * HOUR))
            .await
            .status,
        StatusCode::CREATED
    );
    // manager1 cannot plan in t-2; the admin can.
    assert_eq!(
        plan(&w, &m1, Some(&c1), plan_body(&s2, "rep-4", now + HOUR))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let v2 = plan(&w, &admin, Some(&ca), plan_body(&s2, "rep-4", now + HOUR)).await;
    assert_eq!(v2.status, StatusCode::CREATED, "{}", v2.body);
    let v2 = v2.json()["visit_id"].as_str().unwrap().to_string();
    // Reschedule through the session.
    let body = serde_json::json!({"rep_id": "rep-3", "planned_start": now + 3 * HOUR});
    let patched = replan(&w, &m1, &c1, &v1, body).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.json()["visit"]["plan"]["rep_id"], "rep-3");

    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).date_naive();
    let q = format!("?to={tomorrow}");
    let o1 = send(&w.app, get(&format!("/v1/reports/overview{q}"), Some(&m1))).await;
    assert_eq!(o1.status, StatusCode::OK, "{}", o1.body);
    assert_eq!(o1.json()["summary"]["planned"], 2);
    assert!(
        o1.json()["stores"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["territory_id"] == "t-1")
    );
    let oa = send(
        &w.app,
        get(&format!("/v1/reports/overview{q}"), Some(&admin)),
    )
    .await;
    assert_eq!(oa.json()["summary"]["planned"], 3);
    assert_eq!(
        send(&w.app, get("/v1/reports/overview?territory=t-2", Some(&m1)))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&w.app, get(&format!("/v1/reports/visits/{v2}"), Some(&m1)))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&w.app, get(&format!("/v1/reports/stores/{s2}"), Some(&m1)))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // Visit detail: the history names the manager and the dashboard's planning device.
    let detail = send(&w.app, get(&format!("/v1/reports/visits/{v1}"), Some(&m1))).await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.body);
    let history = detail.json()["history"].as_array().unwrap().clone();
    assert!(
        history
            .iter()
            .any(|h| h["user_name"] == "Manager 1" && h["path"] == "plan/rep")
    );
    // Changes: manager1 sees only the t-1 visits changed since 0.
    let ch = send(&w.app, get("/v1/reports/changes?since=0", Some(&m1)))
        .await
        .json();
    let changed: Vec<&str> = ch["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(changed.len(), 2);
    assert!(!changed.contains(&v2.as_str()));
    let seq = ch["latest_seq"].as_i64().unwrap();
    let again = send(
        &w.app,
        get(&format!("/v1/reports/changes?since={seq}"), Some(&m1)),
    )
    .await
    .json();
    assert_eq!(again["changed"].as_array().unwrap().len(), 0);
    assert_eq!(again["latest_seq"].as_i64().unwrap(), seq);
    // Trends: one entry per day; CSV: a header and one row per visit.
    let tr = send(&w.app, get(&format!("/v1/reports/trends{q}"), Some(&m1)))
        .await
        .json();
    assert_eq!(tr["days"].as_array().unwrap().len(), 7);
    let csv = send(
        &w.app,
        get(&format!("/v1/reports/export/visits.csv{q}"), Some(&m1)),
    )
    .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let mut reader = csv::Reader::from_reader(csv.body.as_bytes());
    assert_eq!(&reader.headers().unwrap()[0], "visit_id");
    assert_eq!(reader.records().count(), 2);
    // Bad filters are a readable 400.
    let bad = send(
        &w.app,
        get("/v1/reports/overview?from=2026-13-01", Some(&m1)),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_openapi_document_has_the_session_scheme_and_no_dangling_reference() {
    let w = world();
    let doc = send(&w.app, get("/v1/openapi.json", None)).await.json();
    assert!(doc["components"]["securitySchemes"]["session"].is_object());
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    for r in refs {
        let name = r.trim_start_matches("#/components/schemas/");
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling {r}"
        );
    }
}

fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    out.push(x.as_str().unwrap().to_string());
                } else {
                    collect_refs(x, out);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// The reports keep the visits they read (`ReadVisits`): a visit changed after a report
/// read it shows changed in the next report, and unchanged ones are not read again.
#[tokio::test]
async fn a_report_shows_a_visit_changed_after_an_earlier_report_read_it() {
    let w = world();
    let (_, m1, _) = sign_in(&w, "manager1", "password-manager1").await;
    let m1 = m1.unwrap();
    let c1 = csrf(&w, &m1).await;
    let now = chrono::Utc::now().timestamp_millis();
    let s1 = store_in(&w, "t-1");
    let mut ids = Vec::new();
    for (rep, hours) in [("rep-1", 1), ("rep-2", 2)] {
        let created = plan(&w, &m1, Some(&c1), plan_body(&s1, rep, now + hours * HOUR)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        ids.push(created.json()["visit_id"].as_str().unwrap().to_string());
    }
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).date_naive();
    let list = || async {
        let r = send(
            &w.app,
            get(&format!("/v1/reports/visits?to={tomorrow}"), Some(&m1)),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let rows = r.json()["visits"].as_array().unwrap().clone();
        ids.iter()
            .map(|id| {
                let row = rows.iter().find(|v| v["visit_id"] == *id).unwrap();
                (row["rep_id"].clone(), row["planned_start"].clone())
            })
            .collect::<Vec<_>>()
    };
    let before = list().await;
    assert_eq!(before[0].0, "rep-1");
    assert_eq!(before[1].0, "rep-2");
    assert_eq!(list().await, before, "the same again from the kept reads");
    // Reassigned and moved after the reports read it.
    let body = serde_json::json!({"rep_id": "rep-3", "planned_start": now + 3 * HOUR});
    let patched = replan(&w, &m1, &c1, &ids[0], body).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let after = list().await;
    assert_eq!(after[0].0, "rep-3");
    assert_eq!(after[0].1, now + 3 * HOUR);
    assert_eq!(after[1], before[1]);
    // Three reports of two visits: each taken from the read stored with its document
    // once, and the changed one again; the rest kept. No document is read.
    let metrics = send(&w.app, get("/metrics", None)).await.body;
    let count = |from: &str| {
        let line = format!("fieldsync_report_visits_read_total{{from=\"{from}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .unwrap_or_else(|| panic!("no {line} in {metrics}"))
            .to_string()
    };
    assert_eq!(count("stored"), "3");
    assert_eq!(count("kept"), "3");
    assert_eq!(count("document"), "0");
}
