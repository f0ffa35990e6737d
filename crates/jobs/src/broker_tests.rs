//! The behaviour every [`Broker`] must have, as scenarios each backend's tests run
//! (feature `testkit`; [`broker_conformance_tests!`](crate::broker_conformance_tests)
//! makes one test per scenario). The in-process [`LocalBroker`](crate::LocalBroker)
//! runs them below; the Redis broker runs them in `crates/redis`.
//!
//! A "restart" is a second broker opened on the same storage after the first one was
//! crashed. What a restart must hand back, a backend may return from
//! [`Broker::recover`] (the runner then calls [`Broker::retry`] on each ticket, as
//! here) or deliver again through [`Broker::next`]: the scenarios accept both, and
//! only ask that every unfinished ticket comes back exactly once, with its
//! `attempts`.

#![allow(clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::{Broker, Ticket, now_ms};

/// Opens brokers over one storage (a temporary store, a Redis key prefix).
#[async_trait]
pub trait BrokerFactory: Send + Sync {
    /// A broker as a freshly started process gets it.
    async fn open(&self) -> Arc<dyn Broker>;
    /// Stops a broker as a crash would; dropping it is enough for most backends.
    async fn crash(&self, broker: Arc<dyn Broker>) {
        drop(broker);
    }
    /// How long a restarted broker may take to deliver what a crashed one held
    /// (a lease to expire, for a shared backend).
    fn recovery_time(&self) -> Duration {
        Duration::from_secs(2)
    }
}

/// One `#[tokio::test]` per scenario, each on a factory made by `$make`.
#[macro_export]
macro_rules! broker_conformance_tests {
    ($make:expr) => {
        $crate::broker_conformance_tests!(@cases $make;
            fifo_per_worker, not_before_delays, retry_keeps_attempts_and_delays,
            finish_forgets, restart_finds_every_unfinished_ticket, forget_instance_drops_its_tickets,
            pending_counts_waiting_and_running
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let factory = $make;
                $crate::broker_tests::$case(&factory).await;
            }
        )*
    };
}

/// A ticket of `worker` for job `job_id` of `domain`, due now.
pub fn ticket(domain: &str, job_id: &str, worker: &str) -> Ticket {
    Ticket {
        domain: domain.to_owned(),
        job_id: job_id.to_owned(),
        worker: worker.to_owned(),
        attempts: 0,
        not_before: 0,
        rev: None,
    }
}

/// The next ticket of `worker`, or `None` after `wait`.
pub async fn next_within(broker: &dyn Broker, worker: &str, wait: Duration) -> Option<Ticket> {
    tokio::time::timeout(wait, broker.next(worker)).await.ok()
}

async fn must_next(broker: &dyn Broker, worker: &str) -> Ticket {
    next_within(broker, worker, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("no ticket of {worker} within 5s"))
}

/// Nothing of `worker` within a short wait.
async fn assert_empty(broker: &dyn Broker, worker: &str) {
    if let Some(t) = next_within(broker, worker, Duration::from_millis(300)).await {
        panic!("unexpected ticket {t:?}");
    }
}

/// Recovers as the runner does at start: `retry` on every ticket returned.
async fn restart(factory: &dyn BrokerFactory, old: Arc<dyn Broker>) -> Arc<dyn Broker> {
    factory.crash(old).await;
    let broker = factory.open().await;
    let tickets = broker.recover().await.expect("recover");
    for t in tickets {
        broker.retry(t).await.expect("retry a recovered ticket");
    }
    broker
}

/// Collects `n` tickets of `worker`, waiting at most the factory's recovery time
/// plus a margin; then checks that nothing more comes.
async fn collect(
    factory: &dyn BrokerFactory,
    broker: &dyn Broker,
    worker: &str,
    n: usize,
) -> Vec<Ticket> {
    let deadline = factory.recovery_time() + Duration::from_secs(5);
    let mut got = Vec::new();
    while got.len() < n {
        match next_within(broker, worker, deadline).await {
            Some(t) => got.push(t),
            None => panic!(
                "only {} of {n} tickets of {worker} came back: {got:?}",
                got.len()
            ),
        }
    }
    assert_empty(broker, worker).await;
    got.sort_by(|a, b| a.job_id.cmp(&b.job_id));
    got
}

