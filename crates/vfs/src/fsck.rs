//! `fsck`: compares an instance's `io.cozy.files` documents with what the blob store
//! holds, and reports every difference as a [`Problem`] (spec DESIGN "Files").

use std::collections::{HashMap, HashSet};
use std::fmt;

use hearth_instances::Instance;
use hearth_store::mango::{FindQuery, Selector};
use md5::{Digest, Md5};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::{FileDoc, ROOT_DIR_ID, Vfs, VfsResult, name, write::md5_b64};

/// One difference between the metadata and the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A file document whose content is missing.
    MissingContent { id: String, path: String },
    /// A directory document whose directory is missing.
    MissingDir { id: String, path: String },
    /// The content does not have the size its document says.
    SizeMismatch {
        id: String,
        path: String,
        expected: u64,
        actual: u64,
    },
    /// The content does not have the MD5 its document says.
    Md5Mismatch {
        id: String,
        path: String,
        expected: String,
        actual: String,
    },
    /// A directory where a file is expected, or the reverse.
    TypeMismatch { id: String, path: String },
    /// A document whose parent directory does not exist.
    OrphanDocument { id: String, dir_id: String },
    /// A file in storage that no document describes (on a store keyed by id, `path`
    /// is the id its content is stored under).
    OrphanFile { path: String, size: u64 },
    /// A directory in storage that no document describes (what is inside it is not
    /// listed again).
    OrphanDir { path: String },
}

impl Problem {
    /// A stable name for the kind of problem (for the CLI and the admin API).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingContent { .. } => "missing_content",
            Self::MissingDir { .. } => "missing_dir",
            Self::SizeMismatch { .. } => "size_mismatch",
            Self::Md5Mismatch { .. } => "md5_mismatch",
            Self::TypeMismatch { .. } => "type_mismatch",
            Self::OrphanDocument { .. } => "orphan_document",
            Self::OrphanFile { .. } => "orphan_file",
            Self::OrphanDir { .. } => "orphan_dir",
        }
    }

    /// `{"type": kind, …fields}`.
    pub fn to_json(&self) -> Value {
        let mut v = match self {
            Self::MissingContent { id, path }
            | Self::MissingDir { id, path }
            | Self::TypeMismatch { id, path } => json!({"id": id, "path": path}),
            Self::SizeMismatch {
                id,
                path,
                expected,
                actual,
            } => {
                json!({"id": id, "path": path, "expected": expected.to_string(), "actual": actual.to_string()})
            }
            Self::Md5Mismatch {
                id,
                path,
                expected,
                actual,
            } => json!({"id": id, "path": path, "expected": expected, "actual": actual}),
            Self::OrphanDocument { id, dir_id } => json!({"id": id, "dir_id": dir_id}),
            Self::OrphanFile { path, size } => json!({"path": path, "size": size.to_string()}),
            Self::OrphanDir { path } => json!({"path": path}),
        };
        v["type"] = Value::String(self.kind().into());
        v
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingContent { path, .. } => write!(f, "{path}: the content is missing"),
            Self::MissingDir { path, .. } => write!(f, "{path}: the directory is missing"),
            Self::SizeMismatch {
                path,
                expected,
                actual,
                ..
            } => write!(f, "{path}: {actual} bytes stored, {expected} expected"),
            Self::Md5Mismatch { path, .. } => write!(f, "{path}: the content has changed (MD5)"),
            Self::TypeMismatch { path, .. } => {
                write!(f, "{path}: a file and a directory are mixed up")
            }
            Self::OrphanDocument { id, dir_id } => {
                write!(f, "document {id}: its directory {dir_id} does not exist")
            }
            Self::OrphanFile { path, .. } => write!(f, "{path}: a file no document describes"),
            Self::OrphanDir { path } => write!(f, "{path}: a directory no document describes"),
        }
    }
}

