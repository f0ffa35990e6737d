//! Installing, updating and uninstalling: staging, the swap into place, the
//! documents, and the clean-up of what an interrupted operation left.
//!
//! Layout under `<root>/<domain>/<apps|konnectors>/`:
//! - `<slug>/`: the installed files;
//! - `.<slug>.staging-<hex>/`: a package being fetched (`package.tar`, the download;
//!   `package/`, the unpacked or copied files);
//! - `.<slug>.old-<hex>/`: the previous version during an update's swap.
//!
//! Every dot entry of a slug is removed by the next operation on that slug, except
//! an `.old` directory whose `<slug>/` is missing (a crash in the middle of a swap):
//! that one is renamed back, since the documents still describe it.
//!
//! Documents are written in one transaction (the permission document, then the app
//! document) after the files are in place, and deleted in one transaction before the
//! files are removed, so an app whose document exists always has its files.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hearth_core::{Doctype, InstanceId, JsonMap, now_rfc3339, random_hex};
use hearth_instances::permission::PermissionSet;
use hearth_store::{AllDocsQuery, BulkResult, DocStore, GetOptions, NotFoundReason, StoreError};
use serde_json::{Value, json};

use crate::archive::{self, LIMITS};
use crate::http::{self, Got};
use crate::manifest::{relative_path_is_safe, validate_slug};
use crate::registry::{self, Location};
use crate::source::{Source, default_source};
use crate::{AppKind, AppsError, AppsResult, InstalledApp, Manifest};

/// The largest tarball downloaded or read.
pub(crate) const MAX_DOWNLOAD: u64 = 512 << 20;

/// The doctype of permission documents.
pub(crate) const PERMISSIONS: &str = "io.cozy.permissions";

/// Fields of an app document that the server owns: never taken from a manifest,
/// and not part of the manifest read back from a document.
const STACK_FIELDS: [&str; 7] = [
    "state",
    "source",
    "checksum",
    "created_at",
    "updated_at",
    "available_version",
    "error",
];

/// One operation on one app of one instance, with everything it needs owned (it
/// runs in its own task, so a caller going away does not cut it in half).
pub(crate) struct Op {
    pub store: Arc<dyn DocStore>,
    pub inst_id: InstanceId,
    /// `<root>/<domain>/<apps|konnectors>`.
    pub kind_dir: PathBuf,
    pub kind: AppKind,
    pub slug: String,
    /// The registries to search, in order.
    pub bases: Vec<String>,
}

impl Op {
    fn final_dir(&self) -> PathBuf {
        self.kind_dir.join(&self.slug)
    }

    fn id(&self) -> String {
        self.kind.doc_id(&self.slug)
    }
}

pub(crate) async fn install(op: Op, source: Option<String>) -> AppsResult<InstalledApp> {
    validate_slug(&op.slug)?;
    let source = source.unwrap_or_else(|| default_source(&op.slug));
    let parsed = Source::parse(&source)?;
    if get_doc(&op.store, &op.inst_id, op.kind.doctype(), &op.id())
        .await?
        .is_some()
    {
        return Err(AppsError::AlreadyInstalled);
    }
    let (kind_dir, slug) = (op.kind_dir.clone(), op.slug.clone());
    blocking(move || cleanup(&kind_dir, &slug, false).map_err(Into::into)).await?;
    let staged = match stage(&op, parsed, &source, None).await? {
        Staging::Ready(s) => s,
        Staging::UpToDate => {
            return Err(AppsError::Io(io::Error::other(
                "nothing to install (unexpected)",
            )));
        }
    };
    let (tree, staging, final_dir) = (staged.tree.clone(), staged.staging.clone(), op.final_dir());
    blocking(move || {
        fs::rename(&tree, &final_dir)?;
        remove_quietly(&staging);
        Ok(())
    })
    .await?;
    let stale_perm = get_doc(&op.store, &op.inst_id, PERMISSIONS, &op.id()).await?;
    let app = app_doc(&op, &source, &staged, None);
    let perm = permission_doc(&op, &staged, stale_perm.as_ref());
    match write_docs(&op, perm, app).await {
        Ok(doc) => {
            tracing::info!(slug = %op.slug, kind = op.kind.dir_name(), version = %staged.version, %source, "app installed");
            Ok(installed_from_doc(op.kind, doc))
        }
        Err(e) => {
            let (kind_dir, slug) = (op.kind_dir.clone(), op.slug.clone());
            if let Err(clean) =
                blocking(move || cleanup(&kind_dir, &slug, false).map_err(Into::into)).await
            {
                tracing::warn!(slug = %op.slug, error = %clean, "removing the files of a failed install");
            }
            Err(match e {
                AppsError::Store(StoreError::Conflict) => AppsError::AlreadyInstalled,
                e => e,
            })
        }
    }
}

