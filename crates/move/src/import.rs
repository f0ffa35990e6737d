//! Import of an archive into an instance (spec move 2): the manifest, the precheck,
//! the reset of the target, the parts read entry by entry, and the report.
//!
//! What Hearth does beyond the reference:
//! - part 0 is downloaded *before* the reset, so an unreachable source leaves the
//!   target untouched; later parts are retried three times;
//! - every entry name is checked (absolute, `..`, backslashes: the import stops);
//!   a content entry must follow its metadata and live under `My Cozy/Files/`;
//! - every file's size and MD5 are checked before its document is written;
//! - triggers are created once, after the last part;
//! - an import that fails after the reset resets the target again: it is left clean,
//!   never half-imported;
//! - a report counts entries and bytes per doctype in the archive and on the target.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use hearth_apps::{AppKind, Apps, AppsError};
use hearth_core::{Doctype, JsonMap};
use hearth_instances::Instance;
use hearth_jobs::{Jobs, TriggerRequest};
use hearth_store::{AllDocsQuery, BulkResult, GetOptions, StoreError};
use hearth_vfs::{ROOT_DIR_ID, TRASH_DIR_ID, Vfs};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::client::{self, FetchError, Reach};
use crate::{ExportDoc, FILES, MoveError, MoveResult, STATE_DONE, VERSIONS, dt};

const DATA_PREFIX: &str = "My Cozy/Data/";
const FILES_PREFIX: &str = "My Cozy/Files/";
/// Raw documents are written 100 at a time (spec move 2.7).
const BATCH: usize = 100;
/// The apps every instance gets back after a reset (spec move 2.6 step 8).
pub const BASE_APPS: [&str; 3] = ["home", "settings", "store"];
/// The settings documents that survive a reset.
const KEPT_SETTINGS: [&str; 2] = ["io.cozy.settings.instance", "io.cozy.settings.bitwarden"];
const SETTINGS: &str = "io.cozy.settings";
const PART_ATTEMPTS: u32 = 3;

/// Doctypes never imported (spec move 2.7; access codes as recommended).
const SKIPPED: [&str; 8] = [
    "io.cozy.exports",
    "io.cozy.sessions",
    "io.cozy.oauth.access_codes",
    "com.bitwarden.ciphers",
    "com.bitwarden.folders",
    "com.bitwarden.profiles",
    "com.bitwarden.organizations",
    "com.bitwarden.contacts",
];
/// Imported by moves only (spec move 2.7): plain imports skip them.
const SHARINGS: &str = "io.cozy.sharings";
const SHARED: &str = "io.cozy.shared";
/// The share-by-link permission types a move brings along, codes re-minted.
const SHARE_TYPES: [&str; 3] = ["share", "share-preview", "share-interact"];
/// How long an instance may stay blocked `MOVING` without an import starting.
pub const MOVE_WATCHDOG_TIMEOUT: Duration = Duration::from_secs(3600);
/// How often the move watchdog looks.
pub const MOVE_WATCHDOG_EVERY: Duration = Duration::from_secs(5 * 60);

/// The message of an `import` job (spec move 2.4).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportOptions {
    pub manifest_url: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub vault: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub move_from: Option<Value>,
    /// Asked by the operator (admin API): private addresses may be reached.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub admin_req: bool,
}

/// Counts of one doctype, in the archive and on the target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// Entries of the archive (documents, or files with content).
    pub archive_docs: u64,
    /// Bytes of the archive (JSON, or content for files and versions).
    pub archive_bytes: u64,
    /// Entries written on the target.
    pub imported_docs: u64,
    pub imported_bytes: u64,
    /// Entries left out on purpose (special doctypes, apps that cannot be installed).
    pub skipped: u64,
}

/// What an import did (spec: counts and bytes per doctype on both sides).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    pub doctypes: BTreeMap<String, Count>,
    /// Apps and konnectors that could not be installed, sorted.
    pub apps_not_installed: Vec<String>,
    pub parts: usize,
    /// The source had a password vault: it cannot be imported (its keys stay with the
    /// source); `import_vault` is set in the settings so that the person is told.
    #[serde(default)]
    pub vault: bool,
}

impl ImportReport {
    fn count(&mut self, doctype: &str) -> &mut Count {
        self.doctypes.entry(doctype.to_owned()).or_default()
    }

    /// One line per doctype, for the CLI and the logs.
    pub fn lines(&self) -> Vec<String> {
        self.doctypes
            .iter()
            .map(|(dt, c)| {
                format!(
                    "{dt}: {} of {} imported ({} of {} bytes){}",
                    c.imported_docs,
                    c.archive_docs,
                    c.imported_bytes,
                    c.archive_bytes,
                    if c.skipped > 0 {
                        format!(", {} skipped", c.skipped)
                    } else {
                        String::new()
                    }
                )
            })
            .collect()
    }
}

