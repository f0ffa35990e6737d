//! Import (spec move 2): a round trip between two instances of one server through
//! their real HTTP endpoints, an archive built here as the Cozy stack writes it
//! (deflate, data descriptors) served by a stand-in server, and bad archives.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Method, StatusCode};
use hearth_apps::Registries;
use hearth_core::JsonMap;
use hearth_jobs::JobsConfig;
use hearth_mail::{MailConfig, Mailer};
use hearth_store::GetOptions;
use hearth_vfs::{NewDir, NewFile, Overwrite};
use md5::Digest;
use serde_json::{Value, json};
use support::{Env, dt, started_env};

const A: &str = "a.localhost";
const B: &str = "b.localhost";

fn stream(b: Vec<u8>) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Unpin + Send {
    futures_util::stream::iter([Ok(Bytes::from(b))])
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/make-registry.sh"
    );
    let st = std::process::Command::new("sh")
        .arg(script)
        .arg(&registry)
        .status()
        .unwrap();
    assert!(st.success());
    let mut registries = Registries::new();
    registries.insert(
        "default".into(),
        vec![format!("file://{}", registry.display())],
    );
    let e = started_env(move |state| {
        let outbox = state.instances.fs_root().join("outbox");
        state
            .with_jobs(
                JobsConfig {
                    retry_delay: Duration::from_millis(100),
                    ..JobsConfig::default()
                },
                Mailer::new(MailConfig::default(), outbox).unwrap(),
            )
            .with_apps(registries, None)
            .with_export_min_parts_size(256 * 1024)
    })
    .await;
    std::mem::forget(dir);
    e
}

fn outbox(e: &Env) -> Vec<String> {
    let dir = e.state.instances.fs_root().join("outbox");
    let mut out = Vec::new();
    for f in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(std::fs::read_to_string(f.path()).unwrap_or_default());
    }
    out
}

/// Every live document of a doctype, without `_rev`, by id.
async fn docs(e: &Env, domain: &str, doctype: &str) -> BTreeMap<String, JsonMap> {
    let mut docs = support::docs(e, domain, doctype).await;
    for d in docs.values_mut() {
        d.shift_remove("_rev");
    }
    docs
}

async fn content(e: &Env, domain: &str, id: &str) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let inst = e.state.instances.get_str(domain).await.unwrap();
    let f = e.state.vfs.get(&inst, id).await.unwrap();
    let mut r = e
        .state
        .vfs
        .blobs()
        .open(f.blob(domain), 0, None)
        .await
        .unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.unwrap();
    out
}

async fn version_content(e: &Env, domain: &str, file: &str, v: &str) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut r = e
        .state
        .vfs
        .blobs()
        .open_version(domain, file, v)
        .await
        .unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.unwrap();
    out
}

