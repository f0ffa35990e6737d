//! The owner's side of authentication in a browser: onboarding with the register
//! token and the first password (spec instances 3.2, 3.3), sessions and CSRF (spec
//! core-api B.4), login and logout (B.5, B.5.1), password changes (instances 3.6), and
//! the `LOGIN_FAILED` block after too many failed logins.
//!
//! Passwords never arrive in clear text from a browser: the pages hash them first
//! (`assets/passphrase.js`), and the server keeps scrypt of that hash. Only a CLI token
//! may send clear text (`hearth instances set-passphrase`).

mod authorize;
pub(crate) mod cookies;
mod extract;
mod throttle;
mod urls;

use std::collections::HashMap;

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use hearth_instances::{
    Instance, InstanceError, LoginEntry, Session,
    auth::{PassphraseError, Registration, register_token_matches},
    session,
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    AppState, Family, Inst, Perm,
    error::{ApiError, ErrorSource, PlainError},
    instance, pages,
};
use extract::{Fields, RequestInfo, iterations, lenient_bool, lenient_int};
use urls::{checked_redirect, home_url};

pub(crate) use urls::{login_then, request_domain, urlencode};

pub use throttle::{FailureCounter, HitFuture, LoginThrottle};

/// The routes of this module: the pages (`/`, `/auth/*`, checked as pages: blocked and
/// deleting instances are refused) and `/settings/passphrase` (an API route).
pub(crate) fn routes(state: AppState) -> Router<AppState> {
    let resolve = |family: Family| {
        axum::middleware::from_fn_with_state((state.clone(), family), instance::resolve)
    };
    let pages = Router::new()
        .route("/", get(home))
        .route("/auth/passphrase", get(passphrase_page))
        .route(
            "/auth/login",
            get(login_page).post(login).delete(logout_api),
        )
        .route("/auth/logout", post(logout_form))
        .route(
            "/auth/authorize",
            get(authorize::authorize_page).post(authorize::authorize),
        )
        .route_layer(resolve(Family::Pages));
    // The spec leaves `/settings` out of the blocked check.
    let settings = Router::new()
        .route(
            "/settings/passphrase",
            post(register_passphrase)
                .put(change_passphrase)
                .get(crate::settings::passphrase_params),
        )
        .route_layer(resolve(Family::Unblocked));
    pages.merge(settings)
}

// ---------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------

/// `GET /` — spec instances 3.2: while onboarding is pending, a valid `registerToken`
/// goes on to the password choice, anything else gets the "not activated" page; then a
/// session gets the home page, and no session the login page.
async fn home(
    State(state): State<AppState>,
    Inst(i): Inst,
    req: RequestInfo,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if i.register_token.is_some() && !i.onboarding_finished {
        return match q.get("registerToken") {
            Some(t) if register_token_matches(&i, t) => {
                let query = req.query.as_deref().unwrap_or_default();
                see_other(&format!("/auth/passphrase?{query}"))
            }
            _ => pages::onboarding(i.page_locale()).into_response(),
        };
    }
    match current_session(&state, &i, &req.headers).await {
        Ok(Some(_)) => {
            let (csrf, cookie) = cookies::csrf(&i, &req.headers);
            let page = pages::home(i.page_locale(), &request_domain(&i, &req.headers), &csrf);
            with_cookies(page.into_response(), [cookie])
        }
        Ok(None) => see_other("/auth/login"),
        Err(e) => page_error(&req, e),
    }
}

/// `GET /auth/passphrase?registerToken=<hex>` — spec instances 3.2: the password
/// choice page, whose script posts the login hash to `POST /settings/passphrase`.
async fn passphrase_page(
    State(state): State<AppState>,
    Inst(i): Inst,
    req: RequestInfo,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if i.onboarding_finished {
        return see_other(&home_url(&i, &req.headers));
    }
    let Some(token) = q
        .get("registerToken")
        .filter(|t| register_token_matches(&i, t))
    else {
        return pages::onboarding(i.page_locale()).into_response();
    };
    let iterations = match state.instances.kdf_iterations(&i).await {
        Ok(n) => n,
        Err(e) => return page_error(&req, e),
    };
    pages::passphrase_choice(
        i.page_locale(),
        &request_domain(&i, &req.headers),
        &i.passphrase_salt(),
        iterations,
        token.trim(),
    )
    .into_response()
}

/// The fields of `POST /settings/passphrase` Hearth reads; the vault keys (`key`,
/// `public_key`, `private_key`) are ignored until Hearth has a vault.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RegisterForm {
    register_token: String,
    passphrase: String,
    #[serde(deserialize_with = "lenient_int")]
    iterations: i64,
    hint: String,
}

