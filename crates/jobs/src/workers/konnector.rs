//! `konnector`: runs an installed konnector as a child process, the way the Cozy stack
//! does; and `account-deleted`, its `on_delete_account` hook.
//!
//! Message (`io.cozy.jobs` `message`, also a trigger's): `{"konnector": <slug>,
//! "account": <io.cozy.accounts id>, "folder_to_save"?: <dir id>, "account_deleted"?:
//! bool, "account_rev"?: <rev>}` plus any other keys, all passed on in `COZY_FIELDS`.
//!
//! One execution:
//! 1. `konnectors.cmd` must be configured, the konnector installed (`ready` or
//!    `installed`), and its account (when the message names one) must exist; otherwise
//!    the job fails for good.
//! 2. The konnector's files are copied to a fresh working directory
//!    (`<tmp>/konnector-<slug>-<job id>`, removed afterwards), and
//!    `<konnectors.cmd> <working dir>` runs there, in a process group of its own, with
//!    an environment made of `PATH` and the `COZY_*` variables only: `COZY_URL`,
//!    `COZY_DOMAIN`, `COZY_CREDENTIALS` (a konnector token, audience `konn`, subject the
//!    slug), `COZY_FIELDS` (the message, plus the keys of the account's `auth` it lacks),
//!    `COZY_PARAMETERS`, `COZY_PAYLOAD` (`@cozy_payload.json`, a file in the working
//!    directory, for a payload of 100 000 bytes or more), `COZY_LANGUAGE`, `COZY_LOCALE`,
//!    `COZY_TIME_LIMIT`, `COZY_JOB_ID`, `COZY_JOB_MANUAL_EXECUTION` and, for a trigger's
//!    job, `COZY_TRIGGER_ID`.
//! 3. Its stdout is read line by line as JSON `{"type", "message", "no_retry"?}`: each
//!    line is logged (and published on the realtime hub as an `io.cozy.jobs.events`
//!    `CREATED` event); the job fails with the last `critical` message, else the last
//!    `error` one, even when the process exits with 0; else with `exit status N` when
//!    it exits otherwise. A `critical` line with `no_retry: true` is not retried.
//!    Stderr is logged.
//! 4. When the job is cancelled (its timeout), the whole process group is killed.
//!
//! Steps 2 to 4 are `process.rs`, which the `service` worker shares.
//!
//! `account-deleted` (reserved) is pushed by an internal trigger on every deletion of
//! an `io.cozy.accounts` document. When the account's konnector (`account_type`) is
//! installed and declares `on_delete_account`, and the account is not
//! `manual_cleaning`, the deleted account is kept in `io.cozy.accounts.soft_deleted`
//! (same id, `soft_deleted_rev`), the hook file runs as a konnector execution with the
//! message `{"account", "account_rev", "konnector", "account_deleted": true}` (cwd: the
//! hook's directory), and the copy is removed when it succeeds.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use hearth_apps::{AppKind, Apps, AppsError, InstalledApp};
use hearth_core::JsonMap;
use hearth_instances::token::{Audience, issue};
use hearth_instances::{Instance, Instances};
use hearth_store::{GetOptions, StoreError};
use serde_json::{Value, json};

use super::process::{
    Execution, RemoveOnDrop, clean_relative, execute, path_env, payload_env, time_limit,
};
use crate::{JobContext, JobError, Worker};

pub use super::process::instance_url;

/// The accounts konnectors log in with.
pub const ACCOUNTS: &str = "io.cozy.accounts";
/// Where a deleted account waits for its konnector's `on_delete_account` hook.
pub const SOFT_DELETED_ACCOUNTS: &str = "io.cozy.accounts.soft_deleted";
/// Files of a konnector's package not copied to its working directory.
const NOT_COPIED: [&str; 4] = ["README.md", "package.json", ".travis.yml", "LICENSE"];

/// What both workers share: the services and the command.
pub struct KonnectorRunner {
    instances: Arc<Instances>,
    apps: Arc<Apps>,
    cmd: Option<PathBuf>,
    /// The `konnector` worker's timeout once registered (operator overrides applied):
    /// what `COZY_TIME_LIMIT` announces.
    timeout: OnceLock<Duration>,
}

