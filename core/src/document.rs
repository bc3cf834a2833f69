//! One Automerge document per visit, and the typed mapping layer over it.
//!
//! # Layout (schema 1)
//!
//! ```text
//! ROOT { v: 1, id: "<visit id>",
//!        plan:       { store, rep, start, end, priority, instructions, template, ad_hoc }   manager-owned
//!        actual:     { status, in_at, in_lat, in_lng, in_dist, in_out, out_…, cancel_reason,
//!                      cancel_lat, cancel_lng, abandon_reason, order_submitted }           rep-owned
//!        inventory:  { <product id>:  { shelf, back, oos, price, facings } }
//!        planogram:  { <position id>: { present, facings, correct } }
//!        promotions: { <promotion id>: { display, price_ok, materials, price } }
//!        survey:     { <question id>: bool | f64 | str }
//!        orders:     { <product id>: quantity }
//!        notes:      Text
//!        actors:     { <actor hex>: { u: user id, d: device id } } }
//! ```
//!
//! Every container is created by the change that creates the visit, so no two replicas
//! ever create the same container concurrently. Collections are maps keyed by stable ids,
//! never lists: two devices recording the same product write into one line.
//!
//! # Observations and conflicts
//!
//! Each change carries the device time it was recorded ([`automerge::Change::timestamp`]).
//! Where two observations of one field are concurrent (two counts of one shelf), the
//! reader takes the one with the later device time, falling back to Automerge's own
//! deterministic order on a tie; so a stale offline count never overwrites a fresher one,
//! whatever order the changes arrive in. Every concurrent value stays in the document and
//! is listed by [`VisitDoc::conflicts`]. If two devices create the same line concurrently
//! the line exists twice under one key; the reader merges the copies field by field with
//! the same rule. Plan and status fields use Automerge's deterministic winner.
//!
//! # Why not autosurgeon
//!
//! `autosurgeon` 0.14 works with automerge 0.12 and maps structs well, but hydrating reads
//! only the winning value of each field: it cannot take the later observation of a
//! conflict, merge concurrently created lines, or list losing values. The mapping here is
//! small, explicit and tested instead.

use automerge::{
    ActorId, Automerge, Change, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value,
    transaction::{CommitOptions, Transactable, Transaction},
};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::error::{Error, Result};
use crate::model::Millis;
use crate::visit::*;

/// The document schema this build writes.
pub const SCHEMA_VERSION: i64 = 1;

const SECTIONS: [&str; 7] = [
    "plan",
    "actual",
    "inventory",
    "planogram",
    "promotions",
    "survey",
    "orders",
];
const INVENTORY_FIELDS: [&str; 5] = ["shelf", "back", "oos", "price", "facings"];
const POSITION_FIELDS: [&str; 3] = ["present", "facings", "correct"];
const PROMOTION_FIELDS: [&str; 4] = ["display", "price_ok", "materials", "price"];

/// Packs a document's saved bytes for storage: one Zstandard frame (level 1,
/// [`crate::zstd_frames`]). Meant for `Automerge::save_nocompress` output: a typical
/// visit's uncompressed save (2.5 KB) packs to 1.1 KB, smaller than `Automerge::save`
/// (1.4 KB, whose DEFLATE of the columns is ~88 % of its cost) at a tenth of the
/// instructions. [`unpack_document`] reverses it; both Automerge bytes and packed bytes
/// load after it.
pub fn pack_document(automerge_bytes: &[u8]) -> Vec<u8> {
    crate::zstd_frames::compress(automerge_bytes, 1).unwrap_or_else(|| automerge_bytes.to_vec())
}

/// The format of [`pack_visit`]'s bytes: JSON of [`Visit`] as this build reads it. A
/// device uses a visit sent with a document instead of reading the document only when
/// the server made it in the device's format. Bump it whenever `Visit` or
/// [`VisitDoc::read`] changes what a document reads as, with a server migration that
/// empties the reads the server stored (table `visit_reads`, both backends; the server
/// stores them again in the new format in the background after it starts).
pub const VISIT_FORMAT: u32 = 1;

/// The most a packed visit may unpack to on a device (a typical visit is ~5.5 KB of
/// JSON).
pub const MAX_VISIT_BYTES: usize = 4 * 1024 * 1024;

/// A visit as read from its document, packed to travel and be stored beside the
/// document ([`VISIT_FORMAT`]): its JSON in one Zstandard frame, like [`pack_document`].
pub fn pack_visit(visit: &Visit) -> Vec<u8> {
    let json = serde_json::to_vec(visit).expect("a visit serializes to JSON");
    pack_document(&json)
}

/// The visit [`pack_visit`] packed, refused when it unpacks to more than
/// [`MAX_VISIT_BYTES`] or is no visit.
pub fn unpack_visit(packed: &[u8]) -> Result<Visit> {
    let json = unpack_document_within(packed, MAX_VISIT_BYTES)?;
    serde_json::from_slice(&json)
        .map_err(|e| Error::Corrupt(format!("a packed visit does not read: {e}")))
}

/// The Automerge bytes of stored document bytes: unpacked when [`pack_document`] packed
/// them, else as they are.
pub fn unpack_document(stored: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>> {
    unpack_document_within(stored, usize::MAX)
}

/// Like [`unpack_document`] for bytes from elsewhere: refuses to unpack to more than
/// `limit` bytes (without allocating more).
pub fn unpack_document_within(bytes: &[u8], limit: usize) -> Result<std::borrow::Cow<'_, [u8]>> {
    use crate::zstd_frames::{MAGIC, Refused, decompress_within};
    if !bytes.starts_with(&MAGIC) {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    let bad = |e: String| Error::Corrupt(format!("a packed document does not unpack: {e}"));
    match decompress_within(bytes, limit) {
        Ok(out) => Ok(std::borrow::Cow::Owned(out)),
        Err(Refused::TooLarge) => Err(bad(format!("it unpacks to more than {limit} bytes"))),
        Err(Refused::Invalid(e)) => Err(bad(e)),
    }
}

/// Whether `doc` holds the change `hash` (applied, not merely queued). Cheap, unlike
/// `get_change_by_hash`, which rebuilds the change from the document's columns.
pub fn has_change(doc: &Automerge, hash: &ChangeHash) -> bool {
    doc.get_missing_deps(std::slice::from_ref(hash)).is_empty()
}

/// Whether `doc` is a visit's document of a schema this build reads.
fn check_schema(doc: &Automerge) -> Result<()> {
    match doc.get(ROOT, "v")? {
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Int(v) if *v <= SCHEMA_VERSION => Ok(()),
            ScalarValue::Int(v) => Err(Error::Corrupt(format!(
                "visit document schema {v} is newer than this build"
            ))),
            _ => Err(Error::Corrupt(
                "visit document schema is not a number".into(),
            )),
        },
        _ => Err(Error::Corrupt("not a visit document".into())),
    }
}

/// Who owns `actor` by the actor registry of `doc`, a visit's document ([`VisitDoc::author_of`]
/// without taking the document: `None` too when it is no visit's).
pub fn author_in(doc: &Automerge, actor: &ActorId) -> Option<Author> {
    check_schema(doc).ok()?;
    registered_author(doc, actor)
}

/// Who owns `actor` by the actor registry of `doc` (whatever its schema).
fn registered_author(doc: &Automerge, actor: &ActorId) -> Option<Author> {
    let (Value::Object(_), actors) = doc.get(ROOT, "actors").ok()?? else {
        return None;
    };
    let (Value::Object(_), obj) = doc.get(&actors, actor.to_hex_string()).ok()?? else {
        return None;
    };
    let s = |k: &str| match doc.get(&obj, k).ok()? {
        Some((Value::Scalar(v), _)) => v.as_str().map(str::to_string),
        _ => None,
    };
    Some(Author {
        user_id: s("u")?,
        device_id: s("d")?,
    })
}

/// A visit's Automerge document.
#[derive(Debug, Clone)]
pub struct VisitDoc {
    doc: Automerge,
}

/// Every change's device time: per actor, (first op, last op, time) by first op.
struct ChangeTimes(FastMap<ActorId, Vec<(u64, u64, Millis)>>);

impl ChangeTimes {
    /// The device time of the change that made op `id` (0 when unknown).
    fn at(&self, id: &ObjId) -> Millis {
        let ObjId::Id(counter, actor, _) = id else {
            return 0;
        };
        let Some(ranges) = self.0.get(actor) else {
            return 0;
        };
        let i = ranges.partition_point(|(start, _, _)| start <= counter);
        match i.checked_sub(1).map(|i| ranges[i]) {
            Some((_, max, at)) if *counter <= max => at,
            _ => 0,
        }
    }
}

/// One key of a map object: its winning value, the op that wrote it, and whether other
/// concurrent values exist.
#[derive(Debug, Clone)]
struct MapEntry<'a> {
    key: Cow<'a, str>,
    value: Value<'static>,
    id: ObjId,
    conflict: bool,
}

/// The entries of the document's map objects, by object.
type MapIndex<'a> = FastMap<ObjId, Vec<MapEntry<'a>>>;

/// A map with a fast seeded hasher, for the maps [`VisitDoc::read`] builds on every call
/// (with std's SipHash, hashing was ~5 % of a read).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The entries of a small map object (a visit's plan or actual section), whose winning
/// scalars are taken by key: a scan of a few entries, with no map built.
struct Winners<'i, 'a>(Cow<'i, [MapEntry<'a>]>);

impl Winners<'_, '_> {
    /// The winning scalar of `key` (none when the key is absent or holds an object).
    fn take(&self, key: &str) -> Option<ScalarValue> {
        self.0
            .iter()
            .find(|e| e.key == key)
            .and_then(|e| match &e.value {
                Value::Scalar(s) => Some(s.as_ref().clone()),
                _ => None,
            })
    }
}

/// A candidate value of a field: the scalar, the op that wrote it and its device time.
#[derive(Debug, Clone)]
struct Candidate {
    value: ScalarValue,
    id: automerge::ObjId,
    at: Millis,
}

/// Automerge's order of ops: counter, then actor.
fn op_key(id: &ObjId) -> (u64, &[u8]) {
    match id {
        ObjId::Root => (0, &[]),
        ObjId::Id(counter, actor, _) => (*counter, actor.to_bytes()),
    }
}

/// The order in which candidates win: the latest device time, ties broken by
/// Automerge's op order.
fn candidate_order(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    (a.at, op_key(&a.id)).cmp(&(b.at, op_key(&b.id)))
}

impl VisitDoc {
    /// Creates the document of a new visit in one change made by `author` at `now`.
    pub fn create(
        id: &str,
        plan: &VisitPlan,
        actor: ActorId,
        author: &Author,
        now: Millis,
    ) -> Result<Self> {
        let mut doc = Automerge::new().with_actor(actor.clone());
        doc.transact_with::<_, _, Error, _>(
            |_| CommitOptions::default().with_time(now),
            |tx| {
                tx.put(ROOT, "v", SCHEMA_VERSION)?;
                tx.put(ROOT, "id", id)?;
                for s in SECTIONS {
                    tx.put_object(ROOT, s, ObjType::Map)?;
                }
                tx.put_object(ROOT, "notes", ObjType::Text)?;
                tx.put_object(ROOT, "actors", ObjType::Map)?;
                let mut w = VisitWriter::new(tx, &actor)?;
                w.register(author)?;
                w.set_plan(plan)?;
                w.set_status(VisitStatus::Planned)?;
                Ok(())
            },
        )
        .map_err(|f| f.error)?;
        Ok(Self { doc })
    }

    /// Loads a document from saved bytes (a snapshot, possibly followed by changes).
    pub fn load(bytes: &[u8]) -> Result<Self> {
        let doc = Automerge::load(bytes)?;
        let this = Self { doc };
        this.check_schema()?;
        Ok(this)
    }

    /// Wraps an Automerge document (checked to be a visit document).
    pub fn from_automerge(doc: Automerge) -> Result<Self> {
        let this = Self { doc };
        this.check_schema()?;
        Ok(this)
    }

    fn check_schema(&self) -> Result<()> {
        check_schema(&self.doc)
    }

    /// The underlying Automerge document.
    pub fn automerge(&self) -> &Automerge {
        &self.doc
    }

    /// The underlying Automerge document, taken out of the wrapper.
    pub fn into_automerge(self) -> Automerge {
        self.doc
    }

    /// Mutable access, for applying remote changes.
    pub fn automerge_mut(&mut self) -> &mut Automerge {
        &mut self.doc
    }

    /// Sets the actor used for this replica's future changes.
    pub fn set_actor(&mut self, actor: ActorId) {
        self.doc.set_actor(actor);
    }

    /// Heads of the document.
    pub fn heads(&self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// Applies one user action as one change, stamped with `now` (device time).
    /// Returns the change's hash, or `None` when the action changed nothing.
    pub fn edit<T>(
        &mut self,
        author: &Author,
        now: Millis,
        f: impl FnOnce(&mut VisitWriter<'_, '_>) -> Result<T>,
    ) -> Result<(T, Option<ChangeHash>)> {
        let actor = self.doc.get_actor().clone();
        let out = self
            .doc
            .transact_with::<_, _, Error, _>(
                |_| CommitOptions::default().with_time(now),
                |tx| {
                    let mut w = VisitWriter::new(tx, &actor)?;
                    w.register(author)?;
                    f(&mut w)
                },
            )
            .map_err(|f| f.error)?;
        Ok((out.result, out.hash))
    }

    /// Applies remote changes (saved bytes of a document or of changes). Changes whose
    /// dependencies are missing are queued by Automerge until the dependencies arrive.
    pub fn apply_bytes(&mut self, bytes: &[u8]) -> Result<usize> {
        Ok(self.doc.load_incremental(bytes)?)
    }

    /// Hashes of changes that queued changes depend on but which are not present.
    pub fn missing_deps(&self) -> Vec<ChangeHash> {
        self.doc.get_missing_deps(&[])
    }

    fn section(&self, name: &str) -> Result<ObjId> {
        match self.doc.get(ROOT, name)? {
            Some((Value::Object(_), id)) => Ok(id),
            _ => Err(Error::Corrupt(format!(
                "visit document has no {name} section"
            ))),
        }
    }

    /// The device time of the change that made op `id`, from `times` (every change's
    /// time, when the caller looked them all up at once) or from the document.
    fn change_time(&self, id: &ObjId, times: Option<&ChangeTimes>) -> Millis {
        if let Some(t) = times {
            return t.at(id);
        }
        self.doc
            .hash_for_opid(id)
            .and_then(|h| self.doc.get_change_meta_by_hash(&h))
            .map_or(0, |m| m.timestamp)
    }

    /// Every change's device time, by actor and op range, in one pass over the history
    /// (looking each op's change up on its own cost about half of [`VisitDoc::read`]).
    fn change_times(&self) -> ChangeTimes {
        let mut by_actor: FastMap<ActorId, Vec<(u64, u64, Millis)>> = FastMap::default();
        for m in self.doc.get_changes_meta(&[]) {
            by_actor.entry(m.actor.into_owned()).or_default().push((
                m.start_op,
                m.max_op,
                m.timestamp,
            ));
        }
        for ranges in by_actor.values_mut() {
            ranges.sort_unstable();
        }
        ChangeTimes(by_actor)
    }

    /// All scalar values of `key` in each of `objs`.
    fn candidates(
        &self,
        objs: &[ObjId],
        key: &str,
        times: Option<&ChangeTimes>,
    ) -> Result<Vec<Candidate>> {
        let mut out = Vec::new();
        for obj in objs {
            for (v, id) in self.doc.get_all(obj, key)? {
                if let Value::Scalar(s) = v {
                    let at = self.change_time(&id, times);
                    out.push(Candidate {
                        value: s.into_owned(),
                        id,
                        at,
                    });
                }
            }
        }
        // Latest device time last; ties broken by Automerge's op order (counter, actor).
        out.sort_by(candidate_order);
        Ok(out)
    }

    /// The objects stored under `key` in `section` (more than one if created concurrently).
    fn line_objects(&self, section: &ObjId, key: &str) -> Result<Vec<ObjId>> {
        Ok(self
            .doc
            .get_all(section, key)?
            .into_iter()
            .filter_map(|(v, id)| matches!(v, Value::Object(ObjType::Map)).then_some(id))
            .collect())
    }

    fn winner(&self, obj: &ObjId, key: &str) -> Result<Option<ScalarValue>> {
        Ok(match self.doc.get(obj, key)? {
            Some((Value::Scalar(s), _)) => Some(s.into_owned()),
            _ => None,
        })
    }

    /// The visit id.
    pub fn id(&self) -> Result<String> {
        match self.winner(&ROOT, "id")? {
            Some(ScalarValue::Str(s)) => Ok(s.to_string()),
            _ => Err(Error::Corrupt("visit document has no id".into())),
        }
    }

    /// The entries of every map object reachable in the document, in one pass over it
    /// (`ReadDoc::iter`; reading object by object cost twice as much).
    fn map_index(&self) -> MapIndex<'_> {
        let mut out = MapIndex::default();
        for item in self.doc.iter() {
            if let automerge::iter::DocItem::Map(m) = item.item {
                out.entry((*item.obj).clone()).or_default().push(MapEntry {
                    id: m.id(),
                    key: m.key,
                    conflict: m.conflict,
                    value: m.value.into_value(),
                });
            }
        }
        out
    }

