//! One conformance suite for every storage backend: each case below runs against SQLite
//! (`sqlite::…`) and PostgreSQL (`postgres::…`, a database of its own per test on the
//! cluster named by `FIELDSYNC_TEST_DATABASE_URL`; see `common/pg.rs`).
//!
//! Cases that need concurrency open the same database twice (two SQLite connections on one
//! file; two PostgreSQL pools, as two server instances would).

#![allow(clippy::result_large_err)] // StoreError is the trait's error type

#[path = "common/pg.rs"]
mod pg;

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ROOT, ReadDoc};
use fieldsync_core::fixtures::{self, FixtureSize};
use fieldsync_core::model::Role;
use fieldsync_server::store::{
    LogEntry, NewUser, PullPage, PullQuery, Scope, StoreError, StoreResult, VisitMeta,
};
use fieldsync_server::{PgOptions, PgStore, SqliteStore, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A database under test: open it (again), or open a restored backup of it.
trait Backend {
    fn open(&self) -> Arc<dyn Store>;
    fn restore(&self, backup: &Path) -> Arc<dyn Store>;
    fn scratch(&self) -> PathBuf;
    /// Before the first `open`: the database as a version-1 server left it, holding
    /// `visits` (id, document) and the version-1 change log (one row per change).
    fn version_1(&self, visits: &[(&str, Vec<u8>)], log: &[V1Change]);
}

/// A row of the version-1 change log.
struct V1Change {
    seq: i64,
    visit_id: String,
    hash: String,
    bytes: Vec<u8>,
    device_id: String,
}

const SQLITE_V1: &str = include_str!("../migrations/sqlite/0001_init.sql");
const POSTGRES_V1: &str = include_str!("../migrations/postgres/0001_init.sql");

struct Sqlite(tempfile::TempDir);

impl Backend for Sqlite {
    fn open(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open_dir(self.0.path()).unwrap())
    }
    fn restore(&self, backup: &Path) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(backup).unwrap())
    }
    fn scratch(&self) -> PathBuf {
        self.0.path().to_path_buf()
    }
    fn version_1(&self, visits: &[(&str, Vec<u8>)], log: &[V1Change]) {
        let c = rusqlite::Connection::open(self.0.path().join("fieldsync.db")).unwrap();
        // A database of a server before the schema was numbered: user_version 0.
        c.execute_batch(SQLITE_V1).unwrap();
        for (id, doc) in visits {
            c.execute(
                "INSERT INTO visits (visit_id, store_id, territory_id, rep_id, planned_start, status, doc)
                 VALUES (?1, 'st-t-1', 't-1', 'u-1', 1000, 'planned', ?2)",
                rusqlite::params![id, doc],
            )
            .unwrap();
        }
        for l in log {
            c.execute(
                "INSERT INTO change_log (seq, visit_id, hash, bytes, device_id, territory_id, planned_start)
                 VALUES (?1, ?2, ?3, ?4, ?5, 't-1', 1000)",
                rusqlite::params![l.seq, l.visit_id, l.hash, l.bytes, l.device_id],
            )
            .unwrap();
        }
        c.execute(
            "INSERT INTO device_visits (device_id, visit_id) VALUES ('dev-a', 'v-1'), ('dev-b', 'v-1')",
            [],
        )
        .unwrap();
    }
}

struct Postgres {
    db: pg::TestDb,
    restored: Mutex<Vec<pg::TestDb>>,
    dir: tempfile::TempDir,
}

fn pg_opts() -> PgOptions {
    PgOptions {
        pool_size: 8,
        ..PgOptions::default()
    }
}

