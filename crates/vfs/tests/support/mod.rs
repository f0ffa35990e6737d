//! What the tests of the files service start from: one instance on a real SQLite
//! store in a temporary directory (also included by `hearth-blob-s3`'s tests).

use std::path::PathBuf;
use std::sync::Arc;

use hearth_instances::{CreateOptions, Instance, Instances, InstancesConfig, ScryptCost};
use hearth_store::DocStore;
use hearth_store_sqlite::{SqliteOptions, SqliteStore};

/// A store holding one instance, and where a local blob store keeps its files.
pub struct Base {
    pub store: Arc<dyn DocStore>,
    pub inst: Instance,
    /// The instances' `fs_root`, for a `LocalBlobStore`.
    pub files: PathBuf,
    pub dir: tempfile::TempDir,
}

/// A new SQLite store (without full syncs) with the instance `domain` created in it.
pub async fn instance(domain: &str) -> Base {
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
    let files = dir.path().join("files");
    let config = InstancesConfig {
        fs_root: files.clone(),
        scrypt: ScryptCost::FAST,
    };
    let instances = Instances::open(store.clone(), config).await.unwrap();
    let inst = instances
        .create(CreateOptions {
            domain: domain.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    Base {
        store,
        inst,
        files,
        dir,
    }
}
