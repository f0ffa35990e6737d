//! The OAuth consent (spec core-api B.5): `GET /auth/authorize` shows the person what a
//! client asks for, `POST /auth/authorize` gives the client an access code.

use axum::{
    Json,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use hearth_instances::{Instance, oauth::client_json, permission::PermissionSet};
use serde::Deserialize;
use serde_json::json;

use super::{Fields, RequestInfo, cookies, csrf_guard, current_session, see_other, urlencode};
use crate::{AppState, Inst, error::html_escape};

/// The parameters of both requests (query for GET, form for POST).
#[derive(Debug, Default, Deserialize)]
pub(super) struct AuthorizeParams {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    response_type: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    code_challenge: String,
    #[serde(default)]
    code_challenge_method: String,
    #[serde(default)]
    csrf_token: Option<String>,
}

fn text(locale: &str, key: &str) -> &'static str {
    let fr = locale == "fr";
    match key {
        "title" if fr => "Autoriser l'accès",
        "title" => "Allow access",
        "asks" if fr => "L'application suivante demande l'accès à votre Hearth :",
        "asks" => "This application asks for access to your Hearth:",
        "accept" if fr => "Autoriser",
        "accept" => "Allow",
        "read" if fr => "lire",
        "read" => "read",
        "write" if fr => "lire et modifier",
        "write" => "read and change",
        "only" if fr => "(certains documents seulement)",
        "only" => "(some documents only)",
        "error" if fr => "Demande d'autorisation invalide",
        "error" => "Invalid authorization request",
        _ => "",
    }
}

/// A 400 page naming what is wrong with the request.
fn refuse(locale: &str, why: &str) -> Response {
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"{locale}\"><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><main><h1>{t}</h1><p>{why}</p></main></body></html>\n",
        t = html_escape(text(locale, "error")),
        why = html_escape(why),
    );
    (StatusCode::BAD_REQUEST, Html(body)).into_response()
}

/// Checks the request against the registered client; the client's JSON on success.
async fn check(
    state: &AppState,
    i: &Instance,
    p: &AuthorizeParams,
) -> Result<serde_json::Value, String> {
    for (value, name) in [
        (&p.state, "state"),
        (&p.client_id, "client_id"),
        (&p.redirect_uri, "redirect_uri"),
    ] {
        if value.is_empty() {
            return Err(format!("The {name} parameter is missing"));
        }
    }
    if p.response_type != "code" {
        return Err("Invalid response type: only code is supported".into());
    }
    let client = match state.instances.get_client(&i.domain, &p.client_id).await {
        Ok(Some(c)) => client_json(&c),
        Ok(None) => return Err("Unknown client".into()),
        Err(e) => return Err(e.to_string()),
    };
    let registered = client["redirect_uris"].as_array().is_some_and(|uris| {
        uris.iter()
            .any(|u| u.as_str() == Some(p.redirect_uri.as_str()))
    });
    if !registered {
        return Err("The redirect_uri does not match the client's".into());
    }
    if p.scope.trim().is_empty() || p.scope.trim() == "*" {
        return Err("The scope is missing or not allowed".into());
    }
    PermissionSet::from_scope(&p.scope).map_err(|e| e.to_string())?;
    if !p.code_challenge.is_empty() && p.code_challenge_method != "S256" {
        return Err("Only the S256 code challenge method is supported".into());
    }
    Ok(client)
}

/// The scope in words, one line a rule.
fn scope_lines(locale: &str, scope: &str) -> String {
    let set = PermissionSet::from_scope(scope).unwrap_or_default();
    set.rules
        .iter()
        .map(|r| {
            let read_only = !r.verbs.is_empty() && r.verbs.iter().all(|v| v == "GET");
            let what = if read_only {
                text(locale, "read")
            } else {
                text(locale, "write")
            };
            let only = if r.values.is_empty() {
                ""
            } else {
                text(locale, "only")
            };
            format!(
                "<li>{}: <code>{}</code> {}</li>",
                html_escape(what),
                html_escape(&r.doctype),
                html_escape(only)
            )
        })
        .collect()
}

