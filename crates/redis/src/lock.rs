//! [`Locks`]: one holder per key across nodes, for operations that must not run
//! twice at once on an instance (destroy, import).
//!
//! A lock is the key `<prefix>lock:<name>` set with `NX` and a time to live, its
//! value a random owner token. Only the owner releases or extends it (a script
//! compares the token first), so a holder whose lock expired cannot remove the
//! next holder's. The time to live is the bound on how long a crashed holder
//! blocks the others: choose it longer than the operation, or [`LockGuard::extend`]
//! while it runs.

use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;

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
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(set.map(|_| LockGuard {
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
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(10);
        loop {
            if let Some(guard) = self.try_lock(name, ttl).await? {
                return Ok(Some(guard));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
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
        let n: i64 = Script::new(EXTEND)
            .key(&self.key)
            .arg(&self.token)
            .arg(millis(ttl))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(n == 1)
    }

    /// Frees the lock; false if it had already expired (and someone else may hold
    /// it now, untouched).
    pub async fn release(mut self) -> RedisResult<bool> {
        self.released = true;
        release(self.conn.clone(), &self.key, &self.token).await
    }
}

async fn release(mut conn: ConnectionManager, key: &str, token: &str) -> RedisResult<bool> {
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
