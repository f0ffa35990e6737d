//! The shared document store: PostgreSQL, for several Hearth nodes on one database.
//!
//! Layout, chosen so that hundreds (or thousands) of instances stay cheap to create and
//! to drop:
//!
//! - A base schema (`hearth` by default, [`PgOptions::schema`]) holds the registry:
//!   `instances` (instance id → number), `doctypes` (number, instance, name, last
//!   sequence, live count) and `mango_indexes` (declared indexes), plus the
//!   `couch_key` functions that turn JSON into CouchDB collation keys.
//! - Each instance gets its own schema, `<base>_<n>`, and each of its doctypes one
//!   table there, `d_<m>` (`id text COLLATE "C"` primary key, so `_all_docs` is
//!   byte-wise; `seq`, unique, for the changes feed; `rev`, `deleted`, `data jsonb`,
//!   `revs`). Tombstones stay as rows; an update moves its row to a new sequence.
//!   `destroy_instance` is one `DROP SCHEMA … CASCADE` and `delete_doctype` one
//!   `DROP TABLE`, whatever the number of documents, and no query ever scans another
//!   instance's rows. Names are built from numbers only: instance ids and doctypes
//!   never reach SQL text.
//! - A Mango index is a real PostgreSQL expression index,
//!   `CREATE INDEX ix_<k> ON d_<m> (couch_key(data -> 'a' -> 'b'), id) WHERE NOT deleted`;
//!   `find` writes the very same expressions, so the planner uses it for ranges, order
//!   and bookmarks. Selectors are also translated to SQL on `jsonb` where that is exact
//!   or safely wider (`filter.rs`); every row is re-checked by the Mango matcher, so
//!   answers are the SQLite store's.
//!
//! Writers of one doctype take turns on its `doctypes` row (`SELECT … FOR UPDATE`):
//! revision checks cannot race, and sequence numbers are handed out in commit order.
//! Bulk writes are one transaction. Events are published by wrapping the store in
//! [`hearth_store::events::EventedStore`], as for SQLite.
//!
//! Known differences from the SQLite store: `jsonb` does not keep the order of object
//! members (documents come back with jsonb's order: shorter keys first), and strings
//! containing U+0000 are refused (`InvalidInput`), as PostgreSQL's text cannot hold
//! them. Connections are plain TCP or Unix sockets (no TLS).

mod filter;
mod pool;
mod query;
mod schema;
mod write;

use std::{
    any::Any,
    collections::HashMap,
    str::FromStr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use hearth_core::{Doctype, InstanceId, JsonMap, Rev};
use hearth_store::{
    AllDocs, AllDocsQuery, BulkResult, Changes, ChangesQuery, DocStore, FindResult, GetOptions,
    IndexCreated, NotFoundReason, StoreError, StoreResult, Written,
    mango::{FindQuery, IndexDef},
};
use tokio::sync::OnceCell;

use crate::pool::{Exec, Pool, Pooled, err};

/// Tuning of the PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// The base schema; instances get `<schema>_<n>`. Lowercase letters, digits and
    /// `_`, starting with a letter, at most 40 characters.
    pub schema: String,
    /// Connections this process opens at most.
    pub max_connections: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            schema: "hearth".to_owned(),
            max_connections: 16,
        }
    }
}

/// The PostgreSQL implementation of [`DocStore`]. Cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Arc<Pool>,
    base: String,
    ready: OnceCell<()>,
    /// Tables of doctypes read recently. A doctype's table is never renamed or reused:
    /// one dropped (by any node) makes the read fail with `NoDatabase`, and the entry
    /// is looked up again.
    tables: Mutex<HashMap<(InstanceId, Doctype), Arc<str>>>,
    /// Dropped with the store (tests use it to remove their schemas).
    guard: Mutex<Option<Box<dyn Any + Send>>>,
}

/// Runs `$x => future` in a write transaction; the future answers `(value, commit)`.
macro_rules! write_tx {
    ($store:expr, $x:ident => $fut:expr) => {{
        let mut conn = $store.conn().await?;
        let (client, cache) = conn.parts();
        let tx = client.transaction().await.map_err(err)?;
        let (out, commit) = {
            #[allow(unused_mut)]
            let mut $x = Exec {
                c: &tx,
                cache: &mut *cache,
            };
            $fut.await?
        };
        if commit {
            tx.commit().await.map_err(err)?;
        } else {
            tx.rollback().await.map_err(err)?;
        }
        out
    }};
}

/// Checks a PostgreSQL URL (or libpq connection string) without connecting, for
/// configuration validation.
pub fn check_url(url: &str) -> Result<(), String> {
    tokio_postgres::Config::from_str(url)
        .map(drop)
        .map_err(|e| format!("invalid PostgreSQL URL: {e}"))
}

