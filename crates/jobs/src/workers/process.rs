//! What the `konnector`, `account-deleted` and `service` workers share: running
//! `konnectors.cmd` as a child process the way the Cozy stack does.
//!
//! - [`execute`]: `<cmd> <target>` in `cwd`, in a process group of its own, with
//!   exactly the given environment; stdout read line by line as JSON
//!   `{"type", "message", "no_retry"?}` (each line logged, and published on the
//!   realtime hub as an `io.cozy.jobs.events` `CREATED` event when a hub is given),
//!   stderr logged; the whole group killed if the job is cancelled (its timeout).
//! - [`Finished`]: what the process said ([`Report`]) and how it ended; a konnector
//!   fails with its last `critical`/`error` line ([`Finished::konnector_outcome`]), a
//!   service only with its exit status ([`Finished::exit_outcome`]).
//! - Helpers for the environment: [`instance_url`], [`time_limit`], [`payload_env`];
//!   and for files: [`clean_relative`], [`RemoveOnDrop`].

use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use hearth_core::{Doctype, JsonMap};
use hearth_store::events::{Event, Verb};
use serde_json::{Value, json};

use crate::{JobContext, JobError};

/// The realtime doctype of a konnector's log lines.
const JOB_EVENTS: &str = "io.cozy.jobs.events";
/// Longer stdout lines are skipped (the Cozy stack stops reading there).
const MAX_LINE: usize = 64 * 1024;
/// Messages are cut to this many characters.
pub(crate) const MAX_MESSAGE: usize = 4000;
/// How much of stderr is kept for the log.
const MAX_STDERR: usize = 256 * 1024;
/// A larger payload goes through a file instead of `COZY_PAYLOAD` (the Cozy stack's
/// limit; an environment string is limited to 128 KiB on Linux).
const MAX_PAYLOAD_IN_ENV: usize = 100_000;
/// The file of a large payload, in the working directory.
pub(crate) const PAYLOAD_FILE: &str = "cozy_payload.json";

/// `<scheme>://<domain>/` as the server answers it: plain HTTP for `localhost`,
/// `*.localhost` and domains with a port (development and tests), HTTPS otherwise.
pub fn instance_url(domain: &str) -> String {
    let host = domain.rsplit_once(':').map_or(domain, |(h, _)| h);
    let scheme = if host == "localhost" || host.ends_with(".localhost") || domain.contains(':') {
        "http"
    } else {
        "https"
    };
    format!("{scheme}://{domain}/")
}

