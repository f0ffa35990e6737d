//! The target side of a move (spec move 3.4, 3.9): the password check that gives the
//! move wizard an access code (`/auth/authorize/move`), the vault instructions after
//! a move (`GET /move/vault`) and the end of the one-time notice
//! (`DELETE /settings/instance/moved_from`). `POST /move/importing`, the waiting page
//! and the move watchdog are in `imports.rs`; the import's calls to the source in
//! `hearth_move`'s import worker.

use axum::{
    Json, Router,
    extract::{Form, Query, State, rejection::FormRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{delete, get},
};
use hearth_instances::{Instance, oauth::client_json};
use hearth_move::moving::{self, MOVE_SCOPE};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    AppState, Inst, Perm,
    auth::{cookies, urlencode},
    error::{ApiError, html_escape},
    instance::scheme_for,
    pages::{self, no_store},
};

/// Routes served even while the instance is blocked for the move.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/settings/instance/moved_from", delete(delete_moved_from))
}

/// Pages (`/auth/authorize/move`, `/move/vault`).
pub(crate) fn page_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/auth/authorize/move",
            get(authorize_page).post(authorize_move),
        )
        .route("/move/vault", get(vault_page))
}

fn t(locale: &str, key: &str) -> &'static str {
    let fr = locale == "fr";
    match key {
        "title" if fr => "Déménager vers ce Hearth",
        "title" => "Move to this Hearth",
        "intro" if fr => {
            "Pour y déménager vos données, saisissez le mot de passe de ce Hearth (le \
             Hearth d'arrivée) :"
        }
        "intro" => "To move your data here, type the password of this Hearth (the new one):",
        "warning" if fr => {
            "Toutes les données actuelles de ce Hearth seront remplacées par celles de \
             l'ancien."
        }
        "warning" => "Everything this Hearth holds now will be replaced by the data moved in.",
        "submit" if fr => "Autoriser le déménagement",
        "submit" => "Allow the move",
        "error_title" if fr => "Demande de déménagement invalide",
        "error_title" => "Invalid move request",
        "missing_state" if fr => "Le paramètre state est absent.",
        "missing_state" => "The state parameter is missing.",
        "missing_client_id" if fr => "Le paramètre client_id est absent.",
        "missing_client_id" => "The client_id parameter is missing.",
        "missing_redirect_uri" if fr => "Le paramètre redirect_uri est absent.",
        "missing_redirect_uri" => "The redirect_uri parameter is missing.",
        "unknown_client" if fr => "Cette application n'est pas enregistrée sur ce Hearth.",
        "unknown_client" => "This application is not registered on this Hearth.",
        "bad_redirect" if fr => "L'adresse de retour n'est pas celle de cette application.",
        "bad_redirect" => "The return address is not the one of this application.",
        "not_activated" if fr => "Ce Hearth n'a pas encore de mot de passe.",
        "not_activated" => "This Hearth has no password yet.",
        "csrf_missing" if fr => "Le jeton CSRF est absent du formulaire.",
        "csrf_missing" => "The form has no CSRF token.",
        "csrf_expired" if fr => "Cette page avait expiré. Rechargez-la et réessayez.",
        "csrf_expired" => "This page had expired. Reload it and try again.",
        "vault_title" if fr => "Importez votre coffre de mots de passe",
        "vault_title" => "Import your password vault",
        "vault_intro" if fr => {
            "Votre ancien Hearth avait un coffre de mots de passe. Il est chiffré de bout \
             en bout : il n'a pas pu être déménagé avec le reste. Pour le retrouver :"
        }
        "vault_intro" => {
            "Your former Hearth had a password vault. It is end-to-end encrypted, so it could \
             not be moved with the rest. To get it back:"
        }
        "vault_1" if fr => {
            "Dans l'extension de navigateur, connectée à l'ancienne adresse, exportez le \
             coffre au format JSON (Bitwarden)."
        }
        "vault_1" => {
            "In the browser extension, still logged in to the former address, export the vault \
             as a JSON file (Bitwarden format)."
        }
        "vault_2" if fr => "Déconnectez-vous de l'extension.",
        "vault_2" => "Log out of the extension.",
        "vault_3" if fr => {
            "Connectez l'extension à la nouvelle adresse, avec le mot de passe de ce Hearth :"
        }
        "vault_3" => "Log the extension in to the new address, with this Hearth's password:",
        "vault_4" if fr => "Dans l'extension, ouvrez Paramètres › Importer des éléments.",
        "vault_4" => "In the extension, open Settings › Import items.",
        "vault_5" if fr => {
            "Choisissez le format « Bitwarden (json) », le fichier exporté, puis importez. \
             Supprimez ensuite ce fichier : il n'est pas chiffré."
        }
        "vault_5" => {
            "Choose the \"Bitwarden (json)\" format and the exported file, then import. Delete \
             the file afterwards: it is not encrypted."
        }
        "vault_done" if fr => "C'est fait",
        "vault_done" => "Done",
        "vault_skip" if fr => "Plus tard",
        "vault_skip" => "Later",
        _ => "",
    }
}

