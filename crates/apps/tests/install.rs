//! The apps service on a real SQLite store, real instances, real files, directory
//! registries in a temporary directory and HTTP registries on loopback.

// Test helpers panic on failure: that is how they report it.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use flate2::Compression;
use flate2::write::GzEncoder;
use hearth_apps::{AppKind, Apps, AppsError, InstalledApp, Registries};
use hearth_core::{Doctype, JsonMap};
use hearth_instances::{CreateOptions, Instance, Instances, InstancesConfig, ScryptCost};
use hearth_store::{DocStore, GetOptions, StoreError};
use hearth_store_sqlite::{SqliteOptions, SqliteStore};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

const W: AppKind = AppKind::Webapp;
const K: AppKind = AppKind::Konnector;

// ---------------------------------------------------------------------------
// Environment

struct Env {
    apps: Apps,
    store: Arc<dyn DocStore>,
    inst: Instance,
    dir: tempfile::TempDir,
}

impl Env {
    fn apps_root(&self) -> PathBuf {
        self.dir.path().join("apps")
    }

    fn kind_dir(&self, kind: AppKind) -> PathBuf {
        self.apps_root()
            .join(&self.inst.domain)
            .join(kind.dir_name())
    }

    /// A directory for test inputs (tarballs, folders, registries).
    fn input(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join("inputs").join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    async fn doc(&self, doctype: &str, id: &str) -> Option<JsonMap> {
        match self
            .store
            .get(
                &self.inst.instance_id(),
                &Doctype::new(doctype).unwrap(),
                id,
                GetOptions::default(),
            )
            .await
        {
            Ok(d) => Some(d),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => panic!("{e}"),
        }
    }

    /// Nothing of `slug` anywhere: no document, no permission, no directory, no
    /// staging leftovers.
    async fn assert_nothing(&self, kind: AppKind, slug: &str) {
        assert!(
            matches!(
                self.apps.get(&self.inst, kind, slug).await,
                Err(AppsError::NotInstalled)
            ),
            "{slug}: still installed"
        );
        assert_eq!(
            self.apps.permissions(&self.inst, kind, slug).await.unwrap(),
            None
        );
        assert!(self.doc(kind.doctype(), &kind.doc_id(slug)).await.is_none());
        assert!(
            self.doc("io.cozy.permissions", &kind.doc_id(slug))
                .await
                .is_none()
        );
        assert!(!self.apps.app_dir(&self.inst, kind, slug).exists());
        let leftovers = dot_entries(&self.kind_dir(kind), slug);
        assert!(leftovers.is_empty(), "{slug}: leftovers {leftovers:?}");
    }
}

fn dot_entries(kind_dir: &Path, slug: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(kind_dir) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!(".{slug}.")))
        .collect()
}

async fn env_with(registries: Registries, context: Option<&str>) -> Env {
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
    let instances = Instances::open(
        store.clone(),
        InstancesConfig {
            fs_root: dir.path().join("files"),
            scrypt: ScryptCost::FAST,
        },
    )
    .await
    .unwrap();
    let inst = instances
        .create(CreateOptions {
            domain: "alice.test:8080".into(),
            context: context.map(str::to_owned),
            ..Default::default()
        })
        .await
        .unwrap();
    let apps = Apps::new(
        store.clone(),
        Arc::new(instances),
        dir.path().join("apps"),
        registries,
    );
    Env {
        apps,
        store,
        inst,
        dir,
    }
}

fn registries(default: &[&str]) -> Registries {
    let mut r = Registries::new();
    r.insert(
        "default".into(),
        default.iter().map(|s| s.to_string()).collect(),
    );
    r
}

// ---------------------------------------------------------------------------
// Packages

