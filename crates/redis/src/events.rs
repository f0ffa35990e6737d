//! [`EventBridge`]: document events cross nodes, so that a realtime websocket on
//! one node sees the writes made on another.
//!
//! Every event of the local hub is `PUBLISH`ed, as JSON, on the channel
//! `<prefix>events`, with this node's id. Every node subscribes to that channel
//! and hands the events of the other nodes to its hub's subscribers with
//! [`EventHub::publish_remote`], which skips observers: the bridge itself (so an
//! event never goes back to Redis) and the job scheduler (whose `@event` triggers
//! fire on the node where the write happened, once).
//!
//! Pub/sub is fire-and-forget, like the hub's own channels: a node that is not
//! subscribed at that moment (reconnecting) misses the event;
//! [`EventBridge::resubscribed`] tells when that may have happened.
//!
//! The events of the global instance (the instances registry) cross without their
//! document: other nodes only need to know which registry document changed (to drop
//! their cached lookups), and the registry's documents hold secrets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hearth_core::{Doctype, InstanceId, JsonMap};
use hearth_store::events::{Event, EventHub, EventObserver, Interest, Verb};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::{Redis, RedisResult, listen, token};

/// Events waiting to be published before new ones are dropped.
const OUTBOX: usize = 4096;

/// Bridges one [`EventHub`] to every other node's. Dropping it stops both
/// directions.
pub struct EventBridge {
    node: String,
    outbox: Arc<Outbox>,
    resubscribed: watch::Receiver<u64>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for EventBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBridge")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// One event on the wire.
#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    node: String,
    instance: String,
    doctype: String,
    id: String,
    verb: String,
    doc: JsonMap,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    old: Option<JsonMap>,
}

impl EventBridge {
    /// Subscribes to the other nodes' events (subscribed when this returns) and
    /// starts publishing this hub's. Needs a Tokio runtime.
    pub async fn start(redis: &Redis, hub: &EventHub) -> RedisResult<Self> {
        let node = token();
        let channel = redis.key("events");
        let mut pubsub = redis.pubsub().await?;
        pubsub.subscribe(&channel).await?;
        let (tx, rx) = mpsc::channel(OUTBOX);
        let outbox = Arc::new(Outbox {
            tx,
            dropped: AtomicU64::new(0),
        });
        hub.observe(outbox.clone());
        let publisher = tokio::spawn(publish_loop(
            redis.clone(),
            channel.clone(),
            node.clone(),
            rx,
        ));
        let (resubscribed_tx, resubscribed) = watch::channel(0);
        let subscriber = tokio::spawn(subscribe_loop(
            redis.clone(),
            channel,
            node.clone(),
            hub.clone(),
            pubsub,
            resubscribed_tx,
        ));
        Ok(Self {
            node,
            outbox,
            resubscribed,
            tasks: vec![publisher, subscriber],
        })
    }

    /// Counts the subscriptions made again after a lost one: each time it moves,
    /// events of other nodes may have been missed in between.
    pub fn resubscribed(&self) -> watch::Receiver<u64> {
        self.resubscribed.clone()
    }

    /// Local events dropped because Redis could not keep up.
    pub fn dropped(&self) -> u64 {
        self.outbox.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for EventBridge {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The bridge's observer on the local hub: it queues, the publisher sends.
struct Outbox {
    tx: mpsc::Sender<Arc<Event>>,
    dropped: AtomicU64,
}

impl EventObserver for Outbox {
    fn interest(&self, _inst: &InstanceId, _dt: &Doctype) -> Interest {
        // Any node may have subscribers for any instance: every write is shipped
        // (until the bridge is dropped).
        if self.tx.is_closed() {
            Interest::None
        } else {
            Interest::Event
        }
    }

    fn observe(&self, event: &Arc<Event>) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(event.clone()) {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed);
            // Logged at the 1st, 2nd, 4th, 8th… event dropped.
            if (n + 1).is_power_of_two() {
                tracing::warn!(dropped = n + 1, "realtime events not sent to other nodes");
            }
        }
    }
}

async fn publish_loop(
    redis: Redis,
    channel: String,
    node: String,
    mut rx: mpsc::Receiver<Arc<Event>>,
) {
    let mut conn = redis.conn();
    while let Some(event) = rx.recv().await {
        let registry = event.instance.as_str() == InstanceId::GLOBAL;
        let wire = Wire {
            node: node.clone(),
            instance: event.instance.as_str().to_owned(),
            doctype: event.doctype.as_str().to_owned(),
            id: event.id.clone(),
            verb: event.verb.as_str().to_owned(),
            doc: if registry {
                stripped(&event.doc)
            } else {
                event.doc.clone()
            },
            old: if registry { None } else { event.old.clone() },
        };
        let Ok(payload) = serde_json::to_string(&wire) else {
            continue;
        };
        if let Err(e) = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(payload)
            .query_async::<()>(&mut conn)
            .await
        {
            tracing::warn!(error = %e, "cannot send a realtime event to other nodes");
        }
    }
}

/// A registry document as it crosses nodes: its `_id`, `_rev` and `_deleted` only.
fn stripped(doc: &JsonMap) -> JsonMap {
    doc.iter()
        .filter(|(k, _)| matches!(k.as_str(), "_id" | "_rev" | "_deleted"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

async fn subscribe_loop(
    redis: Redis,
    channel: String,
    node: String,
    hub: EventHub,
    first: redis::aio::PubSub,
    resubscribed: watch::Sender<u64>,
) {
    listen(
        redis,
        channel,
        first,
        (
            "lost the realtime subscription to other nodes; reconnecting",
            "realtime events",
        ),
        |msg| {
            let Ok(payload) = msg.get_payload::<String>() else {
                return;
            };
            match serde_json::from_str::<Wire>(&payload) {
                Ok(wire) if wire.node == node => {}
                Ok(wire) => match remote_event(wire) {
                    Some(event) => hub.publish_remote(event),
                    None => tracing::debug!("invalid realtime event from another node"),
                },
                Err(e) => {
                    tracing::debug!(error = %e, "unreadable realtime event from another node");
                }
            }
        },
        || resubscribed.send_modify(|n| *n += 1),
    )
    .await;
}

fn remote_event(wire: Wire) -> Option<Event> {
    let verb = Verb::from_name(&wire.verb)?;
    Some(Event {
        instance: InstanceId::new(wire.instance).ok()?,
        doctype: Doctype::new(wire.doctype).ok()?,
        id: wire.id,
        verb,
        doc: wire.doc,
        old: wire.old,
    })
}
