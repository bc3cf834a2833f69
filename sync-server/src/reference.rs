//! The reference data with its lookup index, kept while the data stays the same.
//!
//! Checking a pushed visit looks its store, products, template and promotions up by id
//! ([`ReferenceIndex`]). Building that index walks the whole reference data: with 10,000
//! stores and 2,000 products it took 3.5 million instructions per visit, against 4.8
//! million for all the rest of the check (docs/BENCHMARKS.md, item 24). [`ReferenceCache`]
//! builds it once per version of the data a store holds, and every sync request of that
//! version shares it.
//!
//! Reports judge each visit against the reference data in effect when it was worked
//! ([`ReferenceCache::as_of`]): a product delisted today still counts in last month's
//! out-of-stock rate and keeps its name there, and a price changed today does not make last
//! month's shelf prices wrong. The versions come from the store's history
//! ([`Store::reference_versions`]); the few older ones in use are kept indexed here too.

use fieldsync_core::model::{Millis, ReferenceData, ReferenceIndex};
use fieldsync_core::visit::Visit;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::store::{Store, StoreResult};

self_cell::self_cell!(
    /// Reference data and its index.
    pub struct IndexedReference {
        owner: Arc<ReferenceData>,
        #[covariant]
        dependent: ReferenceIndex,
    }
);

impl IndexedReference {
    /// Indexes `data`.
    pub fn of(data: Arc<ReferenceData>) -> Self {
        Self::new(data, |d| d.index())
    }

    /// The reference data.
    pub fn data(&self) -> &Arc<ReferenceData> {
        self.borrow_owner()
    }

    /// Its index.
    pub fn index(&self) -> &ReferenceIndex<'_> {
        self.borrow_dependent()
    }
}

impl std::fmt::Debug for IndexedReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexedReference")
            .field("version", &self.data().version)
            .finish_non_exhaustive()
    }
}

/// The index of the reference data a store holds now, built again only when the store
/// holds other data (a new `Arc` from [`Store::reference`]: both backends keep theirs
/// until an import changes it).
#[derive(Debug, Default)]
pub struct ReferenceCache {
    current: Mutex<Option<Arc<IndexedReference>>>,
    /// Older versions used by reports lately, most recent use first.
    older: Mutex<VecDeque<Arc<IndexedReference>>>,
    /// Everything the kept versions list ([`ReferenceCache::ever_listed`]), with the current
    /// data it was built for.
    ever: Mutex<Option<EverBuilt>>,
    /// Versions with the stores they do not list and the newest kept version does
    /// ([`ReferenceCache::with_stores_of`]): (version, merge, the two together), most
    /// recent use first.
    with_stores: Mutex<VecDeque<WithStores>>,
    /// Held while [`ReferenceCache::ever_listed`] builds: after an import the first pushes
    /// arrive together, and each building its own merge of up to 64 versions (seconds of
    /// CPU for a large catalogue) would stall every sync; one builds, the others wait for
    /// it and take its result.
    building: Mutex<()>,
}

/// The current data it was built for, and everything the kept versions list (merged and
/// indexed; `None`: only the current version is kept).
type EverBuilt = (Arc<ReferenceData>, Option<Arc<IndexedReference>>);

/// A version of the reference data, everything the kept versions list, and the version
/// with the stores it lacks of that ([`ReferenceCache::with_stores_of`]).
type WithStores = (
    Arc<ReferenceData>,
    Arc<ReferenceData>,
    Arc<IndexedReference>,
);

/// The newest versions [`ReferenceCache::ever_listed`] merges.
pub const EVER_LISTED_VERSIONS: usize = 64;

/// Everything the kept versions list ([`ReferenceCache::ever_listed`]) for one request,
/// built when it first needs it. Only a pushed visit at a store the current data no longer
/// lists, or with a problem under it that the stored visit did not have (a line recorded
/// offline for a product delisted since), does. Building reads up to
/// [`EVER_LISTED_VERSIONS`] kept versions back (1.7 s for 10,000 stores): built up front,
/// every push after an import waited for it.
#[derive(Clone, Debug)]
pub struct EverListed {
    cache: Arc<ReferenceCache>,
    current: Arc<IndexedReference>,
}

