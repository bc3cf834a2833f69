//! In-process test servers: the router over a seeded SQLite store, requests sent with
//! `tower::ServiceExt::oneshot` (no sockets).

#![allow(dead_code)] // each test crate uses its own part

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use fieldsync_core::fixtures::{self, FixtureSize};
use fieldsync_core::model::ReferenceData;
use fieldsync_core::store::DeviceStore;
use fieldsync_server::store::NewUser;
use fieldsync_server::{SqliteStore, Store};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt as _;

/// Sends `req` to `router` as from 127.0.0.1; returns the status and the body.
pub async fn call(router: &axum::Router, mut req: Request<Body>) -> (StatusCode, Vec<u8>) {
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40002))));
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

/// POSTs a JSON body with a bearer token.
pub async fn post_json(
    router: &axum::Router,
    uri: &str,
    token: &str,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let req = Request::builder()
        .method("POST")
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    call(router, req).await
}

/// A SQLite store at `path` with fixture reference data of `territories` territories, its
/// users, and two device tokens: `rep-token` (rep-1's `phone`) and `mgr-token`
/// (manager-1's `tablet`).
pub fn seeded_store(
    path: &Path,
    territories: u64,
    size: &FixtureSize,
) -> (Arc<SqliteStore>, ReferenceData) {
    let store = Arc::new(SqliteStore::open(path).unwrap());
    let refs = fixtures::reference_data(territories, size, chrono::Utc::now().date_naive());
    store.import_reference(refs.clone()).unwrap();
    seed_users(store.as_ref(), &refs);
    (store, refs)
}

/// The users of `refs` in `store`, and the device tokens of [`seeded_store`].
pub fn seed_users(store: &dyn Store, refs: &ReferenceData) {
    for u in &refs.users {
        store
            .create_user(&NewUser {
                id: u.id.clone(),
                username: u.username.clone(),
                role: u.role,
                territories: u.territory_ids.clone(),
                password_hash: "x".into(),
            })
            .unwrap();
    }
    let now = chrono::Utc::now().timestamp_millis();
    let hash = fieldsync_server::api::hash_token;
    store
        .create_token("rep-1", "phone", &hash("rep-token"), now)
        .unwrap();
    store
        .create_token("manager-1", "tablet", &hash("mgr-token"), now)
        .unwrap();
}

/// rep-1's phone (`dir/rep.db`) holding `visits` as the server stores them.
pub fn rep_device(
    dir: &Path,
    store: &SqliteStore,
    refs: &ReferenceData,
    visits: &[&str],
) -> DeviceStore {
    let d = DeviceStore::open(dir.join("rep.db"), "rep-1", "phone").unwrap();
    d.replace_reference_data(refs.clone()).unwrap();
    for v in visits {
        let doc = automerge::Automerge::load(&store.visit(v).unwrap().unwrap().doc).unwrap();
        let changes: Vec<Vec<u8>> = doc
            .get_changes(&[])
            .into_iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect();
        d.apply_remote(v, &changes).unwrap();
    }
    d
}

/// The id of the first store of `territory`.
pub fn store_in(refs: &ReferenceData, territory: &str) -> String {
    refs.stores
        .iter()
        .find(|s| s.territory_id == territory)
        .unwrap()
        .id
        .clone()
}

/// Plans visit `visit_id` for rep-1 at `shop` from `start` to `end` (ms), as manager-1
/// (`mgr-token`) through the planning API; fails the test unless it is created.
pub async fn plan_rep_visit(
    router: &axum::Router,
    shop: &str,
    visit_id: &str,
    start: i64,
    end: i64,
) {
    let plan = serde_json::json!({"store_id": shop, "rep_id": "rep-1", "planned_start": start,
        "planned_end": end, "template_id": "tt-standard", "visit_id": visit_id});
    let (s, b) = post_json(
        router,
        "/v1/visits",
        "mgr-token",
        plan.to_string().into_bytes(),
    )
    .await;
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
}
