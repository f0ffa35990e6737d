//! Drop-in for cozy-stack operators (issue #11), from outside with the real binary:
//! `hearth serve` with the flags of `cozy-stack serve`, a `.cozy/cozy.yaml` found where
//! the original looks with `COZY_*` overrides, `config gen-keys`, `--couchdb-url`
//! refused, `--mailhog`, the admin port answering within a second, SIGINT; and the
//! output contracts scripts parse: `client-oauth`, `token-*`, `add`, `check
//! triggers|shared`, `docs ls|get|put|find|rm`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::{dechunk, hearth, stderr, stdout};

const PASSPHRASE: &str = "drop-in admin passphrase";

/// Long enough for a debug build on a busy machine; every wait polls.
const PATIENCE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// One HTTP/1.1 exchange (`Connection: close`): the status and the body, de-chunked;
/// `None` while nothing listens.
fn try_http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(PATIENCE)).ok()?;
    let mut request = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!(
        "Accept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    Some((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    ))
}

fn basic(passphrase: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(":{passphrase}"))
    )
}

/// A running `hearth serve`, killed on drop if a test failed before stopping it.
struct Server {
    child: Child,
    port: u16,
    admin_port: u16,
    /// How long after the spawn the admin port answered.
    admin_after: Duration,
}

impl Server {
    /// Spawns `cmd` (a `hearth serve` with its ports set) and waits until the admin
    /// API answers an HTTP request (401 without credentials).
    fn spawn(mut cmd: Command, dir: &Path, port: u16, admin_port: u16) -> Self {
        let log = std::fs::File::create(dir.join("server.log")).expect("log file");
        let started = Instant::now();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn hearth serve");
        let mut server = Self {
            child,
            port,
            admin_port,
            admin_after: Duration::ZERO,
        };
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("hearth serve exited early ({status}): {}", log_of(dir));
            }
            if try_http(admin_port, "GET", "/version", &[("Host", "127.0.0.1")], "").is_some() {
                server.admin_after = started.elapsed();
                break;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "hearth serve did not answer in time: {}",
                log_of(dir)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // The public port is bound just before the admin one.
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < PATIENCE, "{}", log_of(dir));
            std::thread::sleep(Duration::from_millis(5));
        }
        server
    }

    /// A plain server: loopback ports, data in `dir/data`, the admin passphrase.
    fn start(dir: &Path) -> Self {
        let (port, admin_port) = (free_port(), free_port());
        let mut cmd = hearth(dir);
        cmd.env("HEARTH_ADMIN_PASSPHRASE", PASSPHRASE)
            .args(["serve", "--data-dir", "data", "--host", "127.0.0.1"])
            .args(["--port", &port.to_string(), "--admin-host", "127.0.0.1"])
            .args(["--admin-port", &admin_port.to_string()]);
        Self::spawn(cmd, dir, port, admin_port)
    }

    /// `hearth <group> <args>` aimed at this server, with the admin passphrase.
    fn cli(&self, dir: &Path, group: &str, args: &[&str]) -> Output {
        self.command(dir, group, args)
            .env("HEARTH_ADMIN_PASSPHRASE", PASSPHRASE)
            .output()
            .expect("run hearth")
    }

    /// Same, with `input` on standard input.
    fn cli_with_input(&self, dir: &Path, group: &str, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command(dir, group, args)
            .env("HEARTH_ADMIN_PASSPHRASE", PASSPHRASE)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hearth");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait")
    }

    /// `hearth <group>` with the connection flags and no passphrase.
    fn command(&self, dir: &Path, group: &str, args: &[&str]) -> Command {
        let mut cmd = hearth(dir);
        cmd.arg(group)
            .args(["--admin-host", "127.0.0.1", "--host", "127.0.0.1"])
            .args(["--admin-port", &self.admin_port.to_string()])
            .args(["--port", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn signal(&mut self, name: &str) -> ExitStatus {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "hearth did not stop after SIG{name}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// The line of `config show` for a key (indented as printed).
fn shown<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in\n{text}"))
}

/// A `.cozy/cozy.yaml` in the working directory (also `$HOME`) with `COZY_*`
/// overrides, `config gen-keys`, then `hearth serve` with the flags of `cozy-stack
/// serve`: the admin API answers within a second, the values are where they should
/// be, and SIGINT stops it cleanly.
#[test]
fn serve_with_cozy_flags_files_and_variables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (port, admin_port) = (free_port(), free_port());
    std::fs::create_dir(d.join(".cozy")).expect("mkdir .cozy");
    let cozy_yaml = d.join(".cozy/cozy.yaml");
    std::fs::write(
        &cozy_yaml,
        "host: 127.0.0.1\nport: 1\nadmin:\n  host: 127.0.0.1\n  port: 2\n\
         couchdb:\n  url: http://localhost:5984/\n\
         fs:\n  url: file:///nowhere\n  default_layout: 2\n\
         mail:\n  noreply_address: noreply@example.net\n  disable_tls: true\n\
         jobs:\n  imagemagick_convert_cmd: convert\n  workers:\n    thumbnail:\n      concurrency: 1\n      timeout: 2m\n    log: true\n\
         konnectors:\n  cmd: /usr/bin/false\n\
         registries:\n  - https://apps-registry.cozycloud.cc/\n\
         log:\n  level: warning\n",
    )
    .expect("write cozy.yaml");

    // gen-keys writes <path>.enc and <path>.dec, PEM NaCl keys, mode 0400, once.
    let out = hearth(d)
        .args(["config", "gen-keys", "vault-key"])
        .output()
        .expect("gen-keys");
    assert!(out.status.success(), "{}", stderr(&out));
    let enc = d.join("vault-key.enc");
    let dec = d.join("vault-key.dec");
    assert_eq!(
        stderr(&out),
        format!(
            "keyfiles written in:\n  {}\n  {}\n",
            enc.display(),
            dec.display()
        )
    );
    for key in [&enc, &dec] {
        let text = std::fs::read_to_string(key).expect("key file");
        assert!(
            text.starts_with("-----BEGIN NACL KEY-----\n")
                && text.ends_with("-----END NACL KEY-----\n"),
            "{text}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(key).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o400);
    }
    let again = hearth(d)
        .args(["config", "gen-keys", "vault-key"])
        .output()
        .expect("gen-keys");
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));

    // config show: the file found under .cozy, COZY_* beside HEARTH_* (which wins).
    let with_env = |cmd: &mut Command| {
        cmd.env("COZY_PORT", port.to_string())
            .env("COZY_ADMIN_PORT", "3")
            .env("HEARTH_ADMIN_PORT", admin_port.to_string())
            .env("COZY_MAIL_NOREPLY_NAME", "Drop-in")
            .env("COZY_COUCHDB_URL", "http://localhost:5984/");
    };
    let mut show = hearth(d);
    with_env(&mut show);
    let out = show.args(["config", "show"]).output().expect("config show");
    let text = ok(&out);
    let file = format!("# file {}", cozy_yaml.display());
    assert!(
        text.contains(&format!("# Configuration file: {}\n", cozy_yaml.display())),
        "{text}"
    );
    assert!(shown(&text, "host: 127.0.0.1").ends_with(&file), "{text}");
    assert!(shown(&text, &format!("port: {port}")).ends_with("# env COZY_PORT"));
    assert!(shown(&text, &format!("  port: {admin_port}")).ends_with("# env HEARTH_ADMIN_PORT"));
    assert!(shown(&text, "  noreply_name: Drop-in").ends_with("# env COZY_MAIL_NOREPLY_NAME"));
    assert!(shown(&text, "  noreply_address: noreply@example.net").ends_with(&file));
    assert!(shown(&text, "  cmd: /usr/bin/false").ends_with(&file));
    assert!(shown(&text, "  level: warn").ends_with(&file));
    assert!(shown(&text, "registries:").ends_with(&file));
    assert!(
        text.contains("  - https://apps-registry.cozycloud.cc/"),
        "{text}"
    );
    for warning in [
        "couchdb is ignored",
        "fs.default_layout is a Cozy stack setting Hearth does not use; it is ignored",
        "jobs.imagemagick_convert_cmd is a Cozy stack setting",
        "COZY_COUCHDB_URL is ignored",
    ] {
        assert!(text.contains(warning), "{warning:?} not in\n{text}");
    }

    // serve, with every flag of the issue's list and a few without effect.
    let files = d.join("storage");
    let fs_url = format!("file://{}/", files.display());
    let mut cmd = hearth(d);
    with_env(&mut cmd);
    cmd.env("HEARTH_ADMIN_PASSPHRASE", PASSPHRASE)
        .args([
            "serve",
            "--log-level",
            "info",
            "--mailhog",
            "--fs-url",
            &fs_url,
        ])
        .args(["--vault-encryptor-key", "vault-key.enc"])
        .args(["--vault-decryptor-key", "vault-key.dec"])
        .args(["--mail-alert-address", "alerts@example.net"])
        .args(["--onlyoffice-url", "https://office.example.net/"])
        .args(["--konnectors-cmd", "/bin/true", "--host", "127.0.0.1"])
        .args(["--port", &port.to_string(), "--admin-host", "127.0.0.1"])
        .args([
            "--admin-port",
            &admin_port.to_string(),
            "--data-dir",
            "data",
        ])
        .args([
            "--geodb",
            "/nowhere",
            "--allow-root",
            "--fs-default-layout",
            "-1",
        ])
        .args(["--appdir", "app:/tmp", "--password-reset-interval", "15m"]);
    let mut server = Server::spawn(cmd, d, port, admin_port);
    eprintln!(
        "admin API answered {:?} after the spawn",
        server.admin_after
    );
    assert!(
        server.admin_after < Duration::from_secs(1),
        "the admin API answered after {:?}",
        server.admin_after
    );
    let (status, body) =
        try_http(admin_port, "GET", "/version", &[("Host", "127.0.0.1")], "").expect("admin");
    assert_eq!(status, 401, "{body}");

    // --fs-url is where files go.
    ok(&server.cli(d, "instances", &["add", "alice.example.net"]));
    assert!(
        files.join("alice.example.net").is_dir(),
        "no files tree under {}",
        files.display()
    );
    // --konnectors-cmd reached the configuration of the running server (the log line).
    let exit = server.signal("INT");
    assert!(exit.success(), "exit {exit}: {}", log_of(d));
    let log = log_of(d);
    for line in [
        "--geodb is accepted for compatibility with cozy-stack serve and has no effect in Hearth",
        "--allow-root is accepted for compatibility",
        "--fs-default-layout is accepted for compatibility",
        "--appdir is accepted for compatibility",
        "--password-reset-interval is accepted for compatibility",
        "mail.alert_address is set, but Hearth sends no alert mail yet",
        "office (OnlyOffice) is set, but Hearth has no OnlyOffice integration yet",
        "vault keys are set and valid, but Hearth does not encrypt account credentials with them yet",
        "couchdb is ignored",
        "SIGINT received",
        "stopped",
    ] {
        assert!(log.contains(line), "{line:?} not in the log:\n{log}");
    }
    assert_eq!(
        log.matches("--geodb is accepted").count(),
        1,
        "one line per flag:\n{log}"
    );
    assert!(
        try_http(admin_port, "GET", "/version", &[], "").is_none(),
        "the admin port is closed"
    );
}

/// The configuration a bad vault key or a missing file stops, naming the flag.
#[test]
fn vault_keys_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("bad.enc"), "not a key\n").expect("write");
    std::fs::write(d.join("bad.dec"), "not a key\n").expect("write");
    let out = hearth(d)
        .args(["serve", "--vault-encryptor-key", "bad.enc"])
        .args(["--vault-decryptor-key", "bad.dec"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "Error: --vault-encryptor-key: vault.credentials_encryptor_key: bad.enc: not a PEM file (no -----BEGIN line)\n"
    );
    assert!(!d.join("hearth-data").exists(), "nothing is started");
}

