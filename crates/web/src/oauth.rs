//! OAuth 2 dynamic client registration (spec core-api B.5): `POST /auth/register` and
//! `GET|PUT|DELETE /auth/register/:id` with the registration access token.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use hearth_instances::oauth::{ClientMetadata, RegistrationError, client_json};
use serde_json::{Value, json};

use crate::{AppState, Inst, error::ApiError};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/register/{id}", get(read).put(update).delete(remove))
        .route("/auth/access_token", post(access_token))
}

fn oauth_error(status: StatusCode, error: &str, description: Option<&str>) -> Response {
    let mut body = json!({"error": error});
    if let Some(d) = description {
        body["error_description"] = Value::String(d.to_owned());
    }
    (status, Json(body)).into_response()
}

fn registration_error(e: RegistrationError) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, e.error, Some(&e.description))
}

const PLATFORMS: [&str; 6] = ["", "android", "ios", "firebase", "apns", "huawei"];

/// Reads client metadata from a registration body.
fn metadata(body: &Value) -> Result<ClientMetadata, Box<Response>> {
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let redirect_uris = match body.get("redirect_uris") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    if let Some(p) = text("notification_platform")
        && !PLATFORMS.contains(&p.as_str())
    {
        return Err(Box::new(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            Some(&format!("Unknown notification platform {p}")),
        )));
    }
    Ok(ClientMetadata {
        redirect_uris,
        client_name: text("client_name").unwrap_or_default(),
        software_id: text("software_id").unwrap_or_default(),
        client_kind: text("client_kind"),
        client_uri: text("client_uri"),
        software_version: text("software_version"),
        allow_login_scope: false,
    })
}

/// The JSON body of a registration request, after the header checks the clients rely on.
fn json_body(headers: &HeaderMap, raw: &[u8]) -> Result<Value, Box<Response>> {
    let get = |h| {
        headers
            .get(h)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
            .unwrap_or("")
    };
    let accept = get(header::ACCEPT);
    if !(accept.is_empty() || accept.contains("*/*") || accept.contains("application/json")) {
        return Err(Box::new(oauth_error(
            StatusCode::BAD_REQUEST,
            "bad_accept_header",
            None,
        )));
    }
    if !get(header::CONTENT_TYPE).starts_with("application/json") {
        return Err(Box::new(oauth_error(
            StatusCode::BAD_REQUEST,
            "bad_content_type",
            None,
        )));
    }
    serde_json::from_slice(raw).map_err(|e| {
        Box::new(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            Some(&format!("the body is not valid JSON: {e}")),
        ))
    })
}

/// `POST /auth/register` — spec core-api B.5: registers a client, 201 with it.
async fn register(
    State(state): State<AppState>,
    Inst(i): Inst,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body = match json_body(&headers, &raw) {
        Ok(b) => b,
        Err(r) => return Ok(*r),
    };
    let meta = match metadata(&body) {
        Ok(m) => m,
        Err(r) => return Ok(*r),
    };
    Ok(
        match state.instances.register_client(&i.domain, meta).await? {
            Ok(client) => (StatusCode::CREATED, Json(client)).into_response(),
            Err(e) => registration_error(e),
        },
    )
}

/// Checks `Authorization: Bearer <registration access token>` for `id`.
async fn authorized(
    state: &AppState,
    domain: &str,
    id: &str,
    headers: &HeaderMap,
) -> Result<Option<Response>, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if state.instances.get_client(domain, id).await?.is_none() {
        return Ok(Some(oauth_error(
            StatusCode::NOT_FOUND,
            "Client not found",
            None,
        )));
    }
    if !state
        .instances
        .check_registration_token(domain, id, token.trim())
        .await?
    {
        return Ok(Some(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            None,
        )));
    }
    Ok(None)
}

/// `GET /auth/register/:id` — the client, for its registration token holder.
async fn read(
    State(state): State<AppState>,
    Inst(i): Inst,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(refused) = authorized(&state, &i.domain, &id, &headers).await? {
        return Ok(refused);
    }
    Ok(match state.instances.get_client(&i.domain, &id).await? {
        Some(doc) => Json(client_json(&doc)).into_response(),
        None => oauth_error(StatusCode::NOT_FOUND, "Client not found", None),
    })
}

/// `PUT /auth/register/:id` — replaces the metadata; the current `client_secret` in
/// the body rotates the secret.
async fn update(
    State(state): State<AppState>,
    Inst(i): Inst,
    Path(id): Path<String>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if let Some(refused) = authorized(&state, &i.domain, &id, &headers).await? {
        return Ok(refused);
    }
    let body = match json_body(&headers, &raw) {
        Ok(b) => b,
        Err(r) => return Ok(*r),
    };
    let meta = match metadata(&body) {
        Ok(m) => m,
        Err(r) => return Ok(*r),
    };
    let secret = body.get("client_secret").and_then(Value::as_str);
    Ok(
        match state
            .instances
            .update_client(&i.domain, &id, meta, secret)
            .await?
        {
            Some(Ok(client)) => Json(client).into_response(),
            Some(Err(e)) => registration_error(e),
            None => oauth_error(StatusCode::NOT_FOUND, "Client not found", None),
        },
    )
}

/// `DELETE /auth/register/:id` — 204, also when the client is already gone.
async fn remove(
    State(state): State<AppState>,
    Inst(i): Inst,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if state.instances.get_client(&i.domain, &id).await?.is_none() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if let Some(refused) = authorized(&state, &i.domain, &id, &headers).await? {
        return Ok(refused);
    }
    state.instances.delete_client(&i.domain, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /auth/access_token` — spec core-api B.5: the `authorization_code` and
/// `refresh_token` grants, form-encoded; errors are 400 `{"error": "<text>"}`.
pub(crate) async fn access_token(
    State(state): State<AppState>,
    Inst(i): Inst,
    raw: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let form: std::collections::HashMap<String, String> = match serde_urlencoded::from_bytes(&raw) {
        Ok(f) => f,
        Err(_) => serde_json::from_slice(&raw).unwrap_or_default(),
    };
    let field = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let refuse = |m: &str| Ok(oauth_error(StatusCode::BAD_REQUEST, m, None));
    let Some(grant) = field("grant_type") else {
        return refuse("the grant_type parameter is mandatory");
    };
    let Some(client_id) = field("client_id") else {
        return refuse("the client_id parameter is mandatory");
    };
    let Some(secret) = field("client_secret") else {
        return refuse("the client_secret parameter is mandatory");
    };
    let outcome = match grant {
        "authorization_code" => {
            let Some(code) = field("code") else {
                return refuse("the code parameter is mandatory");
            };
            state
                .instances
                .exchange_code(&i.domain, client_id, secret, code, field("code_verifier"))
                .await?
        }
        "refresh_token" => {
            let Some(refresh) = field("refresh_token") else {
                return refuse("invalid refresh token");
            };
            state
                .instances
                .refresh_tokens(&i.domain, client_id, secret, refresh)
                .await?
        }
        _ => return refuse("invalid grant type"),
    };
    Ok(match outcome {
        Ok(t) => {
            let mut body =
                json!({"token_type": "bearer", "scope": t.scope, "access_token": t.access_token});
            if let Some(r) = t.refresh_token {
                body["refresh_token"] = Value::String(r);
            }
            Json(body).into_response()
        }
        Err(e) => oauth_error(StatusCode::BAD_REQUEST, e.0, None),
    })
}
