//! The lookup cache with two services over one store, as two nodes sharing
//! PostgreSQL have: a change made through one is seen by the other once it is told
//! (an event of the registry) or once its entries expire.

// Test helpers panic on failure: that is how they report it.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use hearth_core::{Doctype, InstanceId, JsonMap};
use hearth_instances::{
    CreateOptions, Domain, Instances, InstancesConfig, ModifyOptions, ScryptCost,
};
use hearth_store::DocStore;
use hearth_store::events::{Event, Verb};
use hearth_store_sqlite::{SqliteOptions, SqliteStore};

struct Env {
    nodes: [Instances; 2],
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn DocStore> = Arc::new(
        SqliteStore::open(
            dir.path().join("db"),
            SqliteOptions {
                synchronous_full: false,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let config = InstancesConfig {
        fs_root: dir.path().join("files"),
        scrypt: ScryptCost::FAST,
    };
    let one = Instances::open(store.clone(), config.clone())
        .await
        .unwrap();
    let two = Instances::new(store, config);
    Env {
        nodes: [one, two],
        _dir: dir,
    }
}

fn event(doctype: &str, id: &str) -> Event {
    Event {
        instance: InstanceId::global(),
        doctype: Doctype::new(doctype).unwrap(),
        id: id.to_owned(),
        verb: Verb::Updated,
        doc: JsonMap::new(),
        old: None,
    }
}

async fn blocked(instances: &Instances, domain: &str) -> bool {
    instances
        .get(&Domain::parse(domain).unwrap())
        .await
        .unwrap()
        .blocked
}

fn block(on: bool) -> ModifyOptions {
    ModifyOptions {
        blocked: Some(on),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_event_drops_the_stale_copy() {
    let env = env().await;
    let [one, two] = &env.nodes;
    let created = one
        .create(CreateOptions {
            domain: "a.localhost".into(),
            domain_aliases: vec!["alias.localhost".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!blocked(two, "a.localhost").await);
    assert!(!blocked(two, "alias.localhost").await);

    one.modify("a.localhost", block(true)).await.unwrap();
    // Node 2 still has its copy…
    assert!(!blocked(two, "a.localhost").await);
    // …until it hears of the write: both the domain and the alias are dropped.
    assert!(two.forget_changed(&event("io.cozy.instances", &created.id)));
    assert!(blocked(two, "a.localhost").await);
    assert!(blocked(two, "alias.localhost").await);

    // Events of other documents or instances change nothing.
    one.modify("a.localhost", block(false)).await.unwrap();
    assert!(!two.forget_changed(&event("io.cozy.settings", &created.id)));
    let mut elsewhere = event("io.cozy.instances", &created.id);
    elsewhere.instance = InstanceId::new("a.localhost").unwrap();
    assert!(!two.forget_changed(&elsewhere));
    assert!(blocked(two, "a.localhost").await);
    // A domain claim drops that domain only.
    assert!(two.forget_changed(&event("io.cozy.instances.domains", "alias.localhost")));
    assert!(!blocked(two, "alias.localhost").await);
    assert!(blocked(two, "a.localhost").await);
    two.forget_all();
    assert!(!blocked(two, "a.localhost").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_expire_after_the_time_to_live() {
    let env = env().await;
    let [one, two] = &env.nodes;
    one.create(CreateOptions {
        domain: "b.localhost".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    two.set_cache_ttl(Some(Duration::from_millis(200)));
    assert!(!blocked(two, "b.localhost").await);
    one.modify("b.localhost", block(true)).await.unwrap();
    assert!(!blocked(two, "b.localhost").await, "cached");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(blocked(two, "b.localhost").await, "expired, read again");
}