/// Nested folders, `n` small files (every tenth with an old version), one large file,
/// a contact, custom documents, a konnector trigger and an installed app.
async fn fill(e: &Env, n: usize, large: usize) {
    let st = &e.state;
    let inst = st.instances.get_str(A).await.unwrap();
    let mut dirs = vec![String::new()];
    for (i, name) in ["Photos 2024", "Docs", "Docs/Deep", "Docs/Deep/Deeper"]
        .iter()
        .enumerate()
    {
        let parent = if name.contains('/') {
            dirs[i].clone()
        } else {
            String::new()
        };
        let leaf = name.rsplit('/').next().unwrap();
        let d = st
            .vfs
            .create_dir(
                &inst,
                &parent,
                NewDir {
                    name: leaf.into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        dirs.push(d.id);
    }
    for i in 0..n {
        let data: Vec<u8> = format!("file {i} ").repeat(1 + i % 50).into_bytes();
        let f = NewFile {
            name: format!("f{i:04}.txt"),
            tags: vec![format!("t{}", i % 3)],
            ..Default::default()
        };
        let doc = st
            .vfs
            .upload(&inst, &dirs[i % dirs.len()], f, stream(data))
            .await
            .unwrap();
        if i % 10 == 0 {
            st.vfs
                .overwrite(
                    &inst,
                    &doc.id,
                    Overwrite::default(),
                    stream(format!("new {i}").into_bytes()),
                )
                .await
                .unwrap();
        }
    }
    st.vfs
        .upload(
            &inst,
            "",
            NewFile {
                name: "photo.png".into(),
                content_type: Some("image/png".into()),
                ..Default::default()
            },
            stream(support::png(64, 48)),
        )
        .await
        .unwrap();
    let big: Vec<u8> = (0..large).map(|i| (i % 251) as u8).collect();
    st.vfs
        .upload(
            &inst,
            &dirs[3],
            NewFile {
                name: "big.bin".into(),
                ..Default::default()
            },
            stream(big),
        )
        .await
        .unwrap();
    let id = inst.instance_id();
    for i in 0..30 {
        st.store
            .put(
                &id,
                &dt("io.cozy.custom.notes"),
                json!({"_id": format!("note{i}"), "n": i, "text": "é"})
                    .as_object()
                    .unwrap()
                    .clone(),
            )
            .await
            .unwrap();
    }
    st.store
        .put(
            &id,
            &dt("io.cozy.contacts"),
            json!({"_id": "friend", "fullname": "Bob", "email": [{"address": "bob@example.net"}]})
                .as_object()
                .unwrap()
                .clone(),
        )
        .await
        .unwrap();
    let cli = e
        .token(A, "io.cozy.apps io.cozy.konnectors io.cozy.triggers")
        .await;
    let res = e
        .call(
            A,
            Some(&cli),
            Method::POST,
            "/apps/demo",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    let trigger = json!({"data": {"attributes": {"type": "@cron", "arguments": "0 0 3 * * *", "worker": "konnector", "message": {"konnector": "demo-konnector"}}}});
    let res = e
        .call(
            A,
            Some(&cli),
            Method::POST,
            "/jobs/triggers",
            &[("content-type", "application/json")],
            Body::from(trigger.to_string()),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
}

/// The manifest URL of a fresh admin export of A.
async fn export_a(e: &Env) -> String {
    let res = e
        .admin(
            Method::POST,
            &format!("/instances/{A}/export?admin-req=true&wait=true"),
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    assert_eq!(res.json()["state"], "done", "{}", res.text());
    let list = e
        .admin(
            Method::GET,
            &format!("/instances/{A}/exports"),
            Body::empty(),
        )
        .await;
    let id = list.json()[0]["_id"].as_str().unwrap().to_owned();
    let inst = e.state.instances.get_str(A).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mac = hearth_move::mac::encode(&inst.session_secret, &id, now);
    format!("http://{A}:{}/move/exports/{mac}", e.addr.port())
}

async fn import(e: &Env, domain: &str, manifest: &str) -> Value {
    let q: String = url_encode(manifest);
    let res = e
        .admin(
            Method::POST,
            &format!("/instances/{domain}/import?manifest_url={q}&wait=true"),
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    res.json()
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// What must be equal between source and target for a file document.
fn comparable(mut d: JsonMap) -> JsonMap {
    for k in ["cozyMetadata", "_rev"] {
        d.shift_remove(k);
    }
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_between_two_instances() {
    let e = env().await;
    e.create_instance(A, "&Email=alice@example.net&PublicName=Alice")
        .await;
    e.create_instance(B, "&Email=bob@target.example&PublicName=Bob")
        .await;
    fill(&e, 1000, 200 << 20).await;
    let manifest = export_a(&e).await;
    let exports = e
        .admin(
            Method::GET,
            &format!("/instances/{A}/exports"),
            Body::empty(),
        )
        .await;
    let cursors = exports.json()[0]["parts_cursors"].as_array().unwrap().len();
    assert!(cursors >= 2, "several parts: {cursors}");

    let record = import(&e, B, &manifest).await;
    assert_eq!(record["state"], "done", "{record}");
    let report = &record["report"];
    let files = &report["doctypes"]["io.cozy.files"];
    // 1,002 files and 8 directories (the root and the trash are not imported).
    assert_eq!(files["imported_docs"], json!(1002 + 8), "{report}");
    assert_eq!(files["skipped"], json!(2), "{report}");
    assert_eq!(
        report["doctypes"]["io.cozy.files.versions"]["imported_docs"],
        json!(100),
        "{report}"
    );
    assert_eq!(report["parts"], json!(cursors + 1));

    // The tree: same ids, names, parents, sizes, md5s, tags, metadata; same bytes.
    let (fa, fb) = (
        docs(&e, A, "io.cozy.files").await,
        docs(&e, B, "io.cozy.files").await,
    );
    assert_eq!(fa.len(), fb.len());
    for (id, da) in &fa {
        if id == hearth_vfs::ROOT_DIR_ID || id == hearth_vfs::TRASH_DIR_ID {
            continue; // the target's own, not imported (spec move 2.7)
        }
        let db = fb
            .get(id)
            .unwrap_or_else(|| panic!("{id} missing on the target"));
        assert_eq!(comparable(da.clone()), comparable(db.clone()), "{id}");
        if da["type"] == "file" && da["size"].as_u64().unwrap() < 1 << 20 {
            assert_eq!(content(&e, A, id).await, content(&e, B, id).await, "{id}");
        }
    }
    let big = fb.values().find(|d| d["name"] == "big.bin").unwrap();
    let md5 = md5::Md5::digest(content(&e, B, big["_id"].as_str().unwrap()).await);
    assert_eq!(
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, md5),
        big["md5sum"].as_str().unwrap()
    );
    // Old versions: same documents and content.
    let (va, vb) = (
        docs(&e, A, "io.cozy.files.versions").await,
        docs(&e, B, "io.cozy.files.versions").await,
    );
    assert_eq!(va.len(), 100);
    assert_eq!(va, vb);
    for id in va.keys().take(10) {
        let (f, v) = id.split_once('/').unwrap();
        assert_eq!(
            version_content(&e, A, f, v).await,
            version_content(&e, B, f, v).await
        );
    }
    // Documents: custom doctype and contacts as they were, but the owner's contact
    // has the target's email.
    assert_eq!(
        docs(&e, A, "io.cozy.custom.notes").await,
        docs(&e, B, "io.cozy.custom.notes").await
    );
    let cb = docs(&e, B, "io.cozy.contacts").await;
    assert_eq!(
        cb["friend"],
        docs(&e, A, "io.cozy.contacts").await["friend"]
    );
    let me = cb
        .values()
        .find(|c| c.get("me") == Some(&json!(true)))
        .unwrap();
    assert_eq!(
        me["email"],
        json!([{"address": "bob@target.example", "primary": true}])
    );
    // The target keeps its own settings; the konnector trigger kept its id; the app
    // was installed again (from the registry), with its permissions.
    let sb = docs(&e, B, "io.cozy.settings").await;
    assert_eq!(
        sb["io.cozy.settings.instance"]["email"],
        "bob@target.example"
    );
    assert!(sb["io.cozy.settings.instance"].get("importing").is_none());
    let ta: Vec<String> = docs(&e, A, "io.cozy.triggers")
        .await
        .into_values()
        .filter(|t| t["worker"] == "konnector")
        .map(|t| t["_id"].as_str().unwrap().to_owned())
        .collect();
    let tb = docs(&e, B, "io.cozy.triggers").await;
    assert_eq!(ta.len(), 1);
    assert!(tb.contains_key(&ta[0]), "{tb:?}");
    assert!(
        docs(&e, B, "io.cozy.apps")
            .await
            .contains_key("io.cozy.apps/demo")
    );
    assert!(
        docs(&e, B, "io.cozy.permissions")
            .await
            .contains_key("io.cozy.apps/demo")
    );
    // Its service is scheduled again, from its manifest.
    assert!(
        tb.values()
            .any(|t| t["worker"] == "service" && t["message"]["slug"] == "demo"),
        "{tb:?}"
    );
    // Thumbnails are not in archives: they are made again for the imported images.
    let photo = fb.values().find(|d| d["name"] == "photo.png").unwrap()["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let binst = e.state.instances.get_str(B).await.unwrap();
    support::eventually(30, "thumbnails of the imported image", || async {
        e.state
            .vfs
            .has_thumbnails(&binst, &photo)
            .await
            .unwrap()
            .then_some(())
    })
    .await;
    // Unblocked, and its owner got the mail.
    let b = e.state.instances.get_str(B).await.unwrap();
    assert!(!b.blocked, "{:?}", b.blocking_reason);
    assert!(outbox(&e).iter().any(|m| m.contains("To: Bob <bob@target.example>") || m.contains("bob@target.example")));
    // The source is untouched.
    let a = e.state.instances.get_str(A).await.unwrap();
    assert!(!a.blocked);
    assert_eq!(
        docs(&e, A, "io.cozy.settings").await["io.cozy.settings.instance"]["email"],
        "alice@example.net"
    );
}

// ---- A stand-in source serving crafted archives ----

/// Serves `/move/exports/X` (a done manifest with `cursors`) and
/// `/move/exports/data/X[?cursor=]` (the parts) on loopback; answers the manifest URL.
async fn stand_in(parts: Vec<Vec<u8>>, cursors: Vec<String>) -> String {
    use axum::extract::{Query, State};
    use axum::routing::get;
    type Parts = std::sync::Arc<(Vec<Vec<u8>>, Vec<String>)>;
    let shared: Parts = std::sync::Arc::new((parts, cursors));
    async fn manifest(State(p): State<Parts>) -> axum::Json<Value> {
        axum::Json(
            json!({"data": {"type": "io.cozy.exports", "id": "x1", "attributes": {
            "domain": "src.example", "state": "done", "parts_cursors": p.1, "created_at": "2026-01-01T00:00:00Z",
            "expires_at": "2099-01-01T00:00:00Z", "total_size": 100, "parts_size": 1 << 30}}}),
        )
    }
    async fn data(State(p): State<Parts>, Query(q): Query<BTreeMap<String, String>>) -> Vec<u8> {
        let i = match q.get("cursor") {
            None => 0,
            Some(c) => 1 + p.1.iter().position(|x| x == c).unwrap(),
        };
        p.0[i].clone()
    }
    let app = axum::Router::new()
        .route("/move/exports/x1", get(manifest))
        .route("/move/exports/data/x1", get(data))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://src.localhost:{port}/move/exports/x1")
}

fn md5_b64(b: &[u8]) -> String {
    base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        md5::Md5::digest(b),
    )
}

/// A zip as the Cozy stack writes one: deflated entries, mode 0640. (Its data
/// descriptors are what Hearth's own parts use too: the round trip reads those.)
fn cozy_zip(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o640);
        for (name, body) in entries {
            z.start_file(*name, opts).unwrap();
            z.write_all(body).unwrap();
        }
        z.finish().unwrap();
    }
    out.into_inner()
}

fn j(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

/// Part 0 and part 1 of a small Cozy archive.
fn cozy_archive() -> (Vec<Vec<u8>>, Vec<String>) {
    let hello = b"hello from the Cozy stack\n".to_vec();
    let photo = vec![7u8; 5000];
    let old = b"older".to_vec();
    let part0 = cozy_zip(&[
        (
            "My Cozy/Data/instance.json",
            j(json!({"domain": "src.example"})),
        ),
        (
            "My Cozy/Data/io.cozy.contacts/c1.json",
            j(json!({"_id": "c1", "_rev": "3-abc", "fullname": "Claude"})),
        ),
        (
            "My Cozy/Data/io.cozy.contacts/me.json",
            j(
                json!({"_id": "me", "_rev": "1-a", "me": true, "email": [{"address": "old@src.example", "primary": true}]}),
            ),
        ),
        (
            "My Cozy/Data/io.cozy.sessions/s1.json",
            j(json!({"_id": "s1"})),
        ),
        (
            "My Cozy/Data/io.cozy.settings/io.cozy.settings.instance.json",
            j(json!({"_id": "io.cozy.settings.instance", "email": "old@src.example"})),
        ),
        (
            "My Cozy/Data/io.cozy.apps/io.cozy.apps/nowhere.json",
            j(json!({"_id": "io.cozy.apps/nowhere", "slug": "nowhere"})),
        ),
        (
            "My Cozy/Data/io.cozy.triggers/t1.json",
            j(
                json!({"_id": "t1", "type": "@event", "arguments": "io.cozy.files", "worker": "thumbnail"}),
            ),
        ),
        (
            "My Cozy/Data/io.cozy.files/io.cozy.files.root-dir.json",
            j(json!({"_id": "io.cozy.files.root-dir", "type": "directory", "path": "/"})),
        ),
        (
            "My Cozy/Data/io.cozy.files/d1.json",
            j(
                json!({"_id": "d1", "_rev": "1-x", "type": "directory", "name": "Papiers", "dir_id": "io.cozy.files.root-dir", "path": "/Papiers", "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z", "tags": []}),
            ),
        ),
        (
            "My Cozy/Data/io.cozy.files/f1.json",
            j(
                json!({"_id": "f1", "_rev": "2-y", "type": "file", "name": "hello.txt", "dir_id": "d1", "size": hello.len(), "md5sum": md5_b64(&hello), "mime": "text/plain", "class": "text", "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-02-01T00:00:00Z", "tags": ["x"], "metadata": {"carbonCopy": true, "note": 1}}),
            ),
        ),
        ("My Cozy/Files/Papiers/hello.txt", hello),
    ]);
    let part1 = cozy_zip(&[
        (
            "My Cozy/Data/io.cozy.files/f2.json",
            j(
                json!({"_id": "f2", "type": "file", "name": "photo.jpg", "dir_id": "io.cozy.files.root-dir", "size": photo.len(), "md5sum": md5_b64(&photo), "mime": "image/jpeg", "class": "image", "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z", "tags": []}),
            ),
        ),
        ("My Cozy/Files/photo.jpg", photo),
        (
            "My Cozy/Data/io.cozy.files.versions/f2/1-zzz.json",
            j(
                json!({"_id": "f2/1-zzz", "size": old.len(), "md5sum": md5_b64(&old), "updated_at": "2023-01-01T00:00:00Z"}),
            ),
        ),
        ("My Cozy/Files/f2/1-zzz", old),
    ]);
    (vec![part0, part1], vec!["io.cozy.files/f2".into()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_of_the_cozy_stack_imports() {
    let e = env().await;
    e.create_instance(B, "&Email=bob@target.example").await;
    let (parts, cursors) = cozy_archive();
    let manifest = stand_in(parts, cursors).await;
    let record = import(&e, B, &manifest).await;
    assert_eq!(record["state"], "done", "{record}");
    let files = docs(&e, B, "io.cozy.files").await;
    assert_eq!(files["d1"]["path"], "/Papiers");
    assert_eq!(files["f1"]["dir_id"], "d1");
    assert_eq!(files["f1"]["tags"], json!(["x"]));
    assert_eq!(
        files["f1"]["metadata"],
        json!({"note": 1}),
        "certification flags dropped"
    );
    assert_eq!(content(&e, B, "f1").await, b"hello from the Cozy stack\n");
    assert_eq!(content(&e, B, "f2").await, vec![7u8; 5000]);
    assert_eq!(version_content(&e, B, "f2", "1-zzz").await, b"older");
    let contacts = docs(&e, B, "io.cozy.contacts").await;
    assert_eq!(contacts["c1"]["fullname"], "Claude");
    assert_eq!(
        contacts["me"]["email"],
        json!([{"address": "bob@target.example", "primary": true}])
    );
    assert!(docs(&e, B, "io.cozy.sessions").await.is_empty());
    assert!(
        docs(&e, B, "io.cozy.triggers")
            .await
            .values()
            .all(|t| t["worker"] != "thumbnail")
    );
    assert_eq!(
        docs(&e, B, "io.cozy.settings").await["io.cozy.settings.instance"]["email"],
        "bob@target.example"
    );
    assert_eq!(record["report"]["apps_not_installed"], json!(["nowhere"]));
    let mails = outbox(&e);
    assert!(
        mails.iter().any(|m| m.contains("nowhere")),
        "the end mail lists the app"
    );
}

/// B with a document of its own, then a bad archive: the import fails, B is left
/// unblocked, and either untouched (nothing could be read) or reset clean.
async fn bad_import(e: &Env, parts: Vec<Vec<u8>>, cursors: Vec<String>) -> (Value, bool) {
    let inst = e.state.instances.get_str(B).await.unwrap();
    let id = inst.instance_id();
    let _ = e
        .state
        .store
        .put(
            &id,
            &dt("io.cozy.custom.mine"),
            json!({"_id": "mine"}).as_object().unwrap().clone(),
        )
        .await;
    let manifest = stand_in(parts, cursors).await;
    let record = import(e, B, &manifest).await;
    assert_eq!(record["state"], "errored", "{record}");
    let b = e.state.instances.get_str(B).await.unwrap();
    assert!(!b.blocked);
    let settings = docs(e, B, "io.cozy.settings").await;
    assert!(
        settings["io.cozy.settings.instance"]
            .get("importing")
            .is_none()
    );
    assert_eq!(
        settings["io.cozy.settings.instance"]["email"],
        "bob@target.example"
    );
    let kept = e
        .state
        .store
        .get(
            &id,
            &dt("io.cozy.custom.mine"),
            "mine",
            GetOptions::default(),
        )
        .await
        .is_ok();
    if !kept {
        // Reset clean: the tree is only the root and the trash, no file from the archive.
        let files = docs(e, B, "io.cozy.files").await;
        assert_eq!(files.len(), 2, "{files:?}");
    }
    (record, kept)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_archives_leave_the_target_clean() {
    let e = env().await;
    e.create_instance(B, "&Email=bob@target.example").await;
    let (good, cursors) = cozy_archive();

    // A truncated part 0: refused before anything is destroyed? It is downloaded
    // first, then read after the reset: the target is reset clean.
    let mut truncated = good.clone();
    let half = truncated[0].len() / 2;
    truncated[0].truncate(half);
    let (r, _) = bad_import(&e, truncated, cursors.clone()).await;
    assert!(r["error"].as_str().unwrap().contains("zip"), "{r}");

    // A zip-slip entry.
    let slip = cozy_zip(&[("My Cozy/Files/../../../etc/passwd", b"x".to_vec())]);
    let (r, _) = bad_import(&e, vec![slip], vec![]).await;
    assert!(r["error"].as_str().unwrap().contains("escapes"), "{r}");

    // Content whose MD5 is not the announced one.
    let body = b"tampered".to_vec();
    let md5 = cozy_zip(&[
        (
            "My Cozy/Data/io.cozy.files/f9.json",
            j(
                json!({"_id": "f9", "type": "file", "name": "x.txt", "dir_id": "io.cozy.files.root-dir", "size": body.len(), "md5sum": md5_b64(b"original"), "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z"}),
            ),
        ),
        ("My Cozy/Files/x.txt", body),
    ]);
    let (r, kept) = bad_import(&e, vec![md5], vec![]).await;
    assert!(
        r["error"].as_str().unwrap().to_lowercase().contains("md5"),
        "{r}"
    );
    assert!(!kept);

    // A corrupt JSON document.
    let corrupt = cozy_zip(&[(
        "My Cozy/Data/io.cozy.contacts/c1.json",
        b"{not json".to_vec(),
    )]);
    let (r, _) = bad_import(&e, vec![corrupt], vec![]).await;
    assert!(r["error"].as_str().unwrap().contains("JSON"), "{r}");

    // A part that never downloads (the second one: 404 from the source).
    let (r, _) = bad_import(&e, vec![good[0].clone()], vec!["io.cozy.files/zz".into()]).await;
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("could not be downloaded"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_expired_exports_change_nothing() {
    let e = env().await;
    e.create_instance(A, "&Email=alice@example.net").await;
    e.create_instance(B, "&Email=bob@target.example").await;
    // An export id that does not exist, with a valid MAC.
    let a = e.state.instances.get_str(A).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let unknown = hearth_move::mac::encode(&a.session_secret, "nope", now);
    let b = e.state.instances.get_str(B).await.unwrap();
    e.state
        .store
        .put(
            &b.instance_id(),
            &dt("io.cozy.custom.mine"),
            json!({"_id": "mine"}).as_object().unwrap().clone(),
        )
        .await
        .unwrap();
    let url = format!("http://{A}:{}/move/exports/{unknown}", e.addr.port());
    let record = import(&e, B, &url).await;
    assert_eq!(record["state"], "errored");
    assert!(
        record["error"].as_str().unwrap().contains("404"),
        "{record}"
    );
    // An expired link (a MAC older than 7 days).
    let old = hearth_move::mac::encode(&a.session_secret, "nope", now - 8 * 24 * 3600);
    let url = format!("http://{A}:{}/move/exports/{old}", e.addr.port());
    let record = import(&e, B, &url).await;
    assert_eq!(record["state"], "errored");
    assert!(
        record["error"].as_str().unwrap().contains("401"),
        "{record}"
    );
    // B was not reset: its own document is still there.
    let inst = e.state.instances.get_str(B).await.unwrap();
    assert!(
        e.state
            .store
            .get(
                &inst.instance_id(),
                &dt("io.cozy.custom.mine"),
                "mine",
                GetOptions::default()
            )
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_routes_precheck_import_and_waiting_page() {
    let e = env().await;
    e.create_instance(A, "&Email=alice@example.net").await;
    e.create_instance(B, "&Email=bob@target.example&DiskQuota=1000")
        .await;
    let inst = e.state.instances.get_str(A).await.unwrap();
    e.state
        .vfs
        .upload(
            &inst,
            "",
            NewFile {
                name: "big.bin".into(),
                ..Default::default()
            },
            stream(vec![1u8; 4000]),
        )
        .await
        .unwrap();
    let manifest = export_a(&e).await;
    let mac = manifest.rsplit('/').next().unwrap();
    let settings_link = format!("http://settings.{A}:{}/#/exports/{mac}", e.addr.port());
    let token = e.token(B, "io.cozy.imports").await;
    let body = |url: &str| Body::from(json!({"data": {"attributes": {"url": url}}}).to_string());
    let ct = [("content-type", "application/vnd.api+json")];
    // Not a link: 412 naming `url`.
    let res = e
        .call(
            B,
            Some(&token),
            Method::POST,
            "/move/imports/precheck",
            &ct,
            body("https://example.net/"),
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        res.text()
    );
    assert_eq!(res.json()["errors"][0]["source"]["parameter"], "url");
    // The quota of B (1000 bytes) is too small for 4000 bytes of files: 413.
    let res = e
        .call(
            B,
            Some(&token),
            Method::POST,
            "/move/imports/precheck",
            &ct,
            body(&settings_link),
        )
        .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", res.text());
    // Without the permission: 403.
    let other = e.token(B, "io.cozy.files").await;
    let res = e
        .call(
            B,
            Some(&other),
            Method::POST,
            "/move/imports",
            &ct,
            body(&settings_link),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    // A, with room: 204, then the import: 303 to the waiting page.
    let res = e
        .admin(
            Method::PATCH,
            &format!("/instances/{B}?DiskQuota=100000000"),
            Body::empty(),
        )
        .await;
    assert!(res.status.is_success(), "{}", res.text());
    let res = e
        .call(
            B,
            Some(&token),
            Method::POST,
            "/move/imports/precheck",
            &ct,
            body(&settings_link),
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    let res = e
        .call(
            B,
            Some(&token),
            Method::POST,
            "/move/imports",
            &ct,
            body(&settings_link),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    assert!(
        res.header("location")
            .ends_with(&format!("{B}/move/importing"))
    );
    let page = e
        .call(
            B,
            None,
            Method::GET,
            "/move/importing",
            &[("accept", "text/html")],
            Body::empty(),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("/move/importing/realtime"));
    // The job ends; B is unblocked and has A's file.
    support::eventually(60, "the import", || async {
        let b = e.state.instances.get_str(B).await.unwrap();
        let files = docs(&e, B, "io.cozy.files").await;
        (!b.blocked && files.values().any(|f| f["name"] == "big.bin")).then_some(())
    })
    .await;
}
