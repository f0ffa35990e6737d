//! The admin API (spec instances 5): HTTP Basic with the admin passphrase, and the
//! instance management routes under `/instances`. Bound on loopback only.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Path, Query, Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use base64::Engine;
use hearth_apps::AppKind;
use hearth_instances::{
    Audience, CreateOptions, Instance, InstanceError, ModifyOptions, passphrase,
};
use serde_json::{Value, json};

use crate::{
    AppState,
    apps::parse_kind,
    error::{ApiError, ErrorSource, PlainError, jsonapi},
};

/// Where the admin passphrase comes from.
#[derive(Debug, Clone, Default)]
pub struct AdminAuth {
    /// A clear-text passphrase (`HEARTH_ADMIN_PASSPHRASE` / `COZY_ADMIN_PASSPHRASE`).
    pub passphrase: Option<String>,
    /// Files that may hold the hash written by `hearth config passwd`, first found wins;
    /// re-read on every request, so changing it needs no restart.
    pub hash_files: Vec<PathBuf>,
    /// Passphrases already checked against a given hash (scrypt is slow by design).
    verified: Arc<Mutex<HashMap<(String, String), bool>>>,
}

impl AdminAuth {
    pub fn new(passphrase: Option<String>, hash_files: Vec<PathBuf>) -> Self {
        Self {
            passphrase,
            hash_files,
            verified: Arc::default(),
        }
    }

    fn check(&self, given: &str) -> Result<(), Box<Response>> {
        if let Some(p) = &self.passphrase {
            return if passphrase::constant_time_eq(p.as_bytes(), given.as_bytes()) {
                Ok(())
            } else {
                Err(Box::new(bad_passphrase()))
            };
        }
        let Some(hash) = self
            .hash_files
            .iter()
            .find_map(|f| std::fs::read_to_string(f).ok())
        else {
            tracing::error!(files = ?self.hash_files, "no admin passphrase configured");
            return Err(Box::new(PlainError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "No admin passphrase is configured: set HEARTH_ADMIN_PASSPHRASE or run `hearth config passwd <data_dir>/hearth-admin-passphrase`",
            )
            .render(&Method::GET, &json_accept())));
        };
        let hash = hash.trim().to_owned();
        let key = (hash.clone(), given.to_owned());
        if let Some(ok) = self.verified.lock().ok().and_then(|m| m.get(&key).copied()) {
            return if ok {
                Ok(())
            } else {
                Err(Box::new(bad_passphrase()))
            };
        }
        let ok = verify_hash(given, &hash);
        if let Ok(mut m) = self.verified.lock() {
            if m.len() > 64 {
                m.clear();
            }
            m.insert(key, ok);
        }
        if ok {
            Ok(())
        } else {
            Err(Box::new(bad_passphrase()))
        }
    }
}

/// Accepts both the PHC form written by `hearth config passwd` and the Cozy stack's
/// `scrypt$N$r$p$salt$key` form.
fn verify_hash(given: &str, hash: &str) -> bool {
    use scrypt::password_hash::{PasswordHash, PasswordVerifier};
    if hash.starts_with("scrypt$") {
        return passphrase::verify(given, hash);
    }
    PasswordHash::new(hash)
        .is_ok_and(|h| scrypt::Scrypt.verify_password(given.as_bytes(), &h).is_ok())
}

fn json_accept() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::ACCEPT,
        header::HeaderValue::from_static("application/json"),
    );
    h
}

fn bad_passphrase() -> Response {
    PlainError::new(StatusCode::FORBIDDEN, "bad passphrase").render(&Method::GET, &json_accept())
}

