//! Background jobs end to end: `hearth serve` with a real SMTP receiver on loopback
//! (`hearth_mail::testkit`), killed with SIGKILL in the middle of a mail and started
//! again; `hearth jobs run` and `hearth triggers …` against it.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use hearth_mail::testkit::{Behavior, ReceivedMail, TestSmtpServer};
use serde_json::Value;

use crate::{hearth, http, stderr, stdout};

const PASSPHRASE: &str = "admin passphrase for the jobs tests";

/// The arguments of a plain-text mail to the instance's owner.
const HELLO_MAIL: &str =
    r#"{"mode":"noreply","subject":"Hello","parts":[{"type":"text/plain","body":"hi"}]}"#;

/// Long enough for a debug build on a busy machine; every wait polls.
const PATIENCE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The test SMTP server with the runtime its tasks run on (worker threads, so it
/// serves while the test blocks on processes).
struct Smtp {
    // Dropped before the runtime.
    server: TestSmtpServer,
    runtime: tokio::runtime::Runtime,
}

impl Smtp {
    fn start(behavior: Behavior) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let server = runtime
            .block_on(TestSmtpServer::start())
            .expect("start the SMTP server");
        server.set_behavior(behavior);
        Self { server, runtime }
    }

    fn next_message(&self, timeout: Duration) -> Option<ReceivedMail> {
        self.runtime.block_on(self.server.next_message(timeout))
    }

    fn next_stalled(&self, timeout: Duration) -> Option<ReceivedMail> {
        self.runtime.block_on(self.server.next_stalled(timeout))
    }
}

/// How a server is started: its data in `dir/data`, its log appended to
/// `dir/server.log`, the mail relay, and optionally a configuration file.
struct Setup<'a> {
    dir: &'a Path,
    smtp_port: u16,
    config: Option<PathBuf>,
}

/// `hearth serve` on free loopback ports; killed (SIGKILL) on drop.
struct Server {
    child: Child,
    port: u16,
    admin_port: u16,
}