pub(crate) async fn update(op: Op, source: Option<String>) -> AppsResult<InstalledApp> {
    validate_slug(&op.slug)?;
    let Some(current) = get_doc(&op.store, &op.inst_id, op.kind.doctype(), &op.id()).await? else {
        return Err(AppsError::NotInstalled);
    };
    let field = |k: &str| {
        current
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let source = source
        .filter(|s| !s.is_empty())
        .or_else(|| Some(field("source")).filter(|s| !s.is_empty()))
        .unwrap_or_else(|| default_source(&op.slug));
    let parsed = Source::parse(&source)?;
    let (kind_dir, slug) = (op.kind_dir.clone(), op.slug.clone());
    blocking(move || cleanup(&kind_dir, &slug, true).map_err(Into::into)).await?;
    let now = Current {
        version: field("version"),
        checksum: field("checksum"),
        source: field("source"),
    };
    let staged = match stage(&op, parsed, &source, Some(now)).await? {
        Staging::Ready(s) => s,
        Staging::UpToDate => return Ok(installed_from_doc(op.kind, current)),
    };

    // The swap: the old files aside, the new ones in place.
    let old = op
        .kind_dir
        .join(format!(".{}.old-{}", op.slug, random_hex(6)));
    let (tree, staging, final_dir, old_dir) = (
        staged.tree.clone(),
        staged.staging.clone(),
        op.final_dir(),
        old.clone(),
    );
    blocking(move || {
        let had_old = match fs::rename(&final_dir, &old_dir) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e.into()),
        };
        if let Err(e) = fs::rename(&tree, &final_dir) {
            if had_old {
                fs::rename(&old_dir, &final_dir)?;
            }
            return Err(e.into());
        }
        remove_quietly(&staging);
        Ok(())
    })
    .await?;

    let perm_before = get_doc(&op.store, &op.inst_id, PERMISSIONS, &op.id()).await?;
    let app = app_doc(&op, &source, &staged, Some(&current));
    let perm = permission_doc(&op, &staged, perm_before.as_ref());
    match write_docs(&op, perm, app).await {
        Ok(doc) => {
            blocking(move || {
                remove_quietly(&old);
                Ok(())
            })
            .await?;
            tracing::info!(slug = %op.slug, kind = op.kind.dir_name(), from = %field("version"), to = %staged.version, %source, "app updated");
            Ok(installed_from_doc(op.kind, doc))
        }
        Err(e) => {
            // Back to the old files, which the documents still describe.
            let (kind_dir, slug) = (op.kind_dir.clone(), op.slug.clone());
            let final_dir = op.final_dir();
            let back = blocking(move || {
                let trash = kind_dir.join(format!(".{slug}.trash-{}", random_hex(6)));
                match fs::rename(&final_dir, &trash) {
                    Ok(()) => remove_quietly(&trash),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
                match fs::rename(&old, &final_dir) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
                    _ => Ok(()),
                }
            })
            .await;
            if let Err(back) = back {
                tracing::error!(slug = %op.slug, error = %back, "restoring the files of a failed update");
            }
            Err(e)
        }
    }
}

pub(crate) async fn uninstall(op: Op) -> AppsResult<InstalledApp> {
    if validate_slug(&op.slug).is_err() {
        return Err(AppsError::NotInstalled);
    }
    let id = op.id();
    let Some(doc) = get_doc(&op.store, &op.inst_id, op.kind.doctype(), &id).await? else {
        return Err(AppsError::NotInstalled);
    };
    let perm = get_doc(&op.store, &op.inst_id, PERMISSIONS, &id).await?;
    let tombstone = |d: &JsonMap| {
        let mut t = JsonMap::new();
        t.insert("_id".into(), json!(id));
        t.insert("_rev".into(), d.get("_rev").cloned().unwrap_or(Value::Null));
        t.insert("_deleted".into(), json!(true));
        t
    };
    let mut groups = vec![(doctype(op.kind.doctype())?, vec![tombstone(&doc)])];
    if let Some(perm) = &perm {
        groups.push((doctype(PERMISSIONS)?, vec![tombstone(perm)]));
    }
    check_bulk(op.store.bulk_many(&op.inst_id, groups).await?)?;
    let (kind_dir, slug) = (op.kind_dir.clone(), op.slug.clone());
    // The documents are gone: whatever is left on disk is garbage the next
    // operation on this slug removes, so a failure here is only logged.
    if let Err(e) = blocking(move || cleanup(&kind_dir, &slug, false).map_err(Into::into)).await {
        tracing::warn!(slug = %op.slug, error = %e, "removing the files of an uninstalled app");
    }
    tracing::info!(slug = %op.slug, kind = op.kind.dir_name(), "app uninstalled");
    Ok(installed_from_doc(op.kind, doc))
}

