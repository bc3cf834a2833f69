//! Sync compression: which of gzip and zstd makes realistic sync payloads smaller and
//! faster. Prints a table (run with `--release -- --nocapture` for the numbers in
//! docs/BENCHMARKS.md) and checks both shrink the payloads.

use fieldsync_core::fixtures::{self, FixtureSize};
use fieldsync_core::store::DeviceStore;
use fieldsync_core::sync::client::{Compression, compress};
use fieldsync_core::sync::protocol::*;
use fieldsync_core::visit::{GeoPoint, InventoryInput, PositionInput, VisitPlan};
use std::io::Read as _;
use std::time::Instant;

/// A rep's day: `visits` visits with check-in, a full inventory count and planogram audit.
fn rep_day(dir: &std::path::Path, visits: usize) -> DeviceStore {
    let store = DeviceStore::open(dir.join("rep.db"), "rep-1", "phone-1").unwrap();
    let today = chrono::Utc::now().date_naive();
    store
        .replace_reference_data(fixtures::reference_data(3, &FixtureSize::default(), today))
        .unwrap();
    let refs = store.reference_data();
    let idx = refs.index();
    let now = chrono::Utc::now().timestamp_millis();
    for i in 0..visits {
        let shop = &refs.stores[i % 20];
        let plan = VisitPlan {
            store_id: shop.id.clone(),
            rep_id: "rep-1".into(),
            planned_start: now + i as i64 * 3_600_000,
            planned_end: now + i as i64 * 3_600_000 + 1_800_000,
            priority: 2,
            instructions: "Check the cola display".into(),
            template_id: "tt-standard".into(),
            ad_hoc: false,
        };
        let id = store.create_visit(plan).unwrap();
        store
            .check_in(
                &id,
                GeoPoint {
                    lat: shop.lat,
                    lng: shop.lng,
                },
            )
            .unwrap();
        for (k, p) in idx.assortment_for(shop).into_iter().enumerate() {
            let qty = (k as i64 * 7) % 23;
            let input = InventoryInput {
                shelf_qty: Some(qty),
                backroom_qty: Some(k as i64 % 5),
                out_of_stock: Some(qty == 0),
                observed_price_cents: Some(199 + k as i64),
                facings: Some(2),
            };
            store.record_inventory(&id, p, &input).unwrap();
        }
        if let Some(pg) = idx.planogram_for(shop) {
            for pos in &pg.positions {
                let input = PositionInput {
                    present: Some(true),
                    actual_facings: Some(2),
                    correct_position: Some(pos.shelf != 2),
                };
                store.record_position(&id, &pos.id, &input).unwrap();
            }
        }
        store
            .set_notes(&id, "Display built at the front end cap; backroom tidy.")
            .unwrap();
    }
    store
}

fn upload(store: &DeviceStore) -> Vec<u8> {
    let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for c in store.outbox(100_000).unwrap() {
        groups
            .entry(c.visit_id)
            .or_default()
            .push(encode_change(&c.bytes));
    }
    let req = SyncRequest {
        protocol: PROTOCOL_VERSION,
        device_id: "phone-1".into(),
        cursor: Some("1234".into()),
        epoch: Some("0123456789abcdef0123456789abcdef".into()),
        reference_version: 3,
        reference_epoch: None,
        changes: groups
            .into_iter()
            .map(|(visit_id, changes)| VisitChanges { visit_id, changes })
            .collect(),
        heads: None,
        accept_documents: true,
        accept_visits: Some(fieldsync_core::document::VISIT_FORMAT),
        documents: Vec::new(),
    };
    serde_json::to_vec(&req).unwrap()
}

fn download(store: &DeviceStore) -> Vec<u8> {
    let resp = SyncResponse {
        protocol: PROTOCOL_VERSION,
        epoch: "0123456789abcdef0123456789abcdef".into(),
        changes: store
            .visit_ids()
            .unwrap()
            .into_iter()
            .map(|v| {
                let changes = store
                    .changes_since(&v, &[])
                    .unwrap()
                    .iter()
                    .map(|b| encode_change(b))
                    .collect();
                VisitChanges {
                    visit_id: v,
                    changes,
                }
            })
            .collect(),
        cursor: "99".into(),
        reference_data: Some((*store.reference_data()).clone()),
        ..Default::default()
    };
    serde_json::to_vec(&resp).unwrap()
}

fn decompress(bytes: &[u8], how: Compression) -> Vec<u8> {
    match how {
        Compression::None => bytes.to_vec(),
        Compression::Zstd => zstd::decode_all(bytes).unwrap(),
        Compression::Gzip => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .unwrap();
            out
        }
    }
}

fn measure(name: &str, payload: &[u8]) {
    let iters = 20;
    println!("{name}: {} bytes of JSON", payload.len());
    for how in [Compression::Gzip, Compression::Zstd] {
        let t = Instant::now();
        let mut packed = Vec::new();
        for _ in 0..iters {
            packed = compress(payload, how).unwrap();
        }
        let c = t.elapsed() / iters;
        let t = Instant::now();
        for _ in 0..iters {
            assert_eq!(decompress(&packed, how).len(), payload.len());
        }
        let d = t.elapsed() / iters;
        println!(
            "  {how:?}: {} bytes ({:.1} % of raw), compress {:.2} ms, decompress {:.2} ms",
            packed.len(),
            100.0 * packed.len() as f64 / payload.len() as f64,
            c.as_secs_f64() * 1e3,
            d.as_secs_f64() * 1e3
        );
        assert!(
            packed.len() < payload.len() / 2,
            "{how:?} should at least halve {name}"
        );
    }
}

#[test]
fn gzip_and_zstd_on_realistic_sync_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let store = rep_day(dir.path(), 6);
    measure(
        "upload: a rep's day (6 visits, full counts and audits)",
        &upload(&store),
    );
    measure(
        "download: initial sync of those visits + reference data",
        &download(&store),
    );
    // A phone set up after three imports, each a week's new prices: the same download
    // with the three versions in effect within the rep's window.
    let mut resp: SyncResponse = serde_json::from_slice(&download(&store)).unwrap();
    let current = resp.reference_data.clone().unwrap();
    resp.earlier_reference = (1..=3)
        .map(|week| {
            let mut data = current.clone();
            data.version -= week;
            for p in data.products.iter_mut().step_by(4) {
                p.list_price_cents -= 10 * week;
            }
            ReferenceVersion {
                since: 1_700_000_000_000 - week * 7 * 86_400_000,
                data,
            }
        })
        .rev()
        .collect();
    measure(
        "download: the same for a phone set up after 3 imports (3 earlier versions)",
        &serde_json::to_vec(&resp).unwrap(),
    );
    // One changed inventory line: the incremental sync's upload.
    let id = store.visit_ids().unwrap()[0].clone();
    store
        .acknowledge(
            &store
                .outbox(100_000)
                .unwrap()
                .into_iter()
                .map(|c| c.hash)
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let refs = store.reference_data();
    let p = refs.index().assortment_for(&refs.stores[0])[0].to_string();
    store
        .record_inventory(
            &id,
            &p,
            &InventoryInput {
                shelf_qty: Some(3),
                ..Default::default()
            },
        )
        .unwrap();
    let one = upload(&store);
    println!(
        "upload: one changed inventory line: {} bytes of JSON",
        one.len()
    );
    for how in [Compression::Gzip, Compression::Zstd] {
        println!("  {how:?}: {} bytes", compress(&one, how).unwrap().len());
    }
}
