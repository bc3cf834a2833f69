//! Ingesting a device's changes for one visit: authorize, parse, check dependencies,
//! apply to a fork, bind actors, check field ownership, validate, store.
//!
//! The verdict is one of: accepted (acks), rejected (a readable reason; nothing stored),
//! or resend (dependencies missing; the device must send its changes since the server's
//! heads). A visit's verdict never affects another visit.
//!
//! **Size of a visit.** The change guard ([`guard`]) bounds one request; [`VisitLimits`]
//! bounds what a visit's document may grow to over all requests together: a push that
//! would take a visit over them is rejected, for that visit only.
//!
//! **Deciding outside the writer.** The decision (apply to a fork, ownership, validation:
//! nearly all the CPU of a push) is made on the committed state of the visit, read without
//! the write transaction ([`Store::visit`], [`Store::actor_binding`]), with a [`VisitTxn`]
//! that records the writes instead of making them. Then, in one storage transaction
//! ([`Store::with_visit`]), the stored document and the actor bindings the decision read
//! are compared with what it saw: unchanged, the recorded writes are made; changed (another
//! push of the visit committed meanwhile), the decision is made again inside the
//! transaction, on the state there. A decision that writes nothing (known changes
//! acknowledged again, a rejection, a resend) needs no transaction: it was made on
//! committed data. So the single SQLite writer, and PostgreSQL's visit lock, are held only
//! for the writes, and decisions run in parallel (docs/BENCHMARKS.md).
//!
//! **Documents kept in memory.** Loading a stored visit's document is a large part of a
//! push that brings a few changes to it (a rep whose app syncs after every action). The
//! documents of the visits written last by such small pushes are kept as Automerge holds
//! them, each with the saved bytes it was made from (`RecentDocs`,
//! [`KEEP_AFTER_CHANGES`]); a push whose visit is stored with exactly those bytes starts
//! from the kept document instead of loading them.

use automerge::{Automerge, Change, ChangeHash, ReadDoc};
use fieldsync_core::document::{
    ChangeSpan, TouchedValues, VisitDoc, author_in, has_change, pack_document, pack_visit,
};
use fieldsync_core::model::{ReferenceIndex, Role};
use fieldsync_core::rules;
use fieldsync_core::sync::doc_check;
use fieldsync_core::sync::guard::{self, OpBudget};
use fieldsync_core::sync::protocol::{
    Rejection, Resend, VisitChanges, VisitDocument, decode_change, hash_hex, hex_of,
};
use fieldsync_core::visit::Author;
use std::cell::{RefCell, RefMut};
use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroUsize;
use std::sync::{Arc, LazyLock, Mutex};

use crate::reference::{EverListed, IndexedReference};
use crate::store::{
    LogEntry, Scope, Store, StoreError, StoreResult, StoredVisit, VisitMeta, VisitTxn,
};

/// How many visits' documents `RecentDocs` keeps: about one per rep working at the
/// moment. A typical visit's document takes ~30 KB kept (the server's peak RSS grew by
/// 31 MB with 1,024 of them kept in the 10,000-visit ingest benchmark).
pub const RECENT_DOCS: usize = 512;

/// Only documents that save to at most this many bytes are kept (a typical visit saves to
/// 2.5 KB): the memory kept stays bounded by [`RECENT_DOCS`] small documents, whatever
/// visits the devices push.
pub const KEEP_MAX_BYTES: usize = 16 * 1024;

/// A visit's document is kept after a push that stored at most this many changes: an app
/// syncing as its rep works, whose next push to the visit comes soon. A visit pushed
/// whole (a typical one is 37 changes) is seldom pushed again soon, and keeping those
/// cost more than it saved: with every new visit kept, the 100-device ingest benchmark
/// spent ~14 % more server CPU per visit (1.45-1.49 → 1.61-1.75 ms, four A/B runs; the
/// cause was not isolated), for no hit.
pub const KEEP_AFTER_CHANGES: usize = 8;

/// The documents of the visits written last, by visit id, each with the saved bytes it is
/// the state of (see the module docs). A document is taken out for a push and put back
/// with its new bytes when the push stores changes; one whose bytes are not what the
/// store holds is never used (the bytes decide, so a document kept for another store's
/// visit of the same id, or for a write that did not commit, is only a miss).
struct RecentDocs {
    docs: Mutex<lru::LruCache<String, (Vec<u8>, Automerge)>>,
}

static RECENT: LazyLock<RecentDocs> = LazyLock::new(|| RecentDocs {
    docs: Mutex::new(lru::LruCache::new(
        NonZeroUsize::new(RECENT_DOCS).unwrap_or(NonZeroUsize::MIN),
    )),
});

impl RecentDocs {
    /// The document of `saved` (a visit's stored bytes): the kept one when it is the
    /// state of exactly these bytes, else loaded from them.
    fn load(&self, visit_id: &str, saved: &[u8]) -> Result<Automerge, automerge::AutomergeError> {
        let kept = {
            let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
            match docs.peek(visit_id) {
                Some((bytes, _)) if bytes.as_slice() == saved => docs.pop(visit_id),
                _ => None,
            }
        };
        match kept {
            Some((_, doc)) => Ok(doc),
            None => Automerge::load(saved),
        }
    }

    /// Keeps `doc`, the state of `saved`, as visit `visit_id`'s latest document.
    fn keep(&self, visit_id: &str, saved: Vec<u8>, doc: Automerge) {
        let evicted = {
            let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
            docs.push(visit_id.to_string(), (saved, doc))
        };
        // Freed outside the lock: freeing a document is not free.
        drop(evicted);
    }
}

/// Who is writing.
#[derive(Clone, Debug)]
pub struct Writer {
    pub user_id: String,
    pub role: Role,
    pub territories: Vec<String>,
    pub device_id: String,
    /// The device's read scope at the time of the request; `None` when unknown (it is
    /// then recorded as holding every visit it pushes to, see [`LogEntry::hold`]).
    pub scope: Option<Scope>,
    /// Everything the kept versions of the reference data list, built on first need
    /// ([`EverListed`]): what a rep may have recorded against on a phone that had not
    /// synced since. `None`: only the current data.
    pub ever_listed: Option<EverListed>,
}

