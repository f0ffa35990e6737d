//! Distributed locks: one holder, expiry, owner-only release.

use std::time::Duration;

use hearth_redis::Locks;

use crate::support::{Cleanup, connect, prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_at_a_time() {
    let prefix = prefix();
    let _cleanup = Cleanup(prefix.clone());
    let node1 = Locks::new(&connect(&prefix).await);
    let node2 = Locks::new(&connect(&prefix).await);
    let ttl = Duration::from_secs(10);

    let guard = node1.try_lock("destroy:alice", ttl).await.unwrap().unwrap();
    assert!(guard.held().await.unwrap());
    assert!(
        node2
            .try_lock("destroy:alice", ttl)
            .await
            .unwrap()
            .is_none()
    );
    // Another key is another lock.
    let other = node2.try_lock("destroy:bob", ttl).await.unwrap().unwrap();
    assert!(
        node2
            .lock("destroy:alice", ttl, Duration::from_millis(200))
            .await
            .unwrap()
            .is_none(),
        "waited past the holder"
    );

    // A waiter gets it as soon as the holder releases.
    let waiter = {
        let node2 = node2.clone();
        tokio::spawn(async move {
            node2
                .lock("destroy:alice", ttl, Duration::from_secs(5))
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(guard.release().await.unwrap());
    let guard2 = waiter.await.unwrap().expect("taken after the release");
    assert!(guard2.release().await.unwrap());
    assert!(other.release().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_holder_cannot_free_the_next_ones_lock() {
    let prefix = prefix();
    let _cleanup = Cleanup(prefix.clone());
    let locks = Locks::new(&connect(&prefix).await);
    let old = locks
        .try_lock("import:alice", Duration::from_millis(150))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!old.held().await.unwrap(), "expired");
    let new = locks
        .try_lock("import:alice", Duration::from_secs(10))
        .await
        .unwrap()
        .expect("free after the time to live");
    assert!(!old.extend(Duration::from_secs(10)).await.unwrap());
    assert!(!old.release().await.unwrap());
    assert!(new.held().await.unwrap(), "the new holder keeps it");
    assert!(new.extend(Duration::from_secs(20)).await.unwrap());
    drop(new);
    // Dropping a guard frees the lock in the background.
    let again = locks
        .lock(
            "import:alice",
            Duration::from_secs(10),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    assert!(again.is_some(), "a dropped guard released its lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_outlives_its_time_to_live_until_dropped() {
    let prefix = prefix();
    let _cleanup = Cleanup(prefix.clone());
    let node1 = Locks::new(&connect(&prefix).await);
    let node2 = Locks::new(&connect(&prefix).await);
    let ttl = Duration::from_millis(300);
    let held = node1
        .hold("vfs:alice", ttl, Duration::from_secs(1))
        .await
        .unwrap()
        .expect("free");
    // Three times its time to live later, the renewal still keeps it.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(held.held().await.unwrap(), "renewed");
    assert!(node2.try_lock("vfs:alice", ttl).await.unwrap().is_none());
    // A waiter gets it soon after the holder drops it.
    let waiter = {
        let node2 = node2.clone();
        tokio::spawn(async move {
            node2
                .hold("vfs:alice", ttl, Duration::from_secs(5))
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(held);
    let next = waiter.await.unwrap().expect("taken after the drop");
    assert!(next.release().await.unwrap());
}
