//! File content on S3, through OpenDAL: a [`BlobStore`] whose blobs are keyed by file
//! id, so that renames and moves touch no object (DESIGN "Embedded default, and how it
//! grows").
//!
//! Keys, below the configured prefix of the bucket:
//!
//! | what | key |
//! |---|---|
//! | a file's content | `<domain>/files/<file id>` |
//! | an old version | `<domain>/versions/<file id>/<version>` |
//! | a thumbnail | `<domain>/thumbs/<file id>-<format>` |
//! | an upload in progress | `<domain>/uploads/<token>` |
//!
//! An upload streams into its `uploads/` key (a multipart upload in parts of
//! [`S3Config::chunk_size`] once it is larger than one part); sealing completes it, so
//! the bytes are durable before the documents change. Committing is a server-side copy
//! to the final key, then the removal of the temporary object: S3 makes each PUT and
//! copy visible at once, so a reader sees the old content or the new one, never a part.
//! Copies of more than 5 GiB are done part by part by OpenDAL, and are still atomic
//! (the object appears when the multipart copy completes).
//!
//! There are no directories: `mkdir`, `rename` and `remove_dir` do nothing, and
//! [`BlobStore::list`] names every file by its id (see [`BlobStore::keyed_by_id`]),
//! which is how `fsck` matches content to documents on this store.
//!
//! `commit_new` and `commit_version` refuse existing content after a `HEAD`: the VFS
//! calls them under the instance's lock, and file ids are new for every upload, so no
//! other writer of Hearth can slip in between (conditional copies, `If-None-Match`,
//! are not supported by every S3 server).

use std::fmt;
use std::io;
use std::sync::Once;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use hearth_vfs::{BlobEntry, BlobReader, BlobRef, BlobStore, Sealed, TempBlob, ThumbBlob};
use opendal::layers::RetryLayer;
use opendal::services::S3;
use opendal::{ErrorKind, HttpTransporter, Operator};

/// The default size of the parts of multipart uploads (S3 wants at least 5 MiB).
pub const DEFAULT_CHUNK_SIZE: usize = 8 * 1024 * 1024;

/// Where the content goes and how to reach it.
#[derive(Clone)]
pub struct S3Config {
    pub bucket: String,
    /// The server's URL (`https://s3.example.net`, `http://127.0.0.1:9000`); AWS's
    /// endpoint of the region when `None`.
    pub endpoint: Option<String>,
    pub region: String,
    /// Credentials; when absent, the usual AWS sources (`AWS_ACCESS_KEY_ID`…, the
    /// profile files) are read by the client.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// A prefix inside the bucket (`""` for its root), so several servers can share one.
    pub prefix: String,
    /// `bucket.host` URLs instead of `host/bucket`.
    pub virtual_host_style: bool,
    /// The part size of multipart uploads.
    pub chunk_size: usize,
    /// How many parts of one upload are sent at once (each holds a part in memory).
    pub concurrency: usize,
}

impl S3Config {
    /// A bucket with the defaults: region `us-east-1`, AWS's endpoint, credentials from
    /// the environment, 8 MiB parts sent two at a time.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            prefix: String::new(),
            virtual_host_style: false,
            chunk_size: DEFAULT_CHUNK_SIZE,
            concurrency: 2,
        }
    }
}

impl fmt::Debug for S3Config {
    // The secret never reaches a log, and the access key only as present or not.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id.as_ref().map(|_| "…"))
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "…"),
            )
            .field("prefix", &self.prefix)
            .field("virtual_host_style", &self.virtual_host_style)
            .field("chunk_size", &self.chunk_size)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

/// File content in an S3 bucket.
#[derive(Clone)]
pub struct S3BlobStore {
    op: Operator,
    bucket: String,
    chunk_size: usize,
    concurrency: usize,
}

