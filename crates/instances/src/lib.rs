//! The instances service: the registry of instances (global store), their creation,
//! modification, blocking and destruction, their tokens and passphrases.
//!
//! The registry keeps one `io.cozy.instances` document per instance and one
//! `io.cozy.instances.domains` document per domain or alias, whose `_id` is the domain:
//! the store's id uniqueness makes domains and aliases one namespace, atomically.
//! Lookups by `Host` go through an in-memory cache that every write invalidates.
//! Several nodes sharing the registry invalidate each other's caches: `serve` hands
//! the registry's events coming from other nodes to [`Instances::forget_changed`],
//! and [`Instances::set_cache_ttl`] bounds how long an entry may be trusted should
//! such an event be lost.

pub mod auth;
mod domain;
mod error;
mod lifecycle;
mod model;
pub mod oauth;
pub mod passphrase;
pub mod permission;
pub mod session;
pub mod share;
pub mod token;
pub mod tree;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hearth_core::{Doctype, InstanceId, JsonMap};
use hearth_store::{
    AllDocsQuery, DocStore, GetOptions, NotFoundReason, StoreError,
    events::Event,
    mango::{FindQuery, IndexDef},
};
use serde_json::{Value, json};

pub use domain::{Domain, IllegalDomain};
pub use error::{InstanceError, InstanceResult};
pub use lifecycle::{CreateOptions, ModifyOptions};
pub use model::{INDEXES_VERSION, Instance, prefix_for, random_bytes};
pub use passphrase::ScryptCost;
pub use session::{LoginEntry, Session};
pub use token::{Audience, Claims};

pub(crate) const INSTANCES: &str = "io.cozy.instances";
pub(crate) const DOMAINS: &str = "io.cozy.instances.domains";

pub(crate) fn doctype(name: &str) -> Doctype {
    // The names used here are literals known to be valid.
    Doctype::new(name).unwrap_or_else(|_| unreachable!("invalid built-in doctype {name}"))
}

/// How an instance service is set up.
#[derive(Debug, Clone)]
pub struct InstancesConfig {
    /// Where instances' files live (`<fs_root>/<domain>/…`).
    pub fs_root: PathBuf,
    /// Cost of the server-side passphrase hash.
    pub scrypt: ScryptCost,
}

/// What a `Host` resolves to.
#[derive(Debug, Clone)]
pub enum Resolution {
    Found(Arc<Instance>),
    /// The host is the old domain of an instance that now lives at this domain.
    Moved(String),
    Unknown,
}

/// The instances service.
pub struct Instances {
    pub(crate) store: Arc<dyn DocStore>,
    pub(crate) config: InstancesConfig,
    cache: RwLock<Cache>,
    /// How long a cached lookup is trusted, in milliseconds; 0 for ever.
    cache_ttl_ms: AtomicU64,
    /// How many database clusters new instances can be put on (`database.clusters`).
    pub(crate) db_clusters: usize,
}

/// Lookups by domain, and a count of the invalidations they have seen.
#[derive(Default)]
struct Cache {
    entries: HashMap<String, Cached>,
    /// Bumped by every invalidation: a lookup that read the registry before one
    /// (and may hold the old document) does not fill the cache.
    generation: u64,
}

struct Cached {
    instance: Arc<Instance>,
    at: Instant,
}

impl Instances {
    /// Prepares the registry (its indexes) and returns the service.
    pub async fn open(store: Arc<dyn DocStore>, config: InstancesConfig) -> InstanceResult<Self> {
        let def = IndexDef::parse(
            &json!({"index": {"fields": ["old_domain"]}, "ddoc": "by-olddomain", "name": "by-olddomain"}),
        )?;
        store
            .create_index(&InstanceId::global(), &doctype(INSTANCES), def)
            .await?;
        Ok(Self::new(store, config))
    }

    /// The service without touching the store (for callers that prepared it already).
    pub fn new(store: Arc<dyn DocStore>, config: InstancesConfig) -> Self {
        Self {
            store,
            config,
            cache: RwLock::new(Cache::default()),
            cache_ttl_ms: AtomicU64::new(0),
            db_clusters: 1,
        }
    }

    /// New instances may go on any of `n` database clusters (`--db-cluster`); the
    /// store must route them (`hearth_store::clustered::ClusteredStore`).
    pub fn with_db_clusters(mut self, n: usize) -> Self {
        self.db_clusters = n.max(1);
        self
    }

    pub fn db_clusters(&self) -> usize {
        self.db_clusters
    }