impl Writer {
    /// Whether the writer may touch visits of `territory`.
    pub fn covers(&self, territory: &str) -> bool {
        self.role == Role::Admin || self.territories.iter().any(|t| t == territory)
    }
}

/// The verdict for one visit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// Hashes now stored (new or already known).
    pub acks: Vec<String>,
    /// Changes newly stored.
    pub applied: usize,
    pub rejection: Option<Rejection>,
    pub resend: Option<Resend>,
    /// A pushed document whose every change is now stored ([`ingest_document`]): `acks`
    /// lists them all, and the device may be told so by the document's heads
    /// (`SyncResponse::acked_documents`).
    pub whole: bool,
}

/// The most operations one visit's document may hold. A typical visit holds a few hundred
/// (plan, check-in, 20 inventory lines, notes, check-out: 235 on the server,
/// `tests/visit_size_limit.rs`; with the planogram, promotion and survey checks of
/// docs/BENCHMARKS.md's typical visit, a few dozen more): this leaves room for visits
/// hundreds of times larger (months of revisions, whole assortments counted many times).
/// The bound that matters is the device's: a visit entering a device's scope arrives as
/// one document, which a device accepts with at most
/// [`fieldsync_core::sync::doc_check::MAX_DOCUMENT_ROWS`] (10⁶) rows in a column and
/// applies within [`guard::MAX_WORK_PER_APPLY`] (10⁶): a quarter of that keeps every
/// stored visit deliverable, predecessor references included.
pub const MAX_VISIT_OPS: u64 = 250_000;

/// The most bytes one visit's document may have, saved without compression (what the
/// server stores and loads on every push of the visit). A typical visit is about 1.9 KB
/// (1.4 KB compacted; 5.8 KB as the 37 changes a device uploads); this is over 2,000 times
/// that, and a quarter of what a device accepts as one document
/// ([`fieldsync_core::sync::doc_check::MAX_DOCUMENT_BYTES`], 16 MiB).
pub const MAX_VISIT_DOC_BYTES: usize = 4 * 1024 * 1024;

/// How large one visit's document may grow, over all pushes together
/// (`Config::visit_limits`; [`MAX_VISIT_OPS`] and [`MAX_VISIT_DOC_BYTES`] by default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VisitLimits {
    /// Most operations ([`automerge::ReadDoc::stats`]).
    pub ops: u64,
    /// Most bytes of the document saved without compression.
    pub doc_bytes: usize,
}

impl Default for VisitLimits {
    fn default() -> Self {
        Self {
            ops: MAX_VISIT_OPS,
            doc_bytes: MAX_VISIT_DOC_BYTES,
        }
    }
}

/// The rejection reason of a push that would take a visit over a limit.
fn too_large(visit_id: &str, what: &str, value: u64, limit: u64) -> String {
    format!(
        "visit {visit_id} is too large: these changes would bring its document to {value} \
         {what}, over the server's limit of {limit} {what} per visit (a typical visit is a \
         few hundred operations, about 2 KB). Nothing of them was stored; they stay on this \
         device. Report this visit to your administrator."
    )
}

/// Whether a pushed visit id can be one (not blank, at most 200 bytes).
fn valid_visit_id(visit_id: &str) -> bool {
    !visit_id.trim().is_empty() && visit_id.len() <= 200
}

/// No verdict for a visit over what earlier visits left of the request's budget: nothing
/// stored or acknowledged, the device sends it again with its next request.
fn left_for_later(visit_id: &str) -> Outcome {
    tracing::info!(
        visit = visit_id,
        "request budget spent: visit left for a later request"
    );
    Outcome::default()
}

fn reject(visit_id: &str, hashes: &[String], reason: impl Into<String>) -> Outcome {
    Outcome {
        rejection: Some(Rejection {
            visit_id: visit_id.into(),
            hashes: hashes.to_vec(),
            reason: reason.into(),
        }),
        ..Default::default()
    }
}

/// Ingests one visit's changes from `writer`, within a budget of its own (see
/// [`ingest_within`]).
pub fn ingest(
    store: &dyn Store,
    writer: &Writer,
    refs: &ReferenceIndex<'_>,
    group: &VisitChanges,
) -> StoreResult<Outcome> {
    ingest_within(store, writer, refs, group, &mut OpBudget::per_request())
}

/// Ingests one visit's changes from `writer` within the default [`VisitLimits`] (see
/// [`ingest_limited`]).
pub fn ingest_within(
    store: &dyn Store,
    writer: &Writer,
    refs: &ReferenceIndex<'_>,
    group: &VisitChanges,
    budget: &mut OpBudget,
) -> StoreResult<Outcome> {
    ingest_limited(store, writer, refs, group, budget, &VisitLimits::default())
}

/// Ingests one visit's changes from `writer`. Every change goes through
/// [`guard::parse_change`], which refuses bytes whose counts could make Automerge allocate
/// without bound, before Automerge parses them. `budget` is shared by the visits of one
/// request: a visit whose changes overrun what is left of it gets no verdict (nothing
/// stored or acknowledged; the device sends the changes again with its next request), one
/// that overruns a whole budget on its own is refused. Changes that would take the visit's
/// document over `limits` are refused.
pub fn ingest_limited(
    store: &dyn Store,
    writer: &Writer,
    refs: &ReferenceIndex<'_>,
    group: &VisitChanges,
    budget: &mut OpBudget,
    limits: &VisitLimits,
) -> StoreResult<Outcome> {
    let visit_id = group.visit_id.as_str();
    let mut parsed = Vec::with_capacity(group.changes.len());
    let mut hashes = Vec::new();
    let mut bad = None;
    let mut visit_budget = OpBudget::new(budget.remaining());
    let mut deferred = false;
    for (i, text) in group.changes.iter().enumerate() {
        let res = decode_change(text).and_then(|b| guard::parse_change(b, &mut visit_budget));
        match res {
            Ok(c) => {
                hashes.push(hash_hex(&c.hash()));
                parsed.push(c);
            }
            // Over what earlier visits left of the request's budget: for a later request.
            Err(_) if visit_budget.overrun() && budget.used() > 0 => {
                deferred = true;
                break;
            }
            Err(e) => {
                bad.get_or_insert_with(|| format!("change #{i} of visit {visit_id}: {e}"));
            }
        }
    }
    // Within what was left (the visit's budget was the remainder): cannot fail.
    budget.spend(visit_budget.used()).ok();
    if !valid_visit_id(visit_id) {
        return Ok(reject(visit_id, &hashes, "invalid visit id"));
    }
    if let Some(reason) = bad {
        return Ok(reject(visit_id, &hashes, reason));
    }
    if deferred {
        return Ok(left_for_later(visit_id));
    }
    if parsed.is_empty() {
        return Ok(Outcome::default());
    }
    settle(
        store,
        writer,
        refs,
        limits,
        visit_id,
        &Incoming::Changes(parsed),
        &hashes,
    )
}

