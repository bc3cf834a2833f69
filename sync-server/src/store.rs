//! Server storage: the [`Store`] trait and its SQLite implementation ([`SqliteStore`]).
//!
//! One SQLite file (`fieldsync.db` under `--data-dir`, WAL) holds:
//!
//! | table | what |
//! |---|---|
//! | `meta` | the server **epoch** (random id; a backup copy gets a new one) |
//! | `users` | username, role, territories (JSON), argon2id password hash, disabled flag |
//! | `tokens` | device tokens: id, user, device, SHA-256 of the token, revoked time |
//! | `actors` | each Automerge actor bound to the device that first pushed it |
//! | `visits` | visit id, store, territory, rep, planned start, status, document bytes and heads |
//! | `visit_reads` | the visit read from each stored document (`pack_visit`), sent with it to devices that take it |
//! | `change_log` | every stored push of a visit under a sequence number (the cursor): visit, device, territory, how many changes, the visit's heads before and after (the changes are in the document; see [`crate::feed`]) |
//! | `device_visits` | the visits each device holds (to send visits entering its scope whole and purge the ones leaving it) |
//! | `reference` | the reference data as JSON with its version |
//!
//! The schema is created and upgraded by the numbered migrations in
//! `migrations/sqlite/` (the version is the database's `PRAGMA user_version`).
//!
//! Writes are serialized through one connection, so sequence numbers are assigned in
//! commit order and a cursor never skips a change that commits later.
//!
//! **Group commit.** [`Store::with_visit`] runs each visit's writes in a savepoint of a
//! shared write transaction; the transaction commits (one `fsync`, `synchronous=FULL`)
//! when no other visit is waiting for the writer, after 64 visits or after 10 ms, and
//! each `with_visit` returns only after the commit that made its writes durable. Under
//! load one `fsync` then covers many devices' visits instead of one (the `fsync` of this
//! disk alone capped ingest near 280 visits/s: docs/BENCHMARKS.md). Reads that must see
//! only committed data (`pull`, `authenticate`, `epoch`) use separate reader connections
//! (WAL snapshots); every other method commits the open batch first.

use automerge::ChangeHash;
use fieldsync_core::document::unpack_document;
use fieldsync_core::model::{ReferenceData, Role};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::VecDeque;
use std::collections::{BTreeMap, HashSet};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use crate::feed::{self, FeedSource, HoldWrite, IdRange, LogRow, heads_from_bytes, heads_to_bytes};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A failure of another backend (PostgreSQL: see `pg_store`).
    #[error("database error: {0}")]
    Database(Box<dyn std::error::Error + Send + Sync>),
    #[error("{0}")]
    Core(#[from] fieldsync_core::Error),
    #[error("document error: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    #[error("encoding error: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A user account.
#[derive(Clone, Debug, PartialEq)]
pub struct UserRecord {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub territories: Vec<String>,
    pub password_hash: String,
    pub disabled: bool,
}

/// A new user account.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub territories: Vec<String>,
    pub password_hash: String,
}

/// An authenticated device token.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenRecord {
    pub id: String,
    pub user_id: String,
    pub device_id: String,
}

/// Where a visit lives (denormalized from its document for scope queries).
#[derive(Clone, Debug, PartialEq)]
pub struct VisitMeta {
    pub visit_id: String,
    pub store_id: String,
    pub territory_id: String,
    pub rep_id: String,
    pub planned_start: i64,
    pub status: String,
}

/// A stored visit.
#[derive(Clone, Debug)]
pub struct StoredVisit {
    pub meta: VisitMeta,
    pub doc: Vec<u8>,
}

/// Which visits a user may read.
#[derive(Clone, Debug, PartialEq)]
pub struct Scope {
    /// Territories; `None` for every territory (admin).
    pub territories: Option<Vec<String>>,
    /// Only visits of this rep.
    pub rep_id: Option<String>,
    /// Only visits planned in `[from, to]` (ms).
    pub window: Option<(i64, i64)>,
}

impl Scope {
    /// Whether a visit with `meta` is in the scope (the same rule as the backends' scope
    /// queries).
    pub fn contains(&self, meta: &VisitMeta) -> bool {
        self.territories
            .as_ref()
            .is_none_or(|ts| ts.contains(&meta.territory_id))
            && self.rep_id.as_ref().is_none_or(|r| *r == meta.rep_id)
            && self
                .window
                .is_none_or(|(from, to)| (from..=to).contains(&meta.planned_start))
    }
}

/// What a device asks for.
#[derive(Clone, Debug)]
pub struct PullQuery {
    pub device_id: String,
    pub scope: Scope,
    /// `None`: the device holds nothing the server knows of (first sync, or after a
    /// restore); everything in scope is sent, diffed against `heads` when given.
    pub cursor: Option<i64>,
    pub heads: Option<BTreeMap<String, Vec<String>>>,
    /// Most changes per page.
    pub limit: usize,
    /// The device accepts whole documents (sent instead of all the changes of a visit).
    pub documents: bool,
    /// The device takes the visits read from them with them (in the server's
    /// `VISIT_FORMAT`).
    pub visits: bool,
}

impl PullQuery {
    /// Whether whole documents go with the visits read from them.
    pub fn sends_reads(&self) -> bool {
        self.documents && self.visits
    }
}

/// A visit's document as stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredDocument {
    /// Automerge bytes, or packed by [`fieldsync_core::document::pack_document`].
    pub doc: Vec<u8>,
    /// Its heads (empty when not recorded).
    pub heads: Vec<ChangeHash>,
    /// The visit read from it ([`fieldsync_core::document::pack_visit`]), when asked for
    /// and kept.
    pub visit: Option<Vec<u8>>,
}

/// A whole document on a page.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PageDocument {
    pub visit_id: String,
    /// As stored.
    pub doc: Vec<u8>,
    /// Hex.
    pub heads: Vec<String>,
    /// The visit read from it, when the query takes visits and it was kept.
    pub visit: Option<Vec<u8>>,
}

/// One page for a device.
#[derive(Clone, Debug, Default)]
pub struct PullPage {
    pub changes: Vec<(String, Vec<Vec<u8>>)>,
    pub cursor: i64,
    pub more: bool,
    pub purge: Vec<String>,
    /// Visits where the device has changes the server lacks, with the server's heads.
    pub resend: Vec<(String, Vec<String>)>,
    /// Whole documents (when the query accepts them).
    pub documents: Vec<PageDocument>,
    /// Set when the page changes what the device is recorded as holding: the change waits
    /// until the device presents this token (in its cursor) with its next request, so an
    /// answer that never reached the device never changes the record.
    pub token: Option<String>,
}

/// What a push adds to the change log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogEntry {
    /// How many changes the push stored (no log row when 0).
    pub changes: usize,
    /// The document's heads before the push (empty for a new visit).
    pub heads_before: Vec<ChangeHash>,
    /// Whether to record the pushing device as holding the visit. Yes when it is known to
    /// hold the whole visit after the push (every head is one of the changes it pushed, so
    /// everything else is among their ancestors) or when the visit is outside its scope
    /// (so it is purged). Otherwise no: the feed sends a held visit's new changes only and
    /// could skip changes the device never had (a device pushing to a visit it received
    /// before a server restore); a visit in scope and not held is sent whole instead.
    pub hold: bool,
}

/// The operations on one visit inside one write transaction.
pub trait VisitTxn {
    fn stored(&self) -> StoreResult<Option<StoredVisit>>;
    /// The (device, user) an actor is bound to.
    fn actor_binding(&self, actor_hex: &str) -> StoreResult<Option<(String, String)>>;
    fn bind_actor(&mut self, actor_hex: &str, device_id: &str, user_id: &str) -> StoreResult<()>;
    /// Stores the document (its bytes as stored: packed by `pack_document`, made by the
    /// caller outside the writer; plain Automerge bytes load too), its heads and the
    /// visit read from it (`pack_visit`, sent with the document to devices that take it),
    /// records that `device_id` holds the visit, and appends the push to the change log
    /// (when it stored changes).
    fn save(
        &mut self,
        meta: &VisitMeta,
        doc: &[u8],
        heads: &[ChangeHash],
        visit: &[u8],
        log: &LogEntry,
        device_id: &str,
    ) -> StoreResult<()>;
    /// The store, when this is no write transaction but a draft of one made outside any
    /// (`ingest`'s decisions on the committed state): what a decision may read from the
    /// store only there.
    fn outside(&self) -> Option<&dyn Store> {
        None
    }
}

