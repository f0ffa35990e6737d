//! Recreating a tree from an archive (spec move 2.6, 2.7): directories and files keep
//! their ids, names, dates and metadata; content is checked against the size and MD5
//! the archive announces before anything is written; old versions are added back with
//! their content. Paths are always recomputed from the parent: an archive cannot put
//! anything outside the instance's tree.

use std::io;

use base64::Engine;
use bytes::Bytes;
use futures_util::Stream;
use hearth_core::{JsonMap, now_rfc3339};
use hearth_instances::Instance;
use serde_json::Value;

use crate::write::check_new_name;
use crate::{FileDoc, ROOT_DIR_ID, TRASH_DIR_ID, Vfs, VfsError, VfsResult, files_dt, versions_dt};

/// How many imported files' documents are written per transaction.
pub const IMPORT_BATCH: usize = 200;

/// Imported files whose content is in place and whose documents wait to be written
/// together (see [`Vfs::import_file`]).
#[derive(Debug, Default)]
pub struct ImportBatch {
    docs: Vec<(FileDoc, u64)>,
    names: std::collections::HashSet<(String, String)>,
    ids: std::collections::HashSet<String>,
    bytes: u64,
}

impl ImportBatch {
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }
}

/// Fields of an archived document that the importer sets itself.
const OWN_FIELDS: [&str; 4] = ["_id", "_rev", "path", "dir_id"];

fn text<'a>(doc: &'a JsonMap, k: &str) -> &'a str {
    doc.get(k).and_then(Value::as_str).unwrap_or("")
}

fn id_of(doc: &JsonMap) -> VfsResult<String> {
    let id = text(doc, "_id");
    if id.is_empty() || id.len() > 256 || id.contains(['/', '\0']) {
        return Err(VfsError::invalid("_id", format!("{id:?} is not a file id")));
    }
    Ok(id.to_owned())
}

/// The MD5 announced by an archived document (`md5sum`, standard base64).
fn md5_of(doc: &JsonMap) -> VfsResult<[u8; 16]> {
    let raw = text(doc, "md5sum");
    base64::engine::general_purpose::STANDARD
        .decode(raw)
        .ok()
        .and_then(|v| <[u8; 16]>::try_from(v).ok())
        .ok_or_else(|| VfsError::invalid("md5sum", format!("{raw:?} is not a base64 MD5")))
}

fn size_field(doc: &JsonMap) -> VfsResult<u64> {
    match doc.get("size") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| VfsError::invalid("size", "a file needs its size"))
}

