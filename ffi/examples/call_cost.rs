//! The cost of one inventory line recorded in Rust, for comparison with the same call
//! through the Python and Kotlin bindings (`ffi/tests-python/call_cost.py`,
//! `ffi/tests-kotlin/bench/CallCost.kt`, same workload; `scripts/call-cost.sh` runs all
//! three).
//!
//! `cargo run --release -p fieldsync-ffi --example call_cost [calls]`
//!
//! Besides the durable call itself it times the call's error path (an unknown product:
//! the arguments cross, nothing is written), and the durable call with 1 MiB of other
//! memory read between calls, as a foreign runtime does between two calls.

use std::time::{Duration, Instant};

use fieldsync_core::store::DeviceStore;
use fieldsync_core::visit::GeoPoint;
use fieldsync_ffi::{FieldStore, demo_reference_data_json};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let calls: usize = std::env::args().nth(1).map_or(Ok(500), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let today = chrono::Utc::now().date_naive().to_string();
    let refs = demo_reference_data_json(7, today)?;

    let store = DeviceStore::open(dir.path().join("bench.db"), "rep-1", "phone-1")?;
    store.replace_reference_data(serde_json::from_str(&refs)?)?;
    let shop = store.reference_data().stores[0].clone();
    let visit = store.create_ad_hoc_visit(&shop.id, "tt-standard")?;
    store.check_in(
        &visit,
        GeoPoint {
            lat: shop.lat,
            lng: shop.lng,
        },
    )?;
    let products = store.visit_checklist(&visit)?.product_ids;
    let mut times = Vec::with_capacity(calls);
    for i in 0..calls {
        let start = Instant::now();
        store.record_inventory(&visit, &products[i % products.len()], &line(i).into())?;
        times.push(start.elapsed());
    }
    report("record_inventory (Rust, DeviceStore)", &mut times);

    // The same through the bindings' Rust object (the wrapper without the foreign call).
    let open =
        |name: &str| -> Result<(std::sync::Arc<FieldStore>, String), Box<dyn std::error::Error>> {
            let s = FieldStore::open(
                dir.path().join(name).display().to_string(),
                "rep-1".into(),
                "phone-1".into(),
            )?;
            s.replace_reference_data_json(refs.clone())?;
            let visit = s.create_ad_hoc_visit(shop.id.clone(), "tt-standard".into())?;
            s.check_in(
                visit.clone(),
                fieldsync_ffi::GeoPoint {
                    lat: shop.lat,
                    lng: shop.lng,
                },
            )?;
            Ok((s, visit))
        };
    let (wrapped, wrapped_visit) = open("wrapped.db")?;
    let durable = |i: usize| {
        wrapped.record_inventory(
            wrapped_visit.clone(),
            products[i % products.len()].clone(),
            line(i),
        )
    };
    let refused = |i: usize| {
        let refused =
            wrapped.record_inventory(wrapped_visit.clone(), "no-such-product".into(), line(i));
        assert!(refused.is_err(), "an unknown product was accepted");
    };
    let mut times = Vec::with_capacity(calls);
    for i in 0..calls {
        let start = Instant::now();
        durable(i)?;
        times.push(start.elapsed());
    }
    report("record_inventory (Rust, ffi FieldStore)", &mut times);

    // A foreign runtime runs its own code between two calls; this reads 1 MiB between
    // calls to show what that alone does to the call (caches).
    let (cold, visit) = open("cold.db")?;
    let other = vec![1u8; 1 << 20];
    let mut times = Vec::with_capacity(calls);
    for i in 0..calls {
        std::hint::black_box(other.iter().step_by(64).map(|&b| u64::from(b)).sum::<u64>());
        let start = Instant::now();
        cold.record_inventory(visit.clone(), products[i % products.len()].clone(), line(i))?;
        times.push(start.elapsed());
    }
    report(
        "record_inventory (Rust, 1 MiB read between calls)",
        &mut times,
    );

    let mut times = Vec::with_capacity(calls);
    for i in 0..calls {
        let start = Instant::now();
        refused(i);
        times.push(start.elapsed());
    }
    report(
        "record_inventory error path (Rust, ffi FieldStore)",
        &mut times,
    );

    // The same error path, each time right after a durable call (not timed): what the
    // crossing costs once the library's real work has been through the caches.
    let mut times = Vec::with_capacity(calls);
    for i in 0..calls {
        durable(i)?;
        let start = Instant::now();
        refused(i);
        times.push(start.elapsed());
    }
    report(
        "record_inventory error path after a durable call (Rust, ffi FieldStore)",
        &mut times,
    );

    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        std::hint::black_box(store.now());
        times.push(start.elapsed());
    }
    report("now() (Rust, DeviceStore)", &mut times);
    Ok(())
}

fn line(i: usize) -> fieldsync_ffi::InventoryInput {
    fieldsync_ffi::InventoryInput {
        shelf_qty: Some(i as i64 % 17),
        facings: Some(2),
        ..Default::default()
    }
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
