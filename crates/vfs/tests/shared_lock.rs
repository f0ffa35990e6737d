//! Two files services over one store, as two nodes sharing PostgreSQL would be: with
//! a shared [`InstanceLock`], two uploads of one name, one on each, give one file
//! and one conflict; a failing shared lock does not stop the service.

// Test helpers panic on failure: that is how they report it.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hearth_instances::Instance;
use hearth_vfs::lock::LockFuture;
use hearth_vfs::{
    FileDoc, HeldLock, InstanceLock, LocalBlobStore, LockError, NewFile, Vfs, VfsError, VfsResult,
};

/// Locks by name within the test process, standing for Redis.
#[derive(Default)]
struct FakeLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    taken: AtomicUsize,
    names: Mutex<Vec<String>>,
    down: bool,
}

impl InstanceLock for FakeLocks {
    fn lock<'a>(&'a self, name: &'a str) -> LockFuture<'a> {
        Box::pin(async move {
            if self.down {
                return Err(LockError("the lock server is down".into()));
            }
            let m = self
                .locks
                .lock()
                .unwrap()
                .entry(name.to_owned())
                .or_default()
                .clone();
            let guard = m.lock_owned().await;
            self.taken.fetch_add(1, Ordering::SeqCst);
            self.names.lock().unwrap().push(name.to_owned());
            Ok(Box::new(guard) as HeldLock)
        })
    }
}

struct Env {
    nodes: [Arc<Vfs>; 2],
    inst: Instance,
    _dir: tempfile::TempDir,
}

async fn env(shared: Option<Arc<FakeLocks>>) -> Env {
    let support::Base {
        store,
        inst,
        files,
        dir,
    } = support::instance("a.localhost").await;
    let node = || {
        let vfs = Vfs::new(store.clone(), Arc::new(LocalBlobStore::new(&files)));
        if let Some(lock) = &shared {
            assert!(vfs.set_instance_lock(lock.clone()));
            assert!(!vfs.set_instance_lock(lock.clone()), "set once");
        }
        Arc::new(vfs)
    };
    Env {
        nodes: [node(), node()],
        inst,
        _dir: dir,
    }
}

async fn upload(vfs: &Vfs, inst: &Instance, name: &str) -> VfsResult<FileDoc> {
    let f = NewFile {
        name: name.into(),
        ..Default::default()
    };
    let body = futures_util::stream::iter([Ok(Bytes::from(vec![7u8; 4096]))]);
    vfs.upload(inst, "", f, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_name_one_file_across_nodes() {
    let locks = Arc::new(FakeLocks::default());
    let env = env(Some(locks.clone())).await;
    for round in 0..20 {
        let name = format!("same-{round}.bin");
        // Each on a task of its own, so that they run in parallel.
        let [a, b] = [0, 1].map(|i| {
            let (vfs, inst, name) = (env.nodes[i].clone(), env.inst.clone(), name.clone());
            tokio::spawn(async move { upload(&vfs, &inst, &name).await })
        });
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        let created = [&a, &b].iter().filter(|r| r.is_ok()).count();
        let conflicts = [&a, &b]
            .iter()
            .filter(|r| matches!(r, Err(VfsError::Exists)))
            .count();
        assert_eq!((created, conflicts), (1, 1), "round {round}: {a:?} / {b:?}");
    }
    assert!(locks.taken.load(Ordering::SeqCst) >= 20);
    let names = locks.names.lock().unwrap().clone();
    let expected = format!("vfs:{}/{}", env.inst.id, env.inst.prefix);
    assert!(names.iter().all(|n| *n == expected), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_shared_lock_leaves_the_node_working() {
    let locks = Arc::new(FakeLocks {
        down: true,
        ..Default::default()
    });
    let env = env(Some(locks)).await;
    upload(&env.nodes[0], &env.inst, "still.bin").await.unwrap();
    assert!(matches!(
        upload(&env.nodes[1], &env.inst, "still.bin").await,
        Err(VfsError::Exists)
    ));
}

#[tokio::test]
async fn one_node_takes_no_shared_lock() {
    let env = env(None).await;
    assert!(env.nodes[0].instance_lock().is_none());
    upload(&env.nodes[0], &env.inst, "alone.bin").await.unwrap();
}

/// What another node wrote counts in this node's usage (quotas) once its event
/// arrives: not before (no event, no rescan), and within `REMOTE_RESCAN` after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_follows_the_writes_of_other_nodes() {
    use hearth_store::events::{Event, EventHub, Verb};
    let env = env(Some(Arc::new(FakeLocks::default()))).await;
    let [a, b] = [env.nodes[0].clone(), env.nodes[1].clone()];
    let hub = EventHub::new();
    hub.observe(Arc::new(hearth_vfs::RemoteUsage(b.clone())));
    assert_eq!(b.usage(&env.inst).await.unwrap().total(), 0);

    let doc = upload(&a, &env.inst, "on-a.bin").await.unwrap();
    assert_eq!(a.usage(&env.inst).await.unwrap().total(), 4096);
    // Node B has not heard of it: its cached usage stays.
    assert_eq!(b.usage(&env.inst).await.unwrap().total(), 0);

    // A's write reaches B as a remote event (the Redis bridge's job).
    let event = Event {
        instance: env.inst.instance_id(),
        doctype: hearth_core::Doctype::new("io.cozy.files").unwrap(),
        id: doc.id.clone(),
        verb: Verb::Created,
        doc: serde_json::Map::new(),
        old: None,
    };
    hub.publish_remote(event.clone());
    // Rescanned at most every REMOTE_RESCAN: the first read after it counts the file.
    tokio::time::sleep(hearth_vfs::REMOTE_RESCAN).await;
    assert_eq!(b.usage(&env.inst).await.unwrap().total(), 4096);
    // Another doctype's event changes nothing; a local write keeps counting.
    hub.publish_remote(Event {
        doctype: hearth_core::Doctype::new("io.cozy.contacts").unwrap(),
        ..event
    });
    upload(&b, &env.inst, "on-b.bin").await.unwrap();
    assert_eq!(b.usage(&env.inst).await.unwrap().total(), 8192);
}