impl Vfs {
    /// Removes every file, version and thumbnail of an instance (the documents are the
    /// caller's) and creates the root and trash directories on storage.
    pub async fn clear(&self, inst: &Instance) -> VfsResult<()> {
        let _guard = self.lock(inst).await;
        self.blobs.clear(&inst.domain).await?;
        self.blobs.mkdir(&inst.domain, crate::TRASH_PATH).await?;
        self.forget_usage(inst);
        // The documents were deleted too: the listing index must be declared again.
        self.indexed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&crate::key_of(inst));
        Ok(())
    }

    /// Waits until the imported files are on stable storage: imports write content
    /// without an fsync per file and call this once per part, before the part counts
    /// as imported.
    pub async fn sync_imported(&self, inst: &Instance) -> VfsResult<()> {
        self.blobs.sync(&inst.domain).await?;
        Ok(())
    }

    /// The parent of an imported entry: an existing directory (the trash is fine).
    async fn import_parent(&self, inst: &Instance, doc: &JsonMap) -> VfsResult<FileDoc> {
        let dir_id = match text(doc, "dir_id") {
            "" => ROOT_DIR_ID,
            d => d,
        };
        let parent = self.get_raw(inst, dir_id).await.map_err(|e| match e {
            VfsError::NotFound(_) => {
                VfsError::NotFound("the parent directory is not in the archive before it")
            }
            e => e,
        })?;
        if !parent.is_dir() {
            return Err(VfsError::NotFound("the parent is not a directory"));
        }
        Ok(parent)
    }

    /// The body of an imported entry: the archived one, with `name`, `dir_id`,
    /// `path` and `trashed` set from where it really goes.
    fn import_body(doc: JsonMap, parent: &FileDoc, name: &str) -> (JsonMap, String) {
        let path = crate::name::join(&parent.path, name);
        let mut body = doc;
        for k in OWN_FIELDS {
            body.shift_remove(k);
        }
        body.insert("dir_id".into(), Value::String(parent.id.clone()));
        let trashed = parent.id == TRASH_DIR_ID
            || parent.path.starts_with(&format!("{}/", crate::TRASH_PATH));
        if trashed || body.contains_key("trashed") {
            body.insert("trashed".into(), Value::Bool(trashed));
        }
        (body, path)
    }

    /// Recreates an archived directory with its id. The root and the trash are not
    /// imported (they exist); an entry whose id or name is taken is refused.
    pub async fn import_dir(&self, inst: &Instance, doc: JsonMap) -> VfsResult<FileDoc> {
        let id = id_of(&doc)?;
        if text(&doc, "type") != "directory" {
            return Err(VfsError::invalid("type", "not a directory"));
        }
        let name = text(&doc, "name").to_owned();
        let _guard = self.lock(inst).await;
        let parent = self.import_parent(inst, &doc).await?;
        check_new_name(&parent, &name)?;
        if self.child_by_name(inst, &parent.id, &name).await?.is_some() {
            return Err(VfsError::Exists);
        }
        let (mut body, path) = Self::import_body(doc, &parent, &name);
        body.insert("path".into(), Value::String(path.clone()));
        self.blobs.mkdir(&inst.domain, &path).await?;
        let mut d = FileDoc {
            id,
            rev: String::new(),
            body,
            path,
        };
        let w = self
            .store
            .put(&inst.instance_id(), &files_dt(), d.to_stored())
            .await?;
        d.rev = w.rev.to_string();
        Ok(d)
    }

    /// Recreates an archived file with its id and its content, which must have the
    /// size and MD5 the document announces. Certification flags from elsewhere
    /// (`metadata.carbonCopy`, `metadata.electronicSafe`) are dropped.
    ///
    /// The content is in place when this returns; the document waits in `batch`
    /// until [`Vfs::flush_import`] writes them in one transaction: the caller flushes
    /// every [`IMPORT_BATCH`] files and before anything that needs them (versions,
    /// directories, the end of a part).
    pub async fn import_file<S>(
        &self,
        inst: &Instance,
        doc: JsonMap,
        body: S,
        batch: &mut ImportBatch,
    ) -> VfsResult<()>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + Unpin,
    {
        let id = id_of(&doc)?;
        if text(&doc, "type") != "file" {
            return Err(VfsError::invalid("type", "not a file"));
        }
        let name = text(&doc, "name").to_owned();
        let size = size_field(&doc)?;
        let md5 = md5_of(&doc)?;
        let parent = self.import_parent(inst, &doc).await?;
        check_new_name(&parent, &name)?;
        let received = self
            .receive(inst, body, Some(size), Some(md5), false)
            .await?;
        let guard = self.lock(inst).await;
        let checked = async {
            let parent = self.import_parent(inst, &doc).await?;
            let key = (parent.id.clone(), name.clone());
            if batch.names.contains(&key)
                || batch.ids.contains(&id)
                || self.child_by_name(inst, &parent.id, &name).await?.is_some()
            {
                return Err(VfsError::Exists);
            }
            self.check_room(inst, size.saturating_add(batch.bytes))
                .await?;
            Ok(parent)
        }
        .await;
        let parent = match checked {
            Ok(p) => p,
            Err(e) => {
                self.blobs.discard(&inst.domain, received.sealed).await;
                return Err(e);
            }
        };
        let (mut body, path) = Self::import_body(doc, &parent, &name);
        if let Some(Value::Object(m)) = body.get_mut("metadata") {
            m.shift_remove("carbonCopy");
            m.shift_remove("electronicSafe");
        }
        if text(&body, "mime").is_empty() {
            let mime = crate::name::mime_of(None, &name);
            body.insert("class".into(), Value::String(crate::name::class_of(&mime)));
            body.insert("mime".into(), Value::String(mime));
        }
        for k in ["created_at", "updated_at"] {
            if text(&body, k).is_empty() {
                body.insert(k.into(), Value::String(now_rfc3339()));
            }
        }
        let d = FileDoc {
            id,
            rev: String::new(),
            body,
            path,
        };
        if let Err(e) = self
            .blobs
            .commit_new_unsynced(received.sealed, d.blob(&inst.domain))
            .await
        {
            return Err(if e.kind() == io::ErrorKind::AlreadyExists {
                VfsError::Exists
            } else {
                e.into()
            });
        }
        drop(guard);
        batch.names.insert((parent.id.clone(), name));
        batch.ids.insert(d.id.clone());
        batch.bytes = batch.bytes.saturating_add(size);
        batch.docs.push((d, size));
        Ok(())
    }

    /// Writes the documents of the imported files waiting in `batch` (one
    /// transaction). On a failure, their content is removed.
    pub async fn flush_import(&self, inst: &Instance, batch: &mut ImportBatch) -> VfsResult<usize> {
        if batch.docs.is_empty() {
            return Ok(0);
        }
        let pending = std::mem::take(&mut batch.docs);
        batch.names.clear();
        batch.ids.clear();
        batch.bytes = 0;
        let _guard = self.lock(inst).await;
        let docs = pending.iter().map(|(d, _)| d.to_stored()).collect();
        let written = self
            .store
            .bulk(&inst.instance_id(), &files_dt(), docs, true)
            .await;
        let failure = match written {
            Ok(results) => results.into_iter().find_map(|r| match r {
                hearth_store::BulkResult::Err { id, reason, .. } => {
                    Some(format!("{}: {reason}", id.unwrap_or_default()))
                }
                hearth_store::BulkResult::Ok(_) => None,
            }),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = failure {
            for (d, _) in &pending {
                if let Err(re) = self.blobs.remove(d.blob(&inst.domain)).await {
                    tracing::error!(error = %re, path = %d.path, "cannot remove the content of a failed import");
                }
            }
            return Err(VfsError::BadRequest(format!(
                "the imported files could not be recorded: {why}"
            )));
        }
        let total: u64 = pending.iter().map(|(_, s)| *s).sum();
        self.adjust_usage(inst, i128::from(total), 0);
        Ok(pending.len())
    }

    /// Adds an archived old version (`<file id>/<version>`) to its file, with its
    /// content (size and MD5 checked).
    pub async fn import_version<S>(&self, inst: &Instance, doc: JsonMap, body: S) -> VfsResult<()>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + Unpin,
    {
        let full = text(&doc, "_id").to_owned();
        let Some((file_id, version)) = full.split_once('/') else {
            return Err(VfsError::invalid(
                "_id",
                format!("{full:?} is not <file id>/<version>"),
            ));
        };
        if file_id.is_empty()
            || version.is_empty()
            || version.contains('/')
            || version.starts_with('.')
        {
            return Err(VfsError::invalid(
                "_id",
                format!("{full:?} is not <file id>/<version>"),
            ));
        }
        let file = self.get_raw(inst, file_id).await.map_err(|e| match e {
            VfsError::NotFound(_) => {
                VfsError::NotFound("the file of this version is not in the archive")
            }
            e => e,
        })?;
        if file.is_dir() {
            return Err(VfsError::NotFound(
                "the file of this version is a directory",
            ));
        }
        let size = size_field(&doc)?;
        let md5 = md5_of(&doc)?;
        let received = self
            .receive(inst, body, Some(size), Some(md5), false)
            .await?;
        let guard = self.lock(inst).await;
        if let Err(e) = self.check_room(inst, size).await {
            self.blobs.discard(&inst.domain, received.sealed).await;
            return Err(e);
        }
        if let Err(e) = self
            .blobs
            .commit_version(received.sealed, &inst.domain, file_id, version)
            .await
        {
            return Err(if e.kind() == io::ErrorKind::AlreadyExists {
                VfsError::Exists
            } else {
                e.into()
            });
        }
        let mut v = doc;
        v.shift_remove("_rev");
        v.insert(
            "relationships".into(),
            serde_json::json!({"file": {"data": {"_id": file_id, "_type": crate::FILES}}}),
        );
        if let Err(e) = self.store.put(&inst.instance_id(), &versions_dt(), v).await {
            let _ = self
                .blobs
                .remove_versions(&inst.domain, file_id, Some(version))
                .await;
            return Err(e.into());
        }
        self.adjust_usage(inst, 0, i128::from(size));
        drop(guard);
        Ok(())
    }
}
