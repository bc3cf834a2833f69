//! A device's first sync carries, with the current reference data, the earlier versions in
//! effect within the device's window (a rep's 14 days back, a manager's 31), so that it
//! judges older visits with the data of their time as the dashboard does.

#[path = "common/inproc.rs"]
mod inproc;

use fieldsync_core::fixtures::{self, FixtureSize};
use fieldsync_core::sync::protocol::{PROTOCOL_VERSION, SyncRequest, SyncResponse};
use fieldsync_server::{AppState, Config, SqliteStore, Store};
use std::sync::Arc;

const DAY: i64 = 86_400_000;

async fn first_sync(router: &axum::Router, token: &str, device: &str) -> SyncResponse {
    let req = SyncRequest {
        protocol: PROTOCOL_VERSION,
        device_id: device.into(),
        accept_documents: true,
        ..Default::default()
    };
    let body = serde_json::to_vec(&req).unwrap();
    let (status, body) = inproc::post_json(router, "/v1/sync", token, body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn each_role_gets_the_versions_in_effect_within_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("e.db")).unwrap());
    let now = chrono::Utc::now().timestamp_millis();
    let today = chrono::Utc::now().date_naive();
    let mut refs = fixtures::reference_data(1, &FixtureSize::default(), today);
    // Imported 60, 45, 20 and 1 days ago, each with a new price (so none repeats the one
    // before). In effect: [-60, -45), [-45, -20), [-20, -1), and the current from -1.
    for days in [60, 45, 20, 1] {
        refs.products[0].list_price_cents += 1;
        store
            .import_reference_at(refs.clone(), now - days * DAY)
            .unwrap();
    }
    inproc::seed_users(store.as_ref(), &refs);
    let router = fieldsync_server::app(AppState::new(store.clone(), Config::default()));
    let sent = |r: &SyncResponse| {
        let days = |since: i64| (now - since + DAY / 2) / DAY;
        assert_eq!(r.reference_since.map(days), Some(1));
        r.earlier_reference
            .iter()
            .map(|v| days(v.since))
            .collect::<Vec<_>>()
    };
    // A rep looks 14 days back: only the version in effect until yesterday.
    let rep = first_sync(&router, "rep-token", "phone").await;
    assert_eq!(sent(&rep), vec![20]);
    // A manager, 31 days: also the one in effect from 45 to 20 days ago, not the oldest.
    let manager = first_sync(&router, "mgr-token", "tablet").await;
    assert_eq!(sent(&manager), vec![45, 20]);
    // Each as it was: the price of its own import.
    let price =
        |r: &SyncResponse, i: usize| r.earlier_reference[i].data.products[0].list_price_cents;
    assert_eq!(price(&manager, 1), price(&rep, 0));
    assert_eq!(price(&manager, 0) + 1, price(&manager, 1));
}
