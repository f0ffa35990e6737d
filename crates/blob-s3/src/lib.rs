//! File content in an object store, through OpenDAL: [`ObjectBlobStore`], a
//! [`BlobStore`] whose blobs are keyed by file id, so that renames and moves touch no
//! object (DESIGN "Embedded default, and how it grows"), on S3 ([`ObjectBlobStore::new`],
//! also named [`S3BlobStore`]) or on OpenStack Swift ([`ObjectBlobStore::swift`]).
//!
//! Keys, below the configured prefix of the bucket or container:
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
//! On Swift, the same with these differences (see [`swift`] for logging in):
//!
//! - An upload larger than one part becomes a Static Large Object: OpenDAL's writer
//!   PUTs each part as a segment under `.segments/<prefix>/<domain>/uploads/<token><uuid>/`
//!   of the same container, then the manifest at the `uploads/` key. Committing copies
//!   the manifest with `X-Copy-From`, which Swift turns into one plain object holding
//!   the concatenated content; the manifest is then deleted with
//!   `?multipart-manifest=delete`, which removes its segments too. So every file,
//!   version and thumbnail is a plain object, and a plain `DELETE` (or a bulk delete)
//!   frees it all. The limit is Swift's `max_file_size` (5 GiB by default) for such a
//!   copy: a larger upload is refused at its commit (413 from Swift, the upload
//!   removed). SLO manifests also hold 1000 segments at most by default (8 GiB with 8 MiB
//!   parts), which the copy's limit hides.
//! - A dropped upload deletes its segments (OpenDAL lists them and deletes them one by
//!   one); a crash leaves them under `.segments/`, outside the prefix, for the operator.
//! - Swift's container listings are updated by the object servers as objects are
//!   written; on a loaded cluster a listing (`list`, `clear`, `remove_versions` of all
//!   versions) can lag a write, as with S3 servers that are eventually consistent.
//! - The proxy needs the `bulk` (deleting under a prefix), `slo` and `copy`
//!   middlewares, which a default proxy pipeline has.
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
use std::sync::{Arc, Once};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use hearth_vfs::{BlobEntry, BlobReader, BlobRef, BlobStore, Sealed, TempBlob, ThumbBlob};
use opendal::layers::RetryLayer;
use opendal::services::{S3, Swift};
use opendal::{ErrorKind, HttpTransporter, Operator};

pub mod swift;

pub use swift::SwiftAuth;

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

/// Where the content goes on OpenStack Swift and how to log in.
#[derive(Clone, Debug)]
pub struct SwiftConfig {
    /// The container (it must exist).
    pub container: String,
    /// A prefix inside the container (`""` for its root).
    pub prefix: String,
    pub auth: SwiftAuth,
    /// The size of the segments of large objects.
    pub chunk_size: usize,
    /// How many segments of one upload are sent at once.
    pub concurrency: usize,
}

impl SwiftConfig {
    /// A container with the defaults: 8 MiB segments sent two at a time.
    pub fn new(container: impl Into<String>, auth: SwiftAuth) -> Self {
        Self {
            container: container.into(),
            prefix: String::new(),
            auth,
            chunk_size: DEFAULT_CHUNK_SIZE,
            concurrency: 2,
        }
    }
}

/// File content in an S3 bucket or a Swift container.
#[derive(Clone)]
pub struct ObjectBlobStore {
    op: Operator,
    /// `S3` or `Swift`, for messages.
    service: &'static str,
    /// The bucket or container.
    bucket: String,
    chunk_size: usize,
    concurrency: usize,
    /// Swift only: what the store sends itself.
    swift: Option<Arc<SwiftExtra>>,
}

/// The Swift session and where the container is, for the requests OpenDAL does not
/// make (deleting a large object with its segments, checking the container).
struct SwiftExtra {
    session: Arc<swift::Session>,
    /// `<storage URL>/<container>`.
    container_url: String,
    /// The prefix, with a trailing `/` when not empty.
    root: String,
}

/// The store's former name, when S3 was the only object store.
pub type S3BlobStore = ObjectBlobStore;

impl fmt::Debug for ObjectBlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectBlobStore")
            .field("service", &self.service)
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

fn http_client(service: &str) -> io::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| io::Error::other(format!("cannot build the {service} HTTP client: {e}")))
}