/// Ingests one visit pushed as its whole document (`SyncRequest::documents`) from
/// `writer`: the verdict its changes would get pushed as changes (those of another author
/// the server lacks are left for that author's device), reached without parsing and
/// applying each change (see `decide`); [`Outcome::whole`] when every change of it is
/// then stored. The bytes (Automerge's, or
/// packed as `pack_document` packs them) pass [`doc_check::checked_document`] before
/// Automerge parses them, and their rows count against `budget` as a change's operations
/// do. A document whose state holds ops that none of its changes holds (which Automerge
/// loads, and which would escape the checks made on the changes) is refused.
pub fn ingest_document(
    store: &dyn Store,
    writer: &Writer,
    refs: &ReferenceIndex<'_>,
    pushed: &VisitDocument,
    budget: &mut OpBudget,
    limits: &VisitLimits,
) -> StoreResult<Outcome> {
    let visit_id = pushed.visit_id.as_str();
    if !valid_visit_id(visit_id) {
        return Ok(reject(visit_id, &[], "invalid visit id"));
    }
    let bad = |e: &str| {
        reject(
            visit_id,
            &[],
            format!("the document of visit {visit_id}: {e}"),
        )
    };
    let raw = match decode_change(&pushed.doc) {
        Ok(b) => b,
        Err(e) => return Ok(bad(&e)),
    };
    let (max_bytes, max_rows) = (limits.doc_bytes, guard::MAX_WORK_PER_REQUEST);
    let checked = match doc_check::checked_document(&raw, &pushed.heads, max_bytes, max_rows) {
        Ok(c) => c,
        Err(e) => return Ok(bad(&e)),
    };
    let shape = checked.shape;
    // The document's size with its compressed columns inflated (at least its bytes).
    if shape.inflated_len > limits.doc_bytes {
        let (len, max) = (shape.inflated_len as u64, limits.doc_bytes as u64);
        return Ok(reject(
            visit_id,
            &[],
            too_large(visit_id, "bytes", len, max),
        ));
    }
    if budget.remaining() < shape.rows && budget.used() > 0 {
        return Ok(left_for_later(visit_id));
    }
    // At most a whole budget's rows (checked above): within an unused budget.
    budget.spend(shape.rows).ok();
    // Automerge 0.12 panics on some malformed columns (see `decide`): a refusal.
    let doc = match std::panic::catch_unwind(|| Automerge::load(&checked.bytes)) {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => return Ok(bad(&format!("not an Automerge document: {e}"))),
        Err(_) => return Ok(bad("not an Automerge document: malformed columns")),
    };
    // Every change of the document, read once for all the checks below.
    let changes: Vec<NewChange> = doc
        .get_changes_meta(&[])
        .iter()
        .map(NewChange::of_meta)
        .collect();
    let hashes: Vec<String> = changes.iter().map(|c| hash_hex(&c.hash)).collect();
    let heads: BTreeSet<ChangeHash> = doc.get_heads().into_iter().collect();
    if heads != checked.heads.iter().copied().collect() {
        return Ok(reject(
            visit_id,
            &hashes,
            format!(
                "the document of visit {visit_id} does not have the heads it was sent with: \
                 it was damaged or cut on the way"
            ),
        ));
    }
    if hashes.is_empty() {
        return Ok(Outcome::default());
    }
    // Packed as the device sent them (and unpacked above), or to be packed here if they
    // are stored.
    let plain = match checked.bytes {
        std::borrow::Cow::Owned(plain) => Some(plain),
        std::borrow::Cow::Borrowed(_) => None,
    };
    let incoming = Incoming::Document(PushedDoc {
        doc: RefCell::new(Some(doc)),
        changes,
        bytes: raw,
        plain,
    });
    let mut outcome = settle(store, writer, refs, limits, visit_id, &incoming, &hashes)?;
    // Every change of the document is acknowledged (new or known) only when it is all
    // stored: `acks` are the document's own hashes, each at most once.
    outcome.whole = outcome.rejection.is_none()
        && outcome.resend.is_none()
        && outcome.acks.len() == hashes.len();
    Ok(outcome)
}

/// What a device pushed for one visit, parsed.
enum Incoming {
    /// Changes.
    Changes(Vec<Change>),
    /// The whole document (the client sends one for a visit made, or planned and filled
    /// in, on the device; nothing here relies on that).
    Document(PushedDoc),
}

/// A visit's whole document as pushed: the document, every change of it, and its bytes
/// as pushed and, when they came packed, unpacked. When it is the visit's next state, the
/// bytes are stored as pushed (packed here first if they were not), and the decision
/// takes the document instead of copying it; a decision made again loads it again from
/// the bytes.
struct PushedDoc {
    doc: RefCell<Option<Automerge>>,
    changes: Vec<NewChange>,
    bytes: Vec<u8>,
    plain: Option<Vec<u8>>,
}

impl PushedDoc {
    /// Its Automerge bytes (unpacked).
    fn plain(&self) -> &[u8] {
        self.plain.as_deref().unwrap_or(&self.bytes)
    }

    /// The document (loaded again if a decision took it).
    fn doc(&self) -> Result<RefMut<'_, Automerge>, automerge::AutomergeError> {
        let mut slot = self.doc.borrow_mut();
        let doc = match slot.take() {
            Some(d) => d,
            // The bytes loaded when the push arrived: they load the same again.
            None => Automerge::load(self.plain())?,
        };
        Ok(RefMut::map(slot, |s| s.insert(doc)))
    }

    /// The document, taken out (the next [`PushedDoc::doc`] loads it again).
    fn take(&self) -> Result<Automerge, automerge::AutomergeError> {
        match self.doc.borrow_mut().take() {
            Some(d) => Ok(d),
            None => Automerge::load(self.plain()),
        }
    }
}

