//! The HTTP API: routes, authentication, errors, limits.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/auth/login` | username + password + device id → device token (rate-limited on failures) |
//! | `POST /v1/sync` | one sync round trip ([`fieldsync_core::sync::protocol`]; at most [`Config::max_concurrent_syncs`] at once) |
//! | `POST /v1/visits` | a manager plans a visit |
//! | `GET /v1/visits/{id}` | a visit in the caller's scope |
//! | `PATCH /v1/visits/{id}` | a manager assigns or reschedules a planned visit |
//! | `GET /healthz` | liveness and database check |
//! | `GET /metrics` | Prometheus metrics |
//! | `GET /v1/openapi.json` | the OpenAPI document |
//!
//! Every error is `{"error": code, "message": text}` with the matching 4xx/5xx status. A
//! sign-in or sync the server has no room for right now is answered 503 with
//! `Retry-After` ([`AppError::busy`]): the work is bounded by gates ([`crate::auth::Gate`]).

use axum::body::Bytes;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequestParts, MatchedPath, Path, Request, State,
};
use axum::http::{StatusCode, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use fieldsync_core::document::VisitDoc;
use fieldsync_core::model::{ReferenceData, Role};
use fieldsync_core::rules::{self, Action};
use fieldsync_core::sync::protocol::*;
use fieldsync_core::visit::{Author, Visit, VisitPlan};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower_http::compression::CompressionLayer;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::timeout::TimeoutLayer;

use crate::auth::Gate;
use crate::ingest::{self, Writer};
use crate::metrics::Metrics;
use crate::reference::{EARLIER_SENT_BYTES, EverListed};
use crate::store::{PullQuery, Scope, Store, StoreError, UserRecord};

/// Server settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// A rep's window: days back and ahead of now, by planned start.
    pub window_back_days: i64,
    pub window_ahead_days: i64,
    /// Most changes per sync response page.
    pub page_changes: usize,
    /// Largest request body (after decompression).
    pub body_limit: usize,
    pub request_timeout: Duration,
    /// Failed logins per username and address per minute.
    pub login_failures_per_minute: usize,
    /// Password checks (argon2id, ~19 MiB each) running at once, sign-ins of the API and
    /// the dashboard together ([`crate::auth::PasswordGate`]; default one per CPU).
    pub password_checks: usize,
    /// How long a sign-in waits for a free password check before the answer is 503 with
    /// `Retry-After`.
    pub password_wait: Duration,
    /// Sync requests (`POST /v1/sync`) served at once (`serve --max-concurrent-syncs`;
    /// default [`SYNCS_PER_CPU`] per CPU). The others wait for a slot in arrival order.
    pub max_concurrent_syncs: usize,
    /// How long a sync waits for a slot before the answer is 503 with `Retry-After`.
    pub sync_wait: Duration,
    /// How large one visit's document may grow ([`ingest::VisitLimits`]).
    pub visit_limits: ingest::VisitLimits,
    /// Visits the reports keep read between requests
    /// ([`crate::dashboard::read_visits::ReadVisits`]; `serve --report-visits-kept`).
    pub report_visits_kept: usize,
}

/// Default sync slots per CPU. A sync's work is mostly CPU (JSON, Automerge, the decision
/// on a visit) with waits on the database in between (the single SQLite writer and its
/// `fsync`, PostgreSQL round trips): a few per CPU keep the CPUs busy through those waits.
/// More in flight would add no throughput — only memory (each holds its body, up to
/// [`Config::body_limit`], and the Automerge documents of its visits) and latency for all.
pub const SYNCS_PER_CPU: usize = 4;

impl Default for Config {
    fn default() -> Self {
        Self {
            window_back_days: 14,
            window_ahead_days: 7,
            page_changes: 5_000,
            body_limit: 16 * 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            login_failures_per_minute: 5,
            password_checks: crate::auth::PasswordGate::default_slots(),
            password_wait: Duration::from_secs(2),
            max_concurrent_syncs: SYNCS_PER_CPU * crate::auth::Gate::default_slots(),
            sync_wait: Duration::from_secs(2),
            visit_limits: ingest::VisitLimits::default(),
            report_visits_kept: crate::dashboard::read_visits::KEPT,
        }
    }
}

/// Shared state of the handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub config: Arc<Config>,
    failures: Arc<Mutex<HashMap<String, VecDeque<Instant>>>>,
    /// Bounds the password checks of every sign-in.
    pub passwords: crate::auth::PasswordGate,
    /// Bounds the sync requests served at once ([`Config::max_concurrent_syncs`]).
    pub syncs: Gate,
    /// The store's reference data with its index, built once per version.
    pub reference: Arc<crate::reference::ReferenceCache>,
    /// The visits the reports read, kept while their stored bytes are unchanged.
    pub read_visits: Arc<crate::dashboard::read_visits::ReadVisits>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, config: Config) -> Self {
        let metrics = Arc::new(Metrics::new());
        let gate = |label: &str, slots: usize, wait: Duration| {
            let gate = Gate::new(slots, wait).counting(metrics.busy.with_label_values(&[label]));
            metrics
                .gate_slots
                .with_label_values(&[label])
                .set(gate.size() as i64);
            gate
        };
        let read_visits = Arc::new(
            crate::dashboard::read_visits::ReadVisits::new(config.report_visits_kept)
                .counting(metrics.report_visits_read.clone()),
        );
        Self {
            store,
            passwords: gate(GATE_SIGN_IN, config.password_checks, config.password_wait),
            syncs: gate(GATE_SYNC, config.max_concurrent_syncs, config.sync_wait),
            metrics,
            config: Arc::new(config),
            failures: Arc::new(Mutex::new(HashMap::new())),
            reference: Arc::default(),
            read_visits,
        }
    }
}