pub(crate) async fn get(
    store: &Arc<dyn DocStore>,
    inst_id: &InstanceId,
    kind: AppKind,
    slug: &str,
) -> AppsResult<InstalledApp> {
    if validate_slug(slug).is_err() {
        return Err(AppsError::NotInstalled);
    }
    match get_doc(store, inst_id, kind.doctype(), &kind.doc_id(slug)).await? {
        Some(doc) => Ok(installed_from_doc(kind, doc)),
        None => Err(AppsError::NotInstalled),
    }
}

pub(crate) async fn list(
    store: &Arc<dyn DocStore>,
    inst_id: &InstanceId,
    kind: AppKind,
) -> AppsResult<Vec<InstalledApp>> {
    let q = AllDocsQuery {
        // Ids are `<doctype>/<slug>`; `0` is the byte after `/`.
        start_key: Some(format!("{}/", kind.doctype())),
        end_key: Some(format!("{}0", kind.doctype())),
        inclusive_end: false,
        include_docs: true,
        ..Default::default()
    };
    let rows = match store.all_docs(inst_id, &doctype(kind.doctype())?, &q).await {
        Ok(all) => all.rows,
        Err(StoreError::NotFound(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    Ok(rows
        .into_iter()
        .filter(|r| !r.deleted)
        .filter_map(|r| r.doc)
        .map(|doc| installed_from_doc(kind, doc))
        .collect())
}

pub(crate) async fn permissions(
    store: &Arc<dyn DocStore>,
    inst_id: &InstanceId,
    kind: AppKind,
    slug: &str,
) -> AppsResult<Option<PermissionSet>> {
    if validate_slug(slug).is_err() {
        return Ok(None);
    }
    let id = kind.doc_id(slug);
    let Some(doc) = get_doc(store, inst_id, PERMISSIONS, &id).await? else {
        return Ok(None);
    };
    let ours = doc.get("type").and_then(Value::as_str) == Some(kind.permission_type())
        && doc.get("source_id").and_then(Value::as_str) == Some(id.as_str());
    if !ours {
        return Ok(None);
    }
    let rules = doc.get("permissions").cloned().unwrap_or_else(|| json!({}));
    PermissionSet::from_json(&rules)
        .map(Some)
        .map_err(|e| AppsError::BadManifest(format!("the stored permissions of {slug}: {e}")))
}

/// The installed app a document describes.
pub(crate) fn installed_from_doc(kind: AppKind, doc: JsonMap) -> InstalledApp {
    let field = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let mut slug = field("slug");
    if slug.is_empty() {
        slug = field("_id")
            .rsplit_once('/')
            .map(|(_, s)| s.to_owned())
            .unwrap_or_default();
    }
    let version = field("version");
    let raw: JsonMap = doc
        .iter()
        .filter(|(k, _)| !k.starts_with('_') && !STACK_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let permissions = match raw.get("permissions") {
        None | Some(Value::Null) => PermissionSet::default(),
        Some(p) => PermissionSet::from_json(p).unwrap_or_else(|e| {
            tracing::warn!(%slug, error = %e, "unreadable permissions in an app document");
            PermissionSet::default()
        }),
    };
    let on_delete_account = match kind {
        AppKind::Konnector => raw
            .get("on_delete_account")
            .and_then(Value::as_str)
            .filter(|f| relative_path_is_safe(f))
            .map(str::to_owned),
        AppKind::Webapp => None,
    };
    let manifest = Manifest {
        name: raw
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        slug: slug.clone(),
        version: version.clone(),
        permissions,
        on_delete_account,
        raw,
    };
    InstalledApp {
        kind,
        state: field("state"),
        source: field("source"),
        slug,
        version,
        doc,
        manifest,
    }
}

/// What is installed, to decide whether an update has anything to do.
struct Current {
    version: String,
    checksum: String,
    source: String,
}

/// A package fetched, unpacked and validated, not yet in place.
struct Staged {
    /// The staging directory, removed once the package is in place.
    staging: PathBuf,
    /// The package root inside it.
    tree: PathBuf,
    manifest: Manifest,
    /// The registry's version, or the manifest's.
    version: String,
    checksum: String,
}

enum Staging {
    Ready(Box<Staged>),
    UpToDate,
}

/// Fetches and validates a package into a new staging directory; nothing is left
/// behind on failure or when there is nothing to update.
async fn stage(
    op: &Op,
    source: Source,
    source_str: &str,
    current: Option<Current>,
) -> AppsResult<Staging> {
    let (kind, slug, kind_dir, bases) = (
        op.kind,
        op.slug.clone(),
        op.kind_dir.clone(),
        op.bases.clone(),
    );
    let source_str = source_str.to_owned();
    blocking(move || {
        fs::create_dir_all(&kind_dir)?;
        let staging = kind_dir.join(format!(".{slug}.staging-{}", random_hex(6)));
        fs::create_dir(&staging)?;
        let req = StageRequest {
            kind,
            slug: &slug,
            source: &source,
            source_str: &source_str,
            bases: &bases,
            current: current.as_ref(),
        };
        let result = stage_in(&req, &staging);
        if !matches!(result, Ok(Staging::Ready(_))) {
            remove_quietly(&staging);
        }
        result
    })
    .await
}

struct StageRequest<'a> {
    kind: AppKind,
    slug: &'a str,
    source: &'a Source,
    source_str: &'a str,
    bases: &'a [String],
    current: Option<&'a Current>,
}

fn stage_in(req: &StageRequest<'_>, staging: &Path) -> AppsResult<Staging> {
    let manifest_name = req.kind.manifest_name();
    let unpacked = staging.join("package");
    let (root, checksum, registry_version) = match req.source {
        Source::Registry {
            slug,
            channel,
            version,
        } => {
            let doc = registry::lookup(req.bases, req.kind, slug, *channel, version.as_deref())?;
            if let Some(cur) = req.current
                && cur.version == doc.version
                && cur.source == req.source_str
            {
                return Ok(Staging::UpToDate);
            }
            let (archive, sum) = match &doc.location {
                Location::Http(url) => (staging.join("package.tar"), download(url, staging)?),
                Location::File(path) => (path.clone(), local_tarball_sum(path)?),
            };
            if let Some(expected) = &doc.sha256
                && *expected != sum
            {
                return Err(AppsError::BadArchive(format!(
                    "Application checksum does not match: the registry says {expected}, the tarball is {sum}"
                )));
            }
            fs::create_dir(&unpacked)?;
            archive::extract(&archive, &unpacked, LIMITS)?;
            let root = archive::package_root(&unpacked, manifest_name, doc.tar_prefix.as_deref())?;
            (root, sum, Some(doc.version))
        }
        Source::Http { url, sha256 } => {
            let sum = download(url, staging)?;
            if let Some(expected) = sha256
                && *expected != sum
            {
                return Err(AppsError::BadArchive(format!(
                    "Application checksum does not match: the source says {expected}, the tarball is {sum}"
                )));
            }
            fs::create_dir(&unpacked)?;
            archive::extract(&staging.join("package.tar"), &unpacked, LIMITS)?;
            let root = archive::package_root(&unpacked, manifest_name, None)?;
            (root, sum, None)
        }
        Source::File(path) => {
            let meta = fs::metadata(path).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => AppsError::SourceNotFound(format!(
                    "Application source is not reachable: {} does not exist",
                    path.display()
                )),
                _ => e.into(),
            })?;
            if meta.is_dir() {
                // Copying a folder that holds the staging directory would never end.
                if fs::canonicalize(staging)?.starts_with(fs::canonicalize(path)?) {
                    return Err(AppsError::InvalidInput(format!(
                        "Invalid source: {} holds Hearth's apps directory",
                        path.display()
                    )));
                }
                let sum = archive::copy_folder(path, &unpacked, LIMITS)?;
                (unpacked.clone(), sum, None)
            } else {
                let sum = local_tarball_sum(path)?;
                fs::create_dir(&unpacked)?;
                archive::extract(path, &unpacked, LIMITS)?;
                let root = archive::package_root(&unpacked, manifest_name, None)?;
                (root, sum, None)
            }
        }
    };
    // The download is unpacked: no need to keep it while the rest happens.
    let _ = fs::remove_file(staging.join("package.tar"));
    // The manifest is the package's own (a registry's copy in its version document
    // is not used: what is installed is what the package says).
    let manifest = match archive::read_manifest(&root, manifest_name)? {
        Some(bytes) => Manifest::parse(req.kind, req.slug, &bytes)?,
        None => {
            return Err(AppsError::SourceNotFound(format!(
                "Application manifest is not reachable: the package has no {manifest_name}"
            )));
        }
    };
    let version = registry_version.unwrap_or_else(|| manifest.version.clone());
    if let Some(cur) = req.current
        && cur.version == version
        && cur.checksum == checksum
        && cur.source == req.source_str
    {
        return Ok(Staging::UpToDate);
    }
    Ok(Staging::Ready(Box::new(Staged {
        staging: staging.to_owned(),
        tree: root,
        manifest,
        version,
        checksum,
    })))
}

/// Downloads a tarball to `<staging>/package.tar`; returns its sha256.
fn download(url: &str, staging: &Path) -> AppsResult<String> {
    match http::download(url, &staging.join("package.tar"), MAX_DOWNLOAD)? {
        Got::Found(sum) => Ok(sum),
        Got::NotFound => Err(AppsError::SourceNotFound(format!(
            "Application source is not reachable: {url} answered 404"
        ))),
        Got::Status(status, _) => Err(AppsError::Fetch(format!(
            "Application source is not reachable: {url} answered HTTP {status}"
        ))),
    }
}

/// The sha256 of a local tarball, after checking it exists and is not too large.
fn local_tarball_sum(path: &Path) -> AppsResult<String> {
    let meta = fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => AppsError::SourceNotFound(format!(
            "Application source is not reachable: {} does not exist",
            path.display()
        )),
        _ => e.into(),
    })?;
    if !meta.is_file() {
        return Err(AppsError::SourceNotFound(format!(
            "Application source is not reachable: {} is not a file",
            path.display()
        )));
    }
    if meta.len() > MAX_DOWNLOAD {
        return Err(http::too_large(MAX_DOWNLOAD));
    }
    Ok(archive::sha256_file(path)?)
}

