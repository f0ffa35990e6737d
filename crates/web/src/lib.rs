//! Hearth's HTTP layer: the axum routers, their shared middleware and error rendering.
//!
//! Only this crate knows HTTP. [`router`] builds the public server, [`admin_router`]
//! the loopback admin API, and [`serve`] runs either with graceful shutdown. Every error
//! a route returns goes through [`ApiError`], [`CouchError`] or [`PlainError`]
//! (spec core-api B.2).

mod admin;
mod admin_checks;
mod admin_move;
mod admin_move_target;
mod admin_raw;
mod apps;
mod auth;
mod data;
mod error;
mod files;
mod imports;
mod instance;
mod jobs;
mod layers;
mod metrics;
mod move_source;
mod move_target;
mod moves;
mod oauth;
mod pages;
mod realtime;
mod serve_app;
mod settings;
mod settings_page;
mod system;
mod token;
mod wizard;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use hearth_apps::{Apps, Registries};
use hearth_instances::Instances;
use hearth_jobs::{Jobs, JobsConfig};
use hearth_mail::{MailConfig, Mailer};
use hearth_store::DocStore;
use hearth_store::events::{EventHub, EventedStore};
use hearth_vfs::{LocalBlobStore, Vfs};
use tokio::net::TcpListener;

pub use admin::AdminAuth;
pub use auth::{FailureCounter, HitFuture, LoginThrottle};
pub use error::{
    ApiError, CouchError, ErrorChain, ErrorSource, INTERNAL_DETAIL, JSON_API, PlainError,
};
pub use instance::{Family, Inst};
pub use layers::REQUEST_ID_HEADER;
pub use system::VersionInfo;
pub use token::Perm;

/// The default cap on request bodies (routes that stream uploads set their own).
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// What every handler can reach: the services, the backends and the HTTP settings.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn DocStore>,
    pub instances: Arc<Instances>,
    /// How the admin API checks its passphrase.
    pub admin_auth: AdminAuth,
    /// The largest request body accepted, in bytes (413 beyond).
    pub body_limit: usize,
    /// Failed logins per instance; too many block it (`auth.login_failures_per_hour`).
    pub login_throttle: Arc<LoginThrottle>,
    /// Request counters for `GET /metrics` on the admin API.
    pub metrics: Arc<metrics::Metrics>,
    /// The files service (by default on the local disk, under the instances' `fs_root`).
    pub vfs: Arc<Vfs>,
    /// Document events of every write through `store`, for the realtime websocket.
    pub events: EventHub,
    /// Background jobs and triggers (started by [`AppState::start`]).
    pub jobs: Arc<Jobs>,
    /// Renders and sends the server's mails.
    pub mailer: Arc<Mailer>,
    /// Installed apps and konnectors.
    pub apps: Arc<Apps>,
    /// Imports of archives into instances (the `import` worker's service).
    pub imports: Arc<hearth_move::Imports>,
    /// Web apps are served on `<first label>-<slug>.<rest>` rather than on
    /// `<slug>.<instance domain>` (config `subdomains: flat`).
    pub flat_subdomains: bool,
    /// Locks shared by the nodes serving the same instances (Redis): files tree
    /// changes and instance destruction run on one node at a time. `None` on a
    /// single node.
    pub instance_locks: Option<Arc<dyn hearth_vfs::InstanceLock>>,
    jobs_config: JobsConfig,
    /// The jobs broker shared by several nodes; the in-process one when `None`.
    broker: Option<Arc<dyn hearth_jobs::Broker>>,
    konnectors_cmd: Option<std::path::PathBuf>,
    /// The smallest export part (1 GiB; tests lower it).
    export_min_parts_size: i64,
    /// Moves between servers: the wizard's address, the life of a moved source.
    pub move_settings: MoveSettings,
}

/// Settings of moves (config `move.*`).
#[derive(Debug, Clone)]
pub struct MoveSettings {
    /// The host on which this server serves the move wizard (`move.domain`, e.g.
    /// `move.example.net`); no wizard when `None`.
    pub wizard_domain: Option<String>,
    /// The wizard's address that `/move/initialize` sends people to (`move.url`);
    /// by default `<scheme>://<wizard_domain>/`.
    pub wizard_url: Option<String>,
    /// How long a moved source is kept before it is destroyed (30 days).
    pub delete_after: std::time::Duration,
}

