//! Apps and konnectors of an instance: manifests (`manifest.rs`), sources
//! (`source.rs`), registries (`registry.rs`, over `http.rs`), packages on disk
//! (`archive.rs`), install/update/uninstall and their documents (`install.rs`).
//!
//! - [`AppKind`]: a web app (`io.cozy.apps`, `manifest.webapp`, permission type
//!   `app`) or a konnector (`io.cozy.konnectors`, `manifest.konnector`, `konnector`).
//! - Sources: `registry://<slug>[/<channel>][/<version>]` (channel `stable` by
//!   default) looked up in the registries of the instance's context, then `default`;
//!   a registry is an HTTP base URL or a `file:///dir` holding the same paths as the
//!   HTTP API (`<dir>/registry/<slug>/<channel>/latest`, `<dir>/registry/<slug>/<version>`);
//!   `http(s)://…` tarballs (`#<sha256>` fragment checked); `file:///…` tarballs
//!   (gzipped or not) and folders.
//! - Files: `<root>/<domain>/<kind dir>/<slug>/` (kind dir `apps` or `konnectors`),
//!   installed through a staging directory `.<slug>.staging-<hex>` and a rename.
//! - Documents: `io.cozy.apps/<slug>` in `io.cozy.apps` (or `io.cozy.konnectors/<slug>`
//!   in `io.cozy.konnectors`): the manifest plus `slug`, `source`, `state` (`ready`),
//!   `version`, `checksum`, `created_at`, `updated_at`, `permissions`; the permissions
//!   document has the id `io.cozy.apps/<slug>` in `io.cozy.permissions` with `type`
//!   `app`/`konnector`, `source_id` the same, and the manifest's `permissions`. Both
//!   are written in one transaction after the files are in place, and deleted in
//!   one transaction before the files are removed.
//! - Changes of one app run one at a time, each in its own task.

mod archive;
mod http;
mod install;
mod manifest;
mod registry;
mod source;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use hearth_core::JsonMap;
use hearth_instances::permission::PermissionSet;
use hearth_instances::{Instance, Instances};
use hearth_store::{DocStore, StoreError};
use serde_json::Value;

pub use manifest::{FORBIDDEN_DOCTYPES, validate_slug};

/// A web app or a konnector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppKind {
    Webapp,
    Konnector,
}

impl AppKind {
    /// `io.cozy.apps` / `io.cozy.konnectors`.
    pub fn doctype(self) -> &'static str {
        match self {
            Self::Webapp => "io.cozy.apps",
            Self::Konnector => "io.cozy.konnectors",
        }
    }

    /// `manifest.webapp` / `manifest.konnector`.
    pub fn manifest_name(self) -> &'static str {
        match self {
            Self::Webapp => "manifest.webapp",
            Self::Konnector => "manifest.konnector",
        }
    }

    /// The `type` of its permission document: `app` / `konnector`.
    pub fn permission_type(self) -> &'static str {
        match self {
            Self::Webapp => "app",
            Self::Konnector => "konnector",
        }
    }

    /// `apps` / `konnectors`: its directory under an instance's root.
    pub fn dir_name(self) -> &'static str {
        match self {
            Self::Webapp => "apps",
            Self::Konnector => "konnectors",
        }
    }

    /// The document id (and permission source id) of a slug.
    pub fn doc_id(self, slug: &str) -> String {
        format!("{}/{slug}", self.doctype())
    }
}

/// What went wrong, for the API layer to map onto statuses.
#[derive(Debug, thiserror::Error)]
pub enum AppsError {
    /// 404: no such app installed.
    #[error("Application not found")]
    NotInstalled,
    /// 409.
    #[error("Application already installed")]
    AlreadyInstalled,
    /// 422: a slug or a source that cannot be.
    #[error("{0}")]
    InvalidInput(String),
    /// 404: the registry or the source has no such app/version.
    #[error("{0}")]
    SourceNotFound(String),
    /// 400: the manifest is missing fields or is malformed; nothing was installed.
    #[error("Invalid manifest: {0}")]
    BadManifest(String),
    /// 403: the manifest asks for a permission it cannot have.
    #[error("Forbidden permission: {0}")]
    ForbiddenPermission(String),
    /// 400: an archive with `..`/absolute/link entries, a bad checksum, too large.
    #[error("Invalid archive: {0}")]
    BadArchive(String),
    /// 502: a registry or download failed (network, HTTP 5xx).
    #[error("{0}")]
    Fetch(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type AppsResult<T> = Result<T, AppsError>;

/// A parsed and validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The whole manifest as written.
    pub raw: JsonMap,
    pub name: String,
    pub slug: String,
    pub version: String,
    /// `permissions` as a set (the `{name: {type, verbs, selector, values}}` map).
    pub permissions: PermissionSet,
    /// For konnectors: the file the `on_delete_account` hook runs, if any.
    pub on_delete_account: Option<String>,
}

/// An installed app or konnector: its stored document.
#[derive(Debug, Clone, PartialEq)]
pub struct InstalledApp {
    pub kind: AppKind,
    pub slug: String,
    pub version: String,
    /// `ready`, or `installing` / `upgrading` / `errored` while or after a change.
    pub state: String,
    pub source: String,
    /// The stored document (manifest fields plus the ones above), with `_id`/`_rev`.
    pub doc: JsonMap,
    pub manifest: Manifest,
}

/// Registries per context name (`default` for instances without a configured one).
pub type Registries = BTreeMap<String, Vec<String>>;

/// The apps service.
pub struct Apps {
    store: Arc<dyn DocStore>,
    instances: Arc<Instances>,
    root: PathBuf,
    registries: Registries,
    /// One lock per app of an instance: operations on a slug run one at a time.
    locks: SlugLocks,
}

impl Apps {
    /// Apps installed under `root` (`<data_dir>/apps`), looked up in `registries`.
    pub fn new(
        store: Arc<dyn DocStore>,
        instances: Arc<Instances>,
        root: PathBuf,
        registries: Registries,
    ) -> Self {
        Self {
            store,
            instances,
            root,
            registries,
            locks: SlugLocks::default(),
        }
    }

