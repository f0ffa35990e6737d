//! Creating directories, uploading files and overwriting their content (spec
//! core-api B.8.3): the body streams into a temporary blob while its MD5 and size are
//! computed, then is checked (announced size and MD5, quota), synced, and renamed into
//! place before its document is written. Overwritten content is kept as a version.

use std::io;

use base64::Engine;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use hearth_core::{JsonMap, new_doc_id, now_rfc3339, parse_rfc3339};
use hearth_instances::Instance;
use hearth_store::{AllDocsQuery, StoreError};
use md5::{Digest, Md5};
use serde_json::{Value, json};

use crate::{
    FileDoc, MAX_VERSIONS, ROOT_DIR_ID, Sealed, Vfs, VfsError, VfsResult, files_dt, name,
    versions_dt,
};

/// A directory to create.
#[derive(Debug, Clone, Default)]
pub struct NewDir {
    pub name: String,
    pub tags: Vec<String>,
    /// RFC 3339; now when absent.
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

/// A file to upload.
#[derive(Debug, Clone, Default)]
pub struct NewFile {
    pub name: String,
    /// The request's `Content-Type`; the mime type is guessed from the name when it
    /// is absent or `application/octet-stream`.
    pub content_type: Option<String>,
    /// The announced size (`Content-Length` or `Size`), checked against the bytes.
    pub size: Option<u64>,
    /// The announced MD5 (`Content-MD5`), checked against the bytes.
    pub md5: Option<[u8; 16]>,
    pub executable: bool,
    pub encrypted: bool,
    pub tags: Vec<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub metadata: Option<JsonMap>,
}

/// New content for an existing file.
#[derive(Debug, Clone, Default)]
pub struct Overwrite {
    pub content_type: Option<String>,
    pub size: Option<u64>,
    pub md5: Option<[u8; 16]>,
    pub executable: Option<bool>,
    pub tags: Option<Vec<String>>,
    pub updated_at: Option<String>,
    pub metadata: Option<JsonMap>,
    /// The revision the client last saw (`If-Match`); a mismatch is refused.
    pub if_match: Option<String>,
}

/// Checks an RFC 3339 date given by a client.
fn date(field: &'static str, v: Option<&str>) -> VfsResult<Option<String>> {
    match v.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) if parse_rfc3339(s).is_some() => Ok(Some(s.to_owned())),
        Some(s) => Err(VfsError::invalid(
            field,
            format!("{s:?} is not an RFC 3339 date such as 2024-01-31T10:00:00Z"),
        )),
    }
}

/// `created_at` and `updated_at`, with `updated_at >= created_at`.
fn dates(created: Option<&str>, updated: Option<&str>) -> VfsResult<(String, String)> {
    let now = now_rfc3339();
    let created = date("CreatedAt", created)?;
    let updated = date("UpdatedAt", updated)?;
    let updated = updated
        .or_else(|| created.clone())
        .unwrap_or_else(|| now.clone());
    let created = created.unwrap_or_else(|| now.clone());
    let created = match (parse_rfc3339(&created), parse_rfc3339(&updated)) {
        (Some(c), Some(u)) if u < c => updated.clone(),
        _ => created,
    };
    Ok((created, updated))
}

fn cozy_metadata(domain: &str, created: &str, now: &str, upload: bool) -> Value {
    let mut m = json!({
        "doctypeVersion": "1",
        "metadataVersion": 1,
        "createdAt": created,
        "updatedAt": now,
        "createdOn": format!("https://{domain}/"),
    });
    if upload {
        m["uploadedAt"] = Value::String(now.to_owned());
        m["uploadedOn"] = Value::String(format!("https://{domain}/"));
    }
    m
}

/// Checks a new entry's name in its parent.
pub(crate) fn check_new_name(parent: &FileDoc, name: &str) -> VfsResult<()> {
    name::check_name(name)?;
    if parent.id == ROOT_DIR_ID {
        name::check_root_name(name)?;
    }
    Ok(())
}

