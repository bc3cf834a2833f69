//! A sanity check for Automerge change bytes that come from someone else — a device's push
//! on the server, the server's changes on a device — run before Automerge parses them.
//!
//! # Why
//!
//! Automerge 0.12 believes the counts written inside a change. Its column encoding is
//! run-length: "the next 2⁴⁰ rows hold this value" takes five bytes. Fuzzing found two ways
//! a few dozen bytes make [`Change::from_bytes`] allocate gigabytes:
//!
//! * a **bundle** chunk (type 3, several changes in one): `Change::from_bytes` parses the
//!   whole bundle, decoding its op-id column into a vector before it finds out the chunk is
//!   not a single change (`tests/fuzz/regressions/*/oom-*`: 30–277 bytes, a 2 GiB
//!   allocation and growing);
//! * a **change** chunk whose predecessor-count column says an op has 2⁴⁰ predecessors and
//!   whose predecessor columns are runs of that length: every predecessor is pushed into a
//!   vector while the change's ops are verified (71 bytes → 780 MB at 10⁸; a run of 10⁷
//!   actions in 69 bytes costs 1.8 s in `from_bytes` before anything is applied);
//!
//! and a third by reading: a **compressed** change chunk (type 2) is inflated without a bound,
//! so a 12 MiB push can inflate to about 12 GB.
//!
//! # What is checked
//!
//! [`check_change`] walks the chunk with its own decoder of the published binary format
//! (LEB128 integers, run-length, delta and boolean columns). Its cost is proportional to the
//! number of *bytes* — a run is counted by arithmetic, never expanded — and it allocates
//! nothing but the inflated copy of a compressed chunk, which is capped. It accepts only:
//!
//! * one chunk, the magic bytes first, of type *change* or *compressed change* (documents
//!   and bundles are refused), its declared length equal to the bytes that follow the header;
//! * a compressed chunk that inflates to at most [`MAX_CHANGE_BYTES`] (the size a change may
//!   have uncompressed);
//! * a change header whose dependency count, actor and message lengths fit in the bytes left;
//!   column lengths that add up to no more than the bytes left; no compressed column (a
//!   change may not have one);
//! * columns that decode to the end, and describe no more rows than the change has operations
//!   (the rows of its action column) — a predecessor actor or counter column no more rows than
//!   the predecessor counts add up to —, and value lengths that fit in the value column. A
//!   change written by Automerge always satisfies these (its columns have exactly one row per
//!   op, or are left out when every row is empty), so they cost a legitimate change nothing;
//! * at most [`MAX_OPS_PER_CHANGE`] operations and [`MAX_PREDS_PER_CHANGE`] predecessor
//!   references per change. The largest changes fieldsync writes — a visit's creation, a
//!   whole-assortment count — hold hundreds of ops; a 100,000-op change costs Automerge about
//!   25 MB and 0.15 s to apply.
//!
//! Beyond one change, an [`OpBudget`] caps the work of several: the server spends one per
//! sync request ([`MAX_WORK_PER_REQUEST`]), the device one per visit it applies
//! ([`MAX_WORK_PER_APPLY`]).
//!
//! [`parse_change`] is the one way foreign change bytes become a [`Change`]: the check, the
//! budget, then Automerge's parser under `catch_unwind` (it panics on some malformed columns,
//! found by fuzzing). Every refusal reads `not an Automerge change: …` or names the budget.

use automerge::Change;
use std::io::Read;

/// The largest change accepted, in bytes, after inflating a compressed one (the server's
/// default request body limit: a compressed change may not become larger than any change
/// that could have been sent uncompressed).
pub const MAX_CHANGE_BYTES: usize = 16 * 1024 * 1024;
/// The most operations one change may hold.
pub const MAX_OPS_PER_CHANGE: u64 = 100_000;
/// The most predecessor references (ops a change overwrites or deletes) one change may hold.
pub const MAX_PREDS_PER_CHANGE: u64 = 100_000;
/// Operations plus predecessor references the server parses and applies for one sync
/// request, all visits together (about 50 MB of Automerge's memory at most).
pub const MAX_WORK_PER_REQUEST: u64 = 250_000;
/// Operations plus predecessor references a device applies for one visit at once (a visit
/// entering the device's scope arrives whole).
pub const MAX_WORK_PER_APPLY: u64 = 1_000_000;