/// The `gate` label of the gates' metrics.
const GATE_SIGN_IN: &str = "sign_in";
const GATE_SYNC: &str = "sync";

/// An error answer.
#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", m)
    }
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", m)
    }
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", m)
    }
    /// 503: the server turned the request away for now; answered with `Retry-After`.
    /// Only for requests turned away before anything was done: devices take a 503 to mean
    /// that nothing of the request was handled (no answer to reconcile after the retry).
    pub fn busy(m: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", m)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        // A 503 "busy" is the server shedding load as designed, logged where it is decided.
        if self.status.is_server_error() && self.status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(message = %self.message, "request failed");
        }
        let mut resp = (
            self.status,
            Json(ErrorBody {
                error: self.code.into(),
                message: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from_static(BUSY_RETRY_AFTER),
            );
        }
        resp
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::NotFound(m) => Self::not_found(m),
            StoreError::Core(c) if c.is_user_error() => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", c.to_string())
            }
            other => Self::internal(other.to_string()),
        }
    }
}

impl From<fieldsync_core::Error> for AppError {
    fn from(e: fieldsync_core::Error) -> Self {
        StoreError::Core(e).into()
    }
}

fn join_err(e: tokio::task::JoinError) -> AppError {
    AppError::internal(format!("worker failed: {e}"))
}

/// Runs blocking storage work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(f).await.map_err(join_err)?
}

/// Parses a JSON body with a readable 400 on failure.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    serde_json::from_slice(body)
        .map_err(|e| AppError::bad_request(format!("malformed JSON body: {e}")))
}

/// Hex SHA-256 of a token: what the database stores.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The authenticated caller.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub user: UserRecord,
    pub device_id: String,
    pub token_id: String,
}

impl AuthUser {
    fn writer(&self) -> Writer {
        Writer {
            user_id: self.user.id.clone(),
            role: self.user.role,
            territories: self.user.territories.clone(),
            device_id: self.device_id.clone(),
            scope: None,
            ever_listed: None,
        }
    }
    fn covers(&self, territory: &str) -> bool {
        self.user.role == Role::Admin || self.user.territories.iter().any(|t| t == territory)
    }
}

/// The hash of a request's `Authorization: Bearer <token>`, checked for shape only (the
/// token is looked up by [`Bearer::authenticate`]).
struct Bearer(String);

impl Bearer {
    /// The user and device of a live device token (blocking: a storage lookup).
    fn authenticate(&self, store: &dyn Store) -> Result<AuthUser, AppError> {
        let (user, tok) = store
            .authenticate(&self.0)?
            .ok_or_else(|| AppError::unauthorized("unknown or revoked token: sign in again"))?;
        if tok
            .device_id
            .starts_with(crate::dashboard::SESSION_DEVICE_PREFIX)
        {
            // Session cookies expire and are CSRF-protected; they are not device tokens.
            return Err(AppError::unauthorized(
                "a dashboard session is not a device token: sign in with /v1/auth/login",
            ));
        }
        Ok(AuthUser {
            user,
            device_id: tok.device_id,
            token_id: tok.id,
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            AppError::unauthorized("missing Authorization: Bearer <token> header")
        })?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                AppError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        Ok(Bearer(hash_token(token)))
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let bearer = Bearer::from_request_parts(parts, state).await?;
        let store = state.store.clone();
        blocking(move || bearer.authenticate(store.as_ref())).await
    }
}

/// The router with every route and layer.
pub fn app(state: AppState) -> Router {
    let limit = state.config.body_limit;
    let timeout = state.config.request_timeout;
    // `/v1/sync` decompresses Zstandard bodies and compresses its answers itself, with
    // contexts kept per thread (crate::body); gzip there, and everything elsewhere, goes
    // through tower-http's layers.
    let sync_route = Router::new()
        .route(
            "/v1/sync",
            post(sync).route_layer(middleware::from_fn_with_state(state.clone(), admit_sync)),
        )
        .layer(
            RequestDecompressionLayer::new()
                .gzip(true)
                .zstd(false)
                .pass_through_unaccepted(true),
        );
    let others = Router::new()
        .route("/v1/auth/login", post(login))
        .route("/v1/visits", post(create_visit))
        .route("/v1/visits/{id}", get(get_visit).patch(patch_visit))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .merge(crate::dashboard::router())
        .fallback(|| async { AppError::not_found("no such route") })
        .layer(RequestDecompressionLayer::new().gzip(true).zstd(true));
    sync_route
        .merge(others)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(DefaultBodyLimit::max(limit))
        .layer(CompressionLayer::new().gzip(true).zstd(true))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .with_state(state)
}

async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_string(), |p| p.as_str().to_string());
    let method = req.method().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status();
    state
        .metrics
        .requests
        .with_label_values(&[&method, &path, status.as_str()])
        .inc();
    tracing::info!(%method, %path, status = status.as_u16(), ms = start.elapsed().as_millis() as u64, "request");
    // Map axum's own body-limit rejection to our JSON error shape.
    if status == StatusCode::PAYLOAD_TOO_LARGE
        && resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_none_or(|v| v != "application/json")
    {
        return AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        )
        .into_response();
    }
    // axum's other rejections (a body that cannot be read or decompressed, a path segment
    // that is not UTF-8, a method the route lacks) are plain text or empty: same JSON shape.
    if status.is_client_error()
        && resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"))
    {
        let allow = resp.headers().get(header::ALLOW).cloned();
        let text = axum::body::to_bytes(resp.into_body(), 64 * 1024)
            .await
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .unwrap_or_default();
        let mut out = if status == StatusCode::METHOD_NOT_ALLOWED {
            AppError::new(
                status,
                "method_not_allowed",
                format!("{method} is not allowed on {path}"),
            )
        } else if text.is_empty() {
            AppError::new(
                status,
                "bad_request",
                status.canonical_reason().unwrap_or("bad request"),
            )
        } else {
            AppError::new(status, "bad_request", text)
        }
        .into_response();
        if let Some(a) = allow {
            out.headers_mut().insert(header::ALLOW, a);
        }
        return out;
    }
    resp
}

