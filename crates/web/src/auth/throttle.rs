//! Counting failed logins per instance over a sliding hour, so that too many of them
//! block the instance with `LOGIN_FAILED` (spec instances 3.6, 4.5).
//!
//! By default the count lives in this process's memory: a restart forgets it. Several
//! nodes share one count through a [`FailureCounter`] (Redis, wired by `hearth serve`);
//! while that counter fails, each node counts on its own.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// What [`FailureCounter::hit`] returns.
pub type HitFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, String>> + Send + 'a>>;

/// A count of failed logins shared by several nodes.
pub trait FailureCounter: Send + Sync {
    /// The number of failures within an hour that blocks an instance (0: never).
    fn limit(&self) -> u32;
    /// Records a failure for `domain`; true when it reaches the limit (the count
    /// then starts over).
    fn hit<'a>(&'a self, domain: &'a str) -> HitFuture<'a>;
}

/// The window failures are counted over.
const WINDOW: Duration = Duration::from_secs(3600);
/// Above this many instances tracked, instances with no recent failure are forgotten.
const PRUNE_ABOVE: usize = 1024;

/// Failed logins per instance domain, over the last hour.
pub struct LoginThrottle {
    limit: u32,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
    shared: Option<Arc<dyn FailureCounter>>,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginThrottle")
            .field("limit", &self.limit)
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

impl LoginThrottle {
    /// Blocks at `limit` failures within an hour; 0 never blocks.
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            failures: Mutex::new(HashMap::new()),
            shared: None,
        }
    }

    /// Counts with `counter` (shared by several nodes), at its limit.
    pub fn shared(counter: Arc<dyn FailureCounter>) -> Self {
        Self {
            shared: Some(counter.clone()),
            ..Self::new(counter.limit())
        }
    }

    /// The configured number of failures per hour that blocks an instance.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Records a failed login; true when it reaches the limit (the count then starts
    /// over, for the time the instance stays blocked and after it is unblocked).
    pub async fn failed(&self, domain: &str) -> bool {
        if let Some(counter) = &self.shared {
            match counter.hit(domain).await {
                Ok(tripped) => return tripped,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot count a failed login in the shared counter; counting in memory");
                }
            }
        }
        self.failed_at(domain, Instant::now())
    }

    fn failed_at(&self, domain: &str, now: Instant) -> bool {
        if self.limit == 0 {
            return false;
        }
        let Ok(mut map) = self.failures.lock() else {
            return false;
        };
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        let queue = map.entry(domain.to_owned()).or_default();
        while queue
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            queue.pop_front();
        }
        queue.push_back(now);
        if queue.len() >= self.limit as usize {
            map.remove(domain);
            return true;
        }
        false
    }
}

impl Default for LoginThrottle {
    /// The Cozy stack's limit: 1000 failures per hour.
    fn default() -> Self {
        Self::new(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_hour() {
        let t = LoginThrottle::new(3);
        let start = Instant::now();
        assert!(!t.failed_at("a", start));
        assert!(!t.failed_at("a", start + Duration::from_secs(10)));
        assert!(!t.failed_at("b", start), "counted per instance");
        // The first failure has left the window: still two.
        assert!(!t.failed_at("a", start + WINDOW));
        assert!(t.failed_at("a", start + WINDOW + Duration::from_secs(1)));
        assert!(
            !t.failed_at("a", start + WINDOW + Duration::from_secs(2)),
            "starts over"
        );
        assert!(!LoginThrottle::new(0).failed_at("a", start));
    }
}
