//! The leader lease: exactly one leader, and a take-over when it stops.

use std::time::Duration;

use hearth_redis::LeaderLease;
use tokio::time::Instant;

use crate::support::{Cleanup, connect, prefix};

const TTL: Duration = Duration::from_millis(900);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_and_a_take_over_when_it_stops() {
    let prefix = prefix();
    let _cleanup = Cleanup(prefix.clone());
    let a = LeaderLease::start(&connect(&prefix).await, "scheduler", TTL)
        .await
        .unwrap();
    let b = LeaderLease::start(&connect(&prefix).await, "scheduler", TTL)
        .await
        .unwrap();
    assert!(a.is_leader(), "the first contender leads");
    assert!(!b.is_leader());
    // Renewals keep it so, well past a lease.
    let until = Instant::now() + TTL * 3;
    while Instant::now() < until {
        assert!(a.is_leader() != b.is_leader(), "exactly one leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(a.is_leader());

    // Another role has its own leader.
    let c = LeaderLease::start(&connect(&prefix).await, "other", TTL)
        .await
        .unwrap();
    assert!(c.is_leader());

    // The leader stops renewing (a crash): the other takes over after the lease.
    let stopped = Instant::now();
    a.stop();
    assert!(!a.is_leader());
    while !b.is_leader() {
        assert!(stopped.elapsed() < TTL * 3, "no take-over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        stopped.elapsed() >= TTL / 2,
        "taken over before the lease expired"
    );

    // Resigning hands over at the next attempt.
    let d = LeaderLease::start(&connect(&prefix).await, "scheduler", TTL)
        .await
        .unwrap();
    assert!(!d.is_leader());
    b.resign().await.unwrap();
    let resigned = Instant::now();
    while !d.is_leader() {
        assert!(resigned.elapsed() < TTL, "no hand-over after resigning");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