impl Default for MoveSettings {
    fn default() -> Self {
        Self {
            wizard_domain: None,
            wizard_url: None,
            delete_after: std::time::Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl AppState {
    /// The state over `store`. Unless `store` already is an [`EventedStore`] (wrap it
    /// before building `instances` so that their writes publish events too), it is
    /// wrapped in one here, so every write made through the state publishes events.
    pub fn new(store: Arc<dyn DocStore>, instances: Arc<Instances>) -> Self {
        let (store, events) = match store.event_hub().cloned() {
            Some(hub) => (store, hub),
            None => {
                let hub = EventHub::new();
                let evented: Arc<dyn DocStore> = Arc::new(EventedStore::new(store, hub.clone()));
                (evented, hub)
            }
        };
        let blobs = Arc::new(LocalBlobStore::new(instances.fs_root()));
        // Without a relay, mails go to `<data dir>/mail/outbox` beside the files.
        let outbox = instances
            .fs_root()
            .parent()
            .map_or_else(|| instances.fs_root().join("mail"), |p| p.join("mail"))
            .join("outbox");
        #[allow(clippy::expect_used)]
        let mailer = Mailer::new(MailConfig::default(), outbox)
            .expect("the default mail settings and the embedded templates are valid");
        let vfs = Arc::new(Vfs::new(store.clone(), blobs));
        let jobs_config = JobsConfig::default();
        let mailer = Arc::new(mailer);
        let apps = Arc::new(Apps::new(
            store.clone(),
            instances.clone(),
            apps_root(&instances),
            Registries::new(),
        ));
        let (jobs, imports) = build_jobs(
            &store,
            &instances,
            &vfs,
            &mailer,
            &apps,
            None,
            None,
            &jobs_config,
            hearth_move::MIN_PARTS_SIZE,
        );
        Self {
            jobs,
            imports,
            apps,
            flat_subdomains: false,
            instance_locks: None,
            konnectors_cmd: None,
            vfs,
            store,
            instances,
            admin_auth: AdminAuth::default(),
            body_limit: DEFAULT_BODY_LIMIT,
            login_throttle: Arc::default(),
            metrics: Arc::default(),
            events,
            mailer,
            jobs_config,
            broker: None,
            export_min_parts_size: hearth_move::MIN_PARTS_SIZE,
            move_settings: MoveSettings::default(),
        }
    }

    /// Sets the move wizard's address and the life of moved sources.
    pub fn with_move_settings(mut self, settings: MoveSettings) -> Self {
        self.move_settings = settings;
        self
    }

    /// Lowers the smallest export part below 1 GiB (tests: several parts from a few
    /// small files).
    pub fn with_export_min_parts_size(mut self, bytes: i64) -> Self {
        self.export_min_parts_size = bytes;
        self.rebuild_jobs()
    }

    /// Blocks an instance (`LOGIN_FAILED`) at this many failed logins within an
    /// hour; 0 never blocks.
    pub fn with_login_failures_per_hour(mut self, limit: u32) -> Self {
        self.login_throttle = Arc::new(LoginThrottle::new(limit));
        self
    }

    /// Counts failed logins in a store shared by several nodes (Redis), with the
    /// limit that counter has; the in-process count stands in while it fails.
    pub fn with_shared_login_failures(mut self, counter: Arc<dyn FailureCounter>) -> Self {
        self.login_throttle = Arc::new(LoginThrottle::shared(counter));
        self
    }

    /// Uses another files service (another blob store); build it over `self.store`
    /// so that its writes publish realtime events.
    pub fn with_vfs(mut self, vfs: Arc<Vfs>) -> Self {
        if let Some(locks) = &self.instance_locks {
            vfs.set_instance_lock(locks.clone());
        }
        self.vfs = vfs;
        self.rebuild_jobs()
    }

    /// Takes these locks, shared with the other nodes, around files tree changes
    /// (in addition to the in-process ones) and instance destruction.
    pub fn with_instance_locks(mut self, locks: Arc<dyn hearth_vfs::InstanceLock>) -> Self {
        if !self.vfs.set_instance_lock(locks.clone()) {
            tracing::warn!("the files service already had a shared lock; kept it");
        }
        self.instance_locks = Some(locks);
        self
    }

    /// Uses these jobs settings and this mailer (before [`AppState::start`]).
    pub fn with_jobs(mut self, config: JobsConfig, mailer: Mailer) -> Self {
        self.jobs_config = config;
        self.mailer = Arc::new(mailer);
        self.rebuild_jobs()
    }

    /// Looks apps up in these registries (per context) and runs konnectors with
    /// this command (before [`AppState::start`]).
    pub fn with_apps(
        mut self,
        registries: Registries,
        konnectors_cmd: Option<std::path::PathBuf>,
    ) -> Self {
        self.apps = Arc::new(Apps::new(
            self.store.clone(),
            self.instances.clone(),
            apps_root(&self.instances),
            registries,
        ));
        self.konnectors_cmd = konnectors_cmd;
        self.rebuild_jobs()
    }

    /// Queues jobs through this broker (shared by several nodes, e.g. Redis) rather
    /// than the in-process one (before [`AppState::start`]).
    pub fn with_broker(mut self, broker: Arc<dyn hearth_jobs::Broker>) -> Self {
        self.broker = Some(broker);
        self.rebuild_jobs()
    }

    fn rebuild_jobs(mut self) -> Self {
        (self.jobs, self.imports) = build_jobs(
            &self.store,
            &self.instances,
            &self.vfs,
            &self.mailer,
            &self.apps,
            self.broker.clone(),
            self.konnectors_cmd.clone(),
            &self.jobs_config,
            self.export_min_parts_size,
        );
        self.imports.set_flat_subdomains(self.flat_subdomains);
        self
    }

    /// Starts the background work: queued jobs of a previous run, runners and the
    /// trigger scheduler.
    pub async fn start(&self) -> Result<(), hearth_jobs::JobsError> {
        self.jobs.start().await?;
        // Expired exports go every hour (and once now: a server that was stopped
        // for a while catches up).
        let exports = self.exports();
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                tick.tick().await;
                if let Err(e) = exports.remove_expired().await {
                    tracing::warn!(error = %e, "cannot remove expired exports");
                }
                // Move requests nobody confirmed, wizard records of moves left half-way.
                for doctype in [hearth_move::moving::REQUESTS, wizard::WIZARD_DOCTYPE] {
                    match hearth_move::moving::remove_expired(store.as_ref(), doctype).await {
                        Ok(0) => {}
                        Ok(n) => {
                            tracing::info!(doctype, removed = n, "expired move records removed")
                        }
                        Err(e) => {
                            tracing::warn!(doctype, error = %e, "cannot remove expired move records")
                        }
                    }
                }
            }
        });
        // Moved instances are destroyed once their deletion date has passed.
        tokio::spawn(admin_move_target::deletion_sweep(self.clone()));
        // A move's target is never left blocked (spec move 5).
        tokio::spawn(imports::move_watchdog(self.clone()));
        Ok(())
    }

