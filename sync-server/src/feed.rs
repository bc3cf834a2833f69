//! What a device receives on a pull — the scope, the change feed, paging, purges, visits
//! entering the scope, resend requests after a restore — decided once for every storage
//! backend. A backend supplies the reads on one consistent snapshot ([`FeedSource`]) and
//! applies the device-holdings bookkeeping the decision implies ([`HoldWrite`]).
//!
//! # The change log
//!
//! Each stored push of a visit is one log row ([`LogRow`]): its sequence number (the
//! cursor), visit, device, how many changes it stored, and the visit's heads before and
//! after it. The changes themselves are in the visit's document: the changes of a row are
//! those the document held at `heads_after` but not at `heads_before`. A row whose
//! `heads_after` is unknown (empty: rows folded by the migration from one row per change)
//! stands for the whole visit.
//!
//! # Guarantees (see also `fieldsync_core::sync::protocol`)
//!
//! * A page holds at most `limit` changes (the first row always fits) and its cursor covers
//!   exactly the rows sent, or every row in the snapshot when nothing was cut, so **a
//!   cursor never skips a change**: rows committed after the snapshot have higher numbers.
//! * The device's own pushes are not echoed.
//! * Visits entering the scope are sent whole (as a document when the device accepts
//!   documents, else as all their changes; diffed against its heads after a restore), once
//!   no feed row is left; visits leaving it are purged.
//! * A held visit gets only the rows after the device's cursor, so a device is recorded as
//!   holding a visit only when it has everything before that cursor: when the visit was
//!   sent to it whole, or by a push after which every head of the visit is one of the
//!   pushed changes (`store::LogEntry::hold`). A device that pushes to a visit it lacks
//!   changes of (it had it before a server restore) is sent the visit whole instead.
//!
//! # Scope changes
//!
//! A pull never reads the whole scope or the device's whole holdings into the server: the
//! database computes the visits leaving the scope (held and out of scope, normally few)
//! and the ones entering it (in scope and not held, a page's worth at a time, in id order)
//! as differences of the scope's conditions on `visits` and the device's `device_visits`
//! rows (anti-joins on SQLite, EXCEPT on PostgreSQL: see the backends).

use automerge::{Automerge, ChangeHash};
use fieldsync_core::document::{has_change, unpack_document};
use fieldsync_core::sync::protocol::hash_hex;
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::store::{PageDocument, PullPage, PullQuery, Scope, StoreResult, StoredDocument};

/// Bytes of a whole document that count as one change against a page's limit: a page of
/// documents then carries about as many bytes as a page of changes (an average change of a
/// typical visit is about 160 bytes; its document, sent packed as stored, about 1.1 KB).
pub const DOCUMENT_BYTES_PER_CHANGE: usize = 160;

/// One row of the change log.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRow {
    pub seq: i64,
    pub visit_id: String,
    /// Changes the push stored.
    pub changes: i64,
    pub heads_before: Vec<ChangeHash>,
    /// Empty when unknown (a row folded by the migration): the whole visit.
    pub heads_after: Vec<ChangeHash>,
}

/// A range of visit ids: above `after` (exclusive) and up to `until` (inclusive), each
/// unbounded when `None`. Ids compare as the database orders them (SQLite: bytes;
/// PostgreSQL: the column's collation), the order [`FeedSource::entering`] returns them in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdRange<'a> {
    pub after: Option<&'a str>,
    pub until: Option<&'a str>,
}