    /// The entries of the map `obj`: from `index`, or read now when the index lacks it
    /// (an object the document walk did not reach, e.g. a conflicting copy of a line).
    fn map_entries<'i, 'a: 'i>(
        &'a self,
        index: &'i MapIndex<'a>,
        obj: &ObjId,
    ) -> Cow<'i, [MapEntry<'a>]> {
        match index.get(obj) {
            Some(e) => Cow::Borrowed(e.as_slice()),
            None => Cow::Owned(
                self.doc
                    .map_range(obj, ..)
                    .map(|m| {
                        let id = m.id();
                        MapEntry {
                            key: m.key,
                            conflict: m.conflict,
                            value: m.value.into_value(),
                            id,
                        }
                    })
                    .collect(),
            ),
        }
    }

    /// The winning scalar of every key of a map object.
    fn winners<'i, 'a: 'i>(&'a self, index: &'i MapIndex<'a>, obj: &ObjId) -> Winners<'i, 'a> {
        Winners(self.map_entries(index, obj))
    }

    /// The candidates of every key of the map `obj`: the winning value of a key, or all
    /// its values (`get_all`) when concurrent values exist.
    fn candidates_of(
        &self,
        index: &MapIndex<'_>,
        obj: &ObjId,
        out: &mut FastMap<String, Vec<Candidate>>,
        times: &ChangeTimes,
    ) -> Result<()> {
        for e in self.map_entries(index, obj).iter() {
            if e.conflict {
                let found = self.candidates(std::slice::from_ref(obj), &e.key, Some(times))?;
                out.entry(e.key.to_string()).or_default().extend(found);
                continue;
            }
            if let Value::Scalar(s) = &e.value {
                let at = self.change_time(&e.id, Some(times));
                out.entry(e.key.to_string()).or_default().push(Candidate {
                    value: s.as_ref().clone(),
                    id: e.id.clone(),
                    at,
                });
            }
        }
        Ok(())
    }

    /// Reads the whole visit, resolving conflicts (see the module docs).
    ///
    /// The document is walked once (every map's entries, every change's time); `get_all`
    /// runs only for keys that hold concurrent values. (Reading field by field with
    /// `get_all` cost about 0.7 ms for a typical visit, most of a device action and of the
    /// server's ingest: docs/BENCHMARKS.md.)
    ///
    /// Map keys stay borrowed from the document, and the maps built per call use a fast
    /// seeded hasher: 16 % fewer instructions than owned keys and SipHash (BENCHMARKS,
    /// "Reading a visit").
    pub fn read(&self) -> Result<Visit> {
        let times = self.change_times();
        let index = self.map_index();
        let root: FastMap<&str, (&Value<'static>, &ObjId)> = index
            .get(&ROOT)
            .map(|es| {
                es.iter()
                    .map(|e| (e.key.as_ref(), (&e.value, &e.id)))
                    .collect()
            })
            .unwrap_or_default();
        let section = |name: &str| -> Result<ObjId> {
            match root.get(name) {
                Some((Value::Object(_), id)) => Ok((*id).clone()),
                _ => Err(Error::Corrupt(format!(
                    "visit document has no {name} section"
                ))),
            }
        };
        let plan_values = self.winners(&index, &section("plan")?);
        let actual_values = self.winners(&index, &section("actual")?);
        let p = |k: &'static str| Field::new(plan_values.take(k), ["plan", k, ""]);
        let plan = VisitPlan {
            store_id: p("store").string()?.unwrap_or_default(),
            rep_id: p("rep").string()?.unwrap_or_default(),
            planned_start: p("start").int()?.unwrap_or(0),
            planned_end: p("end").int()?.unwrap_or(0),
            priority: p("priority").int()?.unwrap_or(3).clamp(1, 5) as u8,
            instructions: p("instructions").string()?.unwrap_or_default(),
            template_id: p("template").string()?.unwrap_or_default(),
            ad_hoc: p("ad_hoc").bool()?.unwrap_or(false),
        };
        let a = |k: &'static str| Field::new(actual_values.take(k), ["actual", k, ""]);
        let status =
            VisitStatus::parse(&a("status").string()?.unwrap_or_else(|| "planned".into()))?;
        let id = match root.get("id") {
            Some((Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Str(s) => s.to_string(),
                _ => return Err(Error::Corrupt("visit document has no id".into())),
            },
            _ => return Err(Error::Corrupt("visit document has no id".into())),
        };
        // The keys of VisitWriter::set_checkpoint: at, lat, lng, dist, out.
        let checkpoint = |keys: [&'static str; 5]| -> Result<Option<CheckPoint>> {
            let [at, lat, lng, dist, out] = keys;
            let Some(at) = a(at).int()? else {
                return Ok(None);
            };
            Ok(Some(CheckPoint {
                at,
                position: GeoPoint {
                    lat: a(lat).float()?.unwrap_or(0.0),
                    lng: a(lng).float()?.unwrap_or(0.0),
                },
                distance_m: a(dist).float()?.unwrap_or(0.0),
                outside_geofence: a(out).bool()?.unwrap_or(false),
            }))
        };
        let check_in = checkpoint(["in_at", "in_lat", "in_lng", "in_dist", "in_out"])?;
        let check_out = checkpoint(["out_at", "out_lat", "out_lng", "out_dist", "out_out"])?;
        let notes = match root.get("notes") {
            Some((Value::Object(_), notes)) => self.doc.text(*notes)?,
            _ => return Err(Error::Corrupt("visit document has no notes".into())),
        };
        let mut visit = Visit {
            id,
            plan,
            status,
            check_in,
            check_out,
            cancel_reason: a("cancel_reason").string()?,
            abandon_reason: a("abandon_reason").string()?,
            inventory: BTreeMap::new(),
            planogram: BTreeMap::new(),
            promotions: BTreeMap::new(),
            survey: BTreeMap::new(),
            orders: BTreeMap::new(),
            order_submitted: a("order_submitted").bool()?.unwrap_or(false),
            notes,
        };

        for (pid, mut f) in self.read_lines(
            &index,
            &section("inventory")?,
            "inventory",
            &INVENTORY_FIELDS,
            &times,
        )? {
            visit.inventory.insert(
                pid.clone(),
                InventoryLine {
                    shelf_qty: f.take("shelf").int()?,
                    backroom_qty: f.take("back").int()?,
                    out_of_stock: f.take("oos").bool()?,
                    observed_price_cents: f.take("price").int()?,
                    facings: f.take("facings").int()?,
                    observed_at: f.latest,
                    product_id: pid,
                },
            );
        }
        for (pos, mut f) in self.read_lines(
            &index,
            &section("planogram")?,
            "planogram",
            &POSITION_FIELDS,
            &times,
        )? {
            visit.planogram.insert(
                pos.clone(),
                PositionResult {
                    present: f.take("present").bool()?,
                    actual_facings: f.take("facings").int()?,
                    correct_position: f.take("correct").bool()?,
                    observed_at: f.latest,
                    position_id: pos,
                },
            );
        }
        for (promo, mut f) in self.read_lines(
            &index,
            &section("promotions")?,
            "promotions",
            &PROMOTION_FIELDS,
            &times,
        )? {
            visit.promotions.insert(
                promo.clone(),
                PromotionCheck {
                    display_in_place: f.take("display").bool()?,
                    promo_price_correct: f.take("price_ok").bool()?,
                    materials_present: f.take("materials").bool()?,
                    observed_price_cents: f.take("price").int()?,
                    observed_at: f.latest,
                    promotion_id: promo,
                },
            );
        }
        let mut survey = FastMap::default();
        self.candidates_of(&index, &section("survey")?, &mut survey, &times)?;
        for (qid, mut cs) in survey {
            cs.sort_by(candidate_order);
            if let Some(c) = cs.pop() {
                let value = match c.value {
                    ScalarValue::Boolean(b) => AnswerValue::Bool(b),
                    ScalarValue::Int(i) => AnswerValue::Number(i as f64),
                    ScalarValue::F64(f) => AnswerValue::Number(f),
                    ScalarValue::Str(s) => AnswerValue::Text(s.to_string()),
                    _ => {
                        return Err(Error::Corrupt(format!(
                            "survey/{qid} has an unsupported type"
                        )));
                    }
                };
                visit.survey.insert(
                    qid.clone(),
                    SurveyAnswer {
                        question_id: qid,
                        value,
                        observed_at: c.at,
                    },
                );
            }
        }
        let mut orders = FastMap::default();
        self.candidates_of(&index, &section("orders")?, &mut orders, &times)?;
        for (pid, mut cs) in orders {
            cs.sort_by(candidate_order);
            if let Some(c) = cs.pop() {
                let quantity = Field::new(Some(c.value), ["orders", &pid, ""])
                    .int()?
                    .unwrap_or(0);
                visit.orders.insert(
                    pid.clone(),
                    OrderLine {
                        product_id: pid,
                        quantity,
                        observed_at: c.at,
                    },
                );
            }
        }
        Ok(visit)
    }

    /// Resolves every line of an observation section.
    fn read_lines(
        &self,
        index: &MapIndex<'_>,
        sec: &ObjId,
        section: &'static str,
        fields: &'static [&'static str],
        times: &ChangeTimes,
    ) -> Result<Vec<(String, LineFields)>> {
        let mut out = Vec::new();
        for e in self.map_entries(index, sec).iter() {
            let key = e.key.to_string();
            let objs = if e.conflict {
                self.line_objects(sec, &key)?
            } else if matches!(e.value, Value::Object(ObjType::Map)) {
                vec![e.id.clone()]
            } else {
                Vec::new()
            };
            // Per field, the latest candidate over every copy of the line (the same
            // order as `candidates`: device time, then Automerge's op order).
            let mut best: Vec<Option<Candidate>> = vec![None; fields.len()];
            let mut offer = |i: usize, c: Candidate| {
                let slot = &mut best[i];
                if slot.as_ref().is_none_or(|b| candidate_order(b, &c).is_lt()) {
                    *slot = Some(c);
                }
            };
            for obj in &objs {
                for f in self.map_entries(index, obj).iter() {
                    let Some(i) = fields.iter().position(|name| *name == f.key) else {
                        continue;
                    };
                    if f.conflict {
                        let all =
                            self.candidates(std::slice::from_ref(obj), &f.key, Some(times))?;
                        all.into_iter().for_each(|c| offer(i, c));
                    } else if let Value::Scalar(v) = &f.value {
                        offer(
                            i,
                            Candidate {
                                value: v.as_ref().clone(),
                                id: f.id.clone(),
                                at: self.change_time(&f.id, Some(times)),
                            },
                        );
                    }
                }
            }
            let latest = best.iter().flatten().map(|c| c.at).max().unwrap_or(0);
            let line = LineFields {
                values: best.into_iter().map(|c| c.map(|c| c.value)).collect(),
                fields,
                latest,
                section,
                key: key.clone(),
            };
            out.push((key, line));
        }
        Ok(out)
    }

    /// The notes text.
    pub fn notes(&self) -> Result<String> {
        let notes = self.section_any("notes")?;
        Ok(self.doc.text(&notes)?)
    }

    fn section_any(&self, name: &str) -> Result<ObjId> {
        match self.doc.get(ROOT, name)? {
            Some((Value::Object(_), id)) => Ok(id),
            _ => Err(Error::Corrupt(format!("visit document has no {name}"))),
        }
    }

    /// Who owns an actor, from the document's actor registry.
    pub fn author_of(&self, actor: &ActorId) -> Option<Author> {
        registered_author(&self.doc, actor)
    }

    /// Every actor registered in the document with its author.
    pub fn registered_actors(&self) -> Vec<(String, Option<Author>)> {
        let Ok(actors) = self.section_any("actors") else {
            return Vec::new();
        };
        self.doc
            .keys(&actors)
            .map(|hex| {
                let author = ActorId::try_from(hex.as_str())
                    .ok()
                    .and_then(|a| self.author_of(&a));
                (hex, author)
            })
            .collect()
    }

    fn author_of_op(&self, id: &ObjId) -> Option<Author> {
        match id {
            ObjId::Id(_, actor, _) => self.author_of(actor),
            ObjId::Root => None,
        }
    }

    /// Every field that currently holds more than one concurrent value, with each value,
    /// who wrote it and when, and which one wins.
    pub fn conflicts(&self) -> Result<Vec<FieldConflict>> {
        let mut out = Vec::new();
        for section in ["plan", "actual"] {
            let obj = self.section(section)?;
            for key in self.doc.keys(&obj) {
                // Automerge's winner is the last of get_all.
                let all = self.doc.get_all(&obj, &key)?;
                if all.len() > 1 {
                    let n = all.len();
                    let values = all
                        .into_iter()
                        .enumerate()
                        .map(|(i, (v, id))| ConflictValue {
                            value: value_json(&v),
                            at: self.change_time(&id, None),
                            author: self.author_of_op(&id),
                            winner: i + 1 == n,
                        })
                        .collect();
                    out.push(FieldConflict {
                        path: format!("{section}/{key}"),
                        values,
                    });
                }
            }
        }
        for (section, fields) in [
            ("inventory", &INVENTORY_FIELDS[..]),
            ("planogram", &POSITION_FIELDS[..]),
            ("promotions", &PROMOTION_FIELDS[..]),
        ] {
            let sec = self.section(section)?;
            for key in self.doc.keys(&sec) {
                let objs = self.line_objects(&sec, &key)?;
                for f in fields {
                    self.push_conflict(
                        &mut out,
                        format!("{section}/{key}/{f}"),
                        self.candidates(&objs, f, None)?,
                    );
                }
            }
        }
        for section in ["survey", "orders"] {
            let sec = self.section(section)?;
            for key in self.doc.keys(&sec) {
                let c = self.candidates(std::slice::from_ref(&sec), &key, None)?;
                self.push_conflict(&mut out, format!("{section}/{key}"), c);
            }
        }
        Ok(out)
    }

    fn push_conflict(
        &self,
        out: &mut Vec<FieldConflict>,
        path: String,
        candidates: Vec<Candidate>,
    ) {
        if candidates.len() < 2 {
            return;
        }
        let n = candidates.len();
        let values = candidates
            .into_iter()
            .enumerate()
            .map(|(i, c)| ConflictValue {
                value: scalar_json(&c.value),
                at: c.at,
                author: self.author_of_op(&c.id),
                winner: i + 1 == n,
            })
            .collect();
        out.push(FieldConflict { path, values });
    }

    /// The path of the object made by op `counter@actor`, as [`VisitDoc::object_paths`]
    /// has it: found through maps only, each step a value `get_all` returns (a value that
    /// lost a conflict counts, a deleted one does not); `None` otherwise.
    fn object_path(&self, counter: u64, actor: &ActorId) -> Option<String> {
        let id = self
            .doc
            .import_obj(&format!("{counter}@{}", actor.to_hex_string()))
            .ok()?;
        let mut keys = Vec::new();
        let mut child = id.clone();
        for parent in self.doc.parents(&id).ok()? {
            if parent.typ != ObjType::Map {
                return None;
            }
            let automerge::Prop::Map(key) = parent.prop else {
                return None;
            };
            if !parent.visible {
                let listed = self
                    .doc
                    .get_all(&parent.obj, key.as_str())
                    .ok()?
                    .into_iter()
                    .any(|(v, vid)| matches!(v, Value::Object(_)) && vid == child);
                if !listed {
                    return None;
                }
            }
            keys.push(key);
            child = parent.obj;
        }
        if child != ROOT || keys.is_empty() {
            return None;
        }
        keys.reverse();
        Some(keys.join("/"))
    }

    /// Paths of every object in the document, keyed by the op that created it.
    fn object_paths(&self) -> Result<HashMap<(u64, Vec<u8>), String>> {
        let mut out = HashMap::new();
        let mut stack = vec![(ROOT, String::new())];
        while let Some((obj, path)) = stack.pop() {
            if !matches!(self.doc.object_type(&obj), Ok(ObjType::Map)) {
                continue;
            }
            for key in self.doc.keys(&obj) {
                for (v, id) in self.doc.get_all(&obj, &key)? {
                    if let Value::Object(_) = v {
                        let child = if path.is_empty() {
                            key.clone()
                        } else {
                            format!("{path}/{key}")
                        };
                        let (counter, actor) = op_key(&id);
                        out.insert((counter, actor.to_vec()), child.clone());
                        stack.push((id, child));
                    }
                }
            }
        }
        Ok(out)
    }

    /// The paths each of `changes` writes, e.g. `plan/rep` or `inventory/p1/shelf`
    /// (`notes` for text edits). A path of an object the document does not know is
    /// returned as `?`. The changes must already be applied to this document.
    pub fn touched_paths(&self, changes: &[Change]) -> Result<BTreeSet<String>> {
        let objects = self.object_paths()?;
        let mut out = BTreeSet::new();
        for change in changes {
            for (_, path, _) in self.change_ops(change, &objects) {
                out.insert(path);
            }
        }
        Ok(out)
    }

    /// Like [`VisitDoc::touched_paths`] for each change on its own (one set per change,
    /// in order), walking the document's objects once instead of once per change.
    ///
    /// Objects made by earlier changes of `changes` are resolved from those changes; the
    /// document's objects are walked only when a change refers to an object made before
    /// (a brand-new visit pushed whole never needs the walk).
    pub fn touched_paths_each(&self, changes: &[Change]) -> Result<Vec<BTreeSet<String>>> {
        Ok(self
            .touched_values_each(changes)?
            .into_iter()
            .map(|ops| ops.into_iter().map(|(path, _)| path).collect())
            .collect())
    }

    /// Like [`VisitDoc::touched_paths_each`] with the value each op writes (as JSON, the
    /// way [`VisitDoc::history`] reports it: `{}` for a new object, `null` for a delete),
    /// one `(path, value)` per op. Decodes only `changes`, never the document's history.
    ///
    /// The server's field ownership check runs this on every push, so it reads each
    /// change's op columns itself (`diff_ops`: no `ExpandedChange`, keys borrowed from
    /// the change's bytes), looks an object's path up once for the consecutive ops that
    /// write into it and builds paths in one buffer. A change whose bytes are laid out in
    /// any way Automerge does not write is decoded by Automerge instead (`Change::decode`),
    /// with the same result.
    ///
    /// Objects made by earlier changes of `changes` are resolved from those changes; the
    /// document's objects are walked only when a change refers to an object made before
    /// (a brand-new visit pushed whole never needs the walk).
    pub fn touched_values_each(&self, changes: &[Change]) -> Result<Vec<Vec<(String, String)>>> {
        let mut out = Vec::with_capacity(changes.len());
        let mut state = DiffState::new();
        let mut ops = Vec::with_capacity(changes.iter().map(Change::len).max().unwrap_or(0));
        let mut path = String::new();
        let mut created = Vec::new();
        for change in changes {
            ops.clear();
            if diff_ops(change, &mut state, &mut ops).is_none() {
                ops.clear();
                expanded_diff_ops(&change.decode(), &mut state.actors, &mut ops);
            }
            let n = ops.len();
            let mut touched = Vec::with_capacity(n);
            let own = intern_actor(&mut state.actors, change.actor_id());
            let start = change.start_op().get();
            // The document's objects are looked up only once a change writes into an
            // object that neither it nor an earlier change of `changes` made.
            if !state.look_up {
                let mut last = None;
                let refers_to_older = ops.iter().any(|op| match op.obj {
                    None => false,
                    Some(id) if last == Some(id) => false,
                    Some(id @ (counter, actor)) => {
                        last = Some(id);
                        let own = actor == own && counter >= start;
                        !own && !state.made.contains_key(&id)
                    }
                });
                state.look_up = refers_to_older;
            }
            // The objects this change makes, by op (indexes into `state.paths`), and the
            // ops that make one in an object that cannot be resolved.
            created.clear();
            created.resize(n, None);
            let mut unresolved_makes = Vec::new();
            // The last object resolved: a change's ops mostly write into one object after
            // another.
            let mut last: Option<(OpKey, Option<usize>)> = None;
            for (i, op) in ops.iter().enumerate() {
                let make = matches!(op.value, OpValue::Make);
                let obj_path = match op.obj {
                    None => Some(""),
                    Some(id) => {
                        let found = match last {
                            Some((k, found)) if k == id => found,
                            _ => {
                                let (counter, actor) = id;
                                let found = (actor == own && counter >= start)
                                    .then(|| usize::try_from(counter - start).ok())
                                    .flatten()
                                    .and_then(|i| created.get(i).copied().flatten())
                                    .or_else(|| state.made.get(&id).copied());
                                let found = match found {
                                    Some(p) => Some(p),
                                    None => state.in_document(self, id),
                                };
                                last = Some((id, found));
                                found
                            }
                        };
                        found.map(|p| state.path(p))
                    }
                };
                let Some(obj_path) = obj_path else {
                    if make {
                        unresolved_makes.push(i);
                    }
                    touched.push(("?".to_string(), String::new()));
                    continue;
                };
                path.clear();
                match &op.key {
                    Some(k) if obj_path.is_empty() => path.push_str(k),
                    Some(k) => {
                        path.push_str(obj_path);
                        path.push('/');
                        path.push_str(k);
                    }
                    None => path.push_str(obj_path),
                }
                if make {
                    created[i] = Some(state.push_path(&path));
                    // In case an earlier op named this op's object before it was made.
                    last = None;
                }
                touched.push((path.clone(), op.value.json()));
            }
            // Remember the objects this change made (`?` for those made in an object that
            // could not be resolved), for the changes after it.
            for (i, p) in created.iter().enumerate() {
                if let Some(p) = p {
                    state.made.insert((start + i as u64, own), *p);
                }
            }
            for i in unresolved_makes {
                state.made.insert((start + i as u64, own), UNRESOLVED);
            }
            out.push(touched);
        }
        Ok(out)
    }

    /// (op, path, value json) for each op in a change.
    fn change_ops(
        &self,
        change: &Change,
        objects: &HashMap<(u64, Vec<u8>), String>,
    ) -> Vec<(usize, String, String)> {
        self.expanded_ops(change, &change.decode(), objects, None)
    }

    fn expanded_ops(
        &self,
        change: &Change,
        expanded: &automerge::ExpandedChange,
        objects: &HashMap<(u64, Vec<u8>), String>,
        more_objects: Option<&HashMap<(u64, Vec<u8>), String>>,
    ) -> Vec<(usize, String, String)> {
        let actor = change.actor_id().to_bytes().to_vec();
        let start = change.start_op().get();
        let mut created: HashMap<(u64, Vec<u8>), String> = HashMap::new();
        let mut out = Vec::new();
        for (i, op) in expanded.operations.iter().enumerate() {
            let obj_path = match &op.obj {
                automerge::legacy::ObjectId::Root => Some(String::new()),
                automerge::legacy::ObjectId::Id(automerge::legacy::OpId(c, a)) => {
                    let k = (*c, a.to_bytes().to_vec());
                    created
                        .get(&k)
                        .or_else(|| objects.get(&k))
                        .or_else(|| more_objects.and_then(|m| m.get(&k)))
                        .cloned()
                }
            };
            let Some(obj_path) = obj_path else {
                out.push((i, "?".to_string(), String::new()));
                continue;
            };
            let path = match &op.key {
                automerge::legacy::Key::Map(k) if obj_path.is_empty() => k.to_string(),
                automerge::legacy::Key::Map(k) => format!("{obj_path}/{k}"),
                automerge::legacy::Key::Seq(_) => obj_path.clone(),
            };
            let value = match &op.action {
                automerge::legacy::OpType::Make(_) => {
                    created.insert((start + i as u64, actor.clone()), path.clone());
                    "{}".to_string()
                }
                automerge::legacy::OpType::Put(v) => scalar_json(v),
                automerge::legacy::OpType::Delete => "null".to_string(),
                automerge::legacy::OpType::Increment(n) => n.to_string(),
                _ => String::new(),
            };
            out.push((i, path, value));
        }
        out
    }

    /// The field history: which user and device wrote which field when, oldest first.
    /// Text edits of the notes are reported once per change with the text inserted.
    pub fn history(&self) -> Result<Vec<FieldChange>> {
        let objects = self.object_paths()?;
        let mut out = Vec::new();
        for change in self.doc.get_changes(&[]) {
            let author = self.author_of(change.actor_id());
            let hash = change.hash().to_string();
            let mut notes_text = String::new();
            let mut notes_touched = false;
            for (_, path, value) in self.change_ops(&change, &objects) {
                if path == "notes" {
                    notes_touched = true;
                    if let Ok(s) = serde_json::from_str::<String>(&value) {
                        notes_text.push_str(&s);
                    }
                    continue;
                }
                if path.starts_with("actors") || value == "{}" || path == "v" || path == "id" {
                    continue;
                }
                out.push(FieldChange {
                    path,
                    value,
                    at: change.timestamp(),
                    author: author.clone(),
                    change_hash: hash.clone(),
                });
            }
            if notes_touched {
                out.push(FieldChange {
                    path: "notes".into(),
                    value: serde_json::Value::String(notes_text).to_string(),
                    at: change.timestamp(),
                    author: author.clone(),
                    change_hash: hash.clone(),
                });
            }
        }
        Ok(out)
    }

    /// Saves the whole document, compacted.
    pub fn save(&self) -> Vec<u8> {
        self.doc.save()
    }
}

