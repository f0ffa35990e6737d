//! `/apps` and `/konnectors` (issue 7; the original's `web/apps/apps.go`): list, show,
//! install, update and uninstall, and the icons. Resources are JSON:API objects whose
//! id is the document id (`io.cozy.apps/<slug>`); errors of the apps service map onto
//! statuses in [`From<AppsError> for ApiError`].
//!
//! Every install, update and uninstall (these routes, the admin API's, `Apps=` at an
//! instance's creation) goes through [`install`], [`update`] and [`uninstall`] here,
//! which also keep a web app's service triggers in line with its manifest's
//! `services` (see [`schedule_services`]).

use std::collections::HashMap;

use axum::{
    Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::get,
};
use hearth_apps::{AppKind, AppsError, InstalledApp};
use hearth_instances::Instance;
use serde_json::{Value, json};

use crate::{
    AppState, Inst, Perm, error::ApiError, error::jsonapi, instance::scheme_for, serve_app,
};

/// How many apps a page of `GET /apps/` holds by default.
const DEFAULT_LIMIT: usize = 100;

pub(crate) fn routes() -> Router<AppState> {
    kind_routes(AppKind::Webapp).merge(kind_routes(AppKind::Konnector))
}

fn kind_routes(kind: AppKind) -> Router<AppState> {
    let base = format!("/{}", kind.dir_name());
    let list = move |s: State<AppState>, i: Inst, p: Perm, h: HeaderMap, q: Params| {
        list_apps(kind, s, i, p, h, q)
    };
    Router::new()
        .route(&base, get(list))
        .route(&format!("{base}/"), get(list))
        .route(
            &format!("{base}/{{slug}}"),
            get(
                move |s: State<AppState>, i: Inst, p: Perm, h: HeaderMap, slug: Path<String>| {
                    show_app(kind, s, i, p, h, slug)
                },
            )
            .post(
                move |s: State<AppState>,
                      i: Inst,
                      p: Perm,
                      h: HeaderMap,
                      slug: Path<String>,
                      q: Params| { install_app(kind, s, i, p, h, slug, q) },
            )
            .put(
                move |s: State<AppState>,
                      i: Inst,
                      p: Perm,
                      h: HeaderMap,
                      slug: Path<String>,
                      q: Params| { update_app(kind, s, i, p, h, slug, q) },
            )
            .delete(
                move |s: State<AppState>, i: Inst, p: Perm, slug: Path<String>| {
                    uninstall_app(kind, s, i, p, slug)
                },
            ),
        )
        .route(
            &format!("{base}/{{slug}}/icon"),
            get(
                move |s: State<AppState>, i: Inst, slug: Path<String>, parts: Parts| {
                    icon(kind, s, i, slug.0, parts, false)
                },
            ),
        )
        .route(
            &format!("{base}/{{slug}}/icon/{{version}}"),
            get(
                move |s: State<AppState>, i: Inst, p: Path<(String, String)>, parts: Parts| {
                    icon(kind, s, i, p.0.0, parts, true)
                },
            ),
        )
}

type Params = Query<HashMap<String, String>>;

/// The statuses of the apps service's errors.
impl From<AppsError> for ApiError {
    fn from(e: AppsError) -> Self {
        match e {
            AppsError::NotInstalled => ApiError::not_found("Application is not installed"),
            AppsError::AlreadyInstalled => {
                ApiError::conflict("Application with same slug already exists")
            }
            AppsError::InvalidInput(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m),
            AppsError::SourceNotFound(m) => ApiError::not_found(m),
            AppsError::BadManifest(_) | AppsError::BadArchive(_) => {
                ApiError::bad_request(e.to_string())
            }
            AppsError::ForbiddenPermission(_) => ApiError::forbidden(e.to_string()),
            AppsError::Fetch(m) => ApiError::new(StatusCode::BAD_GATEWAY, m),
            AppsError::Store(s) => ApiError::from(s),
            AppsError::Io(io) => ApiError::internal(&io),
        }
    }
}

/// `AppKind` of the `Kind` parameter of the admin routes (`webapp` by default).
pub(crate) fn parse_kind(kind: Option<&str>) -> Result<AppKind, ApiError> {
    match kind.map(str::to_ascii_lowercase).as_deref() {
        None | Some("" | "webapp" | "webapps" | "app" | "apps") => Ok(AppKind::Webapp),
        Some("konnector" | "konnectors" | "konn") => Ok(AppKind::Konnector),
        Some(other) => Err(ApiError::invalid_parameter(
            "Kind",
            format!("Unknown kind {other}: webapp or konnector"),
        )),
    }
}

/// The stored document without `_id`/`_rev`.
fn attributes(app: &InstalledApp) -> serde_json::Map<String, Value> {
    let mut attrs = app.doc.clone();
    attrs.remove("_id");
    attrs.remove("_rev");
    attrs
}

