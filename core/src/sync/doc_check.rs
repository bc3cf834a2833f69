//! A sanity check for whole Automerge documents from the server (the `documents` sync
//! feature), run before Automerge parses them: the counterpart for document chunks of
//! [`super::guard`], which checks single changes and refuses documents.
//!
//! A document chunk holds run-length columns like a change, in two groups (the changes'
//! metadata and the ops), and any column may be DEFLATE-compressed. The same few bytes
//! that make a change declare 2⁴⁰ rows make a document do so, and a compressed column may
//! inflate without bound. [`check_document`] walks the envelope and every column with its
//! own decoder: the cost is proportional to the bytes (runs are counted, never expanded),
//! compressed columns are inflated up to a cap, and a column describing more rows than the
//! limit is refused. It accepts only:
//!
//! * one chunk of type *document*, the magic bytes first, its declared length equal to the
//!   bytes after the header, at most [`MAX_DOCUMENT_BYTES`];
//! * actor, head and column counts that fit in the bytes left; column lengths that add up
//!   to no more than the bytes left;
//! * columns that decode to their end, no column with more rows than `limit`, predecessor
//!   and dependency counts (group columns) adding up to no more than `limit`, value lengths
//!   that fit in their value column, and all compressed columns together inflating to at
//!   most [`MAX_DOCUMENT_BYTES`].
//!
//! What it does not check is what Automerge checks itself when it loads (the checksum, the
//! heads recomputed from the changes, the ops' references).

use super::guard::{Reader, open_chunk};
use automerge::ChangeHash;
use std::borrow::Cow;
use std::io::Read;

/// The largest document accepted, and the most its compressed columns may inflate to.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;
/// The most rows (operations, changes, predecessors) a document may describe in any one
/// column: the device's limit for one visit applied at once
/// (`guard::MAX_WORK_PER_APPLY`, 10⁶).
pub const MAX_DOCUMENT_ROWS: u64 = 1_000_000;

const GROUP: u32 = 0;
const ACTOR: u32 = 1;
const DELTA: u32 = 3;
const BOOLEAN: u32 = 4;
const STRING: u32 = 5;
const VALUE_META: u32 = 6;
const VALUE: u32 = 7;
const DEFLATE_BIT: u32 = 0b1000;

/// What [`check_document`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocumentShape {
    /// The most rows of any column (about the number of operations).
    pub rows: u64,
    /// Bytes after inflating the compressed columns.
    pub inflated_len: usize,
    /// The heads the document records for itself (Automerge checks them against the
    /// changes when it loads the document).
    pub heads: Vec<ChangeHash>,
    /// How many changes it holds (the rows of its changes' actor column).
    pub changes: u64,
}

/// Whether the checksum of `document` (a chunk [`check_document`] accepted) is right:
/// the first 4 bytes of the SHA-256 of what follows them (type, length, body), as
/// Automerge checks when it loads a document.
pub fn checksum_ok(document: &[u8]) -> bool {
    use sha2::Digest as _;
    document.len() >= 8 && sha2::Sha256::digest(&document[8..])[..4] == document[4..8]
}

/// Checks that `bytes` can be one Automerge document whose columns describe at most
/// `limit` rows each (see the module docs), without running Automerge's parser. Errors
/// read `not an Automerge document: …`.
pub fn check_document(bytes: &[u8], limit: u64) -> Result<DocumentShape, String> {
    check(bytes, limit).map_err(|e| format!("not an Automerge document: {e}"))
}

/// What [`checked_document`] found.
#[derive(Debug)]
pub struct CheckedDocument<'a> {
    /// The Automerge bytes (unpacked when they came packed).
    pub bytes: Cow<'a, [u8]>,
    /// The heads declared with the document.
    pub heads: Vec<ChangeHash>,
    pub shape: DocumentShape,
}

