//! The files API (`/files`, `/settings/disk-usage`) through the whole router, on a
//! real SQLite store and real files on disk: uploads (small and streamed), checks
//! (MD5, size, quota, names), downloads with ranges, moves, the trash, versions,
//! `_find`, isolation between instances and `fsck`.

// Test helpers panic on failure: that is how they report it.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::{
    Router,
    body::{Body, Bytes},
    http::{Method, Request, StatusCode, header},
};
use base64::Engine;
use futures_util::StreamExt;
use hearth_instances::{Instances, InstancesConfig, ScryptCost};
use hearth_store::DocStore;
use hearth_store_sqlite::{SqliteOptions, SqliteStore};
use hearth_vfs::Problem;
use hearth_web::{AdminAuth, AppState};
use http_body_util::BodyExt;
use md5::{Digest, Md5};
use serde_json::{Value, json};
use tower::ServiceExt;

mod support;
use support::png;

const PASS: &str = "s3cret";

struct Env {
    public: Router,
    admin: Router,
    state: AppState,
    files: PathBuf,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    env_limited(hearth_web::DEFAULT_BODY_LIMIT).await
}

async fn env_limited(body_limit: usize) -> Env {
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
    let instances = Arc::new(Instances::open(store.clone(), config).await.unwrap());
    let state = AppState::new(store, instances)
        .with_admin_auth(AdminAuth::new(Some(PASS.into()), vec![]))
        .with_body_limit(body_limit);
    Env {
        public: hearth_web::router(state.clone()),
        admin: hearth_web::admin_router(state.clone()),
        state,
        files: dir.path().join("files"),
        _dir: dir,
    }
}

struct Res {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
    frames: usize,
}

impl Res {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn send(router: &Router, req: Request<Body>) -> Res {
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let mut body = res.into_body();
    let mut bytes = Vec::new();
    let mut frames = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            frames += 1;
            bytes.extend_from_slice(&data);
        }
    }
    Res {
        status,
        headers,
        body: bytes,
        frames,
    }
}

fn b64_md5(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(data))
}

/// One instance of the test, with a CLI token for the whole files doctype.
struct Client<'a> {
    env: &'a Env,
    host: String,
    token: String,
}

impl Env {
    async fn admin(&self, method: Method, uri: &str) -> Res {
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(":{PASS}"))
        );
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", auth)
            .body(Body::empty())
            .unwrap();
        send(&self.admin, req).await
    }

    async fn instance(&self, domain: &str, extra: &str) -> Client<'_> {
        let res = self
            .admin(Method::POST, &format!("/instances?Domain={domain}{extra}"))
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
        self.client(domain, "io.cozy.files%20io.cozy.settings:GET")
            .await
    }

    async fn client(&self, domain: &str, scope: &str) -> Client<'_> {
        let token = self
            .admin(
                Method::POST,
                &format!("/instances/token?Domain={domain}&Audience=cli&Scope={scope}"),
            )
            .await
            .text();
        Client {
            env: self,
            host: domain.to_owned(),
            token,
        }
    }

    fn disk(&self, domain: &str, path: &str) -> PathBuf {
        self.files.join(domain).join(path.trim_start_matches('/'))
    }

    fn uploads_left(&self, domain: &str) -> usize {
        match std::fs::read_dir(self.files.join(domain).join(".cozy_uploads")) {
            Ok(d) => d.count(),
            Err(_) => 0,
        }
    }
}

