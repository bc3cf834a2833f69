//! Passwords (argon2id) and device tokens (32 random bytes, stored as SHA-256), and the
//! [`Gate`] that bounds work running at once: the password checks of every sign-in
//! ([`PasswordGate`]) and the sync requests (`AppState::syncs`).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bounds how much of some work runs at once: at most `slots` holders, and a caller waits
/// at most `wait` for a free slot; after that it is turned away ([`GateError::Busy`],
/// answered "busy, retry": 503 with `Retry-After`) having done nothing. Waiting callers
/// get slots in the order they asked (the semaphore is fair).
///
/// Two gates use it:
///
/// * **password checks** ([`PasswordGate`], one slot per CPU): each argon2id check takes
///   about 19 MiB and tens of milliseconds of CPU, so a burst of sign-ins with nothing in
///   the way runs them all at once: memory grows with the burst (20 concurrent sign-ins
///   took a debug server to 420 MiB) and every check slows down;
/// * **sync requests** (`POST /v1/sync`, `Config::max_concurrent_syncs`): 500 devices
///   syncing at once would otherwise all hold their bodies, Automerge documents and
///   database work in memory together, and every one of them would get slower.
#[derive(Clone, Debug)]
pub struct Gate {
    slots: Arc<Semaphore>,
    size: usize,
    wait: Duration,
    turned_away: Option<prometheus::IntCounter>,
}

/// The gate of the password checks of every sign-in (API and dashboard).
pub type PasswordGate = Gate;

/// A slot of a [`Gate`], held until dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// Why a [`Gate`] did not let the work in.
#[derive(Debug)]
pub enum GateError {
    /// Every slot stayed taken for the whole wait: try again after `retry_after`.
    Busy { retry_after: Duration },
    /// The work itself failed (it panicked or the runtime is shutting down).
    Failed(String),
}

impl Gate {
    /// At most `slots` (at least 1) holders at once; a caller waits at most `wait` for one.
    pub fn new(slots: usize, wait: Duration) -> Self {
        let size = slots.max(1);
        Self {
            slots: Arc::new(Semaphore::new(size)),
            size,
            wait,
            turned_away: None,
        }
    }

    /// Counts every caller turned away in `counter` (a Prometheus metric).
    pub fn counting(mut self, counter: prometheus::IntCounter) -> Self {
        self.turned_away = Some(counter);
        self
    }

    /// One slot per CPU: the password gate's default. argon2id is CPU-bound, so more would
    /// only add memory and latency.
    pub fn default_slots() -> usize {
        std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Slots held now.
    pub fn in_use(&self) -> usize {
        self.size - self.slots.available_permits()
    }

    /// Waits at most the gate's wait for a free slot.
    pub async fn enter(&self) -> Result<Slot, GateError> {
        match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Slot { _permit: permit }),
            Ok(Err(e)) => Err(GateError::Failed(e.to_string())),
            Err(_) => {
                if let Some(c) = &self.turned_away {
                    c.inc();
                }
                Err(GateError::Busy {
                    retry_after: self.retry_after(),
                })
            }
        }
    }

    /// Runs `check` (blocking: a password verification and what goes with it) on the
    /// blocking pool once a slot is free. The slot is held until `check` returns, even if
    /// the caller gives up waiting for it (a client that hangs up does not free a slot
    /// whose check is still hashing).
    pub async fn run<T, F>(&self, check: F) -> Result<T, GateError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let slot = self.enter().await?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            check()
        })
        .await
        .map_err(|e| GateError::Failed(format!("password check failed: {e}")))
    }

    /// What to tell a caller turned away: about the time the queue takes to move on.
    pub fn retry_after(&self) -> Duration {
        Duration::from_secs(self.wait.as_secs().clamp(1, 60))
    }
}

/// An argon2id hash of a random password, verified against when the user does not exist
/// so failed sign-ins take the same time either way.
pub fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| hash_password(&new_token()).unwrap_or_default())
}

/// Hashes a password with argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a password against a stored hash (false for a malformed hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A new device token: 32 random bytes, hex.
pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// A readable random password (for `create-user` without `--password` and the demo).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..16)
        .map(|_| ALPHABET[(rand::random::<u32>() as usize) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_gate_runs_at_most_its_size_at_once_and_turns_away_after_the_wait() {
        let gate = PasswordGate::new(2, Duration::from_millis(150));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let (gate, running, peak) = (gate.clone(), running.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                gate.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(100));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        let mut done = 0;
        let mut busy = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => done += 1,
                Err(GateError::Busy { retry_after }) => {
                    assert_eq!(retry_after, Duration::from_secs(1));
                    busy += 1;
                }
                Err(GateError::Failed(e)) => panic!("{e}"),
            }
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert!(done >= 2 && busy >= 1, "done {done}, busy {busy}");
        assert_eq!(done + busy, 12);
        assert_eq!(gate.in_use(), 0);
        // Free again: the next check runs at once.
        assert!(gate.run(|| 7).await.is_ok_and(|v| v == 7));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slot_is_held_until_dropped_and_callers_turned_away_are_counted() {
        let counter = prometheus::IntCounter::new("t_turned_away_total", "test").unwrap();
        let gate = Gate::new(1, Duration::from_millis(50)).counting(counter.clone());
        let slot = gate.enter().await.unwrap();
        assert_eq!(gate.in_use(), 1);
        let r = gate.enter().await;
        assert!(matches!(r, Err(GateError::Busy { .. })), "{r:?}");
        assert_eq!(counter.get(), 1);
        // A waiting caller gets the slot as soon as it is freed, within the wait.
        let g = gate.clone();
        let waiter = tokio::spawn(async move { g.enter().await.map(drop) });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(slot);
        assert!(waiter.await.unwrap().is_ok());
        assert_eq!(gate.in_use(), 0);
        assert_eq!(counter.get(), 1);
    }

    #[tokio::test]
    async fn a_panicking_check_frees_its_slot() {
        let gate = PasswordGate::new(1, Duration::from_millis(100));
        let r = gate.run(|| panic!("boom")).await;
        assert!(matches!(r, Err(GateError::Failed(_))), "{r:?}");
        assert_eq!(gate.in_use(), 0);
        assert!(gate.run(|| 1).await.is_ok());
    }

    #[test]
    fn passwords_round_trip() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
        assert_eq!(new_token().len(), 64);
    }
}