/// `GET /healthz`: the server answers and reads its database.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
    /// Visits stored.
    pub visits: i64,
    /// Changes stored.
    pub changes: i64,
}

#[utoipa::path(get, path = "/healthz", tag = "operations", summary = "Liveness: the server answers and reads its database",
    responses((status = 200, description = "the server is up", body = Health), (status = 500, description = "the database cannot be read", body = ErrorBody)))]
async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, AppError> {
    let store = state.store.clone();
    let (visits, changes) = blocking(move || Ok(store.counts()?)).await?;
    Ok(Json(Health {
        status: "ok",
        visits,
        changes,
    }))
}

#[utoipa::path(get, path = "/metrics", tag = "operations", summary = "Prometheus metrics",
    responses((status = 200, description = "text exposition format", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    for (label, gate) in [(GATE_SIGN_IN, &state.passwords), (GATE_SYNC, &state.syncs)] {
        state
            .metrics
            .gate_in_use
            .with_label_values(&[label])
            .set(gate.in_use() as i64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document(),
    )
}

// ------------------------------------------------------------------ login

#[utoipa::path(post, path = "/v1/auth/login", tag = "sync", summary = "Sign in; returns a device token",
    request_body = LoginRequest,
    responses((status = 200, description = "signed in: a new device token", body = LoginResponse), crate::openapi::LoginErrors))]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Result<Json<LoginResponse>, AppError> {
    let req: LoginRequest = parse_json(&body)?;
    if req.device_id.trim().is_empty() || req.device_id.len() > 200 {
        return Err(AppError::bad_request(
            "device_id must be 1 to 200 characters",
        ));
    }
    let key = format!("{}|{}", req.username, addr.ip());
    let window = Duration::from_secs(60);
    {
        let mut f = state
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(q) = f.get_mut(&key) {
            while q.front().is_some_and(|t| t.elapsed() > window) {
                q.pop_front();
            }
            if q.len() >= state.config.login_failures_per_minute {
                return Err(AppError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    "too many failed sign-ins for this user; wait a minute",
                ));
            }
        }
    }
    let store = state.store.clone();
    let (username, password, device_id) = (
        req.username.clone(),
        req.password.clone(),
        req.device_id.clone(),
    );
    // Through the password gate: a burst of sign-ins hashes a few at a time (bounded
    // memory and CPU) and whatever cannot get a slot soon is told to retry.
    let result = state
        .passwords
        .run(move || -> Result<Option<LoginResponse>, AppError> {
            let Some(user) = store.user_by_username(&username)? else {
                // Spend the same time as a real check so usernames cannot be probed by timing.
                let _ = crate::auth::verify_password(&password, crate::auth::dummy_hash());
                return Ok(None);
            };
            if user.disabled || !crate::auth::verify_password(&password, &user.password_hash) {
                return Ok(None);
            }
            let token = crate::auth::new_token();
            let token_id = store.create_token(
                &user.id,
                &device_id,
                &hash_token(&token),
                chrono::Utc::now().timestamp_millis(),
            )?;
            Ok(Some(LoginResponse {
                token,
                token_id,
                user: LoginUser {
                    id: user.id,
                    username: user.username,
                    role: user.role,
                    territories: user.territories,
                },
            }))
        })
        .await
        .map_err(gate_error)??;
    match result {
        Some(r) => Ok(Json(r)),
        None => {
            let mut f = state
                .failures
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f.entry(key).or_default().push_back(Instant::now());
            Err(AppError::unauthorized("invalid username or password"))
        }
    }
}

/// `Retry-After` of every 503 ([`AppError::busy`]), in seconds.
pub const BUSY_RETRY_AFTER: &str = "1";

/// The answer when the password gate turns a sign-in away (or the check failed).
pub(crate) fn gate_error(e: crate::auth::GateError) -> AppError {
    match e {
        crate::auth::GateError::Busy { .. } => {
            tracing::warn!("sign-in turned away: every password check slot is busy");
            AppError::busy("too many sign-ins at once; try again in a second")
        }
        crate::auth::GateError::Failed(m) => AppError::internal(m),
    }
}

// ------------------------------------------------------------------ sync

/// A slot of the sync gate ([`AppState::syncs`]), taken by [`admit_sync`] before anything
/// of the request is read and held until its storage work ends.
#[derive(Clone, Debug)]
struct SyncSlot {
    _slot: Arc<crate::auth::Slot>,
}

/// Admission to `POST /v1/sync`: at most [`Config::max_concurrent_syncs`] at once. Taken
/// before authentication and the body are read, so a sync waiting for a slot holds nothing
/// but its connection; one that gets none within [`Config::sync_wait`] is answered 503
/// with `Retry-After`, having changed nothing.
async fn admit_sync(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    match state.syncs.enter().await {
        Ok(slot) => {
            req.extensions_mut().insert(SyncSlot {
                _slot: Arc::new(slot),
            });
            next.run(req).await
        }
        Err(crate::auth::GateError::Busy { .. }) => {
            tracing::warn!(
                slots = state.syncs.size(),
                "sync turned away: every sync slot is busy"
            );
            AppError::busy(
                "the server is busy with other devices' syncs; nothing was changed: try again in a second",
            )
            .into_response()
        }
        Err(crate::auth::GateError::Failed(m)) => AppError::internal(m).into_response(),
    }
}

