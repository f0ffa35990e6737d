//! Export of an instance (spec move 1): the `io.cozy.exports` document in the global
//! store, the export job (a gzip'ed tar of every document but files and versions,
//! plus the part cursors), and the zip parts streamed on the fly at download time.
//!
//! Layout of a part (spec move 1.7), so that archives are interchangeable with the
//! Cozy stack's:
//! - part 0 only: `My Cozy/Data/<tar entry>` (`instance.json`, `<doctype>/<id>.json`,
//!   then the directories as `io.cozy.files/<dirid>.json`, parents first);
//! - per file of the part: `My Cozy/Data/io.cozy.files/<id>.json` then its content at
//!   `My Cozy/Files/<path>`;
//! - per version: `My Cozy/Data/io.cozy.files.versions/<fileid>/<suffix>.json` then
//!   `My Cozy/Files/<fileid>/<suffix>`.
//!
//! A pair is written whole or not at all: the content is opened before the metadata
//! entry is written (the reference writes the metadata and then skips missing
//! content, which shifts a positional importer, spec move 6.2).

pub mod client;
mod export;
mod import;
mod import_worker;
pub mod mac;
pub mod moving;
mod worker;
pub mod zip;

use std::path::PathBuf;
use std::sync::Arc;

use hearth_core::{Doctype, InstanceId, JsonMap};
use hearth_instances::Instances;
use hearth_store::{DocStore, GetOptions, StoreError};
use hearth_vfs::{Vfs, VfsError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use export::{Part, part_file_name};
pub use import::{
    BASE_APPS, Count, ImportError, ImportOptions, ImportReport, ImportResult, Imports,
    MOVE_WATCHDOG_EVERY, MOVE_WATCHDOG_TIMEOUT, manifest_url_of,
};
pub use import_worker::{
    BLOCK_IMPORTING, IMPORTS, ImportWorker, MOVING_SINCE, import_record, register_import,
    release_stale_moves, set_settings_flag,
};
pub use worker::{ExportWorker, register};

/// The doctype of export documents (global store).
pub const EXPORTS: &str = "io.cozy.exports";
pub const FILES: &str = "io.cozy.files";
pub const VERSIONS: &str = "io.cozy.files.versions";
/// 1 GiB: the smallest bucket (spec move 1.4).
pub const MIN_PARTS_SIZE: i64 = 1 << 30;
/// 7 days in nanoseconds: the longest (and default) life of an export.
pub const MAX_AGE_NS: i64 = 7 * 24 * 3600 * 1_000_000_000;
/// An export younger than this still `exporting` blocks a new one.
const RUNNING_WINDOW_SECS: u64 = 24 * 3600;

pub const STATE_EXPORTING: &str = "exporting";
pub const STATE_DONE: &str = "done";
pub const STATE_ERROR: &str = "error";

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("exports: not found")]
    NotFound,
    #[error("exports: has expired")]
    Expired,
    #[error("export: cursor is invalid")]
    BadCursor,
    #[error("an archive is already being created")]
    Conflict,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Mac(#[from] mac::MacError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vfs(#[from] VfsError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type MoveResult<T> = Result<T, MoveError>;

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// The export document (spec move 1.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportDoc {
    #[serde(rename = "_id", default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(rename = "_rev", default, skip_serializing_if = "String::is_empty")]
    pub rev: String,
    pub domain: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub parts_size: i64,
    /// `None` (JSON `null`) when files were not exported, `[]` for one part.
    #[serde(default)]
    pub parts_cursors: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub with_doctypes: Vec<String>,
    pub state: String,
    pub created_at: String,
    pub expires_at: String,
    /// `-1` while exporting, then the bytes of JSON written to the stored archive.
    pub total_size: i64,
    /// Hearth's extension: the bytes of the files and versions the parts hold (the
    /// import's quota check counts them; `total_size` is only the JSON).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub files_size: i64,
    /// Nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub creation_duration: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

impl ExportDoc {
    pub fn to_doc(&self) -> JsonMap {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => JsonMap::new(),
        }
    }

    pub fn from_doc(doc: JsonMap) -> MoveResult<Self> {
        serde_json::from_value(Value::Object(doc))
            .map_err(|e| MoveError::Invalid(format!("invalid export document: {e}")))
    }

    /// The JSON:API attributes (every field but `_id` and `_rev`).
    pub fn attributes(&self) -> JsonMap {
        let mut m = self.to_doc();
        m.shift_remove("_id");
        m.shift_remove("_rev");
        m
    }

    pub fn expired(&self) -> bool {
        hearth_core::parse_rfc3339(&self.expires_at).is_some_and(|t| t < now_secs())
    }

    /// Whether this doctype is exported.
    pub fn accepts(&self, doctype: &str) -> bool {
        accepts(&self.with_doctypes, doctype)
    }
}

