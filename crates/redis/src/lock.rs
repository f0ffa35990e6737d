//! [`Locks`]: one holder per key across nodes, for operations that must not run
//! twice at once on an instance (destroy, import).
//!
//! A lock is the key `<prefix>lock:<name>` set with `NX` and a time to live, its
//! value a random owner token. Only the owner releases or extends it (a script
//! compares the token first), so a holder whose lock expired cannot remove the
//! next holder's. The time to live is the bound on how long a crashed holder
//! blocks the others: choose it longer than the operation, or [`LockGuard::extend`]
//! while it runs — which [`Locks::hold`] does in the background.

use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;
use tokio::task::JoinHandle;

use crate::{Redis, RedisResult, millis, token};

/// Deletes the key if it still holds the token.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Sets a new time to live if the key still holds the token.
const EXTEND: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Takes locks by name.
#[derive(Clone)]
pub struct Locks {
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for Locks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locks")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Locks {
    pub fn new(redis: &Redis) -> Self {
        Self {
            conn: redis.conn(),
            prefix: redis.key("lock:"),
        }
    }

    /// Takes the lock `name` for `ttl` if nobody holds it.
    pub async fn try_lock(&self, name: &str, ttl: Duration) -> RedisResult<Option<LockGuard>> {
        let key = format!("{}{name}", self.prefix);
        let token = token();
        let taken = set_nx(self.conn.clone(), &key, &token, ttl).await?;
        Ok(taken.then(|| LockGuard {
            conn: self.conn.clone(),
            key,
            token,
            released: false,
        }))
    }

    /// Takes the lock `name` for `ttl`, waiting up to `wait` for its holder to
    /// release it; `None` if it is still held then.
    pub async fn lock(
        &self,
        name: &str,
        ttl: Duration,
        wait: Duration,
    ) -> RedisResult<Option<LockGuard>> {
        self.acquire(
            name,
            ttl,
            wait,
            (Duration::from_millis(10), Duration::from_millis(250)),
        )
        .await
    }

    /// Takes the lock `name` like [`Locks::lock`], and keeps it until the returned
    /// [`HeldLock`] is dropped: its time to live is extended every third of `ttl`.
    /// A crashed holder blocks the others for `ttl` at most, however long a live
    /// one works. Meant for short, frequent holds (a files tree change): a waiter
    /// polls every few milliseconds at first, 50 ms at most.
    pub async fn hold(
        &self,
        name: &str,
        ttl: Duration,
        wait: Duration,
    ) -> RedisResult<Option<HeldLock>> {
        let pauses = (Duration::from_millis(2), Duration::from_millis(50));
        let Some(guard) = self.acquire(name, ttl, wait, pauses).await? else {
            return Ok(None);
        };
        let renewal = tokio::spawn(renew(
            guard.conn.clone(),
            guard.key.clone(),
            guard.token.clone(),
            ttl,
        ));
        Ok(Some(HeldLock {
            guard: Some(guard),
            renewal,
        }))
    }

    /// Tries until `wait` has passed, pausing from `pauses.0` doubling up to
    /// `pauses.1` between attempts.
    async fn acquire(
        &self,
        name: &str,
        ttl: Duration,
        wait: Duration,
        pauses: (Duration, Duration),
    ) -> RedisResult<Option<LockGuard>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = pauses.0;
        loop {
            if let Some(guard) = self.try_lock(name, ttl).await? {
                return Ok(Some(guard));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(pauses.1);
        }
    }
}

/// Extends a held lock every third of its time to live, until it is lost or the
/// task is aborted.
async fn renew(conn: ConnectionManager, key: String, token: String, ttl: Duration) {
    let every = (ttl / 3).max(Duration::from_millis(1));
    loop {
        tokio::time::sleep(every).await;
        match extend(conn.clone(), &key, &token, ttl).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(key, "a held lock expired before it was renewed");
                return;
            }
            // Retried at the next turn; the lock lasts until then.
            Err(e) => tracing::warn!(error = %e, key, "cannot renew a held lock"),
        }
    }
}

/// A lock kept alive while it is held (see [`Locks::hold`]). Dropping it stops the
/// renewal and frees the lock in the background.
pub struct HeldLock {
    guard: Option<LockGuard>,
    renewal: JoinHandle<()>,
}

impl std::fmt::Debug for HeldLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldLock")
            .field("key", &self.guard.as_ref().map(LockGuard::key))
            .finish_non_exhaustive()
    }
}

impl HeldLock {
    /// Whether this holder still has the lock.
    pub async fn held(&self) -> RedisResult<bool> {
        match &self.guard {
            Some(g) => g.held().await,
            None => Ok(false),
        }
    }

    /// Stops the renewal and frees the lock now; false if it had been lost.
    pub async fn release(mut self) -> RedisResult<bool> {
        self.renewal.abort();
        match self.guard.take() {
            Some(g) => g.release().await,
            None => Ok(false),
        }
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        self.renewal.abort();
        // The guard, dropped next, frees the lock.
    }
}

/// A held lock. [`LockGuard::release`] frees it at once; dropping the guard frees
/// it in the background (it expires anyway after its time to live).
pub struct LockGuard {
    conn: ConnectionManager,
    key: String,
    token: String,
    released: bool,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl LockGuard {
    /// The Redis key of the lock.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether this guard still holds the lock (it may have expired).
    pub async fn held(&self) -> RedisResult<bool> {
        let value: Option<String> = redis::cmd("GET")
            .arg(&self.key)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(value.as_deref() == Some(self.token.as_str()))
    }

    /// Gives the lock `ttl` more from now; false if it was lost (expired, maybe
    /// taken by another holder).
    pub async fn extend(&self, ttl: Duration) -> RedisResult<bool> {
        extend(self.conn.clone(), &self.key, &self.token, ttl).await
    }

    /// Frees the lock; false if it had already expired (and someone else may hold
    /// it now, untouched).
    pub async fn release(mut self) -> RedisResult<bool> {
        self.released = true;
        release(self.conn.clone(), &self.key, &self.token).await
    }
}

/// Sets the key to the token for `ttl` if it is free; false if it is not.
pub(crate) async fn set_nx(
    mut conn: ConnectionManager,
    key: &str,
    token: &str,
    ttl: Duration,
) -> RedisResult<bool> {
    let set: Option<String> = redis::cmd("SET")
        .arg(key)
        .arg(token)
        .arg("NX")
        .arg("PX")
        .arg(millis(ttl))
        .query_async(&mut conn)
        .await?;
    Ok(set.is_some())
}

/// Gives the key `ttl` more if it still holds the token; false if it does not.
pub(crate) async fn extend(
    mut conn: ConnectionManager,
    key: &str,
    token: &str,
    ttl: Duration,
) -> RedisResult<bool> {
    let n: i64 = Script::new(EXTEND)
        .key(key)
        .arg(token)
        .arg(millis(ttl))
        .invoke_async(&mut conn)
        .await?;
    Ok(n == 1)
}

/// Deletes the key if it still holds the token; false if it does not.
pub(crate) async fn release(
    mut conn: ConnectionManager,
    key: &str,
    token: &str,
) -> RedisResult<bool> {
    let n: i64 = Script::new(RELEASE)
        .key(key)
        .arg(token)
        .invoke_async(&mut conn)
        .await?;
    Ok(n == 1)
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let conn = self.conn.clone();
            let key = std::mem::take(&mut self.key);
            let token = std::mem::take(&mut self.token);
            rt.spawn(async move {
                if let Err(e) = release(conn, &key, &token).await {
                    tracing::warn!(error = %e, key, "cannot release a lock; it will expire");
                }
            });
        }
    }
}
