//! The embedded document store: one SQLite database file per instance.
//!
//! Files live under one directory (`<dir>/<instance>.sqlite`, plus `global.sqlite`
//! for the instances registry). Handles are opened lazily, kept in a bounded pool and
//! closed when idle, so ten thousand instances do not mean ten thousand open files.
//! All SQLite work runs on tokio's blocking threads. Nothing of rusqlite leaks out.

mod pool;
mod query;
mod schema;
mod write;

use std::{path::PathBuf, sync::Arc, time::Duration};

use async_trait::async_trait;
use hearth_core::{Doctype, InstanceId, JsonMap, Rev};
use hearth_store::{
    AllDocs, AllDocsQuery, BulkResult, Changes, ChangesQuery, DocStore, FindResult, GetOptions,
    IndexCreated, StoreError, StoreResult, Written,
    mango::{FindQuery, IndexDef},
};
use rusqlite::Connection;

pub use crate::schema::pragmas;
use crate::{pool::Pool, schema::MetaCache};

/// Tuning of the SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// How many instance databases may be open at once (idle ones are closed first).
    pub max_open: usize,
    /// An instance database unused for this long is closed.
    pub idle_timeout: Duration,
    /// `PRAGMA synchronous=FULL` (every commit reaches the disk) rather than `NORMAL`
    /// (a power cut may lose the last commits, never corrupt).
    pub synchronous_full: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            max_open: 256,
            idle_timeout: Duration::from_secs(300),
            synchronous_full: true,
        }
    }
}

/// The SQLite implementation of [`DocStore`].
#[derive(Clone)]
pub struct SqliteStore {
    pool: Arc<Pool>,
}

impl SqliteStore {
    /// Opens (creating it if needed) a store rooted at `dir`.
    ///
    /// When called inside a tokio runtime, a task closes idle databases.
    pub fn open(dir: impl Into<PathBuf>, opts: SqliteOptions) -> StoreResult<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(StoreError::internal)?;
        let pool = Arc::new(Pool::new(dir, opts));
        if tokio::runtime::Handle::try_current().is_ok() {
            pool::spawn_idle_closer(&pool);
        }
        Ok(Self { pool })
    }

    /// How many instance databases are open right now.
    pub fn open_count(&self) -> usize {
        self.pool.open_count()
    }

    /// The `EXPLAIN QUERY PLAN` of the SQL a `find` would run (for tests and debugging).
    pub async fn explain_find(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        q: &FindQuery,
    ) -> StoreResult<String> {
        let (dt, q) = (dt.clone(), q.clone());
        self.read(inst, move |c, m| query::explain_find(c, m, &dt, &q))
            .await
    }

    async fn read<T, F>(&self, inst: &InstanceId, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &MetaCache) -> StoreResult<T> + Send + 'static,
    {
        let pool = self.pool.clone();
        let inst = inst.clone();
        blocking(move || pool.get(&inst)?.with_reader(f)).await
    }

    async fn write<T, F>(&self, inst: &InstanceId, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &MetaCache) -> StoreResult<T> + Send + 'static,
    {
        let pool = self.pool.clone();
        let inst = inst.clone();
        blocking(move || pool.get(&inst)?.with_writer(f)).await
    }
}

/// Runs SQLite work off the async threads: in place on a multi-threaded runtime (tokio
/// moves its other tasks to another worker, and no thread hand-off is paid), on the
/// blocking pool otherwise.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> StoreResult<T> + Send + 'static,
) -> StoreResult<T> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => tokio::task::spawn_blocking(f)
            .await
            .map_err(StoreError::internal)?,
    }
}

/// Forgets the cached schema once a schema change has been attempted.
fn schema_change<T>(cache: &MetaCache, result: StoreResult<T>) -> StoreResult<T> {
    cache.invalidate();
    result
}

#[async_trait]
impl DocStore for SqliteStore {
    async fn get(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        id: &str,
        opts: GetOptions,
    ) -> StoreResult<JsonMap> {
        let (dt, id) = (dt.clone(), id.to_owned());
        self.read(inst, move |c, m| query::get(c, m, &dt, &id, opts))
            .await
    }

    async fn put(&self, inst: &InstanceId, dt: &Doctype, doc: JsonMap) -> StoreResult<Written> {
        let dt = dt.clone();
        self.write(inst, move |c, _| write::put(c, &dt, doc)).await
    }