impl Incoming {
    /// Whether the device sent change `h` (and so holds it).
    fn sent(&self, h: &ChangeHash) -> bool {
        match self {
            Incoming::Changes(cs) => cs.iter().any(|c| c.hash() == *h),
            Incoming::Document(p) => p.changes.iter().any(|c| c.hash == *h),
        }
    }
}

/// A change of a push, as the checks after the merge read it.
#[derive(Clone)]
struct NewChange {
    hash: ChangeHash,
    actor: automerge::ActorId,
    /// It has no dependencies (the first change of a document).
    first: bool,
    /// Its first and last op counters.
    start_op: u64,
    max_op: u64,
}

impl NewChange {
    fn of(c: &Change) -> Self {
        Self {
            hash: c.hash(),
            actor: c.actor_id().clone(),
            first: c.deps().is_empty(),
            start_op: c.start_op().get(),
            max_op: c.max_op(),
        }
    }

    fn of_meta(m: &automerge::ChangeMetadata<'_>) -> Self {
        Self {
            hash: m.hash,
            actor: m.actor.as_ref().clone(),
            first: m.deps.is_empty(),
            start_op: m.start_op,
            max_op: m.max_op,
        }
    }
}

/// Decides on a visit's push and stores what the decision writes (see the module docs:
/// decided on the committed state, decided again in the transaction if that changed).
fn settle(
    store: &dyn Store,
    writer: &Writer,
    refs: &ReferenceIndex<'_>,
    limits: &VisitLimits,
    visit_id: &str,
    incoming: &Incoming,
    hashes: &[String],
) -> StoreResult<Outcome> {
    let mut draft = Draft::new(store, store.visit(visit_id)?);
    let first = decide(&mut draft, writer, refs, limits, visit_id, incoming, hashes)?;
    if !draft.writes() {
        return Ok(first);
    }
    let mut outcome = Outcome::default();
    store.with_visit(visit_id, &mut |txn| {
        if draft.still_holds(txn)? {
            draft.replay(txn)?;
            outcome = first.clone();
        } else {
            outcome = decide(txn, writer, refs, limits, visit_id, incoming, hashes)?;
        }
        Ok(())
    })?;
    Ok(outcome)
}

/// An actor and the (device, user) it was found bound to, if any.
type Binding = (String, Option<(String, String)>);

/// A recorded [`VisitTxn::save`]: meta, document, heads, log entry, device.
struct SaveCall {
    meta: VisitMeta,
    doc: Vec<u8>,
    heads: Vec<ChangeHash>,
    visit: Vec<u8>,
    log: LogEntry,
    device_id: String,
}

/// A [`VisitTxn`] over a committed snapshot of one visit that records the writes of a
/// decision instead of making them (see the module docs).
struct Draft<'s> {
    store: &'s dyn Store,
    stored: Option<StoredVisit>,
    /// The actor bindings the decision read, with what it found.
    bindings: std::cell::RefCell<Vec<Binding>>,
    binds: Vec<(String, String, String)>,
    save: Option<SaveCall>,
}

impl<'s> Draft<'s> {
    fn new(store: &'s dyn Store, stored: Option<StoredVisit>) -> Self {
        Self {
            store,
            stored,
            bindings: std::cell::RefCell::new(Vec::new()),
            binds: Vec::new(),
            save: None,
        }
    }

    fn writes(&self) -> bool {
        self.save.is_some() || !self.binds.is_empty()
    }

