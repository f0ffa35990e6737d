//! Changing the tree: rename, move and other attributes (`PATCH`), the trash (trash,
//! restore, destroy, empty), and references. A move is one rename(2) on disk and one
//! all-or-nothing bulk write of the moved documents; if the write fails the rename is
//! undone.

use hearth_core::{JsonMap, now_rfc3339, random_hex};
use hearth_instances::Instance;
use hearth_store::{BulkResult, StoreError};
use serde_json::{Value, json};

use crate::write::{check_new_name, check_rev};
use crate::{FileDoc, ROOT_DIR_ID, TRASH_DIR_ID, Vfs, VfsError, VfsResult, files_dt, name};

/// Changes asked by `PATCH /files/:id`.
#[derive(Debug, Clone, Default)]
pub struct Patch {
    pub name: Option<String>,
    /// The new parent directory (a move).
    pub dir_id: Option<String>,
    pub tags: Option<Vec<String>>,
    pub executable: Option<bool>,
    /// RFC 3339; now when absent.
    pub updated_at: Option<String>,
    pub metadata: Option<JsonMap>,
    /// `cozyMetadata.favorite`.
    pub favorite: Option<bool>,
    pub if_match: Option<String>,
}

fn is_special(id: &str) -> bool {
    id == ROOT_DIR_ID || id == TRASH_DIR_ID
}

/// The directory part of a path: `/a/b` → `/a`, `/a` → `/`.
fn parent_path(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((p, _)) => p,
    }
}

/// A name with the suffix the trash adds on a clash (` (1a2b3c4d)`) removed.
fn without_conflict_suffix(name: &str) -> &str {
    if let Some(rest) = name.strip_suffix(')')
        && let Some((base, suffix)) = rest.rsplit_once(" (")
        && !base.is_empty()
        && suffix.len() == 8
        && suffix.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return base;
    }
    name
}

fn with_conflict_suffix(name: &str) -> String {
    format!("{name} ({})", random_hex(4))
}