/// Values of one line's fields, resolved.
#[derive(Debug)]
struct LineFields {
    /// The value of each of `fields`, by position.
    values: Vec<Option<ScalarValue>>,
    fields: &'static [&'static str],
    latest: Millis,
    section: &'static str,
    key: String,
}

impl LineFields {
    fn take(&mut self, f: &'static str) -> Field<'_> {
        let value = self
            .fields
            .iter()
            .position(|name| *name == f)
            .and_then(|i| self.values[i].take());
        Field::new(value, [self.section, &self.key, f])
    }
}

/// One resolved scalar, converted with type checks, and where it sits in the document:
/// up to three path parts (empty ones unused), joined only for an error message.
#[derive(Debug)]
struct Field<'a> {
    value: Option<ScalarValue>,
    path: [&'a str; 3],
}

impl<'a> Field<'a> {
    fn new(value: Option<ScalarValue>, path: [&'a str; 3]) -> Self {
        Self { value, path }
    }

    fn wrong(&self, expected: &str) -> Error {
        let path: Vec<&str> = self.path.into_iter().filter(|p| !p.is_empty()).collect();
        Error::Corrupt(format!("{} should be {expected}", path.join("/")))
    }

    fn int(self) -> Result<Option<i64>> {
        match &self.value {
            None | Some(ScalarValue::Null) => Ok(None),
            Some(ScalarValue::Int(i)) => Ok(Some(*i)),
            Some(ScalarValue::Uint(u)) => i64::try_from(*u)
                .map(Some)
                .map_err(|_| self.wrong("an integer")),
            _ => Err(self.wrong("an integer")),
        }
    }

    fn float(self) -> Result<Option<f64>> {
        match &self.value {
            None | Some(ScalarValue::Null) => Ok(None),
            Some(ScalarValue::F64(f)) => Ok(Some(*f)),
            Some(ScalarValue::Int(i)) => Ok(Some(*i as f64)),
            _ => Err(self.wrong("a number")),
        }
    }

    fn bool(self) -> Result<Option<bool>> {
        match &self.value {
            None | Some(ScalarValue::Null) => Ok(None),
            Some(ScalarValue::Boolean(b)) => Ok(Some(*b)),
            _ => Err(self.wrong("true or false")),
        }
    }

    fn string(self) -> Result<Option<String>> {
        match &self.value {
            None | Some(ScalarValue::Null) => Ok(None),
            Some(ScalarValue::Str(s)) => Ok(Some(s.to_string())),
            _ => Err(self.wrong("text")),
        }
    }
}

fn scalar_json(v: &ScalarValue) -> String {
    match v {
        ScalarValue::Str(s) => serde_json::Value::String(s.to_string()).to_string(),
        ScalarValue::Int(i) => i.to_string(),
        ScalarValue::Uint(u) => u.to_string(),
        ScalarValue::F64(f) => {
            serde_json::Number::from_f64(*f).map_or("null".into(), |n| n.to_string())
        }
        ScalarValue::Boolean(b) => b.to_string(),
        ScalarValue::Null => "null".into(),
        other => serde_json::Value::String(other.to_string()).to_string(),
    }
}

fn value_json(v: &Value<'_>) -> String {
    match v {
        Value::Scalar(s) => scalar_json(s),
        Value::Object(_) => "{}".into(),
    }
}

// ------------------------------------------------------------------- ownership diff

/// An op id in the ownership diff: counter and actor (an index into
/// [`DiffState::actors`]).
type OpKey = (u64, usize);

/// The index of `?` (an object that cannot be resolved) in [`DiffState::paths`].
const UNRESOLVED: usize = 0;

/// What [`VisitDoc::touched_values_each`] carries from one change to the next.
struct DiffState {
    /// Every actor met so far, so that an op id is two integers.
    actors: Vec<ActorId>,
    /// The actors of the change being read, as indexes into `actors`.
    local: Vec<usize>,
    /// Object paths one after the other, and where each one ends; referred to by index.
    paths: String,
    path_ends: Vec<usize>,
    /// The objects the changes so far made.
    made: BTreeMap<OpKey, usize>,
    /// Whether a change so far referred to an object made before `changes`: from then
    /// on, objects are also looked up in the document.
    look_up: bool,
    /// The document's objects looked up so far: their path, or `None` where
    /// [`VisitDoc::object_path`] finds none.
    looked_up: BTreeMap<OpKey, Option<usize>>,
}

impl DiffState {
    fn new() -> Self {
        Self {
            actors: Vec::new(),
            local: Vec::new(),
            paths: "?".to_string(),
            path_ends: vec![1],
            made: BTreeMap::new(),
            look_up: false,
            looked_up: BTreeMap::new(),
        }
    }

    fn path(&self, i: usize) -> &str {
        let start = i.checked_sub(1).map_or(0, |j| self.path_ends[j]);
        &self.paths[start..self.path_ends[i]]
    }

    fn push_path(&mut self, path: &str) -> usize {
        self.paths.push_str(path);
        self.path_ends.push(self.paths.len());
        self.path_ends.len() - 1
    }

    /// The path of object `id` in `doc` (once [`DiffState::look_up`] is set), looked up
    /// once per object: what [`VisitDoc::object_paths`] has for it, without walking the
    /// whole document (on a push of one change to a stored visit, the walk cost several
    /// times everything else the ownership check does).
    fn in_document(&mut self, doc: &VisitDoc, id: OpKey) -> Option<usize> {
        if !self.look_up {
            return None;
        }
        if let Some(found) = self.looked_up.get(&id) {
            return *found;
        }
        let (counter, actor) = id;
        let found = doc
            .object_path(counter, &self.actors[actor])
            .map(|path| self.push_path(&path));
        self.looked_up.insert(id, found);
        found
    }
}

fn intern_actor(actors: &mut Vec<ActorId>, actor: &ActorId) -> usize {
    match actors.iter().position(|a| a == actor) {
        Some(i) => i,
        None => {
            actors.push(actor.clone());
            actors.len() - 1
        }
    }
}

/// One op of a change, as the ownership diff reads it.
struct DiffOp<'a> {
    /// The object written into: `None` for the root.
    obj: Option<OpKey>,
    /// The map key; `None` for an element of a list or a text.
    key: Option<Cow<'a, str>>,
    value: OpValue<'a>,
}

/// What an op does, with the value it writes.
enum OpValue<'a> {
    Make,
    Put(ColumnValue<'a>),
    /// A value from Automerge's decoding.
    PutScalar(ScalarValue),
    Delete,
    Increment(i64),
    /// A mark's start or end.
    Mark,
}

impl OpValue<'_> {
    /// As JSON: `{}` for a new object, `null` for a delete, the amount of an increment,
    /// nothing for a mark.
    fn json(&self) -> String {
        match self {
            Self::Make => "{}".to_string(),
            Self::Put(v) => v.json(),
            Self::PutScalar(v) => scalar_json(v),
            Self::Delete => "null".to_string(),
            Self::Increment(n) => n.to_string(),
            Self::Mark => String::new(),
        }
    }
}

/// The ops of a change decoded by Automerge, for a change [`diff_ops`] does not read.
fn expanded_diff_ops(
    expanded: &automerge::ExpandedChange,
    actors: &mut Vec<ActorId>,
    ops: &mut Vec<DiffOp<'_>>,
) {
    use automerge::legacy::{Key, ObjectId, OpId, OpType};
    ops.extend(expanded.operations.iter().map(|op| DiffOp {
        obj: match &op.obj {
            ObjectId::Root => None,
            ObjectId::Id(OpId(c, a)) => Some((*c, intern_actor(actors, a))),
        },
        key: match &op.key {
            Key::Map(k) => Some(Cow::Owned(k.to_string())),
            Key::Seq(_) => None,
        },
        value: match &op.action {
            OpType::Make(_) => OpValue::Make,
            OpType::Put(v) => OpValue::PutScalar(v.clone()),
            OpType::Delete => OpValue::Delete,
            OpType::Increment(n) => OpValue::Increment(*n),
            _ => OpValue::Mark,
        },
    }));
}

/// The column specifications of a change chunk that Automerge writes, in the order it
/// writes them (id << 4 | type): the object (actor, counter), the key (actor, counter,
/// string), insert, action, the value (metadata, bytes), the predecessors (count, actor,
/// counter), expand, mark name. See the binary format,
/// <https://alexjg.github.io/automerge-storage-docs/#change-chunks>.
const CHANGE_COLUMNS: [u64; 14] = [
    0x01, 0x02, 0x11, 0x13, 0x15, 0x34, 0x42, 0x56, 0x57, 0x70, 0x71, 0x73, 0x94, 0xa5,
];
use crate::sync::guard::MAGIC as AUTOMERGE_MAGIC;

/// The ops of `change`, read from its bytes without building Automerge's
/// `ExpandedChange`: the column decoders of Automerge 0.12 (run-length, delta, LEB128,
/// value metadata), reduced to the columns the diff needs, with Automerge's rules for
/// what a row means. `None` — and the caller asks Automerge to decode the change — for
/// anything else: bytes whose header does not match what Automerge parsed (`change`'s
/// actors, dependencies, times, extra bytes), a column layout other than the one Automerge
/// writes (columns out of order, repeated, unknown or compressed), or rows that Automerge
/// would have refused or that its decoding panics on (an actor index the change does not
/// list). The change was verified by Automerge when it was parsed, so for its rows both
/// decoders read the same values.
fn diff_ops<'c>(
    change: &'c Change,
    state: &mut DiffState,
    ops: &mut Vec<DiffOp<'c>>,
) -> Option<()> {
    let [
        obj_actor,
        obj_ctr,
        key_actor,
        key_ctr,
        key_str,
        _insert,
        action,
        value_meta,
        value_raw,
        _pred_count,
        pred_actor,
        _pred_ctr,
        _expand,
        _mark_name,
    ] = change_columns(change)?;
    let DiffState { actors, local, .. } = state;
    local.clear();
    local.extend(change.actors().map(|a| intern_actor(actors, a)));
    let actor_of = |a: u64| usize::try_from(a).ok().and_then(|a| local.get(a).copied());
    let mut reader = OpReader::new(
        [obj_actor, obj_ctr, key_actor, key_ctr, key_str],
        [action, value_meta, value_raw],
    );
    // Predecessors are not part of the result, but Automerge's decoding (the fallback)
    // panics on one whose actor the change does not list: every row must name one.
    let mut pred_actor = Rle::<u64>::new(pred_actor);
    while !pred_actor.done() {
        actor_of(pred_actor.next()??)?;
        pred_actor.skip_repeats();
    }
    ops.reserve(change.len());
    for _ in 0..change.len() {
        ops.push(reader.next(&actor_of)?);
    }
    // Automerge counts the ops as the rows of the action column.
    reader.actions.done().then_some(())
}