    /// Serves web apps on flat subdomains (`alice-drive.example.net`).
    pub fn with_flat_subdomains(mut self, flat: bool) -> Self {
        self.flat_subdomains = flat;
        self.imports.set_flat_subdomains(flat);
        self
    }

    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    pub fn with_admin_auth(mut self, auth: AdminAuth) -> Self {
        self.admin_auth = auth;
        self
    }
}

/// Apps are installed under `<data dir>/apps`, beside the files.
fn apps_root(instances: &Instances) -> std::path::PathBuf {
    instances
        .fs_root()
        .parent()
        .map_or_else(|| instances.fs_root().join("apps"), |p| p.join("apps"))
}

/// The jobs service with the built-in workers.
#[allow(clippy::too_many_arguments)]
fn build_jobs(
    store: &Arc<dyn DocStore>,
    instances: &Arc<Instances>,
    vfs: &Arc<Vfs>,
    mailer: &Arc<Mailer>,
    apps: &Arc<Apps>,
    broker: Option<Arc<dyn hearth_jobs::Broker>>,
    konnectors_cmd: Option<std::path::PathBuf>,
    config: &JobsConfig,
    export_min_parts_size: i64,
) -> (Arc<Jobs>, Arc<hearth_move::Imports>) {
    let mut imports = None;
    // The import worker reaches the triggers through a weak reference to the jobs
    // service that runs it.
    let jobs = Arc::new_cyclic(|weak| {
        let jobs = match broker {
            Some(broker) => {
                Jobs::with_broker(store.clone(), instances.clone(), config.clone(), broker)
            }
            None => Jobs::new(store.clone(), instances.clone(), config.clone()),
        };
        hearth_jobs::workers::register(
            &jobs,
            &hearth_jobs::workers::Builtins {
                instances: instances.clone(),
                vfs: vfs.clone(),
                mailer: mailer.clone(),
                apps: apps.clone(),
                konnectors_cmd,
            },
        );
        let exports = hearth_move::Exports::new(store.clone(), instances.clone(), vfs.clone())
            .with_min_parts_size(export_min_parts_size);
        hearth_move::register(&jobs, Arc::new(exports), mailer.clone());
        let imp = Arc::new(hearth_move::Imports::new(
            vfs.clone(),
            apps.clone(),
            weak.clone(),
        ));
        hearth_move::register_import(&jobs, imp.clone(), mailer.clone());
        imports = Some(imp);
        jobs
    });
    #[allow(clippy::expect_used)]
    let imports = imports.expect("set while building the jobs service");
    (jobs, imports)
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store.kind())
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

