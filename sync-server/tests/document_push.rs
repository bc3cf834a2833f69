//! Visits pushed as their whole document (`SyncRequest::documents`,
//! `ingest::ingest_document`) get the verdict their changes get when pushed one by one:
//! each case pushes the changes to one server and the document to another, after the same
//! history on both, and compares the acknowledgements, the rejection, the resend request
//! and what each server then stores. Then the document-only refusals (bytes that are no
//! document, heads that do not match, limits, the request's budget), and a device that
//! learns from the server's answers to push new visits whole.

use automerge::{ActorId, Automerge, Change, ChangeHash, ReadDoc, transaction::Transactable};
use fieldsync_core::document::VisitDoc;
use fieldsync_core::fixtures::{self, FixtureSize};
use fieldsync_core::model::Role;
use fieldsync_core::sync::guard::OpBudget;
use fieldsync_core::sync::protocol::{VisitChanges, VisitDocument, encode_change};
use fieldsync_core::visit::Author;
use fieldsync_server::ingest::{
    Outcome, VisitLimits, Writer, ingest, ingest_document, ingest_within,
};
use fieldsync_server::{SqliteStore, Store};
use std::collections::BTreeSet;

mod common;

/// 2026-11-27 09:00 UTC.
const NOW: i64 = 1_795_770_000_000;

fn today() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 11, 27).unwrap()
}

fn server(dir: &std::path::Path, name: &str) -> SqliteStore {
    let store = SqliteStore::open(&dir.join(name)).unwrap();
    store
        .import_reference(fixtures::reference_data(
            5,
            &FixtureSize::default(),
            today(),
        ))
        .unwrap();
    store
}

fn writer(user: &str, role: Role, device: &str) -> Writer {
    Writer {
        user_id: user.into(),
        role,
        territories: vec!["t-1".into()],
        device_id: device.into(),
        scope: None,
        ever_listed: None,
    }
}

fn rep(device: &str) -> Writer {
    writer("rep-1", Role::Rep, device)
}

fn changes_of(id: &str, changes: &[Change]) -> VisitChanges {
    VisitChanges {
        visit_id: id.into(),
        changes: changes
            .iter()
            .map(|c| encode_change(c.raw_bytes()))
            .collect(),
    }
}

fn push_document(store: &SqliteStore, w: &Writer, d: &VisitDocument) -> Outcome {
    let refs = store.reference().unwrap();
    let mut budget = OpBudget::per_request();
    ingest_document(
        store,
        w,
        &refs.index(),
        d,
        &mut budget,
        &VisitLimits::default(),
    )
    .unwrap()
}

/// What a server holds of visit `id`: its metadata and heads.
fn held(store: &SqliteStore, id: &str) -> Option<(String, BTreeSet<ChangeHash>)> {
    store.visit(id).unwrap().map(|v| {
        let heads = Automerge::load(&v.doc).unwrap().get_heads();
        (format!("{:?}", v.meta), heads.into_iter().collect())
    })
}

/// The verdict, order aside.
fn verdict(o: &Outcome) -> (BTreeSet<String>, usize, Option<String>, bool) {
    (
        o.acks.iter().cloned().collect(),
        o.applied,
        o.rejection.as_ref().map(|r| r.reason.clone()),
        o.resend.is_some(),
    )
}

/// Runs `history` on two fresh servers, then pushes `am`'s changes as `w` to one and its
/// document to the other. Asserts the same verdict and the same stored state; returns
/// the verdict.
fn same_verdict(history: &dyn Fn(&SqliteStore), w: &Writer, id: &str, am: &Automerge) -> Outcome {
    same_verdict_as(history, w, id, am, &am.get_changes(&[]))
}

