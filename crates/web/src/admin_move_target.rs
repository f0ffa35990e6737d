//! Admin routes for moves driven by the operator (`hearth instances move`), and the
//! removal of moved instances once their time is up.
//!
//! - `GET /instances/:domain/move/usage` → `{"used", "quota"}`: the bytes of the
//!   instance's files and versions, its quota (`null`: unlimited). The CLI reads the
//!   source's before anything is blocked.
//! - `POST /instances/:domain/move/token` → `{"client_id", "client_secret", "token",
//!   "used", "quota"}`: on the target, an OAuth client and an access token with the
//!   move scope (what the wizard gets from the target's authorize page, spec move 3.4),
//!   handed to the source's `POST /instances/:domain/move`.
//! - `GET /instances/:domain/move/status` → `{"state", "moved_from"?, "job_id"?,
//!   "error"?, "report"?}`: where the target is (`idle`, `waiting`, `importing`,
//!   `done`, `errored`).
//!
//! [`deletion_sweep`] destroys, every hour, the instances whose
//! `deletion_scheduled_at` has passed (a moved source, 30 days after the move).

use std::time::Duration;

use axum::{
    Json, Router,
    extract::{Path, State},
    routing::{get, post},
};
use hearth_core::{Doctype, InstanceId, JsonMap};
use hearth_instances::{Audience, Instance};
use hearth_move::moving::{BLOCK_MOVING, MOVE_SCOPE};
use hearth_store::{StoreError, mango::FindQuery};
use serde_json::{Value, json};

use crate::{AppState, error::ApiError, files::vfs_error};

/// The software id of the client the token is issued for (as the Cozy stack's CLI).
const SOFTWARE_ID: &str = "github.com/cozy/cozy-stack";
const CLIENT_NAME: &str = "hearth instances move";
/// The client never goes through a browser; registration still wants a URI.
const REDIRECT_URI: &str = "hearth-cli://move";
/// How long after start the first sweep runs, then how often.
const FIRST_SWEEP: Duration = Duration::from_secs(60);
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/instances/{domain}/move/usage", get(usage))
        .route("/instances/{domain}/move/token", post(token))
        .route("/instances/{domain}/move/status", get(status))
}

/// `{"used": <bytes>, "quota": <bytes or null>}` of an instance.
async fn usage_of(state: &AppState, i: &Instance) -> Result<JsonMap, ApiError> {
    let used = state.vfs.usage(i).await.map_err(vfs_error)?.total();
    let mut m = JsonMap::new();
    m.insert("used".into(), json!(used));
    m.insert(
        "quota".into(),
        hearth_vfs::quota_of(i).map_or(Value::Null, |q| json!(q)),
    );
    Ok(m)
}

/// `GET /instances/:domain/move/usage`.
async fn usage(
    State(state): State<AppState>,
    Path(domain): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let i = state.instances.get_str(&domain).await?;
    Ok(Json(Value::Object(usage_of(&state, &i).await?)))
}

/// `POST /instances/:domain/move/token`: a new client and a 7-day access token.
async fn token(
    State(state): State<AppState>,
    Path(domain): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let i = state.instances.get_str(&domain).await?;
    let meta = hearth_instances::oauth::ClientMetadata {
        redirect_uris: vec![REDIRECT_URI.into()],
        client_name: CLIENT_NAME.into(),
        software_id: SOFTWARE_ID.into(),
        ..Default::default()
    };
    let client = state
        .instances
        .register_client(&i.domain, meta)
        .await?
        .map_err(|e| ApiError::bad_request(e.description))?;
    let field = |k: &str| {
        client
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                ApiError::internal(&std::io::Error::other(format!(
                    "the registered client has no {k}"
                )))
            })
    };
    let (client_id, client_secret) = (field("client_id")?, field("client_secret")?);
    let token = state
        .instances
        .issue_token(&i.domain, Audience::Access, &client_id, MOVE_SCOPE, None)
        .await?;
    tracing::info!(domain = %i.domain, client = %client_id, "move token issued to the operator");
    let mut out = usage_of(&state, &i).await?;
    out.insert("client_id".into(), Value::String(client_id));
    out.insert("client_secret".into(), Value::String(client_secret));
    out.insert("token".into(), Value::String(token));
    Ok(Json(Value::Object(out)))
}

