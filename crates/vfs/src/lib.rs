//! The files service (spec core-api B.8, B.9): `io.cozy.files` documents in the
//! document store, content in a [`BlobStore`], with names checked, writes atomic,
//! the quota enforced, old versions kept, a trash, and [`Vfs::fsck`].
//!
//! Metadata are the source of truth. Directories store their `path`; a file's path is
//! its parent's path and its name. Every change to the tree (create, move, trash,
//! destroy) runs under the instance's lock, so checks (name taken, quota) and the
//! change they guard cannot interleave with another request's. Uploads stream into a
//! temporary blob *before* taking the lock, so a slow upload blocks nobody. With
//! several nodes, an [`InstanceLock`] shared by them is taken too (see [`lock`]).
//!
//! Thumbnails of images are made by [`Vfs::make_thumbnails`] and served through
//! signed links (see [`thumbs`]).
//!
//! The disk usage (sum of file and version sizes) is computed once per instance by
//! a scan, then kept in memory and updated under the lock by every write.

mod blob;
mod error;
mod fsck;
mod import;
pub mod lock;
pub mod name;
mod ops;
pub mod thumbs;
mod write;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use hearth_core::{Doctype, JsonMap};
use hearth_instances::Instance;
use hearth_store::{
    DocStore, FindResult, GetOptions, NotFoundReason, StoreError,
    mango::{Bookmark, FieldPath, FindQuery, IndexDef, Selector},
};
use serde_json::{Value, json};

pub use blob::{
    BlobEntry, BlobReader, BlobRef, BlobStore, LocalBlobStore, Sealed, TempBlob, ThumbBlob,
    already_sealed, is_safe_component, new_temp_token,
};
pub use error::{VfsError, VfsResult};
pub use fsck::Problem;
pub use hearth_instances::tree::{ROOT_DIR_ID, TRASH_DIR_ID};
pub use import::{IMPORT_BATCH, ImportBatch};
pub use lock::{HeldLock, InstanceLock, LockError};
pub use ops::Patch;
pub use write::{NewDir, NewFile, Overwrite};

/// The doctype of files and directories.
pub const FILES: &str = "io.cozy.files";
/// The doctype of old versions of files.
pub const VERSIONS: &str = "io.cozy.files.versions";
/// The path of the trash directory.
pub const TRASH_PATH: &str = "/.cozy_trash";
/// How many old versions of a file are kept.
pub const MAX_VERSIONS: usize = 20;
/// The page size of directory listings when none is asked.
pub const DEFAULT_PAGE: usize = 30;
/// The largest page of a directory listing.
pub const MAX_PAGE: usize = 1000;

const CHILDREN_INDEX: &str = "by-dir-id-type-name";

pub(crate) fn files_dt() -> Doctype {
    Doctype::new(FILES).unwrap_or_else(|_| unreachable!("valid doctype"))
}

pub(crate) fn versions_dt() -> Doctype {
    Doctype::new(VERSIONS).unwrap_or_else(|_| unreachable!("valid doctype"))
}

/// One file or directory: its stored body and its absolute path.
#[derive(Debug, Clone, PartialEq)]
pub struct FileDoc {
    pub id: String,
    pub rev: String,
    /// The stored document without `_id` and `_rev`.
    pub body: JsonMap,
    /// Stored for directories, computed for files.
    pub path: String,
}