impl fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3BlobStore")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// Gives rustls its crypto provider, ring, unless the process chose one already.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // An error only says that a provider is installed already: that one is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl S3BlobStore {
    /// Builds the client; nothing is sent yet (see [`S3BlobStore::check`]).
    pub fn new(config: S3Config) -> io::Result<Self> {
        install_crypto_provider();
        let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
        if config.bucket.is_empty() {
            return Err(invalid("an S3 bucket name is needed".into()));
        }
        if config.chunk_size < 5 * 1024 * 1024 {
            return Err(invalid(format!(
                "S3 parts must have at least 5 MiB, not {} bytes",
                config.chunk_size
            )));
        }
        let mut b = S3::default()
            .bucket(&config.bucket)
            .region(&config.region)
            .root(&format!("/{}", config.prefix.trim_matches('/')));
        if let Some(e) = &config.endpoint {
            b = b.endpoint(e);
        }
        match (&config.access_key_id, &config.secret_access_key) {
            (Some(k), Some(s)) => {
                // Explicit credentials: nothing else is looked for (no profile files, no
                // instance metadata service).
                b = b
                    .access_key_id(k)
                    .secret_access_key(s)
                    .disable_config_load()
                    .disable_ec2_metadata();
            }
            (None, None) => {}
            _ => {
                return Err(invalid(
                    "S3 credentials need both an access key id and a secret access key".into(),
                ));
            }
        }
        if config.virtual_host_style {
            b = b.enable_virtual_host_style();
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| io::Error::other(format!("cannot build the S3 HTTP client: {e}")))?;
        let transport = HttpTransporter::new(
            opendal_http_transport_reqwest::ReqwestTransport::new(client),
        );
        let op = Operator::new(b).map_err(|e| invalid(format!("S3 configuration: {e}")))?;
        let ctx = op.base_context().with_http_transport(transport);
        let op = op
            .with_context(ctx)
            .layer(RetryLayer::new().with_jitter().with_max_times(4));
        Ok(Self {
            op,
            bucket: config.bucket,
            chunk_size: config.chunk_size,
            concurrency: config.concurrency.max(1),
        })
    }

    /// Checks that the bucket answers with these credentials (for `serve` to fail at
    /// start rather than on the first upload).
    pub async fn check(&self) -> io::Result<()> {
        self.op
            .check()
            .await
            .map_err(|e| convert(e, "reach the bucket", &self.bucket))
    }

    async fn exists(&self, key: &str) -> io::Result<bool> {
        match self.op.stat(key).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(convert(e, "look at", key)),
        }
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        self.op
            .delete(key)
            .await
            .map_err(|e| convert(e, "delete", key))
    }

    async fn delete_prefix(&self, prefix: &str) -> io::Result<()> {
        self.op
            .delete_with(prefix)
            .recursive(true)
            .await
            .map_err(|e| convert(e, "delete everything under", prefix))
    }

    /// Removes a temporary object whose content will not be used (failures logged).
    async fn drop_temp(&self, key: &str) {
        if let Err(e) = self.delete(key).await {
            tracing::warn!(error = %e, "cannot remove a temporary S3 object");
        }
    }

    /// Makes a sealed temporary object the content at `dest` (replacing what is
    /// there) and removes it. On failure the temporary object is removed too: the
    /// caller gave up its `Sealed`.
    async fn move_temp(&self, temp: &str, dest: &str) -> io::Result<()> {
        if let Err(e) = self.op.copy(temp, dest).await {
            self.drop_temp(temp).await;
            return Err(convert(e, "copy into place", dest));
        }
        self.drop_temp(temp).await;
        Ok(())
    }

    /// Opens `[start, end)` of an object whose metadata were just read, refusing
    /// content that changed since (its ETag).
    async fn read_range(
        &self,
        key: &str,
        meta: &opendal::Metadata,
        start: u64,
        end: u64,
    ) -> io::Result<BlobReader> {
        if start >= end {
            return Ok(Box::new(tokio::io::empty()));
        }
        let mut r = self.op.reader_with(key);
        if let Some(etag) = meta.etag() {
            r = r.if_match(etag);
        }
        let stream = r
            .await
            .map_err(|e| convert(e, "read", key))?
            .into_bytes_stream(start..end)
            .await
            .map_err(|e| convert(e, "read", key))?;
        Ok(Box::new(tokio_util::io::StreamReader::new(stream)))
    }

    async fn stat_for_read(&self, key: &str) -> io::Result<opendal::Metadata> {
        self.op.stat(key).await.map_err(|e| convert(e, "read", key))
    }

    /// The objects under a prefix, with their names below it and their sizes.
    async fn list_under(&self, prefix: &str) -> io::Result<Vec<(String, u64)>> {
        let mut lister = self
            .op
            .lister_with(prefix)
            .recursive(true)
            .await
            .map_err(|e| convert(e, "list", prefix))?;
        let mut out = Vec::new();
        while let Some(entry) = lister
            .try_next()
            .await
            .map_err(|e| convert(e, "list", prefix))?
        {
            if !entry.metadata().is_file() {
                continue;
            }
            let name = entry.path().strip_prefix(prefix).unwrap_or(entry.path());
            if name.is_empty() {
                continue;
            }
            out.push((name.to_owned(), entry.metadata().content_length()));
        }
        Ok(out)
    }
}