/// The public server's router: server-wide routes, then the instance route families,
/// each behind the middleware that resolves `Host` and checks the instance's state.
pub fn router(state: AppState) -> Router {
    let instance = |family: Family| {
        axum::middleware::from_fn_with_state((state.clone(), family), instance::resolve)
    };
    let pages = Router::new()
        .merge(oauth::routes())
        .merge(move_target::page_routes())
        .merge(settings_page::routes())
        .route_layer(instance(Family::Pages));
    let api = Router::new()
        .route("/data/", get(system::data_welcome))
        .route("/permissions/self", get(token::permissions_self))
        .route(
            "/permissions",
            axum::routing::post(token::create_permission),
        )
        .merge(data::routes())
        .merge(files::routes())
        .merge(realtime::routes())
        .merge(jobs::routes())
        .route_layer(instance(Family::Api));
    let unblocked = settings::routes()
        .merge(moves::routes())
        .merge(imports::routes())
        .merge(move_source::routes())
        .merge(move_target::routes())
        .merge(files::settings_routes())
        .merge(apps::routes())
        .route_layer(instance(Family::Unblocked));
    let routes = Router::new()
        .route("/version", get(system::get_version))
        .route("/status", get(system::get_status))
        .merge(pages)
        .merge(api)
        .merge(unblocked)
        .merge(auth::routes(state.clone()))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::count,
        ));
    // App hosts are served before any route; instance hosts get CORS for their apps.
    let front = axum::middleware::from_fn_with_state(state.clone(), serve_app::front);
    // The move wizard's host (`move.domain`) is served before anything else.
    let wizard = axum::middleware::from_fn_with_state(state.clone(), wizard::front);
    finish_with(routes, state, |r| r.layer(front).layer(wizard))
}

/// The admin API's router (spec instances 5), to be bound on loopback only; every
/// route needs the admin passphrase.
pub fn admin_router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/version", get(system::get_version))
        .route("/metrics", get(metrics::get_metrics))
        .merge(admin::routes())
        .merge(admin_raw::routes())
        .merge(admin_checks::routes())
        .merge(admin_move::routes())
        .merge(admin_move_target::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admin::require_passphrase,
        ));
    finish(routes, state)
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting
/// connections and waits for in-flight requests to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // The peer address is kept for the login history.
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    // Without TCP_NODELAY, a response written in several pieces (headers, then a small
    // body) waits for the client's delayed ACK: ~40 ms per small download.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Adds the fallbacks (which must come after every route) and the shared middleware.
fn finish(routes: Router<AppState>, state: AppState) -> Router {
    finish_with(routes, state, |r| r)
}

/// [`finish`], with `outer` wrapping the routes and their fallbacks, inside the
/// shared middleware.
fn finish_with(
    routes: Router<AppState>,
    state: AppState,
    outer: impl FnOnce(Router<AppState>) -> Router<AppState>,
) -> Router {
    let body_limit = state.body_limit;
    let routes = outer(
        routes
            .method_not_allowed_fallback(error::method_not_allowed)
            .fallback(error::route_not_found),
    )
    .with_state(state);
    layers::with_common_layers(routes, body_limit)
}
