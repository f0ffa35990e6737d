//! Two `hearth serve` nodes sharing PostgreSQL (documents), S3 (`s3s-fs` on loopback,
//! file contents) and Redis (jobs, trigger leader, events): they behave as one server.
//!
//! Needs PostgreSQL (`HEARTH_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`; a fresh database is created and dropped),
//! Redis (`HEARTH_TEST_REDIS_URL`, default `redis://127.0.0.1:6379/`; a random key
//! prefix, removed at the end) and the `s3s-fs` binary (installed by `tests/all`).

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::{hearth, http, stderr, stdout};

pub(crate) const PASSPHRASE: &str = "admin passphrase of the two nodes";
const PATIENCE: Duration = Duration::from_secs(60);
pub(crate) const DOMAIN: &str = "twonodes.localhost";

pub(crate) const S3_ACCESS_KEY: &str = "hearth-it-access";
pub(crate) const S3_SECRET_KEY: &str = "hearth-it-secret";
pub(crate) const S3_BUCKET: &str = "hearth-it";

pub(crate) fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    l.local_addr().expect("addr").port()
}

fn random_hex() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("random");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Pseudo-random bytes (xorshift), so that files differ and compare meaningfully.
pub(crate) fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

// ---- PostgreSQL: a database of its own ----

fn postgres_url() -> String {
    std::env::var("HEARTH_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Runs one statement on the test server's default database.
fn postgres_exec(sql: String) -> Result<(), String> {
    let url = postgres_url();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| {
                    format!(
                        "PostgreSQL is unreachable at {url} ({e}): set HEARTH_TEST_POSTGRES_URL \
                         or start one on 127.0.0.1:5432 (trust auth, database test)"
                    )
                })?;
            let driver = tokio::spawn(conn);
            let out = client.batch_execute(&sql).await.map_err(|e| e.to_string());
            driver.abort();
            out
        })
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// A fresh database, dropped (with its connections) at the end.
pub(crate) struct Database {
    name: String,
    pub(crate) url: String,
}

impl Database {
    pub(crate) fn create() -> Self {
        let name = format!("hearth_it_{}", random_hex());
        postgres_exec(format!("CREATE DATABASE {name}")).unwrap();
        let base = postgres_url();
        let cut = base.rfind('/').expect("a database in the URL");
        let url = format!("{}/{name}", &base[..cut]);
        Self { name, url }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Err(e) = postgres_exec(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )) {
            eprintln!("cannot drop the test database {}: {e}", self.name);
        }
    }
}

// ---- Redis: a prefix of its own ----

fn redis_url() -> String {
    std::env::var("HEARTH_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379/".to_owned())
}

/// A random key prefix; its keys are deleted at the end.
struct RedisPrefix(String);

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(redis_url()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.0))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

// ---- S3: s3s-fs on loopback ----

