//! [`VfsError`]: every outcome of a files operation that is not a success, named for
//! what happened (the HTTP layer maps each to a status, spec core-api B.8).

use hearth_store::StoreError;

/// Why a files operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VfsError {
    /// The file, directory or parent does not exist (or is not what was expected).
    #[error("{0}")]
    NotFound(&'static str),
    /// A file or directory with this name already exists in the target directory.
    #[error("file already exists")]
    Exists,
    /// A request value is invalid; `field` names it (`name`, `path`, `UpdatedAt`…).
    #[error("{detail}")]
    Invalid { field: &'static str, detail: String },
    /// `If-Match` does not name the current revision.
    #[error("Revision does not match")]
    RevMismatch,
    /// The uploaded bytes do not have the announced MD5 (`Content-MD5`).
    #[error("Content-MD5 does not match the content: the upload was corrupted")]
    Md5Mismatch,
    /// The uploaded bytes are not as many as announced (`Content-Length` or `Size`).
    #[error("The content length does not match: {expected} bytes announced, {actual} received")]
    SizeMismatch { expected: u64, actual: u64 },
    /// Storing this would exceed the instance's disk quota.
    #[error("The file is too big and exceeds the disk quota")]
    QuotaExceeded,
    /// The operation makes no sense for this item (already in the trash, not in the
    /// trash, a directory moved into itself, a path that is not absolute…).
    #[error("{0}")]
    BadRequest(String),
    /// Reading the request body failed (the client went away, or it was too large:
    /// `ErrorKind::FileTooLarge`).
    #[error("reading the uploaded content failed: {0}")]
    Body(#[source] std::io::Error),
    /// The content of an image cannot be made into thumbnails: it does not decode, or
    /// it is too large to decode safely (a decompression bomb). Retrying will not help.
    #[error("cannot make thumbnails of this image: {0}")]
    BadImage(String),
    /// The document store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blob store failed (disk errors); details are for the logs.
    #[error("files storage failure: {0}")]
    Io(#[from] std::io::Error),
}

pub type VfsResult<T> = Result<T, VfsError>;

impl VfsError {
    pub(crate) fn invalid(field: &'static str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            detail: detail.into(),
        }
    }

    pub(crate) fn not_found() -> Self {
        Self::NotFound("file does not exist")
    }

    /// A store error where a missing document means "no such file".
    pub(crate) fn from_get(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => Self::not_found(),
            e => Self::Store(e),
        }
    }
}