/// [`same_verdict`], the changes pushed being `changes` (of `am`): what the device's outbox
/// holds, when the document also holds changes by others.
fn same_verdict_as(
    history: &dyn Fn(&SqliteStore),
    w: &Writer,
    id: &str,
    am: &Automerge,
    changes: &[Change],
) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (server(dir.path(), "a.db"), server(dir.path(), "b.db"));
    history(&a);
    history(&b);
    let as_changes = ingest(
        &a,
        w,
        &a.reference().unwrap().index(),
        &changes_of(id, changes),
    )
    .unwrap();
    let as_document = push_document(&b, w, &VisitDocument::of(id, am));
    assert_eq!(verdict(&as_document), verdict(&as_changes), "visit {id}");
    assert_eq!(held(&b, id), held(&a, id), "visit {id}");
    // Saved with Automerge's DEFLATE-compressed columns, which the server does not read
    // the ops from (it rebuilds the changes from the document instead): the same again.
    let c = server(dir.path(), "c.db");
    history(&c);
    let compressed = VisitDocument {
        doc: encode_change(&am.save()),
        ..VisitDocument::of(id, am)
    };
    let as_compressed = push_document(&c, w, &compressed);
    assert_eq!(verdict(&as_compressed), verdict(&as_changes), "visit {id}");
    assert_eq!(held(&c, id), held(&a, id), "visit {id}");
    for c in am.get_changes(&[]) {
        let actor = c.actor_id().to_hex_string();
        assert_eq!(
            b.actor_binding(&actor).unwrap(),
            a.actor_binding(&actor).unwrap()
        );
    }
    as_document
}

fn none(_: &SqliteStore) {}

/// A typical visit (37 changes by actor 7…7) of `rep_id` at a store of `territory`, as
/// device `device` of rep-1 records it.
fn visit(id: &str, territory: &str, rep_id: &str, device: &str) -> VisitDoc {
    let r = fixtures::reference_data(5, &FixtureSize::default(), today());
    let author = Author {
        user_id: "rep-1".into(),
        device_id: device.into(),
    };
    fixtures::typical_visits(&r, territory, today())[0]
        .document(id, rep_id, &author, ActorId::from(&[7u8; 16][..]), NOW)
        .unwrap()
}

#[test]
fn a_new_visit_pushed_whole_is_taken_as_its_changes_are() {
    let doc = visit("v-new", "t-1", "rep-1", "dev-1");
    let out = same_verdict(&none, &rep("dev-1"), "v-new", doc.automerge());
    assert_eq!(out.rejection, None);
    assert_eq!((out.acks.len(), out.applied), (37, 37));
    assert!(out.whole, "acknowledged whole (by its heads)");

    // Pushed again (its answer was lost): acknowledged again, nothing stored twice.
    let twice = |s: &SqliteStore| {
        let o = push_document(
            s,
            &rep("dev-1"),
            &VisitDocument::of("v-new", doc.automerge()),
        );
        assert_eq!(o.applied, 37);
    };
    let out = same_verdict(&twice, &rep("dev-1"), "v-new", doc.automerge());
    assert_eq!((out.acks.len(), out.applied), (37, 0));
    assert!(out.whole);
}

#[test]
fn a_document_holding_the_stored_visit_adds_only_its_new_changes() {
    let doc = visit("v-more", "t-1", "rep-1", "dev-1");
    let all = doc.automerge().get_changes(&[]);
    let first_ten = |s: &SqliteStore| {
        let o = ingest(
            s,
            &rep("dev-1"),
            &s.reference().unwrap().index(),
            &changes_of("v-more", &all[..10]),
        )
        .unwrap();
        assert_eq!((o.applied, o.rejection), (10, None));
    };
    let out = same_verdict(&first_ten, &rep("dev-1"), "v-more", doc.automerge());
    assert_eq!((out.acks.len(), out.applied, out.rejection), (37, 27, None));

    // The server has a manager's change the device has not seen: the document's changes
    // are merged with it.
    let mut manager_doc =
        VisitDoc::load(&doc.automerge().fork_at(&[all[9].hash()]).unwrap().save()).unwrap();
    manager_doc
        .automerge_mut()
        .set_actor(ActorId::from(&[9u8; 16][..]));
    let manager = Author {
        user_id: "manager-1".into(),
        device_id: "tablet".into(),
    };
    let (_, mhash) = manager_doc
        .edit(&manager, NOW + 60_000, |w| {
            w.set_notes("call the store manager")
        })
        .unwrap();
    let mhash = mhash.unwrap();
    let mchange = manager_doc.automerge().get_change_by_hash(&mhash).unwrap();
    let with_manager = |s: &SqliteStore| {
        first_ten(s);
        let w = writer("manager-1", Role::Manager, "tablet");
        let o = ingest(
            s,
            &w,
            &s.reference().unwrap().index(),
            &changes_of("v-more", std::slice::from_ref(&mchange)),
        )
        .unwrap();
        assert_eq!((o.applied, o.rejection), (1, None));
    };
    let out = same_verdict(&with_manager, &rep("dev-1"), "v-more", doc.automerge());
    assert_eq!((out.acks.len(), out.applied, out.rejection), (37, 27, None));
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), "s.db");
    with_manager(&s);
    push_document(
        &s,
        &rep("dev-1"),
        &VisitDocument::of("v-more", doc.automerge()),
    );
    let (_, heads) = held(&s, "v-more").unwrap();
    let expected: BTreeSet<ChangeHash> = [mhash, all[36].hash()].into_iter().collect();
    assert_eq!(heads, expected);
}

