//! Visits as the reports read them, kept between requests.
//!
//! Every report reads every visit of its range from the stored Automerge documents
//! ([`super::reports::load_rows`]): a week of 5,000 visits took 1.8–2.1 s on one thread on the
//! machine of docs/BENCHMARKS.md ("Dashboard reports"), nearly all of it loading and
//! reading the documents. An open dashboard asks again whenever a visit in its scope
//! changed (it polls every 2.5 s), so while reps sync, each open dashboard read the whole
//! range again every few seconds. [`ReadVisits`] keeps the read visits by id, each with
//! the SHA-256 of the stored bytes it was read from: a visit whose bytes are unchanged is
//! not read again, one whose bytes changed is (the bytes decide, so a kept read is never
//! stale). The misses of one request are read on up to [`READ_THREADS`] threads.
//!
//! A miss is taken from the visit the server read from the document when it stored it
//! (`visit_reads`), a tenth of the cost of reading the document again; documents stored
//! before the server kept those reads are read. The stored reads are fetched for the
//! misses only: a report with nothing changed reads no more than the documents.

use fieldsync_core::document::{VisitDoc, unpack_visit};
use fieldsync_core::visit::Visit;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use crate::store::StoredVisit;

/// How many read visits are kept by default (`serve --report-visits-kept`): two weeks of a
/// region of 100 reps making 8 visits a day, or a quarter of one of 10 reps. Kept, a
/// typical visit read takes up to ~11 KB (the server's resident memory grew by 11.4 KB per
/// visit kept in `examples/report_rows`): ~110 MB at most.
pub const KEPT: usize = 10_000;

/// The most threads one request reads its misses on.
pub const READ_THREADS: usize = 4;

/// A request reads its misses on several threads only with at least this many per thread
/// (a read takes a few hundred µs here: `examples/report_rows`), so a refresh after a few
/// visits changed starts no thread.
const PER_THREAD: usize = 16;

type Fingerprint = [u8; 32];

/// Gives the reads stored with the documents of the visits it is asked for
/// ([`crate::Store::visit_reads`]): visit id, packed visit.
pub type StoredReads<'a> = &'a dyn Fn(&[&str]) -> Vec<(String, Vec<u8>)>;

/// Read visits by visit id, each with the fingerprint of the bytes it was read from.
#[derive(Debug)]
pub struct ReadVisits {
    kept: Mutex<lru::LruCache<String, (Fingerprint, Arc<Visit>)>>,
    /// Counts the visits used by where they came from (`kept`, `stored`, `document`).
    counter: Option<prometheus::IntCounterVec>,
}

impl Default for ReadVisits {
    fn default() -> Self {
        Self::new(KEPT)
    }
}