    async fn delete(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        id: &str,
        rev: &Rev,
    ) -> StoreResult<Rev> {
        let mut doc = JsonMap::new();
        doc.insert("_id".into(), id.into());
        doc.insert("_rev".into(), rev.to_string().into());
        doc.insert("_deleted".into(), true.into());
        Ok(self.put(inst, dt, doc).await?.rev)
    }

    async fn bulk(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        docs: Vec<JsonMap>,
        all_or_nothing: bool,
    ) -> StoreResult<Vec<BulkResult>> {
        let dt = dt.clone();
        self.write(inst, move |c, _| write::bulk(c, &dt, docs, all_or_nothing))
            .await
    }

    async fn bulk_many(
        &self,
        inst: &InstanceId,
        groups: Vec<(Doctype, Vec<JsonMap>)>,
    ) -> StoreResult<Vec<Vec<BulkResult>>> {
        self.write(inst, move |c, _| write::bulk_many(c, groups))
            .await
    }

    async fn restore(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        docs: Vec<JsonMap>,
    ) -> StoreResult<()> {
        let dt = dt.clone();
        self.write(inst, move |c, _| write::restore(c, &dt, docs))
            .await
    }

    async fn all_docs(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        q: &AllDocsQuery,
    ) -> StoreResult<AllDocs> {
        let (dt, q) = (dt.clone(), q.clone());
        self.read(inst, move |c, _| query::all_docs(c, &dt, &q))
            .await
    }

    async fn changes(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        q: &ChangesQuery,
    ) -> StoreResult<Changes> {
        let (dt, q) = (dt.clone(), q.clone());
        self.read(inst, move |c, _| query::changes(c, &dt, &q))
            .await
    }

    async fn find(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        q: &FindQuery,
    ) -> StoreResult<FindResult> {
        let (dt, q) = (dt.clone(), q.clone());
        self.read(inst, move |c, m| query::find(c, m, &dt, &q))
            .await
    }

    async fn create_index(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        def: IndexDef,
    ) -> StoreResult<IndexCreated> {
        let dt = dt.clone();
        self.write(inst, move |c, m| {
            schema_change(m, write::create_index(c, &dt, def))
        })
        .await
    }

    async fn create_indexes(
        &self,
        inst: &InstanceId,
        defs: Vec<(Doctype, IndexDef)>,
    ) -> StoreResult<Vec<IndexCreated>> {
        self.write(inst, move |c, m| {
            schema_change(m, write::create_indexes(c, defs))
        })
        .await
    }

    async fn list_indexes(&self, inst: &InstanceId, dt: &Doctype) -> StoreResult<Vec<IndexDef>> {
        let dt = dt.clone();
        self.read(inst, move |c, _| {
            Ok(schema::indexes(c, &dt)?
                .into_iter()
                .map(|i| i.def)
                .collect())
        })
        .await
    }

    async fn delete_index(&self, inst: &InstanceId, dt: &Doctype, ddoc: &str) -> StoreResult<()> {
        let (dt, ddoc) = (dt.clone(), ddoc.to_owned());
        self.write(inst, move |c, m| {
            schema_change(m, write::delete_index(c, &dt, &ddoc))
        })
        .await
    }

    async fn count(&self, inst: &InstanceId, dt: &Doctype) -> StoreResult<u64> {
        let dt = dt.clone();
        self.read(inst, move |c, _| {
            Ok(schema::table(c, &dt)?.map_or(0, |t| t.live))
        })
        .await
    }

    async fn doctypes(&self, inst: &InstanceId) -> StoreResult<Vec<Doctype>> {
        self.read(inst, |c, _| schema::doctypes(c)).await
    }

    async fn delete_doctype(&self, inst: &InstanceId, dt: &Doctype) -> StoreResult<()> {
        let dt = dt.clone();
        self.write(inst, move |c, m| {
            schema_change(m, write::delete_doctype(c, &dt))
        })
        .await
    }

    async fn destroy_instance(&self, inst: &InstanceId) -> StoreResult<()> {
        let pool = self.pool.clone();
        let inst = inst.clone();
        blocking(move || pool.destroy(&inst)).await
    }

    async fn health(&self) -> StoreResult<()> {
        self.read(&InstanceId::global(), |c, _| {
            c.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(StoreError::internal)
        })
        .await
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }
}
