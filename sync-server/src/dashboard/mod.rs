//! The manager dashboard: browser sessions, CSRF protection, the HTML/CSS/JS served by the
//! binary and the JSON report API it reads.
//!
//! | route | what |
//! |---|---|
//! | `GET /login`, `POST /login` | sign-in form (username + password); managers and admins only |
//! | `POST /logout` | sign-out (form with the CSRF token) |
//! | `GET /`, `/trends`, `/stores/{id}`, `/visits/{id}`, `/planning`, `/export` | the pages (one HTML shell, drawn by `assets/app.js`) |
//! | `GET /assets/{file}` | the embedded CSS, JS and icon (no CDN, no web fonts) |
//! | `GET /v1/reports/…` | the report API ([`reports`]): every number from `fieldsync-core`'s KPI engine |
//! | `POST /v1/dashboard/visits`, `PATCH /v1/dashboard/visits/{id}` | the planning API (`POST /v1/visits`, `PATCH /v1/visits/{id}`) with the session and a CSRF token instead of a bearer token |
//!
//! ## Sessions
//!
//! A sign-in creates a random 32-byte session token, stored hashed (SHA-256) in the
//! server's token table like a device token, bound to the pseudo-device
//! `dashboard-session:<expiry ms>`; nothing lives in the server's memory, so several
//! server instances on one database share sessions. The browser keeps it in the cookie
//! `fs_session` (`HttpOnly; SameSite=Strict; Path=/; Max-Age` = [`SESSION_TTL_MS`], `Secure`
//! behind HTTPS). Sign-out revokes the token. Reps are refused at sign-in and by every
//! route; a manager's reports are limited to their territories, an admin sees all.
//!
//! ## CSRF
//!
//! Every state-changing request authenticated by the cookie must carry the session's CSRF
//! token (SHA-256 of a fixed label and the session token): the header `X-CSRF-Token` for
//! `fetch`, the form field `csrf` for forms. The page gets it in a `<meta>` tag. The
//! sign-in form itself carries a one-off token matched against a `SameSite=Strict` cookie
//! (double submit). Report reads are `GET` and change nothing. The report API also takes
//! a manager's or admin's bearer token (no CSRF needed: it is not ambient).

pub mod export;
pub mod openapi;
pub mod read_visits;
pub mod reports;

use axum::body::Body;
use axum::extract::{ConnectInfo, Form, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fieldsync_core::model::Role;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use crate::api::{AppError, AppState, AuthUser, hash_token};
use crate::store::UserRecord;

/// How long a dashboard session lasts (8 hours).
pub const SESSION_TTL_MS: i64 = 8 * 3_600_000;
const SESSION_COOKIE: &str = "fs_session";
const LOGIN_CSRF_COOKIE: &str = "fs_login_csrf";
pub(crate) const SESSION_DEVICE_PREFIX: &str = "dashboard-session:";
const FAILURES_PER_MINUTE: usize = 5;

const LOGIN_HTML: &str = include_str!("../../assets/login.html");
const APP_HTML: &str = include_str!("../../assets/app.html");
const APP_JS: &str = include_str!("../../assets/app.js");
const APP_CSS: &str = include_str!("../../assets/app.css");
const FAVICON: &str = include_str!("../../assets/favicon.svg");

/// The dashboard's routes (merged into [`crate::api::app`]).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login_submit))
        .route("/logout", post(logout))
        .route("/", get(page))
        .route("/trends", get(page))
        .route("/planning", get(page))
        .route("/export", get(page))
        .route("/stores/{id}", get(page_with_id))
        .route("/visits/{id}", get(page_with_id))
        .route("/assets/{file}", get(asset))
        .route("/v1/dashboard/visits", post(plan_visit))
        .route(
            "/v1/dashboard/visits/{id}",
            axum::routing::patch(replan_visit),
        )
        .merge(reports::router())
}

// ------------------------------------------------------------------ sessions