    /// Whether the visit and the bindings read are as the decision saw them.
    fn still_holds(&self, txn: &dyn VisitTxn) -> StoreResult<bool> {
        let now = txn.stored()?;
        let same = match (&now, &self.stored) {
            (None, None) => true,
            (Some(a), Some(b)) => a.meta == b.meta && a.doc == b.doc,
            _ => false,
        };
        if !same {
            return Ok(false);
        }
        for (actor, seen) in self.bindings.borrow().iter() {
            if txn.actor_binding(actor)? != *seen {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Makes the recorded writes in `txn`.
    fn replay(&self, txn: &mut dyn VisitTxn) -> StoreResult<()> {
        for (actor, device, user) in &self.binds {
            txn.bind_actor(actor, device, user)?;
        }
        if let Some(s) = &self.save {
            txn.save(&s.meta, &s.doc, &s.heads, &s.visit, &s.log, &s.device_id)?;
        }
        Ok(())
    }
}

impl VisitTxn for Draft<'_> {
    fn stored(&self) -> StoreResult<Option<StoredVisit>> {
        Ok(self.stored.clone())
    }

    fn actor_binding(&self, actor_hex: &str) -> StoreResult<Option<(String, String)>> {
        let found = self.store.actor_binding(actor_hex)?;
        self.bindings
            .borrow_mut()
            .push((actor_hex.to_string(), found.clone()));
        Ok(found)
    }

    fn bind_actor(&mut self, actor_hex: &str, device_id: &str, user_id: &str) -> StoreResult<()> {
        self.binds
            .push((actor_hex.into(), device_id.into(), user_id.into()));
        Ok(())
    }

    fn save(
        &mut self,
        meta: &VisitMeta,
        doc: &[u8],
        heads: &[ChangeHash],
        visit: &[u8],
        log: &LogEntry,
        device_id: &str,
    ) -> StoreResult<()> {
        self.save = Some(SaveCall {
            meta: meta.clone(),
            doc: doc.to_vec(),
            heads: heads.to_vec(),
            visit: visit.to_vec(),
            log: log.clone(),
            device_id: device_id.into(),
        });
        Ok(())
    }

    fn outside(&self) -> Option<&dyn Store> {
        Some(self.store)
    }
}

/// Sentinel error: roll the transaction back but report a rejection.
fn decide(
    txn: &mut dyn VisitTxn,
    w: &Writer,
    refs: &ReferenceIndex<'_>,
    limits: &VisitLimits,
    visit_id: &str,
    incoming: &Incoming,
    hashes: &[String],
) -> StoreResult<Outcome> {
    let stored = txn.stored()?;
    let creating = stored.is_none();
    // A rep writing to a visit now assigned to someone else: allowed only for changes
    // made while it was theirs (checked below, change by change, on the state each change
    // builds on). That is how work done offline before a reassignment — or acknowledged,
    // lost in a server restore and resent after a reassignment — still arrives.
    let mut assigned_elsewhere = false;
    let am = match &stored {
        Some(s) => {
            if !w.covers(&s.meta.territory_id) {
                return Ok(reject(
                    visit_id,
                    hashes,
                    format!("forbidden: visit {visit_id} is outside your scope"),
                ));
            }
            assigned_elsewhere = w.role == Role::Rep && s.meta.rep_id != w.user_id;
            RECENT.load(visit_id, &s.doc)?
        }
        None => Automerge::new(),
    };
    let heads_before = am.get_heads();
    let me = Author {
        user_id: w.user_id.clone(),
        device_id: w.device_id.clone(),
    };
    let unloadable = |e: automerge::AutomergeError| {
        reject(
            visit_id,
            hashes,
            format!("the document of visit {visit_id}: not an Automerge document: {e}"),
        )
    };
    // A pushed document that holds every stored change is the visit's next state as it
    // is: its changes the stored document lacks are the new ones, and nothing is applied.
    // One that lacks some (the server has changes the device has not seen), or whose new
    // changes include another device's (lost in a restore: that device resends them), is
    // merged as the device's own changes in it would be.
    // (Only the changes' metadata is read: rebuilding them from the document cost about
    // as much as loading it; their ops are read from the pushed bytes below.)
    let next_state = match incoming {
        Incoming::Document(p)
            if heads_before
                .iter()
                .all(|h| p.changes.iter().any(|c| c.hash == *h)) =>
        {
            let (known, fresh): (Vec<&NewChange>, Vec<&NewChange>) =
                p.changes.iter().partition(|c| has_change(&am, &c.hash));
            let doc = match p.doc() {
                Ok(d) => d,
                Err(e) => return Ok(unloadable(e)),
            };
            others(&doc, fresh.iter().map(|c| &c.actor), &me)
                .is_empty()
                .then(|| {
                    let known = known.iter().map(|c| hash_hex(&c.hash)).collect();
                    (known, fresh.into_iter().cloned().collect())
                })
        }
        _ => None,
    };
    let (merged, whole) = match incoming {
        Incoming::Document(p) if let Some((known, fresh)) = next_state => {
            let am = match p.take() {
                Ok(d) => d,
                Err(e) => return Ok(unloadable(e)),
            };
            let merge = Merge {
                am,
                fresh,
                changes: Vec::new(),
                known,
                deferred: false,
            };
            (Ok(merge), true)
        }
        Incoming::Document(p) => {
            let d = match p.doc() {
                Ok(d) => d,
                Err(e) => return Ok(unloadable(e)),
            };
            let mut own = d.get_changes(&[]);
            let theirs = others(&d, own.iter().map(Change::actor_id), &me);
            drop(d);
            own.retain(|c| !theirs.contains(c.actor_id()));
            (ready_changes(am, &own, visit_id), false)
        }
        Incoming::Changes(cs) => (ready_changes(am, cs, visit_id), false),
    };
    let Merge {
        mut am,
        fresh,
        changes,
        known,
        deferred,
    } = match merged {
        // Nothing new: the known changes are acknowledged again (idempotent).
        Ok(m) if m.fresh.is_empty() => {
            return Ok(Outcome {
                acks: m.known,
                ..Default::default()
            });
        }
        Ok(m) => m,
        Err(outcome) => return Ok(*outcome),
    };
    // Actor binding: every actor belongs to the device that first pushed it.
    // (Each distinct actor once: a device's changes share one actor.)
    let mut new_actors: HashMap<String, ()> = HashMap::new();
    let mut checked: BTreeSet<&automerge::ActorId> = BTreeSet::new();
    for c in &fresh {
        if !checked.insert(&c.actor) {
            continue;
        }
        let actor = hex_of(c.actor.to_bytes());
        match txn.actor_binding(&actor)? {
            Some((device, _)) if device != w.device_id => {
                return Ok(reject(
                    visit_id,
                    hashes,
                    format!(
                        "forbidden: change {} claims actor {actor}, which belongs to another device",
                        c.hash
                    ),
                ));
            }
            Some(_) => {}
            None => {
                new_actors.insert(actor, ());
            }
        }
    }
    if !whole {
        // Automerge 0.12 panics on some malformed change columns (found by fuzzing,
        // tests/fuzz/regressions/sync_ingest): a refusal, never a crashed request.
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            am.apply_changes(changes.iter().cloned())
        }));
        match applied {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Ok(reject(
                    visit_id,
                    hashes,
                    format!("the changes cannot be applied: {e}"),
                ));
            }
            Err(_) => {
                return Ok(reject(
                    visit_id,
                    hashes,
                    "the changes cannot be applied: malformed change operations",
                ));
            }
        }
    }
    if !am.get_missing_deps(&[]).is_empty() {
        return Ok(Outcome {
            acks: known,
            resend: Some(Resend {
                visit_id: visit_id.into(),
                have: Vec::new(),
            }),
            ..Default::default()
        });
    }
    // The visit's size over all pushes (the guard only bounds this request's).
    let ops = am.stats().num_ops;
    if ops > limits.ops {
        return Ok(reject(
            visit_id,
            hashes,
            too_large(visit_id, "operations", ops, limits.ops),
        ));
    }
    if assigned_elsewhere
        && let Some(reason) = not_theirs_when_made(&am, &fresh, &w.user_id, visit_id)
    {
        return Ok(reject(visit_id, hashes, reason));
    }
    let doc = match VisitDoc::from_automerge(am) {
        Ok(d) => d,
        Err(e) => {
            return Ok(reject(
                visit_id,
                hashes,
                format!("not a visit document: {e}"),
            ));
        }
    };
    // The document's actor registry must name this user and device for each new actor.
    let mut checked: BTreeSet<&automerge::ActorId> = BTreeSet::new();
    for c in &fresh {
        if !checked.insert(&c.actor) {
            continue;
        }
        match doc.author_of(&c.actor) {
            Some(a) if a == me => {}
            Some(a) => {
                return Ok(reject(
                    visit_id,
                    hashes,
                    format!(
                        "forbidden: actor {} is registered to user {} on device {}",
                        c.actor, a.user_id, a.device_id
                    ),
                ));
            }
            None => {
                return Ok(reject(
                    visit_id,
                    hashes,
                    format!("change {} is by an unregistered actor", c.hash),
                ));
            }
        }
    }
    // Field ownership, change by change. One walk of the document's objects for all
    // changes (per change it dominated the server's ingest CPU), and only the new
    // changes' ops decoded (docs/BENCHMARKS.md, "Sync server").
    let touched = match incoming {
        Incoming::Document(pushed) if whole => match whole_touched(&doc, pushed, &fresh)? {
            Some(touched) => touched,
            None => {
                return Ok(reject(
                    visit_id,
                    hashes,
                    format!(
                        "the document of visit {visit_id} holds operations that none of its \
                         changes holds: it was forged or damaged"
                    ),
                ));
            }
        },
        _ => doc.touched_values_each(&changes)?,
    };
    // (A device's changes share one actor: its hex is made once.)
    let mut actor: Option<(&automerge::ActorId, String)> = None;
    for (c, ops) in fresh.iter().zip(&touched) {
        if actor.as_ref().is_none_or(|(a, _)| *a != &c.actor) {
            actor = Some((&c.actor, hex_of(c.actor.to_bytes())));
        }
        let hex = actor.as_ref().map_or("", |(_, hex)| hex.as_str());
        let creating_change = creating && c.first;
        let paths = ops.iter().map(|(path, _)| path);
        if let Some(p) = rules::forbidden_path(w.role, paths, hex, creating_change) {
            return Ok(reject(
                visit_id,
                hashes,
                format!("not allowed: a {} may not write {p}", w.role.as_str()),
            ));
        }
        if w.role == Role::Manager && !creating_change {
            // The status values this change writes (a new object, `{}`, is no status).
            let bad_status = ops.iter().any(|(path, value)| {
                path == "actual/status" && value != "{}" && value != "\"canceled\""
            });
            if bad_status {
                return Ok(reject(
                    visit_id,
                    hashes,
                    "not allowed: a manager may only set a visit's status to canceled",
                ));
            }
        }
    }
    // Content rules.
    let visit = match doc.read() {
        Ok(v) => v,
        Err(e) => return Ok(reject(visit_id, hashes, format!("unreadable visit: {e}"))),
    };
    if visit.id != visit_id {
        return Ok(reject(
            visit_id,
            hashes,
            format!("the changes belong to visit {}, not {visit_id}", visit.id),
        ));
    }
    // A store the current data no longer lists (closed by an import with
    // `--allow-removals`) but a kept version does: the visit is judged by what the kept
    // versions list, so a rep's work at the store before it closed is not refused.
    let mut ever = None;
    let found = match refs.store(&visit.plan.store_id) {
        Ok(store) => Some((refs, store)),
        Err(_) => {
            ever = match ever_listed(w, txn, visit_id)? {
                Ok(ever) => ever,
                Err(later) => return Ok(later),
            };
            let ever = ever.as_deref().map(IndexedReference::index);
            ever.and_then(|r| Some((r, r.store(&visit.plan.store_id).ok()?)))
        }
    };
    let Some((refs, store)) = found else {
        return Ok(reject(
            visit_id,
            hashes,
            format!("unknown store {:?}", visit.plan.store_id),
        ));
    };
    if !w.covers(&store.territory_id) {
        return Ok(reject(
            visit_id,
            hashes,
            format!(
                "forbidden: store {} is in territory {}, outside your territories",
                store.id, store.territory_id
            ),
        ));
    }
    if w.role == Role::Rep {
        if creating && !(visit.plan.ad_hoc && visit.plan.rep_id == w.user_id) {
            return Ok(reject(
                visit_id,
                hashes,
                "not allowed: a rep may only create ad-hoc visits for themselves",
            ));
        }
        if visit.plan.rep_id != w.user_id && !assigned_elsewhere {
            return Ok(reject(
                visit_id,
                hashes,
                "not allowed: a rep may not reassign a visit",
            ));
        }
    }
    // Of its problems under the current data, those the push is to blame for.
    let mut problems = rules::visit_problems(&visit, refs);
    if !problems.is_empty() {
        problems = not_had_before(problems, stored.as_ref(), refs)?;
    }
    if !problems.is_empty() {
        let ever = match &ever {
            Some(ever) => Some(ever.clone()),
            None => match ever_listed(w, txn, visit_id)? {
                Ok(ever) => ever,
                Err(later) => return Ok(later),
            },
        };
        if let Some(ever) = ever {
            problems = under_every_version(problems, &visit, &ever);
        }
    }
    if !problems.is_empty() {
        return Ok(reject(
            visit_id,
            hashes,
            format!("invalid visit: {}", problems.join("; ")),
        ));
    }
    // The bytes to store, packed (much cheaper than Automerge's DEFLATE), and made before
    // the writer is taken. A pushed document that is the next state is stored as it came
    // (its size was checked when it arrived); a merge is saved and its size checked here,
    // before anything is written.
    let (saved, packed) = match incoming {
        Incoming::Document(PushedDoc { bytes, plain, .. }) if whole => (
            None,
            if plain.is_some() {
                bytes.clone()
            } else {
                pack_document(bytes)
            },
        ),
        _ => {
            let saved = doc.automerge().save_nocompress();
            if saved.len() > limits.doc_bytes {
                let (len, max) = (saved.len() as u64, limits.doc_bytes as u64);
                return Ok(reject(
                    visit_id,
                    hashes,
                    too_large(visit_id, "bytes", len, max),
                ));
            }
            let packed = pack_document(&saved);
            (Some(saved), packed)
        }
    };
    // What was read, kept beside the document for devices that take a visit with it.
    let packed_visit = pack_visit(&visit);
    // Commit.
    for actor in new_actors.keys() {
        txn.bind_actor(actor, &w.device_id, &w.user_id)?;
    }
    let meta = VisitMeta {
        visit_id: visit_id.into(),
        store_id: store.id.clone(),
        territory_id: store.territory_id.clone(),
        rep_id: visit.plan.rep_id.clone(),
        planned_start: visit.plan.planned_start,
        status: visit.status.as_str().into(),
    };
    let heads = doc.heads();
    let log = LogEntry {
        changes: fresh.len(),
        heads_before,
        hold: heads.iter().all(|h| incoming.sent(h))
            || w.scope.as_ref().is_some_and(|s| !s.contains(&meta)),
    };
    txn.save(&meta, &packed, &heads, &packed_visit, &log, &w.device_id)?;
    let mut acks = known;
    acks.extend(fresh.iter().map(|c| hash_hex(&c.hash)));
    let outcome = Outcome {
        acks,
        applied: fresh.len(),
        resend: deferred.then(|| Resend {
            visit_id: visit_id.into(),
            have: heads.iter().map(ToString::to_string).collect(),
        }),
        ..Default::default()
    };
    // A visit pushed whole is not kept (it is seldom pushed again soon, see
    // KEEP_AFTER_CHANGES).
    if let Some(saved) = saved
        && fresh.len() <= KEEP_AFTER_CHANGES
        && saved.len() <= KEEP_MAX_BYTES
    {
        RECENT.keep(visit_id, saved, doc.into_automerge());
    }
    Ok(outcome)
}