fn count_of(broker: &dyn Broker, worker: &str) -> usize {
    broker
        .pending()
        .into_iter()
        .find(|(w, _)| w == worker)
        .map_or(0, |(_, n)| n)
}

/// Tickets come out in the order they went in, and only to their worker type.
pub async fn fifo_per_worker(factory: &dyn BrokerFactory) {
    let broker = factory.open().await;
    broker.recover().await.expect("recover");
    for id in ["a1", "a2", "a3"] {
        broker
            .enqueue(ticket("one.test", id, "wa"))
            .await
            .expect("enqueue");
    }
    broker
        .enqueue(ticket("one.test", "b1", "wb"))
        .await
        .expect("enqueue");
    assert_eq!(must_next(&*broker, "wb").await.job_id, "b1");
    assert_empty(&*broker, "wb").await;
    for id in ["a1", "a2", "a3"] {
        let t = must_next(&*broker, "wa").await;
        assert_eq!(t.job_id, id);
        assert_eq!(t.worker, "wa");
        assert_eq!(t.domain, "one.test");
        assert_eq!(t.attempts, 0);
    }
    assert_empty(&*broker, "wa").await;
    assert_empty(&*broker, "other").await;
}

/// A ticket is not handed out before its `not_before`, and is soon after.
pub async fn not_before_delays(factory: &dyn BrokerFactory) {
    let broker = factory.open().await;
    broker.recover().await.expect("recover");
    let mut late = ticket("one.test", "late", "w");
    late.not_before = now_ms() + 600;
    broker.enqueue(late.clone()).await.expect("enqueue");
    broker
        .enqueue(ticket("one.test", "now", "w"))
        .await
        .expect("enqueue");
    assert_eq!(must_next(&*broker, "w").await.job_id, "now");
    assert!(
        next_within(&*broker, "w", Duration::from_millis(200))
            .await
            .is_none(),
        "handed out before its time"
    );
    let t = must_next(&*broker, "w").await;
    assert_eq!(t.job_id, "late");
    assert!(now_ms() >= late.not_before, "handed out before not_before");
    assert!(
        now_ms() < late.not_before + 3000,
        "handed out long after not_before"
    );
}

/// `started` records the attempts; `retry` brings the ticket back when due.
pub async fn retry_keeps_attempts_and_delays(factory: &dyn BrokerFactory) {
    let broker = factory.open().await;
    broker.recover().await.expect("recover");
    broker
        .enqueue(ticket("one.test", "j", "w"))
        .await
        .expect("enqueue");
    let mut t = must_next(&*broker, "w").await;
    t.attempts += 1;
    broker.started(&mut t).await.expect("started");
    t.not_before = now_ms() + 400;
    let due = t.not_before;
    broker.retry(t).await.expect("retry");
    assert!(
        next_within(&*broker, "w", Duration::from_millis(150))
            .await
            .is_none(),
        "a retry came back before its back-off"
    );
    let mut t = must_next(&*broker, "w").await;
    assert!(now_ms() >= due);
    assert_eq!(t.attempts, 1);
    t.attempts += 1;
    broker.started(&mut t).await.expect("started");
    broker.finish(&t).await.expect("finish");
    assert_empty(&*broker, "w").await;
}

/// A finished ticket is gone, also after a restart.
pub async fn finish_forgets(factory: &dyn BrokerFactory) {
    let broker = factory.open().await;
    broker.recover().await.expect("recover");
    broker
        .enqueue(ticket("one.test", "done", "w"))
        .await
        .expect("enqueue");
    let mut t = must_next(&*broker, "w").await;
    t.attempts += 1;
    broker.started(&mut t).await.expect("started");
    broker.finish(&t).await.expect("finish");
    assert_eq!(count_of(&*broker, "w"), 0);
    let broker = restart(factory, broker).await;
    assert!(
        next_within(
            &*broker,
            "w",
            factory.recovery_time() + Duration::from_millis(500)
        )
        .await
        .is_none(),
        "a finished ticket came back"
    );
}

