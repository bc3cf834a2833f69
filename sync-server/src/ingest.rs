//! Ingesting a device's changes for one visit: authorize, parse, check dependencies,
//! apply to a fork, bind actors, check field ownership, validate, store.
//!
//! Everything for one visit happens in one storage transaction ([`Store::with_visit`]);
//! the verdict is one of: accepted (acks), rejected (a readable reason; nothing stored),
//! or resend (dependencies missing; the device must send its changes since the server's
//! heads). A visit's verdict never affects another visit.

use automerge::{Automerge, Change, ChangeHash, ReadDoc};
use fieldsync_core::document::VisitDoc;
use fieldsync_core::model::{ReferenceData, Role};
use fieldsync_core::rules;
use fieldsync_core::sync::protocol::{Rejection, Resend, VisitChanges, decode_change};
use fieldsync_core::visit::Author;
use std::collections::{BTreeSet, HashMap};

use crate::store::{Store, StoreError, StoreResult, VisitMeta, VisitTxn};

/// Who is writing.
#[derive(Clone, Debug, PartialEq)]
pub struct Writer {
    pub user_id: String,
    pub role: Role,
    pub territories: Vec<String>,
    pub device_id: String,
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

/// Ingests one visit's changes from `writer`.
pub fn ingest(
    store: &dyn Store,
    writer: &Writer,
    refs: &ReferenceData,
    group: &VisitChanges,
) -> StoreResult<Outcome> {
    let visit_id = group.visit_id.as_str();
    let mut parsed = Vec::with_capacity(group.changes.len());
    let mut hashes = Vec::new();
    let mut bad = None;
    for (i, text) in group.changes.iter().enumerate() {
        let res = decode_change(text).and_then(|b| {
            // Parsing can panic inside Automerge's column codec (found by fuzzing).
            std::panic::catch_unwind(|| Change::from_bytes(b))
                .map_err(|_| "not an Automerge change: malformed columns".to_string())?
                .map_err(|e| format!("not an Automerge change: {e}"))
        });
        match res {
            Ok(c) => {
                hashes.push(c.hash().to_string());
                parsed.push(c);
            }
            Err(e) => {
                bad.get_or_insert_with(|| format!("change #{i} of visit {visit_id}: {e}"));
            }
        }
    }
    if visit_id.trim().is_empty() || visit_id.len() > 200 {
        return Ok(reject(visit_id, &hashes, "invalid visit id"));
    }
    if let Some(reason) = bad {
        return Ok(reject(visit_id, &hashes, reason));
    }
    if parsed.is_empty() {
        return Ok(Outcome::default());
    }
    let mut outcome = Outcome::default();
    store.with_visit(visit_id, &mut |txn| {
        outcome = decide(txn, writer, refs, visit_id, &parsed, &hashes)?;
        Ok(())
    })?;
    Ok(outcome)
}

/// Sentinel error: roll the transaction back but report a rejection.
fn decide(
    txn: &mut dyn VisitTxn,
    w: &Writer,
    refs: &ReferenceData,
    visit_id: &str,
    parsed: &[Change],
    hashes: &[String],
) -> StoreResult<Outcome> {
    let stored = txn.stored()?;
    let creating = stored.is_none();
    let mut am = match &stored {
        Some(s) => {
            if !w.covers(&s.meta.territory_id)
                || (w.role == Role::Rep && s.meta.rep_id != w.user_id)
            {
                return Ok(reject(
                    visit_id,
                    hashes,
                    format!("forbidden: visit {visit_id} is outside your scope"),
                ));
            }
            Automerge::load(&s.doc)?
        }
        None => Automerge::new(),
    };
    // Already known changes are acknowledged again (idempotent).
    let mut seen = BTreeSet::new();
    let mut fresh: Vec<Change> = Vec::new();
    let mut known = Vec::new();
    for c in parsed {
        let h = c.hash();
        if am.get_change_by_hash(&h).is_some() {
            known.push(h.to_string());
        } else if seen.insert(h) {
            fresh.push(c.clone());
        }
    }
    if fresh.is_empty() {
        return Ok(Outcome {
            acks: known,
            ..Default::default()
        });
    }
    // Dependencies: keep the changes whose dependencies are present (in the document or
    // among the changes kept) and ask for a resend of the rest. Keeping the ready part
    // matters after a restore: each device resends only its own changes, and a device's
    // batch may mix changes the server can take with changes that wait for another
    // device's; refusing the whole batch would leave every device waiting on the others.
    let mut ready: Vec<Change> = Vec::new();
    let mut ready_hashes: BTreeSet<ChangeHash> = BTreeSet::new();
    let mut waiting = fresh;
    loop {
        let before = ready.len();
        waiting.retain(|c| {
            let ok = c
                .deps()
                .iter()
                .all(|d| am.get_change_by_hash(d).is_some() || ready_hashes.contains(d));
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
    let deferred = !waiting.is_empty();
    if ready.is_empty() {
        return Ok(Outcome {
            acks: known,
            resend: Some(Resend {
                visit_id: visit_id.into(),
                have: am.get_heads().iter().map(ToString::to_string).collect(),
            }),
            ..Default::default()
        });
    }
    let fresh = ready;
    // Actor binding: every actor belongs to the device that first pushed it.
    // (Each distinct actor once: a device's changes share one actor.)
    let mut new_actors: HashMap<String, ()> = HashMap::new();
    let mut checked: BTreeSet<&automerge::ActorId> = BTreeSet::new();
    for c in &fresh {
        if !checked.insert(c.actor_id()) {
            continue;
        }
        let actor = c.actor_id().to_hex_string();
        match txn.actor_binding(&actor)? {
            Some((device, _)) if device != w.device_id => {
                return Ok(reject(
                    visit_id,
                    hashes,
                    format!(
                        "forbidden: change {} claims actor {actor}, which belongs to another device",
                        c.hash()
                    ),
                ));
            }
            Some(_) => {}
            None => {
                new_actors.insert(actor, ());
            }
        }
    }
    // Automerge 0.12 panics on some malformed change columns (found by fuzzing,
    // tests/fuzz/regressions/sync_ingest): a refusal, never a crashed request.
    let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        am.apply_changes(fresh.iter().cloned())
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
    let me = Author {
        user_id: w.user_id.clone(),
        device_id: w.device_id.clone(),
    };
    let mut checked: BTreeSet<&automerge::ActorId> = BTreeSet::new();
    for c in &fresh {
        if !checked.insert(c.actor_id()) {
            continue;
        }
        match doc.author_of(c.actor_id()) {
            Some(a) if a == me => {}
            Some(a) => {
                return Ok(reject(
                    visit_id,
                    hashes,
                    format!(
                        "forbidden: actor {} is registered to user {} on device {}",
                        c.actor_id(),
                        a.user_id,
                        a.device_id
                    ),
                ));
            }
            None => {
                return Ok(reject(
                    visit_id,
                    hashes,
                    format!("change {} is by an unregistered actor", c.hash()),
                ));
            }
        }
    }
    // Field ownership, change by change.
    let history = if w.role == Role::Manager {
        doc.history()?
    } else {
        Vec::new()
    };
    // One walk of the document's objects for all changes (per change it dominated the
    // server's ingest CPU: docs/BENCHMARKS.md, "Sync server").
    let touched = doc.touched_paths_each(&fresh)?;
    for (c, paths) in fresh.iter().zip(&touched) {
        let actor = c.actor_id().to_hex_string();
        let creating_change = creating && c.deps().is_empty();
        if let Some(p) = rules::forbidden_path(w.role, paths, &actor, creating_change) {
            return Ok(reject(
                visit_id,
                hashes,
                format!("not allowed: a {} may not write {p}", w.role.as_str()),
            ));
        }
        if w.role == Role::Manager && !creating_change {
            let h = c.hash().to_string();
            let bad_status = history.iter().any(|f| {
                f.change_hash == h && f.path == "actual/status" && f.value != "\"canceled\""
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
    let idx = refs.index();
    let Ok(store) = idx.store(&visit.plan.store_id) else {
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
        if visit.plan.rep_id != w.user_id {
            return Ok(reject(
                visit_id,
                hashes,
                "not allowed: a rep may not reassign a visit",
            ));
        }
    }
    let problems = rules::visit_problems(&visit, &idx);
    if !problems.is_empty() {
        return Ok(reject(
            visit_id,
            hashes,
            format!("invalid visit: {}", problems.join("; ")),
        ));
    }
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
    let new_changes: Vec<(String, Vec<u8>)> = fresh
        .iter()
        .map(|c| (c.hash().to_string(), c.raw_bytes().to_vec()))
        .collect();
    txn.save(&meta, &doc.save(), &new_changes, &w.device_id)?;
    let mut acks = known;
    acks.extend(new_changes.iter().map(|(h, _)| h.clone()));
    Ok(Outcome {
        acks,
        applied: new_changes.len(),
        resend: deferred.then(|| Resend {
            visit_id: visit_id.into(),
            have: doc.heads().iter().map(ToString::to_string).collect(),
        }),
        ..Default::default()
    })
}

/// Applies a server-side edit (manager planning) to a visit as `author` with the given
/// actor, storing the new change in the change log under device `server`.
pub fn server_edit(
    store: &dyn Store,
    visit_id: &str,
    mut f: impl FnMut(Option<VisitDoc>) -> StoreResult<VisitDoc>,
    refs: &ReferenceData,
) -> StoreResult<fieldsync_core::visit::Visit> {
    let mut out = None;
    store.with_visit(visit_id, &mut |txn| {
        let stored = txn.stored()?;
        let before: BTreeSet<ChangeHash> = match &stored {
            Some(s) => Automerge::load(&s.doc)?
                .get_changes(&[])
                .iter()
                .map(Change::hash)
                .collect(),
            None => BTreeSet::new(),
        };
        let existing = match &stored {
            Some(s) => Some(VisitDoc::load(&s.doc)?),
            None => None,
        };
        let doc = f(existing)?;
        let visit = doc.read()?;
        let idx = refs.index();
        let problems = rules::visit_problems(&visit, &idx);
        if !problems.is_empty() {
            return Err(StoreError::Conflict(format!(
                "invalid visit: {}",
                problems.join("; ")
            )));
        }
        let store_rec = idx.store(&visit.plan.store_id)?;
        let new_changes: Vec<(String, Vec<u8>)> = doc
            .automerge()
            .get_changes(&[])
            .into_iter()
            .filter(|c| !before.contains(&c.hash()))
            .map(|c| (c.hash().to_string(), c.raw_bytes().to_vec()))
            .collect();
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
        txn.save(&meta, &doc.save(), &new_changes, "server")?;
        out = Some(visit);
        Ok(())
    })?;
    out.ok_or_else(|| StoreError::Conflict("the edit produced no visit".into()))
}