/// The paths and values each new change of a pushed document writes
/// ([`VisitDoc::touched_values_each`]), in the order of `fresh` (the document's order of
/// its changes): read from the pushed bytes, with the metadata of every change of the
/// document as it arrived, when they are laid out as Automerge writes them and every op
/// belongs to exactly one change ([`VisitDoc::touched_values_in_saved`]); else from the new
/// changes rebuilt from the document. `None` when the document holds ops that none of its
/// changes holds (which the checks of the changes would never see).
fn whole_touched(
    doc: &VisitDoc,
    pushed: &PushedDoc,
    fresh: &[NewChange],
) -> StoreResult<Option<TouchedValues>> {
    let new: BTreeSet<ChangeHash> = fresh.iter().map(|c| c.hash).collect();
    let spans: Vec<ChangeSpan<'_>> = pushed
        .changes
        .iter()
        .map(|c| ChangeSpan {
            actor: &c.actor,
            start_op: c.start_op,
            max_op: c.max_op,
            wanted: new.contains(&c.hash),
        })
        .collect();
    if let Some(touched) = doc.touched_values_in_saved(pushed.plain(), &spans) {
        return Ok(Some(touched));
    }
    if doc.ops_outside_changes() > 0 {
        return Ok(None);
    }
    let am = doc.automerge();
    let Some(changes) = fresh
        .iter()
        .map(|c| am.get_change_by_hash(&c.hash))
        .collect::<Option<Vec<Change>>>()
    else {
        return Err(StoreError::Database(
            "a change of a loaded document is missing from it".into(),
        ));
    };
    Ok(Some(doc.touched_values_each(&changes)?))
}