impl EverListed {
    /// What the versions `cache` keeps list, with `current` as the current data
    /// ([`ReferenceCache::get`]).
    pub fn new(cache: Arc<ReferenceCache>, current: Arc<IndexedReference>) -> Self {
        Self { cache, current }
    }

    /// Built now if it is not yet (`None`: only the current version is kept). Reads
    /// `store`: not to be called inside one of its write transactions.
    pub fn get(&self, store: &dyn Store) -> StoreResult<Option<Arc<IndexedReference>>> {
        self.cache.ever_listed(store, &self.current)
    }

    /// As built so far (`None`: not built yet).
    pub fn built(&self) -> Option<Option<Arc<IndexedReference>>> {
        self.cache.ever_built(&self.current)
    }
}

/// The reference data of `versions` merged, newest first: every store, product, promotion,
/// template, planogram (with every position any of them had) and group any of them lists,
/// each as the newest version that lists it has it.
pub fn merged(versions: &[ReferenceData]) -> ReferenceData {
    // By id sets: a scan of `into` per item made 64 versions of a 10,000-store catalogue
    // take 20 s (docs/BENCHMARKS.md, "Reference data history").
    fn add<T: Clone>(into: &mut Vec<T>, from: &[T], id: impl Fn(&T) -> &str) {
        let have: HashSet<String> = into.iter().map(|y| id(y).to_owned()).collect();
        let new: Vec<T> = from
            .iter()
            .filter(|x| !have.contains(id(x)))
            .cloned()
            .collect();
        into.extend(new);
    }
    let mut out = versions.first().cloned().unwrap_or_default();
    for v in versions.iter().skip(1) {
        add(&mut out.territories, &v.territories, |x| &x.id);
        add(&mut out.stores, &v.stores, |x| &x.id);
        add(&mut out.store_groups, &v.store_groups, |x| &x.id);
        add(&mut out.products, &v.products, |x| &x.id);
        add(&mut out.promotions, &v.promotions, |x| &x.id);
        add(&mut out.task_templates, &v.task_templates, |x| &x.id);
        add(&mut out.planograms, &v.planograms, |x| &x.id);
        let at: HashMap<String, usize> = (out.planograms.iter().enumerate())
            .map(|(i, p)| (p.id.clone(), i))
            .collect();
        for pg in &v.planograms {
            if let Some(&i) = at.get(&pg.id) {
                add(&mut out.planograms[i].positions, &pg.positions, |x| &x.id);
            }
        }
    }
    out
}

/// The most earlier versions of the reference data one sync answer carries
/// ([`AsOf::earlier`]); a device judges visits before the oldest of them with it.
pub const EARLIER_SENT: usize = 16;

/// The most bytes of JSON those earlier versions take in one answer (the newest that fit).
pub const EARLIER_SENT_BYTES: usize = 8 << 20;

/// Older versions kept indexed (a report over a year spans a handful of imports).
const OLDER_KEPT: usize = 8;

use fieldsync_core::kpi::worked_at;

/// The reference data in effect at given times, for one report ([`ReferenceCache::as_of`]).
#[derive(Debug)]
pub struct AsOf<'a> {
    cache: &'a ReferenceCache,
    store: &'a dyn Store,
    current: Arc<IndexedReference>,
    /// (version, imported at), oldest first.
    versions: Vec<(i64, i64)>,
}

