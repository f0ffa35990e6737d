//! `service` (reserved): runs a service of an installed web app, the way the Cozy stack
//! does (its `worker/exec/service.go`), through the same `konnectors.cmd` as the
//! konnectors.
//!
//! A web app's manifest declares its services: `"services": {<name>: {"type": "node",
//! "file": <path in the app>, "trigger": "@event io.cozy.todos:CREATED", "debounce"?:
//! "5s"}}`. Installing or updating the app creates one trigger per service (the web
//! layer does), worker `service`, message `{"slug": <app>, "name": <service>}`.
//!
//! Message: `{"slug", "name"}`; instead of `name`, `service_file` (the service whose
//! `file` it is, as the Cozy stack accepts); optional `fields` (any JSON, given as
//! `COZY_FIELDS`). A message nested under `message` is read too.
//!
//! One execution:
//! 1. `konnectors.cmd` must be configured, the app installed (`ready` or `installed`)
//!    and still declaring the service, its `file` a relative path to a file of the
//!    app; otherwise the job fails for good.
//! 2. The service's file alone is copied to a fresh working directory as `index.js`
//!    (`<tmp>/service-<slug>-<job id>`, removed afterwards: services are bundled into
//!    one file) and `<konnectors.cmd> <working dir>` runs there, in a process group of
//!    its own, with an environment made of `PATH` and the `COZY_*` variables only:
//!    `COZY_URL`, `COZY_DOMAIN`, `COZY_CREDENTIALS` (an app token, audience `app`,
//!    subject the slug, valid 30 minutes: the app's permissions), `COZY_LANGUAGE`
//!    (`node`), `COZY_LOCALE`, `COZY_TIME_LIMIT`, `COZY_JOB_ID`, `COZY_COUCH_DOC` (the
//!    document of the event that fired an `@event` trigger, as JSON; `""` otherwise),
//!    `COZY_PAYLOAD` (a webhook's payload, `@cozy_payload.json` when large, `""`
//!    otherwise), `COZY_FIELDS` (the message's `fields`, `""` without) and, for a
//!    trigger's job, `COZY_TRIGGER_ID`.
//! 3. Its stdout lines (`{"type", "message"}`) and stderr are logged; as in the Cozy
//!    stack, only the exit status decides: the job fails with `exit status N`, and
//!    when cancelled (its timeout) the whole process group is killed.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use hearth_apps::{AppKind, Apps};
use hearth_core::JsonMap;
use hearth_instances::token::{Audience, issue};
use serde_json::Value;

use super::process::{
    Execution, RemoveOnDrop, clean_relative, execute, instance_url, path_env, payload_env,
    time_limit,
};
use crate::{JobContext, JobError, Worker};

/// How long a service's token is valid (the Cozy stack's app tokens for services).
const TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// The `service` worker.
pub struct Service {
    apps: Arc<Apps>,
    cmd: Option<PathBuf>,
    /// The worker's timeout once registered (operator overrides applied): what
    /// `COZY_TIME_LIMIT` announces.
    timeout: OnceLock<Duration>,
}

impl Service {
    pub fn new(apps: Arc<Apps>, cmd: Option<PathBuf>) -> Self {
        Self {
            apps,
            cmd,
            timeout: OnceLock::new(),
        }
    }

    /// Records the worker's effective timeout (once; later calls are ignored).
    pub fn set_timeout(&self, timeout: Duration) {
        let _ = self.timeout.set(timeout);
    }
}

/// What a service job's message says.
#[derive(Debug, Clone, PartialEq)]
struct Message {
    slug: String,
    name: Option<String>,
    file: Option<String>,
    fields: Option<Value>,
}

impl Message {
    fn parse(message: &Value) -> Result<Self, JobError> {
        let mut raw = message
            .as_object()
            .ok_or_else(|| JobError::fatal("the message of a service job must be a JSON object"))?;
        if let Some(inner) = raw.get("message").and_then(Value::as_object) {
            raw = inner;
        }
        let text = |k: &str| {
            raw.get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let slug = text("slug").ok_or_else(|| {
            JobError::fatal("the message of a service job must name the app (\"slug\")")
        })?;
        let (name, file) = (text("name"), text("service_file"));
        if name.is_none() && file.is_none() {
            return Err(JobError::fatal(
                "the message of a service job must name the service (\"name\")",
            ));
        }
        Ok(Self {
            slug,
            name,
            file,
            fields: raw.get("fields").filter(|f| !f.is_null()).cloned(),
        })
    }
}

/// The service the message names in the app's `services`: by name, else the first
/// whose `file` is the message's `service_file`.
fn find_service<'a>(
    services: Option<&'a JsonMap>,
    msg: &Message,
) -> Option<(&'a str, &'a JsonMap)> {
    let services = services?;
    match &msg.name {
        Some(name) => services
            .get_key_value(name.as_str())
            .and_then(|(k, v)| Some((k.as_str(), v.as_object()?))),
        None => services.iter().find_map(|(k, v)| {
            let s = v.as_object()?;
            (s.get("file").and_then(Value::as_str) == msg.file.as_deref())
                .then_some((k.as_str(), s))
        }),
    }
}