/// The parameters of `GET /auth/authorize/move`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PageParams {
    state: String,
    client_id: String,
    redirect_uri: String,
}

/// The fields of `POST /auth/authorize/move` (a form, as the page's script posts it).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AuthorizeForm {
    passphrase: String,
    state: String,
    client_id: String,
    #[serde(alias = "redirect_uri")]
    redirect: String,
    csrf_token: Option<String>,
}

/// Checks the wizard's request: `state`, `client_id`, a registered client and one of
/// its redirect URIs. The message key of the refusal otherwise.
async fn check_request(
    state: &AppState,
    i: &Instance,
    move_state: &str,
    client_id: &str,
    redirect: &str,
) -> Result<(), Refusal> {
    for (value, key) in [
        (move_state, "missing_state"),
        (client_id, "missing_client_id"),
        (redirect, "missing_redirect_uri"),
    ] {
        if value.trim().is_empty() {
            return Err(Refusal::Bad(key));
        }
    }
    let client = match state.instances.get_client(&i.domain, client_id).await {
        Ok(Some(c)) => client_json(&c),
        Ok(None) => return Err(Refusal::Bad("unknown_client")),
        Err(e) => return Err(Refusal::Failed(e.into())),
    };
    let registered = client["redirect_uris"]
        .as_array()
        .is_some_and(|uris| uris.iter().any(|u| u.as_str() == Some(redirect)));
    if !registered {
        return Err(Refusal::Bad("bad_redirect"));
    }
    Ok(())
}

enum Refusal {
    /// A request that cannot be served (400), with its message key.
    Bad(&'static str),
    Failed(ApiError),
}

impl Refusal {
    /// As a page (the `GET`).
    fn page(self, locale: &str) -> Response {
        match self {
            Refusal::Bad(key) => {
                let body = format!("<p class=\"error\">{}</p>\n", html_escape(t(locale, key)));
                (
                    StatusCode::BAD_REQUEST,
                    pages::layout(locale, t(locale, "error_title"), &body, false),
                )
                    .into_response()
            }
            Refusal::Failed(e) => e.into_response(),
        }
    }

