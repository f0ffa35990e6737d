//! Bearer tokens on API routes (spec core-api B.3): extraction, verification against
//! the request's instance, and the permission set they carry.

use axum::{
    extract::FromRequestParts,
    http::{HeaderValue, Method, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use base64::Engine;
use hearth_apps::AppKind;
use hearth_instances::{Audience, Claims, InstanceError, permission::PermissionSet, token};

use crate::{AppState, Inst, error::PlainError};

/// What a verified token allows, for the handler to check.
#[derive(Debug, Clone)]
pub struct Perm {
    pub claims: Claims,
    /// `cli`, `oauth`, `app`, `konnector` (the `type` of `/permissions/self`).
    pub kind: &'static str,
    pub source_id: String,
    pub set: PermissionSet,
}

/// The token of a request: `Authorization: Bearer`, the password of Basic auth, or the
/// `bearer_token` query parameter. Client noise (`Bearer null`, empty) is no token.
pub(crate) fn token_of(parts: &Parts) -> Option<String> {
    let auth = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let from_header = if let Some(t) = auth.strip_prefix("Bearer ") {
        Some(t.trim().to_owned())
    } else if let Some(b) = auth.strip_prefix("Basic ") {
        base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|up| up.split_once(':').map(|(_, p)| p.to_owned()))
    } else {
        None
    };
    let from_query = || {
        parts.uri.query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("bearer_token="))
                .map(str::to_owned)
        })
    };
    from_header
        .or_else(from_query)
        .filter(|t| !t.is_empty() && t != "null" && t != "undefined")
}

fn invalid(parts: &Parts, message: &str, description: Option<&str>) -> Response {
    let mut res =
        PlainError::new(StatusCode::BAD_REQUEST, message).render(&parts.method, &parts.headers);
    let value = match description {
        Some(d) => format!("Bearer error=\"invalid_token\" error_description=\"{d}\""),
        None => "Bearer error=\"invalid_token\"".to_owned(),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    res
}

/// Why a raw token gives no permission.
#[derive(Debug)]
pub(crate) enum TokenRejection {
    /// A bad token (`message`, and the `error_description` of `WWW-Authenticate`).
    Invalid(&'static str, Option<&'static str>),
    /// The lookup behind the token failed.
    Failed(crate::ApiError),
    /// An OAuth token of an instance that has moved (spec move 3.8): 410 with the
    /// new address (`links.related`), how clients and peers find it.
    Moved(String),
}

/// The permissions of `raw`, a token of `instance` of any audience.
pub(crate) async fn perm_of_token(
    state: &AppState,
    instance: &hearth_instances::Instance,
    raw: &str,
) -> Result<Perm, TokenRejection> {
    let verified = token::verify(instance, raw);
    if verified.is_err() {
        // A share link minted before a move (the source's signature): accepted only
        // if a permission document keeps this exact token in `moved_codes`.
        match state
            .instances
            .moved_share_permission(&instance.domain, raw)
            .await
        {
            Ok(Some((claims, set))) => {
                return Ok(Perm {
                    set,
                    kind: "share",
                    source_id: String::new(),
                    claims,
                });
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot look a moved share link up"),
        }
    }
    let claims = match verified {
        Ok(c) => c,
        Err(InstanceError::InvalidToken("Expired token")) => {
            return Err(TokenRejection::Invalid(
                "Expired token",
                Some("The access token expired"),
            ));
        }
        Err(InstanceError::InvalidToken(m)) => return Err(TokenRejection::Invalid(m, None)),
        Err(_) => return Err(TokenRejection::Invalid("Invalid JWT token", None)),
    };
    let scope = |claims: &Claims| PermissionSet::from_scope(&claims.scope).unwrap_or_default();
    match claims.audience() {
        Some(Audience::Cli) => Ok(Perm {
            set: scope(&claims),
            kind: "cli",
            source_id: String::new(),
            claims,
        }),
        Some(Audience::Access) => {
            if instance.moved {
                return Err(TokenRejection::Moved(
                    crate::move_source::moved_to_url(state, instance).await,
                ));
            }
            // A revoked client's tokens die with it.
            match state
                .instances
                .get_client(&instance.domain, &claims.sub)
                .await
            {
                Ok(Some(_)) => Ok(Perm {
                    set: scope(&claims),
                    kind: "oauth",
                    source_id: claims.sub.clone(),
                    claims,
                }),
                Ok(None) => Err(TokenRejection::Invalid("Invalid JWT token", None)),
                Err(e) => Err(TokenRejection::Failed(e.into())),
            }
        }
        Some(Audience::Share) => match state
            .instances
            .share_permission(&instance.domain, &claims.sub, raw)
            .await
        {
            Ok(Some(set)) => Ok(Perm {
                set,
                kind: "share",
                source_id: String::new(),
                claims,
            }),
            Ok(None) => Err(TokenRejection::Invalid("Invalid JWT token", None)),
            Err(e) => Err(TokenRejection::Failed(e.into())),
        },
        // App and konnector tokens carry the permissions of the installed app (its
        // manifest's); the token of an app that is not installed is no token.
        Some(aud @ (Audience::App | Audience::Konnector)) => {
            let kind = if aud == Audience::App {
                AppKind::Webapp
            } else {
                AppKind::Konnector
            };
            // A token made for a browser session ends with it (logout, expiry).
            if let Some(session) = &claims.session_id {
                match state.instances.session_exists(instance, session).await {
                    Ok(true) => {}
                    Ok(false) => return Err(TokenRejection::Invalid("Expired token", None)),
                    Err(e) => return Err(TokenRejection::Failed(e.into())),
                }
            }
            match state.apps.permissions(instance, kind, &claims.sub).await {
                Ok(Some(set)) => Ok(Perm {
                    set,
                    kind: if aud == Audience::App {
                        "app"
                    } else {
                        "konnector"
                    },
                    source_id: kind.doc_id(&claims.sub),
                    claims,
                }),
                Ok(None) => Err(TokenRejection::Invalid("Invalid JWT token", None)),
                Err(e) => Err(TokenRejection::Failed(e.into())),
            }
        }
        _ => Err(TokenRejection::Invalid(
            "Invalid audience for JWT token",
            None,
        )),
    }
}

impl FromRequestParts<AppState> for Perm {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(Inst(instance)) = parts.extensions.get::<Inst>().cloned() else {
            return Err(PlainError::new(StatusCode::NOT_FOUND, "Instance not found")
                .render(&Method::GET, &parts.headers));
        };
        let Some(raw) = token_of(parts) else {
            return Err(
                PlainError::new(StatusCode::UNAUTHORIZED, "No token in request")
                    .render(&parts.method, &parts.headers),
            );
        };
        match perm_of_token(state, &instance, &raw).await {
            Ok(perm) => Ok(perm),
            Err(TokenRejection::Invalid(message, description)) => {
                Err(invalid(parts, message, description))
            }
            Err(TokenRejection::Failed(e)) => Err(e.into_response()),
            Err(TokenRejection::Moved(to)) => Err(crate::move_source::moved_error(&instance, &to)),
        }
    }
}

/// `GET /permissions/self` — spec core-api B.11: what the caller's token allows.
pub(crate) async fn permissions_self(perm: Perm) -> Response {
    let body = serde_json::json!({
        "data": {
            "type": "io.cozy.permissions",
            "id": perm.claims.sub,
            "attributes": {
                "type": perm.kind,
                "source_id": perm.source_id,
                "permissions": perm.set.to_json(),
            },
            "meta": {},
            "links": {"self": "/permissions/self"},
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, crate::error::JSON_API)],
        body.to_string(),
    )
        .into_response()
}

/// A `ttl` such as `30m`, `2h`, `1D`, `1W` (or seconds).
fn ttl(s: &str) -> Option<std::time::Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "D" | "d" => 86_400,
        "W" | "w" => 7 * 86_400,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(n * secs))
}