/// The columns an op's object, key and value are read from, the same in a change chunk
/// and a document chunk: the object (actor, counter), the key (actor, counter, string),
/// the action, the value (metadata, bytes).
struct OpReader<'a> {
    obj_actor: Rle<'a, u64>,
    obj_ctr: Rle<'a, u64>,
    key_actor: Rle<'a, u64>,
    key_ctr: Delta<'a>,
    key_str: Rle<'a, &'a str>,
    actions: Rle<'a, u64>,
    value_meta: Rle<'a, u64>,
    value_raw: ColumnBytes<'a>,
}

impl<'a> OpReader<'a> {
    fn new(
        [obj_actor, obj_ctr, key_actor, key_ctr, key_str]: [&'a [u8]; 5],
        [action, value_meta, value_raw]: [&'a [u8]; 3],
    ) -> Self {
        Self {
            obj_actor: Rle::new(obj_actor),
            obj_ctr: Rle::new(obj_ctr),
            key_actor: Rle::new(key_actor),
            key_ctr: Delta::new(key_ctr),
            key_str: Rle::new(key_str),
            actions: Rle::new(action),
            value_meta: Rle::new(value_meta),
            value_raw: ColumnBytes::new(value_raw),
        }
    }

    /// The next op, with Automerge's rules for what a row means; actor indexes are mapped
    /// by `actor_of` (`None` for one that is not listed). `None` when the row does not
    /// decode.
    fn next(&mut self, actor_of: &impl Fn(u64) -> Option<usize>) -> Option<DiffOp<'a>> {
        // Automerge's `ObjIdIter`: no actor and no counter, or counter 0, is the root.
        let obj = match (self.obj_actor.next()?, self.obj_ctr.next()?) {
            (_, Some(0)) | (None, None) => None,
            (Some(a), Some(c)) if c <= u64::from(u32::MAX) => Some((c, actor_of(a)?)),
            _ => return None,
        };
        // Automerge's `KeyIter`: a string alone is a map key; counter 0 alone is the head
        // of a sequence; an actor and a counter are a sequence element.
        let key = match (
            self.key_actor.next()?,
            self.key_ctr.next()?,
            self.key_str.next()?,
        ) {
            (None, None, Some(k)) => Some(Cow::Borrowed(k)),
            (None, Some(0), None) => None,
            (Some(a), Some(c), None) if (0..=i64::from(u32::MAX)).contains(&c) => {
                actor_of(a)?;
                None
            }
            _ => return None,
        };
        let value = read_value(self.value_meta.next()??, &mut self.value_raw)?;
        let value = match self.actions.next()?? {
            0 | 2 | 4 | 6 => OpValue::Make,
            1 => OpValue::Put(value),
            3 => OpValue::Delete,
            5 => match value {
                ColumnValue::Int(n) => OpValue::Increment(n),
                ColumnValue::Uint(n) => OpValue::Increment(n as i64),
                _ => return None,
            },
            7 => OpValue::Mark,
            _ => return None,
        };
        Some(DiffOp { obj, key, value })
    }

    /// Whether every column is read to its end.
    fn ended(&self) -> bool {
        self.obj_actor.done()
            && self.obj_ctr.done()
            && self.key_actor.done()
            && self.key_ctr.rle.done()
            && self.key_str.done()
            && self.actions.done()
            && self.value_meta.done()
            && self.value_raw.done()
    }
}

/// The 14 columns of [`CHANGE_COLUMNS`] of a change's bytes (empty when left out),
/// checking the header against what Automerge parsed. `None` when the bytes are not laid
/// out as Automerge writes them.
fn change_columns(change: &Change) -> Option<[&[u8]; 14]> {
    let check = |ok: bool| ok.then_some(());
    let mut r = ColumnBytes::new(change.raw_bytes());
    check(r.take(4)? == AUTOMERGE_MAGIC)?;
    r.take(4)?; // checksum
    check(r.byte()? == 1)?; // an uncompressed change chunk
    check(r.uleb()? == r.left() as u64)?;
    let deps = change.deps();
    check(r.uleb()? == deps.len() as u64)?;
    for d in deps {
        check(r.take(32)? == d.0)?;
    }
    let actor = |r: &mut ColumnBytes<'_>, a: &ActorId| {
        let n = usize::try_from(r.uleb()?).ok()?;
        check(r.take(n)? == a.to_bytes())
    };
    actor(&mut r, change.actor_id())?;
    check(r.uleb()? == change.seq())?;
    check(r.uleb()? == change.start_op().get())?;
    check(r.sleb()? == change.timestamp())?;
    let n = usize::try_from(r.uleb()?).ok()?;
    check(r.take(n)? == change.message().unwrap_or("").as_bytes())?;
    let others = change.other_actor_ids();
    check(r.uleb()? == others.len() as u64)?;
    for a in others {
        actor(&mut r, a)?;
    }
    let count = usize::try_from(r.uleb()?).ok()?;
    if count > CHANGE_COLUMNS.len() {
        return None;
    }
    let mut specs = [(0u64, 0usize); CHANGE_COLUMNS.len()];
    for s in &mut specs[..count] {
        *s = (r.uleb()?, usize::try_from(r.uleb()?).ok()?);
    }
    let mut columns: [&[u8]; CHANGE_COLUMNS.len()] = [&[]; CHANGE_COLUMNS.len()];
    // Each specification once, in Automerge's order.
    let mut next = 0;
    for (spec, len) in &specs[..count] {
        let at = next + CHANGE_COLUMNS[next..].iter().position(|s| s == spec)?;
        columns[at] = r.take(*len)?;
        next = at + 1;
    }
    check(r.rest() == change.extra_bytes())?;
    Some(columns)
}

/// What some changes write, change by change: one `(path, value)` per op, as
/// [`VisitDoc::touched_values_each`] and [`VisitDoc::touched_values_in_saved`] return it.
pub type TouchedValues = Vec<Vec<(String, String)>>;

/// One change of a document, as [`VisitDoc::touched_values_in_saved`] attributes ops to it: its
/// actor, its first and last op counters (Automerge's `start_op` and `max_op`; a change's
/// ops take the counters between them, each one), and whether its ops are wanted.
#[derive(Debug, Clone, Copy)]
pub struct ChangeSpan<'a> {
    pub actor: &'a ActorId,
    pub start_op: u64,
    pub max_op: u64,
    pub wanted: bool,
}

impl<'a> ChangeSpan<'a> {
    /// The span of the change `m` describes.
    pub fn of(m: &'a automerge::ChangeMetadata<'_>, wanted: bool) -> Self {
        Self {
            actor: &m.actor,
            start_op: m.start_op,
            max_op: m.max_op,
            wanted,
        }
    }
}

/// The op columns of a document chunk that Automerge writes, in the order it writes them
/// (id << 4 | type): the object (actor, counter), the key (actor, counter, string), the
/// op's id (actor, counter), insert, action, the value (metadata, bytes), the successors
/// (count, actor, counter), expand, mark name. See the binary format,
/// <https://alexjg.github.io/automerge-storage-docs/#document-chunks>.
const DOCUMENT_OP_COLUMNS: [u64; 16] = [
    0x01, 0x02, 0x11, 0x13, 0x15, 0x21, 0x23, 0x34, 0x42, 0x56, 0x57, 0x80, 0x81, 0x83, 0x94, 0xa5,
];

impl VisitDoc {
    /// What [`VisitDoc::touched_values_each`] returns for the wanted changes of `spans`, read
    /// from `saved`, the document's saved bytes (`Automerge::save_nocompress`, as devices push
    /// them), instead of from the changes: the server's check of a pushed whole document
    /// needs no change rebuilt from the document (rebuilding them cost about as much as
    /// loading the document).
    ///
    /// A document stores every op of its history once (overwritten ones included, each with
    /// its successors); a delete is not stored but named as a successor that is no op of the
    /// document, and Automerge rebuilds it in the object and key of the op it deleted, as
    /// this does. `spans` must be every change of the document (`get_changes_meta(&[])`, in
    /// any order); the ops of each wanted change come in counter order, as in the change.
    /// An object made by a wanted change has the path its making op gave it; one made
    /// before them is looked up where the document has it now, `?` if nowhere (both as
    /// [`VisitDoc::touched_values_each`] resolves them).
    ///
    /// `None` — and the caller rebuilds the changes — for bytes laid out in any way Automerge
    /// does not write (compressed, unknown, repeated or misordered columns), rows that do not
    /// decode, an object that no op makes, or any op that does not belong to exactly one
    /// change: every counter of every change must be found exactly once, as an op or as a
    /// delete, and nothing else. That last check is what makes the attribution sound: an op
    /// that no change holds (which Automerge's loading would keep in the document's state
    /// while leaving it out of every change) is refused here rather than left unchecked.
    pub fn touched_values_in_saved(
        &self,
        saved: &[u8],
        spans: &[ChangeSpan<'_>],
    ) -> Option<TouchedValues> {
        touched_in_saved(self, saved, spans)
    }

    /// How many ops of the document's state no change of its history holds: 0 for any
    /// document Automerge made. Automerge 0.12 loads a document (a chunk written by hand)
    /// whose ops are not all in its changes; such ops count in the state while escaping
    /// every check made on the changes, so a pushed document that has any is refused.
    /// Rebuilds and decodes every change: for documents
    /// [`VisitDoc::touched_values_in_saved`] does not read (which checks this itself).
    pub fn ops_outside_changes(&self) -> u64 {
        let held: u64 = self
            .doc
            .get_changes(&[])
            .iter()
            .map(|c| {
                c.decode()
                    .operations
                    .iter()
                    .filter(|op| !matches!(op.action, automerge::legacy::OpType::Delete))
                    .count() as u64
            })
            .sum();
        self.doc.stats().num_ops.saturating_sub(held)
    }
}

fn touched_in_saved(
    doc: &VisitDoc,
    saved: &[u8],
    spans: &[ChangeSpan<'_>],
) -> Option<TouchedValues> {
    let (actors, columns) = document_op_columns(saved)?;
    let [
        obj_actor,
        obj_ctr,
        key_actor,
        key_ctr,
        key_str,
        id_actor,
        id_ctr,
        _insert,
        action,
        value_meta,
        value_raw,
        succ_count,
        succ_actor,
        succ_ctr,
        _expand,
        _mark_name,
    ] = columns;
    // The changes by (the document's actor index, start): each span's actor must be one
    // of the document's.
    let mut by_actor: Vec<Vec<(u64, u64, usize)>> = vec![Vec::new(); actors.len()];
    for (i, s) in spans.iter().enumerate() {
        let a = actors.iter().position(|a| *a == s.actor.to_bytes())?;
        by_actor[a].push((s.start_op, s.max_op, i));
    }
    for ranges in &mut by_actor {
        ranges.sort_unstable();
    }
    let change_of = |(ctr, a): OpKey| -> Option<usize> {
        let ranges = by_actor.get(a)?;
        let i = ranges.partition_point(|(start, _, _)| *start <= ctr);
        let (start, max, change) = *ranges.get(i.checked_sub(1)?)?;
        (start <= ctr && ctr <= max).then_some(change)
    };
    let actor_of = |a: u64| usize::try_from(a).ok().filter(|a| *a < actors.len());
    let mut reader = OpReader::new(
        [obj_actor, obj_ctr, key_actor, key_ctr, key_str],
        [action, value_meta, value_raw],
    );
    let mut id_actor = Rle::<u64>::new(id_actor);
    let mut id_ctr = Delta::new(id_ctr);
    let mut succ_count = Rle::<u64>::new(succ_count);
    let mut succ_actor = Rle::<u64>::new(succ_actor);
    let mut succ_ctr = Delta::new(succ_ctr);
    // Every row: (id, object, key, value), and the successors named.
    let num_ops = doc.doc.stats().num_ops;
    let mut rows: Vec<(OpKey, DiffOp<'_>)> =
        Vec::with_capacity(usize::try_from(num_ops).unwrap_or(0).min(1 << 16));
    let mut succs: Vec<(OpKey, usize)> = Vec::new();
    while !reader.actions.done() {
        let op = reader.next(&actor_of)?;
        // A delete is never a row of a document.
        if matches!(op.value, OpValue::Delete) {
            return None;
        }
        let id = match (id_actor.next()?, id_ctr.next()?) {
            (Some(a), Some(c)) if (1..=i64::from(u32::MAX)).contains(&c) => {
                (c as u64, actor_of(a)?)
            }
            _ => return None,
        };
        for _ in 0..succ_count.next()?.unwrap_or(0) {
            let succ = match (succ_actor.next()?, succ_ctr.next()?) {
                (Some(a), Some(c)) if (1..=i64::from(u32::MAX)).contains(&c) => {
                    (c as u64, actor_of(a)?)
                }
                _ => return None,
            };
            succs.push((succ, rows.len()));
        }
        rows.push((id, op));
    }
    // Every column holds exactly the rows of the action column.
    let ended = reader.ended()
        && id_actor.done()
        && id_ctr.rle.done()
        && succ_count.done()
        && succ_actor.done()
        && succ_ctr.rle.done();
    // The rows are the ops Automerge loaded.
    if !ended || rows.len() as u64 != num_ops {
        return None;
    }
    // Each op (row or delete) once, each in a change: the ops by id.
    let mut ids: Vec<(OpKey, Option<usize>)> = rows.iter().map(|(id, _)| (*id, None)).collect();
    ids.sort_unstable_by_key(|(id, _)| *id);
    if ids.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    let is_row = |id: &OpKey| ids.binary_search_by_key(id, |(k, _)| *k).is_ok();
    // Deletes: successors that are no row, in the object and key of (each) op they
    // deleted; one delete may name several ops, always under one object and key.
    let mut deletes: Vec<(OpKey, usize)> = succs.into_iter().filter(|(s, _)| !is_row(s)).collect();
    deletes.sort_unstable();
    deletes.dedup_by(|b, a| {
        a.0 == b.0 && {
            let (ra, rb) = (&rows[a.1].1, &rows[b.1].1);
            // Kept apart (and so refused as a repeated op below) when they differ.
            ra.obj == rb.obj && ra.key == rb.key
        }
    });
    // Each op's change; every counter of every change exactly once.
    let mut counts = vec![0u64; spans.len()];
    let mut change_of_id = |id: OpKey| -> Option<usize> {
        let c = change_of(id)?;
        counts[c] += 1;
        Some(c)
    };
    let row_change: Vec<usize> = rows
        .iter()
        .map(|(id, _)| change_of_id(*id))
        .collect::<Option<_>>()?;
    let delete_change: Vec<usize> = deletes
        .iter()
        .map(|(id, _)| change_of_id(*id))
        .collect::<Option<_>>()?;
    if deletes.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    let expected = |s: &ChangeSpan<'_>| (s.max_op + 1).saturating_sub(s.start_op);
    if spans.iter().zip(&counts).any(|(s, n)| expected(s) != *n) {
        return None;
    }
    // The wanted changes, numbered.
    let mut wanted: Vec<Option<usize>> = vec![None; spans.len()];
    let mut n = 0;
    for (i, s) in spans.iter().enumerate() {
        if s.wanted {
            wanted[i] = Some(n);
            n += 1;
        }
    }
    // The path of every object, from the op that made it (objects by id).
    let mut made: Vec<(OpKey, usize)> = rows
        .iter()
        .enumerate()
        .filter(|(_, (_, op))| matches!(op.value, OpValue::Make))
        .map(|(i, (id, _))| (*id, i))
        .collect();
    made.sort_unstable();
    // An object's path: `Some(None)` when it cannot be resolved (`?`, as
    // `touched_values_each` has it), `None` when the bytes are not a sound document.
    let mut paths: Vec<Option<Option<String>>> = vec![None; made.len()];
    let mut path_of = |obj: Option<OpKey>| -> Option<Option<String>> {
        // The objects from `obj` up to the first whose path is known, the root, or one
        // made before the wanted changes: that one is where the document has it now (as
        // `touched_values_each` looks such objects up), `?` if it has none.
        let mut chain = Vec::new();
        let mut at = obj;
        let mut base = Some(String::new());
        while let Some(id) = at {
            let m = made.binary_search_by_key(&id, |(k, _)| *k).ok()?;
            if let Some(p) = &paths[m] {
                base.clone_from(p);
                break;
            }
            if chain.len() > made.len() {
                return None;
            }
            let row = made[m].1;
            if wanted[row_change[row]].is_none() {
                let found = doc.object_path(id.0, &ActorId::from(actors[id.1]));
                paths[m] = Some(found.clone());
                base = found;
                break;
            }
            chain.push(m);
            at = rows[row].1.obj;
        }
        for m in chain.into_iter().rev() {
            base = base.map(|b| join_path(&b, rows[made[m].1].1.key.as_deref()));
            paths[m] = Some(base.clone());
        }
        Some(base)
    };
    // The wanted changes' ops, each change's in counter order. Rows come object by
    // object: the last object's path is reused.
    let mut out: Vec<Vec<(u64, String, String)>> = vec![Vec::new(); n];
    let mut last: (Option<Option<OpKey>>, Option<String>) = (None, None);
    // `(path, value)` of an op writing `key` of `obj`; `None` when the bytes are not a
    // sound document.
    let mut touched = |obj: Option<OpKey>, key: Option<&str>, value: &OpValue<'_>| {
        if last.0 != Some(obj) {
            last = (Some(obj), path_of(obj)?);
        }
        Some(match &last.1 {
            Some(p) => (join_path(p, key), value.json()),
            None => ("?".to_string(), String::new()),
        })
    };
    for ((id, op), change) in rows.iter().zip(&row_change) {
        if let Some(w) = wanted[*change] {
            let (path, value) = touched(op.obj, op.key.as_deref(), &op.value)?;
            out[w].push((id.0, path, value));
        }
    }
    for ((id, row), change) in deletes.iter().zip(&delete_change) {
        if let Some(w) = wanted[*change] {
            let op = &rows[*row].1;
            let (path, value) = touched(op.obj, op.key.as_deref(), &OpValue::Delete)?;
            out[w].push((id.0, path, value));
        }
    }
    Some(
        out.into_iter()
            .map(|mut ops| {
                ops.sort_unstable_by_key(|(ctr, _, _)| *ctr);
                ops.into_iter().map(|(_, p, v)| (p, v)).collect()
            })
            .collect(),
    )
}

/// `obj_path/key` (`key` alone in the root; the object's path for a list or text element).
fn join_path(obj_path: &str, key: Option<&str>) -> String {
    match key {
        Some(k) if obj_path.is_empty() => k.to_string(),
        Some(k) => {
            // (Not `format!`: this runs for every op of a pushed visit.)
            let mut path = String::with_capacity(obj_path.len() + 1 + k.len());
            path.push_str(obj_path);
            path.push('/');
            path.push_str(k);
            path
        }
        None => obj_path.to_string(),
    }
}

/// A document chunk's actors and its op columns (see [`document_op_columns`]).
type DocumentOpColumns<'a> = (Vec<&'a [u8]>, [&'a [u8]; 16]);

/// The document's actors and its 16 op columns of [`DOCUMENT_OP_COLUMNS`] (empty when
/// left out), from an uncompressed document chunk laid out as Automerge writes it; `None`
/// otherwise.
fn document_op_columns(saved: &[u8]) -> Option<DocumentOpColumns<'_>> {
    let check = |ok: bool| ok.then_some(());
    let mut r = ColumnBytes::new(saved);
    check(r.take(4)? == AUTOMERGE_MAGIC)?;
    r.take(4)?; // checksum (Automerge checked it when it loaded the same bytes)
    check(r.byte()? == 0)?; // a document chunk
    let len = usize::try_from(r.uleb()?).ok()?;
    let mut r = ColumnBytes::new(r.take(len)?);
    let n = usize::try_from(r.uleb()?).ok()?;
    check(n <= r.left())?;
    let mut actors = Vec::with_capacity(n);
    for _ in 0..n {
        let len = usize::try_from(r.uleb()?).ok()?;
        actors.push(r.take(len)?);
    }
    let heads = usize::try_from(r.uleb()?).ok()?;
    r.take(heads.checked_mul(32)?)?;
    let meta = |r: &mut ColumnBytes<'_>| -> Option<Vec<(u64, usize)>> {
        let n = usize::try_from(r.uleb()?).ok()?;
        check(n <= r.left())?;
        (0..n)
            .map(|_| Some((r.uleb()?, usize::try_from(r.uleb()?).ok()?)))
            .collect()
    };
    let change_meta = meta(&mut r)?;
    let op_meta = meta(&mut r)?;
    // The changes' columns are Automerge's to read; none may be compressed either.
    for (spec, len) in &change_meta {
        check(spec & 0b1000 == 0)?;
        r.take(*len)?;
    }
    check(op_meta.len() <= DOCUMENT_OP_COLUMNS.len())?;
    let mut columns: [&[u8]; 16] = [&[]; 16];
    let mut next = 0;
    for (spec, len) in &op_meta {
        let at = next + DOCUMENT_OP_COLUMNS[next..].iter().position(|s| s == spec)?;
        columns[at] = r.take(*len)?;
        next = at + 1;
    }
    // What follows is the optional head index suffix.
    Some((actors, columns))
}

/// A cursor over a change's bytes or one of its columns, reading LEB128 integers as
/// Automerge's columns do (the `leb128` crate: up to ten bytes, at most 64 bits).
pub(crate) struct ColumnBytes<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> ColumnBytes<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub(crate) fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    #[inline]
    pub(crate) fn uleb(&mut self) -> Option<u64> {
        let first = *self.buf.get(self.pos)?;
        if first < 0x80 {
            self.pos += 1;
            return Some(u64::from(first));
        }
        let mut out = 0u64;
        let mut shift = 0;
        loop {
            let b = self.byte()?;
            if shift == 63 && b != 0x00 && b != 0x01 {
                return None;
            }
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(out);
            }
            shift += 7;
        }
    }

    #[inline]
    pub(crate) fn sleb(&mut self) -> Option<i64> {
        let first = *self.buf.get(self.pos)?;
        if first < 0x80 {
            self.pos += 1;
            // Seven bits, the seventh the sign.
            return Some(i64::from(first) - if first & 0x40 != 0 { 0x80 } else { 0 });
        }
        let mut out = 0i64;
        let mut shift = 0;
        loop {
            let b = self.byte()?;
            if shift == 63 && b != 0x00 && b != 0x7f {
                return None;
            }
            out |= i64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                if shift < 64 && b & 0x40 != 0 {
                    out |= -1i64 << shift;
                }
                return Some(out);
            }
        }
    }
}

