//! The device keeps visits as read from their documents (`DeviceStore::visit`, behind the
//! visit screens and the KPI summaries), apart from the documents it keeps in memory: a kept
//! visit is always the read of its document as stored, whatever changed the document (an
//! action, changes or a whole document from the server, a purge), and more visits are kept
//! than documents.

mod common;

use automerge::{Automerge, Change};
use common::*;
use fieldsync_core::clock::ManualClock;
use fieldsync_core::visit::*;
use std::sync::Arc;

/// Visit `id` read by a store opened fresh on the same file: straight from the database.
fn as_stored(dir: &std::path::Path, name: &str, id: &str) -> Visit {
    open(dir, name, "rep-1", Arc::new(ManualClock::new(NOW)))
        .visit(id)
        .unwrap()
}

fn line(qty: i64) -> InventoryInput {
    InventoryInput {
        shelf_qty: Some(qty),
        out_of_stock: Some(false),
        ..Default::default()
    }
}

#[test]
fn a_kept_visit_follows_every_change_of_its_document() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let a = open(dir.path(), "a", "rep-1", clock.clone());
    let b = open(dir.path(), "b", "rep-1", clock);
    let r = a.reference_data();
    let store = &r.stores[0];
    let pid = r.index().assortment_for(store)[0].to_string();
    let id = a.create_visit(plan(&store.id, "rep-1", NOW)).unwrap();
    a.check_in(&id, store_position(&r, &store.id)).unwrap();
    exchange(&a, &b);
    assert_eq!(b.visit(&id).unwrap(), a.visit(&id).unwrap());

    // An action on the device.
    b.record_inventory(&id, &pid, &line(4)).unwrap();
    assert_eq!(b.visit(&id).unwrap().inventory[&pid].shelf_qty, Some(4));

    // Changes from the server.
    a.record_inventory(&id, &pid, &line(7)).unwrap();
    a.set_notes(&id, "from a").unwrap();
    let before = b.visit(&id).unwrap();
    let changes = a.changes_since(&id, &[]).unwrap();
    b.apply_remote(&id, &changes).unwrap();
    let after = b.visit(&id).unwrap();
    assert_ne!(after, before);
    assert_eq!(after.notes, "from a");
    assert_eq!(after, as_stored(dir.path(), "b", &id));

    // A whole document from the server.
    a.set_notes(&id, "from a, again").unwrap();
    let mut am = Automerge::new();
    let all: Vec<Change> = a
        .changes_since(&id, &[])
        .unwrap()
        .into_iter()
        .map(|c| Change::from_bytes(c).unwrap())
        .collect();
    am.apply_changes(all).unwrap();
    b.visit(&id).unwrap();
    b.apply_remote_document(
        &id,
        &am.save(),
        &am.get_heads()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert_eq!(b.visit(&id).unwrap().notes, "from a, again");
    assert_eq!(b.visit(&id).unwrap(), as_stored(dir.path(), "b", &id));

    // A purge (once nothing waits in the outbox): no visit any more.
    b.visit(&id).unwrap();
    acknowledge_all(&b);
    assert!(b.purge_visit(&id).unwrap());
    assert!(
        b.visit(&id).is_err(),
        "a purged visit is not served from memory"
    );
}

#[test]
fn more_visits_are_kept_than_documents_and_each_stays_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a", "rep-1", Arc::new(ManualClock::new(NOW)));
    let r = a.reference_data();
    // More visits than the device keeps documents of (64).
    let ids: Vec<String> = (0..100)
        .map(|i| {
            let store = &r.stores[i % r.stores.len()];
            a.create_visit(plan(&store.id, "rep-1", NOW + i as i64 * 60_000))
                .unwrap()
        })
        .collect();
    let first: Vec<Visit> = ids.iter().map(|id| a.visit(id).unwrap()).collect();
    // Each visit changed once, in turn, then all read again: each read is the change.
    for (i, id) in ids.iter().enumerate() {
        a.set_notes(id, &format!("note {i}")).unwrap();
    }
    for (i, id) in ids.iter().enumerate() {
        let v = a.visit(id).unwrap();
        assert_eq!(v.notes, format!("note {i}"));
        assert_eq!(v.plan, first[i].plan);
    }
    // The same as a store that keeps nothing yet reads them.
    let fresh = open(dir.path(), "a", "rep-1", Arc::new(ManualClock::new(NOW)));
    for id in &ids {
        assert_eq!(fresh.visit(id).unwrap(), a.visit(id).unwrap());
    }
    // The KPI summary of them is the fresh store's.
    let (from, to) = (NOW - 1, NOW + 200 * 60_000);
    assert_eq!(
        a.kpi_summary(from, to).unwrap(),
        fresh.kpi_summary(from, to).unwrap()
    );
}
