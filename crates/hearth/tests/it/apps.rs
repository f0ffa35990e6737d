//! Apps and konnectors end to end: `hearth serve` configured with a local directory
//! registry built from `tests/fixtures` (`make-registry.sh`) and the fixtures'
//! `konnector-node-run.sh` as `konnectors.cmd`; `hearth instances add --apps`,
//! `hearth apps …` and `hearth konnectors …` against it; the demo konnector run with
//! an account, failing with LOGIN_FAILED, and its `on_delete_account` hook; the demo
//! app's service run by its `@event` trigger, service triggers kept in line with the
//! manifest on install, update and uninstall, and manifests with a bad service refused.
//!
//! The konnector and service runs need `node` (20 or later, for `fetch`). Without it
//! they fail with a message saying so, unless `HEARTH_SKIP_NODE_TESTS=1`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{hearth, http, stderr, stdout};

const PASSPHRASE: &str = "admin passphrase for the apps tests";

/// Long enough for a debug build on a busy machine; every wait polls.
const PATIENCE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The repository's `tests/fixtures`.
fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .canonicalize()
        .expect("tests/fixtures")
}

/// Builds the local registry of the demo app and konnector in `dir/registry`.
fn make_registry(dir: &Path) -> PathBuf {
    let out = dir.join("registry");
    let run = std::process::Command::new("sh")
        .arg(fixtures().join("make-registry.sh"))
        .arg(&out)
        .output()
        .expect("run make-registry.sh");
    assert!(
        run.status.success(),
        "make-registry.sh failed: {}",
        stderr(&run)
    );
    assert!(out.join("registry/demo/stable/latest").is_file());
    assert!(out.join("registry/demo-konnector/stable/latest").is_file());
    out
}

/// Whether the konnector parts can run: `node` is there, or skipping was asked for.
fn node_available() -> bool {
    let found = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return true;
    }
    if std::env::var("HEARTH_SKIP_NODE_TESTS").is_ok_and(|v| v == "1") {
        eprintln!(
            "SKIPPED: the konnector tests need node, which is missing (HEARTH_SKIP_NODE_TESTS=1)"
        );
        return false;
    }
    panic!(
        "the konnector tests need node (20 or later) on the PATH; install it, or set \
         HEARTH_SKIP_NODE_TESTS=1 to skip them"
    );
}

/// `hearth serve` on free loopback ports with its data in `dir/data`; killed on drop.
struct Server {
    child: Child,
    port: u16,
    admin_port: u16,
    dir: PathBuf,
}

