//! The source side of a move (spec move 3.2, 3.3, 3.5–3.8): the wizard's entry points
//! (`POST /move/initialize`, `GET /move/authorize`), the request confirmed by mail
//! (`POST /move/request`, `GET /move/go`), the target's calls (`POST /move/finalize`,
//! `POST /move/abort`), and the "moved" page of a moved source. The work is in
//! `hearth_move::moving`; this maps it onto HTTP and pages in English and French.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use axum::{
    Router,
    body::Bytes,
    extract::{Query, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use hearth_instances::Instance;
use hearth_move::client::Reach;
use hearth_move::moving::{self, MoveFlowError, MoveStart, MoveTo, SourceCredentials};

use crate::{
    AppState, Inst, Perm,
    auth::request_domain,
    error::{ApiError, html_escape},
    instance::scheme_for,
    pages, serve_app,
};

const DAY_SECS: u64 = 24 * 3600;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/move/initialize", post(initialize))
        .route("/move/authorize", get(authorize))
        .route("/move/request", post(request))
        .route("/move/go", get(go))
        .route("/move/finalize", post(finalize))
        .route("/move/abort", post(abort))
        .route("/settings/warnings", get(warnings))
}

/// `GET /settings/warnings` (spec move 3.8, instances 4.5): 204 when there is nothing
/// to say; 402 with the `moved` error (410, the new address in `links.related`) once
/// the instance has moved. It is answered to any caller, a refused token included:
/// it is how clients learn the new address, which the moved pages show anyway.
async fn warnings(State(state): State<AppState>, Inst(i): Inst) -> Response {
    if !i.moved {
        return StatusCode::NO_CONTENT.into_response();
    }
    let to = moved_to_url(&state, &i).await;
    let mut res = moved_error(&i, &to);
    *res.status_mut() = StatusCode::PAYMENT_REQUIRED;
    res
}

// ---------------------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------------------

