//! `sendmail`: a mail to the instance's owner (`mode: noreply`, the default) or, in
//! the owner's name, to other people (`mode: from`), from a template
//! (`template_name`, `template_values`, `locale`) or from explicit `subject` and
//! `parts` (`[{type: "text/plain"|"text/html", body}]`).

use std::sync::Arc;

use async_trait::async_trait;
use hearth_core::{Doctype, JsonMap};
use hearth_instances::{Instance, Instances};
use hearth_mail::{InstanceInfo, MailContent, MailRequest, Mailbox, Mailer};
use hearth_store::GetOptions;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{JobContext, JobError, Worker};

pub struct SendMail {
    instances: Arc<Instances>,
    mailer: Arc<Mailer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Message {
    mode: Option<String>,
    to: Vec<Recipient>,
    subject: Option<String>,
    parts: Vec<Part>,
    template_name: Option<String>,
    template_values: Map<String, Value>,
    locale: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Recipient {
    #[serde(default)]
    name: Option<String>,
    email: String,
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    body: String,
}

impl SendMail {
    pub fn new(instances: Arc<Instances>, mailer: Arc<Mailer>) -> Self {
        Self { instances, mailer }
    }

    /// The instance's settings document (email, public name).
    async fn settings(&self, inst: &Instance) -> JsonMap {
        let dt = Doctype::new("io.cozy.settings").ok();
        match dt {
            Some(dt) => self
                .instances
                .store()
                .get(
                    &inst.instance_id(),
                    &dt,
                    "io.cozy.settings.instance",
                    GetOptions::default(),
                )
                .await
                .unwrap_or_default(),
            None => JsonMap::new(),
        }
    }
}

#[async_trait]
impl Worker for SendMail {
    async fn run(&self, ctx: JobContext) -> Result<(), JobError> {
        let msg: Message = serde_json::from_value(ctx.job.message.clone())
            .map_err(|e| JobError::fatal(format!("invalid sendmail message: {e}")))?;
        let settings = self.settings(&ctx.instance).await;
        let text = |k: &str| {
            settings
                .get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let public_name = text("public_name");
        let owner = text("email");
        let info = InstanceInfo {
            domain: ctx.instance.domain.clone(),
            public_name: public_name.clone(),
        };
        let bad = |e: hearth_mail::MailError| JobError::fatal(e.to_string());
        let (to, reply_to) = match msg.mode.as_deref().unwrap_or("noreply") {
            "noreply" => {
                let email = owner.ok_or_else(|| {
                    JobError::fatal("the instance has no email address to send to")
                })?;
                (
                    vec![Mailbox::new(&email, public_name.as_deref()).map_err(bad)?],
                    None,
                )
            }
            "from" => {
                if msg.to.is_empty() {
                    return Err(JobError::fatal(
                        "a mail in mode \"from\" needs recipients in \"to\"",
                    ));
                }
                let to = msg
                    .to
                    .iter()
                    .map(|r| Mailbox::new(&r.email, r.name.as_deref()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(bad)?;
                let reply_to = match owner {
                    Some(email) => Some(Mailbox::new(&email, public_name.as_deref()).map_err(bad)?),
                    None => None,
                };
                (to, reply_to)
            }
            other => return Err(JobError::fatal(format!("unknown sendmail mode {other:?}"))),
        };
        let content = match msg.template_name {
            Some(name) => MailContent::Template {
                name,
                locale: msg.locale.unwrap_or_else(|| ctx.instance.locale.clone()),
                vars: msg.template_values,
            },
            None => {
                let part = |kind: &str| {
                    msg.parts
                        .iter()
                        .find(|p| p.kind == kind)
                        .map(|p| p.body.clone())
                };
                let subject = msg
                    .subject
                    .filter(|s| !s.trim().is_empty())
                    .ok_or_else(|| JobError::fatal("a mail needs a subject or a template_name"))?;
                let html = part("text/html");
                let text = part("text/plain").or_else(|| html.clone()).ok_or_else(|| {
                    JobError::fatal("a mail needs a text/plain or text/html part")
                })?;
                MailContent::Parts {
                    subject,
                    text,
                    html,
                }
            }
        };
        let request = MailRequest {
            to,
            from: None,
            reply_to,
            content,
        };
        let mail = self.mailer.compose(&info, &request).map_err(bad)?;
        match self.mailer.send(&mail).await {
            Ok(sent) => {
                tracing::info!(domain = %ctx.instance.domain, message_id = %sent.message_id, recipients = sent.recipients.len(), "mail sent");
                Ok(())
            }
            Err(e) if e.is_transient() => Err(JobError::retry(e.to_string())),
            Err(e) => Err(JobError::fatal(e.to_string())),
        }
    }
}
