//! The device store: one SQLite file per user on the device.
//!
//! Every user action runs in one IMMEDIATE transaction that appends the Automerge change
//! to the visit's document, rewrites the visit's projection rows and adds the change to
//! the outbox; the commit is synced (WAL, `synchronous=FULL`) before the call returns, so
//! an acknowledged action survives an app kill or power loss. Nothing is half-written: on
//! any error the transaction rolls back and the in-memory copy of the document is dropped.

mod projection;
pub mod schema;

use automerge::{ActorId, Automerge, Change, ChangeHash, ReadDoc};
use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::clock::{Clock, SystemClock};
use crate::document::{CheckKind, VisitDoc};
use crate::error::{Error, Result};
use crate::kpi;
use crate::model::{Millis, ReferenceData, ReferenceIndex};
use crate::rules::{self, Action, TaskState};
use crate::sync::doc_check::CheckedDocument;
use crate::sync::protocol::ReferenceVersion;
use crate::visit::*;

/// The `sync_state` key of the closed stores kept in the reference data held (a JSON list,
/// see [`DeviceStore::receive_reference_data`]).
const KEPT_STORES: &str = "reference.kept_stores";
/// sync_state key: when the reference data held took effect (ms; see [`DeviceStore::reference_for`]).
const REFERENCE_SINCE: &str = "reference.since";
/// Replaced reference data versions are kept this long after they were replaced (the rep's
/// window reaches two weeks back; visits wait longer only while unsynced)...
pub const REFERENCE_KEPT_MS: Millis = 31 * 86_400_000;
/// ...and at most this many.
const REFERENCE_KEPT_VERSIONS: i64 = 32;

pub use projection::dump as dump_projections;

/// After this many appended changes a document is rewritten as one compacted snapshot.
pub const COMPACT_AFTER_CHUNKS: i64 = 32;
/// How long a purged visit's own changes are kept for a restored server (30 days).
pub const PURGED_RETENTION_MS: Millis = 30 * 24 * 3600 * 1000;
const CACHE_LIMIT: usize = 64;
/// How many resolved visits are kept (a visit read for a screen, a KPI summary or an
/// action), apart from the documents: a rep's two weeks (~112 visits) fit four times over.
/// Each is the read of its document as stored: every way to a document that can change it
/// drops the kept read (`take_doc_to_change`, `take_automerge`, purges, compaction,
/// rebuilds); [`read_doc`] lends the document read-only and keeps it.
const RESOLVED_LIMIT: usize = 512;
/// Threads, and visits per thread at least, that parse a sync page's new documents.
const APPLY_THREADS: usize = 4;
const APPLY_PER_THREAD: usize = 8;

/// Who uses this store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub device_id: String,
}

/// One stop on the rep's route.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteEntry {
    pub visit_id: String,
    pub store_id: String,
    /// The store's name (its id when the reference data held here lacks the store).
    pub store_name: String,
    pub planned_start: Millis,
    pub planned_end: Millis,
    pub status: VisitStatus,
    pub priority: u8,
    pub ad_hoc: bool,
    /// Head office closed the store after this visit was planned: the rep may finish and
    /// check out, the store takes no new visits ([`DeviceStore::receive_reference_data`]).
    pub store_closed: bool,
}

/// A local change waiting for the server's acknowledgement.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxChange {
    pub hash: String,
    pub visit_id: String,
    pub bytes: Vec<u8>,
}

/// What applying remote changes did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RemoteApply {
    /// Changes that were new to this device.
    pub applied: usize,
    /// Changes already present (resending is harmless).
    pub duplicates: usize,
    /// Dependencies still missing; the changes that need them wait in the store.
    pub missing: Vec<String>,
}

/// A whole visit document received from the server (see
/// [`DeviceStore::apply_remote_documents`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteDocument {
    pub visit_id: String,
    /// The document's bytes ([`automerge::Automerge::save`]).
    pub doc: Vec<u8>,
    /// The server's heads for it (hex).
    pub heads: Vec<String>,
    /// The visit as the server read it from these bytes, packed
    /// ([`crate::document::pack_visit`], in this build's
    /// [`crate::document::VISIT_FORMAT`]), when it sent it: a visit new to the device is
    /// then stored without being read (see [`DeviceStore::apply_remote_documents`]).
    pub visit: Option<Vec<u8>>,
}

/// A document new to the device, parsed and resolved (see [`parse_new_document`]).
struct NewDocument {
    visit: Option<Visit>,
    outcome: RemoteApply,
}

/// The findings of a store's latest audited visit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreFindings {
    pub store_id: String,
    pub visit_id: Option<String>,
    pub visited_at: Option<Millis>,
    pub out_of_stock_product_ids: Vec<String>,
    pub non_compliant_position_ids: Vec<String>,
    pub non_compliant_promotion_ids: Vec<String>,
}

/// What a visit asks the rep to check: the store's assortment, its planogram positions,
/// the promotions running on the visit's local day, and the template's survey questions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VisitChecklist {
    pub product_ids: Vec<String>,
    pub positions: Vec<crate::model::PlanogramPosition>,
    pub promotions: Vec<crate::model::Promotion>,
    pub questions: Vec<crate::model::SurveyQuestion>,
}

/// A visit with its task progress, for the visit screen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VisitDetail {
    pub visit: Visit,
    pub store_name: String,
    /// The store was closed by head office (see [`RouteEntry::store_closed`]).
    pub store_closed: bool,
    pub tasks: Vec<TaskState>,
    pub conflicts: Vec<FieldConflict>,
}

/// The device's local database.
#[derive(Debug)]
pub struct DeviceStore {
    inner: Mutex<Inner>,
    identity: Identity,
    clock: Arc<dyn Clock>,
}

#[derive(Debug)]
struct Inner {
    conn: Connection,
    actor: ActorId,
    refs: Arc<ReferenceData>,
    /// The ids of the stores `refs` lists.
    refs_stores: HashSet<String>,
    /// The closed stores `refs` holds while visits there are held (kept in sync_state
    /// under [`KEPT_STORES`], read at open).
    closed: BTreeSet<String>,
    /// When `refs` took effect ([`REFERENCE_SINCE`]; 0 when unknown).
    refs_since: Millis,
    /// Replaced versions read back from `reference_history`, by row id.
    older_refs: HashMap<i64, Arc<ReferenceData>>,
    docs: HashMap<String, VisitDoc>,
    /// Visits as read from their documents as stored ([`RESOLVED_LIMIT`]).
    resolved: HashMap<String, Visit>,
}

impl DeviceStore {
    /// Opens (creating or upgrading) the store at `path` for a user on a device.
    pub fn open(path: impl AsRef<Path>, user_id: &str, device_id: &str) -> Result<Self> {
        Self::open_with_clock(path, user_id, device_id, Arc::new(SystemClock))
    }

    /// Like [`DeviceStore::open`] with an injected clock.
    pub fn open_with_clock(
        path: impl AsRef<Path>,
        user_id: &str,
        device_id: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        if user_id.trim().is_empty() || device_id.trim().is_empty() {
            return Err(Error::invalid("a store needs a user id and a device id"));
        }
        let mut conn = Connection::open(path)?;
        schema::configure(&conn)?;
        let rebuild = schema::migrate(&mut conn, schema::LATEST_VERSION)?;
        let actor = load_or_create_actor(&conn, user_id, device_id)?;
        let refs = Arc::new(load_reference(&conn)?);
        let closed = load_kept_stores(&conn)?;
        let refs_since = state_value(&conn, REFERENCE_SINCE)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let store = Self {
            inner: Mutex::new(Inner {
                conn,
                actor,
                refs_stores: store_ids(&refs),
                refs,
                closed,
                refs_since,
                older_refs: HashMap::new(),
                docs: HashMap::new(),
                resolved: HashMap::new(),
            }),
            identity: Identity {
                user_id: user_id.into(),
                device_id: device_id.into(),
            },
            clock,
        };
        if rebuild {
            store.rebuild_projections()?;
        }
        Ok(store)
    }

