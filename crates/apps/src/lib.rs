//! Apps and konnectors of an instance (CONTRACT SKELETON: the bodies are being
//! written; the public API below is what `web` and `jobs` code against).
//!
//! - [`AppKind`]: a web app (`io.cozy.apps`, `manifest.webapp`, permission type
//!   `app`) or a konnector (`io.cozy.konnectors`, `manifest.konnector`, `konnector`).
//! - Sources: `registry://<slug>[/<channel-or-version>]` (channel `stable` by
//!   default) looked up in the registries of the instance's context, then `default`;
//!   a registry is an HTTP base URL or a `file:///dir` holding the same paths as the
//!   HTTP API (`<dir>/registry/<slug>/<channel>/latest`, `<dir>/registry/<slug>/<version>`);
//!   `http(s)://…tar.gz` / `file:///….tar.gz` tarballs; `file:///dir` folders.
//! - Files: `<root>/<domain>/<kind dir>/<slug>/` (kind dir `apps` or `konnectors`),
//!   installed through a staging directory and a rename.
//! - Documents: `io.cozy.apps/<slug>` in `io.cozy.apps` (or `io.cozy.konnectors/<slug>`
//!   in `io.cozy.konnectors`): the manifest plus `slug`, `source`, `state`, `version`,
//!   `checksum`, `created_at`, `updated_at`; the permissions document has the id
//!   `io.cozy.apps/<slug>` in `io.cozy.permissions` with `type` `app`/`konnector`,
//!   `source_id` the same, and the manifest's `permissions`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use hearth_core::JsonMap;
use hearth_instances::permission::PermissionSet;
use hearth_instances::{Instance, Instances};
use hearth_store::{DocStore, StoreError};
use serde_json::Value;

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
        }
    }

    /// Where an installed app's files are.
    pub fn app_dir(&self, inst: &Instance, kind: AppKind, slug: &str) -> PathBuf {
        self.root
            .join(&inst.domain)
            .join(kind.dir_name())
            .join(slug)
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
        let _ = (
            &self.store,
            &self.instances,
            &self.registries,
            inst,
            kind,
            slug,
            source,
        );
        Err(AppsError::Fetch("not implemented yet".into()))
    }

    /// Updates to the latest version of its source (or `source` when given).
    pub async fn update(
        &self,
        inst: &Instance,
        kind: AppKind,
        slug: &str,
        source: Option<&str>,
    ) -> AppsResult<InstalledApp> {
        let _ = (inst, kind, slug, source);
        Err(AppsError::Fetch("not implemented yet".into()))
    }

    /// Removes the app's files, document and permissions (and its triggers' documents
    /// are the caller's business). Returns what was removed.
    pub async fn uninstall(
        &self,
        inst: &Instance,
        kind: AppKind,
        slug: &str,
    ) -> AppsResult<InstalledApp> {
        let _ = (inst, kind, slug);
        Err(AppsError::NotInstalled)
    }

    pub async fn get(
        &self,
        inst: &Instance,
        kind: AppKind,
        slug: &str,
    ) -> AppsResult<InstalledApp> {
        let _ = (inst, kind, slug);
        Err(AppsError::NotInstalled)
    }

    pub async fn list(&self, inst: &Instance, kind: AppKind) -> AppsResult<Vec<InstalledApp>> {
        let _ = (inst, kind);
        Ok(Vec::new())
    }

    /// The permissions of an installed app (its permission document), or `None` when
    /// it is not installed: what its tokens may do.
    pub async fn permissions(
        &self,
        inst: &Instance,
        kind: AppKind,
        slug: &str,
    ) -> AppsResult<Option<PermissionSet>> {
        let _ = (inst, kind, slug);
        Ok(None)
    }
}

/// A JSON value of the manifest (helper for callers that need extra fields).
pub fn manifest_field<'a>(m: &'a Manifest, key: &str) -> Option<&'a Value> {
    m.raw.get(key)
}