/// The MD5 of some bytes, as stored: standard base64.
pub(crate) fn md5_b64(digest: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// What the uploaded bytes turned out to be.
pub(crate) struct Received {
    pub(crate) sealed: Sealed,
    pub(crate) md5: [u8; 16],
}

impl Vfs {
    /// Creates a directory in `parent_id` (the root when empty).
    pub async fn create_dir(
        &self,
        inst: &Instance,
        parent_id: &str,
        d: NewDir,
    ) -> VfsResult<FileDoc> {
        let (created, updated) = dates(d.created_at.as_deref(), d.updated_at.as_deref())?;
        let _guard = self.lock(inst).await;
        let parent = self.live_dir(inst, parent_id).await?;
        check_new_name(&parent, &d.name)?;
        if self
            .child_by_name(inst, &parent.id, &d.name)
            .await?
            .is_some()
        {
            return Err(VfsError::Exists);
        }
        let path = name::join(&parent.path, &d.name);
        self.blobs.mkdir(&inst.domain, &path).await?;
        let now = now_rfc3339();
        let body = json!({
            "type": "directory",
            "name": d.name,
            "dir_id": parent.id,
            "path": path,
            "created_at": created,
            "updated_at": updated,
            "tags": d.tags,
            "cozyMetadata": cozy_metadata(&inst.domain, &now, &now, false),
        });
        let mut doc = FileDoc {
            id: new_doc_id(),
            rev: String::new(),
            body: object(body),
            path,
        };
        let w = self
            .store
            .put(&inst.instance_id(), &files_dt(), doc.to_stored())
            .await?;
        doc.rev = w.rev.to_string();
        Ok(doc)
    }

    /// Creates the directories of an absolute path that do not exist (`mkdir -p`),
    /// and answers the last one. The caller holds the lock.
    pub(crate) async fn mkdir_p_locked(&self, inst: &Instance, path: &str) -> VfsResult<FileDoc> {
        let names = name::split_path(path)?;
        let mut dir = self.get_raw(inst, ROOT_DIR_ID).await?;
        for n in names {
            dir = match self.child_by_name(inst, &dir.id, n).await? {
                Some(d) if d.is_dir() => d,
                Some(_) => return Err(VfsError::Exists),
                None => {
                    check_new_name(&dir, n)?;
                    let path = name::join(&dir.path, n);
                    self.blobs.mkdir(&inst.domain, &path).await?;
                    let now = now_rfc3339();
                    let mut d = FileDoc {
                        id: new_doc_id(),
                        rev: String::new(),
                        body: object(json!({
                            "type": "directory", "name": n, "dir_id": dir.id, "path": path,
                            "created_at": now, "updated_at": now, "tags": [],
                            "cozyMetadata": cozy_metadata(&inst.domain, &now, &now, false),
                        })),
                        path,
                    };
                    let w = self
                        .store
                        .put(&inst.instance_id(), &files_dt(), d.to_stored())
                        .await?;
                    d.rev = w.rev.to_string();
                    d
                }
            };
        }
        Ok(dir)
    }

    /// Streams `body` into a temporary blob, checking the announced size and MD5 and
    /// the room left. Nothing is left behind on failure.
    pub(crate) async fn receive<S>(
        &self,
        inst: &Instance,
        mut body: S,
        size: Option<u64>,
        md5: Option<[u8; 16]>,
        durable: bool,
    ) -> VfsResult<Received>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + Unpin,
    {
        let room = self.room(inst).await?;
        if let (Some(size), Some(room)) = (size, room)
            && size > room
        {
            return Err(VfsError::QuotaExceeded);
        }
        // Dropping `temp` on any early return removes the temporary file.
        let mut temp = self.blobs.create_temp(&inst.domain).await?;
        let mut hasher = Md5::new();
        let mut n: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(VfsError::Body)?;
            n += chunk.len() as u64;
            if let Some(expected) = size
                && n > expected
            {
                return Err(VfsError::SizeMismatch {
                    expected,
                    actual: n,
                });
            }
            if room.is_some_and(|r| n > r) {
                return Err(VfsError::QuotaExceeded);
            }
            hasher.update(&chunk);
            temp.write(&chunk).await?;
        }
        if let Some(expected) = size
            && n != expected
        {
            return Err(VfsError::SizeMismatch {
                expected,
                actual: n,
            });
        }
        let digest: [u8; 16] = hasher.finalize().into();
        if md5.is_some_and(|m| m != digest) {
            return Err(VfsError::Md5Mismatch);
        }
        let sealed = if durable {
            temp.seal().await?
        } else {
            temp.seal_unsynced().await?
        };
        Ok(Received {
            sealed,
            md5: digest,
        })
    }

    /// Uploads a new file into `parent_id` (the root when empty).
    pub async fn upload<S>(
        &self,
        inst: &Instance,
        parent_id: &str,
        f: NewFile,
        body: S,
    ) -> VfsResult<FileDoc>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + Unpin,
    {
        // Cheap checks first: a refused upload should not have to be sent whole.
        let (created, updated) = dates(f.created_at.as_deref(), f.updated_at.as_deref())?;
        let parent = self.live_dir(inst, parent_id).await?;
        check_new_name(&parent, &f.name)?;
        if self
            .child_by_name(inst, &parent.id, &f.name)
            .await?
            .is_some()
        {
            return Err(VfsError::Exists);
        }
        let received = self.receive(inst, body, f.size, f.md5, true).await?;
        let size = received.sealed.size;
        let guard = self.lock(inst).await;
        let result = async {
            // Checked again under the lock: things may have changed during the upload.
            let parent = self.live_dir(inst, &parent.id).await?;
            if self
                .child_by_name(inst, &parent.id, &f.name)
                .await?
                .is_some()
            {
                return Err(VfsError::Exists);
            }
            self.check_room(inst, size).await?;
            Ok(parent)
        }
        .await;
        let parent = match result {
            Ok(p) => p,
            Err(e) => {
                self.blobs.discard(&inst.domain, received.sealed).await;
                return Err(e);
            }
        };
        let mime = name::mime_of(f.content_type.as_deref(), &f.name);
        let now = now_rfc3339();
        let mut body = object(json!({
            "type": "file",
            "name": f.name,
            "dir_id": parent.id,
            "size": size,
            "md5sum": md5_b64(&received.md5),
            "mime": mime,
            "class": name::class_of(&mime),
            "executable": f.executable,
            "encrypted": f.encrypted,
            "trashed": false,
            "created_at": created,
            "updated_at": updated,
            "tags": f.tags,
        }));
        if let Some(m) = f.metadata {
            body.insert("metadata".into(), Value::Object(m));
        }
        body.insert(
            "cozyMetadata".into(),
            cozy_metadata(&inst.domain, &now, &now, true),
        );
        let mut doc = FileDoc {
            id: new_doc_id(),
            rev: String::new(),
            path: name::join(&parent.path, &f.name),
            body,
        };
        if let Err(e) = self
            .blobs
            .commit_new(received.sealed, doc.blob(&inst.domain))
            .await
        {
            return Err(if e.kind() == io::ErrorKind::AlreadyExists {
                tracing::warn!(domain = %inst.domain, path = %doc.path, "a file not known to Hearth is in the way of an upload");
                VfsError::Exists
            } else {
                e.into()
            });
        }
        match self
            .store
            .put(&inst.instance_id(), &files_dt(), doc.to_stored())
            .await
        {
            Ok(w) => doc.rev = w.rev.to_string(),
            Err(e) => {
                if let Err(re) = self.blobs.remove(doc.blob(&inst.domain)).await {
                    tracing::error!(error = %re, path = %doc.path, "cannot remove the content of a failed upload");
                }
                return Err(e.into());
            }
        }
        self.adjust_usage(inst, i128::from(size), 0);
        drop(guard);
        Ok(doc)
    }

    /// Replaces the content of a file (`PUT /files/:id`); the former content becomes
    /// an old version (at most [`MAX_VERSIONS`] are kept).
    pub async fn overwrite<S>(
        &self,
        inst: &Instance,
        id: &str,
        o: Overwrite,
        body: S,
    ) -> VfsResult<FileDoc>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + Unpin,
    {
        let updated_at = date("UpdatedAt", o.updated_at.as_deref())?;
        let current = self.get_raw(inst, id).await?;
        check_overwritable(&current, o.if_match.as_deref())?;
        let received = self.receive(inst, body, o.size, o.md5, true).await?;
        let size = received.sealed.size;
        let guard = self.lock(inst).await;
        let checked = async {
            let current = self.get(inst, id).await?;
            check_overwritable(&current, o.if_match.as_deref())?;
            self.check_room(inst, size).await?;
            Ok(current)
        }
        .await;
        let old = match checked {
            Ok(c) => c,
            Err(e) => {
                self.blobs.discard(&inst.domain, received.sealed).await;
                return Err(e);
            }
        };
        // The thumbnails of the old content go first (under the lock, so none can be
        // written meanwhile): they must never be served for the new content. The job
        // system makes new ones.
        if let Err(e) = self.blobs.remove_thumbs(&inst.domain, &old.id).await {
            self.blobs.discard(&inst.domain, received.sealed).await;
            return Err(e.into());
        }
        let version_key = old.rev.clone();
        let kept = self
            .blobs
            .commit_replace(received.sealed, old.blob(&inst.domain), Some(&version_key))
            .await?;
        let now = now_rfc3339();
        let mut doc = old.clone();
        let mime = name::mime_of(o.content_type.as_deref(), old.name());
        let b = &mut doc.body;
        b.insert("size".into(), json!(size));
        b.insert("md5sum".into(), json!(md5_b64(&received.md5)));
        b.insert("class".into(), json!(name::class_of(&mime)));
        b.insert("mime".into(), json!(mime));
        b.insert(
            "updated_at".into(),
            json!(updated_at.unwrap_or(now.clone())),
        );
        if let Some(x) = o.executable {
            b.insert("executable".into(), json!(x));
        }
        if let Some(t) = o.tags {
            b.insert("tags".into(), json!(t));
        }
        if let Some(m) = o.metadata {
            b.insert("metadata".into(), Value::Object(m));
        }
        if let Some(Value::Object(cm)) = b.get_mut("cozyMetadata") {
            cm.insert("updatedAt".into(), json!(now));
            cm.insert("uploadedAt".into(), json!(now));
        }
        match self
            .store
            .put(&inst.instance_id(), &files_dt(), doc.to_stored())
            .await
        {
            Ok(w) => doc.rev = w.rev.to_string(),
            Err(e) => {
                // Put the old content back, so content and document agree again.
                if kept
                    && let Err(re) = self
                        .blobs
                        .restore_version(old.blob(&inst.domain), &version_key)
                        .await
                {
                    tracing::error!(error = %re, path = %old.path, "cannot restore the content of a failed overwrite");
                }
                return Err(e.into());
            }
        }
        let old_size = old.size();
        if kept {
            self.add_version(inst, &old, &version_key).await;
            self.adjust_usage(
                inst,
                i128::from(size) - i128::from(old_size),
                i128::from(old_size),
            );
            self.prune_versions(inst, &old.id).await;
        } else {
            self.adjust_usage(inst, i128::from(size) - i128::from(old_size), 0);
        }
        drop(guard);
        Ok(doc)
    }

    /// Writes the `io.cozy.files.versions` document of kept content. A failure only
    /// loses the old version (logged), never the new content.
    async fn add_version(&self, inst: &Instance, old: &FileDoc, key: &str) {
        let mut v = object(json!({
            "_id": format!("{}/{}", old.id, key),
            "updated_at": old.updated_at(),
            "size": old.size(),
            "md5sum": old.md5sum(),
            "tags": old.body.get("tags").cloned().unwrap_or(json!([])),
            "relationships": {"file": {"data": {"_id": old.id, "_type": crate::FILES}}},
        }));
        for k in ["metadata", "cozyMetadata"] {
            if let Some(x) = old.body.get(k) {
                v.insert(k.into(), x.clone());
            }
        }
        if let Err(e) = self.store.put(&inst.instance_id(), &versions_dt(), v).await {
            tracing::error!(error = %e, file = %old.id, "cannot record an old version; dropping its content");
            let _ = self
                .blobs
                .remove_versions(&inst.domain, &old.id, Some(key))
                .await;
        }
    }

    /// The old versions of a file (`io.cozy.files.versions` documents), oldest first.
    pub async fn versions_of(&self, inst: &Instance, file_id: &str) -> VfsResult<Vec<JsonMap>> {
        let q = AllDocsQuery {
            start_key: Some(format!("{file_id}/")),
            // '0' follows '/' in byte order: every `<id>/…` key is before it.
            end_key: Some(format!("{file_id}0")),
            inclusive_end: false,
            include_docs: true,
            ..Default::default()
        };
        let rows = match self
            .store
            .all_docs(&inst.instance_id(), &versions_dt(), &q)
            .await
        {
            Ok(r) => r.rows,
            Err(StoreError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mut docs: Vec<JsonMap> = rows.into_iter().filter_map(|r| r.doc).collect();
        let generation = |d: &JsonMap| -> u64 {
            d.get("_id")
                .and_then(Value::as_str)
                .and_then(|id| id.rsplit_once('/'))
                .and_then(|(_, rev)| rev.split_once('-'))
                .and_then(|(n, _)| n.parse().ok())
                .unwrap_or(0)
        };
        docs.sort_by_key(generation);
        Ok(docs)
    }

    /// Removes the oldest versions beyond [`MAX_VERSIONS`] (failures are logged).
    async fn prune_versions(&self, inst: &Instance, file_id: &str) {
        let versions = match self.versions_of(inst, file_id).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, file = file_id, "cannot list old versions");
                return;
            }
        };
        let excess = versions.len().saturating_sub(MAX_VERSIONS);
        for v in versions.into_iter().take(excess) {
            if let Err(e) = self.remove_version(inst, file_id, &v).await {
                tracing::warn!(error = %e, file = file_id, "cannot remove an old version");
            }
        }
    }

    /// Removes one old version: its document, then its content.
    pub(crate) async fn remove_version(
        &self,
        inst: &Instance,
        file_id: &str,
        v: &JsonMap,
    ) -> VfsResult<()> {
        let (Some(id), Some(rev)) = (
            v.get("_id").and_then(Value::as_str),
            v.get("_rev").and_then(Value::as_str),
        ) else {
            return Ok(());
        };
        let rev = rev
            .parse()
            .map_err(|e: hearth_core::InvalidRev| VfsError::BadRequest(e.to_string()))?;
        self.store
            .delete(&inst.instance_id(), &versions_dt(), id, &rev)
            .await?;
        let key = id.rsplit_once('/').map_or(id, |(_, k)| k);
        self.blobs
            .remove_versions(&inst.domain, file_id, Some(key))
            .await?;
        self.adjust_usage(inst, 0, -i128::from(crate::size_of(v)));
        Ok(())
    }
}