pub(crate) const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

// Column types (the low three bits of a column specification).
const GROUP: u32 = 0;
const ACTOR: u32 = 1;
const INTEGER: u32 = 2;
const DELTA: u32 = 3;
const BOOLEAN: u32 = 4;
const STRING: u32 = 5;
const VALUE_META: u32 = 6;
const VALUE: u32 = 7;
const DEFLATE_BIT: u32 = 0b1000;
/// The action column (id 4, integers): one row per operation.
const ACTION_SPEC: u32 = (4 << 4) | INTEGER;

/// What [`check_change`] found in a change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChangeShape {
    /// Operations (rows of the action column).
    pub ops: u64,
    /// Predecessor references (the predecessor counts added up).
    pub preds: u64,
    /// Bytes of the change as received.
    pub len: usize,
    /// Bytes of the change chunk after inflating (`len` for an uncompressed one).
    pub inflated_len: usize,
}

impl ChangeShape {
    /// What parsing and applying the change costs, in rows: operations plus predecessors.
    pub fn work(&self) -> u64 {
        self.ops + self.preds
    }
}

/// A cap on the work (operations plus predecessor references) of several changes.
#[derive(Clone, Debug)]
pub struct OpBudget {
    limit: u64,
    used: u64,
    overrun: bool,
}

impl OpBudget {
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            used: 0,
            overrun: false,
        }
    }

    /// The server's budget for one sync request.
    pub fn per_request() -> Self {
        Self::new(MAX_WORK_PER_REQUEST)
    }

    /// The device's budget for applying one visit's changes.
    pub fn per_apply() -> Self {
        Self::new(MAX_WORK_PER_APPLY)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn remaining(&self) -> u64 {
        self.limit - self.used
    }

    /// Whether a [`spend`](Self::spend) was refused.
    pub fn overrun(&self) -> bool {
        self.overrun
    }

    /// Spends `work`; refuses (spending nothing) when that would go over the limit.
    pub fn spend(&mut self, work: u64) -> Result<(), String> {
        match self.used.checked_add(work) {
            Some(total) if total <= self.limit => {
                self.used = total;
                Ok(())
            }
            _ => {
                self.overrun = true;
                Err(format!(
                    "too many operations at once: these changes hold more than {} operations and \
                 predecessor references together; send them in smaller batches",
                    self.limit
                ))
            }
        }
    }
}

/// Checks that `bytes` can be one Automerge change of bounded size (see the module
/// documentation) without running Automerge's parser. Errors read
/// `not an Automerge change: …`.
pub fn check_change(bytes: &[u8]) -> Result<ChangeShape, String> {
    check_chunk(bytes).map_err(|e| format!("not an Automerge change: {e}"))
}

/// Parses change bytes from another party: [`check_change`], `budget`, then
/// [`Change::from_bytes`] (whose panics become an error).
pub fn parse_change(bytes: Vec<u8>, budget: &mut OpBudget) -> Result<Change, String> {
    let shape = check_change(&bytes)?;
    budget.spend(shape.work())?;
    let parsed = std::panic::catch_unwind(|| Change::from_bytes(bytes))
        .map_err(|_| "not an Automerge change: malformed columns".to_string())?
        .map_err(|e| format!("not an Automerge change: {e}"))?;
    // The check's row count bounds what Automerge verified; a disagreement means the two
    // decoders read the bytes differently, and the check cannot vouch for them.
    if parsed.len() as u64 > shape.ops {
        return Err(format!(
            "not an Automerge change: {} operations where the columns describe {}",
            parsed.len(),
            shape.ops
        ));
    }
    Ok(parsed)
}

