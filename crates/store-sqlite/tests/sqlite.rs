//! SQLite-specific behaviour: indexes really used, one file per instance, bounded
//! and idle-closed handles.

use std::time::Duration;

use hearth_core::{Doctype, InstanceId};
use hearth_store::{
    DocStore, GetOptions,
    mango::{FindQuery, IndexDef},
};
use hearth_store_sqlite::{SqliteOptions, SqliteStore};
use serde_json::{Value, json};

fn obj(v: Value) -> hearth_core::JsonMap {
    v.as_object().cloned().expect("object")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_find_uses_the_index_not_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    let (i, t) = (
        InstanceId::new("alice").unwrap(),
        Doctype::new("io.cozy.files").unwrap(),
    );
    let docs = (0..500)
        .map(|n| {
            obj(json!({"dir_id": format!("dir{}", n % 10), "name": format!("f{n}"), "size": n}))
        })
        .collect();
    store.bulk(&i, &t, docs, true).await.unwrap();
    let by_dir =
        FindQuery::parse(&json!({"selector": {"dir_id": "dir3"}, "sort": ["dir_id", "name"]}))
            .unwrap();
    let plan = store.explain_find(&i, &t, &by_dir).await.unwrap();
    assert!(
        plan.contains("SCAN dt_1") || plan.contains("SEARCH dt_1"),
        "{plan}"
    );

    store
        .create_index(
            &i,
            &t,
            IndexDef::parse(&json!({"index": {"fields": ["dir_id", "name"]}})).unwrap(),
        )
        .await
        .unwrap();
    let plan = store.explain_find(&i, &t, &by_dir).await.unwrap();
    assert!(
        plan.contains("SEARCH dt_1 USING INDEX ix_1_1"),
        "an equality on the first field seeks the index: {plan}"
    );
    assert!(
        !plan.contains("TEMP B-TREE"),
        "the index order serves the sort: {plan}"
    );
    let r = store.find(&i, &t, &by_dir).await.unwrap();
    assert_eq!(r.docs.len(), 50);
    assert!(
        r.stats.total_docs_examined <= 50,
        "only the matching rows were read: {:?}",
        r.stats
    );

    store
        .create_index(
            &i,
            &t,
            IndexDef::parse(&json!({"index": {"fields": ["size"]}})).unwrap(),
        )
        .await
        .unwrap();
    let range =
        FindQuery::parse(&json!({"selector": {"size": {"$gte": 100, "$lt": 110}}})).unwrap();
    let plan = store.explain_find(&i, &t, &range).await.unwrap();
    assert!(plan.contains("USING INDEX ix_1_2"), "{plan}");
    let r = store.find(&i, &t, &range).await.unwrap();
    assert_eq!(r.docs.len(), 10);
    assert_eq!(r.stats.total_keys_examined, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_file_per_instance_bounded_and_closed_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteOptions {
        max_open: 3,
        idle_timeout: Duration::from_millis(200),
        synchronous_full: false,
    };
    let store = SqliteStore::open(dir.path(), opts).unwrap();
    let t = Doctype::new("io.cozy.notes").unwrap();
    for n in 0..10 {
        let i = InstanceId::new(format!("inst{n}")).unwrap();
        store
            .put(&i, &t, obj(json!({"_id": "x", "n": n})))
            .await
            .unwrap();
        assert!(store.open_count() <= 3, "never more than max_open handles");
    }
    for n in 0..10 {
        assert!(dir.path().join(format!("inst{n}.sqlite")).exists());
        let i = InstanceId::new(format!("inst{n}")).unwrap();
        assert_eq!(
            store.get(&i, &t, "x", GetOptions::default()).await.unwrap()["n"],
            n,
            "reopened lazily"
        );
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(store.open_count(), 0, "idle handles are closed");
    store
        .destroy_instance(&InstanceId::new("inst0").unwrap())
        .await
        .unwrap();
    assert!(!dir.path().join("inst0.sqlite").exists());
}