/// The read scope of a user at `now`.
pub fn scope_of(user: &UserRecord, config: &Config, now: i64) -> Scope {
    let day = 86_400_000;
    match user.role {
        Role::Admin => Scope {
            territories: None,
            rep_id: None,
            window: None,
        },
        Role::Manager => Scope {
            territories: Some(user.territories.clone()),
            rep_id: None,
            window: None,
        },
        Role::Rep => Scope {
            territories: Some(user.territories.clone()),
            rep_id: Some(user.id.clone()),
            window: Some((
                now - config.window_back_days * day,
                now + config.window_ahead_days * day,
            )),
        },
    }
}

/// Reference data filtered to a user's territories (products and templates whole).
pub fn scoped_reference(refs: &ReferenceData, user: &UserRecord) -> ReferenceData {
    if user.role == Role::Admin {
        return refs.clone();
    }
    let mut out = refs.clone();
    let covers = |t: &String| user.territories.contains(t);
    out.territories.retain(|t| covers(&t.id));
    out.stores.retain(|s| covers(&s.territory_id));
    out.users.retain(|u| u.territory_ids.iter().any(covers));
    for u in &mut out.users {
        u.territory_ids.retain(covers);
    }
    out
}

/// A `/v1/sync` body as sent: decompressed when it is Zstandard (gzip was already
/// decompressed by the route's layer), at most [`Config::body_limit`] bytes.
fn sync_body(headers: &header::HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, AppError> {
    let Some(encoding) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(body);
    };
    let encoding = encoding.to_str().unwrap_or_default().trim();
    if encoding.eq_ignore_ascii_case("identity") {
        return Ok(body);
    }
    if !encoding.eq_ignore_ascii_case("zstd") {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            format!(
                "Content-Encoding {encoding:?} is not supported: send zstd, gzip or an uncompressed body"
            ),
        ));
    }
    use fieldsync_core::zstd_frames::{Refused, decompress_within};
    match decompress_within(&body, limit) {
        Ok(plain) => Ok(Bytes::from(plain)),
        Err(Refused::TooLarge) => Err(AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is too large: it decompresses to more than {limit} bytes"),
        )),
        Err(Refused::Invalid(why)) => Err(AppError::bad_request(format!(
            "the request body says Content-Encoding: zstd but does not decompress: {why}"
        ))),
    }
}

/// The answer of `/v1/sync`: JSON, compressed here when the device takes Zstandard (else
/// left to the `CompressionLayer`).
fn sync_answer(resp: &SyncResponse, zstd: bool) -> Result<Response, AppError> {
    let json = serde_json::to_vec(resp)
        .map_err(|e| AppError::internal(format!("cannot encode the answer: {e}")))?;
    let packed = if zstd {
        crate::body::compress(&json)
    } else {
        None
    };
    let mut out = match packed {
        Some(p) => {
            let mut r = p.into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_ENCODING,
                header::HeaderValue::from_static("zstd"),
            );
            h.insert(
                header::VARY,
                header::HeaderValue::from_static("accept-encoding"),
            );
            r
        }
        None => json.into_response(),
    };
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(out)
}

#[utoipa::path(post, path = "/v1/sync", tag = "sync", summary = "One sync round trip (push outbox, pull changes)",
    description = "The body may be sent with `Content-Encoding: zstd` or `gzip`; the answer is \
                   compressed with Zstandard or gzip when `Accept-Encoding` allows it.",
    request_body = SyncRequest,
    responses((status = 200, description = "acknowledgements, rejections and the changes in scope since the cursor", body = SyncResponse), crate::openapi::SyncErrors),
    security(("bearer" = [])))]
async fn sync(
    State(state): State<AppState>,
    Extension(slot): Extension<SyncSlot>,
    bearer: Bearer,
    headers: header::HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let start = Instant::now();
    let zstd = crate::body::accepts_zstd(
        headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let st = state.clone();
    // Everything from the token lookup on runs in one call on the blocking pool (one
    // hand-off per sync): decompressing and parsing a large body, or compressing a large
    // answer, would hold an async worker. The slot moves into that work: a client that
    // hangs up does not free it while its sync runs.
    let resp = blocking(move || {
        let _slot = slot;
        let auth = bearer.authenticate(st.store.as_ref())?;
        let body = sync_body(&headers, body, st.config.body_limit)?;
        let (req, cursor) = sync_request(&body, &auth)?;
        st.metrics.devices_seen(&auth.device_id);
        let resp = sync_blocking(&st, &auth, req, cursor)?;
        sync_answer(&resp, zstd)
    })
    .await?;
    state
        .metrics
        .sync_latency
        .observe(start.elapsed().as_secs_f64());
    Ok(resp)
}

/// A sync request's cursor: `"<seq>"` or `"<seq>.<token>"` (the token confirms the answer
/// that carried it); `None` for a first sync.
type Cursor = Option<(i64, Option<String>)>;

/// The request of a `/v1/sync` body, checked against the token's device, and its cursor.
fn sync_request(body: &[u8], auth: &AuthUser) -> Result<(SyncRequest, Cursor), AppError> {
    let req: SyncRequest = parse_json(body)?;
    if req.protocol != PROTOCOL_VERSION {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_protocol",
            format!(
                "unsupported protocol version {}; this server speaks version {PROTOCOL_VERSION}",
                req.protocol
            ),
        ));
    }
    if req.device_id != auth.device_id {
        return Err(AppError::forbidden(format!(
            "this token was issued to device {:?}, not {:?}",
            auth.device_id, req.device_id
        )));
    }
    let cursor = match &req.cursor {
        None => None,
        Some(c) if c.is_empty() => None,
        Some(c) => {
            let (seq, token) = match c.split_once('.') {
                Some((seq, token)) => (seq, Some(token)),
                None => (c.as_str(), None),
            };
            let bad = || AppError::bad_request(format!("invalid cursor {c:?}"));
            let seq = seq.parse::<i64>().map_err(|_| bad())?;
            if token.is_some_and(|t| t.is_empty() || t.len() > 64) {
                return Err(bad());
            }
            Some((seq, token.map(str::to_string)))
        }
    };
    Ok((req, cursor))
}

