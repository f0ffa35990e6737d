//! Instances spread over two database clusters (`database.clusters`): each instance's
//! documents live on its cluster, the registry on cluster 0.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use hearth_core::InstanceId;
use hearth_instances::{CreateOptions, InstanceError, Instances, InstancesConfig, ScryptCost};
use hearth_store::DocStore;
use hearth_store::clustered::{ClusteredStore, cluster_of};
use hearth_store_sqlite::{SqliteOptions, SqliteStore};

fn sqlite(dir: &std::path::Path) -> Arc<dyn DocStore> {
    Arc::new(
        SqliteStore::open(
            dir,
            SqliteOptions {
                synchronous_full: false,
                ..Default::default()
            },
        )
        .unwrap(),
    )
}

#[tokio::test]
async fn instances_live_on_their_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let (c0, c1) = (
        sqlite(&dir.path().join("c0")),
        sqlite(&dir.path().join("c1")),
    );
    let store: Arc<dyn DocStore> =
        Arc::new(ClusteredStore::new(vec![c0.clone(), c1.clone()]).unwrap());
    let config = InstancesConfig {
        fs_root: dir.path().join("files"),
        scrypt: ScryptCost::FAST,
    };
    let instances = Instances::open(store.clone(), config)
        .await
        .unwrap()
        .with_db_clusters(2);
    let create = |domain: &str, db_cluster: Option<usize>| CreateOptions {
        domain: domain.into(),
        db_cluster,
        ..Default::default()
    };
    let one = instances
        .create(create("one.example", Some(1)))
        .await
        .unwrap();
    let zero = instances
        .create(create("zero.example", Some(0)))
        .await
        .unwrap();
    assert_eq!(cluster_of(&one.instance_id()), 1);
    assert_eq!(cluster_of(&zero.instance_id()), 0);
    // Each instance's documents are on its own cluster only.
    assert!(!c1.doctypes(&one.instance_id()).await.unwrap().is_empty());
    assert!(
        c0.doctypes(&one.instance_id())
            .await
            .unwrap_or_default()
            .is_empty()
    );
    assert!(!c0.doctypes(&zero.instance_id()).await.unwrap().is_empty());
    assert!(
        c1.doctypes(&zero.instance_id())
            .await
            .unwrap_or_default()
            .is_empty()
    );
    // The registry is on cluster 0, and finds both.
    assert!(!c0.doctypes(&InstanceId::global()).await.unwrap().is_empty());
    assert!(
        c1.doctypes(&InstanceId::global())
            .await
            .unwrap_or_default()
            .is_empty()
    );
    let again = Instances::new(
        store.clone(),
        InstancesConfig {
            fs_root: dir.path().join("files"),
            scrypt: ScryptCost::FAST,
        },
    );
    assert_eq!(
        again.get_str("one.example").await.unwrap().prefix,
        one.prefix
    );
    // A cluster that is not configured is refused, and nothing is created.
    let err = instances
        .create(create("nowhere.example", Some(2)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            InstanceError::InvalidParameter {
                parameter: "db_cluster",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(instances.get_str("nowhere.example").await.is_err());
    // Without a choice, instances are spread over both.
    let mut seen = [0usize; 2];
    for i in 0..12 {
        let inst = instances
            .create(create(&format!("i{i}.example"), None))
            .await
            .unwrap();
        seen[cluster_of(&inst.instance_id())] += 1;
    }
    assert!(seen[0] > 0 && seen[1] > 0, "{seen:?}");
    // Destroying removes the data from its cluster.
    instances.destroy("one.example").await.unwrap();
    assert!(
        c1.doctypes(&one.instance_id())
            .await
            .unwrap_or_default()
            .is_empty()
    );
}