/// An OpenDAL error as the `io::Error` the trait speaks, saying what was being done
/// to which key (OpenDAL's message adds the service's context; never credentials).
fn convert(e: opendal::Error, doing: &str, key: &str) -> io::Error {
    let kind = match e.kind() {
        ErrorKind::NotFound => io::ErrorKind::NotFound,
        ErrorKind::AlreadyExists => io::ErrorKind::AlreadyExists,
        ErrorKind::PermissionDenied => io::ErrorKind::PermissionDenied,
        ErrorKind::Unsupported => io::ErrorKind::Unsupported,
        ErrorKind::ConfigInvalid => io::ErrorKind::InvalidInput,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("S3: cannot {doing} {key}: {e}"))
}

/// A part of a key: not empty, not `.` or `..`, no `/` (nothing can reach another
/// instance's or file's keys).
fn part<'a>(what: &str, c: &'a str) -> io::Result<&'a str> {
    if !hearth_vfs::is_safe_component(c) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing the {what} {c:?} in an S3 key"),
        ));
    }
    Ok(c)
}

fn file_key(domain: &str, file_id: &str) -> io::Result<String> {
    Ok(format!(
        "{}/files/{}",
        part("domain", domain)?,
        part("file id", file_id)?
    ))
}

fn versions_prefix(domain: &str, file_id: &str) -> io::Result<String> {
    Ok(format!(
        "{}/versions/{}/",
        part("domain", domain)?,
        part("file id", file_id)?
    ))
}

fn version_key(domain: &str, file_id: &str, version: &str) -> io::Result<String> {
    Ok(format!(
        "{}{}",
        versions_prefix(domain, file_id)?,
        part("version", version)?
    ))
}

fn thumb_key(domain: &str, file_id: &str, format: &str) -> io::Result<String> {
    Ok(format!(
        "{}/thumbs/{}-{}",
        part("domain", domain)?,
        part("file id", file_id)?,
        part("thumbnail format", format)?
    ))
}

fn uploads_prefix(domain: &str) -> io::Result<String> {
    Ok(format!("{}/uploads/", part("domain", domain)?))
}

fn temp_key(domain: &str, token: &str) -> io::Result<String> {
    Ok(format!(
        "{}{}",
        uploads_prefix(domain)?,
        part("upload token", token)?
    ))
}

/// An upload streaming into its `uploads/` key.
struct S3Temp {
    /// `None` once sealed.
    writer: Option<opendal::Writer>,
    key: String,
    token: String,
    size: u64,
}

#[async_trait]
impl TempBlob for S3Temp {
    async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| io::Error::other("temporary blob already sealed"))?;
        writer
            .write(Bytes::copy_from_slice(chunk))
            .await
            .map_err(|e| convert(e, "upload", &self.key))?;
        self.size += chunk.len() as u64;
        Ok(())
    }

    async fn seal(mut self: Box<Self>) -> io::Result<Sealed> {
        let mut writer = self
            .writer
            .take()
            .ok_or_else(|| io::Error::other("temporary blob already sealed"))?;
        if let Err(e) = writer.close().await {
            // Parts already sent must not stay (they are billed, and invisible).
            if let Err(ae) = writer.abort().await {
                tracing::debug!(error = %ae, key = %self.key, "aborting a failed S3 upload");
            }
            return Err(convert(e, "complete the upload of", &self.key));
        }
        Ok(Sealed {
            token: std::mem::take(&mut self.token),
            size: self.size,
        })
    }
}