/// `POST /settings/passphrase` — spec instances 3.3: registers the first password with
/// the register token, opens a long-run session, and answers 303 to the home page for
/// a browser (`Accept` with `text/html`), else 200 `{"redirect": url}`. Refusals: 400
/// (token malformed, missing, used or wrong; passphrase missing), 422 (iterations).
/// `iterations` 0 means the passphrase is clear text (hashed here as a client would).
async fn register_passphrase(
    State(state): State<AppState>,
    Inst(i): Inst,
    req: RequestInfo,
    Fields(form): Fields<RegisterForm>,
) -> Response {
    let html = wants_html(&req.headers);
    let registration = iterations(form.iterations).map(|iterations| Registration {
        register_token: form.register_token,
        passphrase: form.passphrase,
        iterations,
        hint: Some(form.hint).filter(|h| !h.is_empty()),
    });
    let result = match registration {
        Ok(r) => state.instances.register_passphrase(&i.domain, r).await,
        Err(e) => Err(e),
    };
    let updated = match result {
        Ok(u) => u,
        Err(e) if html => return registration_error_page(&i, e, &req),
        Err(e) => return passphrase_error(e).into_response(),
    };
    let cookie = match open_session(&state, &updated, &req, true, "registration").await {
        Ok(c) => c,
        Err(e) if html => return page_error(&req, e),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let url = home_url(&updated, &req.headers);
    let res = if html {
        see_other(&url)
    } else {
        Json(json!({ "redirect": url })).into_response()
    };
    with_cookies(res, [cookie])
}

/// What `PUT /settings/passphrase` reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ChangeForm {
    current_passphrase: String,
    new_passphrase: String,
    #[serde(deserialize_with = "lenient_int")]
    iterations: i64,
    #[serde(deserialize_with = "lenient_bool")]
    force: bool,
}