/// `--couchdb-url` stops Hearth with a usage error naming its database setting.
#[test]
fn couchdb_url_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = hearth(dir.path())
        .args([
            "serve",
            "--couchdb-url",
            "http://admin:pass@localhost:5984/",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.starts_with("Error: --couchdb-url: "), "{err}");
    assert!(err.contains("database.url"), "{err}");
    assert!(!err.contains("pass@"), "the URL is not echoed: {err}");
    assert!(
        !dir.path().join("hearth-data").exists(),
        "nothing is started"
    );
}

/// Forwards every connection to `127.0.0.1:1025` (and `[::1]:1025` when it can) to
/// `target`, so that `--mailhog`, which sends to `localhost:1025`, reaches the test
/// SMTP server wherever it listens. `None` when port 1025 is taken.
fn forward_1025(target: u16) -> Option<()> {
    let v4 = TcpListener::bind(("127.0.0.1", 1025)).ok()?;
    let mut listeners = vec![v4];
    if let Ok(v6) = TcpListener::bind(("::1", 1025)) {
        listeners.push(v6);
    }
    for listener in listeners {
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let pipe = |mut from: TcpStream, mut to: TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                };
                if let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) {
                    pipe(client, upstream);
                    pipe(u2, c2);
                }
            }
        });
    }
    Some(())
}

