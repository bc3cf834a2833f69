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

/// The first bytes of a Zstandard frame (a document packed by [`pack_document`]; Automerge
/// bytes start with `85 6f 4a 83`).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Packs a document's saved bytes for storage: one Zstandard frame (level 1). Meant for
/// `Automerge::save_nocompress` output: a typical visit's uncompressed save (2.5 KB)
/// packs to 1.1 KB, smaller than `Automerge::save` (1.4 KB, whose DEFLATE of the columns
/// is ~88 % of its cost) at a tenth of the instructions. [`unpack_document`] reverses it;
/// both Automerge bytes and packed bytes load after it.
pub fn pack_document(automerge_bytes: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(automerge_bytes, 1).unwrap_or_else(|_| automerge_bytes.to_vec())
}

/// The Automerge bytes of stored document bytes: unpacked when [`pack_document`] packed
/// them, else as they are.
pub fn unpack_document(stored: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>> {
    unpack_document_within(stored, usize::MAX)
}

/// Like [`unpack_document`] for bytes from elsewhere: refuses to unpack to more than
/// `limit` bytes (without allocating more).
pub fn unpack_document_within(bytes: &[u8], limit: usize) -> Result<std::borrow::Cow<'_, [u8]>> {
    use std::io::Read as _;
    if !bytes.starts_with(&ZSTD_MAGIC) {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    let bad = |e: String| Error::Corrupt(format!("a packed document does not unpack: {e}"));
    let too_big = || bad(format!("it unpacks to more than {limit} bytes"));
    let out = match zstd::zstd_safe::get_frame_content_size(bytes) {
        Ok(Some(n)) => {
            let n = usize::try_from(n)
                .ok()
                .filter(|n| *n <= limit)
                .ok_or_else(too_big)?;
            zstd::bulk::decompress(bytes, n).map_err(|e| bad(e.to_string()))?
        }
        // No size in the frame header: decode up to the limit.
        _ => {
            let mut out = Vec::new();
            zstd::stream::read::Decoder::new(bytes)
                .map_err(|e| bad(e.to_string()))?
                .take(limit.saturating_add(1) as u64)
                .read_to_end(&mut out)
                .map_err(|e| bad(e.to_string()))?;
            if out.len() > limit {
                return Err(too_big());
            }
            out
        }
    };
    Ok(std::borrow::Cow::Owned(out))
}

/// Whether `doc` holds the change `hash` (applied, not merely queued). Cheap, unlike
/// `get_change_by_hash`, which rebuilds the change from the document's columns.
pub fn has_change(doc: &Automerge, hash: &ChangeHash) -> bool {
    doc.get_missing_deps(std::slice::from_ref(hash)).is_empty()
}

/// A visit's Automerge document.
#[derive(Debug, Clone)]
pub struct VisitDoc {
    doc: Automerge,
}

/// Every change's device time: per actor, (first op, last op, time) by first op.
struct ChangeTimes(HashMap<ActorId, Vec<(u64, u64, Millis)>>);

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
struct MapEntry {
    key: String,
    value: Value<'static>,
    id: ObjId,
    conflict: bool,
}

/// The entries of the document's map objects, by object.
type MapIndex = HashMap<ObjId, Vec<MapEntry>>;

/// A candidate value of a field: the scalar, the op that wrote it and its device time.
#[derive(Debug, Clone)]
struct Candidate {
    value: ScalarValue,
    id: automerge::ObjId,
    at: Millis,
}

fn op_key(id: &ObjId) -> (u64, Vec<u8>) {
    match id {
        ObjId::Root => (0, Vec::new()),
        ObjId::Id(counter, actor, _) => (*counter, actor.to_bytes().to_vec()),
    }
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
        match self.doc.get(ROOT, "v")? {
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
        let mut by_actor: HashMap<ActorId, Vec<(u64, u64, Millis)>> = HashMap::new();
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
        out.sort_by_key(|c| (c.at, op_key(&c.id)));
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
    fn map_index(&self) -> MapIndex {
        let mut out: MapIndex = HashMap::new();
        for item in self.doc.iter() {
            if let automerge::iter::DocItem::Map(m) = item.item {
                let id = m.id();
                out.entry((*item.obj).clone()).or_default().push(MapEntry {
                    key: m.key.to_string(),
                    conflict: m.conflict,
                    value: m.value.into_value(),
                    id,
                });
            }
        }
        out
    }

    /// The entries of the map `obj`: from `index`, or read now when the index lacks it
    /// (an object the document walk did not reach, e.g. a conflicting copy of a line).
    fn map_entries<'i>(&self, index: &'i MapIndex, obj: &ObjId) -> Cow<'i, [MapEntry]> {
        match index.get(obj) {
            Some(e) => Cow::Borrowed(e.as_slice()),
            None => Cow::Owned(
                self.doc
                    .map_range(obj, ..)
                    .map(|m| {
                        let id = m.id();
                        MapEntry {
                            key: m.key.to_string(),
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
    fn winners(&self, index: &MapIndex, obj: &ObjId) -> HashMap<String, ScalarValue> {
        let mut out = HashMap::new();
        for e in self.map_entries(index, obj).iter() {
            if let Value::Scalar(s) = &e.value {
                out.insert(e.key.clone(), s.as_ref().clone());
            }
        }
        out
    }

    /// The candidates of every key of the map `obj`: the winning value of a key, or all
    /// its values (`get_all`) when concurrent values exist.
    fn candidates_of(
        &self,
        index: &MapIndex,
        obj: &ObjId,
        out: &mut HashMap<String, Vec<Candidate>>,
        times: &ChangeTimes,
    ) -> Result<()> {
        for e in self.map_entries(index, obj).iter() {
            if e.conflict {
                let found = self.candidates(std::slice::from_ref(obj), &e.key, Some(times))?;
                out.entry(e.key.clone()).or_default().extend(found);
                continue;
            }
            if let Value::Scalar(s) = &e.value {
                let at = self.change_time(&e.id, Some(times));
                out.entry(e.key.clone()).or_default().push(Candidate {
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
    pub fn read(&self) -> Result<Visit> {
        let times = self.change_times();
        let index = self.map_index();
        let root: HashMap<&str, (&Value<'static>, &ObjId)> = index
            .get(&ROOT)
            .map(|es| {
                es.iter()
                    .map(|e| (e.key.as_str(), (&e.value, &e.id)))
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
        let mut plan_values = self.winners(&index, &section("plan")?);
        let mut actual_values = self.winners(&index, &section("actual")?);
        let mut p = |k: &'static str| Field::new(plan_values.remove(k), "plan", k);
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
        let mut a = |k: &str| Field {
            value: actual_values.remove(k),
            path: format!("actual/{k}"),
        };
        let status =
            VisitStatus::parse(&a("status").string()?.unwrap_or_else(|| "planned".into()))?;
        let id = match root.get("id") {
            Some((Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Str(s) => s.to_string(),
                _ => return Err(Error::Corrupt("visit document has no id".into())),
            },
            _ => return Err(Error::Corrupt("visit document has no id".into())),
        };
        let mut checkpoint = |prefix: &str| -> Result<Option<CheckPoint>> {
            let mut get = |s: &str| a(&format!("{prefix}_{s}"));
            let Some(at) = get("at").int()? else {
                return Ok(None);
            };
            Ok(Some(CheckPoint {
                at,
                position: GeoPoint {
                    lat: get("lat").float()?.unwrap_or(0.0),
                    lng: get("lng").float()?.unwrap_or(0.0),
                },
                distance_m: get("dist").float()?.unwrap_or(0.0),
                outside_geofence: get("out").bool()?.unwrap_or(false),
            }))
        };
        let check_in = checkpoint("in")?;
        let check_out = checkpoint("out")?;
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
        let mut survey = HashMap::new();
        self.candidates_of(&index, &section("survey")?, &mut survey, &times)?;
        for (qid, mut cs) in survey {
            cs.sort_by_key(|c| (c.at, op_key(&c.id)));
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
        let mut orders = HashMap::new();
        self.candidates_of(&index, &section("orders")?, &mut orders, &times)?;
        for (pid, mut cs) in orders {
            cs.sort_by_key(|c| (c.at, op_key(&c.id)));
            if let Some(c) = cs.pop() {
                let path = format!("orders/{pid}");
                let quantity = Field {
                    value: Some(c.value),
                    path,
                }
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
        index: &MapIndex,
        sec: &ObjId,
        section: &str,
        fields: &[&'static str],
        times: &ChangeTimes,
    ) -> Result<Vec<(String, LineFields)>> {
        let mut out = Vec::new();
        for e in self.map_entries(index, sec).iter() {
            let key = e.key.clone();
            let objs = if e.conflict {
                self.line_objects(sec, &key)?
            } else if matches!(e.value, Value::Object(ObjType::Map)) {
                vec![e.id.clone()]
            } else {
                Vec::new()
            };
            let mut found: HashMap<String, Vec<Candidate>> = HashMap::new();
            for obj in &objs {
                self.candidates_of(index, obj, &mut found, times)?;
            }
            let mut line = LineFields {
                values: HashMap::new(),
                latest: 0,
                prefix: format!("{section}/{key}"),
            };
            for f in fields {
                let Some(mut cs) = found.remove(*f) else {
                    continue;
                };
                cs.sort_by_key(|c| (c.at, op_key(&c.id)));
                if let Some(c) = cs.pop() {
                    line.latest = line.latest.max(c.at);
                    line.values.insert(f, c.value);
                }
            }
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
        let actors = self.section_any("actors").ok()?;
        let (Value::Object(_), obj) = self.doc.get(&actors, actor.to_hex_string()).ok()?? else {
            return None;
        };
        let s = |k: &str| match self.doc.get(&obj, k).ok()? {
            Some((Value::Scalar(v), _)) => v.as_str().map(str::to_string),
            _ => None,
        };
        Some(Author {
            user_id: s("u")?,
            device_id: s("d")?,
        })
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
                        out.insert(op_key(&id), child.clone());
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
    pub fn touched_values_each(&self, changes: &[Change]) -> Result<Vec<Vec<(String, String)>>> {
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
                objects = Some(self.object_paths()?);
            }
            let ops = self.expanded_ops(change, &expanded, &made, objects.as_ref());
            // Remember the objects this change made, for the changes after it.
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
    values: HashMap<&'static str, ScalarValue>,
    latest: Millis,
    prefix: String,
}

impl LineFields {
    fn take(&mut self, f: &'static str) -> Field {
        Field {
            value: self.values.remove(f),
            path: format!("{}/{f}", self.prefix),
        }
    }
}

/// One resolved scalar with its path, converted with type checks.
#[derive(Debug)]
struct Field {
    value: Option<ScalarValue>,
    path: String,
}

impl Field {
    fn new(value: Option<ScalarValue>, section: &str, key: &str) -> Self {
        Self {
            value,
            path: format!("{section}/{key}"),
        }
    }

    fn wrong(&self, expected: &str) -> Error {
        Error::Corrupt(format!("{} should be {expected}", self.path))
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
    use automerge::transaction::Transactable;

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
        assert!(packed.starts_with(&ZSTD_MAGIC));
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