/// One chunk's envelope, checked in order: at most `max` bytes (`what` names the kind in
/// the error), the magic bytes, the checksum's room, the chunk type (`kind` refuses the
/// wrong ones), the declared length, and nothing after the chunk. Returns the type and the
/// body. Shared with [`super::doc_check`].
pub(crate) fn open_chunk<'a>(
    bytes: &'a [u8],
    max: usize,
    what: &str,
    kind: impl Fn(u8) -> Result<(), String>,
) -> Result<(u8, &'a [u8]), String> {
    if bytes.len() > max {
        return Err(format!(
            "{} bytes, more than the {max} a {what} may have",
            bytes.len()
        ));
    }
    let mut r = Reader::new(bytes);
    if r.take(4, "the magic bytes")? != MAGIC {
        return Err("it does not start with the Automerge magic bytes".into());
    }
    r.take(4, "the checksum")?;
    let k = r.byte("the chunk type")?;
    kind(k)?;
    let declared = r.uleb("the chunk length")?;
    let body = r.take(declared, "the chunk")?;
    if !r.is_empty() {
        return Err(format!("{} bytes after the end of the chunk", r.left()));
    }
    Ok((k, body))
}

fn check_chunk(bytes: &[u8]) -> Result<ChangeShape, String> {
    let (kind, body) = open_chunk(bytes, MAX_CHANGE_BYTES, "change", |k| match k {
        1 | 2 => Ok(()),
        0 => Err("a whole document, not a change".into()),
        3 => Err("a bundle of changes, not a single change".into()),
        k => Err(format!("unknown chunk type {k}")),
    })?;
    let header = bytes.len() - body.len();
    let mut shape = if kind == 1 {
        let mut s = check_body(body)?;
        s.inflated_len = bytes.len();
        s
    } else {
        // A compressed change: inflated at most to the size a change may have.
        let limit = MAX_CHANGE_BYTES.saturating_sub(header);
        let mut inflated = Vec::new();
        flate2::read::DeflateDecoder::new(body)
            .take(limit as u64 + 1)
            .read_to_end(&mut inflated)
            .map_err(|e| format!("its compressed data is corrupt ({e})"))?;
        if inflated.len() > limit {
            return Err(format!(
                "it inflates to more than the {MAX_CHANGE_BYTES} bytes a change may have"
            ));
        }
        let mut s = check_body(&inflated)?;
        s.inflated_len = header + inflated.len();
        s
    };
    shape.len = bytes.len();
    Ok(shape)
}

struct Column<'a> {
    spec: u32,
    data: &'a [u8],
}

impl Column<'_> {
    fn id(&self) -> u32 {
        self.spec >> 4
    }
    fn kind(&self) -> u32 {
        self.spec & 0b111
    }
}