/// Checks HTTP Basic (the user name is ignored) before any admin route.
pub(crate) async fn require_passphrase(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .map(|userpass| {
            userpass
                .split_once(':')
                .map_or(userpass.clone(), |(_, p)| p.to_owned())
        });
    let Some(given) = given else {
        return PlainError::new(StatusCode::UNAUTHORIZED, "missing basic auth")
            .render(req.method(), req.headers());
    };
    match state.admin_auth.check(&given) {
        Ok(()) => next.run(req).await,
        Err(r) => *r,
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/instances", get(list_instances).post(create_instance))
        .route("/instances/count", get(count_instances))
        .route("/instances/token", post(create_token))
        .route(
            "/instances/oauth_client",
            get(find_oauth_client).post(create_oauth_client),
        )
        .route(
            "/instances/{domain}",
            get(show_instance)
                .patch(modify_instance)
                .delete(destroy_instance),
        )
        .route("/instances/{domain}/prefix", get(show_prefix))
        .route("/instances/{domain}/sessions", delete(clean_sessions))
        .route("/instances/{domain}/fsck", get(fsck))
        .route("/instances/{domain}/jobs/queue/{worker}", post(push_job))
        .route("/instances/{domain}/jobs/{id}", get(get_job))
        .route("/instances/{domain}/triggers", get(list_triggers))
        .route(
            "/instances/{domain}/triggers/{id}/launch",
            post(launch_trigger),
        )
        .route("/instances/{domain}/apps", get(list_apps))
        .route(
            "/instances/{domain}/apps/{slug}",
            get(show_app)
                .post(install_app)
                .put(update_app)
                .delete(uninstall_app),
        )
}

/// The mapping of instance errors to JSON:API errors (spec instances 5.1).
impl From<InstanceError> for ApiError {
    fn from(e: InstanceError) -> Self {
        match e {
            InstanceError::NotFound => ApiError::not_found("Instance not found"),
            InstanceError::Exists => ApiError::conflict("Instance already exists"),
            InstanceError::IllegalDomain { parameter } => {
                ApiError::invalid_parameter(parameter, e.to_string())
            }
            InstanceError::InvalidParameter { parameter, detail }
                if parameter.starts_with("TOS") =>
            {
                ApiError::bad_request(detail)
                    .with_source(ErrorSource::Parameter(parameter.to_owned()))
            }
            InstanceError::InvalidParameter { parameter, detail } => {
                ApiError::invalid_parameter(parameter, detail)
            }
            // Hearth answers 409 where the original answers 500: the request conflicts
            // with the state of the instance, and the detail says how to resolve it.
            InstanceError::DeletionInProgress { .. } => ApiError::conflict(e.to_string()),
            InstanceError::InvalidToken(m) => ApiError::bad_request(m),
            InstanceError::ClientNotFound => ApiError::not_found("Client not found"),
            InstanceError::Store(s) => ApiError::from(s),
            InstanceError::Internal(ref m) => {
                tracing::error!(error = %m, "instance operation failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    crate::error::INTERNAL_DETAIL,
                )
            }
        }
    }
}

/// The JSON:API object of an instance (secrets removed, always: the original leaks
/// them on PATCH, Hearth does not).
fn resource(i: &Instance) -> Value {
    json!({
        "type": "instances",
        "id": i.id,
        "attributes": i.public_attributes(),
        "meta": {"rev": i.rev},
        "links": {"self": format!("/instances/{}", i.id)},
    })
}

type Params = Query<HashMap<String, String>>;

fn param<'a>(q: &'a HashMap<String, String>, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| q.get(*n))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// Go's lenient booleans; anything else is "not given".
fn boolean(q: &HashMap<String, String>, name: &str) -> Option<bool> {
    match param(q, &[name])? {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn list(q: &HashMap<String, String>, names: &[&str]) -> Option<Vec<String>> {
    param(q, names).map(|v| {
        v.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

fn integer(q: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    param(q, &[name])
        .map(|v| {
            v.trim().parse::<i64>().map_err(|_| {
                ApiError::invalid_parameter(name, format!("{name} must be an integer"))
            })
        })
        .transpose()
}

/// `GET /instances` — spec instances 4.1.
async fn list_instances(
    State(state): State<AppState>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let limit = integer(&q, "page[limit]")?
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    let skip = integer(&q, "page[skip]")?.unwrap_or(0).max(0) as usize;
    let (items, next) = state
        .instances
        .list(limit, param(&q, &["page[cursor]"]), skip)
        .await?;
    let mut body = json!({
        "data": items.iter().map(resource).collect::<Vec<_>>(),
        "meta": {"count": items.len()},
    });
    if let (Some(next), Some(limit)) = (next, limit) {
        body["links"] =
            json!({"next": format!("/instances?page[limit]={limit}&page[cursor]={next}")});
    }
    Ok(jsonapi(StatusCode::OK, body))
}

/// `GET /instances/count`.
async fn count_instances(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"count": state.instances.count().await?})))
}

/// `POST /instances` — spec instances 2.1 and 5.2.
async fn create_instance(
    State(state): State<AppState>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let domain = param(&q, &["Domain"]).ok_or_else(|| {
        ApiError::invalid_parameter("domain", "Domain name contains illegal characters")
    })?;
    let kdf = integer(&q, "KdfIterations")?.unwrap_or(0);
    // `-1` (the CLI's default) or nothing: the server chooses.
    let db_cluster = match integer(&q, "DbCluster")?.or(integer(&q, "CouchCluster")?) {
        Some(n) if n >= 0 => Some(n as usize),
        _ => None,
    };
    let opts = CreateOptions {
        domain: domain.to_owned(),
        db_cluster,
        domain_aliases: list(&q, &["DomainAliases"]).unwrap_or_default(),
        locale: param(&q, &["Locale"]).map(str::to_owned),
        passphrase: param(&q, &["Passphrase"]).map(str::to_owned),
        disk_quota: integer(&q, "DiskQuota")?
            .filter(|n| *n > 0)
            .map(|n| n as u64),
        email: param(&q, &["Email"]).map(str::to_owned),
        public_name: param(&q, &["PublicName"]).map(str::to_owned),
        phone: param(&q, &["Phone"]).map(str::to_owned),
        timezone: param(&q, &["Timezone"]).map(str::to_owned),
        settings: param(&q, &["Settings"]).map(str::to_owned),
        context: param(&q, &["ContextName"]).map(str::to_owned),
        uuid: param(&q, &["UUID"]).map(str::to_owned),
        oidc_id: param(&q, &["OIDCID"]).map(str::to_owned),
        franceconnect_id: param(&q, &["FranceConnectID"]).map(str::to_owned),
        old_domain: param(&q, &["OldDomain"]).map(str::to_owned),
        tos_signed: param(&q, &["TOSSigned"]).map(str::to_owned),
        tos_latest: param(&q, &["TOSLatest"]).map(str::to_owned),
        // The original reads only the lowercase spelling; both are accepted.
        sponsorships: list(&q, &["sponsorships", "Sponsorships"]).unwrap_or_default(),
        feature_sets: list(&q, &["feature_sets"]).unwrap_or_default(),
        magic_link: boolean(&q, "MagicLink"),
        auto_update: boolean(&q, "AutoUpdate"),
        kdf_iterations: u32::try_from(kdf).map_err(|_| {
            ApiError::invalid_parameter("KdfIterations", "The KdfIterations number is too low")
        })?,
    };
    let created = state.instances.create(opts).await?;
    let mut body = json!({"data": resource(&created)});
    // Spec instances 2.1 step 17: the apps are installed concurrently from the
    // registries; the instance exists whatever happens to them, and the ones that
    // failed are listed for the CLI to report.
    if let Some(apps) = list(&q, &["Apps"]).filter(|a| !a.is_empty()) {
        let installs = apps.iter().map(|slug| {
            let (state, created) = (&state, &created);
            async move {
                let source = format!("registry://{slug}/stable");
                match crate::apps::install(state, created, AppKind::Webapp, slug, Some(&source))
                    .await
                {
                    Ok(_) => None,
                    Err(e) => {
                        tracing::warn!(domain = %created.domain, slug, error = %e.detail, "app not installed at creation");
                        Some(slug.clone())
                    }
                }
            }
        });
        let failed: Vec<String> = futures_util::future::join_all(installs)
            .await
            .into_iter()
            .flatten()
            .collect();
        body["meta"] = json!({"apps_not_installed": failed});
    }
    Ok(jsonapi(StatusCode::CREATED, body))
}

/// `GET /instances/:domain`.
async fn show_instance(
    State(state): State<AppState>,
    Path(domain): Path<String>,
) -> Result<Response, ApiError> {
    let i = state.instances.get_str(&domain).await?;
    Ok(jsonapi(StatusCode::OK, json!({"data": resource(&i)})))
}

/// `GET /instances/:domain/prefix`: the instance's database prefix, a JSON string.
async fn show_prefix(
    State(state): State<AppState>,
    Path(domain): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(Value::String(
        state.instances.get_str(&domain).await?.prefix.clone(),
    )))
}