enum Entry {
    File(&'static str, Vec<u8>),
    Dir(&'static str),
    /// A regular file whose name is written raw in the header (no checks).
    RawName(&'static str, Vec<u8>),
    Symlink(&'static str, &'static str),
    HardLink(&'static str, &'static str),
}

fn file(path: &'static str, body: impl Into<Vec<u8>>) -> Entry {
    Entry::File(path, body.into())
}

fn manifest_file(kind: AppKind, manifest: &Value) -> Entry {
    let name = match kind {
        AppKind::Webapp => "manifest.webapp",
        AppKind::Konnector => "manifest.konnector",
    };
    file(name, manifest.to_string())
}

fn prefixed_manifest(prefix: &'static str, manifest: &Value) -> Entry {
    let path: &'static str = Box::leak(format!("{prefix}/manifest.webapp").into_boxed_str());
    file(path, manifest.to_string())
}

fn tarball(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for e in entries {
        let mut h = Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        match e {
            Entry::File(path, body) => {
                h.set_entry_type(EntryType::Regular);
                h.set_size(body.len() as u64);
                b.append_data(&mut h, path, body.as_slice()).unwrap();
            }
            Entry::Dir(path) => {
                h.set_entry_type(EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            }
            Entry::RawName(name, body) => {
                h.set_entry_type(EntryType::Regular);
                h.set_size(body.len() as u64);
                let raw = &mut h.as_old_mut().name;
                raw[..name.len()].copy_from_slice(name.as_bytes());
                h.set_cksum();
                b.append(&h, body.as_slice()).unwrap();
            }
            Entry::Symlink(path, target) | Entry::HardLink(path, target) => {
                h.set_entry_type(if matches!(e, Entry::Symlink(..)) {
                    EntryType::Symlink
                } else {
                    EntryType::Link
                });
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap().finish().unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn demo_manifest(version: &str) -> Value {
    json!({
        "name": "Demo",
        "slug": "demo",
        "editor": "Hearth",
        "version": version,
        "type": "webapp",
        "icon": "icon.svg",
        "permissions": {
            "settings": {"type": "io.cozy.settings", "verbs": ["GET"], "description": "settings"},
            "todos": {"type": "io.cozy.todos"}
        },
        "routes": {"/": {"folder": "/", "index": "index.html", "public": false}}
    })
}

fn demo_package(version: &str) -> Vec<u8> {
    tarball(&[
        manifest_file(W, &demo_manifest(version)),
        file("index.html", format!("<html>demo {version}</html>")),
        Entry::Dir("js"),
        file("js/app.js", "console.log(1)"),
    ])
}

/// Writes `<dir>/tarballs/<slug>-<version>.tar.gz` and its version documents
/// (`<dir>/registry/<slug>/<channel>/latest` and `<dir>/registry/<slug>/<version>`).
fn publish(
    dir: &Path,
    slug: &str,
    kind: &str,
    version: &str,
    package: &[u8],
    manifest: &Value,
) -> Value {
    let tarball = format!("tarballs/{slug}-{version}.tar.gz");
    std::fs::create_dir_all(dir.join("tarballs")).unwrap();
    std::fs::write(dir.join(&tarball), package).unwrap();
    let doc = json!({
        "slug": slug, "type": kind, "version": version,
        "url": tarball, "sha256": sha256(package), "size": package.len().to_string(),
        "created_at": "2026-01-01T00:00:00Z", "manifest": manifest,
    });
    write_version_doc(dir, slug, "stable", &doc);
    doc
}

fn write_version_doc(dir: &Path, slug: &str, channel: &str, doc: &Value) {
    let base = dir.join("registry").join(slug);
    std::fs::create_dir_all(base.join(channel)).unwrap();
    std::fs::write(base.join(channel).join("latest"), doc.to_string()).unwrap();
    std::fs::write(base.join(doc["version"].as_str().unwrap()), doc.to_string()).unwrap();
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

// ---------------------------------------------------------------------------
// A tiny HTTP server: path → (status, body); every answer closes its connection.

type Routes = Arc<Mutex<HashMap<String, (u16, Vec<u8>)>>>;

fn serve(routes: Routes) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let routes = routes.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (status, body) = routes
                    .lock()
                    .unwrap()
                    .get(&path)
                    .cloned()
                    .unwrap_or((404, b"{\"message\":\"not found\"}".to_vec()));
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            });
        }
    });
    format!("http://{addr}")
}

fn routes() -> Routes {
    Arc::new(Mutex::new(HashMap::new()))
}

// ---------------------------------------------------------------------------
// Installs

async fn check_demo_installed(e: &Env, app: &InstalledApp, version: &str, source: &str) {
    assert_eq!(app.kind, W);
    assert_eq!(app.slug, "demo");
    assert_eq!(app.version, version);
    assert_eq!(app.state, "ready");
    assert_eq!(app.source, source);
    assert_eq!(app.manifest.name, "Demo");
    assert_eq!(
        hearth_apps::manifest_field(&app.manifest, "editor"),
        Some(&json!("Hearth"))
    );

    // The files.
    let dir = e.apps.app_dir(&e.inst, W, "demo");
    assert_eq!(
        dir,
        e.apps_root()
            .join("alice.test:8080")
            .join("apps")
            .join("demo")
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("index.html")).unwrap(),
        format!("<html>demo {version}</html>")
    );
    assert!(dir.join("manifest.webapp").is_file());
    assert!(dir.join("js/app.js").is_file());
    assert!(dot_entries(&e.kind_dir(W), "demo").is_empty());

    // The app document.
    let doc = e.doc("io.cozy.apps", "io.cozy.apps/demo").await.unwrap();
    assert_eq!(doc["slug"], "demo");
    assert_eq!(doc["name"], "Demo");
    assert_eq!(doc["editor"], "Hearth");
    assert_eq!(doc["state"], "ready");
    assert_eq!(doc["version"], version);
    assert_eq!(doc["source"], source);
    assert_eq!(doc["checksum"].as_str().unwrap().len(), 64);
    assert!(doc["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(doc["updated_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        doc["permissions"]["todos"],
        json!({"type": "io.cozy.todos"})
    );
    assert_eq!(doc["routes"]["/"]["index"], "index.html");
    assert_eq!(app.doc, doc, "install returns the stored document");

    // The permission document.
    let perm = e
        .doc("io.cozy.permissions", "io.cozy.apps/demo")
        .await
        .unwrap();
    assert_eq!(perm["type"], "app");
    assert_eq!(perm["source_id"], "io.cozy.apps/demo");
    assert_eq!(perm["permissions"], doc["permissions"]);
    assert_eq!(perm["cozyMetadata"]["createdByApp"], "demo");
    let set = e
        .apps
        .permissions(&e.inst, W, "demo")
        .await
        .unwrap()
        .unwrap();
    assert!(set.allows_whole_type("GET", "io.cozy.settings"));
    assert!(!set.allows_whole_type("PUT", "io.cozy.settings"));
    assert!(set.allows_whole_type("DELETE", "io.cozy.todos"));
    assert!(!set.allows_whole_type("GET", "io.cozy.files"));
    assert_eq!(app.manifest.permissions, set);

    // get and list agree with install.
    assert_eq!(&e.apps.get(&e.inst, W, "demo").await.unwrap(), app);
    let list = e.apps.list(&e.inst, W).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(&list[0], app);
    assert!(e.apps.list(&e.inst, K).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_from_a_directory_registry() {
    let reg = tempfile::tempdir().unwrap();
    let e = env_with(registries(&[&file_url(reg.path())]), None).await;
    publish(
        reg.path(),
        "demo",
        "webapp",
        "1.0.0",
        &demo_package("1.0.0"),
        &demo_manifest("1.0.0"),
    );
    let app = e.apps.install(&e.inst, W, "demo", None).await.unwrap();
    check_demo_installed(&e, &app, "1.0.0", "registry://demo/stable").await;
    assert_eq!(
        app.doc["checksum"],
        sha256(&std::fs::read(reg.path().join("tarballs/demo-1.0.0.tar.gz")).unwrap())
    );

    // An exact version, and a konnector (with its hook) beside the web app.
    let konn = json!({
        "name": "Demo konnector", "version": "2.0.0", "type": "konnector",
        "on_delete_account": "on-delete.js", "parameters": {"greeting": "hello"},
        "permissions": {"records": {"type": "io.cozy.demo.records", "verbs": ["GET", "POST"]}}
    });
    let package = tarball(&[
        manifest_file(K, &konn),
        file("index.js", "run()"),
        file("on-delete.js", "bye()"),
    ]);
    publish(
        reg.path(),
        "demo-konnector",
        "konnector",
        "2.0.0",
        &package,
        &konn,
    );
    let k = e
        .apps
        .install(
            &e.inst,
            K,
            "demo-konnector",
            Some("registry://demo-konnector/2.0.0"),
        )
        .await
        .unwrap();
    assert_eq!(k.version, "2.0.0");
    assert_eq!(
        k.manifest.on_delete_account.as_deref(),
        Some("on-delete.js")
    );
    assert!(e.kind_dir(K).join("demo-konnector/on-delete.js").is_file());
    let perm = e
        .doc("io.cozy.permissions", "io.cozy.konnectors/demo-konnector")
        .await
        .unwrap();
    assert_eq!(perm["type"], "konnector");
    assert_eq!(perm["source_id"], "io.cozy.konnectors/demo-konnector");
    assert!(
        e.doc("io.cozy.konnectors", "io.cozy.konnectors/demo-konnector")
            .await
            .is_some()
    );
    assert_eq!(e.apps.list(&e.inst, K).await.unwrap().len(), 1);
    assert_eq!(e.apps.list(&e.inst, W).await.unwrap().len(), 1);
    // A web app and a konnector are separate namespaces.
    assert!(matches!(
        e.apps.get(&e.inst, W, "demo-konnector").await,
        Err(AppsError::NotInstalled)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_from_an_http_registry() {
    // The first registry knows nothing (404 moves on); the second has the app,
    // its tarball under a relative URL with a `tar_prefix`.
    let empty = serve(routes());
    let r = routes();
    let base = serve(r.clone());
    let package = tarball(&[
        Entry::Dir("demo-1.1.0"),
        prefixed_manifest("demo-1.1.0", &demo_manifest("1.1.0")),
        file("demo-1.1.0/index.html", "<html>demo 1.1.0</html>"),
        file("demo-1.1.0/js/app.js", "x"),
        file("README-outside-prefix.md", "ignored"),
    ]);
    let doc = json!({
        "slug": "demo", "type": "webapp", "version": "1.1.0",
        "url": "tarballs/demo-1.1.0.tgz", "sha256": sha256(&package),
        "tar_prefix": "demo-1.1.0", "manifest": demo_manifest("1.1.0"),
    });
    {
        let mut r = r.lock().unwrap();
        r.insert(
            "/registry/demo/beta/latest".into(),
            (200, doc.to_string().into_bytes()),
        );
        r.insert("/tarballs/demo-1.1.0.tgz".into(), (200, package));
    }
    let e = env_with(registries(&[&empty, &format!("{base}/")]), None).await;
    let app = e
        .apps
        .install(&e.inst, W, "demo", Some("registry://demo/beta"))
        .await
        .unwrap();
    check_demo_installed(&e, &app, "1.1.0", "registry://demo/beta").await;
    assert!(
        !e.apps
            .app_dir(&e.inst, W, "demo")
            .join("README-outside-prefix.md")
            .exists()
    );

    // A registry failing with another status stops the search: 502-like error.
    let broken = routes();
    broken.lock().unwrap().insert(
        "/registry/other/stable/latest".into(),
        (500, b"{\"message\":\"boom\"}".to_vec()),
    );
    let broken = serve(broken);
    let e = env_with(registries(&[&broken, &base]), None).await;
    let err = e.apps.install(&e.inst, W, "other", None).await.unwrap_err();
    assert!(
        matches!(&err, AppsError::Fetch(m) if m.contains("500")),
        "{err:?}"
    );
    e.assert_nothing(W, "other").await;

    // An https registry that cannot be reached: a clear error naming it.
    let e = env_with(registries(&["https://apps-registry.invalid/"]), None).await;
    let err = e.apps.install(&e.inst, W, "demo", None).await.unwrap_err();
    assert!(
        matches!(&err, AppsError::Fetch(m) if m.contains("apps-registry.invalid")),
        "{err:?}"
    );
    e.assert_nothing(W, "demo").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_context_registries_come_first() {
    let ctx_reg = tempfile::tempdir().unwrap();
    let default_reg = tempfile::tempdir().unwrap();
    for (dir, v) in [(&ctx_reg, "3.0.0"), (&default_reg, "1.0.0")] {
        publish(
            dir.path(),
            "demo",
            "webapp",
            v,
            &demo_package(v),
            &demo_manifest(v),
        );
    }
    let mut regs = registries(&[&file_url(default_reg.path())]);
    regs.insert("acme".into(), vec![file_url(ctx_reg.path())]);
    let e = env_with(regs.clone(), Some("acme")).await;
    assert_eq!(
        e.apps.registries_for(&e.inst),
        vec![file_url(ctx_reg.path()), file_url(default_reg.path())]
    );
    let app = e.apps.install(&e.inst, W, "demo", None).await.unwrap();
    assert_eq!(app.version, "3.0.0");
    let e = env_with(regs, None).await;
    let app = e.apps.install(&e.inst, W, "demo", None).await.unwrap();
    assert_eq!(app.version, "1.0.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_from_an_http_tarball() {
    // A single top-level directory without tar_prefix is stripped too.
    let package = tarball(&[
        prefixed_manifest("package", &demo_manifest("1.2.0")),
        file("package/index.html", "<html>demo 1.2.0</html>"),
        file("package/js/app.js", "x"),
    ]);
    let sum = sha256(&package);
    let r = routes();
    r.lock()
        .unwrap()
        .insert("/dl/demo.tar.gz".into(), (200, package));
    let base = serve(r);
    let e = env_with(Registries::new(), None).await;
    let source = format!("{base}/dl/demo.tar.gz#{sum}");
    let app = e
        .apps
        .install(&e.inst, W, "demo", Some(&source))
        .await
        .unwrap();
    check_demo_installed(&e, &app, "1.2.0", &source).await;
    assert_eq!(app.doc["checksum"], sum);

    // A wrong checksum in the fragment, a missing tarball.
    let e = env_with(Registries::new(), None).await;
    let wrong = format!("{base}/dl/demo.tar.gz#{}", "0".repeat(64));
    let err = e
        .apps
        .install(&e.inst, W, "demo", Some(&wrong))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AppsError::BadArchive(m) if m.contains("checksum")),
        "{err:?}"
    );
    e.assert_nothing(W, "demo").await;
    let err = e
        .apps
        .install(&e.inst, W, "demo", Some(&format!("{base}/missing.tgz")))
        .await
        .unwrap_err();
    assert!(matches!(err, AppsError::SourceNotFound(_)), "{err:?}");
    e.assert_nothing(W, "demo").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_from_a_folder_and_a_local_tarball() {
    let e = env_with(Registries::new(), None).await;
    let folder = e.input("demo-src");
    std::fs::write(
        folder.join("manifest.webapp"),
        demo_manifest("0.9.0").to_string(),
    )
    .unwrap();
    std::fs::write(folder.join("index.html"), "<html>demo 0.9.0</html>").unwrap();
    std::fs::create_dir_all(folder.join("js")).unwrap();
    std::fs::write(folder.join("js/app.js"), "x").unwrap();
    std::fs::create_dir_all(folder.join(".git/objects")).unwrap();
    std::fs::write(folder.join(".git/HEAD"), "ref").unwrap();
    let source = file_url(&folder);
    let app = e
        .apps
        .install(&e.inst, W, "demo", Some(&source))
        .await
        .unwrap();
    check_demo_installed(&e, &app, "0.9.0", &source).await;
    assert!(!e.apps.app_dir(&e.inst, W, "demo").join(".git").exists());
    // The source folder is untouched.
    assert!(folder.join("index.html").is_file());

    // A local tarball (a plain, ungzipped tar works too).
    let k = json!({"name": "K", "version": "1.0.0", "type": "konnector"});
    let gz = tarball(&[manifest_file(K, &k), file("index.js", "x")]);
    let mut plain = Vec::new();
    std::io::copy(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut plain).unwrap();
    let path = e.input("tarballs").join("k.tar");
    std::fs::write(&path, &plain).unwrap();
    let konn = e
        .apps
        .install(&e.inst, K, "k", Some(&file_url(&path)))
        .await
        .unwrap();
    assert_eq!(konn.version, "1.0.0");
    assert_eq!(konn.doc["checksum"], sha256(&plain));
    assert!(e.kind_dir(K).join("k/index.js").is_file());
}

// ---------------------------------------------------------------------------
// Updates and uninstalls

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_to_a_newer_version() {
    let reg = tempfile::tempdir().unwrap();
    let e = env_with(registries(&[&file_url(reg.path())]), None).await;
    publish(
        reg.path(),
        "demo",
        "webapp",
        "1.0.0",
        &demo_package("1.0.0"),
        &demo_manifest("1.0.0"),
    );
    let v1 = e.apps.install(&e.inst, W, "demo", None).await.unwrap();
    let dir = e.apps.app_dir(&e.inst, W, "demo");
    assert!(dir.join("js/app.js").is_file());

    // Nothing new: no change at all.
    let same = e.apps.update(&e.inst, W, "demo", None).await.unwrap();
    assert_eq!(same, v1);

    // 2.0.0: a file gone, a file added, a permission added.
    let mut m2 = demo_manifest("2.0.0");
    m2["permissions"]["files"] = json!({"type": "io.cozy.files", "verbs": ["GET"]});
    let p2 = tarball(&[
        manifest_file(W, &m2),
        file("index.html", "<html>demo 2.0.0</html>"),
        file("new.js", "y"),
    ]);
    publish(reg.path(), "demo", "webapp", "2.0.0", &p2, &m2);
    let v2 = e.apps.update(&e.inst, W, "demo", None).await.unwrap();
    assert_eq!(v2.version, "2.0.0");
    assert_eq!(v2.state, "ready");
    assert_eq!(v2.doc["created_at"], v1.doc["created_at"]);
    assert_ne!(v2.doc["_rev"], v1.doc["_rev"]);
    assert_eq!(v2.doc["checksum"], sha256(&p2));
    assert_eq!(
        std::fs::read_to_string(dir.join("index.html")).unwrap(),
        "<html>demo 2.0.0</html>"
    );
    assert!(dir.join("new.js").is_file());
    assert!(
        !dir.join("js").exists(),
        "files of the old version are gone"
    );
    assert!(dot_entries(&e.kind_dir(W), "demo").is_empty());
    let set = e
        .apps
        .permissions(&e.inst, W, "demo")
        .await
        .unwrap()
        .unwrap();
    assert!(set.allows_whole_type("GET", "io.cozy.files"));
    let perm = e
        .doc("io.cozy.permissions", "io.cozy.apps/demo")
        .await
        .unwrap();
    assert_eq!(perm["cozyMetadata"]["createdByAppVersion"], "2.0.0");
    assert_eq!(e.apps.get(&e.inst, W, "demo").await.unwrap(), v2);

    // A broken 3.0.0 (bad checksum) leaves 2.0.0 working.
    let mut doc3 = publish(
        reg.path(),
        "demo",
        "webapp",
        "3.0.0",
        &demo_package("3.0.0"),
        &demo_manifest("3.0.0"),
    );
    doc3["sha256"] = json!("1".repeat(64));
    write_version_doc(reg.path(), "demo", "stable", &doc3);
    let err = e.apps.update(&e.inst, W, "demo", None).await.unwrap_err();
    assert!(matches!(err, AppsError::BadArchive(_)), "{err:?}");
    // So does a 3.0.0 asking for a forbidden permission.
    let mut m3 = demo_manifest("3.0.0");
    m3["permissions"]["evil"] = json!({"type": "io.cozy.instances"});
    let p3 = tarball(&[manifest_file(W, &m3), file("index.html", "evil")]);
    publish(reg.path(), "demo", "webapp", "3.0.0", &p3, &m3);
    let err = e.apps.update(&e.inst, W, "demo", None).await.unwrap_err();
    assert!(matches!(err, AppsError::ForbiddenPermission(_)), "{err:?}");
    assert_eq!(e.apps.get(&e.inst, W, "demo").await.unwrap(), v2);
    assert_eq!(
        std::fs::read_to_string(dir.join("index.html")).unwrap(),
        "<html>demo 2.0.0</html>"
    );
    assert!(dot_entries(&e.kind_dir(W), "demo").is_empty());

    // An explicit source: pinned back to 1.0.0, which becomes the stored source.
    let back = e
        .apps
        .update(&e.inst, W, "demo", Some("registry://demo/stable/1.0.0"))
        .await
        .unwrap();
    assert_eq!(back.version, "1.0.0");
    assert_eq!(back.source, "registry://demo/stable/1.0.0");
    assert!(dir.join("js/app.js").is_file());

    // Updating what is not installed.
    assert!(matches!(
        e.apps.update(&e.inst, W, "nothing", None).await,
        Err(AppsError::NotInstalled)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_update_is_repaired() {
    let reg = tempfile::tempdir().unwrap();
    let e = env_with(registries(&[&file_url(reg.path())]), None).await;
    publish(
        reg.path(),
        "demo",
        "webapp",
        "1.0.0",
        &demo_package("1.0.0"),
        &demo_manifest("1.0.0"),
    );
    e.apps.install(&e.inst, W, "demo", None).await.unwrap();
    let dir = e.apps.app_dir(&e.inst, W, "demo");
    // A crash between the two renames of a swap: the files are aside, with a
    // staging directory left behind.
    let kind_dir = e.kind_dir(W);
    std::fs::rename(&dir, kind_dir.join(".demo.old-abcdef")).unwrap();
    std::fs::create_dir_all(kind_dir.join(".demo.staging-123456/package")).unwrap();
    let app = e.apps.update(&e.inst, W, "demo", None).await.unwrap();
    assert_eq!(app.version, "1.0.0");
    assert!(dir.join("index.html").is_file());
    assert!(dot_entries(&kind_dir, "demo").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninstall_removes_files_documents_and_permissions() {
    let reg = tempfile::tempdir().unwrap();
    let e = env_with(registries(&[&file_url(reg.path())]), None).await;
    publish(
        reg.path(),
        "demo",
        "webapp",
        "1.0.0",
        &demo_package("1.0.0"),
        &demo_manifest("1.0.0"),
    );
    let installed = e.apps.install(&e.inst, W, "demo", None).await.unwrap();
    let removed = e.apps.uninstall(&e.inst, W, "demo").await.unwrap();
    assert_eq!(removed, installed);
    e.assert_nothing(W, "demo").await;
    assert!(e.apps.list(&e.inst, W).await.unwrap().is_empty());
    assert!(matches!(
        e.apps.uninstall(&e.inst, W, "demo").await,
        Err(AppsError::NotInstalled)
    ));
    // And it can be installed again.
    let again = e.apps.install(&e.inst, W, "demo", None).await.unwrap();
    assert_eq!(again.version, "1.0.0");
    assert!(again.doc["_rev"].as_str().unwrap().starts_with("3-"));
}

// ---------------------------------------------------------------------------
// Refusals

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_packages_install_nothing() {
    let reg = tempfile::tempdir().unwrap();
    let e = env_with(registries(&[&file_url(reg.path())]), None).await;
    let base = demo_manifest("1.0.0");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut m = base.clone();
        f(&mut m);
        m
    };
    let escape_target = e.dir.path().join("evil-abs");
    let abs_name: &'static str = Box::leak(escape_target.display().to_string().into_boxed_str());

    struct Case {
        name: &'static str,
        slug: &'static str,
        entries: Vec<Entry>,
        expect: fn(&AppsError) -> bool,
    }
    let bad_manifest: fn(&AppsError) -> bool = |e| matches!(e, AppsError::BadManifest(_));
    let bad_archive: fn(&AppsError) -> bool = |e| matches!(e, AppsError::BadArchive(_));
    let cases = vec![
        Case {
            name: "manifest without name",
            slug: "demo",
            entries: vec![manifest_file(
                W,
                &with(&|m| {
                    m.as_object_mut().unwrap().remove("name");
                }),
            )],
            expect: |e| matches!(e, AppsError::BadManifest(m) if m == "missing field \"name\""),
        },
        Case {
            name: "manifest without version",
            slug: "demo",
            entries: vec![manifest_file(
                W,
                &with(&|m| {
                    m.as_object_mut().unwrap().remove("version");
                }),
            )],
            expect: |e| matches!(e, AppsError::BadManifest(m) if m == "missing field \"version\""),
        },
        Case {
            name: "manifest of another slug",
            slug: "other",
            entries: vec![manifest_file(W, &base)],
            expect: |e| matches!(e, AppsError::BadManifest(m) if m.contains("\"slug\"")),
        },
        Case {
            name: "malformed manifest",
            slug: "demo",
            entries: vec![file("manifest.webapp", "{not json")],
            expect: bad_manifest,
        },
        Case {
            name: "a konnector installed as a web app",
            slug: "demo",
            entries: vec![manifest_file(W, &with(&|m| m["type"] = json!("konnector")))],
            expect: |e| matches!(e, AppsError::BadManifest(m) if m.contains("konnector")),
        },
        Case {
            name: "forbidden permission",
            slug: "demo",
            entries: vec![manifest_file(
                W,
                &with(&|m| {
                    m["permissions"]["all"] =
                        json!({"type": "io.cozy.instances", "verbs": ["GET"]});
                }),
            )],
            expect: |e| matches!(e, AppsError::ForbiddenPermission(m) if m.contains("io.cozy.instances")),
        },
        Case {
            name: "wildcard permission",
            slug: "demo",
            entries: vec![manifest_file(
                W,
                &with(&|m| {
                    m["permissions"]["all"] = json!({"type": "*"});
                }),
            )],
            expect: |e| matches!(e, AppsError::ForbiddenPermission(_)),
        },
        Case {
            name: "no manifest",
            slug: "demo",
            entries: vec![file("index.html", "x")],
            expect: |e| matches!(e, AppsError::SourceNotFound(m) if m.contains("manifest")),
        },
        Case {
            name: "../ entry",
            slug: "demo",
            entries: vec![
                manifest_file(W, &base),
                Entry::RawName("../evil-dotdot", b"evil".to_vec()),
            ],
            expect: bad_archive,
        },
        Case {
            name: "nested ../ entry",
            slug: "demo",
            entries: vec![
                manifest_file(W, &base),
                Entry::RawName("js/../../../evil-nested", b"evil".to_vec()),
            ],
            expect: bad_archive,
        },
        Case {
            name: "absolute entry",
            slug: "demo",
            entries: vec![
                manifest_file(W, &base),
                Entry::RawName(abs_name, b"evil".to_vec()),
            ],
            expect: bad_archive,
        },
        Case {
            name: "symlink entry",
            slug: "demo",
            entries: vec![
                manifest_file(W, &base),
                Entry::Symlink("link", "/etc/passwd"),
            ],
            expect: bad_archive,
        },
        Case {
            name: "hard link entry",
            slug: "demo",
            entries: vec![
                manifest_file(W, &base),
                Entry::HardLink("hard", "manifest.webapp"),
            ],
            expect: bad_archive,
        },
    ];
    let tarballs = e.input("bad");
    for (i, case) in cases.into_iter().enumerate() {
        let path = tarballs.join(format!("{i}.tar.gz"));
        std::fs::write(&path, tarball(&case.entries)).unwrap();
        let err = e
            .apps
            .install(&e.inst, W, case.slug, Some(&file_url(&path)))
            .await
            .unwrap_err();
        assert!((case.expect)(&err), "{}: {err:?}", case.name);
        e.assert_nothing(W, case.slug).await;
        // The same package through a registry gives the same answer.
        let package = tarball(&case.entries);
        publish(reg.path(), case.slug, "webapp", "1.0.0", &package, &base);
        let err = e
            .apps
            .install(&e.inst, W, case.slug, None)
            .await
            .unwrap_err();
        assert!((case.expect)(&err), "{} (registry): {err:?}", case.name);
        e.assert_nothing(W, case.slug).await;
    }
    for escaped in ["evil-dotdot", "evil-nested", "evil-abs"] {
        assert!(!e.dir.path().join(escaped).exists(), "{escaped}");
        assert!(!e.kind_dir(W).join(escaped).exists(), "{escaped}");
        assert!(!e.apps_root().join(escaped).exists(), "{escaped}");
    }

    // The registry's checksum does not match the tarball.
    let mut doc = publish(
        reg.path(),
        "demo",
        "webapp",
        "1.0.0",
        &demo_package("1.0.0"),
        &base,
    );
    doc["sha256"] = json!("f".repeat(64));
    write_version_doc(reg.path(), "demo", "stable", &doc);
    let err = e.apps.install(&e.inst, W, "demo", None).await.unwrap_err();
    assert!(
        matches!(&err, AppsError::BadArchive(m) if m.contains("checksum")),
        "{err:?}"
    );
    e.assert_nothing(W, "demo").await;

    // The registry has a web app under that slug, not a konnector.
    publish(
        reg.path(),
        "demo",
        "webapp",
        "1.0.0",
        &demo_package("1.0.0"),
        &base,
    );
    let err = e.apps.install(&e.inst, K, "demo", None).await.unwrap_err();
    assert!(
        matches!(&err, AppsError::BadManifest(m) if m.contains("webapp")),
        "{err:?}"
    );
    e.assert_nothing(K, "demo").await;

    // Unknown slugs, versions, channels, files.
    for source in [
        "registry://unknown",
        "registry://demo/9.9.9",
        "registry://demo/beta",
    ] {
        let err = e
            .apps
            .install(&e.inst, W, "demo", Some(source))
            .await
            .unwrap_err();
        assert!(
            matches!(err, AppsError::SourceNotFound(_)),
            "{source}: {err:?}"
        );
        e.assert_nothing(W, "demo").await;
    }
    let missing = file_url(&e.dir.path().join("nowhere.tar.gz"));
    let err = e
        .apps
        .install(&e.inst, W, "demo", Some(&missing))
        .await
        .unwrap_err();
    assert!(matches!(err, AppsError::SourceNotFound(_)), "{err:?}");
    let err = e
        .apps
        .install(&e.inst, W, "unknown", None)
        .await
        .unwrap_err();
    assert!(matches!(err, AppsError::SourceNotFound(_)), "{err:?}");
    e.assert_nothing(W, "unknown").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_slugs_and_sources() {
    let e = env_with(Registries::new(), None).await;
    for (slug, source) in [
        ("Demo", None),
        ("-demo", None),
        ("de/mo", None),
        ("..", None),
        ("demo", Some("ftp://example.com/demo.tgz")),
        ("demo", Some("registry://demo/nightly")),
        ("demo", Some("file://relative/path")),
        ("demo", Some("git://github.com/cozy/demo")),
    ] {
        let err = e.apps.install(&e.inst, W, slug, source).await.unwrap_err();
        assert!(
            matches!(err, AppsError::InvalidInput(_)),
            "{slug} {source:?}: {err:?}"
        );
    }
    // No registry configured at all.
    let err = e.apps.install(&e.inst, W, "demo", None).await.unwrap_err();
    assert!(matches!(err, AppsError::SourceNotFound(_)), "{err:?}");
    // Reads of a slug that cannot exist are plain "not installed".
    assert!(matches!(
        e.apps.get(&e.inst, W, "../x").await,
        Err(AppsError::NotInstalled)
    ));
    assert!(matches!(
        e.apps.uninstall(&e.inst, W, "../x").await,
        Err(AppsError::NotInstalled)
    ));
    assert_eq!(e.apps.permissions(&e.inst, W, "../x").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installing_twice_is_refused() {
    let reg = tempfile::tempdir().unwrap();
    let e = env_with(registries(&[&file_url(reg.path())]), None).await;
    publish(
        reg.path(),
        "demo",
        "webapp",
        "1.0.0",
        &demo_package("1.0.0"),
        &demo_manifest("1.0.0"),
    );
    let first = e.apps.install(&e.inst, W, "demo", None).await.unwrap();
    let err = e.apps.install(&e.inst, W, "demo", None).await.unwrap_err();
    assert!(matches!(err, AppsError::AlreadyInstalled), "{err:?}");
    assert_eq!(e.apps.get(&e.inst, W, "demo").await.unwrap(), first);
    assert!(
        e.apps
            .app_dir(&e.inst, W, "demo")
            .join("index.html")
            .is_file()
    );

    // After an uninstall, two installs at once: one wins, the other is refused,
    // and nothing is mixed.
    e.apps.uninstall(&e.inst, W, "demo").await.unwrap();
    let (a, b) = tokio::join!(
        e.apps.install(&e.inst, W, "demo", None),
        e.apps.install(&e.inst, W, "demo", None),
    );
    assert_eq!(
        [&a, &b].iter().filter(|r| r.is_ok()).count(),
        1,
        "{a:?} {b:?}"
    );
    assert!(
        matches!(a, Err(AppsError::AlreadyInstalled))
            || matches!(b, Err(AppsError::AlreadyInstalled))
    );
    assert!(dot_entries(&e.kind_dir(W), "demo").is_empty());
    assert!(
        e.apps
            .app_dir(&e.inst, W, "demo")
            .join("index.html")
            .is_file()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_a_crash_are_cleaned_at_the_next_install() {
    let reg = tempfile::tempdir().unwrap();
    let e = env_with(registries(&[&file_url(reg.path())]), None).await;
    publish(
        reg.path(),
        "demo",
        "webapp",
        "1.0.0",
        &demo_package("1.0.0"),
        &demo_manifest("1.0.0"),
    );
    // A crash after the files were placed but before the documents: a directory
    // without a document, and a staging directory.
    let kind_dir = e.kind_dir(W);
    std::fs::create_dir_all(kind_dir.join("demo")).unwrap();
    std::fs::write(kind_dir.join("demo/stale.txt"), "old").unwrap();
    std::fs::create_dir_all(kind_dir.join(".demo.staging-aaaaaa/package")).unwrap();
    // Another slug's leftovers are not touched.
    std::fs::create_dir_all(kind_dir.join(".demo-two.staging-bbbbbb")).unwrap();
    assert!(matches!(
        e.apps.get(&e.inst, W, "demo").await,
        Err(AppsError::NotInstalled)
    ));
    e.apps.install(&e.inst, W, "demo", None).await.unwrap();
    assert!(!kind_dir.join("demo/stale.txt").exists());
    assert!(kind_dir.join("demo/index.html").is_file());
    assert!(dot_entries(&kind_dir, "demo").is_empty());
    assert!(kind_dir.join(".demo-two.staging-bbbbbb").exists());
}