/// The reads a pull makes, all on one snapshot of committed data.
pub trait FeedSource {
    /// The highest change-log sequence number (0 when the log is empty).
    fn max_seq(&mut self) -> StoreResult<i64>;
    /// The visits the server records `device_id` as holding that are not in `scope`
    /// (also those it has no visit row for), in byte order of their ids.
    fn leaving(&mut self, device_id: &str, scope: &Scope) -> StoreResult<Vec<String>>;
    /// The visits in `scope` with ids in `range` that `not_held_by` is not recorded as
    /// holding (every one when `None`), by id, at most `limit`.
    fn entering(
        &mut self,
        scope: &Scope,
        not_held_by: Option<&str>,
        range: IdRange<'_>,
        limit: usize,
    ) -> StoreResult<Vec<String>>;
    /// The highest visit id `device_id` is recorded as holding (in the order of
    /// [`FeedSource::entering`]).
    fn last_held(&mut self, device_id: &str) -> StoreResult<Option<String>>;
    /// Those of `visit_ids` that are in `scope`.
    fn in_scope(&mut self, scope: &Scope, visit_ids: &[&str]) -> StoreResult<HashSet<String>>;
    /// A visit's document as stored, with the visit read from it only when `with_read`
    /// (it is about as many bytes again: read only for a page that sends it).
    fn document(&mut self, visit_id: &str, with_read: bool) -> StoreResult<Option<StoredDocument>>;
    /// Log rows after `cursor`, of pushes by devices other than `device_id`, for visits
    /// `device_id` holds, by sequence number, at most `limit`.
    fn feed(&mut self, device_id: &str, cursor: i64, limit: usize) -> StoreResult<Vec<LogRow>>;

    /// Whether pulls use and make [`HoldWrite::Synced`] marks (the three methods below).
    /// Without them every pull of a territory scope computes what enters and leaves it
    /// from the whole holdings, and no mark is written.
    fn keeps_synced(&self) -> bool;
    /// The device's [`HoldWrite::Synced`] mark: its scope key and sequence number.
    fn synced(&mut self, device_id: &str) -> StoreResult<Option<(String, i64)>>;
    /// The visit of each log row after `seq` (any device; a visit once per row, in any
    /// order), when there are at most `max_rows` such rows; `None` when there are more.
    fn changed_since(&mut self, seq: i64, max_rows: usize) -> StoreResult<Option<Vec<String>>>;
    /// Those of `visit_ids` that `device_id` is recorded as holding.
    fn held_of(&mut self, device_id: &str, visit_ids: &[&str]) -> StoreResult<HashSet<String>>;
}

/// Most ids one [`FeedSource::entering`] read returns; a page reads more when the visits
/// it got left room (a page of documents holds ~600 visits at the default limit).
const ENTERING_CHUNK: usize = 256;

/// Changes to what a device is recorded as holding, in order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum HoldWrite {
    /// The device starts over (first sync, or after a restore): it holds nothing.
    ForgetAll,
    Forget(String),
    Hold(String),
    /// After the writes before it, the device holds exactly the visits of the scope with
    /// this key ([`scope_key`]) as of this change-log sequence number: only visits with
    /// later log rows can enter or leave its holdings until the scope changes.
    Synced {
        scope: String,
        seq: i64,
    },
}

/// A scope of whole territories (a manager's or an admin's) as a text that is equal for
/// equal scopes; `None` for a scope with a rep or a time window (what enters those also
/// changes with the time, without a log row).
pub fn scope_key(scope: &crate::store::Scope) -> Option<String> {
    if scope.rep_id.is_some() || scope.window.is_some() {
        return None;
    }
    Some(match &scope.territories {
        None => "*".to_string(),
        Some(ts) => {
            let mut ts: Vec<&str> = ts.iter().map(String::as_str).collect();
            ts.sort_unstable();
            ts.dedup();
            serde_json::to_string(&ts).expect("strings serialize")
        }
    })
}

/// Most log rows a pull reads to check the visits changed since the device's
/// [`HoldWrite::Synced`] mark; past it the pull checks the whole holdings (and sets a new
/// mark).
const CHANGED_ROWS_MAX: usize = 2048;

/// A pull that needed no other holdings write still moves the device's mark forward once
/// this many log rows were written since it, so the next pull reads fewer of them (and
/// never reaches [`CHANGED_ROWS_MAX`] only because the rest of the company was busy).
const MARK_AFTER_ROWS: usize = 256;

/// How many unconfirmed answers of one device are kept (newest first). A device confirms
/// the latest answer it received; more than one is pending only when a request was
/// duplicated or retried while its answer was on its way, so a few are plenty.
pub const MAX_PENDING_ANSWERS: i64 = 8;

/// A fresh token naming one answer's pending holdings changes.
pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// Encodes heads as concatenated 32-byte hashes (how both backends store them).
pub fn heads_to_bytes(heads: &[ChangeHash]) -> Vec<u8> {
    heads.iter().flat_map(|h| h.0).collect()
}

