//! A small pool of PostgreSQL connections, each with its cache of prepared statements,
//! and the mapping of PostgreSQL errors to [`StoreError`].

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use hearth_store::{NotFoundReason, StoreError, StoreResult};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{
    Client, Config, GenericClient, NoTls, Row, Statement, error::SqlState, types::ToSql,
};

/// Prepared statements kept per connection before the cache is emptied (SQL text
/// names doctype tables, so it grows with the doctypes a connection has seen).
const MAX_CACHED_STATEMENTS: usize = 512;

/// How long a caller waits for a free connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Maps a PostgreSQL error: a table or schema that vanished under a read is a doctype
/// that does not exist (any more); data the server refuses (a NUL character, a value
/// too large for an index) is the caller's input; the rest is internal.
pub(crate) fn err(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(c) if *c == SqlState::UNDEFINED_TABLE || *c == SqlState::INVALID_SCHEMA_NAME => {
            StoreError::NotFound(NotFoundReason::NoDatabase)
        }
        Some(c) if c.code().starts_with("22") || *c == SqlState::PROGRAM_LIMIT_EXCEEDED => {
            let msg = e
                .as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned());
            StoreError::InvalidInput(msg)
        }
        _ => StoreError::internal(e),
    }
}

pub(crate) type Params<'a> = [&'a (dyn ToSql + Sync)];

/// One connection and its prepared statements.
pub(crate) struct Conn {
    pub client: Client,
    pub cache: HashMap<String, Statement>,
}

impl Conn {
    /// Splits the connection so a transaction can borrow the client while statements
    /// are cached.
    pub fn parts(&mut self) -> (&mut Client, &mut HashMap<String, Statement>) {
        (&mut self.client, &mut self.cache)
    }

    pub fn exec(&mut self) -> Exec<'_, Client> {
        Exec {
            c: &self.client,
            cache: &mut self.cache,
        }
    }
}

/// Runs statements on a client or a transaction, preparing each SQL text once per
/// connection.
pub(crate) struct Exec<'a, C> {
    pub c: &'a C,
    pub cache: &'a mut HashMap<String, Statement>,
}

impl<C: GenericClient + Sync> Exec<'_, C> {
    pub async fn prepared(&mut self, sql: &str) -> StoreResult<Statement> {
        if let Some(s) = self.cache.get(sql) {
            return Ok(s.clone());
        }
        let stmt = self.c.prepare(sql).await.map_err(err)?;
        if self.cache.len() >= MAX_CACHED_STATEMENTS {
            self.cache.clear();
        }
        self.cache.insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }

    pub async fn query(&mut self, sql: &str, params: &Params<'_>) -> StoreResult<Vec<Row>> {
        let stmt = self.prepared(sql).await?;
        self.c.query(&stmt, params).await.map_err(err)
    }

    pub async fn opt(&mut self, sql: &str, params: &Params<'_>) -> StoreResult<Option<Row>> {
        let stmt = self.prepared(sql).await?;
        self.c.query_opt(&stmt, params).await.map_err(err)
    }

    pub async fn one(&mut self, sql: &str, params: &Params<'_>) -> StoreResult<Row> {
        let stmt = self.prepared(sql).await?;
        self.c.query_one(&stmt, params).await.map_err(err)
    }

    pub async fn execute(&mut self, sql: &str, params: &Params<'_>) -> StoreResult<u64> {
        let stmt = self.prepared(sql).await?;
        self.c.execute(&stmt, params).await.map_err(err)
    }

    /// Runs statements without parameters or caching (DDL).
    pub async fn batch(&self, sql: &str) -> StoreResult<()> {
        self.c.batch_execute(sql).await.map_err(err)
    }
}

/// At most `max` connections; idle ones are kept for the next caller. Connections are
/// opened on demand, on the runtime of the caller that needed them, and a closed one
/// (server restart, runtime gone) is dropped rather than handed out.
pub(crate) struct Pool {
    config: Config,
    idle: Mutex<Vec<Conn>>,
    permits: Arc<Semaphore>,
}

/// A connection borrowed from the pool; returned to it on drop.
pub(crate) struct Pooled {
    conn: Option<Conn>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    pub fn new(config: Config, max: usize) -> Self {
        Self {
            config,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max.max(1))),
        }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Conn>> {
        // A push or a pop cannot leave the Vec half-updated: a poisoned lock is usable.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub async fn get(self: &Arc<Self>) -> StoreResult<Pooled> {
        let permit = tokio::time::timeout(ACQUIRE_TIMEOUT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| StoreError::internal(PoolError("no PostgreSQL connection available")))?
            .map_err(StoreError::internal)?;
        let reused = {
            let mut idle = self.idle();
            let mut found = None;
            while let Some(c) = idle.pop() {
                if !c.client.is_closed() {
                    found = Some(c);
                    break;
                }
            }
            found
        };
        let conn = match reused {
            Some(c) => c,
            None => self.connect().await?,
        };
        Ok(Pooled {
            conn: Some(conn),
            pool: self.clone(),
            _permit: permit,
        })
    }

    async fn connect(&self) -> StoreResult<Conn> {
        let (client, connection) = self.config.connect(NoTls).await.map_err(err)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection closed");
            }
        });
        Ok(Conn {
            client,
            cache: HashMap::new(),
        })
    }
}

impl std::ops::Deref for Pooled {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        // Only `Drop` takes the connection out.
        self.conn.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && !conn.client.is_closed()
        {
            self.pool.idle().push(conn);
        }
    }
}

#[derive(Debug)]
struct PoolError(&'static str);

impl std::fmt::Display for PoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for PoolError {}
