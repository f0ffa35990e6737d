//! The Redis broker: the scenarios every broker passes, then what only a shared
//! queue has (several nodes, leases).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hearth_jobs::Broker;
use hearth_jobs::broker_tests::{BrokerFactory, next_within, ticket};
use hearth_redis::{BrokerOptions, RedisBroker};

use crate::support::{Cleanup, connect, prefix};

const LEASE: Duration = Duration::from_secs(1);

/// Brokers on one fresh prefix, with a short lease so that crashes recover fast.
struct Factory {
    prefix: String,
    _cleanup: Cleanup,
}

fn factory() -> Factory {
    let prefix = prefix();
    Factory {
        _cleanup: Cleanup(prefix.clone()),
        prefix,
    }
}

impl Factory {
    async fn node(&self, node_id: Option<&str>, poll: Duration) -> Arc<RedisBroker> {
        let redis = connect(&self.prefix).await;
        let options = BrokerOptions {
            node_id: node_id.map(str::to_owned),
            lease: LEASE,
            poll,
        };
        Arc::new(RedisBroker::start(&redis, options).await.unwrap())
    }
}

#[async_trait]
impl BrokerFactory for Factory {
    async fn open(&self) -> Arc<dyn Broker> {
        self.node(None, Duration::from_millis(500)).await
    }

    fn recovery_time(&self) -> Duration {
        LEASE * 2
    }
}

mod conformance {
    use super::factory;

    hearth_jobs::broker_conformance_tests!(factory());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_nodes_running_tickets_are_never_taken() {
    let f = factory();
    let a = f.node(None, Duration::from_secs(5)).await;
    a.recover().await.unwrap();
    a.enqueue(ticket("one.test", "j", "w")).await.unwrap();
    let mut t = a.next("w").await;
    t.attempts += 1;
    a.started(&mut t).await.unwrap();

    let b = f.node(None, Duration::from_millis(200)).await;
    assert!(
        b.recover().await.unwrap().is_empty(),
        "recovered a live node's ticket"
    );
    // Longer than a lease: A keeps renewing, so B never sees the ticket.
    assert!(next_within(&*b, "w", LEASE * 2).await.is_none());
    assert_eq!(b.reap().await.unwrap(), 0);

    // A dies: B runs the ticket again, with the execution A had started counted.
    let started = Instant::now();
    drop(a);
    let again = next_within(&*b, "w", LEASE * 4)
        .await
        .expect("the dead node's ticket comes back");
    assert_eq!(again.job_id, "j");
    assert_eq!(again.attempts, 1);
    assert!(
        started.elapsed() < LEASE * 3,
        "took {:?}",
        started.elapsed()
    );
    b.finish(&again).await.unwrap();
    assert_eq!(b.pending(), vec![("w".to_owned(), 0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_under_its_name_recovers_at_once() {
    let f = factory();
    let a = f.node(Some("node-1"), Duration::from_secs(5)).await;
    a.recover().await.unwrap();
    a.enqueue(ticket("one.test", "j", "w")).await.unwrap();
    let mut t = a.next("w").await;
    t.attempts += 1;
    a.started(&mut t).await.unwrap();
    drop(a);

    // Its lease has not expired, but the ticket is its own.
    let a = f.node(Some("node-1"), Duration::from_secs(5)).await;
    let recovered = a.recover().await.unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].job_id, "j");
    assert_eq!(recovered[0].attempts, 1);
    // The runner queues it again; it is not delivered twice.
    a.retry(recovered[0].clone()).await.unwrap();
    let t = next_within(&*a, "w", Duration::from_secs(2)).await.unwrap();
    assert_eq!(t.job_id, "j");
    assert!(next_within(&*a, "w", LEASE * 2).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_pushed_on_one_node_wakes_another() {
    let f = factory();
    // A long poll: only the wake-up message can deliver the ticket quickly.
    let a = f.node(None, Duration::from_secs(30)).await;
    let b = f.node(None, Duration::from_secs(30)).await;
    let waiting = {
        let b = b.clone();
        tokio::spawn(async move { b.next("w").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pushed = Instant::now();
    a.enqueue(ticket("one.test", "j", "w")).await.unwrap();
    let t = tokio::time::timeout(Duration::from_secs(3), waiting)
        .await
        .expect("woken")
        .unwrap();
    assert_eq!(t.job_id, "j");
    assert!(pushed.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_runners_take_each_ticket_once() {
    let f = factory();
    let nodes = [
        f.node(None, Duration::from_millis(300)).await,
        f.node(None, Duration::from_millis(300)).await,
    ];
    let total = 60;
    let mut runners = Vec::new();
    for i in 0..6 {
        let node = nodes[i % 2].clone();
        runners.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(t) = next_within(&*node, "w", Duration::from_millis(1500)).await {
                node.finish(&t).await.unwrap();
                got.push(t.job_id);
            }
            got
        }));
    }
    for n in 0..total {
        let mut t = ticket("one.test", &format!("job-{n:03}"), "w");
        if n % 5 == 0 {
            t.not_before = now_ms() + 300;
        }
        nodes[n % 2].enqueue(t).await.unwrap();
    }
    let mut all = Vec::new();
    for r in runners {
        all.extend(r.await.unwrap());
    }
    let distinct: BTreeSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), total, "each ticket exactly once");
    assert_eq!(distinct.len(), total);
    assert_eq!(nodes[0].pending(), vec![("w".to_owned(), 0)]);
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_running_ticket_stays_forgotten() {
    let f = factory();
    let a = f.node(None, Duration::from_millis(300)).await;
    a.enqueue(ticket("gone.test", "j", "w")).await.unwrap();
    let mut t = a.next("w").await;
    t.attempts += 1;
    a.started(&mut t).await.unwrap();
    a.forget_instance("gone.test").await.unwrap();
    // The runner's retry after the instance was destroyed does not bring it back.
    a.retry(t).await.unwrap();
    assert!(
        next_within(&*a, "w", Duration::from_millis(800))
            .await
            .is_none()
    );
    assert_eq!(a.pending(), vec![("w".to_owned(), 0)]);
}