/// The actors of `changes` that `doc`'s registry gives to an author other than `me`.
/// (Unregistered actors, or a document that is no visit, are for the checks to refuse.)
fn others<'a>(
    doc: &Automerge,
    actors: impl Iterator<Item = &'a automerge::ActorId>,
    me: &Author,
) -> BTreeSet<automerge::ActorId> {
    let actors: BTreeSet<&automerge::ActorId> = actors.collect();
    actors
        .into_iter()
        .filter(|a| author_in(doc, a).is_some_and(|author| author != *me))
        .cloned()
        .collect()
}

/// What a push brings to a visit, before the checks.
struct Merge {
    /// The document the new changes are in, or are to be applied to.
    am: Automerge,
    /// The new changes.
    fresh: Vec<NewChange>,
    /// The new changes to apply to `am` (none when `am` is a pushed document that holds
    /// them).
    changes: Vec<Change>,
    /// Pushed hashes already stored (acknowledged again: idempotent).
    known: Vec<String>,
    /// Some pushed changes wait for dependencies the server lacks.
    deferred: bool,
}

/// The pushed changes `parsed` against `am` (the stored document): the new changes whose
/// dependencies are present (in the document or among the changes kept). `Err` is the
/// verdict when there are new changes but none is ready (a resend request).
///
/// Keeping the ready part matters after a restore: each device resends only its own
/// changes, and a device's batch may mix changes the server can take with changes that
/// wait for another device's; refusing the whole batch would leave every device waiting
/// on the others.
fn ready_changes(am: Automerge, parsed: &[Change], visit_id: &str) -> Result<Merge, Box<Outcome>> {
    let mut seen = BTreeSet::new();
    let mut fresh: Vec<Change> = Vec::new();
    let mut known = Vec::new();
    for c in parsed {
        let h = c.hash();
        if has_change(&am, &h) {
            known.push(h.to_string());
        } else if seen.insert(h) {
            fresh.push(c.clone());
        }
    }
    if fresh.is_empty() {
        return Ok(Merge {
            am,
            fresh: Vec::new(),
            changes: fresh,
            known,
            deferred: false,
        });
    }
    let mut ready: Vec<Change> = Vec::new();
    let mut ready_hashes: BTreeSet<ChangeHash> = BTreeSet::new();
    let mut waiting = fresh;
    loop {
        let before = ready.len();
        waiting.retain(|c| {
            let ok = c
                .deps()
                .iter()
                .all(|d| has_change(&am, d) || ready_hashes.contains(d));
            if ok {
                ready_hashes.insert(c.hash());
                ready.push(c.clone());
            }
            !ok
        });
        if ready.len() == before {
            break;
        }
    }
    if ready.is_empty() {
        return Err(Box::new(Outcome {
            acks: known,
            resend: Some(Resend {
                visit_id: visit_id.into(),
                have: am.get_heads().iter().map(ToString::to_string).collect(),
            }),
            ..Default::default()
        }));
    }
    Ok(Merge {
        am,
        fresh: ready.iter().map(NewChange::of).collect(),
        changes: ready,
        known,
        deferred: !waiting.is_empty(),
    })
}

/// For a visit now assigned to another rep: the reason to refuse `fresh` unless the visit
/// was `rep`'s in the state of the document each change produced (the change and what it
/// builds on; a rep cannot write the assignment itself, so that is the state they saw).
fn not_theirs_when_made(
    am: &Automerge,
    fresh: &[NewChange],
    rep: &str,
    visit_id: &str,
) -> Option<String> {
    for c in fresh {
        let rep_then = am
            .fork_at(&[c.hash])
            .ok()
            .and_then(|f| VisitDoc::from_automerge(f).ok())
            .and_then(|d| d.read().ok())
            .map(|v| v.plan.rep_id);
        if rep_then.as_deref() != Some(rep) {
            return Some(format!(
                "forbidden: visit {visit_id} is outside your scope (assigned to another rep)"
            ));
        }
    }
    None
}