/// `POST /permissions?codes=a,b&ttl=1D` — spec core-api B.11: a share-by-link
/// permission, a subset of the caller's, with one token per code.
pub(crate) async fn create_permission(
    axum::extract::State(state): axum::extract::State<AppState>,
    Inst(i): Inst,
    perm: Result<Perm, Response>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
    raw: axum::body::Bytes,
) -> Response {
    use crate::ApiError;
    let perm = match perm {
        Ok(p) => p,
        Err(r) if r.status() == StatusCode::UNAUTHORIZED => {
            return ApiError::unauthorized("no parent").into_response();
        }
        Err(r) => return r,
    };
    if perm.kind == "share" {
        return ApiError::forbidden("Only apps can create sharing permissions").into_response();
    }
    let body: serde_json::Value = match serde_json::from_slice(&raw) {
        Ok(b) => b,
        Err(e) => {
            return ApiError::bad_request(format!("the body is not valid JSON: {e}"))
                .into_response();
        }
    };
    let attributes = &body["data"]["attributes"];
    let rules = &attributes["permissions"];
    let source = attributes
        .get("source_id")
        .and_then(|v| v.as_str())
        .unwrap_or(&perm.source_id)
        .to_owned();
    let codes: Vec<String> = q
        .get("codes")
        .map(|c| {
            c.split(',')
                .map(|x| x.trim().to_owned())
                .filter(|x| !x.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let ttl = match q.get("ttl").filter(|t| !t.is_empty()) {
        Some(t) => match ttl(t) {
            Some(d) => Some(d),
            None => {
                return ApiError::invalid_parameter(
                    "ttl",
                    "ttl must be a duration such as 30m, 2h or 1D",
                )
                .into_response();
            }
        },
        None => None,
    };
    let doc = match state
        .instances
        .create_share(&i.domain, &perm.set, &source, rules, &codes, ttl)
        .await
    {
        Ok(Ok(doc)) => doc,
        Ok(Err(hearth_instances::share::ShareError::Larger)) => {
            return ApiError::forbidden("Attempt to create a larger permission set")
                .into_response();
        }
        Ok(Err(hearth_instances::share::ShareError::Invalid(m))) => {
            return ApiError::invalid_attribute("permissions", m).into_response();
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let id = doc.get("_id").cloned().unwrap_or_default();
    let rev = doc.get("_rev").cloned().unwrap_or_default();
    let mut attrs = doc.clone();
    attrs.shift_remove("_id");
    attrs.shift_remove("_rev");
    attrs.insert("shortcodes".into(), serde_json::json!({}));
    let body = serde_json::json!({
        "data": {"type": "io.cozy.permissions", "id": id, "attributes": attrs, "meta": {"rev": rev}, "links": {"self": format!("/permissions/{}", id.as_str().unwrap_or(""))}}
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, crate::error::JSON_API)],
        body.to_string(),
    )
        .into_response()
}
