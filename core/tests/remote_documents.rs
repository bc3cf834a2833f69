//! Whole visit documents from the server (the `documents` sync feature): a visit received
//! as one document ends exactly as the same visit received change by change, applying is
//! idempotent, documents merge into visits the device holds, declared heads are checked,
//! and malformed documents are refused without changing anything.

mod common;

use automerge::{Automerge, Change};
use common::*;
use fieldsync_core::clock::ManualClock;
use fieldsync_core::document::{pack_document, pack_visit};
use fieldsync_core::store::{DeviceStore, RemoteDocument};
use fieldsync_core::visit::*;
use std::sync::Arc;

/// A device with `n` visits, each checked in with a counted line and notes.
fn source(dir: &std::path::Path, n: usize) -> (DeviceStore, Vec<String>) {
    let a = open(dir, "a", "rep-1", Arc::new(ManualClock::new(NOW)));
    let r = a.reference_data();
    let mut ids = Vec::new();
    for i in 0..n {
        let store = &r.stores[i % r.stores.len()];
        let id = a
            .create_visit(plan(&store.id, "rep-1", NOW + i as i64 * 3_600_000))
            .unwrap();
        a.check_in(&id, store_position(&r, &store.id)).unwrap();
        let pid = r.index().assortment_for(store)[0].to_string();
        a.record_inventory(
            &id,
            &pid,
            &InventoryInput {
                shelf_qty: Some(3 + i as i64),
                out_of_stock: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
        a.set_notes(&id, &format!("visit {i}")).unwrap();
        ids.push(id);
    }
    (a, ids)
}

/// How a document travels: packed as the server stores and sends it, or as Automerge
/// saves it (uncompressed or compressed), which the device accepts too.
#[derive(Clone, Copy)]
enum Form {
    Packed,
    Plain,
    Compressed,
}

/// The visit's document as the server would send it, and its heads.
fn document(from: &DeviceStore, id: &str, form: Form) -> RemoteDocument {
    let changes: Vec<Change> = from
        .changes_since(id, &[])
        .unwrap()
        .into_iter()
        .map(|b| Change::from_bytes(b).unwrap())
        .collect();
    let mut am = Automerge::new();
    am.apply_changes(changes).unwrap();
    RemoteDocument {
        visit_id: id.to_string(),
        doc: match form {
            Form::Packed => pack_document(&am.save_nocompress()),
            Form::Plain => am.save_nocompress(),
            Form::Compressed => am.save(),
        },
        heads: am.get_heads().iter().map(ToString::to_string).collect(),
        visit: None,
    }
}

/// Two fresh devices of manager-1 (`b`, `c`).
fn two_managers(dir: &std::path::Path) -> (DeviceStore, DeviceStore) {
    let manager = |name| open(dir, name, "manager-1", Arc::new(ManualClock::new(NOW)));
    (manager("b"), manager("c"))
}

/// The documents of `ids` from `from`, in each form in turn.
fn in_every_form(from: &DeviceStore, ids: &[String]) -> Vec<RemoteDocument> {
    let forms = [Form::Packed, Form::Plain, Form::Compressed];
    ids.iter()
        .enumerate()
        .map(|(i, id)| document(from, id, forms[i % 3]))
        .collect()
}

#[test]
fn a_visit_sent_whole_ends_as_the_same_visit_sent_change_by_change() {
    let dir = tempfile::tempdir().unwrap();
    let (a, ids) = source(dir.path(), 40);
    let (by_changes, by_docs) = two_managers(dir.path());
    exchange(&a, &by_changes);
    // Every form, in one page (parsed on several threads).
    let docs = in_every_form(&a, &ids);
    let out = by_docs.apply_remote_documents(&docs).unwrap();
    assert_eq!(out.len(), ids.len());
    for (id, o) in ids.iter().zip(&out) {
        assert_eq!(o.applied, a.changes_since(id, &[]).unwrap().len(), "{id}");
        assert!(o.missing.is_empty(), "{id}: {:?}", o.missing);
        assert_eq!(by_docs.visit(id).unwrap(), a.visit(id).unwrap());
    }
    assert_eq!(
        by_docs.projection_rows().unwrap(),
        by_changes.projection_rows().unwrap()
    );
    assert_eq!(
        by_docs.all_heads().unwrap(),
        by_changes.all_heads().unwrap()
    );
    // The rows are what a rebuild from the stored documents gives (the stored snapshots
    // load back), also in a fresh process.
    let rows = by_docs.projection_rows().unwrap();
    drop(by_docs);
    let reopened = DeviceStore::open_with_clock(
        dir.path().join("c.db"),
        "manager-1",
        "dev-c",
        Arc::new(ManualClock::new(NOW)),
    )
    .unwrap();
    reopened.rebuild_projections().unwrap();
    assert_eq!(reopened.projection_rows().unwrap(), rows);
    assert_eq!(reopened.integrity_check().unwrap(), "ok");
}

#[test]
fn documents_are_idempotent_and_merge_into_visits_the_device_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (a, ids) = source(dir.path(), 3);
    let c = open(dir.path(), "c", "rep-1", Arc::new(ManualClock::new(NOW)));
    let first: Vec<RemoteDocument> = ids
        .iter()
        .map(|id| document(&a, id, Form::Packed))
        .collect();
    c.apply_remote_documents(&first).unwrap();
    // Again, and once more one by one: nothing new.
    for o in c.apply_remote_documents(&first).unwrap() {
        assert_eq!(o.applied, 0);
    }
    assert_eq!(
        c.apply_remote_document(&first[0].visit_id, &first[0].doc, &first[0].heads)
            .unwrap()
            .applied,
        0
    );
    // The device edits a visit offline while the source moves on: the newer document
    // merges with the device's own change, which stays in its outbox.
    let r = a.reference_data();
    let id = &ids[0];
    let pid = r
        .index()
        .assortment_for(&r.stores[0])
        .get(1)
        .unwrap()
        .to_string();
    c.record_inventory(
        id,
        &pid,
        &InventoryInput {
            shelf_qty: Some(42),
            ..Default::default()
        },
    )
    .unwrap();
    let outbox = c.outbox_len().unwrap();
    a.set_notes(id, "updated at the source").unwrap();
    // The same visit twice in one page, next to a visit the device holds unchanged.
    let page = vec![
        document(&a, id, Form::Packed),
        document(&a, &ids[1], Form::Plain),
        document(&a, id, Form::Compressed),
    ];
    let out = c.apply_remote_documents(&page).unwrap();
    assert_eq!(out[0].applied, 1, "{:?}", out[0]);
    assert_eq!((out[1].applied, out[2].applied), (0, 0));
    let v = c.visit(id).unwrap();
    assert_eq!(v.notes, "updated at the source");
    assert_eq!(v.inventory[&pid].shelf_qty, Some(42));
    assert_eq!(c.outbox_len().unwrap(), outbox);
    // Back at the source, the device's change makes both equal.
    exchange(&c, &a);
    assert_eq!(a.visit(id).unwrap(), c.visit(id).unwrap());
}

#[test]
fn heads_the_document_lacks_are_reported_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, ids) = source(dir.path(), 1);
    let c = open(dir.path(), "c", "rep-1", Arc::new(ManualClock::new(NOW)));
    let older = document(&a, &ids[0], Form::Packed);
    a.set_notes(&ids[0], "later").unwrap();
    let newer = document(&a, &ids[0], Form::Packed);
    // Older bytes that claim the newer heads: applied, and the device knows it lacks some.
    let out = c
        .apply_remote_document(&ids[0], &older.doc, &newer.heads)
        .unwrap();
    assert!(out.applied > 0);
    assert_eq!(out.missing, newer.heads);
    let out = c
        .apply_remote_documents(&[RemoteDocument {
            heads: newer.heads.clone(),
            ..newer
        }])
        .unwrap();
    assert_eq!(out[0].applied, 1);
    assert!(out[0].missing.is_empty());
    assert_eq!(c.visit(&ids[0]).unwrap(), a.visit(&ids[0]).unwrap());
}