impl Backend for Postgres {
    fn open(&self) -> Arc<dyn Store> {
        Arc::new(PgStore::connect(&self.db.url, &pg_opts()).unwrap())
    }
    fn restore(&self, backup: &Path) -> Arc<dyn Store> {
        let cluster = std::env::var(pg::URL_VAR).unwrap();
        let db = pg::TestDb::create_on(&cluster);
        let out = std::process::Command::new("pg_restore")
            .args(["--no-owner", "--exit-on-error", "--dbname", &db.url])
            .arg(backup)
            .output()
            .expect("run pg_restore");
        assert!(
            out.status.success(),
            "pg_restore: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = Arc::new(PgStore::connect(&db.url, &pg_opts()).unwrap());
        self.restored.lock().unwrap().push(db);
        s
    }
    fn scratch(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
    fn version_1(&self, visits: &[(&str, Vec<u8>)], log: &[V1Change]) {
        type Param<'a> = &'a (dyn ::postgres::types::ToSql + Sync);
        let mut c = ::postgres::Client::connect(&self.db.url, ::postgres::NoTls).unwrap();
        c.batch_execute(POSTGRES_V1).unwrap();
        c.batch_execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
               applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
             INSERT INTO schema_migrations (version, name) VALUES (1, 'init');",
        )
        .unwrap();
        for (id, doc) in visits {
            c.execute(
                "INSERT INTO visits (visit_id, store_id, territory_id, rep_id, planned_start, status, doc)
                 VALUES ($1, 'st-t-1', 't-1', 'u-1', 1000, 'planned', $2)",
                &[id as Param<'_>, doc],
            )
            .unwrap();
        }
        for l in log {
            c.execute(
                "INSERT INTO change_log (seq, visit_id, hash, bytes, device_id, territory_id, planned_start)
                 VALUES ($1, $2, $3, $4, $5, 't-1', 1000)",
                &[
                    &l.seq as Param<'_>,
                    &l.visit_id,
                    &l.hash,
                    &l.bytes,
                    &l.device_id,
                ],
            )
            .unwrap();
        }
        c.batch_execute(
            "INSERT INTO device_visits (device_id, visit_id) VALUES ('dev-a', 'v-1'), ('dev-b', 'v-1')",
        )
        .unwrap();
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $case() {
                    let b = super::Sqlite(tempfile::tempdir().unwrap());
                    super::$case(&b);
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $case() {
                    let Some(db) = super::pg::TestDb::create(stringify!($case)) else { return };
                    let b = super::Postgres {
                        db,
                        restored: std::sync::Mutex::new(Vec::new()),
                        dir: tempfile::tempdir().unwrap(),
                    };
                    super::$case(&b);
                }
            )*
        }
    };
}

conformance!(
    users_tokens_and_revocation,
    reference_data_versions_survive_reopening,
    a_visit_write_commits_whole_or_not_at_all,
    pull_sends_whole_visits_then_the_feed_pages_and_purges,
    heads_after_a_restore_ask_for_what_the_server_lacks,
    backup_restores_everything_under_a_new_epoch,
    dashboard_queries_by_range_and_since,
    concurrent_pushes_to_one_visit_through_two_instances_lose_nothing,
    cursors_never_skip_a_change_under_concurrent_writers,
    whole_documents_for_visits_entering_the_scope_then_exact_changes,
    a_version_1_database_is_upgraded_and_no_cursor_skips_a_change,
    visits_entering_and_leaving_the_scope_arrive_once_across_pages,
    a_duplicated_request_cannot_cancel_the_answer_the_device_confirms,
    a_late_copy_of_a_first_request_cannot_cancel_the_answer_the_device_confirms,
    a_territory_scope_is_held_exactly_after_every_complete_pull,
);

// ---------------------------------------------------------------- helpers

const T1: &str = "t-1";
const T2: &str = "t-2";

fn meta(visit: &str, territory: &str, rep: &str, start: i64) -> VisitMeta {
    VisitMeta {
        visit_id: visit.into(),
        store_id: format!("st-{territory}"),
        territory_id: territory.into(),
        rep_id: rep.into(),
        planned_start: start,
        status: "planned".into(),
    }
}

/// Pushes one new change (`key` = `val`, by a fresh actor) to `visit` the way ingest
/// does: read the stored document inside the transaction, apply, save. Returns its hash.
fn push(store: &dyn Store, m: &VisitMeta, device: &str, key: &str, val: i64) -> String {
    let mut hash = String::new();
    store
        .with_visit(&m.visit_id, &mut |t| {
            let mut doc = match t.stored()? {
                Some(s) => Automerge::load(&s.doc)?,
                None => Automerge::new(),
            };
            doc.set_actor(ActorId::random());
            let heads_before = doc.get_heads();
            let mut tx = doc.transaction();
            tx.put(ROOT, key, val)?;
            tx.commit();
            let c = doc.get_last_local_change().unwrap();
            hash = c.hash().to_string();
            let log = LogEntry {
                changes: 1,
                heads_before,
                hold: true,
            };
            // What was read from the document: here, the head it was saved at (every
            // push adds one change to what is stored, so a stored document has one head).
            t.save(
                m,
                &doc.save(),
                &doc.get_heads(),
                hash.as_bytes(),
                &log,
                device,
            )
        })
        .unwrap();
    hash
}

fn hash_of(bytes: &[u8]) -> String {
    automerge::Change::from_bytes(bytes.to_vec())
        .unwrap()
        .hash()
        .to_string()
}

fn scope(territory: &str) -> Scope {
    Scope {
        territories: Some(vec![territory.into()]),
        rep_id: None,
        window: None,
    }
}

/// A cursor as a device holds it: the sequence number and the token confirming the page
/// that carried it (see `PullPage::token`).
type Cur = (i64, Option<String>);

/// A device's pull as the sync endpoint makes it: a [`PullQuery`], and the token of the
/// answer the device confirms with it (from its cursor), applied first.
#[derive(Clone, Debug)]
struct Query {
    device_id: String,
    scope: Scope,
    cursor: Option<i64>,
    token: Option<String>,
    heads: Option<BTreeMap<String, Vec<String>>>,
    limit: usize,
    documents: bool,
    /// With `documents`: the visits saved with them too.
    visits: bool,
}

/// The page for `q`, after `Store::confirm` of `q.token` when set.
fn pull(store: &dyn Store, q: &Query) -> StoreResult<PullPage> {
    if let Some(token) = &q.token {
        store.confirm(&q.device_id, token)?;
    }
    store.pull(&PullQuery {
        device_id: q.device_id.clone(),
        scope: q.scope.clone(),
        cursor: q.cursor,
        heads: q.heads.clone(),
        limit: q.limit,
        documents: q.documents,
        visits: q.visits,
    })
}

fn query(device: &str, territory: &str, cursor: Option<Cur>, limit: usize) -> Query {
    let (cursor, token) = match cursor {
        Some((c, t)) => (Some(c), t),
        None => (None, None),
    };
    Query {
        device_id: device.into(),
        scope: scope(territory),
        cursor,
        token,
        heads: None,
        limit,
        documents: false,
        visits: false,
    }
}

/// The change hashes a page carries for each visit, whether as changes or as documents.
fn page_hashes(page: &PullPage) -> BTreeMap<String, BTreeSet<String>> {
    let mut got: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (v, cs) in &page.changes {
        got.entry(v.clone())
            .or_default()
            .extend(cs.iter().map(|c| hash_of(c)));
    }
    for d in &page.documents {
        let (v, heads) = (&d.visit_id, &d.heads);
        let am =
            Automerge::load(&fieldsync_core::document::unpack_document(&d.doc).unwrap()).unwrap();
        let mut hs: Vec<String> = am.get_heads().iter().map(ToString::to_string).collect();
        hs.sort();
        let mut declared = heads.clone();
        declared.sort();
        assert_eq!(hs, declared, "a document's declared heads are its heads");
        // A visit sent with a document is what its last save saved with it (`push`: its
        // one head).
        if let Some(visit) = &d.visit {
            assert_eq!(visit, hs[0].as_bytes(), "the visit saved with the document");
        }
        got.entry(v.clone())
            .or_default()
            .extend(am.get_changes(&[]).iter().map(|c| c.hash().to_string()));
    }
    got
}

/// Pulls until `more` is false, confirming each page as a device does; returns (cursor,
/// hashes per visit, purged).
fn pull_all(
    store: &dyn Store,
    mut q: Query,
) -> (Cur, BTreeMap<String, BTreeSet<String>>, Vec<String>) {
    let mut got: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut purged = Vec::new();
    for _ in 0..10_000 {
        let page = pull(store, &q).unwrap();
        for (v, hs) in page_hashes(&page) {
            got.entry(v).or_default().extend(hs);
        }
        purged.extend(page.purge);
        q.cursor = Some(page.cursor);
        q.token = page.token.clone();
        q.heads = None;
        if !page.more {
            return ((page.cursor, page.token), got, purged);
        }
    }
    panic!("pull never finished");
}

// ---------------------------------------------------------------- cases

fn users_tokens_and_revocation(b: &dyn Backend) {
    let s = b.open();
    let epoch = s.epoch().unwrap();
    assert_eq!(epoch.len(), 32);
    assert_eq!(s.epoch().unwrap(), epoch, "the epoch is stable");
    let u = NewUser {
        id: "u-1".into(),
        username: "ann".into(),
        role: Role::Rep,
        territories: vec![T1.into(), T2.into()],
        password_hash: "hash".into(),
    };
    s.create_user(&u).unwrap();
    assert!(matches!(s.create_user(&u), Err(StoreError::Conflict(_))));
    let by_name = s.user_by_username("ann").unwrap().unwrap();
    assert_eq!(by_name.id, "u-1");
    assert_eq!(by_name.role, Role::Rep);
    assert_eq!(by_name.territories, vec![T1.to_string(), T2.to_string()]);
    assert!(!by_name.disabled);
    assert_eq!(s.user_by_id("u-1").unwrap().unwrap(), by_name);
    assert!(s.user_by_username("bob").unwrap().is_none());

    let t1 = s.create_token("u-1", "dev-a", "h1", 1).unwrap();
    let t2 = s.create_token("u-1", "dev-b", "h2", 2).unwrap();
    let (user, tok) = s.authenticate("h1").unwrap().unwrap();
    assert_eq!(user, by_name);
    assert_eq!(
        (tok.id.as_str(), tok.device_id.as_str()),
        (t1.as_str(), "dev-a")
    );
    assert!(s.authenticate("nope").unwrap().is_none());
    assert!(s.revoke_token(&t1, 3).unwrap());
    assert!(!s.revoke_token(&t1, 4).unwrap(), "already revoked");
    assert!(s.authenticate("h1").unwrap().is_none());
    assert!(s.authenticate("h2").unwrap().is_some());
    assert_eq!(s.revoke_user("ann", 5).unwrap(), 1);
    assert!(s.authenticate("h2").unwrap().is_none());
    assert!(matches!(
        s.revoke_user("bob", 5),
        Err(StoreError::NotFound(_))
    ));
    let _ = t2;
    // Another instance sees the same database.
    let again = b.open();
    assert_eq!(again.epoch().unwrap(), epoch);
    assert!(again.user_by_username("ann").unwrap().is_some());
}

fn reference_data_versions_survive_reopening(b: &dyn Backend) {
    let s = b.open();
    assert_eq!(s.reference().unwrap().version, 0);
    let today = chrono::Utc::now().date_naive();
    let r = fixtures::reference_data(5, &FixtureSize::default(), today);
    let v1 = s.import_reference(r.clone()).unwrap();
    assert!(v1 >= 1);
    let v2 = s.import_reference(r.clone()).unwrap();
    assert!(v2 > v1, "every import gets a higher version");
    let got = s.reference().unwrap();
    assert_eq!(got.version, v2);
    assert_eq!(got.stores.len(), r.stores.len());
    // Every import is kept for reports, with when it was imported.
    let now = chrono::Utc::now().timestamp_millis();
    let kept = s.reference_versions().unwrap();
    assert_eq!(kept.iter().map(|k| k.0).collect::<Vec<_>>(), vec![v1, v2]);
    assert!(kept[0].1 <= kept[1].1, "{kept:?}");
    assert!(
        kept.iter().all(|k| (now - 60_000..=now).contains(&k.1)),
        "{kept:?}"
    );
    let old = s.reference_version(v1).unwrap().expect("version 1 kept");
    assert_eq!(old.version, v1);
    assert_eq!(old.products, r.products);
    assert_eq!(old.stores, r.stores);
    assert!(s.reference_version(v2 + 100).unwrap().is_none());
    let other = b.open();
    assert_eq!(other.reference().unwrap().version, v2);
    // An import through one instance is seen by another already open.
    let v3 = other.import_reference(r).unwrap();
    if b.scratch().join("fieldsync.db").exists() {
        // SQLite: one process owns the file; a reopened store reads it.
        assert_eq!(b.open().reference().unwrap().version, v3);
    } else {
        assert_eq!(s.reference().unwrap().version, v3);
    }
    assert_eq!(
        s.reference_versions()
            .unwrap()
            .iter()
            .map(|k| k.0)
            .collect::<Vec<_>>(),
        vec![v1, v2, v3]
    );
}

fn a_visit_write_commits_whole_or_not_at_all(b: &dyn Backend) {
    let s = b.open();
    let m = meta("v-1", T1, "u-1", 1_000);
    assert!(s.visit("v-1").unwrap().is_none());
    // A failing transaction leaves nothing.
    let err = s.with_visit("v-1", &mut |t| {
        assert!(t.stored()?.is_none());
        t.bind_actor("aa", "dev-a", "u-1")?;
        let log = LogEntry {
            changes: 1,
            heads_before: Vec::new(),
            hold: true,
        };
        t.save(&m, b"junk", &[], b"junk", &log, "dev-a")?;
        Err(StoreError::Conflict("no".into()))
    });
    assert!(matches!(err, Err(StoreError::Conflict(_))));
    assert!(s.visit("v-1").unwrap().is_none());
    assert_eq!(s.counts().unwrap(), (0, 0));
    s.with_visit("v-1", &mut |t| {
        assert!(t.actor_binding("aa")?.is_none(), "rolled back");
        Ok(())
    })
    .unwrap();

    let h1 = push(s.as_ref(), &m, "dev-a", "a", 1);
    s.with_visit("v-1", &mut |t| {
        t.bind_actor("aa", "dev-a", "u-1")?;
        t.bind_actor("aa", "dev-b", "u-2")?; // first binding wins
        Ok(())
    })
    .unwrap();
    let h2 = push(s.as_ref(), &m, "dev-a", "b", 2);
    assert_ne!(h1, h2);
    let v = s.visit("v-1").unwrap().unwrap();
    assert_eq!(v.meta, m);
    let doc = Automerge::load(&v.doc).unwrap();
    assert!(doc.get(ROOT, "a").unwrap().is_some() && doc.get(ROOT, "b").unwrap().is_some());
    assert_eq!(s.counts().unwrap(), (1, 2));
    s.with_visit("v-1", &mut |t| {
        assert_eq!(
            t.actor_binding("aa")?,
            Some(("dev-a".to_string(), "u-1".to_string()))
        );
        // Saving the document again without new changes adds nothing to the log.
        let st = t.stored()?.unwrap();
        let heads = Automerge::load(&st.doc)?.get_heads();
        t.save(
            &st.meta,
            &st.doc,
            &heads,
            b"",
            &LogEntry::default(),
            "dev-a",
        )
    })
    .unwrap();
    assert_eq!(s.counts().unwrap(), (1, 2));
    let _ = h1;
}

fn pull_sends_whole_visits_then_the_feed_pages_and_purges(b: &dyn Backend) {
    let s = b.open();
    let v1 = meta("v-1", T1, "u-1", 1_000);
    let v2 = meta("v-2", T1, "u-1", 2_000);
    let other = meta("v-9", T2, "u-2", 1_000);
    let mut all: BTreeSet<String> = BTreeSet::new();
    for i in 0..3 {
        all.insert(push(s.as_ref(), &v1, "dev-x", &format!("k{i}"), i));
    }
    push(s.as_ref(), &other, "dev-x", "k", 0);
    // First sync: the visit in scope whole, the cursor at the end.
    let (cursor, got, purged) = pull_all(s.as_ref(), query("dev-a", T1, None, 100));
    assert_eq!(got.keys().collect::<Vec<_>>(), vec!["v-1"]);
    assert_eq!(got["v-1"], all);
    assert!(purged.is_empty());
    // Nothing new: nothing sent, the cursor stays.
    let (c2, got, _) = pull_all(s.as_ref(), query("dev-a", T1, Some(cursor.clone()), 100));
    assert!(got.is_empty());
    assert_eq!(c2.0, cursor.0);
    // New changes by others arrive, in pages; the device's own are not echoed.
    let mut fresh = BTreeSet::new();
    for i in 0..7 {
        fresh.insert(push(s.as_ref(), &v1, "dev-x", &format!("n{i}"), i));
    }
    push(s.as_ref(), &v1, "dev-a", "mine", 1);
    let cursor = c2;
    let first = pull(s.as_ref(), &query("dev-a", T1, Some(cursor.clone()), 3)).unwrap();
    assert!(first.more);
    assert_eq!(first.changes.iter().map(|(_, c)| c.len()).sum::<usize>(), 3);
    let (c3, got, _) = pull_all(s.as_ref(), query("dev-a", T1, Some(cursor.clone()), 3));
    assert_eq!(got["v-1"], fresh);
    assert!(c3.0 > cursor.0);
    // A new visit entering the scope is sent whole.
    let h = push(s.as_ref(), &v2, "dev-x", "z", 1);
    let (c4, got, _) = pull_all(s.as_ref(), query("dev-a", T1, Some(c3), 100));
    assert_eq!(got["v-2"], BTreeSet::from([h]));
    // Leaving the scope (moved to another territory): purged once.
    let moved = meta("v-2", T2, "u-2", 2_000);
    push(s.as_ref(), &moved, "dev-x", "moved", 1);
    let (c5, got, purged) = pull_all(s.as_ref(), query("dev-a", T1, Some(c4), 100));
    assert!(!got.contains_key("v-2"));
    assert_eq!(purged, vec!["v-2".to_string()]);
    let (_, _, purged) = pull_all(s.as_ref(), query("dev-a", T1, Some(c5), 100));
    assert!(purged.is_empty());
    // The window and the rep narrow the scope.
    let mut q = query("dev-w", T1, None, 100);
    q.scope.window = Some((1_500, 3_000));
    let (_, got, _) = pull_all(s.as_ref(), q);
    assert!(got.is_empty(), "v-1 is before the window: {got:?}");
    let mut q = query("dev-r", T1, None, 100);
    q.scope.rep_id = Some("u-2".into());
    let (_, got, _) = pull_all(s.as_ref(), q);
    assert!(got.is_empty());
}

fn heads_after_a_restore_ask_for_what_the_server_lacks(b: &dyn Backend) {
    let s = b.open();
    let v1 = meta("v-1", T1, "u-1", 1_000);
    let h1 = push(s.as_ref(), &v1, "dev-x", "a", 1);
    // The device holds v-1 at a change the server does not know, and v-5 it never saw.
    let mut device_doc = Automerge::load(&s.visit("v-1").unwrap().unwrap().doc).unwrap();
    let mut tx = device_doc.transaction();
    tx.put(ROOT, "device", 1).unwrap();
    tx.commit();
    let device_heads: Vec<String> = device_doc
        .get_heads()
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut q = query("dev-a", T1, None, 100);
    q.heads = Some(BTreeMap::from([
        ("v-1".to_string(), device_heads),
        ("v-5".to_string(), vec![h1.clone()]),
    ]));
    let page = pull(s.as_ref(), &q).unwrap();
    let resend: BTreeMap<_, _> = page.resend.into_iter().collect();
    assert_eq!(resend["v-1"], vec![h1.clone()], "the server's heads");
    assert!(resend["v-5"].is_empty());
    assert!(page.purge.is_empty());
    // Heads the server knows: nothing to resend, nothing sent that the device has.
    let mut q = query("dev-b", T1, None, 100);
    q.heads = Some(BTreeMap::from([("v-1".to_string(), vec![h1])]));
    let page = pull(s.as_ref(), &q).unwrap();
    assert!(page.resend.is_empty());
    assert!(page.changes.iter().all(|(_, c)| c.is_empty()));
}

fn backup_restores_everything_under_a_new_epoch(b: &dyn Backend) {
    let s = b.open();
    let v1 = meta("v-1", T1, "u-1", 1_000);
    push(s.as_ref(), &v1, "dev-x", "a", 1);
    push(s.as_ref(), &v1, "dev-x", "b", 2);
    s.create_user(&NewUser {
        id: "u-1".into(),
        username: "ann".into(),
        role: Role::Rep,
        territories: vec![T1.into()],
        password_hash: "h".into(),
    })
    .unwrap();
    let (c, _, _) = pull_all(s.as_ref(), query("dev-a", T1, None, 100));
    let path = b.scratch().join("backup.bin");
    s.backup(&path).unwrap();
    let restored = b.restore(&path);
    assert_ne!(restored.epoch().unwrap(), s.epoch().unwrap());
    assert_eq!(restored.counts().unwrap(), s.counts().unwrap());
    assert!(restored.user_by_username("ann").unwrap().is_some());
    // The restored server forgot what devices hold: the device's next pull (with its
    // heads, after seeing the new epoch) gets the visit again.
    let (_, got, _) = pull_all(restored.as_ref(), query("dev-a", T1, Some(c), 100));
    assert_eq!(got["v-1"].len(), 2);
    // New writes continue the sequence.
    push(restored.as_ref(), &v1, "dev-x", "c", 3);
    assert_eq!(restored.counts().unwrap().1, 3);
}

fn dashboard_queries_by_range_and_since(b: &dyn Backend) {
    let s = b.open();
    let (since0, ids) = s.changes_since(None, 0, 10).unwrap();
    assert_eq!((since0, ids.len()), (0, 0));
    push(s.as_ref(), &meta("v-1", T1, "u-1", 1_000), "d", "a", 1);
    push(s.as_ref(), &meta("v-2", T1, "u-1", 3_000), "d", "a", 1);
    push(s.as_ref(), &meta("v-3", T2, "u-2", 2_000), "d", "a", 1);
    let (top, ids) = s.changes_since(None, 0, 10).unwrap();
    assert_eq!(ids, vec!["v-3", "v-2", "v-1"]);
    let (t1_top, ids) = s.changes_since(Some(&[T1.to_string()]), 0, 1).unwrap();
    assert_eq!(ids, vec!["v-2"]);
    assert!(t1_top < top);
    let (same, ids) = s.changes_since(None, top, 10).unwrap();
    assert_eq!((same, ids.len()), (top, 0));
    let all: Vec<String> = s
        .visits_in_range(None, 0, 10_000)
        .unwrap()
        .into_iter()
        .map(|v| v.meta.visit_id)
        .collect();
    assert_eq!(all, vec!["v-1", "v-3", "v-2"], "by planned start");
    let t1: Vec<String> = s
        .visits_in_range(Some(&[T1.to_string()]), 1_000, 2_999)
        .unwrap()
        .into_iter()
        .map(|v| v.meta.visit_id)
        .collect();
    assert_eq!(t1, vec!["v-1"]);
    // Without the documents: the same visits, the same metadata.
    for (territories, from, to) in [
        (None, 0, 10_000),
        (Some(vec![T1.to_string()]), 1_000, 2_999),
        (Some(vec![T2.to_string()]), 0, 1_999),
    ] {
        let whole: Vec<_> = s
            .visits_in_range(territories.as_deref(), from, to)
            .unwrap()
            .into_iter()
            .map(|v| v.meta)
            .collect();
        let metas = s
            .visit_metas_in_range(territories.as_deref(), from, to)
            .unwrap();
        assert_eq!(metas, whole, "{territories:?} {from}..={to}");
    }
    let metas = s.visit_metas_in_range(None, 0, 10_000).unwrap();
    assert_eq!(metas.len(), 3);
    assert_eq!(
        (metas[1].territory_id.as_str(), metas[1].planned_start),
        (T2, 2_000)
    );
}

fn concurrent_pushes_to_one_visit_through_two_instances_lose_nothing(b: &dyn Backend) {
    let instances = [b.open(), b.open()];
    let m = meta("v-hot", T1, "u-1", 1_000);
    let writers = 6;
    let each: usize = 15;
    let hashes = Mutex::new(BTreeSet::new());
    std::thread::scope(|sc| {
        for w in 0..writers {
            let store = instances[w % 2].clone();
            let (m, hashes) = (&m, &hashes);
            sc.spawn(move || {
                for i in 0..each {
                    let h = push(
                        store.as_ref(),
                        m,
                        &format!("dev-{w}"),
                        &format!("w{w}-{i}"),
                        i as i64,
                    );
                    hashes.lock().unwrap().insert(h);
                }
            });
        }
    });
    let hashes = hashes.into_inner().unwrap();
    assert_eq!(hashes.len(), writers * each);
    for s in &instances {
        let doc = Automerge::load(&s.visit("v-hot").unwrap().unwrap().doc).unwrap();
        for w in 0..writers {
            for i in 0..each {
                assert!(
                    doc.get(ROOT, format!("w{w}-{i}")).unwrap().is_some(),
                    "w{w}-{i} lost from the document"
                );
            }
        }
        assert_eq!(s.counts().unwrap(), (1, (writers * each) as i64));
    }
    let (_, got, _) = pull_all(instances[0].as_ref(), query("reader", T1, None, 1000));
    assert_eq!(got["v-hot"], hashes);
}

/// Many writers through two instances, readers advancing their cursors meanwhile (each
/// reader reading through a random instance): every reader ends with every change.
fn cursors_never_skip_a_change_under_concurrent_writers(b: &dyn Backend) {
    let instances = [b.open(), b.open()];
    let writers = 8;
    let pushes: usize = 30;
    let readers = 4;
    let visits: Vec<VisitMeta> = (0..12)
        .map(|i| meta(&format!("v-{i}"), T1, "u-1", i))
        .collect();
    let written = Mutex::new(BTreeSet::new());
    let done = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(240);
    let results: Vec<(BTreeSet<String>, usize)> = std::thread::scope(|sc| {
        let mut handles = Vec::new();
        for r in 0..readers {
            let (instances, done) = (&instances, &done);
            handles.push(sc.spawn(move || {
                let device = format!("reader-{r}");
                let mut seen = BTreeSet::new();
                let mut cursor: Option<Cur> = None;
                let mut pulls = 0;
                loop {
                    let finishing = done.load(Ordering::SeqCst);
                    let store = &instances[rand::random_range(0..2)];
                    let page =
                        pull(store.as_ref(), &query(&device, T1, cursor.clone(), 25)).unwrap();
                    pulls += 1;
                    for (_, cs) in &page.changes {
                        seen.extend(cs.iter().map(|c| hash_of(c)));
                    }
                    assert!(
                        cursor.as_ref().is_none_or(|c| page.cursor >= c.0),
                        "the cursor went back"
                    );
                    cursor = Some((page.cursor, page.token.clone()));
                    if finishing && !page.more {
                        return (seen, pulls);
                    }
                    assert!(Instant::now() < deadline, "readers did not finish in time");
                    if !page.more {
                        std::thread::sleep(Duration::from_millis(rand::random_range(0..4)));
                    }
                }
            }));
        }
        std::thread::scope(|ws| {
            for w in 0..writers {
                let store = instances[w % 2].clone();
                let (visits, written) = (&visits, &written);
                ws.spawn(move || {
                    for i in 0..pushes {
                        let m = &visits[rand::random_range(0..visits.len())];
                        let h = push(
                            store.as_ref(),
                            m,
                            &format!("writer-{w}"),
                            &format!("w{w}-{i}"),
                            i as i64,
                        );
                        written.lock().unwrap().insert(h);
                    }
                });
            }
        });
        done.store(true, Ordering::SeqCst);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let written = written.into_inner().unwrap();
    assert_eq!(written.len(), writers * pushes);
    for (r, (seen, pulls)) in results.iter().enumerate() {
        let missing: Vec<_> = written.difference(seen).collect();
        assert!(
            missing.is_empty(),
            "reader {r} ({pulls} pulls) missed {} of {} changes: a cursor skipped them",
            missing.len(),
            written.len()
        );
        assert!(*pulls > 1);
    }
}

fn whole_documents_for_visits_entering_the_scope_then_exact_changes(b: &dyn Backend) {
    let s = b.open();
    let mut visits = Vec::new();
    let mut all: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for v in 0..6 {
        let m = meta(&format!("v-{v}"), T1, "u-1", 1_000 + v);
        for i in 0..3 {
            let h = push(s.as_ref(), &m, "dev-x", &format!("k{i}"), i);
            all.entry(m.visit_id.clone()).or_default().insert(h);
        }
        visits.push(m);
    }
    // A device that takes documents but not the visits read from them gets none.
    let mut q = query("dev-e", T1, None, 100);
    q.documents = true;
    let page = pull(s.as_ref(), &q).unwrap();
    assert_eq!(page.documents.len(), 6);
    assert!(page.documents.iter().all(|d| d.visit.is_none()));
    // A fresh device that takes both: every visit as one document (with its heads and the
    // visit saved with it, checked by page_hashes), none as changes; small pages cut
    // between documents.
    let mut q = query("dev-d", T1, None, 1);
    q.documents = true;
    q.visits = true;
    let mut got: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pages = 0;
    loop {
        assert!(pages < 100, "the pull never finished");
        let page = pull(s.as_ref(), &q).unwrap();
        pages += 1;
        assert!(page.changes.is_empty(), "{:?}", page.changes);
        assert!(
            page.documents.len() <= 1,
            "a page of one change holds one document"
        );
        assert!(page.documents.iter().all(|d| d.visit.is_some()));
        for (v, hs) in page_hashes(&page) {
            got.entry(v).or_default().extend(hs);
        }
        q.cursor = Some(page.cursor);
        q.token = page.token.clone();
        if !page.more {
            break;
        }
    }
    assert_eq!(got, all);
    assert_eq!(pages, 6);
    // Later pushes by others arrive as exactly their changes, across visits and pages;
    // the device's own push in between is not echoed.
    let mut fresh = BTreeSet::new();
    for (i, m) in visits.iter().enumerate().take(3) {
        fresh.insert(push(s.as_ref(), m, "dev-x", "later", i as i64));
        push(s.as_ref(), m, "dev-d", "mine", i as i64);
        fresh.insert(push(s.as_ref(), m, "dev-y", "again", i as i64));
    }
    let first = pull(s.as_ref(), &q).unwrap();
    assert!(first.more && first.documents.is_empty());
    assert_eq!(first.changes.iter().map(|(_, c)| c.len()).sum::<usize>(), 1);
    let (_, got, _) = pull_all(s.as_ref(), q.clone());
    let got: BTreeSet<String> = got.into_values().flatten().collect();
    assert_eq!(got, fresh);
}

fn a_version_1_database_is_upgraded_and_no_cursor_skips_a_change(b: &dyn Backend) {
    // v-1: three changes by dev-x (log rows 1-3), then one by dev-a (row 4).
    let mut doc = Automerge::new();
    let mut log = Vec::new();
    for (i, device) in ["dev-x", "dev-x", "dev-x", "dev-a"].iter().enumerate() {
        doc.set_actor(ActorId::random());
        let mut tx = doc.transaction();
        tx.put(ROOT, format!("k{i}"), i as i64).unwrap();
        tx.commit();
        let c = doc.get_last_local_change().unwrap();
        log.push(V1Change {
            seq: i as i64 + 1,
            visit_id: "v-1".into(),
            hash: c.hash().to_string(),
            bytes: c.raw_bytes().to_vec(),
            device_id: device.to_string(),
        });
    }
    let hashes: BTreeSet<String> = log.iter().map(|l| l.hash.clone()).collect();
    b.version_1(&[("v-1", doc.save())], &log);
    let s = b.open();
    assert_eq!(s.counts().unwrap(), (1, 4), "every change still counted");
    assert_eq!(
        s.changes_since(None, 0, 10).unwrap(),
        (4, vec!["v-1".to_string()])
    );
    // A device whose cursor is inside the old rows gets the whole visit (as changes or as
    // a document): nothing skipped.
    for documents in [false, true] {
        let mut q = query("dev-a", T1, Some((1, None)), 100);
        q.documents = documents;
        let page = pull(s.as_ref(), &q).unwrap();
        assert_eq!(page_hashes(&page)["v-1"], hashes, "documents: {documents}");
        assert_eq!(page.cursor, 4);
    }
    // Its document was stored before the server kept reads: it is listed for one, which
    // it keeps once stored (a later one for it changes nothing), and then travels with
    // the document.
    let without = s.visits_without_reads("", 10).unwrap();
    assert_eq!(without.len(), 1);
    assert_eq!(without[0].0, "v-1");
    assert!(s.visits_without_reads("v-1", 10).unwrap().is_empty());
    let reads = |r: &[u8]| vec![("v-1".to_string(), r.to_vec())];
    assert_eq!(s.add_visit_reads(&reads(b"the read")).unwrap(), 1);
    assert_eq!(s.add_visit_reads(&reads(b"a later one")).unwrap(), 0);
    assert!(s.visits_without_reads("", 10).unwrap().is_empty());
    assert_eq!(
        s.visit_reads(&["v-1", "v-none"]).unwrap(),
        reads(b"the read")
    );
    let mut q = query("dev-c", T1, None, 100);
    (q.documents, q.visits) = (true, true);
    let page = pull(s.as_ref(), &q).unwrap();
    assert_eq!(page.documents[0].visit.as_deref(), Some(&b"the read"[..]));
    // Past every old row: nothing (dev-a's own last change is not echoed either).
    let (c, got, _) = pull_all(s.as_ref(), query("dev-a", T1, Some((3, None)), 100));
    assert!(got.is_empty() && c.0 == 4, "{got:?}");
    // New pushes continue after every cursor handed out, and arrive exactly.
    let h = push(
        s.as_ref(),
        &meta("v-1", T1, "u-1", 1_000),
        "dev-x",
        "new",
        1,
    );
    let (c, got, _) = pull_all(s.as_ref(), query("dev-b", T1, Some((4, None)), 100));
    assert_eq!(got["v-1"], BTreeSet::from([h]));
    assert!(c.0 > 4);
    // Opening again migrates nothing more.
    assert_eq!(b.open().counts().unwrap(), (1, 5));
}

/// A device holding visits while some leave its scope and more enter it than fit on a
/// page: every entering visit arrives exactly once (whole), on pages cut exactly at the
/// limit, the last one saying there is no more; the leaving ones are purged once; held
/// visits get only their new changes. For a scope of whole territories (read from where
/// the device's holdings end, then from the start) and for a rep's scope with a window.
fn visits_entering_and_leaving_the_scope_arrive_once_across_pages(b: &dyn Backend) {
    let s = b.open();
    let rep_scope = |q: &mut Query| {
        q.scope.rep_id = Some("u-1".into());
        q.scope.window = Some((0, 10_000));
    };
    let held: Vec<VisitMeta> = (0..10)
        .map(|i| meta(&format!("m-{i:02}"), T1, "u-1", 1_000))
        .collect();
    for m in &held {
        push(s.as_ref(), m, "dev-x", "k", 0);
    }
    // Both devices take the ten visits (a first sync: whatever they held is forgotten).
    let mut cursors = Vec::new();
    for (device, by_rep) in [("dev-t", false), ("dev-r", true)] {
        let mut q = query(device, T1, None, 100);
        if by_rep {
            rep_scope(&mut q);
        }
        let (c, got, _) = pull_all(s.as_ref(), q);
        assert_eq!(got.len(), 10, "{device}");
        cursors.push(c);
    }
    // m-03 leaves both scopes (another territory), m-07 the rep's (another rep); m-01
    // gets a change. 21 visits enter: ids below, between and above those held.
    push(
        s.as_ref(),
        &meta("m-03", T2, "u-1", 1_000),
        "dev-x",
        "moved",
        1,
    );
    push(
        s.as_ref(),
        &meta("m-07", T1, "u-2", 1_000),
        "dev-x",
        "moved",
        1,
    );
    let fresh = push(s.as_ref(), &held[1], "dev-x", "later", 1);
    let mut entering: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..7 {
        for id in [
            format!("a-{i:02}"),
            format!("m-{i:02}b"),
            format!("n-{i:02}"),
        ] {
            let h = push(s.as_ref(), &meta(&id, T1, "u-1", 2_000), "dev-x", "k", 0);
            entering.insert(id, h);
        }
    }
    // Outside both scopes: never sent.
    push(s.as_ref(), &meta("a-99", T2, "u-1", 2_000), "dev-x", "k", 0);
    push(
        s.as_ref(),
        &meta("n-99", T2, "u-2", 20_000),
        "dev-x",
        "k",
        0,
    );
    let mut done = Vec::new();
    for ((device, by_rep), cursor) in [("dev-t", false), ("dev-r", true)].into_iter().zip(cursors) {
        let mut q = query(device, T1, Some(cursor), 4);
        if by_rep {
            rep_scope(&mut q);
        }
        let (leaving, changed): (Vec<&str>, Vec<&str>) = if by_rep {
            (vec!["m-03", "m-07"], vec!["m-01"])
        } else {
            (vec!["m-03"], vec!["m-01", "m-07"])
        };
        let mut delivered: BTreeMap<String, usize> = BTreeMap::new();
        let mut purged: Vec<String> = Vec::new();
        let mut pages = 0;
        loop {
            assert!(pages < 50, "{device}: the pull never finished");
            let page = pull(s.as_ref(), &q).unwrap();
            pages += 1;
            let units: usize = page.changes.iter().map(|(_, c)| c.len()).sum();
            assert!(units <= 4, "{device}: page {pages} holds {units} changes");
            for (v, hs) in page_hashes(&page) {
                *delivered.entry(v.clone()).or_default() += 1;
                if let Some(h) = entering.get(&v) {
                    assert_eq!(hs, BTreeSet::from([h.clone()]), "{device}: {v} whole");
                } else if v == "m-01" {
                    assert_eq!(hs, BTreeSet::from([fresh.clone()]), "{device}: only new");
                }
            }
            purged.extend(page.purge.iter().cloned());
            q.cursor = Some(page.cursor);
            q.token = page.token.clone();
            if !page.more {
                assert!(units > 0, "{device}: an empty last page");
                break;
            }
            if pages > 1 {
                // (The first page's purged feed rows count against its limit too.)
                assert_eq!(units, 4, "{device}: page {pages} cut early");
            }
        }
        // Page 1: three feed rows (one purged, two sent or purged) and one entering visit;
        // then four entering visits a page: 1 + 5 × 4 = 21.
        assert_eq!(pages, 6, "{device}");
        let mut want: BTreeMap<String, usize> = entering.keys().map(|v| (v.clone(), 1)).collect();
        for v in &changed {
            want.insert(v.to_string(), 1);
        }
        assert_eq!(delivered, want, "{device}: each once");
        assert_eq!(purged, leaving, "{device}");
        // Nothing left: nothing sent or purged again.
        let page = pull(s.as_ref(), &q).unwrap();
        assert!(!page.more && page.purge.is_empty(), "{device}");
        assert!(
            page.changes.is_empty() && page.documents.is_empty(),
            "{device}"
        );
        q.cursor = Some(page.cursor);
        q.token = page.token.clone();
        done.push(q);
    }
    // The entered visits are held now: a later push arrives as just its change.
    let h = push(s.as_ref(), &meta("a-03", T1, "u-1", 2_000), "dev-x", "z", 1);
    let mut qs = Vec::new();
    for q in done {
        let (c, got, purged) = pull_all(s.as_ref(), q.clone());
        assert_eq!(
            got,
            BTreeMap::from([("a-03".to_string(), BTreeSet::from([h.clone()]))])
        );
        assert!(purged.is_empty());
        qs.push(Query {
            cursor: Some(c.0),
            token: c.1,
            limit: 256,
            ..q
        });
    }
    // More entering than the database is asked for at once: a page filled exactly says
    // there is more, the next one has the rest.
    let many: BTreeSet<String> = (0..300).map(|i| format!("p-{i:03}")).collect();
    for v in &many {
        push(s.as_ref(), &meta(v, T1, "u-1", 2_000), "dev-x", "k", 0);
    }
    for mut q in qs {
        let first = pull(s.as_ref(), &q).unwrap();
        assert!(first.more, "{}", q.device_id);
        assert_eq!(first.changes.len(), 256, "{}", q.device_id);
        q.cursor = Some(first.cursor);
        q.token = first.token.clone();
        let second = pull(s.as_ref(), &q).unwrap();
        assert!(!second.more, "{}", q.device_id);
        let got: BTreeSet<String> = first
            .changes
            .iter()
            .chain(&second.changes)
            .map(|(v, _)| v.clone())
            .collect();
        assert_eq!(got.len(), 300, "{}", q.device_id);
        assert_eq!(got, many, "{}", q.device_id);
    }
}

/// Managers' devices (scopes of whole territories) pull while visits are created, move
/// between territories and are pushed by the devices themselves (also right after a first
/// sync, whose answer forgets everything before it), answers get lost and a scope changes:
/// after every pull taken to its end, the device holds exactly the visits of its scope. (After their first complete pull the backends check only the visits changed
/// since, see `feed::HoldWrite::Synced`.)
fn a_territory_scope_is_held_exactly_after_every_complete_pull(b: &dyn Backend) {
    let s = b.open();
    let mut seed = 0x5851_f42d_4c95_7f2d_u64;
    let mut next = move |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % n
    };
    let territories = [T1, T2, "t-3"];
    // Where each visit is now.
    let mut visits: BTreeMap<String, &str> = BTreeMap::new();
    // Per device: its territory, cursor, and what it holds by what it was sent.
    let mut devices: Vec<(&str, Option<Cur>, BTreeSet<String>)> =
        vec![(T1, None, BTreeSet::new()), (T2, None, BTreeSet::new())];
    let (mut moves, mut pushes) = (0, 0);
    for round in 0..80 {
        for _ in 0..=next(4) {
            let t = territories[next(3) as usize];
            let id = if visits.is_empty() || next(2) == 0 {
                format!("v-{:03}", visits.len())
            } else {
                format!("v-{:03}", next(visits.len() as u64))
            };
            let by = next(6) as usize;
            let device = if by < 2 {
                format!("mgr-{by}")
            } else {
                "rep-dev".into()
            };
            if let Some((_, Some(token))) = devices.get(by).and_then(|d| d.1.as_ref()) {
                // As the sync endpoint does: the answer the device got, then its push.
                s.confirm(&device, token).unwrap();
            }
            pushes += 1;
            push(
                s.as_ref(),
                &meta(&id, t, "u-1", 1_000),
                &device,
                "k",
                pushes,
            );
            visits.insert(id.clone(), t);
            if by < 2 {
                // A device holds what it pushed (also outside its scope, until purged).
                devices[by].2.insert(id);
            }
        }
        let d = next(2) as usize;
        let device = format!("mgr-{d}");
        if next(10) == 0 {
            devices[d].0 = territories[next(3) as usize];
        }
        let (territory, cursor, _) = devices[d].clone();
        let q = query(
            &device,
            territory,
            cursor.clone(),
            [3, 50][next(2) as usize],
        );
        if next(6) == 0 {
            // An answer that never arrives.
            pull(s.as_ref(), &q).unwrap();
            continue;
        }
        if cursor.is_none() {
            devices[d].2.clear();
        }
        let (c, got, purged) = pull_all(s.as_ref(), q);
        moves += got.len() + purged.len();
        let held = &mut devices[d].2;
        held.extend(got.into_keys());
        for v in purged {
            held.remove(&v);
        }
        let want: BTreeSet<String> = visits
            .iter()
            .filter(|(_, t)| **t == territory)
            .map(|(v, _)| v.clone())
            .collect();
        assert_eq!(*held, want, "round {round}: {device} in {territory}");
        devices[d].1 = Some(c);
    }
    assert!(moves > 100, "{moves}");
}

/// A request sent twice (the network duplicated it, or the device retried while the first
/// answer was on its way) is answered twice. The device confirms one of the answers with
/// its next request; the other answer's bookkeeping must not cancel it, or the server
/// forgets what the device holds and never purges it when it leaves the scope (found by
/// the simulation, seeds 4382, 6231, 7122 and 9967).
fn a_duplicated_request_cannot_cancel_the_answer_the_device_confirms(b: &dyn Backend) {
    let s = b.open();
    push(s.as_ref(), &meta("d-1", T1, "u-1", 1_000), "dev-x", "k", 0);
    let first = pull(s.as_ref(), &query("dev-d", T1, None, 100)).unwrap();
    assert!(first.token.is_some());
    // A visit arrives; the device's next request (confirming the first answer) is sent
    // twice and both copies are answered with it.
    push(s.as_ref(), &meta("d-2", T1, "u-1", 1_000), "dev-x", "k", 0);
    let q = query("dev-d", T1, Some((first.cursor, first.token.clone())), 100);
    let answered = pull(s.as_ref(), &q).unwrap();
    let duplicate = pull(s.as_ref(), &q).unwrap();
    assert!(page_hashes(&answered).contains_key("d-2"));
    assert!(page_hashes(&duplicate).contains_key("d-2"));
    assert_ne!(answered.token, duplicate.token);
    // d-2 leaves the device's scope before its next request, which confirms the first
    // copy's answer (the one it got): the server knows the device holds d-2 and purges it.
    push(s.as_ref(), &meta("d-2", T2, "u-1", 1_000), "dev-x", "k", 1);
    let (_, got, purged) = pull_all(
        s.as_ref(),
        query(
            "dev-d",
            T1,
            Some((answered.cursor, answered.token.clone())),
            100,
        ),
    );
    assert_eq!(purged, vec!["d-2".to_string()]);
    assert!(!got.contains_key("d-2"));
}

/// The same for a request without a cursor (a first sync, or the heads a device sends
/// after a restore): a delayed copy answered after the answer the device got must not
/// cancel it (simulation seeds 4382 and 7122).
fn a_late_copy_of_a_first_request_cannot_cancel_the_answer_the_device_confirms(b: &dyn Backend) {
    let s = b.open();
    push(s.as_ref(), &meta("e-1", T1, "u-1", 1_000), "dev-x", "k", 0);
    let q = query("dev-e", T1, None, 100);
    let answered = pull(s.as_ref(), &q).unwrap();
    let late = pull(s.as_ref(), &q).unwrap();
    assert!(page_hashes(&answered).contains_key("e-1"));
    assert!(page_hashes(&late).contains_key("e-1"));
    push(s.as_ref(), &meta("e-1", T2, "u-1", 1_000), "dev-x", "k", 1);
    let (_, _, purged) = pull_all(
        s.as_ref(),
        query(
            "dev-e",
            T1,
            Some((answered.cursor, answered.token.clone())),
            100,
        ),
    );
    assert_eq!(purged, vec!["e-1".to_string()]);
}
