//! The `import` worker (spec move 2.5): blocks the instance (`IMPORTING`), runs the
//! import, then always clears the `importing` flag, unblocks, records the outcome in
//! `io.hearth.imports` (global store, one document per job) and mails the owner.
//!
//! A server that dies during an import runs the job a second time: that run does
//! not import, it resets the instance to a clean state, unblocks it and reports the
//! failure, so that no instance stays blocked or half-imported.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hearth_core::{InstanceId, JsonMap};
use hearth_instances::Instance;
use hearth_jobs::{JobContext, JobError, Jobs, Worker, WorkerLimits};
use hearth_mail::Mailer;
use hearth_store::{GetOptions, StoreError};
use serde_json::{Map, Value, json};

use crate::client::{self, PostBody, Reach};
use crate::worker::mail_owner;
use crate::{ImportOptions, ImportReport, Imports, dt};

/// The global doctype of import records.
pub const IMPORTS: &str = "io.hearth.imports";
pub const BLOCK_IMPORTING: &str = "IMPORTING";
/// The settings key recording when a target was blocked for a move (RFC 3339).
pub const MOVING_SINCE: &str = "moving_since";

pub struct ImportWorker {
    imports: Arc<Imports>,
    mailer: Arc<Mailer>,
}

/// Registers the `import` worker: two at a time, three hours, server only, and a
/// second execution only to clean up after a crash.
pub fn register_import(jobs: &Jobs, imports: Arc<Imports>, mailer: Arc<Mailer>) {
    jobs.register(
        "import",
        Arc::new(ImportWorker { imports, mailer }),
        WorkerLimits {
            concurrency: 2,
            max_exec_count: 2,
            timeout: Duration::from_secs(3 * 3600),
            reserved: true,
        },
    );
}

/// Sets or removes a key of the instance settings document.
pub async fn set_settings_flag(
    imports: &Imports,
    inst: &Instance,
    key: &str,
    value: Option<Value>,
) -> Result<(), StoreError> {
    crate::moving::update_settings(
        imports.instances().store().as_ref(),
        inst,
        |doc| match &value {
            Some(v) => {
                doc.insert(key.into(), v.clone());
                true
            }
            None => doc.shift_remove(key).is_some(),
        },
    )
    .await
}

/// The move watchdog's pass (Hearth's fix of spec move 5, "target left blocked"):
/// every instance blocked `MOVING` for longer than the watchdog's timeout (from its
/// `moving_since` setting) with no import flagged, queued or running is unblocked,
/// and its `moved_from` / `moving_since` cleared. An instance blocked `MOVING`
/// without `moving_since` gets it now. Returns the released domains.
pub async fn release_stale_moves(
    imports: &Imports,
) -> Result<Vec<String>, hearth_instances::InstanceError> {
    let (timeout, _) = imports.move_watchdog();
    let instances = imports.instances();
    let store = instances.store();
    let now = hearth_core::parse_rfc3339(&hearth_core::now_rfc3339()).unwrap_or(0);
    let mut released = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (page, next) = instances.list(Some(200), cursor.as_deref(), 0).await?;
        for inst in page {
            if !inst.blocked || inst.blocking_reason.as_deref() != Some(crate::moving::BLOCK_MOVING)
            {
                continue;
            }
            let settings = crate::moving::instance_settings(store.as_ref(), &inst).await?;
            if settings.get("importing").and_then(Value::as_bool) == Some(true)
                || import_job_pending(imports, &inst).await?
            {
                continue;
            }
            let since = settings
                .get(MOVING_SINCE)
                .and_then(Value::as_str)
                .and_then(hearth_core::parse_rfc3339);
            let Some(since) = since else {
                set_settings_flag(
                    imports,
                    &inst,
                    MOVING_SINCE,
                    Some(Value::String(hearth_core::now_rfc3339())),
                )
                .await?;
                continue;
            };
            if since.saturating_add(timeout.as_secs()) > now {
                continue;
            }
            tracing::warn!(domain = %inst.domain, "a move never started its import: unblocking the instance");
            instances.set_blocked(&inst.domain, None).await?;
            crate::moving::update_settings(store.as_ref(), &inst, |doc| {
                let from = doc.shift_remove("moved_from").is_some();
                doc.shift_remove(MOVING_SINCE).is_some() || from
            })
            .await?;
            released.push(inst.domain.clone());
        }
        match next {
            Some(n) => cursor = Some(n),
            None => return Ok(released),
        }
    }
}