impl FileDoc {
    /// Splits a stored document; the path of a file is left empty (see [`Vfs::get`]).
    pub(crate) fn from_stored(mut doc: JsonMap) -> Self {
        let take = |doc: &mut JsonMap, k: &str| match doc.shift_remove(k) {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        let id = take(&mut doc, "_id");
        let rev = take(&mut doc, "_rev");
        let path = if doc.get("type").and_then(Value::as_str) == Some("directory") {
            doc.get("path")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        } else {
            String::new()
        };
        Self {
            id,
            rev,
            body: doc,
            path,
        }
    }

    /// The document to write back (`_id`, `_rev` and the body).
    pub(crate) fn to_stored(&self) -> JsonMap {
        let mut out = JsonMap::with_capacity(self.body.len() + 2);
        out.insert("_id".into(), Value::String(self.id.clone()));
        if !self.rev.is_empty() {
            out.insert("_rev".into(), Value::String(self.rev.clone()));
        }
        out.extend(self.body.clone());
        out
    }

    fn str_field(&self, k: &str) -> &str {
        self.body.get(k).and_then(Value::as_str).unwrap_or("")
    }

    pub fn is_dir(&self) -> bool {
        self.str_field("type") == "directory"
    }

    pub fn name(&self) -> &str {
        self.str_field("name")
    }

    pub fn dir_id(&self) -> &str {
        self.str_field("dir_id")
    }

    pub fn mime(&self) -> &str {
        self.str_field("mime")
    }

    /// The class of a file (`image`, `text`, `pdf`…, spec core-api B.8.3).
    pub fn class(&self) -> &str {
        self.str_field("class")
    }

    pub fn md5sum(&self) -> &str {
        self.str_field("md5sum")
    }

    pub fn updated_at(&self) -> &str {
        self.str_field("updated_at")
    }

    /// The size of a file in bytes (stored as a number; a string is accepted).
    pub fn size(&self) -> u64 {
        size_of(&self.body)
    }

    /// Whether this is in the trash: a trashed file, or a directory under the trash.
    pub fn in_trash(&self) -> bool {
        if self.is_dir() {
            self.path == TRASH_PATH || self.path.starts_with(&format!("{TRASH_PATH}/"))
        } else {
            self.body.get("trashed").and_then(Value::as_bool) == Some(true)
        }
    }

    /// The `referenced_by` entries, `{type, id}` objects.
    pub fn referenced_by(&self) -> Vec<Value> {
        match self.body.get("referenced_by") {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        }
    }

    /// Where the content of this file is.
    pub fn blob<'a>(&'a self, domain: &'a str) -> BlobRef<'a> {
        BlobRef {
            domain,
            file_id: &self.id,
            path: &self.path,
        }
    }
}

pub(crate) fn size_of(body: &JsonMap) -> u64 {
    match body.get("size") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// One page of a directory's children.
#[derive(Debug, Clone)]
pub struct Page {
    pub docs: Vec<FileDoc>,
    /// All the children (the trash excluded from the root's).
    pub count: u64,
    /// The cursor of the next page, when there is one.
    pub next: Option<String>,
}

/// The bytes an instance uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Current content of files (trashed ones included).
    pub files: u64,
    /// Old versions.
    pub versions: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.files.saturating_add(self.versions)
    }
}

/// The cached usage of one instance, and a count of the writes it has seen.
#[derive(Debug, Default)]
struct UsageEntry {
    usage: Option<Usage>,
    generation: u64,
    /// Another node wrote files of the instance since this usage was scanned (with
    /// several nodes): it is scanned again, at most every [`REMOTE_RESCAN`].
    remote_writes: bool,
    scanned_at: Option<std::time::Instant>,
}

/// With several nodes, how long a usage may lag behind other nodes' writes: a quota
/// can be passed by what they wrote within that time.
pub const REMOTE_RESCAN: std::time::Duration = std::time::Duration::from_secs(2);

/// The quota of an instance, `None` for unlimited (absent or 0).
pub fn quota_of(inst: &Instance) -> Option<u64> {
    inst.disk_quota.filter(|q| *q > 0)
}

/// With several nodes: the observer that hands other nodes' writes of files and
/// versions to [`Vfs::remote_write`], so that this node's usage (quotas) follows them.
/// It wants no local event (the service counts its own writes).
pub struct RemoteUsage(pub Arc<Vfs>);

impl hearth_store::events::EventObserver for RemoteUsage {
    fn interest(
        &self,
        _inst: &hearth_core::InstanceId,
        _dt: &hearth_core::Doctype,
    ) -> hearth_store::events::Interest {
        hearth_store::events::Interest::None
    }

    fn observe(&self, _event: &Arc<hearth_store::events::Event>) {}

    fn observe_remote(&self, event: &Arc<hearth_store::events::Event>) {
        if matches!(
            event.doctype.as_str(),
            "io.cozy.files" | "io.cozy.files.versions"
        ) {
            self.0.remote_write(event.instance.as_str());
        }
    }
}