impl ReadVisits {
    /// Keeps up to `capacity` read visits (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            kept: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
            counter: None,
        }
    }

    /// Counts the visits it hands out in `counter` (label `from`: `kept`, `stored` (the
    /// read kept beside the document) or `document` (read from it now)).
    pub fn counting(mut self, counter: prometheus::IntCounterVec) -> Self {
        self.counter = Some(counter);
        self
    }

    fn count(&self, from: &str, n: usize) {
        if let Some(c) = &self.counter {
            c.with_label_values(&[from]).inc_by(n as u64);
        }
    }

    /// How many read visits are kept now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, lru::LruCache<String, (Fingerprint, Arc<Visit>)>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Each of `stored` as read from its document, in order: the kept read when the bytes
    /// are the ones it was read from, else the read stored with the document (`reads`
    /// gives those of the visits it is asked for: [`crate::Store::visit_reads`]), else read
    /// now; kept either way. A document that cannot be read gives its error (and nothing
    /// is kept for it).
    ///
    /// The stored reads are asked for after the documents were: a visit written in between
    /// shows as written (its newer read), and is taken again by the next request, since its
    /// bytes then differ from the ones kept with it.
    pub fn read_all(
        &self,
        stored: &[StoredVisit],
        reads: StoredReads<'_>,
    ) -> Vec<fieldsync_core::Result<Arc<Visit>>> {
        let prints: Vec<Fingerprint> = stored
            .iter()
            .map(|s| Sha256::digest(&s.doc).into())
            .collect();
        let mut out: Vec<Option<fieldsync_core::Result<Arc<Visit>>>> = {
            let mut kept = self.lock();
            stored
                .iter()
                .zip(&prints)
                .map(|(s, print)| match kept.get(&s.meta.visit_id) {
                    Some((p, v)) if p == print => Some(Ok(v.clone())),
                    _ => None,
                })
                .collect()
        };
        let misses: Vec<usize> = (0..stored.len()).filter(|&i| out[i].is_none()).collect();
        self.count("kept", stored.len() - misses.len());
        if misses.is_empty() {
            return out.into_iter().flatten().collect();
        }
        let ids: Vec<&str> = misses
            .iter()
            .map(|&i| stored[i].meta.visit_id.as_str())
            .collect();
        let reads: HashMap<String, Vec<u8>> = reads(&ids).into_iter().collect();
        let read =
            fieldsync_core::parallel::map_in_order(&misses, READ_THREADS, PER_THREAD, |&i| {
                // A stored read that does not unpack (none should) is read again.
                if let Some(Ok(v)) = reads.get(&stored[i].meta.visit_id).map(|r| unpack_visit(r)) {
                    return (true, Ok(Arc::new(v)));
                }
                let read = VisitDoc::load(&stored[i].doc).and_then(|d| d.read());
                (false, read.map(Arc::new))
            });
        let from_stored = read.iter().filter(|(s, _)| *s).count();
        self.count("stored", from_stored);
        self.count("document", misses.len() - from_stored);
        let read: Vec<_> = read.into_iter().map(|(_, r)| r).collect();
        {
            // (A request over more visits than can be kept still finds as many kept the
            // next time: its look-ups come before its misses take the room.)
            let mut kept = self.lock();
            for (&i, r) in misses.iter().zip(&read) {
                if let Ok(v) = r {
                    kept.put(stored[i].meta.visit_id.clone(), (prints[i], v.clone()));
                }
            }
        }
        for (i, r) in misses.into_iter().zip(read) {
            out[i] = Some(r);
        }
        out.into_iter().flatten().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::VisitMeta;
    use chrono::NaiveDate;
    use fieldsync_core::fixtures;
    use fieldsync_core::visit::Author;

    const NOW: i64 = 1_795_770_000_000;

    fn stored(doc: &VisitDoc) -> StoredVisit {
        let id = doc.read().unwrap().id;
        StoredVisit {
            meta: VisitMeta {
                visit_id: id,
                store_id: String::new(),
                territory_id: String::new(),
                rep_id: String::new(),
                planned_start: 0,
                status: String::new(),
            },
            doc: doc.automerge().save(),
        }
    }

    /// A `ReadVisits` keeping `capacity` reads, and the counter it counts its visits in.
    fn counted(capacity: usize) -> (ReadVisits, prometheus::IntCounterVec) {
        let counter = prometheus::IntCounterVec::new(
            prometheus::Opts::new("read_total", "visits used"),
            &["from"],
        )
        .unwrap();
        (ReadVisits::new(capacity).counting(counter.clone()), counter)
    }

    /// A store that kept no reads.
    fn none(_: &[&str]) -> Vec<(String, Vec<u8>)> {
        Vec::new()
    }

    fn visits(ids: std::ops::Range<usize>) -> Vec<VisitDoc> {
        let today = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        ids.map(|i| fixtures::typical_visit_document(&format!("v-{i}"), today, NOW).unwrap())
            .collect()
    }

    #[test]
    fn a_visit_is_read_again_only_when_its_bytes_changed() {
        let mut docs = visits(0..3);
        let cache = ReadVisits::new(10);
        let first: Vec<Arc<Visit>> = cache
            .read_all(&docs.iter().map(stored).collect::<Vec<_>>(), &none)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(cache.len(), 3);
        let again = cache.read_all(&docs.iter().map(stored).collect::<Vec<_>>(), &none);
        for (a, b) in first.iter().zip(&again) {
            assert!(Arc::ptr_eq(a, b.as_ref().unwrap()), "the kept read is used");
        }
        // The second visit changes: its new bytes are read, the others are kept.
        let rep = Author {
            user_id: first[1].plan.rep_id.clone(),
            device_id: "phone".into(),
        };
        docs[1]
            .edit(&rep, NOW + 1, |w| w.set_notes("Back room checked again."))
            .unwrap();
        let after = cache.read_all(&docs.iter().map(stored).collect::<Vec<_>>(), &none);
        let after: Vec<Arc<Visit>> = after.into_iter().map(Result::unwrap).collect();
        assert!(Arc::ptr_eq(&first[0], &after[0]));
        assert!(Arc::ptr_eq(&first[2], &after[2]));
        assert!(!Arc::ptr_eq(&first[1], &after[1]));
        assert_eq!(after[1].notes, "Back room checked again.");
        assert_eq!(
            *after[1],
            docs[1].read().unwrap(),
            "read as the document reads"
        );
    }

    #[test]
    fn a_miss_takes_the_read_stored_with_the_document_and_reads_the_document_without_one() {
        let docs = visits(0..3);
        let all: Vec<StoredVisit> = docs.iter().map(stored).collect();
        // Stored with its read (a different one, to tell them apart); with a broken one;
        // without one.
        let mut marked = docs[0].read().unwrap();
        marked.notes = "the stored read".into();
        let asked = std::cell::RefCell::new(Vec::new());
        let reads = |ids: &[&str]| {
            asked.borrow_mut().push(ids.join(","));
            vec![
                (
                    "v-0".to_string(),
                    fieldsync_core::document::pack_visit(&marked),
                ),
                ("v-1".to_string(), b"not a packed visit".to_vec()),
            ]
        };
        let (cache, counter) = counted(10);
        let count = |from: &str| counter.with_label_values(&[from]).get();
        let read: Vec<Arc<Visit>> = cache
            .read_all(&all, &reads)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(*read[0], marked);
        assert_eq!(*read[1], docs[1].read().unwrap());
        assert_eq!(*read[2], docs[2].read().unwrap());
        assert_eq!((count("stored"), count("document")), (1, 2));
        // Kept like any other read; the stored reads are asked for the misses only.
        let again = cache.read_all(&all, &reads);
        assert!(Arc::ptr_eq(&read[0], again[0].as_ref().unwrap()));
        assert_eq!(count("kept"), 3);
        assert_eq!(*asked.borrow(), vec!["v-0,v-1,v-2".to_string()]);
    }

    #[test]
    fn unreadable_bytes_give_their_error_in_place_and_are_not_kept() {
        let docs = visits(0..2);
        let mut all: Vec<StoredVisit> = docs.iter().map(stored).collect();
        all.insert(
            1,
            StoredVisit {
                doc: b"not a document".to_vec(),
                ..stored(&docs[0])
            },
        );
        all[1].meta.visit_id = "broken".into();
        let cache = ReadVisits::new(10);
        let read = cache.read_all(&all, &none);
        assert_eq!(read.len(), 3);
        assert_eq!(read[0].as_ref().unwrap().id, "v-0");
        assert!(read[1].is_err());
        assert_eq!(read[2].as_ref().unwrap().id, "v-1");
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_report_over_more_visits_than_are_kept_keeps_what_fits_and_reads_the_rest() {
        let docs = visits(0..40);
        let all: Vec<StoredVisit> = docs.iter().map(stored).collect();
        let (cache, counter) = counted(25);
        let count = |from: &str| counter.with_label_values(&[from]).get();
        // Read on threads, in order.
        let read = cache.read_all(&all, &none);
        for (i, r) in read.iter().enumerate() {
            assert_eq!(r.as_ref().unwrap().id, format!("v-{i}"));
        }
        assert_eq!(cache.len(), 25, "bounded");
        assert_eq!((count("kept"), count("document")), (0, 40));
        // The same report again, twice: the 25 kept are used, only the 15 others read.
        for round in 1..=2 {
            let again = cache.read_all(&all, &none);
            for (i, r) in again.iter().enumerate() {
                assert_eq!(r.as_ref().unwrap().id, format!("v-{i}"));
            }
            assert_eq!(
                (count("kept"), count("document")),
                (25 * round, 40 + 15 * round)
            );
        }
        // A report over other visits takes the room of the reads used longest ago.
        let newer: Vec<StoredVisit> = visits(40..50).iter().map(stored).collect();
        cache.read_all(&newer, &none);
        assert_eq!(cache.len(), 25);
        assert_eq!(count("document"), 40 + 30 + 10);
        let kept_before = count("kept");
        cache.read_all(&newer, &none);
        assert_eq!(
            count("kept"),
            kept_before + 10,
            "the newer report's visits are kept"
        );
    }
}