/// Whether an `import` job of the instance is queued or running.
async fn import_job_pending(
    imports: &Imports,
    inst: &Instance,
) -> Result<bool, hearth_instances::InstanceError> {
    let q = hearth_store::mango::FindQuery::parse(&json!({
        "selector": {"worker": "import", "state": {"$in": ["queued", "running"]}},
        "limit": 1,
    }))
    .map_err(|e| hearth_instances::InstanceError::internal(e.to_string()))?;
    match imports
        .instances()
        .store()
        .find(&inst.instance_id(), &dt("io.cozy.jobs"), &q)
        .await
    {
        Ok(r) => Ok(!r.docs.is_empty()),
        Err(StoreError::NotFound(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The record of an import job, if any.
pub async fn import_record(imports: &Imports, job_id: &str) -> Result<Option<JsonMap>, StoreError> {
    match imports
        .instances()
        .store()
        .get(
            &InstanceId::global(),
            &dt(IMPORTS),
            job_id,
            GetOptions::default(),
        )
        .await
    {
        Ok(d) => Ok(Some(d)),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

impl ImportWorker {
    async fn record(&self, job_id: &str, fields: Value) {
        let store = self.imports.instances().store();
        let mut doc = match import_record(&self.imports, job_id).await {
            Ok(Some(d)) => d,
            _ => {
                let mut m = JsonMap::new();
                m.insert("_id".into(), Value::String(job_id.to_owned()));
                m
            }
        };
        if let Value::Object(f) = fields {
            doc.extend(f);
        }
        if let Err(e) = store.put(&InstanceId::global(), &dt(IMPORTS), doc).await {
            tracing::warn!(job = %job_id, error = %e, "cannot record the import");
        }
    }

    /// Always after an import: the flag cleared, the instance unblocked (a second
    /// try 10 s later with a fresh instance).
    async fn release(&self, domain: &str) {
        for attempt in 0..2 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            let Ok(inst) = self.imports.instances().get_str(domain).await else {
                continue;
            };
            if let Err(e) = set_settings_flag(&self.imports, &inst, "importing", None).await {
                tracing::warn!(domain, error = %e, "cannot clear the importing flag");
            }
            match self.imports.instances().set_blocked(domain, None).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::error!(domain, error = %e, "cannot unblock the instance after an import")
                }
            }
        }
    }

    /// The end of a move on the target (spec move 3.7): after a successful import,
    /// `POST <source>/move/finalize?subdomain=…` (a non-204 is logged, not fatal), then
    /// `moved_from = <source host>` (and `import_vault` when the source had a vault);
    /// after a failure, `POST <source>/move/abort` and the move's marks cleared.
    async fn end_move(&self, inst: &Instance, opts: &ImportOptions, ok: bool) {
        let Some(from) = &opts.move_from else {
            return;
        };
        let url = from
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim_end_matches('/')
            .to_owned();
        let token = from
            .get("token")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let reach = if opts.admin_req {
            Reach::Any
        } else {
            Reach::Public
        };
        let (what, target) = if ok {
            let sub = self.imports.subdomain_type();
            ("finalize", format!("{url}/move/finalize?subdomain={sub}"))
        } else {
            ("abort", format!("{url}/move/abort"))
        };
        if url.is_empty() {
            tracing::warn!(domain = %inst.domain, "a move without the source's address: nothing to {what}");
        } else {
            let bearer = Some(token).filter(|t| !t.is_empty());
            let sent = tokio::task::spawn_blocking(move || {
                client::post(&target, reach, bearer.as_deref(), PostBody::None)
            })
            .await;
            match sent {
                Ok(Ok(a)) if a.status == 204 => {
                    tracing::info!(domain = %inst.domain, source = %url, "move: the source accepted the {what}")
                }
                Ok(Ok(a)) => {
                    tracing::warn!(domain = %inst.domain, source = %url, status = a.status, "move: the source refused the {what}")
                }
                Ok(Err(e)) => {
                    tracing::warn!(domain = %inst.domain, source = %url, error = %e, "move: cannot reach the source for the {what}")
                }
                Err(e) => {
                    tracing::warn!(domain = %inst.domain, error = %e, "move: the {what} call failed")
                }
            }
        }
        let host = url
            .split_once("://")
            .map_or(url.as_str(), |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or("")
            .to_owned();
        let mut updates: Vec<(&str, Option<Value>)> = vec![(MOVING_SINCE, None)];
        if !ok {
            updates.push(("moved_from", None));
        } else {
            // Even when the source could not be told: the person still needs the
            // one-time notice and the vault instructions (unlike the reference).
            if !host.is_empty() {
                updates.push(("moved_from", Some(Value::String(host))));
            }
            if opts.vault {
                updates.push(("import_vault", Some(Value::Bool(true))));
            }
        }
        for (key, value) in updates {
            if let Err(e) = set_settings_flag(&self.imports, inst, key, value).await {
                tracing::warn!(domain = %inst.domain, key, error = %e, "move: cannot update the settings");
            }
        }
    }

    async fn mail(&self, inst: &Instance, opts: &ImportOptions, report: Option<&ImportReport>) {
        let moved = opts.move_from.is_some();
        let (template, vars) = match report {
            Some(r) => {
                let mut vars = Map::new();
                vars.insert(
                    "CozyLink".into(),
                    Value::String(format!(
                        "{}://home.{}/",
                        crate::worker::scheme_for(&inst.domain),
                        inst.domain
                    )),
                );
                vars.insert(
                    "AppsNotInstalled".into(),
                    Value::String(r.apps_not_installed.join(", ")),
                );
                // Hearth's addition: the counts of the report, per doctype.
                let rows: Vec<Value> = r
                    .doctypes
                    .iter()
                    .filter(|(_, c)| c.archive_docs > 0)
                    .map(|(dt, c)| {
                        json!({"doctype": dt, "imported": c.imported_docs, "archive": c.archive_docs})
                    })
                    .collect();
                vars.insert("Report".into(), Value::Array(rows));
                (
                    if moved {
                        "move_success"
                    } else {
                        "import_success"
                    },
                    vars,
                )
            }
            None => (
                if moved { "move_error" } else { "import_error" },
                Map::new(),
            ),
        };
        if let Err(e) =
            mail_owner(self.imports.instances(), &self.mailer, inst, template, vars).await
        {
            tracing::warn!(domain = %inst.domain, error = %e.message, "cannot send the end-of-import mail");
        }
    }
}

#[async_trait]
impl Worker for ImportWorker {
    async fn run(&self, ctx: JobContext) -> Result<(), JobError> {
        let opts: ImportOptions = serde_json::from_value(ctx.job.message.clone())
            .map_err(|e| JobError::fatal(format!("invalid import message: {e}")))?;
        let domain = ctx.instance.domain.clone();
        let job_id = ctx.job.id.clone();
        // Nothing else (a destruction, another import) on this instance meanwhile,
        // whichever node runs it.
        let _held = match self.imports.lock_instance(&domain).await {
            Ok(held) => held,
            Err(e) => {
                // Not retried: a second execution means "clean up after a crash".
                self.release(&domain).await;
                if let Ok(inst) = self.imports.instances().get_str(&domain).await {
                    self.end_move(&inst, &opts, false).await;
                }
                return Err(JobError::fatal(format!(
                    "the instance is locked by another operation: {e}"
                )));
            }
        };
        if ctx.attempt > 1 {
            // The previous run died with the server: clean up, do not import again.
            tracing::warn!(domain = %domain, job = %job_id, "an import was interrupted; resetting the instance");
            let inst = self
                .imports
                .instances()
                .get_str(&domain)
                .await
                .map_err(|e| JobError::fatal(e.to_string()))?;
            let reset = self.imports.reset(&inst, &job_id).await;
            self.release(&domain).await;
            let msg = match reset {
                Ok(()) => "the server stopped during the import; the instance was reset".to_owned(),
                Err(e) => {
                    format!("the server stopped during the import, and the reset failed: {e}")
                }
            };
            self.record(&job_id, json!({"state": "errored", "error": msg, "finished_at": hearth_core::now_rfc3339()})).await;
            self.end_move(&inst, &opts, false).await;
            self.mail(&inst, &opts, None).await;
            return Err(JobError::fatal(msg));
        }
        self.record(
            &job_id,
            json!({
                "domain": domain,
                "state": "running",
                "manifest_url": opts.manifest_url,
                "started_at": hearth_core::now_rfc3339(),
            }),
        )
        .await;
        let result = match self
            .imports
            .instances()
            .set_blocked(&domain, Some(BLOCK_IMPORTING))
            .await
        {
            Ok(inst) => self.imports.run(&inst, &opts, &job_id).await,
            Err(e) => Err(crate::ImportError::Archive(format!(
                "cannot block the instance: {e}"
            ))),
        };
        self.release(&domain).await;
        let inst = self
            .imports
            .instances()
            .get_str(&domain)
            .await
            .map_err(|e| JobError::fatal(e.to_string()))?;
        let now = hearth_core::now_rfc3339();
        match result {
            Ok(report) => {
                for line in report.lines() {
                    tracing::info!(domain = %domain, "import: {line}");
                }
                self.record(
                    &job_id,
                    json!({"state": "done", "report": report, "finished_at": now}),
                )
                .await;
                self.end_move(&inst, &opts, true).await;
                self.mail(&inst, &opts, Some(&report)).await;
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                self.record(
                    &job_id,
                    json!({"state": "errored", "error": msg, "finished_at": now}),
                )
                .await;
                self.end_move(&inst, &opts, false).await;
                self.mail(&inst, &opts, None).await;
                Err(JobError::fatal(msg))
            }
        }
    }
}