/// The files service.
pub struct Vfs {
    pub(crate) store: Arc<dyn DocStore>,
    pub(crate) blobs: Arc<dyn BlobStore>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The lock shared with other nodes, taken after the in-process one.
    shared_lock: OnceLock<Arc<dyn InstanceLock>>,
    usage: Mutex<HashMap<String, UsageEntry>>,
    indexed: Mutex<HashSet<String>>,
}

/// An instance's tree lock: the in-process mutex and, with several nodes, the
/// shared lock (released first).
pub(crate) struct TreeGuard {
    _shared: Option<HeldLock>,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

impl std::fmt::Debug for Vfs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vfs").finish_non_exhaustive()
    }
}

/// The key of an instance in the service's caches: its registry id (new for every
/// creation, so a destroyed and recreated instance starts afresh) and its prefix.
fn key_of(inst: &Instance) -> String {
    format!("{}/{}", inst.id, inst.prefix)
}

impl Vfs {
    pub fn new(store: Arc<dyn DocStore>, blobs: Arc<dyn BlobStore>) -> Self {
        Self {
            store,
            blobs,
            locks: Mutex::new(HashMap::new()),
            shared_lock: OnceLock::new(),
            usage: Mutex::new(HashMap::new()),
            indexed: Mutex::new(HashSet::new()),
        }
    }

    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// Serializes the tree changes of each instance across the nodes sharing the
    /// store too, with `lock` (named `vfs:<instance id>/<prefix>`). Once, before
    /// serving; false if a lock was set already.
    pub fn set_instance_lock(&self, lock: Arc<dyn InstanceLock>) -> bool {
        self.shared_lock.set(lock).is_ok()
    }

    /// The lock shared with other nodes, if any.
    pub fn instance_lock(&self) -> Option<&Arc<dyn InstanceLock>> {
        self.shared_lock.get()
    }

    /// Serializes the tree changes of one instance: this process's mutex, then the
    /// lock shared with other nodes when there is one. Should the shared lock fail
    /// (its backend down, a holder stuck), the change goes on under the mutex only,
    /// loudly: a node that cannot reach the others still serves its requests.
    pub(crate) async fn lock(&self, inst: &Instance) -> TreeGuard {
        let local = self.local_lock(inst).await;
        let shared = match self.shared_lock.get() {
            None => None,
            Some(shared) => match shared.lock(&format!("vfs:{}", key_of(inst))).await {
                Ok(held) => Some(held),
                Err(e) => {
                    tracing::error!(
                        domain = %inst.domain,
                        error = %e,
                        "cannot take the files lock shared by the nodes; going on with this node's"
                    );
                    None
                }
            },
        };
        TreeGuard {
            _shared: shared,
            _local: local,
        }
    }