/// A visit manager-1 planned on its tablet (one change by actor 9…9), then filled in on
/// rep-1's device `dev-1` (36 changes by actor 7…7).
fn planned(id: &str) -> VisitDoc {
    let r = fixtures::reference_data(5, &FixtureSize::default(), today());
    let planner = Author {
        user_id: "manager-1".into(),
        device_id: "tablet".into(),
    };
    let author = Author {
        user_id: "rep-1".into(),
        device_id: "dev-1".into(),
    };
    fixtures::typical_visits(&r, "t-1", today())[0]
        .planned_document(
            id,
            "rep-1",
            &planner,
            ActorId::from(&[9u8; 16][..]),
            &author,
            ActorId::from(&[7u8; 16][..]),
            NOW,
        )
        .unwrap()
}

#[test]
fn a_planned_visit_filled_in_on_the_device_is_taken_whole_as_its_changes_are() {
    let doc = planned("v-plan");
    let all = doc.automerge().get_changes(&[]);
    let (plan, mine) = all.split_at(1);
    let planned_here = |s: &SqliteStore| {
        let w = writer("manager-1", Role::Manager, "tablet");
        let o = ingest(
            s,
            &w,
            &s.reference().unwrap().index(),
            &changes_of("v-plan", plan),
        )
        .unwrap();
        assert_eq!((o.applied, o.rejection), (1, None));
    };
    // The document holds the plan the server sent: its 36 new changes are taken, and all
    // 37 acknowledged (as when the plan's change is pushed again with them).
    let out = same_verdict(&planned_here, &rep("dev-1"), "v-plan", doc.automerge());
    assert_eq!((out.acks.len(), out.applied, out.rejection), (37, 36, None));

    // The server lost the plan (restored from an older backup): the manager's change is
    // not the rep's to push. As for the rep's own changes (its outbox), which wait on the
    // plan, nothing is taken, nothing refused, and the server asks to be sent them again
    // later; the visit is not quarantined on the device.
    let out = same_verdict_as(&none, &rep("dev-1"), "v-plan", doc.automerge(), mine);
    assert_eq!((out.applied, &out.rejection), (0, &None));
    assert!(
        out.resend.is_some() && out.acks.is_empty() && !out.whole,
        "{out:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), "s.db");
    let pushed = VisitDocument::of("v-plan", doc.automerge());
    assert_eq!(push_document(&s, &rep("dev-1"), &pushed).applied, 0);
    assert_eq!(held(&s, "v-plan"), None);
    assert_eq!(s.actor_binding(&"09".repeat(16)).unwrap(), None);
    // Once the manager's tablet has resent the plan, the same document goes in.
    planned_here(&s);
    let out = push_document(&s, &rep("dev-1"), &pushed);
    assert!(out.whole);
    assert_eq!((out.acks.len(), out.applied, out.rejection), (37, 36, None));
    let (_, heads) = held(&s, "v-plan").unwrap();
    assert_eq!(heads, doc.automerge().get_heads().into_iter().collect());
}

#[test]
fn a_forged_document_is_refused_as_its_changes_are() {
    // A later change of the rep's own new visit writes the plan.
    let mut am = visit("v-forged", "t-1", "rep-1", "dev-1")
        .automerge()
        .clone();
    let mut tx = am.transaction();
    let (_, plan) = tx.get(automerge::ROOT, "plan").unwrap().unwrap();
    tx.put(&plan, "instructions", "forged by the rep").unwrap();
    tx.commit();
    let out = same_verdict(&none, &rep("dev-1"), "v-forged", &am);
    let reason = out.rejection.unwrap().reason;
    assert!(reason.contains("a rep may not write plan/"), "{reason}");
    assert_eq!(out.acks, Vec::<String>::new());

    // A store outside the rep's territories.
    let doc = visit("v-outside", "t-2", "rep-1", "dev-1");
    let out = same_verdict(&none, &rep("dev-1"), "v-outside", doc.automerge());
    let reason = out.rejection.unwrap().reason;
    assert!(reason.contains("outside your territories"), "{reason}");

    // Another rep's visit.
    let doc = visit("v-theirs", "t-1", "rep-2", "dev-1");
    let out = same_verdict(&none, &rep("dev-1"), "v-theirs", doc.automerge());
    let reason = out.rejection.unwrap().reason;
    assert!(
        reason.contains("only create ad-hoc visits for themselves"),
        "{reason}"
    );

    // An actor another device pushed first.
    let other = |s: &SqliteStore| {
        let theirs = visit("v-dev2", "t-1", "rep-1", "dev-2");
        let o = push_document(
            s,
            &rep("dev-2"),
            &VisitDocument::of("v-dev2", theirs.automerge()),
        );
        assert_eq!(o.rejection, None);
    };
    let doc = visit("v-claims", "t-1", "rep-1", "dev-1");
    let out = same_verdict(&other, &rep("dev-1"), "v-claims", doc.automerge());
    let reason = out.rejection.unwrap().reason;
    assert!(reason.contains("belongs to another device"), "{reason}");
}

#[test]
fn a_document_with_an_op_that_none_of_its_changes_holds_is_refused() {
    // The rep's new visit, its last change writing the plan's instructions (which a rep
    // may not) with its last op, forged so that op belongs to no change: Automerge loads
    // the document with the op in its state, and its changes alone look allowed.
    let mut am = visit("v-orphan", "t-1", "rep-1", "dev-1")
        .automerge()
        .clone();
    let mut tx = am.transaction();
    let (_, actual) = tx.get(automerge::ROOT, "actual").unwrap().unwrap();
    tx.put(&actual, "out_dist", 3.5).unwrap();
    let (_, plan) = tx.get(automerge::ROOT, "plan").unwrap().unwrap();
    tx.put(&plan, "instructions", "forged by the rep").unwrap();
    tx.commit();
    let forged = fieldsync_core::fixtures::with_an_op_outside_its_changes(&am.save_nocompress())
        .expect("forged");
    let forged = Automerge::load(&forged).expect("Automerge loads it");
    let (_, plan) = forged.get(automerge::ROOT, "plan").unwrap().unwrap();
    let instructions = forged.get(&plan, "instructions").unwrap().unwrap().0;
    assert_eq!(instructions.as_str(), Some("forged by the rep"));
    // As pushed (ops read from the bytes) and with compressed columns (changes rebuilt).
    for bytes in [forged.save_nocompress(), forged.save()] {
        let dir = tempfile::tempdir().unwrap();
        let store = server(dir.path(), "s.db");
        let d = VisitDocument {
            visit_id: "v-orphan".into(),
            doc: encode_change(&bytes),
            heads: forged.get_heads().iter().map(ToString::to_string).collect(),
            visit: None,
        };
        let out = push_document(&store, &rep("dev-1"), &d);
        let reason = out.rejection.expect("refused").reason;
        assert!(reason.contains("none of its changes holds"), "{reason}");
        assert!(out.acks.is_empty());
        assert_eq!(held(&store, "v-orphan"), None);
    }
}

#[test]
fn bytes_that_are_no_fitting_document_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), "s.db");
    let doc = visit("v-bad", "t-1", "rep-1", "dev-1");
    let good = VisitDocument::of("v-bad", doc.automerge());
    let first_change = encode_change(doc.automerge().get_changes(&[])[0].raw_bytes());
    let mut cut = doc.automerge().save_nocompress();
    cut.truncate(cut.len() / 2);
    // A document chunk whose one op column declares 2^40 rows in a few bytes: refused
    // before Automerge would expand it.
    let mut bomb = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 0];
    let rows_2_40 = [0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 1];
    let mut body = vec![0, 0, 0, 1, 0x42, rows_2_40.len() as u8];
    body.extend(rows_2_40);
    bomb.push(body.len() as u8);
    bomb.extend(body);
    let cases = [
        (
            "not base64",
            VisitDocument {
                doc: "%%%".into(),
                ..good.clone()
            },
            "base64",
        ),
        (
            "a change",
            VisitDocument {
                doc: first_change,
                ..good.clone()
            },
            "a change, not a whole document",
        ),
        (
            "cut short",
            VisitDocument {
                doc: encode_change(&cut),
                ..good.clone()
            },
            "not an Automerge document",
        ),
        (
            "2^40 rows",
            VisitDocument {
                doc: encode_change(&bomb),
                ..good.clone()
            },
            "more than 250000 rows",
        ),
        (
            "wrong heads",
            VisitDocument {
                heads: vec![ChangeHash([1; 32]).to_string()],
                ..good.clone()
            },
            "does not have the heads it was sent with",
        ),
        (
            "no visit id",
            VisitDocument {
                visit_id: " ".into(),
                ..good.clone()
            },
            "invalid visit id",
        ),
    ];
    for (what, d, says) in cases {
        let out = push_document(&s, &rep("dev-1"), &d);
        let reason = out.rejection.map(|r| r.reason).unwrap_or_default();
        assert!(reason.contains(says), "{what}: {reason:?}");
        assert!(out.acks.is_empty(), "{what}");
        assert_eq!(s.counts().unwrap(), (0, 0), "{what}");
    }

    // Over the server's limit for one visit.
    let refs = s.reference().unwrap();
    let small = VisitLimits {
        ops: 1_000,
        doc_bytes: 1_000,
    };
    let out = ingest_document(
        &s,
        &rep("dev-1"),
        &refs.index(),
        &good,
        &mut OpBudget::per_request(),
        &small,
    )
    .unwrap();
    let reason = out.rejection.unwrap().reason;
    assert!(
        reason.contains("is too large") && reason.contains("bytes"),
        "{reason}"
    );
    assert_eq!(s.counts().unwrap(), (0, 0));

    // Over what earlier visits of the request left of its budget: no verdict, for a later
    // request (as for changes).
    let mut budget = OpBudget::per_request();
    budget.spend(budget.limit() - 10).unwrap();
    let out = ingest_document(
        &s,
        &rep("dev-1"),
        &refs.index(),
        &good,
        &mut budget,
        &VisitLimits::default(),
    )
    .unwrap();
    assert_eq!(out, Outcome::default());
    let mut budget = OpBudget::per_request();
    budget.spend(budget.limit() - 10).unwrap();
    let as_changes = changes_of("v-bad", &doc.automerge().get_changes(&[]));
    let out = ingest_within(&s, &rep("dev-1"), &refs.index(), &as_changes, &mut budget).unwrap();
    assert_eq!(out, Outcome::default());
    assert_eq!(s.counts().unwrap(), (0, 0));

    // The good one is taken, packed (as servers send documents to devices) too.
    let out = push_document(&s, &rep("dev-1"), &good);
    assert_eq!((out.acks.len(), out.rejection), (37, None));
    assert_eq!(s.counts().unwrap().0, 1);
    let plain = VisitDocument::of(
        "v-packed",
        visit("v-packed", "t-1", "rep-1", "dev-1").automerge(),
    );
    let saved = fieldsync_core::sync::protocol::decode_change(&plain.doc).unwrap();
    let packed = VisitDocument {
        doc: encode_change(&fieldsync_core::document::pack_document(&saved)),
        ..plain.clone()
    };
    assert_ne!(packed.doc, plain.doc);
    let out = push_document(&s, &rep("dev-1"), &packed);
    assert_eq!((out.acks.len(), out.rejection), (37, None));
    assert_eq!(s.counts().unwrap().0, 2);
}

