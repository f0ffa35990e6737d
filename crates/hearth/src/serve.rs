//! `hearth serve`: opens the backends, listens on the public and admin addresses, and
//! serves until SIGINT or SIGTERM, then lets in-flight requests finish.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hearth_store_postgres::{PgOptions, PostgresStore};
use hearth_store_sqlite::{SqliteOptions, SqliteStore};
use hearth_web::AppState;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing_subscriber::EnvFilter;

use crate::config::{DatabaseLocation, FsLocation, Loaded, Subdomains, Synchronous};

/// How long in-flight requests may run on after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Runs the server; returns once it has stopped.
pub fn run(loaded: Loaded) -> anyhow::Result<()> {
    init_tracing(&loaded.config.log.level);
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(loaded))
}

/// Logs to stderr at `level`, unless `RUST_LOG` says otherwise.
pub fn init_tracing(level: &str) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let (filter, bad_env) = match from_env.as_deref().map(EnvFilter::try_new) {
        Some(Ok(filter)) => (filter, None),
        Some(Err(e)) => (EnvFilter::new(level), Some(e)),
        None => (EnvFilter::new(level), None),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    if let Some(e) = bad_env {
        tracing::warn!(error = %e, "RUST_LOG is invalid; using log.level");
    }
}

async fn serve(loaded: Loaded) -> anyhow::Result<()> {
    let config = &loaded.config;
    // Listen for signals first, so that one arriving during startup is not fatal.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;

    let admin_addrs = resolve(&config.admin.host, config.admin.port)
        .await
        .map_err(|e| {
            loaded.error_at(
                "admin.host",
                format!("cannot resolve {:?}: {e}", config.admin.host),
            )
        })?;
    if let Some(addr) = admin_addrs.iter().find(|a| !a.ip().is_loopback()) {
        return Err(loaded
            .error_at(
                "admin.host",
                format!(
                    "the admin API listens on loopback addresses only, and {} is not one",
                    addr.ip()
                ),
            )
            .into());
    }

    // With S3, the content goes to the bucket; `<data_dir>/files` only keeps the
    // instances' (empty) local directories.
    let local_files;
    let (files_dir, s3_blobs) = match &loaded.backends.fs {
        FsLocation::Local { dir } => (dir, None),
        FsLocation::S3(s3) => {
            let blobs = s3_blob_store(s3, &config.fs)
                .map_err(|e| loaded.error_at("fs.url", e.to_string()))?;
            blobs
                .check()
                .await
                .context("cannot reach the S3 bucket of fs.url")?;
            local_files = config.data_dir.join("files");
            (&local_files, Some(blobs))
        }
        // With Swift, the same: the content goes to the container.
        FsLocation::Swift(swift) => {
            let blobs = swift_blob_store(swift, &config.fs)
                .await
                .map_err(|e| loaded.error_at("fs.url", e.to_string()))?;
            blobs
                .check()
                .await
                .context("cannot reach the Swift container of fs.url")?;
            local_files = config.data_dir.join("files");
            (&local_files, Some(blobs))
        }
    };
    std::fs::create_dir_all(files_dir)
        .with_context(|| format!("cannot create the files directory {}", files_dir.display()))?;
    let mut stores = Vec::with_capacity(1 + loaded.backends.clusters.len());
    for (n, location) in std::iter::once(&loaded.backends.database)
        .chain(&loaded.backends.clusters)
        .enumerate()
    {
        stores.push(open_store(location, config, n).await?);
    }
    let clusters = stores.len();
    let store: Arc<dyn hearth_store::DocStore> = if clusters == 1 {
        stores.remove(0)
    } else {
        Arc::new(hearth_store::clustered::ClusteredStore::new(stores).context("database.clusters")?)
    };
    // Every write (instances, settings, data, files) publishes realtime events.
    let store: Arc<dyn hearth_store::DocStore> = Arc::new(hearth_store::events::EventedStore::new(
        store,
        Default::default(),
    ));
    let instances = hearth_instances::Instances::open(
        store.clone(),
        hearth_instances::InstancesConfig {
            fs_root: files_dir.clone(),
            scrypt: hearth_instances::ScryptCost {
                log_n: config.auth.scrypt_log_n,
                ..hearth_instances::ScryptCost::PRODUCTION
            },
        },
    )
    .await
    .context("cannot open the instances registry")?
    .with_db_clusters(clusters);
    let body_limit = usize::try_from(config.limits.body_bytes).unwrap_or(usize::MAX);
    let mailer = hearth_mail::Mailer::new(mail_config(&config.mail), &config.mail.outbox_dir)
        .map_err(|e| loaded.error_at("mail", e.to_string()))?;
    let mut state = AppState::new(store, Arc::new(instances));
    if let Some(blobs) = s3_blobs {
        let vfs = hearth_vfs::Vfs::new(state.store.clone(), Arc::new(blobs));
        state = state.with_vfs(Arc::new(vfs));
    }
    let mut state = state
        .with_body_limit(body_limit)
        .with_admin_auth(admin_auth(config))
        .with_login_failures_per_hour(config.auth.login_failures_per_hour)
        .with_jobs(jobs_config(&config.jobs), mailer)
        .with_apps(config.registries.clone(), konnectors_cmd(config))
        .with_flat_subdomains(config.subdomains == Subdomains::Flat)
        .with_move_settings(hearth_web::MoveSettings {
            wizard_domain: config.r#move.domain.clone(),
            wizard_url: config.r#move.url.clone(),
            delete_after: config.r#move.delete_after,
        });
    // Several nodes: the job queue, the trigger leader, failed logins and realtime
    // events go through Redis. The cluster's handles live as long as the server.
    let cluster = match &config.redis.url {
        Some(url) => {
            let (cluster, clustered) = Cluster::join(url, config, state).await.map_err(|e| {
                e.context(format!(
                    "cannot use Redis ({})",
                    loaded.sources.get("redis.url")
                ))
            })?;
            state = clustered;
            Some(cluster)
        }
        None => None,
    };
    state
        .start()
        .await
        .context("cannot start the background jobs")?;

    let public = bind(
        resolve(&config.host, config.port)
            .await
            .with_context(|| format!("cannot resolve {:?} (host)", config.host))?,
    )
    .await
    .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
    let admin = bind(admin_addrs).await.with_context(|| {
        format!(
            "cannot listen on {}:{} (admin)",
            config.admin.host, config.admin.port
        )
    })?;

    let (stop, stopped) = watch::channel(false);
    let mut servers = JoinSet::new();
    for (listeners, router, what) in [
        (public, hearth_web::router(state.clone()), "public server"),
        (admin, hearth_web::admin_router(state.clone()), "admin API"),
    ] {
        for listener in listeners {
            let address = listener.local_addr().context("listener address")?;
            tracing::info!("{what} listening on {address}");
            let mut stopped = stopped.clone();
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            servers.spawn(hearth_web::serve(listener, router.clone(), shutdown));
        }
    }
    drop(state);

    let outcome = tokio::select! {
        _ = sigint.recv() => {
            tracing::info!("SIGINT received, shutting down");
            Ok(())
        }
        _ = sigterm.recv() => {
            tracing::info!("SIGTERM received, shutting down");
            Ok(())
        }
        Some(ended) = servers.join_next() => match ended {
            Ok(Ok(())) => Err(anyhow::anyhow!("a listener stopped unexpectedly")),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("a listener failed")),
            Err(e) => Err(anyhow::Error::new(e).context("a listener task failed")),
        },
    };
    let _ = stop.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(ended) = servers.join_next().await {
            match ended {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "listener failed while stopping"),
                Err(e) => tracing::error!(error = %e, "listener task failed while stopping"),
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(grace = ?SHUTDOWN_GRACE, "requests still running after the grace period were cut");
    }
    if let Some(cluster) = cluster {
        cluster.leave().await;
    }
    tracing::info!("stopped");
    outcome
}

