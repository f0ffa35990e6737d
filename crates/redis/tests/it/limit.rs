//! The shared rate limiter, with the in-process login throttle's behaviour.

use std::time::Duration;

use hearth_redis::RateLimiter;

use crate::support::{Cleanup, connect, prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trips_at_the_limit_within_the_window_then_starts_over() {
    let prefix = prefix();
    let _cleanup = Cleanup(prefix.clone());
    let window = Duration::from_millis(800);
    // Two nodes count together.
    let node1 = RateLimiter::new(&connect(&prefix).await, "login", 3, window);
    let node2 = RateLimiter::new(&connect(&prefix).await, "login", 3, window);

    assert!(!node1.hit("alice.test").await.unwrap());
    assert!(!node2.hit("alice.test").await.unwrap());
    assert!(!node1.hit("bob.test").await.unwrap(), "counted per key");
    assert_eq!(node2.count("alice.test").await.unwrap(), 2);
    assert!(
        node2.hit("alice.test").await.unwrap(),
        "the third hit trips"
    );
    assert_eq!(node1.count("alice.test").await.unwrap(), 0, "starts over");
    assert!(!node1.hit("alice.test").await.unwrap());

    // Hits older than the window no longer count.
    tokio::time::sleep(window + Duration::from_millis(100)).await;
    assert_eq!(node1.count("alice.test").await.unwrap(), 0);
    assert!(!node1.hit("alice.test").await.unwrap());
    assert!(!node1.hit("alice.test").await.unwrap());
    assert!(node1.hit("alice.test").await.unwrap());

    let never = RateLimiter::login_failures(&connect(&prefix).await, 0);
    assert!(!never.hit("alice.test").await.unwrap());
    assert_eq!(never.limit(), 0);
}