/// A value of a run-length encoded column.
trait RleValue<'a>: Copy {
    fn read(r: &mut ColumnBytes<'a>) -> Option<Self>;
}

impl RleValue<'_> for u64 {
    fn read(r: &mut ColumnBytes<'_>) -> Option<Self> {
        r.uleb()
    }
}

impl RleValue<'_> for i64 {
    fn read(r: &mut ColumnBytes<'_>) -> Option<Self> {
        r.sleb()
    }
}

impl<'a> RleValue<'a> for &'a str {
    fn read(r: &mut ColumnBytes<'a>) -> Option<Self> {
        let len = usize::try_from(r.uleb()?).ok()?;
        if len > 1_000_000_000 {
            return None;
        }
        std::str::from_utf8(r.take(len)?).ok()
    }
}

/// Automerge's `RleDecoder`: runs of one value (`n > 0`), literal runs (`n < 0`), runs of
/// nulls (`0`, then the count).
struct Rle<'a, T> {
    r: ColumnBytes<'a>,
    count: u64,
    literal: bool,
    value: Option<T>,
}

impl<'a, T: RleValue<'a>> Rle<'a, T> {
    fn new(buf: &'a [u8]) -> Self {
        Self {
            r: ColumnBytes::new(buf),
            count: 0,
            literal: false,
            value: None,
        }
    }

    /// Whether the column has no rows left (Automerge's `done`).
    fn done(&self) -> bool {
        self.r.done() && self.count == 0
    }

    /// The next row: `Some(None)` for a null or past the end of the column, `None` when
    /// the bytes do not decode.
    #[inline]
    fn next(&mut self) -> Option<Option<T>> {
        if self.count > 0 && !self.literal {
            self.count -= 1;
            return Some(self.value);
        }
        self.next_run()
    }

    /// Skips the rest of a run of one value (rows that repeat the row just read).
    fn skip_repeats(&mut self) {
        if !self.literal {
            self.count = 0;
        }
    }

    /// [`Rle::next`] at the start of a run or in a literal run.
    fn next_run(&mut self) -> Option<Option<T>> {
        while self.count == 0 {
            if self.r.done() {
                return Some(None);
            }
            let n = self.r.sleb()?;
            if n > 0 {
                self.count = n as u64;
                self.value = Some(T::read(&mut self.r)?);
                self.literal = false;
            } else if n < 0 {
                self.count = n.checked_neg()? as u64;
                self.literal = true;
            } else {
                self.count = self.r.uleb().filter(|n| *n <= i64::MAX as u64)?;
                self.value = None;
                self.literal = false;
            }
        }
        self.count -= 1;
        if self.literal {
            Some(Some(T::read(&mut self.r)?))
        } else {
            Some(self.value)
        }
    }
}

/// Automerge's `DeltaDecoder`: a run-length column of differences.
struct Delta<'a> {
    rle: Rle<'a, i64>,
    value: i64,
}

impl<'a> Delta<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self {
            rle: Rle::new(buf),
            value: 0,
        }
    }

    fn next(&mut self) -> Option<Option<i64>> {
        Some(self.rle.next()?.map(|d| {
            self.value = self.value.saturating_add(d);
            self.value
        }))
    }
}

/// A value of a change's value columns.
#[derive(Clone, Copy)]
enum ColumnValue<'a> {
    Null,
    Bool(bool),
    Uint(u64),
    Int(i64),
    F64(f64),
    Str(&'a str),
    Bytes(&'a [u8]),
    Counter(i64),
    Timestamp(i64),
    Unknown(u8, &'a [u8]),
}

impl ColumnValue<'_> {
    /// As [`scalar_json`] writes the same value.
    fn json(&self) -> String {
        let scalar = match *self {
            // What serde_json writes for `Value::String`, without the copy.
            Self::Str(s) => return serde_json::to_string(s).unwrap_or_default(),
            Self::Null => ScalarValue::Null,
            Self::Bool(b) => ScalarValue::Boolean(b),
            Self::Uint(n) => ScalarValue::Uint(n),
            Self::Int(n) => ScalarValue::Int(n),
            Self::F64(f) => ScalarValue::F64(f),
            Self::Bytes(b) => ScalarValue::Bytes(b.to_vec()),
            Self::Counter(n) => ScalarValue::counter(n),
            Self::Timestamp(n) => ScalarValue::Timestamp(n),
            Self::Unknown(type_code, bytes) => ScalarValue::Unknown {
                type_code,
                bytes: bytes.to_vec(),
            },
        };
        scalar_json(&scalar)
    }
}

/// Automerge's `ValueIter`: the metadata's low four bits are the type, the rest the
/// length of the value's bytes (which null and booleans do not read).
fn read_value<'a>(meta: u64, raw: &mut ColumnBytes<'a>) -> Option<ColumnValue<'a>> {
    let len = usize::try_from(meta >> 4).ok()?;
    // A LEB128 integer that fills its bytes.
    let signed = |bytes: &[u8]| {
        let mut r = ColumnBytes::new(bytes);
        r.sleb().filter(|_| r.done())
    };
    Some(match meta & 0x0f {
        0 => ColumnValue::Null,
        1 => ColumnValue::Bool(false),
        2 => ColumnValue::Bool(true),
        3 => {
            let mut r = ColumnBytes::new(raw.take(len)?);
            ColumnValue::Uint(r.uleb().filter(|_| r.done())?)
        }
        4 => ColumnValue::Int(signed(raw.take(len)?)?),
        5 if len == 8 => ColumnValue::F64(f64::from_le_bytes(raw.take(8)?.try_into().ok()?)),
        5 => return None,
        6 => ColumnValue::Str(std::str::from_utf8(raw.take(len)?).ok()?),
        7 => ColumnValue::Bytes(raw.take(len)?),
        8 => ColumnValue::Counter(signed(raw.take(len)?)?),
        9 => ColumnValue::Timestamp(signed(raw.take(len)?)?),
        code => ColumnValue::Unknown(code as u8, raw.take(len)?),
    })
}

/// Writes one user action into an open transaction. Validation of the action against
/// reference data and the visit's status happens before (see [`crate::rules`]).
pub struct VisitWriter<'a, 'b> {
    tx: &'a mut Transaction<'b>,
    actor_hex: String,
}

impl std::fmt::Debug for VisitWriter<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VisitWriter")
    }
}

impl<'a, 'b> VisitWriter<'a, 'b> {
    fn new(tx: &'a mut Transaction<'b>, actor: &ActorId) -> Result<Self> {
        Ok(Self {
            tx,
            actor_hex: actor.to_hex_string(),
        })
    }

    fn obj(&self, name: &str) -> Result<ObjId> {
        match self.tx.get(ROOT, name)? {
            Some((Value::Object(_), id)) => Ok(id),
            _ => Err(Error::Corrupt(format!("visit document has no {name}"))),
        }
    }

    /// Records this actor's author in the registry, once per document.
    fn register(&mut self, author: &Author) -> Result<()> {
        let actors = self.obj("actors")?;
        let hex = self.actor_hex.clone();
        if self.tx.get(&actors, &hex)?.is_none() {
            let entry = self.tx.put_object(&actors, &hex, ObjType::Map)?;
            self.tx.put(&entry, "u", author.user_id.as_str())?;
            self.tx.put(&entry, "d", author.device_id.as_str())?;
        }
        Ok(())
    }

    fn put_if_changed(&mut self, obj: &ObjId, key: &str, value: ScalarValue) -> Result<()> {
        let current = self.tx.get_all(obj, key)?;
        let same =
            current.len() == 1 && matches!(&current[0].0, Value::Scalar(s) if s.as_ref() == &value);
        if !same {
            self.tx.put(obj, key, value)?;
        }
        Ok(())
    }

    /// Writes the plan fields that differ from the document.
    pub fn set_plan(&mut self, plan: &VisitPlan) -> Result<()> {
        let p = self.obj("plan")?;
        self.put_if_changed(&p, "store", plan.store_id.as_str().into())?;
        self.put_if_changed(&p, "rep", plan.rep_id.as_str().into())?;
        self.put_if_changed(&p, "start", ScalarValue::Int(plan.planned_start))?;
        self.put_if_changed(&p, "end", ScalarValue::Int(plan.planned_end))?;
        self.put_if_changed(&p, "priority", ScalarValue::Int(i64::from(plan.priority)))?;
        self.put_if_changed(&p, "instructions", plan.instructions.as_str().into())?;
        self.put_if_changed(&p, "template", plan.template_id.as_str().into())?;
        self.put_if_changed(&p, "ad_hoc", ScalarValue::Boolean(plan.ad_hoc))?;
        Ok(())
    }

    /// Sets the status.
    pub fn set_status(&mut self, status: VisitStatus) -> Result<()> {
        let a = self.obj("actual")?;
        self.put_if_changed(&a, "status", status.as_str().into())
    }

    /// Records a check-in (`"in"`) or check-out (`"out"`).
    pub fn set_checkpoint(&mut self, which: CheckKind, cp: &CheckPoint) -> Result<()> {
        let a = self.obj("actual")?;
        let prefix = match which {
            CheckKind::In => "in",
            CheckKind::Out => "out",
        };
        self.tx.put(&a, format!("{prefix}_at"), cp.at)?;
        self.tx.put(&a, format!("{prefix}_lat"), cp.position.lat)?;
        self.tx.put(&a, format!("{prefix}_lng"), cp.position.lng)?;
        self.tx.put(&a, format!("{prefix}_dist"), cp.distance_m)?;
        self.tx
            .put(&a, format!("{prefix}_out"), cp.outside_geofence)?;
        Ok(())
    }

    /// Records why a visit was canceled, and where the rep was.
    pub fn set_cancel(&mut self, reason: &str, position: Option<GeoPoint>) -> Result<()> {
        let a = self.obj("actual")?;
        self.tx.put(&a, "cancel_reason", reason)?;
        if let Some(p) = position {
            self.tx.put(&a, "cancel_lat", p.lat)?;
            self.tx.put(&a, "cancel_lng", p.lng)?;
        }
        Ok(())
    }

    /// Records why a visit was abandoned.
    pub fn set_abandon(&mut self, reason: &str) -> Result<()> {
        let a = self.obj("actual")?;
        self.tx.put(&a, "abandon_reason", reason)?;
        Ok(())
    }

    /// Marks the order submitted (or reopens it).
    pub fn set_order_submitted(&mut self, submitted: bool) -> Result<()> {
        let a = self.obj("actual")?;
        self.put_if_changed(&a, "order_submitted", ScalarValue::Boolean(submitted))
    }

    fn line(&mut self, section: &str, key: &str) -> Result<ObjId> {
        let sec = self.obj(section)?;
        match self.tx.get(&sec, key)? {
            Some((Value::Object(ObjType::Map), id)) => Ok(id),
            _ => Ok(self.tx.put_object(&sec, key, ObjType::Map)?),
        }
    }

    fn put_fields(
        &mut self,
        section: &str,
        key: &str,
        fields: Vec<(&str, ScalarValue)>,
    ) -> Result<()> {
        if fields.is_empty() {
            return Ok(());
        }
        let line = self.line(section, key)?;
        for (f, v) in fields {
            self.tx.put(&line, f, v)?;
        }
        Ok(())
    }