/// How long the trigger leader's lease lasts without renewal: after a crash,
/// another node fires the timed triggers within this delay.
const LEADER_LEASE: Duration = Duration::from_secs(15);
/// How often each node reads the trigger schedule again (triggers made elsewhere).
const SCHEDULE_REFRESH: Duration = Duration::from_secs(2);
/// How long a node trusts its cached lookup of an instance without hearing of a
/// change: the bound on staleness should an invalidation from another node be lost.
const REGISTRY_CACHE_TTL: Duration = Duration::from_secs(30);
/// The time to live of a per-instance lock (files tree, destruction), renewed
/// while held: how long a node that died holding one blocks the others.
const INSTANCE_LOCK_TTL: Duration = Duration::from_secs(15);
/// How long a request waits for a per-instance lock held by another node.
const INSTANCE_LOCK_WAIT: Duration = Duration::from_secs(60);

/// This node's part in a cluster of nodes sharing one Redis.
struct Cluster {
    leader: Arc<hearth_redis::LeaderLease>,
    _bridge: hearth_redis::EventBridge,
    /// Drops the cached instances other nodes changed.
    invalidation: tokio::task::JoinHandle<()>,
}

impl Cluster {
    /// Connects to Redis and wires it into `state` (before it starts): the Redis job
    /// broker, the shared failed-login counter, timed triggers fired by the leader
    /// only (every node refreshing its schedule), and the events bridge.
    async fn join(
        url: &str,
        config: &crate::config::Config,
        state: AppState,
    ) -> anyhow::Result<(Self, AppState)> {
        let redis = hearth_redis::Redis::connect(url, &config.redis.prefix).await?;
        let node_id = config
            .redis
            .node_id
            .clone()
            .unwrap_or_else(|| format!("{}:{}", host_name(), config.port));
        let broker = hearth_redis::RedisBroker::start(
            &redis,
            hearth_redis::BrokerOptions {
                node_id: Some(node_id.clone()),
                ..hearth_redis::BrokerOptions::default()
            },
        )
        .await
        .context("cannot start the Redis job broker")?;
        let logins =
            hearth_redis::RateLimiter::login_failures(&redis, config.auth.login_failures_per_hour);
        let locks = SharedLocks(hearth_redis::Locks::new(&redis));
        let state = state
            .with_broker(Arc::new(broker))
            .with_shared_login_failures(Arc::new(SharedLogins(logins)))
            .with_instance_locks(Arc::new(locks));
        let leader = Arc::new(
            hearth_redis::LeaderLease::start(&redis, "scheduler", LEADER_LEASE)
                .await
                .context("cannot contend for the trigger leader lease")?,
        );
        let weak = Arc::downgrade(&leader);
        state.jobs.set_leader_check(Arc::new(move || {
            weak.upgrade().is_some_and(|l| l.is_leader())
        }));
        state.jobs.set_schedule_refresh(SCHEDULE_REFRESH);
        // Subscribed before the bridge starts, so no registry event is missed.
        let registry_events = state.events.subscribe(&hearth_core::InstanceId::global());
        let bridge = hearth_redis::EventBridge::start(&redis, &state.events)
            .await
            .context("cannot bridge realtime events through Redis")?;
        state.instances.set_cache_ttl(Some(REGISTRY_CACHE_TTL));
        // Quotas count the files other nodes write (rescanned at most every 2 s).
        state
            .events
            .observe(Arc::new(hearth_vfs::RemoteUsage(state.vfs.clone())));
        let invalidation = tokio::spawn(forget_changed_instances(
            state.instances.clone(),
            registry_events,
            bridge.resubscribed(),
        ));
        tracing::info!(
            node = %node_id,
            redis = %crate::config::redact_url(url),
            prefix = %config.redis.prefix,
            leader = leader.is_leader(),
            "joined the nodes sharing this Redis"
        );
        Ok((
            Self {
                leader,
                _bridge: bridge,
                invalidation,
            },
            state,
        ))
    }

