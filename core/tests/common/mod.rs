#![allow(dead_code)]
//! Shared helpers for the core's integration tests.

use chrono::NaiveDate;
use fieldsync_core::clock::ManualClock;
use fieldsync_core::fixtures::{self, FixtureSize};
use fieldsync_core::model::ReferenceData;
use fieldsync_core::store::DeviceStore;
use fieldsync_core::visit::{GeoPoint, VisitPlan};
use std::path::Path;
use std::sync::Arc;

/// 2026-11-27 09:00 UTC.
pub const NOW: i64 = 1_795_770_000_000;

pub fn today() -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(NOW)
        .unwrap()
        .date_naive()
}

pub fn refs() -> ReferenceData {
    fixtures::reference_data(7, &FixtureSize::default(), today())
}

pub fn open(dir: &Path, name: &str, user: &str, clock: Arc<ManualClock>) -> DeviceStore {
    let s = DeviceStore::open_with_clock(
        dir.join(format!("{name}.db")),
        user,
        &format!("dev-{name}"),
        clock,
    )
    .unwrap();
    s.replace_reference_data(refs()).unwrap();
    s
}

pub fn plan(store_id: &str, rep: &str, start: i64) -> VisitPlan {
    VisitPlan {
        store_id: store_id.into(),
        rep_id: rep.into(),
        planned_start: start,
        planned_end: start + 3_600_000,
        priority: 2,
        instructions: "Check the cola display".into(),
        template_id: "tt-standard".into(),
        ad_hoc: false,
    }
}

pub fn store_position(r: &ReferenceData, store_id: &str) -> GeoPoint {
    let s = r.stores.iter().find(|s| s.id == store_id).unwrap();
    GeoPoint {
        lat: s.lat,
        lng: s.lng,
    }
}

/// Copies every change of `from` into `to`, visit by visit.
pub fn exchange(from: &DeviceStore, to: &DeviceStore) {
    for id in from.visit_ids().unwrap() {
        let changes = from.changes_since(&id, &[]).unwrap();
        to.apply_remote(&id, &changes).unwrap();
    }
}

/// Acknowledges everything in `d`'s outbox, as a server that stored it all would.
pub fn acknowledge_all(d: &DeviceStore) {
    let hashes: Vec<String> = d
        .outbox(1_000_000)
        .unwrap()
        .into_iter()
        .map(|c| c.hash)
        .collect();
    d.acknowledge(&hashes).unwrap();
}