impl ObjectBlobStore {
    /// Builds the S3 client; nothing is sent yet (see [`ObjectBlobStore::check`]).
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
        let transport = HttpTransporter::new(
            opendal_http_transport_reqwest::ReqwestTransport::new(http_client("S3")?),
        );
        let op = Operator::new(b).map_err(|e| invalid(format!("S3 configuration: {e}")))?;
        let ctx = op.base_context().with_http_transport(transport);
        let op = op
            .with_context(ctx)
            .layer(RetryLayer::new().with_jitter().with_max_times(4));
        Ok(Self {
            op,
            service: "S3",
            bucket: config.bucket,
            chunk_size: config.chunk_size,
            concurrency: config.concurrency.max(1),
            swift: None,
        })
    }

    /// Logs in to Swift and builds the client (see [`ObjectBlobStore::check`] for the
    /// container).
    pub async fn swift(config: SwiftConfig) -> io::Result<Self> {
        install_crypto_provider();
        let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
        if config.container.is_empty() || config.container.contains('/') {
            return Err(invalid(format!(
                "{:?} is not a Swift container name",
                config.container
            )));
        }
        if config.chunk_size < 5 * 1024 * 1024 {
            return Err(invalid(format!(
                "Swift segments must have at least 5 MiB here, not {} bytes",
                config.chunk_size
            )));
        }
        if !(config.auth.auth_url.starts_with("http://")
            || config.auth.auth_url.starts_with("https://"))
        {
            return Err(invalid(format!(
                "the Swift auth URL {:?} is not an http:// or https:// URL",
                config.auth.auth_url
            )));
        }
        if config.auth.user.is_empty() || config.auth.key.is_empty() {
            return Err(invalid("Swift needs a user and a key".into()));
        }
        let client = http_client("Swift")?;
        let session = Arc::new(swift::Session::connect(client.clone(), config.auth).await?);
        let storage_url = session.storage_url();
        let prefix = config.prefix.trim_matches('/');
        // The token OpenDAL is given is a placeholder: the transport sets the session's.
        let b = Swift::default()
            .endpoint(&storage_url)
            .container(&config.container)
            .root(&format!("/{prefix}"));
        let transport = HttpTransporter::new(swift::SwiftTransport {
            inner: opendal_http_transport_reqwest::ReqwestTransport::new(client),
            session: session.clone(),
        });
        let op = Operator::new(b).map_err(|e| invalid(format!("Swift configuration: {e}")))?;
        let ctx = op.base_context().with_http_transport(transport);
        let op = op
            .with_context(ctx)
            .layer(RetryLayer::new().with_jitter().with_max_times(4));
        let container_url = format!(
            "{storage_url}/{}",
            opendal::raw::percent_encode_path(&config.container)
        );
        Ok(Self {
            op,
            service: "Swift",
            bucket: config.container,
            chunk_size: config.chunk_size,
            concurrency: config.concurrency.max(1),
            swift: Some(Arc::new(SwiftExtra {
                session,
                container_url,
                root: if prefix.is_empty() {
                    String::new()
                } else {
                    format!("{prefix}/")
                },
            })),
        })
    }

    /// Checks that the bucket or container answers with these credentials (for
    /// `serve` to fail at start rather than on the first upload).
    pub async fn check(&self) -> io::Result<()> {
        if let Some(sw) = &self.swift {
            // OpenDAL's check takes a missing container for an empty one.
            let resp = sw
                .session
                .send(reqwest::Method::HEAD, &sw.container_url)
                .await?;
            let status = resp.status();
            if status == reqwest::StatusCode::NOT_FOUND {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("Swift: the container {:?} does not exist", self.bucket),
                ));
            }
            if !status.is_success() {
                return Err(io::Error::other(format!(
                    "Swift: cannot reach the container {:?}: {status}",
                    self.bucket
                )));
            }
        }
        self.op
            .check()
            .await
            .map_err(|e| convert(self.service, e, "reach the bucket", &self.bucket))
    }

    /// The service (`S3` or `Swift`).
    pub fn service(&self) -> &'static str {
        self.service
    }

    async fn exists(&self, key: &str) -> io::Result<bool> {
        match self.op.stat(key).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(convert(self.service, e, "look at", key)),
        }
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        self.op
            .delete(key)
            .await
            .map_err(|e| convert(self.service, e, "delete", key))
    }

    async fn delete_prefix(&self, prefix: &str) -> io::Result<()> {
        self.op
            .delete_with(prefix)
            .recursive(true)
            .await
            .map_err(|e| convert(self.service, e, "delete everything under", prefix))
    }

    /// Removes a temporary object of `size` bytes whose content will not be used
    /// (failures logged).
    async fn drop_temp(&self, key: &str, size: u64) {
        let done = match &self.swift {
            // Larger than a part: a Static Large Object, removed with its segments.
            Some(sw) if size > self.chunk_size as u64 => self.delete_large(sw, key).await,
            _ => self.delete(key).await,
        };
        if let Err(e) = done {
            tracing::warn!(error = %e, service = self.service, "cannot remove a temporary object");
        }
    }

    /// Deletes a Swift object and, when it is a Static Large Object, its segments.
    async fn delete_large(&self, sw: &SwiftExtra, key: &str) -> io::Result<()> {
        let url = format!(
            "{}/{}?multipart-manifest=delete",
            sw.container_url,
            opendal::raw::percent_encode_path(&format!("{}{key}", sw.root))
        );
        let failed = |why: String| io::Error::other(format!("Swift: cannot delete {key}: {why}"));
        let resp = sw.session.send(reqwest::Method::DELETE, &url).await?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        if !status.is_success() {
            return Err(failed(status.to_string()));
        }
        // The answer of a bulk operation: its own status, and errors per object.
        let bytes = resp.bytes().await.map_err(|e| failed(e.to_string()))?;
        let body: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| failed(e.to_string()))?;
        let errors = body["Errors"].as_array().cloned().unwrap_or_default();
        if errors.iter().any(|e| {
            e[1].as_str()
                .is_some_and(|m| m.contains("Not an SLO manifest"))
        }) {
            // A plain object after all.
            return self.delete(key).await;
        }
        let answered = body["Response Status"].as_str().unwrap_or_default();
        if !answered.starts_with("200") || !errors.is_empty() {
            return Err(failed(format!("{answered} {errors:?}")));
        }
        Ok(())
    }

    /// Makes a sealed temporary object the content at `dest` (replacing what is
    /// there) and removes it. On failure the temporary object is removed too: the
    /// caller gave up its `Sealed`.
    async fn move_temp(&self, temp: &str, size: u64, dest: &str) -> io::Result<()> {
        if let Err(e) = self.op.copy(temp, dest).await {
            self.drop_temp(temp, size).await;
            return Err(convert(self.service, e, "copy into place", dest));
        }
        self.drop_temp(temp, size).await;
        Ok(())
    }

    /// Makes a sealed temporary object the content at `dest` unless there is some
    /// there already (`AlreadyExists`); the temporary object is removed either way.
    async fn commit_absent(
        &self,
        temp: &str,
        size: u64,
        dest: io::Result<String>,
    ) -> io::Result<()> {
        let checked = match dest {
            Ok(dest) => self.exists(&dest).await.map(|found| (dest, found)),
            Err(e) => Err(e),
        };
        match checked {
            Ok((dest, false)) => self.move_temp(temp, size, &dest).await,
            Ok((dest, true)) => {
                self.drop_temp(temp, size).await;
                Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{}: {dest} already has content", self.service),
                ))
            }
            Err(e) => {
                self.drop_temp(temp, size).await;
                Err(e)
            }
        }
    }

    /// Opens `[start, end)` of an object whose metadata were just read, refusing
    /// content that changed since (its ETag; on Swift, its date).
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
        if self.swift.is_some() {
            // Swift 2.30 checks `If-Match` against the ETag of the manifest an object
            // was copied from (a committed large upload keeps it in its system
            // metadata), not the one it answers: its date is compared instead, to the
            // second.
            if let Some(t) = meta.last_modified() {
                r = r.if_unmodified_since(t);
            }
        } else if let Some(etag) = meta.etag() {
            r = r.if_match(etag);
        }
        let stream = r
            .await
            .map_err(|e| convert(self.service, e, "read", key))?
            .into_bytes_stream(start..end)
            .await
            .map_err(|e| convert(self.service, e, "read", key))?;
        Ok(Box::new(tokio_util::io::StreamReader::new(stream)))
    }

    async fn stat_for_read(&self, key: &str) -> io::Result<opendal::Metadata> {
        self.op
            .stat(key)
            .await
            .map_err(|e| convert(self.service, e, "read", key))
    }

    /// The objects under a prefix, with their names below it and their sizes.
    async fn list_under(&self, prefix: &str) -> io::Result<Vec<(String, u64)>> {
        let mut lister = self
            .op
            .lister_with(prefix)
            .recursive(true)
            .await
            .map_err(|e| convert(self.service, e, "list", prefix))?;
        let mut out = Vec::new();
        while let Some(entry) = lister
            .try_next()
            .await
            .map_err(|e| convert(self.service, e, "list", prefix))?
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
fn convert(service: &str, e: opendal::Error, doing: &str, key: &str) -> io::Error {
    let kind = match e.kind() {
        ErrorKind::NotFound => io::ErrorKind::NotFound,
        ErrorKind::AlreadyExists => io::ErrorKind::AlreadyExists,
        ErrorKind::PermissionDenied => io::ErrorKind::PermissionDenied,
        ErrorKind::Unsupported => io::ErrorKind::Unsupported,
        ErrorKind::ConfigInvalid => io::ErrorKind::InvalidInput,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("{service}: cannot {doing} {key}: {e}"))
}

/// A part of a key: not empty, not `.` or `..`, no `/` (nothing can reach another
/// instance's or file's keys).
fn part<'a>(what: &str, c: &'a str) -> io::Result<&'a str> {
    if !hearth_vfs::is_safe_component(c) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing the {what} {c:?} in an object key"),
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
struct ObjectTemp {
    /// `None` once sealed.
    writer: Option<opendal::Writer>,
    service: &'static str,
    key: String,
    token: String,
    size: u64,
}