/// `GET /instances/:domain/fsck`: the files consistency check, one JSON problem per
/// line (`application/x-ndjson`), an empty body when all is well. The original's
/// `IndexIntegrity` / `FilesConsistency` / `FailFast` parameters are accepted and
/// ignored: Hearth has one check, the files one, and it always runs to its end.
async fn fsck(
    State(state): State<AppState>,
    Path(domain): Path<String>,
) -> Result<Response, ApiError> {
    let i = state.instances.get_str(&domain).await?;
    let problems = state.vfs.fsck(&i).await.map_err(crate::files::vfs_error)?;
    let mut body = Vec::new();
    for p in &problems {
        body.extend_from_slice(p.to_json().to_string().as_bytes());
        body.push(b'\n');
    }
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        body,
    )
        .into_response())
}

/// `PATCH /instances/:domain` — spec instances 4.4.
async fn modify_instance(
    State(state): State<AppState>,
    Path(domain): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let disk_quota = match integer(&q, "DiskQuota")? {
        Some(-1) => Some(None),
        Some(n) if n > 0 => Some(Some(n as u64)),
        _ => None,
    };
    let s = |names: &[&str]| param(&q, names).map(str::to_owned);
    let opts = ModifyOptions {
        deleting: boolean(&q, "Deleting"),
        locale: s(&["Locale"]),
        blocked: boolean(&q, "Blocked"),
        blocking_reason: s(&["BlockingReason"]),
        // `DomainAliases=,` (or any list of blanks) clears them.
        domain_aliases: q.get("DomainAliases").filter(|v| !v.is_empty()).map(|v| {
            v.split(',')
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect()
        }),
        old_domain: s(&["OldDomain"]),
        uuid: s(&["UUID"]),
        oidc_id: s(&["OIDCID"]),
        franceconnect_id: s(&["FranceConnectID"]),
        context: s(&["ContextName"]),
        magic_link: boolean(&q, "MagicLink"),
        sponsorships: list(&q, &["Sponsorships", "sponsorships"]),
        disk_quota,
        onboarding_finished: boolean(&q, "OnboardingFinished"),
        tos_signed: s(&["TOSSigned"]),
        tos_latest: s(&["TOSLatest"]),
        settings: s(&["Settings"]),
        email: s(&["Email"]),
        public_name: s(&["PublicName"]),
        phone: s(&["Phone"]),
        timezone: s(&["Timezone"]),
    };
    let i = state.instances.modify(&domain, opts).await?;
    Ok(jsonapi(StatusCode::OK, json!({"data": resource(&i)})))
}

