//! The HTTP sync client: pushes the outbox, pulls what changed, in one round trip.
//!
//! ```no_run
//! # async fn run(store: &fieldsync_core::store::DeviceStore) -> fieldsync_core::Result<()> {
//! use fieldsync_core::sync::{login, SyncClient};
//! let session = login("http://127.0.0.1:8080", "rep1", "secret", "phone-1").await?;
//! let client = SyncClient::new("http://127.0.0.1:8080", &session.token)?;
//! let report = client.sync(store, None).await?;
//! println!("{} acknowledged, {} received", report.acked, report.received);
//! # Ok(()) }
//! ```
//!
//! One call of [`SyncClient::sync`] runs rounds of request/response until nothing is left
//! to send and the server has no more pages (at most [`SyncConfig::max_rounds`]). Each
//! request is retried on network errors, 5xx and 429 with exponential backoff and full
//! jitter (at most [`SyncConfig::max_attempts`] tries); a 401 ends the sync with
//! [`Error::Unauthorized`]. Everything the client learns is committed to the device
//! store before the next request, so an interrupted sync resumes where it stopped: the
//! outbox only shrinks on acknowledgement, and the cursor only moves past changes that
//! were applied.

use automerge::Change;
use rand::Rng as _;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::protocol::*;
use crate::error::{Error, Result};
use crate::store::DeviceStore;

/// Sync-state keys used in the device store.
pub mod keys {
    /// The server cursor.
    pub const CURSOR: &str = "sync.cursor";
    /// The server epoch whose data this device has reconciled with.
    pub const EPOCH: &str = "sync.epoch";
    /// Visits the server asked to purge that still had unacknowledged changes (JSON list).
    pub const PENDING_PURGE: &str = "sync.pending_purge";
    /// Device time of the last successful sync.
    pub const LAST_SYNC: &str = "sync.last_success";
    /// The last error, empty after a success.
    pub const LAST_ERROR: &str = "sync.last_error";
    /// `1` when an answer may have been lost (a failed or retried request) or a received
    /// change lacked its dependencies: the next request sends the heads of every visit,
    /// so the server re-sends whatever this device is missing (a visit it believes it
    /// sent whole, a purge) instead of trusting the cursor alone.
    pub const NEED_HEADS: &str = "sync.need_heads";
}

/// What the sync is doing, for the app's status line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// Talking to the server (round number, from 1).
    Syncing { round: u32 },
    /// Waiting before retrying after an error.
    Backoff {
        attempt: u32,
        delay_ms: u64,
        error: String,
    },
    /// Finished: everything sent was acknowledged or rejected.
    Idle,
    /// Gave up; the message says why. Nothing was lost: the outbox is intact.
    Failed(String),
}

/// Receives sync state, progress and data-changed events (from the syncing task).
pub trait SyncObserver: Send + Sync {
    fn on_state(&self, state: SyncState);
    /// `done` of `total` local changes acknowledged or rejected so far.
    fn on_progress(&self, done: u64, total: u64);
    /// Visits whose data changed on the device (received, purged).
    fn on_data_changed(&self, visit_ids: &[String]);
}

/// Request body compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Tuning of the client.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// Outbox changes per request.
    pub batch: usize,
    /// Request/response rounds per `sync` call.
    pub max_rounds: u32,
    /// Tries per request (network error, 5xx, 429).
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub timeout: Duration,
    pub compression: Compression,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            batch: 500,
            max_rounds: 64,
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            compression: Compression::Zstd,
        }
    }
}

/// What one `sync` call did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncReport {
    pub rounds: u32,
    /// Local changes sent (including resends).
    pub pushed: usize,
    /// Hashes the server acknowledged.
    pub acked: usize,
    /// Remote changes received.
    pub received: usize,
    /// Remote changes new to this device.
    pub applied: usize,
    pub rejections: Vec<Rejection>,
    /// Changes resent because the server asked (after a restore).
    pub resent: usize,
    pub purged: Vec<String>,
    pub reference_updated: bool,
    /// True when the round limit stopped the sync with work left (call again).
    pub incomplete: bool,
    /// Bytes of request bodies sent (after compression) and of JSON received.
    pub bytes_up: usize,
    pub bytes_down: usize,
}