    /// Gives the leader lease back, so another node fires the triggers at once.
    async fn leave(self) {
        self.invalidation.abort();
        match Arc::try_unwrap(self.leader) {
            Ok(leader) => {
                if let Err(e) = leader.resign().await {
                    tracing::warn!(error = %e, "cannot give the trigger leader lease back");
                }
            }
            Err(leader) => leader.stop(),
        }
    }
}

/// Drops this node's cached lookups of the instances whose registry documents
/// were written (on any node: local writes arrive here too, harmlessly), and all
/// of them when events may have been missed (a lagging receiver, a lost Redis
/// subscription).
async fn forget_changed_instances(
    instances: Arc<hearth_instances::Instances>,
    mut events: tokio::sync::broadcast::Receiver<Arc<hearth_store::events::Event>>,
    mut resubscribed: tokio::sync::watch::Receiver<u64>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        tokio::select! {
            received = events.recv() => match received {
                Ok(event) => {
                    instances.forget_changed(&event);
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "registry events missed; forgetting every cached instance");
                    instances.forget_all();
                }
                Err(RecvError::Closed) => return,
            },
            changed = resubscribed.changed() => {
                if changed.is_err() {
                    // The bridge is gone: the cache's time to live is all that is left.
                    std::future::pending::<()>().await;
                }
                instances.forget_all();
            }
        }
    }
}

/// The per-instance locks in Redis, as the files service and the admin API take
/// them: renewed while held, waited for up to [`INSTANCE_LOCK_WAIT`].
struct SharedLocks(hearth_redis::Locks);