impl Client<'_> {
    async fn call(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Res {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", &self.host)
            .header("accept", "application/json")
            .header("authorization", format!("Bearer {}", self.token));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        send(&self.env.public, req.body(body.into()).unwrap()).await
    }

    async fn get(&self, uri: &str) -> Res {
        self.call(Method::GET, uri, &[], Body::empty()).await
    }

    async fn mkdir(&self, parent: &str, name: &str) -> Value {
        let res = self
            .call(
                Method::POST,
                &format!("/files/{parent}?Type=directory&Name={name}"),
                &[("date", "")],
                Body::empty(),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
        res.json()["data"].clone()
    }

    async fn upload(&self, parent: &str, name: &str, content: &[u8]) -> Value {
        let res = self
            .call(
                Method::POST,
                &format!("/files/{parent}?Type=file&Name={name}&Executable=false&MetadataID=&Size=&SourceAccount="),
                &[
                    ("content-type", "text/plain"),
                    ("content-md5", &b64_md5(content)),
                    ("content-length", &content.len().to_string()),
                ],
                content.to_vec(),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
        res.json()["data"].clone()
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

fn rev(v: &Value) -> String {
    v["meta"]["rev"].as_str().unwrap().to_owned()
}

fn error_status(res: &Res) -> String {
    res.json()["errors"][0]["status"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_uploads_and_downloads() {
    let e = env().await;
    let a = e.instance("a.localhost", "").await;
    let docs = a.mkdir("", "Docs").await;
    assert_eq!(docs["type"], "io.cozy.files");
    assert_eq!(docs["attributes"]["type"], "directory");
    assert_eq!(docs["attributes"]["path"], "/Docs");
    assert_eq!(docs["attributes"]["dir_id"], "io.cozy.files.root-dir");
    assert!(docs["attributes"].get("trashed").is_none(), "{docs}");
    assert!(docs["attributes"].get("_id").is_none());
    assert!(e.disk("a.localhost", "/Docs").is_dir(), "mirrored on disk");
    let dir_id = id(&docs);

    let file = a.upload(&dir_id, "hello.txt", b"hello").await;
    let attrs = &file["attributes"];
    assert_eq!(attrs["size"], "5", "sizes are strings");
    assert_eq!(attrs["md5sum"], b64_md5(b"hello"));
    assert_eq!(attrs["mime"], "text/plain");
    assert_eq!(attrs["class"], "text");
    assert_eq!(attrs["trashed"], false);
    assert_eq!(attrs["executable"], false);
    assert_eq!(attrs["path"], "/Docs/hello.txt");
    assert_eq!(file["relationships"]["parent"]["data"]["id"], dir_id);
    assert_eq!(
        std::fs::read(e.disk("a.localhost", "/Docs/hello.txt")).unwrap(),
        b"hello"
    );
    let file_id = id(&file);
    // Stored as a number, served as a string.
    let stored = e
        .state
        .store
        .get(
            &e.state
                .instances
                .get_str("a.localhost")
                .await
                .unwrap()
                .instance_id(),
            &hearth_core::Doctype::new("io.cozy.files").unwrap(),
            &file_id,
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(stored["size"], json!(5));

    // The same name in the same directory: 409.
    let clash = a
        .call(
            Method::POST,
            &format!("/files/{dir_id}?Type=file&Name=hello.txt"),
            &[],
            "again",
        )
        .await;
    assert_eq!(clash.status, StatusCode::CONFLICT);
    assert_eq!(clash.json()["errors"][0]["detail"], "file already exists");

    // Reading: by id, by path, the directory's contents.
    let got = a.get(&format!("/files/{file_id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        got.headers[header::CONTENT_TYPE],
        "application/vnd.api+json"
    );
    assert_eq!(got.json()["data"]["attributes"]["path"], "/Docs/hello.txt");
    let by_path = a.get("/files/metadata?Path=%2FDocs%2Fhello.txt").await;
    assert_eq!(id(&by_path.json()["data"]), file_id);
    let listing = a.get(&format!("/files/{dir_id}")).await.json();
    assert_eq!(
        listing["data"]["relationships"]["contents"]["data"],
        json!([{"type": "io.cozy.files", "id": file_id}])
    );
    assert_eq!(
        listing["data"]["relationships"]["contents"]["meta"]["count"],
        1
    );
    assert_eq!(listing["included"][0]["attributes"]["size"], "5");
    let root = a.get("/files/io.cozy.files.root-dir").await.json();
    let names: Vec<&str> = root["included"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["attributes"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Administrative", "Docs", "Photos"],
        "trash hidden, sorted"
    );
    assert!(root["data"]["relationships"].get("parent").is_none());

    // 404s are JSON:API with a string status (the JS client parses them).
    let missing = a.get("/files/metadata?Path=%2FDocs%2Fnope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json(),
        json!({"errors": [{"status": "404", "title": "Not Found", "detail": "file does not exist", "source": {}}]})
    );
    assert_eq!(error_status(&a.get("/files/nope").await), "404");

    // Downloads: whole, ranges, conditional.
    let dl = a.get(&format!("/files/download/{file_id}")).await;
    assert_eq!(dl.status, StatusCode::OK);
    assert_eq!(dl.body, b"hello");
    let etag = format!("\"{}\"", b64_md5(b"hello"));
    assert_eq!(dl.headers[header::ETAG], etag.as_str());
    assert_eq!(dl.headers[header::CONTENT_TYPE], "text/plain");
    assert_eq!(dl.headers[header::CONTENT_LENGTH], "5");
    assert_eq!(
        dl.headers[header::CONTENT_DISPOSITION],
        "inline; filename=\"hello.txt\""
    );
    assert!(dl.headers.contains_key(header::LAST_MODIFIED));
    let part = a
        .call(
            Method::GET,
            &format!("/files/download/{file_id}?Dl=1"),
            &[("range", "bytes=1-3")],
            Body::empty(),
        )
        .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body, b"ell");
    assert_eq!(part.headers[header::CONTENT_RANGE], "bytes 1-3/5");
    assert!(
        part.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let suffix = a
        .call(
            Method::GET,
            "/files/download?Path=%2FDocs%2Fhello.txt",
            &[("range", "bytes=-2")],
            Body::empty(),
        )
        .await;
    assert_eq!(
        (suffix.status, suffix.body.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &b"lo"[..])
    );
    let outside = a
        .call(
            Method::GET,
            &format!("/files/download/{file_id}"),
            &[("range", "bytes=5-")],
            Body::empty(),
        )
        .await;
    assert_eq!(outside.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(outside.headers[header::CONTENT_RANGE], "bytes */5");
    let cached = a
        .call(
            Method::GET,
            &format!("/files/download/{file_id}"),
            &[("if-none-match", &etag)],
            Body::empty(),
        )
        .await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    assert!(cached.body.is_empty());
    let head = a
        .call(
            Method::HEAD,
            &format!("/files/download/{file_id}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());

    // Disk usage, numbers as strings, no quota when unlimited.
    let usage = a.get("/settings/disk-usage").await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.text());
    let attrs = &usage.json()["data"]["attributes"];
    assert_eq!(attrs["used"], "5");
    assert_eq!(attrs["files"], "5");
    assert!(attrs.get("quota").is_none());
}

/// A body that arrives in 64 KiB chunks and records, while it is being sent, how
/// much of it already reached the temporary file: the upload is written as it comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_uploads_and_downloads_stream() {
    let e = env().await;
    let a = e.instance("a.localhost", "").await;
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 80; // 5 MiB
    let content: Vec<u8> = (0..CHUNK * CHUNKS).map(|i| (i * 7 % 251) as u8).collect();
    let uploads = e.files.join("a.localhost").join(".cozy_uploads");
    let seen_on_disk = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let chunks: Vec<Bytes> = content.chunks(CHUNK).map(Bytes::copy_from_slice).collect();
    let stream = {
        let seen = seen_on_disk.clone();
        futures_util::stream::iter(chunks.into_iter().enumerate()).then(move |(i, c)| {
            let uploads = uploads.clone();
            let seen = seen.clone();
            async move {
                if i % 16 == 15 {
                    // Give the writer a moment, then look at the temporary file.
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    let size = temp_size(&uploads);
                    seen.fetch_max(size, std::sync::atomic::Ordering::Relaxed);
                }
                Ok::<_, std::io::Error>(c)
            }
        })
    };
    let res = a
        .call(
            Method::POST,
            &format!("/files/?Type=file&Name=big.bin&Size={}", CHUNK * CHUNKS),
            &[
                ("content-type", "application/octet-stream"),
                ("content-md5", &b64_md5(&content)),
            ],
            Body::from_stream(stream),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let file = res.json()["data"].clone();
    assert_eq!(file["attributes"]["size"], (CHUNK * CHUNKS).to_string());
    assert_eq!(file["attributes"]["class"], "files");
    let seen = seen_on_disk.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        seen >= (CHUNK * CHUNKS / 2) as u64,
        "the body reached the disk while it was being sent ({seen} bytes seen)"
    );
    assert_eq!(e.uploads_left("a.localhost"), 0);
    assert_eq!(
        std::fs::read(e.disk("a.localhost", "/big.bin")).unwrap(),
        content
    );

    // The download streams too: many bounded frames, not one buffer.
    let dl = a.get(&format!("/files/download/{}", id(&file))).await;
    assert_eq!(dl.status, StatusCode::OK);
    assert!(dl.body == content, "same bytes back");
    assert!(dl.frames >= CHUNKS, "{} frames", dl.frames);
}

fn temp_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_uploads_store_nothing() {
    let e = env().await;
    let a = e.instance("a.localhost", "").await;
    let wrong = a
        .call(
            Method::POST,
            "/files/?Type=file&Name=x.txt",
            &[("content-md5", &b64_md5(b"something else"))],
            "hello",
        )
        .await;
    assert_eq!(wrong.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        wrong.json()["errors"][0]["source"],
        json!({"parameter": "Content-MD5"})
    );
    let short = a
        .call(
            Method::POST,
            "/files/?Type=file&Name=x.txt&Size=10",
            &[],
            "hello",
        )
        .await;
    assert_eq!(short.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        short.json()["errors"][0]["source"],
        json!({"parameter": "Content-Length"})
    );
    let long = a
        .call(
            Method::POST,
            "/files/?Type=file&Name=x.txt",
            &[("content-length", "3")],
            "hello",
        )
        .await;
    assert_eq!(long.status, StatusCode::PRECONDITION_FAILED);
    let malformed = a
        .call(
            Method::POST,
            "/files/?Type=file&Name=x.txt",
            &[("content-md5", "not base64!")],
            "hello",
        )
        .await;
    assert_eq!(malformed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        a.get("/files/metadata?Path=%2Fx.txt").await.status,
        StatusCode::NOT_FOUND
    );
    assert!(!e.disk("a.localhost", "/x.txt").exists());
    assert_eq!(e.uploads_left("a.localhost"), 0, "no temporary file left");
    let usage = a.get("/settings/disk-usage").await.json();
    assert_eq!(usage["data"]["attributes"]["used"], "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_is_checked_before_and_while_writing() {
    let e = env().await;
    let a = e.instance("q.localhost", "&DiskQuota=10").await;
    a.upload("", "eight.txt", b"12345678").await;
    let known = a
        .call(
            Method::POST,
            "/files/?Type=file&Name=five.txt",
            &[("content-length", "5")],
            "12345",
        )
        .await;
    assert_eq!(known.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_status(&known), "413");
    // No size announced: refused while streaming.
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        (0..4).map(|_| Ok(Bytes::from_static(b"123"))).collect();
    let unknown = a
        .call(
            Method::POST,
            "/files/?Type=file&Name=chunked.txt",
            &[],
            Body::from_stream(futures_util::stream::iter(chunks)),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(!e.disk("q.localhost", "/five.txt").exists());
    assert!(!e.disk("q.localhost", "/chunked.txt").exists());
    assert_eq!(e.uploads_left("q.localhost"), 0);
    let usage = a.get("/settings/disk-usage?include=trash").await.json();
    assert_eq!(
        usage["data"]["attributes"],
        json!({"used": "8", "files": "8", "versions": "0", "quota": "10", "trash": "0"})
    );
    // What fits still goes in.
    a.upload("", "two.txt", b"12").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_and_paths_are_refused() {
    let e = env().await;
    let a = e.instance("a.localhost", "").await;
    for name in [
        "..",
        ".",
        "a%2Fb",
        "a%0Ab",
        "nul%00",
        "",
        ".cozy_versions",
        ".cozy_uploads",
    ] {
        for kind in ["directory", "file"] {
            let res = a
                .call(
                    Method::POST,
                    &format!("/files/?Type={kind}&Name={name}"),
                    &[],
                    "x",
                )
                .await;
            assert_eq!(
                res.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{kind} {name:?}: {}",
                res.text()
            );
            assert_eq!(error_status(&res), "422");
        }
    }
    let long = "x".repeat(256);
    let res = a
        .call(
            Method::POST,
            &format!("/files/?Type=directory&Name={long}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad_type = a
        .call(
            Method::POST,
            "/files/?Type=folder&Name=x",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(bad_type.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        bad_type.json()["errors"][0]["source"],
        json!({"pointer": "/data/attributes/type"})
    );
    let escape = a.get("/files/metadata?Path=%2F..%2F..%2Fetc").await;
    assert_eq!(escape.status, StatusCode::UNPROCESSABLE_ENTITY);
    let relative = a.get("/files/metadata?Path=etc").await;
    assert_eq!(relative.status, StatusCode::BAD_REQUEST);
    let dl = a.get("/files/download?Path=%2F..%2Fb.localhost%2Fx").await;
    assert_eq!(dl.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Renaming to a bad name is refused the same way, and changes nothing.
    let dir = a.mkdir("", "Keep").await;
    let res = a
        .call(
            Method::PATCH,
            &format!("/files/{}", id(&dir)),
            &[("content-type", "application/json")],
            json!({"data": {"type": "io.cozy.files", "id": id(&dir), "attributes": {"name": "../out"}}}).to_string(),
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        res.text()
    );
    assert!(e.disk("a.localhost", "/Keep").is_dir());
    assert!(!e.files.join("out").exists());
    assert_eq!(
        a.get("/files/missing-dir-id").await.status,
        StatusCode::NOT_FOUND
    );
    let orphan = a
        .call(
            Method::POST,
            "/files/missing?Type=directory&Name=x",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(orphan.status, StatusCode::NOT_FOUND);
}

async fn patch(a: &Client<'_>, id: &str, attrs: Value, if_match: &str) -> Res {
    a.call(
        Method::PATCH,
        &format!("/files/{id}"),
        &[("content-type", "application/json"), ("if-match", if_match)],
        json!({"data": {"type": "io.cozy.files", "id": id, "attributes": attrs}}).to_string(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renames_and_moves() {
    let e = env().await;
    let a = e.instance("a.localhost", "").await;
    let one = a.mkdir("", "One").await;
    let sub = a.mkdir(&id(&one), "Sub").await;
    let two = a.mkdir("", "Two").await;
    let f = a.upload(&id(&sub), "f.txt", b"data").await;

    // Rename a file (If-Match empty = absent), then with a stale revision: 412.
    let renamed = patch(&a, &id(&f), json!({"name": "g.txt", "tags": ["x"]}), "").await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text());
    let renamed = renamed.json()["data"].clone();
    assert_eq!(renamed["attributes"]["name"], "g.txt");
    assert_eq!(renamed["attributes"]["tags"], json!(["x"]));
    assert!(e.disk("a.localhost", "/One/Sub/g.txt").is_file());
    assert!(!e.disk("a.localhost", "/One/Sub/f.txt").exists());
    let stale = patch(&a, &id(&f), json!({"name": "h.txt"}), &rev(&f)).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        stale.json()["errors"][0]["detail"],
        "Revision does not match"
    );

    // Move a directory with its content: paths below follow, on disk too.
    let moved = patch(&a, &id(&one), json!({"dir_id": id(&two)}), &rev(&one)).await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.text());
    assert_eq!(moved.json()["data"]["attributes"]["path"], "/Two/One");
    assert!(e.disk("a.localhost", "/Two/One/Sub/g.txt").is_file());
    let sub_now = a.get(&format!("/files/{}", id(&sub))).await.json();
    assert_eq!(sub_now["data"]["attributes"]["path"], "/Two/One/Sub");
    let file_now = a
        .get("/files/metadata?Path=%2FTwo%2FOne%2FSub%2Fg.txt")
        .await;
    assert_eq!(file_now.status, StatusCode::OK);
    assert_eq!(id(&file_now.json()["data"]), id(&f));

    // Into itself: 400. Onto a taken name: 409. Into a missing directory: 404.
    let into_self = patch(&a, &id(&two), json!({"dir_id": id(&sub)}), "").await;
    assert_eq!(into_self.status, StatusCode::BAD_REQUEST);
    a.mkdir(&id(&two), "Taken").await;
    let clash = patch(&a, &id(&one), json!({"name": "Taken"}), "").await;
    assert_eq!(clash.status, StatusCode::CONFLICT);
    let nowhere = patch(&a, &id(&one), json!({"dir_id": "nope"}), "").await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    // Moving the root: 400.
    let root = patch(&a, "io.cozy.files.root-dir", json!({"name": "x"}), "").await;
    assert_eq!(root.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trash_restore_and_empty() {
    let e = env().await;
    let a = e.instance("a.localhost", "").await;
    let dir = a.mkdir("", "Dir").await;
    let inner = a.upload(&id(&dir), "in.txt", b"inner").await;
    let f = a.upload("", "note.txt", b"note").await;

    // A file to the trash, with a stale If-Match first.
    let stale = a
        .call(
            Method::DELETE,
            &format!("/files/{}", id(&f)),
            &[("if-match", "1-0")],
            Body::empty(),
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let trashed = a
        .call(
            Method::DELETE,
            &format!("/files/{}", id(&f)),
            &[("if-match", "")],
            Body::empty(),
        )
        .await;
    assert_eq!(trashed.status, StatusCode::OK, "{}", trashed.text());
    let t = trashed.json()["data"]["attributes"].clone();
    assert_eq!(t["trashed"], true);
    assert_eq!(t["dir_id"], "io.cozy.files.trash-dir");
    assert_eq!(t["restore_path"], "/");
    assert_eq!(t["path"], "/.cozy_trash/note.txt");
    assert!(e.disk("a.localhost", "/.cozy_trash/note.txt").is_file());
    let again = a
        .call(
            Method::DELETE,
            &format!("/files/{}", id(&f)),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);

    // A directory to the trash: what is inside is trashed too.
    let trashed_dir = a
        .call(
            Method::DELETE,
            &format!("/files/{}", id(&dir)),
            &[],
            Body::empty(),
        )
        .await
        .json();
    assert_eq!(
        trashed_dir["data"]["attributes"]["path"],
        "/.cozy_trash/Dir"
    );
    assert!(trashed_dir["data"]["attributes"].get("trashed").is_none());
    let inner_now = a.get(&format!("/files/{}", id(&inner))).await.json();
    assert_eq!(inner_now["data"]["attributes"]["trashed"], true);
    assert!(e.disk("a.localhost", "/.cozy_trash/Dir/in.txt").is_file());
    // `{trashed: false}` finds neither trashed files nor directories.
    let live = a
        .call(
            Method::POST,
            "/files/_find",
            &[],
            json!({"selector": {"trashed": false}}).to_string(),
        )
        .await
        .json();
    assert_eq!(live["meta"]["count"], 0, "{live}");
    let listing = a.get("/files/trash").await.json();
    assert_eq!(listing["meta"]["count"], 2);

    // A name clash in the trash gets a suffix; restoring takes the name back.
    let g = a.upload("", "note.txt", b"second").await;
    let g_trashed = a
        .call(
            Method::DELETE,
            &format!("/files/{}", id(&g)),
            &[],
            Body::empty(),
        )
        .await
        .json();
    let g_name = g_trashed["data"]["attributes"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(g_name.starts_with("note.txt ("), "{g_name}");
    let restored = a
        .call(
            Method::POST,
            &format!("/files/trash/{}", id(&g)),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(restored.status, StatusCode::OK, "{}", restored.text());
    let r = restored.json()["data"]["attributes"].clone();
    assert_eq!(r["name"], "note.txt");
    assert_eq!(r["trashed"], false);
    assert!(r.get("restore_path").is_none());
    assert_eq!(
        std::fs::read(e.disk("a.localhost", "/note.txt")).unwrap(),
        b"second"
    );
    let not_trashed = a
        .call(
            Method::POST,
            &format!("/files/trash/{}", id(&g)),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(not_trashed.status, StatusCode::BAD_REQUEST);
    let destroy_live = a
        .call(
            Method::DELETE,
            &format!("/files/trash/{}", id(&g)),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(destroy_live.status, StatusCode::BAD_REQUEST);

    // Restore a directory whose former parent no longer exists: it is recreated.
    let p = a.mkdir("", "P").await;
    let c = a.mkdir(&id(&p), "C").await;
    a.call(
        Method::DELETE,
        &format!("/files/{}", id(&c)),
        &[],
        Body::empty(),
    )
    .await;
    a.call(
        Method::DELETE,
        &format!("/files/{}", id(&p)),
        &[],
        Body::empty(),
    )
    .await;
    a.call(
        Method::DELETE,
        &format!("/files/trash/{}", id(&p)),
        &[],
        Body::empty(),
    )
    .await;
    let back = a
        .call(
            Method::POST,
            &format!("/files/trash/{}", id(&c)),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.text());
    assert_eq!(back.json()["data"]["attributes"]["path"], "/P/C");
    assert!(e.disk("a.localhost", "/P/C").is_dir());

    // Destroy one item, then empty the trash: documents and content are gone.
    let destroyed = a
        .call(
            Method::DELETE,
            &format!("/files/trash/{}", id(&f)),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(destroyed.status, StatusCode::NO_CONTENT);
    assert!(!e.disk("a.localhost", "/.cozy_trash/note.txt").exists());
    let emptied = a
        .call(Method::DELETE, "/files/trash", &[], Body::empty())
        .await;
    assert_eq!(emptied.status, StatusCode::NO_CONTENT);
    assert_eq!(
        a.get(&format!("/files/{}", id(&inner))).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(!e.disk("a.localhost", "/.cozy_trash/Dir").exists());
    assert!(
        e.disk("a.localhost", "/.cozy_trash").is_dir(),
        "the trash itself stays"
    );
    let usage = a.get("/settings/disk-usage").await.json();
    assert_eq!(
        usage["data"]["attributes"]["used"], "6",
        "only note.txt (second) is left"
    );
    let inst = e.state.instances.get_str("a.localhost").await.unwrap();
    assert_eq!(e.state.vfs.fsck(&inst).await.unwrap(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrite_keeps_versions() {
    let e = env().await;
    let a = e.instance("a.localhost", "").await;
    let f = a.upload("", "v.txt", b"one").await;
    let stale = a
        .call(
            Method::PUT,
            &format!("/files/{}?Name=&Type=file", id(&f)),
            &[("if-match", "1-00000000000000000000000000000000")],
            "two!",
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(e.uploads_left("a.localhost"), 0);
    let put = a
        .call(
            Method::PUT,
            &format!("/files/{}?Type=file", id(&f)),
            &[
                ("if-match", &rev(&f)),
                ("content-md5", &b64_md5(b"two!")),
                ("content-type", "text/plain"),
            ],
            "two!",
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text());
    let body = put.json();
    assert_eq!(body["data"]["attributes"]["size"], "4");
    assert_eq!(body["data"]["attributes"]["name"], "v.txt");
    assert_eq!(body["included"][0]["type"], "io.cozy.files.versions");
    assert_eq!(body["included"][0]["attributes"]["size"], "3");
    assert_eq!(
        body["data"]["relationships"]["old_versions"]["data"][0]["id"],
        format!("{}/{}", id(&f), rev(&f))
    );
    assert_eq!(
        std::fs::read(e.disk("a.localhost", "/v.txt")).unwrap(),
        b"two!"
    );
    let kept = e
        .files
        .join("a.localhost/.cozy_versions")
        .join(id(&f))
        .join(rev(&f));
    assert_eq!(std::fs::read(kept).unwrap(), b"one");
    let dl = a.get(&format!("/files/download/{}", id(&f))).await;
    assert_eq!(dl.body, b"two!");
    let usage = a.get("/settings/disk-usage").await.json();
    assert_eq!(
        usage["data"]["attributes"],
        json!({"used": "7", "files": "4", "versions": "3"})
    );
    // At most 20 versions are kept.
    let mut current = rev(&body["data"]);
    for i in 0..22 {
        let content = format!("content {i}");
        let res = a
            .call(
                Method::PUT,
                &format!("/files/{}", id(&f)),
                &[("if-match", &current)],
                content,
            )
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        current = rev(&res.json()["data"]);
    }
    let last = a.get(&format!("/files/{}", id(&f))).await.json();
    assert_eq!(last["included"].as_array().unwrap().len(), 20);
    let on_disk = std::fs::read_dir(e.files.join("a.localhost/.cozy_versions").join(id(&f)))
        .unwrap()
        .count();
    assert_eq!(on_disk, 20);
    let inst = e.state.instances.get_str("a.localhost").await.unwrap();
    assert_eq!(e.state.vfs.fsck(&inst).await.unwrap(), vec![]);
    // A directory cannot be overwritten.
    let dir = a
        .call(Method::PUT, "/files/io.cozy.files.root-dir", &[], "x")
        .await;
    assert_eq!(dir.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_isolated_and_permissions_apply() {
    let e = env().await;
    let a = e.instance("a.localhost", "").await;
    let b = e.instance("b.localhost", "").await;
    let secret = b.upload("", "secret.txt", b"b's").await;
    // A's token on A's host does not find B's file id.
    let res = a.get(&format!("/files/{}", id(&secret))).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let res = a.get(&format!("/files/download/{}", id(&secret))).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    // B's token is not valid on A's host.
    let cross = Client {
        env: &e,
        host: "a.localhost".into(),
        token: b.token.clone(),
    };
    assert_eq!(
        cross.get(&format!("/files/{}", id(&secret))).await.status,
        StatusCode::BAD_REQUEST
    );
    // A token restricted to one directory reads inside it, not elsewhere.
    let shared = a.mkdir("", "Shared").await;
    let inside = a.upload(&id(&shared), "in.txt", b"in").await;
    let outside = a.upload("", "out.txt", b"out").await;
    let limited = e
        .client("a.localhost", &format!("io.cozy.files:GET:{}", id(&shared)))
        .await;
    assert_eq!(
        limited
            .get(&format!("/files/download/{}", id(&inside)))
            .await
            .body,
        b"in"
    );
    let refused = limited
        .get(&format!("/files/download/{}", id(&outside)))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.json(), json!({"error": "Forbidden"}));
    let write = limited
        .call(
            Method::POST,
            &format!("/files/{}?Type=file&Name=n", id(&shared)),
            &[],
            "x",
        )
        .await;
    assert_eq!(write.status, StatusCode::FORBIDDEN);
    let find = limited
        .call(
            Method::POST,
            "/files/_find",
            &[],
            json!({"selector": {}}).to_string(),
        )
        .await;
    assert_eq!(find.status, StatusCode::FORBIDDEN);
    let usage = limited.get("/settings/disk-usage").await;
    assert_eq!(usage.status, StatusCode::FORBIDDEN);
    // No token at all: 401.
    let anonymous = send(
        &e.public,
        Request::get("/files/io.cozy.files.root-dir")
            .header("host", "a.localhost")
            .header("accept", "application/json")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_and_references() {
    let e = env().await;
    let a = e.instance("a.localhost", "").await;
    let dir = a.mkdir("", "Music").await;
    for i in 0..3 {
        a.upload(&id(&dir), &format!("song{i}.mp3"), b"la").await;
    }
    let res = a
        .call(
            Method::POST,
            "/files/_find",
            &[("content-type", "application/json")],
            json!({"selector": {"type": "file", "dir_id": id(&dir)}, "limit": 2}).to_string(),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let body = res.json();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["meta"]["count"], 2_147_483_646, "a full page");
    assert!(body["meta"]["execution_stats"].is_object());
    let next = body["links"]["next"].as_str().unwrap().to_owned();
    assert!(next.starts_with("/files/_find?page[cursor]="));
    assert!(
        body["data"][0]["attributes"]["path"]
            .as_str()
            .unwrap()
            .starts_with("/Music/song")
    );
    assert_eq!(body["data"][0]["attributes"]["size"], "2");
    let rest = a
        .call(
            Method::POST,
            &next,
            &[],
            json!({"selector": {"type": "file", "dir_id": id(&dir)}, "limit": 2}).to_string(),
        )
        .await
        .json();
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest["meta"]["count"], 1);
    assert!(rest.get("links").is_none());
    let projected = a
        .call(
            Method::POST,
            "/files/_find",
            &[],
            json!({"selector": {"name": "song1.mp3"}, "fields": ["name", "path"]}).to_string(),
        )
        .await
        .json();
    let attrs = &projected["data"][0]["attributes"];
    assert_eq!(attrs["path"], "/Music/song1.mp3");
    assert_eq!(attrs["type"], "file");
    assert!(attrs.get("md5sum").is_none());

    // Directory listings page with a cursor.
    let page = a
        .get(&format!("/files/{}?page[limit]=2", id(&dir)))
        .await
        .json();
    assert_eq!(page["included"].as_array().unwrap().len(), 2);
    assert_eq!(
        page["data"]["relationships"]["contents"]["meta"]["count"],
        3
    );
    let next = page["links"]["next"].as_str().unwrap().to_owned();
    let page2 = a.get(&next).await.json();
    assert_eq!(page2["included"].as_array().unwrap().len(), 1);
    assert_eq!(page2["included"][0]["attributes"]["name"], "song2.mp3");
    assert!(page2["links"].get("next").is_none());

    // References.
    let f = a.upload("", "cover.jpg", b"img").await;
    let refs = format!("/files/{}/relationships/referenced_by", id(&f));
    let added = a
        .call(
            Method::POST,
            &refs,
            &[],
            json!({"data": [{"type": "io.cozy.photos.albums", "id": "album1"}, {"type": "io.cozy.photos.albums", "id": "album2"}]}).to_string(),
        )
        .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.text());
    assert_eq!(added.json()["meta"]["count"], 2);
    let removed = a
        .call(
            Method::DELETE,
            &refs,
            &[],
            json!({"data": {"type": "io.cozy.photos.albums", "id": "album1"}}).to_string(),
        )
        .await
        .json();
    assert_eq!(
        removed["data"],
        json!([{"type": "io.cozy.photos.albums", "id": "album2"}])
    );
    let listed = a.get(&refs).await.json();
    assert_eq!(listed["meta"]["count"], 1);
    let file = a.get(&format!("/files/{}", id(&f))).await.json();
    assert_eq!(
        file["data"]["relationships"]["referenced_by"]["data"],
        json!([{"type": "io.cozy.photos.albums", "id": "album2"}])
    );
    assert!(file["data"]["attributes"].get("referenced_by").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_finds_what_changed_behind_our_back() {
    let e = env().await;
    let a = e.instance("a.localhost", "").await;
    let inst = e.state.instances.get_str("a.localhost").await.unwrap();
    assert_eq!(
        e.state.vfs.fsck(&inst).await.unwrap(),
        vec![],
        "a new instance is clean"
    );
    let gone = a.upload("", "gone.txt", b"bye").await;
    let changed = a.upload("", "changed.txt", b"abc").await;
    a.upload("", "ok.txt", b"fine").await;
    std::fs::remove_file(e.disk("a.localhost", "/gone.txt")).unwrap();
    std::fs::write(e.disk("a.localhost", "/changed.txt"), b"xyz").unwrap();
    std::fs::write(e.disk("a.localhost", "/stray.txt"), b"stray").unwrap();
    std::fs::create_dir_all(e.disk("a.localhost", "/Stray/inside")).unwrap();
    let mut problems = e.state.vfs.fsck(&inst).await.unwrap();
    problems.sort_by_key(|p| p.kind());
    assert_eq!(
        problems,
        vec![
            Problem::Md5Mismatch {
                id: id(&changed),
                path: "/changed.txt".into(),
                expected: b64_md5(b"abc"),
                actual: b64_md5(b"xyz"),
            },
            Problem::MissingContent {
                id: id(&gone),
                path: "/gone.txt".into(),
            },
            Problem::OrphanDir {
                path: "/Stray".into()
            },
            Problem::OrphanFile {
                path: "/stray.txt".into(),
                size: 5
            },
        ]
    );
    assert_eq!(problems[1].to_json()["type"], "missing_content");
    // Downloading the missing file says so, as JSON:API.
    let res = a.get(&format!("/files/download/{}", id(&gone))).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(error_status(&res), "404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_respect_names_and_quota() {
    let e = env().await;
    let a = e.instance("c.localhost", "&DiskQuota=10").await;
    let same = futures_util::future::join_all((0..6).map(|i| {
        let a = &a;
        async move {
            a.call(
                Method::POST,
                "/files/?Type=file&Name=same.txt",
                &[],
                format!("v{i}"),
            )
            .await
            .status
        }
    }))
    .await;
    let created = same.iter().filter(|s| **s == StatusCode::CREATED).count();
    assert_eq!(created, 1, "{same:?}");
    assert!(
        same.iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT)
    );
    // 2 bytes used; 8 left: at most two of these 4-byte uploads fit.
    let quota = futures_util::future::join_all((0..5).map(|i| {
        let a = &a;
        async move {
            a.call(
                Method::POST,
                &format!("/files/?Type=file&Name=q{i}.txt"),
                &[],
                "four",
            )
            .await
            .status
        }
    }))
    .await;
    let ok = quota.iter().filter(|s| **s == StatusCode::CREATED).count();
    assert_eq!(ok, 2, "{quota:?}");
    assert!(
        quota
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::PAYLOAD_TOO_LARGE)
    );
    let usage = a.get("/settings/disk-usage").await.json();
    assert_eq!(usage["data"]["attributes"]["used"], "10");
    assert_eq!(e.uploads_left("c.localhost"), 0);
    let inst = e.state.instances.get_str("c.localhost").await.unwrap();
    assert_eq!(e.state.vfs.fsck(&inst).await.unwrap(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_bounded_by_the_quota_not_the_body_limit() {
    let e = env_limited(64 * 1024).await;
    let a = e.instance("a.localhost", "").await;
    // A file larger than the JSON body limit uploads (announced or streamed).
    let announced = a
        .call(
            Method::POST,
            "/files/?Type=file&Name=big.bin",
            &[("content-length", "100000")],
            vec![0u8; 100_000],
        )
        .await;
    assert_eq!(
        announced.status,
        StatusCode::CREATED,
        "{}",
        announced.text()
    );
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..4)
        .map(|_| Ok(Bytes::from(vec![1u8; 32 * 1024])))
        .collect();
    let streamed = a
        .call(
            Method::POST,
            "/files/?Type=file&Name=big2.bin",
            &[],
            Body::from_stream(futures_util::stream::iter(chunks)),
        )
        .await;
    assert_eq!(streamed.status, StatusCode::CREATED, "{}", streamed.text());
    assert_eq!(e.uploads_left("a.localhost"), 0);
    // A JSON body over the limit is still refused before any handler.
    let json = a
        .call(
            Method::POST,
            "/files/_find",
            &[("content-length", "100000")],
            vec![b' '; 100_000],
        )
        .await;
    assert_eq!(json.status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// The width and height of a JPEG, from its start-of-frame segment.
fn jpeg_size(b: &[u8]) -> (u32, u32) {
    assert_eq!(&b[..3], [0xFF, 0xD8, 0xFF], "a JPEG starts with SOI");
    let mut i = 2;
    loop {
        assert_eq!(b[i], 0xFF);
        let marker = b[i + 1];
        let len = usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
        if (0xC0..=0xC3).contains(&marker) {
            let h = u16::from_be_bytes([b[i + 5], b[i + 6]]);
            let w = u16::from_be_bytes([b[i + 7], b[i + 8]]);
            return (u32::from(w), u32::from(h));
        }
        i += 2 + len;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_thumbnails_are_served_by_signed_links() {
    let e = env().await;
    let a = e.instance("a.localhost", "").await;
    e.instance("b.localhost", "").await;
    let content = png(1000, 500);
    let res = a
        .call(
            Method::POST,
            "/files/?Type=file&Name=pic.png",
            &[("content-type", "image/png")],
            content,
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let file = res.json()["data"].clone();
    let file_id = id(&file);
    assert_eq!(file["attributes"]["class"], "image");
    let links = &file["links"];
    assert_eq!(links["self"], format!("/files/{file_id}"));
    let small = links["small"].as_str().unwrap().to_owned();
    assert!(
        small.starts_with(&format!("/files/{file_id}/thumbnails/")) && small.ends_with("/small"),
        "{small}"
    );
    for format in ["tiny", "medium", "large"] {
        assert_eq!(
            links[format].as_str().unwrap(),
            small.replace("/small", &format!("/{format}"))
        );
    }
    // The same links from the file and from its directory's listing.
    let got = a.get(&format!("/files/{file_id}")).await.json();
    assert_eq!(got["data"]["links"]["small"], small.as_str());
    let root = a.get("/files/io.cozy.files.root-dir").await.json();
    let listed = root["included"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == file_id.as_str())
        .unwrap();
    assert_eq!(listed["links"]["small"], small.as_str());
    // Other files have none.
    let text = a.upload("", "a.txt", b"hello").await;
    assert!(text["links"].get("small").is_none(), "{text}");

    // No token: the secret of the link is the permission.
    let fetch = |host: &'static str, uri: String| {
        let router = e.public.clone();
        async move {
            let req = Request::builder()
                .uri(uri)
                .header("host", host)
                .body(Body::empty())
                .unwrap();
            send(&router, req).await
        }
    };
    // Not made yet: 404, JSON:API.
    let missing = fetch("a.localhost", small.clone()).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text());
    assert_eq!(error_status(&missing), "404");

    let inst = e.state.instances.get_str("a.localhost").await.unwrap();
    assert!(e.state.vfs.make_thumbnails(&inst, &file_id).await.unwrap());
    let thumb = fetch("a.localhost", small.clone()).await;
    assert_eq!(thumb.status, StatusCode::OK, "{}", thumb.text());
    assert_eq!(thumb.headers[header::CONTENT_TYPE], "image/jpeg");
    assert_eq!(
        thumb.headers[header::CONTENT_LENGTH],
        thumb.body.len().to_string().as_str()
    );
    assert!(
        thumb.headers[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .starts_with("private, max-age=")
    );
    assert_eq!(jpeg_size(&thumb.body), (640, 320));
    let tiny = fetch("a.localhost", links["tiny"].as_str().unwrap().to_owned()).await;
    assert_eq!(tiny.body, thumb.body, "tiny is served by small");
    let large = fetch("a.localhost", links["large"].as_str().unwrap().to_owned()).await;
    assert_eq!(jpeg_size(&large.body), (1000, 500), "never enlarged");

    // A wrong secret, another file's, another instance, another format: refused.
    let (prefix, rest) = small.split_once("/thumbnails/").unwrap();
    let (secret, _) = rest.split_once('/').unwrap();
    let mut forged = secret.to_owned();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [
        format!("{prefix}/thumbnails/{forged}/small"),
        format!("{prefix}/thumbnails/nope/small"),
        format!("/files/{}/thumbnails/{secret}/small", id(&text)),
    ] {
        let res = fetch("a.localhost", bad.clone()).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{bad}: {}", res.text());
        assert_eq!(error_status(&res), "403");
    }
    let elsewhere = fetch("b.localhost", small.clone()).await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
    let unknown = fetch("a.localhost", small.replace("/small", "/huge")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(error_status(&unknown), "404");

    // New content: the old links stop working, the old thumbnails are gone.
    let res = a
        .call(
            Method::PUT,
            &format!("/files/{file_id}"),
            &[("content-type", "image/png")],
            png(300, 600),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let new_small = res.json()["data"]["links"]["small"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_small, small);
    assert_eq!(
        fetch("a.localhost", small.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        fetch("a.localhost", new_small.clone()).await.status,
        StatusCode::NOT_FOUND,
        "not made yet for the new content"
    );
    assert!(e.state.vfs.make_thumbnails(&inst, &file_id).await.unwrap());
    let thumb = fetch("a.localhost", new_small.clone()).await;
    assert_eq!(jpeg_size(&thumb.body), (240, 480));
    assert_eq!(e.state.vfs.fsck(&inst).await.unwrap(), vec![]);

    // Destroyed: gone with the file.
    let res = a
        .call(
            Method::PATCH,
            &format!("/files/{file_id}"),
            &[("content-type", "application/json")],
            r#"{"data": {"attributes": {"permanent_delete": true}}}"#,
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(
        fetch("a.localhost", new_small).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(
        !e.files
            .join("a.localhost/.cozy_thumbs")
            .join(format!("{file_id}-small.jpg"))
            .exists()
    );
}
