//! Web apps on their own origin (issue 7): `<slug>.<instance domain>` (nested, the
//! default) or `<first label>-<slug>.<rest>` (flat). The [`front`] layer runs before
//! any route: a request for an app host is served from the app's installed files (its
//! manifest `routes`), with the `index.html` rendered with the values the Cozy apps
//! expect (a fresh app token, the domain, the locale…) and the app host's security
//! headers; a request for the instance itself gets CORS answers for its app origins.

pub(crate) mod cors;
pub(crate) mod files;
mod template;

use std::collections::HashMap;
use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use hearth_apps::{AppKind, AppsError, InstalledApp};
use hearth_instances::{Instance, InstanceError, Resolution, Session, token};
use serde_json::{Value as Json, json};

use crate::{
    AppState, Family,
    error::{ApiError, PlainError},
    instance::{self, scheme_for},
};
use template::Value;

/// What a request's `Host` names.
enum Target {
    /// An instance (or one of its aliases).
    Instance(Arc<Instance>),
    /// An app host of an instance: `domain` is the instance domain it was reached
    /// under (the main one or an alias).
    App {
        inst: Arc<Instance>,
        domain: String,
        slug: String,
    },
    /// An app host of an instance's old domain: the app host on its new one.
    Moved(String),
    /// Nothing known: the routes answer as they do for unknown hosts.
    Other,
}

/// Whether `slug` can be an app's slug (`[a-z0-9-]+`).
fn valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Splits an app host (lowercase, with its port if any) into the instance domain and
/// the slug: nested `drive.alice.example.net` → (`alice.example.net`, `drive`); flat
/// `alice-drive.example.net` → (`alice.example.net`, `drive`), the first label split
/// at its first `-`.
pub(crate) fn split_app_host(host: &str, flat: bool) -> Option<(String, String)> {
    let (first, rest) = host.split_once('.')?;
    if rest.is_empty() || first.contains(':') {
        return None;
    }
    let (parent, slug) = if flat {
        let (label, slug) = first.split_once('-')?;
        if label.is_empty() {
            return None;
        }
        (format!("{label}.{rest}"), slug)
    } else {
        (rest.to_owned(), first)
    };
    valid_slug(slug).then(|| (parent, slug.to_owned()))
}

/// The host of an app of the instance reached under `domain`.
pub(crate) fn app_host(domain: &str, slug: &str, flat: bool) -> String {
    if flat {
        match domain.split_once('.') {
            Some((first, rest)) => format!("{first}-{slug}.{rest}"),
            None => format!("{domain}-{slug}"),
        }
    } else {
        format!("{slug}.{domain}")
    }
}

/// `<scheme>://<app host>/`: the URL of an app (the `related` link of its resource).
pub(crate) fn app_url(domain: &str, slug: &str, flat: bool) -> String {
    format!("{}://{}/", scheme_for(domain), app_host(domain, slug, flat))
}

