//! A real OpenStack Swift on loopback for the tests: Debian's packages set up by
//! `tests/swift-saio.sh` (account, container and object servers, a proxy with
//! TempAuth), started once per test binary and stopped when the binary exits (the
//! script watches its process). Each test gets its own container. When Swift's
//! programs are not installed (`apt-get install swift swift-proxy swift-account
//! swift-container swift-object`; `tests/all` does as root), the Swift tests say so and
//! pass without running.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const USER: &str = "test:tester";
pub const KEY: &str = "testing";

/// How long TempAuth's tokens live here: short, so that the suite's requests cross
/// their expiry (Swift answers 401, the store logs in again).
pub const TOKEN_LIFE_SECS: u64 = 4;

/// The running Swift: where to log in.
pub struct Swift {
    pub auth_url: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/swift-saio.sh")
}

/// Whether Swift's programs are installed.
pub fn installed() -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| d.join("swift-proxy-server").is_file())
}

/// The Swift of this test binary, started on first use; `None` (after saying why)
/// when Swift is not installed.
pub fn swift() -> Option<&'static Swift> {
    static SWIFT: OnceLock<Option<Swift>> = OnceLock::new();
    SWIFT
        .get_or_init(|| {
            if !installed() {
                eprintln!(
                    "SKIPPED: the Swift tests need Debian's swift packages (apt-get install \
                     swift swift-proxy swift-account swift-container swift-object)"
                );
                return None;
            }
            Some(start())
        })
        .as_ref()
}

fn start() -> Swift {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("swift-{}", std::process::id()));
    let started = std::time::Instant::now();
    // A port found free may be taken before its server binds it: a few tries.
    let mut last = String::new();
    for _ in 0..3 {
        let out = Command::new("bash")
            .arg(script())
            .arg(&dir)
            // The servers stop, and the directory goes, when this process ends.
            .env("SAIO_WATCH_PID", std::process::id().to_string())
            .env("SAIO_WATCH_CLEAN", "1")
            .env("SAIO_TOKEN_LIFE", TOKEN_LIFE_SECS.to_string())
            .output()
            .unwrap();
        if out.status.success() {
            let port = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            eprintln!("Swift on port {port}, started in {:?}", started.elapsed());
            return Swift {
                auth_url: format!("http://127.0.0.1:{port}/auth/v1.0"),
            };
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
    }
    panic!("Swift did not start:\n{last}");
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

impl Swift {
    /// A client, the storage URL and a token (a new one each time: they expire soon).
    async fn login(&self) -> (reqwest::Client, String, String) {
        let client = client();
        let resp = client
            .get(&self.auth_url)
            .header("X-Auth-User", USER)
            .header("X-Auth-Key", KEY)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        let h = |n: &str| resp.headers()[n].to_str().unwrap().to_owned();
        (client, h("x-storage-url"), h("x-auth-token"))
    }

    /// A new empty container.
    pub async fn container(&self) -> String {
        let name = format!("t-{}", hearth_core::random_hex(8));
        let (client, url, token) = self.login().await;
        let resp = client
            .put(format!("{url}/{name}"))
            .header("X-Auth-Token", &token)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        name
    }

    /// Every object of a container (segments of large objects included).
    pub async fn objects(&self, container: &str) -> Vec<String> {
        let (client, url, token) = self.login().await;
        let resp = client
            .get(format!("{url}/{container}?format=json"))
            .header("X-Auth-Token", &token)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        let list: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_owned())
            .collect()
    }
}
