//! An export on a real SQLite store and real files: nested folders, an old version, a
//! custom doctype, several parts; every part is read back with the `zip` crate.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use hearth_core::{Doctype, InstanceId};
use hearth_instances::{CreateOptions, Instance, Instances, InstancesConfig, ScryptCost};
use hearth_move::{ExportOptions, Exports, MoveError};
use hearth_store::DocStore;
use hearth_store::events::{EventHub, EventedStore, Verb};
use hearth_store_sqlite::{SqliteOptions, SqliteStore};
use hearth_vfs::{LocalBlobStore, NewDir, NewFile, Overwrite, Vfs};
use md5::{Digest, Md5};
use serde_json::{Value, json};

struct Env {
    store: Arc<dyn DocStore>,
    vfs: Arc<Vfs>,
    instances: Arc<Instances>,
    inst: Instance,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn DocStore> = Arc::new(
        SqliteStore::open(
            dir.path().join("db"),
            SqliteOptions {
                synchronous_full: false,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let store: Arc<dyn DocStore> = Arc::new(EventedStore::new(sqlite, EventHub::new()));
    let files = dir.path().join("files");
    let config = InstancesConfig {
        fs_root: files.clone(),
        scrypt: ScryptCost::FAST,
    };
    let instances = Arc::new(Instances::open(store.clone(), config).await.unwrap());
    let inst = instances
        .create(CreateOptions {
            domain: "a.localhost".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let vfs = Arc::new(Vfs::new(
        store.clone(),
        Arc::new(LocalBlobStore::new(&files)),
    ));
    Env {
        store,
        vfs,
        instances,
        inst,
        _dir: dir,
    }
}

fn body(b: &[u8]) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Unpin + Send {
    futures_util::stream::iter([Ok(Bytes::from(b.to_vec()))])
}

async fn mkdir(e: &Env, parent: &str, name: &str) -> String {
    let d = NewDir {
        name: name.into(),
        ..Default::default()
    };
    e.vfs.create_dir(&e.inst, parent, d).await.unwrap().id
}

async fn upload(e: &Env, dir: &str, name: &str, content: &[u8]) -> String {
    let f = NewFile {
        name: name.into(),
        content_type: Some("application/octet-stream".into()),
        ..Default::default()
    };
    e.vfs
        .upload(&e.inst, dir, f, body(content))
        .await
        .unwrap()
        .id
}

/// The entries of a zip, in order: name → bytes.
fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut out = Vec::new();
            f.read_to_end(&mut out).unwrap();
            (f.name().to_owned(), out)
        })
        .collect()
}

fn md5_b64(b: &[u8]) -> String {
    use base64_like::encode;
    encode(&Md5::digest(b))
}

mod base64_like {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    pub fn encode(b: &[u8]) -> String {
        let mut out = String::new();
        for c in b.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_in_parts_matches_the_layout() {
    let e = env().await;
    let a = mkdir(&e, "", "Alpha").await;
    let b = mkdir(&e, &a, "Beta").await;
    let mut contents: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (dir, path, name, size) in [
        ("", "/top.bin", "top.bin", 3000usize),
        (a.as_str(), "/Alpha/one.bin", "one.bin", 2500),
        (b.as_str(), "/Alpha/Beta/two.bin", "two.bin", 4000),
        (b.as_str(), "/Alpha/Beta/three.txt", "three.txt", 10),
    ] {
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        upload(&e, dir, name, &data).await;
        contents.insert(path.to_owned(), data);
    }
    // An old version of three.txt.
    let three = e
        .vfs
        .get_by_path(&e.inst, "/Alpha/Beta/three.txt")
        .await
        .unwrap();
    let newer = b"newer content".to_vec();
    e.vfs
        .overwrite(&e.inst, &three.id, Overwrite::default(), body(&newer))
        .await
        .unwrap();
    let old = contents
        .insert("/Alpha/Beta/three.txt".into(), newer)
        .unwrap();
    let versions = e.vfs.versions_of(&e.inst, &three.id).await.unwrap();
    assert_eq!(versions.len(), 1, "an old version is kept");
    let vid = versions[0]["_id"].as_str().unwrap().to_owned();
    // A custom doctype.
    let custom = Doctype::new("com.example.notes").unwrap();
    let mut doc = serde_json::Map::new();
    doc.insert("_id".into(), json!("note1"));
    doc.insert("text".into(), json!("hello"));
    e.store
        .put(&e.inst.instance_id(), &custom, doc.into_iter().collect())
        .await
        .unwrap();

    let exports =
        Exports::new(e.store.clone(), e.instances.clone(), e.vfs.clone()).with_min_parts_size(4096);
    let opts = ExportOptions {
        parts_size: 4096,
        ..Default::default()
    };
    let mut events = e
        .store
        .event_hub()
        .unwrap()
        .subscribe(&e.inst.instance_id());
    let ex = exports.create(&e.inst, &opts).await.unwrap();
    // The instance's realtime hub saw the document created, then finished.
    let mut seen = Vec::new();
    while let Ok(ev) = events.try_recv() {
        if ev.doctype.as_str() == "io.cozy.exports" {
            seen.push((ev.verb, ev.doc["state"].clone()));
        }
    }
    assert_eq!(
        seen,
        [
            (Verb::Created, json!("exporting")),
            (Verb::Updated, json!("done"))
        ]
    );
    assert_eq!(ex.state, "done");
    assert_eq!(ex.parts_size, 4096);
    assert!(ex.total_size > 0);
    assert!(ex.creation_duration > 0);
    let cursors = ex.parts_cursors.clone().unwrap();
    assert!(cursors.len() >= 2, "{cursors:?}");
    // The stored document is the one answered, in the global store.
    let stored = exports.get(&ex.id).await.unwrap();
    assert_eq!(stored, ex);
    let raw = e
        .store
        .get(
            &InstanceId::global(),
            &Doctype::new("io.cozy.exports").unwrap(),
            &ex.id,
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(raw["parts_cursors"], json!(cursors));

    let mut all: Vec<(String, Vec<u8>)> = Vec::new();
    let mut parts = Vec::new();
    for c in std::iter::once(None).chain(cursors.iter().map(|c| Some(c.as_str()))) {
        let part = exports.open_part(&e.inst, &ex, c).await.unwrap();
        let bytes = part.write(Vec::new()).await.unwrap();
        let entries = unzip(&bytes);
        parts.push(entries.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>());
        all.extend(entries);
    }
    // Part 0: the instance, the custom doctype, the directories (parents first).
    let p0 = &parts[0];
    assert_eq!(p0[0], "My Cozy/Data/instance.json");
    assert!(p0.contains(&"My Cozy/Data/com.example.notes/note1.json".to_owned()));
    let pos = |n: &str| {
        p0.iter()
            .position(|x| x == n)
            .unwrap_or_else(|| panic!("{n} in {p0:?}"))
    };
    assert!(
        pos(&format!(
            "My Cozy/Data/io.cozy.files/{}.json",
            "io.cozy.files.root-dir"
        )) < pos(&format!("My Cozy/Data/io.cozy.files/{a}.json"))
    );
    assert!(
        pos(&format!("My Cozy/Data/io.cozy.files/{a}.json"))
            < pos(&format!("My Cozy/Data/io.cozy.files/{b}.json"))
    );
    let map: BTreeMap<String, Vec<u8>> = all.iter().cloned().collect();
    let inst_json: Value = serde_json::from_slice(&map["My Cozy/Data/instance.json"]).unwrap();
    assert_eq!(inst_json["domain"], "a.localhost");
    assert!(inst_json.get("session_secret").is_none());
    let note: Value =
        serde_json::from_slice(&map["My Cozy/Data/com.example.notes/note1.json"]).unwrap();
    assert_eq!(note["text"], "hello");
    // Every file: its metadata entry right before its content, bytes and md5 equal.
    let mut seen = 0;
    for (i, (name, bytes)) in all.iter().enumerate() {
        if let Some(rest) = name.strip_prefix("My Cozy/Data/io.cozy.files/") {
            let d: Value = serde_json::from_slice(bytes).unwrap();
            if d["type"] != "file" {
                continue;
            }
            let (next, content) = &all[i + 1];
            let path = next.strip_prefix("My Cozy/Files").unwrap();
            assert_eq!(rest, format!("{}.json", d["_id"].as_str().unwrap()));
            assert_eq!(content, &contents[path], "{path}");
            assert_eq!(d["md5sum"].as_str().unwrap(), md5_b64(content));
            seen += 1;
        }
    }
    assert_eq!(seen, contents.len());
    let vname = format!("My Cozy/Data/io.cozy.files.versions/{vid}.json");
    let vi = all.iter().position(|(n, _)| *n == vname).unwrap();
    assert_eq!(all[vi + 1].0, format!("My Cozy/Files/{vid}"));
    assert_eq!(all[vi + 1].1, old);
    // Each file appears in exactly one part.
    let names: Vec<&String> = all.iter().map(|(n, _)| n).collect();
    let mut dedup = names.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), names.len());

    // Bad input.
    assert!(matches!(
        exports
            .open_part(&e.inst, &ex, Some("io.cozy.files/nope"))
            .await,
        Err(MoveError::BadCursor)
    ));
    assert!(matches!(
        exports.get("nope").await,
        Err(MoveError::NotFound)
    ));
    assert!(matches!(
        exports.get_for("b.localhost", &ex.id).await,
        Err(MoveError::NotFound)
    ));
    // Only some doctypes: no files, so no cursors (`null`) and one part.
    let only = ExportOptions {
        with_doctypes: vec!["com.example.notes".into()],
        ..Default::default()
    };
    let partial = exports.create(&e.inst, &only).await.unwrap();
    assert_eq!(partial.parts_cursors, None);
    assert_eq!(partial.to_doc()["parts_cursors"], Value::Null);
    let bytes = exports
        .open_part(&e.inst, &partial, None)
        .await
        .unwrap()
        .write(Vec::new())
        .await
        .unwrap();
    let names: Vec<String> = unzip(&bytes).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "My Cozy/Data/instance.json",
            "My Cozy/Data/com.example.notes/note1.json"
        ]
    );
    assert!(matches!(
        exports
            .open_part(&e.inst, &partial, Some(&cursors[0]))
            .await,
        Err(MoveError::BadCursor)
    ));

    // A finished export does not block a new one, which removes the old archive.
    let second = exports.create(&e.inst, &opts).await.unwrap();
    assert!(matches!(
        exports.open_part(&e.inst, &ex, None).await,
        Err(MoveError::NotFound)
    ));
    assert!(exports.open_part(&e.inst, &second, None).await.is_ok());
    // One still exporting (younger than 24 h) does: 409.
    let mut running = second.to_doc();
    running.shift_remove("_id");
    running.shift_remove("_rev");
    running.insert("state".into(), json!("exporting"));
    e.store
        .put(
            &InstanceId::global(),
            &Doctype::new("io.cozy.exports").unwrap(),
            running,
        )
        .await
        .unwrap();
    assert!(matches!(
        exports.create(&e.inst, &opts).await,
        Err(MoveError::Conflict)
    ));
}

#[tokio::test]
async fn expired_exports_are_removed_with_their_archive() {
    let e = env().await;
    let exports = Exports::new(e.store.clone(), e.instances.clone(), e.vfs.clone());
    upload(&e, "", "a.txt", b"hello").await;
    let short = ExportOptions {
        max_age: 1_000_000_000,
        ..Default::default()
    };
    let old = exports.create(&e.inst, &short).await.unwrap();
    let archive = e
        ._dir
        .path()
        .join("exports")
        .join("a.localhost")
        .join(format!("{}.tar.gz", old.id));
    assert!(archive.exists());
    assert_eq!(
        exports.remove_expired().await.unwrap(),
        0,
        "nothing expired yet"
    );
    assert!(exports.get(&old.id).await.is_ok());
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(exports.remove_expired().await.unwrap(), 1);
    assert!(!archive.exists());
    assert!(matches!(
        exports.get(&old.id).await,
        Err(hearth_move::MoveError::NotFound)
    ));
}