/// Server storage. Implementations must make [`Store::with_visit`] atomic and serialized
/// per visit, and assign change-log sequence numbers so that a cursor never skips a
/// change committed later.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    fn epoch(&self) -> StoreResult<String>;
    fn create_user(&self, user: &NewUser) -> StoreResult<()>;
    fn user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>>;
    /// Stores a token hash; returns the token id.
    fn create_token(
        &self,
        user_id: &str,
        device_id: &str,
        token_hash: &str,
        now: i64,
    ) -> StoreResult<String>;
    /// The user and token of a live (not revoked, user not disabled) token hash.
    fn authenticate(&self, token_hash: &str) -> StoreResult<Option<(UserRecord, TokenRecord)>>;
    /// Revokes every token of a user; returns how many.
    fn revoke_user(&self, username: &str, now: i64) -> StoreResult<usize>;
    fn revoke_token(&self, token_id: &str, now: i64) -> StoreResult<bool>;
    fn reference(&self) -> StoreResult<Arc<ReferenceData>>;
    /// Replaces the reference data (already validated); returns the new version. The data
    /// is also kept as that version's history ([`Store::reference_versions`]), and the
    /// versions no longer in effect within [`REFERENCE_HISTORY_DAYS`] are deleted.
    fn import_reference(&self, data: ReferenceData) -> StoreResult<i64> {
        self.import_reference_at(data, chrono::Utc::now().timestamp_millis())
    }
    /// [`Store::import_reference`] as if it happened at `now` (ms since the Unix epoch): the
    /// time it takes effect for reports and phones (a simulation's clock).
    fn import_reference_at(&self, data: ReferenceData, now: i64) -> StoreResult<i64>;
    /// The versions of the reference data kept for reports, oldest first: (version, when it
    /// was imported in milliseconds since the Unix epoch; 0 for the version in effect
    /// before history was kept).
    fn reference_versions(&self) -> StoreResult<Vec<(i64, i64)>>;
    /// The reference data of a kept version (`None`: not kept).
    fn reference_version(&self, version: i64) -> StoreResult<Option<ReferenceData>>;
    /// Runs `f` in one write transaction for the visit; committed when `f` returns Ok.
    /// `f` must use only the [`VisitTxn`] it is given: calling other `Store` methods from
    /// inside would wait for the transaction it runs in.
    fn with_visit(
        &self,
        visit_id: &str,
        f: &mut dyn FnMut(&mut dyn VisitTxn) -> StoreResult<()>,
    ) -> StoreResult<()>;
    /// The committed state of a visit (outside any write transaction).
    fn visit(&self, visit_id: &str) -> StoreResult<Option<StoredVisit>>;
    /// The committed (device, user) binding of an actor, outside any write transaction.
    fn actor_binding(&self, actor_hex: &str) -> StoreResult<Option<(String, String)>>;
    /// Applies the holdings changes of the answer `token` names (the device received it:
    /// see [`PullPage::token`]) and drops the device's other pending answers. A token not
    /// found (already replaced by a duplicate's confirmation) changes nothing. The sync
    /// endpoint confirms before it stores the request's pushes, which the device made after
    /// that answer: what they record (the device holds what it pushed) stands.
    fn confirm(&self, device_id: &str, token: &str) -> StoreResult<()>;
    /// One page for `q`. The answer the device confirms with this request (the token in
    /// its cursor) is applied first, with [`Store::confirm`].
    fn pull(&self, q: &PullQuery) -> StoreResult<PullPage>;
    /// A consistent copy of the database at `path`, with a new epoch.
    fn backup(&self, path: &Path) -> StoreResult<()>;
    /// (visits, changes) counts.
    fn counts(&self) -> StoreResult<(i64, i64)>;
    /// The visits whose planned start lies in `[from, to]` (ms, both inclusive) in
    /// `territories` (`None`: every territory), ordered by planned start then id, each with
    /// its document as stored (packed) when `with_docs`. What [`Store::visits_in_range`]
    /// and [`Store::visit_metas_in_range`] read.
    fn visit_rows_in_range(
        &self,
        territories: Option<&[String]>,
        from: i64,
        to: i64,
        with_docs: bool,
    ) -> StoreResult<Vec<(VisitMeta, Option<Vec<u8>>)>>;
    /// The visits whose planned start lies in `[from, to]` (ms, both inclusive) in
    /// `territories` (`None`: every territory), ordered by planned start then id. Reports
    /// (the manager dashboard) decode the documents and compute with `fieldsync-core`.
    fn visits_in_range(
        &self,
        territories: Option<&[String]>,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<StoredVisit>> {
        self.visit_rows_in_range(territories, from, to, true)?
            .into_iter()
            .map(|(meta, doc)| {
                unpacked(StoredVisit {
                    meta,
                    doc: doc.unwrap_or_default(),
                })
            })
            .collect()
    }
    /// [`Store::visits_in_range`] without the documents, for checks over many visits: no
    /// document is read or unpacked.
    fn visit_metas_in_range(
        &self,
        territories: Option<&[String]>,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<VisitMeta>> {
        Ok(self
            .visit_rows_in_range(territories, from, to, false)?
            .into_iter()
            .map(|(meta, _)| meta)
            .collect())
    }
    /// The reads stored with the documents of `visit_ids` (`pack_visit`), for those that
    /// have one, in no particular order.
    fn visit_reads(&self, visit_ids: &[&str]) -> StoreResult<Vec<(String, Vec<u8>)>>;
    /// Up to `limit` visits after `after` (by id) whose document has no stored read
    /// (stored before the server kept them), with their documents as stored.
    fn visits_without_reads(
        &self,
        after: &str,
        limit: usize,
    ) -> StoreResult<Vec<(String, Vec<u8>)>>;
    /// Stores reads (`pack_visit`) made from documents [`Store::visits_without_reads`]
    /// returned. A visit that got its read meanwhile (it was written since) keeps that one.
    /// Returns how many were stored.
    fn add_visit_reads(&self, reads: &[(String, Vec<u8>)]) -> StoreResult<usize>;
    /// What changed after change-log sequence number `since` in `territories` (`None`:
    /// every territory, by the territory recorded with each change): the highest sequence
    /// number there (`since` when nothing changed) and the ids of the visits changed, most
    /// recently changed first, at most `limit`. Polled every few seconds, so it must be cheap.
    fn changes_since(
        &self,
        territories: Option<&[String]>,
        since: i64,
        limit: usize,
    ) -> StoreResult<(i64, Vec<String>)>;
}

/// The most visit ids one query of [`Store::visit_reads`] names (SQLite's limit on a
/// statement's parameters is 32,766).
const READS_PER_QUERY: usize = 500;

/// How many visits [`fill_visit_reads`] reads per batch.
const FILL_BATCH: usize = 256;

/// Stores the read of every document stored before the server kept them (schema version
/// 8), so that those visits too travel to devices with their read and reports need not
/// read them: reads each such document, one batch of [`FILL_BATCH`] at a time, on the
/// calling thread. A visit written meanwhile keeps the read its write stored; a document
/// that cannot be read is logged and left (devices and reports read it themselves).
/// Returns how many reads were stored. `serve` runs it in the background at start-up.
pub fn fill_visit_reads(store: &dyn Store) -> StoreResult<usize> {
    let (mut after, mut stored) = (String::new(), 0);
    loop {
        let batch = store.visits_without_reads(&after, FILL_BATCH)?;
        let Some((last, _)) = batch.last() else {
            return Ok(stored);
        };
        after = last.clone();
        let reads: Vec<(String, Vec<u8>)> = batch
            .into_iter()
            .filter_map(|(visit_id, doc)| {
                let read = unpack_document(&doc)
                    .and_then(|d| fieldsync_core::document::VisitDoc::load(&d))
                    .and_then(|d| d.read());
                match read {
                    Ok(visit) => Some((visit_id, fieldsync_core::document::pack_visit(&visit))),
                    Err(e) => {
                        tracing::warn!(visit_id, error = %e, "a stored document does not read; left without its read");
                        None
                    }
                }
            })
            .collect();
        stored += store.add_visit_reads(&reads)?;
    }
}

/// How far back the reference data of imports is kept: a version stays while it was in
/// effect at some time in this many days before the latest import. Reports cover at most
/// `dashboard::reports::MAX_RANGE_DAYS` (366) days back from today.
pub const REFERENCE_HISTORY_DAYS: i64 = 400;

/// Reference data as stored in the history: JSON in one Zstandard frame.
pub fn pack_reference(data: &ReferenceData) -> StoreResult<Vec<u8>> {
    let json = serde_json::to_vec(data)?;
    zstd::bulk::compress(&json, 3)
        .map_err(|e| StoreError::Conflict(format!("cannot compress reference data: {e}")))
}

/// The reference data of a history row.
pub fn unpack_reference(bytes: &[u8]) -> StoreResult<ReferenceData> {
    let json = zstd::stream::decode_all(bytes)
        .map_err(|e| StoreError::Conflict(format!("stored reference data is damaged: {e}")))?;
    Ok(serde_json::from_slice(&json)?)
}

/// The oldest import time whose version must stay, for an import at `now`.
pub(crate) fn reference_history_cutoff(now: i64) -> i64 {
    now - REFERENCE_HISTORY_DAYS * 86_400_000
}

/// The numbered migrations of the SQLite schema, in order (`PRAGMA user_version` is the
/// last one applied). The runner is ours: the migration libraries for rusqlite
/// (`rusqlite_migration` 2.6, `refinery` 0.10) pin rusqlite 0.40 / ≤ 0.41, and a second
/// rusqlite would link a second SQLite (`links = "sqlite3"`).
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (
        2,
        include_str!("../migrations/sqlite/0002_change_log_per_push.sql"),
    ),
    (
        3,
        include_str!("../migrations/sqlite/0003_device_pending.sql"),
    ),
    (
        4,
        include_str!("../migrations/sqlite/0004_scope_indexes.sql"),
    ),
    (
        5,
        include_str!("../migrations/sqlite/0005_pending_answers.sql"),
    ),
    (
        6,
        include_str!("../migrations/sqlite/0006_device_synced.sql"),
    ),
    (
        7,
        include_str!("../migrations/sqlite/0007_reference_history.sql"),
    ),
    (8, include_str!("../migrations/sqlite/0008_visit_reads.sql")),
];

