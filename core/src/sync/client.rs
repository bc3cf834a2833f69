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
//! request is retried on network errors, 5xx, 408 and 429 with exponential backoff and
//! jitter (at most [`SyncConfig::max_attempts`] tries); a 401 ends the sync with
//! [`Error::Unauthorized`], and any other 4xx at once with [`Error::Server`].
//!
//! **A busy server.** A server with no room for the request right now answers 503 with
//! `Retry-After` (too many syncs or sign-ins at once). The sync and [`login`] both retry
//! it, waiting what the server asked ([`retry_delay`]: at most [`SyncConfig::max_delay`],
//! spread a little so that devices turned away together do not come back together), or
//! the usual backoff when it did not say. Everything the client learns is committed to the device
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
    /// The server epoch of the answer that brought the reference data held
    /// ([`super::SyncRequest::reference_epoch`]).
    pub const REFERENCE_EPOCH: &str = "sync.reference_epoch";
    /// Visits the server asked to purge that still had unacknowledged changes (JSON list).
    pub const PENDING_PURGE: &str = "sync.pending_purge";
    /// Device time of the last successful sync.
    pub const LAST_SYNC: &str = "sync.last_success";
    /// The last error, empty after a success.
    pub const LAST_ERROR: &str = "sync.last_error";
    /// `1` when an answer may have been lost (a failed or retried request the server may
    /// have handled: not one it turned away with 503) or a received change lacked its
    /// dependencies: the next request sends the heads of every visit, so the server
    /// re-sends whatever this device is missing (a visit it believes it sent whole, a
    /// purge) instead of trusting the cursor alone.
    pub const NEED_HEADS: &str = "sync.need_heads";
    /// `1` when the server's last answer said it takes whole documents
    /// ([`super::SyncResponse::takes_documents`]).
    pub const TAKES_DOCUMENTS: &str = "sync.takes_documents";
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

/// A failed exchange and how long the server asked to wait before trying again.
#[derive(Debug)]
pub struct Failure {
    pub error: Error,
    /// The answer's `Retry-After` (in seconds; an HTTP date is not used), if it had one.
    pub retry_after: Option<Duration>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self {
            error,
            retry_after: None,
        }
    }
}

/// What [`Transport::post_sync_hinted`] returns.
pub type HintedFuture<'a> = Pin<
    Box<
        dyn Future<Output = std::result::Result<(SyncResponse, usize, usize), Failure>> + Send + 'a,
    >,
>;

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

    /// Like [`post_sync`](Self::post_sync), with the server's `Retry-After` on failure
    /// (what the retries of [`SyncClient`] use). The default says nothing of it.
    fn post_sync_hinted<'a>(&'a self, req: &'a SyncRequest) -> HintedFuture<'a> {
        Box::pin(async move { self.post_sync(req).await.map_err(Failure::from) })
    }

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

    async fn post(
        &self,
        req: &SyncRequest,
    ) -> std::result::Result<(SyncResponse, usize, usize), Failure> {
        let json = serde_json::to_vec(req).map_err(Error::from)?;
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
            return Err(failure_from(resp).await);
        }
        let bytes = resp.bytes().await.map_err(net)?;
        Ok((decode_response(&bytes)?, up, bytes.len()))
    }
}

impl Transport for HttpTransport {
    fn post_sync<'a>(&'a self, req: &'a SyncRequest) -> TransportFuture<'a> {
        Box::pin(async move { self.post(req).await.map_err(|f| f.error) })
    }