fn t(locale: &str, key: &str) -> &'static str {
    let fr = locale == "fr";
    match key {
        "error_title" if fr => "Le déménagement ne peut pas continuer",
        "error_title" => "The move cannot go on",
        "not_found_title" if fr => "Introuvable",
        "not_found_title" => "Not found",
        "no_wizard" if fr => {
            "Aucun assistant de déménagement n'est configuré sur ce serveur (no move wizard configured)."
        }
        "no_wizard" => "No move wizard is configured on this server.",
        "rate_limited" if fr => {
            "Trop d'exports ou de déménagements ont été demandés aujourd'hui. Réessayez demain."
        }
        "rate_limited" => "Too many exports or moves were asked today. Try again tomorrow.",
        "invalid_secret" if fr => {
            "Secret invalide : ce lien de confirmation est inconnu, a déjà servi ou a expiré. \
             Recommencez le déménagement."
        }
        "invalid_secret" => {
            "Invalid secret: this confirmation link is unknown, was already used, or has \
             expired. Start the move again."
        }
        "unreachable" if fr => {
            "Impossible de joindre l'autre Cozy (Cannot reach the other Cozy). Rien n'a changé."
        }
        "unreachable" => "Cannot reach the other Cozy. Nothing was changed.",
        "refused" if fr => "L'autre Cozy a refusé le déménagement. Rien n'a changé.",
        "refused" => "The other Cozy refused the move. Nothing was changed.",
        "retry" if fr => {
            "Vous pouvez rouvrir le lien de l'e-mail dans un moment : il reste valable \
             pendant ses cinq minutes."
        }
        "retry" => {
            "You can open the link of the e-mail again in a moment: it stays valid \
             for its five minutes."
        }
        "internal" if fr => "Le serveur a rencontré une erreur ; la cause est dans ses journaux.",
        "internal" => "The server failed; the cause is in its logs.",
        "mail_failed" if fr => "Le mail de confirmation n'a pas pu être envoyé.",
        "mail_failed" => "The confirmation mail could not be sent.",
        "mail_sent_title" if fr => "Consultez votre boîte mail",
        "mail_sent_title" => "Check your mailbox",
        "mail_sent" if fr => "Un mail a été envoyé à",
        "mail_sent" => "A mail was sent to",
        "mail_sent_next" if fr => {
            "Ouvrez le lien qu'il contient dans les 5 minutes pour confirmer le déménagement."
        }
        "mail_sent_next" => "Open the link it contains within 5 minutes to confirm the move.",
        "bad_redirect_uri" if fr => "redirect_uri doit être une adresse http ou https.",
        "bad_redirect_uri" => "redirect_uri must be an http or https address.",
        "missing_target_url" if fr => "L'adresse du Cozy de destination (target_url) manque.",
        "missing_target_url" => "The address of the target Cozy (target_url) is missing.",
        "bad_target_url" if fr => "L'adresse du Cozy de destination (target_url) est invalide.",
        "bad_target_url" => "The address of the target Cozy (target_url) is invalid.",
        "same_target" if fr => "Le Cozy de destination ne peut pas être celui-ci.",
        "same_target" => "The target Cozy cannot be this one.",
        "missing_target_creds" if fr => {
            "Les identifiants du Cozy de destination (target_token, target_client_id, \
             target_client_secret) manquent."
        }
        "missing_target_creds" => {
            "The credentials of the target Cozy (target_token, target_client_id, \
             target_client_secret) are missing."
        }
        "missing_creds" if fr => {
            "Les identifiants de ce Cozy (code, ou token, client_id et client_secret) manquent."
        }
        "missing_creds" => {
            "The credentials of this Cozy (code, or token, client_id and client_secret) are \
             missing."
        }
        "invalid_code" if fr => "Code invalide : il est inconnu, a déjà servi ou a expiré.",
        "invalid_code" => "Invalid code: it is unknown, was already used, or has expired.",
        "invalid_creds" if fr => "Les identifiants de ce Cozy sont invalides",
        "invalid_creds" => "The credentials of this Cozy are invalid",
        "bad_form" if fr => "Le formulaire envoyé est illisible.",
        "bad_form" => "The form sent cannot be read.",
        "moved_title" if fr => "a changé d'adresse",
        "moved_title" => "changed the address",
        "moved_someone" if fr => "Ce Cozy",
        "moved_someone" => "This Cozy",
        "moved_body" if fr => "Ce Cozy a déménagé. Sa nouvelle adresse est :",
        "moved_body" => "This Cozy has moved. Its new address is:",
        "moved_update" if fr => "Mettez à jour vos favoris et les liens que vous avez partagés.",
        "moved_update" => "Update your bookmarks and the links you shared.",
        "moved_detail" if fr => "Ce Cozy a déménagé à une nouvelle adresse",
        "moved_detail" => "This Cozy has moved to a new address",
        _ => "",
    }
}

fn error_page(status: StatusCode, locale: &str, title_key: &str, message: &str) -> Response {
    (
        status,
        pages::page(locale, t(locale, title_key), &[message]),
    )
        .into_response()
}

fn bad_request(locale: &str, key: &str) -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        locale,
        "error_title",
        t(locale, key),
    )
}

fn internal_page(locale: &str, cause: &(dyn std::error::Error + 'static)) -> Response {
    tracing::error!(error = %crate::ErrorChain(cause), "a move page failed");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        locale,
        "error_title",
        t(locale, "internal"),
    )
}