/// Applies the migrations the database lacks, each in its own transaction; refuses a
/// database written by a newer binary.
fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if version > known {
        return Err(StoreError::Conflict(format!(
            "the database schema is at version {version}, newer than this binary knows ({known}): upgrade fieldsync-server"
        )));
    }
    for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > version) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", v)?;
        tx.commit()?;
        tracing::info!(version = v, "applied SQLite migration");
    }
    Ok(())
}

/// The embedded SQLite backend.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Writer>,
    /// Signalled when a group-commit batch ends (committed or failed).
    committed: Condvar,
    /// `with_visit` calls waiting for the writer (they join the open batch).
    waiting: AtomicUsize,
    /// Read-only connections (empty for `:memory:`, which cannot be shared).
    readers: Vec<Mutex<Connection>>,
    refs: RwLock<Arc<ReferenceData>>,
    path: PathBuf,
}

/// Most visits in one group-commit batch, and its longest age.
const BATCH_VISITS: usize = 64;
const BATCH_AGE: Duration = Duration::from_millis(10);

/// The writer connection and its open group-commit batch.
#[derive(Debug)]
struct Writer {
    conn: Connection,
    /// Generation of the open batch transaction.
    open: Option<u64>,
    opened_at: Option<Instant>,
    in_batch: usize,
    next_gen: u64,
    /// Every batch up to this generation has ended.
    done: u64,
    /// Batches whose commit failed, with the error (the last few).
    failed: VecDeque<(u64, String)>,
}

/// The writer with no batch open: use like a `Connection`.
struct WriterGuard<'a>(MutexGuard<'a, Writer>);

impl Deref for WriterGuard<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.0.conn
    }
}

impl DerefMut for WriterGuard<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.0.conn
    }
}

/// A connection that sees committed data only.
enum ReadGuard<'a> {
    Reader(MutexGuard<'a, Connection>),
    Writer(WriterGuard<'a>),
}

impl Deref for ReadGuard<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            ReadGuard::Reader(c) => c,
            ReadGuard::Writer(w) => w,
        }
    }
}

impl DerefMut for ReadGuard<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        match self {
            ReadGuard::Reader(c) => &mut *c,
            ReadGuard::Writer(w) => &mut *w,
        }
    }
}

fn new_epoch() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn role_from(s: &str) -> Role {
    Role::parse(s).unwrap_or(Role::Rep)
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    let territories: String = r.get(3)?;
    Ok(UserRecord {
        id: r.get(0)?,
        username: r.get(1)?,
        role: role_from(&r.get::<_, String>(2)?),
        territories: serde_json::from_str(&territories).unwrap_or_default(),
        password_hash: r.get(4)?,
        disabled: r.get(5)?,
    })
}

/// Prepared statements kept per connection. A sync runs a few dozen distinct statements
/// (authentication, the visit and its actors, the writes, the pull's scope queries in
/// their variants); rusqlite's default of 16 made every sync prepare most of them again
/// (SQLite's parser was ~5 % of the server's CPU on one-change pushes).
const STATEMENT_CACHE: usize = 128;

/// What every connection of the server's database gets, the writer's and the readers'.
///
/// The query planner stability guarantee (QPSG) is on. Without it, SQLite marks a cached
/// statement to be prepared again whenever a new value is bound to a parameter that the
/// planner looked at: `LIMIT ?n` always, and comparisons once statistics exist. The
/// pull's queries end in `LIMIT ?n` and choose their indexes with `INDEXED BY`, so every
/// sync prepared them again from their text: ~10 % of the server's CPU in the 100-device
/// ingest benchmark (docs/BENCHMARKS.md). With QPSG a statement keeps the plan it was
/// prepared with.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
}

impl SqliteStore {
    /// Opens (creating) the database `fieldsync.db` in `dir`.
    pub fn open_dir(dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Conflict(format!("cannot create data dir {}: {e}", dir.display()))
        })?;
        Self::open(&dir.join("fieldsync.db"))
    }

    /// Opens (creating) the database file at `path`.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let mut conn = Connection::open(path)?;
        configure(&conn)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?1)",
            [new_epoch()],
        )?;
        let refs: Option<String> = conn
            .query_row("SELECT data FROM reference WHERE id = 1", [], |r| r.get(0))
            .optional()?;
        let refs: ReferenceData = match refs {
            Some(j) => serde_json::from_str(&j)?,
            None => ReferenceData::default(),
        };
        let kept: Option<i64> = conn
            .query_row(
                "SELECT 1 FROM reference_history WHERE version = ?1",
                [refs.version],
                |r| r.get(0),
            )
            .optional()?;
        if refs.version > 0 && kept.is_none() {
            // The data of a database from before the history: in effect since then.
            conn.execute(
                "INSERT INTO reference_history (version, imported_at, data) VALUES (?1, 0, ?2)",
                params![refs.version, pack_reference(&refs)?],
            )?;
        }
        let shared = path
            .to_str()
            .is_none_or(|p| !p.is_empty() && p != ":memory:" && !p.starts_with("file::memory:"));
        let mut readers = Vec::new();
        if shared {
            for _ in 0..4 {
                let r = Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                configure(&r)?;
                readers.push(Mutex::new(r));
            }
        }
        Ok(Self {
            conn: Mutex::new(Writer {
                conn,
                open: None,
                opened_at: None,
                in_batch: 0,
                next_gen: 0,
                done: 0,
                failed: VecDeque::new(),
            }),
            committed: Condvar::new(),
            waiting: AtomicUsize::new(0),
            readers,
            refs: RwLock::new(Arc::new(refs)),
            path: path.to_path_buf(),
        })
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Gives the database a new epoch and forgets which visits each device holds. Run it
    /// (`admin new-epoch`) after putting back a copy that already served once, e.g. the
    /// same backup file restored a second time, or a disk snapshot: devices then send their
    /// heads and resend what the database lacks instead of trusting their cursors.
    pub fn new_epoch(&self) -> StoreResult<String> {
        let epoch = new_epoch();
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute("UPDATE meta SET value = ?1 WHERE key = 'epoch'", [&epoch])?;
        tx.execute("DELETE FROM device_visits", [])?;
        tx.execute("DELETE FROM device_synced", [])?;
        tx.execute("DELETE FROM device_pending", [])?;
        tx.commit()?;
        Ok(epoch)
    }

    /// The writer, after committing any open batch.
    fn lock(&self) -> WriterGuard<'_> {
        let mut w = self.writer();
        self.end_batch(&mut w);
        WriterGuard(w)
    }

    /// A connection seeing committed data: a free reader, else the writer.
    fn read(&self) -> ReadGuard<'_> {
        if self.readers.is_empty() {
            return ReadGuard::Writer(self.lock());
        }
        for r in &self.readers {
            if let Ok(g) = r.try_lock() {
                return ReadGuard::Reader(g);
            }
        }
        let i = rand::random::<u32>() as usize % self.readers.len();
        ReadGuard::Reader(
            self.readers[i]
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Commits the open batch, if any, and wakes its waiters.
    fn end_batch(&self, w: &mut Writer) {
        let Some(generation) = w.open.take() else {
            return;
        };
        if let Err(e) = w.conn.execute_batch("COMMIT") {
            let _ = w.conn.execute_batch("ROLLBACK");
            w.failed.push_back((generation, e.to_string()));
            if w.failed.len() > 64 {
                w.failed.pop_front();
            }
        }
        w.done = generation;
        w.in_batch = 0;
        w.opened_at = None;
        self.committed.notify_all();
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

struct SqliteTxn<'a> {
    tx: &'a Connection,
    visit_id: String,
}

impl VisitTxn for SqliteTxn<'_> {
    fn stored(&self) -> StoreResult<Option<StoredVisit>> {
        self.tx
            .prepare_cached(
                "SELECT visit_id, store_id, territory_id, rep_id, planned_start, status, doc FROM visits WHERE visit_id = ?1",
            )?
            .query_row([&self.visit_id], |r| {
                Ok(StoredVisit {
                    meta: VisitMeta {
                        visit_id: r.get(0)?,
                        store_id: r.get(1)?,
                        territory_id: r.get(2)?,
                        rep_id: r.get(3)?,
                        planned_start: r.get(4)?,
                        status: r.get(5)?,
                    },
                    doc: r.get(6)?,
                })
            })
            .optional()?
            .map(unpacked)
            .transpose()
    }

    fn actor_binding(&self, actor_hex: &str) -> StoreResult<Option<(String, String)>> {
        Ok(self
            .tx
            .prepare_cached("SELECT device_id, user_id FROM actors WHERE actor = ?1")?
            .query_row([actor_hex], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    fn bind_actor(&mut self, actor_hex: &str, device_id: &str, user_id: &str) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT OR IGNORE INTO actors (actor, device_id, user_id) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![actor_hex, device_id, user_id])?;
        Ok(())
    }

    fn save(
        &mut self,
        m: &VisitMeta,
        doc: &[u8],
        heads: &[ChangeHash],
        visit: &[u8],
        log: &LogEntry,
        device_id: &str,
    ) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO visits (visit_id, store_id, territory_id, rep_id, planned_start, status, doc, heads)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(visit_id) DO UPDATE SET store_id = excluded.store_id, territory_id = excluded.territory_id,
                   rep_id = excluded.rep_id, planned_start = excluded.planned_start, status = excluded.status,
                   doc = excluded.doc, heads = excluded.heads",
            )?
            .execute(params![
                m.visit_id,
                m.store_id,
                m.territory_id,
                m.rep_id,
                m.planned_start,
                m.status,
                doc,
                heads_to_bytes(heads)
            ])?;
        self.tx
            .prepare_cached(
                "INSERT INTO visit_reads (visit_id, visit) VALUES (?1, ?2)
                 ON CONFLICT(visit_id) DO UPDATE SET visit = excluded.visit",
            )?
            .execute(params![m.visit_id, visit])?;
        if log.changes == 0 {
            // The row may have changed without a log row (a server edit that added no
            // change, with the store since moved to another territory): no device's mark
            // can vouch for it any more.
            self.tx
                .prepare_cached("DELETE FROM device_synced")?
                .execute([])?;
        } else {
            self.tx
                .prepare_cached(
                    "INSERT INTO change_log (visit_id, device_id, territory_id, changes, heads_before, heads_after)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    m.visit_id,
                    device_id,
                    m.territory_id,
                    log.changes as i64,
                    heads_to_bytes(&log.heads_before),
                    heads_to_bytes(heads)
                ])?;
        }
        if log.hold {
            self.tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO device_visits (device_id, visit_id) VALUES (?1, ?2)",
                )?
                .execute(params![device_id, m.visit_id])?;
        }
        Ok(())
    }
}