/// What [`Transport::post_sync`] returns: the response and the bytes sent and received.
pub type TransportFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(SyncResponse, usize, usize)>> + Send + 'a>>;

/// How a [`SyncClient`] reaches the server: one `POST /v1/sync` exchange, without retry.
///
/// [`HttpTransport`] is the real one; tests plug in a simulated network (dropping,
/// duplicating, delaying, truncating) so that the client logic under test is the same.
/// Errors must be classified as the HTTP transport does: [`Error::Network`] for a lost
/// request or response, [`Error::Server`] for an HTTP error status (retried on 5xx, 408
/// and 429) or an unreadable answer, [`Error::Unauthorized`] for a 401.
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// Sends one request and waits for its answer.
    fn post_sync<'a>(&'a self, req: &'a SyncRequest) -> TransportFuture<'a>;

    /// Waits `delay` before a retry (a simulated network may skip or virtualize it).
    fn backoff(&self, delay: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(delay))
    }
}

/// The HTTP transport: `POST {base_url}/v1/sync` with a bearer token, compressed body.
#[derive(Clone, Debug)]
pub struct HttpTransport {
    base_url: String,
    token: String,
    http: reqwest::Client,
    compression: Compression,
}

impl HttpTransport {
    /// A transport to the server at `base_url` with the client's timeout and compression.
    pub fn new(base_url: &str, token: &str, config: &SyncConfig) -> Result<Self> {
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: http_client(config.timeout)?,
            compression: config.compression,
        })
    }

    async fn post(&self, req: &SyncRequest) -> Result<(SyncResponse, usize, usize)> {
        let json = serde_json::to_vec(req)?;
        let body = compress(&json, self.compression)?;
        let up = body.len();
        let mut rb = self
            .http
            .post(format!("{}/v1/sync", self.base_url))
            .bearer_auth(&self.token)
            .header("content-type", "application/json");
        match self.compression {
            Compression::None => {}
            Compression::Gzip => rb = rb.header("content-encoding", "gzip"),
            Compression::Zstd => rb = rb.header("content-encoding", "zstd"),
        }
        let resp = rb.body(body).send().await.map_err(net)?;
        if !resp.status().is_success() {
            return Err(error_from(resp).await);
        }
        let bytes = resp.bytes().await.map_err(net)?;
        Ok((decode_response(&bytes)?, up, bytes.len()))
    }
}

impl Transport for HttpTransport {
    fn post_sync<'a>(&'a self, req: &'a SyncRequest) -> TransportFuture<'a> {
        Box::pin(self.post(req))
    }
}

/// Parses the body of a successful sync answer and checks its protocol version.
pub fn decode_response(bytes: &[u8]) -> Result<SyncResponse> {
    let parsed: SyncResponse = serde_json::from_slice(bytes).map_err(|e| Error::Server {
        status: 200,
        message: format!("unreadable sync response: {e}"),
    })?;
    if parsed.protocol != PROTOCOL_VERSION {
        return Err(Error::Server {
            status: 200,
            message: format!("server speaks protocol {}", parsed.protocol),
        });
    }
    Ok(parsed)
}

/// Maps an HTTP error status and body to the client's error (401 → unauthorized).
pub fn error_from_status(status: u16, body: &[u8]) -> Error {
    let text = String::from_utf8_lossy(body).into_owned();
    let message = serde_json::from_str::<ErrorBody>(&text)
        .map(|b| b.message)
        .unwrap_or(text);
    if status == 401 {
        Error::Unauthorized(message)
    } else {
        Error::Server { status, message }
    }
}

/// A client of one sync server with one device token.
#[derive(Clone, Debug)]
pub struct SyncClient {
    transport: Arc<dyn Transport>,
    config: SyncConfig,
}

fn http_client(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(super::tls::client_config()?)
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Error::Network(format!("cannot build the HTTP client: {e}")))
}

