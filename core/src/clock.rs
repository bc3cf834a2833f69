//! Time and new ids, injectable so tests and simulations are deterministic.

use std::fmt::Debug;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::fixtures::Rng;
use crate::model::Millis;

/// A source of the current device time, and of ids for what the device creates.
pub trait Clock: Send + Sync + Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> Millis;

    /// A fresh id for a visit created on the device: a random UUID (version 4).
    fn new_id(&self) -> String {
        random_id()
    }
}

fn random_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
    /// Where ids come from when they follow a seed (else they are random).
    ids: Option<Mutex<Rng>>,
}

impl ManualClock {
    /// A clock showing `now`; ids are random.
    pub fn new(now: Millis) -> Self {
        Self {
            now: AtomicI64::new(now),
            ids: None,
        }
    }

    /// A clock showing `now` whose ids follow from `seed`: the stores sharing it create
    /// the same ids in the same order on every run (a simulation replays exactly).
    pub fn with_seeded_ids(now: Millis, seed: u64) -> Self {
        Self {
            now: AtomicI64::new(now),
            ids: Some(Mutex::new(Rng::new(seed))),
        }
    }

    /// Sets the time.
    pub fn set(&self, now: Millis) {
        self.now.store(now, Ordering::SeqCst);
    }

    /// Moves the time forward.
    pub fn advance(&self, ms: Millis) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.now.load(Ordering::SeqCst)
    }

    fn new_id(&self) -> String {
        let Some(ids) = &self.ids else {
            return random_id();
        };
        let mut bytes = [0u8; 16];
        ids.lock()
            .unwrap_or_else(|p| p.into_inner())
            .fill(&mut bytes);
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_ids_repeat_per_seed_and_differ_between_seeds() {
        let ids = |c: &ManualClock| (0..3).map(|_| c.new_id()).collect::<Vec<_>>();
        let a = ids(&ManualClock::with_seeded_ids(0, 7));
        assert_eq!(a, ids(&ManualClock::with_seeded_ids(5, 7)));
        assert_ne!(a, ids(&ManualClock::with_seeded_ids(0, 8)));
        assert_eq!(a.iter().collect::<std::collections::BTreeSet<_>>().len(), 3);
        for id in &a {
            let parsed = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(parsed.get_version_num(), 4, "{id}");
        }
        // Unseeded clocks stay random.
        let m = ManualClock::new(0);
        assert_ne!(m.new_id(), m.new_id());
    }
}