impl Drop for S3Temp {
    fn drop(&mut self) {
        // Not sealed: the upload failed or was abandoned. Nothing is visible under its
        // key before `close`; the parts of a multipart upload already sent are aborted.
        if let Some(mut writer) = self.writer.take() {
            let key = std::mem::take(&mut self.key);
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        if let Err(e) = writer.abort().await {
                            tracing::warn!(error = %e, key = %key, "cannot abort an abandoned S3 upload");
                        }
                    });
                }
                Err(_) => {
                    tracing::warn!(key = %key, "an abandoned S3 upload outside a runtime is left to the bucket's lifecycle rules");
                }
            }
        }
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn create_temp(&self, domain: &str) -> io::Result<Box<dyn TempBlob>> {
        let token = format!("upload-{}", hearth_core::random_hex(16));
        let key = temp_key(domain, &token)?;
        let writer = self
            .op
            .writer_with(&key)
            .chunk(self.chunk_size)
            .concurrent(self.concurrency)
            .await
            .map_err(|e| convert(e, "start the upload of", &key))?;
        Ok(Box::new(S3Temp {
            writer: Some(writer),
            key,
            token,
            size: 0,
        }))
    }

    async fn commit_new(&self, sealed: Sealed, at: BlobRef<'_>) -> io::Result<()> {
        let temp = temp_key(at.domain, &sealed.token)?;
        let dest = match file_key(at.domain, at.file_id) {
            Ok(d) => d,
            Err(e) => {
                self.drop_temp(&temp).await;
                return Err(e);
            }
        };
        match self.exists(&dest).await {
            Ok(false) => self.move_temp(&temp, &dest).await,
            Ok(true) => {
                self.drop_temp(&temp).await;
                Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("S3: {dest} already has content"),
                ))
            }
            Err(e) => {
                self.drop_temp(&temp).await;
                Err(e)
            }
        }
    }

    async fn commit_replace(
        &self,
        sealed: Sealed,
        at: BlobRef<'_>,
        keep_as: Option<&str>,
    ) -> io::Result<bool> {
        let temp = temp_key(at.domain, &sealed.token)?;
        let keys = file_key(at.domain, at.file_id).and_then(|dest| {
            let version = keep_as
                .map(|v| version_key(at.domain, at.file_id, v))
                .transpose()?;
            Ok((dest, version))
        });
        let (dest, version) = match keys {
            Ok(k) => k,
            Err(e) => {
                self.drop_temp(&temp).await;
                return Err(e);
            }
        };
        let mut kept = None;
        if let Some(vkey) = version {
            // The old content gets a second key first; the copy below then replaces
            // the content in one step.
            match self.op.copy(&dest, &vkey).await {
                Ok(_) => kept = Some(vkey),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    self.drop_temp(&temp).await;
                    return Err(convert(e, "keep the former content of", &dest));
                }
            }
        }
        if let Err(e) = self.move_temp(&temp, &dest).await {
            if let Some(vkey) = &kept
                && let Err(de) = self.delete(vkey).await
            {
                tracing::warn!(error = %de, "cannot remove the version kept for a failed overwrite");
            }
            return Err(e);
        }
        Ok(kept.is_some())
    }

    async fn restore_version(&self, at: BlobRef<'_>, version: &str) -> io::Result<()> {
        let vkey = version_key(at.domain, at.file_id, version)?;
        let dest = file_key(at.domain, at.file_id)?;
        self.op
            .copy(&vkey, &dest)
            .await
            .map_err(|e| convert(e, "restore a version into", &dest))?;
        self.delete(&vkey).await
    }

    async fn discard(&self, domain: &str, sealed: Sealed) {
        match temp_key(domain, &sealed.token) {
            Ok(k) => self.drop_temp(&k).await,
            Err(e) => tracing::warn!(error = %e, "bad temporary blob token"),
        }
    }

    async fn open(&self, at: BlobRef<'_>, offset: u64, len: Option<u64>) -> io::Result<BlobReader> {
        let key = file_key(at.domain, at.file_id)?;
        let meta = self.stat_for_read(&key).await?;
        let size = meta.content_length();
        let start = offset.min(size);
        let end = len.map_or(size, |n| start.saturating_add(n).min(size));
        self.read_range(&key, &meta, start, end).await
    }

    async fn stat(&self, at: BlobRef<'_>) -> io::Result<Option<u64>> {
        let key = file_key(at.domain, at.file_id)?;
        match self.op.stat(&key).await {
            Ok(m) if m.is_file() => Ok(Some(m.content_length())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(convert(e, "look at", &key)),
        }
    }

    async fn mkdir(&self, domain: &str, _path: &str) -> io::Result<()> {
        part("domain", domain)?;
        Ok(())
    }

    async fn rename(&self, domain: &str, _from: &str, _to: &str) -> io::Result<()> {
        part("domain", domain)?;
        Ok(())
    }

    async fn remove(&self, at: BlobRef<'_>) -> io::Result<()> {
        self.delete(&file_key(at.domain, at.file_id)?).await
    }

    async fn remove_dir(&self, domain: &str, _path: &str) -> io::Result<()> {
        // The files below a destroyed directory are removed one by one, by id.
        part("domain", domain)?;
        Ok(())
    }

    async fn remove_versions(
        &self,
        domain: &str,
        file_id: &str,
        version: Option<&str>,
    ) -> io::Result<()> {
        match version {
            Some(v) => self.delete(&version_key(domain, file_id, v)?).await,
            None => self.delete_prefix(&versions_prefix(domain, file_id)?).await,
        }
    }

    async fn commit_version(
        &self,
        sealed: Sealed,
        domain: &str,
        file_id: &str,
        version: &str,
    ) -> io::Result<()> {
        let temp = temp_key(domain, &sealed.token)?;
        let dest = match version_key(domain, file_id, version) {
            Ok(d) => d,
            Err(e) => {
                self.drop_temp(&temp).await;
                return Err(e);
            }
        };
        match self.exists(&dest).await {
            Ok(false) => self.move_temp(&temp, &dest).await,
            Ok(true) => {
                self.drop_temp(&temp).await;
                Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("S3: {dest} already has content"),
                ))
            }
            Err(e) => {
                self.drop_temp(&temp).await;
                Err(e)
            }
        }
    }

    async fn open_version(
        &self,
        domain: &str,
        file_id: &str,
        version: &str,
    ) -> io::Result<BlobReader> {
        let key = version_key(domain, file_id, version)?;
        let meta = self.stat_for_read(&key).await?;
        let size = meta.content_length();
        self.read_range(&key, &meta, 0, size).await
    }

    async fn clear(&self, domain: &str) -> io::Result<()> {
        // The trailing `/` keeps `a.example` from matching `a.example.org`.
        self.delete_prefix(&format!("{}/", part("domain", domain)?))
            .await
    }

    /// Every file's content, named by its id (no directories on an object store).
    async fn list(&self, domain: &str) -> io::Result<Vec<BlobEntry>> {
        let prefix = format!("{}/files/", part("domain", domain)?);
        let mut out: Vec<BlobEntry> = self
            .list_under(&prefix)
            .await?
            .into_iter()
            .map(|(id, size)| BlobEntry {
                path: id,
                is_dir: false,
                size,
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn temp_count(&self, domain: &str) -> io::Result<usize> {
        Ok(self.list_under(&uploads_prefix(domain)?).await?.len())
    }

    fn keyed_by_id(&self) -> bool {
        true
    }

    async fn put_thumb(
        &self,
        domain: &str,
        file_id: &str,
        format: &str,
        jpeg: Vec<u8>,
    ) -> io::Result<()> {
        // One PUT: the object appears whole, or the former one stays.
        let key = thumb_key(domain, file_id, format)?;
        self.op
            .write(&key, jpeg)
            .await
            .map(|_| ())
            .map_err(|e| convert(e, "store", &key))
    }

    async fn open_thumb(&self, domain: &str, file_id: &str, format: &str) -> io::Result<ThumbBlob> {
        // Thumbnails are small: one GET reads one consistent object.
        let key = thumb_key(domain, file_id, format)?;
        let bytes = self
            .op
            .read(&key)
            .await
            .map_err(|e| convert(e, "read", &key))?
            .to_bytes();
        Ok(ThumbBlob {
            size: bytes.len() as u64,
            reader: Box::new(io::Cursor::new(bytes)),
        })
    }

    async fn remove_thumbs(&self, domain: &str, file_id: &str) -> io::Result<()> {
        for format in hearth_vfs::thumbs::FORMATS {
            self.delete(&thumb_key(domain, file_id, format)?).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_by_id_and_checked() {
        assert_eq!(
            file_key("a.example", "f1").ok().as_deref(),
            Some("a.example/files/f1")
        );
        assert_eq!(
            version_key("a.example", "f1", "2-abc").ok().as_deref(),
            Some("a.example/versions/f1/2-abc")
        );
        assert_eq!(
            thumb_key("a.example:8080", "f1", "small").ok().as_deref(),
            Some("a.example:8080/thumbs/f1-small")
        );
        assert_eq!(
            temp_key("a.example", "upload-1").ok().as_deref(),
            Some("a.example/uploads/upload-1")
        );
        for bad in ["", ".", "..", "a/b", "a\0"] {
            assert!(file_key(bad, "f").is_err(), "{bad:?}");
            assert!(file_key("d", bad).is_err(), "{bad:?}");
            assert!(version_key("d", "f", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn config_hides_secrets() {
        let mut c = S3Config::new("b");
        c.access_key_id = Some("AKIDSECRETISH".into());
        c.secret_access_key = Some("very-secret".into());
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret") && !shown.contains("AKIDSECRETISH"));
        assert!(shown.contains("\"b\""));
    }

    #[test]
    fn bad_configs_are_refused() {
        let mut c = S3Config::new("b");
        c.access_key_id = Some("k".into());
        assert!(S3BlobStore::new(c).is_err());
        let mut c = S3Config::new("b");
        c.chunk_size = 1024;
        assert!(S3BlobStore::new(c).is_err());
        assert!(S3BlobStore::new(S3Config::new("")).is_err());
    }
}
