//! The cost of one inventory line recorded in Rust, for comparison with the same call
//! through the Python bindings (`ffi/tests-python/call_cost.py`, same workload).
//!
//! `cargo run --release -p fieldsync-ffi --example call_cost [calls]`

use std::time::{Duration, Instant};

use fieldsync_core::store::DeviceStore;
use fieldsync_core::visit::{GeoPoint, InventoryInput};
use fieldsync_ffi::demo_reference_data_json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let calls: usize = std::env::args().nth(1).map_or(Ok(500), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let store = DeviceStore::open(dir.path().join("bench.db"), "rep-1", "phone-1")?;
    let today = chrono::Utc::now().date_naive().to_string();
    store.replace_reference_data(serde_json::from_str(&demo_reference_data_json(7, today)?)?)?;
    let refs = store.reference_data();
    let shop = &refs.stores[0];
    let visit = store.create_ad_hoc_visit(&shop.id, "tt-standard")?;
    store.check_in(
        &visit,
        GeoPoint {
            lat: shop.lat,
            lng: shop.lng,
        },
    )?;
    let products: Vec<String> = refs
        .index()
        .assortment_for(shop)
        .into_iter()
        .map(String::from)
        .collect();

    let mut times = Vec::with_capacity(calls);
    for i in 0..calls {
        let input = InventoryInput {
            shelf_qty: Some(i as i64 % 17),
            facings: Some(2),
            ..Default::default()
        };
        let start = Instant::now();
        store.record_inventory(&visit, &products[i % products.len()], &input)?;
        times.push(start.elapsed());
    }
    report("record_inventory (Rust, DeviceStore)", &mut times);

    // The same through the bindings' Rust object (the wrapper without the foreign call).
    let wrapped = fieldsync_ffi::FieldStore::open(
        dir.path().join("wrapped.db").display().to_string(),
        "rep-1".into(),
        "phone-1".into(),
    )?;
    wrapped.replace_reference_data_json(serde_json::to_string(&*refs)?)?;
    let visit = wrapped.create_ad_hoc_visit(shop.id.clone(), "tt-standard".into())?;
    wrapped.check_in(
        visit.clone(),
        fieldsync_ffi::GeoPoint {
            lat: shop.lat,
            lng: shop.lng,
        },
    )?;
    let mut times = Vec::with_capacity(calls);
    for i in 0..calls {
        let input = fieldsync_ffi::InventoryInput {
            shelf_qty: Some(i as i64 % 17),
            facings: Some(2),
            ..Default::default()
        };
        let start = Instant::now();
        wrapped.record_inventory(visit.clone(), products[i % products.len()].clone(), input)?;
        times.push(start.elapsed());
    }
    report("record_inventory (Rust, ffi FieldStore)", &mut times);

    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        std::hint::black_box(store.now());
        times.push(start.elapsed());
    }
    report("now() (Rust, DeviceStore)", &mut times);
    Ok(())
}

fn report(name: &str, times: &mut [Duration]) {
    times.sort();
    let total: Duration = times.iter().sum();
    println!(
        "{name}: median {:.1} µs, mean {:.1} µs over {} calls",
        times[times.len() / 2].as_secs_f64() * 1e6,
        total.as_secs_f64() * 1e6 / times.len() as f64,
        times.len()
    );
}