/// The app document: the manifest (without `_` fields) plus the server's fields.
fn app_doc(op: &Op, source: &str, staged: &Staged, previous: Option<&JsonMap>) -> JsonMap {
    let now = now_rfc3339();
    let mut doc = JsonMap::new();
    doc.insert("_id".into(), json!(op.id()));
    if let Some(rev) = previous.and_then(|p| p.get("_rev")) {
        doc.insert("_rev".into(), rev.clone());
    }
    for (k, v) in &staged.manifest.raw {
        if !k.starts_with('_') && !STACK_FIELDS.contains(&k.as_str()) {
            doc.insert(k.clone(), v.clone());
        }
    }
    // The original keeps a konnector's parameters when the new manifest has none.
    if op.kind == AppKind::Konnector
        && doc.get("parameters").is_none_or(Value::is_null)
        && let Some(p) = previous.and_then(|p| p.get("parameters"))
    {
        doc.insert("parameters".into(), p.clone());
    }
    let created = previous
        .and_then(|p| p.get("created_at"))
        .cloned()
        .unwrap_or_else(|| json!(now));
    doc.insert("slug".into(), json!(op.slug));
    doc.insert("source".into(), json!(source));
    doc.insert("state".into(), json!("ready"));
    doc.insert("version".into(), json!(staged.version));
    doc.insert("checksum".into(), json!(staged.checksum));
    doc.insert("permissions".into(), staged.manifest.permissions_json());
    doc.insert("created_at".into(), created);
    doc.insert("updated_at".into(), json!(now));
    doc
}