/// The CSRF token of a session token.
pub fn csrf_of(session_token: &str) -> String {
    hex::encode(Sha256::digest(
        format!("fieldsync-dashboard-csrf:{session_token}").as_bytes(),
    ))
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn behind_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn set_cookie(name: &str, value: &str, path: &str, max_age_s: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age_s}; HttpOnly; SameSite=Strict{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A signed-in dashboard user (manager or admin) from the session cookie.
#[derive(Clone, Debug)]
pub struct Session {
    pub user: UserRecord,
    pub token_id: String,
    pub csrf: String,
}

impl Session {
    /// The caller as the planning API sees it.
    fn auth_user(&self) -> AuthUser {
        AuthUser {
            user: self.user.clone(),
            device_id: "dashboard".into(),
            token_id: self.token_id.clone(),
        }
    }
}

async fn session_from(headers: &HeaderMap, state: &AppState) -> Result<Session, AppError> {
    let token =
        cookie(headers, SESSION_COOKIE).ok_or_else(|| AppError::unauthorized("not signed in"))?;
    let store = state.store.clone();
    let hash = hash_token(&token);
    let found = tokio::task::spawn_blocking(move || store.authenticate(&hash))
        .await
        .map_err(|e| AppError::internal(e.to_string()))??;
    let (user, tok) =
        found.ok_or_else(|| AppError::unauthorized("session ended: sign in again"))?;
    let expires = tok
        .device_id
        .strip_prefix(SESSION_DEVICE_PREFIX)
        .and_then(|e| e.parse::<i64>().ok())
        .ok_or_else(|| AppError::unauthorized("not a dashboard session"))?;
    if expires <= chrono::Utc::now().timestamp_millis() {
        let store = state.store.clone();
        let id = tok.id.clone();
        let _ = tokio::task::spawn_blocking(move || {
            store.revoke_token(&id, chrono::Utc::now().timestamp_millis())
        })
        .await;
        return Err(AppError::unauthorized("session expired: sign in again"));
    }
    if user.role == Role::Rep {
        return Err(AppError::forbidden(
            "the dashboard is for managers and admins",
        ));
    }
    Ok(Session {
        user,
        token_id: tok.id,
        csrf: csrf_of(&token),
    })
}

impl FromRequestParts<AppState> for Session {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        session_from(&parts.headers, state).await
    }
}

/// Who reads a report: a dashboard session, or a manager's/admin's bearer token.
#[derive(Clone, Debug)]
pub struct Viewer {
    pub user: UserRecord,
}

impl Viewer {
    /// `None`: every territory (admin); else the territories the viewer may read.
    pub fn territories(&self) -> Option<Vec<String>> {
        (self.user.role != Role::Admin).then(|| self.user.territories.clone())
    }

    pub fn covers(&self, territory: &str) -> bool {
        self.user.role == Role::Admin || self.user.territories.iter().any(|t| t == territory)
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let user = if cookie(&parts.headers, SESSION_COOKIE).is_some()
            || parts.headers.get(header::AUTHORIZATION).is_none()
        {
            session_from(&parts.headers, state).await?.user
        } else {
            AuthUser::from_request_parts(parts, state).await?.user
        };
        if user.role == Role::Rep {
            return Err(AppError::forbidden("reports are for managers and admins"));
        }
        Ok(Viewer { user })
    }
}

fn check_csrf(session: &Session, headers: &HeaderMap) -> Result<(), AppError> {
    let sent = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if constant_time_eq(sent, &session.csrf) {
        Ok(())
    } else {
        Err(AppError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "missing or wrong X-CSRF-Token header: reload the page",
        ))
    }
}

// ------------------------------------------------------------------ sign-in / out

static FAILURES: LazyLock<Mutex<HashMap<String, VecDeque<Instant>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn security_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
             form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// The sign-in page with a fresh login CSRF token (and its cookie).