    async fn local_lock(&self, inst: &Instance) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut locks = self
                .locks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if locks.len() > 4096 {
                locks.retain(|_, m| Arc::strong_count(m) > 1);
            }
            locks.entry(key_of(inst)).or_default().clone()
        };
        m.lock_owned().await
    }

    /// Declares the index of directory listings once per instance and process.
    pub(crate) async fn ensure_indexes(&self, inst: &Instance) -> VfsResult<()> {
        let key = key_of(inst);
        let done = self
            .indexed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&key);
        if done {
            return Ok(());
        }
        let def = IndexDef::parse(&json!({
            "index": {"fields": ["dir_id", "type", "name"]},
            "ddoc": CHILDREN_INDEX, "name": CHILDREN_INDEX,
        }))?;
        self.store
            .create_index(&inst.instance_id(), &files_dt(), def)
            .await?;
        self.indexed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key);
        Ok(())
    }

    /// A document as stored, without its path computed.
    pub(crate) async fn get_raw(&self, inst: &Instance, id: &str) -> VfsResult<FileDoc> {
        let doc = self
            .store
            .get(&inst.instance_id(), &files_dt(), id, GetOptions::default())
            .await
            .map_err(VfsError::from_get)?;
        Ok(FileDoc::from_stored(doc))
    }

    /// A file or directory by id, with its path.
    pub async fn get(&self, inst: &Instance, id: &str) -> VfsResult<FileDoc> {
        let mut doc = self.get_raw(inst, id).await?;
        self.fill_path(inst, &mut doc).await?;
        Ok(doc)
    }

    /// Computes the path of a file from its parent.
    pub(crate) async fn fill_path(&self, inst: &Instance, doc: &mut FileDoc) -> VfsResult<()> {
        if !doc.is_dir() && doc.path.is_empty() {
            let parent = self
                .get_raw(inst, doc.dir_id())
                .await
                .map_err(|e| match e {
                    VfsError::NotFound(_) => {
                        VfsError::NotFound("the parent directory of this file does not exist")
                    }
                    e => e,
                })?;
            doc.path = name::join(&parent.path, doc.name());
        }
        Ok(())
    }

    /// A directory that new entries can go into: it exists, is a directory and is not
    /// in the trash.
    pub(crate) async fn live_dir(&self, inst: &Instance, id: &str) -> VfsResult<FileDoc> {
        let id = if id.is_empty() { ROOT_DIR_ID } else { id };
        let dir = self.get_raw(inst, id).await.map_err(|e| match e {
            VfsError::NotFound(_) => VfsError::NotFound("the parent directory does not exist"),
            e => e,
        })?;
        if !dir.is_dir() {
            return Err(VfsError::NotFound("the parent is not a directory"));
        }
        if dir.in_trash() {
            return Err(VfsError::NotFound("the parent directory is in the trash"));
        }
        Ok(dir)
    }

    /// A file or directory by absolute path (`/a/b`), with its path.
    pub async fn get_by_path(&self, inst: &Instance, path: &str) -> VfsResult<FileDoc> {
        let names = name::split_path(path)?;
        let Some((last, parents)) = names.split_last() else {
            return self.get(inst, ROOT_DIR_ID).await;
        };
        let full = format!("/{}", names.join("/"));
        if let Some(dir) = self.dir_by_path(inst, &full).await? {
            return Ok(dir);
        }
        let parent_path = format!("/{}", parents.join("/"));
        let parent = match self.dir_by_path(inst, &parent_path).await? {
            Some(p) => p,
            None => return Err(VfsError::not_found()),
        };
        let mut doc = self
            .child_by_name(inst, &parent.id, last)
            .await?
            .ok_or_else(VfsError::not_found)?;
        doc.path = full;
        Ok(doc)
    }

    pub(crate) async fn dir_by_path(
        &self,
        inst: &Instance,
        path: &str,
    ) -> VfsResult<Option<FileDoc>> {
        let mut q = FindQuery::new(Selector::parse(
            &json!({"path": path, "type": "directory"}),
        )?);
        q.limit = Some(1);
        Ok(self
            .find_raw(inst, &q)
            .await?
            .docs
            .into_iter()
            .next()
            .map(FileDoc::from_stored))
    }

    /// The child of `dir_id` named `name`, if any (path not computed).
    pub(crate) async fn child_by_name(
        &self,
        inst: &Instance,
        dir_id: &str,
        name: &str,
    ) -> VfsResult<Option<FileDoc>> {
        let mut q = FindQuery::new(Selector::parse(&json!({"dir_id": dir_id, "name": name}))?);
        q.limit = Some(1);
        Ok(self
            .find_raw(inst, &q)
            .await?
            .docs
            .into_iter()
            .next()
            .map(FileDoc::from_stored))
    }

    /// Every child of a directory (paths computed).
    pub(crate) async fn all_children(
        &self,
        inst: &Instance,
        dir: &FileDoc,
    ) -> VfsResult<Vec<FileDoc>> {
        let q = FindQuery::new(Selector::parse(&json!({"dir_id": dir.id}))?);
        let docs = self.find_raw(inst, &q).await?.docs;
        Ok(docs
            .into_iter()
            .map(FileDoc::from_stored)
            .filter(|d| d.id != dir.id)
            .map(|mut d| {
                if !d.is_dir() {
                    d.path = name::join(&dir.path, d.name());
                }
                d
            })
            .collect())
    }

    /// Everything below a directory, parents before children.
    pub(crate) async fn descendants(
        &self,
        inst: &Instance,
        dir: &FileDoc,
    ) -> VfsResult<Vec<FileDoc>> {
        let mut out = Vec::new();
        let mut queue = std::collections::VecDeque::from([dir.clone()]);
        while let Some(d) = queue.pop_front() {
            for child in self.all_children(inst, &d).await? {
                if child.is_dir() {
                    queue.push_back(child.clone());
                }
                out.push(child);
            }
        }
        Ok(out)
    }

    /// A Mango query on `io.cozy.files`; an instance without files finds nothing.
    pub(crate) async fn find_raw(&self, inst: &Instance, q: &FindQuery) -> VfsResult<FindResult> {
        match self.store.find(&inst.instance_id(), &files_dt(), q).await {
            Ok(r) => Ok(r),
            Err(StoreError::NotFound(NotFoundReason::NoDatabase)) => Ok(FindResult {
                docs: Vec::new(),
                bookmark: String::new(),
                stats: Default::default(),
                warning: None,
                index: None,
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// The ids of the directories above a document, nearest first, up to the root
    /// (for permissions granted on a directory).
    pub async fn ancestors(&self, inst: &Instance, doc: &FileDoc) -> VfsResult<Vec<String>> {
        let mut out = Vec::new();
        let mut next = doc.dir_id().to_owned();
        while !next.is_empty() && out.len() < 512 && !out.contains(&next) {
            out.push(next.clone());
            if next == ROOT_DIR_ID {
                break;
            }
            next = match self.get_raw(inst, &next).await {
                Ok(d) => d.dir_id().to_owned(),
                Err(VfsError::NotFound(_)) => break,
                Err(e) => return Err(e),
            };
        }
        Ok(out)
    }

    /// One page of a directory's children, directories first, then by name
    /// (CouchDB collation). `cursor` is the `next` of the previous page.
    pub async fn children(
        &self,
        inst: &Instance,
        dir: &FileDoc,
        limit: usize,
        cursor: Option<&str>,
        skip: usize,
    ) -> VfsResult<Page> {
        self.ensure_indexes(inst).await?;
        let limit = limit.clamp(1, MAX_PAGE);
        let selector = if dir.id == ROOT_DIR_ID {
            json!({"dir_id": dir.id, "_id": {"$ne": TRASH_DIR_ID}})
        } else {
            json!({"dir_id": dir.id})
        };
        let mut q = FindQuery::new(Selector::parse(&selector)?);
        q.sort = ["dir_id", "type", "name"]
            .iter()
            .map(|f| FieldPath::parse(f))
            .collect::<Result<_, _>>()?;
        q.limit = Some(limit + 1);
        q.skip = skip;
        q.bookmark = cursor.filter(|c| !c.is_empty()).map(str::to_owned);
        let mut docs = self.find_raw(inst, &q).await?.docs;
        let next = if docs.len() > limit {
            docs.truncate(limit);
            docs.last().and_then(|last| {
                let id = last.get("_id")?.as_str()?.to_owned();
                Some(
                    Bookmark {
                        keys: q.sort_keys(last)?,
                        id,
                    }
                    .encode(),
                )
            })
        } else {
            None
        };
        let mut count_q = FindQuery::new(Selector::parse(&selector)?);
        count_q.fields = Some(vec![FieldPath::parse("_id")?]);
        let count = self.find_raw(inst, &count_q).await?.docs.len() as u64;
        let docs = docs
            .into_iter()
            .map(FileDoc::from_stored)
            .filter(|d| d.id != dir.id)
            .map(|mut d| {
                if !d.is_dir() {
                    d.path = name::join(&dir.path, d.name());
                }
                d
            })
            .collect();
        Ok(Page { docs, count, next })
    }

    /// A Mango query on files and directories, each with its path. With `fields`, the
    /// members clients need are added (`_id`, `_rev`, `type`, `class`, `size`,
    /// `trashed`, and `dir_id` and `name` when `path` is asked).
    pub async fn find(
        &self,
        inst: &Instance,
        mut q: FindQuery,
    ) -> VfsResult<(Vec<FileDoc>, FindResult)> {
        let mut want_path = true;
        if let Some(fields) = &mut q.fields {
            want_path = fields.iter().any(|f| f.dotted() == "path");
            let mut extra = vec!["_id", "_rev", "type", "class", "size", "trashed"];
            if want_path {
                extra.extend(["dir_id", "name"]);
            }
            for f in extra {
                if !fields.iter().any(|p| p.dotted() == f) {
                    fields.push(FieldPath::parse(f)?);
                }
            }
        }
        let mut res = self.find_raw(inst, &q).await?;
        let mut dirs: HashMap<String, String> = HashMap::new();
        let mut out = Vec::with_capacity(res.docs.len());
        for raw in std::mem::take(&mut res.docs) {
            let mut d = FileDoc::from_stored(raw);
            if want_path && !d.is_dir() && !d.dir_id().is_empty() {
                let parent = d.dir_id().to_owned();
                let parent_path = match dirs.get(&parent) {
                    Some(p) => Some(p.clone()),
                    None => match self.get_raw(inst, &parent).await {
                        Ok(p) => {
                            dirs.insert(parent, p.path.clone());
                            Some(p.path)
                        }
                        Err(VfsError::NotFound(_)) => None,
                        Err(e) => return Err(e),
                    },
                };
                if let Some(p) = parent_path {
                    d.path = name::join(&p, d.name());
                }
            }
            out.push(d);
        }
        Ok((out, res))
    }

    /// The bytes used by an instance's files and versions.
    ///
    /// A cold cache is filled by a scan. Writes change the usage while it runs, so
    /// the scan is only kept if no write was counted meanwhile (the generation did
    /// not move); otherwise it runs again.
    pub async fn usage(&self, inst: &Instance) -> VfsResult<Usage> {
        let key = key_of(inst);
        for _ in 0..4 {
            let generation = {
                let mut map = self.usage_map();
                let entry = map.entry(key.clone()).or_default();
                let fresh = !entry.remote_writes
                    || entry
                        .scanned_at
                        .is_some_and(|t| t.elapsed() < REMOTE_RESCAN);
                if let (Some(u), true) = (entry.usage, fresh) {
                    return Ok(u);
                }
                entry.remote_writes = false;
                entry.generation
            };
            let scanned = self.scan_usage(inst).await?;
            let mut map = self.usage_map();
            let entry = map.entry(key.clone()).or_default();
            if entry.generation == generation {
                entry.usage = Some(scanned);
                entry.scanned_at = Some(std::time::Instant::now());
                return Ok(scanned);
            }
        }
        // Writes keep coming: answer a fresh scan without caching it.
        self.scan_usage(inst).await
    }

    fn usage_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, UsageEntry>> {
        self.usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds (or removes) bytes to the cached usage of an instance, and marks that a
    /// write happened (so that a scan running meanwhile is not trusted).
    pub(crate) fn adjust_usage(&self, inst: &Instance, files: i128, versions: i128) {
        let apply = |v: u64, d: i128| u64::try_from((v as i128 + d).max(0)).unwrap_or(u64::MAX);
        let mut map = self.usage_map();
        let entry = map.entry(key_of(inst)).or_default();
        entry.generation += 1;
        if let Some(u) = &mut entry.usage {
            u.files = apply(u.files, files);
            u.versions = apply(u.versions, versions);
        }
    }

    /// Notes that another node wrote files or versions of the instance with this
    /// prefix: its usage is scanned again when next read (at most every
    /// [`REMOTE_RESCAN`]), so quotas count what every node wrote.
    pub fn remote_write(&self, prefix: &str) {
        let suffix = format!("/{prefix}");
        let mut map = self.usage_map();
        for (key, entry) in map.iter_mut() {
            if key.ends_with(&suffix) {
                entry.remote_writes = true;
            }
        }
    }

    /// Drops the cached usage of an instance; the next read scans again.
    pub fn forget_usage(&self, inst: &Instance) {
        let mut map = self.usage_map();
        let entry = map.entry(key_of(inst)).or_default();
        entry.generation += 1;
        entry.usage = None;
    }

    async fn scan_usage(&self, inst: &Instance) -> VfsResult<Usage> {
        let files = self
            .sum_sizes(
                inst,
                &files_dt(),
                Selector::parse(&json!({"type": "file"}))?,
            )
            .await?;
        let versions = self
            .sum_sizes(inst, &versions_dt(), Selector::all())
            .await?;
        Ok(Usage { files, versions })
    }

    /// The sum of the `size` of the documents matching `selector`, read a page at a
    /// time: memory stays flat whatever the number of files.
    async fn sum_sizes(&self, inst: &Instance, dt: &Doctype, selector: Selector) -> VfsResult<u64> {
        const PAGE: usize = 1000;
        let mut total = 0u64;
        let mut bookmark = None;
        loop {
            let mut q = FindQuery::new(selector.clone());
            q.fields = Some(vec![FieldPath::parse("size")?]);
            q.limit = Some(PAGE);
            q.bookmark = bookmark.take();
            let page = match self.store.find(&inst.instance_id(), dt, &q).await {
                Ok(r) => r,
                Err(StoreError::NotFound(NotFoundReason::NoDatabase)) => return Ok(total),
                Err(e) => return Err(e.into()),
            };
            total = page
                .docs
                .iter()
                .map(size_of)
                .fold(total, u64::saturating_add);
            if page.docs.len() < PAGE || page.bookmark.is_empty() {
                return Ok(total);
            }
            bookmark = Some(page.bookmark);
        }
    }

    /// The bytes of trashed files.
    pub async fn trash_usage(&self, inst: &Instance) -> VfsResult<u64> {
        let mut q = FindQuery::new(Selector::parse(&json!({"type": "file", "trashed": true}))?);
        q.fields = Some(vec![FieldPath::parse("size")?]);
        Ok(self
            .find_raw(inst, &q)
            .await?
            .docs
            .iter()
            .map(size_of)
            .fold(0, u64::saturating_add))
    }

    /// Fails with [`VfsError::QuotaExceeded`] when `more` bytes would not fit.
    pub(crate) async fn check_room(&self, inst: &Instance, more: u64) -> VfsResult<()> {
        if let Some(quota) = quota_of(inst) {
            let used = self.usage(inst).await?.total();
            if used.saturating_add(more) > quota {
                return Err(VfsError::QuotaExceeded);
            }
        }
        Ok(())
    }

    /// How many bytes still fit, `None` for unlimited.
    pub(crate) async fn room(&self, inst: &Instance) -> VfsResult<Option<u64>> {
        Ok(match quota_of(inst) {
            Some(q) => Some(q.saturating_sub(self.usage(inst).await?.total())),
            None => None,
        })
    }

    /// Opens (part of) a file's content.
    pub async fn open(
        &self,
        inst: &Instance,
        doc: &FileDoc,
        offset: u64,
        len: Option<u64>,
    ) -> VfsResult<BlobReader> {
        if doc.is_dir() {
            return Err(VfsError::BadRequest(
                "A directory has no content to download".into(),
            ));
        }
        match self.blobs.open(doc.blob(&inst.domain), offset, len).await {
            Ok(r) => Ok(r),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(VfsError::NotFound(
                "the content of this file is missing from the storage",
            )),
            Err(e) => Err(e.into()),
        }
    }
}

/// Splits a `Tags` parameter: comma-separated, trimmed, empty and repeated ones dropped.
pub fn parse_tags(raw: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in raw.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if !out.iter().any(|o| o == t) {
            out.push(t.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(parse_tags(" a, b,,a ,c"), ["a", "b", "c"]);
        assert!(parse_tags("").is_empty());
    }

    #[test]
    fn stored_docs() {
        let d = FileDoc::from_stored(
            json!({"_id": "x", "_rev": "1-a", "type": "file", "name": "n", "size": 12, "trashed": true})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        assert_eq!((d.id.as_str(), d.rev.as_str(), d.size()), ("x", "1-a", 12));
        assert!(d.in_trash() && !d.is_dir());
        assert_eq!(d.to_stored()["_rev"], "1-a");
        let dir = FileDoc::from_stored(
            json!({"_id": "d", "type": "directory", "path": "/.cozy_trash/x"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        assert!(dir.in_trash());
        assert_eq!(dir.path, "/.cozy_trash/x");
    }
}
