//! A move between two `hearth serve` processes (two servers), driven by the admin APIs
//! as `hearth instances move` does, where the target dies in the middle of the import:
//! the move is aborted, both instances stay usable, and the source loses nothing.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::http;
use crate::two_nodes::{Node, PASSPHRASE, bytes, ok, raw_request};

const FILES: usize = 48;
const FILE_SIZE: usize = 3 << 20;

struct Server {
    node: Option<Node>,
    dir: std::path::PathBuf,
    name: &'static str,
}

impl Server {
    fn start(root: &Path, name: &'static str) -> Self {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("hearth.yaml");
        std::fs::write(
            &config,
            format!("data_dir: {}\n", dir.join("data").display()),
        )
        .unwrap();
        let node = Node::start(&dir, &config, name);
        Self {
            node: Some(node),
            dir,
            name,
        }
    }

    fn node(&self) -> &Node {
        self.node.as_ref().unwrap()
    }

    /// SIGKILL, then the same server again (same data, new ports).
    fn crash_and_restart(&mut self) {
        self.node.take().unwrap().kill();
        let config = self.dir.join("hearth.yaml");
        self.node = Some(Node::start(&self.dir, &config, self.name));
    }

    fn admin(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(":{PASSPHRASE}"))
        );
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let (status, text) = http(
            self.node().admin_port,
            method,
            path,
            &[("Authorization", &auth)],
            &body,
        );
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn api(&self, host: &str, method: &str, path: &str, token: &str) -> (u16, Value) {
        let (status, text) = http(
            self.node().port,
            method,
            path,
            &[
                ("Host", host),
                ("Authorization", &format!("Bearer {token}")),
            ],
            "",
        );
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn instance(&self, domain: &str) -> Value {
        let (status, body) = self.admin("GET", &format!("/instances/{domain}"), &Value::Null);
        assert_eq!(status, 200, "{body}");
        body["data"]["attributes"].clone()
    }
}

fn upload(port: u16, host: &str, token: &str, name: &str, content: &[u8]) -> String {
    let head = format!(
        "POST /files/?Type=file&Name={name} HTTP/1.1\r\nHost: {host}\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n\
         Accept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        content.len()
    );
    let (status, body) = raw_request(port, head.as_bytes(), content);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let doc: Value = serde_json::from_slice(&body).unwrap();
    doc["data"]["id"].as_str().unwrap().to_owned()
}

fn download(port: u16, host: &str, token: &str, id: &str) -> (u16, Vec<u8>) {
    let head = format!(
        "GET /files/download/{id} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    );
    raw_request(port, head.as_bytes(), &[])
}

fn wait_for<T>(what: &str, patience: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_target_that_dies_mid_import_aborts_the_move_and_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    let source = Server::start(root.path(), "source");
    let mut target = Server::start(root.path(), "target");
    let from = format!("alice.localhost:{}", source.node().port);
    let to_name = "alicenew.localhost";
    ok(&source
        .node()
        .cli(root.path(), &["add", "--email", "a@example.net", &from]));
    ok(&target
        .node()
        .cli(root.path(), &["add", "--email", "a@example.org", to_name]));

    // Files on the source, enough for the import to take a moment.
    let token = ok(&source
        .node()
        .cli(root.path(), &["token-cli", &from, "io.cozy.files"]))
    .trim()
    .to_owned();
    let mut files = Vec::new();
    for i in 0..FILES {
        let content = bytes(FILE_SIZE, i as u64 + 7);
        let id = upload(
            source.node().port,
            &from,
            &token,
            &format!("f{i}.bin"),
            &content,
        );
        files.push((id, content));
    }

    // The operator's move: a token from the target, then the source starts.
    let (status, creds) = target.admin(
        "POST",
        &format!("/instances/{to_name}/move/token"),
        &Value::Null,
    );
    assert_eq!(status, 200, "{creds}");
    let target_url = format!("http://{to_name}:{}", target.node().port);
    let (status, started) = source.admin(
        "POST",
        &format!("/instances/{from}/move"),
        &json!({
            "target_url": target_url,
            "target_token": creds["token"],
            "target_client_id": creds["client_id"],
            "target_client_secret": creds["client_secret"],
        }),
    );
    assert_eq!(status, 202, "{started}");

    // The target dies once its import has begun.
    wait_for("the import to start", Duration::from_secs(120), || {
        let (_, s) = target.admin(
            "GET",
            &format!("/instances/{to_name}/move/status"),
            &Value::Null,
        );
        (s["state"] == "importing").then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    target.crash_and_restart();

    // After its restart, the target cleans up: unblocked, reset, the move errored.
    let state = wait_for("the target to give up", Duration::from_secs(120), || {
        let (_, s) = target.admin(
            "GET",
            &format!("/instances/{to_name}/move/status"),
            &Value::Null,
        );
        matches!(s["state"].as_str(), Some("errored" | "idle" | "done")).then_some(s)
    });
    assert_eq!(state["state"], "errored", "{state}");
    let t = target.instance(to_name);
    assert_ne!(t["blocked"], true, "the target is not left blocked: {t}");
    let t_token = ok(&target
        .node()
        .cli(root.path(), &["token-cli", to_name, "io.cozy.files"]))
    .trim()
    .to_owned();
    let (status, _) = target.api(to_name, "GET", "/files/io.cozy.files.root-dir", &t_token);
    assert_eq!(status, 200, "the target is usable");

    // The source was told: not moved, not blocked, every file intact.
    wait_for("the source to be released", Duration::from_secs(30), || {
        let s = source.instance(&from);
        (s["blocked"] != true && s["moved"] != true).then_some(())
    });
    for (id, content) in &files {
        let (status, body) = download(source.node().port, &from, &token, id);
        assert_eq!(status, 200);
        assert!(body == *content, "file {id} intact on the source");
    }
    let (status, _) = source.api(&from, "GET", "/files/io.cozy.files.root-dir", &token);
    assert_eq!(status, 200);
}
