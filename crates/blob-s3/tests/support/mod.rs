//! A real S3 server on loopback for the tests: `s3s-fs` serving a temporary directory,
//! one per test, stopped when dropped. It must be installed (`.ci/run` installs it):
//! the tests fail, and say how to install it, when it is missing.

pub mod swift;

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to get the server (the version builds with the project's Rust).
pub const INSTALL: &str = "cargo install s3s-fs --version 0.14.1 --locked --features binary";

pub const ACCESS_KEY: &str = "hearth-test-access";
pub const SECRET_KEY: &str = "hearth-test-secret";
pub const BUCKET: &str = "hearth-test";

/// A running `s3s-fs` and its data directory.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
    /// The bucket's directory on disk (to see what the server really holds).
    pub bucket_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `s3s-fs` binary: `HEARTH_S3S_FS` when set, else `PATH`, then Cargo's `bin`
/// directory.
fn binary() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os("HEARTH_S3S_FS") {
        Some(p) => vec![PathBuf::from(p)],
        None => {
            let mut c: Vec<PathBuf> = std::env::var_os("PATH")
                .map(|p| {
                    std::env::split_paths(&p)
                        .map(|d| d.join("s3s-fs"))
                        .collect()
                })
                .unwrap_or_default();
            if let Some(home) = std::env::var_os("CARGO_HOME") {
                c.push(Path::new(&home).join("bin/s3s-fs"));
            }
            if let Some(home) = std::env::var_os("HOME") {
                c.push(Path::new(&home).join(".cargo/bin/s3s-fs"));
            }
            c
        }
    };
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the S3 tests need the s3s-fs server, which is not installed: run `{INSTALL}` \
                 (or set HEARTH_S3S_FS to its path)"
            )
        })
}

fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    l.local_addr().unwrap().port()
}

impl S3Server {
    /// Starts a server with an empty bucket [`BUCKET`].
    pub fn start() -> Self {
        let bin = binary();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let bucket_dir = data.join(BUCKET);
        std::fs::create_dir_all(&bucket_dir).unwrap();
        let log_path = dir.path().join("s3s-fs.log");
        // A port found free may be taken before the server binds it: a few tries.
        for _ in 0..5 {
            let port = free_port();
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = Command::new(&bin)
                .arg("--host")
                .arg("127.0.0.1")
                .arg("--port")
                .arg(port.to_string())
                .arg("--access-key")
                .arg(ACCESS_KEY)
                .arg("--secret-key")
                .arg(SECRET_KEY)
                .arg(&data)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                    return Self {
                        child,
                        endpoint: format!("http://127.0.0.1:{port}"),
                        bucket_dir,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "s3s-fs did not start; its output:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }

    /// Every file the server keeps under the bucket's directory (objects, and the
    /// parts of multipart uploads, wherever it puts them), relative to it.
    pub fn files_on_disk(&self) -> Vec<String> {
        let root = self.bucket_dir.parent().unwrap().to_path_buf();
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p.strip_prefix(&root).unwrap().display().to_string());
                }
            }
        }
        out.sort();
        out
    }
}