/// The permission document of an app (id and `source_id` = the app document's id).
fn permission_doc(op: &Op, staged: &Staged, previous: Option<&JsonMap>) -> JsonMap {
    let now = now_rfc3339();
    let created = previous
        .and_then(|p| p.get("cozyMetadata"))
        .and_then(|m| m.get("createdAt"))
        .cloned()
        .unwrap_or_else(|| json!(now));
    let mut doc = JsonMap::new();
    doc.insert("_id".into(), json!(op.id()));
    if let Some(rev) = previous.and_then(|p| p.get("_rev")) {
        doc.insert("_rev".into(), rev.clone());
    }
    doc.insert("type".into(), json!(op.kind.permission_type()));
    doc.insert("source_id".into(), json!(op.id()));
    doc.insert("permissions".into(), staged.manifest.permissions_json());
    doc.insert(
        "cozyMetadata".into(),
        json!({
            "doctypeVersion": "1",
            "metadataVersion": 1,
            "createdAt": created,
            "createdByApp": op.slug,
            "createdByAppVersion": staged.version,
            "updatedAt": now,
        }),
    );
    doc
}

/// Writes the permission document and the app document in one transaction;
/// returns the app document with its new `_rev`.
async fn write_docs(op: &Op, perm: JsonMap, mut app: JsonMap) -> AppsResult<JsonMap> {
    let groups = vec![
        (doctype(PERMISSIONS)?, vec![perm]),
        (doctype(op.kind.doctype())?, vec![app.clone()]),
    ];
    let results = op.store.bulk_many(&op.inst_id, groups).await?;
    check_bulk(results.clone())?;
    if let Some(BulkResult::Ok(w)) = results.get(1).and_then(|g| g.first()) {
        app.insert("_rev".into(), json!(w.rev.to_string()));
    }
    Ok(app)
}