/// A reqwest error as a network error, with its causes: reqwest's own message ("error
/// sending request for url (…)") leaves out why (e.g. "invalid peer certificate: …").
fn net(e: reqwest::Error) -> Error {
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = c.source();
    }
    Error::Network(message)
}

async fn error_from(resp: reqwest::Response) -> Error {
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap_or_default();
    error_from_status(status, &body)
}

/// Signs in and returns a device token bound to `device_id`.
pub async fn login(
    base_url: &str,
    username: &str,
    password: &str,
    device_id: &str,
) -> Result<LoginResponse> {
    let http = http_client(Duration::from_secs(30))?;
    let body = LoginRequest {
        username: username.into(),
        password: password.into(),
        device_id: device_id.into(),
    };
    let resp = http
        .post(format!("{}/v1/auth/login", base_url.trim_end_matches('/')))
        .json(&body)
        .send()
        .await
        .map_err(net)?;
    if !resp.status().is_success() {
        return Err(error_from(resp).await);
    }
    resp.json().await.map_err(net)
}

fn retryable(e: &Error) -> bool {
    match e {
        Error::Network(_) => true,
        Error::Server { status, .. } => *status >= 500 || *status == 429 || *status == 408,
        _ => false,
    }
}

/// Compresses a request body.
pub fn compress(body: &[u8], how: Compression) -> Result<Vec<u8>> {
    let io = |e: std::io::Error| Error::Network(format!("compression failed: {e}"));
    match how {
        Compression::None => Ok(body.to_vec()),
        Compression::Zstd => zstd::encode_all(body, 3).map_err(io),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(body).map_err(io)?;
            enc.finish().map_err(io)
        }
    }
}