    /// As `{"error": …}` (the `POST` the page's script sends).
    fn json(self, locale: &str) -> Response {
        match self {
            Refusal::Bad(key) => json_error(StatusCode::BAD_REQUEST, t(locale, key)),
            Refusal::Failed(e) => e.into_response(),
        }
    }
}

fn json_error(status: StatusCode, message: &str) -> Response {
    no_store((status, Json(json!({ "error": message }))).into_response())
}

/// The page's script: hashes the password as the login page does
/// (`window.hearthPassphrase.onSubmit` from `assets/passphrase.js`, which the layout
/// puts after the body, hence the wait for the document), posts the form with
/// `fetch`, and follows `redirect`, or shows the error.
const AUTHORIZE_JS: &str = r##"document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  var form = document.getElementById("authorize-move");
  if (!form) return;
  window.hearthPassphrase.onSubmit(form, form.dataset.kdfSalt,
    parseInt(form.dataset.kdfIterations, 10), async function (fail) {
      var res = await fetch(form.action, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Accept": "application/json",
          "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams(new FormData(form)).toString()
      });
      var answer = {};
      try { answer = await res.json(); } catch (_) {}
      if (res.ok && answer.redirect) {
        window.location.href = answer.redirect;
        return;
      }
      fail(answer.error || form.dataset.msgFailed);
      form.querySelector("#password").select();
    });
});
"##;

/// `GET /auth/authorize/move?state&client_id&redirect_uri` (spec move 3.4 step 2):
/// 400 page when a parameter is missing, the client unknown or the redirect not
/// one of its own; otherwise the password form, asked even with a session (the
/// person proves they own this instance). Hearth has no two-factor authentication
/// yet, so there is no second step (the reference mails a code when it is on).
async fn authorize_page(
    State(state): State<AppState>,
    Inst(i): Inst,
    headers: HeaderMap,
    Query(p): Query<PageParams>,
) -> Response {
    let locale = i.page_locale();
    if let Err(r) = check_request(&state, &i, &p.state, &p.client_id, &p.redirect_uri).await {
        return r.page(locale);
    }
    if !i.onboarding_finished {
        return (StatusCode::BAD_REQUEST, pages::onboarding(locale)).into_response();
    }
    let iterations = match state.instances.kdf_iterations(&i).await {
        Ok(n) => n,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let settings = moving::instance_settings(state.store.as_ref(), &i)
        .await
        .unwrap_or_default();
    let domain = crate::auth::request_domain(&i, &headers);
    let public_name = settings
        .get("public_name")
        .and_then(Value::as_str)
        .filter(|n| !n.trim().is_empty())
        .unwrap_or(domain.as_str())
        .to_owned();
    let (csrf, cookie) = cookies::csrf(&i, &headers);
    let hidden = |name: &str, value: &str| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n",
            html_escape(value)
        )
    };
    let body = format!(
        "<p id=\"public-name\"><strong>{name}</strong></p>\n\
         <p id=\"domain\">{domain}</p>\n\
         <p>{intro}</p>\n<p class=\"info\">{warning}</p>\n\
         <noscript><p class=\"error\">{noscript}</p></noscript>\n\
         <form id=\"authorize-move\" method=\"POST\" action=\"/auth/authorize/move\" \
         data-kdf-salt=\"{salt}\" data-kdf-iterations=\"{iterations}\" \
         data-msg-working=\"{working}\" data-msg-failed=\"{failed}\">\n\
         {fields}<label for=\"password\">{password}</label>\n\
         <input type=\"password\" id=\"password\" autocomplete=\"current-password\" required autofocus>\n\
         {status}<button type=\"submit\">{submit}</button>\n</form>\n\
         <script>\n{AUTHORIZE_JS}</script>\n",
        name = html_escape(&public_name),
        domain = html_escape(&domain),
        intro = html_escape(t(locale, "intro")),
        warning = html_escape(t(locale, "warning")),
        noscript = html_escape(pages::text(locale, "noscript")),
        salt = html_escape(&i.passphrase_salt()),
        working = html_escape(pages::text(locale, "working")),
        failed = html_escape(pages::text(locale, "failed")),
        password = html_escape(pages::text(locale, "password")),
        status = pages::status_line(None),
        submit = html_escape(t(locale, "submit")),
        fields = [
            hidden("csrf_token", &csrf),
            hidden("state", &p.state),
            hidden("client_id", &p.client_id),
            hidden("redirect", &p.redirect_uri),
            hidden("passphrase", ""),
        ]
        .concat(),
    );
    let mut res = pages::layout(locale, t(locale, "title"), &body, true).into_response();
    res.headers_mut().append(header::SET_COOKIE, cookie);
    no_store(res)
}