#[test]
fn malformed_documents_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, ids) = source(dir.path(), 2);
    let c = open(dir.path(), "c", "rep-1", Arc::new(ManualClock::new(NOW)));
    c.apply_remote_documents(&[document(&a, &ids[0], Form::Packed)])
        .unwrap();
    let rows = c.projection_rows().unwrap();
    let good = document(&a, &ids[1], Form::Plain);
    let change = a.changes_since(&ids[1], &[]).unwrap().remove(0);
    let plain = fieldsync_core::document::unpack_document(&good.doc)
        .unwrap()
        .into_owned();
    let mut truncated = plain.clone();
    truncated.truncate(plain.len() - 10);
    // 32 MiB of zeros in a small frame: more than a document may unpack to.
    let bomb = pack_document(&vec![0u8; 32 << 20]);
    assert!(bomb.len() < 64 * 1024);
    let cases: Vec<(RemoteDocument, &str)> = vec![
        (
            RemoteDocument {
                doc: b"definitely not automerge".to_vec(),
                ..good.clone()
            },
            "magic bytes",
        ),
        (
            RemoteDocument {
                doc: change,
                ..good.clone()
            },
            "a change, not a whole document",
        ),
        (
            RemoteDocument {
                doc: truncated,
                ..good.clone()
            },
            "the chunk needs",
        ),
        (
            RemoteDocument {
                doc: bomb,
                ..good.clone()
            },
            "unpacks to more than",
        ),
        (
            RemoteDocument {
                heads: vec!["not a hash".into()],
                ..good.clone()
            },
            "bad head",
        ),
        (
            RemoteDocument {
                visit_id: "v-other".into(),
                ..good.clone()
            },
            "belongs to visit",
        ),
    ];
    for (doc, says) in cases {
        // In a page with a good document: the whole page is refused, nothing written.
        let e = c
            .apply_remote_documents(&[good.clone(), doc.clone()])
            .unwrap_err();
        assert!(e.to_string().contains(says), "{e} should say {says:?}");
        let e = c
            .apply_remote_document(&doc.visit_id, &doc.doc, &doc.heads)
            .unwrap_err();
        assert!(e.to_string().contains(says), "{e} should say {says:?}");
        assert_eq!(c.projection_rows().unwrap(), rows);
        assert_eq!(c.visit_ids().unwrap(), vec![ids[0].clone()]);
    }
}

