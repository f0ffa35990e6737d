//! [`LeaderLease`]: one node at a time does the work of a role (the scheduler's
//! timed triggers), and another takes over when it stops.
//!
//! The key `<prefix>leader:<role>` holds the leader's random token and expires
//! after the lease. Every contender tries `SET NX` every third of the lease; the
//! leader instead extends it, if it still holds it (a script compares the token):
//! the lease is taken, extended and given back as a [`Locks`](crate::Locks) lock is.
//! A node counts itself leader until its last successful renewal's start plus the
//! lease, less a tenth for clock drift: it stops believing before the key can
//! expire, so two nodes never both believe they lead.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::lock::{extend, release, set_nx};
use crate::{Redis, RedisResult, token};

/// A contender for a role; renews in the background while it lives.
pub struct LeaderLease {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for LeaderLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderLease")
            .field("key", &self.shared.key)
            .field("leader", &self.is_leader())
            .finish_non_exhaustive()
    }
}

struct Shared {
    conn: ConnectionManager,
    key: String,
    token: String,
    ttl: Duration,
    /// Until when this contender may act as the leader.
    until: Mutex<Option<Instant>>,
}

impl LeaderLease {
    /// Contends for `role` with a lease of `ttl` (at least 30 ms); the first attempt is
    /// made before this returns. Needs a Tokio runtime.
    pub async fn start(redis: &Redis, role: &str, ttl: Duration) -> RedisResult<Self> {
        let shared = Arc::new(Shared {
            conn: redis.conn(),
            key: redis.key(&format!("leader:{role}")),
            token: token(),
            ttl: ttl.max(Duration::from_millis(30)),
            until: Mutex::new(None),
        });
        shared.attempt().await?;
        let task = {
            let shared = shared.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(shared.ttl / 3).await;
                    if let Err(e) = shared.attempt().await {
                        tracing::warn!(error = %e, key = %shared.key, "cannot renew a leader lease");
                    }
                }
            })
        };
        Ok(Self { shared, task })
    }

    /// Whether this node leads now.
    pub fn is_leader(&self) -> bool {
        self.shared
            .until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|until| Instant::now() < until)
    }

    /// Stops contending without giving the lease back, as a crash would: another
    /// node leads once it expires.
    pub fn stop(&self) {
        self.task.abort();
        *self
            .shared
            .until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Stops contending and gives the lease back, so another node leads at its next
    /// attempt.
    pub async fn resign(self) -> RedisResult<()> {
        self.stop();
        let shared = &self.shared;
        release(shared.conn.clone(), &shared.key, &shared.token).await?;
        Ok(())
    }
}

impl Drop for LeaderLease {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shared {
    /// Renews the lease or tries to take it; records until when it is ours.
    async fn attempt(&self) -> RedisResult<()> {
        let began = Instant::now();
        let leading = self
            .until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        let mut ours = false;
        if leading {
            ours = extend(self.conn.clone(), &self.key, &self.token, self.ttl).await?;
        }
        if !ours {
            ours = set_nx(self.conn.clone(), &self.key, &self.token, self.ttl).await?;
        }
        let mut until = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        if ours {
            if until.is_none() {
                tracing::info!(key = %self.key, "this node leads");
            }
            *until = Some(began + self.ttl - self.ttl / 10);
        } else {
            if until.is_some() {
                tracing::warn!(key = %self.key, "this node no longer leads");
            }
            *until = None;
        }
        Ok(())
    }
}