#[async_trait]
impl Worker for Service {
    async fn run(&self, ctx: JobContext) -> Result<(), JobError> {
        let msg = Message::parse(&ctx.job.message)?;
        let cmd = super::process::command(self.cmd.as_ref())?;
        let inst = &ctx.instance;
        let slug = msg.slug.as_str();
        let app = super::process::ready_app(&self.apps, inst, AppKind::Webapp, slug, "Application")
            .await?;
        let services = app.manifest.raw.get("services").and_then(Value::as_object);
        let Some((name, service)) = find_service(services, &msg) else {
            let wanted = msg
                .name
                .as_deref()
                .or(msg.file.as_deref())
                .unwrap_or_default();
            return Err(JobError::fatal(format!(
                "Service {wanted:?} was not found in application {slug:?}"
            )));
        };
        let file = service
            .get("file")
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or_default();
        let relative = clean_relative(file).ok_or_else(|| {
            JobError::fatal(format!(
                "the file of service {name:?} is not a path inside the app: {file:?}"
            ))
        })?;
        let source = self
            .apps
            .app_dir(inst, AppKind::Webapp, slug)
            .join(&relative);
        if !std::fs::symlink_metadata(&source).is_ok_and(|m| m.is_file()) {
            return Err(JobError::fatal(format!(
                "service {name:?} of {slug:?}: no file {file:?} in the app"
            )));
        }

        let workdir = std::env::temp_dir().join(format!("service-{slug}-{}", ctx.job.id));
        let _cleanup = RemoveOnDrop(workdir.clone());
        {
            let (from, to) = (source.clone(), workdir.clone());
            tokio::task::spawn_blocking(move || {
                let _ = std::fs::remove_dir_all(&to);
                std::fs::create_dir_all(&to)?;
                std::fs::copy(&from, to.join("index.js")).map(|_| ())
            })
            .await
            .map_err(|e| JobError::retry(format!("cannot prepare the service: {e}")))?
            .map_err(|e| {
                JobError::retry(format!(
                    "cannot copy service {name:?} from {}: {e}",
                    source.display()
                ))
            })?;
        }
        let payload = payload_env(&ctx, &workdir)
            .map_err(|e| JobError::retry(format!("cannot write the job's payload: {e}")))?;
        let env = self.environment(&ctx, &msg, payload);
        tracing::info!(domain = %inst.domain, slug, service = name, job = %ctx.job.id, "running a service");
        execute(Execution {
            cmd,
            target: workdir.clone(),
            cwd: workdir.clone(),
            env,
            what: "service",
            domain: inst.domain.clone(),
            slug: slug.to_owned(),
            hub: None,
            instance_id: inst.instance_id(),
        })
        .await?
        .exit_outcome()
    }
}

impl Service {
    /// `PATH` and the `COZY_*` variables, nothing else.
    fn environment(
        &self,
        ctx: &JobContext,
        msg: &Message,
        payload: String,
    ) -> Vec<(String, String)> {
        let inst = &ctx.instance;
        let doc = ctx
            .job
            .event
            .as_ref()
            .and_then(|e| e.get("doc"))
            .map(Value::to_string)
            .unwrap_or_default();
        let fields = msg
            .fields
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default();
        let limit = time_limit(
            ctx,
            self.timeout
                .get()
                .copied()
                .unwrap_or(Duration::from_secs(200)),
        );
        let token = issue(inst, Audience::App, &msg.slug, "", Some(TOKEN_LIFETIME));
        let mut env = vec![
            path_env(),
            ("COZY_URL".into(), instance_url(&inst.domain)),
            ("COZY_DOMAIN".into(), inst.domain.clone()),
            ("COZY_CREDENTIALS".into(), token),
            ("COZY_LANGUAGE".into(), "node".into()),
            ("COZY_LOCALE".into(), inst.locale.clone()),
            ("COZY_TIME_LIMIT".into(), limit),
            ("COZY_JOB_ID".into(), ctx.job.id.clone()),
            ("COZY_COUCH_DOC".into(), doc),
            ("COZY_PAYLOAD".into(), payload),
            ("COZY_FIELDS".into(), fields),
        ];
        if let Some(trigger) = &ctx.job.trigger_id {
            env.push(("COZY_TRIGGER_ID".into(), trigger.clone()));
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages() {
        let m = Message::parse(&json!({"slug": "demo", "name": "onTodo"}))
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            (m.slug.as_str(), m.name.as_deref(), m.file, m.fields),
            ("demo", Some("onTodo"), None, None)
        );
        let m = Message::parse(
            &json!({"message": {"slug": "d", "service_file": "s.js", "fields": {"a": 1}}}),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(m.file.as_deref(), Some("s.js"));
        assert_eq!(m.fields, Some(json!({"a": 1})));
        for bad in [json!("demo"), json!({"name": "x"}), json!({"slug": "demo"})] {
            assert!(Message::parse(&bad).is_err_and(|e| !e.retry), "{bad}");
        }
    }

    #[test]
    fn services_by_name_or_file() {
        let services = json!({
            "a": {"file": "a.js", "trigger": "@cron 0 0 * * * *"},
            "b": {"file": "b.js"},
        });
        let services = services.as_object();
        let by = |m: Value| {
            let msg = Message::parse(&m).unwrap_or_else(|e| panic!("{e:?}"));
            find_service(services, &msg).map(|(n, _)| n.to_owned())
        };
        assert_eq!(by(json!({"slug": "s", "name": "b"})).as_deref(), Some("b"));
        assert_eq!(
            by(json!({"slug": "s", "service_file": "a.js"})).as_deref(),
            Some("a")
        );
        assert_eq!(by(json!({"slug": "s", "name": "c"})), None);
        let msg =
            Message::parse(&json!({"slug": "s", "name": "a"})).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(find_service(None, &msg), None);
    }
}
