//! Visits sent with documents (the `accept_visits` sync feature): the server keeps the
//! visit it read from each document it stores, whichever way it was written (a rep's
//! push, a manager's planning), and sends it with the document, current after every
//! later write, only to devices that take it in the server's format.

#[path = "common/inproc.rs"]
mod inproc;

use automerge::ActorId;
use fieldsync_core::document::{VISIT_FORMAT, VisitDoc, unpack_document, unpack_visit};
use fieldsync_core::fixtures::{self, FixtureSize};
use fieldsync_core::sync::protocol::{
    PROTOCOL_VERSION, SyncRequest, SyncResponse, VisitDocument, decode_change,
};
use fieldsync_core::visit::{Author, Visit};
use fieldsync_server::{AppState, Config, Store as _};
use std::collections::BTreeMap;

async fn sync(router: &axum::Router, token: &str, req: &SyncRequest) -> SyncResponse {
    let (status, body) =
        inproc::post_json(router, "/v1/sync", token, serde_json::to_vec(req).unwrap()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// rep-1's phone pushes `documents` whole; each must be acknowledged.
async fn push(router: &axum::Router, documents: Vec<VisitDocument>) {
    let n = documents.len();
    let pushed = sync(
        router,
        "rep-token",
        &SyncRequest {
            protocol: PROTOCOL_VERSION,
            device_id: "phone".into(),
            accept_documents: true,
            documents,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(pushed.acked_documents.len(), n, "{:?}", pushed.rejections);
}

/// A first sync of `device` (a token `token` of manager-1) asking for visits in `format`:
/// per visit, the visit read from the document sent and the visit sent with it.
async fn first_sync(
    router: &axum::Router,
    token: &str,
    device: &str,
    format: Option<u32>,
) -> BTreeMap<String, (Visit, Option<Visit>)> {
    let resp = sync(
        router,
        token,
        &SyncRequest {
            protocol: PROTOCOL_VERSION,
            device_id: device.into(),
            accept_documents: true,
            accept_visits: format,
            ..Default::default()
        },
    )
    .await;
    assert!(!resp.more);
    resp.documents
        .iter()
        .map(|d| {
            let bytes = decode_change(&d.doc).unwrap();
            let doc = VisitDoc::load(&unpack_document(&bytes).unwrap()).unwrap();
            let sent = d
                .visit
                .as_ref()
                .map(|v| unpack_visit(&decode_change(v).unwrap()).unwrap());
            (d.visit_id.clone(), (doc.read().unwrap(), sent))
        })
        .collect()
}

#[tokio::test]
async fn the_visit_read_from_each_stored_document_travels_with_it_to_devices_that_take_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, refs) = inproc::seeded_store(&dir.path().join("v.db"), 1, &FixtureSize::default());
    let now = chrono::Utc::now().timestamp_millis();
    let hash = fieldsync_server::api::hash_token;
    for device in ["tablet-2", "tablet-3", "tablet-4"] {
        store
            .create_token("manager-1", device, &hash(device), now)
            .unwrap();
    }
    let router = fieldsync_server::app(AppState::new(store, Config::default()));

    // A visit the rep made on the phone, pushed whole; one the manager planned.
    let today = chrono::Utc::now().date_naive();
    let author = Author {
        user_id: "rep-1".into(),
        device_id: "phone".into(),
    };
    let made = fixtures::typical_visits(&refs, "t-1", today)[0]
        .document("v-made", "rep-1", &author, ActorId::random(), now)
        .unwrap();
    push(&router, vec![VisitDocument::of("v-made", made.automerge())]).await;
    let shop = inproc::store_in(&refs, "t-1");
    let start = now + 86_400_000;
    inproc::plan_rep_visit(&router, &shop, "v-planned", start, start + 3_600_000).await;

    // Taken: each document comes with the visit read from it.
    let got = first_sync(&router, "mgr-token", "tablet", Some(VISIT_FORMAT)).await;
    assert_eq!(got.len(), 2);
    for (id, (read, sent)) in &got {
        assert_eq!(sent.as_ref(), Some(read), "{id}");
    }
    assert_eq!(got["v-made"].0, made.read().unwrap());

    // After a later write (the manager reschedules), what is sent is the new visit.
    let body =
        serde_json::json!({"planned_start": start + 7_200_000, "planned_end": start + 10_800_000});
    let req = axum::http::Request::patch("/v1/visits/v-planned")
        .header("authorization", "Bearer mgr-token")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let (status, b) = inproc::call(&router, req).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&b));
    let got = first_sync(&router, "tablet-2", "tablet-2", Some(VISIT_FORMAT)).await;
    let (read, sent) = &got["v-planned"];
    assert_eq!(read.plan.planned_start, start + 7_200_000);
    assert_eq!(sent.as_ref(), Some(read));

    // Not taken, or asked in another format: documents alone.
    for (device, format) in [("tablet-3", None), ("tablet-4", Some(VISIT_FORMAT + 1))] {
        let got = first_sync(&router, device, device, format).await;
        assert_eq!(got.len(), 2, "{device}");
        assert!(got.values().all(|(_, sent)| sent.is_none()), "{device}");
    }
}

#[tokio::test]
async fn documents_stored_before_the_server_kept_reads_get_theirs_and_travel_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let (store, refs) = inproc::seeded_store(&path, 1, &FixtureSize::default());
    let router = fieldsync_server::app(AppState::new(store.clone(), Config::default()));
    let today = chrono::Utc::now().date_naive();
    let now = chrono::Utc::now().timestamp_millis();
    let author = Author {
        user_id: "rep-1".into(),
        device_id: "phone".into(),
    };
    let documents: Vec<VisitDocument> = fixtures::typical_visits(&refs, "t-1", today)
        .iter()
        .take(3)
        .enumerate()
        .map(|(i, t)| {
            let id = format!("v-old-{i}");
            let doc = t
                .document(&id, "rep-1", &author, ActorId::random(), now)
                .unwrap();
            VisitDocument::of(&id, doc.automerge())
        })
        .collect();
    push(&router, documents).await;
    // As a database of an older server holds them: documents without reads.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("DELETE FROM visit_reads", [])
        .unwrap();
    let got = first_sync(&router, "mgr-token", "tablet", Some(VISIT_FORMAT)).await;
    assert!(got.values().all(|(_, sent)| sent.is_none()));

    assert_eq!(
        fieldsync_server::store::fill_visit_reads(store.as_ref()).unwrap(),
        3
    );
    assert_eq!(
        fieldsync_server::store::fill_visit_reads(store.as_ref()).unwrap(),
        0,
        "once"
    );
    let now = chrono::Utc::now().timestamp_millis();
    store
        .create_token(
            "manager-1",
            "tablet-2",
            &fieldsync_server::api::hash_token("t2"),
            now,
        )
        .unwrap();
    let got = first_sync(&router, "t2", "tablet-2", Some(VISIT_FORMAT)).await;
    assert_eq!(got.len(), 3);
    for (id, (read, sent)) in &got {
        assert_eq!(sent.as_ref(), Some(read), "{id}");
    }
}
