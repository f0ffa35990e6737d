//! `hearth instances …` against a real `hearth serve`: the command line as an operator
//! uses it, through the admin API (spec instances 6).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{hearth, stderr, stdout};

const PASSPHRASE: &str = "admin passphrase for tests";

/// `hearth serve` on free loopback ports with its data in `dir`, stopped on drop.
struct Server {
    child: Child,
    port: u16,
    admin_port: u16,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

impl Server {
    fn start(dir: &Path) -> Self {
        let (port, admin_port) = (free_port(), free_port());
        let log = std::fs::File::create(dir.join("server.log")).expect("log file");
        let child = hearth(dir)
            .env("HEARTH_ADMIN_PASSPHRASE", PASSPHRASE)
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
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("hearth serve exited early ({status}): {}", log_of(dir));
            }
            let up = |p: u16| TcpStream::connect(("127.0.0.1", p)).is_ok();
            if up(server.port) && up(server.admin_port) {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "hearth serve did not listen in time: {}",
                log_of(dir)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `hearth instances <args>` aimed at this server, with the right passphrase.
    fn cli(&self, dir: &Path, args: &[&str]) -> Output {
        self.command(dir, args)
            .output()
            .expect("run hearth instances")
    }

    /// Same, with `input` on stdin (not a terminal).
    fn cli_with_input(&self, dir: &Path, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command(dir, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hearth instances");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait")
    }

    fn command(&self, dir: &Path, args: &[&str]) -> Command {
        self.group(dir, "instances", args)
    }

    /// `hearth check <args>` aimed at this server.
    fn check(&self, dir: &Path, args: &[&str]) -> Output {
        self.group(dir, "check", args)
            .output()
            .expect("run hearth check")
    }

    fn group(&self, dir: &Path, group: &str, args: &[&str]) -> Command {
        let mut cmd = hearth(dir);
        cmd.env("HEARTH_ADMIN_PASSPHRASE", PASSPHRASE)
            .arg(group)
            .args(["--admin-host", "127.0.0.1", "--host", "127.0.0.1"])
            .args(["--admin-port", &self.admin_port.to_string()])
            .args(["--port", &self.port.to_string()])
            .args(args);
        cmd
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

/// The `ls` line of a domain, split into its columns.
fn ls_row(listing: &str, domain: &str) -> Vec<String> {
    listing
        .lines()
        .find(|l| l.split_whitespace().next() == Some(domain))
        .unwrap_or_else(|| panic!("{domain} not in:\n{listing}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn lifecycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let d = dir.path();

    // add, in English and in French.
    let out = ok(&server.cli(d, &["add", "alice.example.net"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(
        lines[0],
        "Creating instance for domain \"alice.example.net\": please wait..."
    );
    assert_eq!(
        lines[1],
        "Instance created with success for domain alice.example.net"
    );
    let hex = lines[2]
        .strip_prefix("Registration token: \"")
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{}", lines[2]));
    assert!(
        hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{hex}"
    );
    assert_eq!(
        lines[3],
        format!("Define your password by visiting http://alice.example.net/?registerToken={hex}")
    );
    let out = ok(&server.cli(d, &["create", "--locale", "fr", "bob.example.net"]));
    assert!(
        out.contains("Instance created with success for domain bob.example.net\n"),
        "{out}"
    );

    // count, ls and its formats.
    assert_eq!(ok(&server.cli(d, &["count"])), "2 instances\n");
    let listing = ok(&server.cli(d, &["ls"]));
    assert_eq!(listing.lines().count(), 2, "{listing}");
    let alice = ls_row(&listing, "alice.example.net");
    assert_eq!(alice[1..4], ["en", "unlimited", "onboarding"], "{listing}");
    assert!(alice[4].starts_with('v'), "{listing}");
    assert!(
        alice[5].starts_with("cozy") && alice[5] == alice[6],
        "{listing}"
    );
    assert_eq!(ls_row(&listing, "bob.example.net")[1], "fr");

    let json = ok(&server.cli(d, &["list", "--json"]));
    assert_eq!(json.lines().count(), 2, "{json}");
    let alice_json = json
        .lines()
        .find(|l| l.contains("\"domain\":\"alice.example.net\""))
        .unwrap_or_else(|| panic!("{json}"));
    assert!(alice_json.starts_with("{\"domain\":\"alice.example.net\","));
    assert!(alice_json.contains("\"locale\":\"en\""), "{alice_json}");
    assert!(alice_json.contains("\"register_token\":\""), "{alice_json}");

    let fields = ok(&server.cli(d, &["ls", "--fields", "domain,locale,blocked"]));
    let mut rows: Vec<&str> = fields.lines().collect();
    rows.sort_unstable();
    assert_eq!(rows, ["alice.example.net\ten\t", "bob.example.net\tfr\t"]);
    let json_fields = ok(&server.cli(d, &["ls", "--json", "--fields", "domain,uuid"]));
    assert!(
        json_fields.contains("{\"domain\":\"bob.example.net\",\"uuid\":null}\n"),
        "{json_fields}"
    );

    // show and show-db-prefix.
    let show = ok(&server.cli(d, &["show", "bob.example.net"]));
    assert!(show.starts_with("{\n  \"id\": \""), "{show}");
    assert!(show.contains("\n  \"meta\": {\n    \"rev\": \""), "{show}");
    assert!(
        show.contains("    \"domain\": \"bob.example.net\",\n"),
        "{show}"
    );
    assert!(show.contains("    \"locale\": \"fr\",\n"), "{show}");
    assert!(show.contains("\"onboarding_finished\": false"), "{show}");
    assert!(!show.contains("secret"), "no secret is shown: {show}");
    let prefix = ok(&server.cli(d, &["show-db-prefix", "bob.example.net"]));
    assert!(
        prefix.starts_with("cozy") && prefix.len() == "cozy".len() + 32 + 1,
        "{prefix}"
    );
    assert_eq!(ls_row(&listing, "bob.example.net")[5], prefix.trim_end());

    // modify: block with a reason, then unblock.
    let blocked = ok(&server.cli(
        d,
        &[
            "modify",
            "alice.example.net",
            "--blocked",
            "--blocking-reason",
            "PAYMENT_FAILED",
        ],
    ));
    assert!(blocked.contains("    \"blocked\": true,\n"), "{blocked}");
    let unblocked = ok(&server.cli(d, &["modify", "--blocked=false", "alice.example.net"]));
    assert!(!unblocked.contains("\"blocked\""), "{unblocked}");
    assert!(
        unblocked.contains("\"domain\": \"alice.example.net\""),
        "{unblocked}"
    );

    // set-disk-quota prints nothing; the quota shows in show and ls.
    assert_eq!(
        ok(&server.cli(d, &["set-disk-quota", "alice.example.net", "5GB"])),
        ""
    );
    let show = ok(&server.cli(d, &["show", "alice.example.net"]));
    assert!(
        show.contains("    \"disk_quota\": \"5000000000\",\n"),
        "{show}"
    );
    let listing = ok(&server.cli(d, &["ls"]));
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("alice.example.net") && l.contains("  5.0 GB  ")),
        "{listing}"
    );
    ok(&server.cli(d, &["set-disk-quota", "alice.example.net", "0"]));
    let show = ok(&server.cli(d, &["show", "alice.example.net"]));
    assert!(!show.contains("disk_quota"), "{show}");

    // destroy: a wrong answer keeps the instance, the domain typed in any case destroys it.
    let out = server.cli_with_input(d, &["destroy", "alice.example.net"], "alice.example.org\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "Error: the domain typed does not match alice.example.net: nothing was destroyed\n"
    );
    assert_eq!(ok(&server.cli(d, &["count"])), "2 instances\n");
    let out = server.cli_with_input(d, &["destroy", "alice.example.net"], " ALICE.example.net\n");
    assert_eq!(
        ok(&out),
        "Are you sure you want to DESTROY the instance alice.example.net? Type the domain to \
         confirm: Instance for domain alice.example.net has been destroyed with success\n"
    );
    let out = ok(&server.cli(d, &["rm", "--force", "bob.example.net"]));
    assert_eq!(
        out,
        "Instance for domain bob.example.net has been destroyed with success\n"
    );
    assert_eq!(ok(&server.cli(d, &["count"])), "0 instances\n");
    assert_eq!(ok(&server.cli(d, &["ls"])), "");

    // destroy of an unknown domain.
    let out = server.cli(d, &["destroy", "--force", "nobody.example.net"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with(
            "An error occurred while destroying instance for domain nobody.example.net\n\
             Error: Not Found"
        ),
        "{err}"
    );
    assert_eq!(stdout(&out), "");
}

#[test]
fn errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let d = dir.path();

    ok(&server.cli(d, &["add", "carol.example.net"]));
    // A duplicate.
    let out = server.cli(d, &["add", "carol.example.net"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "Creating instance for domain \"carol.example.net\": please wait...\n"
    );
    assert_eq!(
        stderr(&out),
        "Failed to create instance for domain carol.example.net\n\
         Error: Conflict: Instance already exists\n"
    );

    // A wrong admin passphrase.
    let out = server
        .command(d, &["count"])
        .env("HEARTH_ADMIN_PASSPHRASE", "not the passphrase")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("Error: the admin API refused the passphrase (403"),
        "{err}"
    );
}

/// What the command line refuses or reports without any server.
#[test]
fn without_a_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let port = free_port().to_string();
    let instances = |args: &[&str]| {
        hearth(d)
            .env("HEARTH_ADMIN_PASSPHRASE", PASSPHRASE)
            .args([
                "instances",
                "--admin-host",
                "127.0.0.1",
                "--admin-port",
                &port,
            ])
            .args(args)
            .output()
            .expect("run")
    };

    // An invalid domain: refused before any request.
    for args in [
        &["add", "carol example.net"][..],
        &["modify", "--blocked", "carol example.net"],
        &["destroy", "--force", "carol example.net"],
        &["clean-sessions", "carol example.net"],
    ] {
        let out = instances(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&out), "Error: Invalid domain: carol example.net\n");
        assert_eq!(stdout(&out), "");
    }

    // Nothing listening.
    let out = instances(&["count"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "Error: cannot reach the admin API at http://127.0.0.1:{port}: connection refused \
             (is `hearth serve` running?)\n"
        )
    );

    // No passphrase and no terminal (the alias `instance`).
    let out = hearth(d)
        .env("COZY_ADMIN_PORT", &port)
        .args(["instance", "count"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("Error: no admin passphrase: set HEARTH_ADMIN_PASSPHRASE"),
        "{}",
        stderr(&out)
    );

    // A bad port in the environment is a usage error.
    let out = hearth(d)
        .env("HEARTH_ADMIN_PORT", "sixty")
        .args(["instances", "count"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "Error: HEARTH_ADMIN_PORT: invalid port \"sixty\"\n"
    );

    // Flags and their aliases are in the help.
    let out = hearth(d)
        .args(["instances", "--help"])
        .output()
        .expect("run");
    let help = stdout(&out);
    for name in [
        "add",
        "ls",
        "count",
        "show",
        "show-db-prefix",
        "modify",
        "set-disk-quota",
        "destroy",
        "token-cli",
        "token-app",
        "token-konnector",
        "token-oauth",
        "refresh-token-oauth",
        "client-oauth",
        "find-oauth-client",
        "clean-sessions",
        "set-passphrase",
        "--admin-host",
        "--admin-port",
        "--host",
        "-p, --port",
    ] {
        assert!(help.contains(name), "{name} in {help}");
    }
}

/// A raw HTTP GET to the public server with a `Host` and an optional bearer token.
fn get_as(port: u16, host: &str, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::Read;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Accept: application/json\r\nConnection: close\r\n\r\n").expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

#[test]
fn tokens_stop_at_their_instance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let (a, b) = ("a.localhost", "b.localhost");
    for d in [a, b] {
        ok(&server.cli(dir.path(), &["add", d]));
    }
    ok(&server.cli(
        dir.path(),
        &["modify", "--blocked", "--blocking-reason", "UNKNOWN", a],
    ));
    let token_a = ok(&server.cli(dir.path(), &["token-cli", a, "io.cozy.files"]));
    let token_b = ok(&server.cli(dir.path(), &["token-cli", b, "io.cozy.files"]));
    assert_eq!(token_a.lines().count(), 1, "the token alone: {token_a}");
    assert_eq!(token_a.trim().split('.').count(), 3, "a JWT: {token_a}");
    // A's CLI token passes A's block; B's token is refused on A; no token neither.
    assert_eq!(
        get_as(server.port, a, "/data/", Some(token_a.trim())).0,
        200
    );
    assert_eq!(
        get_as(server.port, a, "/data/", Some(token_b.trim())).0,
        503
    );
    assert_eq!(get_as(server.port, a, "/data/", None).0, 503);
    for args in [["token-app", a, "drive"], ["token-konnector", a, "bank"]] {
        let t = ok(&server.cli(dir.path(), &args));
        assert_eq!(t.trim().split('.').count(), 3, "{args:?}: {t}");
    }
    let t = ok(&server.cli(
        dir.path(),
        &["token-oauth", a, "some-client", "io.cozy.files"],
    ));
    assert_eq!(t.trim().split('.').count(), 3);
    let unknown = server.cli(
        dir.path(),
        &["token-cli", "nobody.localhost", "io.cozy.files"],
    );
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("Instance not found"),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn oauth_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    ok(&server.cli(dir.path(), &["add", "a.localhost"]));
    let id = ok(&server.cli(
        dir.path(),
        &[
            "client-oauth",
            "a.localhost",
            "http://localhost/cb",
            "Drive",
            "io.drive",
        ],
    ));
    assert_eq!(id.trim().len(), 32, "the client id alone: {id}");
    assert_eq!(id.lines().count(), 1);
    let found = ok(&server.cli(
        dir.path(),
        &["find-oauth-client", "a.localhost", "io.drive"],
    ));
    let found: serde_json::Value = serde_json::from_str(&found).expect("JSON");
    assert_eq!(found["client_id"], id.trim());
    let json = ok(&server.cli(
        dir.path(),
        &[
            "client-oauth",
            "--json",
            "a.localhost",
            "http://localhost/cb",
            "Photos",
            "io.photos",
        ],
    ));
    let json: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(json["client_name"], "Photos");
    let bad = server.cli(
        dir.path(),
        &["client-oauth", "a.localhost", "nope", "X", "y"],
    );
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("nope is invalid"), "{}", stderr(&bad));
}

/// A raw HTTP/1.1 exchange with the public server: status, head and body.
fn http(port: u16, request: &str) -> (u16, String, String) {
    use std::io::Read;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// `name=value` of a `Set-Cookie` in a response head.
fn set_cookie(head: &str, name: &str) -> String {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.trim())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie in {head}"))
        .to_owned()
}

/// The quoted value following `marker` in a page.
fn quoted_after(body: &str, marker: &str) -> String {
    let start = body
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {body}"))
        + marker.len();
    body[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Logs in over HTTP as the login page's script would; returns the status, the head
/// and the body of the answer to the form.
fn log_in(port: u16, host: &str, password: &str) -> (u16, String, String) {
    let (status, head, page) = http(
        port,
        &format!(
            "GET /auth/login HTTP/1.1\r\nHost: {host}\r\nAccept: text/html\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 200, "{head}\n{page}");
    let csrf_cookie = set_cookie(&head, "_csrf");
    let token = quoted_after(&page, "name=\"csrf_token\" value=\"");
    let salt = quoted_after(&page, "data-salt=\"");
    let iterations: u32 = quoted_after(&page, "data-iterations=\"")
        .parse()
        .expect("iterations");
    let hash = hearth_instances::passphrase::client_hash(password, &salt, iterations);
    let encoded: String = hash
        .bytes()
        .map(|b| match b {
            b'+' => "%2B".to_owned(),
            b'/' => "%2F".to_owned(),
            b'=' => "%3D".to_owned(),
            b => char::from(b).to_string(),
        })
        .collect();
    let body = format!("passphrase={encoded}&csrf_token={token}");
    http(
        port,
        &format!(
            "POST /auth/login HTTP/1.1\r\nHost: {host}\r\nAccept: text/html\r\nCookie: {csrf_cookie}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn set_passphrase_then_log_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let d = dir.path();
    let host = "owner.localhost";
    ok(&server.cli(d, &["add", host]));
    let out = ok(&server.cli(d, &["set-passphrase", host, "a new passphrase"]));
    assert_eq!(
        out,
        format!("Passphrase has been changed for instance {host}\n")
    );
    let show = ok(&server.cli(d, &["show", host]));
    assert!(show.contains("\"onboarding_finished\": true"), "{show}");
    assert!(show.contains("\"password_defined\": true"), "{show}");

    let (status, _, body) = log_in(server.port, host, "not the passphrase");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Incorrect password"), "{body}");
    let (status, head, _) = log_in(server.port, host, "a new passphrase");
    assert_eq!(status, 303, "{head}");
    assert!(
        head.contains(&format!("location: http://{host}/")),
        "{head}"
    );
    let session = set_cookie(&head, "cozysessid");
    let (status, _, home) = http(
        server.port,
        &format!(
            "GET / HTTP/1.1\r\nHost: {host}\r\nAccept: text/html\r\nCookie: {session}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 200, "{home}");
    assert!(
        home.contains(&format!(
            "You are logged in to <strong id=\"domain\">{host}</strong>"
        )),
        "{home}"
    );

    // An unknown instance: the command fails and says why.
    let out = server.cli(d, &["set-passphrase", "nobody.localhost", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Instance not found"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_fs_finds_content_deleted_behind_hearths_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let d = "fsck.localhost";
    ok(&server.cli(dir.path(), &["add", d]));
    let token = ok(&server.cli(dir.path(), &["token-cli", d, "io.cozy.files"]));
    let body = "hello fsck";
    let (status, _, answer) = http(
        server.port,
        &format!(
            "POST /files/?Type=file&Name=a.txt HTTP/1.1\r\nHost: {d}\r\nAuthorization: Bearer {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            token.trim(),
            body.len()
        ),
    );
    assert_eq!(status, 201, "{answer}");

    let clean = server.check(dir.path(), &["fs", d]);
    assert_eq!(ok(&clean), "", "nothing to say when all is well");
    assert_eq!(stderr(&clean), "");

    std::fs::remove_file(dir.path().join("data/files").join(d).join("a.txt"))
        .expect("delete the content");
    let broken = server.check(dir.path(), &["fs", d]);
    assert_eq!(broken.status.code(), Some(1), "{}", stderr(&broken));
    let out = stdout(&broken);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["type"], "missing_content", "{out}");
    assert_eq!(lines[0]["path"], "/a.txt", "{out}");

    // The deprecated spelling says the same, plus a hint on stderr.
    let old = server.cli(dir.path(), &["fsck", d]);
    assert_eq!(old.status.code(), Some(1));
    assert_eq!(stdout(&old), out);
    assert!(stderr(&old).contains("check fs"), "{}", stderr(&old));

    let unknown = server.check(dir.path(), &["fs", "nobody.localhost"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("Instance not found"),
        "{}",
        stderr(&unknown)
    );
}