/// A stored visit with its document as Automerge bytes (documents are stored packed:
/// [`fieldsync_core::document::pack_document`]).
pub(crate) fn unpacked(mut v: StoredVisit) -> StoreResult<StoredVisit> {
    if let std::borrow::Cow::Owned(doc) = unpack_document(&v.doc)? {
        v.doc = doc;
    }
    Ok(v)
}

fn in_list(n: usize, start: usize) -> String {
    (0..n)
        .map(|i| format!("?{}", start + i))
        .collect::<Vec<_>>()
        .join(",")
}

/// Most ids of one `in_scope` statement (SQLite limits its parameters).
const IN_SCOPE_CHUNK: usize = 500;

/// The scope's conditions on `visits v` (each starting with ` AND `; empty for every
/// visit), numbering their parameters after those in `args`, which they are appended to.
fn scope_filter(scope: &Scope, args: &mut Vec<rusqlite::types::Value>) -> String {
    let mut sql = String::new();
    if let Some(ts) = &scope.territories {
        sql.push_str(&format!(
            " AND v.territory_id IN ({})",
            in_list(ts.len(), args.len() + 1)
        ));
        args.extend(ts.iter().map(|t| t.clone().into()));
    }
    if let Some(rep) = &scope.rep_id {
        args.push(rep.clone().into());
        sql.push_str(&format!(" AND v.rep_id = ?{}", args.len()));
    }
    if let Some((from, to)) = scope.window {
        sql.push_str(&format!(
            " AND v.planned_start BETWEEN ?{} AND ?{}",
            args.len() + 1,
            args.len() + 2
        ));
        args.push(from.into());
        args.push(to.into());
    }
    sql
}

/// The visits `device_id` holds outside `scope`: one probe of `visits` per held visit.
fn leaving_probed(conn: &Connection, device_id: &str, scope: &Scope) -> StoreResult<Vec<String>> {
    let mut args: Vec<rusqlite::types::Value> = vec![device_id.to_string().into()];
    let in_scope = scope_filter(scope, &mut args);
    let sql = format!(
        "SELECT d.visit_id FROM device_visits d WHERE d.device_id = ?1
             AND NOT EXISTS (SELECT 1 FROM visits v INDEXED BY visits_id_scope
               WHERE v.visit_id = d.visit_id{in_scope})
             ORDER BY d.visit_id"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_map(rusqlite::params_from_iter(args), |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?)
}

/// Up to `limit` visits of `scope` in `range` (by id) not held by `not_held_by`, read in
/// id order through the index that suits the scope.
fn entering_probed(
    conn: &Connection,
    scope: &Scope,
    not_held_by: Option<&str>,
    range: IdRange<'_>,
    limit: usize,
) -> StoreResult<Vec<String>> {
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    // The plan is chosen here: without statistics SQLite cannot tell a rep's visits
    // from a territory's. A rep's scope is small: read through visits_rep, then
    // sorted (a pull takes a rep's from [`RepView`]; this answers any scope, which is
    // what the view is tested against). Whole territories are read in id order from `after` when the range is
    // open above, only as far as `limit` needs: the device holds little there (see
    // `feed::pull`). Up to a bound, where it holds most of them, through visits_scope:
    // one pass over the territories' index entries, not over every visit's.
    let index = match (&scope.territories, &scope.rep_id, &scope.window) {
        (_, Some(_), _) => " INDEXED BY visits_rep",
        (None, None, None) => " INDEXED BY visits_id_scope",
        (Some(_), None, None) if range.until.is_none() => " INDEXED BY visits_id_scope",
        (Some(_), None, None) => " INDEXED BY visits_scope",
        (_, None, Some(_)) => "",
    };
    let mut sql = format!(
        "SELECT v.visit_id FROM visits v{index} WHERE 1 = 1{}",
        scope_filter(scope, &mut args)
    );
    if let Some(after) = range.after {
        args.push(after.to_string().into());
        sql.push_str(&format!(" AND v.visit_id > ?{}", args.len()));
    }
    if let Some(until) = range.until {
        args.push(until.to_string().into());
        sql.push_str(&format!(" AND v.visit_id <= ?{}", args.len()));
    }
    if let Some(device) = not_held_by {
        args.push(device.to_string().into());
        sql.push_str(&format!(
            " AND NOT EXISTS (SELECT 1 FROM device_visits d
                   WHERE d.device_id = ?{} AND d.visit_id = v.visit_id)",
            args.len()
        ));
    }
    args.push((limit as i64).into());
    sql.push_str(&format!(" ORDER BY v.visit_id LIMIT ?{}", args.len()));
    Ok(conn
        .prepare_cached(&sql)?
        .query_map(rusqlite::params_from_iter(args), |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?)
}

/// The SQLite side of a pull: reads on one read transaction.
struct SqliteFeed<'a> {
    conn: &'a Connection,
    /// A rep's scope and the device's holdings, each read once per pull (see [`RepView`]).
    rep_view: Option<RepView>,
    /// Whether pulls use and make [`HoldWrite::Synced`] marks (always, but in the test that
    /// compares both ways).
    marks: bool,
}

impl<'a> SqliteFeed<'a> {
    fn new(conn: &'a Connection) -> Self {
        Self {
            conn,
            rep_view: None,
            marks: true,
        }
    }

    /// The [`RepView`] of `scope` (a rep's) and `device`, read now unless this pull
    /// already did.
    fn rep_view(&mut self, scope: &Scope, device: Option<&str>) -> StoreResult<&RepView> {
        let fresh = self.rep_view.as_ref().is_some_and(|v| {
            v.scope == *scope && (device.is_none() || v.device.as_deref() == device)
        });
        if !fresh {
            self.rep_view = Some(RepView::read(self.conn, scope, device)?);
        }
        Ok(self.rep_view.as_ref().expect("just read"))
    }
}