fn login_response(status: StatusCode, error: &str, username: &str, secure: bool) -> Response {
    let token = crate::auth::new_token();
    let error_html = if error.is_empty() {
        String::new()
    } else {
        format!(
            r#"<p class="form-error" role="alert" id="login-error">{}</p>"#,
            html_escape(error)
        )
    };
    let body = LOGIN_HTML
        .replace("{{csrf}}", &token)
        .replace("{{error}}", &error_html)
        .replace("{{username}}", &html_escape(username));
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    security_headers(&mut resp);
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_CSRF_COOKIE, &token, "/login", 3600, secure),
    );
    resp
}

async fn login_page(headers: HeaderMap, State(state): State<AppState>) -> Response {
    if session_from(&headers, &state).await.is_ok() {
        return Redirect::to("/").into_response();
    }
    login_response(StatusCode::OK, "", "", behind_https(&headers))
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn login_submit(State(state): State<AppState>, req: Request) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let headers = req.headers().clone();
    let secure = behind_https(&headers);
    let Ok(Form(form)) = Form::<LoginForm>::from_request(req, &state).await else {
        return login_response(
            StatusCode::BAD_REQUEST,
            "The sign-in form was malformed.",
            "",
            secure,
        );
    };
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(&form.csrf, &expected) {
        return login_response(
            StatusCode::FORBIDDEN,
            "The sign-in form expired. Please try again.",
            &form.username,
            secure,
        );
    }
    let key = format!("{}|{ip}", form.username);
    {
        let mut f = FAILURES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(q) = f.get_mut(&key) {
            while q
                .front()
                .is_some_and(|t| t.elapsed() > Duration::from_secs(60))
            {
                q.pop_front();
            }
            if q.len() >= FAILURES_PER_MINUTE {
                return login_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many failed sign-ins. Wait a minute and try again.",
                    &form.username,
                    secure,
                );
            }
        }
    }
    let store = state.store.clone();
    let (username, password) = (form.username.clone(), form.password.clone());
    // The same password gate as the API's sign-in (bounded memory and CPU in a burst).
    let outcome = state
        .passwords
        .run(move || -> Result<LoginOutcome, AppError> {
            let Some(user) = store.user_by_username(&username)? else {
                let _ = crate::auth::verify_password(&password, crate::auth::dummy_hash());
                return Ok(LoginOutcome::Bad);
            };
            if user.disabled || !crate::auth::verify_password(&password, &user.password_hash) {
                return Ok(LoginOutcome::Bad);
            }
            if user.role == Role::Rep {
                return Ok(LoginOutcome::Rep);
            }
            let token = crate::auth::new_token();
            let now = chrono::Utc::now().timestamp_millis();
            store.create_token(
                &user.id,
                &format!("{SESSION_DEVICE_PREFIX}{}", now + SESSION_TTL_MS),
                &hash_token(&token),
                now,
            )?;
            Ok(LoginOutcome::Ok(token))
        })
        .await;
    match outcome {
        Err(crate::auth::GateError::Busy { .. }) => {
            tracing::warn!("dashboard sign-in turned away: every password check slot is busy");
            let mut resp = login_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is busy signing other people in. Try again in a moment.",
                &form.username,
                secure,
            );
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(crate::api::BUSY_RETRY_AFTER),
            );
            resp
        }
        Err(crate::auth::GateError::Failed(e)) => AppError::internal(e).into_response(),
        Ok(Ok(LoginOutcome::Ok(token))) => {
            let mut resp = Redirect::to("/").into_response();
            let h = resp.headers_mut();
            h.append(
                header::SET_COOKIE,
                set_cookie(SESSION_COOKIE, &token, "/", SESSION_TTL_MS / 1000, secure),
            );
            h.append(
                header::SET_COOKIE,
                set_cookie(LOGIN_CSRF_COOKIE, "", "/login", 0, secure),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Ok(Ok(LoginOutcome::Rep)) => login_response(
            StatusCode::FORBIDDEN,
            "This dashboard is for managers and admins. Reps use the fieldsync app on their phone.",
            &form.username,
            secure,
        ),
        Ok(Ok(LoginOutcome::Bad)) => {
            FAILURES
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(key)
                .or_default()
                .push_back(Instant::now());
            login_response(
                StatusCode::UNAUTHORIZED,
                "Invalid username or password.",
                &form.username,
                secure,
            )
        }
        Ok(Err(e)) => e.into_response(),
    }
}