    /// Trusts a cached lookup for `ttl` at most (`None`: until a write invalidates
    /// it). Several nodes set one, as a bound on the staleness an invalidation lost
    /// between them would cause.
    pub fn set_cache_ttl(&self, ttl: Option<Duration>) {
        let ms = ttl.map_or(0, |t| {
            u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)
        });
        self.cache_ttl_ms.store(ms, Ordering::Relaxed);
    }

    pub fn store(&self) -> &Arc<dyn DocStore> {
        &self.store
    }

    /// The instance answering on `domain` (its main domain or an alias).
    pub async fn get(&self, domain: &Domain) -> InstanceResult<Arc<Instance>> {
        if let Some(i) = self.cached(domain.as_str()) {
            return Ok(i);
        }
        let generation = self.cache_read().map_or(0, |c| c.generation);
        let claim = match self
            .store
            .get(
                &InstanceId::global(),
                &doctype(DOMAINS),
                domain.as_str(),
                GetOptions::default(),
            )
            .await
        {
            Ok(c) => c,
            Err(StoreError::NotFound(_)) => return Err(InstanceError::NotFound),
            Err(e) => return Err(e.into()),
        };
        let id = claim
            .get("instance_id")
            .and_then(Value::as_str)
            .ok_or(InstanceError::NotFound)?;
        let instance = Arc::new(self.load(id).await?);
        if let Ok(mut cache) = self.cache.write()
            && cache.generation == generation
        {
            cache.entries.insert(
                domain.as_str().to_owned(),
                Cached {
                    instance: instance.clone(),
                    at: Instant::now(),
                },
            );
        }
        Ok(instance)
    }

    /// Parses and looks up a domain typed by an operator (`parameter` names the field).
    pub async fn get_str(&self, domain: &str) -> InstanceResult<Arc<Instance>> {
        let d = Domain::parse(domain).map_err(|_| InstanceError::IllegalDomain {
            parameter: "domain",
        })?;
        self.get(&d).await
    }

    /// Resolves the `Host` of a request.
    ///
    /// A `Host` with a port names the instance of that exact domain (`alice.localhost:8080`
    /// as created), else the instance of the name alone: a server reached on a port
    /// other than the one in its instances' domains still serves them.
    pub async fn resolve_host(&self, host: &str) -> InstanceResult<Resolution> {
        let Ok(domain) = Domain::parse(host) else {
            return Ok(Resolution::Unknown);
        };
        if let Some((name, port)) = host.rsplit_once(':')
            && !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && let Ok(bare) = Domain::parse(name)
        {
            match self.get(&domain).await {
                Ok(i) => return Ok(Resolution::Found(i)),
                Err(InstanceError::NotFound) => {
                    if let Ok(i) = self.get(&bare).await {
                        return Ok(Resolution::Found(i));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        match self.get(&domain).await {
            Ok(i) => Ok(Resolution::Found(i)),
            Err(InstanceError::NotFound) => Ok(match self.by_old_domain(&domain).await? {
                Some(i) => Resolution::Moved(i.domain),
                None => Resolution::Unknown,
            }),
            Err(e) => Err(e),
        }
    }

    /// The instance whose previous domain is `domain`, if any.
    pub async fn by_old_domain(&self, domain: &Domain) -> InstanceResult<Option<Instance>> {
        let mut q = FindQuery::parse(&json!({"selector": {"old_domain": domain.as_str()}}))?;
        q.limit = Some(1);
        let r = match self
            .store
            .find(&InstanceId::global(), &doctype(INSTANCES), &q)
            .await
        {
            Ok(r) => r,
            Err(StoreError::NotFound(NotFoundReason::NoDatabase)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        r.docs.into_iter().next().map(from_doc).transpose()
    }

    pub(crate) async fn load(&self, id: &str) -> InstanceResult<Instance> {
        match self
            .store
            .get(
                &InstanceId::global(),
                &doctype(INSTANCES),
                id,
                GetOptions::default(),
            )
            .await
        {
            Ok(doc) => from_doc(doc),
            Err(StoreError::NotFound(_)) => Err(InstanceError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    fn cache_read(&self) -> Option<std::sync::RwLockReadGuard<'_, Cache>> {
        self.cache.read().ok()
    }

    fn cached(&self, domain: &str) -> Option<Arc<Instance>> {
        let ttl = self.cache_ttl_ms.load(Ordering::Relaxed);
        let cache = self.cache_read()?;
        let entry = cache.entries.get(domain)?;
        if ttl > 0 && entry.at.elapsed() >= Duration::from_millis(ttl) {
            return None;
        }
        Some(entry.instance.clone())
    }

    /// Runs `f` on the cache and counts an invalidation.
    fn invalidate(&self, f: impl FnOnce(&mut HashMap<String, Cached>)) {
        if let Ok(mut cache) = self.cache.write() {
            cache.generation += 1;
            f(&mut cache.entries);
        }
    }

    /// Forgets cached lookups of these domains (after a write).
    pub fn forget<'a>(&self, domains: impl IntoIterator<Item = &'a str>) {
        self.invalidate(|entries| {
            for d in domains {
                entries.remove(d);
            }
        });
    }

    /// Forgets every cached lookup that led to the instance whose registry id is
    /// `id` (its domain, its aliases).
    pub fn forget_instance(&self, id: &str) {
        self.invalidate(|entries| entries.retain(|_, c| c.instance.id != id));
    }

    /// Forgets every cached lookup (after invalidations may have been missed).
    pub fn forget_all(&self) {
        self.invalidate(HashMap::clear);
    }

    /// Forgets what a write to the registry, seen as a document event (typically
    /// made by another node sharing the store), may have made stale; true if the
    /// event was one of the registry's. Only the event's instance, doctype and id
    /// are read, so an event stripped of its document does.
    pub fn forget_changed(&self, event: &Event) -> bool {
        if event.instance.as_str() != InstanceId::GLOBAL {
            return false;
        }
        match event.doctype.as_str() {
            INSTANCES => self.forget_instance(&event.id),
            // A domain claim: its id is the domain.
            DOMAINS => self.forget([event.id.as_str()]),
            _ => return false,
        }
        true
    }

    /// Saves an instance document (its `rev` must be current) and refreshes caches.
    pub(crate) async fn save(&self, instance: &mut Instance) -> InstanceResult<()> {
        let doc = to_doc(instance)?;
        let written = self
            .store
            .put(&InstanceId::global(), &doctype(INSTANCES), doc)
            .await?;
        instance.id = written.id;
        instance.rev = Some(written.rev.to_string());
        self.forget(instance.all_domains());
        Ok(())
    }

    /// One page of instances in id order, and the cursor of the next page.
    pub async fn list(
        &self,
        limit: Option<usize>,
        cursor: Option<&str>,
        skip: usize,
    ) -> InstanceResult<(Vec<Instance>, Option<String>)> {
        let q = AllDocsQuery {
            start_key: cursor.map(str::to_owned),
            limit: limit.map(|l| l + 1),
            skip,
            include_docs: true,
            inclusive_end: true,
            ..Default::default()
        };
        let rows = match self
            .store
            .all_docs(&InstanceId::global(), &doctype(INSTANCES), &q)
            .await
        {
            Ok(r) => r.rows,
            Err(StoreError::NotFound(NotFoundReason::NoDatabase)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mut out = rows
            .into_iter()
            .filter(|r| !r.id.starts_with("_design/"))
            .filter_map(|r| r.doc)
            .map(from_doc)
            .collect::<InstanceResult<Vec<_>>>()?;
        let next = match limit {
            Some(l) if out.len() > l => out.pop().map(|i| i.id),
            _ => None,
        };
        Ok((out, next))
    }

    pub async fn count(&self) -> InstanceResult<u64> {
        Ok(self
            .store
            .count(&InstanceId::global(), &doctype(INSTANCES))
            .await?)
    }

    /// A token for an instance (admin API `POST /instances/token`).
    pub async fn issue_token(
        &self,
        domain: &str,
        aud: Audience,
        subject: &str,
        scope: &str,
        expire: Option<std::time::Duration>,
    ) -> InstanceResult<String> {
        let i = self.get_str(domain).await?;
        Ok(token::issue(&i, aud, subject, scope, expire))
    }

    /// Drops the sessions of an instance (`instances clean-sessions`).
    pub async fn clean_sessions(&self, domain: &str) -> InstanceResult<()> {
        let i = self.get_str(domain).await?;
        for dt in ["io.cozy.sessions", "io.cozy.sessions.logins"] {
            match self
                .store
                .delete_doctype(&i.instance_id(), &doctype(dt))
                .await
            {
                Ok(()) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

pub(crate) fn from_doc(doc: JsonMap) -> InstanceResult<Instance> {
    serde_json::from_value(Value::Object(doc)).map_err(InstanceError::internal)
}

pub(crate) fn to_doc(i: &Instance) -> InstanceResult<JsonMap> {
    match serde_json::to_value(i).map_err(InstanceError::internal)? {
        Value::Object(m) => Ok(m),
        _ => Err(InstanceError::internal("instance is not an object")),
    }
}