/// `DELETE /instances/:domain` — spec instances 4.7.
async fn destroy_instance(
    State(state): State<AppState>,
    Path(domain): Path<String>,
) -> Result<StatusCode, ApiError> {
    destroy(&state, &domain).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The whole destruction of an instance: its jobs, its documents, its files (also
/// used by the removal of moved instances, `admin_move_target`).
pub(crate) async fn destroy(state: &AppState, domain: &str) -> Result<(), ApiError> {
    // With several nodes, one destruction of an instance at a time: a second one
    // waits, then finds the instance gone.
    let _held = match &state.instance_locks {
        Some(locks) => Some(
            locks
                .lock(&format!("instance:{}", domain.to_ascii_lowercase()))
                .await
                .map_err(|e| {
                    tracing::error!(domain = %domain, error = %e, "cannot take the instance's lock");
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the instance is locked by another operation; try again later",
                    )
                })?,
        ),
        None => None,
    };
    // Its triggers and queued jobs go first, so that nothing fires during the
    // destruction (spec instances 4.7 step 7).
    if let Ok(i) = state.instances.get_str(domain).await
        && let Err(e) = state.jobs.forget_instance(&i).await
    {
        tracing::warn!(domain = %domain, error = %e, "cannot drop the jobs of a destroyed instance");
    }
    state.instances.destroy(domain).await?;
    // Stores keyed by file id keep the content elsewhere than the instance's
    // directory (which `destroy` removed).
    if state.vfs.blobs().keyed_by_id()
        && let Err(e) = state.vfs.blobs().clear(domain).await
    {
        tracing::error!(domain = %domain, error = %e, "cannot remove the files of a destroyed instance");
    }
    Ok(())
}

/// `POST /instances/:domain/jobs/queue/:worker[?wait=true]` — pushes a job of any
/// worker (reserved ones too) with the body as its arguments; with `wait`, answers
/// once the job is done or errored (up to 10 minutes). 202 with the job document.
async fn push_job(
    State(state): State<AppState>,
    Path((domain, worker)): Path<(String, String)>,
    Query(q): Params,
    raw: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let i = state.instances.get_str(&domain).await?;
    state.jobs.check_worker(&worker, true)?;
    let message = if raw.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&raw)
            .map_err(|e| ApiError::bad_request(format!("the arguments are not valid JSON: {e}")))?
    };
    let mut job = state
        .jobs
        .push(
            &i,
            hearth_jobs::JobRequest {
                worker,
                message,
                manual: true,
                ..Default::default()
            },
        )
        .await?;
    if param(&q, &["wait", "Wait"]).is_some_and(|w| w == "true") {
        job = state
            .jobs
            .wait(&i, &job.id, std::time::Duration::from_secs(600))
            .await?;
    }
    Ok(jsonapi(StatusCode::ACCEPTED, Value::Object(job.to_doc())))
}