#[async_trait]
impl TempBlob for ObjectTemp {
    async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(hearth_vfs::already_sealed)?;
        writer
            .write(Bytes::copy_from_slice(chunk))
            .await
            .map_err(|e| convert(self.service, e, "upload", &self.key))?;
        self.size += chunk.len() as u64;
        Ok(())
    }

    async fn seal(mut self: Box<Self>) -> io::Result<Sealed> {
        let mut writer = self.writer.take().ok_or_else(hearth_vfs::already_sealed)?;
        if let Err(e) = writer.close().await {
            // Parts already sent must not stay (they are billed, and invisible).
            if let Err(ae) = writer.abort().await {
                tracing::debug!(error = %ae, key = %self.key, "aborting a failed upload");
            }
            return Err(convert(
                self.service,
                e,
                "complete the upload of",
                &self.key,
            ));
        }
        Ok(Sealed {
            token: std::mem::take(&mut self.token),
            size: self.size,
        })
    }
}

impl Drop for ObjectTemp {
    fn drop(&mut self) {
        // Not sealed: the upload failed or was abandoned. Nothing is visible under its
        // key before `close`; the parts of a multipart upload already sent are aborted.
        if let Some(mut writer) = self.writer.take() {
            let key = std::mem::take(&mut self.key);
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        if let Err(e) = writer.abort().await {
                            tracing::warn!(error = %e, key = %key, "cannot abort an abandoned upload");
                        }
                    });
                }
                Err(_) => {
                    tracing::warn!(key = %key, "an abandoned upload outside a runtime is left to the bucket's lifecycle rules (or Swift's segments)");
                }
            }
        }
    }
}