/// The JSON:API object of an app. `related` (the app's URL) is given for a web app
/// that can be opened, on the routes that show it.
pub(crate) fn resource(app: &InstalledApp, related: Option<String>) -> Value {
    let base = format!("/{}/{}", app.kind.dir_name(), app.slug);
    let mut links = json!({"self": base});
    let icon = app
        .manifest
        .raw
        .get("icon")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !icon.is_empty() {
        links["icon"] = json!(format!("{base}/icon/{}", app.version));
    }
    match app.kind {
        AppKind::Webapp => {
            if let Some(url) =
                related.filter(|_| matches!(app.state.as_str(), "ready" | "installed"))
            {
                links["related"] = json!(url);
            }
        }
        AppKind::Konnector => {
            links["permissions"] = json!(format!("/permissions/konnectors/{}", app.slug));
        }
    }
    let meta = match app.doc.get("_rev").and_then(Value::as_str) {
        Some(rev) if !rev.is_empty() => json!({"rev": rev}),
        _ => json!({}),
    };
    json!({
        "type": app.kind.doctype(),
        "id": app.kind.doc_id(&app.slug),
        "attributes": attributes(app),
        "meta": meta,
        "links": links,
    })
}

/// The URL of a web app on the domain the request used.
fn related(state: &AppState, i: &Instance, headers: &HeaderMap, app: &InstalledApp) -> String {
    serve_app::app_url(
        &crate::auth::request_domain(i, headers),
        &app.slug,
        state.flat_subdomains,
    )
}

/// Who may install, update or uninstall (the original's `AllowInstallApp`): a token
/// with the maximal set; a CLI token with the verb on the whole doctype; the `store`
/// app with that verb, for registry sources only. Anything else is refused.
fn may_change(perm: &Perm, verb: &str, kind: AppKind, source: Option<&str>) -> bool {
    // A `file://` source reads the server's own disk: operators only (a CLI token or
    // the admin API), never a client, whatever its permissions.
    if perm.kind != "cli"
        && source.is_some_and(|s| s.trim_start().to_ascii_lowercase().starts_with("file:"))
    {
        return false;
    }
    if perm.set.rules.iter().any(|r| r.doctype == "*") {
        return true;
    }
    let allowed = perm.set.allows_whole_type(verb, kind.doctype());
    match perm.kind {
        "cli" => allowed,
        "app" => {
            allowed
                && perm.claims.sub == "store"
                && (verb == "DELETE" || source.is_some_and(|s| s.starts_with("registry://")))
        }
        _ => false,
    }
}

fn source_param(q: &HashMap<String, String>) -> Option<&str> {
    q.get("Source")
        .map(String::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// `GET /apps/` — the installed apps, by id, `limit` (100) per page from `start_key`.
async fn list_apps(
    kind: AppKind,
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
    headers: HeaderMap,
    Query(q): Params,
) -> Result<Response, ApiError> {
    if !perm.set.allows_whole_type("GET", kind.doctype()) {
        return Err(ApiError::forbidden("Forbidden"));
    }
    let limit = match q.get("limit").filter(|l| !l.is_empty()) {
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::invalid_parameter("limit", "limit must be an integer"))?,
        None => 0,
    };
    let limit = if limit == 0 { DEFAULT_LIMIT } else { limit };
    let mut apps = state.apps.list(&i, kind).await?;
    apps.sort_by(|a, b| a.slug.cmp(&b.slug));
    let start = q
        .get("start_key")
        .filter(|s| !s.is_empty())
        .map(|k| {
            apps.iter()
                .position(|a| kind.doc_id(&a.slug).as_str() >= k.as_str())
                .unwrap_or(apps.len())
        })
        .unwrap_or(0);
    let page: Vec<&InstalledApp> = apps.iter().skip(start).take(limit).collect();
    let data: Vec<Value> = page
        .iter()
        .map(|a| resource(a, Some(related(&state, &i, &headers, a))))
        .collect();
    let mut body = json!({"data": data, "meta": {"count": data.len()}, "links": {}});
    if let Some(next) = apps.get(start + limit) {
        let domain = crate::auth::request_domain(&i, &headers);
        let query = serde_urlencoded::to_string([
            ("limit", limit.to_string()),
            ("start_key", kind.doc_id(&next.slug)),
        ])
        .unwrap_or_default();
        body["links"]["next"] = json!(format!(
            "{}://{domain}/{}/?{query}",
            scheme_for(&domain),
            kind.dir_name()
        ));
    }
    Ok(jsonapi(StatusCode::OK, body))
}

/// `GET /apps/:slug`.
async fn show_app(
    kind: AppKind,
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
    headers: HeaderMap,
    Path(slug): Path<String>,
) -> Result<Response, ApiError> {
    let app = state.apps.get(&i, kind, &slug).await?;
    let doc = Value::Object(app.doc.clone());
    if !perm
        .set
        .allows_doc("GET", kind.doctype(), &kind.doc_id(&slug), Some(&doc))
    {
        return Err(ApiError::forbidden("Forbidden"));
    }
    let url = related(&state, &i, &headers, &app);
    Ok(jsonapi(
        StatusCode::OK,
        json!({"data": resource(&app, Some(url))}),
    ))
}

/// Whether the client asked for the progress as server-sent events (the original's
/// CLI does): `Accept: text/event-stream`.
fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|a| a.trim() == "text/event-stream")
}

