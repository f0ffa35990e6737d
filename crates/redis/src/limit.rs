//! [`RateLimiter`]: events per key over a sliding window, counted in Redis so
//! that every node sees the same count (failed logins per instance).
//!
//! It behaves like the web crate's in-process `LoginThrottle`: each hit is
//! recorded with the time Redis gives; hits older than the window no longer count;
//! the hit that reaches the limit answers true and the count starts over. The key
//! `<prefix>limit:<name>:<key>` is a sorted set of hits scored by their time, and
//! expires one window after its last hit.

use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;

use crate::{Redis, RedisResult, millis, token};

/// `KEYS[1]` the counter; `ARGV`: window (ms), limit, a unique member. Uses the
/// server's clock so that every node counts the same window.
const HIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[3])
if redis.call('ZCARD', KEYS[1]) >= limit then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('PEXPIRE', KEYS[1], window)
return 0
";

/// `KEYS[1]` the counter; `ARGV[1]` the window (ms).
const COUNT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. (now - tonumber(ARGV[1])), '+inf')
";

/// Counts hits per key over a sliding window.
#[derive(Clone)]
pub struct RateLimiter {
    conn: ConnectionManager,
    prefix: String,
    limit: u32,
    window: Duration,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("prefix", &self.prefix)
            .field("limit", &self.limit)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// `limit` hits within `window` trip the limiter named `name`; 0 never trips.
    pub fn new(redis: &Redis, name: &str, limit: u32, window: Duration) -> Self {
        Self {
            conn: redis.conn(),
            prefix: redis.key(&format!("limit:{name}:")),
            limit,
            window,
        }
    }

    /// Failed logins per instance domain over an hour, as `LOGIN_FAILED` counts them.
    pub fn login_failures(redis: &Redis, limit: u32) -> Self {
        Self::new(redis, "login", limit, Duration::from_secs(3600))
    }

    /// The number of hits that trips the limiter.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Records a hit for `key`; true when it reaches the limit (the count then
    /// starts over).
    pub async fn hit(&self, key: &str) -> RedisResult<bool> {
        if self.limit == 0 {
            return Ok(false);
        }
        let tripped: i64 = Script::new(HIT)
            .key(format!("{}{key}", self.prefix))
            .arg(millis(self.window))
            .arg(self.limit)
            .arg(token())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(tripped == 1)
    }

    /// Hits of `key` within the window.
    pub async fn count(&self, key: &str) -> RedisResult<u32> {
        let n: u32 = Script::new(COUNT)
            .key(format!("{}{key}", self.prefix))
            .arg(millis(self.window))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(n)
    }
}