impl AsOf<'_> {
    /// The reference data in effect now.
    pub fn current(&self) -> &Arc<IndexedReference> {
        &self.current
    }

    /// The reference data in effect at `at`: the last version imported at or before it (the
    /// oldest kept for an earlier time), or the current data when that version is it or is
    /// no longer kept.
    pub fn at(&self, at: Millis) -> StoreResult<Arc<IndexedReference>> {
        let version = self
            .versions
            .iter()
            .rev()
            .find(|(_, from)| *from <= at)
            .or(self.versions.first())
            .map(|v| v.0);
        match version {
            Some(v) if v != self.current.data().version => self
                .cache
                .older(self.store, v)
                .map(|old| old.unwrap_or_else(|| self.current.clone())),
            _ => Ok(self.current.clone()),
        }
    }

    /// When the current data took effect (its import), as far as the store keeps it.
    pub fn current_since(&self) -> Option<Millis> {
        let current = self.current.data().version;
        self.versions.iter().find(|v| v.0 == current).map(|v| v.1)
    }

    /// The kept versions before the current one and after version `after` that were in
    /// effect at some time from `from` on, oldest first, each with when it took effect (at
    /// most the newest [`EARLIER_SENT`]): what a device holding version `after` lacks to
    /// judge its visits since `from` as reports do ([`AsOf::at`]). A version replaced at
    /// the time it took effect (two imports within a millisecond, or a clock set back
    /// between them) was never in effect and is left out, so their times always rise.
    pub fn earlier(
        &self,
        after: i64,
        from: Millis,
    ) -> StoreResult<Vec<(Millis, Arc<IndexedReference>)>> {
        let current = self.current.data().version;
        let mut wanted = Vec::new();
        // Newest first: each version was in effect until the one after it took effect.
        let mut end = self.current_since().unwrap_or(Millis::MAX);
        let older = self.versions.iter().rev().filter(|v| v.0 < current);
        for &(version, since) in older {
            if version <= after || end <= from || wanted.len() == EARLIER_SENT {
                break;
            }
            if since < end {
                wanted.push((version, since));
                end = since;
            }
        }
        let mut out = Vec::new();
        for (version, since) in wanted.into_iter().rev() {
            if let Some(data) = self.cache.older(self.store, version)? {
                out.push((since, data));
            }
        }
        Ok(out)
    }

    /// Whether the current data no longer lists store `store_id` (closed by an import).
    pub fn closed(&self, store_id: &str) -> bool {
        !self.current.index().stores.contains_key(store_id)
    }

    /// The reference data `visit` was worked with ([`worked_at`]). A visit at a store that
    /// data does not list (head office closed it before a phone that had not heard worked
    /// the visit offline) is judged with that data plus the store as the newest kept
    /// version lists it ([`ReferenceData::with_stores`], as the phone judges it), so it
    /// keeps its store, its local day and its store's KPIs.
    pub fn of(&self, visit: &Visit) -> StoreResult<Arc<IndexedReference>> {
        let refs = self.at(worked_at(visit))?;
        let lists =
            |r: &IndexedReference| r.index().stores.contains_key(visit.plan.store_id.as_str());
        if lists(&refs) {
            return Ok(refs);
        }
        match self.cache.ever_listed(self.store, &self.current)? {
            Some(ever) if lists(&ever) => {
                Ok(self.cache.with_stores_of(&refs, &ever)?.unwrap_or(refs))
            }
            _ => Ok(refs),
        }
    }
}

impl ReferenceCache {
    /// The store's reference data, indexed.
    pub fn get(&self, store: &dyn Store) -> StoreResult<Arc<IndexedReference>> {
        let data = store.reference()?;
        let kept = |current: &Option<Arc<IndexedReference>>| {
            current
                .as_ref()
                .filter(|c| Arc::ptr_eq(c.data(), &data))
                .cloned()
        };
        if let Some(c) = kept(&self.lock()) {
            return Ok(c);
        }
        // Built outside the lock: requests of the version kept meanwhile are not held up.
        let fresh = Arc::new(IndexedReference::of(data.clone()));
        let mut current = self.lock();
        if let Some(c) = kept(&current) {
            return Ok(c);
        }
        *current = Some(fresh.clone());
        Ok(fresh)
    }

    /// The reference data at any time a report asks for ([`AsOf::at`]).
    pub fn as_of<'a>(&'a self, store: &'a dyn Store) -> StoreResult<AsOf<'a>> {
        self.as_of_current(store, self.get(store)?)
    }

