//! Server-wide routes that belong to no instance: `GET /version` and `GET /status`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::AppState;
use crate::error::ErrorChain;

/// How long `/status` waits for a backend before calling it unhealthy.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// What `GET /version` answers (the same members as the original server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    pub version: &'static str,
    /// `production` for release builds, `development` otherwise.
    pub build_mode: &'static str,
    pub build_time: &'static str,
    pub runtime_version: &'static str,
}

impl VersionInfo {
    /// The version of this build.
    pub fn current() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
            build_mode: if cfg!(debug_assertions) {
                "development"
            } else {
                "production"
            },
            build_time: option_env!("HEARTH_BUILD_TIME").unwrap_or("unknown"),
            runtime_version: option_env!("HEARTH_RUSTC_VERSION").unwrap_or("unknown"),
        }
    }
}

/// `GET /version` — the server's version and build (not instance-specific).
pub(crate) async fn get_version() -> Json<VersionInfo> {
    Json(VersionInfo::current())
}

/// The body of `GET /status`; `couchdb` is the document store, named as in the original.
#[derive(Debug, Serialize)]
pub(crate) struct StatusBody {
    cache: &'static str,
    couchdb: &'static str,
    fs: &'static str,
    status: &'static str,
    message: &'static str,
}

/// `GET /status` — 200 when every backend answers, 502 naming the failing one otherwise.
///
/// The cache is in-process and the file system has no health check of its own yet
/// (it arrives with the blob store), so only the document store can fail for now.
/// Failures are logged; the body only says `unhealthy`, as the route needs no token.
pub(crate) async fn get_status(State(state): State<AppState>) -> (StatusCode, Json<StatusBody>) {
    let store_ok = match tokio::time::timeout(HEALTH_TIMEOUT, state.store.health()).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::error!(store = state.store.kind(), error = %ErrorChain(&err), "document store is unhealthy");
            false
        }
        Err(_) => {
            tracing::error!(
                store = state.store.kind(),
                "document store health check timed out"
            );
            false
        }
    };
    let (code, status) = if store_ok {
        (StatusCode::OK, "OK")
    } else {
        (StatusCode::BAD_GATEWAY, "KO")
    };
    let body = StatusBody {
        cache: "healthy",
        couchdb: if store_ok { "healthy" } else { "unhealthy" },
        fs: "healthy",
        status,
        // The original repeats the status here for older clients.
        message: status,
    };
    (code, Json(body))
}

/// `GET /data/` — spec core-api B.6.
pub(crate) async fn data_welcome(_: crate::Inst) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"message": "welcome to a cozy API"}))
}