pub(crate) struct S3Server {
    child: Child,
    pub(crate) endpoint: String,
    pub(crate) bucket_dir: PathBuf,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3s_fs() -> PathBuf {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("HEARTH_S3S_FS") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("s3s-fs")));
    }
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        candidates.push(Path::new(&home).join("bin/s3s-fs"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cargo/bin/s3s-fs"));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .expect("the two-node test needs s3s-fs: cargo install s3s-fs --version 0.14.1 --locked --features binary")
}

impl S3Server {
    pub(crate) fn start(dir: &Path) -> Self {
        let data = dir.join("s3");
        let bucket_dir = data.join(S3_BUCKET);
        std::fs::create_dir_all(&bucket_dir).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("s3s-fs.log")).unwrap();
        let child = Command::new(s3s_fs())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start s3s-fs");
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket_dir,
        }
    }

    /// The objects holding files' contents (`<domain>/files/<id>`).
    fn file_objects(&self) -> Vec<String> {
        let dir = self.bucket_dir.join(DOMAIN).join("files");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

// ---- The nodes ----

pub(crate) struct Node {
    child: Child,
    pub(crate) port: u16,
    pub(crate) admin_port: u16,
    log: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    pub(crate) fn start(dir: &Path, config: &Path, name: &str) -> Self {
        let (port, admin_port) = (free_port(), free_port());
        let home = dir.join(name);
        std::fs::create_dir_all(&home).unwrap();
        let log = home.join("server.log");
        let child = hearth(&home)
            .env("HEARTH_ADMIN_PASSPHRASE", PASSPHRASE)
            .env("HEARTH_REDIS_NODE_ID", name)
            .arg("--config")
            .arg(config)
            .args(["serve", "--host", "127.0.0.1", "--admin-host", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .args(["--admin-port", &admin_port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn hearth serve");
        let mut node = Self {
            child,
            port,
            admin_port,
            log,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("{name} exited early ({status}): {}", node.log());
            }
            let up = |p: u16| TcpStream::connect(("127.0.0.1", p)).is_ok();
            if up(node.port) && up(node.admin_port) {
                return node;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not listen: {}",
                node.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn cli(&self, dir: &Path, args: &[&str]) -> Output {
        hearth(dir)
            .env("HEARTH_ADMIN_PASSPHRASE", PASSPHRASE)
            .arg("instances")
            .args(["--admin-host", "127.0.0.1", "--host", "127.0.0.1"])
            .args(["--admin-port", &self.admin_port.to_string()])
            .args(["--port", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run hearth instances")
    }

    pub(crate) fn api(&self, method: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
        let (status, body) = http(
            self.port,
            method,
            path,
            &[
                ("Host", DOMAIN),
                ("Authorization", &format!("Bearer {token}")),
            ],
            body,
        );
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    /// `POST /files/?Type=file&Name=<name>` with `content`: the status and the body.
    pub(crate) fn upload(&self, token: &str, name: &str, content: &[u8]) -> (u16, Value) {
        let head = upload_head(name, token, content.len());
        let (status, body) = raw_request(self.port, head.as_bytes(), content);
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    pub(crate) fn download(&self, token: &str, id: &str) -> (u16, Vec<u8>) {
        let head = format!(
            "GET /files/download/{id} HTTP/1.1\r\nHost: {DOMAIN}\r\nAuthorization: Bearer {token}\r\n\
             Connection: close\r\n\r\n"
        );
        raw_request(self.port, head.as_bytes(), &[])
    }

    pub(crate) fn kill(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }
}

fn upload_head(name: &str, token: &str, len: usize) -> String {
    format!(
        "POST /files/?Type=file&Name={name} HTTP/1.1\r\nHost: {DOMAIN}\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n\
         Accept: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
}

/// One exchange with a binary body; the status and the body (de-chunked).
pub(crate) fn raw_request(port: u16, head: &[u8], body: &[u8]) -> (u16, Vec<u8>) {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, Vec::new());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    if stream.write_all(head).is_err() || stream.write_all(body).is_err() {
        return (0, Vec::new());
    }
    let mut response = Vec::new();
    if stream.read_to_end(&mut response).is_err() {
        return (0, Vec::new());
    }
    let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (0, Vec::new());
    };
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let mut rest = &response[split + 4..];
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if !head.contains("transfer-encoding: chunked") {
        return (status, rest.to_vec());
    }
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("0").trim(), 16).ok())
            .unwrap_or(0);
        let after = &rest[eol + 2..];
        if size == 0 || after.len() < size {
            break;
        }
        out.extend_from_slice(&after[..size]);
        rest = after[size..]
            .strip_prefix(b"\r\n")
            .unwrap_or(&after[size..]);
    }
    (status, out)
}

#[track_caller]
pub(crate) fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// Seconds since the epoch of an RFC 3339 UTC time (`2026-01-02T03:04:05.678Z`).
fn epoch_seconds(t: &str) -> f64 {
    let num = |r: std::ops::Range<usize>| -> i64 { t[r].parse().expect("a number") };
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    let (hh, mm) = (num(11..13), num(14..16));
    let secs: f64 = t[17..]
        .trim_end_matches('Z')
        .split(['+', '-'])
        .next()
        .unwrap_or("0")
        .parse()
        .expect("seconds");
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + hh * 3600 + mm * 60) as f64 + secs
}

/// Calls `f` until `done` accepts its answer, for 2 s at most; the last answer.
fn eventually<T>(mut f: impl FnMut() -> T, done: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let answer = f();
        if done(&answer) || Instant::now() >= deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The realtime websocket on `port` for the test instance, authenticated and
/// subscribed to `doctype`.
async fn subscribe(
    port: u16,
    token: &str,
    doctype: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = format!("ws://127.0.0.1:{port}/realtime/")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("host", DOMAIN.parse().unwrap());
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "io.cozy.websocket".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    for msg in [
        json!({"method": "AUTH", "payload": token}),
        json!({"method": "SUBSCRIBE", "payload": {"type": doctype}}),
        // Not a method: its error proves the commands before it were applied.
        json!({"method": "SYNC"}),
    ] {
        ws.send(Message::text(msg.to_string())).await.unwrap();
    }
    let barrier = next_text(&mut ws).await;
    assert_eq!(barrier["event"], "error", "{barrier}");
    ws
}

async fn next_text(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("the socket is open")
            .expect("a valid frame");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

#[test]
fn two_nodes_behave_as_one_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s3 = S3Server::start(d);
    let db = Database::create();
    let prefix = RedisPrefix(format!("hearth-it-{}:", random_hex()));
    let config = d.join("hearth.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: data\n\
             log:\n  level: info\n\
             auth:\n  scrypt_log_n: 4\n\
             database:\n  url: {db}\n\
             fs:\n  url: s3://{S3_BUCKET}?endpoint={endpoint}\n  \
             s3_access_key_id: {S3_ACCESS_KEY}\n  s3_secret_access_key: {S3_SECRET_KEY}\n\
             redis:\n  url: {redis}\n  prefix: \"{prefix}\"\n",
            db = db.url,
            endpoint = s3.endpoint,
            redis = redis_url(),
            prefix = prefix.0,
        ),
    )
    .unwrap();
    let node1 = Node::start(d, &config, "node1");
    let node2 = Node::start(d, &config, "node2");

    // An instance created through node 1's admin API is served by node 2.
    ok(&node1.cli(d, &["add", DOMAIN, "--email", "owner@example.net"]));
    let token = ok(&node2.cli(
        d,
        &[
            "token-cli",
            DOMAIN,
            "io.cozy.files io.cozy.todos io.cozy.triggers io.cozy.jobs",
        ],
    ));
    let token = token.trim().to_owned();
    let (status, root) = node2.api("GET", "/files/io.cozy.files.root-dir", &token, "");
    assert_eq!(status, 200, "{root}\n{}", node2.log());

    // A file uploaded on node 1 downloads from node 2 with the same bytes.
    let content = bytes(3 * 1024 * 1024 + 17, 1);
    let (status, created) = node1.upload(&token, "first.bin", &content);
    assert_eq!(status, 201, "{created}\n{}", node1.log());
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    let (status, got) = node2.download(&token, &id);
    assert_eq!(status, 200, "{}", node2.log());
    assert!(
        got == content,
        "node 2 serves other bytes ({} vs {})",
        got.len(),
        content.len()
    );

    // A document written on node 1 reaches a websocket subscribed on node 2.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut ws = rt.block_on(subscribe(node2.port, &token, "io.cozy.todos"));
    let (status, doc) = node1.api(
        "POST",
        "/data/io.cozy.todos/",
        &token,
        r#"{"title":"written on node 1"}"#,
    );
    assert_eq!(status, 201, "{doc}");
    let doc_id = doc["id"].as_str().unwrap().to_owned();
    let event = rt.block_on(next_text(&mut ws));
    assert_eq!(event["event"], "CREATED", "{event}");
    assert_eq!(event["payload"]["id"], doc_id.as_str(), "{event}");
    assert_eq!(event["payload"]["type"], "io.cozy.todos", "{event}");
    assert_eq!(
        event["payload"]["doc"]["title"], "written on node 1",
        "{event}"
    );
    drop(ws);

    // Blocking the instance through node 1's admin API reaches node 2, whose cached
    // copy of the instance is dropped: it answers the blocked status within a
    // second or two, and serves the instance again once unblocked. (A request
    // without a CLI token, those pass the blocked check: its invalid token is a 400
    // when the instance is served.)
    let anonymous = |node: &Node| node.api("GET", "/files/io.cozy.files.root-dir", "nope", "");
    let (status, body) = anonymous(&node2);
    assert_eq!(status, 400, "{body}");
    ok(&node1.cli(d, &["modify", DOMAIN, "--blocked"]));
    let (status, body) = eventually(|| anonymous(&node2), |(status, _)| *status == 503);
    assert_eq!(
        status, 503,
        "node 2 still serves a blocked instance: {body}"
    );
    assert_eq!(body[0]["title"], "Blocked", "{body}");
    ok(&node1.cli(d, &["modify", DOMAIN, "--blocked=false"]));
    let (status, body) = eventually(|| anonymous(&node2), |(status, _)| *status == 400);
    assert_eq!(
        status, 400,
        "node 2 still blocks an unblocked instance: {body}"
    );

    // The files tree of an instance changes on one node at a time (a lock in
    // Redis): two uploads of one name, one to each node at once, give one file and
    // one conflict.
    let mut raced = Vec::new();
    for round in 0..5 {
        let name = format!("race-{round}.bin");
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let racers: Vec<_> = [node1.port, node2.port]
            .into_iter()
            .enumerate()
            .map(|(i, port)| {
                let (barrier, token, name) = (barrier.clone(), token.clone(), name.clone());
                std::thread::spawn(move || {
                    let content = bytes(64 * 1024, 1000 + round * 2 + i as u64);
                    let head = upload_head(&name, &token, content.len());
                    barrier.wait();
                    raw_request(port, head.as_bytes(), &content)
                })
            })
            .collect();
        let answers: Vec<(u16, Vec<u8>)> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        let mut statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
        statuses.sort_unstable();
        for (status, body) in &answers {
            if *status == 201 {
                let body: Value = serde_json::from_slice(body).unwrap();
                raced.push(body["data"]["id"].as_str().unwrap().to_owned());
            }
        }
        assert_eq!(
            statuses,
            [201, 409],
            "round {round}\n{}\n{}",
            node1.log(),
            node2.log()
        );
    }

    // A timed trigger made on node 2 fires once per period across the two nodes,
    // whichever leads.
    let (status, trigger) = node2.api(
        "POST",
        "/jobs/triggers",
        &token,
        r#"{"data":{"attributes":{"type":"@every","arguments":"2s","worker":"log","message":{"from":"two nodes"}}}}"#,
    );
    assert_eq!(status, 201, "{trigger}");
    let trigger_id = trigger["data"]["id"].as_str().unwrap().to_owned();
    std::thread::sleep(Duration::from_secs(13));
    let (status, jobs) = node1.api(
        "GET",
        &format!("/jobs/triggers/{trigger_id}/jobs?Limit=100"),
        &token,
        "",
    );
    assert_eq!(status, 200, "{jobs}");
    let (status, _) = node1.api(
        "DELETE",
        &format!("/jobs/triggers/{trigger_id}"),
        &token,
        "",
    );
    assert_eq!(status, 204);
    let jobs = jobs["data"].as_array().unwrap().clone();
    let mut times: Vec<f64> = jobs
        .iter()
        .map(|j| epoch_seconds(j["attributes"]["queued_at"].as_str().unwrap()))
        .collect();
    times.sort_by(f64::total_cmp);
    // Up to 2 s to be seen by the leader, then every 2 s: 5 or 6 firings in 13 s.
    assert!(
        (4..=7).contains(&times.len()),
        "{} firings in 13 s: {jobs:#?}\n{}\n{}",
        times.len(),
        node1.log(),
        node2.log()
    );
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] > 1.5,
            "two firings {:.3} s apart: {jobs:#?}",
            pair[1] - pair[0]
        );
    }
    for job in &jobs {
        let state = job["attributes"]["state"].as_str().unwrap_or("");
        assert!(matches!(state, "done" | "running" | "queued"), "{job}");
    }
    assert!(
        jobs.iter().any(|j| j["attributes"]["state"] == "done"),
        "the shared queue runs them: {jobs:#?}"
    );
    // One node leads and fires; the other only refreshes its schedule.
    let fired = |node: &Node| node.log().matches("trigger fired").count();
    let (fired1, fired2) = (fired(&node1), fired(&node2));
    assert!(
        fired1 == 0 || fired2 == 0,
        "both nodes fired: {fired1} and {fired2}"
    );
    // (One more may fire between the listing and the deletion.)
    assert!(
        (times.len()..=times.len() + 1).contains(&(fired1 + fired2)),
        "{fired1} + {fired2} firings logged, {} jobs",
        times.len()
    );

    // Killing node 1 in the middle of a large upload loses nothing acknowledged.
    let acknowledged: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let small = {
        let (acknowledged, stop, token, port) = (
            acknowledged.clone(),
            stop.clone(),
            token.clone(),
            node1.port,
        );
        std::thread::spawn(move || {
            let mut seed = 100;
            while !stop.load(Ordering::SeqCst) {
                seed += 1;
                let content = bytes(256 * 1024 + seed as usize, seed);
                let head = upload_head(&format!("small-{seed}.bin"), &token, content.len());
                let (status, body) = raw_request(port, head.as_bytes(), &content);
                if status != 201 {
                    break;
                }
                let body: Value = serde_json::from_slice(&body).unwrap();
                let id = body["data"]["id"].as_str().unwrap().to_owned();
                acknowledged.lock().unwrap().push((id, seed));
            }
        })
    };
    let big_len = 64 * 1024 * 1024;
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let big = {
        let (token, port, sent) = (token.clone(), node1.port, sent.clone());
        std::thread::spawn(move || {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream
                .write_all(upload_head("big.bin", &token, big_len).as_bytes())
                .unwrap();
            let chunk = bytes(1024 * 1024, 7);
            for _ in 0..64 {
                if stream.write_all(&chunk).is_err() {
                    return;
                }
                sent.fetch_add(chunk.len(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let deadline = Instant::now() + PATIENCE;
    while sent.load(Ordering::SeqCst) < 20 * 1024 * 1024 || acknowledged.lock().unwrap().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "uploads too slow: {}",
            node1.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    node1.kill();
    stop.store(true, Ordering::SeqCst);
    small.join().unwrap();
    big.join().unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 3);
    for (id, seed) in &acknowledged {
        let (status, got) = node2.download(&token, id);
        assert_eq!(status, 200, "{id} lost: {}", node2.log());
        assert!(
            got == bytes(256 * 1024 + *seed as usize, *seed),
            "{id} has other bytes"
        );
    }
    let (status, meta) = node2.api("GET", "/files/metadata?Path=/big.bin", &token, "");
    assert_eq!(status, 404, "the interrupted upload left a file: {meta}");
    // The stored contents: the first file, the raced ones, the acknowledged ones,
    // and at most the small upload whose answer the kill cut; never the big one's
    // half.
    let objects = s3.file_objects();
    let before = 1 + raced.len();
    assert!(
        (acknowledged.len() + before..=acknowledged.len() + before + 1).contains(&objects.len()),
        "{objects:?} vs {acknowledged:?}"
    );
    assert!(objects.contains(&id), "{id} not in {objects:?}");
    for id in &raced {
        assert!(objects.contains(id), "{id} not in {objects:?}");
    }
    for (id, _) in &acknowledged {
        assert!(objects.contains(id), "{id} not in {objects:?}");
    }
    drop(node2);
    drop(prefix);
    drop(db);
}