/// The first real failure of an all-or-nothing bulk write (the others are
/// `aborted` because of it).
fn check_bulk(results: Vec<Vec<BulkResult>>) -> AppsResult<()> {
    let failures: Vec<(&'static str, String)> = results
        .into_iter()
        .flatten()
        .filter_map(|r| match r {
            BulkResult::Err { error, reason, .. } => Some((error, reason)),
            BulkResult::Ok(_) => None,
        })
        .collect();
    let first = failures
        .iter()
        .find(|(e, _)| *e != "aborted")
        .or(failures.first());
    match first {
        None => Ok(()),
        Some(("conflict", _)) => Err(StoreError::Conflict.into()),
        Some((error, reason)) => Err(StoreError::InvalidInput(format!("{error}: {reason}")).into()),
    }
}

pub(crate) async fn get_doc(
    store: &Arc<dyn DocStore>,
    inst_id: &InstanceId,
    dt: &str,
    id: &str,
) -> AppsResult<Option<JsonMap>> {
    match store
        .get(inst_id, &doctype(dt)?, id, GetOptions::default())
        .await
    {
        Ok(d) => Ok(Some(d)),
        Err(StoreError::NotFound(
            NotFoundReason::Missing | NotFoundReason::Deleted | NotFoundReason::NoDatabase,
        )) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn doctype(name: &str) -> AppsResult<Doctype> {
    Doctype::new(name).map_err(|e| AppsError::Io(io::Error::other(e.to_string())))
}

/// Removes what earlier operations on `slug` left in `kind_dir` (see the module
/// documentation); `installed` says whether the app's document exists.
fn cleanup(kind_dir: &Path, slug: &str, installed: bool) -> io::Result<()> {
    let entries = match fs::read_dir(kind_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let prefix = format!(".{slug}.");
    let mut olds = Vec::new();
    let mut junk = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        if rest.starts_with("old-") {
            let modified = entry.metadata().and_then(|m| m.modified()).ok();
            olds.push((modified, entry.path()));
        } else {
            junk.push(entry.path());
        }
    }
    let final_dir = kind_dir.join(slug);
    let present = fs::symlink_metadata(&final_dir).is_ok();
    if installed && !present {
        olds.sort();
        if let Some((_, newest)) = olds.pop() {
            tracing::warn!(%slug, from = %newest.display(), "restoring the files of an interrupted update");
            fs::rename(&newest, &final_dir)?;
        }
    }
    if !installed && present {
        junk.push(final_dir);
    }
    for path in junk.into_iter().chain(olds.into_iter().map(|(_, p)| p)) {
        let removed = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
            Ok(_) => fs::remove_file(&path),
            Err(_) => Ok(()),
        };
        removed?;
    }
    Ok(())
}

fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_dir_all(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "removing a staging directory");
    }
}

/// Runs blocking work (HTTP, archives, file trees) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> AppsResult<T> + Send + 'static,
) -> AppsResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AppsError::Io(io::Error::other(format!("blocking task failed: {e}"))))?
}