/// `d` with the visit the server read from its document, as a server that keeps them
/// sends it.
fn with_visit(from: &DeviceStore, d: RemoteDocument) -> RemoteDocument {
    let visit = from.visit(&d.visit_id).unwrap();
    RemoteDocument {
        visit: Some(pack_visit(&visit)),
        ..d
    }
}

#[test]
fn a_visit_sent_with_its_document_is_stored_as_reading_the_document_would_store_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a, ids) = source(dir.path(), 40);
    let (read, taken) = two_managers(dir.path());
    let docs = in_every_form(&a, &ids);
    let by_reading = read.apply_remote_documents(&docs).unwrap();
    let with: Vec<RemoteDocument> = docs.into_iter().map(|d| with_visit(&a, d)).collect();
    let by_taking = taken.apply_remote_documents(&with).unwrap();
    // The same outcome (the changes counted from the document's columns), rows, visits
    // and heads as when the device reads each document itself.
    assert_eq!(by_taking, by_reading);
    assert_eq!(
        taken.projection_rows().unwrap(),
        read.projection_rows().unwrap()
    );
    for id in &ids {
        assert_eq!(taken.visit(id).unwrap(), a.visit(id).unwrap());
    }
    assert_eq!(taken.all_heads().unwrap(), read.all_heads().unwrap());
    // The stored document is the visit: a rebuild from it gives the same rows, and the
    // visit can be worked on and synced on.
    let rows = taken.projection_rows().unwrap();
    taken.rebuild_projections().unwrap();
    assert_eq!(taken.projection_rows().unwrap(), rows);
    taken.set_notes(&ids[0], "seen by the manager").unwrap();
    assert_eq!(taken.visit(&ids[0]).unwrap().notes, "seen by the manager");
    exchange(&taken, &a);
    assert_eq!(a.visit(&ids[0]).unwrap().notes, "seen by the manager");
    // A visit the device holds merges the document; the visit sent with it (here another
    // visit's) is not used: the rows stay what a rebuild from the documents gives.
    let mut stale = with[1].clone();
    stale.visit = with[2].visit.clone();
    taken.apply_remote_documents(&[stale]).unwrap();
    assert_eq!(taken.visit(&ids[1]).unwrap(), a.visit(&ids[1]).unwrap());
    let rows = taken.projection_rows().unwrap();
    taken.rebuild_projections().unwrap();
    assert_eq!(taken.projection_rows().unwrap(), rows);
    assert_eq!(taken.integrity_check().unwrap(), "ok");
}