    /// [`ReferenceCache::as_of`] with `current` as the current data, as [`Self::get`] gave
    /// it earlier: a request that already holds it judges and answers with that one, even
    /// if an import lands meanwhile.
    pub fn as_of_current<'a>(
        &'a self,
        store: &'a dyn Store,
        current: Arc<IndexedReference>,
    ) -> StoreResult<AsOf<'a>> {
        Ok(AsOf {
            cache: self,
            store,
            current,
            versions: store.reference_versions()?,
        })
    }

    /// Everything the newest [`EVER_LISTED_VERSIONS`] kept versions of the reference data
    /// list, merged ([`merged`]), indexed; `None` when only the current version is kept.
    /// `current` is the store's current data as [`ReferenceCache::get`] gave it. Built once
    /// per current data (the kept versions change only with an import, which makes new
    /// current data), so a push asks the store nothing once it is built.
    pub fn ever_listed(
        &self,
        store: &dyn Store,
        current: &Arc<IndexedReference>,
    ) -> StoreResult<Option<Arc<IndexedReference>>> {
        if let Some(built) = self.ever_built(current) {
            return Ok(built);
        }
        let _one = self.building.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(built) = self.ever_built(current) {
            return Ok(built); // built while this call waited
        }
        let kept = store.reference_versions()?;
        let built = if kept.len() < 2 {
            None
        } else {
            let newest = current.data().as_ref().clone();
            let mut versions = vec![newest];
            let older = kept.iter().rev().map(|k| k.0);
            let older = older.filter(|v| *v != current.data().version);
            for v in older.take(EVER_LISTED_VERSIONS - 1) {
                if let Some(data) = store.reference_version(v)? {
                    versions.push(data);
                }
            }
            Some(Arc::new(IndexedReference::of(Arc::new(merged(&versions)))))
        };
        *self.lock_ever() = Some((current.data().clone(), built.clone()));
        Ok(built)
    }

    /// [`ReferenceCache::ever_listed`] for `current` if it is built (`None`: not yet).
    pub fn ever_built(
        &self,
        current: &Arc<IndexedReference>,
    ) -> Option<Option<Arc<IndexedReference>>> {
        match self.lock_ever().as_ref() {
            Some((of, built)) if Arc::ptr_eq(of, current.data()) => Some(built.clone()),
            _ => None,
        }
    }

    fn lock_ever(&self) -> MutexGuard<'_, Option<EverBuilt>> {
        self.ever.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `refs` with every store `ever` ([`ReferenceCache::ever_listed`]) lists and it does not,
    /// each as `ever` has it ([`ReferenceData::with_stores`]), indexed; kept for the
    /// [`OLDER_KEPT`] pairs used last.
    fn with_stores_of(
        &self,
        refs: &Arc<IndexedReference>,
        ever: &Arc<IndexedReference>,
    ) -> StoreResult<Option<Arc<IndexedReference>>> {
        let same =
            |k: &WithStores| Arc::ptr_eq(&k.0, refs.data()) && Arc::ptr_eq(&k.1, ever.data());
        let kept = most_recent(&self.with_stores, same, || {
            let with = refs.data().with_stores(ever.data().stores.iter());
            let with = Arc::new(IndexedReference::of(Arc::new(with)));
            Ok(Some((refs.data().clone(), ever.data().clone(), with)))
        })?;
        Ok(kept.map(|k| k.2))
    }

    /// An older version, indexed (`None`: the store no longer keeps it).
    fn older(&self, store: &dyn Store, version: i64) -> StoreResult<Option<Arc<IndexedReference>>> {
        most_recent(
            &self.older,
            |o| o.data().version == version,
            || {
                let data = store.reference_version(version)?;
                Ok(data.map(|d| Arc::new(IndexedReference::of(Arc::new(d)))))
            },
        )
    }

    fn lock(&self) -> MutexGuard<'_, Option<Arc<IndexedReference>>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The entry of `kept` (most recently used first) that `same` matches, moved to the front;