/// After a crash, queued, delayed and running tickets all come back, once each,
/// running ones with the execution they had started counted.
pub async fn restart_finds_every_unfinished_ticket(factory: &dyn BrokerFactory) {
    let broker = factory.open().await;
    broker.recover().await.expect("recover");
    for id in ["j1-running", "j2-queued"] {
        broker
            .enqueue(ticket("one.test", id, "w"))
            .await
            .expect("enqueue");
    }
    let mut delayed = ticket("one.test", "j3-delayed", "w");
    delayed.not_before = now_ms() + 300;
    broker.enqueue(delayed).await.expect("enqueue");
    let mut running = must_next(&*broker, "w").await;
    assert_eq!(running.job_id, "j1-running");
    running.attempts += 1;
    broker.started(&mut running).await.expect("started");

    let broker = restart(factory, broker).await;
    let got = collect(factory, &*broker, "w", 3).await;
    let ids: Vec<&str> = got.iter().map(|t| t.job_id.as_str()).collect();
    assert_eq!(ids, ["j1-running", "j2-queued", "j3-delayed"]);
    assert_eq!(got[0].attempts, 1, "the interrupted execution counts");
    assert_eq!(got[1].attempts, 0);
    for t in &got {
        broker.finish(t).await.expect("finish");
    }
    assert_eq!(count_of(&*broker, "w"), 0);
}

/// `forget_instance` drops the queued tickets of one instance, durably.
pub async fn forget_instance_drops_its_tickets(factory: &dyn BrokerFactory) {
    let broker = factory.open().await;
    broker.recover().await.expect("recover");
    for (domain, id) in [
        ("gone.test", "g1"),
        ("kept.test", "k1"),
        ("gone.test", "g2"),
    ] {
        broker
            .enqueue(ticket(domain, id, "w"))
            .await
            .expect("enqueue");
    }
    broker.forget_instance("gone.test").await.expect("forget");
    let t = must_next(&*broker, "w").await;
    assert_eq!(t.job_id, "k1");
    assert_empty(&*broker, "w").await;
    let broker = restart(factory, broker).await;
    let got = collect(factory, &*broker, "w", 1).await;
    assert_eq!(got[0].job_id, "k1");
}

/// `pending` counts waiting and running tickets per worker type.
pub async fn pending_counts_waiting_and_running(factory: &dyn BrokerFactory) {
    let broker = factory.open().await;
    broker.recover().await.expect("recover");
    for id in ["a1", "a2"] {
        broker
            .enqueue(ticket("one.test", id, "pa"))
            .await
            .expect("enqueue");
    }
    broker
        .enqueue(ticket("one.test", "b1", "pb"))
        .await
        .expect("enqueue");
    assert_eq!(count_of(&*broker, "pa"), 2);
    assert_eq!(count_of(&*broker, "pb"), 1);
    let mut t = must_next(&*broker, "pa").await;
    t.attempts += 1;
    broker.started(&mut t).await.expect("started");
    assert_eq!(count_of(&*broker, "pa"), 2, "a running ticket still counts");
    broker.finish(&t).await.expect("finish");
    assert_eq!(count_of(&*broker, "pa"), 1);
    let t = must_next(&*broker, "pa").await;
    broker.finish(&t).await.expect("finish");
    assert_eq!(count_of(&*broker, "pa"), 0);
    assert_eq!(count_of(&*broker, "pb"), 1);
}

#[cfg(test)]
mod local {
    //! The in-process broker over a SQLite global store.

    use hearth_store::DocStore;
    use hearth_store_sqlite::{SqliteOptions, SqliteStore};

    use super::*;
    use crate::LocalBroker;

    struct Local {
        store: Arc<dyn DocStore>,
        _dir: tempfile::TempDir,
    }

    fn local() -> Local {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(
            dir.path().to_owned(),
            SqliteOptions {
                synchronous_full: false,
                ..Default::default()
            },
        )
        .expect("open");
        Local {
            store: Arc::new(store),
            _dir: dir,
        }
    }

    #[async_trait]
    impl BrokerFactory for Local {
        async fn open(&self) -> Arc<dyn Broker> {
            Arc::new(LocalBroker::new(self.store.clone()))
        }
    }

    crate::broker_conformance_tests!(local());
}
