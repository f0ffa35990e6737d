//! The [`DocStore`] trait, its request and response types, and [`StoreError`].

use async_trait::async_trait;
use hearth_core::{Doctype, InstanceId, JsonMap, Rev};
use serde_json::Value;

use crate::mango::{FindQuery, IndexDef};

/// Why a document could not be found (CouchDB's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotFoundReason {
    /// No document with that id was ever written.
    Missing,
    /// The document exists as a tombstone.
    Deleted,
    /// Nothing was ever written in that doctype for that instance.
    NoDatabase,
}

impl NotFoundReason {
    /// The `reason` string CouchDB (and the Cozy clients) use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Deleted => "deleted",
            Self::NoDatabase => "Database does not exist.",
        }
    }
}

/// Every way a store call can fail.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found: {}", .0.as_str())]
    NotFound(NotFoundReason),
    /// A write carried a stale or missing `_rev`, or created an id that exists.
    #[error("Document update conflict.")]
    Conflict,
    /// The request itself is wrong (bad revision, bad selector, bad id…).
    #[error("{0}")]
    InvalidInput(String),
    /// The backend failed; the source is logged, never shown to clients.
    #[error("document store failure: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(e))
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidInput(msg.into())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The outcome of a successful write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub id: String,
    pub rev: Rev,
}

/// One entry of a bulk write's answer, in the order of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkResult {
    Ok(Written),
    /// `error` is CouchDB's error name (`conflict`, `bad_request`, `aborted`…).
    Err {
        id: Option<String>,
        error: &'static str,
        reason: String,
    },
}

/// Options of a single-document read.
#[derive(Debug, Clone, Copy, Default)]
pub struct GetOptions {
    /// Add `_revisions: {start, ids}` (the revision history, newest first).
    pub revs: bool,
}

/// An `_all_docs` request (ids in ascending byte order).
#[derive(Debug, Clone, Default)]
pub struct AllDocsQuery {
    /// Fetch exactly these ids (in this order); the range options are then ignored.
    pub keys: Option<Vec<String>>,
    pub start_key: Option<String>,
    pub end_key: Option<String>,
    /// Whether `end_key` itself is included (CouchDB's default: yes).
    pub inclusive_end: bool,
    pub descending: bool,
    pub limit: Option<usize>,
    pub skip: usize,
    pub include_docs: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AllDocsRow {
    pub id: String,
    /// `None` for a requested key that does not exist.
    pub rev: Option<Rev>,
    pub deleted: bool,
    pub doc: Option<JsonMap>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AllDocs {
    /// Number of live documents in the doctype.
    pub total_rows: u64,
    pub offset: usize,
    pub rows: Vec<AllDocsRow>,
}

/// Where a changes feed starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Since {
    #[default]
    Beginning,
    Seq(u64),
    /// Only what happens after this call.
    Now,
}

#[derive(Debug, Clone, Default)]
pub struct ChangesQuery {
    pub since: Since,
    pub limit: Option<usize>,
    pub include_docs: bool,
    pub descending: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub id: String,
    pub seq: u64,
    pub rev: Rev,
    pub deleted: bool,
    pub doc: Option<JsonMap>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Changes {
    pub results: Vec<Change>,
    pub last_seq: u64,
    /// How many changes remain after the returned ones.
    pub pending: u64,
}

/// Counters for `execution_stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ExecutionStats {
    pub total_keys_examined: u64,
    pub total_docs_examined: u64,
    pub results_returned: u64,
    pub execution_time_ms: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FindResult {
    pub docs: Vec<JsonMap>,
    /// Opaque cursor after the last returned document; empty when there is none.
    pub bookmark: String,
    pub stats: ExecutionStats,
    /// Set when the query could not use the index it asked for, or used none.
    pub warning: Option<String>,
    /// `_design/<ddoc>` and name of the index used, if any.
    pub index: Option<(String, String)>,
}

/// Whether `create_index` made a new index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexCreated {
    pub created: bool,
    /// Without the `_design/` prefix.
    pub ddoc: String,
    pub name: String,
}

/// A document store: documents grouped by instance and doctype.
///
/// Every call names its instance; nothing done for one instance is visible to
/// another. Documents go in and out as JSON objects carrying `_id` and `_rev`.
#[async_trait]
pub trait DocStore: Send + Sync + 'static {
    /// Reads the latest revision of a live document.
    async fn get(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        id: &str,
        opts: GetOptions,
    ) -> StoreResult<JsonMap>;

    /// Creates or updates one document.
    ///
    /// Without `_rev` the document is created (`_id` generated when absent; an id
    /// held by a live document is a conflict, a tombstone is revived). With `_rev`
    /// it must be the current revision. `_deleted: true` deletes.
    async fn put(&self, inst: &InstanceId, dt: &Doctype, doc: JsonMap) -> StoreResult<Written>;

    /// Deletes a document, leaving a tombstone; `rev` must be the current one.
    async fn delete(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        id: &str,
        rev: &Rev,
    ) -> StoreResult<Rev>;

    /// Writes many documents in one transaction, each as [`DocStore::put`] would.
    ///
    /// With `all_or_nothing`, one failure writes nothing: the failed entries carry
    /// their error and the others `aborted`.
    async fn bulk(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        docs: Vec<JsonMap>,
        all_or_nothing: bool,
    ) -> StoreResult<Vec<BulkResult>>;

