//! The reference data with its lookup index, kept while the data stays the same.
//!
//! Checking a pushed visit looks its store, products, template and promotions up by id
//! ([`ReferenceIndex`]). Building that index walks the whole reference data: with 10,000
//! stores and 2,000 products it took 3.5 million instructions per visit, against 4.8
//! million for all the rest of the check (docs/BENCHMARKS.md, item 24). [`ReferenceCache`]
//! builds it once per version of the data a store holds, and every sync request of that
//! version shares it.

use fieldsync_core::model::{ReferenceData, ReferenceIndex};
use std::sync::{Arc, Mutex};

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

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<IndexedReference>>> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStore;
    use fieldsync_core::fixtures::{self, FixtureSize};

    #[test]
    fn the_index_is_kept_while_the_data_stays_and_built_again_after_an_import() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_dir(dir.path()).unwrap();
        let today = chrono::Utc::now().date_naive();
        let mut refs = fixtures::reference_data(3, &FixtureSize::default(), today);
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
}