impl hearth_vfs::InstanceLock for SharedLocks {
    fn lock<'a>(&'a self, name: &'a str) -> hearth_vfs::lock::LockFuture<'a> {
        Box::pin(async move {
            match self
                .0
                .hold(name, INSTANCE_LOCK_TTL, INSTANCE_LOCK_WAIT)
                .await
            {
                Ok(Some(held)) => Ok(Box::new(held) as hearth_vfs::HeldLock),
                Ok(None) => Err(hearth_vfs::LockError(format!(
                    "the lock {name} is still held by another node after {INSTANCE_LOCK_WAIT:?}"
                ))),
                Err(e) => Err(hearth_vfs::LockError(e.to_string())),
            }
        })
    }
}

/// The failed-login counter in Redis, as the web crate's throttle uses it.
struct SharedLogins(hearth_redis::RateLimiter);

impl hearth_web::FailureCounter for SharedLogins {
    fn limit(&self) -> u32 {
        self.0.limit()
    }

    fn hit<'a>(&'a self, domain: &'a str) -> hearth_web::HitFuture<'a> {
        Box::pin(async move { self.0.hit(domain).await.map_err(|e| e.to_string()) })
    }
}

/// This machine's host name; a random name when it cannot be read. With the public
/// port, it names the node by default: stable across restarts (a restarted node finds
/// its own unfinished jobs at once), distinct for two nodes on one machine.
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            std::fs::read_to_string(p)
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| format!("node-{}", random_suffix()))
}

/// A random suffix for a node without a host name.
fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The mail settings of the configuration, for the mailer.
fn mail_config(m: &crate::config::MailConfig) -> hearth_mail::MailConfig {
    let tls = if m.disable_tls {
        hearth_mail::TlsMode::None
    } else if m.use_ssl || m.port == 465 {
        hearth_mail::TlsMode::Tls
    } else {
        hearth_mail::TlsMode::Starttls
    };
    hearth_mail::MailConfig {
        host: m.host.clone().filter(|h| !h.is_empty()),
        port: Some(m.port),
        username: m.username.clone().filter(|u| !u.is_empty()),
        password: m.password.clone(),
        tls,
        skip_certificate_validation: m.skip_certificate_validation,
        local_name: m.local_name.clone(),
        noreply_address: m.noreply_address.clone(),
        noreply_name: m.noreply_name.clone(),
        reply_to: m.reply_to.clone(),
        ..hearth_mail::MailConfig::default()
    }
}

fn jobs_config(j: &crate::config::JobsConfig) -> hearth_jobs::JobsConfig {
    hearth_jobs::JobsConfig {
        retry_delay: j.retry_delay,
        workers: j
            .workers
            .iter()
            .map(|(name, w)| {
                (
                    name.clone(),
                    hearth_jobs::LimitsOverride {
                        concurrency: w.concurrency,
                        max_exec_count: w.max_exec_count,
                        timeout: w.timeout,
                    },
                )
            })
            .collect(),
        ..hearth_jobs::JobsConfig::default()
    }
}

/// `konnectors.cmd` as the jobs run it: a path with a `/` made absolute (the command
/// runs in the konnector's directory), a bare name left to the `PATH` lookup.
fn konnectors_cmd(config: &crate::config::Config) -> Option<std::path::PathBuf> {
    let cmd = config.konnectors.cmd.as_deref()?;
    let path = std::path::Path::new(cmd);
    if cmd.contains('/') {
        Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
    } else {
        Some(path.to_path_buf())
    }
}

/// Where the admin API finds its passphrase: `HEARTH_ADMIN_PASSPHRASE` (or the Cozy
/// stack's `COZY_ADMIN_PASSPHRASE`), else the hash file `admin.secret_filename`, looked
/// up in the data directory, the current directory, then the places the Cozy stack uses.
/// With the default name, the Cozy stack's default name (`cozy-admin-passphrase`) is
/// looked for next, so an operator's existing file keeps working.
fn admin_auth(config: &crate::config::Config) -> hearth_web::AdminAuth {
    let passphrase = ["HEARTH_ADMIN_PASSPHRASE", "COZY_ADMIN_PASSPHRASE"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|p| !p.is_empty()));
    let default_name = crate::config::Config::default().admin.secret_filename;
    let mut names = vec![config.admin.secret_filename.clone()];
    if config.admin.secret_filename == default_name {
        names.push(COZY_SECRET_FILENAME.to_owned());
    }
    let mut dirs = vec![config.data_dir.clone(), ".".into(), ".cozy".into()];
    if let Some(home) = std::env::var_os("HOME").map(std::path::PathBuf::from) {
        dirs.extend([
            home.join(".hearth"),
            home.join(".cozy"),
            home.join(".config/cozy"),
        ]);
    }
    if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        dirs.push(std::path::PathBuf::from(xdg).join("cozy"));
    }
    dirs.extend(["/etc/hearth".into(), "/etc/cozy".into()]);
    let mut files = Vec::new();
    for name in &names {
        let name = std::path::Path::new(name);
        if name.is_absolute() {
            files.push(name.to_path_buf());
        } else {
            files.extend(dirs.iter().map(|d| d.join(name)));
        }
    }
    hearth_web::AdminAuth::new(passphrase, files)
}