fn location(status: StatusCode, to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(v) => (status, [(header::LOCATION, v)]).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `<scheme>://<the domain the request used>`.
fn base_url(i: &Instance, headers: &HeaderMap) -> String {
    let domain = request_domain(i, headers);
    format!("{}://{domain}", scheme_for(&domain))
}

/// 303 to the login page, coming back to `back` afterwards.
fn to_login(i: &Instance, headers: &HeaderMap, back: &str) -> Response {
    let query = serde_urlencoded::to_string([("redirect", back)]).unwrap_or_default();
    location(
        StatusCode::SEE_OTHER,
        &format!("{}/auth/login?{query}", base_url(i, headers)),
    )
}

async fn logged_in(state: &AppState, i: &Instance, headers: &HeaderMap) -> Result<bool, Response> {
    match serve_app::session_of(state, i, headers).await {
        Ok(s) => Ok(s.is_some()),
        Err(e) => Err(internal_page(i.page_locale(), &e)),
    }
}

/// The wizard that `/move/initialize` sends people to, if this server names one.
pub(crate) fn wizard_url(state: &AppState) -> Option<String> {
    let s = &state.move_settings;
    s.wizard_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .or_else(|| {
            s.wizard_domain
                .as_deref()
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(|d| format!("{}://{d}/", scheme_for(d)))
        })
}

fn hits() -> &'static Mutex<HashMap<String, Vec<u64>>> {
    static HITS: OnceLock<Mutex<HashMap<String, Vec<u64>>>> = OnceLock::new();
    HITS.get_or_init(Mutex::default)
}

/// Counts one more use of `/move/initialize` or `/move/authorize`: true when the
/// instance already reached the limit shared with exports (5 per 24 hours).
async fn rate_limited(state: &AppState, i: &Instance) -> Result<bool, hearth_move::MoveError> {
    let now = crate::wizard::now_secs();
    let exports = crate::moves::exports_since(state, i, now).await?;
    let mut map = hits()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mine = map.entry(i.id.clone()).or_default();
    mine.retain(|t| now.saturating_sub(*t) < DAY_SECS);
    if exports + mine.len() >= crate::moves::EXPORTS_PER_DAY {
        return Ok(true);
    }
    mine.push(now);
    Ok(false)
}

/// `rate_limited` as a page: 404 at the limit, 500 when the exports cannot be read.
async fn within_limit(state: &AppState, i: &Instance) -> Result<(), Response> {
    let locale = i.page_locale();
    match rate_limited(state, i).await {
        Ok(false) => Ok(()),
        Ok(true) => Err(error_page(
            StatusCode::NOT_FOUND,
            locale,
            "not_found_title",
            t(locale, "rate_limited"),
        )),
        Err(e) => Err(internal_page(locale, &e)),
    }
}