fn valid_schema(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && s.len() <= 40
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl PostgresStore {
    /// A store for the database at `url` (`postgres://user@host:port/db`, or any
    /// libpq-style connection string). Nothing is opened yet: the first call connects
    /// and creates the base schema if needed.
    pub fn new(url: &str, opts: PgOptions) -> StoreResult<Self> {
        if !valid_schema(&opts.schema) {
            return Err(StoreError::invalid(format!(
                "invalid PostgreSQL schema name {:?}: lowercase letters, digits and _ only",
                opts.schema
            )));
        }
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::invalid(format!("invalid PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("hearth");
        }
        Ok(Self {
            inner: Arc::new(Inner {
                pool: Arc::new(Pool::new(config, opts.max_connections)),
                base: opts.schema,
                ready: OnceCell::new(),
                tables: Mutex::new(HashMap::new()),
                guard: Mutex::new(None),
            }),
        })
    }

    /// [`PostgresStore::new`], then connects and prepares the schema (so a server
    /// fails at start rather than at its first request).
    pub async fn connect(url: &str, opts: PgOptions) -> StoreResult<Self> {
        let store = Self::new(url, opts)?;
        store.conn().await?;
        Ok(store)
    }

    /// The base schema.
    pub fn schema(&self) -> &str {
        &self.inner.base
    }

    /// Keeps `guard` until the last clone of the store is dropped.
    pub fn attach(&self, guard: impl Any + Send) {
        *self
            .inner
            .guard
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Box::new(guard));
    }

    /// The `EXPLAIN` of the SQL a `find` would run (for tests and debugging).
    pub async fn explain_find(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        q: &FindQuery,
    ) -> StoreResult<String> {
        let mut conn = self.conn().await?;
        query::explain_find(&mut conn, &self.inner.base, inst, dt, q).await
    }

    /// A connection, the base schema created first if this process has not yet.
    async fn conn(&self) -> StoreResult<Pooled> {
        let mut conn = self.inner.pool.get().await?;
        if !self.inner.ready.initialized() {
            let base = &self.inner.base;
            self.inner
                .ready
                .get_or_try_init(|| schema::init(&mut conn, base))
                .await?;
        }
        Ok(conn)
    }

    fn base(&self) -> &str {
        &self.inner.base
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, HashMap<(InstanceId, Doctype), Arc<str>>> {
        // A map insert or removal cannot be left half-done: a poisoned lock is usable.
        self.inner
            .tables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The table of a doctype, from the cache or looked up (and cached).
    async fn table(
        &self,
        conn: &mut Pooled,
        inst: &InstanceId,
        dt: &Doctype,
    ) -> StoreResult<Arc<str>> {
        let key = (inst.clone(), dt.clone());
        if let Some(t) = self.tables().get(&key) {
            return Ok(t.clone());
        }
        let table: Arc<str> = query::table_of(conn, self.base(), inst, dt).await?.into();
        let mut tables = self.tables();
        if tables.len() >= MAX_CACHED_TABLES {
            tables.clear();
        }
        tables.insert(key, table.clone());
        Ok(table)
    }

    fn forget_table(&self, inst: &InstanceId, dt: &Doctype) {
        self.tables().remove(&(inst.clone(), dt.clone()));
    }
}

/// Doctype tables remembered at most (then the cache starts over).
const MAX_CACHED_TABLES: usize = 10_000;

#[async_trait]
impl DocStore for PostgresStore {
    async fn get(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        id: &str,
        opts: GetOptions,
    ) -> StoreResult<JsonMap> {
        let mut conn = self.conn().await?;
        let table = self.table(&mut conn, inst, dt).await?;
        match query::get(&mut conn, &table, id, opts).await {
            // The doctype was dropped since it was cached: look it up again.
            Err(StoreError::NotFound(NotFoundReason::NoDatabase)) => {
                self.forget_table(inst, dt);
                let table = self.table(&mut conn, inst, dt).await?;
                query::get(&mut conn, &table, id, opts).await
            }
            other => other,
        }
    }

    async fn put(&self, inst: &InstanceId, dt: &Doctype, doc: JsonMap) -> StoreResult<Written> {
        let base = self.base();
        Ok(write_tx!(self, x => async {
            write::put(&mut x, base, inst, dt, doc).await.map(|w| (w, true))
        }))
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
        let base = self.base();
        Ok(write_tx!(self, x => write::bulk(&mut x, base, inst, dt, docs, all_or_nothing)))
    }

    async fn bulk_many(
        &self,
        inst: &InstanceId,
        groups: Vec<(Doctype, Vec<JsonMap>)>,
    ) -> StoreResult<Vec<Vec<BulkResult>>> {
        let base = self.base();
        Ok(write_tx!(self, x => write::bulk_many(&mut x, base, inst, groups)))
    }

    async fn restore(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        docs: Vec<JsonMap>,
    ) -> StoreResult<()> {
        let base = self.base();
        write_tx!(self, x => async {
            write::restore(&mut x, base, inst, dt, docs).await.map(|()| ((), true))
        });
        Ok(())
    }

    async fn all_docs(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        q: &AllDocsQuery,
    ) -> StoreResult<AllDocs> {
        let mut conn = self.conn().await?;
        query::all_docs(&mut conn, self.base(), inst, dt, q).await
    }

    async fn changes(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        q: &ChangesQuery,
    ) -> StoreResult<Changes> {
        let mut conn = self.conn().await?;
        query::changes(&mut conn, self.base(), inst, dt, q).await
    }

    async fn find(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        q: &FindQuery,
    ) -> StoreResult<FindResult> {
        let mut conn = self.conn().await?;
        query::find(&mut conn, self.base(), inst, dt, q).await
    }

    async fn create_index(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        def: IndexDef,
    ) -> StoreResult<IndexCreated> {
        let base = self.base();
        Ok(write_tx!(self, x => async {
            write::create_index(&mut x, base, inst, dt, def).await.map(|c| (c, true))
        }))
    }

    async fn create_indexes(
        &self,
        inst: &InstanceId,
        defs: Vec<(Doctype, IndexDef)>,
    ) -> StoreResult<Vec<IndexCreated>> {
        let base = self.base();
        Ok(write_tx!(self, x => async {
            // Lock the doctypes in name order first, as bulk writes do.
            let mut names: Vec<&Doctype> = defs.iter().map(|(dt, _)| dt).collect();
            names.sort_unstable();
            names.dedup();
            for dt in names {
                schema::ensure(&mut x, base, inst, dt).await?;
            }
            let mut out = Vec::with_capacity(defs.len());
            for (dt, def) in defs {
                out.push(write::create_index(&mut x, base, inst, &dt, def).await?);
            }
            Ok::<_, StoreError>((out, true))
        }))
    }

    async fn list_indexes(&self, inst: &InstanceId, dt: &Doctype) -> StoreResult<Vec<IndexDef>> {
        let mut conn = self.conn().await?;
        let found = schema::locate_with_indexes(&mut conn.exec(), self.base(), inst, dt).await?;
        Ok(found
            .map(|(_, indexes)| indexes.into_iter().map(|i| i.def).collect())
            .unwrap_or_default())
    }

    async fn delete_index(&self, inst: &InstanceId, dt: &Doctype, ddoc: &str) -> StoreResult<()> {
        let base = self.base();
        write_tx!(self, x => async {
            write::delete_index(&mut x, base, inst, dt, ddoc).await.map(|()| ((), true))
        });
        Ok(())
    }

    async fn count(&self, inst: &InstanceId, dt: &Doctype) -> StoreResult<u64> {
        let mut conn = self.conn().await?;
        let loc = schema::locate(&mut conn.exec(), self.base(), inst, dt, false).await?;
        Ok(loc.map_or(0, |l| l.live as u64))
    }

    async fn doctypes(&self, inst: &InstanceId) -> StoreResult<Vec<Doctype>> {
        let mut conn = self.conn().await?;
        let base = self.base();
        let sql = format!(
            "SELECT d.name FROM {base}.doctypes d JOIN {base}.instances i ON i.n = d.inst \
             WHERE i.name = $1 ORDER BY d.name"
        );
        let rows = conn.exec().query(&sql, &[&inst.as_str()]).await?;
        rows.iter()
            .map(|r| Doctype::new(r.get::<_, String>(0)).map_err(StoreError::internal))
            .collect()
    }

    async fn delete_doctype(&self, inst: &InstanceId, dt: &Doctype) -> StoreResult<()> {
        let base = self.base();
        write_tx!(self, x => async {
            write::delete_doctype(&mut x, base, inst, dt).await.map(|()| ((), true))
        });
        self.forget_table(inst, dt);
        Ok(())
    }

    async fn destroy_instance(&self, inst: &InstanceId) -> StoreResult<()> {
        let base = self.base();
        write_tx!(self, x => async {
            write::destroy_instance(&mut x, base, inst).await.map(|()| ((), true))
        });
        self.tables().retain(|(i, _), _| i != inst);
        Ok(())
    }

    async fn health(&self) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        conn.exec().one("SELECT 1", &[]).await.map(drop)
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }
}