fn accepts(with: &[String], doctype: &str) -> bool {
    with.is_empty() || with.iter().any(|d| d == doctype)
}

/// The options of an export (the job message of worker `export`, spec move 1.3).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExportOptions {
    #[serde(skip_serializing_if = "is_zero")]
    pub parts_size: i64,
    /// Nanoseconds; 0 or more than 7 days means 7 days.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_age: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub with_doctypes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contextual_domain: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub admin_req: bool,
    /// Move only: the source's access token, forwarded to the target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_source: Option<String>,
    /// Move only: the person skipped the password vault step.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ignore_vault: bool,
    /// Move only: the target (`{url, token, client_id, client_secret}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub move_to: Option<moving::MoveTo>,
    /// Hearth's extension, move only: the operator started it, so the target may be
    /// on any address (a person's move reaches public addresses only).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reach_any: bool,
}

impl ExportOptions {
    /// The `export` job of these options (`manual`: not from a trigger).
    pub fn job(&self, manual: bool) -> Result<hearth_jobs::JobRequest, serde_json::Error> {
        Ok(hearth_jobs::JobRequest {
            worker: "export".into(),
            message: serde_json::to_value(self)?,
            manual,
            ..Default::default()
        })
    }
}

/// The export service.
pub struct Exports {
    store: Arc<dyn DocStore>,
    instances: Arc<Instances>,
    vfs: Arc<Vfs>,
    /// Where stored archives go: `<dir>/<domain>/<export id>.tar.gz`.
    archives: PathBuf,
    /// The smallest bucket: 1 GiB ([`MIN_PARTS_SIZE`]); tests and benchmarks lower it.
    min_parts_size: i64,
}

impl std::fmt::Debug for Exports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exports")
            .field("archives", &self.archives)
            .finish_non_exhaustive()
    }
}

pub(crate) fn dt(name: &str) -> Doctype {
    Doctype::new(name).unwrap_or_else(|_| unreachable!("valid doctype"))
}

impl Exports {
    /// Archives are kept under `<data dir>/exports` (beside `files`, `apps`, `mail`).
    pub fn new(store: Arc<dyn DocStore>, instances: Arc<Instances>, vfs: Arc<Vfs>) -> Self {
        let fs_root = instances.fs_root().to_path_buf();
        let archives = fs_root
            .parent()
            .map_or_else(|| fs_root.join("exports"), |p| p.join("exports"));
        Self {
            store,
            instances,
            vfs,
            archives,
            min_parts_size: MIN_PARTS_SIZE,
        }
    }

    /// Lowers (or raises) the smallest bucket size, for tests: a `parts_size` below
    /// it is ignored as the spec says for 1 GiB.
    pub fn with_min_parts_size(mut self, bytes: i64) -> Self {
        self.min_parts_size = bytes.max(1);
        self
    }

    /// The export of a link token (spec move 1.9) for this instance: 400 for a bad
    /// encoding, 401 for a wrong or stale MAC, then as [`Exports::get_for`].
    pub async fn get_by_mac(
        &self,
        inst: &hearth_instances::Instance,
        token: &str,
    ) -> MoveResult<ExportDoc> {
        let id = mac::decode(&inst.session_secret, token, now_secs())?;
        self.get_for(&inst.domain, &id).await
    }

    pub fn instances(&self) -> &Arc<Instances> {
        &self.instances
    }