/// `--mailhog`: mails go over plain SMTP to localhost:1025, as MIME
/// `multipart/alternative` with the text part first.
#[test]
fn mailhog_sends_to_port_1025() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let smtp = runtime
        .block_on(hearth_mail::testkit::TestSmtpServer::start())
        .expect("SMTP server");
    if forward_1025(smtp.port()).is_none() {
        eprintln!("skipped: port 1025 is taken on this machine, --mailhog cannot be tested");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (port, admin_port) = (free_port(), free_port());
    let mut cmd = hearth(d);
    cmd.env("HEARTH_ADMIN_PASSPHRASE", PASSPHRASE)
        .args([
            "serve",
            "--mailhog",
            "--data-dir",
            "data",
            "--host",
            "127.0.0.1",
        ])
        .args(["--port", &port.to_string(), "--admin-host", "127.0.0.1"])
        .args(["--admin-port", &admin_port.to_string()]);
    let server = Server::spawn(cmd, d, port, admin_port);
    let domain = "mailhog.example.net";
    ok(&server.cli(
        d,
        "instances",
        &["add", domain, "--email", "owner@example.net"],
    ));
    let out = ok(&server.cli(
        d,
        "jobs",
        &[
            "run",
            "sendmail",
            "--domain",
            domain,
            "--json",
            r#"{"mode":"noreply","template_name":"test"}"#,
        ],
    ));
    let job: Value = serde_json::from_str(&out).expect("job JSON");
    assert_eq!(job["state"], "done", "{out}\n{}", log_of(d));
    let mail = runtime
        .block_on(smtp.next_message(PATIENCE))
        .expect("the mail reached port 1025");
    assert_eq!(mail.to, ["owner@example.net"]);
    use mail_parser::MimeHeaders;
    let message = mail_parser::MessageParser::default()
        .parse(&mail.data)
        .expect("a MIME message");
    let root = message.parts[0].content_type().expect("content type");
    assert_eq!(
        (root.ctype(), root.subtype()),
        ("multipart", Some("alternative"))
    );
    let kinds: Vec<(String, Option<String>)> = message.parts[1..]
        .iter()
        .map(|p| {
            let ct = p.content_type().expect("part type");
            (ct.ctype().to_owned(), ct.subtype().map(str::to_owned))
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("text".to_owned(), Some("plain".to_owned())),
            ("text".to_owned(), Some("html".to_owned()))
        ]
    );
    assert!(
        message.parts[1]
            .text_contents()
            .is_some_and(|t| t.contains("test mail from Hearth")),
        "{}",
        mail.text()
    );
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// A JWT alone on one line, nothing else.
#[track_caller]
fn assert_token_line(out: &Output) {
    let text = ok(out);
    let token = text
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("{text:?}"));
    assert!(!token.contains('\n'), "one line: {text:?}");
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT: {token}");
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
        "{token}"
    );
    assert_eq!(stderr(out), "");
}