    fn post_sync_hinted<'a>(&'a self, req: &'a SyncRequest) -> HintedFuture<'a> {
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

/// An HTTP error answer as the client's error, with its `Retry-After`.
async fn failure_from(resp: reqwest::Response) -> Failure {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let body = resp.bytes().await.unwrap_or_default();
    Failure {
        error: error_from_status(status, &body),
        retry_after,
    }
}

/// A `Retry-After` of delay-seconds (the form the fieldsync server sends). The HTTP-date
/// form is ignored: the device's clock may be wrong, and the backoff covers it.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Signs in and returns a device token bound to `device_id`. A busy server (503) is
/// retried as [`SyncClient::sync`] retries, up to the default [`SyncConfig::max_attempts`];
/// any other failure (wrong password, 429 after failed sign-ins, no network) is returned
/// at once.
pub async fn login(
    base_url: &str,
    username: &str,
    password: &str,
    device_id: &str,
) -> Result<LoginResponse> {
    let config = SyncConfig {
        timeout: Duration::from_secs(30),
        ..SyncConfig::default()
    };
    login_with(base_url, username, password, device_id, &config).await
}

/// [`login`] with explicit retry tuning (`max_attempts`, `base_delay`, `max_delay`) and
/// timeout.
pub async fn login_with(
    base_url: &str,
    username: &str,
    password: &str,
    device_id: &str,
    config: &SyncConfig,
) -> Result<LoginResponse> {
    let http = http_client(config.timeout)?;
    let body = LoginRequest {
        username: username.into(),
        password: password.into(),
        device_id: device_id.into(),
    };
    let url = format!("{}/v1/auth/login", base_url.trim_end_matches('/'));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let resp = http.post(&url).json(&body).send().await.map_err(net)?;
        if resp.status().is_success() {
            return resp.json().await.map_err(net);
        }
        let failure = failure_from(resp).await;
        // Only "busy": a retried wrong password would count as another failed sign-in.
        let busy = matches!(failure.error, Error::Server { status: 503, .. });
        if !busy || attempt >= config.max_attempts {
            return Err(failure.error);
        }
        let delay = retry_delay(config, attempt, failure.retry_after);
        tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, error = %failure.error, "sign-in: server busy; retrying");
        tokio::time::sleep(delay).await;
    }
}

/// Whether an error says the server did not handle the request at all, so that no answer
/// can have been lost: a 503, which the fieldsync server sends only when it turns a
/// request away before reading it (too many at once), as proxies do when they have no
/// server to send it to. Anything else (a network error, another status) may come after
/// the server stored and answered something.
fn not_handled(e: &Error) -> bool {
    matches!(e, Error::Server { status: 503, .. })
}

fn retryable(e: &Error) -> bool {
    match e {
        Error::Network(_) => true,
        Error::Server { status, .. } => *status >= 500 || *status == 429 || *status == 408,
        _ => false,
    }
}

/// How long to wait before try `attempt + 1`. The server's `Retry-After` when it gave one
/// (at most `max_delay`), plus up to a quarter more so that devices turned away together
/// spread out (still at most `max_delay`);
/// otherwise exponential backoff with jitter, between half and all of
/// `base_delay × 2^attempt`, at most `max_delay`.
pub fn retry_delay(config: &SyncConfig, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let max = config.max_delay.as_millis() as u64;
    let ms = match retry_after {
        Some(asked) => {
            let asked = (asked.as_millis() as u64).min(max);
            let spread = rand::rng().random_range(0..=asked / 4);
            (asked + spread).min(max)
        }
        None => {
            let cap = config.base_delay.as_millis() as u64 * (1u64 << attempt.min(16));
            let cap = cap.min(max).max(1);
            // Jitter: spread retries of many devices over the interval.
            rand::rng().random_range(cap / 2..=cap)
        }
    };
    Duration::from_millis(ms)
}