fn doctype(name: &str) -> Result<Doctype, ApiError> {
    Doctype::new(name).map_err(|e| ApiError::internal(&e))
}

/// The newest import record of a domain (by `started_at`), if any.
async fn newest_import(state: &AppState, domain: &str) -> Result<Option<JsonMap>, ApiError> {
    let q = FindQuery::parse(&json!({"selector": {"domain": domain}}))?;
    let docs = match state
        .instances
        .store()
        .find(&InstanceId::global(), &doctype(hearth_move::IMPORTS)?, &q)
        .await
    {
        Ok(r) => r.docs,
        Err(StoreError::NotFound(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let started = |d: &JsonMap| {
        d.get("started_at")
            .and_then(Value::as_str)
            .and_then(hearth_core::parse_rfc3339)
            .unwrap_or(0)
    };
    Ok(docs.into_iter().max_by_key(started))
}

/// `GET /instances/:domain/move/status`: `waiting` while blocked `MOVING` (the
/// source exports), `importing` while blocked `IMPORTING` or flagged `importing`,
/// then the newest import record decides (`done` with its report, `errored` with its
/// error; a record still running is `importing`); `idle` when there is none. The
/// record's id is `job_id`, so that a caller can tell a new import from an old one.
async fn status(
    State(state): State<AppState>,
    Path(domain): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let i = state.instances.get_str(&domain).await?;
    let settings =
        hearth_move::moving::instance_settings(state.instances.store().as_ref(), &i).await?;
    let mut out = JsonMap::new();
    let reason = i.blocking_reason.as_deref().unwrap_or("");
    let flagged = settings
        .get("importing")
        .is_some_and(|v| !v.is_null() && *v != Value::Bool(false));
    let record = newest_import(&state, &i.domain).await?;
    if let Some(r) = &record
        && let Some(id) = r.get("_id")
    {
        out.insert("job_id".into(), id.clone());
    }
    let state_name = if i.blocked && reason == BLOCK_MOVING {
        "waiting"
    } else if (i.blocked && reason == hearth_move::BLOCK_IMPORTING) || flagged {
        "importing"
    } else {
        match &record {
            None => "idle",
            Some(r) => match r.get("state").and_then(Value::as_str) {
                Some("done") => {
                    if let Some(report) = r.get("report") {
                        out.insert("report".into(), report.clone());
                    }
                    "done"
                }
                Some("errored") => {
                    if let Some(error) = r.get("error") {
                        out.insert("error".into(), error.clone());
                    }
                    "errored"
                }
                _ => "importing",
            },
        }
    };
    out.insert("state".into(), Value::String(state_name.into()));
    if let Some(from) = settings.get("moved_from").filter(|v| !v.is_null()) {
        out.insert("moved_from".into(), from.clone());
    }
    Ok(Json(Value::Object(out)))
}

/// Destroys, every hour (the first time a minute after start), the instances whose
/// `deletion_scheduled_at` has passed. Runs until the runtime stops.
pub(crate) async fn deletion_sweep(state: AppState) {
    tokio::time::sleep(FIRST_SWEEP).await;
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        let n = destroy_due_instances(&state).await;
        if n > 0 {
            tracing::info!(count = n, "moved instances destroyed after their time");
        }
    }
}

/// One pass of [`deletion_sweep`]: answers how many instances were destroyed. An
/// instance that cannot be destroyed is logged and tried again at the next pass.
pub(crate) async fn destroy_due_instances(state: &AppState) -> usize {
    let now = crate::wizard::now_secs();
    let mut due = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (page, next) = match state.instances.list(Some(500), cursor.as_deref(), 0).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the instances to remove the moved ones");
                return 0;
            }
        };
        for i in page {
            let Some(at) = i.deletion_scheduled_at.as_deref() else {
                continue;
            };
            match hearth_core::parse_rfc3339(at) {
                Some(t) if t <= now => due.push(i.domain),
                Some(_) => {}
                None => {
                    tracing::warn!(domain = %i.domain, date = %at, "unreadable deletion_scheduled_at; the instance is kept")
                }
            }
        }
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    let mut destroyed = 0;
    for domain in due {
        match crate::admin::destroy(state, &domain).await {
            Ok(()) => {
                tracing::info!(domain = %domain, "instance destroyed: its deletion date has passed");
                destroyed += 1;
            }
            Err(e) => {
                tracing::error!(domain = %domain, error = ?e, "cannot destroy an instance whose deletion date has passed")
            }
        }
    }
    destroyed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use base64::Engine;
    use hearth_instances::{CreateOptions, Instances, InstancesConfig, ScryptCost};
    use hearth_store::DocStore;
    use hearth_store_sqlite::{SqliteOptions, SqliteStore};
    use tower::ServiceExt;

    use super::*;
    use crate::AdminAuth;

    async fn state(dir: &std::path::Path) -> AppState {
        let store: Arc<dyn DocStore> =
            Arc::new(SqliteStore::open(dir.join("db"), SqliteOptions::default()).unwrap());
        let config = InstancesConfig {
            fs_root: dir.join("files"),
            scrypt: ScryptCost::FAST,
        };
        let instances = Arc::new(Instances::open(store.clone(), config).await.unwrap());
        AppState::new(store, instances).with_admin_auth(AdminAuth::new(Some("pw".into()), vec![]))
    }

    /// `GET /instances/:domain` on the admin API, served on a loopback port.
    async fn admin_status(addr: std::net::SocketAddr, domain: &str) -> u16 {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode(":pw");
        let request = format!(
            "GET /instances/{domain} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"
        );
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = stream;
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn moved_instances_are_destroyed_after_their_date() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path()).await;
        state.start().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admin = crate::admin_router(state.clone());
        tokio::spawn(crate::serve(
            listener,
            admin.clone(),
            std::future::pending(),
        ));
        for d in ["past.localhost", "future.localhost", "kept.localhost"] {
            state
                .instances
                .create(CreateOptions {
                    domain: d.into(),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let past = hearth_core::rfc3339(now - 60);
        let future = hearth_core::rfc3339(now + 24 * 3600);
        let instances = &state.instances;
        instances
            .set_moved("past.localhost", Some(past), "MOVING")
            .await
            .unwrap();
        instances
            .set_moved("future.localhost", Some(future.clone()), "MOVING")
            .await
            .unwrap();
        let files = instances.instance_dir("past.localhost");
        tokio::fs::create_dir_all(&files).await.unwrap();

        assert_eq!(destroy_due_instances(&state).await, 1);
        assert_eq!(admin_status(addr, "past.localhost").await, 404);
        assert_eq!(admin_status(addr, "future.localhost").await, 200);
        assert_eq!(admin_status(addr, "kept.localhost").await, 200);
        assert!(!files.exists(), "the files of a destroyed instance stay");
        // The domain is free again.
        instances
            .create(CreateOptions {
                domain: "past.localhost".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let future_doc = instances.get_str("future.localhost").await.unwrap();
        assert_eq!(future_doc.deletion_scheduled_at.as_deref(), Some(&*future));
        // Nothing more is due: a second pass destroys nothing.
        assert_eq!(destroy_due_instances(&state).await, 0);
        let res = admin
            .oneshot(
                Request::get("/instances/future.localhost/move/status")
                    .header(
                        "authorization",
                        format!(
                            "Basic {}",
                            base64::engine::general_purpose::STANDARD.encode(":pw")
                        ),
                    )
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}