/// A device pushes a visit made on it, or planned by a manager and filled in on it, whole
/// once an answer said the server takes documents, and changes otherwise (told nothing,
/// or a small edit to a visit the server holds); the server ends with what the device
/// holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_pushes_its_new_visits_whole_once_the_server_says_it_takes_them() {
    let (tmp, _data, r, server) = common::seeded_server();
    let username = r
        .users
        .iter()
        .find(|u| u.role == Role::Rep && u.territory_ids.contains(&"t-1".to_string()))
        .unwrap()
        .username
        .clone();
    let d = common::device(&server, tmp.path(), &username, "phone-doc").await;
    let key = fieldsync_core::sync::client::keys::TAKES_DOCUMENTS;
    assert_eq!(d.store.sync_state(key).unwrap(), None);
    let store_id = common::stores_of(&r, "t-1")[0].clone();
    d.client.sync(&d.store, None).await.unwrap();
    assert_eq!(d.store.sync_state(key).unwrap().as_deref(), Some("1"));

    let first = d.store.create_ad_hoc_visit(&store_id, "tt-quick").unwrap();
    d.store.edit_notes(&first, 0, 0, "made offline").unwrap();
    d.client.sync(&d.store, None).await.unwrap();
    assert_eq!(pushed_whole(&server).await, 1);

    // Told otherwise (an older server), the device pushes changes.
    d.store.set_sync_state(key, "").unwrap();
    let second = d.store.create_ad_hoc_visit(&store_id, "tt-quick").unwrap();
    d.client.sync(&d.store, None).await.unwrap();
    assert_eq!(pushed_whole(&server).await, 1);
    assert_eq!(d.store.sync_state(key).unwrap().as_deref(), Some("1"));

    let third = d.store.create_ad_hoc_visit(&store_id, "tt-quick").unwrap();
    d.store.edit_notes(&third, 0, 0, "made offline").unwrap();
    d.store.edit_notes(&first, 0, 12, ", then more").unwrap();
    let report = d.client.sync(&d.store, None).await.unwrap();
    assert!(report.rejections.is_empty(), "{report:?}");
    assert_eq!(d.store.outbox_len().unwrap(), 0);
    assert_eq!(
        pushed_whole(&server).await,
        2,
        "the new visit; a small edit to a visit the server holds goes as changes"
    );

    // A visit a manager planned, filled in on the device: pushed whole (its plan came
    // from the server).
    let mgr = common::device(&server, tmp.path(), "manager1", "mgr-tablet").await;
    let rep_id = common::user_id(&r, &username);
    let start = common::now() + common::HOUR;
    let planned = common::plan_visit(&server, &mgr.token, &store_id, &rep_id, start).await;
    d.client.sync(&d.store, None).await.unwrap();
    assert_eq!(d.store.outbox_len().unwrap(), 0);
    d.store.set_notes(&planned, "shelf restocked").unwrap();
    d.store.edit_notes(&planned, 0, 5, "Back").unwrap();
    let report = d.client.sync(&d.store, None).await.unwrap();
    assert!(report.rejections.is_empty(), "{report:?}");
    assert_eq!(d.store.outbox_len().unwrap(), 0);
    assert_eq!(
        pushed_whole(&server).await,
        3,
        "the planned visit filled in"
    );
    for id in [&first, &second, &third, &planned] {
        let on_server = common::server_visit(&server, &d.token, id).await.unwrap();
        assert_eq!(on_server, d.store.visit(id).unwrap(), "{id}");
    }
    assert_eq!(d.store.visit(&planned).unwrap().notes, "Back restocked");

    // Rounds acknowledged only by documents are progress: with two outbox changes per
    // request, one sync pushes three new visits whole, one per round, and empties the
    // outbox.
    let small = fieldsync_core::sync::SyncConfig {
        batch: 2,
        ..common::fast_config()
    };
    let client =
        fieldsync_core::sync::SyncClient::with_config(&server.base, &d.token, small).unwrap();
    for _ in 0..3 {
        let id = d.store.create_ad_hoc_visit(&store_id, "tt-quick").unwrap();
        d.store.edit_notes(&id, 0, 0, "made offline").unwrap();
    }
    let report = client.sync(&d.store, None).await.unwrap();
    assert_eq!(d.store.outbox_len().unwrap(), 0, "{report:?}");
    assert_eq!((report.rounds, report.acked), (3, 6), "{report:?}");
    assert_eq!(pushed_whole(&server).await, 6);
}