/// Decodes [`heads_to_bytes`]; a trailing partial hash is ignored.
pub fn heads_from_bytes(bytes: &[u8]) -> Vec<ChangeHash> {
    bytes
        .chunks_exact(32)
        .map(|c| ChangeHash(c.try_into().expect("32 bytes")))
        .collect()
}

fn hex_heads(heads: &[ChangeHash]) -> Vec<String> {
    heads.iter().map(hash_hex).collect()
}

/// What a visit's changes on a page are sent as.
enum Payload {
    Changes(Vec<Vec<u8>>),
    /// The document with its heads, and the visit read from it when the device takes it.
    Document(StoredDocument),
}

/// A visit's whole content for a device: its document when accepted (with the read in
/// `stored`: see [`PullQuery::sends_reads`]), else every change.
fn whole(q: &PullQuery, stored: StoredDocument) -> StoreResult<(Payload, usize)> {
    let StoredDocument { doc, heads, visit } = stored;
    if q.documents {
        // Sent as stored (packed): the device unpacks it.
        let heads = if heads.is_empty() {
            Automerge::load(&unpack_document(&doc)?)?.get_heads()
        } else {
            heads
        };
        // The read sent with it (about as many bytes again) does not count: a page of 625
        // typical visits is then ~3 MB of JSON instead of ~1.6 MB (30.8 against 16.5 MB
        // for 10,000 visits), which the device takes in about a quarter of the time it
        // took to read their documents (docs/BENCHMARKS.md, item 26).
        let units = doc.len().div_ceil(DOCUMENT_BYTES_PER_CHANGE).max(1);
        return Ok((
            Payload::Document(StoredDocument { doc, heads, visit }),
            units,
        ));
    }
    let changes: Vec<Vec<u8>> = Automerge::load(&unpack_document(&doc)?)?
        .get_changes(&[])
        .into_iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    let n = changes.len();
    Ok((Payload::Changes(changes), n))
}

/// The changes of `rows` (one visit's rows on a page, in order): those each row's push
/// added, taken from the visit's document.
fn changes_of_rows(am: &Automerge, rows: &[&LogRow]) -> Vec<Vec<u8>> {
    let base = &rows[0].heads_before;
    // Every change after the first row's starting point, with its dependencies.
    let after_base: HashMap<ChangeHash, Vec<ChangeHash>> = am
        .get_changes_meta(base)
        .into_iter()
        .map(|m| (m.hash, m.deps))
        .collect();
    let reach = |from: &[ChangeHash]| -> HashSet<ChangeHash> {
        let mut seen = HashSet::new();
        let mut stack: Vec<ChangeHash> = from.to_vec();
        while let Some(h) = stack.pop() {
            if let Some(deps) = after_base.get(&h)
                && seen.insert(h)
            {
                stack.extend(deps.iter().copied());
            }
        }
        seen
    };
    let mut wanted: HashSet<ChangeHash> = HashSet::new();
    for r in rows {
        let before = reach(&r.heads_before);
        wanted.extend(reach(&r.heads_after).difference(&before).copied());
    }
    if wanted.is_empty() {
        return Vec::new();
    }
    am.get_changes(base)
        .into_iter()
        .filter(|c| wanted.contains(&c.hash()))
        .map(|c| c.raw_bytes().to_vec())
        .collect()
}

/// Visits entering the scope, as a page takes them.
struct Entering<'a> {
    /// Changes (or documents' worth of them) the page can still take.
    budget: usize,
    /// Heads the device sent for visits it holds (after a restore).
    device_heads: &'a HashMap<String, Vec<ChangeHash>>,
    payloads: &'a mut Vec<(String, Payload)>,
    writes: &'a mut Vec<HoldWrite>,
}