fn sync_blocking(
    state: &AppState,
    auth: &AuthUser,
    req: SyncRequest,
    cursor: Cursor,
) -> Result<SyncResponse, AppError> {
    let store = &state.store;
    let epoch = store.epoch()?;
    let indexed = state.reference.get(store.as_ref())?;
    let (refs, idx) = (indexed.data(), indexed.index());
    let now = chrono::Utc::now().timestamp_millis();
    let scope = scope_of(&auth.user, &state.config, now);
    // What older versions of the reference data listed, for a push made against one.
    let ever_listed = Some(EverListed::new(state.reference.clone(), indexed.clone()));
    let writer = Writer {
        scope: Some(scope.clone()),
        ever_listed,
        ..auth.writer()
    };
    let mut resp = SyncResponse {
        protocol: PROTOCOL_VERSION,
        epoch: epoch.clone(),
        takes_documents: true,
        ..Default::default()
    };
    // The answer the device received before it made this request: its holdings changes
    // come before what this request's pushes record (a visit the device pushes is one it
    // holds, also right after a first sync's answer, which forgets everything before it).
    let epoch_changed = req.epoch.as_ref().is_some_and(|e| *e != epoch);
    let token = match &cursor {
        Some((_, Some(token))) if !epoch_changed && req.heads.is_none() => Some(token),
        _ => None,
    };
    if let Some(token) = token {
        store.confirm(&auth.device_id, token)?;
    }
    // One budget for the whole request (fieldsync_core::sync::guard): Automerge's memory
    // and time for a request stay bounded however many visits it carries. Visits pushed
    // whole first: changes of the same request may build on them.
    let mut budget = fieldsync_core::sync::guard::OpBudget::per_request();
    let (limits, store_ref) = (&state.config.visit_limits, store.as_ref());
    state
        .metrics
        .documents_pushed
        .inc_by(req.documents.len() as u64);
    enum Pushed<'r> {
        Whole(&'r VisitDocument),
        Changes(&'r VisitChanges),
    }
    let pushes = req.documents.iter().map(Pushed::Whole);
    let pushes = pushes.chain(req.changes.iter().map(Pushed::Changes));
    for pushed in pushes {
        let out = match pushed {
            Pushed::Whole(d) => {
                ingest::ingest_document(store_ref, &writer, idx, d, &mut budget, limits)
            }
            Pushed::Changes(g) => {
                ingest::ingest_limited(store_ref, &writer, idx, g, &mut budget, limits)
            }
        }?;
        state.metrics.changes_applied.inc_by(out.applied as u64);
        match pushed {
            Pushed::Whole(d) if out.whole => resp.acked_documents.push(VisitHeads {
                visit_id: d.visit_id.clone(),
                heads: d.heads.clone(),
            }),
            _ => resp.acks.extend(out.acks),
        }
        if let Some(r) = out.rejection {
            state.metrics.rejections.inc();
            tracing::info!(visit = %r.visit_id, device = %auth.device_id, reason = %r.reason, "rejected");
            resp.rejections.push(r);
        }
        if let Some(r) = out.resend {
            resp.resend.push(r);
        }
    }
    if epoch_changed && req.heads.is_none() {
        // The device synced with another history of this server: ask for its heads first.
        resp.cursor = String::new();
        resp.more = true;
        return Ok(resp);
    }
    let heads = req.heads.as_ref().map(|hs| {
        hs.iter()
            .map(|h| (h.visit_id.clone(), h.heads.clone()))
            .collect::<BTreeMap<_, _>>()
    });
    let window = scope.window;
    let q = PullQuery {
        device_id: auth.device_id.clone(),
        scope,
        cursor: if epoch_changed || heads.is_some() {
            None
        } else {
            cursor.as_ref().map(|c| c.0)
        },
        heads,
        limit: state.config.page_changes,
        documents: req.accept_documents,
        visits: req.accept_visits == Some(fieldsync_core::document::VISIT_FORMAT),
    };
    let page = store.pull(&q)?;
    resp.changes = page
        .changes
        .into_iter()
        .map(|(visit_id, cs)| VisitChanges {
            visit_id,
            changes: cs.iter().map(|b| encode_change(b)).collect(),
        })
        .collect();
    resp.documents = page
        .documents
        .into_iter()
        .map(|d| VisitDocument {
            visit_id: d.visit_id,
            doc: encode_change(&d.doc),
            heads: d.heads,
            visit: d.visit.as_deref().map(encode_change),
        })
        .collect();
    resp.cursor = match page.token {
        Some(t) => format!("{}.{t}", page.cursor),
        None => page.cursor.to_string(),
    };
    resp.more = page.more;
    resp.purge = page.purge;
    for (visit_id, have) in page.resend {
        if !resp.resend.iter().any(|r| r.visit_id == visit_id) {
            resp.resend.push(Resend { visit_id, have });
        }
    }
    // The device's reference data may predate a restore, whose database counts versions
    // anew: while it reconciles, only data from this epoch is known to be current.
    let refs_of_this_epoch =
        !epoch_changed || req.reference_epoch.as_deref() == Some(epoch.as_str());
    if req.reference_version != refs.version || cursor.is_none() || !refs_of_this_epoch {
        let data = scoped_reference(refs, &auth.user);
        // When it took effect, and the versions in effect within the device's window that
        // it lacks: the device judges visits worked before with the data of their time.
        // The data this request holds (`indexed`), not a fresh read: an import landing
        // meanwhile must not make the versions and times belong to other data than `data`.
        let as_of = state
            .reference
            .as_of_current(store.as_ref(), indexed.clone())?;
        let held = if refs_of_this_epoch {
            req.reference_version
        } else {
            0
        };
        let from = window.map_or(now - fieldsync_core::store::REFERENCE_KEPT_MS, |w| w.0);
        let earlier = as_of.earlier(held, from)?;
        let earlier = earlier.iter().map(|(since, r)| ReferenceVersion {
            since: *since,
            data: scoped_reference(r.data(), &auth.user),
        });
        let (earlier, since) = distinct_versions(earlier, &data, as_of.current_since());
        resp.earlier_reference = newest_within(earlier, EARLIER_SENT_BYTES);
        resp.reference_since = since;
        resp.reference_data = Some(data);
    }
    Ok(resp)
}

/// The `earlier` versions (oldest first) of the reference data with `current` in effect
/// from `since`, without a version whose (scoped) content equals the one before it: that
/// one stays in effect longer instead (nightly imports of unchanged data send one copy).
/// Returns the versions and when `current` took effect.
fn distinct_versions(
    earlier: impl Iterator<Item = ReferenceVersion>,
    current: &ReferenceData,
    since: Option<i64>,
) -> (Vec<ReferenceVersion>, Option<i64>) {
    // Equal but for the version number (compared in place: the data may be large).
    let same = |a: &mut ReferenceData, b: &ReferenceData| {
        let version = std::mem::replace(&mut a.version, b.version);
        let same = *a == *b;
        a.version = version;
        same
    };
    let mut out: Vec<ReferenceVersion> = Vec::new();
    for mut e in earlier {
        if !out.last().is_some_and(|l| same(&mut e.data, &l.data)) {
            out.push(e);
        }
    }
    match out.pop_if(|l| same(&mut l.data, current)) {
        Some(l) => (out, Some(l.since)),
        None => (out, since),
    }
}

/// Of `versions` (oldest first), the newest that fit in `budget` bytes of JSON together: a
/// phone parses the answer whole, and a large catalogue's versions add up.
fn newest_within(mut versions: Vec<ReferenceVersion>, budget: usize) -> Vec<ReferenceVersion> {
    /// Counts the bytes written.
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut left = budget;
    let mut first = versions.len();
    for (i, v) in versions.iter().enumerate().rev() {
        let mut count = Count(0);
        let size = match serde_json::to_writer(&mut count, v) {
            Ok(()) => count.0,
            Err(_) => usize::MAX,
        };
        if size > left {
            break;
        }
        left -= size;
        first = i;
    }
    versions.split_off(first)
}

// ------------------------------------------------------------------ planning

/// `POST /v1/visits` body.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreateVisit {
    pub store_id: String,
    pub rep_id: String,
    pub planned_start: i64,
    pub planned_end: i64,
    #[serde(default = "default_priority")]
    pub priority: u8,
    #[serde(default)]
    pub instructions: String,
    pub template_id: String,
    /// Optional id chosen by the caller (idempotent retries); a UUID otherwise.
    #[serde(default)]
    pub visit_id: Option<String>,
}