/// What scripts parse: `add`'s exit code, `client-oauth` and `token-*` alone on their
/// line, flags between positional arguments.
#[test]
fn instances_output_contracts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let server = Server::start(d);
    let domain = "contracts.example.net";

    // add: 0 only when the instance exists.
    ok(&server.cli(d, "instances", &["add", domain]));
    ok(&server.cli(d, "instances", &["show", domain]));
    let again = server.cli(d, "instances", &["add", domain]);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("Failed to create instance for domain"),
        "{}",
        stderr(&again)
    );
    let bad = server.cli(d, "instances", &["add", ".bad.example.net"]);
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    let missing = server.cli(d, "instances", &["show", ".bad.example.net"]);
    assert_ne!(missing.status.code(), Some(0));

    // client-oauth: the client id alone; a flag between the positional arguments.
    let out = server.cli(
        d,
        "instances",
        &[
            "client-oauth",
            domain,
            "http://localhost/callback",
            "--allow-login-scope",
            "Drop-in test",
            "io.hearth.dropin",
        ],
    );
    let text = ok(&out);
    assert_eq!(stderr(&out), "");
    let client_id = text.strip_suffix('\n').expect("one line").to_owned();
    assert!(
        !client_id.is_empty() && !client_id.contains(char::is_whitespace),
        "{text:?}"
    );
    // The id names a real client, which the raw documents show.
    let doc: Value = serde_json::from_str(&ok(&server.cli(
        d,
        "docs",
        &["get", domain, "io.cozy.oauth.clients", &client_id],
    )))
    .expect("client JSON");
    assert_eq!(doc["_id"], json!(client_id));
    assert_eq!(doc["software_id"], json!("io.hearth.dropin"));

    // token-*: the token alone.
    assert_token_line(&server.cli(d, "instances", &["token-cli", domain, "io.cozy.files"]));
    assert_token_line(&server.cli(d, "instances", &["token-app", domain, "drive"]));
    assert_token_line(&server.cli(
        d,
        "instances",
        &["token-konnector", domain, "dropin-konnector"],
    ));
    assert_token_line(&server.cli(
        d,
        "instances",
        &[
            "token-oauth",
            domain,
            "--expire",
            "1h",
            &client_id,
            "io.cozy.files",
        ],
    ));
    assert_token_line(&server.cli(
        d,
        "instances",
        &["refresh-token-oauth", domain, &client_id, "io.cozy.files"],
    ));
}

