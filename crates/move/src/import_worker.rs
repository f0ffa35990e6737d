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

use crate::worker::mail_owner;
use crate::{ImportOptions, ImportReport, Imports, dt};

/// The global doctype of import records.
pub const IMPORTS: &str = "io.hearth.imports";
pub const BLOCK_IMPORTING: &str = "IMPORTING";

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
    let store = imports.instances().store();
    let id = inst.instance_id();
    let settings = dt("io.cozy.settings");
    for _ in 0..5 {
        let mut doc = match store
            .get(
                &id,
                &settings,
                "io.cozy.settings.instance",
                GetOptions::default(),
            )
            .await
        {
            Ok(d) => d,
            Err(StoreError::NotFound(_)) => {
                let mut m = JsonMap::new();
                m.insert(
                    "_id".into(),
                    Value::String("io.cozy.settings.instance".into()),
                );
                m
            }
            Err(e) => return Err(e),
        };
        match &value {
            Some(v) => {
                doc.insert(key.into(), v.clone());
            }
            None => {
                if doc.shift_remove(key).is_none() {
                    return Ok(());
                }
            }
        }
        match store.put(&id, &settings, doc).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Conflict)
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
                self.mail(&inst, &opts, None).await;
                Err(JobError::fatal(msg))
            }
        }
    }
}