/// A whole document from the other side of a sync (`VisitDocument`: the server's to a
/// device, a device's to the server), checked before Automerge parses it: unpacked when
/// it came packed ([`crate::document::pack_document`], to at most `max_bytes`), walked by
/// [`check_document`] with `max_rows`, and its declared heads parsed. Returns the
/// Automerge bytes, the heads and the shape.
pub fn checked_document<'a>(
    doc: &'a [u8],
    heads: &[String],
    max_bytes: usize,
    max_rows: u64,
) -> Result<CheckedDocument<'a>, String> {
    let heads = heads
        .iter()
        .map(|h| h.parse().map_err(|_| format!("bad head {h:?}")))
        .collect::<Result<_, _>>()?;
    let plain =
        crate::document::unpack_document_within(doc, max_bytes).map_err(|e| e.to_string())?;
    let shape = check_document(&plain, max_rows)?;
    Ok(CheckedDocument {
        bytes: plain,
        heads,
        shape,
    })
}

fn check(bytes: &[u8], limit: u64) -> Result<DocumentShape, String> {
    let (_, body) = open_chunk(bytes, MAX_DOCUMENT_BYTES, "document", |k| match k {
        0 => Ok(()),
        1 | 2 => Err("a change, not a whole document".into()),
        3 => Err("a bundle of changes, not a whole document".into()),
        k => Err(format!("unknown chunk type {k}")),
    })?;
    let mut r = Reader::new(body);
    let actors = r.uleb("the actor count")?;
    if actors > r.left() as u64 {
        return Err(format!("{actors} actors declared in {} bytes", r.left()));
    }
    for _ in 0..actors {
        let len = r.uleb("an actor length")?;
        r.take(len, "an actor")?;
    }
    let heads = r.uleb("the head count")?;
    let heads = r.take(heads.saturating_mul(32), "the heads")?;
    let change_meta = column_meta(&mut r)?;
    let op_meta = column_meta(&mut r)?;
    let mut inflated_total = 0usize;
    let mut shape = DocumentShape {
        heads: heads
            .chunks_exact(32)
            .map(|h| ChangeHash(h.try_into().expect("32 bytes")))
            .collect(),
        ..DocumentShape::default()
    };
    for (group, meta) in [change_meta, op_meta].into_iter().enumerate() {
        let total = meta
            .iter()
            .try_fold(0u64, |sum, (_, len)| sum.checked_add(*len))
            .ok_or("column lengths overflow")?;
        let mut data = Reader::new(r.take(total, "the column data")?);
        let mut columns: Vec<(u32, Vec<u8>)> = Vec::with_capacity(meta.len());
        for (spec, len) in meta {
            let raw = data.take(len, "a column")?;
            let bytes = if spec & DEFLATE_BIT != 0 {
                let cap = MAX_DOCUMENT_BYTES - inflated_total;
                let mut out = Vec::new();
                flate2::read::DeflateDecoder::new(raw)
                    .take(cap as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| format!("column {} is corrupt ({e})", spec >> 4))?;
                if out.len() > cap {
                    return Err(format!(
                        "its columns inflate to more than the {MAX_DOCUMENT_BYTES} bytes a document may have"
                    ));
                }
                out
            } else {
                raw.to_vec()
            };
            inflated_total += bytes.len();
            columns.push((spec & !DEFLATE_BIT, bytes));
        }
        for (spec, data) in &columns {
            let kind = spec & 0b111;
            if kind == VALUE {
                continue;
            }
            let facts = rows(data, kind, limit)
                .map_err(|e| format!("column {} (type {kind}): {e}", spec >> 4))?;
            shape.rows = shape.rows.max(facts.rows);
            if group == 0 && spec >> 4 == 0 && kind == ACTOR {
                shape.changes = facts.rows;
            }
            if kind == GROUP && facts.sum > limit {
                return Err(format!(
                    "column {} counts {} references, more than {limit}",
                    spec >> 4,
                    facts.sum
                ));
            }
            if kind == VALUE_META {
                let raw = columns
                    .iter()
                    .find(|(s, _)| s >> 4 == spec >> 4 && s & 0b111 == VALUE)
                    .map_or(0, |(_, v)| v.len() as u64);
                if facts.sum > raw {
                    return Err(format!(
                        "values of {} bytes declared in column {}, which holds {raw}",
                        facts.sum,
                        spec >> 4
                    ));
                }
            }
        }
    }
    // What follows is the optional head index suffix (one integer per head).
    shape.inflated_len = bytes.len() + inflated_total;
    Ok(shape)
}