/// Compresses a request body.
pub fn compress(body: &[u8], how: Compression) -> Result<Vec<u8>> {
    let io = |e: std::io::Error| Error::Network(format!("compression failed: {e}"));
    match how {
        Compression::None => Ok(body.to_vec()),
        // The thread's kept context: one request body of one change takes 3.2 µs with it,
        // 15.9 µs with a new context (`zstd::encode_all`; bench `device/sync_body_zstd_*`).
        Compression::Zstd => crate::zstd_frames::compress(body, 3)
            .ok_or_else(|| Error::Network("compression failed: Zstandard refused the body".into())),
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

    /// Sends `req`, retrying as the module docs say. Returns the answer and whether an
    /// earlier answer may have been lost (a failed attempt the server may have handled),
    /// or the last error and the same.
    async fn post_with_retry(
        &self,
        req: &SyncRequest,
        observer: Option<&dyn SyncObserver>,
    ) -> std::result::Result<(SyncResponse, usize, usize, bool), (Error, bool)> {
        let mut attempt = 0;
        let mut maybe_lost = false;
        loop {
            attempt += 1;
            let failure = match self.transport.post_sync_hinted(req).await {
                Ok((r, up, down)) => return Ok((r, up, down, maybe_lost)),
                Err(f) => f,
            };
            maybe_lost |= !not_handled(&failure.error);
            match failure {
                Failure {
                    error: e,
                    retry_after,
                } if retryable(&e) && attempt < self.config.max_attempts => {
                    let delay_ms =
                        retry_delay(&self.config, attempt, retry_after).as_millis() as u64;
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
                f => return Err((f.error, maybe_lost)),
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
        let mut takes_documents = store.sync_state(keys::TAKES_DOCUMENTS)?.as_deref() == Some("1");
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
            let mut pushed_hashes = BTreeSet::new();
            let mut by_visit: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
            for c in &outbox {
                pushed_hashes.insert(c.hash.clone());
                by_visit
                    .entry(c.visit_id.as_str())
                    .or_default()
                    .insert(c.hash.clone());
            }
            // A visit made or filled in here goes whole to a server that takes documents
            // (see `DeviceStore::pushable_document`).
            let mut documents = Vec::new();
            // The outbox changes in each document pushed, by visit, with its heads: what
            // the server's `acked_documents` acknowledges.
            let mut in_documents: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> =
                BTreeMap::new();
            for (visit, hashes) in by_visit {
                if !takes_documents || resend.contains_key(visit) {
                    continue;
                }
                if let Some((doc, heads)) = store.pushable_document(visit, &hashes)? {
                    in_documents
                        .insert(visit.to_string(), (heads.iter().cloned().collect(), hashes));
                    documents.push(VisitDocument {
                        visit_id: visit.to_string(),
                        doc: encode_change(&doc),
                        heads,
                        visit: None,
                    });
                }
            }
            // The other visits' outbox changes go as changes.
            let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for c in outbox
                .iter()
                .filter(|c| !in_documents.contains_key(&c.visit_id))
            {
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
            let epoch = store.sync_state(keys::EPOCH)?;
            let req = SyncRequest {
                protocol: PROTOCOL_VERSION,
                device_id: store.identity().device_id.clone(),
                cursor: store.sync_state(keys::CURSOR)?,
                epoch: epoch.clone(),
                reference_version: store.reference_data().version,
                reference_epoch: store
                    .sync_state(keys::REFERENCE_EPOCH)?
                    .filter(|e| Some(e) != epoch.as_ref()),
                changes: groups
                    .into_iter()
                    .map(|(visit_id, changes)| VisitChanges { visit_id, changes })
                    .collect(),
                heads,
                accept_documents: true,
                accept_visits: Some(crate::document::VISIT_FORMAT),
                documents,
            };
            report.pushed += outbox.len() + resent_now;
            let (resp, up, down, maybe_lost) = match self.post_with_retry(&req, observer).await {
                Ok(r) => r,
                Err((e, maybe_lost)) => {
                    // The server may have answered into the void: reconcile by heads next.
                    if maybe_lost {
                        store.set_sync_state(keys::NEED_HEADS, "1")?;
                    }
                    return Err(e);
                }
            };
            if maybe_lost && !sent_heads {
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
            if resp.takes_documents != takes_documents {
                takes_documents = resp.takes_documents;
                store.set_sync_state(
                    keys::TAKES_DOCUMENTS,
                    if takes_documents { "1" } else { "" },
                )?;
            }

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
                let visit = match &d.visit {
                    Some(v) => Some(decode_change(v).map_err(|e| Error::Server {
                        status: 200,
                        message: format!(
                            "server sent a bad visit with the document for visit {}: {e}",
                            d.visit_id
                        ),
                    })?),
                    None => None,
                };
                documents.push(crate::store::RemoteDocument {
                    visit_id: d.visit_id.clone(),
                    doc,
                    heads: d.heads.clone(),
                    visit,
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
                store.receive_reference_data(
                    refs,
                    resp.reference_since,
                    &resp.earlier_reference,
                )?;
                // After the data: a crash in between costs one more copy, never a stale one.
                store.set_sync_state(keys::REFERENCE_EPOCH, &resp.epoch)?;
                report.reference_updated = true;
            }
            // 2. Acknowledgements and rejections. A document acknowledged whole is so only
            // with the heads it was pushed with.
            let mut acks = resp.acks.clone();
            for a in &resp.acked_documents {
                if let Some((heads, hashes)) = in_documents.get(&a.visit_id)
                    && a.heads.iter().cloned().collect::<BTreeSet<_>>() == *heads
                {
                    acks.extend(hashes.iter().cloned());
                }
            }
            store.acknowledge(&acks)?;
            report.acked += acks.len();
            done += acks.iter().filter(|h| pushed_hashes.contains(*h)).count() as u64;
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
            // A closed store kept for visits held here goes with the last of them.
            if !store.release_closed_stores()?.is_empty() {
                report.reference_updated = true;
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
            let progress_made = !acks.is_empty()
                || !resp.rejections.is_empty()
                || !resp.changes.is_empty()
                || !resp.documents.is_empty();
            if !resend.is_empty() {
                resend_rounds += 1;
            }
            // Resends whose dependencies the server still lacks wait for the next sync.
            let resend_more = !resend.is_empty() && resend_rounds <= 4;
            // Heads once more only when this round did not send them or moved something:
            // a reconciliation that waits for other devices' resends (a change here builds
            // on one only they can give back) stops here and goes on at the next sync
            // (NEED_HEADS stays set) instead of spending the round limit.
            let again = resp.more
                || (send_heads && resend_rounds <= 4)
                || (need_heads && (!sent_heads || progress_made))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// One scripted HTTP answer.
    struct Answer {
        status: u16,
        retry_after: Option<&'static str>,
        body: String,
    }

    fn answer(status: u16, retry_after: Option<&'static str>, body: String) -> Answer {
        Answer {
            status,
            retry_after,
            body,
        }
    }

    fn busy(retry_after: Option<&'static str>) -> Answer {
        let body = r#"{"error":"busy","message":"too many at once; try again in a second"}"#;
        answer(503, retry_after, body.into())
    }

    fn sync_ok() -> Answer {
        let resp = SyncResponse {
            protocol: PROTOCOL_VERSION,
            epoch: "epoch-1".into(),
            cursor: "1".into(),
            ..Default::default()
        };
        answer(200, None, serde_json::to_string(&resp).unwrap())
    }

    fn login_ok() -> Answer {
        let body = r#"{"token":"tok-1","token_id":"t1","user":{"id":"rep-1","username":"rep1","role":"rep","territories":["t-1"]}}"#;
        answer(200, None, body.into())
    }

    /// Requests seen by a scripted server: path and arrival time.
    type Seen = Arc<Mutex<Vec<(String, Instant)>>>;

    /// Reads one HTTP/1.1 request (head and `content-length` body); returns its path.
    async fn read_request(tcp: &mut tokio::net::TcpStream) -> Option<String> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = tcp.read(&mut chunk).await.ok()?;
            if n == 0 || buf.len() > 1 << 20 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = buf.len() - head_end;
        while body < length {
            let n = tcp.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            body += n;
        }
        head.split_whitespace().nth(1).map(str::to_string)
    }

    /// An HTTP server on 127.0.0.1 that answers the requests, one per connection, with the
    /// answers of `script` in order (then 418 "script exhausted", not retried).
    async fn scripted(script: Vec<Answer>) -> (String, Seen) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen: Seen = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            let mut script = script.into_iter();
            while let Ok((mut tcp, _)) = listener.accept().await {
                let Some(path) = read_request(&mut tcp).await else {
                    continue;
                };
                log.lock().unwrap().push((path, Instant::now()));
                let a = script
                    .next()
                    .unwrap_or_else(|| answer(418, None, "{}".into()));
                let mut head = format!(
                    "HTTP/1.1 {} Scripted\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                    a.status,
                    a.body.len()
                );
                if let Some(r) = a.retry_after {
                    head.push_str(&format!("retry-after: {r}\r\n"));
                }
                head.push_str("\r\n");
                let _ = tcp.write_all(head.as_bytes()).await;
                let _ = tcp.write_all(a.body.as_bytes()).await;
                let _ = tcp.shutdown().await;
            }
        });
        (base, seen)
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<SyncState>>);

    impl SyncObserver for Recorder {
        fn on_state(&self, state: SyncState) {
            self.0.lock().unwrap().push(state);
        }
        fn on_progress(&self, _: u64, _: u64) {}
        fn on_data_changed(&self, _: &[String]) {}
    }

    impl Recorder {
        /// (delay, error) of every backoff.
        fn backoffs(&self) -> Vec<(u64, String)> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .filter_map(|s| match s {
                    SyncState::Backoff {
                        delay_ms, error, ..
                    } => Some((*delay_ms, error.clone())),
                    _ => None,
                })
                .collect()
        }
    }

    fn config(base_delay_ms: u64, max_delay_ms: u64) -> SyncConfig {
        SyncConfig {
            max_attempts: 4,
            base_delay: Duration::from_millis(base_delay_ms),
            max_delay: Duration::from_millis(max_delay_ms),
            timeout: Duration::from_secs(10),
            ..SyncConfig::default()
        }
    }

    fn device() -> (tempfile::TempDir, DeviceStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = DeviceStore::open(dir.path().join("d.db"), "rep-1", "phone-1").unwrap();
        (dir, store)
    }

    fn gaps(seen: &Seen) -> Vec<Duration> {
        let s = seen.lock().unwrap();
        s.windows(2).map(|w| w[1].1 - w[0].1).collect()
    }

    #[tokio::test]
    async fn a_busy_sync_is_retried_after_the_servers_retry_after() {
        // Two busy answers, then the sync. A busy answer means the server did nothing, so
        // no answer was lost: no second round to check holdings by heads.
        let (base, seen) = scripted(vec![busy(Some("1")), busy(Some("1")), sync_ok()]).await;
        let (_dir, store) = device();
        let client = SyncClient::with_config(&base, "token", config(10, 10_000)).unwrap();
        let rec = Recorder::default();
        let report = client.sync(&store, Some(&rec)).await.unwrap();
        assert_eq!(report.rounds, 1);
        assert_eq!(seen.lock().unwrap().len(), 3);
        assert_eq!(store.sync_state(keys::NEED_HEADS).unwrap(), None);
        assert!(seen.lock().unwrap().iter().all(|(p, _)| p == "/v1/sync"));
        let backoffs = rec.backoffs();
        assert_eq!(backoffs.len(), 2, "{backoffs:?}");
        for (delay, error) in &backoffs {
            // What the server asked (1 s), spread by at most a quarter: not the 10-40 ms
            // backoff of the configuration.
            assert!((1_000..=1_250).contains(delay), "{backoffs:?}");
            assert!(
                error.contains("503") && error.contains("too many"),
                "{error}"
            );
        }
        let g = gaps(&seen);
        assert!(
            g[0] >= Duration::from_secs(1) && g[1] >= Duration::from_secs(1),
            "{g:?}"
        );
        assert!(matches!(
            rec.0.lock().unwrap().last(),
            Some(SyncState::Idle)
        ));
    }

    #[tokio::test]
    async fn without_retry_after_the_backoff_applies_and_a_long_retry_after_is_capped() {
        let (base, seen) = scripted(vec![busy(None), busy(Some("3600")), sync_ok()]).await;
        let (_dir, store) = device();
        let client = SyncClient::with_config(&base, "token", config(50, 300)).unwrap();
        let rec = Recorder::default();
        let start = Instant::now();
        client.sync(&store, Some(&rec)).await.unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(seen.lock().unwrap().len(), 3);
        let backoffs = rec.backoffs();
        assert_eq!(backoffs.len(), 2, "{backoffs:?}");
        // Attempt 1: between half and all of 50 ms × 2.
        assert!((50..=100).contains(&backoffs[0].0), "{backoffs:?}");
        // An hour asked, max_delay (300 ms) waited.
        assert_eq!(backoffs[1].0, 300, "{backoffs:?}");
    }

    #[tokio::test]
    async fn a_sync_gives_up_after_max_attempts_of_busy() {
        let script = (0..4).map(|_| busy(Some("0"))).collect();
        let (base, seen) = scripted(script).await;
        let (_dir, store) = device();
        let client = SyncClient::with_config(&base, "token", config(10, 100)).unwrap();
        let e = client.sync(&store, None).await.unwrap_err();
        assert!(matches!(e, Error::Server { status: 503, .. }), "{e}");
        assert_eq!(seen.lock().unwrap().len(), 4);
        // Turned away every time: nothing to reconcile by heads next time.
        assert_eq!(store.sync_state(keys::NEED_HEADS).unwrap(), None);
    }

    #[tokio::test]
    async fn a_retry_after_another_server_error_checks_holdings_by_heads() {
        // A 500 may come after the server stored something and answered into the void:
        // the next round sends heads (a second round).
        let err = answer(500, None, r#"{"error":"internal","message":"x"}"#.into());
        let (base, seen) = scripted(vec![err, sync_ok(), sync_ok()]).await;
        let (_dir, store) = device();
        let client = SyncClient::with_config(&base, "token", config(10, 100)).unwrap();
        let report = client.sync(&store, None).await.unwrap();
        assert_eq!(report.rounds, 2);
        assert_eq!(seen.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn sign_in_retries_a_busy_server() {
        let (base, seen) = scripted(vec![busy(None), busy(Some("1")), login_ok()]).await;
        let session = login_with(&base, "rep1", "pw", "phone-1", &config(50, 10_000))
            .await
            .unwrap();
        assert_eq!(session.token, "tok-1");
        let s = seen.lock().unwrap().clone();
        assert_eq!(s.len(), 3);
        assert!(s.iter().all(|(p, _)| p == "/v1/auth/login"));
        drop(s);
        let g = gaps(&seen);
        assert!(g[0] < Duration::from_millis(900), "{g:?}");
        assert!(g[1] >= Duration::from_secs(1), "{g:?}");
        // The default sign-in retries too.
        let (base, seen) = scripted(vec![busy(Some("0")), login_ok()]).await;
        assert!(login(&base, "rep1", "pw", "phone-1").await.is_ok());
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn other_client_errors_are_not_retried() {
        for (status, unauthorized) in [(400, false), (401, true), (403, false), (429, false)] {
            let body = r#"{"error":"x","message":"refused"}"#.to_string();
            let (base, seen) = scripted(vec![answer(status, Some("1"), body), login_ok()]).await;
            let e = login_with(&base, "rep1", "pw", "phone-1", &config(10, 100))
                .await
                .unwrap_err();
            match e {
                Error::Unauthorized(m) => assert!(unauthorized && m == "refused", "{m}"),
                Error::Server { status: s, message } => {
                    assert!(
                        !unauthorized && s == status && message == "refused",
                        "{message}"
                    );
                }
                other => panic!("{other}"),
            }
            assert_eq!(seen.lock().unwrap().len(), 1, "sign-in, {status}");
        }
        for status in [400, 401, 403, 413] {
            let body = r#"{"error":"x","message":"refused"}"#.to_string();
            let (base, seen) = scripted(vec![answer(status, None, body), sync_ok()]).await;
            let (_dir, store) = device();
            let client = SyncClient::with_config(&base, "token", config(10, 100)).unwrap();
            assert!(client.sync(&store, None).await.is_err());
            assert_eq!(seen.lock().unwrap().len(), 1, "sync, {status}");
        }
    }

    #[test]
    fn retry_delays() {
        let c = config(200, 10_000);
        for _ in 0..50 {
            let d = retry_delay(&c, 1, Some(Duration::from_secs(1)));
            assert!((1_000..=1_250).contains(&(d.as_millis() as u64)), "{d:?}");
            assert_eq!(
                retry_delay(&c, 1, Some(Duration::from_secs(3600))),
                Duration::from_secs(10)
            );
            assert_eq!(retry_delay(&c, 3, Some(Duration::ZERO)), Duration::ZERO);
            let d = retry_delay(&c, 1, None).as_millis() as u64;
            assert!((200..=400).contains(&d), "{d}");
            let d = retry_delay(&c, 10, None).as_millis() as u64;
            assert!((5_000..=10_000).contains(&d), "{d}");
        }
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
