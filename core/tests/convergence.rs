//! Two device stores edit the same visit offline and exchange changes in every order,
//! with duplicates: they end identical, and a concurrent field is shown as a conflict
//! whose winner is the later observation.

mod common;

use common::*;
use fieldsync_core::clock::ManualClock;
use fieldsync_core::store::DeviceStore;
use fieldsync_core::visit::*;
use std::sync::Arc;

type Setup = (
    tempfile::TempDir,
    Arc<ManualClock>,
    Arc<ManualClock>,
    DeviceStore,
    DeviceStore,
    String,
    String,
);

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(ManualClock::new(NOW));
    let cb = Arc::new(ManualClock::new(NOW));
    let a = open(dir.path(), "a", "rep-1", ca.clone());
    let b = open(dir.path(), "b", "rep-1", cb.clone());
    let r = a.reference_data();
    let store = r.stores[0].clone();
    let id = a.create_visit(plan(&store.id, "rep-1", NOW)).unwrap();
    a.check_in(&id, store_position(&r, &store.id)).unwrap();
    let pid = r.index().assortment_for(&store)[0].to_string();
    a.record_inventory(
        &id,
        &pid,
        &InventoryInput {
            shelf_qty: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    a.set_notes(&id, "Shelf ok.").unwrap();
    exchange(&a, &b);
    (dir, ca, cb, a, b, id, pid)
}

#[test]
fn concurrent_edits_converge_in_any_order_with_duplicates() {
    for order in 0..4 {
        let (_dir, ca, cb, a, b, id, pid) = setup();
        // Offline: A counts the shelf at 10:00, B counts it again at 10:05 and records
        // the price; both edit the notes; A records backroom (a different field of the line).
        ca.set(NOW + 3_600_000);
        cb.set(NOW + 3_900_000);
        a.record_inventory(
            &id,
            &pid,
            &InventoryInput {
                shelf_qty: Some(7),
                backroom_qty: Some(12),
                ..Default::default()
            },
        )
        .unwrap();
        b.record_inventory(
            &id,
            &pid,
            &InventoryInput {
                shelf_qty: Some(9),
                observed_price_cents: Some(249),
                ..Default::default()
            },
        )
        .unwrap();
        a.edit_notes(&id, 0, 0, "Morning: ").unwrap();
        b.edit_notes(&id, 9, 0, " Display built.").unwrap();

        match order {
            0 => {
                exchange(&a, &b);
                exchange(&b, &a);
            }
            1 => {
                exchange(&b, &a);
                exchange(&a, &b);
            }
            2 => {
                exchange(&a, &b);
                exchange(&a, &b);
                exchange(&b, &a);
                exchange(&b, &a);
            }
            _ => {
                exchange(&b, &a);
                exchange(&b, &a);
                exchange(&a, &b);
                exchange(&b, &a);
                exchange(&a, &b);
            }
        }
        let va = a.visit(&id).unwrap();
        let vb = b.visit(&id).unwrap();
        assert_eq!(va, vb, "order {order}");
        let line = &va.inventory[&pid];
        // B's count is the later observation, whatever order the changes arrived in.
        assert_eq!(line.shelf_qty, Some(9), "order {order}");
        assert_eq!(line.backroom_qty, Some(12));
        assert_eq!(line.observed_price_cents, Some(249));
        assert_eq!(va.notes, "Morning: Shelf ok. Display built.");
        assert_eq!(a.projection_rows().unwrap(), b.projection_rows().unwrap());
        assert_eq!(a.all_heads().unwrap(), b.all_heads().unwrap());

        let conflicts = a.conflicts(&id).unwrap();
        assert_eq!(conflicts, b.conflicts(&id).unwrap());
        let shelf = conflicts
            .iter()
            .find(|c| c.path == format!("inventory/{pid}/shelf"))
            .expect("shelf conflict");
        assert_eq!(shelf.values.len(), 2);
        let winner = shelf.values.iter().find(|v| v.winner).unwrap();
        assert_eq!((winner.value.as_str(), winner.at), ("9", NOW + 3_900_000));
        let loser = shelf.values.iter().find(|v| !v.winner).unwrap();
        assert_eq!(
            (
                loser.value.as_str(),
                loser.author.as_ref().unwrap().device_id.as_str()
            ),
            ("7", "dev-a")
        );
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    }
}

#[test]
fn a_stale_count_never_overwrites_a_fresher_one() {
    // The stale count is made *later in upload order* but *earlier in device time*.
    let (_dir, ca, cb, a, b, id, pid) = setup();
    cb.set(NOW + 7_200_000);
    b.record_inventory(
        &id,
        &pid,
        &InventoryInput {
            shelf_qty: Some(30),
            ..Default::default()
        },
    )
    .unwrap();
    ca.set(NOW + 3_600_000); // A was offline all morning
    a.record_inventory(
        &id,
        &pid,
        &InventoryInput {
            shelf_qty: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    exchange(&b, &a);
    assert_eq!(a.visit(&id).unwrap().inventory[&pid].shelf_qty, Some(30));
    exchange(&a, &b);
    assert_eq!(b.visit(&id).unwrap().inventory[&pid].shelf_qty, Some(30));
    // A causally later edit still wins regardless of clocks: A saw 30 and corrects it.
    ca.set(NOW + 3_700_000);
    a.record_inventory(
        &id,
        &pid,
        &InventoryInput {
            shelf_qty: Some(28),
            ..Default::default()
        },
    )
    .unwrap();
    exchange(&a, &b);
    assert_eq!(b.visit(&id).unwrap().inventory[&pid].shelf_qty, Some(28));
    assert!(b.conflicts(&id).unwrap().is_empty());
}

#[test]
fn lines_created_concurrently_merge_field_by_field() {
    let (_dir, ca, cb, a, b, id, _) = setup();
    let r = a.reference_data();
    let pid = r.index().assortment_for(&r.stores[0])[1].to_string();
    ca.set(NOW + 1000);
    cb.set(NOW + 2000);
    a.record_inventory(
        &id,
        &pid,
        &InventoryInput {
            shelf_qty: Some(4),
            facings: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    b.record_inventory(
        &id,
        &pid,
        &InventoryInput {
            backroom_qty: Some(6),
            ..Default::default()
        },
    )
    .unwrap();
    exchange(&a, &b);
    exchange(&b, &a);
    let line = a.visit(&id).unwrap().inventory[&pid].clone();
    assert_eq!(
        (line.shelf_qty, line.backroom_qty, line.facings),
        (Some(4), Some(6), Some(2))
    );
    assert_eq!(a.visit(&id).unwrap(), b.visit(&id).unwrap());
}

#[test]
fn changes_with_missing_dependencies_wait_and_then_apply() {
    let (_dir, ca, _cb, a, b, id, pid) = setup();
    let before: Vec<String> = a
        .all_heads()
        .unwrap()
        .into_iter()
        .flat_map(|(_, h)| h)
        .collect();
    ca.advance(1000);
    a.record_inventory(
        &id,
        &pid,
        &InventoryInput {
            shelf_qty: Some(11),
            ..Default::default()
        },
    )
    .unwrap();
    ca.advance(1000);
    a.record_inventory(
        &id,
        &pid,
        &InventoryInput {
            shelf_qty: Some(12),
            ..Default::default()
        },
    )
    .unwrap();
    let changes = a.changes_since(&id, &before).unwrap();
    assert_eq!(changes.len(), 2);
    // The second change alone: its dependency is missing, nothing visible changes.
    let out = b.apply_remote(&id, &changes[1..]).unwrap();
    assert_eq!(out.missing.len(), 1);
    assert_eq!(b.visit(&id).unwrap().inventory[&pid].shelf_qty, Some(1));
    // The waiting change survives a restart of the store.
    drop(b);
    let b = DeviceStore::open_with_clock(
        _dir.path().join("b.db"),
        "rep-1",
        "dev-b",
        Arc::new(ManualClock::new(NOW)),
    )
    .unwrap();
    let out = b.apply_remote(&id, &changes[..1]).unwrap();
    assert!(out.missing.is_empty());
    assert_eq!(b.visit(&id).unwrap().inventory[&pid].shelf_qty, Some(12));
    // Resending everything is harmless.
    let out = b.apply_remote(&id, &changes).unwrap();
    assert_eq!((out.applied, out.duplicates), (0, 2));
}

#[test]
fn malformed_remote_bytes_are_refused_and_change_nothing() {
    let (_dir, _ca, _cb, a, _b, id, _) = setup();
    let before = a.projection_rows().unwrap();
    let e = a
        .apply_remote(&id, &[b"definitely not automerge".to_vec()])
        .unwrap_err();
    assert!(e.to_string().contains("malformed change"), "{e}");
    assert_eq!(a.projection_rows().unwrap(), before);
}

#[test]
fn a_new_visit_whose_first_change_arrives_last_is_applied() {
    // The device learns of a visit from a later change first: the document cannot be read
    // yet. A second delivery (a duplicate plus the missing first change) must complete it.
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a", "rep-1", Arc::new(ManualClock::new(NOW)));
    let b = open(dir.path(), "b", "rep-1", Arc::new(ManualClock::new(NOW)));
    let r = a.reference_data();
    let id = a.create_visit(plan(&r.stores[0].id, "rep-1", NOW)).unwrap();
    a.check_in(&id, store_position(&r, &r.stores[0].id))
        .unwrap();
    let changes = a.changes_since(&id, &[]).unwrap();
    assert_eq!(changes.len(), 2);
    let out = b.apply_remote(&id, &changes[1..]).unwrap();
    assert_eq!(out.missing.len(), 1);
    assert!(b.visit(&id).is_err());
    // The waiting change is not part of the document yet, so it counts as applied again.
    let out = b.apply_remote(&id, &changes).unwrap();
    assert_eq!(out.applied + out.duplicates, 2);
    assert!(out.missing.is_empty());
    assert_eq!(b.visit(&id).unwrap(), a.visit(&id).unwrap());
    assert_eq!(b.projection_rows().unwrap(), a.projection_rows().unwrap());
}