fn default_priority() -> u8 {
    3
}

/// `PATCH /v1/visits/{id}` body: fields to change.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PatchVisit {
    pub rep_id: Option<String>,
    pub planned_start: Option<i64>,
    pub planned_end: Option<i64>,
    pub priority: Option<u8>,
    pub instructions: Option<String>,
    /// `canceled` with `cancel_reason` cancels a planned visit.
    #[schema(value_type = Option<String>, pattern = "^canceled$")]
    pub status: Option<String>,
    pub cancel_reason: Option<String>,
}

/// A visit as the planning API returns it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VisitOut {
    pub visit_id: String,
    pub visit: Visit,
}

fn manager_only(auth: &AuthUser) -> Result<(), AppError> {
    if auth.user.role == Role::Rep {
        return Err(AppError::forbidden("only managers and admins plan visits"));
    }
    Ok(())
}

/// The Automerge actor a manager's server-side edits use (stable per manager).
pub fn server_actor(user_id: &str) -> automerge::ActorId {
    let d = Sha256::digest(format!("fieldsync-server-actor:{user_id}").as_bytes());
    automerge::ActorId::from(&d[..16])
}

fn check_rep(store: &dyn Store, rep_id: &str, territory: &str) -> Result<(), AppError> {
    let rep = store
        .user_by_id(rep_id)?
        .ok_or_else(|| AppError::bad_request(format!("unknown rep {rep_id:?}")))?;
    if rep.role != Role::Rep || !rep.territories.iter().any(|t| t == territory) {
        return Err(AppError::bad_request(format!(
            "{rep_id:?} is not a rep of territory {territory}"
        )));
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/visits", tag = "planning", summary = "Plan a visit (manager)",
    request_body = CreateVisit,
    responses((status = 201, description = "planned", body = VisitOut), crate::openapi::PlanningErrors),
    security(("bearer" = [])))]