impl Server {
    /// With this configuration file's text.
    fn start(dir: &Path, config: &str) -> Self {
        let (port, admin_port) = (free_port(), free_port());
        let config_file = dir.join("hearth-test.yaml");
        std::fs::write(&config_file, config).expect("config file");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .expect("log file");
        let child = hearth(dir)
            .arg("--config")
            .arg(&config_file)
            .env("HEARTH_ADMIN_PASSPHRASE", PASSPHRASE)
            .env("HEARTH_JOBS_RETRY_DELAY", "200ms")
            .env("RUST_LOG", "info,hearth_jobs=debug")
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
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("hearth serve exited early ({status}): {}", server.log());
            }
            let up = |p: u16| TcpStream::connect(("127.0.0.1", p)).is_ok();
            if up(server.port) && up(server.admin_port) {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "hearth serve did not listen in time: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// `hearth <group> <args>` aimed at this server.
    fn cli(&self, group: &str, args: &[&str]) -> Output {
        hearth(&self.dir)
            .env("HEARTH_ADMIN_PASSPHRASE", PASSPHRASE)
            .arg(group)
            .args(["--admin-host", "127.0.0.1", "--host", "127.0.0.1"])
            .args(["--admin-port", &self.admin_port.to_string()])
            .args(["--port", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run hearth")
    }

    /// Asserts the command succeeded; its stdout.
    #[track_caller]
    fn ok(&self, group: &str, args: &[&str]) -> String {
        let out = self.cli(group, args);
        assert!(
            out.status.success(),
            "hearth {group} {args:?}: exit {:?}\nstdout: {}\nstderr: {}\n--- server log ---\n{}",
            out.status.code(),
            stdout(&out),
            stderr(&out),
            tail(&self.log())
        );
        stdout(&out)
    }

    /// A CLI token of `domain` for these scopes.
    fn token(&self, domain: &str, scopes: &[&str]) -> String {
        let mut args = vec!["token-cli", domain];
        args.extend_from_slice(scopes);
        self.ok("instances", &args).trim().to_owned()
    }

    /// A request to the public server as the instance `domain`.
    fn api(&self, domain: &str, token: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
        let auth = format!("Bearer {token}");
        let (status, text) = http(
            self.port,
            method,
            path,
            &[("Host", domain), ("Authorization", &auth)],
            body,
        );
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// The documents of a doctype (none when the doctype has none yet).
    fn docs(&self, domain: &str, token: &str, doctype: &str) -> Vec<Value> {
        let (status, body) = self.api(
            domain,
            token,
            "GET",
            &format!("/data/{doctype}/_all_docs?include_docs=true"),
            "",
        );
        if status == 404 {
            return Vec::new();
        }
        assert_eq!(status, 200, "{body}");
        body["rows"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter(|r| !r["id"].as_str().unwrap_or("").starts_with("_design"))
                    .map(|r| r["doc"].clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The configuration: the local registry and, when given, `konnectors.cmd`.
fn config(registry: &Path, konnectors_cmd: Option<&Path>) -> String {
    let mut text = format!(
        "registries:\n  default:\n    - \"file://{}\"\n",
        registry.display()
    );
    if let Some(cmd) = konnectors_cmd {
        text.push_str(&format!("konnectors:\n  cmd: \"{}\"\n", cmd.display()));
    }
    text
}

/// The service triggers of `slug` (`hearth triggers ls`: worker `service`,
/// `message.slug`).
fn service_triggers(server: &Server, domain: &str, slug: &str) -> Vec<Value> {
    let out = server.ok("triggers", &["ls", "--domain", domain]);
    let list: Value = serde_json::from_str(&out).expect("triggers ls prints a JSON array");
    list.as_array()
        .expect("an array")
        .iter()
        .filter(|t| t["worker"] == "service" && t["message"]["slug"] == slug)
        .cloned()
        .collect()
}

/// The row of `slug` in an `apps ls` listing, split on white space.
fn ls_row(listing: &str, slug: &str) -> Option<Vec<String>> {
    listing
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|cells| cells.first().is_some_and(|s| s == slug))
}

/// The web app from the registry at creation, a failure reported per app, `apps`
/// commands, the konnector's runs and hook, uninstalls, bad input.
#[test]
fn apps_and_konnectors_from_a_local_registry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let registry = make_registry(d);
    let cmd = fixtures().join("konnector-node-run.sh");
    let server = Server::start(d, &config(&registry, Some(&cmd)));
    // The instance answers on the server's own port, so that COZY_URL reaches it.
    let domain = format!("alice.localhost:{}", server.port);
    let domain = domain.as_str();
    let apps_dir = d.join("data/apps").join(domain);

    // `--apps demo,missing`: the instance exists with demo; missing is reported.
    let out = server.cli("instances", &["add", domain, "--apps", "demo,missing"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}\n{}",
        stdout(&out),
        stderr(&out),
        tail(&server.log())
    );
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "Instance created with success for domain {domain}\n"
        )),
        "{text}"
    );
    assert!(
        text.ends_with("/!\\ Application missing has not been installed\n"),
        "{text}"
    );
    assert!(!text.contains("Application demo has not"), "{text}");

    let listing = server.ok("apps", &["ls", "--domain", domain]);
    let row = ls_row(&listing, "demo").unwrap_or_else(|| panic!("no demo in {listing:?}"));
    assert_eq!(row, ["demo", "registry://demo/stable", "1.0.0", "ready"]);
    assert_eq!(listing.lines().count(), 1, "{listing}");
    assert!(apps_dir.join("apps/demo/manifest.webapp").is_file());
    assert!(apps_dir.join("apps/demo/index.html").is_file());
    // Installed at creation, its service has its trigger.
    let triggers = service_triggers(&server, domain, "demo");
    assert_eq!(triggers.len(), 1, "{triggers:?}");
    assert_eq!(triggers[0]["type"], "@event");
    assert_eq!(triggers[0]["arguments"], "io.cozy.todos:CREATED");
    assert_eq!(
        triggers[0]["message"],
        json!({"slug": "demo", "name": "onTodo"})
    );
    let service_trigger = triggers[0]["_id"].as_str().expect("trigger id").to_owned();

    let shown: Value =
        serde_json::from_str(&server.ok("apps", &["show", "demo", "--domain", domain]))
            .expect("apps show prints JSON");
    assert_eq!(shown["slug"], "demo");
    assert_eq!(shown["name"], "Demo");
    assert_eq!(shown["version"], "1.0.0");
    assert_eq!(shown["state"], "ready");
    assert!(shown.get("_rev").is_none(), "{shown}");

    // Already there: the server's refusal, exit 1.
    let out = server.cli("apps", &["install", "demo", "--domain", domain]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("Error: "), "{}", stderr(&out));

    // The konnector, from the same registry (a bare slug: registry://<slug>/stable).
    let out = server.ok(
        "konnectors",
        &["install", "demo-konnector", "--domain", domain],
    );
    assert_eq!(
        out,
        format!("demo-konnector (1.0.0) has been installed on {domain}\n")
    );
    let listing = server.ok("konnectors", &["ls", "--domain", domain]);
    assert_eq!(
        ls_row(&listing, "demo-konnector").as_deref(),
        Some(
            &[
                "demo-konnector".to_owned(),
                "registry://demo-konnector/stable".into(),
                "1.0.0".into(),
                "ready".into()
            ][..]
        ),
        "{listing}"
    );
    // Web apps and konnectors are listed apart.
    assert!(
        ls_row(
            &server.ok("apps", &["ls", "--domain", domain]),
            "demo-konnector"
        )
        .is_none()
    );
    assert!(
        apps_dir
            .join("konnectors/demo-konnector/index.js")
            .is_file()
    );

    // Updating to the same version changes nothing, the service's trigger included.
    let out = server.ok("apps", &["update", "demo", "--domain", domain]);
    assert_eq!(out, "demo is already up-to-date at 1.0.0\n");
    let triggers = service_triggers(&server, domain, "demo");
    assert_eq!(triggers.len(), 1, "{triggers:?}");
    assert_eq!(triggers[0]["_id"], service_trigger.as_str());

    if node_available() {
        konnector_runs(&server, domain);
        service_runs(&server, domain, &service_trigger);
    }

    // Uninstall: gone from the listing, its files removed.
    let out = server.ok("apps", &["rm", "demo", "--domain", domain]);
    assert_eq!(out, "demo has been uninstalled\n");
    let listing = server.ok("apps", &["ls", "--domain", domain]);
    assert!(ls_row(&listing, "demo").is_none(), "{listing}");
    assert!(!apps_dir.join("apps/demo").exists());
    let out = server.cli("apps", &["show", "demo", "--domain", domain]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // And its service's trigger with it.
    let triggers = service_triggers(&server, domain, "demo");
    assert!(triggers.is_empty(), "{triggers:?}");
    let out = server.ok(
        "konnectors",
        &["uninstall", "demo-konnector", "--domain", domain],
    );
    assert_eq!(out, "demo-konnector has been uninstalled\n");
    assert!(!apps_dir.join("konnectors/demo-konnector").exists());

    // Bad input: an error, exit 1, nothing installed.
    let out = server.cli("apps", &["install", "nope", "--domain", domain]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("Error: "), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let out = server.cli(
        "apps",
        &[
            "install",
            "bad",
            "ftp://example.net/x.tar.gz",
            "--domain",
            domain,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("Error: "), "{}", stderr(&out));
    let listing = server.ok("apps", &["ls", "--domain", domain]);
    assert_eq!(listing, "", "{listing}");
    // Refused before any request: no domain, an empty slug.
    let out = server.cli("apps", &["ls"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--domain"), "{}", stderr(&out));
    let out = server.cli("apps", &["install", " ", "--domain", domain]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = server.cli("apps", &["ls", "--domain", "unknown.localhost"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

/// The demo konnector: a run with an account writes its record; the login `fail`
/// errors the job with LOGIN_FAILED; deleting the account runs `on_delete_account`.
fn konnector_runs(server: &Server, domain: &str) {
    let token = server.token(domain, &["io.cozy.accounts", "io.cozy.demo.records"]);
    let (status, created) = server.api(
        domain,
        &token,
        "POST",
        "/data/io.cozy.accounts/",
        &json!({"account_type": "demo-konnector", "auth": {"login": "alice"}}).to_string(),
    );
    assert_eq!(status, 201, "{created}");
    let account = created["id"].as_str().expect("account id").to_owned();
    let account_rev = created["rev"].as_str().expect("account rev").to_owned();

    let out = server.ok(
        "konnectors",
        &[
            "run",
            "demo-konnector",
            "--domain",
            domain,
            "--account-id",
            &account,
        ],
    );
    let job: Value = serde_json::from_str(&out).expect("the job as JSON");
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["worker"], "konnector");
    assert_eq!(
        job["message"],
        json!({"konnector": "demo-konnector", "account": account})
    );
    let records = server.docs(domain, &token, "io.cozy.demo.records");
    let fetched: Vec<&Value> = records.iter().filter(|r| r["kind"] == "fetched").collect();
    assert_eq!(fetched.len(), 1, "{records:?}");
    let record = fetched[0];
    assert_eq!(record["account"], account.as_str());
    assert_eq!(
        record["login"], "alice",
        "the account's auth is in COZY_FIELDS"
    );
    assert_eq!(record["greeting"], "hello", "the manifest's parameters");
    assert_eq!(record["job"], job["_id"], "COZY_JOB_ID");
    assert_eq!(record["locale"], "en", "COZY_LOCALE");

    // A wrong login: the critical line is the job's error, and the exit status 1.
    let (status, wrong) = server.api(
        domain,
        &token,
        "POST",
        "/data/io.cozy.accounts/",
        &json!({"account_type": "demo-konnector", "auth": {"login": "fail"}}).to_string(),
    );
    assert_eq!(status, 201, "{wrong}");
    let wrong = wrong["id"].as_str().expect("account id").to_owned();
    let out = server.cli(
        "konnectors",
        &[
            "run",
            "demo-konnector",
            "--domain",
            domain,
            "--account-id",
            &wrong,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stderr(&out), "Error: the job errored: LOGIN_FAILED\n");
    let job: Value = serde_json::from_str(&stdout(&out)).expect("the job as JSON");
    assert_eq!(job["state"], "errored");
    assert_eq!(job["error"], "LOGIN_FAILED");

    // An account that does not exist, a konnector that is not installed: errored.
    let out = server.cli(
        "konnectors",
        &[
            "run",
            "demo-konnector",
            "--domain",
            domain,
            "--account-id",
            "nope",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
    let out = server.cli("konnectors", &["run", "other", "--domain", domain]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not installed"), "{}", stderr(&out));

    // Deleting the account runs the konnector's `on_delete_account` hook.
    let (status, body) = server.api(
        domain,
        &token,
        "DELETE",
        &format!("/data/io.cozy.accounts/{account}?rev={account_rev}"),
        "",
    );
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let records = server.docs(domain, &token, "io.cozy.demo.records");
        if let Some(r) = records.iter().find(|r| r["kind"] == "account-deleted") {
            assert_eq!(r["account"], account.as_str(), "{r}");
            assert_eq!(r["login"], "alice", "the deleted account's fields: {r}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the on_delete_account hook did not run: {records:?}\n{}",
            tail(&server.log())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The demo app's service: creating a todo fires its `@event` trigger, and the
/// service, run by node with the app's token, records the todo.
fn service_runs(server: &Server, domain: &str, trigger_id: &str) {
    let token = server.token(
        domain,
        &["io.cozy.todos", "io.cozy.demo.services", "io.cozy.jobs"],
    );
    let (status, created) = server.api(
        domain,
        &token,
        "POST",
        "/data/io.cozy.todos/",
        &json!({"title": "Water the plants", "done": false}).to_string(),
    );
    assert_eq!(status, 201, "{created}");
    let todo = created["id"].as_str().expect("todo id").to_owned();

    let deadline = Instant::now() + PATIENCE;
    let record = loop {
        let records = server.docs(domain, &token, "io.cozy.demo.services");
        if let Some(r) = records.iter().find(|r| r["todo"] == todo.as_str()) {
            break r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the service did not record the todo: {records:?}\n{}",
            tail(&server.log())
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(record["service"], "onTodo", "{record}");
    assert_eq!(
        record["title"], "Water the plants",
        "COZY_COUCH_DOC: {record}"
    );
    assert_eq!(record["trigger"], trigger_id, "COZY_TRIGGER_ID: {record}");
    assert_eq!(record["locale"], "en", "COZY_LOCALE: {record}");
    // Its job: worker `service`, the trigger's message, done.
    let job_id = record["job"].as_str().expect("COZY_JOB_ID").to_owned();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, job) = server.api(domain, &token, "GET", &format!("/jobs/{job_id}"), "");
        assert_eq!(status, 200, "{job}");
        let attrs = &job["data"]["attributes"];
        if attrs["state"] == "done" {
            assert_eq!(attrs["worker"], "service", "{job}");
            assert_eq!(
                attrs["message"],
                json!({"slug": "demo", "name": "onTodo"}),
                "{job}"
            );
            assert_eq!(attrs["trigger_id"], trigger_id, "{job}");
            break;
        }
        assert!(
            !matches!(attrs["state"].as_str(), Some("errored")) && Instant::now() < deadline,
            "the service's job did not finish: {job}\n{}",
            tail(&server.log())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Writes a web app's folder: its manifest (`services` as given, `version`) and files.
fn write_app(dir: &Path, version: &str, services: Value) {
    std::fs::create_dir_all(dir.join("services")).expect("mkdir");
    let manifest = json!({
        "name": "Services",
        "slug": "svc",
        "editor": "Hearth tests",
        "version": version,
        "type": "webapp",
        "permissions": {
            "todos": {"type": "io.cozy.todos", "verbs": ["GET"]}
        },
        "services": services,
    });
    std::fs::write(dir.join("manifest.webapp"), manifest.to_string()).expect("manifest");
    std::fs::write(
        dir.join("index.html"),
        "<!DOCTYPE html><title>svc</title>\n",
    )
    .expect("index");
    std::fs::write(dir.join("services/s.js"), "console.log('{}');\n").expect("service");
}

/// Service triggers follow the manifest: created at install (none for a service
/// without a trigger), matched by name on update (an unchanged one kept, a changed one
/// replaced, a removed one deleted), deleted at uninstall; a manifest whose service
/// cannot be scheduled is refused with an error naming it, and nothing is installed.
#[test]
fn service_triggers_follow_the_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let registry = make_registry(d);
    let server = Server::start(d, &config(&registry, None));
    let domain = format!("dave.localhost:{}", server.port);
    let domain = domain.as_str();
    server.ok("instances", &["add", domain]);
    let app = d.join("svc-app");
    let source = format!("file://{}", app.display());
    let installed_dir = d.join("data/apps").join(domain).join("apps");

    // Refused: a trigger Hearth cannot schedule, a file the app does not have, a
    // debounce that is no duration.
    for (services, named, why) in [
        (
            json!({
                "fine": {"type": "node", "file": "services/s.js", "trigger": "@every 1h"},
                "broken": {"type": "node", "file": "services/s.js", "trigger": "@cron not a cron"},
            }),
            "service \"broken\"",
            "invalid trigger",
        ),
        (
            json!({"ghost": {"type": "node", "file": "services/nope.js", "trigger": "@event io.cozy.todos:CREATED"}}),
            "service \"ghost\"",
            "no file",
        ),
        (
            json!({"hasty": {"type": "node", "file": "services/s.js", "trigger": "@event io.cozy.todos", "debounce": "soon"}}),
            "service \"hasty\"",
            "debounce",
        ),
    ] {
        write_app(&app, "1.0.0", services);
        let out = server.cli("apps", &["install", "svc", &source, "--domain", domain]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.starts_with("Error: "), "{err}");
        assert!(err.contains("Invalid manifest: "), "{err}");
        assert!(err.contains(named) && err.contains(why), "{err}");
        assert_eq!(stdout(&out), "");
        // Nothing installed: no app, no files, no trigger.
        let listing = server.ok("apps", &["ls", "--domain", domain]);
        assert_eq!(listing, "", "{listing}");
        assert!(!installed_dir.join("svc").exists());
        assert!(service_triggers(&server, domain, "svc").is_empty());
    }

    // Installed: a trigger per service that has one.
    write_app(
        &app,
        "1.0.0",
        json!({
            "onTodo": {"type": "node", "file": "services/s.js", "trigger": "@event io.cozy.todos:CREATED", "debounce": "2s"},
            "hourly": {"type": "node", "file": "services/s.js", "trigger": "@every 1h"},
            "gone": {"type": "node", "file": "./services/s.js", "trigger": "@daily"},
            "onDemand": {"type": "node", "file": "services/s.js"},
            "legacy": {"type": "node", "file": "services/s.js", "trigger": "@at 2000-01-01T00:00:00.000Z"},
        }),
    );
    server.ok("apps", &["install", "svc", &source, "--domain", domain]);
    let by_name = |triggers: &[Value]| -> std::collections::BTreeMap<String, Value> {
        triggers
            .iter()
            .map(|t| {
                (
                    t["message"]["name"].as_str().unwrap_or("").to_owned(),
                    t.clone(),
                )
            })
            .collect()
    };
    let before = by_name(&service_triggers(&server, domain, "svc"));
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        ["gone", "hourly", "onTodo"],
        "{before:?}"
    );
    assert_eq!(before["onTodo"]["type"], "@event");
    assert_eq!(before["onTodo"]["arguments"], "io.cozy.todos:CREATED");
    assert_eq!(before["onTodo"]["debounce"], "2s");
    assert_eq!(
        before["onTodo"]["message"],
        json!({"slug": "svc", "name": "onTodo"})
    );
    assert_eq!(before["hourly"]["type"], "@every");
    assert_eq!(before["hourly"]["arguments"], "1h");

    // Updated: onTodo unchanged (kept), hourly changed (replaced), gone removed,
    // fresh added.
    write_app(
        &app,
        "1.1.0",
        json!({
            "onTodo": {"type": "node", "file": "services/s.js", "trigger": "@event io.cozy.todos:CREATED", "debounce": "2s"},
            "hourly": {"type": "node", "file": "services/s.js", "trigger": "@every 2h"},
            "fresh": {"type": "node", "file": "services/s.js", "trigger": "@cron 0 0 5 * * *"},
        }),
    );
    let out = server.ok("apps", &["update", "svc", &source, "--domain", domain]);
    assert_eq!(out, "svc has been upgraded to 1.1.0\n");
    let after = by_name(&service_triggers(&server, domain, "svc"));
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        ["fresh", "hourly", "onTodo"],
        "{after:?}"
    );
    assert_eq!(after["onTodo"]["_id"], before["onTodo"]["_id"]);
    assert_ne!(after["hourly"]["_id"], before["hourly"]["_id"]);
    assert_eq!(after["hourly"]["arguments"], "2h");
    assert_eq!(after["fresh"]["type"], "@cron");

    // An update whose new service cannot be scheduled: the files cannot go back, so
    // the app is updated, its valid services scheduled, and the error names the other.
    write_app(
        &app,
        "1.2.0",
        json!({
            "onTodo": {"type": "node", "file": "services/s.js", "trigger": "@event io.cozy.todos:CREATED", "debounce": "2s"},
            "broken": {"type": "node", "file": "services/s.js", "trigger": "@sometimes"},
        }),
    );
    let out = server.cli("apps", &["update", "svc", &source, "--domain", domain]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("service \"broken\""),
        "{}",
        stderr(&out)
    );
    let listing = server.ok("apps", &["ls", "--domain", domain]);
    assert_eq!(
        ls_row(&listing, "svc").expect("still installed")[2],
        "1.2.0"
    );
    let now = by_name(&service_triggers(&server, domain, "svc"));
    assert_eq!(now.keys().collect::<Vec<_>>(), ["onTodo"], "{now:?}");
    assert_eq!(now["onTodo"]["_id"], before["onTodo"]["_id"]);

    // Uninstalled: its triggers go with it.
    server.ok("apps", &["uninstall", "svc", "--domain", domain]);
    assert!(service_triggers(&server, domain, "svc").is_empty());
}

/// Without `konnectors.cmd`, a konnector job fails with a clear error.
#[test]
fn konnector_jobs_need_a_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let registry = make_registry(d);
    let server = Server::start(d, &config(&registry, None));
    let domain = format!("bob.localhost:{}", server.port);
    let domain = domain.as_str();
    server.ok("instances", &["add", domain]);
    server.ok(
        "konnectors",
        &["install", "demo-konnector", "--domain", domain],
    );
    let out = server.cli("konnectors", &["run", "demo-konnector", "--domain", domain]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "Error: the job errored: konnectors.cmd is not configured\n"
    );
    let job: Value = serde_json::from_str(&stdout(&out)).expect("the job as JSON");
    assert_eq!(job["state"], "errored");
    assert_eq!(job["message"], json!({"konnector": "demo-konnector"}));
}

/// What a konnector process gets (`konnectors.cmd` here is a shell script that
/// records its environment, argument and directory, then waits with a child), and
/// what a timeout leaves behind: nothing.
#[test]
fn konnector_environment_and_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let registry = make_registry(d);
    let seen = d.join("seen");
    std::fs::create_dir(&seen).expect("mkdir");
    let script = d.join("record-and-wait.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nout='{}'\nenv > \"$out/env\"\npwd > \"$out/pwd\"\n\
             printf '%s\\n' \"$1\" > \"$out/arg\"\nls \"$1\" > \"$out/files\"\n\
             echo '{{\"type\":\"info\",\"message\":\"waiting\"}}'\n\
             sleep 300 &\necho $! > \"$out/child\"\necho $$ > \"$out/self\"\nwait\n",
            seen.display()
        ),
    )
    .expect("script");
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .expect("chmod");
    let config = format!(
        "{}jobs:\n  workers:\n    konnector:\n      timeout: 3\n      max_exec_count: 1\n",
        config(&registry, Some(&script))
    );
    let server = Server::start(d, &config);
    let domain = format!("carol.localhost:{}", server.port);
    let domain = domain.as_str();
    server.ok("instances", &["add", domain]);
    server.ok(
        "konnectors",
        &["install", "demo-konnector", "--domain", domain],
    );

    let started = Instant::now();
    let out = server.cli("konnectors", &["run", "demo-konnector", "--domain", domain]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "Error: the job errored: the job did not finish within 3s\n"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let job: Value = serde_json::from_str(&stdout(&out)).expect("the job as JSON");
    let job_id = job["_id"].as_str().expect("job id");

    let read = |name: &str| std::fs::read_to_string(seen.join(name)).expect(name);
    let env: std::collections::BTreeMap<String, String> = read("env")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    // Only PATH and COZY_* from the server (the shell adds PWD and the like).
    for leaked in [
        "HOME",
        "HEARTH_ADMIN_PASSPHRASE",
        "RUST_LOG",
        "HEARTH_JOBS_RETRY_DELAY",
    ] {
        assert!(!env.contains_key(leaked), "{leaked} leaked: {env:?}");
    }
    assert!(env.contains_key("PATH"), "{env:?}");
    assert_eq!(env["COZY_URL"], format!("http://{domain}/"));
    assert_eq!(env["COZY_DOMAIN"], domain);
    assert_eq!(env["COZY_LANGUAGE"], "node");
    assert_eq!(env["COZY_LOCALE"], "en");
    assert_eq!(env["COZY_TIME_LIMIT"], "8", "the timeout + 5 s");
    assert_eq!(env["COZY_JOB_ID"], job_id);
    // Pushed by the operator: a manual execution.
    assert_eq!(env["COZY_JOB_MANUAL_EXECUTION"], "true");
    assert_eq!(env["COZY_PAYLOAD"], "");
    let fields: Value = serde_json::from_str(&env["COZY_FIELDS"]).expect("COZY_FIELDS");
    assert_eq!(fields, json!({"konnector": "demo-konnector"}));
    let parameters: Value = serde_json::from_str(&env["COZY_PARAMETERS"]).expect("COZY_PARAMETERS");
    assert_eq!(parameters, json!({"greeting": "hello"}));
    assert_eq!(env["COZY_CREDENTIALS"].split('.').count(), 3, "a JWT");
    // The token is a konnector token of this instance: it reads nothing it was not
    // given, but the server knows it.
    let (status, body) = server.api(
        domain,
        &env["COZY_CREDENTIALS"],
        "GET",
        "/permissions/self",
        "",
    );
    assert_eq!(status, 200, "{body}");

    // It ran in a copy of the konnector, named after the job.
    let workdir = read("arg").trim().to_owned();
    assert_eq!(read("pwd").trim(), workdir);
    assert!(
        workdir.ends_with(&format!("konnector-demo-konnector-{job_id}")),
        "{workdir}"
    );
    let files = read("files");
    assert!(files.lines().any(|f| f == "index.js"), "{files}");
    assert!(files.lines().any(|f| f == "manifest.konnector"), "{files}");

    // The timeout killed the script and its child, and the copy is gone.
    let pids = [read("self"), read("child")];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Vec<&String> = pids
            .iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
                    .is_ok_and(|stat| !stat.contains(") Z "))
            })
            .collect();
        if alive.is_empty() && !Path::new(&workdir).exists() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still there after the timeout: processes {alive:?}, workdir {}",
            Path::new(&workdir).exists()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
