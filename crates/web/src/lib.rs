//! Hearth's HTTP layer: the axum routers, their shared middleware and error rendering.
//!
//! Only this crate knows HTTP. [`router`] builds the public server, [`admin_router`]
//! the loopback admin API, and [`serve`] runs either with graceful shutdown. Every error
//! a route returns goes through [`ApiError`], [`CouchError`] or [`PlainError`]
//! (spec core-api B.2).

mod error;
mod layers;
mod system;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use hearth_store::DocStore;
use tokio::net::TcpListener;

pub use error::{
    ApiError, CouchError, ErrorChain, ErrorSource, INTERNAL_DETAIL, JSON_API, PlainError,
};
pub use layers::REQUEST_ID_HEADER;
pub use system::VersionInfo;

/// The default cap on request bodies (routes that stream uploads set their own).
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// What every handler can reach: the backends and the HTTP settings.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn DocStore>,
    /// The largest request body accepted, in bytes (413 beyond).
    pub body_limit: usize,
}

impl AppState {
    pub fn new(store: Arc<dyn DocStore>) -> Self {
        Self {
            store,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }

    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store.kind())
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

/// The public server's router.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/version", get(system::get_version))
        .route("/status", get(system::get_status));
    finish(routes, state)
}

/// The admin API's router, to be bound on loopback only. It serves `/version` for now;
/// the instance management routes (spec instances §5) come later.
pub fn admin_router(state: AppState) -> Router {
    let routes = Router::new().route("/version", get(system::get_version));
    finish(routes, state)
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting
/// connections and waits for in-flight requests to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Adds the fallbacks (which must come after every route) and the shared middleware.
fn finish(routes: Router<AppState>, state: AppState) -> Router {
    let body_limit = state.body_limit;
    let routes = routes
        .method_not_allowed_fallback(error::method_not_allowed)
        .fallback(error::route_not_found)
        .with_state(state);
    layers::with_common_layers(routes, body_limit)
}