#[async_trait]
impl BlobStore for ObjectBlobStore {
    async fn create_temp(&self, domain: &str) -> io::Result<Box<dyn TempBlob>> {
        let token = hearth_vfs::new_temp_token();
        let key = temp_key(domain, &token)?;
        let writer = self
            .op
            .writer_with(&key)
            .chunk(self.chunk_size)
            .concurrent(self.concurrency)
            .await
            .map_err(|e| convert(self.service, e, "start the upload of", &key))?;
        Ok(Box::new(ObjectTemp {
            writer: Some(writer),
            service: self.service,
            key,
            token,
            size: 0,
        }))
    }

    async fn commit_new(&self, sealed: Sealed, at: BlobRef<'_>) -> io::Result<()> {
        let temp = temp_key(at.domain, &sealed.token)?;
        self.commit_absent(&temp, sealed.size, file_key(at.domain, at.file_id))
            .await
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
                self.drop_temp(&temp, sealed.size).await;
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
                    self.drop_temp(&temp, sealed.size).await;
                    return Err(convert(
                        self.service,
                        e,
                        "keep the former content of",
                        &dest,
                    ));
                }
            }
        }
        if let Err(e) = self.move_temp(&temp, sealed.size, &dest).await {
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
            .map_err(|e| convert(self.service, e, "restore a version into", &dest))?;
        self.delete(&vkey).await
    }

    async fn discard(&self, domain: &str, sealed: Sealed) {
        match temp_key(domain, &sealed.token) {
            Ok(k) => self.drop_temp(&k, sealed.size).await,
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
            Err(e) => Err(convert(self.service, e, "look at", &key)),
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
        self.commit_absent(&temp, sealed.size, version_key(domain, file_id, version))
            .await
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
            .map_err(|e| convert(self.service, e, "store", &key))
    }

    async fn open_thumb(&self, domain: &str, file_id: &str, format: &str) -> io::Result<ThumbBlob> {
        // Thumbnails are small: one GET reads one consistent object.
        let key = thumb_key(domain, file_id, format)?;
        let bytes = self
            .op
            .read(&key)
            .await
            .map_err(|e| convert(self.service, e, "read", &key))?
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