/// `vault`, `used` and `quota` as the wizard wants them (`quota` omitted if none).
async fn sizes(state: &AppState, i: &Instance) -> Result<Vec<(&'static str, String)>, Response> {
    let vault = moving::has_vault(state.store.as_ref(), i).await;
    let usage = state
        .vfs
        .usage(i)
        .await
        .map_err(|e| internal_page(i.page_locale(), &e))?;
    let mut out = vec![
        ("vault", vault.to_string()),
        ("used", (usage.files + usage.versions).to_string()),
    ];
    if let Some(q) = i.disk_quota.filter(|q| *q > 0) {
        out.push(("quota", q.to_string()));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// The wizard's entry points
// ---------------------------------------------------------------------------------------

/// `POST /move/initialize` (session) → 307 to `<wizard>/initialize?client_id&
/// client_secret&code&vault&used[&quota]&cozy_url` (spec move 3.2).
async fn initialize(State(state): State<AppState>, Inst(i): Inst, headers: HeaderMap) -> Response {
    let locale = i.page_locale();
    match logged_in(&state, &i, &headers).await {
        Ok(true) => {}
        Ok(false) => {
            let settings = serve_app::app_url(
                &request_domain(&i, &headers),
                "settings",
                state.flat_subdomains,
            );
            return to_login(&i, &headers, &settings);
        }
        Err(r) => return r,
    }
    let Some(wizard) = wizard_url(&state) else {
        return error_page(
            StatusCode::NOT_FOUND,
            locale,
            "not_found_title",
            t(locale, "no_wizard"),
        );
    };
    if let Err(r) = within_limit(&state, &i).await {
        return r;
    }
    let (client_id, client_secret) =
        match moving::register_move_client(&state.instances, &i, &wizard).await {
            Ok(c) => c,
            Err(e) => return internal_page(locale, &e),
        };
    let code = match state
        .instances
        .create_access_code(&i.domain, &client_id, moving::MOVE_SCOPE, None)
        .await
    {
        Ok(c) => c,
        Err(e) => return internal_page(locale, &e),
    };
    let mut params = vec![
        ("client_id", client_id),
        ("client_secret", client_secret),
        ("code", code),
    ];
    match sizes(&state, &i).await {
        Ok(s) => params.extend(s),
        Err(r) => return r,
    }
    params.push(("cozy_url", format!("{}/", base_url(&i, &headers))));
    let query = serde_urlencoded::to_string(&params).unwrap_or_default();
    tracing::info!(domain = %i.domain, "move initialized, sending the person to the wizard");
    location(
        StatusCode::TEMPORARY_REDIRECT,
        &format!("{}/initialize?{query}", wizard.trim_end_matches('/')),
    )
}

/// Whether `uri` is an absolute http(s) URL with a host.
fn http_url(uri: &str) -> bool {
    let Some(rest) = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    !host.is_empty()
        && !host.contains(['@', '\\'])
        && !uri.contains(|c: char| c.is_whitespace() || c.is_control())
}

/// `GET /move/authorize?state&redirect_uri` (session) → 303 to
/// `redirect_uri?state&code&vault&used[&quota]#` (spec move 3.3).
async fn authorize(
    State(state): State<AppState>,
    Inst(i): Inst,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let locale = i.page_locale();
    match logged_in(&state, &i, &headers).await {
        Ok(true) => {}
        Ok(false) => {
            let back = match raw.as_deref().filter(|r| !r.is_empty()) {
                Some(r) => format!("/move/authorize?{r}"),
                None => "/move/authorize".to_owned(),
            };
            return to_login(&i, &headers, &back);
        }
        Err(r) => return r,
    }
    let redirect = q.get("redirect_uri").map(|r| r.trim()).unwrap_or_default();
    if !http_url(redirect) {
        return bad_request(locale, "bad_redirect_uri");
    }
    if let Err(r) = within_limit(&state, &i).await {
        return r;
    }
    let code = match moving::create_move_code(&state.instances, &i).await {
        Ok(c) => c,
        Err(e) => return internal_page(locale, &e),
    };
    let mut params = vec![
        ("state", q.get("state").cloned().unwrap_or_default()),
        ("code", code),
    ];
    match sizes(&state, &i).await {
        Ok(s) => params.extend(s),
        Err(r) => return r,
    }
    let query = serde_urlencoded::to_string(&params).unwrap_or_default();
    let base = redirect.split('#').next().unwrap_or_default();
    let sep = if base.contains('?') { '&' } else { '?' };
    location(StatusCode::SEE_OTHER, &format!("{base}{sep}{query}#"))
}

// ---------------------------------------------------------------------------------------
// Request and confirmation
// ---------------------------------------------------------------------------------------

/// `scheme://host[:port]` of a target URL, and its host (lowercase).
pub(crate) fn target_base(raw: &str) -> Option<(String, String)> {
    let raw = raw.trim();
    let (scheme, rest) = raw.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if authority.is_empty()
        || authority.contains(['@', '\\'])
        || authority.contains(|c: char| c.is_whitespace() || c.is_control())
    {
        return None;
    }
    Some((format!("{scheme}://{authority}"), authority))
}

/// Whether `authority` (`host[:port]`) names this instance.
pub(crate) fn is_own(i: &Instance, authority: &str) -> bool {
    let bare = |h: &str| {
        h.rsplit_once(':')
            .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            .map_or(h, |(h, _)| h)
            .to_owned()
    };
    let host = bare(authority);
    i.all_domains()
        .any(|d| d.eq_ignore_ascii_case(authority) || bare(&d.to_ascii_lowercase()) == host)
}

/// `POST /move/request` (form; no session): checks both sides' credentials, stores
/// the request 5 minutes, mails the confirmation link, and says so (spec move 3.5).
/// Nothing is stored or changed when anything is wrong (400 page).
async fn request(
    State(state): State<AppState>,
    Inst(i): Inst,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let locale = i.page_locale();
    let Ok(form) = serde_urlencoded::from_bytes::<HashMap<String, String>>(&raw) else {
        return bad_request(locale, "bad_form");
    };
    let field = |k: &str| form.get(k).map(|v| v.trim()).unwrap_or_default().to_owned();
    let target_url = field("target_url");
    if target_url.is_empty() {
        return bad_request(locale, "missing_target_url");
    }
    let Some((target_base, target_host)) = target_base(&target_url) else {
        return bad_request(locale, "bad_target_url");
    };
    if is_own(&i, &target_host) {
        return bad_request(locale, "same_target");
    }
    let target = MoveTo {
        url: target_base,
        token: field("target_token"),
        client_id: field("target_client_id"),
        client_secret: field("target_client_secret"),
    };
    if target.token.is_empty() || target.client_id.is_empty() || target.client_secret.is_empty() {
        return bad_request(locale, "missing_target_creds");
    }
    let ignore_vault = !matches!(field("ignore_vault").as_str(), "" | "false" | "0");
    let code = field("code");
    let creds = if !code.is_empty() {
        match moving::take_move_code(state.store.as_ref(), &i, &code).await {
            Ok(true) => {}
            Ok(false) => return bad_request(locale, "invalid_code"),
            Err(e) => return internal_page(locale, &e),
        }
        let wizard = wizard_url(&state).unwrap_or_else(|| moving::DEFAULT_WIZARD_URL.to_owned());
        match moving::mint_source_credentials(&state.instances, &i, &wizard).await {
            Ok(c) => c,
            Err(e) => return internal_page(locale, &e),
        }
    } else {
        let given = SourceCredentials {
            token: field("token"),
            client_id: field("client_id"),
            client_secret: field("client_secret"),
        };
        if given.token.is_empty() || given.client_id.is_empty() || given.client_secret.is_empty() {
            return bad_request(locale, "missing_creds");
        }
        match moving::check_source_credentials(&state.instances, &i, given).await {
            Ok(Ok(c)) => c,
            Ok(Err(why)) => {
                let msg = format!("{}: {why}", t(locale, "invalid_creds"));
                return error_page(StatusCode::BAD_REQUEST, locale, "error_title", &msg);
            }
            Err(e) => return internal_page(locale, &e),
        }
    };
    let secret =
        match moving::store_request(state.store.as_ref(), &i, creds, target, ignore_vault).await {
            Ok(s) => s,
            Err(e) => return internal_page(locale, &e),
        };
    let source = request_domain(&i, &headers);
    let link = format!("{}/move/go?secret={secret}", base_url(&i, &headers));
    let email = match moving::send_confirm_mail(
        &state.instances,
        &state.mailer,
        &i,
        &link,
        &source,
        &target_host,
    )
    .await
    {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(domain = %i.domain, error = %e, "cannot send the move confirmation");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                locale,
                "error_title",
                t(locale, "mail_failed"),
            );
        }
    };
    tracing::info!(domain = %i.domain, target = %target_host, "move requested, confirmation mailed");
    let body = format!(
        "<p>{} <strong>{}</strong>.</p>\n<p>{}</p>\n",
        html_escape(t(locale, "mail_sent")),
        html_escape(&email),
        html_escape(t(locale, "mail_sent_next")),
    );
    pages::layout(locale, t(locale, "mail_sent_title"), &body, false).into_response()
}