impl Server {
    fn start(setup: &Setup<'_>) -> Self {
        let (port, admin_port) = (free_port(), free_port());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(setup.dir.join("server.log"))
            .expect("log file");
        let mut cmd = hearth(setup.dir);
        if let Some(config) = &setup.config {
            cmd.arg("--config").arg(config);
        }
        let child = cmd
            .env("HEARTH_ADMIN_PASSPHRASE", PASSPHRASE)
            .env("HEARTH_MAIL_HOST", "127.0.0.1")
            .env("HEARTH_MAIL_PORT", setup.smtp_port.to_string())
            .env("HEARTH_MAIL_DISABLE_TLS", "true")
            .env("HEARTH_JOBS_RETRY_DELAY", "200ms")
            .args(["serve", "--data-dir", "data", "--host", "127.0.0.1"])
            .args(["--port", &port.to_string(), "--admin-host", "127.0.0.1"])
            .args(["--admin-port", &admin_port.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn hearth serve");
        let mut server = Self {
            child,
            port,
            admin_port,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "hearth serve exited early ({status}): {}",
                    log_of(setup.dir)
                );
            }
            let up = |p: u16| TcpStream::connect(("127.0.0.1", p)).is_ok();
            if up(server.port) && up(server.admin_port) {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "hearth serve did not listen in time: {}",
                log_of(setup.dir)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no shutdown, no cleanup, as a crash or the OOM killer would.
    fn kill(mut self) {
        self.child.kill().expect("kill -9 hearth serve");
        self.child.wait().expect("reap hearth serve");
    }

    /// `hearth <group> <args>` aimed at this server, with the right passphrase.
    fn cli(&self, dir: &Path, group: &str, args: &[&str]) -> Output {
        cli_at(dir, group, self.admin_port, self.port, args)
    }

    /// An admin API request: status and body.
    fn admin(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let auth = format!("Basic {}", base64(format!(":{PASSPHRASE}").as_bytes()));
        http(
            self.admin_port,
            method,
            path,
            &[("Host", "127.0.0.1"), ("Authorization", &auth)],
            body,
        )
    }

    /// `GET /instances/<domain>/jobs/<id>`: the job document.
    fn job(&self, domain: &str, id: &str) -> Value {
        let (status, body) = self.admin("GET", &format!("/instances/{domain}/jobs/{id}"), "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("job JSON")
    }

    /// Polls the job until it is `done` or `errored`; panics after [`PATIENCE`].
    fn finished_job(&self, dir: &Path, domain: &str, id: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let job = self.job(domain, id);
            if matches!(job["state"].as_str(), Some("done" | "errored")) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "the job did not finish in time: {job}\n{}",
                log_of(dir)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates an instance whose owner is `email`.
    fn add_instance(&self, dir: &Path, domain: &str, email: &str) {
        ok(&self.cli(dir, "instances", &["add", domain, "--email", email]));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli_at(dir: &Path, group: &str, admin_port: u16, port: u16, args: &[&str]) -> Output {
    hearth(dir)
        .env("HEARTH_ADMIN_PASSPHRASE", PASSPHRASE)
        .arg(group)
        .args(["--admin-host", "127.0.0.1", "--host", "127.0.0.1"])
        .args(["--admin-port", &admin_port.to_string()])
        .args(["--port", &port.to_string()])
        .args(args)
        .output()
        .expect("run hearth")
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
}

/// Asserts a success and returns stdout.
#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// Standard base64 with padding, for the admin API's Basic credentials.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_matches_the_standard() {
    assert_eq!(base64(b":secret"), "OnNlY3JldA==");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"abc"), "YWJj");
    assert_eq!(base64(b""), "");
}

/// A mail being sent when the server is killed with SIGKILL is sent after the
/// restart: the job is found again, run again, and ends `done`.
#[test]
fn a_job_killed_mid_mail_completes_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let smtp = Smtp::start(Behavior::StallAfterData);
    let setup = Setup {
        dir: d,
        smtp_port: smtp.server.port(),
        config: None,
    };
    let domain = "crash.example.net";
    let server = Server::start(&setup);
    server.add_instance(d, domain, "a@example.com");

    let (status, body) = server.admin(
        "POST",
        &format!("/instances/{domain}/jobs/queue/sendmail"),
        HELLO_MAIL,
    );
    assert_eq!(status, 202, "{body}");
    let job: Value = serde_json::from_str(&body).expect("job JSON");
    let id = job["_id"].as_str().expect("job id").to_owned();
    assert_eq!(job["worker"], "sendmail");
    assert_eq!(job["domain"], domain);

    // The relay has the whole mail and the client waits for its answer: the job runs.
    let stalled = smtp
        .next_stalled(PATIENCE)
        .unwrap_or_else(|| panic!("no mail reached the relay\n{}", log_of(d)));
    assert_eq!(stalled.to, ["a@example.com"]);
    assert_eq!(server.job(domain, &id)["state"], "running");
    server.kill();

    smtp.server.set_behavior(Behavior::Accept);
    let server = Server::start(&setup);
    let mail = smtp
        .next_message(PATIENCE)
        .unwrap_or_else(|| panic!("the mail was not sent after the restart\n{}", log_of(d)));
    assert_eq!(mail.to, ["a@example.com"]);
    let text = mail.text();
    assert!(
        text.lines().any(|l| l == "Subject: Hello"),
        "no Subject: Hello in\n{text}"
    );
    let job = server.finished_job(d, domain, &id);
    assert_eq!(job["state"], "done", "{job}\n{}", log_of(d));
    assert_eq!(job["_id"], id.as_str());
    // Sent once after the restart, not more.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(smtp.server.messages().len(), 1);
}

/// `hearth jobs run`: the finished job on stdout; the server's refusal, and a bad
/// `--json` refused before any request.
#[test]
fn jobs_run_prints_the_finished_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let smtp = Smtp::start(Behavior::Accept);
    let server = Server::start(&Setup {
        dir: d,
        smtp_port: smtp.server.port(),
        config: None,
    });
    let domain = "run.example.net";
    server.add_instance(d, domain, "a@example.com");

    let out = ok(&server.cli(
        d,
        "jobs",
        &[
            "run",
            "log",
            "--domain",
            domain,
            "--json",
            r#"{"hello":"world"}"#,
        ],
    ));
    assert!(out.ends_with('\n'), "{out:?}");
    let job: Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(job["state"], "done", "{out}");
    assert_eq!(job["worker"], "log");
    assert_eq!(job["domain"], domain);
    assert_eq!(job["message"], serde_json::json!({"hello": "world"}));
    let id = job["_id"].as_str().expect("job id");
    assert_eq!(server.job(domain, id)["state"], "done");

    // The flags first, an alias, no --json: the arguments are `{}`.
    let out = ok(&server.cli(d, "jobs", &["--domain", domain, "push", "log"]));
    let job: Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(job["state"], "done", "{out}");
    assert_eq!(job["message"], serde_json::json!({}));

    // A mail through the relay, waited for.
    let out = ok(&server.cli(
        d,
        "jobs",
        &["run", "sendmail", "--json", HELLO_MAIL, "--domain", domain],
    ));
    let job: Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(job["state"], "done", "{out}");
    let mail = smtp.next_message(PATIENCE).expect("the mail");
    assert_eq!(mail.to, ["a@example.com"]);

    let out = server.cli(d, "jobs", &["run", "nope", "--domain", domain]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("Error:"), "{}", stderr(&out));
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");

    let out = server.cli(
        d,
        "jobs",
        &["run", "log", "--domain", "unknown.example.net"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("Error:"), "{}", stderr(&out));

    // Refused on the client side: the same answer with or without a server.
    for admin_port in [server.admin_port, free_port()] {
        let out = cli_at(
            d,
            "jobs",
            admin_port,
            server.port,
            &["run", "log", "--domain", domain, "--json", "{bad"],
        );
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).starts_with("Error: --json is not valid JSON"),
            "{}",
            stderr(&out)
        );
        assert_eq!(stdout(&out), "");
    }
    let out = cli_at(d, "jobs", free_port(), server.port, &["run", "log"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--domain"), "{}", stderr(&out));
}

/// A mail the relay keeps refusing with 451: tried `max_exec_count` times, a little
/// apart, then errored; `hearth jobs run` says why and exits 1.
#[test]
fn a_failing_job_retries_then_reports_its_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let smtp = Smtp::start(Behavior::TempFail);
    let config = d.join("hearth-test.yaml");
    std::fs::write(
        &config,
        "jobs:\n  workers:\n    sendmail:\n      max_exec_count: 2\n",
    )
    .expect("config file");
    let server = Server::start(&Setup {
        dir: d,
        smtp_port: smtp.server.port(),
        config: Some(config),
    });
    let domain = "retry.example.net";
    server.add_instance(d, domain, "a@example.com");

    let started = Instant::now();
    let out = server.cli(
        d,
        "jobs",
        &["run", "sendmail", "--domain", domain, "--json", HELLO_MAIL],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(err.starts_with("Error: the job errored: "), "{err}");
    assert!(err.contains("451"), "{err}");
    let job: Value = serde_json::from_str(&stdout(&out)).expect("the job on stdout");
    assert_eq!(job["state"], "errored");
    assert!(
        job["error"].as_str().is_some_and(|e| e.contains("451")),
        "{job}"
    );
    // Two attempts, the second after the retry delay (200ms).
    assert_eq!(smtp.server.transactions(), 2, "{}", log_of(d));
    assert!(started.elapsed() >= Duration::from_millis(200));
    // And no third one later.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(smtp.server.transactions(), 2, "{}", log_of(d));
    assert!(smtp.server.messages().is_empty());
}

/// `hearth triggers ls` and `launch` with a trigger made through the public API.
#[test]
fn triggers_ls_and_launch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let smtp = Smtp::start(Behavior::Accept);
    let server = Server::start(&Setup {
        dir: d,
        smtp_port: smtp.server.port(),
        config: None,
    });
    let domain = "triggers.example.net";
    server.add_instance(d, domain, "a@example.com");

    let out = ok(&server.cli(d, "triggers", &["ls", "--domain", domain]));
    let before: Value = serde_json::from_str(&out).expect("a JSON array");
    let before = before.as_array().expect("an array").len();

    let token = ok(&server.cli(d, "instances", &["token-cli", domain, "io.cozy.triggers"]));
    let token = token.trim();
    let (status, body) = http(
        server.port,
        "POST",
        "/jobs/triggers",
        &[
            ("Host", domain),
            ("Authorization", &format!("Bearer {token}")),
        ],
        r#"{"data":{"attributes":{"type":"@cron","arguments":"0 0 0 * * *","worker":"log","message":{"from":"cron"}}}}"#,
    );
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).expect("JSON:API");
    let trigger_id = created["data"]["id"]
        .as_str()
        .expect("trigger id")
        .to_owned();

    let out = ok(&server.cli(d, "triggers", &["--domain", domain, "ls"]));
    assert!(out.starts_with("[\n"), "an indented array: {out}");
    let list: Value = serde_json::from_str(&out).expect("a JSON array");
    let list = list.as_array().expect("an array");
    assert_eq!(list.len(), before + 1, "{out}");
    let trigger = list
        .iter()
        .find(|t| t["_id"] == trigger_id.as_str())
        .unwrap_or_else(|| panic!("{trigger_id} not in {out}"));
    assert_eq!(trigger["type"], "@cron");
    assert_eq!(trigger["arguments"], "0 0 0 * * *");
    assert_eq!(trigger["worker"], "log");
    assert!(trigger.get("current_state").is_some(), "{trigger}");

    let out = ok(&server.cli(d, "triggers", &["launch", "--domain", domain, &trigger_id]));
    let job: Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(job["trigger_id"], trigger_id.as_str(), "{out}");
    assert_eq!(job["worker"], "log");
    assert_eq!(job["message"], serde_json::json!({"from": "cron"}));
    let id = job["_id"].as_str().expect("job id");
    assert_eq!(server.finished_job(d, domain, id)["state"], "done");

    let out = server.cli(d, "triggers", &["launch", "--domain", domain, "nope"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("Error:"), "{}", stderr(&out));
}

/// The new groups are in the help, with their flags.
#[test]
fn help_lists_jobs_and_triggers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let help = stdout(&hearth(dir.path()).arg("--help").output().expect("help"));
    assert!(help.contains("jobs"), "{help}");
    assert!(help.contains("triggers"), "{help}");
    let help = stdout(
        &hearth(dir.path())
            .args(["jobs", "run", "--help"])
            .output()
            .expect("help"),
    );
    for flag in ["--domain", "--json", "--admin-port", "<WORKER>"] {
        assert!(help.contains(flag), "{flag} in {help}");
    }
}