impl KonnectorRunner {
    pub fn new(instances: Arc<Instances>, apps: Arc<Apps>, cmd: Option<PathBuf>) -> Self {
        Self {
            instances,
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

/// The `konnector` worker.
pub struct Konnector(pub Arc<KonnectorRunner>);

/// The `account-deleted` worker (reserved; pushed by the internal trigger).
pub struct AccountDeleted(pub Arc<KonnectorRunner>);

/// The known keys of a konnector job's message.
#[derive(Debug, Clone, PartialEq)]
struct Message {
    konnector: String,
    account: Option<String>,
    account_deleted: bool,
    /// The whole message, for `COZY_FIELDS`.
    raw: JsonMap,
}

impl Message {
    fn parse(message: &Value) -> Result<Self, JobError> {
        let raw = match message {
            Value::Object(m) => m.clone(),
            _ => {
                return Err(JobError::fatal(
                    "the message of a konnector job must be a JSON object",
                ));
            }
        };
        let text = |k: &str| {
            raw.get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let konnector = text("konnector").ok_or_else(|| {
            JobError::fatal(
                "the message of a konnector job must name the konnector (\"konnector\")",
            )
        })?;
        Ok(Self {
            konnector,
            account: text("account"),
            account_deleted: raw
                .get("account_deleted")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            raw,
        })
    }
}

#[async_trait]
impl Worker for Konnector {
    async fn run(&self, ctx: JobContext) -> Result<(), JobError> {
        let msg = Message::parse(&ctx.job.message)?;
        self.0.run(&ctx, msg).await
    }
}

#[async_trait]
impl Worker for AccountDeleted {
    async fn run(&self, ctx: JobContext) -> Result<(), JobError> {
        let Some(doc) = ctx
            .job
            .event
            .as_ref()
            .and_then(|e| e.get("doc"))
            .and_then(Value::as_object)
        else {
            return Err(JobError::fatal("no deleted account in the job's event"));
        };
        let r = &self.0;
        let text = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or_default();
        let (id, rev, slug) = (text("_id"), text("_rev"), text("account_type"));
        if id.is_empty() || slug.is_empty() {
            return Ok(());
        }
        if doc.get("manual_cleaning").and_then(Value::as_bool) == Some(true) {
            tracing::debug!(account = id, "account cleaned by its konnector itself");
            return Ok(());
        }
        let inst = &ctx.instance;
        let installed = match r.apps.get(inst, AppKind::Konnector, slug).await {
            Ok(app) => app,
            Err(AppsError::NotInstalled) => return Ok(()),
            Err(e) => {
                return Err(JobError::retry(format!(
                    "cannot load konnector {slug}: {e}"
                )));
            }
        };
        if installed
            .manifest
            .on_delete_account
            .as_deref()
            .is_none_or(|f| f.trim().is_empty())
        {
            return Ok(());
        }
        // The konnector may read the account it cleans up after.
        let mut copy = doc.clone();
        copy.retain(|k, _| !matches!(k.as_str(), "_rev" | "_deleted" | "_revisions"));
        copy.insert("soft_deleted_rev".into(), json!(rev));
        r.put_soft_deleted(inst, id, copy).await?;
        let mut message = JsonMap::new();
        message.insert("account".into(), json!(id));
        message.insert("account_rev".into(), json!(rev));
        message.insert("konnector".into(), json!(slug));
        message.insert("account_deleted".into(), json!(true));
        let msg = Message {
            konnector: slug.to_owned(),
            account: Some(id.to_owned()),
            account_deleted: true,
            raw: message,
        };
        r.run(&ctx, msg).await
    }
}

impl KonnectorRunner {
    async fn run(&self, ctx: &JobContext, msg: Message) -> Result<(), JobError> {
        let cmd = super::process::command(self.cmd.as_ref())?;
        let inst = &ctx.instance;
        let slug = msg.konnector.as_str();
        let installed =
            super::process::ready_app(&self.apps, inst, AppKind::Konnector, slug, "Konnector")
                .await?;
        let account = self.account(inst, &msg).await?;

        // What runs: the package, or its `on_delete_account` file.
        let hook = if msg.account_deleted {
            match installed
                .manifest
                .on_delete_account
                .as_deref()
                .map(str::trim)
            {
                Some(file) if !file.is_empty() => Some(clean_relative(file).ok_or_else(|| {
                    JobError::fatal(format!(
                        "on_delete_account of {slug:?} is not a path inside the konnector: {file:?}"
                    ))
                })?),
                _ => {
                    tracing::info!(domain = %inst.domain, konnector = slug, "no on_delete_account: nothing to run");
                    return Ok(());
                }
            }
        } else {
            None
        };

        let package = self.apps.app_dir(inst, AppKind::Konnector, slug);
        let workdir = std::env::temp_dir().join(format!("konnector-{slug}-{}", ctx.job.id));
        let _cleanup = RemoveOnDrop(workdir.clone());
        {
            let (from, to) = (package.clone(), workdir.clone());
            tokio::task::spawn_blocking(move || {
                let _ = std::fs::remove_dir_all(&to);
                copy_package(&from, &to, true)
            })
            .await
            .map_err(|e| JobError::retry(format!("cannot prepare the konnector: {e}")))?
            .map_err(|e| {
                JobError::retry(format!(
                    "cannot copy konnector {slug:?} from {}: {e}",
                    package.display()
                ))
            })?;
        }
        let (target, cwd) = match &hook {
            Some(file) => {
                let path = workdir.join(file);
                if !path.is_file() {
                    return Err(JobError::fatal(format!(
                        "on_delete_account of {slug:?}: no file {}",
                        file.display()
                    )));
                }
                let dir = path.parent().map_or(workdir.clone(), Path::to_path_buf);
                (path, dir)
            }
            None => (workdir.clone(), workdir.clone()),
        };

        let payload = payload_env(ctx, &workdir)
            .map_err(|e| JobError::retry(format!("cannot write the job's payload: {e}")))?;
        let env = self.environment(ctx, &msg, &installed, account.as_ref(), payload);
        let outcome = execute(Execution {
            cmd,
            target,
            cwd,
            env,
            what: "konnector",
            domain: inst.domain.clone(),
            slug: slug.to_owned(),
            hub: self.instances.store().event_hub().cloned(),
            instance_id: inst.instance_id(),
        })
        .await?
        .konnector_outcome();
        if outcome.is_ok()
            && msg.account_deleted
            && let Some(id) = &msg.account
        {
            self.remove_soft_deleted(inst, id).await;
        }
        outcome
    }

    /// The account of the message: the live document, or for `account_deleted` its
    /// soft-deleted copy (none: the konnector only gets the message).
    async fn account(&self, inst: &Instance, msg: &Message) -> Result<Option<JsonMap>, JobError> {
        let Some(id) = &msg.account else {
            return Ok(None);
        };
        let doctype = if msg.account_deleted {
            SOFT_DELETED_ACCOUNTS
        } else {
            ACCOUNTS
        };
        match self
            .instances
            .store()
            .get(
                &inst.instance_id(),
                &crate::doctype(doctype),
                id,
                GetOptions::default(),
            )
            .await
        {
            Ok(doc) => Ok(Some(doc)),
            Err(StoreError::NotFound(_)) if msg.account_deleted => Ok(None),
            Err(StoreError::NotFound(_)) => Err(JobError::fatal(format!(
                "the account {id:?} does not exist"
            ))),
            Err(e) => Err(JobError::retry(format!(
                "cannot read the account {id:?}: {e}"
            ))),
        }
    }

    async fn put_soft_deleted(
        &self,
        inst: &Instance,
        id: &str,
        mut copy: JsonMap,
    ) -> Result<(), JobError> {
        let store = self.instances.store();
        let (iid, dt) = (inst.instance_id(), crate::doctype(SOFT_DELETED_ACCOUNTS));
        copy.insert("_id".into(), json!(id));
        if let Ok(old) = store.get(&iid, &dt, id, GetOptions::default()).await
            && let Some(rev) = old.get("_rev")
        {
            copy.insert("_rev".into(), rev.clone());
        }
        store
            .put(&iid, &dt, copy)
            .await
            .map(|_| ())
            .map_err(|e| JobError::retry(format!("cannot keep the deleted account: {e}")))
    }

    async fn remove_soft_deleted(&self, inst: &Instance, id: &str) {
        let store = self.instances.store();
        let (iid, dt) = (inst.instance_id(), crate::doctype(SOFT_DELETED_ACCOUNTS));
        let Ok(doc) = store.get(&iid, &dt, id, GetOptions::default()).await else {
            return;
        };
        let rev = doc
            .get("_rev")
            .and_then(Value::as_str)
            .and_then(|r| r.parse().ok());
        if let Some(rev) = rev
            && let Err(e) = store.delete(&iid, &dt, id, &rev).await
        {
            tracing::warn!(domain = %inst.domain, account = id, error = %e, "cannot remove a soft-deleted account");
        }
    }

    /// `PATH` and the `COZY_*` variables, nothing else.
    fn environment(
        &self,
        ctx: &JobContext,
        msg: &Message,
        installed: &InstalledApp,
        account: Option<&JsonMap>,
        payload: String,
    ) -> Vec<(String, String)> {
        let inst = &ctx.instance;
        let mut fields = msg.raw.clone();
        if let Some(auth) = account
            .and_then(|a| a.get("auth"))
            .and_then(Value::as_object)
        {
            for (k, v) in auth {
                if !fields.contains_key(k) {
                    fields.insert(k.clone(), v.clone());
                }
            }
        }
        let manifest = &installed.manifest.raw;
        let parameters = installed
            .doc
            .get("parameters")
            .or_else(|| manifest.get("parameters"))
            .cloned()
            .unwrap_or(Value::Null);
        let language = manifest
            .get("language")
            .and_then(Value::as_str)
            .filter(|l| !l.is_empty())
            .unwrap_or("node");
        let limit = time_limit(
            ctx,
            self.timeout
                .get()
                .copied()
                .unwrap_or(Duration::from_secs(300)),
        );
        let token = issue(inst, Audience::Konnector, &msg.konnector, "", None);
        let mut env = vec![
            path_env(),
            ("COZY_URL".into(), instance_url(&inst.domain)),
            ("COZY_DOMAIN".into(), inst.domain.clone()),
            ("COZY_CREDENTIALS".into(), token),
            ("COZY_FIELDS".into(), Value::Object(fields).to_string()),
            ("COZY_PARAMETERS".into(), parameters.to_string()),
            ("COZY_PAYLOAD".into(), payload),
            ("COZY_LANGUAGE".into(), language.to_owned()),
            ("COZY_LOCALE".into(), inst.locale.clone()),
            ("COZY_TIME_LIMIT".into(), limit),
            ("COZY_JOB_ID".into(), ctx.job.id.clone()),
            // The Cozy stack runs the `on_delete_account` hook as a manual job.
            (
                "COZY_JOB_MANUAL_EXECUTION".into(),
                (ctx.job.manual_execution || msg.account_deleted).to_string(),
            ),
        ];
        if let Some(trigger) = &ctx.job.trigger_id {
            env.push(("COZY_TRIGGER_ID".into(), trigger.clone()));
        }
        env
    }
}

/// Copies a konnector's files (not its README, package.json… at the top), following no
/// symbolic link.
fn copy_package(from: &Path, to: &Path, top: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if top && NOT_COPIED.iter().any(|n| name == *n) {
            continue;
        }
        let kind = entry.file_type()?;
        let dest = to.join(&name);
        if kind.is_dir() {
            copy_package(&entry.path(), &dest, false)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let m = Message::parse(&json!({"konnector": "demo", "account": "a1", "x": 1}))
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(m.konnector, "demo");
        assert_eq!(m.account.as_deref(), Some("a1"));
        assert!(!m.account_deleted);
        assert_eq!(m.raw.get("x"), Some(&json!(1)));
        assert!(Message::parse(&json!({"account": "a"})).is_err_and(|e| !e.retry));
        assert!(Message::parse(&json!("demo")).is_err_and(|e| !e.retry));
        let d = Message::parse(&json!({"konnector": "k", "account_deleted": true}))
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(d.account_deleted);
        assert_eq!(d.account, None);
    }
}