impl Entering<'_> {
    /// Adds `v` whole (or diffed against the device's heads) and records the device as
    /// holding it; false, adding nothing, when the page is full.
    fn take(&mut self, src: &mut dyn FeedSource, q: &PullQuery, v: &str) -> StoreResult<bool> {
        if self.budget == 0 {
            return Ok(false);
        }
        let Some(stored) = src.document(v, q.sends_reads())? else {
            return Ok(true);
        };
        let (payload, units) = match self.device_heads.get(v) {
            Some(known) if !known.is_empty() => {
                let changes: Vec<Vec<u8>> = Automerge::load(&unpack_document(&stored.doc)?)?
                    .get_changes(known)
                    .into_iter()
                    .map(|c| c.raw_bytes().to_vec())
                    .collect();
                let n = changes.len();
                (Payload::Changes(changes), n)
            }
            _ => whole(q, stored)?,
        };
        self.budget = self.budget.saturating_sub(units);
        self.payloads.push((v.to_string(), payload));
        self.writes.push(HoldWrite::Hold(v.to_string()));
        Ok(true)
    }
}

/// Computes one page for `q` on the snapshot `src` reads; returns it with the holdings
/// bookkeeping to apply (in order) in the same or a later transaction.
pub fn pull(src: &mut dyn FeedSource, q: &PullQuery) -> StoreResult<(PullPage, Vec<HoldWrite>)> {
    let mut writes = Vec::new();
    let max_seq = src.max_seq()?;
    let mut page = PullPage::default();
    let cursor = match q.cursor {
        Some(c) => c,
        None => {
            writes.push(HoldWrite::ForgetAll);
            max_seq
        }
    };
    // After `ForgetAll` the device holds nothing: nothing leaves, everything enters.
    let holder = q.cursor.map(|_| q.device_id.as_str());
    // A scope of whole territories changes only through log rows: when the device held
    // exactly this scope as of a mark, only visits with later rows can enter or leave.
    // (Not while it reconciles after a restore: it may hold visits the server lacks.)
    let key = scope_key(&q.scope).filter(|_| src.keeps_synced() && q.heads.is_none());
    // (The visits, and how many log rows named them.)
    let changed: Option<(Vec<String>, usize)> = match (holder, &key) {
        (Some(device), Some(key)) => match src.synced(device)? {
            Some((k, seq)) if k == *key && seq <= max_seq => {
                src.changed_since(seq, CHANGED_ROWS_MAX)?.map(|mut ids| {
                    let rows = ids.len();
                    ids.sort_unstable();
                    ids.dedup();
                    (ids, rows)
                })
            }
            _ => None,
        },
        _ => None,
    };
    let mut entering_changed: Option<Vec<String>> = None;
    if let Some(device) = holder {
        let leaving = match &changed {
            Some((ids, _)) => {
                let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                let held = src.held_of(device, &refs)?;
                let in_scope = src.in_scope(&q.scope, &refs)?;
                let (held, not_held): (Vec<&String>, Vec<&String>) =
                    ids.iter().partition(|v| held.contains(*v));
                entering_changed = Some(
                    not_held
                        .into_iter()
                        .filter(|v| in_scope.contains(*v))
                        .cloned()
                        .collect(),
                );
                held.into_iter()
                    .filter(|v| !in_scope.contains(*v))
                    .cloned()
                    .collect()
            }
            None => src.leaving(device, &q.scope)?,
        };
        for v in leaving {
            writes.push(HoldWrite::Forget(v.clone()));
            page.purge.push(v);
        }
    }
    // Visits the device says it holds (after a restore): resend what the server lacks,
    // purge what is out of scope.
    let mut device_heads: HashMap<String, Vec<ChangeHash>> = HashMap::new();
    if let Some(heads) = &q.heads {
        let ids: Vec<&str> = heads.keys().map(String::as_str).collect();
        let in_scope = src.in_scope(&q.scope, &ids)?;
        for (visit_id, hs) in heads {
            let parsed: Vec<ChangeHash> = hs.iter().filter_map(|h| h.parse().ok()).collect();
            match src.document(visit_id, false)? {
                Some(stored) => {
                    let am = Automerge::load(&unpack_document(&stored.doc)?)?;
                    if parsed.iter().any(|h| !has_change(&am, h)) {
                        page.resend
                            .push((visit_id.clone(), hex_heads(&am.get_heads())));
                    }
                    // Only the heads the server knows help to diff.
                    let known: Vec<ChangeHash> =
                        parsed.into_iter().filter(|h| has_change(&am, h)).collect();
                    if in_scope.contains(visit_id) {
                        device_heads.insert(visit_id.clone(), known);
                    } else {
                        // Out of scope: purged, also while its resend is asked for (the
                        // device purges it only once its resent changes are acknowledged
                        // and it is no longer reconciling; if the visit comes back into
                        // scope first, it is sent whole and the queued purge is dropped).
                        page.purge.push(visit_id.clone());
                    }
                }
                None => {
                    // Unknown here (lost in a restore): the device is recorded as holding
                    // it, so it is fed or purged once its authors have resent it.
                    page.resend.push((visit_id.clone(), Vec::new()));
                    writes.push(HoldWrite::Hold(visit_id.clone()));
                }
            }
        }
    }
    // The feed: pushes by other devices after the cursor, for visits the device holds.
    let limit = q.limit.max(1);
    let mut used = 0usize;
    let mut last = cursor;
    let mut by_visit: BTreeMap<String, Vec<LogRow>> = BTreeMap::new();
    let purged: HashSet<&String> = page.purge.iter().collect();
    for row in src.feed(&q.device_id, cursor, limit + 1)? {
        let units = row.changes.max(1) as usize;
        if used > 0 && used + units > limit {
            page.more = true;
            break;
        }
        used += units;
        last = row.seq;
        if purged.contains(&row.visit_id) {
            // Leaving the scope (its holding is forgotten by this page's writes).
            continue;
        }
        by_visit.entry(row.visit_id.clone()).or_default().push(row);
    }
    page.cursor = if page.more { last } else { max_seq.max(cursor) };
    let mut payloads: Vec<(String, Payload)> = Vec::new();
    for (visit_id, rows) in by_visit {
        // A log row without heads (written before they were recorded) sends the visit whole.
        let whole_visit = rows.iter().any(|r| r.heads_after.is_empty());
        let Some(stored) = src.document(&visit_id, whole_visit && q.sends_reads())? else {
            continue;
        };
        if whole_visit {
            payloads.push((visit_id, whole(q, stored)?.0));
            continue;
        }
        let am = Automerge::load(&unpack_document(&stored.doc)?)?;
        let rows: Vec<&LogRow> = rows.iter().collect();
        let changes = changes_of_rows(&am, &rows);
        if !changes.is_empty() {
            payloads.push((visit_id, Payload::Changes(changes)));
        }
    }
    // Visits that entered the scope: sent whole (or diffed against the device's heads),
    // in id order, each read limited to what the page can still take plus one (to tell
    // whether more remain). A scope of whole territories (no rep, no window) can be any
    // size: it is read from just after the highest id the device holds, then from the
    // first id up to that one, so a device taking it page by page (an initial pull) gets
    // each page's visits without the database reading again past those it already took.
    // After a mark (see `changed` above) only the changed visits can enter.
    if !page.more {
        let mut entering = Entering {
            budget: limit.saturating_sub(used),
            device_heads: &device_heads,
            payloads: &mut payloads,
            writes: &mut writes,
        };
        // (Not read when the mark leaves nothing to enter: an idle sync.)
        let split = match holder {
            Some(device)
                if q.scope.rep_id.is_none()
                    && q.scope.window.is_none()
                    && entering_changed.as_ref().is_none_or(|ids| !ids.is_empty()) =>
            {
                src.last_held(device)?
            }
            _ => None,
        };
        if let Some(ids) = &entering_changed {
            // In the order of the ranges below, so a page cut short takes the same visits.
            let (above, upto): (Vec<&String>, Vec<&String>) = ids
                .iter()
                .partition(|v| split.as_deref().is_some_and(|m| v.as_str() > m));
            for v in above.into_iter().chain(upto) {
                if !entering.take(src, q, v)? {
                    page.more = true;
                    break;
                }
            }
        } else {
            // (Above the highest id it holds, the device holds nothing: no anti-join there.)
            let ranges = match split.as_deref() {
                Some(m) => vec![
                    (
                        IdRange {
                            after: Some(m),
                            until: None,
                        },
                        None,
                    ),
                    (
                        IdRange {
                            after: None,
                            until: Some(m),
                        },
                        holder,
                    ),
                ],
                None => vec![(IdRange::default(), holder)],
            };
            'ranges: for (range, not_held_by) in ranges {
                let mut after = range.after.map(str::to_string);
                loop {
                    let want = entering.budget.saturating_add(1).min(ENTERING_CHUNK);
                    let read = IdRange {
                        after: after.as_deref(),
                        until: range.until,
                    };
                    let ids = src.entering(&q.scope, not_held_by, read, want)?;
                    for v in &ids {
                        if !entering.take(src, q, v)? {
                            page.more = true;
                            break 'ranges;
                        }
                    }
                    if ids.len() < want {
                        break;
                    }
                    after = ids.last().cloned();
                }
            }
        }
    }
    // The device now holds exactly its scope (this page was its last): mark it, unless
    // the mark it has is recent and nothing else is written (an idle sync writes nothing).
    if let Some(key) = key
        && !page.more
        && changed
            .as_ref()
            .is_none_or(|(_, rows)| !writes.is_empty() || *rows >= MARK_AFTER_ROWS)
    {
        writes.push(HoldWrite::Synced {
            scope: key,
            seq: max_seq,
        });
    }
    let mut changes: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for (visit_id, payload) in payloads {
        match payload {
            // Also when empty (a visit entering the scope that the device already holds
            // whole): the entry tells the device the server counts it as held, so a purge
            // it queued earlier is stale.
            Payload::Changes(cs) => changes.entry(visit_id).or_default().extend(cs),
            Payload::Document(d) => page.documents.push(PageDocument {
                visit_id,
                heads: hex_heads(&d.heads),
                doc: d.doc,
                visit: d.visit,
            }),
        }
    }
    page.changes = changes.into_iter().collect();
    Ok((page, writes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{ActorId, ROOT};
    use std::collections::BTreeSet;

    #[test]
    fn heads_round_trip_as_bytes() {
        let mut doc = Automerge::new().with_actor(ActorId::random());
        let mut tx = doc.transaction();
        tx.put(ROOT, "a", 1).unwrap();
        tx.commit();
        let mut fork = doc.fork().with_actor(ActorId::random());
        let mut tx = fork.transaction();
        tx.put(ROOT, "b", 1).unwrap();
        tx.commit();
        let mut tx = doc.transaction();
        tx.put(ROOT, "c", 1).unwrap();
        tx.commit();
        doc.merge(&mut fork).unwrap();
        let heads = doc.get_heads();
        assert_eq!(heads.len(), 2);
        let bytes = heads_to_bytes(&heads);
        assert_eq!(bytes.len(), 64);
        assert_eq!(heads_from_bytes(&bytes), heads);
        assert!(heads_from_bytes(&[]).is_empty());
    }

    #[test]
    fn the_changes_of_rows_are_exactly_what_their_pushes_added() {
        let mut doc = Automerge::new().with_actor(ActorId::random());
        let mut rows = Vec::new();
        let mut added = Vec::new();
        for push in 0..4 {
            let before = doc.get_heads();
            let mut mine = Vec::new();
            for i in 0..3 {
                let mut tx = doc.transaction();
                tx.put(ROOT, format!("k{push}-{i}"), i).unwrap();
                mine.push(tx.commit().0.unwrap());
            }
            rows.push(LogRow {
                seq: push,
                visit_id: "v".into(),
                changes: 3,
                heads_before: before,
                heads_after: doc.get_heads(),
            });
            added.push(mine);
        }
        let hashes = |bytes: Vec<Vec<u8>>| -> BTreeSet<ChangeHash> {
            bytes
                .into_iter()
                .map(|b| automerge::Change::from_bytes(b).unwrap().hash())
                .collect()
        };
        // Rows 1 and 3 (row 2 was the device's own push, left out of its feed).
        let got = hashes(changes_of_rows(&doc, &[&rows[1], &rows[3]]));
        let want: BTreeSet<ChangeHash> = added[1].iter().chain(&added[3]).copied().collect();
        assert_eq!(got, want);
        let got = hashes(changes_of_rows(&doc, &[&rows[0]]));
        assert_eq!(got, added[0].iter().copied().collect());
    }
}