/// `PUT /settings/passphrase` — spec instances 3.6. With `force: true` and a CLI token
/// of the instance (scope `io.cozy.settings`), sets `new_passphrase` (clear text when
/// `iterations` is 0) → 204. Otherwise needs the session cookie and
/// `current_passphrase` (login hash), and `new_passphrase` hashed with `iterations` (0:
/// the current ones) → 204 with a new session cookie; every other session ends.
async fn change_passphrase(
    State(state): State<AppState>,
    Inst(i): Inst,
    req: RequestInfo,
    perm: Result<Perm, Response>,
    Fields(form): Fields<ChangeForm>,
) -> Response {
    let iterations = match iterations(form.iterations) {
        Ok(n) => n,
        Err(e) => return passphrase_error(e).into_response(),
    };
    if form.force {
        if let Err(refusal) = require_cli_token(perm, &req) {
            return *refusal;
        }
        return match state
            .instances
            .force_passphrase(&i.domain, &form.new_passphrase, iterations)
            .await
        {
            Ok(_) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => passphrase_error(e).into_response(),
        };
    }
    let session = match current_session(&state, &i, &req.headers).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return PlainError::new(StatusCode::UNAUTHORIZED, "Unauthorized")
                .render(&req.method, &req.headers);
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let changed = state
        .instances
        .change_passphrase(
            &i.domain,
            &form.current_passphrase,
            &form.new_passphrase,
            iterations,
        )
        .await;
    let updated = match changed {
        Ok(u) => u,
        Err(PassphraseError::WrongPassphrase) => {
            if let Some(blocked) = count_failure(&state, &i).await {
                return blocked;
            }
            return passphrase_error(PassphraseError::WrongPassphrase).into_response();
        }
        Err(e) => return passphrase_error(e).into_response(),
    };
    match open_session(&state, &updated, &req, session.long_run, "password").await {
        Ok(cookie) => with_cookies(StatusCode::NO_CONTENT.into_response(), [cookie]),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `GET /auth/login` — spec core-api B.5: the login form (salt and iterations as
/// `data-salt` / `data-iterations`, a hidden `csrf_token` whose cookie is set here, and
/// the checked `redirect`). Already logged in: 303 to `redirect` or home. A `redirect`
/// outside the instance: 400. Before onboarding: the "not activated" page.
async fn login_page(
    State(state): State<AppState>,
    Inst(i): Inst,
    req: RequestInfo,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !i.onboarding_finished {
        return pages::onboarding(i.page_locale()).into_response();
    }
    let raw_redirect = q.get("redirect").map(String::as_str).unwrap_or_default();
    let Ok(redirect) = checked_redirect(&i, &req.headers, raw_redirect) else {
        return bad_redirect(&i, &req);
    };
    match current_session(&state, &i, &req.headers).await {
        Ok(Some(_)) => {
            return see_other(&redirect.unwrap_or_else(|| home_url(&i, &req.headers)));
        }
        Ok(None) => {}
        Err(e) => return page_error(&req, e),
    }
    login_form(&state, &i, &req, StatusCode::OK, redirect.as_deref(), None).await
}

/// The fields of `POST /auth/login`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LoginFields {
    passphrase: String,
    csrf_token: Option<String>,
    redirect: String,
    #[serde(rename = "long-run-session")]
    long_run_session: String,
}

/// `POST /auth/login` — spec core-api B.5: checks `csrf_token` against the `_csrf`
/// cookie (missing field 400, mismatch 403 `invalid csrf token`), the `redirect`
/// (400), then the login hash `passphrase`. Success: a session cookie (long-run with
/// `long-run-session`) and 303 to `redirect` or home, or 200 `{"redirect": url}` for
/// `Accept: application/json` exactly. Failure: 401 with the form and a message, or
/// `{"error": message}`; the failure that reaches `auth.login_failures_per_hour`
/// blocks the instance (`LOGIN_FAILED`, 503 page).
async fn login(
    State(state): State<AppState>,
    Inst(i): Inst,
    req: RequestInfo,
    Fields(form): Fields<LoginFields>,
) -> Response {
    if !i.onboarding_finished {
        return pages::onboarding(i.page_locale()).into_response();
    }
    if let Err(refusal) = csrf_guard(&state, &i, &req, form.csrf_token.as_deref()).await {
        return *refusal;
    }
    let Ok(redirect) = checked_redirect(&i, &req.headers, &form.redirect) else {
        return bad_redirect(&i, &req);
    };
    match state.instances.check_passphrase(&i, &form.passphrase).await {
        Ok(true) => {}
        Ok(false) => {
            if let Some(blocked) = count_failure(&state, &i).await {
                return blocked;
            }
            let message = pages::text(i.page_locale(), "wrong_password");
            if json_exactly(&req.headers) {
                return (StatusCode::UNAUTHORIZED, Json(json!({ "error": message })))
                    .into_response();
            }
            return login_form(
                &state,
                &i,
                &req,
                StatusCode::UNAUTHORIZED,
                redirect.as_deref(),
                Some("wrong_password"),
            )
            .await;
        }
        Err(e) => return page_error(&req, e),
    }
    let long_run = matches!(form.long_run_session.as_str(), "1" | "true" | "on" | "yes");
    let cookie = match open_session(&state, &i, &req, long_run, "password").await {
        Ok(c) => c,
        Err(e) => return page_error(&req, e),
    };
    let url = match redirect {
        Some(u) => u,
        // After a move that left a password vault behind, the first login shows how
        // to bring it along (spec move 3.9); `/move/vault` clears the flag.
        None if import_vault_pending(&state, &i).await => format!(
            "{}://{}/move/vault",
            crate::instance::scheme_for(&i.domain),
            i.domain
        ),
        None => home_url(&i, &req.headers),
    };
    let res = if json_exactly(&req.headers) {
        Json(json!({ "redirect": url })).into_response()
    } else {
        see_other(&url)
    };
    with_cookies(res, [cookie])
}

/// Whether the instance settings ask to show the vault instructions of a move.
async fn import_vault_pending(state: &AppState, i: &Instance) -> bool {
    hearth_move::moving::instance_settings(state.store.as_ref(), i)
        .await
        .ok()
        .and_then(|s| s.get("import_vault").and_then(serde_json::Value::as_bool))
        .unwrap_or(false)
}

/// `DELETE /auth/login` — spec core-api B.5: ends the session of the cookie → 204 and
/// the cookie cleared; no valid session → 401. (The app token the original also asks
/// for comes with the permissions work; a DELETE cannot be sent cross-site without a
/// CORS preflight, which `/auth` never grants.)
async fn logout_api(State(state): State<AppState>, Inst(i): Inst, req: RequestInfo) -> Response {
    match current_session(&state, &i, &req.headers).await {
        Ok(Some(s)) => match state.instances.delete_session(&i, &s.id).await {
            Ok(()) => with_cookies(
                StatusCode::NO_CONTENT.into_response(),
                [cookies::clear_session(&i, &req.headers)],
            ),
            Err(e) => ApiError::from(e).into_response(),
        },
        Ok(None) => PlainError::new(StatusCode::UNAUTHORIZED, "Unauthorized")
            .render(&req.method, &req.headers),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The fields of `POST /auth/logout`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LogoutFields {
    csrf_token: Option<String>,
}

/// `POST /auth/logout` — spec core-api B.5 (Hearth's form twin of `DELETE /auth/login`,
/// for the logout button: a form cannot send `DELETE`): checks
/// the CSRF token like the login form, ends the session if there is one, clears the
/// cookie and answers 303 to the login page.
async fn logout_form(
    State(state): State<AppState>,
    Inst(i): Inst,
    req: RequestInfo,
    Fields(form): Fields<LogoutFields>,
) -> Response {
    if let Err(refusal) = csrf_guard(&state, &i, &req, form.csrf_token.as_deref()).await {
        return *refusal;
    }
    match current_session(&state, &i, &req.headers).await {
        Ok(Some(s)) => {
            if let Err(e) = state.instances.delete_session(&i, &s.id).await {
                return page_error(&req, e);
            }
        }
        Ok(None) => {}
        Err(e) => return page_error(&req, e),
    }
    with_cookies(
        see_other("/auth/login"),
        [cookies::clear_session(&i, &req.headers)],
    )
}

// ---------------------------------------------------------------------------------------
// Sessions, CSRF, failures
// ---------------------------------------------------------------------------------------

/// The live session of the request's `cozysessid` cookie, if any.
pub(crate) async fn current_session(
    state: &AppState,
    i: &Instance,
    headers: &HeaderMap,
) -> Result<Option<Session>, InstanceError> {
    for value in cookies::values(headers, cookies::SESSION_COOKIE) {
        if let Some(s) = state.instances.session_from_cookie(i, value).await? {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

/// Opens a session for `i` (as it is after any password change), records the login,
/// and returns the `Set-Cookie` value.
async fn open_session(
    state: &AppState,
    i: &Instance,
    req: &RequestInfo,
    long_run: bool,
    kind: &'static str,
) -> Result<HeaderValue, InstanceError> {
    let s = state.instances.create_session(i, long_run).await?;
    let entry = LoginEntry {
        ip: req.client_ip(),
        user_agent: req.header(header::USER_AGENT).to_owned(),
        kind,
    };
    if let Err(e) = state.instances.record_login(i, entry).await {
        // The history is a convenience: a login does not fail for it.
        tracing::warn!(error = %e, "login history not recorded");
    }
    Ok(cookies::session(
        i,
        &req.headers,
        &session::cookie_value(i, &s.id),
        long_run,
    ))
}

/// The double-submit check of the auth forms. A browser whose token expired gets the
/// login form again (403) with a fresh token and a message; other clients get
/// `invalid csrf token` (403), or 400 when the field is missing.
async fn csrf_guard(
    state: &AppState,
    i: &Instance,
    req: &RequestInfo,
    field: Option<&str>,
) -> Result<(), Box<Response>> {
    match cookies::check_csrf(&req.headers, field) {
        Ok(()) => Ok(()),
        Err(cookies::CsrfFailure::MissingField) => Err(Box::new(
            PlainError::new(
                StatusCode::BAD_REQUEST,
                "missing csrf token in the form parameter",
            )
            .render(&req.method, &req.headers),
        )),
        Err(cookies::CsrfFailure::Mismatch) if wants_html(&req.headers) => Err(Box::new(
            login_form(
                state,
                i,
                req,
                StatusCode::FORBIDDEN,
                None,
                Some("csrf_expired"),
            )
            .await,
        )),
        Err(cookies::CsrfFailure::Mismatch) => Err(Box::new(
            PlainError::new(StatusCode::FORBIDDEN, "invalid csrf token")
                .render(&req.method, &req.headers),
        )),
    }
}

/// Counts a failed login; at the limit, blocks the instance and returns the blocked
/// page to answer with.
async fn count_failure(state: &AppState, i: &Instance) -> Option<Response> {
    if !state.login_throttle.failed(&i.domain).await {
        return None;
    }
    tracing::warn!(
        domain = %i.domain,
        limit = state.login_throttle.limit(),
        "too many failed logins: instance blocked"
    );
    if let Err(e) = state
        .instances
        .set_blocked(&i.domain, Some("LOGIN_FAILED"))
        .await
    {
        tracing::error!(error = %e, "cannot block the instance after failed logins");
    }
    Some(
        (
            StatusCode::SERVICE_UNAVAILABLE,
            pages::blocked(i.page_locale(), "LOGIN_FAILED"),
        )
            .into_response(),
    )
}

/// A CLI token allowed to write `io.cozy.settings` (spec instances 3.6); another
/// token is 403, and a missing or invalid one answers as [`Perm`] refuses it (401 /
/// 400, spec core-api B.3).
fn require_cli_token(perm: Result<Perm, Response>, req: &RequestInfo) -> Result<(), Box<Response>> {
    let perm = perm.map_err(Box::new)?;
    if perm.kind == "cli" && perm.set.allows_whole_type("PUT", "io.cozy.settings") {
        return Ok(());
    }
    Err(Box::new(
        PlainError::new(StatusCode::FORBIDDEN, "Forbidden").render(&req.method, &req.headers),
    ))
}

// ---------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------

/// The login page with a fresh (or the current) CSRF token.
async fn login_form(
    state: &AppState,
    i: &Instance,
    req: &RequestInfo,
    status: StatusCode,
    redirect: Option<&str>,
    error: Option<&'static str>,
) -> Response {
    let iterations = match state.instances.kdf_iterations(i).await {
        Ok(n) => n,
        Err(e) => return page_error(req, e),
    };
    let (csrf, cookie) = cookies::csrf(i, &req.headers);
    let page = pages::login(
        i.page_locale(),
        &pages::LoginForm {
            domain: &request_domain(i, &req.headers),
            salt: &i.passphrase_salt(),
            iterations,
            csrf_token: &csrf,
            redirect: redirect.unwrap_or_default(),
            error,
        },
    );
    with_cookies((status, page).into_response(), [cookie])
}

/// A refused registration for a person: a page saying what to do.
fn registration_error_page(i: &Instance, e: PassphraseError, req: &RequestInfo) -> Response {
    let locale = i.page_locale();
    let (status, kind, link) = match &e {
        PassphraseError::MalformedRegisterToken(_) | PassphraseError::InvalidRegisterToken => {
            (StatusCode::BAD_REQUEST, "bad_token", false)
        }
        PassphraseError::EmptyRegisterToken => (StatusCode::BAD_REQUEST, "used_token", true),
        PassphraseError::MissingPassphrase => (StatusCode::BAD_REQUEST, "missing", false),
        PassphraseError::IterationsTooLow | PassphraseError::IterationsTooHigh => {
            (StatusCode::UNPROCESSABLE_ENTITY, "iterations", false)
        }
        PassphraseError::WrongPassphrase | PassphraseError::Instance(_) => {
            return passphrase_error(e).render_page(req);
        }
    };
    (status, pages::auth_error(locale, kind, link)).into_response()
}

/// The JSON:API error of a refused passphrase operation (spec instances 3.3).
fn passphrase_error(e: PassphraseError) -> ApiError {
    match e {
        PassphraseError::IterationsTooLow | PassphraseError::IterationsTooHigh => {
            ApiError::invalid_parameter("KdfIterations", e.to_string())
        }
        PassphraseError::WrongPassphrase => ApiError::bad_request(e.to_string())
            .with_source(ErrorSource::Parameter("current_passphrase".into())),
        PassphraseError::Instance(e) => ApiError::from(e),
        PassphraseError::MalformedRegisterToken(_)
        | PassphraseError::MissingPassphrase
        | PassphraseError::EmptyRegisterToken
        | PassphraseError::InvalidRegisterToken => ApiError::bad_request(e.to_string()),
    }
}

impl ApiError {
    /// This error for a person: its status with a plain page.
    fn render_page(&self, req: &RequestInfo) -> Response {
        PlainError::new(self.status, self.detail.clone()).render(&req.method, &req.headers)
    }
}

/// A failure of the service on a page route: logged, and a generic page or message.
fn page_error(req: &RequestInfo, e: InstanceError) -> Response {
    let api = ApiError::from(e);
    if wants_html(&req.headers) || api.status != StatusCode::INTERNAL_SERVER_ERROR {
        return api.render_page(req);
    }
    api.into_response()
}

fn bad_redirect(i: &Instance, req: &RequestInfo) -> Response {
    if wants_html(&req.headers) {
        return (
            StatusCode::BAD_REQUEST,
            pages::auth_error(i.page_locale(), "bad_redirect", false),
        )
            .into_response();
    }
    PlainError::new(StatusCode::BAD_REQUEST, "bad redirect").render(&req.method, &req.headers)
}

fn see_other(location: &str) -> Response {
    Redirect::to(location).into_response()
}

fn with_cookies<const N: usize>(mut res: Response, cookies: [HeaderValue; N]) -> Response {
    for c in cookies {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    // Pages with tokens or sessions must not be stored by shared caches.
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn accept(headers: &HeaderMap) -> &str {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// A browser: `Accept` mentions `text/html`.
pub(super) fn wants_html(headers: &HeaderMap) -> bool {
    accept(headers).contains("text/html")
}

/// `Accept: application/json` and nothing else, as the original tests for login.
fn json_exactly(headers: &HeaderMap) -> bool {
    accept(headers).trim() == "application/json"
}
