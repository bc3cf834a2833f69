//! Sign-in and sync with a fieldsync server: async calls on uniffi's tokio support
//! (`suspend fun` in Kotlin, `async` in Swift and Python). Cancelling the foreign call
//! drops the sync; every change the device applied before that is already durable.

use fieldsync_core::model::Role as CoreRole;
use fieldsync_core::sync::{self as core_sync, SyncClient, SyncObserver};

use crate::error::Result;
use crate::observer::{Observers, SyncState};
use crate::store::FieldStore;

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum Role {
    /// A field rep: records visits in their territories.
    Rep,
    /// A manager: plans visits and reviews their territories.
    Manager,
    /// An administrator.
    Admin,
}

impl From<CoreRole> for Role {
    fn from(r: CoreRole) -> Self {
        match r {
            CoreRole::Rep => Self::Rep,
            CoreRole::Manager => Self::Manager,
            CoreRole::Admin => Self::Admin,
        }
    }
}

/// A signed-in device: its token and who signed in.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Session {
    /// The device token for `FieldStore.sync`; keep it in the platform's secure storage.
    pub token: String,
    /// The token's id (for revocation by an administrator).
    pub token_id: String,
    /// The user's id: open the device store with it.
    pub user_id: String,
    /// The user's sign-in name.
    pub username: String,
    /// The user's role.
    pub role: Role,
    /// The territories the user works in.
    pub territory_ids: Vec<String>,
}

impl From<core_sync::LoginResponse> for Session {
    fn from(r: core_sync::LoginResponse) -> Self {
        Self {
            token: r.token,
            token_id: r.token_id,
            user_id: r.user.id,
            username: r.user.username,
            role: r.user.role.into(),
            territory_ids: r.user.territories,
        }
    }
}

/// Changes of a visit the server refused; the visit is kept aside on the device.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct SyncRejection {
    /// The visit.
    pub visit_id: String,
    /// Why, readable, e.g. `not allowed: a rep may not write plan/rep`.
    pub reason: String,
}

impl From<core_sync::Rejection> for SyncRejection {
    fn from(r: core_sync::Rejection) -> Self {
        Self {
            visit_id: r.visit_id,
            reason: r.reason,
        }
    }
}

/// What one sync did.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct SyncReport {
    /// Request/response rounds.
    pub rounds: u32,
    /// Local changes sent (including resends).
    pub pushed: u64,
    /// Local changes the server acknowledged.
    pub acked: u64,
    /// Remote changes received.
    pub received: u64,
    /// Remote changes new to this device.
    pub applied: u64,
    /// Visits whose changes the server refused.
    pub rejections: Vec<SyncRejection>,
    /// Visits removed from the device (they left the user's scope).
    pub purged: Vec<String>,
    /// New reference data arrived.
    pub reference_updated: bool,
    /// The round limit stopped the sync with work left: sync again.
    pub incomplete: bool,
    /// Request bytes sent (after compression).
    pub bytes_up: u64,
    /// Response bytes received.
    pub bytes_down: u64,
}

impl From<core_sync::SyncReport> for SyncReport {
    fn from(r: core_sync::SyncReport) -> Self {
        Self {
            rounds: r.rounds,
            pushed: r.pushed as u64,
            acked: r.acked as u64,
            received: r.received as u64,
            applied: r.applied as u64,
            rejections: r.rejections.into_iter().map(Into::into).collect(),
            purged: r.purged,
            reference_updated: r.reference_updated,
            incomplete: r.incomplete,
            bytes_up: r.bytes_up as u64,
            bytes_down: r.bytes_down as u64,
        }
    }
}

impl From<core_sync::SyncState> for SyncState {
    fn from(s: core_sync::SyncState) -> Self {
        match s {
            core_sync::SyncState::Syncing { round } => Self::Syncing { round },
            core_sync::SyncState::Backoff {
                attempt,
                delay_ms,
                error,
            } => Self::Backoff {
                attempt,
                delay_ms,
                reason: error,
            },
            core_sync::SyncState::Idle => Self::Idle,
            core_sync::SyncState::Failed(reason) => Self::Failed { reason },
        }
    }
}

/// Forwards the core's sync events to the store's subscribers.
struct ObserverBridge<'a>(&'a Observers);

impl SyncObserver for ObserverBridge<'_> {
    fn on_state(&self, state: core_sync::SyncState) {
        let state = SyncState::from(state);
        self.0.each(|o| o.on_sync_state(state.clone()));
    }

    fn on_progress(&self, done: u64, total: u64) {
        self.0.each(|o| o.on_progress(done, total));
    }

    fn on_data_changed(&self, visit_ids: &[String]) {
        self.0.data_changed(visit_ids);
    }
}

/// Signs in to the server at `base_url` (e.g. `https://sync.example.com`) and returns a
/// device token bound to `device_id`. Wrong credentials are `FieldsyncError.Unauthorized`.
#[uniffi::export(async_runtime = "tokio")]
pub async fn login(
    base_url: String,
    username: String,
    password: String,
    device_id: String,
) -> Result<Session> {
    Ok(
        core_sync::login(&base_url, &username, &password, &device_id)
            .await?
            .into(),
    )
}

#[uniffi::export(async_runtime = "tokio")]
impl FieldStore {
    /// Synchronizes with the server at `base_url` using a device token from `login`:
    /// sends the outbox, receives other devices' changes and new reference data.
    /// Subscribers receive the sync state, progress and data-changed events. Cancelling
    /// the call stops the sync; nothing is lost and the next sync resumes.
    pub async fn sync(&self, base_url: String, token: String) -> Result<SyncReport> {
        let client = SyncClient::new(&base_url, &token)?;
        let bridge = ObserverBridge(&self.observers);
        Ok(client.sync(&self.inner, Some(&bridge)).await?.into())
    }
}