/// Turns what a person pastes (the settings link of the export mail) into the URL of
/// the manifest (spec move 2.2); `None` for any other shape.
pub fn manifest_url_of(input: &str) -> Option<String> {
    let input = input.trim();
    let (scheme, rest) = input.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let (before_fragment, fragment) = rest.split_once('#')?;
    let host = before_fragment
        .split(['/', '?'])
        .next()
        .filter(|h| !h.is_empty() && !h.contains('@'))?;
    let mac = fragment.strip_prefix("/exports/")?;
    let mac = mac
        .split(['?', '#', '/'])
        .next()
        .filter(|m| !m.is_empty())?;
    if !mac
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b))
    {
        return None;
    }
    let host = if let Some(h) = host.strip_prefix("settings.") {
        h.to_owned()
    } else {
        let (first, others) = host.split_once('.').unwrap_or((host, ""));
        let first = first.strip_suffix("-settings").unwrap_or(first);
        if others.is_empty() {
            first.to_owned()
        } else {
            format!("{first}.{others}")
        }
    };
    Some(format!("{scheme}://{host}/move/exports/{mac}"))
}

/// The URL of a part's data (`/move/exports/` → `/move/exports/data/`).
fn part_url(manifest_url: &str, cursor: Option<&str>) -> MoveResult<String> {
    let (base, mac) = manifest_url
        .rsplit_once("/move/exports/")
        .ok_or_else(|| MoveError::Invalid(format!("{manifest_url} is not an export URL")))?;
    let mac = mac.split(['?', '#']).next().unwrap_or("");
    let mut url = format!("{base}/move/exports/data/{mac}");
    if let Some(c) = cursor {
        url.push_str("?cursor=");
        url.push_str(&crate::export::percent_escape(c, b"-._~"));
    }
    Ok(url)
}

/// Why an import could not start or failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// 412: the link is malformed, unreachable, or not a finished export.
    #[error("{0}")]
    Precondition(String),
    /// 413: the instance's quota is too small for the archive.
    #[error("the archive ({need} bytes) does not fit in the disk quota ({quota} bytes)")]
    TooBig { need: u64, quota: u64 },
    /// The archive is not what it should be (names, pairing, JSON, MD5…).
    #[error("{0}")]
    Archive(String),
    #[error(transparent)]
    Move(#[from] MoveError),
}

impl From<StoreError> for ImportError {
    fn from(e: StoreError) -> Self {
        Self::Move(e.into())
    }
}

impl From<hearth_vfs::VfsError> for ImportError {
    fn from(e: hearth_vfs::VfsError) -> Self {
        Self::Move(e.into())
    }
}

impl From<std::io::Error> for ImportError {
    fn from(e: std::io::Error) -> Self {
        Self::Move(e.into())
    }
}

pub type ImportResult<T> = Result<T, ImportError>;

/// The import service.
pub struct Imports {
    vfs: Arc<Vfs>,
    apps: Arc<Apps>,
    jobs: Weak<Jobs>,
    instances: Arc<hearth_instances::Instances>,
    /// Where parts are spooled: `<data dir>/imports`.
    tmp: PathBuf,
    /// This server serves apps on flat subdomains (`alice-drive.example.net`): what a
    /// move's finalize tells the source (`subdomain=flat|nested`).
    flat_subdomains: AtomicBool,
    /// The move watchdog: (blocked `MOVING` longer than this without an import is
    /// released, checked this often).
    move_watchdog: Mutex<(Duration, Duration)>,
}

impl std::fmt::Debug for Imports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imports")
            .field("tmp", &self.tmp)
            .finish_non_exhaustive()
    }
}

impl Imports {
    pub fn new(vfs: Arc<Vfs>, apps: Arc<Apps>, jobs: Weak<Jobs>) -> Self {
        let instances = apps.instances().clone();
        let root = instances.fs_root();
        let tmp = root
            .parent()
            .map_or_else(|| root.join("imports"), |p| p.join("imports"));
        Self {
            vfs,
            apps,
            jobs,
            instances,
            tmp,
            flat_subdomains: AtomicBool::new(false),
            move_watchdog: Mutex::new((MOVE_WATCHDOG_TIMEOUT, MOVE_WATCHDOG_EVERY)),
        }
    }

    pub fn instances(&self) -> &Arc<hearth_instances::Instances> {
        &self.instances
    }

    /// Says whether this server serves apps on flat subdomains (config `subdomains`).
    pub fn set_flat_subdomains(&self, flat: bool) {
        self.flat_subdomains.store(flat, Ordering::Relaxed);
    }

