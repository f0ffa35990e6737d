//! Instance settings for clients (spec core-api B.10): capabilities, the instance's
//! settings document with the instance's own fields, the passphrase parameters,
//! context and flags. Served even when the instance is blocked.

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use hearth_core::{Doctype, JsonMap};
use hearth_store::{GetOptions, StoreError};
use serde_json::{Value, json};

use crate::{AppState, Inst, Perm, error::ApiError};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/settings/capabilities", get(capabilities))
        .route("/settings/instance", get(get_instance).put(put_instance))
        .route("/settings/context", get(context))
        .route("/settings/flags", get(flags))
}

const SETTINGS_ID: &str = "io.cozy.settings.instance";
/// Keys only the operator (a CLI token) may change through `PUT /settings/instance`.
const PROTECTED: [&str; 7] = [
    "auth_mode",
    "tos",
    "tos_latest",
    "uuid",
    "context",
    "sponsorships",
    "oidc_id",
];

fn resource(doctype: &str, id: &str, rev: Option<&str>, attributes: Value) -> Response {
    let body = json!({
        "data": {
            "type": doctype,
            "id": id,
            "attributes": attributes,
            "meta": rev.map_or_else(|| json!({}), |r| json!({"rev": r})),
            "links": {"self": format!("/settings/{}", id.trim_start_matches("io.cozy.settings."))},
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, crate::error::JSON_API)],
        body.to_string(),
    )
        .into_response()
}

fn settings_dt() -> Result<Doctype, ApiError> {
    Doctype::new("io.cozy.settings").map_err(|e| ApiError::internal(&e))
}

/// `GET /settings/capabilities` — spec core-api B.10 (any valid token).
async fn capabilities(Inst(i): Inst, _perm: Perm) -> Response {
    let attrs = json!({
        "file_versioning": true,
        "flat_subdomains": false,
        "can_auth_with_password": true,
        "can_auth_with_magic_links": i.magic_link,
        "can_auth_with_oidc": false,
    });
    resource(
        "io.cozy.settings",
        "io.cozy.settings.capabilities",
        None,
        attrs,
    )
}

/// `GET /settings/instance` — the settings document overlaid with the instance's fields.
async fn get_instance(
    State(state): State<AppState>,
    Inst(i): Inst,
    _perm: Perm,
) -> Result<Response, ApiError> {
    let doc = match state
        .store
        .get(
            &i.instance_id(),
            &settings_dt()?,
            SETTINGS_ID,
            GetOptions::default(),
        )
        .await
    {
        Ok(d) => d,
        Err(StoreError::NotFound(_)) => JsonMap::new(),
        Err(e) => return Err(e.into()),
    };
    let rev = doc.get("_rev").and_then(Value::as_str).map(str::to_owned);
    let mut attrs = doc;
    attrs.shift_remove("_id");
    attrs.shift_remove("_rev");
    attrs.insert("locale".into(), json!(i.locale));
    attrs.insert("onboarding_finished".into(), json!(i.onboarding_finished));
    if let Some(p) = i.password_defined {
        attrs.insert("password_defined".into(), json!(p));
    }
    attrs.insert("auto_update".into(), json!(!i.no_auto_update));
    let mode = match i.auth_mode {
        1 => "two_factor_mail",
        2 => "two_factor_oidc",
        _ => "basic",
    };
    attrs.insert("auth_mode".into(), json!(mode));
    for (k, v) in [
        ("tos", &i.tos),
        ("tos_latest", &i.tos_latest),
        ("uuid", &i.uuid),
        ("oidc_id", &i.oidc_id),
        ("context", &i.context),
    ] {
        if let Some(v) = v {
            attrs.insert(k.into(), json!(v));
        }
    }
    if !i.sponsorships.is_empty() {
        attrs.insert("sponsorships".into(), json!(i.sponsorships));
    }
    Ok(resource(
        "io.cozy.settings",
        SETTINGS_ID,
        rev.as_deref(),
        Value::Object(attrs),
    ))
}

/// `PUT /settings/instance` — updates the settings document (`meta.rev` must be
/// current: 409 otherwise). Keys that belong to the instance are read-only here, and
/// the operator's keys can only be changed with a CLI token.
async fn put_instance(
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
    raw: Bytes,
) -> Result<Response, ApiError> {
    if !perm
        .set
        .allows_doc("PUT", "io.cozy.settings", SETTINGS_ID, None)
    {
        return Err(ApiError::forbidden("Forbidden"));
    }
    let body: Value = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    let Some(attrs) = body["data"]["attributes"].as_object() else {
        return Err(ApiError::bad_request("data.attributes is required"));
    };
    let mut doc = attrs.clone();
    for k in [
        "locale",
        "onboarding_finished",
        "password_defined",
        "auto_update",
    ] {
        doc.shift_remove(k);
    }
    if perm.kind != "cli" {
        for k in PROTECTED {
            doc.shift_remove(k);
        }
    }
    doc.insert("_id".into(), json!(SETTINGS_ID));
    if let Some(rev) = body["data"]["meta"]["rev"].as_str() {
        doc.insert("_rev".into(), json!(rev));
    }
    let written = state
        .store
        .put(&i.instance_id(), &settings_dt()?, doc.clone())
        .await
        .map_err(|e| match e {
            StoreError::Conflict => {
                ApiError::conflict("The settings were changed meanwhile: reload them and try again")
            }
            e => ApiError::from(e),
        })?;
    doc.shift_remove("_id");
    doc.shift_remove("_rev");
    Ok(resource(
        "io.cozy.settings",
        SETTINGS_ID,
        Some(&written.rev.to_string()),
        Value::Object(doc),
    ))
}

/// `GET /settings/passphrase` — spec core-api B.10: what a client needs to hash the
/// password, `{salt, kdf: 0, iterations}` (routed with the other methods of the path
/// in `auth.rs`).
pub(crate) async fn passphrase_params(
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
) -> Result<Response, ApiError> {
    if !perm.set.allows_whole_type("GET", "io.cozy.settings") {
        return Err(ApiError::forbidden("Forbidden"));
    }
    let iterations = state.instances.kdf_iterations(&i).await?;
    let attrs = json!({"salt": i.passphrase_salt(), "kdf": 0, "iterations": iterations});
    Ok(resource(
        "io.cozy.settings",
        "io.cozy.settings.passphrase",
        None,
        attrs,
    ))
}

/// `GET /settings/context` — the instance's context (contexts are configured per
/// server; Hearth serves the name until contexts carry settings).
async fn context(Inst(i): Inst, _perm: Perm) -> Response {
    let name = i.context.clone().unwrap_or_else(|| "default".into());
    resource(
        "io.cozy.settings",
        "io.cozy.settings.context",
        None,
        json!({"name": name}),
    )
}

/// `GET /settings/flags` — feature flags (none yet).
async fn flags(_inst: Inst, _perm: Perm) -> Response {
    resource(
        "io.cozy.settings",
        "io.cozy.settings.flags",
        None,
        json!({}),
    )
}