pub(crate) async fn create_visit(
    State(state): State<AppState>,
    auth: AuthUser,
    body: Bytes,
) -> Result<(StatusCode, Json<VisitOut>), AppError> {
    manager_only(&auth)?;
    let req: CreateVisit = parse_json(&body)?;
    let (store, reference) = (state.store.clone(), state.reference.clone());
    blocking(move || {
        let indexed = reference.get(store.as_ref())?;
        let idx = indexed.index();
        let shop = idx
            .store(&req.store_id)
            .map_err(|e| AppError::bad_request(e.to_string()))?;
        if !auth.covers(&shop.territory_id) {
            return Err(AppError::forbidden(format!(
                "store {} is outside your territories",
                shop.id
            )));
        }
        check_rep(store.as_ref(), &req.rep_id, &shop.territory_id)?;
        if req.planned_end < req.planned_start {
            return Err(AppError::bad_request("planned_end is before planned_start"));
        }
        let id = req
            .visit_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if id.trim().is_empty() || id.len() > 200 {
            return Err(AppError::bad_request(
                "visit_id must be 1 to 200 characters",
            ));
        }
        let plan = VisitPlan {
            store_id: req.store_id.clone(),
            rep_id: req.rep_id.clone(),
            planned_start: req.planned_start,
            planned_end: req.planned_end,
            priority: req.priority.clamp(1, 5),
            instructions: req.instructions.clone(),
            template_id: req.template_id.clone(),
            ad_hoc: false,
        };
        let author = Author {
            user_id: auth.user.id.clone(),
            device_id: "server".into(),
        };
        let now = chrono::Utc::now().timestamp_millis();
        let visit = ingest::server_edit(
            store.as_ref(),
            &id,
            |existing| match existing {
                Some(_) => Err(StoreError::Conflict(format!("visit {id} already exists"))),
                None => Ok(VisitDoc::create(
                    &id,
                    &plan,
                    server_actor(&auth.user.id),
                    &author,
                    now,
                )?),
            },
            idx,
        )?;
        Ok((
            StatusCode::CREATED,
            Json(VisitOut {
                visit_id: id.clone(),
                visit,
            }),
        ))
    })
    .await
}

fn load_in_scope(
    store: &dyn Store,
    auth: &AuthUser,
    id: &str,
) -> Result<crate::store::StoredVisit, AppError> {
    let v = store
        .visit(id)?
        .ok_or_else(|| AppError::not_found(format!("unknown visit {id:?}")))?;
    if !auth.covers(&v.meta.territory_id)
        || (auth.user.role == Role::Rep && v.meta.rep_id != auth.user.id)
    {
        return Err(AppError::forbidden(format!(
            "visit {id} is outside your scope"
        )));
    }
    Ok(v)
}

#[utoipa::path(get, path = "/v1/visits/{id}", tag = "planning", summary = "A visit in the caller's scope",
    params(("id" = String, Path, description = "visit id")),
    responses((status = 200, description = "the visit", body = VisitOut), crate::openapi::ReadErrors),
    security(("bearer" = [])))]
async fn get_visit(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<VisitOut>, AppError> {
    let store = state.store.clone();
    blocking(move || {
        let v = load_in_scope(store.as_ref(), &auth, &id)?;
        let visit = VisitDoc::load(&v.doc)?.read()?;
        Ok(Json(VisitOut {
            visit_id: id,
            visit,
        }))
    })
    .await
}

#[utoipa::path(patch, path = "/v1/visits/{id}", tag = "planning", summary = "Assign, reschedule or cancel a planned visit (manager)",
    params(("id" = String, Path, description = "visit id")),
    request_body = PatchVisit,
    responses((status = 200, description = "the visit as changed", body = VisitOut), crate::openapi::PlanningErrors),
    security(("bearer" = [])))]
