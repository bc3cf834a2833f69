//! What the server records a device as holding follows the order in which the device saw
//! things: the answer it confirms (its cursor's token) came before the visits it pushes
//! in the same request. A first sync's answer forgets everything the device held before;
//! applied after the pushes it would forget the visits just pushed, and the server would
//! send them back whole as visits entering the device's scope.

#[path = "common/inproc.rs"]
mod inproc;

use automerge::ActorId;
use fieldsync_core::fixtures::{self, FixtureSize};
use fieldsync_core::sync::protocol::{PROTOCOL_VERSION, SyncRequest, SyncResponse, VisitDocument};
use fieldsync_core::visit::Author;
use fieldsync_server::{AppState, Config};

async fn sync(router: &axum::Router, req: &SyncRequest) -> SyncResponse {
    let (status, body) = inproc::post_json(
        router,
        "/v1/sync",
        "rep-token",
        serde_json::to_vec(req).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn mentions(resp: &SyncResponse, visit_id: &str) -> bool {
    resp.documents.iter().any(|d| d.visit_id == visit_id)
        || resp.changes.iter().any(|c| c.visit_id == visit_id)
}

#[tokio::test]
async fn a_visit_pushed_right_after_a_first_sync_is_not_sent_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, refs) = inproc::seeded_store(&dir.path().join("h.db"), 1, &FixtureSize::default());
    let router = fieldsync_server::app(AppState::new(store, Config::default()));
    let first = sync(
        &router,
        &SyncRequest {
            protocol: PROTOCOL_VERSION,
            device_id: "phone".into(),
            accept_documents: true,
            ..Default::default()
        },
    )
    .await;
    assert!(first.documents.is_empty() && first.changes.is_empty());

    // A visit made on the phone, pushed whole with the request that confirms that answer.
    let today = chrono::Utc::now().date_naive();
    let author = Author {
        user_id: "rep-1".into(),
        device_id: "phone".into(),
    };
    let now = chrono::Utc::now().timestamp_millis();
    let doc = fixtures::typical_visits(&refs, "t-1", today)[0]
        .document("v-made-here", "rep-1", &author, ActorId::random(), now)
        .unwrap();
    let pushed = VisitDocument::of("v-made-here", doc.automerge());
    let mut req = SyncRequest {
        protocol: PROTOCOL_VERSION,
        device_id: "phone".into(),
        cursor: Some(first.cursor.clone()),
        epoch: Some(first.epoch.clone()),
        accept_documents: true,
        documents: vec![pushed],
        ..Default::default()
    };
    let second = sync(&router, &req).await;
    assert!(second.rejections.is_empty(), "{:?}", second.rejections);
    assert_eq!(second.acked_documents.len(), 1);
    assert!(
        !mentions(&second, "v-made-here"),
        "the pushed visit came back"
    );

    // Nor later: the server counts it as held.
    req.cursor = Some(second.cursor.clone());
    req.documents.clear();
    let third = sync(&router, &req).await;
    assert!(
        !mentions(&third, "v-made-here"),
        "the pushed visit came back"
    );
}