    /// Records the given fields of one product's inventory line.
    pub fn record_inventory(&mut self, product_id: &str, input: &InventoryInput) -> Result<()> {
        let mut f: Vec<(&str, ScalarValue)> = Vec::new();
        push_opt(&mut f, "shelf", input.shelf_qty.map(ScalarValue::Int));
        push_opt(&mut f, "back", input.backroom_qty.map(ScalarValue::Int));
        push_opt(&mut f, "oos", input.out_of_stock.map(ScalarValue::Boolean));
        push_opt(
            &mut f,
            "price",
            input.observed_price_cents.map(ScalarValue::Int),
        );
        push_opt(&mut f, "facings", input.facings.map(ScalarValue::Int));
        self.put_fields("inventory", product_id, f)
    }

    /// Records the given fields of one planogram position.
    pub fn record_position(&mut self, position_id: &str, input: &PositionInput) -> Result<()> {
        let mut f: Vec<(&str, ScalarValue)> = Vec::new();
        push_opt(&mut f, "present", input.present.map(ScalarValue::Boolean));
        push_opt(
            &mut f,
            "facings",
            input.actual_facings.map(ScalarValue::Int),
        );
        push_opt(
            &mut f,
            "correct",
            input.correct_position.map(ScalarValue::Boolean),
        );
        self.put_fields("planogram", position_id, f)
    }

    /// Records the given fields of one promotion check.
    pub fn record_promotion(&mut self, promotion_id: &str, input: &PromotionInput) -> Result<()> {
        let mut f: Vec<(&str, ScalarValue)> = Vec::new();
        push_opt(
            &mut f,
            "display",
            input.display_in_place.map(ScalarValue::Boolean),
        );
        push_opt(
            &mut f,
            "price_ok",
            input.promo_price_correct.map(ScalarValue::Boolean),
        );
        push_opt(
            &mut f,
            "materials",
            input.materials_present.map(ScalarValue::Boolean),
        );
        push_opt(
            &mut f,
            "price",
            input.observed_price_cents.map(ScalarValue::Int),
        );
        self.put_fields("promotions", promotion_id, f)
    }

    /// Answers one survey question.
    pub fn answer(&mut self, question_id: &str, value: &AnswerValue) -> Result<()> {
        let s = self.obj("survey")?;
        let v = match value {
            AnswerValue::Bool(b) => ScalarValue::Boolean(*b),
            AnswerValue::Number(n) => ScalarValue::F64(*n),
            AnswerValue::Text(t) => ScalarValue::Str(t.as_str().into()),
        };
        self.tx.put(&s, question_id, v)?;
        Ok(())
    }

    /// Sets one order line's quantity (0 keeps the line with nothing ordered).
    pub fn set_order_line(&mut self, product_id: &str, quantity: i64) -> Result<()> {
        let o = self.obj("orders")?;
        self.tx.put(&o, product_id, quantity)?;
        Ok(())
    }

    /// Replaces the notes with `text`, as a minimal edit so concurrent edits merge.
    pub fn set_notes(&mut self, text: &str) -> Result<()> {
        let n = self.obj("notes")?;
        self.tx.update_text(&n, text)?;
        Ok(())
    }

    /// Inserts and deletes at a position of the notes (in Unicode scalar values).
    pub fn splice_notes(&mut self, pos: usize, delete: isize, insert: &str) -> Result<()> {
        let n = self.obj("notes")?;
        let len = self.tx.length(&n);
        if pos > len || pos as isize + delete.max(0) > len as isize {
            return Err(Error::invalid(format!(
                "notes edit at {pos} is past the end of the notes ({len} characters)"
            )));
        }
        self.tx.splice_text(&n, pos, delete, insert)?;
        Ok(())
    }
}

fn push_opt<'k>(out: &mut Vec<(&'k str, ScalarValue)>, key: &'k str, v: Option<ScalarValue>) {
    if let Some(v) = v {
        out.push((key, v));
    }
}