/// The body of a change chunk: header fields, column metadata, column data, extra bytes.
fn check_body(body: &[u8]) -> Result<ChangeShape, String> {
    let mut r = Reader::new(body);
    let deps = r.uleb("the dependency count")?;
    r.take(deps.saturating_mul(32), "the dependencies")?;
    let actor = r.uleb("the actor length")?;
    r.take(actor, "the actor")?;
    r.uleb("the sequence number")?;
    r.uleb("the start op")?;
    r.sleb("the timestamp")?;
    let message = r.uleb("the message length")?;
    r.take(message, "the message")?;
    let others = r.uleb("the actor count")?;
    if others > r.left() as u64 {
        return Err(format!("{others} actors declared in {} bytes", r.left()));
    }
    for _ in 0..others {
        let len = r.uleb("an actor length")?;
        r.take(len, "an actor")?;
    }
    let count = r.uleb("the column count")?;
    // Each column's metadata takes at least two bytes.
    if count > (r.left() / 2) as u64 {
        return Err(format!("{count} columns declared in {} bytes", r.left()));
    }
    let mut meta = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let spec = r.uleb("a column specification")?;
        let spec =
            u32::try_from(spec).map_err(|_| format!("column specification {spec} out of range"))?;
        let len = r.uleb("a column length")?;
        meta.push((spec, len));
    }
    let total = meta
        .iter()
        .try_fold(0u64, |sum, (_, len)| sum.checked_add(*len))
        .ok_or("column lengths overflow")?;
    let mut data = Reader::new(r.take(total, "the column data")?);
    let mut columns = Vec::with_capacity(meta.len());
    for (spec, len) in meta {
        if spec & DEFLATE_BIT != 0 {
            return Err(format!(
                "column {} is compressed, which a change's columns may not be",
                spec >> 4
            ));
        }
        columns.push(Column {
            spec,
            data: data.take(len, "a column")?,
        });
    }
    // The rest of the body is the change's extra bytes (no structure to check).

    let ops = match columns.iter().find(|c| c.spec == ACTION_SPEC) {
        Some(c) => rows(c, MAX_OPS_PER_CHANGE, "operations a change may hold")?.rows,
        None => 0,
    };
    // Group columns (predecessor counts) first: their sums bound their member columns.
    let mut groups: Vec<(u32, u64)> = Vec::new();
    for c in columns.iter().filter(|c| c.kind() == GROUP) {
        let g = rows(c, ops, "operations in the change")?;
        groups.push((c.id(), g.sum));
    }
    let preds = groups
        .iter()
        .try_fold(0u64, |sum, (_, s)| sum.checked_add(*s))
        .filter(|p| *p <= MAX_PREDS_PER_CHANGE)
        .ok_or_else(|| {
            format!("more than the {MAX_PREDS_PER_CHANGE} predecessor references a change may hold")
        })?;
    for c in &columns {
        match c.kind() {
            GROUP => {}
            VALUE => {
                // Raw bytes, sliced by the lengths of the metadata column with the same id.
                let meta = columns
                    .iter()
                    .find(|m| m.id() == c.id() && m.kind() == VALUE_META);
                if meta.is_none() && !c.data.is_empty() {
                    return Err(format!("value column {} has no metadata column", c.id()));
                }
            }
            _ => {
                let (limit, what) = match groups.iter().find(|(id, _)| *id == c.id()) {
                    Some((_, sum)) => (*sum, "predecessor references in the change"),
                    None => (ops, "operations in the change"),
                };
                let facts = rows(c, limit, what)?;
                if c.kind() == VALUE_META {
                    let raw = columns
                        .iter()
                        .find(|v| v.id() == c.id() && v.kind() == VALUE)
                        .map_or(0, |v| v.data.len() as u64);
                    if facts.sum > raw {
                        return Err(format!(
                            "values of {} bytes declared in column {}, which holds {raw}",
                            facts.sum,
                            c.id()
                        ));
                    }
                }
            }
        }
    }
    Ok(ChangeShape {
        ops,
        preds,
        len: body.len(),
        inflated_len: body.len(),
    })
}

/// Rows a column describes, and for group and value-metadata columns the sum of the counts
/// or lengths it holds.
#[derive(Default)]
struct ColumnFacts {
    rows: u64,
    sum: u64,
}

/// Decodes a column to its end, counting rows without expanding runs; fails as soon as it
/// describes more than `limit` rows.
fn rows(c: &Column<'_>, limit: u64, what: &str) -> Result<ColumnFacts, String> {
    let mut r = Reader::new(c.data);
    let mut f = ColumnFacts::default();
    let too_many = || {
        format!(
            "column {} (type {}) describes more rows than the {limit} {what}",
            c.id(),
            c.kind()
        )
    };
    let add_rows = |f: &mut ColumnFacts, n: u64| -> Result<(), String> {
        f.rows = f
            .rows
            .checked_add(n)
            .filter(|t| *t <= limit)
            .ok_or_else(too_many)?;
        Ok(())
    };
    match c.kind() {
        BOOLEAN => {
            // Alternating run lengths, starting with false.
            while !r.is_empty() {
                let n = r.uleb("a boolean run")?;
                add_rows(&mut f, n)?;
            }
        }
        GROUP | ACTOR | INTEGER | DELTA | STRING | VALUE_META => {
            while !r.is_empty() {
                let run = r.sleb("a run length")?;
                if run > 0 {
                    let n = run as u64;
                    add_rows(&mut f, n)?;
                    let v = value(&mut r, c.kind())?;
                    sum_up(&mut f, c.kind(), n, v)?;
                } else if run < 0 {
                    let n = run.unsigned_abs();
                    // Each literal takes at least one byte.
                    if n > r.left() as u64 {
                        return Err(format!(
                            "column {}: {n} literal values declared in {} bytes",
                            c.id(),
                            r.left()
                        ));
                    }
                    add_rows(&mut f, n)?;
                    for _ in 0..n {
                        let v = value(&mut r, c.kind())?;
                        sum_up(&mut f, c.kind(), 1, v)?;
                    }
                } else {
                    let n = r.uleb("a null run length")?;
                    add_rows(&mut f, n)?;
                }
            }
        }
        _ => {
            return Err(format!(
                "column {}: raw values are not counted in rows",
                c.id()
            ));
        }
    }
    Ok(f)
}