/// Everything the kept versions of the reference data list ([`Writer::ever_listed`]; `None`:
/// only the current data), built now if it is not yet. Building reads the store, so it
/// happens only in a decision outside any write transaction ([`VisitTxn::outside`]); a
/// decision made again in one that needs it first (the visit changed meanwhile, and now
/// needs it) gives no verdict: `Err`, nothing stored, the device sends the visit again
/// with its next request.
fn ever_listed(
    w: &Writer,
    txn: &dyn VisitTxn,
    visit_id: &str,
) -> StoreResult<Result<Option<Arc<IndexedReference>>, Outcome>> {
    let Some(ever) = &w.ever_listed else {
        return Ok(Ok(None));
    };
    if let Some(store) = txn.outside() {
        return ever.get(store).map(Ok);
    }
    Ok(ever.built().ok_or_else(|| {
        tracing::info!(
            visit = visit_id,
            "the kept reference data is not merged yet: visit left for a later request"
        );
        Outcome::default()
    }))
}

/// Of the problems a visit has under the current reference data (`problems`), those the
/// stored visit did not have already. One it had was accepted under the data of its time (a
/// line for a product delisted since), and a refusal would only cost the rep their later
/// work on the visit. Reading the stored visit again happens only here, on this rare path.
fn not_had_before(
    mut problems: Vec<String>,
    stored: Option<&StoredVisit>,
    refs: &ReferenceIndex<'_>,
) -> StoreResult<Vec<String>> {
    if let Some(s) = stored {
        let before = VisitDoc::load(&s.doc)?.read()?;
        let had = rules::visit_problems(&before, refs);
        problems.retain(|p| !had.contains(p));
    }
    Ok(problems)
}

/// Of `problems`, those `visit` also has under every kept version of the reference data
/// (`ever`, [`Writer::ever_listed`]): a line recorded offline for a product the phone still
/// listed, or resent after a restore, is the rep's work, not an error.
fn under_every_version(
    mut problems: Vec<String>,
    visit: &fieldsync_core::visit::Visit,
    ever: &IndexedReference,
) -> Vec<String> {
    let under_any = rules::visit_problems(visit, ever.index());
    problems.retain(|p| under_any.contains(p));
    problems
}

/// Applies a server-side edit (manager planning) to a visit as `author` with the given
/// actor, storing the new change in the change log under device `server`.
pub fn server_edit(
    store: &dyn Store,
    visit_id: &str,
    mut f: impl FnMut(Option<VisitDoc>) -> StoreResult<VisitDoc>,
    refs: &ReferenceIndex<'_>,
) -> StoreResult<fieldsync_core::visit::Visit> {
    let mut out = None;
    store.with_visit(visit_id, &mut |txn| {
        let stored = txn.stored()?;
        let existing = match &stored {
            Some(s) => Some(VisitDoc::load(&s.doc)?),
            None => None,
        };
        let (heads_before, count_before) = existing.as_ref().map_or((Vec::new(), 0), |d| {
            (d.heads(), d.automerge().stats().num_changes)
        });
        let doc = f(existing)?;
        let visit = doc.read()?;
        let problems = rules::visit_problems(&visit, refs);
        if !problems.is_empty() {
            return Err(StoreError::Conflict(format!(
                "invalid visit: {}",
                problems.join("; ")
            )));
        }
        let store_rec = refs.store(&visit.plan.store_id)?;
        // The edit only adds changes to the document it was given.
        let log = LogEntry {
            changes: doc
                .automerge()
                .stats()
                .num_changes
                .saturating_sub(count_before) as usize,
            heads_before,
            hold: true,
        };
        for (actor, author) in doc.registered_actors() {
            if author.is_some_and(|a| a.device_id == "server") {
                txn.bind_actor(&actor, "server", "server")?;
            }
        }
        let meta = VisitMeta {
            visit_id: visit_id.into(),
            store_id: store_rec.id.clone(),
            territory_id: store_rec.territory_id.clone(),
            rep_id: visit.plan.rep_id.clone(),
            planned_start: visit.plan.planned_start,
            status: visit.status.as_str().into(),
        };
        txn.save(
            &meta,
            &pack_document(&doc.automerge().save_nocompress()),
            &doc.heads(),
            &pack_visit(&visit),
            &log,
            "server",
        )?;
        out = Some(visit);
        Ok(())
    })?;
    out.ok_or_else(|| StoreError::Conflict("the edit produced no visit".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::ReferenceCache;
    use crate::store::SqliteStore;

    #[test]
    fn the_merged_catalogue_is_built_outside_write_transactions_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("i.db")).unwrap();
        let today = chrono::Utc::now().date_naive();
        let size = fieldsync_core::fixtures::FixtureSize::default();
        let refs = fieldsync_core::fixtures::reference_data(1, &size, today);
        store.import_reference(refs.clone()).unwrap();
        store.import_reference(refs).unwrap();
        let cache = Arc::new(ReferenceCache::default());
        let current = cache.get(&store).unwrap();
        let w = Writer {
            user_id: "rep-1".into(),
            role: Role::Rep,
            territories: vec!["t-1".into()],
            device_id: "phone".into(),
            scope: None,
            ever_listed: Some(EverListed::new(cache.clone(), current.clone())),
        };
        let in_txn = |expect_built: bool| {
            store
                .with_visit("v-1", &mut |txn| {
                    match ever_listed(&w, txn, "v-1")? {
                        Ok(ever) => assert!(expect_built && ever.is_some()),
                        // Not built yet: no verdict, the device sends the visit again.
                        Err(later) => assert!(!expect_built && later == Outcome::default()),
                    }
                    Ok(())
                })
                .unwrap();
        };
        in_txn(false);
        assert!(cache.ever_built(&current).is_none());
        // A decision on the committed state builds it.
        let draft = Draft::new(&store, None);
        assert!(ever_listed(&w, &draft, "v-1").unwrap().unwrap().is_some());
        assert!(cache.ever_built(&current).is_some());
        in_txn(true);
    }
}