impl Vfs {
    /// Renames, moves, or changes the attributes of a file or directory.
    pub async fn patch(&self, inst: &Instance, id: &str, p: Patch) -> VfsResult<FileDoc> {
        let _guard = self.lock(inst).await;
        let doc = self.get(inst, id).await?;
        check_rev(&doc, p.if_match.as_deref())?;
        let new_name = p.name.clone().unwrap_or_else(|| doc.name().to_owned());
        let new_dir = p
            .dir_id
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| doc.dir_id().to_owned());
        let moving = new_name != doc.name() || new_dir != doc.dir_id();
        if moving && is_special(&doc.id) {
            return Err(VfsError::BadRequest(
                "The root and the trash cannot be renamed or moved".into(),
            ));
        }
        let mut updated = doc.clone();
        apply(&mut updated, &p)?;
        if !moving {
            let w = self
                .store
                .put(&inst.instance_id(), &files_dt(), updated.to_stored())
                .await?;
            updated.rev = w.rev.to_string();
            return Ok(updated);
        }
        if doc.in_trash() {
            return Err(VfsError::BadRequest(
                "This is in the trash: restore it before renaming or moving it".into(),
            ));
        }
        if new_dir == TRASH_DIR_ID {
            return Err(VfsError::BadRequest(
                "Use DELETE /files/:id to put something in the trash".into(),
            ));
        }
        let parent = self.live_dir(inst, &new_dir).await?;
        if doc.is_dir()
            && (parent.id == doc.id || parent.path.starts_with(&format!("{}/", doc.path)))
        {
            return Err(VfsError::BadRequest(
                "A directory cannot be moved into itself or one of its subdirectories".into(),
            ));
        }
        check_new_name(&parent, &new_name)?;
        if let Some(other) = self.child_by_name(inst, &parent.id, &new_name).await?
            && other.id != doc.id
        {
            return Err(VfsError::Exists);
        }
        self.move_locked(inst, updated, &parent, &new_name, None)
            .await
    }

    /// Moves `doc` (already changed as wanted) to `parent` under `new_name`: the disk
    /// rename, then the documents of `doc` and everything below it (directories'
    /// paths; files' `trashed` when `trashed` is given) in one transaction.
    async fn move_locked(
        &self,
        inst: &Instance,
        mut doc: FileDoc,
        parent: &FileDoc,
        new_name: &str,
        trashed: Option<bool>,
    ) -> VfsResult<FileDoc> {
        let old_path = doc.path.clone();
        let new_path = name::join(&parent.path, new_name);
        let below = if doc.is_dir() {
            self.descendants(inst, &doc).await?
        } else {
            Vec::new()
        };
        doc.body.insert("name".into(), json!(new_name));
        doc.body.insert("dir_id".into(), json!(parent.id));
        if doc.is_dir() {
            doc.body.insert("path".into(), json!(new_path));
        } else if let Some(t) = trashed {
            doc.body.insert("trashed".into(), json!(t));
        }
        doc.path = new_path.clone();
        let mut docs = vec![doc.to_stored()];
        for mut d in below {
            let rest = d.path.get(old_path.len()..).unwrap_or("").to_owned();
            if d.is_dir() {
                d.body
                    .insert("path".into(), json!(format!("{new_path}{rest}")));
            } else if let Some(t) = trashed {
                d.body.insert("trashed".into(), json!(t));
            } else {
                continue;
            }
            docs.push(d.to_stored());
        }
        match self.blobs.rename(&inst.domain, &old_path, &new_path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                tracing::warn!(domain = %inst.domain, path = %new_path, "something not known to Hearth is in the way of a move");
                return Err(VfsError::Exists);
            }
            Err(e) => return Err(e.into()),
        }
        match self.bulk_all(inst, docs).await {
            Ok(revs) => {
                doc.rev = revs.into_iter().next().unwrap_or_default();
                Ok(doc)
            }
            Err(e) => {
                if let Err(re) = self.blobs.rename(&inst.domain, &new_path, &old_path).await {
                    tracing::error!(error = %re, from = %new_path, to = %old_path, "cannot undo the rename of a failed move");
                }
                Err(e)
            }
        }
    }

    /// Writes documents all together or not at all; answers their new revisions.
    async fn bulk_all(&self, inst: &Instance, docs: Vec<JsonMap>) -> VfsResult<Vec<String>> {
        let results = self
            .store
            .bulk(&inst.instance_id(), &files_dt(), docs, true)
            .await?;
        let mut revs = Vec::with_capacity(results.len());
        for r in results {
            match r {
                BulkResult::Ok(w) => revs.push(w.rev.to_string()),
                BulkResult::Err {
                    error: "conflict", ..
                } => {
                    return Err(StoreError::Conflict.into());
                }
                BulkResult::Err {
                    error: "aborted", ..
                } => {}
                BulkResult::Err { reason, .. } => {
                    return Err(StoreError::invalid(reason).into());
                }
            }
        }
        Ok(revs)
    }

    /// Puts a file or directory in the trash (`DELETE /files/:id`). Its former parent
    /// path is kept in `restore_path`; on a name clash in the trash, a random suffix
    /// is added.
    pub async fn trash(
        &self,
        inst: &Instance,
        id: &str,
        if_match: Option<&str>,
    ) -> VfsResult<FileDoc> {
        let _guard = self.lock(inst).await;
        let doc = self.get(inst, id).await?;
        check_rev(&doc, if_match)?;
        if is_special(&doc.id) {
            return Err(VfsError::BadRequest(
                "The root and the trash cannot be put in the trash".into(),
            ));
        }
        if doc.in_trash() {
            return Err(VfsError::BadRequest("This is already in the trash".into()));
        }
        let trash = self.get_raw(inst, TRASH_DIR_ID).await?;
        let mut new_name = doc.name().to_owned();
        for _ in 0..8 {
            if self
                .child_by_name(inst, TRASH_DIR_ID, &new_name)
                .await?
                .is_none()
            {
                break;
            }
            new_name = with_conflict_suffix(doc.name());
        }
        let mut updated = doc.clone();
        updated
            .body
            .insert("restore_path".into(), json!(parent_path(&doc.path)));
        touch(&mut updated);
        if let Some(Value::Object(cm)) = updated.body.get_mut("cozyMetadata") {
            cm.insert("trashedAt".into(), json!(now_rfc3339()));
        }
        self.move_locked(inst, updated, &trash, &new_name, Some(true))
            .await
    }

    /// Restores an item of the trash (`POST /files/trash/:id`) to its `restore_path`
    /// (recreated when missing), under its former name when it is free.
    pub async fn restore(&self, inst: &Instance, id: &str) -> VfsResult<FileDoc> {
        let _guard = self.lock(inst).await;
        let doc = self.get(inst, id).await?;
        if doc.dir_id() != TRASH_DIR_ID || is_special(&doc.id) {
            return Err(VfsError::BadRequest(if doc.in_trash() {
                "Only what is at the top of the trash can be restored".into()
            } else {
                "This is not in the trash".into()
            }));
        }
        let target = doc
            .body
            .get("restore_path")
            .and_then(Value::as_str)
            .filter(|p| p.starts_with('/') && !p.starts_with(crate::TRASH_PATH))
            .unwrap_or("/")
            .to_owned();
        let parent = self.mkdir_p_locked(inst, &target).await?;
        let mut new_name = without_conflict_suffix(doc.name()).to_owned();
        for _ in 0..8 {
            match self.child_by_name(inst, &parent.id, &new_name).await? {
                Some(other) if other.id != doc.id => {
                    new_name = with_conflict_suffix(without_conflict_suffix(doc.name()));
                }
                _ => break,
            }
        }
        check_new_name(&parent, &new_name)?;
        let mut updated = doc.clone();
        updated.body.shift_remove("restore_path");
        touch(&mut updated);
        if let Some(Value::Object(cm)) = updated.body.get_mut("cozyMetadata") {
            cm.shift_remove("trashedAt");
        }
        self.move_locked(inst, updated, &parent, &new_name, Some(false))
            .await
    }

    /// Destroys a file or directory with everything below it, content, old versions
    /// and thumbnails included. With `require_trash`, only what is in the trash
    /// (`DELETE /files/trash/:id`).
    pub async fn destroy(
        &self,
        inst: &Instance,
        id: &str,
        if_match: Option<&str>,
        require_trash: bool,
    ) -> VfsResult<()> {
        let _guard = self.lock(inst).await;
        let doc = self.get(inst, id).await?;
        check_rev(&doc, if_match)?;
        if is_special(&doc.id) {
            return Err(VfsError::BadRequest(
                "The root and the trash cannot be destroyed".into(),
            ));
        }
        if require_trash && !doc.in_trash() {
            return Err(VfsError::BadRequest("This is not in the trash".into()));
        }
        self.destroy_locked(inst, doc).await
    }

    /// Empties the trash (`DELETE /files/trash`).
    pub async fn empty_trash(&self, inst: &Instance) -> VfsResult<()> {
        let _guard = self.lock(inst).await;
        let trash = self.get_raw(inst, TRASH_DIR_ID).await?;
        for item in self.all_children(inst, &trash).await? {
            self.destroy_locked(inst, item).await?;
        }
        Ok(())
    }

    /// Removes the documents first (one transaction: the metadata are the truth),
    /// then the content; content that cannot be removed is logged (fsck finds it).
    async fn destroy_locked(&self, inst: &Instance, doc: FileDoc) -> VfsResult<()> {
        let mut items = vec![doc.clone()];
        if doc.is_dir() {
            items.extend(self.descendants(inst, &doc).await?);
        }
        let tombstones = items
            .iter()
            .map(|d| {
                let mut t = JsonMap::new();
                t.insert("_id".into(), json!(d.id));
                t.insert("_rev".into(), json!(d.rev));
                t.insert("_deleted".into(), json!(true));
                t
            })
            .collect();
        self.bulk_all(inst, tombstones).await?;
        let mut freed: u64 = 0;
        for d in items.iter().filter(|d| !d.is_dir()) {
            freed = freed.saturating_add(d.size());
            for v in self.versions_of(inst, &d.id).await.unwrap_or_default() {
                if let Err(e) = self.remove_version(inst, &d.id, &v).await {
                    tracing::warn!(error = %e, file = %d.id, "cannot remove an old version");
                }
            }
            if let Err(e) = self.blobs.remove_versions(&inst.domain, &d.id, None).await {
                tracing::warn!(error = %e, file = %d.id, "cannot remove the versions directory");
            }
            if let Err(e) = self.blobs.remove(d.blob(&inst.domain)).await {
                tracing::error!(error = %e, path = %d.path, "cannot remove the content of a destroyed file");
            }
            if let Err(e) = self.blobs.remove_thumbs(&inst.domain, &d.id).await {
                tracing::warn!(error = %e, file = %d.id, "cannot remove the thumbnails of a destroyed file");
            }
        }
        if doc.is_dir()
            && let Err(e) = self.blobs.remove_dir(&inst.domain, &doc.path).await
        {
            tracing::error!(error = %e, path = %doc.path, "cannot remove a destroyed directory");
        }
        self.adjust_usage(inst, -i128::from(freed), 0);
        Ok(())
    }

    /// Adds references (`{type, id}` objects) to a file or directory; answers it.
    pub async fn add_references(
        &self,
        inst: &Instance,
        id: &str,
        refs: Vec<Value>,
    ) -> VfsResult<FileDoc> {
        self.change_references(inst, id, |list| {
            for r in refs {
                if !list.contains(&r) {
                    list.push(r);
                }
            }
        })
        .await
    }

    /// Removes references from a file or directory; answers it.
    pub async fn remove_references(
        &self,
        inst: &Instance,
        id: &str,
        refs: Vec<Value>,
    ) -> VfsResult<FileDoc> {
        self.change_references(inst, id, |list| list.retain(|r| !refs.contains(r)))
            .await
    }

    async fn change_references(
        &self,
        inst: &Instance,
        id: &str,
        change: impl FnOnce(&mut Vec<Value>),
    ) -> VfsResult<FileDoc> {
        let _guard = self.lock(inst).await;
        let mut doc = self.get(inst, id).await?;
        let mut list = doc.referenced_by();
        change(&mut list);
        doc.body.insert("referenced_by".into(), Value::Array(list));
        if let Some(Value::Object(cm)) = doc.body.get_mut("cozyMetadata") {
            cm.insert("updatedAt".into(), json!(now_rfc3339()));
        }
        let w = self
            .store
            .put(&inst.instance_id(), &files_dt(), doc.to_stored())
            .await?;
        doc.rev = w.rev.to_string();
        Ok(doc)
    }
}