/// `GET /auth/authorize` — spec core-api B.5: the consent page, or the login page first.
pub(super) async fn authorize_page(
    State(state): State<AppState>,
    Inst(i): Inst,
    req: RequestInfo,
    Query(p): Query<AuthorizeParams>,
) -> Response {
    let locale = i.page_locale();
    let client = match check(&state, &i, &p).await {
        Ok(c) => c,
        Err(why) => return refuse(locale, &why),
    };
    match current_session(&state, &i, &req.headers).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            let login = super::login_then(
                &i,
                &req.headers,
                &format!(
                    "/auth/authorize?{}",
                    req.query.as_deref().unwrap_or_default()
                ),
            );
            return see_other(&login);
        }
        Err(e) => return crate::error::ApiError::from(e).into_response(),
    }
    let (csrf, cookie) = cookies::csrf(&i, &req.headers);
    let hidden = |name: &str, value: &str| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            html_escape(value)
        )
    };
    let name = client["client_name"].as_str().unwrap_or("");
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"{locale}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title}</title></head><body><main><h1>{title}</h1><p>{asks}</p><p><strong id=\"client-name\">{name}</strong></p>\
         <ul id=\"scopes\">{scopes}</ul><form method=\"POST\" action=\"/auth/authorize\">{fields}\
         <button type=\"submit\" id=\"allow\">{accept}</button></form></main></body></html>\n",
        title = html_escape(text(locale, "title")),
        asks = html_escape(text(locale, "asks")),
        name = html_escape(name),
        scopes = scope_lines(locale, &p.scope),
        accept = html_escape(text(locale, "accept")),
        fields = [
            hidden("csrf_token", &csrf),
            hidden("client_id", &p.client_id),
            hidden("redirect_uri", &p.redirect_uri),
            hidden("state", &p.state),
            hidden("response_type", &p.response_type),
            hidden("scope", &p.scope),
            hidden("code_challenge", &p.code_challenge),
            hidden("code_challenge_method", &p.code_challenge_method),
        ]
        .concat(),
    );
    let mut res = Html(body).into_response();
    res.headers_mut().append(header::SET_COOKIE, cookie);
    res
}

/// `redirect_uri` with `access_code`, `code` and `state` added (its own query kept) and
/// an empty fragment, as the clients expect.
fn redirect_with_code(uri: &str, code: &str, state: &str) -> String {
    let base = uri.split('#').next().unwrap_or(uri);
    let sep = if base.contains('?') { '&' } else { '?' };
    format!(
        "{base}{sep}access_code={code}&code={code}&state={}#",
        urlencode(state)
    )
}

/// `POST /auth/authorize` — the person accepted: 302 to the client with an access code
/// (`{"deeplink": …}` for `Accept: application/json`).
pub(super) async fn authorize(
    State(state): State<AppState>,
    Inst(i): Inst,
    req: RequestInfo,
    Fields(p): Fields<AuthorizeParams>,
) -> Response {
    let locale = i.page_locale();
    match current_session(&state, &i, &req.headers).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "You must be logged in"})),
            )
                .into_response();
        }
        Err(e) => return crate::error::ApiError::from(e).into_response(),
    }
    if let Err(refused) = csrf_guard(&state, &i, &req, p.csrf_token.as_deref()).await {
        return *refused;
    }
    if let Err(why) = check(&state, &i, &p).await {
        return refuse(locale, &why);
    }
    let challenge = (!p.code_challenge.is_empty()).then_some(p.code_challenge.as_str());
    let code = match state
        .instances
        .create_access_code(&i.domain, &p.client_id, p.scope.trim(), challenge)
        .await
    {
        Ok(c) => c,
        Err(e) => return crate::error::ApiError::from(e).into_response(),
    };
    let location = redirect_with_code(&p.redirect_uri, &code, &p.state);
    if req
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        == Some("application/json")
    {
        return Json(json!({"deeplink": location})).into_response();
    }
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_carry_the_code() {
        assert_eq!(
            redirect_with_code("http://app/cb", "C", "S t"),
            "http://app/cb?access_code=C&code=C&state=S%20t#"
        );
        assert_eq!(
            redirect_with_code("cozy://cb?x=1#frag", "C", "s"),
            "cozy://cb?x=1&access_code=C&code=C&state=s#"
        );
    }
}