fn host_of(req: &Request) -> String {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

async fn target(state: &AppState, host: &str) -> Result<Target, InstanceError> {
    match state.instances.resolve_host(host).await? {
        Resolution::Found(i) => return Ok(Target::Instance(i)),
        Resolution::Moved(_) => return Ok(Target::Other),
        Resolution::Unknown => {}
    }
    let flat = state.flat_subdomains;
    let Some((parent, slug)) = split_app_host(host, flat) else {
        return Ok(Target::Other);
    };
    Ok(match state.instances.resolve_host(&parent).await? {
        Resolution::Found(inst) => {
            let domain = inst
                .all_domains()
                .find(|d| *d == parent)
                .unwrap_or(&inst.domain)
                .to_owned();
            Target::App { inst, domain, slug }
        }
        Resolution::Moved(to) => Target::Moved(app_host(&to, &slug, flat)),
        Resolution::Unknown => Target::Other,
    })
}

/// The layer in front of every public route: app hosts are served here, requests for
/// an instance get CORS for its app origins, the rest goes on unchanged.
pub(crate) async fn front(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Server-wide routes answer whatever the host.
    if matches!(req.uri().path(), "/version" | "/status") {
        return next.run(req).await;
    }
    let host = host_of(&req);
    let target = match target(&state, &host).await {
        Ok(t) => t,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match target {
        Target::Instance(inst) => {
            // A moved instance's home and login page, without a session: where it went.
            if inst.moved
                && req.method() == Method::GET
                && matches!(req.uri().path(), "/" | "/auth/login")
                && let Some(res) = crate::move_source::moved_link(
                    &state,
                    &inst,
                    req.headers(),
                    None,
                    req.uri().path(),
                )
                .await
            {
                return res;
            }
            let mut req = req;
            req.extensions_mut()
                .insert(instance::Resolved(inst.clone()));
            cors::handle(&inst, state.flat_subdomains, req, next).await
        }
        Target::App { inst, domain, slug } => {
            tracing::Span::current().record("domain", inst.domain.as_str());
            let flat = state.flat_subdomains;
            let mut res = serve(&state, &inst, &domain, &slug, req).await;
            security_headers(res.headers_mut(), &domain, flat);
            res
        }
        Target::Moved(to) => {
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let url = format!("{}://{to}{path}", scheme_for(&to));
            (
                StatusCode::PERMANENT_REDIRECT,
                [(header::LOCATION, header_value(&url))],
            )
                .into_response()
        }
        Target::Other => next.run(req).await,
    }
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The headers of every answer of an app host: a CSP that lets the app load its own
/// files and talk to its instance only, and no framing.
fn security_headers(h: &mut HeaderMap, domain: &str, flat: bool) {
    let scheme = scheme_for(domain);
    let ws = if scheme == "https" { "wss" } else { "ws" };
    let p = format!("{scheme}://{domain} {ws}://{domain}");
    // Sibling apps (intents open them in frames).
    let siblings = if flat {
        let rest = domain.split_once('.').map_or(domain, |(_, r)| r);
        format!("{scheme}://*.{rest}")
    } else {
        format!("{scheme}://*.{domain}")
    };
    let csp = format!(
        "default-src 'self' {p};\
         script-src 'self' 'wasm-unsafe-eval' {p};\
         frame-src 'self' {siblings} {p};\
         connect-src 'self' blob: {p};\
         font-src 'self' data: {p};\
         img-src 'self' data: blob: {p};\
         media-src 'self' blob: {p};\
         object-src 'none';\
         style-src 'self' 'unsafe-inline' {p};\
         worker-src 'self' blob:;\
         frame-ancestors 'none';\
         base-uri 'self';\
         form-action 'self' {scheme}://{domain}"
    );
    h.insert(header::CONTENT_SECURITY_POLICY, header_value(&csp));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    if scheme == "https" {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
}

/// A small HTML page for the errors of an app host.
fn page(status: StatusCode, title: &str, locale: &str) -> Response {
    let mut t = String::new();
    template::escape_into(title, &mut t);
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"{locale}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{t}</title>\n</head>\n<body>\n<h1>{t}</h1>\n</body>\n</html>\n"
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The live session of the request's `cozysessid` cookie, if any.
pub(crate) async fn session_of(
    state: &AppState,
    inst: &Instance,
    headers: &HeaderMap,
) -> Result<Option<Session>, InstanceError> {
    crate::auth::current_session(state, inst, headers).await
}

/// A route of a manifest: `"/path": {folder, index, public}`.
#[derive(Debug, Clone, PartialEq)]
struct Route {
    prefix: Vec<String>,
    folder: Vec<String>,
    index: String,
    public: bool,
}

fn path_segments(p: &str) -> Vec<String> {
    p.split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .map(str::to_owned)
        .collect()
}

/// The routes of an app: its manifest's, or `/` → folder `/`, `index.html`, private.
fn routes_of(app: &InstalledApp) -> Vec<Route> {
    let declared = app
        .manifest
        .raw
        .get("routes")
        .and_then(Json::as_object)
        .filter(|r| !r.is_empty());
    let Some(declared) = declared else {
        return vec![Route {
            prefix: Vec::new(),
            folder: Vec::new(),
            index: "index.html".into(),
            public: false,
        }];
    };
    declared
        .iter()
        .map(|(path, r)| Route {
            prefix: path_segments(path),
            folder: path_segments(r.get("folder").and_then(Json::as_str).unwrap_or("/")),
            index: r
                .get("index")
                .and_then(Json::as_str)
                .filter(|i| !i.is_empty())
                .unwrap_or("index.html")
                .to_owned(),
            public: r.get("public").and_then(Json::as_bool).unwrap_or(false),
        })
        .collect()
}

/// The route with the longest prefix of `segs`, by whole segments.
fn route_for<'a>(routes: &'a [Route], segs: &[String]) -> Option<&'a Route> {
    routes
        .iter()
        .filter(|r| segs.starts_with(&r.prefix))
        .max_by_key(|r| r.prefix.len())
}

/// Serves a request for an app host (spec: the original's `web/apps/serve.go`).
async fn serve(
    state: &AppState,
    inst: &Arc<Instance>,
    domain: &str,
    slug: &str,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    let locale = inst.page_locale();
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return PlainError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Method {} not allowed", parts.method),
        )
        .render(&parts.method, &parts.headers);
    }
    if inst.blocked {
        return instance::blocked(inst, &parts.headers, Family::Pages);
    }
    if inst.deleting {
        return instance::not_found(&parts.headers, Family::Pages);
    }
    // A moved instance's apps, without a session: the 410 page with the same page on
    // the new address (spec move 3.8).
    if inst.moved {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        if let Some(res) =
            crate::move_source::moved_link(state, inst, &parts.headers, Some(slug), path).await
        {
            return res;
        }
    }
    let scheme = scheme_for(domain);
    if !inst.onboarding_finished {
        return redirect(StatusCode::FOUND, &format!("{scheme}://{domain}/"));
    }
    let app = match state.apps.get(inst, AppKind::Webapp, slug).await {
        Ok(app) => app,
        Err(AppsError::NotInstalled) => {
            return page(StatusCode::NOT_FOUND, "Application not found", locale);
        }
        Err(e) => {
            tracing::error!(slug, error = %e, "cannot read an installed app");
            return page(StatusCode::INTERNAL_SERVER_ERROR, "Internal error", locale);
        }
    };
    if !matches!(app.state.as_str(), "ready" | "installed") {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Application is not ready",
            locale,
        );
    }
    let Ok(segs) = files::segments(parts.uri.path()) else {
        return page(StatusCode::BAD_REQUEST, "Invalid path", locale);
    };
    let routes = routes_of(&app);
    let Some(route) = route_for(&routes, &segs) else {
        return page(StatusCode::NOT_FOUND, "Page not found", locale);
    };
    let rest = &segs[route.prefix.len()..];
    let is_index = rest.is_empty() || (rest.len() == 1 && rest[0] == route.index);
    let session = match session_of(state, inst, &parts.headers).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot read a session");
            return page(StatusCode::INTERNAL_SERVER_ERROR, "Internal error", locale);
        }
    };
    if !route.public && session.is_none() {
        if rest.len() == 1 && rest[0] == "robots.txt" {
            return (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "User-agent: *\nDisallow: /\n",
            )
                .into_response();
        }
        if !is_index {
            return page(
                StatusCode::UNAUTHORIZED,
                "You must be authenticated",
                locale,
            );
        }
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let here = format!(
            "{scheme}://{host}{}",
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        );
        let query = serde_urlencoded::to_string([("redirect", here)]).unwrap_or_default();
        return redirect(
            StatusCode::FOUND,
            &format!("{scheme}://{domain}/auth/login?{query}"),
        );
    }
    let dir = state.apps.app_dir(inst, AppKind::Webapp, slug);
    if is_index {
        let Some(path) =
            files::resolve(&dir, &route.folder, std::slice::from_ref(&route.index)).await
        else {
            return page(StatusCode::NOT_FOUND, "Page not found", locale);
        };
        let raw = match tokio::fs::read(&path).await {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read an app index");
                return page(StatusCode::INTERNAL_SERVER_ERROR, "Internal error", locale);
            }
        };
        let token = session
            .as_ref()
            .map(|s| token::issue_for_session(inst, slug, &s.id))
            .unwrap_or_default();
        let values = template_values(inst, domain, &app, &token, state.flat_subdomains);
        let html = template::render(&raw, &values).unwrap_or(raw);
        let body = if parts.method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(html)
        };
        return (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                // The page carries a token: never stored, always asked again.
                (
                    header::CACHE_CONTROL,
                    "private, no-cache, no-store, must-revalidate",
                ),
            ],
            body,
        )
            .into_response();
    }
    let Some(path) = files::resolve(&dir, &route.folder, rest).await else {
        return page(StatusCode::NOT_FOUND, "Asset not found", locale);
    };
    serve_file(&parts, &path, !route.public).await
}