    /// An export document by id.
    pub async fn get(&self, id: &str) -> MoveResult<ExportDoc> {
        match self
            .store
            .get(
                &InstanceId::global(),
                &dt(EXPORTS),
                id,
                GetOptions::default(),
            )
            .await
        {
            Ok(doc) => ExportDoc::from_doc(doc),
            Err(StoreError::NotFound(_)) => Err(MoveError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// An export of this instance, for download: not found if it belongs to another
    /// instance or is unfinished, expired after `expires_at`.
    pub async fn get_for(&self, domain: &str, id: &str) -> MoveResult<ExportDoc> {
        let doc = self.get(id).await?;
        if doc.domain != domain {
            return Err(MoveError::NotFound);
        }
        if doc.expired() {
            return Err(MoveError::Expired);
        }
        Ok(doc)
    }

    /// Writes the document in the global store (whose events, if any, go on the
    /// global hub: the CLI's), and publishes it on the instance's hub too (`CREATED`
    /// then `UPDATED`, spec move 1.2) for the settings app.
    pub(crate) async fn save(&self, inst: &InstanceId, doc: &mut ExportDoc) -> MoveResult<()> {
        let w = self
            .store
            .put(&InstanceId::global(), &dt(EXPORTS), doc.to_doc())
            .await?;
        doc.id = w.id;
        doc.rev = w.rev.to_string();
        if let Some(hub) = self.store.event_hub() {
            hub.publish(hearth_store::events::Event {
                instance: inst.clone(),
                doctype: dt(EXPORTS),
                id: doc.id.clone(),
                verb: if w.rev.generation == 1 {
                    hearth_store::events::Verb::Created
                } else {
                    hearth_store::events::Verb::Updated
                },
                doc: doc.to_doc(),
                old: None,
            });
        }
        Ok(())
    }

    /// Every export of a domain, newest first (at most 256).
    pub async fn list(&self, domain: &str) -> MoveResult<Vec<ExportDoc>> {
        let q = hearth_store::AllDocsQuery {
            include_docs: true,
            ..Default::default()
        };
        let rows = match self
            .store
            .all_docs(&InstanceId::global(), &dt(EXPORTS), &q)
            .await
        {
            Ok(r) => r.rows,
            Err(StoreError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mut out: Vec<ExportDoc> = rows
            .into_iter()
            .filter_map(|r| r.doc)
            .filter_map(|d| ExportDoc::from_doc(d).ok())
            .filter(|d| d.domain == domain)
            .collect();
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        out.truncate(256);
        Ok(out)
    }

    /// Deletes the exports whose link has expired: their stored archive and their
    /// document (spec move 1.9). Answers how many were removed.
    pub async fn remove_expired(&self) -> MoveResult<usize> {
        let q = hearth_store::AllDocsQuery {
            include_docs: true,
            ..Default::default()
        };
        let rows = match self
            .store
            .all_docs(&InstanceId::global(), &dt(EXPORTS), &q)
            .await
        {
            Ok(r) => r.rows,
            Err(StoreError::NotFound(_)) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let mut removed = 0;
        for doc in rows.into_iter().filter_map(|r| r.doc) {
            let Ok(export) = ExportDoc::from_doc(doc) else {
                continue;
            };
            if !export.expired() {
                continue;
            }
            match tokio::fs::remove_file(self.archive_path(&export.domain, &export.id)).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(export = %export.id, error = %e, "cannot remove an expired archive");
                    continue;
                }
            }
            if let Ok(rev) = export.rev.parse() {
                match self
                    .store
                    .delete(&InstanceId::global(), &dt(EXPORTS), &export.id, &rev)
                    .await
                {
                    Ok(_) | Err(StoreError::NotFound(_)) | Err(StoreError::Conflict) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            tracing::info!(domain = %export.domain, export = %export.id, "expired export removed");
            removed += 1;
        }
        Ok(removed)
    }

    pub(crate) fn archive_path(&self, domain: &str, id: &str) -> PathBuf {
        self.archives.join(domain).join(format!("{id}.tar.gz"))
    }
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
