//! The PostgreSQL backend ([`PgStore`]): several stateless `fieldsync-server` instances
//! share one database.
//!
//! Same tables as the SQLite backend (see [`crate::store`]), created by the numbered
//! migrations in `migrations/postgres/` (recorded in `schema_migrations`, applied under an
//! advisory lock so instances starting together do not race).
//!
//! The [`Store`] trait is synchronous and the HTTP handlers call it inside
//! `spawn_blocking`, so this backend uses the blocking `postgres` client with an `r2d2`
//! connection pool (no async bridge needed), whose connections keep their prepared
//! statements ([`crate::pg_conn`]). Its methods must not be called from inside
//! an async task (the blocking client runs its own small runtime).
//!
//! ## Concurrency
//!
//! - **Per visit**: [`Store::with_visit`] runs in a READ COMMITTED transaction that first
//!   takes a transaction-level advisory lock on the visit id (it also covers visits that do
//!   not exist yet) and reads the document `FOR UPDATE`; a push through another instance
//!   for the same visit waits and then re-reads the committed document, so no change is lost.
//! - **Cursors never skip**: change-log sequence numbers are allocated at the very end of
//!   the write transaction, after taking one cluster-wide transaction-level advisory lock,
//!   as `MAX(seq) + n`. PostgreSQL releases transaction locks only after the commit is
//!   visible, so the next writer allocates its numbers after every lower number is visible:
//!   sequence order is commit order. A pull reads `MAX(seq)` and the changes in one
//!   REPEATABLE READ snapshot, so every change up to the cursor it hands out is visible
//!   to it, and a change that commits later has a higher number.
//! - Transactions failing with a serialization failure or a deadlock are retried (bounded).

use automerge::ChangeHash;
use fieldsync_core::model::{ReferenceData, Role};
use postgres::error::SqlState;
use postgres::{IsolationLevel, NoTls, Row};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::feed::{self, FeedSource, HoldWrite, IdRange, LogRow, heads_from_bytes, heads_to_bytes};
use crate::pg_conn::{Manager, PgConn, Tx};

use crate::store::{
    LogEntry, NewUser, PullPage, PullQuery, Scope, Store, StoreError, StoreResult, StoredDocument,
    StoredVisit, TokenRecord, UserRecord, VisitMeta, VisitTxn, pack_reference,
    reference_history_cutoff, unpack_reference, unpacked,
};

/// The numbered migrations, in order. The runner is ours, like the SQLite backend's
/// (`store::MIGRATIONS`): one scheme for both backends, under an advisory lock so that
/// instances starting together migrate once.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "change_log_per_push",
        include_str!("../migrations/postgres/0002_change_log_per_push.sql"),
    ),
    (
        3,
        "device_pending",
        include_str!("../migrations/postgres/0003_device_pending.sql"),
    ),
    (
        4,
        "scope_indexes",
        include_str!("../migrations/postgres/0004_scope_indexes.sql"),
    ),
    (
        5,
        "pending_answers",
        include_str!("../migrations/postgres/0005_pending_answers.sql"),
    ),
    (
        6,
        "device_synced",
        include_str!("../migrations/postgres/0006_device_synced.sql"),
    ),
    (
        7,
        "reference_history",
        include_str!("../migrations/postgres/0007_reference_history.sql"),
    ),
    (
        8,
        "visit_reads",
        include_str!("../migrations/postgres/0008_visit_reads.sql"),
    ),
];

/// Advisory lock classes (first key of the two-key form).
const LOCK_VISIT: i32 = 0x6673_0001;
const LOCK_SEQ: i32 = 0x6673_0002;
const LOCK_MIGRATE: i32 = 0x6673_0003;
const LOCK_REFERENCE: i32 = 0x6673_0004;

/// Attempts for a transaction that fails with a serialization failure or deadlock.
const MAX_ATTEMPTS: u32 = 8;

type Pool = r2d2::Pool<Manager>;

/// Owns the pool. The blocking client closes a connection by running its own small
/// runtime, which panics inside an async task: when the last store is dropped there
/// (for example when the server shuts down), the pool is closed on a plain thread.
struct PoolHolder(Option<Pool>);

impl PoolHolder {
    fn get(&self) -> &Pool {
        self.0.as_ref().expect("the pool lives until drop")
    }
}

impl Drop for PoolHolder {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let _ = std::thread::spawn(move || drop(pool)).join();
        }
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Database(Box::new(e))
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        StoreError::Database(format!("no database connection: {e}").into())
    }
}

fn retryable(e: &StoreError) -> bool {
    match e {
        StoreError::Database(b) => b
            .downcast_ref::<postgres::Error>()
            .and_then(postgres::Error::code)
            .is_some_and(|c| {
                *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
            }),
        _ => false,
    }
}

