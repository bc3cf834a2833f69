//! What a sync status bar shows, read from the device store.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::Millis;
use crate::store::DeviceStore;
use crate::sync::client::keys;

/// A visit whose changes the server refused, with its reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedVisit {
    pub visit_id: String,
    pub reason: String,
}

/// The device's sync status, as stored: survives restarts and is shared by every process
/// that opens the store (the app and a background worker).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// Local changes the server has not acknowledged yet.
    pub pending_changes: u64,
    /// Device time of the last successful sync.
    pub last_sync_at: Option<Millis>,
    /// The last sync error, if the last attempt failed.
    pub last_error: Option<String>,
    /// Visits the server refused, with its reasons.
    pub quarantined: Vec<QuarantinedVisit>,
}

/// Reads the sync status of a store.
pub fn status(store: &DeviceStore) -> Result<SyncStatus> {
    Ok(SyncStatus {
        pending_changes: store.outbox_len()?,
        last_sync_at: store
            .sync_state(keys::LAST_SYNC)?
            .and_then(|s| s.parse().ok()),
        last_error: store
            .sync_state(keys::LAST_ERROR)?
            .filter(|e| !e.is_empty()),
        quarantined: store
            .quarantined()?
            .into_iter()
            .map(|(visit_id, reason)| QuarantinedVisit { visit_id, reason })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn status_reads_what_sync_stored() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(crate::clock::ManualClock::new(1_000));
        let s = DeviceStore::open_with_clock(dir.path().join("s.db"), "rep-1", "d", clock).unwrap();
        let empty = status(&s).unwrap();
        assert_eq!(
            empty,
            SyncStatus {
                pending_changes: 0,
                last_sync_at: None,
                last_error: None,
                quarantined: vec![]
            }
        );
        s.set_sync_state(keys::LAST_SYNC, "1234").unwrap();
        s.set_sync_state(keys::LAST_ERROR, "server not reachable")
            .unwrap();
        s.quarantine(
            "v-1",
            "not allowed: a rep may not write plan/rep",
            &["h".into()],
        )
        .unwrap();
        let st = status(&s).unwrap();
        assert_eq!(st.last_sync_at, Some(1234));
        assert_eq!(st.last_error.as_deref(), Some("server not reachable"));
        assert_eq!(
            st.quarantined[0].reason,
            "not allowed: a rep may not write plan/rep"
        );
    }
}