async fn pushed_whole(server: &common::Server) -> u64 {
    common::metrics(server)
        .await
        .lines()
        .find_map(|l| l.strip_prefix("fieldsync_documents_pushed_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the metric is exposed")
}

/// The same document pushed by several requests at once (a device retrying while its first
/// request still runs), beside pushes of some of its changes: the decisions made on the
/// visit's committed state race; those that find it changed meanwhile are made again inside
/// the write transaction, on the document loaded again from the pushed bytes (the first
/// decision took it), with the changes still new then. No request is refused, the document
/// is acknowledged whole to each that pushed it, each change is stored once, and the visit
/// ends as the document.
#[test]
fn a_document_pushed_by_racing_requests_is_stored_once_and_acknowledged_to_each() {
    let dir = tempfile::tempdir().unwrap();
    let store = server(dir.path(), "race.db");
    let w = rep("dev-1");
    for round in 0..12 {
        let id = format!("v-race-{round}");
        let doc = visit(&id, "t-1", "rep-1", "dev-1");
        let changes = doc.automerge().get_changes(&[]);
        let first = ingest(
            &store,
            &w,
            &store.reference().unwrap().index(),
            &changes_of(&id, &changes[..10]),
        )
        .unwrap();
        assert_eq!((first.applied, first.rejection), (10, None));
        let pushed = VisitDocument::of(&id, doc.automerge());
        let start = std::sync::Barrier::new(4);
        let (whole, parts): (Vec<Outcome>, Vec<Outcome>) = std::thread::scope(|s| {
            let whole: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        push_document(&store, &w, &pushed)
                    })
                })
                .collect();
            let parts: Vec<_> = [10..20, 20..30]
                .into_iter()
                .map(|range| {
                    let (start, w, store, id) = (&start, &w, &store, &id);
                    let group = changes_of(id, &changes[range]);
                    s.spawn(move || {
                        start.wait();
                        let refs = store.reference().unwrap();
                        ingest(store, w, &refs.index(), &group).unwrap()
                    })
                })
                .collect();
            let join = |hs: Vec<std::thread::ScopedJoinHandle<'_, Outcome>>| {
                hs.into_iter()
                    .map(|h| h.join().unwrap())
                    .collect::<Vec<_>>()
            };
            (join(whole), join(parts))
        });
        for o in &whole {
            assert_eq!(o.rejection, None, "{id}");
            assert!(o.whole && o.acks.len() == 37, "{id}: {o:?}");
        }
        // (Changes 20..30 arriving before 10..20 are stored are sent again: a resend.)
        for o in &parts {
            assert_eq!(o.rejection, None, "{id}");
        }
        let applied: usize = whole.iter().chain(&parts).map(|o| o.applied).sum();
        assert_eq!(applied, 27, "{id}: each change stored once");
        let stored = store.visit(&id).unwrap().unwrap();
        let heads = Automerge::load(&stored.doc).unwrap().get_heads();
        assert_eq!(heads, doc.automerge().get_heads(), "{id}");
    }
}
