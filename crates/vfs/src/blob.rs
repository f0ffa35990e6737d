//! Where file content lives: the [`BlobStore`] trait and [`LocalBlobStore`], which
//! mirrors each instance's tree under `<root>/<domain>/<path>` so that a person can
//! read their files with `ls` (object stores, keyed by file id, come later).
//!
//! Content is always written to a temporary blob first, synced, then committed by a
//! rename: a reader sees the old content or the new one, never a part.

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::name::{THUMBS_NAME, UPLOADS_NAME, VERSIONS_NAME};

/// Which content: object stores key it by `file_id`, the local disk by `path` (the
/// file's absolute path in its instance's tree).
#[derive(Debug, Clone, Copy)]
pub struct BlobRef<'a> {
    pub domain: &'a str,
    pub file_id: &'a str,
    pub path: &'a str,
}

/// A temporary blob that was written completely and synced, ready to be committed
/// (or discarded).
#[derive(Debug)]
pub struct Sealed {
    /// The store's own name for the temporary blob.
    pub token: String,
    pub size: u64,
}

/// Content being uploaded. Dropping it before [`TempBlob::seal`] removes it.
#[async_trait]
pub trait TempBlob: Send {
    async fn write(&mut self, chunk: &[u8]) -> io::Result<()>;
    /// Flushes the content to stable storage.
    async fn seal(self: Box<Self>) -> io::Result<Sealed>;
    /// Ends the content without waiting for stable storage: for bulk writes (an
    /// import) that call [`BlobStore::sync`] once at the end.
    async fn seal_unsynced(self: Box<Self>) -> io::Result<Sealed> {
        self.seal().await
    }
}

/// One entry found in storage (for `fsck`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    /// The absolute path in the instance's tree (local disk), or the file id in a
    /// store keyed by id (see [`BlobStore::keyed_by_id`]).
    pub path: String,
    pub is_dir: bool,
    pub size: u64,
}

/// A reader of (part of) some content.
pub type BlobReader = Box<dyn AsyncRead + Send + Unpin>;

/// A stored thumbnail, opened for reading.
pub struct ThumbBlob {
    pub reader: BlobReader,
    /// Its length in bytes.
    pub size: u64,
}