impl SyncClient {
    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base_url: &str, token: &str) -> Result<Self> {
        Self::with_config(base_url, token, SyncConfig::default())
    }

    /// A client with explicit tuning.
    pub fn with_config(base_url: &str, token: &str, config: SyncConfig) -> Result<Self> {
        let transport = HttpTransport::new(base_url, token, &config)?;
        Ok(Self::with_transport(Arc::new(transport), config))
    }

    /// A client that reaches the server through `transport` (a simulated network in
    /// tests). `config.timeout` and `config.compression` are the transport's business.
    pub fn with_transport(transport: Arc<dyn Transport>, config: SyncConfig) -> Self {
        Self { transport, config }
    }

    /// Sends one request (no retry). Returns the response and the bytes sent/received.
    pub async fn post_once(&self, req: &SyncRequest) -> Result<(SyncResponse, usize, usize)> {
        self.transport.post_sync(req).await
    }

    async fn post_with_retry(
        &self,
        req: &SyncRequest,
        observer: Option<&dyn SyncObserver>,
    ) -> Result<(SyncResponse, usize, usize, bool)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.post_once(req).await {
                Ok((r, up, down)) => return Ok((r, up, down, attempt > 1)),
                Err(e) if retryable(&e) && attempt < self.config.max_attempts => {
                    let cap = self.config.base_delay.as_millis() as u64 * (1u64 << attempt.min(16));
                    let cap = cap.min(self.config.max_delay.as_millis() as u64).max(1);
                    // Full jitter: spread retries of many devices over the whole interval.
                    let delay_ms = rand::rng().random_range(cap / 2..=cap);
                    if let Some(o) = observer {
                        o.on_state(SyncState::Backoff {
                            attempt,
                            delay_ms,
                            error: e.to_string(),
                        });
                    }
                    tracing::debug!(attempt, delay_ms, error = %e, "sync request failed; retrying");
                    self.transport
                        .backoff(Duration::from_millis(delay_ms))
                        .await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Synchronizes `store` with the server: pushes the outbox, pulls changes, applies
    /// acknowledgements, rejections, resends, reference data and purges. See the module
    /// docs of [`crate::sync`] for the protocol.
    pub async fn sync(
        &self,
        store: &DeviceStore,
        observer: Option<&dyn SyncObserver>,
    ) -> Result<SyncReport> {
        let out = self.sync_inner(store, observer).await;
        match &out {
            Ok(_) => {
                store.set_sync_state(keys::LAST_SYNC, &store.now().to_string())?;
                store.set_sync_state(keys::LAST_ERROR, "")?;
                if let Some(o) = observer {
                    o.on_state(SyncState::Idle);
                }
            }
            Err(e) => {
                let _ = store.set_sync_state(keys::LAST_ERROR, &e.to_string());
                if let Some(o) = observer {
                    o.on_state(SyncState::Failed(e.to_string()));
                }
            }
        }
        out
    }

    async fn sync_inner(
        &self,
        store: &DeviceStore,
        observer: Option<&dyn SyncObserver>,
    ) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        let my_actor = store.actor_hex();
        let total = store.outbox_len()?;
        let mut done = 0u64;
        // Changes the server asked for (after a restore), by visit.
        let mut resend: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        let mut send_heads = false;
        let mut need_heads = store.sync_state(keys::NEED_HEADS)?.as_deref() == Some("1");
        let mut resend_rounds = 0;
        let mut round = 0;
        retry_pending_purges(store, &mut report, observer)?;
        loop {
            round += 1;
            if round > self.config.max_rounds {
                report.incomplete = true;
                break;
            }
            report.rounds = round;
            if let Some(o) = observer {
                o.on_state(SyncState::Syncing { round });
            }
            let quarantined: BTreeSet<String> =
                store.quarantined()?.into_iter().map(|(v, _)| v).collect();
            let outbox: Vec<_> = store
                .outbox(self.config.batch + 10_000.min(quarantined.len() * 64))?
                .into_iter()
                .filter(|c| !quarantined.contains(&c.visit_id))
                .take(self.config.batch)
                .collect();
            let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut pushed_hashes = BTreeSet::new();
            for c in &outbox {
                pushed_hashes.insert(c.hash.clone());
                groups
                    .entry(c.visit_id.clone())
                    .or_default()
                    .push(encode_change(&c.bytes));
            }
            let resent_now: usize = resend.values().map(Vec::len).sum();
            for (visit, changes) in std::mem::take(&mut resend) {
                let g = groups.entry(visit).or_default();
                g.extend(changes.iter().map(|b| encode_change(b)));
            }
            report.resent += resent_now;
            let heads = if send_heads || need_heads {
                Some(
                    store
                        .all_heads()?
                        .into_iter()
                        .map(|(visit_id, heads)| VisitHeads { visit_id, heads })
                        .collect(),
                )
            } else {
                None
            };
            let sent_heads = heads.is_some();
            let req = SyncRequest {
                protocol: PROTOCOL_VERSION,
                device_id: store.identity().device_id.clone(),
                cursor: store.sync_state(keys::CURSOR)?,
                epoch: store.sync_state(keys::EPOCH)?,
                reference_version: store.reference_data().version,
                changes: groups
                    .into_iter()
                    .map(|(visit_id, changes)| VisitChanges { visit_id, changes })
                    .collect(),
                heads,
                accept_documents: true,
            };
            report.pushed += outbox.len() + resent_now;
            let (resp, up, down, retried) = match self.post_with_retry(&req, observer).await {
                Ok(r) => r,
                Err(e) => {
                    // The server may have answered into the void: reconcile by heads next.
                    store.set_sync_state(keys::NEED_HEADS, "1")?;
                    return Err(e);
                }
            };
            if retried && !sent_heads {
                // A lost answer may have carried visits or purges the server now
                // believes delivered: the next round sends heads.
                need_heads = true;
                store.set_sync_state(keys::NEED_HEADS, "1")?;
            } else if sent_heads && need_heads && !resp.more {
                need_heads = false;
                store.set_sync_state(keys::NEED_HEADS, "")?;
            }
            report.bytes_up += up;
            report.bytes_down += down;

            // 1. What the server sent: apply before moving the cursor.
            let mut changed = Vec::new();
            // Whole documents first (visits entering the scope): changes of the same page
            // may build on them.
            let mut documents = Vec::with_capacity(resp.documents.len());
            for d in &resp.documents {
                let doc = decode_change(&d.doc).map_err(|e| Error::Server {
                    status: 200,
                    message: format!("server sent a bad document for visit {}: {e}", d.visit_id),
                })?;
                documents.push(crate::store::RemoteDocument {
                    visit_id: d.visit_id.clone(),
                    doc,
                    heads: d.heads.clone(),
                });
            }
            let outcomes = store.apply_remote_documents(&documents)?;
            for (d, applied) in resp.documents.iter().zip(outcomes) {
                report.received += applied.applied;
                report.applied += applied.applied;
                if !applied.missing.is_empty() && !need_heads {
                    need_heads = true;
                    store.set_sync_state(keys::NEED_HEADS, "1")?;
                }
                if applied.applied > 0 {
                    changed.push(d.visit_id.clone());
                }
            }
            for vc in &resp.changes {
                if vc.changes.is_empty() {
                    continue; // the server counts the visit as held: see step 4
                }
                let mut bytes = Vec::with_capacity(vc.changes.len());
                for c in &vc.changes {
                    bytes.push(decode_change(c).map_err(|e| Error::Server {
                        status: 200,
                        message: format!("server sent a bad change for visit {}: {e}", vc.visit_id),
                    })?);
                }
                report.received += bytes.len();
                let applied = store.apply_remote(&vc.visit_id, &bytes)?;
                report.applied += applied.applied;
                if !applied.missing.is_empty() && !need_heads {
                    need_heads = true;
                    store.set_sync_state(keys::NEED_HEADS, "1")?;
                }
                if applied.applied > 0 {
                    changed.push(vc.visit_id.clone());
                }
            }
            // Visits back on the device get their kept own changes back (purged earlier).
            for v in resp
                .documents
                .iter()
                .map(|d| &d.visit_id)
                .chain(resp.changes.iter().map(|c| &c.visit_id))
            {
                if store.reclaim_purged(v)? > 0 {
                    changed.push(v.clone());
                }
            }
            if let Some(refs) = resp.reference_data.clone() {
                store.replace_reference_data(refs)?;
                report.reference_updated = true;
            }
            // 2. Acknowledgements and rejections.
            store.acknowledge(&resp.acks)?;
            report.acked += resp.acks.len();
            done += resp
                .acks
                .iter()
                .filter(|h| pushed_hashes.contains(*h))
                .count() as u64;
            for r in &resp.rejections {
                store.quarantine(&r.visit_id, &r.reason, &r.hashes)?;
                done += r
                    .hashes
                    .iter()
                    .filter(|h| pushed_hashes.contains(*h))
                    .count() as u64;
                report.rejections.push(r.clone());
            }
            if let Some(o) = observer {
                o.on_progress(done.min(total), total);
            }
            // 3. Resends the server asked for: only this device's own changes (the others'
            // authors resend theirs; relaying them would claim their actors).
            for r in &resp.resend {
                if resp.rejections.iter().any(|x| x.visit_id == r.visit_id) {
                    // Refused just now (kept in quarantine): resending cannot help, and
                    // asking again would keep a restored server's epoch unadopted.
                    continue;
                }
                let mine: Vec<Vec<u8>> = match store.changes_since(&r.visit_id, &r.have) {
                    Ok(all) => all
                        .into_iter()
                        .filter(|b| {
                            Change::from_bytes(b.clone())
                                .is_ok_and(|c| c.actor_id().to_hex_string() == my_actor)
                        })
                        .collect(),
                    Err(Error::NotFound { .. }) => Vec::new(),
                    Err(e) => return Err(e),
                };
                if !mine.is_empty() {
                    resend.insert(r.visit_id.clone(), mine);
                }
            }
            // 4. Purges: only once nothing of the visit waits for the server. A visit the
            // server sends again is held in its view: a purge queued for it earlier is stale
            // (it came back into scope) and would leave the device without it.
            let sent_again: BTreeSet<&String> = resp
                .changes
                .iter()
                .map(|c| &c.visit_id)
                .chain(resp.documents.iter().map(|d| &d.visit_id))
                .collect();
            if !resp.purge.is_empty() || !sent_again.is_empty() {
                let mut pending: BTreeSet<String> = pending_purges(store)?;
                let before = pending.clone();
                pending.retain(|v| !sent_again.contains(v));
                for v in &resp.purge {
                    if resend.contains_key(v) {
                        pending.insert(v.clone());
                    } else if store.purge_visit(v)? {
                        report.purged.push(v.clone());
                        changed.push(v.clone());
                        pending.remove(v);
                    } else {
                        pending.insert(v.clone());
                    }
                }
                if pending != before {
                    store.set_sync_state(keys::PENDING_PURGE, &serde_json::to_string(&pending)?)?;
                }
            }
            if !changed.is_empty()
                && let Some(o) = observer
            {
                o.on_data_changed(&changed);
            }
            // 5. Cursor and epoch.
            if !resp.cursor.is_empty() {
                store.set_sync_state(keys::CURSOR, &resp.cursor)?;
            }
            let stored_epoch = store.sync_state(keys::EPOCH)?;
            match stored_epoch {
                None => store.set_sync_state(keys::EPOCH, &resp.epoch)?,
                Some(e) if e == resp.epoch => {}
                Some(_) => {
                    // The server was restored: reconcile by heads until it asks for nothing
                    // this device can give (other authors resend their own changes).
                    if sent_heads && resend.is_empty() && !resp.more {
                        store.set_sync_state(keys::EPOCH, &resp.epoch)?;
                        send_heads = false;
                    } else {
                        send_heads = true;
                        // Persisted: pending purges wait until the reconciliation is done.
                        need_heads = true;
                        store.set_sync_state(keys::NEED_HEADS, "1")?;
                    }
                }
            }
            let outbox_left = store
                .outbox(self.config.batch + quarantined.len() * 64)?
                .iter()
                .any(|c| {
                    !quarantined.contains(&c.visit_id)
                        && !resp.rejections.iter().any(|r| r.visit_id == c.visit_id)
                });
            let progress_made = !resp.acks.is_empty()
                || !resp.rejections.is_empty()
                || !resp.changes.is_empty()
                || !resp.documents.is_empty();
            if !resend.is_empty() {
                resend_rounds += 1;
            }
            // Resends whose dependencies the server still lacks wait for the next sync.
            let resend_more = !resend.is_empty() && resend_rounds <= 4;
            let again = resp.more
                || (send_heads && resend_rounds <= 4)
                || need_heads
                || resend_more
                || (outbox_left && progress_made);
            if !again {
                break;
            }
        }
        retry_pending_purges(store, &mut report, observer)?;
        Ok(report)
    }
}

fn pending_purges(store: &DeviceStore) -> Result<BTreeSet<String>> {
    Ok(match store.sync_state(keys::PENDING_PURGE)? {
        Some(s) if !s.is_empty() => serde_json::from_str(&s).unwrap_or_default(),
        _ => BTreeSet::new(),
    })
}

fn retry_pending_purges(
    store: &DeviceStore,
    report: &mut SyncReport,
    observer: Option<&dyn SyncObserver>,
) -> Result<()> {
    let pending = pending_purges(store)?;
    // While a reconciliation after a server restore is unfinished, a visit's acknowledged
    // changes may still have to be resent: it stays until the server has them again.
    if pending.is_empty() || store.sync_state(keys::NEED_HEADS)?.as_deref() == Some("1") {
        return Ok(());
    }
    let mut left = BTreeSet::new();
    let mut purged = Vec::new();
    for v in pending {
        if store.purge_visit(&v)? {
            purged.push(v);
        } else {
            left.insert(v);
        }
    }
    store.set_sync_state(keys::PENDING_PURGE, &serde_json::to_string(&left)?)?;
    if !purged.is_empty() {
        if let Some(o) = observer {
            o.on_data_changed(&purged);
        }
        report.purged.extend(purged);
    }
    Ok(())
}