    /// Writes documents of several doctypes in one transaction, each group as
    /// [`DocStore::bulk`] with `all_or_nothing` would: if any document fails, nothing
    /// is written. Answers per group, in order.
    async fn bulk_many(
        &self,
        inst: &InstanceId,
        groups: Vec<(Doctype, Vec<JsonMap>)>,
    ) -> StoreResult<Vec<Vec<BulkResult>>> {
        let mut out = Vec::with_capacity(groups.len());
        for (dt, docs) in groups {
            out.push(self.bulk(inst, &dt, docs, true).await?);
        }
        Ok(out)
    }

    /// Writes documents exactly as they are elsewhere, for migration and replication:
    /// no revision check, no new revision.
    ///
    /// Each document needs `_id` and `_rev`; its `_rev` becomes the current revision
    /// of that id, replacing whatever the id holds (a live document, a tombstone or
    /// nothing). `_revisions` (`{start, ids}`, as [`DocStore::get`] answers with
    /// `revs`) gives the history, and must start with `_rev`; without it the history
    /// is empty. `_deleted: true` writes a tombstone. An id that already holds that
    /// very revision (live or deleted alike) is left as it is, so restoring the same
    /// documents twice writes nothing the second time. One transaction; the
    /// documents get new sequence numbers in the changes feed, and no event is
    /// published.
    async fn restore(&self, inst: &InstanceId, dt: &Doctype, docs: Vec<JsonMap>)
    -> StoreResult<()>;

    async fn all_docs(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        q: &AllDocsQuery,
    ) -> StoreResult<AllDocs>;

    /// The changes feed: the latest revision of each document changed after `since`,
    /// in sequence order, deletions included.
    async fn changes(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        q: &ChangesQuery,
    ) -> StoreResult<Changes>;

    /// Runs a Mango query, using a declared index when one fits.
    async fn find(&self, inst: &InstanceId, dt: &Doctype, q: &FindQuery)
    -> StoreResult<FindResult>;

    /// Declares an index (creating the doctype if needed).
    async fn create_index(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        def: IndexDef,
    ) -> StoreResult<IndexCreated>;

    /// Declares several indexes at once: all of them, or none on error. Backends
    /// override it to use one transaction (a new instance declares a dozen).
    async fn create_indexes(
        &self,
        inst: &InstanceId,
        defs: Vec<(Doctype, IndexDef)>,
    ) -> StoreResult<Vec<IndexCreated>> {
        let mut out = Vec::with_capacity(defs.len());
        for (dt, def) in defs {
            out.push(self.create_index(inst, &dt, def).await?);
        }
        Ok(out)
    }

    async fn list_indexes(&self, inst: &InstanceId, dt: &Doctype) -> StoreResult<Vec<IndexDef>>;

    /// Removes an index by design document (without `_design/`); `NotFound` if absent.
    async fn delete_index(&self, inst: &InstanceId, dt: &Doctype, ddoc: &str) -> StoreResult<()>;

    /// Number of live documents in a doctype (0 if it does not exist).
    async fn count(&self, inst: &InstanceId, dt: &Doctype) -> StoreResult<u64>;

    /// The doctypes that hold at least one write, sorted.
    async fn doctypes(&self, inst: &InstanceId) -> StoreResult<Vec<Doctype>>;

    /// Drops a doctype with its documents and indexes; `NotFound` if absent.
    async fn delete_doctype(&self, inst: &InstanceId, dt: &Doctype) -> StoreResult<()>;

    /// Removes everything stored for an instance. Idempotent.
    async fn destroy_instance(&self, inst: &InstanceId) -> StoreResult<()>;

    /// Checks that the backend answers (for `GET /status`).
    async fn health(&self) -> StoreResult<()>;

    /// The backend's name, for logs and `/status`.
    fn kind(&self) -> &'static str;

    /// The hub this store publishes its writes on, when it is an
    /// [`EventedStore`](crate::events::EventedStore).
    fn event_hub(&self) -> Option<&crate::events::EventHub> {
        None
    }
}

/// Splits a document into its id, revision, deletion flag and body.
///
/// The special members `_id`, `_rev`, `_deleted`, `_revisions` and `_type` (added to
/// responses by the HTTP layer) are removed from the body.
pub fn split_doc(mut doc: JsonMap) -> StoreResult<(Option<String>, Option<Rev>, bool, JsonMap)> {
    let (mut id, mut rev, mut deleted) = (Value::Null, Value::Null, Value::Null);
    // One pass over the members, keeping the order of the others.
    if doc.keys().any(|k| k.starts_with('_')) {
        doc.retain(|k, v| match k.as_str() {
            "_id" => {
                id = v.take();
                false
            }
            "_rev" => {
                rev = v.take();
                false
            }
            "_deleted" => {
                deleted = v.take();
                false
            }
            "_revisions" | "_type" => false,
            _ => true,
        });
    }
    let id = match id {
        Value::Null => None,
        Value::String(s) if !s.is_empty() => Some(s),
        _ => return Err(StoreError::invalid("_id must be a non-empty string")),
    };
    let rev = match rev {
        Value::Null => None,
        Value::String(s) => Some(
            s.parse::<Rev>()
                .map_err(|e| StoreError::invalid(e.to_string()))?,
        ),
        _ => return Err(StoreError::invalid("_rev must be a string")),
    };
    Ok((id, rev, deleted == Value::Bool(true), doc))
}

/// Puts `_id` and `_rev` first in a stored body, as clients expect.
pub fn with_meta(id: &str, rev: &Rev, body: JsonMap) -> JsonMap {
    let mut out = JsonMap::with_capacity(body.len() + 2);
    out.insert("_id".into(), Value::String(id.to_owned()));
    out.insert("_rev".into(), Value::String(rev.to_string()));
    out.extend(body);
    out
}
