//! Choosing the instance of a request from its `Host` (spec core-api B.1, instances
//! 1.7), and the checks every instance route family runs: unknown host, old domain,
//! blocked and deleting instances (spec instances 4.5, 4.6). App hosts
//! (`<slug>.<instance domain>`) never reach these routes: `serve_app::front` serves
//! them first, with the same blocked and deleting answers.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use hearth_instances::{Audience, Instance, Resolution, token};
use serde_json::json;

use crate::{AppState, error::ApiError, pages};

/// The instance a request is for, put in the request's extensions by [`resolve`].
#[derive(Clone)]
pub struct Inst(pub Arc<Instance>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Inst {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Inst>()
            .cloned()
            .ok_or_else(|| ApiError::not_found("Instance not found"))
    }
}

/// The instance `serve_app::front` already found for the request's `Host`, so that it
/// is not looked up twice.
#[derive(Clone)]
pub(crate) struct Resolved(pub(crate) Arc<Instance>);

/// Route families differ in what they check and how they answer by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `/`, `/auth/*`, `/public/*`: HTML by default; blocked and deleting checked.
    Pages,
    /// `/data`, `/files`, `/jobs`…: JSON:API by default; blocked checked.
    Api,
    /// `/settings`, `/apps`, `/konnectors`: JSON:API, served even when the instance is
    /// blocked (spec instances 4.5), so a person can still see and fix their settings.
    Unblocked,
}

/// Whether the client prefers HTML (a browser) over JSON.
pub(crate) fn wants_html(headers: &HeaderMap, family: Family) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.is_empty() {
        return family == Family::Pages;
    }
    // As in the original's negotiation, `*/*` alone selects JSON even on pages.
    accept.contains("text/html")
}

fn host_of(req: &Request) -> Option<String> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))
}

/// Hosts served over plain HTTP: development names and explicit ports.
pub(crate) fn scheme_for(domain: &str) -> &'static str {
    let host = domain.rsplit_once(':').map_or(domain, |(h, _)| h);
    if host == "localhost" || host.ends_with(".localhost") || domain.contains(':') {
        "http"
    } else {
        "https"
    }
}

/// The middleware of the instance route families.
pub(crate) async fn resolve(
    State((state, family)): State<(AppState, Family)>,
    mut req: Request,
    next: Next,
) -> Response {
    let resolution = match req.extensions_mut().remove::<Resolved>() {
        Some(Resolved(i)) => Resolution::Found(i),
        None => {
            let host = host_of(&req).unwrap_or_default();
            match state.instances.resolve_host(&host).await {
                Ok(r) => r,
                Err(e) => return ApiError::from(e).into_response(),
            }
        }
    };
    let instance = match resolution {
        Resolution::Found(i) => {
            // Every log line of this request names the instance.
            tracing::Span::current().record("domain", i.domain.as_str());
            i
        }
        Resolution::Moved(to) => {
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            return Redirect::permanent(&format!("{}://{to}{path}", scheme_for(&to)))
                .into_response();
        }
        Resolution::Unknown => return not_found(req.headers(), family),
    };
    if instance.blocked && family != Family::Unblocked && !cli_token_of(&req, &instance) {
        return blocked(&instance, req.headers(), family);
    }
    if instance.deleting && family == Family::Pages {
        return not_found(req.headers(), family);
    }
    req.extensions_mut().insert(Inst(instance));
    next.run(req).await
}

/// A CLI token of this very instance passes the blocked check.
fn cli_token_of(req: &Request, instance: &Instance) -> bool {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer
        .and_then(|t| token::verify(instance, t.trim()).ok())
        .is_some_and(|c| c.audience() == Some(Audience::Cli))
}

/// Unknown host (or an instance being deleted): 404 as a page, JSON or text.
pub(crate) fn not_found(headers: &HeaderMap, family: Family) -> Response {
    if wants_html(headers, family) {
        let locale = pages::locale_from(headers);
        return (StatusCode::NOT_FOUND, pages::not_found(locale)).into_response();
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("json") || family != Family::Pages {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "Instance not found"})),
        )
            .into_response();
    }
    (StatusCode::NOT_FOUND, "Instance not found").into_response()
}

/// A blocked instance (spec instances 4.5): 402 for a payment, 503 otherwise; a page
/// in the instance's locale for a browser, a JSON array of warnings for a client.
/// `LOGIN_FAILED` always gets the page, as in the original (the person must read it).
pub(crate) fn blocked(instance: &Instance, headers: &HeaderMap, family: Family) -> Response {
    let reason = instance.blocking_reason.as_deref().unwrap_or("UNKNOWN");
    let status = if reason == "PAYMENT_FAILED" {
        StatusCode::PAYMENT_REQUIRED
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let locale = instance.page_locale();
    // During an import or a move (spec move 2.8): browsers wait on the waiting page,
    // clients get a 503 with a plain message.
    if matches!(reason, "IMPORTING" | "MOVING") {
        if wants_html(headers, family) {
            let to = format!(
                "{}://{}/move/importing",
                scheme_for(&instance.domain),
                instance.domain
            );
            return (StatusCode::FOUND, [(header::LOCATION, to)]).into_response();
        }
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": pages::blocked_reason(locale, reason)})),
        )
            .into_response();
    }
    if reason == "LOGIN_FAILED" || wants_html(headers, family) {
        return (status, pages::blocked(locale, reason)).into_response();
    }
    let body = json!([{
        "status": status.as_u16().to_string(),
        "title": "Blocked",
        "code": reason,
        "detail": pages::blocked_reason(locale, reason),
        "source": {},
    }]);
    (status, axum::Json(body)).into_response()
}