    /// `flat` or `nested`: this server's subdomain style, as a move's finalize says it.
    pub fn subdomain_type(&self) -> &'static str {
        if self.flat_subdomains.load(Ordering::Relaxed) {
            "flat"
        } else {
            "nested"
        }
    }

    /// Sets the move watchdog: an instance blocked `MOVING` for longer than `timeout`
    /// with no import queued or running is released; checked every `every` (tests
    /// shorten both; 1 hour and 5 minutes by default).
    pub fn set_move_watchdog(&self, timeout: Duration, every: Duration) {
        *self
            .move_watchdog
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (timeout, every);
    }

    /// The move watchdog's (timeout, period).
    pub fn move_watchdog(&self) -> (Duration, Duration) {
        *self
            .move_watchdog
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// With several nodes, one operation on an instance at a time (the lock the
    /// instance's destruction takes too); `None` on a single node.
    pub async fn lock_instance(
        &self,
        domain: &str,
    ) -> Result<Option<hearth_vfs::HeldLock>, hearth_vfs::LockError> {
        match self.vfs.instance_lock() {
            Some(locks) => locks
                .lock(&format!("instance:{}", domain.to_ascii_lowercase()))
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    fn store(&self) -> &Arc<dyn hearth_store::DocStore> {
        self.instances.store()
    }

    /// Fetches a manifest: it must answer 200 with a finished export.
    pub async fn fetch_manifest(&self, url: &str, reach: Reach) -> ImportResult<ExportDoc> {
        let owned = url.to_owned();
        let got = tokio::task::spawn_blocking(move || client::get_json(&owned, reach))
            .await
            .map_err(|e| ImportError::Precondition(format!("the download failed: {e}")))?;
        let value = got.map_err(|e| match e {
            FetchError::Status(s) => ImportError::Precondition(format!(
                "the export link answered {s}: expired or unknown"
            )),
            FetchError::Transport(m) => ImportError::Precondition(m),
        })?;
        let attrs = value.pointer("/data/attributes").cloned().ok_or_else(|| {
            ImportError::Precondition("the export link did not answer an export".into())
        })?;
        let mut doc: ExportDoc = serde_json::from_value(attrs)
            .map_err(|e| ImportError::Precondition(format!("the export is not readable: {e}")))?;
        if let Some(id) = value.pointer("/data/id").and_then(Value::as_str) {
            doc.id = id.to_owned();
        }
        if doc.state != STATE_DONE {
            return Err(ImportError::Precondition(format!(
                "the export is not ready (state {:?})",
                doc.state
            )));
        }
        Ok(doc)
    }

    /// `POST /move/imports/precheck` (spec move 2.3): the link works and the archive
    /// fits in the quota. Hearth's manifests carry `files_size` (the content's bytes):
    /// the check counts it, not only the metadata.
    pub async fn precheck(
        &self,
        inst: &Instance,
        url: &str,
        reach: Reach,
    ) -> ImportResult<ExportDoc> {
        let manifest = manifest_url_of(url)
            .ok_or_else(|| ImportError::Precondition("this is not an export link".into()))?;
        let doc = self.fetch_manifest(&manifest, reach).await?;
        if let Some(quota) = hearth_vfs::quota_of(inst) {
            let need = doc.total_size.max(0) as u64 + doc.files_size.max(0) as u64;
            if need > quota {
                return Err(ImportError::TooBig { need, quota });
            }
        }
        Ok(doc)
    }

    /// Runs a whole import into a blocked instance. On an error after the reset the
    /// instance is reset again, so that it is left clean.
    pub async fn run(
        &self,
        inst: &Instance,
        opts: &ImportOptions,
        job_id: &str,
    ) -> ImportResult<ImportReport> {
        let reach = if opts.admin_req {
            Reach::Any
        } else {
            Reach::Public
        };
        let manifest = self.fetch_manifest(&opts.manifest_url, reach).await?;
        tokio::fs::create_dir_all(&self.tmp).await?;
        // Part 0 first: nothing is destroyed before the source answered.
        let first = self.download_part(&opts.manifest_url, None, reach).await?;
        self.reset(inst, job_id).await?;
        let mut report = ImportReport::default();
        let mut pending = PendingTriggers {
            moving: opts.move_from.as_ref().map(|from| MoveRewrite {
                source_url: from
                    .get("url")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .trim_end_matches('/')
                    .to_owned(),
                target_url: format!(
                    "{}://{}",
                    crate::worker::scheme_for(&inst.domain),
                    inst.domain
                ),
            }),
            ..Default::default()
        };
        let result = async {
            self.import_part(inst, first, &mut report, &mut pending)
                .await?;
            report.parts = 1;
            for cursor in manifest.parts_cursors.iter().flatten() {
                let part = self
                    .download_part(&opts.manifest_url, Some(cursor), reach)
                    .await?;
                self.import_part(inst, part, &mut report, &mut pending)
                    .await?;
                report.parts += 1;
            }
            self.create_triggers(inst, &mut pending, &mut report).await;
            self.fix_myself(inst).await?;
            if opts.vault || pending.vault {
                report.vault = true;
                crate::set_settings_flag(self, inst, "import_vault", Some(Value::Bool(true)))
                    .await?;
            }
            Ok::<(), ImportError>(())
        }
        .await;
        match result {
            Ok(()) => {
                report.apps_not_installed = pending.not_installed.into_iter().collect();
                Ok(report)
            }
            Err(e) => {
                tracing::warn!(domain = %inst.domain, error = %e, "import failed; resetting the instance again");
                if let Err(re) = self.reset(inst, job_id).await {
                    tracing::error!(domain = %inst.domain, error = %re, "cannot reset the instance after a failed import");
                }
                Err(e)
            }
        }
    }

    /// Downloads a part into a temporary file (removed when dropped), three tries.
    async fn download_part(
        &self,
        manifest_url: &str,
        cursor: Option<&str>,
        reach: Reach,
    ) -> ImportResult<SpooledPart> {
        let url = part_url(manifest_url, cursor)?;
        let mut last = String::new();
        for attempt in 1..=PART_ATTEMPTS {
            let path = self
                .tmp
                .join(format!("part-{}.zip", hearth_core::random_hex(12)));
            let spool = SpooledPart { path };
            let (u, p) = (url.clone(), spool.path.clone());
            let got = tokio::task::spawn_blocking(move || {
                let mut f = std::fs::File::create(&p)
                    .map_err(|e| FetchError::Transport(format!("cannot spool the part: {e}")))?;
                client::download(&u, reach, &mut f)
            })
            .await
            .map_err(|e| ImportError::Archive(e.to_string()))?;
            match got {
                Ok(n) => {
                    tracing::info!(url = %url, bytes = n, "part downloaded");
                    return Ok(spool);
                }
                // A refusal will not change: no retry.
                Err(FetchError::Status(s)) if (400..500).contains(&s) && s != 408 && s != 429 => {
                    return Err(ImportError::Archive(format!(
                        "the part {} could not be downloaded: the server answered {s}",
                        cursor.unwrap_or("0")
                    )));
                }
                Err(e) => {
                    last = e.to_string();
                    tracing::warn!(url = %url, attempt, error = %last, "part download failed");
                    if attempt < PART_ATTEMPTS {
                        tokio::time::sleep(Duration::from_secs(2u64 << attempt)).await;
                    }
                }
            }
        }
        Err(ImportError::Archive(format!(
            "the part {} could not be downloaded: {last}",
            cursor.unwrap_or("0")
        )))
    }

    /// Empties an instance (spec move 2.6), keeping its instance and vault settings
    /// and the running import's job document, then reinstalls the base apps.
    pub async fn reset(&self, inst: &Instance, job_id: &str) -> ImportResult<()> {
        let id = inst.instance_id();
        let store = self.store();
        let settings_dt = dt(SETTINGS);
        let mut kept = Vec::new();
        for k in KEPT_SETTINGS {
            match store.get(&id, &settings_dt, k, GetOptions::default()).await {
                Ok(mut d) => {
                    d.shift_remove("_rev");
                    kept.push(d);
                }
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(jobs) = self.jobs.upgrade() {
            jobs.remove_all_triggers(inst)
                .await
                .map_err(|e| ImportError::Archive(format!("cannot remove the triggers: {e}")))?;
        }
        self.apps
            .clear(inst)
            .await
            .map_err(|e| ImportError::Archive(format!("cannot remove the apps: {e}")))?;
        self.vfs.clear(inst).await?;
        for doctype in store.doctypes(&id).await? {
            if doctype.as_str() == "io.cozy.jobs" {
                self.delete_all_but(inst, &doctype, job_id).await?;
            } else {
                store.delete_doctype(&id, &doctype).await?;
            }
        }
        let defs = hearth_instances::tree::default_indexes()
            .into_iter()
            .map(|(d, def)| (dt(d), def))
            .collect();
        store.create_indexes(&id, defs).await?;
        let now = hearth_core::now_rfc3339();
        let root = {
            let mut r =
                hearth_instances::tree::dir_doc(Some(ROOT_DIR_ID), "", "", "/", &now, &inst.domain);
            r.insert("name".into(), Value::String(String::new()));
            r
        };
        let trash = hearth_instances::tree::dir_doc(
            Some(TRASH_DIR_ID),
            hearth_vfs::name::TRASH_NAME,
            ROOT_DIR_ID,
            hearth_vfs::TRASH_PATH,
            &now,
            &inst.domain,
        );
        let written = store
            .bulk_many(
                &id,
                vec![(settings_dt, kept), (dt(FILES), vec![root, trash])],
            )
            .await?;
        if let Some(BulkResult::Err { reason, .. }) = written
            .iter()
            .flatten()
            .find(|r| matches!(r, BulkResult::Err { .. }))
        {
            return Err(ImportError::Archive(format!(
                "cannot write the first documents: {reason}"
            )));
        }
        for slug in BASE_APPS {
            match self.apps.install(inst, AppKind::Webapp, slug, None).await {
                Ok(app) => self.schedule_services(inst, &app).await,
                Err(AppsError::AlreadyInstalled) => {}
                Err(e) => {
                    tracing::warn!(domain = %inst.domain, slug, error = %e, "reset: cannot install a base app")
                }
            }
        }
        tracing::info!(domain = %inst.domain, "instance reset for an import");
        Ok(())
    }

    /// A web app installed by the import gets its services' triggers, as an install
    /// through the API does (spec move 2.7: service triggers are never imported).
    async fn schedule_services(&self, inst: &Instance, app: &hearth_apps::InstalledApp) {
        if app.kind != AppKind::Webapp {
            return;
        }
        let Some(jobs) = self.jobs.upgrade() else {
            return;
        };
        let dir = self.apps.app_dir(inst, AppKind::Webapp, &app.slug);
        if let Err(e) =
            hearth_jobs::services::sync_service_triggers(&jobs, inst, app, &dir, false).await
        {
            tracing::warn!(domain = %inst.domain, slug = %app.slug, error = ?e, "import: the services of an app could not all be scheduled");
        }
    }

    async fn delete_all_but(
        &self,
        inst: &Instance,
        doctype: &Doctype,
        keep: &str,
    ) -> ImportResult<()> {
        let store = self.store();
        let id = inst.instance_id();
        loop {
            let q = AllDocsQuery {
                limit: Some(1000),
                ..Default::default()
            };
            let rows = store.all_docs(&id, doctype, &q).await?.rows;
            let doomed: Vec<JsonMap> = rows
                .iter()
                .filter(|r| r.id != keep && !r.id.starts_with("_design/"))
                .filter_map(|r| Some((r, r.rev.as_ref()?)))
                .map(|(r, rev)| {
                    let mut m = JsonMap::new();
                    m.insert("_id".into(), Value::String(r.id.clone()));
                    m.insert("_rev".into(), Value::String(rev.to_string()));
                    m.insert("_deleted".into(), Value::Bool(true));
                    m
                })
                .collect();
            if doomed.is_empty() {
                return Ok(());
            }
            store.bulk(&id, doctype, doomed, false).await?;
        }
    }

    /// Reads one part entry by entry (spec move 2.7).
    async fn import_part(
        &self,
        inst: &Instance,
        part: SpooledPart,
        report: &mut ImportReport,
        pending: &mut PendingTriggers,
    ) -> ImportResult<()> {
        let mut entries = read_entries(part.path.clone())?;
        let mut batch = Batch::default();
        let mut files = hearth_vfs::ImportBatch::default();
        let result = async {
            while let Some(entry) = entries.next().await {
                let entry = entry?;
                let Entry::Json { doctype, id, body } = entry else {
                    // Content without metadata before it, or an entry outside the data.
                    if let Entry::Content { name, .. } = entry
                        && name.starts_with(FILES_PREFIX)
                    {
                        return Err(ImportError::Archive(format!(
                            "{name}: content without its metadata before it"
                        )));
                    }
                    continue;
                };
                let bytes = body.len() as u64;
                let mut doc: JsonMap = match serde_json::from_slice(&body) {
                    Ok(Value::Object(m)) => m,
                    _ => {
                        return Err(ImportError::Archive(format!(
                            "{DATA_PREFIX}{doctype}/{id}.json is not a JSON object"
                        )));
                    }
                };
                match doctype.as_str() {
                    FILES | VERSIONS => {
                        let is_dir = doc.get("type").and_then(Value::as_str) == Some("directory");
                        check_id(&doc, &id, &doctype)?;
                        if doctype == FILES && is_dir {
                            let c = report.count(FILES);
                            c.archive_docs += 1;
                            if id == ROOT_DIR_ID || id == TRASH_DIR_ID {
                                c.skipped += 1;
                                continue;
                            }
                            self.flush_files(inst, &mut files, report).await?;
                            self.vfs
                                .import_dir(inst, doc)
                                .await
                                .map_err(|e| ImportError::Archive(format!("directory {id}: {e}")))?;
                            report.count(FILES).imported_docs += 1;
                            continue;
                        }
                        let (name, size, rx) = match entries.next().await {
                            Some(Ok(Entry::Content { name, size, rx })) => (name, size, rx),
                            Some(Err(e)) => return Err(e),
                            _ => {
                                return Err(ImportError::Archive(format!(
                                    "{doctype}/{id}: its content does not follow it under {FILES_PREFIX}"
                                )));
                            }
                        };
                        let c = report.count(&doctype);
                        c.archive_docs += 1;
                        c.archive_bytes += size;
                        let stream = ContentStream { rx };
                        let what = if doctype == FILES { "file" } else { "version" };
                        if doctype == FILES {
                            self.vfs.import_file(inst, doc, stream, &mut files).await
                        } else {
                            // A version needs its file's document.
                            self.flush_files(inst, &mut files, report).await?;
                            self.vfs.import_version(inst, doc, stream).await
                        }
                        .map_err(|e| ImportError::Archive(format!("{what} {id} ({name}): {e}")))?;
                        let c = report.count(&doctype);
                        c.imported_bytes += size;
                        if doctype == VERSIONS {
                            c.imported_docs += 1;
                        } else if files.len() >= hearth_vfs::IMPORT_BATCH {
                            self.flush_files(inst, &mut files, report).await?;
                        }
                    }
                    _ => {
                        let c = report.count(&doctype);
                        c.archive_docs += 1;
                        c.archive_bytes += bytes;
                        if self.special(inst, &doctype, &id, &mut doc, pending).await? {
                            report.count(&doctype).skipped += 1;
                            continue;
                        }
                        if batch.doctype != doctype || batch.docs.len() >= BATCH {
                            self.flush(inst, &mut batch, report).await?;
                            batch.doctype = doctype.clone();
                        }
                        doc.shift_remove("_rev");
                        doc.insert("_id".into(), Value::String(id));
                        batch.docs.push((doc, bytes));
                    }
                }
            }
            self.flush(inst, &mut batch, report).await?;
            self.flush_files(inst, &mut files, report).await?;
            self.vfs.sync_imported(inst).await?;
            Ok(())
        }
        .await;
        drop(entries);
        drop(part);
        result
    }

    /// Writes the documents of the imported files waiting in `files`.
    async fn flush_files(
        &self,
        inst: &Instance,
        files: &mut hearth_vfs::ImportBatch,
        report: &mut ImportReport,
    ) -> ImportResult<()> {
        let n = self
            .vfs
            .flush_import(inst, files)
            .await
            .map_err(|e| ImportError::Archive(e.to_string()))?;
        report.count(FILES).imported_docs += n as u64;
        Ok(())
    }

    /// The doctypes with a rule of their own; `true` when the document is not to be
    /// written as is.
    async fn special(
        &self,
        inst: &Instance,
        doctype: &str,
        id: &str,
        doc: &mut JsonMap,
        pending: &mut PendingTriggers,
    ) -> ImportResult<bool> {
        if doctype == "com.bitwarden.ciphers" {
            pending.vault = true;
        }
        if SKIPPED.contains(&doctype) || id.starts_with("_design/") || id.starts_with("_local/") {
            return Ok(true);
        }
        match doctype {
            // Sharings come along with a move only (spec move 2.7, 3.10.1).
            SHARINGS => Ok(match &pending.moving {
                Some(mv) => !rewrite_sharing(doc, mv),
                None => true,
            }),
            SHARED => Ok(pending.moving.is_none()),
            // Apps get their permissions from their manifests at install; share links
            // come along with a move, with codes of this instance (the old ones kept
            // in `moved_codes` so that links already given keep working).
            "io.cozy.permissions" => {
                let share = doc
                    .get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| SHARE_TYPES.contains(&t));
                if pending.moving.is_none() || !share {
                    return Ok(true);
                }
                doc.insert("_id".into(), Value::String(id.to_owned()));
                hearth_instances::share::remint_moved_codes(inst, doc);
                Ok(false)
            }
            SETTINGS => Ok(KEPT_SETTINGS.contains(&id)),
            "io.cozy.apps" | "io.cozy.konnectors" => {
                let kind = if doctype == "io.cozy.apps" {
                    AppKind::Webapp
                } else {
                    AppKind::Konnector
                };
                let slug = id.rsplit('/').next().unwrap_or(id).to_owned();
                match self.apps.install(inst, kind, &slug, None).await {
                    Ok(app) => self.schedule_services(inst, &app).await,
                    Err(AppsError::AlreadyInstalled) => {}
                    Err(e) => {
                        tracing::warn!(domain = %inst.domain, slug = %slug, error = %e, "import: cannot install");
                        pending.not_installed.insert(slug);
                    }
                }
                Ok(true)
            }
            "io.cozy.accounts" => {
                let slug = doc
                    .get("account_type")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                if slug.is_empty() {
                    return Ok(false);
                }
                let app = match self.apps.get(inst, AppKind::Konnector, &slug).await {
                    Ok(a) => Some(a),
                    Err(_) => match self
                        .apps
                        .install(inst, AppKind::Konnector, &slug, None)
                        .await
                    {
                        Ok(a) => Some(a),
                        Err(e) => {
                            tracing::warn!(domain = %inst.domain, slug = %slug, error = %e, "import: no konnector for an account");
                            None
                        }
                    },
                };
                match app {
                    Some(a)
                        if hearth_apps::manifest_field(&a.manifest, "on_delete_account")
                            .is_none() =>
                    {
                        Ok(false)
                    }
                    // The source's deletion will run the hook for its accounts.
                    _ => {
                        pending.not_installed.insert(slug);
                        Ok(true)
                    }
                }
            }
            "io.cozy.triggers" => {
                if doc.get("worker").and_then(Value::as_str) == Some("konnector") {
                    pending.triggers.push((id.to_owned(), doc.clone()));
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn flush(
        &self,
        inst: &Instance,
        batch: &mut Batch,
        report: &mut ImportReport,
    ) -> ImportResult<()> {
        if batch.docs.is_empty() {
            return Ok(());
        }
        let doctype = Doctype::new(&batch.doctype)
            .map_err(|_| ImportError::Archive(format!("{:?} is not a doctype", batch.doctype)))?;
        let (docs, sizes): (Vec<JsonMap>, Vec<u64>) =
            std::mem::take(&mut batch.docs).into_iter().unzip();
        let results = self
            .store()
            .bulk(&inst.instance_id(), &doctype, docs, false)
            .await?;
        for (r, size) in results.iter().zip(sizes) {
            match r {
                BulkResult::Ok(_) => {
                    let c = report.count(&batch.doctype);
                    c.imported_docs += 1;
                    c.imported_bytes += size;
                }
                BulkResult::Err { id, reason, .. } => {
                    tracing::warn!(domain = %inst.domain, doctype = %batch.doctype, id = ?id, reason = %reason, "import: a document was refused");
                }
            }
        }
        Ok(())
    }

    /// The konnector triggers, once every part is in (spec move 6.15).
    async fn create_triggers(
        &self,
        inst: &Instance,
        pending: &mut PendingTriggers,
        report: &mut ImportReport,
    ) {
        let Some(jobs) = self.jobs.upgrade() else {
            return;
        };
        for (id, doc) in std::mem::take(&mut pending.triggers) {
            let text = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let req = TriggerRequest {
                kind: text("type"),
                arguments: text("arguments"),
                worker: text("worker"),
                message: doc.get("message").cloned().unwrap_or(Value::Null),
                options: doc
                    .get("options")
                    .cloned()
                    .and_then(|o| serde_json::from_value(o).ok()),
                debounce: doc
                    .get("debounce")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            };
            match jobs.restore_trigger(inst, &id, req).await {
                Ok(_) => report.count("io.cozy.triggers").imported_docs += 1,
                Err(e) => {
                    tracing::warn!(domain = %inst.domain, trigger = %id, error = %e, "import: a trigger was not created");
                }
            }
        }
    }

    /// The contact of the owner gets the target's email (spec move 2.7).
    async fn fix_myself(&self, inst: &Instance) -> ImportResult<()> {
        let store = self.store();
        let id = inst.instance_id();
        let email = match store
            .get(&id, &dt(SETTINGS), KEPT_SETTINGS[0], GetOptions::default())
            .await
        {
            Ok(d) => d
                .get("email")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            Err(StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if email.is_empty() {
            return Ok(());
        }
        let q = hearth_store::mango::FindQuery::new(
            hearth_store::mango::Selector::parse(&json!({"me": true}))
                .map_err(|e| ImportError::Archive(e.to_string()))?,
        );
        let found = match store.find(&id, &dt("io.cozy.contacts"), &q).await {
            Ok(r) => r.docs,
            Err(StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for mut contact in found {
            let primary = contact
                .get("email")
                .and_then(Value::as_array)
                .and_then(|a| {
                    a.iter()
                        .find(|e| e.get("primary").and_then(Value::as_bool) == Some(true))
                        .or_else(|| a.first())
                })
                .and_then(|e| e.get("address"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            if primary != email {
                contact.insert("email".into(), json!([{"address": email, "primary": true}]));
                store.put(&id, &dt("io.cozy.contacts"), contact).await?;
            }
        }
        Ok(())
    }
}

fn check_id(doc: &JsonMap, id: &str, doctype: &str) -> ImportResult<()> {
    match doc.get("_id").and_then(Value::as_str) {
        Some(d) if d == id => Ok(()),
        _ => Err(ImportError::Archive(format!(
            "{DATA_PREFIX}{doctype}/{id}.json does not hold the document {id}"
        ))),
    }
}

#[derive(Default)]
struct PendingTriggers {
    triggers: Vec<(String, JsonMap)>,
    not_installed: BTreeSet<String>,
    /// The archive holds a password vault (end-to-end encrypted: not imported).
    vault: bool,
    /// Set for a move: sharings and share links come along.
    moving: Option<MoveRewrite>,
}

/// The addresses a move rewrites sharings with (spec move 3.10.1).
struct MoveRewrite {
    /// The source's URL, without a trailing `/`.
    source_url: String,
    /// This instance's URL, without a trailing `/`.
    target_url: String,
}

/// Rewrites an imported sharing for its new address (spec move 3.10.1); `false` when
/// it is not to be imported (a shared password vault: its keys stay behind).
fn rewrite_sharing(doc: &mut JsonMap, mv: &MoveRewrite) -> bool {
    let vault = doc
        .get("rules")
        .and_then(Value::as_array)
        .is_some_and(|rules| {
            rules.iter().any(|r| {
                r.get("doctype").and_then(Value::as_str) == Some("com.bitwarden.organizations")
                    && r.get("local").and_then(Value::as_bool) != Some(true)
            })
        });
    if vault {
        return false;
    }
    doc.insert("initial_sync".into(), Value::Bool(false));
    doc.insert("initial_number_of_files_to_sync".into(), json!(0));
    doc.insert(
        "updated_at".into(),
        Value::String(hearth_core::now_rfc3339()),
    );
    let owner = doc.get("owner").and_then(Value::as_bool) == Some(true);
    let mut moved_from = None;
    if let Some(members) = doc.get_mut("members").and_then(Value::as_array_mut) {
        for (i, m) in members.iter_mut().enumerate() {
            let Some(m) = m.as_object_mut() else {
                continue;
            };
            let current = m
                .get("instance")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let ours = if owner {
                i == 0
            } else {
                !current.is_empty() && current.trim_end_matches('/') == mv.source_url
            };
            if ours {
                moved_from.get_or_insert(current);
                m.insert("instance".into(), Value::String(mv.target_url.clone()));
            }
        }
    }
    if let Some(from) = moved_from {
        doc.insert("moved_from".into(), Value::String(from));
    }
    true
}

#[derive(Default)]
struct Batch {
    doctype: String,
    docs: Vec<(JsonMap, u64)>,
}

/// A downloaded part, removed when dropped.
struct SpooledPart {
    path: PathBuf,
}

impl Drop for SpooledPart {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One entry of a part, as the reader thread hands it over.
enum Entry {
    /// `My Cozy/Data/<doctype>/<id>.json`.
    Json {
        doctype: String,
        id: String,
        body: Vec<u8>,
    },
    /// Any other entry; its bytes come through `rx` (dropping it skips them).
    Content {
        name: String,
        size: u64,
        rx: mpsc::Receiver<std::io::Result<Bytes>>,
    },
}

/// The content of an entry, as a stream for the files service.
struct ContentStream {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
}

impl futures_util::Stream for ContentStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// The entries of a part, read by a blocking thread in archive order.
struct Entries {
    rx: mpsc::Receiver<ImportResult<Entry>>,
}

impl Entries {
    async fn next(&mut self) -> Option<ImportResult<Entry>> {
        self.rx.recv().await
    }
}

/// Checks an entry name: relative, no `..`, no backslash, no NUL.
fn safe_name(name: &str) -> bool {
    !name.starts_with('/')
        && !name.contains(['\\', '\0'])
        && !name.split('/').any(|c| c == ".." || c == ".")
}

/// Largest JSON document accepted from an archive.
const MAX_JSON: u64 = 16 << 20;

fn read_entries(path: PathBuf) -> ImportResult<Entries> {
    let (tx, rx) = mpsc::channel(4);
    let file = std::fs::File::open(&path)?;
    std::thread::Builder::new()
        .name("import-part".into())
        .spawn(move || {
            if let Err(e) = walk(file, &tx) {
                let _ = tx.blocking_send(Err(e));
            }
        })?;
    Ok(Entries { rx })
}

fn walk<R: Read + Seek>(reader: R, tx: &mpsc::Sender<ImportResult<Entry>>) -> ImportResult<()> {
    let mut zip = zip::ZipArchive::new(reader)
        .map_err(|e| ImportError::Archive(format!("the part is not a zip file: {e}")))?;
    for i in 0..zip.len() {
        let mut f = zip
            .by_index(i)
            .map_err(|e| ImportError::Archive(format!("entry {i} cannot be read: {e}")))?;
        if f.is_dir() {
            continue;
        }
        let name = f.name().to_owned();
        if !safe_name(&name) {
            return Err(ImportError::Archive(format!(
                "{name:?}: an entry name that escapes the archive"
            )));
        }
        if let Some(rest) = name.strip_prefix(DATA_PREFIX) {
            let Some((doctype, file)) = rest.split_once('/') else {
                continue; // instance.json
            };
            let Some(id) = file.strip_suffix(".json") else {
                return Err(ImportError::Archive(format!("{name}: not a JSON document")));
            };
            if Doctype::new(doctype).is_err() || id.is_empty() {
                return Err(ImportError::Archive(format!(
                    "{name}: not <doctype>/<id>.json"
                )));
            }
            if f.size() > MAX_JSON {
                return Err(ImportError::Archive(format!(
                    "{name}: a document larger than 16 MiB"
                )));
            }
            let mut body = Vec::with_capacity(f.size() as usize);
            f.read_to_end(&mut body)
                .map_err(|e| ImportError::Archive(format!("{name}: {e}")))?;
            let entry = Entry::Json {
                doctype: doctype.to_owned(),
                id: id.to_owned(),
                body,
            };
            if tx.blocking_send(Ok(entry)).is_err() {
                return Ok(());
            }
            continue;
        }
        let (ctx, crx) = mpsc::channel(8);
        let entry = Entry::Content {
            name: name.clone(),
            size: f.size(),
            rx: crx,
        };
        if tx.blocking_send(Ok(entry)).is_err() {
            return Ok(());
        }
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if ctx
                        .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        break; // skipped by the importer
                    }
                }
                Err(e) => {
                    // A truncated or corrupt entry (CRC checked at its end).
                    let msg = format!("{name}: {e}");
                    let _ = ctx.blocking_send(Err(std::io::Error::other(msg.clone())));
                    return Err(ImportError::Archive(msg));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_links_become_manifest_urls() {
        assert_eq!(
            manifest_url_of(" https://settings.alice.example.net/#/exports/abc-_= ").as_deref(),
            Some("https://alice.example.net/move/exports/abc-_=")
        );
        assert_eq!(
            manifest_url_of("https://alice-settings.example.net/#/exports/xyz").as_deref(),
            Some("https://alice.example.net/move/exports/xyz")
        );
        assert_eq!(
            manifest_url_of("http://settings.alice.localhost:8080/#/exports/m").as_deref(),
            Some("http://alice.localhost:8080/move/exports/m")
        );
        for bad in [
            "https://settings.alice.example.net/",
            "https://settings.alice.example.net/#/other/x",
            "ftp://settings.a.b/#/exports/x",
            "https://settings.a.b/#/exports/",
            "https://user@settings.a.b/#/exports/x",
            "https://settings.a.b/#/exports/a b",
        ] {
            assert_eq!(manifest_url_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn part_urls() {
        assert_eq!(
            part_url("http://a.localhost:8080/move/exports/MAC", None)
                .ok()
                .as_deref(),
            Some("http://a.localhost:8080/move/exports/data/MAC")
        );
        assert_eq!(
            part_url("http://a/move/exports/MAC", Some("io.cozy.files/x y"))
                .ok()
                .as_deref(),
            Some("http://a/move/exports/data/MAC?cursor=io.cozy.files%2Fx%20y")
        );
    }

    #[test]
    fn entry_names() {
        assert!(safe_name("My Cozy/Files/a/b.txt"));
        for bad in [
            "/etc/passwd",
            "My Cozy/Files/../../x",
            "My Cozy\\x",
            "a/./b",
        ] {
            assert!(!safe_name(bad), "{bad}");
        }
    }
}