/// The Cozy stack's default name of the admin passphrase file.
const COZY_SECRET_FILENAME: &str = "cozy-admin-passphrase";

/// The distinct addresses a host name resolves to.
async fn resolve(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in tokio::net::lookup_host((host, port)).await? {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no address",
        ));
    }
    Ok(addrs)
}

/// Binds every address (`localhost` is both 127.0.0.1 and ::1). With port 0 they all
/// share the port the first one got. An address the system lacks (IPv6 turned off) is
/// skipped with a warning; any other failure is an error.
async fn bind(addrs: Vec<SocketAddr>) -> std::io::Result<Vec<TcpListener>> {
    let mut listeners: Vec<TcpListener> = Vec::new();
    let mut chosen_port = None;
    let mut skipped = None;
    for mut addr in addrs {
        if let Some(port) = chosen_port.filter(|_| addr.port() == 0) {
            addr.set_port(port);
        }
        match TcpListener::bind(addr).await {
            Ok(listener) => {
                chosen_port.get_or_insert(listener.local_addr()?.port());
                listeners.push(listener);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                tracing::warn!(%addr, error = %e, "address not available, skipped");
                skipped = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    match (listeners.is_empty(), skipped) {
        (true, Some(e)) => Err(e),
        _ => Ok(listeners),
    }
}

/// The document store of one database cluster (0: `database.url`).
async fn open_store(
    location: &DatabaseLocation,
    config: &crate::config::Config,
    n: usize,
) -> anyhow::Result<Arc<dyn hearth_store::DocStore>> {
    Ok(match location {
        DatabaseLocation::Sqlite { dir: db_dir } => {
            let options = SqliteOptions {
                max_open: config.database.max_open,
                idle_timeout: config.database.idle_timeout,
                synchronous_full: config.database.synchronous == Synchronous::Full,
            };
            Arc::new(SqliteStore::open(db_dir.clone(), options).with_context(|| {
                format!(
                    "cannot open the document store in {} (cluster {n})",
                    db_dir.display()
                )
            })?)
        }
        DatabaseLocation::Postgres { url } => Arc::new(
            PostgresStore::connect(url, PgOptions::default())
                .await
                .with_context(|| {
                    format!("cannot open the PostgreSQL document store of cluster {n}")
                })?,
        ),
    })
}

/// The blob store of an `s3://` `fs.url`, with the credentials of `fs.*` (or, when
/// they are absent, those of the environment).
pub(crate) fn s3_blob_store(
    s3: &crate::config::S3Location,
    fs: &crate::config::FsConfig,
) -> std::io::Result<hearth_blob_s3::S3BlobStore> {
    let mut c = hearth_blob_s3::S3Config::new(s3.bucket.clone());
    c.prefix = s3.prefix.clone();
    c.endpoint = s3.endpoint.clone();
    c.region = s3.region.clone();
    c.virtual_host_style = s3.virtual_host_style;
    c.access_key_id = fs.s3_access_key_id.clone();
    c.secret_access_key = fs.s3_secret_access_key.clone();
    hearth_blob_s3::S3BlobStore::new(c)
}

/// The blob store of a `swift://` `fs.url`, logged in with `fs.swift_user` and
/// `fs.swift_password`.
pub(crate) async fn swift_blob_store(
    swift: &crate::config::SwiftLocation,
    fs: &crate::config::FsConfig,
) -> std::io::Result<hearth_blob_s3::ObjectBlobStore> {
    let (Some(user), Some(password)) = (&fs.swift_user, &fs.swift_password) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "swift:// storage needs fs.swift_user and fs.swift_password",
        ));
    };
    let mut auth =
        hearth_blob_s3::SwiftAuth::new(swift.auth_url.clone(), user.clone(), password.clone());
    auth.project = swift.project.clone();
    if let Some(d) = &swift.domain {
        auth.domain = d.clone();
    }
    auth.region = swift.region.clone();
    let mut c = hearth_blob_s3::SwiftConfig::new(swift.container.clone(), auth);
    c.prefix = swift.prefix.clone();
    hearth_blob_s3::ObjectBlobStore::swift(c).await
}
