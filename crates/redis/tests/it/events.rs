//! Two hubs bridged through Redis: an event crosses once, and never comes back.

use std::time::Duration;

use hearth_core::{Doctype, InstanceId, JsonMap};
use hearth_redis::EventBridge;
use hearth_store::events::{Event, EventHub, Verb};
use serde_json::json;
use tokio::sync::broadcast::error::TryRecvError;

use crate::support::{Cleanup, connect, prefix};

fn event(inst: &InstanceId, id: &str, verb: Verb) -> Event {
    let doc: JsonMap = match json!({"_id": id, "_rev": "1-abc", "title": "héllo"}) {
        serde_json::Value::Object(m) => m,
        _ => unreachable!(),
    };
    Event {
        instance: inst.clone(),
        doctype: Doctype::new("io.cozy.todos").unwrap(),
        id: id.to_owned(),
        verb,
        doc,
        old: None,
    }
}

/// Two hubs, each bridged through Redis under its prefix (while the bridges are kept).
async fn bridged(p1: &str, p2: &str) -> (EventHub, EventHub, [EventBridge; 2]) {
    let (hub1, hub2) = (EventHub::new(), EventHub::new());
    let bridge1 = EventBridge::start(&connect(p1).await, &hub1).await.unwrap();
    let bridge2 = EventBridge::start(&connect(p2).await, &hub2).await.unwrap();
    (hub1, hub2, [bridge1, bridge2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_reaches_the_other_node_once_and_never_comes_back() {
    let prefix = prefix();
    let _cleanup = Cleanup(prefix.clone());
    let (hub1, hub2, _bridges) = bridged(&prefix, &prefix).await;
    let inst = InstanceId::new("alice.example.test").unwrap();
    let other = InstanceId::new("bob.example.test").unwrap();
    let mut on1 = hub1.subscribe(&inst);
    let mut on2 = hub2.subscribe(&inst);
    let mut other_on2 = hub2.subscribe(&other);

    let sent = event(&inst, "todo-1", Verb::Updated);
    hub1.publish(sent.clone());

    // The local subscriber gets it directly.
    assert_eq!(*on1.recv().await.unwrap(), sent);
    // The other node's subscriber gets it through Redis, intact.
    let got = tokio::time::timeout(Duration::from_secs(3), on2.recv())
        .await
        .expect("the event crossed")
        .unwrap();
    assert_eq!(*got, sent);

    // A second event in the other direction, which also proves ordering: once it
    // has arrived on hub 1, any echo of the first would have arrived before it.
    let back = event(&inst, "todo-2", Verb::Notified);
    hub2.publish(back.clone());
    assert_eq!(*on2.recv().await.unwrap(), back);
    let got = tokio::time::timeout(Duration::from_secs(3), on1.recv())
        .await
        .expect("the event crossed back")
        .unwrap();
    assert_eq!(*got, back);

    // Let any echo arrive, then check there was none, on either side.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(on1.try_recv().unwrap_err(), TryRecvError::Empty);
    assert_eq!(on2.try_recv().unwrap_err(), TryRecvError::Empty);
    // Events stay within their instance on the other node too.
    assert_eq!(other_on2.try_recv().unwrap_err(), TryRecvError::Empty);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_under_other_prefixes_do_not_hear_each_other() {
    let (p1, p2) = (prefix(), prefix());
    let _cleanup = (Cleanup(p1.clone()), Cleanup(p2.clone()));
    let (hub1, hub2, _bridges) = bridged(&p1, &p2).await;
    let inst = InstanceId::new("alice.example.test").unwrap();
    let mut on2 = hub2.subscribe(&inst);
    hub1.publish(event(&inst, "todo-1", Verb::Created));
    assert!(
        tokio::time::timeout(Duration::from_millis(700), on2.recv())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_events_cross_without_their_document() {
    let prefix = prefix();
    let _cleanup = Cleanup(prefix.clone());
    let (hub1, hub2, _bridges) = bridged(&prefix, &prefix).await;
    let global = InstanceId::global();
    let mut on2 = hub2.subscribe(&global);
    let mut sent = event(&global, "instance-1", Verb::Updated);
    sent.doctype = Doctype::new("io.cozy.instances").unwrap();
    sent.doc
        .insert("passphrase_hash".into(), json!("secret hash"));
    hub1.publish(sent.clone());
    let got = tokio::time::timeout(Duration::from_secs(3), on2.recv())
        .await
        .expect("the event crossed")
        .unwrap();
    assert_eq!(
        (got.doctype.as_str(), got.id.as_str()),
        ("io.cozy.instances", "instance-1")
    );
    assert_eq!(got.verb, Verb::Updated);
    let keys: Vec<&str> = got.doc.keys().map(String::as_str).collect();
    assert_eq!(keys, ["_id", "_rev"], "{:?}", got.doc);
}