fn column_meta(r: &mut Reader<'_>) -> Result<Vec<(u32, u64)>, String> {
    let count = r.uleb("the column count")?;
    // Each column's metadata takes at least two bytes.
    if count > (r.left() / 2) as u64 {
        return Err(format!("{count} columns declared in {} bytes", r.left()));
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let spec = r.uleb("a column specification")?;
        let spec =
            u32::try_from(spec).map_err(|_| format!("column specification {spec} out of range"))?;
        out.push((spec, r.uleb("a column length")?));
    }
    Ok(out)
}

#[derive(Default)]
struct Facts {
    rows: u64,
    sum: u64,
}

/// Counts the rows of a run-length or boolean column (and the sum of group counts or value
/// lengths) without expanding runs; fails past `limit` rows.
fn rows(data: &[u8], kind: u32, limit: u64) -> Result<Facts, String> {
    let mut r = Reader::new(data);
    let mut f = Facts::default();
    let add = |f: &mut Facts, n: u64| -> Result<(), String> {
        f.rows = f
            .rows
            .checked_add(n)
            .filter(|t| *t <= limit)
            .ok_or_else(|| format!("more than {limit} rows"))?;
        Ok(())
    };
    let sum = |f: &mut Facts, n: u64, v: u64| -> Result<(), String> {
        let v = match kind {
            GROUP => v,
            VALUE_META => v >> 4,
            _ => return Ok(()),
        };
        f.sum = n
            .checked_mul(v)
            .and_then(|a| f.sum.checked_add(a))
            .ok_or("counts overflow")?;
        Ok(())
    };
    if kind == BOOLEAN {
        while !r.is_empty() {
            let n = r.uleb("a boolean run")?;
            add(&mut f, n)?;
        }
        return Ok(f);
    }
    while !r.is_empty() {
        let run = r.sleb("a run length")?;
        if run > 0 {
            add(&mut f, run as u64)?;
            let v = value(&mut r, kind)?;
            sum(&mut f, run as u64, v)?;
        } else if run < 0 {
            let n = run.unsigned_abs();
            if n > r.left() as u64 {
                return Err(format!("{n} literal values declared in {} bytes", r.left()));
            }
            add(&mut f, n)?;
            for _ in 0..n {
                let v = value(&mut r, kind)?;
                sum(&mut f, 1, v)?;
            }
        } else {
            let n = r.uleb("a null run length")?;
            add(&mut f, n)?;
        }
    }
    Ok(f)
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ObjType, ROOT};

    use crate::testutil::{sleb, uleb};

    /// A document chunk with no actors or heads, the given change and op columns.
    fn chunk(changes: &[(u32, Vec<u8>)], ops: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![0, 0];
        for cols in [changes, ops] {
            uleb(&mut body, cols.len() as u64);
            for (spec, data) in cols {
                uleb(&mut body, u64::from(*spec));
                uleb(&mut body, data.len() as u64);
            }
        }
        for cols in [changes, ops] {
            for (_, data) in cols {
                body.extend(data);
            }
        }
        let mut out = crate::sync::guard::MAGIC.to_vec();
        out.extend([0, 0, 0, 0, 0]);
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

    fn document() -> automerge::Automerge {
        let mut a = AutoCommit::new();
        let m = a.put_object(ROOT, "lines", ObjType::Map).unwrap();
        for i in 0..300 {
            a.put(&m, format!("p-{i}"), i64::from(i)).unwrap();
            if i % 50 == 0 {
                a.commit();
            }
        }
        let t = a.put_object(ROOT, "notes", ObjType::Text).unwrap();
        a.splice_text(&t, 0, 0, &"field notes ".repeat(300))
            .unwrap();
        a.commit();
        a.put(&m, "p-1", "overwritten").unwrap();
        a.delete(&m, "p-2").unwrap();
        a.commit();
        a.document().clone()
    }

    #[test]
    fn the_shape_gives_the_documents_heads_change_count_and_checksum() {
        // Three actors, two of them concurrent, then a merge: several heads, and changes
        // with two dependencies.
        let mut a = document();
        let mut b = a.fork();
        let mut c = a.fork();
        for (doc, key) in [(&mut b, "from-b"), (&mut c, "from-c")] {
            let mut tx = doc.transaction();
            tx.put(ROOT, key, 1).unwrap();
            tx.commit();
        }
        a.merge(&mut b).unwrap();
        a.merge(&mut c).unwrap();
        assert_eq!(a.get_heads().len(), 2);
        let merged = a.clone();
        let mut tx = a.transaction();
        tx.put(ROOT, "after", 2).unwrap();
        tx.commit();
        for doc in [&merged, &a] {
            for bytes in [doc.save(), doc.save_nocompress()] {
                let shape = check_document(&bytes, MAX_DOCUMENT_ROWS).unwrap();
                let heads: std::collections::BTreeSet<_> = doc.get_heads().into_iter().collect();
                assert_eq!(
                    shape
                        .heads
                        .iter()
                        .copied()
                        .collect::<std::collections::BTreeSet<_>>(),
                    heads
                );
                assert_eq!(shape.changes, doc.get_changes(&[]).len() as u64);
                assert!(checksum_ok(&bytes));
                let mut broken = bytes.clone();
                broken[5] ^= 1;
                assert!(!checksum_ok(&broken));
            }
        }
        assert!(
            !checksum_ok(&[0x85, 0x6f, 0x4a]),
            "too short for a checksum"
        );
    }

    #[test]
    fn documents_automerge_saves_pass() {
        let doc = document();
        for bytes in [doc.save(), doc.save_nocompress()] {
            let shape = check_document(&bytes, MAX_DOCUMENT_ROWS).unwrap();
            assert!(shape.rows >= 300, "{shape:?}");
            automerge::Automerge::load(&bytes).unwrap();
        }
        // The compressed save really has compressed columns, and they were inflated.
        let saved = doc.save();
        assert!(
            check_document(&saved, MAX_DOCUMENT_ROWS)
                .unwrap()
                .inflated_len
                > saved.len() * 2
        );
        // A limit below the document's size refuses it.
        let e = check_document(&saved, 100).unwrap_err();
        assert!(e.contains("more than 100 rows"), "{e}");
    }

    #[test]
    fn counts_beyond_the_bytes_and_broken_envelopes_are_refused() {
        let refused = |bytes: &[u8], says: &str| {
            let e = check_document(bytes, MAX_DOCUMENT_ROWS).unwrap_err();
            assert!(e.starts_with("not an Automerge document: "), "{e}");
            assert!(e.contains(says), "{e:?} should say {says:?}");
        };
        // 2^40 rows of one value in a handful of bytes.
        refused(
            &chunk(&[], &[(0x42, run(1 << 40, 1))]),
            "more than 1000000 rows",
        );
        // Group counts (successors) far beyond the limit.
        refused(&chunk(&[], &[(0x80, run(10, 1 << 30))]), "references");
        // A value longer than its value column.
        refused(
            &chunk(&[], &[(0x56, run(1, (1 << 40) << 4 | 6))]),
            "values of",
        );
        let mut lit = Vec::new();
        sleb(&mut lit, -(1 << 40));
        refused(&chunk(&[], &[(0x42, lit)]), "literal values declared");
        // A deflate bomb in one column.
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut z, &vec![0u8; MAX_DOCUMENT_BYTES + 1]).unwrap();
        let bomb = z.finish().unwrap();
        refused(
            &chunk(&[], &[(0x42 | DEFLATE_BIT, bomb)]),
            "inflate to more than",
        );
        // Not a document, or cut short.
        let saved = document().save();
        refused(&saved[..saved.len() - 3], "the chunk needs");
        let mut change = saved.clone();
        change[8] = 1;
        refused(&change, "a change, not a whole document");
        refused(b"nonsense", "magic bytes");
        let mut trailing = saved.clone();
        trailing.push(7);
        refused(&trailing, "1 bytes after the end of the chunk");
    }
}