/// A file whose content can be replaced, at the revision the client saw.
fn check_overwritable(doc: &FileDoc, if_match: Option<&str>) -> VfsResult<()> {
    if doc.is_dir() {
        return Err(VfsError::BadRequest(
            "A directory has no content to overwrite".into(),
        ));
    }
    if doc.in_trash() {
        return Err(VfsError::BadRequest(
            "The file is in the trash: restore it first".into(),
        ));
    }
    check_rev(doc, if_match)
}

/// Refuses a stale `If-Match`.
pub(crate) fn check_rev(doc: &FileDoc, if_match: Option<&str>) -> VfsResult<()> {
    match if_match
        .map(|r| r.trim().trim_matches('"'))
        .filter(|r| !r.is_empty())
    {
        Some(r) if r != doc.rev => Err(VfsError::RevMismatch),
        _ => Ok(()),
    }
}

pub(crate) fn object(v: Value) -> JsonMap {
    match v {
        Value::Object(m) => m,
        _ => JsonMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_checked_and_ordered() {
        let (c, u) = dates(Some("2024-01-02T00:00:00Z"), Some("2024-01-01T00:00:00Z")).unwrap();
        assert_eq!(
            (c.as_str(), u.as_str()),
            ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z")
        );
        let (c, u) = dates(Some("2024-01-01T00:00:00Z"), None).unwrap();
        assert_eq!(c, u);
        assert!(matches!(
            dates(None, Some("yesterday")),
            Err(VfsError::Invalid {
                field: "UpdatedAt",
                ..
            })
        ));
    }
}