    /// The instances service this one was built with.
    pub fn instances(&self) -> &Arc<Instances> {
        &self.instances
    }

    /// The registries of an instance, in search order: its context's, then
    /// `default`'s.
    pub fn registries_for(&self, inst: &Instance) -> Vec<String> {
        let context = inst
            .context
            .as_deref()
            .filter(|c| !c.is_empty() && *c != "default");
        let mut out: Vec<String> = Vec::new();
        let lists = context
            .and_then(|c| self.registries.get(c))
            .into_iter()
            .chain(self.registries.get("default"));
        for base in lists.flatten() {
            if !out.contains(base) {
                out.push(base.clone());
            }
        }
        out
    }

    /// Where an installed app's files are.
    pub fn app_dir(&self, inst: &Instance, kind: AppKind, slug: &str) -> PathBuf {
        self.root
            .join(&inst.domain)
            .join(kind.dir_name())
            .join(slug)
    }

    /// Removes the files of every app and konnector of an instance (the reset before
    /// an import deletes their documents with the rest of the data).
    pub async fn clear(&self, inst: &Instance) -> AppsResult<()> {
        let dir = self.root.join(&inst.domain);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Installs from `source` (`None`: `registry://<slug>/stable`). Nothing is left
    /// behind on failure.
    pub async fn install(
        &self,
        inst: &Instance,
        kind: AppKind,
        slug: &str,
        source: Option<&str>,
    ) -> AppsResult<InstalledApp> {
        let source = source.map(str::to_owned);
        self.run(inst, kind, slug, move |op| install::install(op, source))
            .await
    }

    /// Updates to the latest version of its source (or `source` when given).
    pub async fn update(
        &self,
        inst: &Instance,
        kind: AppKind,
        slug: &str,
        source: Option<&str>,
    ) -> AppsResult<InstalledApp> {
        let source = source.map(str::to_owned);
        self.run(inst, kind, slug, move |op| install::update(op, source))
            .await
    }

    /// Removes the app's files, document and permissions (and its triggers' documents
    /// are the caller's business). Returns what was removed.
    pub async fn uninstall(
        &self,
        inst: &Instance,
        kind: AppKind,
        slug: &str,
    ) -> AppsResult<InstalledApp> {
        self.run(inst, kind, slug, install::uninstall).await
    }

    pub async fn get(
        &self,
        inst: &Instance,
        kind: AppKind,
        slug: &str,
    ) -> AppsResult<InstalledApp> {
        install::get(&self.store, &inst.instance_id(), kind, slug).await
    }

    pub async fn list(&self, inst: &Instance, kind: AppKind) -> AppsResult<Vec<InstalledApp>> {
        install::list(&self.store, &inst.instance_id(), kind).await
    }

    /// The permissions of an installed app (its permission document), or `None` when
    /// it is not installed: what its tokens may do.
    pub async fn permissions(
        &self,
        inst: &Instance,
        kind: AppKind,
        slug: &str,
    ) -> AppsResult<Option<PermissionSet>> {
        install::permissions(&self.store, &inst.instance_id(), kind, slug).await
    }

    /// Runs a change of one app in its own task, holding the app's lock: a caller
    /// that goes away (a closed connection) does not interrupt it halfway.
    async fn run<F, Fut>(
        &self,
        inst: &Instance,
        kind: AppKind,
        slug: &str,
        f: F,
    ) -> AppsResult<InstalledApp>
    where
        F: FnOnce(install::Op) -> Fut + Send + 'static,
        Fut: Future<Output = AppsResult<InstalledApp>> + Send + 'static,
    {
        let inst_id = inst.instance_id();
        let lock = self.locks.get(format!("{inst_id}/{}", kind.doc_id(slug)));
        let op = install::Op {
            store: self.store.clone(),
            inst_id,
            kind_dir: self.root.join(&inst.domain).join(kind.dir_name()),
            kind,
            slug: slug.to_owned(),
            bases: self.registries_for(inst),
        };
        tokio::spawn(async move {
            let _guard = lock.lock_owned().await;
            f(op).await
        })
        .await
        .map_err(|e| AppsError::Io(std::io::Error::other(format!("app task failed: {e}"))))?
    }
}

/// Per-app locks, dropped when nobody holds them.
#[derive(Default)]
struct SlugLocks(Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>);

impl SlugLocks {
    fn get(&self, key: String) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lock) = map.get(&key).and_then(Weak::upgrade) {
            return lock;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(key, Arc::downgrade(&lock));
        lock
    }
}

/// A JSON value of the manifest (helper for callers that need extra fields).
pub fn manifest_field<'a>(m: &'a Manifest, key: &str) -> Option<&'a Value> {
    m.raw.get(key)
}