/// The answer of an install or an update: 202 with the resource, or as events: one
/// `state` event with the resource, or an `error` event with the message (status 200
/// either way, as in the original). Hearth installs before answering, so the one state
/// is the final one.
fn changed(headers: &HeaderMap, result: Result<InstalledApp, ApiError>) -> Response {
    if wants_stream(headers) {
        let frame = match result {
            Ok(app) => format!(
                "event: state\r\ndata: {}\r\n\r\n",
                json!({"data": resource(&app, None)})
            ),
            Err(e) => format!("event: error\r\ndata: {}\r\n\r\n", json!(e.detail)),
        };
        return (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            frame,
        )
            .into_response();
    }
    match result {
        Ok(app) => jsonapi(StatusCode::ACCEPTED, json!({"data": resource(&app, None)})),
        Err(e) => e.into_response(),
    }
}

/// `POST /apps/:slug?Source=…` — installs (`registry://<slug>/stable` by default).
async fn install_app(
    kind: AppKind,
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Query(q): Params,
) -> Response {
    let source = source_param(&q)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("registry://{slug}/stable"));
    if !may_change(&perm, "POST", kind, Some(&source)) {
        return ApiError::forbidden("Forbidden").into_response();
    }
    let result = install(&state, &i, kind, &slug, Some(&source)).await;
    changed(&headers, result)
}

/// `PUT /apps/:slug[?Source=…]` — updates from its source (or the given one).
async fn update_app(
    kind: AppKind,
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Query(q): Params,
) -> Response {
    let source = source_param(&q);
    if !may_change(&perm, "PUT", kind, source) {
        return ApiError::forbidden("Forbidden").into_response();
    }
    let result = update(&state, &i, kind, &slug, source).await;
    changed(&headers, result)
}

/// `DELETE /apps/:slug` — 200 with what was removed.
async fn uninstall_app(
    kind: AppKind,
    State(state): State<AppState>,
    Inst(i): Inst,
    perm: Perm,
    Path(slug): Path<String>,
) -> Result<Response, ApiError> {
    if !may_change(&perm, "DELETE", kind, None) {
        return Err(ApiError::forbidden("Forbidden"));
    }
    let app = uninstall(&state, &i, kind, &slug).await?;
    Ok(jsonapi(
        StatusCode::OK,
        json!({"data": resource(&app, None)}),
    ))
}

/// Installs an app (`source` `None`: `registry://<slug>/stable`) and, for a web app,
/// creates its services' triggers. A web app whose services cannot all be scheduled
/// (a bad `trigger`, `debounce` or `file`) is refused: it is uninstalled again and the
/// answer is a 400 naming the service, so nothing half-installed remains.
pub(crate) async fn install(
    state: &AppState,
    i: &Instance,
    kind: AppKind,
    slug: &str,
    source: Option<&str>,
) -> Result<InstalledApp, ApiError> {
    let app = state.apps.install(i, kind, slug, source).await?;
    if kind == AppKind::Webapp
        && let Err(e) = schedule_services(state, i, &app, true).await
    {
        if let Err(u) = uninstall(state, i, kind, slug).await {
            tracing::error!(domain = %i.domain, slug, error = %u.detail, "cannot uninstall an app refused for its services");
        }
        return Err(e);
    }
    Ok(app)
}

/// Updates an app from its source (or `source`) and, for a web app, brings its
/// service triggers in line with the new manifest. The update itself cannot be undone
/// once its files are in place: when a service of the new manifest cannot be
/// scheduled, the app stays updated with the triggers of its valid services only, and
/// the answer is a 400 naming the service.
pub(crate) async fn update(
    state: &AppState,
    i: &Instance,
    kind: AppKind,
    slug: &str,
    source: Option<&str>,
) -> Result<InstalledApp, ApiError> {
    let app = state.apps.update(i, kind, slug, source).await?;
    if kind == AppKind::Webapp {
        schedule_services(state, i, &app, false).await?;
    }
    Ok(app)
}