impl std::fmt::Debug for ThumbBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThumbBlob")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// The content of files, by instance. Every call names the instance's domain.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Starts a temporary blob for an upload.
    async fn create_temp(&self, domain: &str) -> io::Result<Box<dyn TempBlob>>;

    /// Makes sealed content the content at `at`; `AlreadyExists` if there is some.
    async fn commit_new(&self, sealed: Sealed, at: BlobRef<'_>) -> io::Result<()>;

    /// [`BlobStore::commit_new`] without waiting for stable storage (see
    /// [`TempBlob::seal_unsynced`]).
    async fn commit_new_unsynced(&self, sealed: Sealed, at: BlobRef<'_>) -> io::Result<()> {
        self.commit_new(sealed, at).await
    }

    /// Waits until everything written for an instance is on stable storage (after
    /// unsynced writes). Stores whose writes are durable when acknowledged do nothing.
    async fn sync(&self, domain: &str) -> io::Result<()> {
        let _ = domain;
        Ok(())
    }

    /// Replaces the content at `at` atomically. With `keep_as`, the former content is
    /// kept as that version of the file; answers whether it could be kept.
    async fn commit_replace(
        &self,
        sealed: Sealed,
        at: BlobRef<'_>,
        keep_as: Option<&str>,
    ) -> io::Result<bool>;

    /// Puts a kept version back as the content at `at` (undoes `commit_replace`).
    async fn restore_version(&self, at: BlobRef<'_>, version: &str) -> io::Result<()>;

    /// Removes a sealed temporary blob that will not be committed.
    async fn discard(&self, domain: &str, sealed: Sealed);

    /// Reads `len` bytes (all when `None`) from `offset`.
    async fn open(&self, at: BlobRef<'_>, offset: u64, len: Option<u64>) -> io::Result<BlobReader>;

    /// The size of the content at `at`, `None` when it is missing.
    async fn stat(&self, at: BlobRef<'_>) -> io::Result<Option<u64>>;

    /// Creates a directory (its parent exists); an existing directory is fine.
    async fn mkdir(&self, domain: &str, path: &str) -> io::Result<()>;

    /// Moves a file or directory; `AlreadyExists` if `to` exists. Stores keyed by id
    /// do nothing.
    async fn rename(&self, domain: &str, from: &str, to: &str) -> io::Result<()>;

    /// Removes a file's content (missing content is fine).
    async fn remove(&self, at: BlobRef<'_>) -> io::Result<()>;

    /// Removes a directory and everything in it (missing is fine).
    async fn remove_dir(&self, domain: &str, path: &str) -> io::Result<()>;

    /// Removes one kept version of a file, or all of them when `version` is `None`.
    async fn remove_versions(
        &self,
        domain: &str,
        file_id: &str,
        version: Option<&str>,
    ) -> io::Result<()>;

    /// Makes sealed content a kept version of a file (an import brings old versions
    /// with their content); `AlreadyExists` if that version has content.
    async fn commit_version(
        &self,
        sealed: Sealed,
        domain: &str,
        file_id: &str,
        version: &str,
    ) -> io::Result<()>;

    /// Opens a kept version of a file; `NotFound` when it has no content.
    async fn open_version(
        &self,
        domain: &str,
        file_id: &str,
        version: &str,
    ) -> io::Result<BlobReader>;

    /// Removes every content of an instance (files, versions, thumbnails, uploads in
    /// progress) and leaves an empty root: the reset before an import.
    async fn clear(&self, domain: &str) -> io::Result<()>;

    /// Every file and directory stored for an instance, its own directories (trash
    /// aside) excluded.
    async fn list(&self, domain: &str) -> io::Result<Vec<BlobEntry>>;

    /// Temporary blobs left for an instance (uploads in progress or abandoned).
    async fn temp_count(&self, domain: &str) -> io::Result<usize>;

    /// Whether content is keyed by file id (object stores) rather than by path: then
    /// [`BlobStore::list`] names each file by its id and has no directories, and
    /// `fsck` matches content to documents by id.
    fn keyed_by_id(&self) -> bool {
        false
    }

    /// Stores (or replaces) one thumbnail of a file, atomically: a reader sees the old
    /// one, the new one or none, never a part. `format` is one of
    /// [`crate::thumbs::FORMATS`]. Stores without thumbnails refuse (`Unsupported`).
    async fn put_thumb(
        &self,
        domain: &str,
        file_id: &str,
        format: &str,
        jpeg: Vec<u8>,
    ) -> io::Result<()> {
        let _ = (domain, file_id, format, jpeg);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this blob store keeps no thumbnails",
        ))
    }

    /// Opens one thumbnail of a file; `NotFound` when there is none.
    async fn open_thumb(&self, domain: &str, file_id: &str, format: &str) -> io::Result<ThumbBlob> {
        let _ = (domain, file_id, format);
        Err(io::Error::new(io::ErrorKind::NotFound, "no thumbnail"))
    }

    /// Removes every thumbnail of a file (none is fine).
    async fn remove_thumbs(&self, domain: &str, file_id: &str) -> io::Result<()> {
        let _ = (domain, file_id);
        Ok(())
    }
}

/// The local disk: `<root>/<domain>/<path>`, versions under
/// `<root>/<domain>/.cozy_versions/<file id>/<version>`, uploads in progress under
/// `<root>/<domain>/.cozy_uploads/`, thumbnails in
/// `<root>/<domain>/.cozy_thumbs/<file id>-<format>.jpg`.
#[derive(Debug, Clone)]
pub struct LocalBlobStore {
    root: PathBuf,
}

impl LocalBlobStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of an instance; a domain that could escape the root is refused.
    fn space(&self, domain: &str) -> io::Result<PathBuf> {
        check_component(domain)?;
        Ok(self.root.join(domain))
    }

    /// The disk path of an absolute tree path. Every component is checked, so nothing
    /// outside the instance's directory can be named.
    fn path_of(&self, domain: &str, path: &str) -> io::Result<PathBuf> {
        let mut out = self.space(domain)?;
        for c in path.split('/').filter(|c| !c.is_empty()) {
            check_component(c)?;
            out.push(c);
        }
        Ok(out)
    }

    fn version_path(&self, domain: &str, file_id: &str, version: &str) -> io::Result<PathBuf> {
        check_component(file_id)?;
        check_component(version)?;
        Ok(self
            .space(domain)?
            .join(VERSIONS_NAME)
            .join(file_id)
            .join(version))
    }

    fn thumb_path(&self, domain: &str, file_id: &str, format: &str) -> io::Result<PathBuf> {
        check_component(file_id)?;
        check_component(format)?;
        Ok(self
            .space(domain)?
            .join(THUMBS_NAME)
            .join(format!("{file_id}-{format}.jpg")))
    }

    fn temp_path(&self, domain: &str, token: &str) -> io::Result<PathBuf> {
        check_component(token)?;
        Ok(self.space(domain)?.join(UPLOADS_NAME).join(token))
    }
}

/// A new token naming a temporary blob (`upload-<random hex>`), for every store.
pub fn new_temp_token() -> String {
    format!("upload-{}", hearth_core::random_hex(16))
}

/// The error of a temporary blob written to or sealed once sealed, for every store.
pub fn already_sealed() -> io::Error {
    io::Error::other("temporary blob already sealed")
}

/// Whether a name is one path (or key) component that cannot reach elsewhere: not
/// empty, not `.` or `..`, no `/` or NUL. Every blob store checks names with it.
pub fn is_safe_component(c: &str) -> bool {
    !(c.is_empty() || c == "." || c == ".." || c.contains(['/', '\0']))
}

fn check_component(c: &str) -> io::Result<()> {
    if !is_safe_component(c) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing the path component {c:?}"),
        ));
    }
    Ok(())
}