/// `GET /instances/:domain/jobs/:id` — a job document.
async fn get_job(
    State(state): State<AppState>,
    Path((domain, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let i = state.instances.get_str(&domain).await?;
    let job = state.jobs.get_job(&i, &id).await?;
    Ok(jsonapi(StatusCode::OK, Value::Object(job.to_doc())))
}

/// `GET /instances/:domain/triggers` — the trigger documents with their state.
async fn list_triggers(
    State(state): State<AppState>,
    Path(domain): Path<String>,
) -> Result<Response, ApiError> {
    let i = state.instances.get_str(&domain).await?;
    let mut out = Vec::new();
    for t in state.jobs.list_triggers(&i, &[], &[]).await? {
        let mut doc = t.to_doc();
        doc.insert(
            "current_state".into(),
            state.jobs.trigger_state(&i, &t.id).await?,
        );
        out.push(Value::Object(doc));
    }
    Ok(jsonapi(StatusCode::OK, Value::Array(out)))
}

/// `POST /instances/:domain/triggers/:id/launch` — runs a trigger's job now.
async fn launch_trigger(
    State(state): State<AppState>,
    Path((domain, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let i = state.instances.get_str(&domain).await?;
    let job = state.jobs.launch_trigger(&i, &id).await?;
    Ok(jsonapi(StatusCode::CREATED, Value::Object(job.to_doc())))
}

/// `GET /instances/:domain/apps?Kind=webapp|konnector` — the installed apps' documents.
async fn list_apps(
    State(state): State<AppState>,
    Path(domain): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let kind = parse_kind(param(&q, &["Kind"]))?;
    let i = state.instances.get_str(&domain).await?;
    let mut apps = state.apps.list(&i, kind).await?;
    apps.sort_by(|a, b| a.slug.cmp(&b.slug));
    let docs = apps.into_iter().map(|a| Value::Object(a.doc)).collect();
    Ok(jsonapi(StatusCode::OK, Value::Array(docs)))
}

/// `GET /instances/:domain/apps/:slug?Kind=` — an installed app's document.
async fn show_app(
    State(state): State<AppState>,
    Path((domain, slug)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let kind = parse_kind(param(&q, &["Kind"]))?;
    let i = state.instances.get_str(&domain).await?;
    let app = state.apps.get(&i, kind, &slug).await?;
    Ok(jsonapi(StatusCode::OK, Value::Object(app.doc)))
}

/// `POST /instances/:domain/apps/:slug?Source=&Kind=` — installs (from
/// `registry://<slug>/stable` by default): 201 with the document.
async fn install_app(
    State(state): State<AppState>,
    Path((domain, slug)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let kind = parse_kind(param(&q, &["Kind"]))?;
    let i = state.instances.get_str(&domain).await?;
    let app = crate::apps::install(&state, &i, kind, &slug, param(&q, &["Source"])).await?;
    Ok(jsonapi(StatusCode::CREATED, Value::Object(app.doc)))
}

/// `PUT /instances/:domain/apps/:slug?Source=&Kind=` — updates: 200 with the document.
async fn update_app(
    State(state): State<AppState>,
    Path((domain, slug)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let kind = parse_kind(param(&q, &["Kind"]))?;
    let i = state.instances.get_str(&domain).await?;
    let app = crate::apps::update(&state, &i, kind, &slug, param(&q, &["Source"])).await?;
    Ok(jsonapi(StatusCode::OK, Value::Object(app.doc)))
}

/// `DELETE /instances/:domain/apps/:slug?Kind=` — uninstalls (and deletes the app's
/// triggers): 200 with the removed document.
async fn uninstall_app(
    State(state): State<AppState>,
    Path((domain, slug)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let kind = parse_kind(param(&q, &["Kind"]))?;
    let i = state.instances.get_str(&domain).await?;
    let app = crate::apps::uninstall(&state, &i, kind, &slug).await?;
    Ok(jsonapi(StatusCode::OK, Value::Object(app.doc)))
}

/// `DELETE /instances/:domain/sessions`.
async fn clean_sessions(
    State(state): State<AppState>,
    Path(domain): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.instances.clean_sessions(&domain).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Parses `30m`, `1h30m`, `45s`, `2d` (and a bare number of seconds).
fn duration(s: &str) -> Option<Duration> {
    if let Ok(n) = s.parse::<u64>() {
        return Some(Duration::from_secs(n));
    }
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
    }
    num.is_empty().then_some(Duration::from_secs(total))
}

/// `POST /instances/token` — a token for an instance, as `text/plain`.
async fn create_token(
    State(state): State<AppState>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let domain = param(&q, &["Domain"])
        .ok_or_else(|| ApiError::invalid_parameter("Domain", "Domain is required"))?;
    let aud_name = param(&q, &["Audience"]).unwrap_or("");
    let aud = Audience::parse(aud_name)
        .ok_or_else(|| ApiError::bad_request(format!("Unknown audience {aud_name}")))?;
    let expire = match param(&q, &["Expire"]) {
        None | Some("0s") | Some("0") => None,
        Some(e) => Some(duration(e).ok_or_else(|| {
            ApiError::invalid_parameter("Expire", "Expire must be a duration such as 30m")
        })?),
    };
    let token = state
        .instances
        .issue_token(
            domain,
            aud,
            param(&q, &["Subject"]).unwrap_or(""),
            param(&q, &["Scope"]).unwrap_or(""),
            expire,
        )
        .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], token).into_response())
}

/// `POST /instances/oauth_client` — registers an OAuth client for an instance; a
/// refused registration is 400 with its description as text (spec instances 5.2).
async fn create_oauth_client(
    State(state): State<AppState>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let domain = param(&q, &["Domain"])
        .ok_or_else(|| ApiError::invalid_parameter("Domain", "Domain is required"))?;
    let meta = hearth_instances::oauth::ClientMetadata {
        redirect_uris: param(&q, &["RedirectURI"])
            .map(|u| vec![u.to_owned()])
            .unwrap_or_default(),
        client_name: param(&q, &["ClientName"]).unwrap_or("").to_owned(),
        software_id: param(&q, &["SoftwareID"]).unwrap_or("").to_owned(),
        allow_login_scope: boolean(&q, "AllowLoginScope").unwrap_or(false),
        ..Default::default()
    };
    match state.instances.register_client(domain, meta).await? {
        Ok(client) => Ok(Json(client).into_response()),
        Err(e) => Ok((
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            e.description,
        )
            .into_response()),
    }
}

/// `GET /instances/oauth_client?domain=&software_id=` — the client of a software.
async fn find_oauth_client(
    State(state): State<AppState>,
    Query(q): Params,
) -> Result<Json<Value>, ApiError> {
    let domain = param(&q, &["domain", "Domain"])
        .ok_or_else(|| ApiError::invalid_parameter("domain", "domain is required"))?;
    let software = param(&q, &["software_id", "SoftwareID"])
        .ok_or_else(|| ApiError::invalid_parameter("software_id", "software_id is required"))?;
    Ok(Json(state.instances.find_client(domain, software).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(duration("5x"), None);
        assert_eq!(duration("5m3"), None);
    }

    #[test]
    fn both_hash_formats() {
        let cozy = passphrase::hash("secret", hearth_instances::ScryptCost::FAST).unwrap();
        assert!(verify_hash("secret", &cozy));
        assert!(!verify_hash("other", &cozy));
        assert!(!verify_hash("secret", "garbage"));
    }
}
