//! A child process records actions and prints an acknowledgement after each call
//! returns; the parent kills it with SIGKILL at a random point. Reopening the store finds
//! every acknowledged action and `PRAGMA integrity_check` is `ok`. Repeated for many kill
//! points (set `FIELDSYNC_CRASH_ITERATIONS` for a long run).

mod common;

use common::*;
use fieldsync_core::clock::ManualClock;
use fieldsync_core::fixtures::Rng;
use fieldsync_core::store::DeviceStore;
use fieldsync_core::visit::InventoryInput;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const CHILD_ENV: &str = "FIELDSYNC_CRASH_CHILD_DB";
const PRODUCTS: usize = 7;

/// Runs only inside the child process started by `acknowledged_actions_survive_sigkill`.
#[test]
fn crash_child_process_entry() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let s =
        DeviceStore::open_with_clock(&path, "rep-1", "dev-crash", Arc::new(ManualClock::new(NOW)))
            .unwrap();
    let r = s.reference_data();
    let visit_id = s.visit_ids().unwrap().pop().unwrap();
    let products: Vec<String> = r
        .index()
        .assortment_for(&r.stores[0])
        .iter()
        .take(PRODUCTS)
        .map(|p| p.to_string())
        .collect();
    let mut out = std::io::stdout().lock();
    for i in 0..100_000i64 {
        let pid = &products[i as usize % PRODUCTS];
        s.record_inventory(
            &visit_id,
            pid,
            &InventoryInput {
                shelf_qty: Some(i),
                ..Default::default()
            },
        )
        .unwrap();
        writeln!(out, "ACK {pid} {i}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn acknowledged_actions_survive_sigkill() {
    let iterations: usize = std::env::var("FIELDSYNC_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    let mut rng = Rng::new(42);
    for iteration in 0..iterations {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crash.db");
        let visit_id = {
            let s = open(
                dir.path(),
                "crash",
                "rep-1",
                Arc::new(ManualClock::new(NOW)),
            );
            let r = s.reference_data();
            let id = s.create_visit(plan(&r.stores[0].id, "rep-1", NOW)).unwrap();
            s.check_in(&id, store_position(&r, &r.stores[0].id))
                .unwrap();
            id
        };
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child_process_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let kill_after = 1 + rng.below(80) as usize;
        let extra_delay = Duration::from_micros(rng.below(3000));
        let mut acked: HashMap<String, i64> = HashMap::new();
        let mut count = 0;
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while count < kill_after {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 {
                break;
            }
            if let Some(rest) = line.trim().strip_prefix("ACK ") {
                let (pid, qty) = rest.split_once(' ').unwrap();
                acked.insert(pid.to_string(), qty.parse().unwrap());
                count += 1;
            }
        }
        std::thread::sleep(extra_delay);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert_eq!(
            count, kill_after,
            "iteration {iteration}: child stopped early"
        );

        let s = DeviceStore::open_with_clock(
            &path,
            "rep-1",
            "dev-crash",
            Arc::new(ManualClock::new(NOW)),
        )
        .unwrap();
        assert_eq!(s.integrity_check().unwrap(), "ok", "iteration {iteration}");
        let visit = s.visit(&visit_id).unwrap();
        for (pid, qty) in &acked {
            let stored = visit.inventory[pid].shelf_qty.unwrap();
            // The stored value is the acknowledged one or a later write to the same line
            // (committed just before the kill, not yet acknowledged).
            assert!(
                stored >= *qty,
                "iteration {iteration}: {pid} lost acknowledged {qty}, has {stored}"
            );
            let idx = stored as usize % PRODUCTS;
            let expected_idx = *qty as usize % PRODUCTS;
            assert_eq!(
                idx, expected_idx,
                "iteration {iteration}: {pid} holds a value written to another line"
            );
        }
        // Every acknowledged action is in the outbox exactly once, and projections agree
        // with a rebuild from the documents.
        let outbox = s.outbox(1_000_000).unwrap();
        assert!(
            outbox.len() >= count + 2,
            "iteration {iteration}: outbox {} < acked {count}",
            outbox.len()
        );
        let rows = s.projection_rows().unwrap();
        s.rebuild_projections().unwrap();
        assert_eq!(s.projection_rows().unwrap(), rows, "iteration {iteration}");
    }
}
