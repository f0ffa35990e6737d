//! Scale-out over Redis: what several `hearth serve` nodes must share besides their
//! documents and files.
//!
//! - [`RedisBroker`]: the jobs [`Broker`](hearth_jobs::Broker), shared by every node,
//!   with a lease per node so a dead node's running jobs are run again and a live
//!   node's never are.
//! - [`Locks`]: a lock per key with a time to live and an owner token (destroying
//!   an instance, changing its files tree, on one node at a time), kept alive while
//!   held with [`Locks::hold`].
//! - [`RateLimiter`]: a sliding-window counter per key, the shared form of the web
//!   crate's in-process login throttle.
//! - [`LeaderLease`]: one node fires the timed triggers; a lease renewed while it
//!   lives, taken over by another node when it stops.
//! - [`EventBridge`]: document events of one node's [`EventHub`](hearth_store::events::EventHub)
//!   reach the realtime subscribers of every other node.
//!
//! Every key starts with the prefix given to [`Redis::connect`] (for example
//! `hearth:`), so that several deployments, or tests, share one Redis. The keys
//! are listed in each module. A single Redis server (or a primary with replicas)
//! is expected, not a Redis Cluster: the Lua scripts touch keys they compute.
//!
//! # Wiring into `hearth serve`
//!
//! With `redis.url` (or `jobs.url`) configured, `serve` would:
//!
//! ```text
//! let redis = Redis::connect(&url, "hearth:").await?;          // fails fast, naming the URL
//! let broker = RedisBroker::start(&redis, BrokerOptions::default()).await?;
//! let jobs = Jobs::with_broker(store, instances, config, Arc::new(broker));
//! let _bridge = EventBridge::start(&redis, hub).await?;         // keep it alive
//! let leader = LeaderLease::start(&redis, "scheduler", Duration::from_secs(15)).await?;
//! // the scheduler fires timed triggers only while leader.is_leader();
//! let locks = Locks::new(&redis);          // per instance: files tree (hold), destroy
//! let logins = RateLimiter::login_failures(&redis, limit);      // LOGIN_FAILED
//! ```
//!
//! `BrokerOptions::node_id` may be set to a name stable across restarts of one
//! node (its host name): its own unfinished jobs are then recovered as soon as it
//! starts again, instead of when its previous lease expires.

mod broker;
mod events;
mod leader;
mod limit;
mod lock;

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};

pub use broker::{BrokerOptions, RedisBroker};
pub use events::EventBridge;
pub use leader::LeaderLease;
pub use limit::RateLimiter;
pub use lock::{HeldLock, LockGuard, Locks};

/// What went wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The URL is not a Redis URL, or nothing answered there.
    #[error("cannot use Redis at {url}: {source}")]
    Connect {
        /// The URL without its password.
        url: String,
        #[source]
        source: redis::RedisError,
    },
    /// A command failed (connection lost, server error).
    #[error("Redis: {0}")]
    Command(#[from] redis::RedisError),
    /// Redis answered something this crate did not write.
    #[error("unexpected data in Redis: {0}")]
    Protocol(String),
}

pub type RedisResult<T> = Result<T, RedisError>;

/// A connection to one Redis and the key prefix of this deployment. Cheap to clone;
/// the connection reconnects by itself after a failure.
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// How long one command may take before it fails (none of ours blocks).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Redis {
    /// Connects to `url` (`redis://[:password@]host:port/db`) and checks that the
    /// server answers. Every key this crate writes starts with `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> RedisResult<Self> {
        let failed = |source| RedisError::Connect {
            url: redact(url),
            source,
        };
        let client = redis::Client::open(url).map_err(failed)?;
        // Reconnection attempts are retried twice, at most half a second apart, so
        // that a missing server is reported at once (the defaults wait a minute).
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_max_delay(500)
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT);
        let mut conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(failed)?;
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(failed)?;
        Ok(Self {
            client,
            conn,
            prefix: prefix.to_owned(),
        })
    }

    /// The prefix of every key.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub(crate) fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// A connection of its own for `SUBSCRIBE`.
    pub(crate) async fn pubsub(&self) -> RedisResult<PubSub> {
        Ok(self.client.get_async_pubsub().await?)
    }
}

/// `url` without the password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// A random token: node ids, lock owners.
pub(crate) fn token() -> String {
    hearth_core::random_hex(16)
}

/// Unix milliseconds, as the jobs crate counts `not_before`.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Hands every message of a subscription (`first`, subscribed to `channel`) to
/// `on_message`; after a loss, subscribes again every second until it works, then
/// calls `resubscribed` (messages sent meanwhile were missed). `what` names the
/// messages in logs. Runs until its task is aborted.
pub(crate) async fn listen(
    redis: Redis,
    channel: String,
    first: PubSub,
    (lost, what): (&str, &str),
    mut on_message: impl FnMut(redis::Msg),
    mut resubscribed: impl FnMut(),
) {
    let mut pubsub = Some(first);
    loop {
        if let Some(sub) = pubsub.take() {
            let mut stream = sub.into_on_message();
            while let Some(msg) = stream.next().await {
                on_message(msg);
            }
            tracing::warn!("{lost}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        match redis.pubsub().await {
            Ok(mut sub) => match sub.subscribe(&channel).await {
                Ok(()) => {
                    pubsub = Some(sub);
                    resubscribed();
                }
                Err(e) => tracing::debug!(error = %e, "cannot resubscribe to {what}"),
            },
            Err(e) => tracing::debug!(error = %e, "cannot reconnect for {what}"),
        }
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("redis://:s3cret@cache:6379/0"),
            "redis://***@cache:6379/0"
        );
        assert_eq!(redact("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
    }
}