    /// The user and device this store belongs to.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    fn author(&self) -> Author {
        Author {
            user_id: self.identity.user_id.clone(),
            device_id: self.identity.device_id.clone(),
        }
    }

    /// The device time now.
    pub fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves nothing half-written in SQLite (the
        // transaction rolls back), so the store stays usable.
        self.inner.lock().unwrap_or_else(|p| {
            let mut g = p.into_inner();
            g.docs.clear();
            g.resolved.clear();
            g
        })
    }

    /// This replica's Automerge actor (hex).
    pub fn actor_hex(&self) -> String {
        self.lock().actor.to_hex_string()
    }

    // ---------------------------------------------------------------- reference data

    /// Replaces all reference data (validated first; nothing changes if it is invalid).
    pub fn replace_reference_data(&self, data: ReferenceData) -> Result<()> {
        data.validate()?;
        self.write_reference(data, &[], None, &[])
    }

    /// Writes `data` (valid) as the reference data held, and `kept` as the closed stores in
    /// it ([`Self::receive_reference_data`]), in one transaction. Data of another version
    /// takes effect `since` (now when `None`), and the data it replaces is kept for past
    /// visits ([`Self::reference_for`]), as is each of the `earlier` versions (valid,
    /// oldest first, in effect between the two).
    fn write_reference(
        &self,
        data: ReferenceData,
        kept: &[String],
        since: Option<Millis>,
        earlier: &[&ReferenceVersion],
    ) -> Result<()> {
        let now = self.now();
        let mut inner = self.lock();
        let (old, old_since) = (inner.refs.clone(), inner.refs_since);
        let new_version = old.version != data.version;
        let since = if new_version {
            since.unwrap_or(now)
        } else {
            old_since
        };
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if new_version {
            // Each version held until the next one took effect.
            let held = (old.version != 0).then_some((old_since, &*old));
            let earlier = earlier.iter().map(|e| (e.since, &e.data));
            let versions: Vec<(Millis, &ReferenceData)> = held.into_iter().chain(earlier).collect();
            let ends = versions.iter().skip(1).map(|v| v.0).chain([since]);
            let mut insert = tx.prepare(
                "INSERT INTO reference_history (since, until, version, data)
                 SELECT ?1, ?2, ?3, ?4 WHERE NOT EXISTS
                   (SELECT 1 FROM reference_history WHERE since = ?1 AND version = ?3)",
            )?;
            for ((from, version), until) in versions.iter().zip(ends) {
                let json = serde_json::to_vec(version)?;
                let packed = zstd::bulk::compress(&json, 3)
                    .map_err(|e| Error::Corrupt(format!("packing reference data: {e}")))?;
                insert.execute(params![from, until, version.version, packed])?;
            }
            drop(insert);
            tx.execute(
                "DELETE FROM reference_history WHERE until < ?1 OR rowid NOT IN
                 (SELECT rowid FROM reference_history ORDER BY since DESC, rowid DESC LIMIT ?2)",
                params![now - REFERENCE_KEPT_MS, REFERENCE_KEPT_VERSIONS],
            )?;
        }
        set_state_value(&tx, REFERENCE_SINCE, &since.to_string())?;
        tx.execute("DELETE FROM reference", [])?;
        {
            let mut stmt =
                tx.prepare("INSERT INTO reference (kind, id, data) VALUES (?1, ?2, ?3)")?;
            let mut put = |kind: &str, id: &str, json: String| {
                stmt.execute(params![kind, id, json]).map(|_| ())
            };
            macro_rules! each {
                ($field:ident, $kind:literal) => {
                    for x in &data.$field {
                        put($kind, &x.id, serde_json::to_string(x)?)?;
                    }
                };
            }
            each!(territories, "territory");
            each!(users, "user");
            each!(stores, "store");
            each!(store_groups, "store_group");
            each!(products, "product");
            each!(assortments, "assortment");
            each!(planograms, "planogram");
            each!(promotions, "promotion");
            each!(kpi_targets, "kpi_target");
            each!(task_templates, "task_template");
            put(
                "settings",
                "settings",
                serde_json::to_string(&data.settings)?,
            )?;
            put("version", "version", data.version.to_string())?;
        }
        if kept.is_empty() {
            tx.execute("DELETE FROM sync_state WHERE key = ?1", [KEPT_STORES])?;
        } else {
            set_state_value(&tx, KEPT_STORES, &serde_json::to_string(kept)?)?;
        }
        tx.commit()?;
        inner.refs_stores = store_ids(&data);
        inner.refs = Arc::new(data);
        inner.closed = kept.iter().cloned().collect();
        inner.refs_since = since;
        if new_version {
            inner.older_refs.clear();
        }
        Ok(())
    }

    /// The reference data `visit` is judged with ([`kpi::worked_at`]), as the dashboard
    /// judges it: the data in effect when it was worked, as far as this device holds it
    /// (the versions it held, and the earlier ones the server sent with new data), or the
    /// oldest kept for an earlier time. The current data when the
    /// visit was worked since it took effect, when no older version is kept, or when the
    /// older one lacks the visit's store.
    pub fn reference_for(&self, visit: &Visit) -> Result<Arc<ReferenceData>> {
        reference_for(&mut self.lock(), visit)
    }

    /// The reference data the rep works `visit` with: once it is checked in, the data it is
    /// judged with ([`Self::reference_for`]; an import during the visit does not change
    /// what it asks for under the rep's hands, nor what the dashboard judges it by), else
    /// the current data. The checklist, the task progress and the checks of each action
    /// use it.
    pub fn working_reference(&self, visit: &Visit) -> Result<Arc<ReferenceData>> {
        working_reference(&mut self.lock(), visit)
    }

    /// The stores head office closed that the reference data held here still lists because
    /// a visit there is held here ([`Self::receive_reference_data`]).
    pub fn closed_stores(&self) -> BTreeSet<String> {
        self.lock().closed.clone()
    }

    /// Refuses a new visit (or a visit moved) to a store head office closed.
    fn refuse_closed(closed: &BTreeSet<String>, store_id: &str) -> Result<()> {
        if closed.contains(store_id) {
            return Err(Error::invalid(format!(
                "store {store_id} was closed by head office: it takes no new visits \
                 (the visits there already can still be finished)"
            )));
        }
        Ok(())
    }

    /// Ids of the stores with a visit held here.
    fn stores_of_held_visits(&self) -> Result<BTreeSet<String>> {
        let inner = self.lock();
        let mut stmt = inner
            .conn
            .prepare_cached("SELECT DISTINCT store_id FROM visits")?;
        let held = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(held)
    }

    /// Takes the reference data the server sent: `data`, plus each store the data held here
    /// lists and `data` no longer does while a visit there is held here. A store closed by
    /// head office while a rep works in it must still let the rep record, check out and
    /// finish (the server accepts that work: it checks a push against every kept version of
    /// its data), and the rep's visits there, done or not, keep their store on the route, in
    /// the visit and in the KPIs. [`Self::release_closed_stores`] drops such a store once
    /// the device holds no visit there (retention purged them). When the kept stores do not
    /// fit `data` (their territory is gone too) `data` is taken alone. Data of a new
    /// version takes effect `since` (the server's import time; now when `None`). The
    /// `earlier` versions the server sent with it (those in effect between the version
    /// held here and `data`, oldest first) are kept for the visits worked in their time
    /// ([`Self::reference_for`]): a phone set up after an import judges last week's visits
    /// as the dashboard does. One that is invalid or out of order is left out.
    /// Returns the ids of the stores kept.
    pub fn receive_reference_data(
        &self,
        data: ReferenceData,
        since: Option<Millis>,
        earlier: &[ReferenceVersion],
    ) -> Result<Vec<String>> {
        data.validate()?;
        let earlier = usable_earlier(earlier, data.version, since);
        let held = self.reference_data();
        let listed: BTreeSet<&str> = data.stores.iter().map(|s| s.id.as_str()).collect();
        let gone = held
            .stores
            .iter()
            .filter(|s| !listed.contains(s.id.as_str()));
        // Only an update that closes stores looks at the visits.
        let visited = match gone.clone().next() {
            Some(_) => self.stores_of_held_visits()?,
            None => BTreeSet::new(),
        };
        // Each as last listed: in the newest earlier version the server sent that lists it
        // (the phone may have missed versions), else as held here.
        let newest = |id: &str| {
            let mut versions = earlier.iter().rev();
            versions.find_map(|v| v.data.stores.iter().find(|s| s.id == id))
        };
        let kept: Vec<&crate::model::Store> = gone
            .filter(|s| visited.contains(&s.id))
            .map(|s| newest(&s.id).unwrap_or(s))
            .collect();
        if !kept.is_empty() {
            let ids: Vec<String> = kept.iter().map(|s| s.id.clone()).collect();
            let with = data.with_stores(kept);
            if with.validate().is_ok() {
                self.write_reference(with, &ids, since, &earlier)?;
                return Ok(ids);
            }
        }
        self.write_reference(data, &[], since, &earlier)?;
        Ok(Vec::new())
    }

    /// Drops the closed stores [`Self::receive_reference_data`] kept where the device holds
    /// no visit any more (purged as they left the rep's window). Returns their ids. The sync
    /// client calls it after every sync; without kept stores it reads nothing.
    pub fn release_closed_stores(&self) -> Result<Vec<String>> {
        let kept = self.closed_stores();
        if kept.is_empty() {
            return Ok(Vec::new());
        }
        let visited = self.stores_of_held_visits()?;
        let (still, done): (Vec<String>, Vec<String>) =
            kept.into_iter().partition(|id| visited.contains(id));
        if !done.is_empty() {
            let mut data = (*self.reference_data()).clone();
            data.stores.retain(|s| !done.contains(&s.id));
            self.write_reference(data, &still, None, &[])?;
        }
        Ok(done)
    }

    /// The reference data held on the device.
    pub fn reference_data(&self) -> Arc<ReferenceData> {
        self.lock().refs.clone()
    }

    // ---------------------------------------------------------------- route and reads

    /// The rep's visits planned for `day` in each store's own time zone, ordered by
    /// planned start.
    pub fn route_for_day(&self, day: NaiveDate) -> Result<Vec<RouteEntry>> {
        let inner = self.lock();
        let refs = inner.refs.clone();
        let idx = refs.index();
        let noon = day
            .and_hms_opt(12, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp_millis();
        // Every time zone's local day lies within ±26 h of that day's noon UTC.
        let window = 26 * 3_600_000;
        let mut stmt = inner.conn.prepare_cached(
            "SELECT id, store_id, planned_start, planned_end, status, priority, ad_hoc FROM visits
             WHERE rep_id = ?1 AND planned_start BETWEEN ?2 AND ?3 ORDER BY planned_start, id",
        )?;
        let rows = stmt.query_map(
            params![self.identity.user_id, noon - window, noon + window],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, u8>(5)?,
                    r.get::<_, bool>(6)?,
                ))
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (visit_id, store_id, planned_start, planned_end, status, priority, ad_hoc) = row?;
            if day_at(&idx, &store_id, planned_start) != day {
                continue;
            }
            // A store the data held here lacks still shows, by its id: the visit is the
            // rep's to work whatever became of the store's data.
            let store_name = idx
                .stores
                .get(store_id.as_str())
                .map_or_else(|| store_id.clone(), |s| s.name.clone());
            out.push(RouteEntry {
                visit_id,
                store_name,
                store_closed: inner.closed.contains(&store_id),
                store_id,
                planned_start,
                planned_end,
                status: VisitStatus::parse(&status)?,
                priority,
                ad_hoc,
            });
        }
        Ok(out)
    }

    /// Today's route: visits planned for today in each store's own time zone.
    pub fn today_route(&self) -> Result<Vec<RouteEntry>> {
        let now = self.now();
        // "Today" differs per store time zone; collect the candidate days and keep visits
        // whose store-local planned day is that store's local today.
        let utc_day = chrono::DateTime::from_timestamp_millis(now)
            .unwrap_or_default()
            .date_naive();
        let refs = self.reference_data();
        let idx = refs.index();
        let mut out = Vec::new();
        for d in [utc_day.pred_opt(), Some(utc_day), utc_day.succ_opt()]
            .into_iter()
            .flatten()
        {
            for e in self.route_for_day(d)? {
                if day_at(&idx, &e.store_id, now) == d {
                    out.push(e);
                }
            }
        }
        out.sort_by(|a, b| (a.planned_start, &a.visit_id).cmp(&(b.planned_start, &b.visit_id)));
        Ok(out)
    }

    /// Visit ids planned between two instants (any rep), ordered by planned start.
    pub fn visit_ids_between(&self, from: Millis, to: Millis) -> Result<Vec<String>> {
        let inner = self.lock();
        let mut stmt = inner
            .conn
            .prepare_cached("SELECT id FROM visits WHERE planned_start BETWEEN ?1 AND ?2 ORDER BY planned_start, id")?;
        let ids = stmt
            .query_map(params![from, to], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    /// Every visit document held, by id.
    pub fn visit_ids(&self) -> Result<Vec<String>> {
        let inner = self.lock();
        let mut stmt = inner
            .conn
            .prepare_cached("SELECT visit_id FROM documents ORDER BY visit_id")?;
        let ids = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    /// A visit, resolved from its document (kept resolved for the next call while the
    /// document is unchanged).
    pub fn visit(&self, visit_id: &str) -> Result<Visit> {
        let mut inner = self.lock();
        if let Some(v) = inner.resolved.get(visit_id) {
            return Ok(v.clone());
        }
        // Read and kept under one lock: no action can change the document in between.
        let visit = read_doc(&mut inner, visit_id, VisitDoc::read)?;
        keep_resolved(&mut inner, visit_id.into(), visit.clone());
        Ok(visit)
    }

    /// A visit with its store name, task progress and conflicts.
    pub fn visit_detail(&self, visit_id: &str) -> Result<VisitDetail> {
        let (visit, conflicts) = self.with_doc(visit_id, |d| Ok((d.read()?, d.conflicts()?)))?;
        let refs = self.working_reference(&visit)?;
        let idx = refs.index();
        let store_name = idx
            .stores
            .get(visit.plan.store_id.as_str())
            .map_or_else(|| visit.plan.store_id.clone(), |s| s.name.clone());
        let tasks = rules::task_states(&visit, &idx).unwrap_or_default();
        let store_closed = self.lock().closed.contains(&visit.plan.store_id);
        Ok(VisitDetail {
            visit,
            store_name,
            store_closed,
            tasks,
            conflicts,
        })
    }

    /// What the visit asks the rep to check (see [`VisitChecklist`]).
    pub fn visit_checklist(&self, visit_id: &str) -> Result<VisitChecklist> {
        let visit = self.visit(visit_id)?;
        let refs = self.working_reference(&visit)?;
        let idx = refs.index();
        let store = idx.store(&visit.plan.store_id)?;
        let day = rules::local_day(store, visit.plan.planned_start);
        Ok(VisitChecklist {
            product_ids: idx
                .assortment_for(store)
                .into_iter()
                .map(String::from)
                .collect(),
            positions: idx
                .planogram_for(store)
                .map(|p| p.positions.clone())
                .unwrap_or_default(),
            promotions: idx
                .promotions_for(store, day)
                .into_iter()
                .cloned()
                .collect(),
            questions: idx
                .templates
                .get(visit.plan.template_id.as_str())
                .map(|t| {
                    t.tasks
                        .iter()
                        .flat_map(|t| t.questions.iter().cloned())
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// Which user and device changed which field of the visit, when.
    pub fn field_history(&self, visit_id: &str) -> Result<Vec<FieldChange>> {
        self.with_doc(visit_id, VisitDoc::history)
    }

    /// Fields of the visit changed concurrently, with every value and the winner marked.
    pub fn conflicts(&self, visit_id: &str) -> Result<Vec<FieldConflict>> {
        self.with_doc(visit_id, VisitDoc::conflicts)
    }

    /// A visit's KPIs, judged with the reference data in effect when it was worked
    /// ([`Self::reference_for`]).
    pub fn visit_kpis(&self, visit_id: &str) -> Result<kpi::VisitKpis> {
        let visit = self.visit(visit_id)?;
        let refs = self.reference_for(&visit)?;
        Ok(kpi::visit_kpis(&visit, &refs.index()))
    }

    /// KPIs over every visit planned between two instants.
    pub fn kpi_summary(&self, from: Millis, to: Millis) -> Result<kpi::KpiSummary> {
        let mut visits = Vec::new();
        for id in self.visit_ids_between(from, to)? {
            visits.push(self.visit(&id)?);
        }
        self.kpi_summary_of(&visits)
    }

    /// KPIs over `visits`: each judged with the reference data in effect when it was worked
    /// ([`Self::reference_for`]), scored with the current data's settings, visit compliance
    /// judged now.
    pub fn kpi_summary_of(&self, visits: &[Visit]) -> Result<kpi::KpiSummary> {
        // Visits grouped by the data they are judged with: one index per version.
        let mut groups: Vec<(Arc<ReferenceData>, Vec<&Visit>)> = Vec::new();
        for v in visits {
            let refs = self.reference_for(v)?;
            match groups.iter_mut().find(|(r, _)| Arc::ptr_eq(r, &refs)) {
                Some((_, vs)) => vs.push(v),
                None => groups.push((refs, vec![v])),
            }
        }
        let mut kpis = Vec::with_capacity(visits.len());
        for (refs, vs) in &groups {
            let idx = refs.index();
            kpis.extend(vs.iter().map(|v| kpi::visit_kpis(v, &idx)));
        }
        let settings = self.reference_data().settings.clone();
        Ok(kpi::KpiSummary::aggregate(&kpis, self.now(), &settings))
    }

    /// The findings of the store's most recent visit that recorded any.
    pub fn store_findings(&self, store_id: &str) -> Result<StoreFindings> {
        let inner = self.lock();
        let mut out = StoreFindings {
            store_id: store_id.into(),
            ..Default::default()
        };
        let latest: Option<(i64, String, Option<i64>)> = inner
            .conn
            .query_row(
                "SELECT key, id, last_observed_at FROM visits WHERE store_id = ?1 AND last_observed_at IS NOT NULL
                 ORDER BY last_observed_at DESC, id LIMIT 1",
                [store_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((key, visit_id, at)) = latest else {
            return Ok(out);
        };
        // The visit's other rows, by its row's key.
        let ids = |sql: &str| -> Result<Vec<String>> {
            let mut stmt = inner.conn.prepare_cached(sql)?;
            let v = stmt
                .query_map([key], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(v)
        };
        out.out_of_stock_product_ids = ids(
            "SELECT product_id FROM inventory_lines WHERE visit_key = ?1 AND out_of_stock = 1 ORDER BY product_id",
        )?;
        out.non_compliant_position_ids = ids(
            "SELECT position_id FROM planogram_results WHERE visit_key = ?1
             AND (present = 0 OR correct_position = 0) ORDER BY position_id",
        )?;
        out.non_compliant_promotion_ids = ids(
            "SELECT promotion_id FROM promotion_checks WHERE visit_key = ?1
             AND (display_in_place = 0 OR promo_price_correct = 0 OR materials_present = 0) ORDER BY promotion_id",
        )?;
        out.visit_id = Some(visit_id);
        out.visited_at = at;
        Ok(out)
    }

    // ---------------------------------------------------------------- actions

    /// Plans a visit (a manager's action, or an ad-hoc visit by a rep). Returns its id.
    pub fn create_visit(&self, plan: VisitPlan) -> Result<String> {
        let refs = self.reference_data();
        let idx = refs.index();
        idx.store(&plan.store_id)?;
        Self::refuse_closed(&self.lock().closed, &plan.store_id)?;
        if !plan.template_id.is_empty() && !idx.templates.contains_key(plan.template_id.as_str()) {
            return Err(Error::not_found("task template", &plan.template_id));
        }
        if plan.planned_end < plan.planned_start {
            return Err(Error::invalid(
                "the planned end is before the planned start",
            ));
        }
        let id = self.clock.new_id();
        let now = self.now();
        let mut inner = self.lock();
        let doc = VisitDoc::create(&id, &plan, inner.actor.clone(), &self.author(), now)?;
        let change = doc
            .automerge()
            .get_last_local_change()
            .ok_or_else(|| Error::Corrupt("no change".into()))?;
        let visit = commit_action(&mut inner, &id, &doc, change, true, now)?;
        cache_resolved(&mut inner, id.clone(), doc, visit);
        Ok(id)
    }

    /// Starts an ad-hoc visit at a store now, for this rep, with the given template.
    pub fn create_ad_hoc_visit(&self, store_id: &str, template_id: &str) -> Result<String> {
        let now = self.now();
        self.create_visit(VisitPlan {
            store_id: store_id.into(),
            rep_id: self.identity.user_id.clone(),
            planned_start: now,
            planned_end: now + 3_600_000,
            priority: 3,
            instructions: String::new(),
            template_id: template_id.into(),
            ad_hoc: true,
        })
    }

    /// Checks in at the store: the visit starts. A position outside the store's geofence
    /// is flagged, not refused.
    pub fn check_in(&self, visit_id: &str, position: GeoPoint) -> Result<CheckPoint> {
        self.checkpoint(visit_id, position, CheckKind::In)
    }

    /// Checks out of the store (the visit stays in progress until completed).
    pub fn check_out(&self, visit_id: &str, position: GeoPoint) -> Result<CheckPoint> {
        self.checkpoint(visit_id, position, CheckKind::Out)
    }

    fn checkpoint(
        &self,
        visit_id: &str,
        position: GeoPoint,
        kind: CheckKind,
    ) -> Result<CheckPoint> {
        if !position.on_earth() {
            return Err(Error::invalid("the GPS position is out of range"));
        }
        let now = self.now();
        self.act(visit_id, |visit, refs, w| {
            let store = refs.store(&visit.plan.store_id)?;
            let action = if kind == CheckKind::In {
                Action::CheckIn
            } else {
                Action::CheckOut
            };
            let next = rules::transition(visit.status, action)?;
            let distance_m = position.distance_m(GeoPoint {
                lat: store.lat,
                lng: store.lng,
            });
            let cp = CheckPoint {
                at: now,
                position,
                distance_m,
                outside_geofence: distance_m > store.geofence_radius_m,
            };
            w.set_checkpoint(kind, &cp)?;
            w.set_status(next)?;
            Ok(cp)
        })
    }

    /// Records one product's inventory line (only the fields given).
    pub fn record_inventory(
        &self,
        visit_id: &str,
        product_id: &str,
        input: &InventoryInput,
    ) -> Result<()> {
        self.act(visit_id, |visit, refs, w| {
            rules::transition(visit.status, Action::Record)?;
            rules::check_inventory(refs, product_id, input)?;
            w.record_inventory(product_id, input)
        })
    }

    /// Records one planogram position's result.
    pub fn record_position(
        &self,
        visit_id: &str,
        position_id: &str,
        input: &PositionInput,
    ) -> Result<()> {
        self.act(visit_id, |visit, refs, w| {
            rules::transition(visit.status, Action::Record)?;
            let store = refs.store(&visit.plan.store_id)?;
            let known = refs
                .planogram_for(store)
                .is_some_and(|p| p.positions.iter().any(|x| x.id == position_id));
            if !known {
                return Err(Error::not_found("planogram position", position_id));
            }
            rules::non_negative("facings", input.actual_facings)?;
            w.record_position(position_id, input)
        })
    }

    /// Records one promotion check.
    pub fn record_promotion(
        &self,
        visit_id: &str,
        promotion_id: &str,
        input: &PromotionInput,
    ) -> Result<()> {
        self.act(visit_id, |visit, refs, w| {
            rules::transition(visit.status, Action::Record)?;
            if !refs.promotions.contains_key(promotion_id) {
                return Err(Error::not_found("promotion", promotion_id));
            }
            rules::non_negative("observed price", input.observed_price_cents)?;
            w.record_promotion(promotion_id, input)
        })
    }

    /// Answers a survey question of the visit's template.
    pub fn answer_survey(
        &self,
        visit_id: &str,
        question_id: &str,
        value: &AnswerValue,
    ) -> Result<()> {
        self.act(visit_id, |visit, refs, w| {
            rules::transition(visit.status, Action::Record)?;
            let question = refs
                .templates
                .get(visit.plan.template_id.as_str())
                .and_then(|t| {
                    t.tasks
                        .iter()
                        .flat_map(|t| &t.questions)
                        .find(|q| q.id == question_id)
                })
                .ok_or_else(|| Error::not_found("survey question", question_id))?;
            use crate::model::AnswerType as T;
            let fits = matches!(
                (question.answer_type, value),
                (T::Boolean, AnswerValue::Bool(_))
                    | (T::Number, AnswerValue::Number(_))
                    | (T::Text, AnswerValue::Text(_))
            );
            if !fits {
                return Err(Error::invalid(format!(
                    "question {question_id} expects a {:?} answer",
                    question.answer_type
                )));
            }
            if let AnswerValue::Number(n) = value
                && !n.is_finite()
            {
                return Err(Error::invalid("a survey number must be finite"));
            }
            w.answer(question_id, value)
        })
    }

    /// Sets an order line's quantity.
    pub fn set_order_line(&self, visit_id: &str, product_id: &str, quantity: i64) -> Result<()> {
        self.act(visit_id, |visit, refs, w| {
            rules::transition(visit.status, Action::Record)?;
            refs.product(product_id)?;
            rules::non_negative("order quantity", Some(quantity))?;
            w.set_order_line(product_id, quantity)
        })
    }

    /// Submits the order (an order with no lines means "no order today").
    pub fn submit_order(&self, visit_id: &str) -> Result<()> {
        self.act(visit_id, |visit, _, w| {
            rules::transition(visit.status, Action::Record)?;
            w.set_order_submitted(true)
        })
    }

    /// Replaces the visit's notes (stored as a minimal text edit so concurrent edits merge).
    pub fn set_notes(&self, visit_id: &str, text: &str) -> Result<()> {
        self.act(visit_id, |_, _, w| w.set_notes(text))
    }

    /// Inserts `insert` at character `pos` of the notes after deleting `delete` characters.
    pub fn edit_notes(&self, visit_id: &str, pos: u32, delete: u32, insert: &str) -> Result<()> {
        self.act(visit_id, |_, _, w| {
            w.splice_notes(pos as usize, delete as isize, insert)
        })
    }

    /// Completes the visit; refused while a required task is open.
    pub fn complete(&self, visit_id: &str) -> Result<()> {
        self.act(visit_id, |visit, refs, w| {
            rules::check_can_complete(visit, refs)?;
            w.set_status(VisitStatus::Completed)
        })
    }

    /// Cancels a planned visit, with a reason and optionally where the rep was.
    pub fn cancel(&self, visit_id: &str, reason: &str, position: Option<GeoPoint>) -> Result<()> {
        if reason.trim().is_empty() {
            return Err(Error::invalid("a cancellation needs a reason"));
        }
        self.act(visit_id, |visit, _, w| {
            let next = rules::transition(visit.status, Action::Cancel)?;
            w.set_cancel(reason.trim(), position)?;
            w.set_status(next)
        })
    }

    /// Abandons a started visit, with a reason.
    pub fn abandon(&self, visit_id: &str, reason: &str) -> Result<()> {
        if reason.trim().is_empty() {
            return Err(Error::invalid("abandoning a visit needs a reason"));
        }
        self.act(visit_id, |visit, _, w| {
            let next = rules::transition(visit.status, Action::Abandon)?;
            w.set_abandon(reason.trim())?;
            w.set_status(next)
        })
    }

    /// Changes a planned visit's plan (a manager's action on the device).
    pub fn update_plan(&self, visit_id: &str, plan: &VisitPlan) -> Result<()> {
        let closed = self.closed_stores();
        self.act(visit_id, |visit, refs, w| {
            rules::transition(visit.status, Action::Reschedule)?;
            refs.store(&plan.store_id)?;
            if plan.store_id != visit.plan.store_id {
                Self::refuse_closed(&closed, &plan.store_id)?;
            }
            if plan.planned_end < plan.planned_start {
                return Err(Error::invalid(
                    "the planned end is before the planned start",
                ));
            }
            w.set_plan(plan)
        })
    }

    /// Runs one user action as one transaction: validate against the resolved visit,
    /// write the change, project, queue in the outbox, commit durably.
    fn act<T>(
        &self,
        visit_id: &str,
        f: impl FnOnce(
            &Visit,
            &ReferenceIndex<'_>,
            &mut crate::document::VisitWriter<'_, '_>,
        ) -> Result<T>,
    ) -> Result<T> {
        let now = self.now();
        let author = self.author();
        let mut inner = self.lock();
        let (mut doc, kept) = take_doc_to_change(&mut inner, visit_id)?;
        let visit = match kept {
            Some(v) => v,
            None => doc.read()?,
        };
        let refs = match working_reference(&mut inner, &visit) {
            Ok(r) => r,
            Err(e) => {
                cache_resolved(&mut inner, visit_id.into(), doc, visit);
                return Err(e);
            }
        };
        let idx = refs.index();
        let result = doc.edit(&author, now, |w| f(&visit, &idx, w));
        let change = match &result {
            Ok((_, Some(h))) => doc.automerge().get_change_by_hash(h),
            _ => None,
        };
        let Some(change) = change else {
            // Refused (the Automerge transaction rolled back) or nothing changed: the
            // document and its resolved visit are as they were.
            cache_resolved(&mut inner, visit_id.into(), doc, visit);
            return result.map(|(v, _)| v);
        };
        // On error the document in memory is ahead of the database: it is dropped.
        let visit = commit_action(&mut inner, visit_id, &doc, change, false, now)?;
        cache_resolved(&mut inner, visit_id.into(), doc, visit);
        result.map(|(v, _)| v)
    }

    fn with_doc<T>(&self, visit_id: &str, f: impl FnOnce(&VisitDoc) -> Result<T>) -> Result<T> {
        read_doc(&mut self.lock(), visit_id, f)
    }

    // ---------------------------------------------------------------- sync support

    /// Local changes not yet acknowledged by the server, oldest first.
    pub fn outbox(&self, limit: usize) -> Result<Vec<OutboxChange>> {
        let inner = self.lock();
        let mut stmt = inner
            .conn
            .prepare_cached("SELECT hash, visit_id, bytes FROM outbox ORDER BY seq LIMIT ?1")?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok(OutboxChange {
                    hash: r.get(0)?,
                    visit_id: r.get(1)?,
                    bytes: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// The saved document (packed by [`crate::document::pack_document`], as the server
    /// stores it) and heads of visit `visit_id`, to push it whole
    /// ([`crate::sync::protocol::SyncRequest::documents`]) instead of its outbox changes
    /// `hashes` (hex): when the document holds every one of them and they are at least half
    /// of its changes. So a visit made here, or planned by a manager and then filled in
    /// here, goes whole (one load on the server instead of parsing and applying each
    /// change, and fewer bytes), and a small edit to a visit the server holds goes as its
    /// changes. The document's other changes are ones the server sent or acknowledged; a
    /// server that lacks some of them takes only this device's changes from it. `None`
    /// otherwise, or when the visit is not held.
    pub fn pushable_document(
        &self,
        visit_id: &str,
        hashes: &BTreeSet<String>,
    ) -> Result<Option<(Vec<u8>, Vec<String>)>> {
        let found = self.with_doc(visit_id, |d| {
            let am = d.automerge();
            let whole = am.get_changes_meta(&[]).len() <= 2 * hashes.len()
                && hashes.iter().all(|h| {
                    h.parse::<ChangeHash>()
                        .is_ok_and(|h| crate::document::has_change(am, &h))
                });
            Ok(whole.then(|| {
                let heads = d.heads().iter().map(ToString::to_string).collect();
                (crate::document::pack_document(&am.save_nocompress()), heads)
            }))
        });
        match found {
            Err(Error::NotFound { .. }) => Ok(None),
            other => other,
        }
    }

    /// How many local changes wait for the server.
    pub fn outbox_len(&self) -> Result<u64> {
        let inner = self.lock();
        Ok(inner
            .conn
            .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    /// Removes acknowledged changes from the outbox. Unknown hashes are ignored.
    pub fn acknowledge(&self, hashes: &[String]) -> Result<()> {
        let mut inner = self.lock();
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached("DELETE FROM outbox WHERE hash = ?1")?;
            for h in hashes {
                stmt.execute([h])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Applies changes received from the server to a visit (creating the visit if new),
    /// in one transaction. Duplicates are skipped; changes whose dependencies are missing
    /// are kept and applied when the dependencies arrive.
    pub fn apply_remote(&self, visit_id: &str, changes: &[Vec<u8>]) -> Result<RemoteApply> {
        let mut parsed = Vec::with_capacity(changes.len());
        // The server's bytes pass the size check before Automerge parses them (a malicious
        // or broken server must not make the app allocate without bound).
        let mut budget = crate::sync::guard::OpBudget::per_apply();
        for bytes in changes {
            let c = crate::sync::guard::parse_change(bytes.clone(), &mut budget)
                .map_err(|e| Error::invalid(format!("visit {visit_id}: malformed change: {e}")))?;
            parsed.push(c);
        }
        let mut inner = self.lock();
        // The raw document, readable or not: a visit whose first change has not arrived
        // yet is stored (its chunks wait for their dependencies) but cannot be read.
        let existing = take_automerge(&mut inner, visit_id)?;
        let is_new = existing.is_none();
        let mut am = existing.unwrap_or_else(|| Automerge::new().with_actor(inner.actor.clone()));
        let mut outcome = RemoteApply::default();
        let mut fresh = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for c in parsed {
            if crate::document::has_change(&am, &c.hash()) || !seen.insert(c.hash()) {
                outcome.duplicates += 1;
            } else {
                fresh.push(c);
            }
        }
        outcome.applied = fresh.len();
        if fresh.is_empty() {
            if let Ok(d) = VisitDoc::from_automerge(am) {
                cache_insert(&mut inner, visit_id.into(), d);
            }
            return Ok(outcome);
        }
        // Automerge 0.12 panics on some malformed change columns (found by fuzzing,
        // tests/fuzz/regressions/apply_remote): an error, never a crash of the app.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            am.apply_changes(fresh.iter().cloned())
        }))
        .map_err(|_| Error::invalid(format!("visit {visit_id}: malformed change operations")))??;
        outcome.missing = am
            .get_missing_deps(&[])
            .iter()
            .map(|h| h.to_string())
            .collect();
        let readable = am.get(automerge::ROOT, "v").ok().flatten().is_some();
        // Remote changes are on the server already: their commit need not wait for an
        // fsync of its own. In WAL mode a later FULL commit (the cursor, stored after the
        // page is applied) makes these frames durable too, and a crash before it only
        // means the page is fetched again. One fsync per page instead of per visit
        // (docs/BENCHMARKS.md, initial sync).
        inner.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let conn = &mut inner.conn;
        let result = (move || -> Result<_> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if is_new {
                tx.execute(
                    "INSERT INTO documents (visit_id, snapshot, chunks) VALUES (?1, x'', 0)",
                    [visit_id],
                )?;
            }
            for c in &mut fresh {
                append_chunk(&tx, visit_id, &c.bytes())?;
            }
            let vdoc = if readable {
                let vdoc = VisitDoc::from_automerge(am)?;
                let visit = vdoc.read()?;
                if visit.id != visit_id {
                    return Err(Error::invalid(format!(
                        "changes for visit {visit_id} belong to visit {}",
                        visit.id
                    )));
                }
                projection::write(&tx, &visit)?;
                maybe_compact(&tx, visit_id, &vdoc)?;
                Some((vdoc, visit))
            } else {
                None
            };
            tx.commit()?;
            Ok(vdoc)
        })();
        inner.conn.pragma_update(None, "synchronous", "FULL")?;
        let vdoc = result?;
        if let Some((d, visit)) = vdoc {
            cache_resolved(&mut inner, visit_id.into(), d, visit);
        }
        Ok(outcome)
    }

    /// Applies a whole visit document received from the server (the `documents` sync
    /// feature) in one transaction, creating the visit if new. Idempotent: changes the
    /// device holds already are ignored. Afterwards the visit must hold every one of
    /// `heads` (hex hashes, the server's heads for the document); any it lacks are
    /// returned in [`RemoteApply::missing`], like missing dependencies, so the sync
    /// reconciles by heads. [`RemoteApply::duplicates`] is not counted for documents.
    ///
    /// A visit new to the device takes the fast path: the bytes are checked
    /// ([`crate::sync::doc_check`]), parsed once, resolved once for the projection rows and
    /// stored as they came (a compacted snapshot already); nothing is done per change.
    pub fn apply_remote_document(
        &self,
        visit_id: &str,
        doc: &[u8],
        heads: &[String],
    ) -> Result<RemoteApply> {
        let bad = |e: String| Error::invalid(format!("visit {visit_id}: malformed document: {e}"));
        let CheckedDocument {
            bytes: plain,
            heads,
            ..
        } = checked_document(visit_id, doc, heads)?;
        let mut inner = self.lock();
        let existing = take_automerge(&mut inner, visit_id)?;
        let is_new = existing.is_none();
        let before = existing.as_ref().map_or(0, |am| am.stats().num_changes);
        // On any error the document in memory is dropped.
        let am = match existing {
            None => load_unwinding(&plain)
                .map_err(bad)?
                .with_actor(inner.actor.clone()),
            Some(mut am) => {
                load_incremental_unwinding(&mut am, &plain).map_err(bad)?;
                am
            }
        };
        let outcome = RemoteApply {
            applied: (am.stats().num_changes - before) as usize,
            duplicates: 0,
            missing: am
                .get_missing_deps(&heads)
                .iter()
                .map(|h| h.to_string())
                .collect(),
        };
        if outcome.applied == 0 {
            if let Ok(d) = VisitDoc::from_automerge(am) {
                cache_insert(&mut inner, visit_id.into(), d);
            }
            return Ok(outcome);
        }
        let readable = am.get(automerge::ROOT, "v").ok().flatten().is_some();
        let complete = am.get_missing_deps(&[]).is_empty();
        // Remote data: no fsync of its own (see apply_remote).
        inner.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let conn = &mut inner.conn;
        let result = (move || -> Result<_> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if is_new {
                // Loaded and verified: the bytes are the snapshot (packed for storage).
                tx.prepare_cached(
                    "INSERT INTO documents (visit_id, snapshot, chunks) VALUES (?1, ?2, 0)",
                )?
                .execute(params![
                    visit_id,
                    stored_form(doc, matches!(plain, std::borrow::Cow::Owned(_)))
                ])?;
            } else if complete {
                write_snapshot(&tx, visit_id, &am.save())?;
            } else {
                // Changes still wait for dependencies: keep them as chunks.
                append_chunk(&tx, visit_id, &plain)?;
            }
            let vdoc = if readable {
                let vdoc = VisitDoc::from_automerge(am)?;
                let visit = vdoc.read()?;
                if visit.id != visit_id {
                    return Err(Error::invalid(format!(
                        "the document for visit {visit_id} belongs to visit {}",
                        visit.id
                    )));
                }
                if is_new {
                    projection::insert(&tx, &visit)?;
                } else {
                    projection::write(&tx, &visit)?;
                }
                Some((vdoc, visit))
            } else {
                None
            };
            tx.commit()?;
            Ok(vdoc)
        })();
        inner.conn.pragma_update(None, "synchronous", "FULL")?;
        if let Some((d, visit)) = result? {
            cache_resolved(&mut inner, visit_id.into(), d, visit);
        }
        Ok(outcome)
    }

    /// Applies the whole documents of one sync page, with the same effect as
    /// [`DeviceStore::apply_remote_document`] for each in order, faster: the visits new to
    /// the device are checked, parsed and resolved on several threads (up to the machine's
    /// parallelism, at most 4) and written in one transaction; visits it holds already
    /// take the one-by-one path afterwards. Any malformed document fails the whole call
    /// before anything is written. Visits applied in the batch are not put in the
    /// in-memory cache (they are not being worked on).
    pub fn apply_remote_documents(&self, docs: &[RemoteDocument]) -> Result<Vec<RemoteApply>> {
        // Which visits are new to the device (a visit twice in one page: the later copy
        // goes the one-by-one way).
        let (fresh, actor) = {
            let inner = self.lock();
            let mut seen = std::collections::HashSet::new();
            let mut fresh = Vec::new();
            for (i, d) in docs.iter().enumerate() {
                if seen.insert(d.visit_id.as_str())
                    && !inner.docs.contains_key(&d.visit_id)
                    && !document_exists(&inner.conn, &d.visit_id)?
                {
                    fresh.push(i);
                }
            }
            (fresh, inner.actor.clone())
        };
        let mut is_fresh = vec![false; docs.len()];
        for &i in &fresh {
            is_fresh[i] = true;
        }
        let mut later: Vec<usize> = (0..docs.len()).filter(|&i| !is_fresh[i]).collect();
        // Every document is checked before anything is written: the new ones with their
        // parse, on several threads; the others here.
        for &i in &later {
            checked_document(&docs[i].visit_id, &docs[i].doc, &docs[i].heads)?;
        }
        let parsed = crate::parallel::map_in_order(&fresh, APPLY_THREADS, APPLY_PER_THREAD, |&i| {
            let d = &docs[i];
            let checked = checked_document(&d.visit_id, &d.doc, &d.heads)?;
            let taken = d
                .visit
                .as_deref()
                .and_then(|visit| take_new_document(&d.visit_id, &checked, visit));
            let parsed = match taken {
                Some(taken) => taken,
                None => parse_new_document(&d.visit_id, &checked.bytes, &checked.heads, &actor)?,
            };
            // The bytes are the snapshot (packed for storage as they came).
            let unpacked = matches!(checked.bytes, std::borrow::Cow::Owned(_));
            Ok((parsed, stored_form(&d.doc, unpacked)))
        });
        let mut outcomes: Vec<Option<RemoteApply>> = vec![None; docs.len()];
        {
            let parsed: Vec<(NewDocument, Vec<u8>)> = parsed.into_iter().collect::<Result<_>>()?;
            let mut inner = self.lock();
            // Remote data: no fsync of its own (see apply_remote).
            inner.conn.pragma_update(None, "synchronous", "NORMAL")?;
            let result = (|| -> Result<Vec<usize>> {
                let tx = inner
                    .conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut raced = Vec::new();
                for (&i, (p, snapshot)) in fresh.iter().zip(&parsed) {
                    let d = &docs[i];
                    let inserted = tx
                        .prepare_cached(
                            "INSERT INTO documents (visit_id, snapshot, chunks) VALUES (?1, ?2, 0)
                             ON CONFLICT (visit_id) DO NOTHING",
                        )?
                        .execute(params![d.visit_id, snapshot])?;
                    if inserted == 0 {
                        // Arrived meanwhile through another call: merge it instead.
                        raced.push(i);
                        continue;
                    }
                    if let Some(v) = &p.visit {
                        projection::insert(&tx, v)?;
                    }
                }
                tx.commit()?;
                Ok(raced)
            })();
            inner.conn.pragma_update(None, "synchronous", "FULL")?;
            let raced = result?;
            for (&i, (p, _)) in fresh.iter().zip(parsed) {
                outcomes[i] = Some(p.outcome);
            }
            for &i in &raced {
                outcomes[i] = None;
            }
            later.extend(raced);
        }
        later.sort_unstable();
        for i in later {
            let d = &docs[i];
            outcomes[i] = Some(self.apply_remote_document(&d.visit_id, &d.doc, &d.heads)?);
        }
        Ok(outcomes
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect())
    }

    /// The heads of every visit document held (hex hashes), for the server to compare.
    ///
    /// Purged visits whose own changes are still kept (see [`DeviceStore::purge_visit`])
    /// are included with the heads of those changes, so a restored server that lacks them
    /// asks for them.
    pub fn all_heads(&self) -> Result<Vec<(String, Vec<String>)>> {
        let mut out = Vec::new();
        let held = self.visit_ids()?;
        for id in &held {
            let heads = self.with_doc_raw(id, |d| d.get_heads())?;
            out.push((id.clone(), heads.iter().map(|h| h.to_string()).collect()));
        }
        let held: BTreeSet<String> = held.into_iter().collect();
        let mut purged: BTreeMap<String, Vec<Change>> = BTreeMap::new();
        {
            let inner = self.lock();
            let mut stmt = inner
                .conn
                .prepare_cached("SELECT visit_id, bytes FROM purged_changes ORDER BY visit_id")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let visit: String = r.get(0)?;
                if held.contains(&visit) {
                    continue;
                }
                if let Ok(c) = Change::from_bytes(r.get::<_, Vec<u8>>(1)?) {
                    purged.entry(visit).or_default().push(c);
                }
            }
        }
        for (visit, changes) in purged {
            let deps: BTreeSet<ChangeHash> =
                changes.iter().flat_map(|c| c.deps().to_vec()).collect();
            let heads = changes
                .iter()
                .map(Change::hash)
                .filter(|h| !deps.contains(h))
                .map(|h| h.to_string())
                .collect();
            out.push((visit, heads));
        }
        Ok(out)
    }

    /// The changes of a visit the holder of `have` (hex heads) lacks, e.g. for a server
    /// restored from an old backup. Unknown heads are ignored (everything is sent).
    ///
    /// For a purged visit, its kept own changes (all of them: the holder of `have` ignores
    /// those it has); `NotFound` when there are none.
    pub fn changes_since(&self, visit_id: &str, have: &[String]) -> Result<Vec<Vec<u8>>> {
        match self.changes_since_held(visit_id, have) {
            Err(Error::NotFound { .. }) => {
                let inner = self.lock();
                let kept = inner
                    .conn
                    .prepare_cached("SELECT bytes FROM purged_changes WHERE visit_id = ?1")?
                    .query_map([visit_id], |r| r.get::<_, Vec<u8>>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                if kept.is_empty() {
                    return Err(Error::not_found("visit", visit_id));
                }
                Ok(kept)
            }
            other => other,
        }
    }

    fn changes_since_held(&self, visit_id: &str, have: &[String]) -> Result<Vec<Vec<u8>>> {
        self.with_doc_raw(visit_id, |d| {
            let known: Vec<ChangeHash> = have
                .iter()
                .filter_map(|h| h.parse::<ChangeHash>().ok())
                .filter(|h| d.get_change_by_hash(h).is_some())
                .collect();
            d.get_changes(&known)
                .into_iter()
                .map(|mut c| c.bytes().into_owned())
                .collect()
        })
    }

    fn with_doc_raw<T>(&self, visit_id: &str, f: impl FnOnce(&Automerge) -> T) -> Result<T> {
        let inner = self.lock();
        if let Some(d) = inner.docs.get(visit_id) {
            return Ok(f(d.automerge()));
        }
        let am = load_automerge(&inner.conn, visit_id, &inner.actor)?;
        Ok(f(&am))
    }

    /// A purged visit is back on the device (it re-entered the scope, or a restored server
    /// sent it again): its kept own changes go back into its document, so the device holds
    /// its own work again and can resend it to a server that lacks it. Returns how many
    /// kept changes there were.
    pub fn reclaim_purged(&self, visit_id: &str) -> Result<usize> {
        let kept: Vec<Vec<u8>> = {
            let inner = self.lock();
            inner
                .conn
                .prepare_cached("SELECT bytes FROM purged_changes WHERE visit_id = ?1")?
                .query_map([visit_id], |r| r.get::<_, Vec<u8>>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?
        };
        if kept.is_empty() {
            return Ok(0);
        }
        self.apply_remote(visit_id, &kept)?;
        self.lock()
            .conn
            .execute("DELETE FROM purged_changes WHERE visit_id = ?1", [visit_id])?;
        Ok(kept.len())
    }

    /// Reads a sync-state value.
    pub fn sync_state(&self, key: &str) -> Result<Option<String>> {
        state_value(&self.lock().conn, key)
    }

    /// Writes a sync-state value.
    pub fn set_sync_state(&self, key: &str, value: &str) -> Result<()> {
        set_state_value(&self.lock().conn, key, value)
    }

    /// Keeps a visit's rejected changes aside with the server's reason.
    pub fn quarantine(&self, visit_id: &str, reason: &str, hashes: &[String]) -> Result<()> {
        let now = self.now();
        let inner = self.lock();
        inner.conn.execute(
            "INSERT INTO quarantine (visit_id, reason, hashes, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(visit_id) DO UPDATE SET reason = excluded.reason, hashes = excluded.hashes, at = excluded.at",
            params![visit_id, reason, serde_json::to_string(hashes)?, now],
        )?;
        Ok(())
    }

    /// Visits in quarantine with the server's reason.
    pub fn quarantined(&self) -> Result<Vec<(String, String)>> {
        let inner = self.lock();
        let mut stmt = inner
            .conn
            .prepare_cached("SELECT visit_id, reason FROM quarantine ORDER BY visit_id")?;
        let v = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(v)
    }

    /// Releases a visit from quarantine.
    pub fn clear_quarantine(&self, visit_id: &str) -> Result<()> {
        self.lock()
            .conn
            .execute("DELETE FROM quarantine WHERE visit_id = ?1", [visit_id])?;
        Ok(())
    }

    /// Removes a visit from the device, but only once none of its changes wait in the
    /// outbox. Returns whether it was removed.
    ///
    /// This device's own changes of the visit are kept for [`PURGED_RETENTION_MS`] (about
    /// 6 KB for a typical visit): a server restored from a backup older than their
    /// acknowledgement asks for them again, and [`DeviceStore::all_heads`] and
    /// [`DeviceStore::changes_since`] still offer them, so the rep's work is not lost.
    pub fn purge_visit(&self, visit_id: &str) -> Result<bool> {
        let now = self.now();
        let mut inner = self.lock();
        let actor = inner.actor.clone();
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let pending: i64 = tx.query_row(
            "SELECT COUNT(*) FROM outbox WHERE visit_id = ?1",
            [visit_id],
            |r| r.get(0),
        )?;
        if pending > 0 {
            return Ok(false);
        }
        let own: Vec<(String, Vec<u8>)> = match load_automerge(&tx, visit_id, &actor) {
            Ok(am) => am
                .get_changes(&[])
                .into_iter()
                .filter(|c| c.actor_id() == &actor)
                .map(|c| (c.hash().to_string(), c.raw_bytes().to_vec()))
                .collect(),
            Err(Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        {
            let mut keep = tx.prepare_cached(
                "INSERT OR IGNORE INTO purged_changes (hash, visit_id, bytes, purged_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (hash, bytes) in &own {
                keep.execute(params![hash, visit_id, bytes, now])?;
            }
        }
        tx.execute(
            "DELETE FROM purged_changes WHERE purged_at < ?1",
            [now.saturating_sub(PURGED_RETENTION_MS)],
        )?;
        tx.execute("DELETE FROM documents WHERE visit_id = ?1", [visit_id])?;
        tx.execute("DELETE FROM doc_chunks WHERE visit_id = ?1", [visit_id])?;
        tx.execute("DELETE FROM quarantine WHERE visit_id = ?1", [visit_id])?;
        projection::remove(&tx, visit_id)?;
        tx.commit()?;
        inner.docs.remove(visit_id);
        inner.resolved.remove(visit_id);
        Ok(true)
    }

    // ---------------------------------------------------------------- maintenance

    /// Drops and rebuilds every projection row from the documents.
    pub fn rebuild_projections(&self) -> Result<()> {
        let mut inner = self.lock();
        inner.docs.clear();
        inner.resolved.clear();
        let actor = inner.actor.clone();
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for t in projection::TABLES {
            tx.execute(&format!("DELETE FROM {t}"), [])?;
        }
        let ids: Vec<String> = tx
            .prepare("SELECT visit_id FROM documents ORDER BY visit_id")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for id in ids {
            let am = load_automerge(&tx, &id, &actor)?;
            if am.get(automerge::ROOT, "v")?.is_some() {
                // The tables were emptied above: nothing to replace.
                projection::insert(&tx, &VisitDoc::from_automerge(am)?.read()?)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every projected row as text (for tests comparing a rebuild with the live rows).
    pub fn projection_rows(&self) -> Result<Vec<String>> {
        projection::dump(&self.lock().conn)
    }

    /// Runs `PRAGMA integrity_check` and returns its answer (`ok` when healthy).
    pub fn integrity_check(&self) -> Result<String> {
        let inner = self.lock();
        let rows: Vec<String> = inner
            .conn
            .prepare("PRAGMA integrity_check")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows.join("; "))
    }

    /// Bytes the documents of a visit take (snapshot plus appended changes).
    pub fn document_size(&self, visit_id: &str) -> Result<u64> {
        let inner = self.lock();
        let snap: i64 = inner
            .conn
            .query_row(
                "SELECT length(snapshot) FROM documents WHERE visit_id = ?1",
                [visit_id],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| Error::not_found("visit", visit_id))?;
        let chunks: i64 = inner.conn.query_row(
            "SELECT COALESCE(SUM(length(bytes)), 0) FROM doc_chunks WHERE visit_id = ?1",
            [visit_id],
            |r| r.get(0),
        )?;
        Ok((snap + chunks) as u64)
    }

    /// Compacts every document into a single snapshot.
    pub fn compact_all(&self) -> Result<()> {
        let mut inner = self.lock();
        inner.docs.clear();
        inner.resolved.clear();
        let actor = inner.actor.clone();
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let ids: Vec<String> = tx
            .prepare("SELECT visit_id FROM documents")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for id in ids {
            let am = load_automerge(&tx, &id, &actor)?;
            if am.get_missing_deps(&[]).is_empty() {
                write_snapshot(&tx, &id, &am.save())?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// Inserts `value` under `id`, first making room by dropping some other entry when `map`
/// holds `limit` already.
fn insert_bounded<V>(map: &mut HashMap<String, V>, limit: usize, id: String, value: V) {
    if map.len() >= limit
        && !map.contains_key(&id)
        && let Some(k) = map.keys().next().cloned()
    {
        map.remove(&k);
    }
    map.insert(id, value);
}

/// Caches a document as stored. (A path that changed it dropped its kept read when it
/// took it: see [`RESOLVED_LIMIT`].)
fn cache_insert(inner: &mut Inner, id: String, doc: VisitDoc) {
    insert_bounded(&mut inner.docs, CACHE_LIMIT, id, doc);
}

/// Keeps `visit`, the read of visit `id`'s document as stored.
fn keep_resolved(inner: &mut Inner, id: String, visit: Visit) {
    insert_bounded(&mut inner.resolved, RESOLVED_LIMIT, id, visit);
}

/// Caches a document as stored with its resolved visit.
fn cache_resolved(inner: &mut Inner, id: String, doc: VisitDoc, visit: Visit) {
    cache_insert(inner, id.clone(), doc);
    keep_resolved(inner, id, visit);
}

/// `f` over the visit's document as stored, which stays cached (its kept read with it: `f`
/// cannot change the document).
fn read_doc<T>(
    inner: &mut Inner,
    visit_id: &str,
    f: impl FnOnce(&VisitDoc) -> Result<T>,
) -> Result<T> {
    let doc = take_doc(inner, visit_id)?;
    let out = f(&doc);
    cache_insert(inner, visit_id.into(), doc);
    out
}

/// The visit's document to change, with its kept read (if any), which is no longer kept:
/// the caller keeps a read again when it puts the document back.
fn take_doc_to_change(inner: &mut Inner, visit_id: &str) -> Result<(VisitDoc, Option<Visit>)> {
    let kept = inner.resolved.remove(visit_id);
    Ok((take_doc(inner, visit_id)?, kept))
}

/// Takes the visit's document out of the cache, or loads it (only through [`read_doc`] and
/// [`take_doc_to_change`]).
fn take_doc(inner: &mut Inner, visit_id: &str) -> Result<VisitDoc> {
    if let Some(d) = inner.docs.remove(visit_id) {
        return Ok(d);
    }
    let am = load_automerge(&inner.conn, visit_id, &inner.actor)?;
    if am.get(automerge::ROOT, "v")?.is_none() {
        return Err(Error::not_found("visit", visit_id));
    }
    VisitDoc::from_automerge(am)
}

/// A document from the server, checked before Automerge parses it
/// ([`crate::sync::doc_check::checked_document`], within the device's limits for one
/// document).
fn checked_document<'a>(
    visit_id: &str,
    doc: &'a [u8],
    heads: &[String],
) -> Result<CheckedDocument<'a>> {
    use crate::sync::doc_check::{MAX_DOCUMENT_BYTES, MAX_DOCUMENT_ROWS};
    // The server's bytes pass the size check before Automerge parses them, as changes
    // pass crate::sync::guard (which understands changes only).
    crate::sync::doc_check::checked_document(doc, heads, MAX_DOCUMENT_BYTES, MAX_DOCUMENT_ROWS)
        .map_err(|e| Error::invalid(format!("visit {visit_id}: malformed document: {e}")))
}

/// What the device stores for a document received whole: the bytes as they came when
/// they came packed (`unpacked`: [`checked_document`] unpacked them), else packed.
fn stored_form(received: &[u8], unpacked: bool) -> Vec<u8> {
    if unpacked {
        received.to_vec()
    } else {
        crate::document::pack_document(received)
    }
}

fn document_exists(conn: &Connection, visit_id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM documents WHERE visit_id = ?1")?
        .exists([visit_id])?)
}

/// Takes a document for a visit the device does not hold with the visit the server read
/// from it (`packed`, [`crate::document::pack_visit`]), without Automerge parsing it:
/// what [`parse_new_document`] costs is mostly that parse (about three quarters, the
/// hashing of every change included) and the read.
///
/// The bytes passed [`checked_document`]; here their checksum must be right and the
/// heads they record must be the server's `heads` (Automerge checks those against the
/// changes when it loads the stored document, on the first use of the visit), and the
/// visit must unpack and be this one. A document is whole, so no dependency can be
/// missing. `None` when any of that fails: the read is only a shortcut, and the document
/// is then parsed and read as without it (which refuses it if the document is at fault),
/// so a read the device cannot use never stops a sync.
fn take_new_document(
    visit_id: &str,
    checked: &CheckedDocument<'_>,
    packed: &[u8],
) -> Option<NewDocument> {
    let recorded: BTreeSet<&ChangeHash> = checked.shape.heads.iter().collect();
    if recorded != checked.heads.iter().collect()
        || !crate::sync::doc_check::checksum_ok(&checked.bytes)
    {
        return None;
    }
    let visit = crate::document::unpack_visit(packed)
        .inspect_err(|e| tracing::warn!(visit_id, error = %e, "the visit sent with a document does not read; reading the document"))
        .ok()
        .filter(|v| v.id == visit_id)?;
    Some(NewDocument {
        visit: Some(visit),
        outcome: RemoteApply {
            applied: checked.shape.changes as usize,
            duplicates: 0,
            missing: Vec::new(),
        },
    })
}

/// Parses and resolves a document for a visit the device does not hold: one parse, one
/// [`VisitDoc::read`]; checks it holds `heads` and belongs to `visit_id`.
fn parse_new_document(
    visit_id: &str,
    bytes: &[u8],
    heads: &[ChangeHash],
    actor: &ActorId,
) -> Result<NewDocument> {
    let bad = |e: String| Error::invalid(format!("visit {visit_id}: malformed document: {e}"));
    let doc = load_unwinding(bytes)
        .map_err(bad)?
        .with_actor(actor.clone());
    let outcome = RemoteApply {
        applied: doc.stats().num_changes as usize,
        duplicates: 0,
        missing: doc
            .get_missing_deps(heads)
            .iter()
            .map(|h| h.to_string())
            .collect(),
    };
    if doc.get(automerge::ROOT, "v").ok().flatten().is_none() {
        // Not readable (yet): stored, nothing to project (as in apply_remote).
        return Ok(NewDocument {
            visit: None,
            outcome,
        });
    }
    let visit = VisitDoc::from_automerge(doc)?.read()?;
    if visit.id != visit_id {
        return Err(Error::invalid(format!(
            "the document for visit {visit_id} belongs to visit {}",
            visit.id
        )));
    }
    Ok(NewDocument {
        visit: Some(visit),
        outcome,
    })
}

/// A visit's raw document taken out of the caches (from memory, else from the database),
/// readable or not; `None` when the device holds no document for it.
fn take_automerge(inner: &mut Inner, visit_id: &str) -> Result<Option<Automerge>> {
    inner.resolved.remove(visit_id);
    if let Some(d) = inner.docs.remove(visit_id) {
        return Ok(Some(d.into_automerge()));
    }
    match load_automerge(&inner.conn, visit_id, &inner.actor) {
        Ok(am) => Ok(Some(am)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `Automerge::load`, its panics caught: Automerge 0.12 panics on some malformed columns
/// (found by fuzzing), which must be an error, never a crash of the app. The error's text.
fn load_unwinding(bytes: &[u8]) -> std::result::Result<Automerge, String> {
    std::panic::catch_unwind(|| Automerge::load(bytes))
        .map_err(|_| "malformed columns".to_string())?
        .map_err(|e| e.to_string())
}

/// `Automerge::load_incremental` into `am`, its panics caught (see [`load_unwinding`]).
fn load_incremental_unwinding(
    am: &mut Automerge,
    bytes: &[u8],
) -> std::result::Result<usize, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| am.load_incremental(bytes)))
        .map_err(|_| "malformed columns".to_string())?
        .map_err(|e| e.to_string())
}

fn load_automerge(conn: &Connection, visit_id: &str, actor: &ActorId) -> Result<Automerge> {
    let snapshot: Vec<u8> = conn
        .prepare_cached("SELECT snapshot FROM documents WHERE visit_id = ?1")?
        .query_row([visit_id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| Error::not_found("visit", visit_id))?;
    // A document taken whole from the server was stored without Automerge parsing it
    // (`take_new_document`): it is parsed here first.
    let corrupt = |e: String| {
        Error::Corrupt(format!(
            "the stored document of visit {visit_id} does not load: {e}"
        ))
    };
    let mut am = if snapshot.is_empty() {
        Automerge::new()
    } else {
        load_unwinding(&crate::document::unpack_document(&snapshot)?).map_err(corrupt)?
    };
    let mut stmt =
        conn.prepare_cached("SELECT bytes FROM doc_chunks WHERE visit_id = ?1 ORDER BY seq")?;
    let mut rows = stmt.query([visit_id])?;
    while let Some(r) = rows.next()? {
        let bytes: Vec<u8> = r.get(0)?;
        load_incremental_unwinding(&mut am, &bytes).map_err(corrupt)?;
    }
    am.set_actor(actor.clone());
    Ok(am)
}

fn append_chunk(conn: &Connection, visit_id: &str, bytes: &[u8]) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO doc_chunks (visit_id, seq, bytes)
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM doc_chunks WHERE visit_id = ?1), ?2)",
    )?
    .execute(params![visit_id, bytes])?;
    conn.prepare_cached("UPDATE documents SET chunks = chunks + 1 WHERE visit_id = ?1")?
        .execute([visit_id])?;
    Ok(())
}

fn write_snapshot(conn: &Connection, visit_id: &str, bytes: &[u8]) -> Result<()> {
    conn.prepare_cached("UPDATE documents SET snapshot = ?2, chunks = 0 WHERE visit_id = ?1")?
        .execute(params![visit_id, bytes])?;
    conn.prepare_cached("DELETE FROM doc_chunks WHERE visit_id = ?1")?
        .execute([visit_id])?;
    Ok(())
}

fn maybe_compact(conn: &Connection, visit_id: &str, doc: &VisitDoc) -> Result<()> {
    let chunks: i64 = conn
        .prepare_cached("SELECT chunks FROM documents WHERE visit_id = ?1")?
        .query_row([visit_id], |r| r.get(0))?;
    if chunks >= COMPACT_AFTER_CHUNKS && doc.missing_deps().is_empty() {
        write_snapshot(conn, visit_id, &doc.save())?;
    }
    Ok(())
}

/// Writes one local change: document chunk, projection, outbox entry, in one transaction.
/// Returns the visit as resolved after the change.
fn commit_action(
    inner: &mut Inner,
    visit_id: &str,
    doc: &VisitDoc,
    mut change: Change,
    create: bool,
    now: Millis,
) -> Result<Visit> {
    let visit = doc.read()?;
    let tx = inner
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)?;
    let bytes = change.bytes().into_owned();
    if create {
        tx.execute(
            "INSERT INTO documents (visit_id, snapshot, chunks) VALUES (?1, ?2, 0)",
            params![visit_id, doc.save()],
        )?;
    } else {
        append_chunk(&tx, visit_id, &bytes)?;
        maybe_compact(&tx, visit_id, doc)?;
    }
    projection::write(&tx, &visit)?;
    tx.prepare_cached(
        "INSERT INTO outbox (hash, visit_id, bytes, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![change.hash().to_string(), visit_id, bytes, now])?;
    tx.commit()?;
    Ok(visit)
}

fn load_or_create_actor(conn: &Connection, user_id: &str, device_id: &str) -> Result<ActorId> {
    let get = |k: &str| -> Result<Option<String>> {
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
            .optional()?)
    };
    if let Some(u) = get("user_id")?
        && u != user_id
    {
        return Err(Error::invalid(
            "this device database belongs to another user; open the user's own file",
        ));
    }
    if let Some(hex) = get("actor")? {
        return ActorId::try_from(hex.as_str())
            .map_err(|_| Error::Corrupt("stored actor id is not hex".into()));
    }
    let actor = ActorId::random();
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('actor', ?1), ('user_id', ?2), ('device_id', ?3)",
        params![actor.to_hex_string(), user_id, device_id],
    )?;
    Ok(actor)
}

/// The closed stores kept in the reference data ([`KEPT_STORES`]).
fn load_kept_stores(conn: &Connection) -> Result<BTreeSet<String>> {
    match state_value(conn, KEPT_STORES)? {
        Some(json) => {
            serde_json::from_str(&json).map_err(|e| Error::Corrupt(format!("kept stores: {e}")))
        }
        None => Ok(BTreeSet::new()),
    }
}

/// The local day at `at` in store `store_id`'s time zone; UTC's for a store `idx` lacks.
fn day_at(idx: &ReferenceIndex<'_>, store_id: &str, at: Millis) -> NaiveDate {
    match idx.stores.get(store_id) {
        Some(store) => rules::local_day(store, at),
        None => chrono::DateTime::from_timestamp_millis(at)
            .unwrap_or_default()
            .date_naive(),
    }
}

/// [`DeviceStore::reference_for`], with the store locked.
fn reference_for(inner: &mut Inner, visit: &Visit) -> Result<Arc<ReferenceData>> {
    let at = kpi::worked_at(visit);
    let store_id = visit.plan.store_id.as_str();
    let lists = |d: &ReferenceData| d.stores.iter().any(|s| s.id == store_id);
    let current_lists = inner.refs_stores.contains(store_id);
    let current = inner.refs.clone();
    if at >= inner.refs_since && current_lists {
        return Ok(current);
    }
    // The kept version in effect at `at` (the oldest kept for an earlier time).
    let in_effect = if at >= inner.refs_since {
        None
    } else {
        let row: Option<i64> = {
            let mut latest = inner.conn.prepare_cached(
                "SELECT rowid FROM reference_history WHERE since <= ?1
                 ORDER BY since DESC, rowid DESC LIMIT 1",
            )?;
            match latest.query_row([at], |r| r.get(0)).optional()? {
                Some(row) => Some(row),
                None => inner
                    .conn
                    .prepare_cached(
                        "SELECT rowid FROM reference_history ORDER BY since, rowid LIMIT 1",
                    )?
                    .query_row([], |r| r.get(0))
                    .optional()?,
            }
        };
        row.map(|rowid| kept_version(inner, rowid)).transpose()?
    };
    let then = in_effect.unwrap_or_else(|| current.clone());
    if lists(&then) {
        return Ok(then);
    }
    // The data of that time does not list the store: head office closed it before the
    // visit was worked (offline), or the visit reached this phone after it had dropped the
    // store (worked on another phone that still listed it). As the dashboard does, the
    // visit is judged by the data of that time with the store as last listed
    // ([`ReferenceData::with_stores`]): as the current data lists it, else the newest kept
    // version.
    if current_lists {
        let store = current.stores.iter().filter(|s| s.id == store_id);
        return Ok(Arc::new(then.with_stores(store)));
    }
    let rows: Vec<i64> = inner
        .conn
        .prepare_cached("SELECT rowid FROM reference_history ORDER BY since DESC, rowid DESC")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for rowid in rows {
        let d = kept_version(inner, rowid)?;
        if let Some(s) = d.stores.iter().find(|s| s.id == store_id) {
            return Ok(Arc::new(then.with_stores([s])));
        }
    }
    Ok(then)
}

/// The kept reference data version in `reference_history` row `rowid` (read once).
fn kept_version(inner: &mut Inner, rowid: i64) -> Result<Arc<ReferenceData>> {
    if let Some(d) = inner.older_refs.get(&rowid) {
        return Ok(d.clone());
    }
    let packed: Vec<u8> = inner.conn.query_row(
        "SELECT data FROM reference_history WHERE rowid = ?1",
        [rowid],
        |r| r.get(0),
    )?;
    let json = zstd::stream::decode_all(packed.as_slice())
        .map_err(|e| Error::Corrupt(format!("kept reference data: {e}")))?;
    let d: Arc<ReferenceData> = Arc::new(serde_json::from_slice(&json)?);
    inner.older_refs.insert(rowid, d.clone());
    Ok(d)
}

/// The ids of the stores `data` lists.
fn store_ids(data: &ReferenceData) -> HashSet<String> {
    data.stores.iter().map(|s| s.id.clone()).collect()
}

/// Of the earlier versions sent with version `current` of the reference data, in effect
/// from `since`, those that can be used, oldest first: valid, of another version, each
/// taking effect before the next one (newest first from `since`). A version that breaks a
/// rule is left out with a warning: it only judges past visits, and refusing the whole
/// answer would stop the phone's sync until the server changed.
fn usable_earlier(
    earlier: &[ReferenceVersion],
    current: i64,
    since: Option<Millis>,
) -> Vec<&ReferenceVersion> {
    let mut out = Vec::new();
    let mut end = since.unwrap_or(Millis::MAX);
    for e in earlier.iter().rev() {
        let problem = match e.data.validate() {
            Err(err) => Some(err.to_string()),
            Ok(()) if e.data.version == current => Some("it repeats the current version".into()),
            Ok(()) if e.since >= end => {
                Some(format!("it took effect at {}, out of order", e.since))
            }
            Ok(()) => None,
        };
        match problem {
            Some(problem) => tracing::warn!(
                version = e.data.version,
                "earlier reference data left out: {problem}"
            ),
            None => {
                end = e.since;
                out.push(e);
            }
        }
    }
    out.reverse();
    out
}

/// [`DeviceStore::working_reference`], with the store locked.
fn working_reference(inner: &mut Inner, visit: &Visit) -> Result<Arc<ReferenceData>> {
    match visit.check_in {
        Some(_) => reference_for(inner, visit),
        None => Ok(inner.refs.clone()),
    }
}

/// A sync_state value.
fn state_value(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row("SELECT value FROM sync_state WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?)
}

/// Sets a sync_state value.
fn set_state_value(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO sync_state (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

fn load_reference(conn: &Connection) -> Result<ReferenceData> {
    let mut data = ReferenceData::default();
    let mut stmt = conn.prepare("SELECT kind, data FROM reference ORDER BY kind, id")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let kind: String = r.get(0)?;
        let json: String = r.get(1)?;
        match kind.as_str() {
            "territory" => data.territories.push(serde_json::from_str(&json)?),
            "user" => data.users.push(serde_json::from_str(&json)?),
            "store" => data.stores.push(serde_json::from_str(&json)?),
            "store_group" => data.store_groups.push(serde_json::from_str(&json)?),
            "product" => data.products.push(serde_json::from_str(&json)?),
            "assortment" => data.assortments.push(serde_json::from_str(&json)?),
            "planogram" => data.planograms.push(serde_json::from_str(&json)?),
            "promotion" => data.promotions.push(serde_json::from_str(&json)?),
            "kpi_target" => data.kpi_targets.push(serde_json::from_str(&json)?),
            "task_template" => data.task_templates.push(serde_json::from_str(&json)?),
            "settings" => data.settings = serde_json::from_str(&json)?,
            "version" => data.version = json.parse().unwrap_or(0),
            _ => {}
        }
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, FixtureSize};

    fn refs() -> ReferenceData {
        fixtures::reference_data(
            1,
            &FixtureSize::default(),
            NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(),
        )
    }

    #[test]
    fn upgrading_from_schema_1_equals_a_fresh_database_and_rebuilds_projections() {
        upgrade_equals_fresh(1);
    }

    #[test]
    fn upgrading_from_schema_4_rekeys_the_projection_rows() {
        upgrade_equals_fresh(4);
    }

    /// A database left at schema `from` (documents; at schema 2 to 4 also a projection row
    /// in the old text-keyed form) upgrades to the same schema as a fresh one, with the
    /// projections rebuilt from the documents.
    fn upgrade_equals_fresh(from: i64) {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.db");
        let refs = refs();
        let plan = VisitPlan {
            store_id: refs.stores[0].id.clone(),
            rep_id: "rep-1".into(),
            planned_start: 1_795_770_000_000,
            planned_end: 1_795_773_600_000,
            priority: 1,
            instructions: String::new(),
            template_id: "tt-standard".into(),
            ad_hoc: false,
        };
        {
            // A database as schema `from` left it: a document (and no projection tables
            // at schema 1).
            let mut conn = Connection::open(&old).unwrap();
            schema::configure(&conn).unwrap();
            schema::migrate(&mut conn, from).unwrap();
            let author = Author {
                user_id: "rep-1".into(),
                device_id: "d".into(),
            };
            let doc = VisitDoc::create("v-1", &plan, ActorId::random(), &author, 1).unwrap();
            conn.execute(
                "INSERT INTO documents (visit_id, snapshot) VALUES ('v-1', ?1)",
                [doc.save()],
            )
            .unwrap();
            if (2..5).contains(&from) {
                // A stale row the rebuild must not keep.
                conn.execute(
                    "INSERT INTO inventory_lines (visit_id, product_id, observed_at)
                     VALUES ('v-1', 'p-stale', 1)",
                    [],
                )
                .unwrap();
            }
            assert_eq!(
                conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
                    .unwrap(),
                from
            );
        }
        let upgraded = DeviceStore::open(&old, "rep-1", "d").unwrap();
        upgraded.replace_reference_data(refs).unwrap();
        let fresh = DeviceStore::open(dir.path().join("fresh.db"), "rep-1", "d").unwrap();
        let schema_of = |s: &DeviceStore| schema::schema_sql(&s.lock().conn).unwrap();
        assert_eq!(schema_of(&upgraded), schema_of(&fresh));
        let version = upgraded
            .lock()
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .unwrap();
        assert_eq!(version, schema::LATEST_VERSION);
        // The migration rebuilt the projections from the documents.
        assert_eq!(
            upgraded.visit_ids_between(0, i64::MAX).unwrap(),
            vec!["v-1".to_string()]
        );
        assert_eq!(upgraded.visit("v-1").unwrap().plan, plan);
        let rows = upgraded.projection_rows().unwrap();
        assert!(!rows.iter().any(|r| r.contains("p-stale")), "{rows:?}");
        upgraded.rebuild_projections().unwrap();
        assert_eq!(upgraded.projection_rows().unwrap(), rows);
    }

    #[test]
    fn a_database_from_a_newer_build_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        let err = DeviceStore::open(&path, "rep-1", "d").unwrap_err();
        assert!(
            matches!(err, Error::SchemaTooNew { found: 99, .. }),
            "{err}"
        );
        let conn = Connection::open(&path).unwrap();
        assert_eq!(
            conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
                .unwrap(),
            99
        );
    }

    #[test]
    fn wal_and_full_sync_are_on() {
        let dir = tempfile::tempdir().unwrap();
        let s = DeviceStore::open(dir.path().join("s.db"), "rep-1", "d").unwrap();
        let inner = s.lock();
        let mode: String = inner
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let sync: i64 = inner
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!((mode.as_str(), sync), ("wal", 2));
    }

    #[test]
    fn a_store_belongs_to_one_user() {
        let dir = tempfile::tempdir().unwrap();
        drop(DeviceStore::open(dir.path().join("s.db"), "rep-1", "d").unwrap());
        let e = DeviceStore::open(dir.path().join("s.db"), "rep-2", "d").unwrap_err();
        assert!(e.to_string().contains("belongs to another user"), "{e}");
    }

    #[test]
    fn documents_are_compacted_periodically() {
        let dir = tempfile::tempdir().unwrap();
        let s = DeviceStore::open(dir.path().join("s.db"), "rep-1", "d").unwrap();
        let refs = refs();
        s.replace_reference_data(refs.clone()).unwrap();
        let id = s
            .create_ad_hoc_visit(&refs.stores[0].id, "tt-standard")
            .unwrap();
        s.check_in(
            &id,
            GeoPoint {
                lat: refs.stores[0].lat,
                lng: refs.stores[0].lng,
            },
        )
        .unwrap();
        for i in 0..(COMPACT_AFTER_CHUNKS * 2 + 3) {
            s.set_order_line(&id, &refs.products[0].id, i).unwrap();
        }
        let chunks: i64 = s
            .lock()
            .conn
            .query_row(
                "SELECT COUNT(*) FROM doc_chunks WHERE visit_id = ?1",
                [&id],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            chunks < COMPACT_AFTER_CHUNKS,
            "{chunks} chunks were never compacted"
        );
        drop(s);
        let s = DeviceStore::open(dir.path().join("s.db"), "rep-1", "d").unwrap();
        assert_eq!(
            s.visit(&id).unwrap().orders[&refs.products[0].id].quantity,
            COMPACT_AFTER_CHUNKS * 2 + 2
        );
    }
}