/// A relative path without `..`, `.` or a root (`None` for anything else).
pub(crate) fn clean_relative(file: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(file).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// `COZY_TIME_LIMIT`: the seconds the job has (its own timeout, at most the worker's),
/// rounded up, plus 5.
pub(crate) fn time_limit(ctx: &JobContext, worker_timeout: Duration) -> String {
    let limit = ctx
        .job
        .options
        .as_ref()
        .and_then(|o| o.timeout)
        .map_or(worker_timeout, |t| {
            Duration::from_secs(t).min(worker_timeout)
        });
    (limit.as_secs() + u64::from(limit.subsec_nanos() > 0) + 5).to_string()
}

/// `COZY_PAYLOAD`: the job's payload (a webhook's body) as JSON, `""` without one; a
/// payload of 100 000 bytes or more is written to `<workdir>/cozy_payload.json` and
/// the variable is `@cozy_payload.json`.
pub(crate) fn payload_env(ctx: &JobContext, workdir: &Path) -> std::io::Result<String> {
    let payload = match &ctx.job.payload {
        None | Some(Value::Null) => return Ok(String::new()),
        Some(p) => p.to_string(),
    };
    if payload.len() < MAX_PAYLOAD_IN_ENV {
        return Ok(payload);
    }
    std::fs::write(workdir.join(PAYLOAD_FILE), payload)?;
    Ok(format!("@{PAYLOAD_FILE}"))
}

/// `PATH` for the child: the server's, or a usual default.
pub(crate) fn path_env() -> (String, String) {
    (
        "PATH".to_owned(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
    )
}

/// The configured `konnectors.cmd`, which runs konnectors and services alike.
pub(crate) fn command(cmd: Option<&PathBuf>) -> Result<PathBuf, JobError> {
    cmd.cloned()
        .ok_or_else(|| JobError::fatal("konnectors.cmd is not configured"))
}

/// An installed app or konnector that can run now: not installed or not ready is
/// final, a failure to load it is retried. `what` names it in errors
/// ("Konnector", "Application").
pub(crate) async fn ready_app(
    apps: &hearth_apps::Apps,
    inst: &hearth_instances::Instance,
    kind: hearth_apps::AppKind,
    slug: &str,
    what: &str,
) -> Result<hearth_apps::InstalledApp, JobError> {
    let app = match apps.get(inst, kind, slug).await {
        Ok(app) => app,
        Err(hearth_apps::AppsError::NotInstalled) => {
            return Err(JobError::fatal(format!("{what} {slug:?} is not installed")));
        }
        Err(e) => {
            return Err(JobError::retry(format!(
                "cannot load {} {slug:?}: {e}",
                what.to_lowercase()
            )));
        }
    };
    if !matches!(app.state.as_str(), "ready" | "installed") {
        return Err(JobError::fatal(format!(
            "{what} {slug:?} is not ready ({})",
            app.state
        )));
    }
    Ok(app)
}

/// Removes a directory when dropped (the job ended, failed or was cancelled).
pub(crate) struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills a process group when dropped, unless disarmed: a cancelled job (its timeout)
/// leaves no process behind.
struct KillGroup {
    pgid: u32,
    armed: bool,
    what: &'static str,
}

impl KillGroup {
    fn kill(&self) {
        // No `unsafe` here (so no libc::kill): the `kill` utility signals the group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.pgid)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for KillGroup {
    fn drop(&mut self) {
        if self.armed {
            tracing::info!(
                pgid = self.pgid,
                "{} cancelled: killing its processes",
                self.what
            );
            self.kill();
        }
    }
}

/// One run of `konnectors.cmd`.
pub(crate) struct Execution {
    pub cmd: PathBuf,
    /// Its one argument: a working directory or a file.
    pub target: PathBuf,
    pub cwd: PathBuf,
    /// The whole environment of the child.
    pub env: Vec<(String, String)>,
    /// `konnector` or `service`, for the logs and the messages.
    pub what: &'static str,
    pub domain: String,
    pub slug: String,
    /// Where to publish the output lines as `io.cozy.jobs.events` (`None`: logged
    /// only).
    pub hub: Option<hearth_store::events::EventHub>,
    pub instance_id: hearth_core::InstanceId,
}

/// What stdout said.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Report {
    last_critical: Option<(String, bool)>,
    last_error: Option<String>,
}

impl Report {
    /// Folds one stdout line in; returns the parsed `(type, message)` if it was a log
    /// line.
    pub(crate) fn line(&mut self, line: &str) -> Option<(String, String)> {
        let v: Value = serde_json::from_str(line.trim()).ok()?;
        let obj = v.as_object()?;
        let kind = obj.get("type").and_then(Value::as_str)?.to_owned();
        let message: String = match obj.get("message") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        }
        .chars()
        .take(MAX_MESSAGE)
        .collect();
        match kind.as_str() {
            "critical" => {
                let no_retry = obj.get("no_retry").and_then(Value::as_bool) == Some(true);
                self.last_critical = Some((message.clone(), no_retry));
            }
            "error" => self.last_error = Some(message.clone()),
            _ => {}
        }
        Some((kind, message))
    }
}

/// How a run ended.
#[derive(Debug)]
pub(crate) struct Finished {
    pub report: Report,
    /// `None`: the process could not be waited for.
    pub status: Option<ExitStatus>,
    pub what: &'static str,
}

impl Finished {
    /// A konnector's result: its last `critical` message, else its last `error` one
    /// (even after an exit status 0), else its exit status.
    pub(crate) fn konnector_outcome(self) -> Result<(), JobError> {
        if let Some((message, no_retry)) = &self.report.last_critical {
            return Err(JobError {
                message: non_empty(message, "critical error"),
                retry: !no_retry,
            });
        }
        if let Some(message) = &self.report.last_error {
            return Err(JobError::retry(non_empty(message, "error")));
        }
        self.exit_outcome()
    }

    /// A service's result (the Cozy stack's): its exit status only; its output lines
    /// are logged.
    pub(crate) fn exit_outcome(self) -> Result<(), JobError> {
        match self.status {
            Some(s) if s.success() => Ok(()),
            Some(s) => Err(JobError::retry(match s.code() {
                Some(code) => format!("exit status {code}"),
                None => format!("the {} was stopped ({s})", self.what),
            })),
            None => Err(JobError::retry(format!(
                "the {} could not be waited for",
                self.what
            ))),
        }
    }
}

fn non_empty(message: &str, default: &str) -> String {
    if message.trim().is_empty() {
        default.to_owned()
    } else {
        message.to_owned()
    }
}

/// Runs the command and reads its output until it exits. `Err` only when it could not
/// be started.
pub(crate) async fn execute(x: Execution) -> Result<Finished, JobError> {
    use std::os::unix::process::CommandExt;

    let what = x.what;
    let mut command = Command::new(&x.cmd);
    command
        .arg(&x.target)
        .current_dir(&x.cwd)
        .env_clear()
        .envs(x.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = command.spawn().map_err(|e| {
        JobError::fatal(format!(
            "cannot run konnectors.cmd {}: {e}",
            x.cmd.display()
        ))
    })?;
    let mut guard = KillGroup {
        pgid: child.id(),
        armed: true,
        what,
    };
    tracing::info!(domain = %x.domain, slug = %x.slug, pid = child.id(), "{what} started");
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let (domain, slug, hub, iid) = (x.domain.clone(), x.slug.clone(), x.hub, x.instance_id);
    let out_reader = tokio::task::spawn_blocking(move || {
        let mut report = Report::default();
        let Some(stdout) = stdout else { return report };
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match (&mut reader)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut buf)
            {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if buf.len() > MAX_LINE && buf.last() != Some(&b'\n') {
                // Skip the rest of an over-long line.
                tracing::warn!(domain = %domain, slug = %slug, "{what} output line too long, skipped");
                let mut rest = Vec::new();
                let _ = reader.read_until(b'\n', &mut rest);
                continue;
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            match report.line(line) {
                Some((kind, message)) => {
                    match kind.as_str() {
                        "error" | "critical" => {
                            tracing::warn!(domain = %domain, slug = %slug, kind = %kind, "{what}: {message}");
                        }
                        _ => {
                            tracing::debug!(domain = %domain, slug = %slug, kind = %kind, "{what}: {message}");
                        }
                    }
                    if let Some(hub) = &hub {
                        let mut doc = JsonMap::new();
                        doc.insert("type".into(), json!(kind));
                        doc.insert("message".into(), json!(message));
                        if let Ok(doctype) = Doctype::new(JOB_EVENTS) {
                            hub.publish(Event {
                                instance: iid.clone(),
                                doctype,
                                id: hearth_core::new_doc_id(),
                                verb: Verb::Created,
                                doc,
                                old: None,
                            });
                        }
                    }
                }
                None => {
                    tracing::debug!(domain = %domain, slug = %slug, "{what} output: {line}");
                }
            }
        }
        report
    });
    let (domain, slug) = (x.domain.clone(), x.slug.clone());
    let err_reader = tokio::task::spawn_blocking(move || {
        let Some(stderr) = stderr else { return };
        let mut kept = 0usize;
        for line in BufReader::new(stderr).split(b'\n') {
            let Ok(line) = line else { break };
            if kept >= MAX_STDERR {
                continue;
            }
            kept += line.len() + 1;
            let text = String::from_utf8_lossy(&line);
            if !text.trim().is_empty() {
                tracing::info!(domain = %domain, slug = %slug, "{what} stderr: {}", text.trim_end());
            }
        }
    });
    let status = tokio::task::spawn_blocking(move || child.wait()).await;
    // Reaped: its id may be reused, so the group is not killed from here on.
    guard.armed = false;
    let status = match status {
        Ok(Ok(s)) => Some(s),
        _ => None,
    };
    // Output still open after the exit: a process left behind holds it; stop waiting
    // for it after a while.
    let readers = async {
        let report = out_reader.await.unwrap_or_default();
        let _ = err_reader.await;
        report
    };
    let report = match tokio::time::timeout(Duration::from_secs(5), readers).await {
        Ok(report) => report,
        Err(_) => {
            tracing::warn!(domain = %x.domain, slug = %x.slug, "a process of the {what} kept its output open");
            Report::default()
        }
    };
    tracing::info!(domain = %x.domain, slug = %x.slug, status = ?status, "{what} ended");
    Ok(Finished {
        report,
        status,
        what,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            instance_url("alice.example.net"),
            "https://alice.example.net/"
        );
        assert_eq!(
            instance_url("alice.localhost:8080"),
            "http://alice.localhost:8080/"
        );
        assert_eq!(instance_url("alice.localhost"), "http://alice.localhost/");
        assert_eq!(instance_url("a.example:8443"), "http://a.example:8443/");
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            clean_relative("hooks/del.js"),
            Some(PathBuf::from("hooks/del.js"))
        );
        assert_eq!(
            clean_relative("./index.js"),
            Some(PathBuf::from("index.js"))
        );
        assert_eq!(clean_relative("../x.js"), None);
        assert_eq!(clean_relative("a/../../x.js"), None);
        assert_eq!(clean_relative("/etc/passwd"), None);
        assert_eq!(clean_relative(""), None);
    }

    fn finished(report: &Report, what: &'static str) -> Finished {
        Finished {
            report: report.clone(),
            status: None,
            what,
        }
    }

    #[test]
    fn reports() {
        let mut r = Report::default();
        assert!(r.line("not json").is_none());
        assert_eq!(
            r.line(r#"{"type":"info","message":"hello"}"#),
            Some(("info".into(), "hello".into()))
        );
        assert_eq!(
            finished(&r, "konnector")
                .konnector_outcome()
                .map_err(|e| e.message),
            Err("the konnector could not be waited for".into())
        );
        r.line(r#"{"type":"error","message":"VENDOR_DOWN"}"#);
        let e = finished(&r, "konnector")
            .konnector_outcome()
            .expect_err("error");
        assert_eq!((e.message.as_str(), e.retry), ("VENDOR_DOWN", true));
        // A service's error lines are only logged.
        let e = finished(&r, "service")
            .exit_outcome()
            .expect_err("no status");
        assert_eq!(e.message, "the service could not be waited for");
        r.line(r#"{"type":"critical","message":"LOGIN_FAILED","no_retry":true}"#);
        r.line(r#"{"type":"error","message":"later"}"#);
        let e = finished(&r, "konnector")
            .konnector_outcome()
            .expect_err("critical");
        assert_eq!((e.message.as_str(), e.retry), ("LOGIN_FAILED", false));
        let long = format!(r#"{{"type":"critical","message":"{}"}}"#, "x".repeat(5000));
        let mut r = Report::default();
        r.line(&long);
        let e = finished(&r, "konnector")
            .konnector_outcome()
            .expect_err("critical");
        assert_eq!((e.message.len(), e.retry), (MAX_MESSAGE, true));
    }
}
