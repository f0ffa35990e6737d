//! The `export` worker (spec move 1.3, 1.4 step 8): runs the export job, then mails
//! the owner the link (`archiver`) or the failure (`export_error`), unless an
//! administrator asked (`admin_req`). A move's export (`move_to`) tells the target
//! instead, or aborts it on failure.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hearth_core::Doctype;
use hearth_instances::Instance;
use hearth_jobs::{JobContext, JobError, Jobs, Worker, WorkerLimits};
use hearth_mail::{InstanceInfo, MailContent, MailRequest, Mailbox, Mailer};
use hearth_store::GetOptions;
use serde_json::{Map, Value};

use crate::client::Reach;
use crate::moving::{self, MoveTo};
use crate::{ExportOptions, Exports, MoveError};

pub struct ExportWorker {
    exports: Arc<Exports>,
    mailer: Arc<Mailer>,
}

impl ExportWorker {
    pub fn new(exports: Arc<Exports>, mailer: Arc<Mailer>) -> Self {
        Self { exports, mailer }
    }
}

/// Registers the `export` worker: one at a time, no retry, one hour, server only.
pub fn register(jobs: &Jobs, exports: Arc<Exports>, mailer: Arc<Mailer>) {
    jobs.register(
        "export",
        Arc::new(ExportWorker::new(exports, mailer)),
        WorkerLimits {
            concurrency: 1,
            max_exec_count: 1,
            timeout: Duration::from_secs(3600),
            reserved: true,
        },
    );
}

pub(crate) fn scheme_for(domain: &str) -> &'static str {
    let host = domain.rsplit_once(':').map_or(domain, |(h, _)| h);
    if host == "localhost" || host.ends_with(".localhost") || domain.contains(':') {
        "http"
    } else {
        "https"
    }
}

/// The settings app's page of an export (spec move 1.9), on the nested subdomain;
/// `token` is the link token ([`crate::mac::encode`]).
pub fn archive_link(domain: &str, token: &str) -> String {
    format!(
        "{}://settings.{domain}/#/exports/{token}",
        scheme_for(domain)
    )
}

