//! `hearth serve` from outside: it answers, honours flag > env > file, and stops
//! cleanly on SIGINT and SIGTERM.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::hearth;

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A blocking `GET` over HTTP/1.1; `None` while nothing listens.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

struct Server {
    child: Child,
    port: u16,
    admin_port: u16,
}

impl Server {
    /// Starts `hearth serve` on free ports, the public one given as a flag that
    /// overrides both the file and the environment.
    fn start(dir: &Path) -> Self {
        let (port, admin_port) = (free_port(), free_port());
        std::fs::write(
            dir.join("hearth.yaml"),
            "host: 127.0.0.1\nport: 1\nadmin:\n  host: 127.0.0.1\n",
        )
        .expect("write config");
        let log = std::fs::File::create(dir.join("stderr.log")).expect("log file");
        let child = hearth(dir)
            .env("HEARTH_PORT", "2")
            .env("HEARTH_ADMIN_PORT", admin_port.to_string())
            .env("RUST_LOG", "info")
            .args(["serve", "--data-dir", "data", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn hearth serve");
        let mut server = Self {
            child,
            port,
            admin_port,
        };
        server.wait_ready(dir);
        server
    }

    fn wait_ready(&mut self, dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("hearth exited early ({status}): {}", log(dir));
            }
            if http_get(self.port, "/version").is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("hearth did not answer in time: {}", log(dir));
    }

    fn signal(&mut self, name: &str) -> ExitStatus {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "hearth did not stop after SIG{name}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only reached with the process still running when a test failed.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
}

#[test]
fn serves_and_stops_on_sigint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path());

    let (status, body) = http_get(server.port, "/version").expect("public /version");
    assert_eq!(status, 200);
    assert!(
        body.contains(&format!("\"version\":\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{body}"
    );
    let (status, body) = http_get(server.port, "/status").expect("public /status");
    assert_eq!(
        (status, body.contains("\"status\":\"OK\"")),
        (200, true),
        "{body}"
    );
    // The admin API asks for its passphrase before anything else.
    let (status, body) = http_get(server.admin_port, "/version").expect("admin /version");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("missing basic auth"), "{body}");

    let exit = server.signal("INT");
    assert!(exit.success(), "exit status {exit}: {}", log(dir.path()));
    let log = log(dir.path());
    assert!(
        log.contains(&format!(
            "public server listening on 127.0.0.1:{}",
            server.port
        )),
        "{log}"
    );
    assert!(log.contains("SIGINT received"), "{log}");
    assert!(dir.path().join("data/db").is_dir() && dir.path().join("data/files").is_dir());
}

#[test]
fn stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path());
    let exit = server.signal("TERM");
    assert!(exit.success(), "exit status {exit}: {}", log(dir.path()));
    assert!(
        http_get(server.port, "/version").is_none(),
        "the port is closed"
    );
}

#[test]
fn refuses_a_public_admin_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = hearth(dir.path())
        .args([
            "serve",
            "--admin-host",
            "0.0.0.0",
            "--port",
            "0",
            "--host",
            "127.0.0.1",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error: --admin-host: admin.host: the admin API listens on loopback addresses only, and 0.0.0.0 is not one\n"
    );
    assert!(
        !dir.path().join("hearth-data").exists(),
        "nothing is started"
    );
}