/// `check triggers` and `check shared`: nothing and 0 when all is well, one JSON line
/// per problem and 1 otherwise.
#[test]
fn check_triggers_and_shared() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let server = Server::start(d);
    let domain = "checks.example.net";
    ok(&server.cli(d, "instances", &["add", domain]));

    let clean = |what: &str| {
        let out = server.cli(d, "check", &[what, domain]);
        assert_eq!(
            (
                out.status.code(),
                stdout(&out).as_str(),
                stderr(&out).as_str()
            ),
            (Some(0), "", ""),
            "check {what}"
        );
    };
    clean("triggers");
    clean("shared");

    // A trigger made through the API is scheduled: still clean.
    let token = ok(&server.cli(d, "instances", &["token-cli", domain, "io.cozy.triggers"]));
    let bearer = format!("Bearer {}", token.trim());
    let (status, body) = try_http(
        server.port,
        "POST",
        "/jobs/triggers",
        &[("Host", domain), ("Authorization", &bearer)],
        r#"{"data":{"attributes":{"type":"@cron","arguments":"0 0 3 * * *","worker":"log","message":{"n":1}}}}"#,
    )
    .expect("public server");
    assert_eq!(status, 201, "{body}");
    clean("triggers");

    // Raw trigger documents: never scheduled, one duplicated, one for no worker.
    let raw = |id: &str, worker: &str| {
        json!({"_id": id, "domain": domain, "type": "@cron", "arguments": "0 0 4 * * *",
               "worker": worker, "message": {"n": 2}})
        .to_string()
    };
    for (id, worker) in [
        ("dup-a", "log"),
        ("dup-b", "log"),
        ("ghost", "no-such-worker"),
    ] {
        ok(&server.cli(
            d,
            "docs",
            &["put", domain, "io.cozy.triggers", &raw(id, worker)],
        ));
    }
    let out = server.cli(d, "check", &["triggers", domain]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let problems = lines(&stdout(&out));
    let summary: Vec<(String, String)> = problems
        .iter()
        .map(|p| {
            (
                p["type"].as_str().unwrap_or_default().to_owned(),
                p["_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let has = |kind: &str, id: &str| summary.contains(&(kind.to_owned(), id.to_owned()));
    assert!(has("duplicate", "dup-a"), "{summary:?}");
    assert!(has("unknown_worker", "ghost"), "{summary:?}");
    for id in ["dup-a", "dup-b", "ghost"] {
        assert!(has("missing_schedule", id), "{summary:?}");
    }
    assert_eq!(summary.len(), 5, "{summary:?}");
    let dup = problems
        .iter()
        .find(|p| p["type"] == "duplicate")
        .expect("duplicate");
    assert_eq!(dup["other_id"], "dup-b");
    assert_eq!(dup["worker"], "log");
    assert_eq!(dup["trigger"], "@cron");

    // A broken revision tree in io.cozy.shared.
    let shared = json!({"_id": "io.cozy.files/abc", "revisions": {"rev": "1-a", "branches": [{"rev": "3-c"}]}});
    ok(&server.cli(
        d,
        "docs",
        &["put", domain, "io.cozy.shared", &shared.to_string()],
    ));
    let out = server.cli(d, "check", &["shared", domain]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        lines(&stdout(&out)),
        [
            json!({"type": "invalid_revs_suite", "_id": "io.cozy.files/abc", "parent_rev": "1-a", "child_rev": "3-c"})
        ]
    );

    // An unknown instance is a failure, not a clean check.
    let out = server.cli(d, "check", &["triggers", "nobody.example.net"]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(1), ""));
    assert!(stderr(&out).starts_with("Error: "), "{}", stderr(&out));
}

/// `hearth docs ls|get|put|find|rm` over the raw routes, on doctypes `/data` refuses,
/// and only with the admin passphrase.
#[test]
fn docs_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let server = Server::start(d);
    let domain = "docs.example.net";
    ok(&server.cli(d, "instances", &["add", domain]));
    let dt = "io.cozy.sharings";

    // put from standard input: {ok, id, rev}.
    let out = server.cli_with_input(
        d,
        "docs",
        &["put", domain, dt],
        r#"{"_id": "s1", "description": "first", "active": true}"#,
    );
    let written: Value = serde_json::from_str(&ok(&out)).expect("one JSON line");
    assert_eq!(
        (written["ok"].clone(), written["id"].clone()),
        (json!(true), json!("s1"))
    );
    let rev1 = written["rev"].as_str().expect("rev").to_owned();
    assert!(rev1.starts_with("1-"), "{rev1}");

    // put from an argument, the id as a flag between the positional arguments.
    let out = ok(&server.cli(
        d,
        "docs",
        &[
            "put",
            domain,
            "--id",
            "s2",
            dt,
            r#"{"description": "second", "active": false}"#,
        ],
    ));
    assert_eq!(lines(&out).len(), 1, "{out}");

    // get: the document, updated with its revision.
    let doc: Value =
        serde_json::from_str(&ok(&server.cli(d, "docs", &["get", domain, dt, "s1"]))).expect("doc");
    assert_eq!(
        (doc["_rev"].as_str(), doc["description"].as_str()),
        (Some(rev1.as_str()), Some("first"))
    );
    let mut updated = doc.clone();
    updated["description"] = json!("first, updated");
    let out = ok(&server.cli(d, "docs", &["put", domain, dt, &updated.to_string()]));
    assert!(
        lines(&out)[0]["rev"]
            .as_str()
            .is_some_and(|r| r.starts_with("2-")),
        "{out}"
    );
    // A stale revision is refused.
    let stale = server.cli(d, "docs", &["put", domain, dt, &doc.to_string()]);
    assert_eq!(stale.status.code(), Some(1), "{}", stderr(&stale));
    assert!(
        stderr(&stale).starts_with("Error: Conflict"),
        "{}",
        stderr(&stale)
    );

    // ls: one document per line, in id order.
    let listed = lines(&ok(&server.cli(d, "docs", &["ls", domain, dt])));
    let ids: Vec<&str> = listed
        .iter()
        .filter_map(|doc| doc["_id"].as_str())
        .collect();
    assert_eq!(ids, ["s1", "s2"]);
    assert_eq!(listed[0]["description"], "first, updated");

    // find: a Mango query.
    let found = lines(&ok(&server.cli(
        d,
        "docs",
        &["find", domain, dt, r#"{"selector": {"active": false}}"#],
    )));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["_id"], "s2");

    // rm at the current revision.
    let out = ok(&server.cli(d, "docs", &["rm", domain, dt, "s2"]));
    assert_eq!(lines(&out)[0]["ok"], true);
    let gone = server.cli(d, "docs", &["get", domain, dt, "s2"]);
    assert_eq!(gone.status.code(), Some(1));
    assert_eq!(
        lines(&ok(&server.cli(d, "docs", &["ls", domain, dt]))).len(),
        1
    );

    // Bad input is refused before any request.
    let out = server.cli(d, "docs", &["put", domain, dt, "{not json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = server.cli(d, "docs", &["put", domain, dt, r#"{"no": "id"}"#]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no _id"), "{}", stderr(&out));

    // Without the passphrase, or with a wrong one: refused, nothing printed.
    let out = server
        .command(d, "docs", &["ls", domain, dt])
        .output()
        .expect("run");
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(1), ""));
    assert!(
        stderr(&out).contains("no admin passphrase"),
        "{}",
        stderr(&out)
    );
    let out = server
        .command(d, "docs", &["get", domain, dt, "s1"])
        .env("HEARTH_ADMIN_PASSPHRASE", "wrong")
        .output()
        .expect("run");
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(1), ""));
    assert!(
        stderr(&out).contains("refused the passphrase"),
        "{}",
        stderr(&out)
    );
    let path = format!("/instances/{domain}/raw/{dt}/_all_docs?include_docs=true");
    let (status, _) = try_http(
        server.admin_port,
        "GET",
        &path,
        &[("Host", "127.0.0.1")],
        "",
    )
    .expect("admin");
    assert_eq!(status, 401);
    let (status, _) = try_http(
        server.admin_port,
        "GET",
        &path,
        &[("Host", "127.0.0.1"), ("Authorization", &basic("wrong"))],
        "",
    )
    .expect("admin");
    assert_eq!(status, 403);
    let (status, body) = try_http(
        server.admin_port,
        "GET",
        &path,
        &[("Host", "127.0.0.1"), ("Authorization", &basic(PASSPHRASE))],
        "",
    )
    .expect("admin");
    assert_eq!(status, 200, "{body}");
}