/// `GET /move/go?secret=` (session, else login and back): consumes the request,
/// starts the move (the target must accept it), 303 to the target's waiting page
/// (spec move 3.6).
async fn go(
    State(state): State<AppState>,
    Inst(i): Inst,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let locale = i.page_locale();
    let secret = q.get("secret").map(|s| s.trim()).unwrap_or_default();
    match logged_in(&state, &i, &headers).await {
        Ok(true) => {}
        Ok(false) => {
            let back = format!(
                "/move/go?{}",
                serde_urlencoded::to_string([("secret", secret)]).unwrap_or_default()
            );
            return to_login(&i, &headers, &back);
        }
        Err(r) => return r,
    }
    let req = match moving::take_request(state.store.as_ref(), &i, secret).await {
        Ok(Some(r)) => r,
        Ok(None) => return bad_request(locale, "invalid_secret"),
        Err(e) => return internal_page(locale, &e),
    };
    let contextual = request_domain(&i, &headers);
    let start = MoveStart {
        target: &req.target,
        source_token: &req.source_credentials.token,
        ignore_vault: req.ignore_vault,
        contextual_domain: &contextual,
        reach: Reach::Public,
    };
    let result = moving::start_move(&state.jobs, &state.instances, &i, start).await;
    if let Err(MoveFlowError::Unreachable | MoveFlowError::Refused(_)) = &result {
        // Nothing changed on either side: the link may be opened again while it lasts.
        if let Err(e) = moving::give_back(state.store.as_ref(), secret, &req).await {
            tracing::warn!(error = %e, "cannot keep a move request for another try");
        }
    }
    let retry = t(locale, "retry");
    match result {
        Ok(_) => location(
            StatusCode::SEE_OTHER,
            &format!("{}/move/importing", req.target.url.trim_end_matches('/')),
        ),
        Err(MoveFlowError::Unreachable) => {
            let msg = format!("{} {retry}", t(locale, "unreachable"));
            error_page(StatusCode::BAD_REQUEST, locale, "error_title", &msg)
        }
        Err(MoveFlowError::Refused(why)) => {
            let msg = format!("{} ({why}) {retry}", t(locale, "refused"));
            error_page(StatusCode::BAD_REQUEST, locale, "error_title", &msg)
        }
        Err(e) => internal_page(locale, &e),
    }
}