/// Syncs a directory so that a rename or a new entry in it survives a crash.
async fn sync_dir(dir: &Path) -> io::Result<()> {
    tokio::fs::File::open(dir).await?.sync_all().await
}

async fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(p) => sync_dir(p).await,
        None => Ok(()),
    }
}

fn ignore_missing(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

struct LocalTemp {
    file: Option<tokio::fs::File>,
    path: PathBuf,
    token: String,
    size: u64,
}

#[async_trait]
impl TempBlob for LocalTemp {
    async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        let file = self.file.as_mut().ok_or_else(already_sealed)?;
        file.write_all(chunk).await?;
        self.size += chunk.len() as u64;
        Ok(())
    }

    async fn seal(self: Box<Self>) -> io::Result<Sealed> {
        self.finish(true).await
    }

    async fn seal_unsynced(self: Box<Self>) -> io::Result<Sealed> {
        self.finish(false).await
    }
}

impl LocalTemp {
    async fn finish(mut self: Box<Self>, durable: bool) -> io::Result<Sealed> {
        let mut file = self.file.take().ok_or_else(already_sealed)?;
        let done = async {
            file.flush().await?;
            if durable {
                file.sync_all().await?;
            }
            Ok::<(), io::Error>(())
        }
        .await;
        drop(file);
        if let Err(e) = done {
            let _ = tokio::fs::remove_file(&self.path).await;
            return Err(e);
        }
        Ok(Sealed {
            token: std::mem::take(&mut self.token),
            size: self.size,
        })
    }
}