/// Mails the owner of an instance (the email of its settings) a template.
pub(crate) async fn mail_owner(
    instances: &hearth_instances::Instances,
    mailer: &Mailer,
    inst: &Instance,
    template: &str,
    vars: Map<String, Value>,
) -> Result<(), JobError> {
    let settings = match Doctype::new("io.cozy.settings") {
        Ok(dt) => instances
            .store()
            .get(
                &inst.instance_id(),
                &dt,
                "io.cozy.settings.instance",
                GetOptions::default(),
            )
            .await
            .unwrap_or_default(),
        Err(_) => Default::default(),
    };
    let text = |k: &str| {
        settings
            .get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let public_name = text("public_name");
    let email =
        text("email").ok_or_else(|| JobError::fatal("the instance has no email address"))?;
    let bad = |e: hearth_mail::MailError| JobError::fatal(e.to_string());
    let mut vars = vars;
    if let Some(p) = &public_name {
        vars.entry("PublicName")
            .or_insert_with(|| Value::String(p.clone()));
    }
    let request = MailRequest {
        to: vec![Mailbox::new(&email, public_name.as_deref()).map_err(bad)?],
        from: None,
        reply_to: None,
        content: MailContent::Template {
            name: template.into(),
            locale: inst.locale.clone(),
            vars,
        },
    };
    let info = InstanceInfo {
        domain: inst.domain.clone(),
        public_name,
    };
    let mail = mailer.compose(&info, &request).map_err(bad)?;
    mailer
        .send(&mail)
        .await
        .map(|_| ())
        .map_err(|e| JobError::fatal(e.to_string()))
}

fn failure(e: MoveError) -> String {
    match e {
        MoveError::Conflict => "409: an archive is already being created".to_owned(),
        e => e.to_string(),
    }
}

impl ExportWorker {
    /// The `export_error` mail to the owner (a failure to send it is only logged).
    async fn mail_export_error(&self, inst: &Instance) {
        if let Err(me) = mail_owner(
            self.exports.instances(),
            &self.mailer,
            inst,
            "export_error",
            Map::new(),
        )
        .await
        {
            tracing::warn!(error = %me.message, "cannot send the export_error mail");
        }
    }

    /// The end of a move's export (spec move 1.4 step 8, 3.6 steps 7–8): no
    /// `archiver` mail; the target is told where the export is, or, on any failure
    /// (export or notification), unblocked through `/move/abort`, the owner mailed
    /// `export_error`, and the source's `moving_to` cleared.
    async fn finish_move(
        &self,
        inst: &Instance,
        opts: &ExportOptions,
        target: &MoveTo,
        result: Result<crate::ExportDoc, MoveError>,
    ) -> Result<(), JobError> {
        let reach = if opts.reach_any {
            Reach::Any
        } else {
            Reach::Public
        };
        let store = self.exports.instances().store().as_ref();
        let outcome = match result {
            Ok(doc) => {
                let domain = opts.contextual_domain.as_deref().unwrap_or(&inst.domain);
                let link = archive_link(
                    domain,
                    &crate::mac::encode(&inst.session_secret, &doc.id, crate::now_secs()),
                );
                let vault = !opts.ignore_vault && moving::has_vault(store, inst).await;
                let source_url = format!("{}://{domain}/", scheme_for(domain));
                let token = opts.token_source.as_deref().unwrap_or_default();
                moving::notify_target(target, reach, &link, vault, &source_url, token).await
            }
            Err(e) => Err(failure(e)),
        };
        match outcome {
            Ok(()) => {
                tracing::info!(domain = %inst.domain, target = %target.url, "move export done, the target was told");
                Ok(())
            }
            Err(msg) => {
                tracing::warn!(domain = %inst.domain, target = %target.url, error = %msg, "the move failed");
                moving::abort_target(target, reach).await;
                if let Err(e) = moving::update_settings(store, inst, |d| {
                    d.shift_remove(moving::MOVING_TO).is_some()
                })
                .await
                {
                    tracing::warn!(domain = %inst.domain, error = %e, "cannot clear moving_to");
                }
                self.mail_export_error(inst).await;
                Err(JobError::fatal(msg))
            }
        }
    }
}

#[async_trait]
impl Worker for ExportWorker {
    async fn run(&self, ctx: JobContext) -> Result<(), JobError> {
        let opts: ExportOptions = serde_json::from_value(ctx.job.message.clone())
            .map_err(|e| JobError::fatal(format!("invalid export message: {e}")))?;
        let inst = &ctx.instance;
        let result = self.exports.create(inst, &opts).await;
        if let Some(target) = opts.move_to.as_ref().filter(|t| !t.url.is_empty()) {
            return self.finish_move(inst, &opts, target, result).await;
        }
        match result {
            Ok(doc) => {
                tracing::info!(domain = %inst.domain, export = %doc.id, parts = doc.parts_cursors.as_ref().map_or(1, |c| c.len() + 1), "export done");
                if opts.admin_req {
                    return Ok(());
                }
                let domain = opts.contextual_domain.as_deref().unwrap_or(&inst.domain);
                let mut vars = Map::new();
                vars.insert(
                    "ArchiveLink".into(),
                    Value::String(archive_link(
                        domain,
                        &crate::mac::encode(&inst.session_secret, &doc.id, crate::now_secs()),
                    )),
                );
                mail_owner(
                    self.exports.instances(),
                    &self.mailer,
                    inst,
                    "archiver",
                    vars,
                )
                .await
            }
            Err(e) => {
                if !opts.admin_req {
                    self.mail_export_error(inst).await;
                }
                Err(JobError::fatal(failure(e)))
            }
        }
    }
}