enum LoginOutcome {
    Ok(String),
    Rep,
    Bad,
}

#[derive(Debug, Deserialize)]
struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(State(state): State<AppState>, req: Request) -> Response {
    let headers = req.headers().clone();
    let secure = behind_https(&headers);
    let session = match session_from(&headers, &state).await {
        Ok(s) => s,
        Err(_) => return Redirect::to("/login").into_response(),
    };
    let Ok(Form(form)) = Form::<LogoutForm>::from_request(req, &state).await else {
        return AppError::bad_request("malformed form").into_response();
    };
    if !constant_time_eq(&form.csrf, &session.csrf) {
        return AppError::new(StatusCode::FORBIDDEN, "csrf", "wrong CSRF token").into_response();
    }
    let store = state.store.clone();
    let id = session.token_id.clone();
    let _ = tokio::task::spawn_blocking(move || {
        store.revoke_token(&id, chrono::Utc::now().timestamp_millis())
    })
    .await;
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", "/", 0, secure),
    );
    resp
}

// ------------------------------------------------------------------ pages and assets

async fn render_page(headers: &HeaderMap, state: &AppState) -> Response {
    match session_from(headers, state).await {
        Ok(s) => {
            let body = APP_HTML
                .replace("{{csrf}}", &s.csrf)
                .replace("{{username}}", &html_escape(&s.user.username))
                .replace("{{role}}", s.user.role.as_str());
            let mut resp = (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                body,
            )
                .into_response();
            security_headers(&mut resp);
            resp
        }
        Err(_) => Redirect::to("/login").into_response(),
    }
}

async fn page(headers: HeaderMap, State(state): State<AppState>) -> Response {
    render_page(&headers, &state).await
}

async fn page_with_id(
    headers: HeaderMap,
    State(state): State<AppState>,
    Path(_id): Path<String>,
) -> Response {
    render_page(&headers, &state).await
}

async fn asset(Path(file): Path<String>) -> Response {
    let (ctype, body) = match file.as_str() {
        "app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "app.css" => ("text/css; charset=utf-8", APP_CSS),
        "favicon.svg" => ("image/svg+xml", FAVICON),
        _ => return AppError::not_found("no such asset").into_response(),
    };
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

// ------------------------------------------------------------------ planning with a session

#[utoipa::path(post, path = "/v1/dashboard/visits", tag = "dashboard",
    summary = "Plan a visit (as POST /v1/visits) with the dashboard session",
    params(("X-CSRF-Token" = String, Header, description = "the session's CSRF token (the page's `csrf-token` meta tag)")),
    request_body = crate::api::CreateVisit,
    responses((status = 201, description = "planned", body = crate::api::VisitOut), openapi::SessionPlanningErrors),
    security(("session" = [])))]
async fn plan_visit(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<crate::api::VisitOut>), AppError> {
    check_csrf(&session, &headers)?;
    crate::api::create_visit(State(state), session.auth_user(), body).await
}

#[utoipa::path(patch, path = "/v1/dashboard/visits/{id}", tag = "dashboard",
    summary = "Assign, reschedule or cancel a planned visit (as PATCH /v1/visits/{id}) with the dashboard session",
    params(
        ("id" = String, Path, description = "visit id"),
        ("X-CSRF-Token" = String, Header, description = "the session's CSRF token (the page's `csrf-token` meta tag)"),
    ),
    request_body = crate::api::PatchVisit,
    responses((status = 200, description = "the visit as changed", body = crate::api::VisitOut), openapi::SessionPlanningErrors),
    security(("session" = [])))]
async fn replan_visit(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<crate::api::VisitOut>, AppError> {
    check_csrf(&session, &headers)?;
    crate::api::patch_visit(State(state), session.auth_user(), Path(id), body).await
}