/// else the one `make` builds (outside the lock: other requests are not held up), kept in
/// front of at most [`OLDER_KEPT`] - 1 others (`None`: `make` had nothing).
fn most_recent<T: Clone>(
    kept: &Mutex<VecDeque<T>>,
    same: impl Fn(&T) -> bool,
    make: impl FnOnce() -> StoreResult<Option<T>>,
) -> StoreResult<Option<T>> {
    let lock = || kept.lock().unwrap_or_else(PoisonError::into_inner);
    let hit = |kept: &mut VecDeque<T>| {
        let entry = kept.remove(kept.iter().position(&same)?)?;
        kept.push_front(entry.clone());
        Some(entry)
    };
    if let Some(entry) = hit(&mut lock()) {
        return Ok(Some(entry));
    }
    let Some(fresh) = make()? else {
        return Ok(None);
    };
    let mut kept = lock();
    if let Some(entry) = hit(&mut kept) {
        return Ok(Some(entry)); // made meanwhile by another request
    }
    kept.push_front(fresh.clone());
    kept.truncate(OLDER_KEPT);
    Ok(Some(fresh))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStore;
    use fieldsync_core::fixtures::{self, FixtureSize};

    /// An empty store in a scratch directory (kept while the first value lives), and the
    /// fixture reference data to import into it.
    fn fixture_store() -> (tempfile::TempDir, SqliteStore, ReferenceData) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_dir(dir.path()).unwrap();
        let today = chrono::Utc::now().date_naive();
        let refs = fixtures::reference_data(3, &FixtureSize::default(), today);
        (dir, store, refs)
    }

    /// A store with `n` imported versions, the first store named "name i" in version i,
    /// imported a few milliseconds apart; with their (version, import time).
    fn store_with_versions(n: usize) -> (tempfile::TempDir, SqliteStore, Vec<(i64, i64)>) {
        let (dir, store, mut refs) = fixture_store();
        for i in 0..n {
            refs.stores[0].name = format!("name {i}");
            store.import_reference(refs.clone()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let kept = store.reference_versions().unwrap();
        (dir, store, kept)
    }

    #[test]
    fn a_visit_worked_at_a_store_already_closed_is_judged_by_the_data_of_its_time() {
        const H: i64 = 36_000_000; // ten hours between imports
        let (_dir, store, refs) = fixture_store();
        let today = chrono::Utc::now().date_naive();
        let typical = fixtures::typical_visits(&refs, "t-1", today);
        let shop = typical[0].store_id.clone();
        let product = typical[0].products[0].0.clone();
        // 1: as fixed; 2: the shop renamed; 3: the shop closed; 4: a product of its
        // assortment delisted.
        let mut data = refs.clone();
        store.import_reference_at(data.clone(), H).unwrap();
        let at = data.stores.iter().position(|s| s.id == shop).unwrap();
        data.stores[at].name = "renamed".into();
        store.import_reference_at(data.clone(), 2 * H).unwrap();
        data.stores.retain(|s| s.id != shop);
        store.import_reference_at(data.clone(), 3 * H).unwrap();
        data.delist_product(&product);
        store.import_reference_at(data, 4 * H).unwrap();
        let versions: Vec<i64> = store
            .reference_versions()
            .unwrap()
            .iter()
            .map(|v| v.0)
            .collect();

        // Worked offline after the closing, before the delisting.
        let author = fieldsync_core::visit::Author {
            user_id: "rep-1".into(),
            device_id: "phone".into(),
        };
        let visit = typical[0]
            .document(
                "v-1",
                "rep-1",
                &author,
                automerge::ActorId::random(),
                3 * H + H / 10,
            )
            .unwrap()
            .read()
            .unwrap();
        let cache = ReferenceCache::default();
        let as_of = cache.as_of(&store).unwrap();
        let judged = as_of.of(&visit).unwrap();
        // The closing's data (the product still listed), the shop as last listed.
        assert_eq!(judged.data().version, versions[2]);
        assert_eq!(judged.index().store(&shop).unwrap().name, "renamed");
        assert!(judged.index().product(&product).is_ok());
        let kpis = fieldsync_core::kpi::visit_kpis(&visit, judged.index());
        assert!(kpis.store_known, "{kpis:?}");
        // The same as the phone that kept the shop judges it: the closing's data with the
        // shop it held.
        let closing = store.reference_version(versions[2]).unwrap().unwrap();
        let held = store.reference_version(versions[1]).unwrap().unwrap();
        let phone = closing.with_stores(held.stores.iter().filter(|s| s.id == shop));
        assert_eq!(
            kpis,
            fieldsync_core::kpi::visit_kpis(&visit, &phone.index())
        );
        // Built once per version.
        assert!(Arc::ptr_eq(&judged, &as_of.of(&visit).unwrap()));
    }

    #[test]
    fn the_index_is_kept_while_the_data_stays_and_built_again_after_an_import() {
        let (_dir, store, mut refs) = fixture_store();
        store.import_reference(refs.clone()).unwrap();
        let cache = ReferenceCache::default();
        let first = cache.get(&store).unwrap();
        let again = cache.get(&store).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "indexed once per version");
        assert!(first.index().store("s-new").is_err());

        // A new store arrives with an import: the next lookup sees it.
        let mut added = refs.stores[0].clone();
        added.id = "s-new".into();
        refs.stores.push(added);
        store.import_reference(refs).unwrap();
        let after = cache.get(&store).unwrap();
        assert!(!Arc::ptr_eq(&first, &after));
        assert!(after.data().version > first.data().version);
        assert_eq!(after.index().store("s-new").unwrap().id, "s-new");
        // The index handed out before stays whole for whoever still holds it.
        assert!(first.index().store("s-new").is_err());
        assert_eq!(first.index().stores.len() + 1, after.index().stores.len());
    }

    #[test]
    fn pushes_arriving_together_after_an_import_share_one_merge() {
        let (_dir, store, mut refs) = fixture_store();
        let all = refs.products.len();
        for _ in 0..3 {
            store.import_reference(refs.clone()).unwrap();
            let gone = refs.products[0].id.clone();
            refs.delist_product(&gone);
        }
        let cache = ReferenceCache::default();
        let current = cache.get(&store).unwrap();
        let start = std::sync::Barrier::new(8);
        let got: Vec<Arc<IndexedReference>> = std::thread::scope(|s| {
            let calls: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        cache.ever_listed(&store, &current).unwrap().unwrap()
                    })
                })
                .collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        });
        assert!(
            got.iter().all(|g| Arc::ptr_eq(g, &got[0])),
            "every caller gets the one merge"
        );
        assert_eq!(got[0].data().products.len(), all, "the delisted ones too");
    }

    #[test]
    fn merged_versions_list_everything_any_of_them_lists_as_the_newest_has_it() {
        let today = chrono::Utc::now().date_naive();
        let old = fixtures::reference_data(3, &FixtureSize::default(), today);
        let mut new = old.clone();
        let gone = new.products.remove(0);
        new.products[0].list_price_cents += 7;
        let position = new.planograms[0].positions.remove(0);
        let all = merged(&[new.clone(), old.clone()]);
        assert_eq!(all.products.len(), old.products.len());
        assert!(all.products.contains(&gone));
        assert_eq!(
            all.products[0], new.products[0],
            "the newest version's fields"
        );
        assert!(all.planograms[0].positions.contains(&position));
        assert_eq!(all.stores, new.stores);
        assert_eq!(merged(&[new.clone()]), new);
    }

    #[test]
    fn a_time_gets_the_version_imported_last_before_it() {
        let (_dir, store, kept) = store_with_versions(3);
        assert_eq!(kept.len(), 3);
        let cache = ReferenceCache::default();
        let as_of = cache.as_of(&store).unwrap();
        let name = |at: Millis| as_of.at(at).unwrap().data().stores[0].name.clone();
        assert_eq!(name(kept[1].1), "name 1");
        assert_eq!(name(kept[2].1 - 1), "name 1");
        assert_eq!(name(kept[0].1 + 1), "name 0");
        // Before the oldest kept version: the oldest.
        assert_eq!(name(0), "name 0");
        // The latest version is the current data itself.
        let later = as_of.at(kept[2].1 + 3_600_000).unwrap();
        assert!(Arc::ptr_eq(&later, as_of.current()));
        // An older version is indexed once and shared.
        assert!(Arc::ptr_eq(
            &as_of.at(kept[1].1).unwrap(),
            &as_of.at(kept[1].1 + 1).unwrap()
        ));
        assert_eq!(as_of.current_since(), Some(kept[2].1));
    }

    #[test]
    fn a_device_gets_the_versions_after_its_own_in_effect_within_its_window() {
        let (_dir, store, kept) = store_with_versions(4);
        let cache = ReferenceCache::default();
        let as_of = cache.as_of(&store).unwrap();
        let earlier = |after: i64, from: Millis| {
            let e = as_of.earlier(after, from).unwrap();
            let names = e
                .iter()
                .map(|(since, r)| (*since, r.data().stores[0].name.clone()));
            names.collect::<Vec<_>>()
        };
        let all: Vec<(Millis, String)> = (0..3).map(|i| (kept[i].1, format!("name {i}"))).collect();
        // A fresh device: every version before the current one.
        assert_eq!(earlier(0, 0), all);
        // A device holding the second version: the third only.
        assert_eq!(earlier(kept[1].0, 0), all[2..]);
        // A window that starts after the first version was replaced: not the first.
        assert_eq!(earlier(0, kept[1].1 + 1), all[1..]);
        assert_eq!(earlier(0, kept[3].1), vec![]);
        // A device holding the current data: nothing.
        assert_eq!(earlier(kept[3].0, 0), vec![]);
    }

    #[test]
    fn versions_never_in_effect_are_not_sent() {
        let (dir, store, kept) = store_with_versions(5);
        let v = |i: usize| kept[i].0;
        // Import times set by hand (version i at times[i]; the last is the current data).
        let set = |version: i64, at: Millis| {
            let db = rusqlite::Connection::open(dir.path().join("fieldsync.db")).unwrap();
            db.execute(
                "UPDATE reference_history SET imported_at = ?1 WHERE version = ?2",
                rusqlite::params![at, version],
            )
            .unwrap();
        };
        let sent = |times: [Millis; 5]| {
            for (i, at) in times.into_iter().enumerate() {
                set(v(i), at);
            }
            let cache = ReferenceCache::default();
            let as_of = cache.as_of(&store).unwrap();
            let e = as_of.earlier(0, 0).unwrap();
            e.iter()
                .map(|(since, r)| (since.to_owned(), r.data().version))
                .collect::<Vec<(Millis, i64)>>()
        };
        // Version 3 imported in the same millisecond as the current one: never in effect.
        assert_eq!(
            sent([1_000, 2_000, 3_000, 9_000, 9_000]),
            vec![(1_000, v(0)), (2_000, v(1)), (3_000, v(2))]
        );
        // The clock set back before version 3: it took effect before 1 and 2, which so were
        // never in effect (each replaced before it began).
        assert_eq!(
            sent([1_000, 2_000, 5_000, 1_500, 9_000]),
            vec![(1_000, v(0)), (1_500, v(3))]
        );
    }

    #[test]
    fn at_most_the_newest_earlier_versions_are_sent() {
        let (_dir, store, kept) = store_with_versions(EARLIER_SENT + 3);
        let cache = ReferenceCache::default();
        let as_of = cache.as_of(&store).unwrap();
        let sent = as_of.earlier(0, 0).unwrap();
        assert_eq!(sent.len(), EARLIER_SENT);
        let newest = &sent[EARLIER_SENT - 1].1;
        assert_eq!(newest.data().version, kept[kept.len() - 2].0);
        assert_eq!(sent[0].1.data().version, kept[2].0);
    }
}