/// Check-in or check-out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckKind {
    In,
    Out,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;
    use crate::rules;
    use automerge::transaction::Transactable;

    const T0: Millis = 1_795_770_000_000;

    fn actor(n: u8) -> ActorId {
        ActorId::from(&[n; 16][..])
    }

    fn plan(rep: &str) -> VisitPlan {
        VisitPlan {
            store_id: "s-1".into(),
            rep_id: rep.into(),
            planned_start: T0,
            planned_end: T0 + 3_600_000,
            priority: 3,
            instructions: "Check the \"end cap\"".into(),
            template_id: "tt-standard".into(),
            ad_hoc: true,
        }
    }

    fn checkpoint(at: Millis) -> CheckPoint {
        CheckPoint {
            at,
            position: GeoPoint {
                lat: 52.520_008,
                lng: 13.404_954,
            },
            distance_m: 12.5,
            outside_geofence: false,
        }
    }

    /// Commits one raw Automerge transaction as the document's current actor.
    fn raw(doc: &mut VisitDoc, at: Millis, f: impl FnOnce(&mut Transaction<'_>)) {
        let mut tx = doc.automerge_mut().transaction();
        f(&mut tx);
        tx.commit_with(CommitOptions::default().with_time(at));
    }

    fn root_obj(doc: &VisitDoc, name: &str) -> ObjId {
        match doc.automerge().get(ROOT, name).unwrap() {
            Some((Value::Object(_), id)) => id,
            other => panic!("{name}: {other:?}"),
        }
    }

    /// A value of the wrong type is an error that names where it sits: a line field
    /// (section, line, field), an `actual` field, an order line.
    #[test]
    fn a_wrongly_typed_value_is_named_by_its_path() {
        let rep = Author {
            user_id: "rep-1".into(),
            device_id: "dev-rep".into(),
        };
        let fresh = || {
            let mut doc = VisitDoc::create("v-1", &plan("rep-1"), actor(0xaa), &rep, T0).unwrap();
            doc.edit(&rep, T0 + 1_000, |w| {
                w.record_inventory(
                    "p-1",
                    &InventoryInput {
                        shelf_qty: Some(3),
                        ..InventoryInput::default()
                    },
                )?;
                w.set_order_line("p-2", 4)
            })
            .unwrap();
            assert!(doc.read().is_ok());
            doc
        };
        type Write = dyn Fn(&VisitDoc, &mut Transaction<'_>);
        let cases: [(&str, &Write); 3] = [
            ("inventory/p-1/shelf should be an integer", &|doc, tx| {
                let inventory = root_obj(doc, "inventory");
                let Some((Value::Object(_), line)) =
                    doc.automerge().get(&inventory, "p-1").unwrap()
                else {
                    panic!("no line p-1");
                };
                tx.put(&line, "shelf", "a dozen").unwrap();
            }),
            ("actual/in_at should be an integer", &|doc, tx| {
                tx.put(root_obj(doc, "actual"), "in_at", true).unwrap();
            }),
            ("orders/p-2 should be an integer", &|doc, tx| {
                tx.put(root_obj(doc, "orders"), "p-2", "four").unwrap();
            }),
        ];
        for (says, write) in cases {
            let mut doc = fresh();
            let probe = fresh();
            raw(&mut doc, T0 + 2_000, |tx| write(&probe, tx));
            let e = doc.read().unwrap_err().to_string();
            assert!(e.contains(says), "{e} should say {says:?}");
        }
    }

    /// A visit through every section — plan, check-in and check-out, inventory, planogram
    /// positions, promotions, survey, order, notes, status — by a rep (actor `aa…`) and a
    /// manager (actor `bb…`), with the writes the server must refuse (a manager's check-in
    /// and inventory, a status other than canceled, a rep's reassignment, a forged
    /// registry entry, the schema version, an unknown section) and raw ops the visit
    /// writer never makes (a counter and its increment, a delete, a list, an object that is
    /// deleted and then written into). One change per step, in order.
    fn representative_visit() -> (VisitDoc, Vec<Change>) {
        let rep = Author {
            user_id: "rep-1".into(),
            device_id: "dev-rep".into(),
        };
        let manager = Author {
            user_id: "manager-1".into(),
            device_id: "dev-mgr".into(),
        };
        let mut doc = VisitDoc::create("v-1", &plan("rep-1"), actor(0xaa), &rep, T0).unwrap();
        let mut at = T0;
        let mut step = |doc: &mut VisitDoc,
                        who: &Author,
                        f: &dyn Fn(&mut VisitWriter<'_, '_>) -> Result<()>| {
            at += 1_000;
            doc.edit(who, at, f).unwrap();
        };
        step(&mut doc, &rep, &|w| {
            w.set_checkpoint(CheckKind::In, &checkpoint(T0 + 1_000))?;
            w.set_status(VisitStatus::InProgress)
        });
        step(&mut doc, &rep, &|w| {
            w.record_inventory(
                "p-1",
                &InventoryInput {
                    shelf_qty: Some(12),
                    backroom_qty: Some(0),
                    out_of_stock: Some(false),
                    observed_price_cents: Some(199),
                    facings: Some(3),
                },
            )
        });
        step(&mut doc, &rep, &|w| {
            w.record_inventory(
                "p-2",
                &InventoryInput {
                    shelf_qty: Some(0),
                    out_of_stock: Some(true),
                    ..InventoryInput::default()
                },
            )
        });
        step(&mut doc, &rep, &|w| {
            w.record_position(
                "pos-1",
                &PositionInput {
                    present: Some(true),
                    actual_facings: Some(4),
                    correct_position: Some(false),
                },
            )
        });
        step(&mut doc, &rep, &|w| {
            w.record_promotion(
                "promo-1",
                &PromotionInput {
                    display_in_place: Some(true),
                    promo_price_correct: Some(false),
                    materials_present: Some(true),
                    observed_price_cents: Some(149),
                },
            )
        });
        step(&mut doc, &rep, &|w| {
            w.answer("q-bool", &AnswerValue::Bool(true))?;
            w.answer("q-num", &AnswerValue::Number(4.5))?;
            w.answer(
                "q-text",
                &AnswerValue::Text("say \"hi\" \\ ünïcode\n".into()),
            )
        });
        step(&mut doc, &rep, &|w| {
            w.set_order_line("p-1", 6)?;
            w.set_order_line("p-2", 0)?;
            w.set_order_submitted(true)
        });
        step(&mut doc, &rep, &|w| w.set_notes("Header card missing."));
        step(&mut doc, &rep, &|w| w.splice_notes(7, 4, "strip"));
        // An existing line, written again: its object was made by an earlier change.
        step(&mut doc, &rep, &|w| {
            w.record_inventory(
                "p-1",
                &InventoryInput {
                    shelf_qty: Some(11),
                    ..InventoryInput::default()
                },
            )
        });
        step(&mut doc, &rep, &|w| {
            w.set_checkpoint(CheckKind::Out, &checkpoint(T0 + 20_000))?;
            w.set_status(VisitStatus::Completed)
        });
        // The manager, on their own device.
        doc.set_actor(actor(0xbb));
        step(&mut doc, &manager, &|w| {
            let mut p = plan("rep-2");
            p.planned_start += 86_400_000;
            w.set_plan(&p)
        });
        step(&mut doc, &manager, &|w| {
            w.set_status(VisitStatus::Canceled)?;
            w.set_cancel(
                "store closed",
                Some(GeoPoint {
                    lat: 52.5,
                    lng: 13.4,
                }),
            )
        });
        step(&mut doc, &manager, &|w| {
            w.set_checkpoint(CheckKind::In, &checkpoint(T0 + 30_000))
        });
        step(&mut doc, &manager, &|w| {
            w.set_status(VisitStatus::Completed)
        });
        step(&mut doc, &manager, &|w| {
            w.record_inventory(
                "p-3",
                &InventoryInput {
                    shelf_qty: Some(1),
                    ..InventoryInput::default()
                },
            )
        });
        step(&mut doc, &manager, &|w| w.splice_notes(0, 0, "Mgr: "));
        // Back to the rep's device.
        doc.set_actor(actor(0xaa));
        step(&mut doc, &rep, &|w| w.set_plan(&plan("rep-9")));
        step(&mut doc, &rep, &|w| w.set_abandon("no access"));
        let actors = root_obj(&doc, "actors");
        let survey = root_obj(&doc, "survey");
        let orders = root_obj(&doc, "orders");
        let manager_hex = actor(0xbb).to_hex_string();
        let manager_entry = match doc.automerge().get(&actors, &manager_hex).unwrap() {
            Some((Value::Object(_), id)) => id,
            other => panic!("{other:?}"),
        };
        at += 1_000;
        raw(&mut doc, at, |tx| {
            tx.put(&manager_entry, "u", "rep-1").unwrap();
        });
        at += 1_000;
        raw(&mut doc, at, |tx| {
            tx.put(ROOT, "v", 0).unwrap();
        });
        at += 1_000;
        raw(&mut doc, at, |tx| {
            tx.put(&survey, "q-count", ScalarValue::counter(1)).unwrap();
            tx.delete(&orders, "p-2").unwrap();
        });
        at += 1_000;
        raw(&mut doc, at, |tx| {
            tx.increment(&survey, "q-count", 2).unwrap();
        });
        at += 1_000;
        raw(&mut doc, at, |tx| {
            let junk = tx.put_object(ROOT, "junk", ObjType::Map).unwrap();
            let list = tx.put_object(&junk, "list", ObjType::List).unwrap();
            tx.insert(&list, 0, "a").unwrap();
            tx.insert(&list, 1, ScalarValue::Timestamp(5)).unwrap();
            tx.put(&junk, "bytes", ScalarValue::Bytes(vec![1, 2]))
                .unwrap();
            tx.put(&junk, "", ScalarValue::Uint(7)).unwrap();
            tx.put(&junk, "null", ScalarValue::Null).unwrap();
        });
        let junk = root_obj(&doc, "junk");
        at += 1_000;
        raw(&mut doc, at, |tx| {
            tx.delete(ROOT, "junk").unwrap();
        });
        // Written into after it was deleted: not reachable from the root any more.
        at += 1_000;
        raw(&mut doc, at, |tx| {
            tx.put(&junk, "late", true).unwrap();
        });
        let changes = doc.automerge().get_changes(&[]);
        (doc, changes)
    }

    /// What the server decides from [`VisitDoc::touched_values_each`] (sync-server's
    /// `ingest::decide`), per change: the first path each role may not write, and whether a
    /// manager's status write is refused.
    fn ownership_decisions(touched: &[Vec<(String, String)>], changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .zip(touched)
            .enumerate()
            .map(|(i, (c, ops))| {
                let hex = c.actor_id().to_hex_string();
                let creating = c.deps().is_empty();
                let paths: BTreeSet<&String> = ops.iter().map(|(p, _)| p).collect();
                let forbidden = |role| {
                    rules::forbidden_path(role, paths.iter().copied(), &hex, creating)
                        .map_or("-".to_string(), Clone::clone)
                };
                let bad_status = !creating
                    && ops
                        .iter()
                        .any(|(p, v)| p == "actual/status" && v != "{}" && v != "\"canceled\"");
                format!(
                    "{i:2} {}: rep {} | manager {}{} | admin {} | {}",
                    &hex[..2],
                    forbidden(Role::Rep),
                    forbidden(Role::Manager),
                    if bad_status { " (status)" } else { "" },
                    forbidden(Role::Admin),
                    paths
                        .iter()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                )
            })
            .collect()
    }

    #[test]
    fn ownership_diff_decides_every_section_of_a_representative_visit() {
        let (doc, changes) = representative_visit();
        // A push of the whole visit to a server that does not have it yet.
        let mut fresh = Automerge::new();
        fresh.apply_changes(changes.clone()).unwrap();
        let fresh = VisitDoc::from_automerge(fresh).unwrap();
        let touched = fresh.touched_values_each(&changes).unwrap();
        let expected = [
            " 0 aa: rep - | manager - | admin - | actors actors/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa actors/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/d actors/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/u actual actual/status id inventory notes orders plan plan/ad_hoc plan/end plan/instructions plan/priority plan/rep plan/start plan/store plan/template planogram promotions survey v",
            " 1 aa: rep - | manager actual/in_at (status) | admin - | actual/in_at actual/in_dist actual/in_lat actual/in_lng actual/in_out actual/status",
            " 2 aa: rep - | manager inventory/p-1 | admin - | inventory/p-1 inventory/p-1/back inventory/p-1/facings inventory/p-1/oos inventory/p-1/price inventory/p-1/shelf",
            " 3 aa: rep - | manager inventory/p-2 | admin - | inventory/p-2 inventory/p-2/oos inventory/p-2/shelf",
            " 4 aa: rep - | manager planogram/pos-1 | admin - | planogram/pos-1 planogram/pos-1/correct planogram/pos-1/facings planogram/pos-1/present",
            " 5 aa: rep - | manager promotions/promo-1 | admin - | promotions/promo-1 promotions/promo-1/display promotions/promo-1/materials promotions/promo-1/price promotions/promo-1/price_ok",
            " 6 aa: rep - | manager survey/q-bool | admin - | survey/q-bool survey/q-num survey/q-text",
            " 7 aa: rep - | manager actual/order_submitted | admin - | actual/order_submitted orders/p-1 orders/p-2",
            " 8 aa: rep - | manager - | admin - | notes",
            " 9 aa: rep - | manager - | admin - | notes",
            "10 aa: rep - | manager inventory/p-1/shelf | admin - | inventory/p-1/shelf",
            "11 aa: rep - | manager actual/out_at (status) | admin - | actual/out_at actual/out_dist actual/out_lat actual/out_lng actual/out_out actual/status",
            "12 bb: rep plan/rep | manager - | admin - | actors/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb actors/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb/d actors/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb/u plan/rep plan/start",
            "13 bb: rep - | manager - | admin - | actual/cancel_lat actual/cancel_lng actual/cancel_reason actual/status",
            "14 bb: rep - | manager actual/in_at | admin - | actual/in_at",
            "15 bb: rep - | manager - (status) | admin - | actual/status",
            "16 bb: rep - | manager inventory/p-3 | admin - | inventory/p-3 inventory/p-3/shelf",
            "17 bb: rep - | manager - | admin - | notes",
            "18 aa: rep plan/rep | manager - | admin - | plan/rep plan/start",
            "19 aa: rep - | manager actual/abandon_reason | admin - | actual/abandon_reason",
            "20 aa: rep actors/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb/u | manager actors/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb/u | admin - | actors/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb/u",
            "21 aa: rep v | manager v | admin - | v",
            "22 aa: rep - | manager orders/p-2 | admin - | orders/p-2 survey/q-count",
            "23 aa: rep - | manager survey/q-count | admin - | survey/q-count",
            "24 aa: rep junk | manager junk | admin - | junk junk/ junk/bytes junk/list junk/null",
            "25 aa: rep junk | manager junk | admin - | junk",
            "26 aa: rep junk/late | manager junk/late | admin - | junk/late",
        ];
        // The values too (JSON, as `VisitDoc::history` reports them).
        let values: [(usize, &[(&str, &str)]); 7] = [
            (
                1,
                &[
                    ("actual/in_at", "1795770001000"),
                    ("actual/in_lat", "52.520008"),
                    ("actual/in_lng", "13.404954"),
                    ("actual/in_dist", "12.5"),
                    ("actual/in_out", "false"),
                    ("actual/status", "\"in_progress\""),
                ],
            ),
            (
                6,
                &[
                    ("survey/q-bool", "true"),
                    ("survey/q-num", "4.5"),
                    ("survey/q-text", "\"say \\\"hi\\\" \\\\ ünïcode\\n\""),
                ],
            ),
            (
                13,
                &[
                    ("actual/status", "\"canceled\""),
                    ("actual/cancel_reason", "\"store closed\""),
                    ("actual/cancel_lat", "52.5"),
                    ("actual/cancel_lng", "13.4"),
                ],
            ),
            (
                22,
                &[("survey/q-count", "\"Counter: 1\""), ("orders/p-2", "null")],
            ),
            (23, &[("survey/q-count", "2")]),
            (
                24,
                &[
                    ("junk", "{}"),
                    ("junk/list", "{}"),
                    ("junk/list", "\"a\""),
                    ("junk/list", "\"Timestamp: 5\""),
                    ("junk/bytes", "\"\\\"[1, 2]\\\"\""),
                    ("junk/", "7"),
                    ("junk/null", "null"),
                ],
            ),
            (25, &[("junk", "null")]),
        ];
        assert_eq!(ownership_decisions(&touched, &changes), expected);
        for (i, ops) in values {
            let got: Vec<(&str, &str)> = touched[i]
                .iter()
                .map(|(p, v)| (p.as_str(), v.as_str()))
                .collect();
            assert_eq!(got, ops, "change {i}");
        }
        // Text: one op per character inserted or deleted.
        let chars = |s: &str| -> Vec<(String, String)> {
            s.chars()
                .map(|c| ("notes".to_string(), format!("\"{c}\"")))
                .collect()
        };
        assert_eq!(touched[8], chars("Header card missing."));
        let mut splice = chars("strip");
        splice.extend(std::iter::repeat_n(("notes".into(), "null".into()), 4));
        assert_eq!(touched[9], splice);
        // The same changes pushed one at a time, each to the document made by the ones
        // before it (objects made earlier are found by walking the document): the same
        // decisions, except for the write into an object that is no longer reachable.
        let mut server = Automerge::new();
        let mut one_by_one = Vec::new();
        for c in &changes {
            server.apply_changes([c.clone()]).unwrap();
            let doc = VisitDoc {
                doc: server.clone(),
            };
            let touched = doc.touched_values_each(std::slice::from_ref(c)).unwrap();
            one_by_one.push(touched.into_iter().next().unwrap());
        }
        assert_eq!(server.get_heads(), doc.heads());
        let mut expected = expected.map(String::from);
        expected[26] = "26 aa: rep ? | manager ? | admin ? | ?".into();
        assert_eq!(ownership_decisions(&one_by_one, &changes), expected);
    }

    /// [`VisitDoc::touched_values_each`] as it was before it read the ops itself: every
    /// change decoded by Automerge into an `ExpandedChange`. The reference the new one is
    /// compared with.
    fn touched_values_each_by_automerge(
        doc: &VisitDoc,
        changes: &[Change],
    ) -> Result<Vec<Vec<(String, String)>>> {
        let mut made: HashMap<(u64, Vec<u8>), String> = HashMap::new();
        let mut objects: Option<HashMap<(u64, Vec<u8>), String>> = None;
        let mut out = Vec::with_capacity(changes.len());
        for change in changes {
            let expanded = change.decode();
            let refers_to_older = expanded.operations.iter().any(|op| match &op.obj {
                automerge::legacy::ObjectId::Root => false,
                automerge::legacy::ObjectId::Id(automerge::legacy::OpId(c, a)) => {
                    let k = (*c, a.to_bytes().to_vec());
                    let own = a.to_bytes() == change.actor_id().to_bytes()
                        && *c >= change.start_op().get();
                    !own && !made.contains_key(&k)
                }
            });
            if refers_to_older && objects.is_none() {
                objects = Some(doc.object_paths()?);
            }
            let ops = doc.expanded_ops(change, &expanded, &made, objects.as_ref());
            let actor = change.actor_id().to_bytes().to_vec();
            let start = change.start_op().get();
            for ((i, path, _), op) in ops.iter().zip(expanded.operations.iter()) {
                if matches!(op.action, automerge::legacy::OpType::Make(_)) {
                    made.insert((start + *i as u64, actor.clone()), path.clone());
                }
            }
            out.push(
                ops.into_iter()
                    .map(|(_, path, value)| (path, value))
                    .collect(),
            );
        }
        Ok(out)
    }

    /// Whether [`diff_ops`] reads the change itself (rather than leaving it to Automerge).
    fn read_directly(change: &Change) -> bool {
        diff_ops(change, &mut DiffState::new(), &mut Vec::new()).is_some()
    }

    /// The diff of `changes` against `doc`, new and old, agree: the same ops, or both
    /// fail, or both panic. Returns whether the new one read every change directly.
    fn agrees_with_automerge(doc: &VisitDoc, changes: &[Change]) -> bool {
        use std::panic::{AssertUnwindSafe, catch_unwind};
        let new = catch_unwind(AssertUnwindSafe(|| {
            doc.touched_values_each(changes).map_err(|e| e.to_string())
        }));
        let old = catch_unwind(AssertUnwindSafe(|| {
            touched_values_each_by_automerge(doc, changes).map_err(|e| e.to_string())
        }));
        match (new, old) {
            (Ok(new), Ok(old)) => {
                let hashes: Vec<ChangeHash> = changes.iter().map(Change::hash).collect();
                assert_eq!(new, old, "{hashes:?}");
            }
            (Err(_), Err(_)) => {}
            (new, old) => panic!("new {new:?}, by Automerge {old:?}"),
        }
        changes.iter().all(read_directly)
    }

    /// Every kind of op Automerge writes: map puts of every scalar type, nested objects,
    /// lists, text with marks, counters and increments, deletes, conflicts (an op with
    /// two predecessors), changes by three actors, a message, an empty change.
    fn varied_changes() -> (VisitDoc, Vec<Change>) {
        use automerge::AutoCommit;
        let mut a = AutoCommit::new().with_actor(actor(1));
        a.put(ROOT, "v", 1).unwrap();
        let m = a.put_object(ROOT, "lines", ObjType::Map).unwrap();
        for i in 0..300 {
            a.put(&m, format!("p-{i}"), i64::from(i)).unwrap();
        }
        a.put(ROOT, "flag", true).unwrap();
        a.put(ROOT, "ratio", 0.25).unwrap();
        a.put(ROOT, "nan", f64::NAN).unwrap();
        a.put(ROOT, "big", u64::MAX).unwrap();
        a.put(ROOT, "small", i64::MIN).unwrap();
        a.put(ROOT, "bytes", ScalarValue::Bytes(vec![1, 2, 3]))
            .unwrap();
        a.put(ROOT, "at", ScalarValue::Timestamp(-5)).unwrap();
        a.put(
            ROOT,
            "unknown",
            ScalarValue::Unknown {
                type_code: 12,
                bytes: vec![9],
            },
        )
        .unwrap();
        a.put(ROOT, "null", ScalarValue::Null).unwrap();
        a.put(ROOT, "text \"quoted\" \u{1}", "\u{7f}\u{2028}\t😀")
            .unwrap();
        a.put(ROOT, "n", ScalarValue::counter(1)).unwrap();
        a.commit();
        a.increment(ROOT, "n", 5).unwrap();
        a.increment(ROOT, "n", -7).unwrap();
        let t = a.put_object(ROOT, "notes", ObjType::Text).unwrap();
        a.splice_text(&t, 0, 0, &"field notes ".repeat(20)).unwrap();
        a.commit();
        a.splice_text(&t, 10, 150, "").unwrap();
        a.mark(
            &t,
            automerge::marks::Mark::new("bold".into(), true, 0, 5),
            automerge::marks::ExpandMark::Both,
        )
        .unwrap();
        let l = a.put_object(ROOT, "list", ObjType::List).unwrap();
        for i in 0..50 {
            a.insert(&l, i, i as i64).unwrap();
        }
        let nested = a.insert_object(&l, 3, ObjType::Map).unwrap();
        a.put(&nested, "deep", "yes").unwrap();
        a.put_object(&m, "table", ObjType::Table).unwrap();
        a.commit();
        a.delete(&m, "p-7").unwrap();
        a.delete(&l, 0).unwrap();
        a.commit_with(CommitOptions::default().with_message("m"));
        a.empty_change(CommitOptions::default().with_message("empty").with_time(5));
        let mut b = a.fork().with_actor(actor(2));
        let mut c = a.fork().with_actor(actor(3));
        b.put(&m, "p-1", "b").unwrap();
        b.put(&nested, "deep", "b").unwrap();
        c.put(&m, "p-1", "c").unwrap();
        b.commit();
        c.commit();
        a.merge(&mut b).unwrap();
        a.merge(&mut c).unwrap();
        // Overwrites the two conflicting values: an op with two predecessors.
        a.put(&m, "p-1", "a").unwrap();
        a.put(&nested, "deep", "a").unwrap();
        a.commit();
        let doc = a.document().clone();
        let changes = doc.get_changes(&[]);
        assert!(changes.iter().any(|c| c.is_empty()) && changes.len() == 8);
        (VisitDoc { doc }, changes)
    }

    /// Each change of `changes` applied in turn, diffed against the document it makes.
    fn agrees_one_by_one(changes: &[Change]) -> bool {
        let mut doc = Automerge::new();
        let mut all = true;
        for c in changes {
            doc.apply_changes([c.clone()]).unwrap();
            all &= agrees_with_automerge(&VisitDoc { doc: doc.clone() }, std::slice::from_ref(c));
        }
        all
    }

    /// [`VisitDoc::object_path`] (one object, through its parents) finds what
    /// [`VisitDoc::object_paths`] (the whole walk) has, for every object ever made in a
    /// document with nested maps, a conflict between two objects at one key, an object
    /// replaced by another, a deleted one, and objects inside a list.
    #[test]
    fn looking_one_object_up_agrees_with_the_walk() {
        let a = ActorId::from(&[1u8; 16][..]);
        let b = ActorId::from(&[2u8; 16][..]);
        let mut base = Automerge::new().with_actor(a.clone());
        let mut tx = base.transaction();
        let plan = tx.put_object(ROOT, "plan", ObjType::Map).unwrap();
        tx.put(&plan, "rep", "rep-1").unwrap();
        let inv = tx.put_object(ROOT, "inventory", ObjType::Map).unwrap();
        let p1 = tx.put_object(&inv, "p1", ObjType::Map).unwrap();
        tx.put(&p1, "shelf", 3).unwrap();
        let old = tx.put_object(&inv, "p2", ObjType::Map).unwrap();
        tx.put(&old, "shelf", 1).unwrap();
        let gone = tx.put_object(&inv, "p3", ObjType::Map).unwrap();
        tx.put(&gone, "shelf", 2).unwrap();
        let list = tx.put_object(ROOT, "photos", ObjType::List).unwrap();
        let in_list = tx.insert_object(&list, 0, ObjType::Map).unwrap();
        tx.put_object(&in_list, "meta", ObjType::Map).unwrap();
        tx.commit();
        let mut other = base.fork().with_actor(b.clone());
        let mut tx = base.transaction();
        tx.put_object(&inv, "p4", ObjType::Map).unwrap();
        tx.put_object(&inv, "p2", ObjType::Map).unwrap();
        tx.delete(&inv, "p3").unwrap();
        tx.commit();
        let mut tx = other.transaction();
        let theirs = tx.put_object(&inv, "p4", ObjType::Map).unwrap();
        tx.put_object(&theirs, "deep", ObjType::Map).unwrap();
        tx.commit();
        base.merge(&mut other).unwrap();
        let doc = VisitDoc { doc: base };
        let walked = doc.object_paths().unwrap();
        let mut made = 0;
        let mut found = 0;
        for change in doc.doc.get_changes(&[]) {
            let start = change.start_op().get();
            for (i, op) in change.decode().operations.iter().enumerate() {
                if !matches!(op.action, automerge::legacy::OpType::Make(_)) {
                    continue;
                }
                made += 1;
                let counter = start + i as u64;
                let expected = walked
                    .get(&(counter, change.actor_id().to_bytes().to_vec()))
                    .cloned();
                found += usize::from(expected.is_some());
                assert_eq!(
                    doc.object_path(counter, change.actor_id()),
                    expected,
                    "object {counter}@{}",
                    change.actor_id()
                );
            }
        }
        // Found: plan, inventory, p1, the list itself, the new p2, both objects at
        // inventory/p4 (one lost the conflict) and the map inside the one of them. Not
        // found: the replaced p2, the deleted p3 and the two objects in the list.
        assert_eq!((made, found), (12, 8), "{walked:?}");
        assert_eq!(doc.object_path(999, &a), None);
    }

    #[test]
    fn ownership_diff_reads_the_ops_automerge_decodes() {
        for (doc, changes) in [representative_visit(), varied_changes()] {
            // All at once (a new visit), one at a time, and in two parts (a document
            // that has some of them).
            assert!(agrees_with_automerge(&doc, &changes));
            assert!(agrees_one_by_one(&changes));
            for split in [1, changes.len() / 2, changes.len() - 1] {
                let mut first = Automerge::new();
                first.apply_changes(changes[..split].to_vec()).unwrap();
                first.apply_changes(changes[split..].to_vec()).unwrap();
                assert!(agrees_with_automerge(
                    &VisitDoc { doc: first },
                    &changes[split..]
                ));
            }
            // Changes sent compressed or not parse to the same change.
            for mut c in changes.iter().cloned() {
                for bytes in [c.bytes().to_vec(), c.raw_bytes().to_vec()] {
                    let parsed = Change::from_bytes(bytes).unwrap();
                    assert!(agrees_with_automerge(&doc, &[parsed]));
                }
            }
        }
    }

    /// How many alterations the alteration tests make (`FIELDSYNC_DIFF_ALTERATIONS`, 40).
    fn alterations() -> usize {
        std::env::var("FIELDSYNC_DIFF_ALTERATIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(40)
    }

    /// `bytes` with one to three bytes changed at random.
    fn altered(rng: &mut crate::fixtures::Rng, bytes: &[u8]) -> Vec<u8> {
        let mut b = bytes.to_vec();
        for _ in 0..=rng.below(2) {
            let at = rng.below(b.len() as u64) as usize;
            b[at] = match rng.below(3) {
                0 => b[at] ^ (1 << rng.below(8)),
                1 => b[at].wrapping_add(1),
                _ => rng.below(256) as u8,
            };
        }
        b
    }

    #[test]
    fn ownership_diff_agrees_with_automerge_on_altered_change_bytes() {
        // Changed bytes that Automerge still parses: read as Automerge reads them, or
        // left to Automerge. `FIELDSYNC_DIFF_ALTERATIONS` alterations of each change (40).
        let alterations = alterations();
        let mut rng = crate::fixtures::Rng::new(7);
        let (mut parsed, mut read) = (0, 0);
        for (doc, changes) in [representative_visit(), varied_changes()] {
            for c in &changes {
                let bytes = c.raw_bytes().to_vec();
                for _ in 0..alterations {
                    let b = altered(&mut rng, &bytes);
                    let Ok(Ok(altered)) = std::panic::catch_unwind(|| Change::from_bytes(b)) else {
                        continue;
                    };
                    parsed += 1;
                    read += usize::from(agrees_with_automerge(&doc, &[altered]));
                }
            }
        }
        println!("{parsed} parsed, {read} read directly");
        assert!(
            parsed > alterations * 7 && read > alterations * 3,
            "{parsed} parsed, {read} read"
        );
    }

    /// [`touched_values_in_saved`] for the changes of `doc` not in `before` (all when
    /// empty), in the order of `get_changes_meta(&[])`, and what
    /// [`VisitDoc::touched_values_each`] finds for the same changes rebuilt by Automerge,
    /// in the same order.
    fn in_saved_and_rebuilt(
        doc: &VisitDoc,
        saved: &[u8],
        before: &[ChangeHash],
    ) -> (Option<TouchedValues>, TouchedValues) {
        let am = doc.automerge();
        let rebuilt = am.get_changes(before);
        let wanted: BTreeSet<ChangeHash> = rebuilt.iter().map(Change::hash).collect();
        let meta = am.get_changes_meta(&[]);
        let spans: Vec<ChangeSpan<'_>> = meta
            .iter()
            .map(|m| ChangeSpan::of(m, wanted.contains(&m.hash)))
            .collect();
        let mut by_automerge = doc.touched_values_each(&rebuilt).unwrap();
        let expected = meta
            .iter()
            .filter(|m| wanted.contains(&m.hash))
            .map(|m| {
                let i = rebuilt.iter().position(|c| c.hash() == m.hash).unwrap();
                std::mem::take(&mut by_automerge[i])
            })
            .collect();
        (doc.touched_values_in_saved(saved, &spans), expected)
    }

    #[test]
    fn ops_read_from_a_saved_document_are_the_ops_of_its_changes() {
        for (_, changes) in [representative_visit(), varied_changes()] {
            let mut am = Automerge::new();
            am.apply_changes(changes.clone()).unwrap();
            let doc = VisitDoc { doc: am };
            assert_eq!(doc.ops_outside_changes(), 0);
            let saved = doc.automerge().save_nocompress();
            // Every change (a new visit), and the changes after each split (a document
            // pushed to a server that has the first part).
            for split in [0, 1, changes.len() / 2, changes.len() - 1] {
                let before: Vec<ChangeHash> = if split == 0 {
                    Vec::new()
                } else {
                    let mut first = Automerge::new();
                    first.apply_changes(changes[..split].to_vec()).unwrap();
                    first.get_heads()
                };
                let (read, rebuilt) = in_saved_and_rebuilt(&doc, &saved, &before);
                assert_eq!(
                    read.expect("read from the saved bytes"),
                    rebuilt,
                    "split {split}"
                );
            }
            // Saved with DEFLATE-compressed columns: left to Automerge.
            let compressed = doc.automerge().save();
            if compressed.len() < saved.len() {
                assert!(in_saved_and_rebuilt(&doc, &compressed, &[]).0.is_none());
            }
        }
        // The typical visit, as devices push it.
        let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        let doc = crate::fixtures::typical_visit_document("v-1", today, T0).unwrap();
        let saved = doc.automerge().save_nocompress();
        let (read, rebuilt) = in_saved_and_rebuilt(&doc, &saved, &[]);
        assert_eq!(read.unwrap(), rebuilt);
        // Its `save` compresses columns (the server's tests push it so, for the path that
        // rebuilds the changes).
        assert!(
            in_saved_and_rebuilt(&doc, &doc.automerge().save(), &[])
                .0
                .is_none()
        );
    }

    #[test]
    fn ops_that_no_change_holds_are_never_read_from_a_saved_document() {
        let (doc, _) = representative_visit();
        let saved = doc.automerge().save_nocompress();
        let meta = doc.automerge().get_changes_meta(&[]);
        let all: Vec<ChangeSpan<'_>> = meta.iter().map(|m| ChangeSpan::of(m, true)).collect();
        assert!(doc.touched_values_in_saved(&saved, &all).is_some());
        // A change left out: its ops belong to no change.
        for i in [0, meta.len() / 2, meta.len() - 1] {
            let mut fewer = all.clone();
            fewer.remove(i);
            assert!(
                doc.touched_values_in_saved(&saved, &fewer).is_none(),
                "change {i} left out"
            );
        }
        // A change whose counters do not match its ops: one too many, one too few.
        for (i, grow) in [(0, 1i64), (meta.len() - 1, 1), (meta.len() / 2, -1)] {
            let mut off = all.clone();
            off[i].max_op = off[i].max_op.saturating_add_signed(grow);
            assert!(
                doc.touched_values_in_saved(&saved, &off).is_none(),
                "change {i} {grow:+}"
            );
        }
        // Not a document chunk, cut short, or with bytes after its declared end changed.
        let change = doc.automerge().get_changes(&[])[0].raw_bytes().to_vec();
        assert!(doc.touched_values_in_saved(&change, &all).is_none());
        assert!(
            doc.touched_values_in_saved(&saved[..saved.len() / 2], &all)
                .is_none()
        );
        assert!(doc.touched_values_in_saved(&[], &all).is_none());
    }

    #[test]
    fn a_document_with_an_op_outside_its_changes_is_never_read_as_sound() {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        let doc = crate::fixtures::typical_visit_document("v-1", today, T0).unwrap();
        assert_eq!(doc.ops_outside_changes(), 0);
        let saved = doc.automerge().save_nocompress();
        let forged = crate::fixtures::with_an_op_outside_its_changes(&saved).unwrap();
        // Automerge loads it, with the op in its state and not in its changes.
        let forged = VisitDoc::from_automerge(Automerge::load(&forged).unwrap()).unwrap();
        assert_eq!(
            forged.automerge().stats().num_ops,
            doc.automerge().stats().num_ops
        );
        let in_changes: usize = forged
            .automerge()
            .get_changes(&[])
            .iter()
            .map(Change::len)
            .sum();
        let before: usize = doc
            .automerge()
            .get_changes(&[])
            .iter()
            .map(Change::len)
            .sum();
        assert_eq!(in_changes + 1, before);
        assert_eq!(forged.ops_outside_changes(), 1);
        let bytes = forged.automerge().save_nocompress();
        assert!(in_saved_and_rebuilt(&forged, &bytes, &[]).0.is_none());
        // Every split too (the op is outside every change, wanted or not).
        let heads = forged.automerge().get_changes(&[])[0].hash();
        assert!(in_saved_and_rebuilt(&forged, &bytes, &[heads]).0.is_none());
    }

    #[test]
    fn altered_saved_documents_are_read_as_automerge_rebuilds_them_or_not_at_all() {
        // Changed bytes that Automerge still loads: every op read from them is an op of
        // the changes Automerge rebuilds from them, or nothing is read.
        let alterations = alterations();
        let mut rng = crate::fixtures::Rng::new(11);
        let (mut loaded, mut read) = (0, 0);
        for (doc, _) in [representative_visit(), varied_changes()] {
            let saved = doc.automerge().save_nocompress();
            for _ in 0..alterations * 20 {
                let b = altered(&mut rng, &saved);
                // Automerge checks the chunk's checksum: alter the body, then mend it.
                let Some(b) = with_checksum(b) else { continue };
                let Ok(Ok(am)) = std::panic::catch_unwind(|| Automerge::load(&b)) else {
                    continue;
                };
                let Ok(altered) = VisitDoc::from_automerge(am) else {
                    continue;
                };
                let rebuilt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    in_saved_and_rebuilt(&altered, &b, &[])
                }));
                let Ok((from_bytes, rebuilt)) = rebuilt else {
                    continue;
                };
                loaded += 1;
                if let Some(from_bytes) = from_bytes {
                    read += 1;
                    assert_eq!(from_bytes, rebuilt);
                }
            }
        }
        println!("{loaded} loaded, {read} read from the bytes");
        assert!(loaded > 0 && read > 0, "{loaded} loaded, {read} read");
    }

    /// A document chunk with its checksum made right for its (altered) body: the first
    /// four bytes of the SHA-256 of the chunk type, length and body.
    fn with_checksum(mut b: Vec<u8>) -> Option<Vec<u8>> {
        use sha2::Digest;
        if b.len() < 10 || b[..4] != AUTOMERGE_MAGIC {
            return None;
        }
        let sum = sha2::Sha256::digest(&b[8..]);
        b[4..8].copy_from_slice(&sum[..4]);
        Some(b)
    }

    use crate::testutil::{sleb, uleb};

    /// A change chunk by actor `aa…` (other actors `others`) with the given columns
    /// (specification, bytes), written by hand.
    fn chunk(start_op: u64, others: &[ActorId], cols: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let mut body = Vec::new();
        uleb(&mut body, 0); // no dependencies
        uleb(&mut body, 16);
        body.extend([0xaa; 16]);
        uleb(&mut body, 1); // seq
        uleb(&mut body, start_op);
        sleb(&mut body, 0); // time
        uleb(&mut body, 0); // message
        uleb(&mut body, others.len() as u64);
        for a in others {
            uleb(&mut body, 16);
            body.extend(a.to_bytes());
        }
        uleb(&mut body, cols.len() as u64);
        for (spec, data) in cols {
            uleb(&mut body, *spec);
            uleb(&mut body, data.len() as u64);
        }
        for (_, data) in cols {
            body.extend(data);
        }
        let mut out = AUTOMERGE_MAGIC.to_vec();
        out.extend([0, 0, 0, 0, 1]);
        uleb(&mut out, body.len() as u64);
        out.extend(body);
        out
    }

    /// Run-length column bytes: `(n, value)` runs (`n < 0`: that many literal values
    /// follow; `n = 0`: a run of `value` nulls).
    fn runs(items: &[(i64, &[u64])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, values) in items {
            sleb(&mut out, *n);
            for v in *values {
                uleb(&mut out, *v);
            }
        }
        out
    }

    fn strings(items: &[(i64, &[&str])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, values) in items {
            sleb(&mut out, *n);
            for v in *values {
                if *n == 0 {
                    uleb(&mut out, v.parse().unwrap());
                } else {
                    uleb(&mut out, v.len() as u64);
                    out.extend(v.as_bytes());
                }
            }
        }
        out
    }

    #[test]
    fn ownership_diff_reads_unusual_but_valid_encodings_as_automerge_does() {
        let (doc, _) = representative_visit();
        let parse = |bytes: Vec<u8>| Change::from_bytes(bytes).unwrap();
        let actions = |n: u64| runs(&[(n as i64, &[1])]);
        // Ops on the actual section (made by the visit's first change, by actor `aa…`):
        // literal runs, an overlong LEB128 action, a null value with a length (which reads
        // no bytes), a string, a float, a counter and a timestamp.
        let ObjId::Id(actual, _, _) = root_obj(&doc, "actual") else {
            unreachable!()
        };
        let mut overlong = Vec::new();
        sleb(&mut overlong, 5);
        overlong.extend([0x81, 0x00]); // 1, in two bytes
        let mut raw = b"x".to_vec();
        raw.extend(2.5f64.to_le_bytes());
        let mut meta = Vec::new();
        sleb(&mut meta, -5);
        for m in [
            1 << 4,       // null, "1 byte" that it does not read
            (1 << 4) | 6, // "x"
            (8 << 4) | 5, // 2.5
            (1 << 4) | 8, // counter 3
            (1 << 4) | 9, // timestamp -2
        ] {
            uleb(&mut meta, m);
        }
        raw.push(3);
        raw.push(0x7e);
        let cols = vec![
            (0x01, runs(&[(5, &[0])])),
            (0x02, runs(&[(-2, &[actual, actual]), (3, &[actual])])),
            (
                0x15,
                strings(&[(-3, &["status", "in_at", "weird key"]), (2, &["in_lat"])]),
            ),
            (0x34, vec![5]), // five times false
            (0x42, overlong),
            (0x56, meta),
            (0x57, raw),
            (0x70, runs(&[(5, &[0])])),
        ];
        let bytes = chunk(1_000, &[], &cols);
        let c = parse(bytes);
        assert_eq!(c.len(), 5);
        assert!(agrees_with_automerge(&doc, std::slice::from_ref(&c)));
        assert_eq!(
            doc.touched_values_each(&[c]).unwrap()[0],
            [
                ("actual/status", "null"),
                ("actual/in_at", "\"x\""),
                ("actual/weird key", "2.5"),
                ("actual/in_lat", "\"Counter: 3\""),
                ("actual/in_lat", "\"Timestamp: -2\""),
            ]
            .map(|(p, v)| (p.to_string(), v.to_string()))
        );
        // An object counter without its actor column: Automerge takes every op for the
        // root. Left to Automerge.
        let cols = vec![
            (0x02, runs(&[(1, &[actual])])),
            (0x15, strings(&[(1, &["v"])])),
            (0x34, vec![1]),
            (0x42, actions(1)),
            (0x56, runs(&[(1, &[(1 << 4) | 3])])),
            (0x57, vec![1]),
            (0x70, runs(&[(1, &[0])])),
        ];
        let c = parse(chunk(1_000, &[], &cols));
        assert!(!agrees_with_automerge(&doc, std::slice::from_ref(&c)));
        assert_eq!(
            doc.touched_values_each(&[c]).unwrap()[0],
            [("v".to_string(), "1".to_string())]
        );
        // An object of an actor the change does not list: Automerge's decoding panics,
        // and so does the diff (as before).
        let cols = vec![
            (0x01, runs(&[(1, &[3])])),
            (0x02, runs(&[(1, &[actual])])),
            (0x15, strings(&[(1, &["status"])])),
            (0x34, vec![1]),
            (0x42, actions(1)),
            (0x56, runs(&[(1, &[0])])),
            (0x70, runs(&[(1, &[0])])),
        ];
        let c = parse(chunk(1_000, &[], &cols));
        assert!(!agrees_with_automerge(&doc, std::slice::from_ref(&c)));
        // A column repeated, or one Automerge does not write: left to Automerge.
        let mut odd_layouts = 0;
        for extra in [
            (0x15, strings(&[(1, &["status"])])),
            (0x25, strings(&[(1, &["x"])])),
        ] {
            let mut cols = vec![
                (0x01, runs(&[(1, &[0])])),
                (0x02, runs(&[(1, &[actual])])),
                (0x15, strings(&[(1, &["in_at"])])),
                (0x34, vec![1]),
                (0x42, actions(1)),
                (0x56, runs(&[(1, &[0])])),
                (0x70, runs(&[(1, &[0])])),
            ];
            cols.insert(5, extra);
            cols.sort_by_key(|(spec, _)| *spec);
            let c = parse(chunk(1_000, &[], &cols));
            assert!(!agrees_with_automerge(&doc, std::slice::from_ref(&c)));
            odd_layouts += 1;
        }
        assert_eq!(odd_layouts, 2);
        // A predecessor column far longer than the predecessors (Automerge reads as many
        // rows as the counts say): checked in one step, not row by row.
        let cols = vec![
            (0x15, strings(&[(1, &["flag"])])),
            (0x34, vec![1]),
            (0x42, actions(1)),
            (0x56, runs(&[(1, &[2])])),
            (0x70, runs(&[(1, &[1])])),
            (0x71, runs(&[(1 << 40, &[0])])),
            (0x73, runs(&[(1, &[3])])),
        ];
        let c = parse(chunk(1_000, &[], &cols));
        let started = std::time::Instant::now();
        assert!(agrees_with_automerge(&doc, std::slice::from_ref(&c)));
        assert!(started.elapsed().as_secs() < 5);
        // Another actor's object, a list element and a delete.
        let other = actor(0xbb);
        let cols = vec![
            (0x01, runs(&[(-2, &[1, 0])])),
            (0x02, runs(&[(-2, &[5, actual])])),
            (0x11, runs(&[(0, &[1]), (1, &[1])])),
            (0x13, runs(&[(0, &[1]), (1, &[7])])),
            (0x15, strings(&[(1, &["k"]), (0, &["1"])])),
            (0x34, vec![1, 1]), // false, true
            (0x42, runs(&[(-2, &[1, 3])])),
            (0x56, runs(&[(2, &[0])])),
            (0x70, runs(&[(-2, &[0, 1])])),
            (0x71, runs(&[(1, &[1])])),
            (0x73, runs(&[(1, &[7])])),
        ];
        let c = parse(chunk(1_000, &[other], &cols));
        assert!(agrees_with_automerge(&doc, std::slice::from_ref(&c)));
    }

    #[test]
    fn packed_documents_unpack_to_the_same_document_and_plain_bytes_pass_through() {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        let m = tx.put_object(ROOT, "lines", ObjType::Map).unwrap();
        for i in 0..200 {
            tx.put(&m, format!("p-{i}"), i64::from(i)).unwrap();
        }
        tx.commit();
        let plain = doc.save_nocompress();
        let packed = pack_document(&plain);
        assert!(packed.starts_with(&crate::zstd_frames::MAGIC));
        assert!(
            packed.len() < plain.len(),
            "{} of {} bytes",
            packed.len(),
            plain.len()
        );
        assert_eq!(unpack_document(&packed).unwrap().as_ref(), plain.as_slice());
        let loaded = Automerge::load(&unpack_document(&packed).unwrap()).unwrap();
        assert_eq!(loaded.get_heads(), doc.get_heads());
        // Automerge bytes (compressed or not) are returned as they are.
        let saved = doc.save();
        assert!(matches!(
            unpack_document(&saved).unwrap(),
            std::borrow::Cow::Borrowed(_)
        ));
        let mut broken = packed.clone();
        broken.truncate(packed.len() / 2);
        assert!(unpack_document(&broken).is_err());
        // A limit below the unpacked size refuses, by the frame's declared size or by
        // decoding (a frame that does not declare it).
        let e = unpack_document_within(&packed, plain.len() - 1).unwrap_err();
        assert!(e.to_string().contains("unpacks to more than"), "{e}");
        assert_eq!(
            unpack_document_within(&packed, plain.len())
                .unwrap()
                .as_ref(),
            &plain[..]
        );
        let mut z = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        z.include_contentsize(false).unwrap();
        std::io::Write::write_all(&mut z, &plain).unwrap();
        let undeclared = z.finish().unwrap();
        assert_eq!(unpack_document(&undeclared).unwrap().as_ref(), &plain[..]);
        let e = unpack_document_within(&undeclared, 100).unwrap_err();
        assert!(e.to_string().contains("unpacks to more than 100"), "{e}");
    }
}
