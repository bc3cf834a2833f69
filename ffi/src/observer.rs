//! Foreign observers: the app implements [`FieldObserver`], subscribes it to a store and
//! keeps the returned [`Subscription`]; dropping or cancelling it stops delivery.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::error::Result;

/// What sync is doing, for the app's status line.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum SyncState {
    /// Talking to the server (round number, from 1).
    Syncing {
        /// The request/response round, from 1.
        round: u32,
    },
    /// Waiting before retrying after an error.
    Backoff {
        /// The attempt that failed, from 1.
        attempt: u32,
        /// How long until the next attempt.
        delay_ms: u64,
        /// What went wrong, without personal data.
        reason: String,
    },
    /// Finished: everything sent was acknowledged or rejected.
    Idle,
    /// Gave up; nothing was lost, the outbox is intact and the next sync retries.
    Failed {
        /// Why, without personal data.
        reason: String,
    },
}

/// Receives events from a store. Implemented by the app (Kotlin, Swift, Python).
///
/// Callbacks arrive on the thread that caused them (the caller of a store method, or the
/// sync task); hop to the UI thread yourself. A callback that throws (any exception) is
/// logged and ignored: it never affects the store or the other observers. The methods are
/// declared as throwing so a foreign exception comes back as an error value rather than a
/// panic.
#[uniffi::export(with_foreign)]
pub trait FieldObserver: Send + Sync {
    /// Visits changed on this device (a local action or applied sync changes). An empty
    /// list means the reference data changed.
    fn on_data_changed(&self, visit_ids: Vec<String>) -> Result<()>;
    /// The sync state changed.
    fn on_sync_state(&self, state: SyncState) -> Result<()>;
    /// A sync run made progress: `done` of `total` local changes acknowledged or
    /// rejected by the server so far.
    fn on_progress(&self, done: u64, total: u64) -> Result<()>;
}

type Entry = (u64, Arc<dyn FieldObserver>);

/// The observers subscribed to one store.
#[derive(Default)]
pub(crate) struct Observers {
    next_id: AtomicU64,
    entries: Mutex<Vec<Entry>>,
}

impl std::fmt::Debug for Observers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observers")
            .field("count", &self.snapshot().len())
            .finish()
    }
}

impl Observers {
    pub(crate) fn add(self: &Arc<Self>, observer: Arc<dyn FieldObserver>) -> Arc<Subscription> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().push((id, observer));
        Arc::new(Subscription {
            observers: Arc::downgrade(self),
            id,
        })
    }

    fn remove(&self, id: u64) {
        self.lock().retain(|(i, _)| *i != id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        // Callbacks run outside this lock, so a poisoned lock only means a panic between
        // two Vec operations; the list itself is intact.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn snapshot(&self) -> Vec<Arc<dyn FieldObserver>> {
        self.lock().iter().map(|(_, o)| o.clone()).collect()
    }

    /// Calls `f` on every observer, outside the lock (a callback may subscribe or
    /// cancel), containing errors and panics: one failing observer must not stop the
    /// others or the store call that notified them.
    pub(crate) fn each(&self, f: impl Fn(&dyn FieldObserver) -> Result<()>) {
        for observer in self.snapshot() {
            match catch_unwind(AssertUnwindSafe(|| f(observer.as_ref()))) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "an observer callback failed; ignored"),
                Err(_) => tracing::warn!("an observer callback panicked; ignored"),
            }
        }
    }

    pub(crate) fn data_changed(&self, visit_ids: &[String]) {
        self.each(|o| o.on_data_changed(visit_ids.to_vec()));
    }
}

/// A handle on an observer's subscription: delivery stops when it is cancelled or dropped
/// (a callback already running finishes).
#[derive(Debug, uniffi::Object)]
pub struct Subscription {
    observers: Weak<Observers>,
    id: u64,
}

#[uniffi::export]
impl Subscription {
    /// Stops delivery to this observer; cancelling twice is harmless. (Named `cancel`
    /// because Kotlin's generated `close()` already releases the handle, which stops
    /// delivery as well.)
    pub fn cancel(&self) {
        if let Some(observers) = self.observers.upgrade() {
            observers.remove(self.id);
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cancel();
    }
}