/// A rep's scope (their visits in the window: one range of the `visits_rep` index)
/// against the visits a device holds (one range of `device_visits`, in id order), merged
/// once per pull into what leaves and what could enter. Two sequential index reads
/// instead of the anti-joins' probe per held visit and per visit in scope, which made
/// each sync's cost grow with the device's holdings.
struct RepView {
    scope: Scope,
    device: Option<String>,
    /// Held, not in the scope (id order).
    leaving: Vec<String>,
    /// In the scope (id order), and whether the device holds each.
    in_scope: Vec<String>,
    held: Vec<bool>,
}

impl RepView {
    fn read(conn: &Connection, scope: &Scope, device: Option<&str>) -> StoreResult<Self> {
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let sql = format!(
            "SELECT v.visit_id FROM visits v INDEXED BY visits_rep WHERE 1 = 1{}",
            scope_filter(scope, &mut args)
        );
        let mut in_scope: Vec<String> = conn
            .prepare_cached(&sql)?
            .query_map(rusqlite::params_from_iter(args), |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        // Byte order, as SQLite's BINARY collation orders `device_visits`.
        in_scope.sort_unstable();
        let mut leaving = Vec::new();
        let mut held_mask = vec![false; in_scope.len()];
        let mut next = 0; // in_scope[..next] is merged
        if let Some(d) = device {
            let mut stmt = conn.prepare_cached(
                "SELECT visit_id FROM device_visits WHERE device_id = ?1 ORDER BY visit_id",
            )?;
            let mut rows = stmt.query([d])?;
            while let Some(row) = rows.next()? {
                let held = row
                    .get_ref(0)?
                    .as_str()
                    .map_err(|e| StoreError::Database(Box::new(e)))?;
                while next < in_scope.len() && in_scope[next].as_str() < held {
                    next += 1;
                }
                if next < in_scope.len() && in_scope[next] == held {
                    held_mask[next] = true;
                    next += 1;
                } else {
                    leaving.push(held.to_string());
                }
            }
        }
        Ok(Self {
            scope: scope.clone(),
            device: device.map(str::to_string),
            leaving,
            in_scope,
            held: held_mask,
        })
    }

    /// Up to `limit` ids in `range` of the scope, or of what in it is not held.
    fn entering(&self, not_held: bool, range: IdRange<'_>, limit: usize) -> Vec<String> {
        let from = range
            .after
            .map_or(0, |a| self.in_scope.partition_point(|v| v.as_str() <= a));
        self.in_scope[from..]
            .iter()
            .zip(&self.held[from..])
            .take_while(|(v, _)| range.until.is_none_or(|u| v.as_str() <= u))
            .filter(|(_, held)| !(not_held && **held))
            .take(limit)
            .map(|(v, _)| v.clone())
            .collect()
    }
}

impl FeedSource for SqliteFeed<'_> {
    fn max_seq(&mut self) -> StoreResult<i64> {
        Ok(self
            .conn
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM change_log")?
            .query_row([], |r| r.get(0))?)
    }

    fn leaving(&mut self, device_id: &str, scope: &Scope) -> StoreResult<Vec<String>> {
        if scope.rep_id.is_some() {
            return Ok(self.rep_view(scope, Some(device_id))?.leaving.clone());
        }
        leaving_probed(self.conn, device_id, scope)
    }