/// Settings of the PostgreSQL backend.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Most connections this instance holds.
    pub pool_size: u32,
    /// How long a request waits for a free connection.
    pub connect_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// The PostgreSQL backend.
pub struct PgStore {
    pool: PoolHolder,
    url: String,
    refs: RwLock<Arc<ReferenceData>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        let s = self.pool.get().state();
        f.debug_struct("PgStore")
            .field("connections", &s.connections)
            .field("idle", &s.idle_connections)
            .finish()
    }
}

fn new_epoch() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn user_from(r: &Row, at: usize) -> UserRecord {
    let territories: String = r.get(at + 3);
    UserRecord {
        id: r.get(at),
        username: r.get(at + 1),
        role: Role::parse(r.get::<_, &str>(at + 2)).unwrap_or(Role::Rep),
        territories: serde_json::from_str(&territories).unwrap_or_default(),
        password_hash: r.get(at + 4),
        disabled: r.get(at + 5),
    }
}

const USER_COLS: &str = "id, username, role, territories, password_hash, disabled";

/// Applies the migrations this binary knows that the database lacks.
fn migrate(client: &mut postgres::Client) -> StoreResult<()> {
    // Session lock on a dedicated connection (closed afterwards, which releases it).
    client.batch_execute("SET client_min_messages = warning")?;
    client.execute("SELECT pg_advisory_lock($1, 0)", &[&LOCK_MIGRATE])?;
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
           version INTEGER PRIMARY KEY, name TEXT NOT NULL,
           applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )?;
    let applied: BTreeSet<i32> = client
        .query("SELECT version FROM schema_migrations", &[])?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if let Some(newest) = applied.iter().max().filter(|n| **n > known) {
        return Err(StoreError::Conflict(format!(
            "the database schema is at version {newest}, newer than this binary knows ({known}): upgrade fieldsync-server"
        )));
    }
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let mut tx = client.transaction()?;
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )?;
        tx.commit()?;
        tracing::info!(version, name, "applied PostgreSQL migration");
    }
    // A fresh database (or one restored from an `admin backup`, which leaves out `meta`)
    // gets a new epoch.
    client.execute(
        "INSERT INTO meta (key, value) VALUES ('epoch', $1) ON CONFLICT (key) DO NOTHING",
        &[&new_epoch()],
    )?;
    client.execute("SELECT pg_advisory_unlock($1, 0)", &[&LOCK_MIGRATE])?;
    Ok(())
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/db` or key=value form),
    /// applies the migrations and opens the pool.
    pub fn connect(url: &str, opts: &PgOptions) -> StoreResult<Self> {
        let config: postgres::Config = url.parse()?;
        {
            let mut client = config.connect(NoTls)?;
            migrate(&mut client)?;
        }
        let pool = r2d2::Pool::builder()
            .max_size(opts.pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(opts.connect_timeout)
            .build(Manager::new(config))?;
        let store = Self {
            pool: PoolHolder(Some(pool)),
            url: url.to_string(),
            refs: RwLock::new(Arc::new(ReferenceData::default())),
        };
        let refs = store.refresh_reference()?;
        let kept = store.reference_versions()?;
        if refs.version > 0 && !kept.iter().any(|k| k.0 == refs.version) {
            // The data of a database from before the history: in effect since then.
            store.retrying(|c| {
                c.execute(
                    "INSERT INTO reference_history (version, imported_at, data)
                     VALUES ($1, 0, $2) ON CONFLICT (version) DO NOTHING",
                    &[&refs.version, &pack_reference(&refs)?],
                )?;
                Ok(())
            })?;
        }
        Ok(store)
    }

    fn conn(&self) -> StoreResult<r2d2::PooledConnection<Manager>> {
        Ok(self.pool.get().get()?)
    }

    /// Runs `body` on a pooled connection, again when it fails with a serialization
    /// failure or a deadlock (its transaction rolled back), at most [`MAX_ATTEMPTS`] times.
    fn retrying<T>(&self, mut body: impl FnMut(&mut PgConn) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.conn()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match body(&mut conn) {
                Err(e) if attempt < MAX_ATTEMPTS && retryable(&e) => {
                    let ms = rand::random_range(1..=(5u64 << attempt.min(6)));
                    std::thread::sleep(Duration::from_millis(ms));
                }
                other => return other,
            }
        }
    }

    /// Reloads the cached reference data when another instance (or `admin import`)
    /// changed it.
    fn refresh_reference(&self) -> StoreResult<Arc<ReferenceData>> {
        let cached = self
            .refs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut conn = self.conn()?;
        let version: Option<i64> = conn
            .query_opt("SELECT version FROM reference WHERE id = 1", &[])?
            .map(|r| r.get(0));
        match version {
            Some(v) if v != cached.version => {
                let Some(row) = conn.query_opt("SELECT data FROM reference WHERE id = 1", &[])?
                else {
                    return Ok(cached);
                };
                let data: ReferenceData = serde_json::from_str(row.get::<_, &str>(0))?;
                let data = Arc::new(data);
                *self
                    .refs
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = data.clone();
                Ok(data)
            }
            _ => Ok(cached),
        }
    }

    /// Gives the database a new epoch and forgets which visits each device holds: run it
    /// after restoring the database by any means other than `pg_restore` of an
    /// `admin backup` file (which gets a new epoch by itself). Returns the new epoch.
    pub fn new_epoch(&self) -> StoreResult<String> {
        let epoch = new_epoch();
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('epoch', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&epoch],
        )?;
        tx.execute("DELETE FROM device_visits", &[])?;
        tx.execute("DELETE FROM device_synced", &[])?;
        tx.execute("DELETE FROM device_pending", &[])?;
        tx.commit()?;
        Ok(epoch)
    }

    /// The highest change-log sequence number (0 when empty).
    pub fn max_seq(&self) -> StoreResult<i64> {
        Ok(self
            .conn()?
            .query_one("SELECT COALESCE(MAX(seq), 0)::BIGINT FROM change_log", &[])?
            .get(0))
    }
}

/// A push waiting for its sequence number (assigned just before commit).
struct PendingPush {
    visit_id: String,
    device_id: String,
    territory_id: String,
    changes: i32,
    heads_before: Vec<u8>,
    heads_after: Vec<u8>,
}

struct PgTxn<'a, 'c> {
    tx: RefCell<&'a mut Tx<'c>>,
    visit_id: String,
    pending: Vec<PendingPush>,
}

fn stored_visit(tx: &mut Tx<'_>, visit_id: &str, lock: bool) -> StoreResult<Option<StoredVisit>> {
    let sql = if lock {
        "SELECT visit_id, store_id, territory_id, rep_id, planned_start, status, doc FROM visits WHERE visit_id = $1 FOR UPDATE"
    } else {
        "SELECT visit_id, store_id, territory_id, rep_id, planned_start, status, doc FROM visits WHERE visit_id = $1"
    };
    tx.query_opt(sql, &[&visit_id])?
        .map(|r| visit_row(&r))
        .map(unpacked)
        .transpose()
}

impl VisitTxn for PgTxn<'_, '_> {
    fn stored(&self) -> StoreResult<Option<StoredVisit>> {
        stored_visit(&mut self.tx.borrow_mut(), &self.visit_id, true)
    }

    fn actor_binding(&self, actor_hex: &str) -> StoreResult<Option<(String, String)>> {
        Ok(self
            .tx
            .borrow_mut()
            .query_opt(
                "SELECT device_id, user_id FROM actors WHERE actor = $1",
                &[&actor_hex],
            )?
            .map(|r| (r.get(0), r.get(1))))
    }

    fn bind_actor(&mut self, actor_hex: &str, device_id: &str, user_id: &str) -> StoreResult<()> {
        self.tx.borrow_mut().execute(
            "INSERT INTO actors (actor, device_id, user_id) VALUES ($1, $2, $3) ON CONFLICT (actor) DO NOTHING",
            &[&actor_hex, &device_id, &user_id],
        )?;
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
        let mut tx = self.tx.borrow_mut();
        let heads = heads_to_bytes(heads);
        tx.execute(
            "INSERT INTO visits (visit_id, store_id, territory_id, rep_id, planned_start, status, doc, heads)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (visit_id) DO UPDATE SET store_id = excluded.store_id, territory_id = excluded.territory_id,
               rep_id = excluded.rep_id, planned_start = excluded.planned_start, status = excluded.status,
               doc = excluded.doc, heads = excluded.heads",
            &[&m.visit_id, &m.store_id, &m.territory_id, &m.rep_id, &m.planned_start, &m.status, &doc, &heads],
        )?;
        tx.execute(
            "INSERT INTO visit_reads (visit_id, visit) VALUES ($1, $2)
             ON CONFLICT (visit_id) DO UPDATE SET visit = excluded.visit",
            &[&m.visit_id, &visit],
        )?;
        if log.hold {
            tx.execute(
                "INSERT INTO device_visits (device_id, visit_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&device_id, &m.visit_id],
            )?;
        }
        if log.changes == 0 {
            // As in the SQLite backend: a row changed without a log row voids every mark.
            tx.execute("DELETE FROM device_synced", &[])?;
        } else {
            self.pending.push(PendingPush {
                visit_id: m.visit_id.clone(),
                device_id: device_id.to_string(),
                territory_id: m.territory_id.clone(),
                changes: i32::try_from(log.changes).unwrap_or(i32::MAX),
                heads_before: heads_to_bytes(&log.heads_before),
                heads_after: heads,
            });
        }
        Ok(())
    }
}

/// Appends `pending` to the change log under the change-log lock, which the caller's
/// commit releases (after the rows are visible).
fn append_pushes(tx: &mut Tx<'_>, pending: &[PendingPush]) -> StoreResult<()> {
    if pending.is_empty() {
        return Ok(());
    }
    tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&LOCK_SEQ])?;
    let visits: Vec<&String> = pending.iter().map(|p| &p.visit_id).collect();
    let devices: Vec<&String> = pending.iter().map(|p| &p.device_id).collect();
    let territories: Vec<&String> = pending.iter().map(|p| &p.territory_id).collect();
    let counts: Vec<i32> = pending.iter().map(|p| p.changes).collect();
    let before: Vec<&[u8]> = pending.iter().map(|p| p.heads_before.as_slice()).collect();
    let after: Vec<&[u8]> = pending.iter().map(|p| p.heads_after.as_slice()).collect();
    // A new statement: its snapshot sees every change committed before the lock was ours.
    tx.execute(
        "INSERT INTO change_log (seq, visit_id, device_id, territory_id, changes, heads_before, heads_after)
         SELECT (SELECT COALESCE(MAX(seq), 0) FROM change_log) + t.o, t.v, t.d, t.tr, t.n, t.b, t.a
         FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bytea[], $6::bytea[])
              WITH ORDINALITY AS t(v, d, tr, n, b, a, o)",
        &[&visits, &devices, &territories, &counts, &before, &after],
    )?;
    Ok(())
}

type Param<'a> = &'a (dyn postgres::types::ToSql + Sync);

/// The scope's conditions on `visits v` (each starting with ` AND `; empty for every
/// visit), numbering their parameters after those in `args`, which they are appended to.
fn scope_filter<'a>(scope: &'a Scope, args: &mut Vec<Param<'a>>) -> String {
    let mut sql = String::new();
    if let Some(ts) = &scope.territories {
        args.push(ts);
        sql.push_str(&format!(" AND v.territory_id = ANY(${})", args.len()));
    }
    if let Some(rep) = &scope.rep_id {
        args.push(rep);
        sql.push_str(&format!(" AND v.rep_id = ${}", args.len()));
    }
    if let Some((from, to)) = &scope.window {
        args.push(from);
        args.push(to);
        sql.push_str(&format!(
            " AND v.planned_start BETWEEN ${} AND ${}",
            args.len() - 1,
            args.len()
        ));
    }
    sql
}

/// The PostgreSQL side of a pull: reads in one REPEATABLE READ transaction.
struct PgFeed<'a, 'c>(&'a mut Tx<'c>);

impl FeedSource for PgFeed<'_, '_> {
    fn max_seq(&mut self) -> StoreResult<i64> {
        // The first statement fixes the snapshot: everything up to max_seq is visible in it.
        Ok(self
            .0
            .query_one("SELECT COALESCE(MAX(seq), 0)::BIGINT FROM change_log", &[])?
            .get(0))
    }

    // The differences are taken with EXCEPT (hashed or sorted), not as anti-joins: an
    // anti-join's plan rests on the estimated number of a device's `device_visits` rows,
    // which is stale while a new device's holdings grow (ANALYZE lags), and a nested loop
    // chosen on such an estimate compares every pair (measured: 1.3 s for 10,000 visits).
    fn leaving(&mut self, device_id: &str, scope: &Scope) -> StoreResult<Vec<String>> {
        let mut args: Vec<Param<'_>> = vec![&device_id];
        let in_scope = scope_filter(scope, &mut args);
        // Byte order, as SQLite returns them (few rows: the sort is cheap).
        let sql = format!(
            "SELECT visit_id FROM (
               SELECT d.visit_id FROM device_visits d WHERE d.device_id = $1
               EXCEPT SELECT v.visit_id FROM visits v WHERE TRUE{in_scope}
             ) s ORDER BY visit_id COLLATE \"C\""
        );
        Ok(self
            .0
            .query(&sql, &args)?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn entering(
        &mut self,
        scope: &Scope,
        not_held_by: Option<&str>,
        range: IdRange<'_>,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        let limit = limit as i64;
        let mut args: Vec<Param<'_>> = Vec::new();
        let in_scope = scope_filter(scope, &mut args);
        let (mut on_v, mut on_d) = (String::new(), String::new());
        if let Some(after) = &range.after {
            args.push(after);
            on_v.push_str(&format!(" AND v.visit_id > ${}", args.len()));
            on_d.push_str(&format!(" AND d.visit_id > ${}", args.len()));
        }
        if let Some(until) = &range.until {
            args.push(until);
            on_v.push_str(&format!(" AND v.visit_id <= ${}", args.len()));
            on_d.push_str(&format!(" AND d.visit_id <= ${}", args.len()));
        }
        let scoped = format!("SELECT v.visit_id FROM visits v WHERE TRUE{in_scope}{on_v}");
        let sql = match &not_held_by {
            // In id order through visits_id_scope, stopping at the limit.
            None => {
                args.push(&limit);
                format!("{scoped} ORDER BY v.visit_id LIMIT ${}", args.len())
            }
            Some(device) => {
                args.push(device);
                let held = format!(
                    "SELECT d.visit_id FROM device_visits d WHERE d.device_id = ${}{on_d}",
                    args.len()
                );
                args.push(&limit);
                format!(
                    "SELECT visit_id FROM ({scoped} EXCEPT {held}) s ORDER BY visit_id LIMIT ${}",
                    args.len()
                )
            }
        };
        Ok(self
            .0
            .query(&sql, &args)?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn last_held(&mut self, device_id: &str) -> StoreResult<Option<String>> {
        Ok(self
            .0
            .query_one(
                "SELECT MAX(visit_id) FROM device_visits WHERE device_id = $1",
                &[&device_id],
            )?
            .get(0))
    }

    fn in_scope(&mut self, scope: &Scope, visit_ids: &[&str]) -> StoreResult<HashSet<String>> {
        let mut args: Vec<Param<'_>> = vec![&visit_ids];
        let in_scope = scope_filter(scope, &mut args);
        let sql = format!("SELECT v.visit_id FROM visits v WHERE v.visit_id = ANY($1){in_scope}");
        Ok(self
            .0
            .query(&sql, &args)?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn document(&mut self, visit_id: &str, with_read: bool) -> StoreResult<Option<StoredDocument>> {
        Ok(self
            .0
            .query_opt(
                "SELECT doc, heads, CASE WHEN $2 THEN
                   (SELECT visit FROM visit_reads r WHERE r.visit_id = v.visit_id) END
                 FROM visits v WHERE visit_id = $1",
                &[&visit_id, &with_read],
            )?
            .map(|r| StoredDocument {
                doc: r.get(0),
                heads: heads_from_bytes(r.get::<_, &[u8]>(1)),
                visit: r.get(2),
            }))
    }

    fn keeps_synced(&self) -> bool {
        true
    }

    fn synced(&mut self, device_id: &str) -> StoreResult<Option<(String, i64)>> {
        Ok(self
            .0
            .query_opt(
                "SELECT scope, seq FROM device_synced WHERE device_id = $1",
                &[&device_id],
            )?
            .map(|r| (r.get(0), r.get(1))))
    }

    fn changed_since(&mut self, seq: i64, max_rows: usize) -> StoreResult<Option<Vec<String>>> {
        let ids: Vec<String> = self
            .0
            .query(
                "SELECT visit_id FROM change_log WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&seq, &(max_rows as i64 + 1)],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok((ids.len() <= max_rows).then_some(ids))
    }

    fn held_of(&mut self, device_id: &str, visit_ids: &[&str]) -> StoreResult<HashSet<String>> {
        Ok(self
            .0
            .query(
                "SELECT visit_id FROM device_visits WHERE device_id = $1 AND visit_id = ANY($2)",
                &[&device_id, &visit_ids],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn feed(&mut self, device_id: &str, cursor: i64, limit: usize) -> StoreResult<Vec<LogRow>> {
        Ok(self
            .0
            .query(
                "SELECT c.seq, c.visit_id, c.changes, c.heads_before, c.heads_after FROM change_log c
                 JOIN device_visits d ON d.visit_id = c.visit_id AND d.device_id = $1
                 WHERE c.seq > $2 AND c.device_id <> $1 ORDER BY c.seq LIMIT $3",
                &[&device_id, &cursor, &(limit as i64)],
            )?
            .iter()
            .map(|r| LogRow {
                seq: r.get(0),
                visit_id: r.get(1),
                changes: i64::from(r.get::<_, i32>(2)),
                heads_before: heads_from_bytes(r.get::<_, &[u8]>(3)),
                heads_after: heads_from_bytes(r.get::<_, &[u8]>(4)),
            })
            .collect())
    }
}

/// Applies a pull's holdings bookkeeping in the pull's transaction.
fn apply_holdings(tx: &mut Tx<'_>, device_id: &str, writes: &[HoldWrite]) -> StoreResult<()> {
    let mut hold: Vec<&String> = Vec::new();
    let mut forget: Vec<&String> = Vec::new();
    let flush =
        |tx: &mut Tx<'_>, hold: &mut Vec<&String>, forget: &mut Vec<&String>| -> StoreResult<()> {
            if !forget.is_empty() {
                tx.execute(
                    "DELETE FROM device_visits WHERE device_id = $1 AND visit_id = ANY($2)",
                    &[&device_id, &*forget],
                )?;
                forget.clear();
            }
            if !hold.is_empty() {
                tx.execute(
                    "INSERT INTO device_visits (device_id, visit_id) SELECT $1, unnest($2::text[])
                 ON CONFLICT DO NOTHING",
                    &[&device_id, &*hold],
                )?;
                hold.clear();
            }
            Ok(())
        };
    for w in writes {
        match w {
            HoldWrite::ForgetAll => {
                flush(tx, &mut hold, &mut forget)?;
                tx.execute(
                    "DELETE FROM device_synced WHERE device_id = $1",
                    &[&device_id],
                )?;
                tx.execute(
                    "DELETE FROM device_visits WHERE device_id = $1",
                    &[&device_id],
                )?;
            }
            HoldWrite::Synced { scope, seq } => {
                flush(tx, &mut hold, &mut forget)?;
                tx.execute(
                    "INSERT INTO device_synced (device_id, scope, seq) VALUES ($1, $2, $3)
                     ON CONFLICT (device_id) DO UPDATE SET scope = excluded.scope, seq = excluded.seq",
                    &[&device_id, scope, seq],
                )?;
            }
            HoldWrite::Forget(v) => {
                if !hold.is_empty() {
                    flush(tx, &mut hold, &mut forget)?;
                }
                forget.push(v);
            }
            HoldWrite::Hold(v) => {
                if !forget.is_empty() {
                    flush(tx, &mut hold, &mut forget)?;
                }
                hold.push(v);
            }
        }
    }
    flush(tx, &mut hold, &mut forget)
}

impl Store for PgStore {
    fn epoch(&self) -> StoreResult<String> {
        Ok(self
            .conn()?
            .query_one("SELECT value FROM meta WHERE key = 'epoch'", &[])?
            .get(0))
    }

    fn create_user(&self, u: &NewUser) -> StoreResult<()> {
        let n = self.conn()?.execute(
            "INSERT INTO users (id, username, role, territories, password_hash) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
            &[&u.id, &u.username, &u.role.as_str(), &serde_json::to_string(&u.territories)?, &u.password_hash],
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
            .conn()?
            .query_opt(
                &format!("SELECT {USER_COLS} FROM users WHERE username = $1"),
                &[&username],
            )?
            .map(|r| user_from(&r, 0)))
    }

    fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        Ok(self
            .conn()?
            .query_opt(
                &format!("SELECT {USER_COLS} FROM users WHERE id = $1"),
                &[&id],
            )?
            .map(|r| user_from(&r, 0)))
    }

    fn create_token(
        &self,
        user_id: &str,
        device_id: &str,
        token_hash: &str,
        now: i64,
    ) -> StoreResult<String> {
        let id = uuid::Uuid::new_v4().to_string();
        self.conn()?.execute(
            "INSERT INTO tokens (id, user_id, device_id, token_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
            &[&id, &user_id, &device_id, &token_hash, &now],
        )?;
        Ok(id)
    }

    fn authenticate(&self, token_hash: &str) -> StoreResult<Option<(UserRecord, TokenRecord)>> {
        Ok(self
            .conn()?
            .query_opt(
                "SELECT u.id, u.username, u.role, u.territories, u.password_hash, u.disabled, t.id, t.device_id
                 FROM tokens t JOIN users u ON u.id = t.user_id
                 WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND NOT u.disabled",
                &[&token_hash],
            )?
            .map(|r| {
                let u = user_from(&r, 0);
                let t = TokenRecord {
                    id: r.get(6),
                    user_id: u.id.clone(),
                    device_id: r.get(7),
                };
                (u, t)
            }))
    }

    fn revoke_user(&self, username: &str, now: i64) -> StoreResult<usize> {
        let mut conn = self.conn()?;
        let id: Option<String> = conn
            .query_opt("SELECT id FROM users WHERE username = $1", &[&username])?
            .map(|r| r.get(0));
        let Some(id) = id else {
            return Err(StoreError::NotFound(format!("no user named {username:?}")));
        };
        Ok(conn.execute(
            "UPDATE tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
            &[&id, &now],
        )? as usize)
    }

    fn revoke_token(&self, token_id: &str, now: i64) -> StoreResult<bool> {
        let n = self.conn()?.execute(
            "UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            &[&token_id, &now],
        )?;
        Ok(n > 0)
    }

    fn reference(&self) -> StoreResult<Arc<ReferenceData>> {
        self.refresh_reference()
    }

    fn import_reference_at(&self, mut data: ReferenceData, now: i64) -> StoreResult<i64> {
        let json_version = self.retrying(|c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&LOCK_REFERENCE])?;
            let old: i64 = tx
                .query_one(
                    "SELECT COALESCE(MAX(version), 0)::BIGINT FROM reference",
                    &[],
                )?
                .get(0);
            data.version = data.version.max(old + 1);
            tx.execute(
                "INSERT INTO reference (id, version, data) VALUES (1, $1, $2)
                 ON CONFLICT (id) DO UPDATE SET version = excluded.version, data = excluded.data",
                &[&data.version, &serde_json::to_string(&data)?],
            )?;
            tx.execute(
                "INSERT INTO reference_history (version, imported_at, data) VALUES ($1, $2, $3)
                 ON CONFLICT (version) DO UPDATE
                 SET imported_at = excluded.imported_at, data = excluded.data",
                &[&data.version, &now, &pack_reference(&data)?],
            )?;
            tx.execute(
                "DELETE FROM reference_history WHERE version <
                   (SELECT MAX(version) FROM reference_history WHERE imported_at <= $1)",
                &[&reference_history_cutoff(now)],
            )?;
            tx.commit()?;
            Ok(data.version)
        })?;
        self.refresh_reference()?;
        Ok(json_version)
    }

    fn reference_versions(&self) -> StoreResult<Vec<(i64, i64)>> {
        self.retrying(|c| {
            Ok(c.query(
                "SELECT version, imported_at FROM reference_history ORDER BY version",
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    fn reference_version(&self, version: i64) -> StoreResult<Option<ReferenceData>> {
        let bytes: Option<Vec<u8>> = self.retrying(|c| {
            Ok(c.query_opt(
                "SELECT data FROM reference_history WHERE version = $1",
                &[&version],
            )?
            .map(|r| r.get(0)))
        })?;
        bytes.as_deref().map(unpack_reference).transpose()
    }

    fn with_visit(
        &self,
        visit_id: &str,
        f: &mut dyn FnMut(&mut dyn VisitTxn) -> StoreResult<()>,
    ) -> StoreResult<()> {
        self.retrying(|c| {
            let mut tx = c.transaction()?;
            // Serializes every writer of this visit, on every instance, existing or not.
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&LOCK_VISIT, &visit_id],
            )?;
            let pending = {
                let mut t = PgTxn {
                    tx: RefCell::new(&mut tx),
                    visit_id: visit_id.to_string(),
                    pending: Vec::new(),
                };
                f(&mut t)?;
                t.pending
            };
            append_pushes(&mut tx, &pending)?;
            tx.commit()?;
            Ok(())
        })
    }

    fn visit(&self, visit_id: &str) -> StoreResult<Option<StoredVisit>> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        stored_visit(&mut tx, visit_id, false)
    }

    fn actor_binding(&self, actor_hex: &str) -> StoreResult<Option<(String, String)>> {
        Ok(self
            .conn()?
            .query_opt(
                "SELECT device_id, user_id FROM actors WHERE actor = $1",
                &[&actor_hex],
            )?
            .map(|r| (r.get(0), r.get(1))))
    }

    fn confirm(&self, device_id: &str, token: &str) -> StoreResult<()> {
        self.retrying(|c| {
            let mut tx = c.transaction()?;
            let confirmed = tx.query_opt(
                "SELECT writes FROM device_pending WHERE device_id = $1 AND token = $2",
                &[&device_id, &token],
            )?;
            // Confirmed: every other pending answer is one the device did not use. Not
            // found: nothing is dropped (see the SQLite store).
            if let Some(row) = confirmed {
                let writes: Vec<HoldWrite> = serde_json::from_str(row.get(0))?;
                apply_holdings(&mut tx, device_id, &writes)?;
                tx.execute(
                    "DELETE FROM device_pending WHERE device_id = $1",
                    &[&device_id],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn pull(&self, q: &PullQuery) -> StoreResult<PullPage> {
        self.retrying(|c| {
            let mut tx = c.transaction_with(IsolationLevel::RepeatableRead, false)?;
            // No cursor (first sync, heads after a restore): nothing is dropped either (see
            // the SQLite store).
            let (mut page, writes) = feed::pull(&mut PgFeed(&mut tx), q)?;
            // Recorded only when the device confirms this answer (its next cursor).
            if !writes.is_empty() {
                let token = feed::new_token();
                tx.execute(
                    "INSERT INTO device_pending (device_id, token, writes, created_at)
                     VALUES ($1, $2, $3, COALESCE((SELECT MAX(created_at) FROM device_pending
                                                   WHERE device_id = $1), 0) + 1)",
                    &[&q.device_id, &token, &serde_json::to_string(&writes)?],
                )?;
                tx.execute(
                    "DELETE FROM device_pending WHERE device_id = $1 AND created_at <=
                       (SELECT MAX(created_at) FROM device_pending WHERE device_id = $1) - $2",
                    &[&q.device_id, &feed::MAX_PENDING_ANSWERS],
                )?;
                page.token = Some(token);
            }
            tx.commit()?;
            Ok(page)
        })
    }

    /// Runs `pg_dump` (custom format) into `path`. The dump leaves out the epoch and the
    /// devices' holdings, so a database restored from it with `pg_restore` gets a new
    /// epoch when the first server starts on it.
    fn backup(&self, path: &Path) -> StoreResult<()> {
        let out = std::process::Command::new("pg_dump")
            .arg("--format=custom")
            .arg("--no-owner")
            .arg("--exclude-table-data=meta")
            .arg("--exclude-table-data=device_visits")
            .arg("--exclude-table-data=device_pending")
            .arg("--exclude-table-data=device_synced")
            .arg("--file")
            .arg(path)
            .arg("--dbname")
            .arg(&self.url)
            .output()
            .map_err(|e| StoreError::Database(format!("cannot run pg_dump: {e}").into()))?;
        if !out.status.success() {
            return Err(StoreError::Database(
                format!(
                    "pg_dump failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )
                .into(),
            ));
        }
        Ok(())
    }

    fn counts(&self) -> StoreResult<(i64, i64)> {
        let row = self.conn()?.query_one(
            "SELECT (SELECT COUNT(*) FROM visits)::BIGINT, (SELECT COALESCE(SUM(changes), 0) FROM change_log)::BIGINT",
            &[],
        )?;
        Ok((row.get(0), row.get(1)))
    }

    fn visit_rows_in_range(
        &self,
        territories: Option<&[String]>,
        from: i64,
        to: i64,
        with_docs: bool,
    ) -> StoreResult<Vec<(VisitMeta, Option<Vec<u8>>)>> {
        let territories: Option<Vec<&String>> = territories.map(|t| t.iter().collect());
        let sql = format!(
            "SELECT visit_id, store_id, territory_id, rep_id, planned_start, status{} FROM visits
             WHERE planned_start BETWEEN $1 AND $2 AND ($3::text[] IS NULL OR territory_id = ANY($3))
             ORDER BY planned_start, visit_id",
            if with_docs { ", doc" } else { "" }
        );
        Ok(self
            .conn()?
            .query(&sql, &[&from, &to, &territories])?
            .iter()
            .map(|r| (visit_meta(r), with_docs.then(|| r.get(6))))
            .collect())
    }

    fn visit_reads(&self, visit_ids: &[&str]) -> StoreResult<Vec<(String, Vec<u8>)>> {
        Ok(self
            .conn()?
            .query(
                "SELECT visit_id, visit FROM visit_reads WHERE visit_id = ANY($1)",
                &[&visit_ids],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    fn visits_without_reads(
        &self,
        after: &str,
        limit: usize,
    ) -> StoreResult<Vec<(String, Vec<u8>)>> {
        Ok(self
            .conn()?
            .query(
                "SELECT v.visit_id, v.doc FROM visits v LEFT JOIN visit_reads r ON r.visit_id = v.visit_id
                 WHERE v.visit_id > $1 AND r.visit_id IS NULL ORDER BY v.visit_id LIMIT $2",
                &[&after, &(limit as i64)],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    fn add_visit_reads(&self, reads: &[(String, Vec<u8>)]) -> StoreResult<usize> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        let mut added = 0;
        for (visit_id, visit) in reads {
            added += tx.execute(
                "INSERT INTO visit_reads (visit_id, visit) VALUES ($1, $2) ON CONFLICT (visit_id) DO NOTHING",
                &[visit_id, visit],
            )? as usize;
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
        let territories: Option<Vec<&String>> = territories.map(|t| t.iter().collect());
        self.retrying(|c| {
            // One snapshot for the highest number and the visits.
            let mut tx = c.transaction_with(IsolationLevel::RepeatableRead, true)?;
            let latest: Option<i64> = tx
                .query_one(
                    "SELECT MAX(seq) FROM change_log
                     WHERE seq > $1 AND ($2::text[] IS NULL OR territory_id = ANY($2))",
                    &[&since, &territories],
                )?
                .get(0);
            let Some(latest) = latest else {
                return Ok((since, Vec::new()));
            };
            let ids = tx
                .query(
                    "SELECT visit_id, MAX(seq) AS m FROM change_log
                     WHERE seq > $1 AND ($2::text[] IS NULL OR territory_id = ANY($2))
                     GROUP BY visit_id ORDER BY m DESC LIMIT $3",
                    &[&since, &territories, &(limit as i64)],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            tx.commit()?;
            Ok((latest, ids))
        })
    }
}

/// A `visits` row selected as `visit_id, store_id, territory_id, rep_id, planned_start,
/// status, doc` (the document as stored).
/// A row's first six columns: visit id, store, territory, rep, planned start, status.
fn visit_meta(r: &Row) -> VisitMeta {
    VisitMeta {
        visit_id: r.get(0),
        store_id: r.get(1),
        territory_id: r.get(2),
        rep_id: r.get(3),
        planned_start: r.get(4),
        status: r.get(5),
    }
}

/// [`visit_meta`], and the document in the seventh column.
fn visit_row(r: &Row) -> StoredVisit {
    StoredVisit {
        meta: visit_meta(r),
        doc: r.get(6),
    }
}
