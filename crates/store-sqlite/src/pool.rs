//! The bounded pool of open instance databases, and their connections.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use hearth_core::InstanceId;
use hearth_store::{StoreError, StoreResult};
use rusqlite::Connection;

use crate::{
    SqliteOptions,
    schema::{self, MetaCache},
};

/// At most this many idle reader connections are kept per database.
const MAX_IDLE_READERS: usize = 4;

pub(crate) struct Pool {
    dir: PathBuf,
    opts: SqliteOptions,
    epoch: Instant,
    open: Mutex<HashMap<InstanceId, Arc<InstanceDb>>>,
}

/// One instance's database file: a writer connection and a few readers (WAL mode lets
/// readers run while the writer writes).
pub(crate) struct InstanceDb {
    path: PathBuf,
    synchronous_full: bool,
    writer: Mutex<Option<Connection>>,
    readers: Mutex<Vec<Connection>>,
    last_used: AtomicU64,
    cache: MetaCache,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave the guarded data half-updated
    // (a map insert/remove or a Vec push/pop), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Pool {
    pub(crate) fn new(dir: PathBuf, opts: SqliteOptions) -> Self {
        Self {
            dir,
            opts,
            epoch: Instant::now(),
            open: Mutex::new(HashMap::new()),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(crate) fn path_of(&self, inst: &InstanceId) -> PathBuf {
        self.dir.join(format!("{inst}.sqlite"))
    }

    pub(crate) fn open_count(&self) -> usize {
        lock(&self.open).len()
    }

    /// The handle of an instance's database, registering it (connections open lazily).
    pub(crate) fn get(&self, inst: &InstanceId) -> StoreResult<Arc<InstanceDb>> {
        let now = self.now_ms();
        let mut open = lock(&self.open);
        if let Some(db) = open.get(inst) {
            db.last_used.store(now, Ordering::Relaxed);
            return Ok(db.clone());
        }
        let len = open.len();
        if len >= self.opts.max_open {
            evict_lru(&mut open, len + 1 - self.opts.max_open);
        }
        let db = Arc::new(InstanceDb {
            path: self.path_of(inst),
            synchronous_full: self.opts.synchronous_full,
            writer: Mutex::new(None),
            readers: Mutex::new(Vec::new()),
            last_used: AtomicU64::new(now),
            cache: MetaCache::default(),
        });
        open.insert(inst.clone(), db.clone());
        Ok(db)
    }

    /// Closes the databases unused for longer than the idle timeout.
    pub(crate) fn close_idle(&self) -> usize {
        let limit = self.opts.idle_timeout.as_millis() as u64;
        let now = self.now_ms();
        let mut open = lock(&self.open);
        let before = open.len();
        open.retain(|_, db| {
            Arc::strong_count(db) > 1
                || now.saturating_sub(db.last_used.load(Ordering::Relaxed)) < limit
        });
        before - open.len()
    }

    /// Forgets an instance's handle and removes its files.
    pub(crate) fn destroy(&self, inst: &InstanceId) -> StoreResult<()> {
        drop(lock(&self.open).remove(inst));
        let path = self.path_of(inst);
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::internal(e)),
            }
        }
        Ok(())
    }
}

/// Drops the `n` least recently used handles that nobody is using.
fn evict_lru(open: &mut HashMap<InstanceId, Arc<InstanceDb>>, n: usize) {
    let mut idle: Vec<(u64, InstanceId)> = open
        .iter()
        .filter(|(_, db)| Arc::strong_count(db) == 1)
        .map(|(k, db)| (db.last_used.load(Ordering::Relaxed), k.clone()))
        .collect();
    idle.sort_unstable();
    for (_, k) in idle.into_iter().take(n) {
        open.remove(&k);
    }
}

pub(crate) fn spawn_idle_closer(pool: &Arc<Pool>) {
    let weak: Weak<Pool> = Arc::downgrade(pool);
    let every = (pool.opts.idle_timeout / 2).max(std::time::Duration::from_millis(50));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(pool) = weak.upgrade() else { break };
            // Closing checkpoints the WAL: keep that off the async threads.
            let closed = tokio::task::spawn_blocking(move || pool.close_idle())
                .await
                .unwrap_or(0);
            if closed > 0 {
                tracing::debug!(closed, "closed idle instance databases");
            }
        }
    });
}

impl InstanceDb {
    fn open_connection(&self) -> StoreResult<Connection> {
        schema::open(&self.path, self.synchronous_full)
    }

    /// Runs `f` with the writer connection, opening it (and creating the schema) first.
    pub(crate) fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut Connection, &MetaCache) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut guard = lock(&self.writer);
        if guard.is_none() {
            let conn = self.open_connection()?;
            schema::init(&conn)?;
            *guard = Some(conn);
        }
        match guard.as_mut() {
            Some(conn) => f(conn, &self.cache),
            None => Err(StoreError::invalid("writer connection unavailable")),
        }
    }

    /// Runs `f` with a reader connection from this database's small pool.
    pub(crate) fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection, &MetaCache) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let pooled = lock(&self.readers).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                // The schema is created by the writer; make sure it exists first.
                self.with_writer(|_, _| Ok(()))?;
                self.open_connection()?
            }
        };
        let out = f(&conn, &self.cache);
        let mut readers = lock(&self.readers);
        if readers.len() < MAX_IDLE_READERS {
            readers.push(conn);
        }
        out
    }
}