/// Reads one value of a run-length column; the number for group counts and value metadata.
fn value(r: &mut Reader<'_>, kind: u32) -> Result<u64, String> {
    match kind {
        DELTA => r.sleb("a delta").map(|_| 0),
        STRING => {
            let len = r.uleb("a string length")?;
            r.take(len, "a string").map(|_| 0)
        }
        _ => r.uleb("a value"),
    }
}

fn sum_up(f: &mut ColumnFacts, kind: u32, n: u64, v: u64) -> Result<(), String> {
    let add = match kind {
        GROUP => n.checked_mul(v),
        // Value metadata: the length in bytes above the four type bits.
        VALUE_META => n.checked_mul(v >> 4),
        _ => return Ok(()),
    };
    f.sum = add
        .and_then(|a| f.sum.checked_add(a))
        .ok_or("counts overflow")?;
    Ok(())
}

/// A cursor over bytes whose every read is checked against what is left (also used by
/// [`super::doc_check`]).
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn left(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn byte(&mut self, what: &str) -> Result<u8, String> {
        let (&b, rest) = self
            .buf
            .split_first()
            .ok_or_else(|| format!("it ends before {what}"))?;
        self.buf = rest;
        Ok(b)
    }

    pub(crate) fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], String> {
        if n > self.buf.len() as u64 {
            return Err(format!(
                "{what} needs {n} bytes, {} are left",
                self.buf.len()
            ));
        }
        let (head, rest) = self.buf.split_at(n as usize);
        self.buf = rest;
        Ok(head)
    }

    /// Unsigned LEB128, at most 64 bits.
    pub(crate) fn uleb(&mut self, what: &str) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte(what)?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(format!("{what} overflows 64 bits"));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("{what} overflows 64 bits"))
    }

    /// Signed LEB128, at most 64 bits.
    pub(crate) fn sleb(&mut self, what: &str) -> Result<i64, String> {
        let mut v = 0i64;
        for shift in (0..64).step_by(7) {
            let b = self.byte(what)?;
            let bits = i64::from(b & 0x7f);
            if shift == 63 && bits != 0 && bits != 0x7f {
                return Err(format!("{what} overflows 64 bits"));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                if shift < 57 && b & 0x40 != 0 {
                    v |= -1i64 << (shift + 7);
                }
                return Ok(v);
            }
        }
        Err(format!("{what} overflows 64 bits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{ActorId, AutoCommit, Automerge, ObjType, ROOT, ScalarValue};

    use crate::testutil::{sleb, uleb};

    /// A change chunk with the given columns (spec, data), written by hand.
    fn chunk(kind: u8, cols: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let mut body = Vec::new();
        uleb(&mut body, 0); // no dependencies
        uleb(&mut body, 16);
        body.extend([9u8; 16]);
        uleb(&mut body, 1); // seq
        uleb(&mut body, 1); // start op
        sleb(&mut body, 0); // time
        uleb(&mut body, 0); // message
        uleb(&mut body, 0); // other actors
        uleb(&mut body, cols.len() as u64);
        for (spec, data) in cols {
            uleb(&mut body, u64::from(*spec));
            uleb(&mut body, data.len() as u64);
        }
        for (_, data) in cols {
            body.extend(data);
        }
        let mut out = MAGIC.to_vec();
        out.extend([0, 0, 0, 0, kind]);
        uleb(&mut out, body.len() as u64);
        out.extend(body);
        out
    }

    fn run(n: i64, v: u64) -> Vec<u8> {
        let mut o = Vec::new();
        sleb(&mut o, n);
        uleb(&mut o, v);
        o
    }

    fn delta_run(n: i64, v: i64) -> Vec<u8> {
        let mut o = Vec::new();
        sleb(&mut o, n);
        sleb(&mut o, v);
        o
    }

    fn bools(runs: &[u64]) -> Vec<u8> {
        let mut o = Vec::new();
        for r in runs {
            uleb(&mut o, *r);
        }
        o
    }

    fn strings(n: i64, s: &str) -> Vec<u8> {
        let mut o = Vec::new();
        sleb(&mut o, n);
        uleb(&mut o, s.len() as u64);
        o.extend(s.as_bytes());
        o
    }

    /// `n` ops setting key "k" to null; each op has `preds` predecessors.
    fn crafted(n: u64, preds: u64) -> Vec<u8> {
        let mut cols = vec![
            (0x15, strings(n as i64, "k")),
            (0x34, bools(&[n])),
            (ACTION_SPEC, run(n as i64, 1)),
            (0x56, run(n as i64, 0)),
            (0x70, run(n as i64, preds)),
        ];
        if preds > 0 {
            let total = (n * preds) as i64;
            cols.push((0x71, run(total, 0)));
            cols.push((0x73, delta_run(total, 1)));
        }
        chunk(1, &cols)
    }

    fn changes_of(doc: &Automerge) -> Vec<Change> {
        doc.get_changes(&[])
    }

    /// Every kind of op Automerge writes: map puts, nested objects, lists, text with marks,
    /// counters, deletes, conflicts (several predecessors), an empty change with a message.
    fn varied_document() -> Automerge {
        let mut a = AutoCommit::new().with_actor(ActorId::from(&[1u8; 16][..]));
        let m = a.put_object(ROOT, "lines", ObjType::Map).unwrap();
        for i in 0..300 {
            a.put(&m, format!("p-{i}"), i64::from(i)).unwrap();
        }
        a.put(ROOT, "flag", true).unwrap();
        a.put(ROOT, "ratio", 0.25).unwrap();
        a.put(ROOT, "bytes", ScalarValue::Bytes(vec![1, 2, 3]))
            .unwrap();
        a.put(ROOT, "n", ScalarValue::counter(1)).unwrap();
        a.commit();
        a.increment(ROOT, "n", 5).unwrap();
        let t = a.put_object(ROOT, "notes", ObjType::Text).unwrap();
        a.splice_text(&t, 0, 0, &"field notes ".repeat(200))
            .unwrap();
        a.commit();
        a.splice_text(&t, 10, 1500, "").unwrap();
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
        a.commit();
        a.delete(&m, "p-7").unwrap();
        a.commit_with(automerge::transaction::CommitOptions::default().with_message("m"));
        a.commit_with(
            automerge::transaction::CommitOptions::default()
                .with_message("empty")
                .with_time(5),
        );
        let mut b = a.fork().with_actor(ActorId::from(&[2u8; 16][..]));
        let mut c = a.fork().with_actor(ActorId::from(&[3u8; 16][..]));
        b.put(&m, "p-1", "b").unwrap();
        c.put(&m, "p-1", "c").unwrap();
        b.commit();
        c.commit();
        a.merge(&mut b).unwrap();
        a.merge(&mut c).unwrap();
        // Overwrites the two conflicting values: an op with two predecessors.
        a.put(&m, "p-1", "a").unwrap();
        a.commit();
        a.document().clone()
    }

    #[test]
    fn every_change_automerge_writes_passes_with_its_exact_op_count() {
        let doc = varied_document();
        let mut seen_preds = false;
        for mut c in changes_of(&doc) {
            for bytes in [c.raw_bytes().to_vec(), c.bytes().to_vec()] {
                let shape = check_change(&bytes).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(shape.ops, c.len() as u64, "{:?}", c.hash());
                seen_preds |= shape.preds >= 2;
                let mut budget = OpBudget::new(u64::MAX);
                let parsed = parse_change(bytes, &mut budget).unwrap();
                assert_eq!(parsed.hash(), c.hash());
                assert_eq!(budget.used(), shape.work());
            }
        }
        assert!(seen_preds, "the conflict overwrite was not exercised");
        // Compressed chunks were exercised (changes over 256 bytes are deflated).
        assert!(
            changes_of(&doc).iter_mut().any(|c| c.bytes()[8] == 2),
            "no compressed change"
        );
    }

    #[test]
    fn a_large_legitimate_change_passes() {
        let mut a = AutoCommit::new();
        let m = a.put_object(ROOT, "lines", ObjType::Map).unwrap();
        for i in 0..20_000 {
            a.put(&m, format!("p-{i}"), i64::from(i)).unwrap();
            a.put(&m, format!("q-{i}"), "x").unwrap();
        }
        a.commit();
        for mut c in changes_of(a.document()) {
            let shape = check_change(&c.bytes()).unwrap();
            assert_eq!(shape.ops, c.len() as u64);
        }
    }

    #[test]
    fn hand_written_change_matches_automerge() {
        // The encoder of these tests agrees with Automerge's decoder.
        for (n, p) in [(1, 0), (3, 1), (40, 2)] {
            let bytes = crafted(n, p);
            let shape = check_change(&bytes).unwrap();
            assert_eq!((shape.ops, shape.preds), (n, n * p));
            let c = Change::from_bytes(bytes).unwrap();
            assert_eq!(c.len() as u64, n);
        }
    }

    fn refused(bytes: &[u8], says: &str) {
        let start = std::time::Instant::now();
        let e = check_change(bytes).unwrap_err();
        assert!(e.starts_with("not an Automerge change: "), "{e}");
        assert!(e.contains(says), "{e:?} should say {says:?}");
        let mut budget = OpBudget::new(u64::MAX);
        assert_eq!(parse_change(bytes.to_vec(), &mut budget).unwrap_err(), e);
        assert_eq!(budget.used(), 0);
        assert!(start.elapsed().as_secs() < 2, "took {:?}", start.elapsed());
    }

    #[test]
    fn counts_far_beyond_the_bytes_are_refused_before_parsing() {
        // 2^40 predecessors of one op: Automerge would push them all into a vector.
        refused(&crafted(1, 1 << 40), "predecessor references");
        // 2^40 operations in 60 bytes.
        refused(&crafted(1 << 40, 0), "operations a change may hold");
        refused(
            &crafted(MAX_OPS_PER_CHANGE + 1, 0),
            "operations a change may hold",
        );
        refused(&crafted(2, MAX_PREDS_PER_CHANGE), "predecessor references");
        // A column with more rows than the change has ops.
        refused(
            &chunk(
                1,
                &[
                    (0x15, strings(1 << 50, "k")),
                    (0x34, bools(&[1])),
                    (ACTION_SPEC, run(1, 1)),
                    (0x56, run(1, 0)),
                    (0x70, run(1, 0)),
                ],
            ),
            "column 1 (type 5) describes more rows than the 1 operations",
        );
        // Predecessor columns longer than the counts say.
        refused(
            &chunk(
                1,
                &[
                    (0x15, strings(1, "k")),
                    (0x34, bools(&[1])),
                    (ACTION_SPEC, run(1, 1)),
                    (0x56, run(1, 0)),
                    (0x70, run(1, 1)),
                    (0x71, run(1 << 40, 0)),
                    (0x73, delta_run(1, 1)),
                ],
            ),
            "predecessor references in the change",
        );
        // A null run and a boolean run of 2^60.
        let mut nulls = Vec::new();
        sleb(&mut nulls, 0);
        uleb(&mut nulls, 1 << 60);
        refused(
            &chunk(1, &[(0x15, nulls), (ACTION_SPEC, run(1, 1))]),
            "describes more rows",
        );
        refused(
            &chunk(1, &[(0x34, bools(&[0, 1 << 60])), (ACTION_SPEC, run(1, 1))]),
            "describes more rows",
        );
        // Literal runs longer than the bytes.
        let mut lit = Vec::new();
        sleb(&mut lit, -(1 << 40));
        uleb(&mut lit, 1);
        refused(&chunk(1, &[(ACTION_SPEC, lit)]), "literal values declared");
        // A value longer than the value column.
        refused(
            &chunk(
                1,
                &[(ACTION_SPEC, run(1, 1)), (0x56, run(1, (1 << 40) << 4 | 6))],
            ),
            "values of",
        );
    }

    #[test]
    fn other_chunks_and_broken_envelopes_are_refused() {
        let doc = varied_document();
        refused(&doc.save(), "a whole document");
        let mut bundle = crafted(1, 0);
        bundle[8] = 3;
        refused(&bundle, "a bundle of changes");
        let mut unknown = crafted(1, 0);
        unknown[8] = 9;
        refused(&unknown, "unknown chunk type 9");
        refused(b"definitely not automerge", "magic bytes");
        refused(&MAGIC, "the checksum needs 4 bytes, 0 are left");
        let good = crafted(3, 1);
        refused(&good[..good.len() - 1], "the chunk needs");
        let mut trailing = good.clone();
        trailing.push(0);
        refused(&trailing, "1 bytes after the end of the chunk");
        // A huge dependency count in a short change.
        let mut deps = good[..10].to_vec();
        deps[9] = 6;
        deps.extend([0xff, 0xff, 0xff, 0x0f, 0, 0]);
        refused(&deps, "the dependencies needs");
        // A compressed column.
        refused(
            &chunk(1, &[(ACTION_SPEC | DEFLATE_BIT, run(1, 1))]),
            "is compressed",
        );
        // A 65-bit integer.
        refused(
            &chunk(1, &[(ACTION_SPEC, vec![0xff; 11])]),
            "overflows 64 bits",
        );
        refused(
            &vec![0u8; MAX_CHANGE_BYTES + 1],
            "more than the 16777216 a change may have",
        );
    }

    #[test]
    fn a_deflate_bomb_is_refused_without_inflating_it_all() {
        let mut body = Vec::new();
        let mut z = flate2::write::DeflateEncoder::new(&mut body, flate2::Compression::best());
        std::io::Write::write_all(&mut z, &vec![0u8; MAX_CHANGE_BYTES + 4096]).unwrap();
        z.finish().unwrap();
        assert!(body.len() < 64 * 1024);
        let mut bomb = MAGIC.to_vec();
        bomb.extend([0, 0, 0, 0, 2]);
        uleb(&mut bomb, body.len() as u64);
        bomb.extend(&body);
        refused(&bomb, "inflates to more than");
        let mut corrupt = MAGIC.to_vec();
        corrupt.extend([0, 0, 0, 0, 2, 3, 0xff, 0xff, 0xff]);
        refused(&corrupt, "compressed data is corrupt");
    }

    #[test]
    fn the_budget_counts_ops_and_predecessors() {
        let mut budget = OpBudget::new(100);
        let bytes = crafted(40, 1);
        parse_change(bytes.clone(), &mut budget).unwrap();
        assert_eq!(budget.used(), 80);
        let e = parse_change(bytes, &mut budget).unwrap_err();
        assert!(e.starts_with("too many operations at once"), "{e}");
        assert!(budget.overrun());
        assert_eq!((budget.used(), budget.remaining()), (80, 20));
        parse_change(crafted(10, 1), &mut budget).unwrap();
        assert_eq!(budget.remaining(), 0);
    }

    #[test]
    fn leb128_edges() {
        for v in [0u64, 1, 127, 128, 300, u64::MAX >> 1, u64::MAX] {
            let mut o = Vec::new();
            uleb(&mut o, v);
            assert_eq!(Reader::new(&o).uleb("x").unwrap(), v);
        }
        for v in [0i64, 1, -1, 63, -64, 64, -65, i64::MAX, i64::MIN] {
            let mut o = Vec::new();
            sleb(&mut o, v);
            assert_eq!(Reader::new(&o).sleb("x").unwrap(), v, "{v}");
        }
        assert!(Reader::new(&[0xff; 9]).uleb("x").is_err());
        assert!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])
                .uleb("x")
                .is_err()
        );
    }
}
