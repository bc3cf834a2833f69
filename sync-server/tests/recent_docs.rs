//! The documents the server keeps in memory between pushes (`ingest`'s recent documents):
//! a push starts from a kept document only when the visit is stored with exactly the bytes
//! that document was made from. Two servers in one process share the kept documents, and
//! hold the same visit at different points of its history: each push must be decided on
//! its own server's state.

use automerge::Change;
use fieldsync_core::fixtures::{self, FixtureSize};
use fieldsync_core::model::Role;
use fieldsync_core::sync::protocol::{VisitChanges, encode_change};
use fieldsync_server::ingest::{Writer, ingest};
use fieldsync_server::{SqliteStore, Store};

/// 2026-11-27 09:00 UTC.
const NOW: i64 = 1_795_770_000_000;

fn server(dir: &std::path::Path, name: &str) -> SqliteStore {
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
    let store = SqliteStore::open(&dir.join(name)).unwrap();
    store
        .import_reference(fixtures::reference_data(5, &FixtureSize::default(), today))
        .unwrap();
    store
}

fn push(store: &SqliteStore, id: &str, changes: &[Change]) -> fieldsync_server::ingest::Outcome {
    let rep1 = Writer {
        user_id: "rep-1".into(),
        role: Role::Rep,
        territories: vec!["t-1".into()],
        device_id: "dev-1".into(),
        scope: None,
        ever_listed: None,
    };
    let group = VisitChanges {
        visit_id: id.into(),
        changes: changes
            .iter()
            .map(|c| encode_change(c.raw_bytes()))
            .collect(),
    };
    let out = ingest(store, &rep1, &store.reference().unwrap().index(), &group).unwrap();
    assert_eq!(out.rejection, None);
    out
}

/// The heads of the document `store` holds for `id`.
fn stored_heads(store: &SqliteStore, id: &str) -> Vec<automerge::ChangeHash> {
    let doc = store.visit(id).unwrap().unwrap().doc;
    automerge::Automerge::load(&doc).unwrap().get_heads()
}

#[test]
fn each_push_is_decided_on_its_own_servers_copy_of_the_visit() {
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
    let id = "v-recent-docs";
    let doc = fixtures::typical_visit_document(id, today, NOW).unwrap();
    let changes = doc.automerge().get_changes(&[]);
    assert_eq!(changes.len(), 37);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (server(dir.path(), "a.db"), server(dir.path(), "b.db"));

    // Server B takes the visit's first 20 changes; A its first 30, then 3 more (a small
    // push: A's document at 33 changes is kept for this id).
    assert_eq!(push(&b, id, &changes[..20]).applied, 20);
    assert_eq!(push(&a, id, &changes[..30]).applied, 30);
    assert_eq!(push(&a, id, &changes[30..33]).applied, 3);
    // B's copy differs from the kept document, so B's next push must start from B's own
    // document: the 5 changes are new there.
    let out = push(&b, id, &changes[20..25]);
    assert_eq!((out.applied, out.acks.len()), (5, 5));
    assert_eq!(stored_heads(&b, id), vec![changes[24].hash()]);
    // One change at a time, as an app syncing after every action: each push starts from
    // the document the previous one kept, and the stored result is the same.
    for c in &changes[25..30] {
        assert_eq!(push(&b, id, std::slice::from_ref(c)).applied, 1);
        assert_eq!(stored_heads(&b, id), vec![c.hash()]);
    }
    // Back on A, which holds 33: those five are known, the last four new.
    let out = push(&a, id, &changes[25..30]);
    assert_eq!((out.applied, out.acks.len()), (0, 5));
    assert_eq!(push(&a, id, &changes[33..]).applied, 4);
    assert_eq!(stored_heads(&a, id), vec![changes[36].hash()]);
    // And B after A: B's copy is still at change 30.
    let out = push(&b, id, &changes[30..]);
    assert_eq!(out.applied, 7);
    assert_eq!(stored_heads(&b, id), vec![changes[36].hash()]);
}