impl Drop for LocalTemp {
    fn drop(&mut self) {
        // Not sealed: the upload failed or was abandoned; its bytes must not stay.
        if self.file.take().is_some()
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove an abandoned upload");
        }
    }
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn create_temp(&self, domain: &str) -> io::Result<Box<dyn TempBlob>> {
        let token = new_temp_token();
        let path = self.temp_path(domain, &token)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok(Box::new(LocalTemp {
            file: Some(file),
            path,
            token,
            size: 0,
        }))
    }

    async fn commit_new(&self, sealed: Sealed, at: BlobRef<'_>) -> io::Result<()> {
        let temp = self.temp_path(at.domain, &sealed.token)?;
        let dest = self.path_of(at.domain, at.path)?;
        // A hard link never replaces an existing file (a rename would): something put
        // there behind Hearth's back is kept, and the upload refused (its temporary
        // blob removed: the caller handed it over).
        if let Err(e) = tokio::fs::hard_link(&temp, &dest).await {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(e);
        }
        tokio::fs::remove_file(&temp).await?;
        sync_parent(&dest).await
    }

    async fn commit_new_unsynced(&self, sealed: Sealed, at: BlobRef<'_>) -> io::Result<()> {
        let temp = self.temp_path(at.domain, &sealed.token)?;
        let dest = self.path_of(at.domain, at.path)?;
        if let Err(e) = tokio::fs::hard_link(&temp, &dest).await {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(e);
        }
        tokio::fs::remove_file(&temp).await
    }

    async fn sync(&self, domain: &str) -> io::Result<()> {
        // One syncfs(2) flushes every file and directory written since: far cheaper
        // than an fsync per file and per directory.
        let dir = tokio::fs::File::open(self.space(domain)?).await?;
        let dir = dir.into_std().await;
        tokio::task::spawn_blocking(move || rustix::fs::syncfs(&dir).map_err(io::Error::from))
            .await
            .map_err(io::Error::other)?
    }

    async fn commit_replace(
        &self,
        sealed: Sealed,
        at: BlobRef<'_>,
        keep_as: Option<&str>,
    ) -> io::Result<bool> {
        let temp = self.temp_path(at.domain, &sealed.token)?;
        let dest = self.path_of(at.domain, at.path)?;
        let mut kept = false;
        if let Some(version) = keep_as {
            let vpath = self.version_path(at.domain, at.file_id, version)?;
            if let Some(dir) = vpath.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            // The old content gets a second name; the rename below then swaps the
            // new content in without a moment where the file is missing.
            match tokio::fs::hard_link(&dest, &vpath).await {
                Ok(()) => {
                    kept = true;
                    sync_parent(&vpath).await?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        tokio::fs::rename(&temp, &dest).await?;
        sync_parent(&dest).await?;
        Ok(kept)
    }

    async fn restore_version(&self, at: BlobRef<'_>, version: &str) -> io::Result<()> {
        let vpath = self.version_path(at.domain, at.file_id, version)?;
        let dest = self.path_of(at.domain, at.path)?;
        tokio::fs::rename(&vpath, &dest).await?;
        sync_parent(&dest).await
    }

    async fn discard(&self, domain: &str, sealed: Sealed) {
        match self.temp_path(domain, &sealed.token) {
            Ok(p) => {
                if let Err(e) = ignore_missing(tokio::fs::remove_file(&p).await) {
                    tracing::warn!(path = %p.display(), error = %e, "cannot remove a discarded upload");
                }
            }
            Err(e) => tracing::warn!(error = %e, "bad temporary blob token"),
        }
    }

    async fn open(&self, at: BlobRef<'_>, offset: u64, len: Option<u64>) -> io::Result<BlobReader> {
        let mut file = tokio::fs::File::open(self.path_of(at.domain, at.path)?).await?;
        if offset > 0 {
            file.seek(io::SeekFrom::Start(offset)).await?;
        }
        Ok(match len {
            Some(n) => Box::new(file.take(n)),
            None => Box::new(file),
        })
    }

    async fn stat(&self, at: BlobRef<'_>) -> io::Result<Option<u64>> {
        match tokio::fs::symlink_metadata(self.path_of(at.domain, at.path)?).await {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn mkdir(&self, domain: &str, path: &str) -> io::Result<()> {
        let dir = self.path_of(domain, path)?;
        match tokio::fs::create_dir(&dir).await {
            Ok(()) => sync_parent(&dir).await,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if tokio::fs::symlink_metadata(&dir).await?.is_dir() {
                    Ok(())
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn rename(&self, domain: &str, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (self.path_of(domain, from)?, self.path_of(domain, to)?);
        if from == to {
            return Ok(());
        }
        // rename(2) would replace a file (or an empty directory) at `to`. The caller
        // holds the instance's lock, so nothing of Hearth's can appear in between.
        if tokio::fs::symlink_metadata(&to).await.is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", to.display()),
            ));
        }
        tokio::fs::rename(&from, &to).await?;
        sync_parent(&to).await?;
        if from.parent() != to.parent() {
            sync_parent(&from).await?;
        }
        Ok(())
    }

    async fn remove(&self, at: BlobRef<'_>) -> io::Result<()> {
        ignore_missing(tokio::fs::remove_file(self.path_of(at.domain, at.path)?).await)
    }

    async fn remove_dir(&self, domain: &str, path: &str) -> io::Result<()> {
        let dir = self.path_of(domain, path)?;
        if dir == self.space(domain)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "refusing to remove an instance's whole directory",
            ));
        }
        ignore_missing(tokio::fs::remove_dir_all(dir).await)
    }

    async fn commit_version(
        &self,
        sealed: Sealed,
        domain: &str,
        file_id: &str,
        version: &str,
    ) -> io::Result<()> {
        let temp = self.temp_path(domain, &sealed.token)?;
        let dest = self.version_path(domain, file_id, version)?;
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        if let Err(e) = tokio::fs::hard_link(&temp, &dest).await {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(e);
        }
        tokio::fs::remove_file(&temp).await?;
        sync_parent(&dest).await
    }

    async fn open_version(
        &self,
        domain: &str,
        file_id: &str,
        version: &str,
    ) -> io::Result<BlobReader> {
        let file = tokio::fs::File::open(self.version_path(domain, file_id, version)?).await?;
        Ok(Box::new(file))
    }

    async fn clear(&self, domain: &str) -> io::Result<()> {
        let space = self.space(domain)?;
        // Renamed away first: from then on the instance's directory is empty, and a
        // crash leaves a `.cleared-*` directory beside it instead of a half tree.
        let doomed = self
            .root
            .join(format!(".cleared-{domain}-{}", hearth_core::random_hex(8)));
        match tokio::fs::rename(&space, &doomed).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        tokio::fs::create_dir_all(&space).await?;
        sync_parent(&space).await?;
        ignore_missing(tokio::fs::remove_dir_all(&doomed).await)
    }

    async fn remove_versions(
        &self,
        domain: &str,
        file_id: &str,
        version: Option<&str>,
    ) -> io::Result<()> {
        match version {
            Some(v) => {
                ignore_missing(tokio::fs::remove_file(self.version_path(domain, file_id, v)?).await)
            }
            None => {
                check_component(file_id)?;
                let dir = self.space(domain)?.join(VERSIONS_NAME).join(file_id);
                ignore_missing(tokio::fs::remove_dir_all(dir).await)
            }
        }
    }

    async fn list(&self, domain: &str) -> io::Result<Vec<BlobEntry>> {
        let root = self.space(domain)?;
        tokio::task::spawn_blocking(move || walk(&root))
            .await
            .map_err(io::Error::other)?
    }

    async fn temp_count(&self, domain: &str) -> io::Result<usize> {
        let dir = self.space(domain)?.join(UPLOADS_NAME);
        let mut n = 0;
        let mut entries = match tokio::fs::read_dir(dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        while entries.next_entry().await?.is_some() {
            n += 1;
        }
        Ok(n)
    }

    async fn put_thumb(
        &self,
        domain: &str,
        file_id: &str,
        format: &str,
        jpeg: Vec<u8>,
    ) -> io::Result<()> {
        let dest = self.thumb_path(domain, file_id, format)?;
        let dir = dest
            .parent()
            .ok_or_else(|| io::Error::other("a thumbnail path has a parent"))?
            .to_path_buf();
        if tokio::fs::symlink_metadata(&dir).await.is_err() {
            tokio::fs::create_dir_all(&dir).await?;
            sync_parent(&dir).await?;
        }
        // In the same directory, so that the rename is atomic; never a name a
        // thumbnail has (those end in `.jpg`).
        let temp = dir.join(format!(
            "{file_id}-{format}.{}.tmp",
            hearth_core::random_hex(8)
        ));
        let written = async {
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)
                .await?;
            file.write_all(&jpeg).await?;
            file.flush().await?;
            file.sync_all().await?;
            drop(file);
            tokio::fs::rename(&temp, &dest).await
        }
        .await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(e);
        }
        sync_dir(&dir).await
    }

    async fn open_thumb(&self, domain: &str, file_id: &str, format: &str) -> io::Result<ThumbBlob> {
        let file = tokio::fs::File::open(self.thumb_path(domain, file_id, format)?).await?;
        let size = file.metadata().await?.len();
        Ok(ThumbBlob {
            reader: Box::new(file),
            size,
        })
    }

    async fn remove_thumbs(&self, domain: &str, file_id: &str) -> io::Result<()> {
        for format in crate::thumbs::FORMATS {
            ignore_missing(
                tokio::fs::remove_file(self.thumb_path(domain, file_id, format)?).await,
            )?;
        }
        Ok(())
    }
}

/// Every entry under `root` as tree paths, Hearth's own directories skipped.
fn walk(root: &Path) -> io::Result<Vec<BlobEntry>> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound && prefix.is_empty() => {
                return Ok(out);
            }
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if prefix.is_empty()
                && [VERSIONS_NAME, UPLOADS_NAME, THUMBS_NAME].contains(&name.as_str())
            {
                continue;
            }
            let meta = entry.metadata()?;
            let path = format!("{prefix}/{name}");
            if meta.is_dir() {
                stack.push((entry.path(), path.clone()));
            }
            out.push(BlobEntry {
                path,
                is_dir: meta.is_dir(),
                size: if meta.is_file() { meta.len() } else { 0 },
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}