    fn entering(
        &mut self,
        scope: &Scope,
        not_held_by: Option<&str>,
        range: IdRange<'_>,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        if scope.rep_id.is_some() {
            let view = self.rep_view(scope, not_held_by)?;
            return Ok(view.entering(not_held_by.is_some(), range, limit));
        }
        entering_probed(self.conn, scope, not_held_by, range, limit)
    }

    fn last_held(&mut self, device_id: &str) -> StoreResult<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT MAX(visit_id) FROM device_visits WHERE device_id = ?1")?
            .query_row([device_id], |r| r.get(0))?)
    }

    fn in_scope(&mut self, scope: &Scope, visit_ids: &[&str]) -> StoreResult<HashSet<String>> {
        let mut out = HashSet::new();
        for ids in visit_ids.chunks(IN_SCOPE_CHUNK) {
            let mut args: Vec<rusqlite::types::Value> =
                ids.iter().map(|id| id.to_string().into()).collect();
            let in_scope = scope_filter(scope, &mut args);
            let sql = format!(
                "SELECT v.visit_id FROM visits v INDEXED BY visits_id_scope
                 WHERE v.visit_id IN ({}){in_scope}",
                in_list(ids.len(), 1)
            );
            // Not cached: the text varies with the number of ids (the visits a device sends
            // heads of after a restore, or those changed since its mark: few).
            let mut stmt = self.conn.prepare(&sql)?;
            let found = stmt.query_map(rusqlite::params_from_iter(args), |r| r.get(0))?;
            for id in found {
                out.insert(id?);
            }
        }
        Ok(out)
    }

    fn document(&mut self, visit_id: &str, with_read: bool) -> StoreResult<Option<StoredDocument>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT doc, heads, CASE WHEN ?2 THEN
                   (SELECT visit FROM visit_reads r WHERE r.visit_id = v.visit_id) END
                 FROM visits v WHERE visit_id = ?1",
            )?
            .query_row(params![visit_id, with_read], |r| {
                Ok(StoredDocument {
                    doc: r.get(0)?,
                    heads: heads_from_bytes(&r.get::<_, Vec<u8>>(1)?),
                    visit: r.get(2)?,
                })
            })
            .optional()?)
    }

    fn keeps_synced(&self) -> bool {
        self.marks
    }

    fn synced(&mut self, device_id: &str) -> StoreResult<Option<(String, i64)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT scope, seq FROM device_synced WHERE device_id = ?1")?
            .query_row([device_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    fn changed_since(&mut self, seq: i64, max_rows: usize) -> StoreResult<Option<Vec<String>>> {
        let ids: Vec<String> = self
            .conn
            .prepare_cached("SELECT visit_id FROM change_log WHERE seq > ?1 ORDER BY seq LIMIT ?2")?
            .query_map(params![seq, max_rows as i64 + 1], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok((ids.len() <= max_rows).then_some(ids))
    }

    fn held_of(&mut self, device_id: &str, visit_ids: &[&str]) -> StoreResult<HashSet<String>> {
        let mut out = HashSet::new();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM device_visits WHERE device_id = ?1 AND visit_id = ?2")?;
        for id in visit_ids {
            if stmt.exists(params![device_id, id])? {
                out.insert(id.to_string());
            }
        }
        Ok(out)
    }

    fn feed(&mut self, device_id: &str, cursor: i64, limit: usize) -> StoreResult<Vec<LogRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT c.seq, c.visit_id, c.changes, c.heads_before, c.heads_after FROM change_log c
             JOIN device_visits d ON d.visit_id = c.visit_id AND d.device_id = ?1
             WHERE c.seq > ?2 AND c.device_id != ?1 ORDER BY c.seq LIMIT ?3",
        )?;
        let rows = stmt
            .query_map(params![device_id, cursor, limit as i64], |r| {
                Ok(LogRow {
                    seq: r.get(0)?,
                    visit_id: r.get(1)?,
                    changes: r.get(2)?,
                    heads_before: heads_from_bytes(&r.get::<_, Vec<u8>>(3)?),
                    heads_after: heads_from_bytes(&r.get::<_, Vec<u8>>(4)?),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

/// Applies confirmed holdings changes of a device, in order.
fn apply_holdings(tx: &Connection, device_id: &str, writes: &[HoldWrite]) -> StoreResult<()> {
    for w in writes {
        match w {
            HoldWrite::ForgetAll => {
                tx.execute(
                    "DELETE FROM device_synced WHERE device_id = ?1",
                    [device_id],
                )?;
                tx.execute(
                    "DELETE FROM device_visits WHERE device_id = ?1",
                    [device_id],
                )?
            }
            HoldWrite::Synced { scope, seq } => tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO device_synced (device_id, scope, seq) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![device_id, scope, seq])?,
            HoldWrite::Forget(v) => tx.execute(
                "DELETE FROM device_visits WHERE device_id = ?1 AND visit_id = ?2",
                params![device_id, v],
            )?,
            HoldWrite::Hold(v) => tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO device_visits (device_id, visit_id) VALUES (?1, ?2)",
                )?
                .execute(params![device_id, v])?,
        };
    }
    Ok(())
}

impl Store for SqliteStore {
    fn epoch(&self) -> StoreResult<String> {
        Ok(self
            .read()
            .prepare_cached("SELECT value FROM meta WHERE key = 'epoch'")?
            .query_row([], |r| r.get(0))?)
    }

    fn create_user(&self, u: &NewUser) -> StoreResult<()> {
        let conn = self.lock();
        let n = conn.execute(
            "INSERT OR IGNORE INTO users (id, username, role, territories, password_hash) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![u.id, u.username, u.role.as_str(), serde_json::to_string(&u.territories)?, u.password_hash],
        )?;
        if n == 0 {
            return Err(StoreError::Conflict(format!(
                "a user named {:?} or with id {:?} already exists",
                u.username, u.id
            )));
        }
        Ok(())
    }

    fn user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        Ok(self
            .lock()
            .query_row(
                "SELECT id, username, role, territories, password_hash, disabled FROM users WHERE username = ?1",
                [username],
                user_row,
            )
            .optional()?)
    }

    fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        Ok(self
            .lock()
            .query_row(
                "SELECT id, username, role, territories, password_hash, disabled FROM users WHERE id = ?1",
                [id],
                user_row,
            )
            .optional()?)
    }

    fn create_token(
        &self,
        user_id: &str,
        device_id: &str,
        token_hash: &str,
        now: i64,
    ) -> StoreResult<String> {
        let id = uuid::Uuid::new_v4().to_string();
        self.lock().execute(
            "INSERT INTO tokens (id, user_id, device_id, token_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, user_id, device_id, token_hash, now],
        )?;
        Ok(id)
    }

    fn authenticate(&self, token_hash: &str) -> StoreResult<Option<(UserRecord, TokenRecord)>> {
        let conn = self.read();
        let row = conn
            .prepare_cached(
                "SELECT u.id, u.username, u.role, u.territories, u.password_hash, u.disabled, t.id, t.device_id
                 FROM tokens t JOIN users u ON u.id = t.user_id
                 WHERE t.token_hash = ?1 AND t.revoked_at IS NULL AND u.disabled = 0",
            )?
            .query_row([token_hash], |r| {
                let u = user_row(r)?;
                let t = TokenRecord { id: r.get(6)?, user_id: u.id.clone(), device_id: r.get(7)? };
                Ok((u, t))
            })
            .optional()?;
        Ok(row)
    }

    fn revoke_user(&self, username: &str, now: i64) -> StoreResult<usize> {
        let conn = self.lock();
        let id: Option<String> = conn
            .query_row(
                "SELECT id FROM users WHERE username = ?1",
                [username],
                |r| r.get(0),
            )
            .optional()?;
        let Some(id) = id else {
            return Err(StoreError::NotFound(format!("no user named {username:?}")));
        };
        Ok(conn.execute(
            "UPDATE tokens SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
            params![id, now],
        )?)
    }

    fn revoke_token(&self, token_id: &str, now: i64) -> StoreResult<bool> {
        let n = self.lock().execute(
            "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![token_id, now],
        )?;
        Ok(n > 0)
    }

    fn reference(&self) -> StoreResult<Arc<ReferenceData>> {
        Ok(self
            .refs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone())
    }

    fn import_reference_at(&self, mut data: ReferenceData, now: i64) -> StoreResult<i64> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let old: i64 =
            tx.query_row("SELECT COALESCE(MAX(version), 0) FROM reference", [], |r| {
                r.get(0)
            })?;
        data.version = data.version.max(old + 1);
        tx.execute(
            "INSERT INTO reference (id, version, data) VALUES (1, ?1, ?2)
             ON CONFLICT(id) DO UPDATE SET version = excluded.version, data = excluded.data",
            params![data.version, serde_json::to_string(&data)?],
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO reference_history (version, imported_at, data)
             VALUES (?1, ?2, ?3)",
            params![data.version, now, pack_reference(&data)?],
        )?;
        tx.execute(
            "DELETE FROM reference_history WHERE version <
               (SELECT MAX(version) FROM reference_history WHERE imported_at <= ?1)",
            [reference_history_cutoff(now)],
        )?;
        tx.commit()?;
        let v = data.version;
        *self
            .refs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(data);
        Ok(v)
    }

    fn reference_versions(&self) -> StoreResult<Vec<(i64, i64)>> {
        let conn = self.read();
        let mut st = conn.prepare_cached(
            "SELECT version, imported_at FROM reference_history ORDER BY version",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn reference_version(&self, version: i64) -> StoreResult<Option<ReferenceData>> {
        let bytes: Option<Vec<u8>> = self
            .read()
            .query_row(
                "SELECT data FROM reference_history WHERE version = ?1",
                [version],
                |r| r.get(0),
            )
            .optional()?;
        bytes.as_deref().map(unpack_reference).transpose()
    }

    fn with_visit(
        &self,
        visit_id: &str,
        f: &mut dyn FnMut(&mut dyn VisitTxn) -> StoreResult<()>,
    ) -> StoreResult<()> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut w = self.writer();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        if w.open.is_none() {
            w.conn.execute_batch("BEGIN IMMEDIATE")?;
            w.next_gen += 1;
            w.open = Some(w.next_gen);
            w.opened_at = Some(Instant::now());
        }
        let generation = w.next_gen;
        // This visit's writes in a savepoint: an error undoes them, not the batch.
        let result: StoreResult<()> = match w.conn.savepoint() {
            Ok(sp) => {
                let r = {
                    let mut t = SqliteTxn {
                        tx: &sp,
                        visit_id: visit_id.to_string(),
                    };
                    f(&mut t)
                };
                match r {
                    Ok(()) => sp.commit().map_err(StoreError::from),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e.into()),
        };
        if w.conn.is_autocommit() {
            // SQLite rolled the whole batch back (I/O error, disk full): it failed.
            w.open = None;
            w.failed
                .push_back((generation, "the write transaction was rolled back".into()));
            w.done = generation;
            w.in_batch = 0;
            self.committed.notify_all();
            result?;
            return Err(StoreError::Database(
                "the write transaction was rolled back".into(),
            ));
        }
        w.in_batch += 1;
        let full =
            w.in_batch >= BATCH_VISITS || w.opened_at.is_some_and(|t| t.elapsed() >= BATCH_AGE);
        if full || self.waiting.load(Ordering::SeqCst) == 0 {
            self.end_batch(&mut w);
        }
        result?;
        // Acknowledged = durable: wait for the commit of this batch.
        while w.done < generation {
            let (g, timeout) = self
                .committed
                .wait_timeout(w, BATCH_AGE * 5)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            w = g;
            if timeout.timed_out() && w.open == Some(generation) {
                // Whoever was to end the batch did not (it panicked): end it here.
                self.end_batch(&mut w);
            }
        }
        if let Some((_, e)) = w.failed.iter().find(|(g, _)| *g == generation) {
            return Err(StoreError::Database(format!("commit failed: {e}").into()));
        }
        Ok(())
    }

    fn visit(&self, visit_id: &str) -> StoreResult<Option<StoredVisit>> {
        let mut conn = self.read();
        let tx = conn.transaction()?;
        let t = SqliteTxn {
            tx: &tx,
            visit_id: visit_id.to_string(),
        };
        t.stored()
    }

    fn actor_binding(&self, actor_hex: &str) -> StoreResult<Option<(String, String)>> {
        let mut conn = self.read();
        let tx = conn.transaction()?;
        let t = SqliteTxn {
            tx: &tx,
            visit_id: String::new(),
        };
        t.actor_binding(actor_hex)
    }

    fn confirm(&self, device_id: &str, token: &str) -> StoreResult<()> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let confirmed: Option<String> = tx
            .query_row(
                "SELECT writes FROM device_pending WHERE device_id = ?1 AND token = ?2",
                params![device_id, token],
                |r| r.get(0),
            )
            .optional()?;
        // Confirmed: every other pending answer is one the device did not use. Not
        // found (already replaced by a duplicate's confirmation): nothing is dropped,
        // an answer still on its way may be the one the device confirms next.
        if let Some(json) = confirmed {
            let writes: Vec<HoldWrite> = serde_json::from_str(&json)?;
            apply_holdings(&tx, device_id, &writes)?;
            tx.execute(
                "DELETE FROM device_pending WHERE device_id = ?1",
                [device_id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn pull(&self, q: &PullQuery) -> StoreResult<PullPage> {
        // Reads on one committed snapshot (a reader); the bookkeeping is written afterwards
        // on the writer. Only committed changes are seen, so the cursor never covers a
        // change that might still roll back.
        let (mut page, writes) = {
            let mut conn = self.read();
            let tx = conn.transaction()?;
            let out = feed::pull(&mut SqliteFeed::new(&tx), q)?;
            tx.commit()?;
            out
        };
        // A request without a cursor (first sync, heads after a restore) drops no pending
        // answer either: a delayed copy of an earlier request may be answered after the
        // answer the device goes on to confirm.
        if !writes.is_empty() {
            let mut conn = self.lock();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let token = feed::new_token();
            tx.execute(
                "INSERT INTO device_pending (device_id, token, writes, created_at)
                     VALUES (?1, ?2, ?3, COALESCE((SELECT MAX(created_at) FROM device_pending
                                                   WHERE device_id = ?1), 0) + 1)",
                params![q.device_id, token, serde_json::to_string(&writes)?],
            )?;
            tx.execute(
                "DELETE FROM device_pending WHERE device_id = ?1 AND created_at <=
                       (SELECT MAX(created_at) FROM device_pending WHERE device_id = ?1) - ?2",
                params![q.device_id, feed::MAX_PENDING_ANSWERS],
            )?;
            page.token = Some(token);
            tx.commit()?;
        }
        Ok(page)
    }

    fn backup(&self, path: &Path) -> StoreResult<()> {
        {
            let conn = self.lock();
            let mut dst = Connection::open(path)?;
            let b = rusqlite::backup::Backup::new(&conn, &mut dst)?;
            b.run_to_completion(256, std::time::Duration::from_millis(5), None)?;
        }
        // The copy is a different history from the moment it is restored: new epoch.
        let dst = Connection::open(path)?;
        dst.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'epoch'",
            [new_epoch()],
        )?;
        dst.execute("DELETE FROM device_visits", [])?;
        dst.execute("DELETE FROM device_synced", [])?;
        dst.execute("DELETE FROM device_pending", [])?;
        Ok(())
    }

    fn counts(&self) -> StoreResult<(i64, i64)> {
        let conn = self.lock();
        let v = conn.query_row("SELECT COUNT(*) FROM visits", [], |r| r.get(0))?;
        let c = conn.query_row(
            "SELECT COALESCE(SUM(changes), 0) FROM change_log",
            [],
            |r| r.get(0),
        )?;
        Ok((v, c))
    }

    fn visit_rows_in_range(
        &self,
        territories: Option<&[String]>,
        from: i64,
        to: i64,
        with_docs: bool,
    ) -> StoreResult<Vec<(VisitMeta, Option<Vec<u8>>)>> {
        let mut sql = format!(
            "SELECT visit_id, store_id, territory_id, rep_id, planned_start, status{} FROM visits
             WHERE planned_start BETWEEN ?1 AND ?2",
            if with_docs { ", doc" } else { "" }
        );
        let mut args: Vec<rusqlite::types::Value> = vec![from.into(), to.into()];
        if let Some(ts) = territories {
            sql.push_str(&format!(" AND territory_id IN ({})", in_list(ts.len(), 3)));
            args.extend(ts.iter().map(|t| t.clone().into()));
        }
        sql.push_str(" ORDER BY planned_start, visit_id");
        let conn = self.lock();
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                let meta = VisitMeta {
                    visit_id: r.get(0)?,
                    store_id: r.get(1)?,
                    territory_id: r.get(2)?,
                    rep_id: r.get(3)?,
                    planned_start: r.get(4)?,
                    status: r.get(5)?,
                };
                Ok((meta, if with_docs { Some(r.get(6)?) } else { None }))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn visit_reads(&self, visit_ids: &[&str]) -> StoreResult<Vec<(String, Vec<u8>)>> {
        let conn = self.read();
        let mut out = Vec::with_capacity(visit_ids.len());
        for ids in visit_ids.chunks(READS_PER_QUERY) {
            let sql = format!(
                "SELECT visit_id, visit FROM visit_reads WHERE visit_id IN ({})",
                in_list(ids.len(), 1)
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(ids), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            for row in rows {
                out.push(row?);
            }
        }
        Ok(out)
    }

    fn visits_without_reads(
        &self,
        after: &str,
        limit: usize,
    ) -> StoreResult<Vec<(String, Vec<u8>)>> {
        let conn = self.read();
        let mut stmt = conn.prepare_cached(
            "SELECT v.visit_id, v.doc FROM visits v LEFT JOIN visit_reads r ON r.visit_id = v.visit_id
             WHERE v.visit_id > ?1 AND r.visit_id IS NULL ORDER BY v.visit_id LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![after, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn add_visit_reads(&self, reads: &[(String, Vec<u8>)]) -> StoreResult<usize> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut added = 0;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO visit_reads (visit_id, visit) VALUES (?1, ?2) ON CONFLICT (visit_id) DO NOTHING",
            )?;
            for (visit_id, visit) in reads {
                added += stmt.execute(params![visit_id, visit])?;
            }
        }
        tx.commit()?;
        Ok(added)
    }

    fn changes_since(
        &self,
        territories: Option<&[String]>,
        since: i64,
        limit: usize,
    ) -> StoreResult<(i64, Vec<String>)> {
        let mut filter = String::new();
        let mut args: Vec<rusqlite::types::Value> = vec![since.into()];
        if let Some(ts) = territories {
            filter = format!(" AND territory_id IN ({})", in_list(ts.len(), 2));
            args.extend(ts.iter().map(|t| t.clone().into()));
        }
        let conn = self.lock();
        let latest: Option<i64> = conn.query_row(
            &format!("SELECT MAX(seq) FROM change_log WHERE seq > ?1{filter}"),
            rusqlite::params_from_iter(args.clone()),
            |r| r.get(0),
        )?;
        let Some(latest) = latest else {
            return Ok((since, Vec::new()));
        };
        args.push((limit as i64).into());
        let mut stmt = conn.prepare(&format!(
            "SELECT visit_id, MAX(seq) AS m FROM change_log WHERE seq > ?1{filter}
             GROUP BY visit_id ORDER BY m DESC LIMIT ?{}",
            args.len()
        ))?;
        let ids = stmt
            .query_map(rusqlite::params_from_iter(args), |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok((latest, ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    fn fixture_refs() -> ReferenceData {
        fieldsync_core::fixtures::reference_data(
            5,
            &fieldsync_core::fixtures::FixtureSize::default(),
            chrono::Utc::now().date_naive(),
        )
    }

    /// An import deletes the versions no longer in effect within REFERENCE_HISTORY_DAYS:
    /// the one in effect at the cutoff stays, the ones before it go.
    #[test]
    fn old_reference_versions_are_deleted_once_out_of_reach() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open_dir(dir.path()).unwrap();
        let r = fixture_refs();
        let versions: Vec<i64> = (0..4)
            .map(|_| s.import_reference(r.clone()).unwrap())
            .collect();
        // Imported 500, 450, 350 and 10 days ago: at the cutoff (400 days ago) the second
        // was in effect.
        let now = chrono::Utc::now().timestamp_millis();
        for (v, days) in versions.iter().zip([500, 450, 350, 10]) {
            s.lock()
                .execute(
                    "UPDATE reference_history SET imported_at = ?2 WHERE version = ?1",
                    params![v, now - days * 86_400_000],
                )
                .unwrap();
        }
        let v5 = s.import_reference(r).unwrap();
        let kept: Vec<i64> = s
            .reference_versions()
            .unwrap()
            .iter()
            .map(|k| k.0)
            .collect();
        assert_eq!(kept, vec![versions[1], versions[2], versions[3], v5]);
        assert!(s.reference_version(versions[0]).unwrap().is_none());
        assert!(s.reference_version(versions[1]).unwrap().is_some());
    }

    /// A database from before the history gets its current reference data as the version
    /// in effect since then (imported at 0), once.
    #[test]
    fn the_reference_data_of_an_older_database_becomes_its_first_kept_version() {
        let dir = tempfile::tempdir().unwrap();
        let v = {
            let s = SqliteStore::open_dir(dir.path()).unwrap();
            let v = s.import_reference(fixture_refs()).unwrap();
            s.lock()
                .execute("DELETE FROM reference_history", [])
                .unwrap();
            v
        };
        for _ in 0..2 {
            let s = SqliteStore::open_dir(dir.path()).unwrap();
            assert_eq!(s.reference_versions().unwrap(), vec![(v, 0)]);
            assert_eq!(s.reference_version(v).unwrap().unwrap().version, v);
        }
    }

    /// How often one cached `LIMIT ?1` statement was prepared again over three runs
    /// with different limits.
    fn reprepares(conn: &Connection) -> i32 {
        conn.execute_batch(
            "CREATE TABLE t (x INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3);",
        )
        .unwrap();
        let sql = "SELECT x FROM t WHERE x > ?1 ORDER BY x LIMIT ?2";
        for limit in 1..=3i64 {
            let rows: Vec<i64> = conn
                .prepare_cached(sql)
                .unwrap()
                .query_map([0, limit], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            assert_eq!(rows.len() as i64, limit);
        }
        conn.prepare_cached(sql)
            .unwrap()
            .get_status(StatementStatus::RePrepare)
    }

    /// A fresh in-memory database with the schema.
    fn schema_db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        configure(&conn).unwrap();
        migrate(&mut conn).unwrap();
        conn
    }

    /// A seeded generator of numbers below its argument.
    fn numbers(mut seed: u64) -> impl FnMut(u64) -> u64 {
        move |n| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) % n
        }
    }

    /// A rep's `leaving` and `entering` from the merged index ranges of [`RepView`] are the
    /// anti-joins' answers, over random visits, holdings, scopes, id ranges and limits.
    #[test]
    fn rep_scope_sets_answer_as_the_anti_joins() {
        let conn = schema_db();
        let mut next = numbers(0x9e37_79b9_7f4a_7c15);
        let id = |i: u64| format!("v-{i:03}");
        for i in 0..300 {
            conn.execute(
                "INSERT INTO visits (visit_id, store_id, territory_id, rep_id, planned_start,
                                     status, doc) VALUES (?1, 's', ?2, ?3, ?4, 'planned', x'')",
                params![
                    id(i),
                    format!("t-{}", next(3)),
                    format!("rep-{}", next(4)),
                    next(100) as i64
                ],
            )
            .unwrap();
        }
        for d in 0..3 {
            for _ in 0..120 {
                // Ids up to 330: some held visits are not in `visits` at all.
                conn.execute(
                    "INSERT OR IGNORE INTO device_visits (device_id, visit_id) VALUES (?1, ?2)",
                    params![format!("dev-{d}"), id(next(330))],
                )
                .unwrap();
            }
        }
        let mut compared = (0, 0);
        for round in 0..200 {
            let territories = match next(4) {
                0 => vec![],
                1 => vec!["t-0".to_string()],
                _ => vec!["t-1".to_string(), "t-2".to_string()],
            };
            let from = next(100) as i64;
            let scope = Scope {
                territories: Some(territories),
                rep_id: Some(format!("rep-{}", next(4))),
                window: (round % 5 != 0).then(|| (from, from + next(60) as i64)),
            };
            let device = format!("dev-{}", next(4));
            let mut feed = SqliteFeed::new(&conn);
            let leaving = feed.leaving(&device, &scope).unwrap();
            assert_eq!(leaving, leaving_probed(&conn, &device, &scope).unwrap());
            compared.0 += leaving.len();
            for _ in 0..4 {
                let (after, until) = (id(next(310)), id(next(310)));
                let range = IdRange {
                    after: (next(2) == 0).then_some(after.as_str()),
                    until: (next(2) == 0).then_some(until.as_str()),
                };
                let not_held_by = (next(3) != 0).then_some(device.as_str());
                let limit = [1, 3, 1000][next(3) as usize];
                let got = feed.entering(&scope, not_held_by, range, limit).unwrap();
                let want = entering_probed(&conn, &scope, not_held_by, range, limit).unwrap();
                assert_eq!(got, want, "{scope:?} {not_held_by:?} limit {limit}");
                compared.1 += got.len();
            }
        }
        // The cases compared were not all empty.
        assert!(compared.0 > 500 && compared.1 > 500, "{compared:?}");
    }

    /// Pages of managers' devices computed from their marks (only the visits changed since
    /// are checked) are the pages computed from their whole holdings, write for write,
    /// over random new visits, visits moving between territories, the devices' own pushes,
    /// saves without a log row, scope changes, lost answers and first syncs.
    #[test]
    fn territory_marks_answer_as_the_whole_holdings() {
        use automerge::transaction::Transactable;
        let conn = schema_db();
        let mut next = numbers(0x2545_f491_4f6c_dd1d);
        // One small real document for every visit (the feed loads it).
        let mut am = automerge::Automerge::new();
        let mut tx = am.transaction();
        tx.put(automerge::ROOT, "k", 1).unwrap();
        tx.commit();
        let (doc, heads) = (am.save(), am.get_heads());
        let save = |conn: &Connection, visit: &str, territory: &str, device: &str, changes| {
            let mut t = SqliteTxn {
                tx: conn,
                visit_id: visit.into(),
            };
            let meta = VisitMeta {
                visit_id: visit.into(),
                store_id: "s".into(),
                territory_id: territory.into(),
                rep_id: "rep".into(),
                planned_start: 0,
                status: "planned".into(),
            };
            let log = LogEntry {
                changes,
                heads_before: Vec::new(),
                hold: true,
            };
            t.save(&meta, &doc, &heads, &[], &log, device).unwrap();
        };
        let territory = |i: u64| format!("t-{i}");
        let scopes = [vec!["t-0"], vec!["t-0", "t-1"], vec!["t-2", "t-1"]];
        // Per device: scope, cursor.
        let mut devices: Vec<(usize, Option<i64>)> = vec![(0, None), (1, None)];
        let mut visits = 0u64;
        let (mut marked, mut marked_moves, mut pulls) = (0, 0, 0);
        for round in 0..600 {
            for _ in 0..=next(3) {
                match next(20) {
                    0..=7 => {
                        visits += 1;
                        save(
                            &conn,
                            &format!("v-{visits:04}"),
                            &territory(next(3)),
                            "rep-dev",
                            1,
                        );
                    }
                    8..=13 if visits > 0 => {
                        let v = format!("v-{:04}", 1 + next(visits));
                        save(&conn, &v, &territory(next(3)), "rep-dev", 1);
                    }
                    14..=16 if visits > 0 => {
                        // A manager's own push (sometimes outside its scope).
                        let v = format!("v-{:04}", 1 + next(visits));
                        save(
                            &conn,
                            &v,
                            &territory(next(3)),
                            &format!("dev-{}", next(2)),
                            1,
                        );
                    }
                    17 if visits > 0 => {
                        let v = format!("v-{:04}", 1 + next(visits));
                        save(&conn, &v, &territory(next(3)), "server", 0);
                    }
                    _ => {}
                }
            }
            let d = next(2) as usize;
            let device = format!("dev-{d}");
            if next(25) == 0 {
                devices[d].0 = next(3) as usize;
            }
            if next(40) == 0 {
                devices[d].1 = None;
            }
            let (scope_ix, cursor) = devices[d];
            let scope = Scope {
                territories: Some(scopes[scope_ix].iter().map(|t| t.to_string()).collect()),
                rep_id: None,
                window: None,
            };
            let q = PullQuery {
                device_id: device.clone(),
                scope: scope.clone(),
                cursor,
                heads: None,
                limit: [2, 15, 1000][next(3) as usize],
                documents: next(4) != 0,
                visits: next(2) != 0,
            };
            let tx = conn.unchecked_transaction().unwrap();
            let mut src = SqliteFeed::new(&tx);
            let mark = src.synced(&device).unwrap();
            let incremental = cursor.is_some()
                && mark.as_ref().map(|m| &m.0) == crate::feed::scope_key(&scope).as_ref();
            let (a, writes_a) = feed::pull(&mut src, &q).unwrap();
            let unmarked = &mut SqliteFeed {
                marks: false,
                ..SqliteFeed::new(&tx)
            };
            let (b, writes_b) = feed::pull(unmarked, &q).unwrap();
            drop(tx);
            let docs = |p: &PullPage| {
                p.documents
                    .iter()
                    .map(|d| d.visit_id.clone())
                    .collect::<Vec<_>>()
            };
            let changed = |p: &PullPage| p.changes.iter().map(|c| c.0.clone()).collect::<Vec<_>>();
            let ctx = format!("round {round}, {device}, {q:?}");
            assert_eq!(a.purge, b.purge, "{ctx}");
            assert_eq!(docs(&a), docs(&b), "{ctx}");
            assert_eq!(changed(&a), changed(&b), "{ctx}");
            assert_eq!((a.more, a.cursor), (b.more, b.cursor), "{ctx}");
            let unmarked: Vec<HoldWrite> = writes_a
                .iter()
                .filter(|w| !matches!(w, HoldWrite::Synced { .. }))
                .cloned()
                .collect();
            assert_eq!(unmarked, writes_b, "{ctx}");
            assert!(
                !writes_b
                    .iter()
                    .any(|w| matches!(w, HoldWrite::Synced { .. }))
            );
            pulls += 1;
            if incremental {
                marked += 1;
                marked_moves += a.purge.len() + docs(&a).len() + changed(&a).len();
            }
            // Most answers arrive and are confirmed; some are lost.
            if next(5) != 0 {
                apply_holdings(&conn, &device, &writes_a).unwrap();
                devices[d].1 = Some(a.cursor);
            }
        }
        // Most pulls went by the marks, and those had visits to send and purge.
        assert!(marked * 2 > pulls, "{marked} of {pulls}");
        assert!(marked_moves > 100, "{marked_moves}");
    }

    #[test]
    fn cached_statements_keep_their_plan_when_rebound() {
        // The control: SQLite's default prepares such a statement again on every bind.
        let plain = Connection::open_in_memory().unwrap();
        plain.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        assert!(reprepares(&plain) >= 2);
        let configured = Connection::open_in_memory().unwrap();
        configure(&configured).unwrap();
        assert_eq!(reprepares(&configured), 0);
    }
}