/// Brings a web app's service triggers in line with its manifest (see
/// [`hearth_jobs::services::sync_service_triggers`]); invalid services are a 400.
pub(crate) async fn schedule_services(
    state: &AppState,
    i: &Instance,
    app: &InstalledApp,
    all_or_nothing: bool,
) -> Result<(), ApiError> {
    let app_dir = state.apps.app_dir(i, AppKind::Webapp, &app.slug);
    match hearth_jobs::services::sync_service_triggers(
        &state.jobs,
        i,
        app,
        &app_dir,
        all_or_nothing,
    )
    .await
    {
        Ok(()) => Ok(()),
        Err(hearth_jobs::services::SyncError::Invalid(errors)) => Err(invalid_services(&errors)),
        Err(hearth_jobs::services::SyncError::Jobs(e)) => Err(e.into()),
    }
}

fn invalid_services(errors: &[String]) -> ApiError {
    ApiError::bad_request(format!("Invalid manifest: {}", errors.join("; ")))
}

/// Uninstalls an app and deletes its triggers: a web app's service triggers (worker
/// `service`, message `slug`) or a konnector's (worker `konnector`, message
/// `konnector`). A trigger that cannot be deleted is logged; the app is gone anyway.
pub(crate) async fn uninstall(
    state: &AppState,
    i: &Instance,
    kind: AppKind,
    slug: &str,
) -> Result<InstalledApp, ApiError> {
    let app = state.apps.uninstall(i, kind, slug).await?;
    let (worker, key) = match kind {
        AppKind::Webapp => ("service", "slug"),
        AppKind::Konnector => ("konnector", "konnector"),
    };
    match state.jobs.list_triggers(i, &[worker.to_owned()], &[]).await {
        Ok(triggers) => {
            for t in triggers
                .iter()
                .filter(|t| t.message.get(key).and_then(Value::as_str) == Some(slug))
            {
                if let Err(e) = state.jobs.delete_trigger(i, &t.id).await {
                    tracing::warn!(trigger = %t.id, error = %e, "cannot delete the trigger of an uninstalled app");
                }
            }
        }
        Err(e) => {
            tracing::warn!(slug, error = %e, "cannot list the triggers of an uninstalled app");
        }
    }
    Ok(app)
}

/// `GET /apps/:slug/icon[/:version]` — the manifest's `icon` file, for a session or a
/// token that may read the app; with a version in the URL it is cached for good.
async fn icon(
    kind: AppKind,
    State(state): State<AppState>,
    Inst(i): Inst,
    slug: String,
    mut parts: Parts,
    versioned: bool,
) -> Response {
    use axum::extract::FromRequestParts;
    let app = match state.apps.get(&i, kind, &slug).await {
        Ok(a) => a,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let allowed = match Perm::from_request_parts(&mut parts, &state).await {
        Ok(perm) => perm.set.allows_doc(
            "GET",
            kind.doctype(),
            &kind.doc_id(&slug),
            Some(&Value::Object(app.doc.clone())),
        ),
        Err(_) => matches!(
            serve_app::session_of(&state, &i, &parts.headers).await,
            Ok(Some(_))
        ),
    };
    if !allowed {
        return ApiError::unauthorized("You must be authenticated").into_response();
    }
    let name = app
        .manifest
        .raw
        .get("icon")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let path = match serve_app::files::segments(name) {
        Ok(segs) if !segs.is_empty() => {
            serve_app::files::resolve(&state.apps.app_dir(&i, kind, &slug), &[], &segs).await
        }
        _ => None,
    };
    let Some(path) = path else {
        return ApiError::not_found("Icon not found").into_response();
    };
    let mut res = serve_app::serve_file(&parts, &path, true).await;
    if versioned && res.status().is_success() {
        res.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("private, max-age=31536000, immutable"),
        );
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_errors() {
        assert_eq!(parse_kind(None).unwrap(), AppKind::Webapp);
        assert_eq!(parse_kind(Some("konnector")).unwrap(), AppKind::Konnector);
        assert_eq!(
            parse_kind(Some("x")).unwrap_err().status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        for (e, s) in [
            (AppsError::NotInstalled, 404),
            (AppsError::AlreadyInstalled, 409),
            (AppsError::InvalidInput("x".into()), 422),
            (AppsError::SourceNotFound("x".into()), 404),
            (AppsError::BadManifest("x".into()), 400),
            (AppsError::ForbiddenPermission("x".into()), 403),
            (AppsError::BadArchive("x".into()), 400),
            (AppsError::Fetch("x".into()), 502),
            (AppsError::Io(std::io::Error::other("secret path")), 500),
        ] {
            let api = ApiError::from(e);
            assert_eq!(api.status.as_u16(), s);
            assert!(!api.detail.contains("secret"));
        }
    }
}