#[test]
fn a_visit_sent_with_a_document_that_does_not_fit_it_is_not_used_and_the_document_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let (a, ids) = source(dir.path(), 3);
    let good = with_visit(&a, document(&a, &ids[0], Form::Plain));
    let other = with_visit(&a, document(&a, &ids[1], Form::Plain));
    // The checksum (bytes 4-7 of the chunk) of a document that is otherwise whole.
    let mut bad_sum = good.doc.clone();
    bad_sum[4] ^= 0xff;
    // A head of another visit declared beside the document's own.
    let mut extra_head = good.heads.clone();
    extra_head.push(other.heads[0].clone());
    // A read with a number JSON cannot hold (what a push of a NaN would make a server
    // store: serde_json writes it as null).
    let mut nan = a.visit(&ids[0]).unwrap();
    nan.check_in.as_mut().unwrap().position.lat = f64::NAN;
    let cases: Vec<(&str, RemoteDocument)> = vec![
        (
            "a wrong checksum",
            RemoteDocument {
                doc: bad_sum,
                ..good.clone()
            },
        ),
        (
            "another visit's head declared too",
            RemoteDocument {
                heads: extra_head,
                ..good.clone()
            },
        ),
        (
            "another visit's heads declared",
            RemoteDocument {
                heads: other.heads.clone(),
                ..good.clone()
            },
        ),
        (
            "another visit's read",
            RemoteDocument {
                visit: other.visit.clone(),
                ..good.clone()
            },
        ),
        (
            "a read that is no visit",
            RemoteDocument {
                visit: Some(pack_document(b"{\"id\": 3}")),
                ..good.clone()
            },
        ),
        (
            "a read with a NaN",
            RemoteDocument {
                visit: Some(pack_visit(&nan)),
                ..good.clone()
            },
        ),
        (
            "a read that unpacks to more than a visit may",
            RemoteDocument {
                visit: Some(pack_document(&vec![b' '; 8 << 20])),
                ..good.clone()
            },
        ),
    ];
    for (i, (case, doc)) in cases.into_iter().enumerate() {
        // Each case on two fresh devices: with the read, and without it.
        let with = open(
            dir.path(),
            &format!("w{i}"),
            "rep-1",
            Arc::new(ManualClock::new(NOW)),
        );
        let without = open(
            dir.path(),
            &format!("o{i}"),
            "rep-1",
            Arc::new(ManualClock::new(NOW)),
        );
        let page = [other.clone(), doc];
        let read = without
            .apply_remote_documents(&page.clone().map(|d| RemoteDocument { visit: None, ..d }));
        let taken = with.apply_remote_documents(&page);
        match (&taken, &read) {
            (Ok(t), Ok(r)) => assert_eq!(t, r, "{case}"),
            (Err(t), Err(r)) => assert_eq!(t.to_string(), r.to_string(), "{case}"),
            _ => panic!("{case}: {taken:?} against {read:?}"),
        }
        assert_eq!(
            with.projection_rows().unwrap(),
            without.projection_rows().unwrap(),
            "{case}"
        );
        if taken.is_ok() {
            assert_eq!(
                with.visit(&ids[0]).unwrap(),
                a.visit(&ids[0]).unwrap(),
                "{case}"
            );
        }
    }
}

#[test]
fn a_document_taken_with_its_visit_that_does_not_load_fails_when_opened_and_only_that_visit() {
    let dir = tempfile::tempdir().unwrap();
    let (a, ids) = source(dir.path(), 2);
    let c = open(dir.path(), "c", "rep-1", Arc::new(ManualClock::new(NOW)));
    let good = with_visit(&a, document(&a, &ids[0], Form::Plain));
    let other = with_visit(&a, document(&a, &ids[1], Form::Plain));
    // A character of the notes changed and the checksum made right again: the document
    // still has its shape and its recorded heads, but its changes no longer hash to them.
    let mut doc = good.doc.clone();
    let at = doc
        .windows(4)
        .position(|w| w == b"isit")
        .expect("the notes' characters");
    doc[at] = b'o';
    use sha2::Digest as _;
    let sum = sha2::Sha256::digest(&doc[8..]);
    doc[4..8].copy_from_slice(&sum[..4]);
    let tampered = RemoteDocument { doc, ..good };
    // The device does not parse it on the way in (that is the point) ...
    c.apply_remote_documents(&[tampered, other]).unwrap();
    assert_eq!(c.visit_ids().unwrap().len(), 2);
    // ... so opening it is where it fails: an error, for that visit only.
    let e = c.visit(&ids[0]).unwrap_err();
    assert!(e.to_string().contains("mismatching heads"), "{e}");
    assert_eq!(c.visit(&ids[1]).unwrap(), a.visit(&ids[1]).unwrap());
}