// ---------------------------------------------------------------------------------------
// The target's calls
// ---------------------------------------------------------------------------------------

impl From<MoveFlowError> for ApiError {
    fn from(e: MoveFlowError) -> Self {
        match e {
            MoveFlowError::Invalid(m) => ApiError::bad_request(m),
            MoveFlowError::Unreachable | MoveFlowError::Refused(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, e.to_string())
            }
            MoveFlowError::Store(s) => s.into(),
            MoveFlowError::Instance(i) => i.into(),
            MoveFlowError::Jobs(j) => j.into(),
            MoveFlowError::Mail(_) => ApiError::internal(&e),
        }
    }
}

/// `POST /move/finalize?subdomain=flat|nested` (token with POST on
/// `io.cozy.imports`) → 204: this source has moved (spec move 3.7).
async fn finalize(
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    crate::imports::check_perm(&perm)?;
    moving::finalize(
        &state.jobs,
        &state.instances,
        &i,
        q.get("subdomain").map(String::as_str),
        state.move_settings.delete_after,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /move/abort` (token with POST on `io.cozy.imports`) → 204: what the move
/// set on this instance is cleared, a target waiting for it unblocked.
async fn abort(
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
) -> Result<Response, ApiError> {
    crate::imports::check_perm(&perm)?;
    moving::abort(&state.instances, &i).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------
// A moved source (spec move 3.8)
// ---------------------------------------------------------------------------------------

/// The settings of a moved instance. `None` when the instance has not moved.
async fn moved_settings(state: &AppState, i: &Instance) -> Option<hearth_core::JsonMap> {
    if !i.moved {
        return None;
    }
    match moving::instance_settings(state.store.as_ref(), i).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(domain = %i.domain, error = %e, "cannot read the settings of a moved instance");
            None
        }
    }
}

/// The target of a moved instance, from its settings: its URL (`scheme://host[:port]`)
/// and whether its apps are on flat subdomains.
fn moved_to(settings: &hearth_core::JsonMap) -> Option<(String, String, bool)> {
    let to = moving::setting_text(settings, "moved_to")?;
    let (base, host) = target_base(&to)?;
    let flat =
        moving::setting_text(settings, "moved_to_subdomain_type").as_deref() != Some("nested");
    Some((base, host, flat))
}

/// The URL of a moved instance's target (`links.related` of the 410), or `""`.
pub(crate) async fn moved_to_url(state: &AppState, i: &Instance) -> String {
    moved_settings(state, i)
        .await
        .and_then(|s| moved_to(&s))
        .map(|(base, _, _)| base)
        .unwrap_or_default()
}

/// The 410 JSON:API answer to an OAuth token of a moved instance.
pub(crate) fn moved_error(i: &Instance, to: &str) -> Response {
    let body = serde_json::json!({"errors": [{
        "status": "410",
        "title": "Cozy has been moved",
        "code": "moved",
        "detail": t(i.page_locale(), "moved_detail"),
        "source": {},
        "links": {"related": to},
    }]});
    (
        StatusCode::GONE,
        [(header::CONTENT_TYPE, crate::error::JSON_API)],
        body.to_string(),
    )
        .into_response()
}

/// The 410 "moved" page for a request without a session to a moved instance (`slug`
/// `None`) or one of its apps: the same path and query on the target (an app's host
/// rebuilt from its slug and the target's subdomain style). `None` when the instance
/// has not moved or the request has a session.
pub(crate) async fn moved_link(
    state: &AppState,
    i: &Instance,
    headers: &HeaderMap,
    slug: Option<&str>,
    path_and_query: &str,
) -> Option<Response> {
    let settings = moved_settings(state, i).await?;
    let (base, host, flat) = moved_to(&settings)?;
    match serve_app::session_of(state, i, headers).await {
        Ok(None) => {}
        Ok(Some(_)) => return None,
        Err(e) => {
            tracing::warn!(domain = %i.domain, error = %e, "cannot read a session");
            return None;
        }
    }
    let link = match slug {
        Some(slug) => {
            let scheme = base.split("://").next().unwrap_or("https");
            format!(
                "{scheme}://{}{path_and_query}",
                serve_app::app_host(&host, slug, flat)
            )
        }
        None => format!("{base}{path_and_query}"),
    };
    let locale = i.page_locale();
    let name = moving::setting_text(&settings, "public_name")
        .unwrap_or_else(|| t(locale, "moved_someone").to_owned());
    let title = format!("{name} {}…", t(locale, "moved_title"));
    let href = html_escape(&link);
    let body = format!(
        "<p>{}</p>\n<p><a href=\"{href}\">{href}</a></p>\n<p class=\"info\">{}</p>\n",
        html_escape(t(locale, "moved_body")),
        html_escape(t(locale, "moved_update")),
    );
    Some(
        (
            StatusCode::GONE,
            pages::layout(locale, &title, &body, false),
        )
            .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_urls() {
        assert_eq!(
            target_base("HTTP://Bob.localhost:8081/some/path?x#y"),
            Some((
                "http://bob.localhost:8081".into(),
                "bob.localhost:8081".into()
            ))
        );
        assert_eq!(target_base("ftp://bob.example"), None);
        assert_eq!(target_base("bob.example"), None);
        assert_eq!(target_base("https://u@evil.example"), None);
        let i = Instance {
            domain: "alice.localhost:8080".into(),
            domain_aliases: vec!["alias.example".into()],
            ..Default::default()
        };
        assert!(is_own(&i, "alice.localhost:8080"));
        assert!(is_own(&i, "alice.localhost"));
        assert!(is_own(&i, "alias.example:443"));
        assert!(!is_own(&i, "bob.localhost:8080"));
        assert!(http_url("https://move.example/callback?x=1"));
        assert!(!http_url("javascript:alert(1)"));
        assert!(!http_url("https:///nohost"));
    }
}