/// Applies the attribute changes of a patch (not the name or parent).
fn apply(doc: &mut FileDoc, p: &Patch) -> VfsResult<()> {
    let updated_at = match p.updated_at.as_deref().filter(|s| !s.is_empty()) {
        Some(s) if hearth_core::parse_rfc3339(s).is_some() => s.to_owned(),
        Some(s) => {
            return Err(VfsError::invalid(
                "updated_at",
                format!("{s:?} is not an RFC 3339 date"),
            ));
        }
        None => now_rfc3339(),
    };
    let b = &mut doc.body;
    if let Some(t) = &p.tags {
        b.insert("tags".into(), json!(t));
    }
    if let Some(x) = p.executable
        && b.get("type").and_then(Value::as_str) == Some("file")
    {
        b.insert("executable".into(), json!(x));
    }
    if let Some(m) = &p.metadata {
        b.insert("metadata".into(), Value::Object(m.clone()));
    }
    b.insert("updated_at".into(), json!(updated_at));
    let cm = b
        .entry("cozyMetadata")
        .or_insert_with(|| Value::Object(JsonMap::new()));
    if let Value::Object(cm) = cm {
        cm.insert("updatedAt".into(), json!(now_rfc3339()));
        if let Some(f) = p.favorite {
            cm.insert("favorite".into(), json!(f));
        }
    }
    Ok(())
}

/// Marks a document as changed now.
fn touch(doc: &mut FileDoc) {
    if let Some(Value::Object(cm)) = doc.body.get_mut("cozyMetadata") {
        cm.insert("updatedAt".into(), json!(now_rfc3339()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        assert_eq!(without_conflict_suffix("a.txt (0a1b2c3d)"), "a.txt");
        assert_eq!(without_conflict_suffix("a (2)"), "a (2)");
        assert_eq!(without_conflict_suffix(" (0a1b2c3d)"), " (0a1b2c3d)");
        let s = with_conflict_suffix("x");
        assert_eq!(without_conflict_suffix(&s), "x");
        assert_eq!(parent_path("/a/b"), "/a");
        assert_eq!(parent_path("/a"), "/");
    }
}