pub(crate) async fn patch_visit(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<VisitOut>, AppError> {
    manager_only(&auth)?;
    let req: PatchVisit = parse_json(&body)?;
    let (store, reference) = (state.store.clone(), state.reference.clone());
    blocking(move || {
        let stored = load_in_scope(store.as_ref(), &auth, &id)?;
        if let Some(r) = &req.rep_id {
            check_rep(store.as_ref(), r, &stored.meta.territory_id)?;
        }
        let indexed = reference.get(store.as_ref())?;
        let author = Author {
            user_id: auth.user.id.clone(),
            device_id: "server".into(),
        };
        let now = chrono::Utc::now().timestamp_millis();
        let mut user_err: Option<AppError> = None;
        let visit = ingest::server_edit(
            store.as_ref(),
            &id,
            |existing| {
                let mut doc = existing
                    .ok_or_else(|| StoreError::NotFound(format!("unknown visit {id:?}")))?;
                let current = doc.read()?;
                let mut plan = current.plan.clone();
                if let Some(r) = &req.rep_id {
                    // Checked before the edit: the store is locked in here.
                    plan.rep_id.clone_from(r);
                }
                if let Some(s) = req.planned_start {
                    let len = plan.planned_end - plan.planned_start;
                    plan.planned_start = s;
                    plan.planned_end = req.planned_end.unwrap_or(s + len);
                } else if let Some(e) = req.planned_end {
                    plan.planned_end = e;
                }
                if let Some(p) = req.priority {
                    plan.priority = p.clamp(1, 5);
                }
                if let Some(i) = &req.instructions {
                    plan.instructions.clone_from(i);
                }
                if plan.planned_end < plan.planned_start {
                    user_err = Some(AppError::bad_request("planned_end is before planned_start"));
                    return Err(StoreError::Conflict("bad window".into()));
                }
                doc.set_actor(server_actor(&auth.user.id));
                let cancel = req.status.as_deref() == Some("canceled");
                if let Some(s) = &req.status
                    && s != "canceled"
                {
                    user_err = Some(AppError::bad_request(
                        "a manager may only set status to canceled",
                    ));
                    return Err(StoreError::Conflict("bad status".into()));
                }
                let action = if cancel {
                    Action::Cancel
                } else {
                    Action::Reschedule
                };
                if let Err(e) = rules::transition(current.status, action) {
                    user_err = Some(AppError::new(
                        StatusCode::CONFLICT,
                        "conflict",
                        e.to_string(),
                    ));
                    return Err(StoreError::Conflict(e.to_string()));
                }
                doc.edit(&author, now, |w| {
                    w.set_plan(&plan)?;
                    if cancel {
                        w.set_cancel(
                            req.cancel_reason
                                .as_deref()
                                .unwrap_or("canceled by manager"),
                            None,
                        )?;
                        w.set_status(fieldsync_core::visit::VisitStatus::Canceled)?;
                    }
                    Ok(())
                })?;
                Ok(doc)
            },
            indexed.index(),
        );
        match (visit, user_err) {
            (_, Some(e)) => Err(e),
            (Ok(visit), None) => Ok(Json(VisitOut {
                visit_id: id,
                visit,
            })),
            (Err(e), None) => Err(e.into()),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture's reference data.
    fn fixture_refs() -> ReferenceData {
        let today = chrono::Utc::now().date_naive();
        let size = fieldsync_core::fixtures::FixtureSize::default();
        fieldsync_core::fixtures::reference_data(3, &size, today)
    }

    #[test]
    fn earlier_versions_are_sent_newest_first_within_the_byte_budget() {
        let data = fixture_refs();
        let versions: Vec<ReferenceVersion> = (1..=4)
            .map(|v| ReferenceVersion {
                since: v * 1000,
                data: ReferenceData {
                    version: v,
                    ..data.clone()
                },
            })
            .collect();
        let size = serde_json::to_vec(&versions[0]).unwrap().len();
        let sent = |budget: usize| {
            let kept = newest_within(versions.clone(), budget);
            kept.iter().map(|v| v.data.version).collect::<Vec<_>>()
        };
        assert_eq!(sent(4 * size), vec![1, 2, 3, 4]);
        assert_eq!(sent(3 * size + size / 2), vec![2, 3, 4]);
        assert_eq!(sent(size), vec![4]);
        assert_eq!(sent(size - 1), Vec::<i64>::new());
    }

    #[test]
    fn earlier_versions_of_unchanged_data_are_sent_once() {
        let base = fixture_refs();
        // Nightly imports: versions 1 and 2 equal, 3 renames a store, 4 (current) equals 3.
        let at = |version: i64, name: &str| {
            let mut d = base.clone();
            d.version = version;
            d.stores[0].name = name.into();
            ReferenceVersion {
                since: version * 1000,
                data: d,
            }
        };
        let earlier = vec![at(1, "a"), at(2, "a"), at(3, "b")];
        let current = at(4, "b").data;
        let (sent, since) = distinct_versions(earlier.clone().into_iter(), &current, Some(4000));
        assert_eq!(sent, vec![at(1, "a")]);
        // The current data took effect with the version equal to it.
        assert_eq!(since, Some(3000));
        // Every version differs: all sent, the current data's own time.
        let current = at(4, "c").data;
        let (sent, since) = distinct_versions(earlier.into_iter(), &current, Some(4000));
        assert_eq!(sent, vec![at(1, "a"), at(3, "b")]);
        assert_eq!(since, Some(4000));
    }

    fn user(role: Role, territories: &[&str]) -> UserRecord {
        UserRecord {
            id: "u".into(),
            username: "u".into(),
            role,
            territories: territories.iter().map(|t| (*t).to_string()).collect(),
            password_hash: String::new(),
            disabled: false,
        }
    }

    #[test]
    fn scopes_follow_role_and_window() {
        let c = Config::default();
        let rep = scope_of(&user(Role::Rep, &["t-1"]), &c, 100 * 86_400_000);
        assert_eq!(rep.rep_id.as_deref(), Some("u"));
        assert_eq!(rep.window, Some((86 * 86_400_000, 107 * 86_400_000)));
        let mgr = scope_of(&user(Role::Manager, &["t-1", "t-2"]), &c, 0);
        assert_eq!((mgr.rep_id, mgr.window), (None, None));
        assert_eq!(scope_of(&user(Role::Admin, &[]), &c, 0).territories, None);
    }

    #[test]
    fn reference_data_is_filtered_to_the_territories() {
        let today = chrono::Utc::now().date_naive();
        let refs = fieldsync_core::fixtures::reference_data(
            1,
            &fieldsync_core::fixtures::FixtureSize::default(),
            today,
        );
        let scoped = scoped_reference(&refs, &user(Role::Rep, &["t-2"]));
        assert!(scoped.stores.iter().all(|s| s.territory_id == "t-2"));
        assert_eq!(scoped.stores.len(), 20);
        assert_eq!(scoped.territories.len(), 1);
        assert_eq!(scoped.products, refs.products);
        assert!(scoped.validate().is_ok());
        assert_eq!(scoped_reference(&refs, &user(Role::Admin, &[])), refs);
    }
}