impl Vfs {
    /// Compares every document of an instance's files with its storage: missing
    /// content, wrong size or MD5, and content no document describes. Reads every
    /// file. Also forgets the cached disk usage, so that it is recounted.
    pub async fn fsck(&self, inst: &Instance) -> VfsResult<Vec<Problem>> {
        self.forget_usage(inst);
        let docs: Vec<FileDoc> = self
            .find_raw(inst, &FindQuery::new(Selector::all()))
            .await?
            .docs
            .into_iter()
            .map(FileDoc::from_stored)
            .collect();
        let dirs: HashMap<&str, &str> = docs
            .iter()
            .filter(|d| d.is_dir())
            .map(|d| (d.id.as_str(), d.path.as_str()))
            .collect();
        let entries = self.blobs.list(&inst.domain).await?;
        let on_disk: HashMap<&str, &crate::BlobEntry> =
            entries.iter().map(|e| (e.path.as_str(), e)).collect();
        let mut known: HashSet<String> = HashSet::new();
        let mut problems = Vec::new();
        // An object store has no directories and names content by file id.
        let by_id = self.blobs.keyed_by_id();
        for d in &docs {
            if d.id == ROOT_DIR_ID || (by_id && d.is_dir()) {
                continue;
            }
            if d.is_dir() {
                known.insert(d.path.clone());
                match on_disk.get(d.path.as_str()) {
                    None => problems.push(Problem::MissingDir {
                        id: d.id.clone(),
                        path: d.path.clone(),
                    }),
                    Some(e) if !e.is_dir => problems.push(Problem::TypeMismatch {
                        id: d.id.clone(),
                        path: d.path.clone(),
                    }),
                    Some(_) => {}
                }
                continue;
            }
            let Some(parent) = dirs.get(d.dir_id()) else {
                problems.push(Problem::OrphanDocument {
                    id: d.id.clone(),
                    dir_id: d.dir_id().to_owned(),
                });
                continue;
            };
            let mut file = d.clone();
            file.path = name::join(parent, d.name());
            let key = if by_id { &file.id } else { &file.path };
            known.insert(key.clone());
            if let Some(p) = self
                .check_file(inst, &file, on_disk.get(key.as_str()))
                .await?
            {
                problems.push(p);
            }
        }
        let mut orphan_dirs: Vec<&str> = Vec::new();
        for e in &entries {
            if known.contains(&e.path) {
                continue;
            }
            if orphan_dirs
                .iter()
                .any(|d| e.path.starts_with(&format!("{d}/")))
            {
                continue;
            }
            if e.is_dir {
                orphan_dirs.push(&e.path);
                problems.push(Problem::OrphanDir {
                    path: e.path.clone(),
                });
            } else {
                problems.push(Problem::OrphanFile {
                    path: e.path.clone(),
                    size: e.size,
                });
            }
        }
        Ok(problems)
    }

    async fn check_file(
        &self,
        inst: &Instance,
        file: &FileDoc,
        entry: Option<&&crate::BlobEntry>,
    ) -> VfsResult<Option<Problem>> {
        let (id, path) = (file.id.clone(), file.path.clone());
        let Some(entry) = entry else {
            return Ok(Some(Problem::MissingContent { id, path }));
        };
        if entry.is_dir {
            return Ok(Some(Problem::TypeMismatch { id, path }));
        }
        if entry.size != file.size() {
            return Ok(Some(Problem::SizeMismatch {
                id,
                path,
                expected: file.size(),
                actual: entry.size,
            }));
        }
        let mut reader = match self.blobs.open(file.blob(&inst.domain), 0, None).await {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Some(Problem::MissingContent { id, path }));
            }
            Err(e) => return Err(e.into()),
        };
        let mut hasher = Md5::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let actual = md5_b64(&hasher.finalize());
        if actual != file.md5sum() {
            return Ok(Some(Problem::Md5Mismatch {
                id,
                path,
                expected: file.md5sum().to_owned(),
                actual,
            }));
        }
        Ok(None)
    }
}