/// `redirect` with these parameters added to its query (a fragment is dropped).
fn with_query(redirect: &str, params: &[(&str, String)]) -> String {
    let base = redirect.split('#').next().unwrap_or(redirect);
    let mut url = base.to_owned();
    let mut sep = if base.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        url.push(sep);
        url.push_str(k);
        url.push('=');
        url.push_str(&urlencode(v));
        sep = '&';
    }
    url
}

/// `POST /auth/authorize/move` (spec move 3.4 step 3): the CSRF token (400 missing,
/// 403 mismatch), the request (400), then the password: wrong → 401
/// `{"error": …}`, counted by the login throttle (at its limit the instance is
/// blocked `LOGIN_FAILED`, 503); right → 200 `{"redirect": "<redirect>?state&code&
/// vault&used[&quota]"}` with an access code of scope `MOVE_SCOPE` for the client.
async fn authorize_move(
    State(state): State<AppState>,
    Inst(i): Inst,
    headers: HeaderMap,
    form: Result<Form<AuthorizeForm>, FormRejection>,
) -> Response {
    let locale = i.page_locale();
    let Form(f) = match form {
        Ok(f) => f,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    match cookies::check_csrf(&headers, f.csrf_token.as_deref()) {
        Ok(()) => {}
        Err(cookies::CsrfFailure::MissingField) => {
            return json_error(StatusCode::BAD_REQUEST, t(locale, "csrf_missing"));
        }
        Err(cookies::CsrfFailure::Mismatch) => {
            return json_error(StatusCode::FORBIDDEN, t(locale, "csrf_expired"));
        }
    }
    if let Err(r) = check_request(&state, &i, &f.state, &f.client_id, &f.redirect).await {
        return r.json(locale);
    }
    if !i.onboarding_finished {
        return json_error(StatusCode::BAD_REQUEST, t(locale, "not_activated"));
    }
    // No two-factor authentication in Hearth yet: the password is the whole check
    // (the reference answers a `/auth/twofactor` redirect here when 2FA is on).
    match state.instances.check_passphrase(&i, &f.passphrase).await {
        Ok(true) => {}
        Ok(false) => {
            if state.login_throttle.failed(&i.domain).await {
                tracing::warn!(domain = %i.domain, "too many failed logins: instance blocked");
                if let Err(e) = state
                    .instances
                    .set_blocked(&i.domain, Some("LOGIN_FAILED"))
                    .await
                {
                    tracing::error!(error = %e, "cannot block the instance after failed logins");
                }
                return json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &pages::blocked_reason(locale, "LOGIN_FAILED"),
                );
            }
            return json_error(
                StatusCode::UNAUTHORIZED,
                pages::text(locale, "wrong_password"),
            );
        }
        Err(e) => return ApiError::from(e).into_response(),
    }
    let code = match state
        .instances
        .create_access_code(&i.domain, &f.client_id, MOVE_SCOPE, None)
        .await
    {
        Ok(c) => c,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let used = match state.vfs.usage(&i).await {
        Ok(u) => u.total(),
        Err(e) => return crate::files::vfs_error(e).into_response(),
    };
    let vault = moving::has_vault(state.store.as_ref(), &i).await;
    let mut params = vec![
        ("state", f.state.clone()),
        ("code", code),
        ("vault", vault.to_string()),
        ("used", used.to_string()),
    ];
    if let Some(q) = hearth_vfs::quota_of(&i) {
        params.push(("quota", q.to_string()));
    }
    tracing::info!(domain = %i.domain, client = %f.client_id, "move authorized by the owner");
    no_store(Json(json!({ "redirect": with_query(&f.redirect, &params) })).into_response())
}

/// Whether the request carries a live session of the instance.
async fn has_session(
    state: &AppState,
    i: &Instance,
    headers: &HeaderMap,
) -> Result<bool, ApiError> {
    Ok(crate::auth::current_session(state, i, headers)
        .await?
        .is_some())
}

/// `GET /move/vault` (spec move 3.9): with a session, clears `import_vault` and shows
/// how to bring the password vault over; without, 303 to the login page and back.
async fn vault_page(State(state): State<AppState>, Inst(i): Inst, headers: HeaderMap) -> Response {
    let locale = i.page_locale();
    match has_session(&state, &i, &headers).await {
        Ok(true) => {}
        Ok(false) => {
            let to = crate::auth::login_then(&i, &headers, "/move/vault");
            return no_store((StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response());
        }
        Err(e) => return e.into_response(),
    }
    if let Err(e) = hearth_move::set_settings_flag(&state.imports, &i, "import_vault", None).await {
        return ApiError::from(e).into_response();
    }
    let home = format!(
        "{}://{}/",
        scheme_for(&i.domain),
        crate::auth::request_domain(&i, &headers)
    );
    let steps: String = ["vault_1", "vault_2", "vault_3", "vault_4", "vault_5"]
        .iter()
        .map(|k| {
            if *k == "vault_3" {
                format!(
                    "<li>{} <strong>{}</strong></li>\n",
                    html_escape(t(locale, k)),
                    html_escape(&home)
                )
            } else {
                format!("<li>{}</li>\n", html_escape(t(locale, k)))
            }
        })
        .collect();
    let body = format!(
        "<p>{intro}</p>\n<ol id=\"vault-steps\">\n{steps}</ol>\n\
         <p><a href=\"{home}\" id=\"vault-done\">{done}</a> · \
         <a href=\"{home}\" id=\"vault-skip\">{skip}</a></p>\n",
        intro = html_escape(t(locale, "vault_intro")),
        home = html_escape(&home),
        done = html_escape(t(locale, "vault_done")),
        skip = html_escape(t(locale, "vault_skip")),
    );
    no_store(pages::layout(locale, t(locale, "vault_title"), &body, false).into_response())
}

/// `DELETE /settings/instance/moved_from` (spec move 3.9): the home's one-time
/// notice was seen → 204. A session, or a token allowed to change the whole
/// settings doctype; 401 without either, 403 with a smaller token.
async fn delete_moved_from(
    State(state): State<AppState>,
    Inst(i): Inst,
    headers: HeaderMap,
    perm: Result<Perm, Response>,
) -> Response {
    match has_session(&state, &i, &headers).await {
        Ok(true) => {}
        Ok(false) => match perm {
            Ok(p)
                if ["GET", "PUT", "DELETE"]
                    .iter()
                    .all(|v| p.set.allows_whole_type(v, "io.cozy.settings")) => {}
            Ok(_) => {
                return ApiError::forbidden("the token cannot change the instance settings")
                    .into_response();
            }
            Err(r) if r.status() == StatusCode::UNAUTHORIZED => {
                return ApiError::unauthorized("a session or a token is needed").into_response();
            }
            Err(r) => return r,
        },
        Err(e) => return e.into_response(),
    }
    match hearth_move::set_settings_flag(&state.imports, &i, "moved_from", None).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_carry_the_parameters() {
        assert_eq!(
            with_query(
                "https://move.example/callback/target",
                &[("state", "a b".into()), ("code", "C".into())]
            ),
            "https://move.example/callback/target?state=a%20b&code=C"
        );
        assert_eq!(
            with_query("https://m/cb?x=1#f", &[("used", "0".into())]),
            "https://m/cb?x=1&used=0"
        );
    }

    #[test]
    fn both_languages() {
        for k in ["title", "vault_title", "unknown_client", "vault_5"] {
            assert!(!t("en", k).is_empty() && !t("fr", k).is_empty(), "{k}");
            assert_ne!(t("en", k), t("fr", k), "{k}");
        }
    }
}