fn redirect(status: StatusCode, to: &str) -> Response {
    (status, [(header::LOCATION, header_value(to))]).into_response()
}

/// A file of an app with its type and ETag (304 when the client has it already).
pub(crate) async fn serve_file(parts: &Parts, path: &std::path::Path, private: bool) -> Response {
    let (body, etag) = match files::read(path).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot read an app file");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let cache = match (files::is_immutable(name), private) {
        (true, true) => "private, max-age=31536000, immutable",
        (true, false) => "public, max-age=31536000, immutable",
        (false, true) => "private, no-cache",
        (false, false) => "no-cache",
    };
    let inm = parts
        .headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    let mut res = if files::not_modified(inm, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else if parts.method == Method::HEAD {
        let mut r = Response::new(Body::empty());
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        r
    } else {
        Response::new(Body::from(body))
    };
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(files::content_type(name)),
    );
    h.insert(header::ETAG, header_value(&etag));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    res
}

fn manifest_str<'a>(app: &'a InstalledApp, key: &str) -> &'a str {
    app.manifest
        .raw
        .get(key)
        .and_then(Json::as_str)
        .unwrap_or_default()
}

/// The values of an app's `index.html` (the original's `serveParams`).
fn template_values<'a>(
    inst: &Instance,
    domain: &str,
    app: &InstalledApp,
    token: &str,
    flat: bool,
) -> HashMap<&'a str, Value> {
    let locale = inst.locale.clone();
    let localized = app
        .manifest
        .raw
        .get("locales")
        .and_then(|l| l.get(&locale))
        .and_then(|l| l.get("name"))
        .and_then(Json::as_str)
        .filter(|n| !n.is_empty());
    let name = localized
        .map(str::to_owned)
        .or_else(|| Some(app.manifest.name.clone()).filter(|n| !n.is_empty()))
        .unwrap_or_else(|| manifest_str(app, "name").to_owned());
    let prefix = manifest_str(app, "name_prefix").to_owned();
    let editor = manifest_str(app, "editor").to_owned();
    let icon = manifest_str(app, "icon").to_owned();
    let subdomain = if flat { "flat" } else { "nested" };
    let capabilities = json!({
        "file_versioning": true,
        "flat_subdomains": flat,
        "can_auth_with_password": true,
        "can_auth_with_magic_links": inst.magic_link,
        "can_auth_with_oidc": false,
    });
    let cozy_data = json!({
        "app": {
            "editor": editor,
            "name": name,
            "prefix": prefix,
            "slug": app.slug,
            "icon": icon,
        },
        "capabilities": capabilities,
        "domain": domain,
        "flags": {},
        "isLoggedIn": !token.is_empty(),
        "locale": locale,
        "subdomain": subdomain,
        "token": token,
        "tracking": false,
    });
    let text = |s: &str| Value::Text(s.to_owned());
    HashMap::from([
        ("Token", text(token)),
        ("Domain", text(domain)),
        ("SubDomain", text(subdomain)),
        ("Tracking", Value::Bool(false)),
        ("Locale", text(&locale)),
        ("AppName", text(&name)),
        ("AppNamePrefix", text(&prefix)),
        ("AppEditor", text(&editor)),
        ("AppSlug", text(&app.slug)),
        ("IconPath", text(&icon)),
        (
            "ContextName",
            text(inst.context.as_deref().unwrap_or("default")),
        ),
        ("Capabilities", text(&capabilities.to_string())),
        ("Flags", text("{}")),
        ("CozyData", text(&cozy_data.to_string())),
        // Hearth serves no shared assets (cozy-bar, cozy-client, fonts, theme): the
        // apps bundle what they use.
        ("CozyBar", Value::Html(String::new())),
        ("CozyClientJS", Value::Html(String::new())),
        ("CozyFonts", Value::Html(String::new())),
        ("ThemeCSS", Value::Html(String::new())),
        ("Favicon", Value::Html(String::new())),
        ("DefaultWallpaper", text("")),
        ("Warnings", Value::Html(String::new())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_hosts() {
        assert_eq!(
            split_app_host("drive.alice.localhost:8080", false),
            Some(("alice.localhost:8080".into(), "drive".into()))
        );
        assert_eq!(
            split_app_host("alice-my-app.example.net", true),
            Some(("alice.example.net".into(), "my-app".into()))
        );
        assert_eq!(split_app_host("localhost:8080", false), None);
        assert_eq!(split_app_host("alice.example.net", true), None);
        assert_eq!(split_app_host("dr_ive.alice.example.net", false), None);
        assert_eq!(split_app_host("-x.example.net", true), None);
        assert_eq!(
            app_host("alice.example.net", "my-app", true),
            "alice-my-app.example.net"
        );
        assert_eq!(
            app_url("alice.localhost:8080", "drive", false),
            "http://drive.alice.localhost:8080/"
        );
    }

    #[test]
    fn longest_route_wins() {
        let r = |p: &str| Route {
            prefix: path_segments(p),
            folder: Vec::new(),
            index: "index.html".into(),
            public: false,
        };
        let routes = [r("/"), r("/public"), r("/public/deep")];
        let segs = |p: &str| path_segments(p);
        assert_eq!(route_for(&routes, &segs("/a.js")).unwrap().prefix.len(), 0);
        assert_eq!(
            route_for(&routes, &segs("/public/x")).unwrap().prefix.len(),
            1
        );
        assert_eq!(
            route_for(&routes, &segs("/publicx")).unwrap().prefix.len(),
            0
        );
        assert_eq!(
            route_for(&routes, &segs("/public/deep"))
                .unwrap()
                .prefix
                .len(),
            2
        );
        assert!(route_for(&routes[1..], &segs("/x")).is_none());
    }
}
