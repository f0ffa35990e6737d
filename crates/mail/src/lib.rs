//! The server's mails: render them from localized templates, format them, and send
//! them through an SMTP relay or into an outbox directory.
//!
//! - [`Templates`] holds the minijinja templates embedded from `templates/<locale>/`
//!   (`en`, `fr`; any other language falls back to `en`, `fr-FR` is `fr`). Variables
//!   are a JSON map keyed as in the Cozy stack (`PublicName`, `ArchiveLink`, …).
//! - [`Mail`] is one addressed mail. Its wire format is a contract (see
//!   [`Mail::format`]): `multipart/alternative`, the `text/plain` part first and the
//!   `text/html` part second, both UTF-8 quoted-printable with CRLF line ends.
//! - [`Transport`] is an SMTP relay ([`SmtpTransport`]: lettre over tokio, TLS by
//!   rustls) or, when no relay is configured, the outbox ([`OutboxTransport`]: one
//!   `.eml` file per mail, written atomically).
//! - [`Mailer`] puts these together: [`Mailer::compose`] turns a [`MailRequest`]
//!   (a template or explicit parts, as the `sendmail` worker accepts) into a [`Mail`]
//!   sent in an instance's name, and [`Mailer::send`] sends it. A failure says through
//!   [`MailError::is_transient`] whether a retry may help.
//! - With the `testkit` feature, [`testkit::TestSmtpServer`] is a real SMTP receiver
//!   on loopback for tests, which can also answer `451`, `550`, or stall.

mod address;
mod config;
mod error;
mod message;
mod template;
#[cfg(feature = "testkit")]
pub mod testkit;
mod transport;

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value};

pub use address::Mailbox;
pub use config::{MailConfig, TlsMode};
pub use error::MailError;
pub use message::{FormattedMail, Mail, text_to_html};
pub use template::{DEFAULT_LOCALE, LOCALES, Rendered, TEMPLATE_NAMES, Templates, resolve_locale};
pub use transport::{Delivery, OutboxTransport, SmtpTransport, Transport};

/// The instance a mail is sent for or from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceInfo {
    /// Its domain, such as `alice.example.com` (a `:port` is ignored for addresses).
    pub domain: String,
    /// Its owner's public name, if set.
    pub public_name: Option<String>,
}

impl InstanceInfo {
    /// The public name, or the domain when there is none: what mails call the owner.
    pub fn display_name(&self) -> &str {
        self.public_name
            .as_deref()
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .unwrap_or(&self.domain)
    }

    /// The domain without a port.
    fn host(&self) -> &str {
        match self.domain.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => &self.domain,
        }
    }
}

/// What to send and to whom, before it is rendered.
#[derive(Clone, Debug, PartialEq)]
pub struct MailRequest {
    pub to: Vec<Mailbox>,
    /// Replaces the noreply sender.
    pub from: Option<Mailbox>,
    /// Replaces the configured `Reply-To`.
    pub reply_to: Option<Mailbox>,
    pub content: MailContent,
}

/// A mail's content: a template to render, or parts given as they are.
#[derive(Clone, Debug, PartialEq)]
pub enum MailContent {
    Template {
        /// One of [`TEMPLATE_NAMES`].
        name: String,
        /// A language tag (`fr`, `fr-FR`…); see [`resolve_locale`].
        locale: String,
        /// The template variables. `PublicName` defaults to the instance's.
        vars: Map<String, Value>,
    },
    Parts {
        subject: String,
        text: String,
        /// Without it, an HTML part is made from the text ([`text_to_html`]).
        html: Option<String>,
    },
}

/// A mail that left: how, and under which `Message-ID`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentMail {
    pub message_id: String,
    /// The envelope recipients.
    pub recipients: Vec<String>,
    pub delivery: Delivery,
}

/// Renders and sends mails. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Mailer {
    inner: Arc<Inner>,
}

struct Inner {
    config: MailConfig,
    reply_to: Option<Mailbox>,
    templates: Templates,
    transport: Transport,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("config", &self.config)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// A mailer sending through the relay of `config`, or into `outbox_dir` when
    /// `config.host` is not set. Checks the configuration's addresses and names.
    pub fn new(config: MailConfig, outbox_dir: impl Into<PathBuf>) -> Result<Self, MailError> {
        let transport = Transport::from_config(&config, outbox_dir)?;
        Mailer::with_transport(config, transport)
    }

    /// A mailer with a transport made elsewhere; `config` still gives the sender
    /// defaults.
    pub fn with_transport(config: MailConfig, transport: Transport) -> Result<Self, MailError> {
        let config_error = |key: &str, err: MailError| MailError::Config(format!("`{key}`: {err}"));
        if let Some(address) = &config.noreply_address {
            Mailbox::address(address).map_err(|err| config_error("noreply_address", err))?;
        }
        if let Some(name) = &config.noreply_name
            && name.contains(['\r', '\n'])
        {
            return Err(MailError::Config(
                "`noreply_name` holds a line break".into(),
            ));
        }
        let reply_to = config
            .reply_to
            .as_deref()
            .map(str::parse::<Mailbox>)
            .transpose()
            .map_err(|err| config_error("reply_to", err))?;
        Ok(Mailer {
            inner: Arc::new(Inner {
                config,
                reply_to,
                templates: Templates::new()?,
                transport,
            }),
        })
    }

    /// The transport mails go through.
    pub fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// The compiled templates.
    pub fn templates(&self) -> &Templates {
        &self.inner.templates
    }

    /// The sender of the instance's mails: `noreply_address` (default
    /// `noreply@<domain>`) named `noreply_name` (default the public name, or "Hearth").
    pub fn noreply(&self, instance: &InstanceInfo) -> Result<Mailbox, MailError> {
        let config = &self.inner.config;
        let address = match &config.noreply_address {
            Some(address) => address.clone(),
            None => format!("noreply@{}", instance.host()),
        };
        let name = config
            .noreply_name
            .as_deref()
            .or(instance.public_name.as_deref())
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .unwrap_or("Hearth");
        Mailbox::new(&address, Some(name))
    }

    /// Renders `request` into a mail sent in `instance`'s name.
    pub fn compose(
        &self,
        instance: &InstanceInfo,
        request: &MailRequest,
    ) -> Result<Mail, MailError> {
        let (subject, text, html) = match &request.content {
            MailContent::Template { name, locale, vars } => {
                let mut vars = vars.clone();
                let has_name = vars
                    .get("PublicName")
                    .and_then(Value::as_str)
                    .is_some_and(|name| !name.trim().is_empty());
                if !has_name {
                    vars.insert(
                        "PublicName".into(),
                        Value::String(instance.display_name().to_owned()),
                    );
                }
                let rendered = self.inner.templates.render(name, locale, &vars)?;
                (rendered.subject, rendered.text, rendered.html)
            }
            MailContent::Parts {
                subject,
                text,
                html,
            } => {
                let html = html.clone().unwrap_or_else(|| text_to_html(text));
                (subject.clone(), text.clone(), html)
            }
        };
        if request.to.is_empty() {
            return Err(MailError::NoRecipient);
        }
        let from = match &request.from {
            Some(from) => from.clone(),
            None => self.noreply(instance)?,
        };
        Ok(Mail {
            from,
            to: request.to.clone(),
            reply_to: request
                .reply_to
                .clone()
                .or_else(|| self.inner.reply_to.clone()),
            subject,
            text,
            html,
        })
    }

    /// Renders the template `name` for `to`: [`Mailer::compose`] in short.
    pub fn render(
        &self,
        instance: &InstanceInfo,
        name: &str,
        locale: &str,
        vars: Map<String, Value>,
        to: Vec<Mailbox>,
        from: Option<Mailbox>,
    ) -> Result<Mail, MailError> {
        self.compose(
            instance,
            &MailRequest {
                to,
                from,
                reply_to: None,
                content: MailContent::Template {
                    name: name.to_owned(),
                    locale: locale.to_owned(),
                    vars,
                },
            },
        )
    }

    /// Formats and sends one mail.
    pub async fn send(&self, mail: &Mail) -> Result<SentMail, MailError> {
        let formatted = mail.format()?;
        let delivery = self.inner.transport.send(&formatted).await?;
        Ok(SentMail {
            message_id: formatted.message_id().to_owned(),
            recipients: formatted.recipients(),
            delivery,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn mailer(config: MailConfig) -> Mailer {
        Mailer::new(config, std::env::temp_dir().join("hearth-mail-unit")).expect("mailer")
    }

    fn alice() -> InstanceInfo {
        InstanceInfo {
            domain: "alice.example.com:8080".into(),
            public_name: Some("Alice".into()),
        }
    }

    #[test]
    fn noreply_defaults() {
        let mailer = mailer(MailConfig::default());
        let from = mailer.noreply(&alice()).expect("noreply");
        assert_eq!(from.to_string(), "Alice <noreply@alice.example.com>");
        let anonymous = InstanceInfo {
            domain: "bob.example.com".into(),
            public_name: None,
        };
        let from = mailer.noreply(&anonymous).expect("noreply");
        assert_eq!(from.to_string(), "Hearth <noreply@bob.example.com>");

        let mailer = self::mailer(MailConfig {
            noreply_address: Some("mailer@hearth.example".into()),
            noreply_name: Some("Hearth Mailer".into()),
            reply_to: Some("Support <support@hearth.example>".into()),
            ..MailConfig::default()
        });
        let from = mailer.noreply(&alice()).expect("noreply");
        assert_eq!(from.to_string(), "Hearth Mailer <mailer@hearth.example>");
        let mail = mailer
            .render(
                &alice(),
                "test",
                "en",
                Map::new(),
                vec![Mailbox::address("alice@example.org").expect("to")],
                None,
            )
            .expect("render");
        assert_eq!(
            mail.reply_to.map(|m| m.to_string()).as_deref(),
            Some("Support <support@hearth.example>")
        );
    }

    #[test]
    fn bad_config() {
        for config in [
            MailConfig {
                noreply_address: Some("not an address".into()),
                ..MailConfig::default()
            },
            MailConfig {
                reply_to: Some("nope".into()),
                ..MailConfig::default()
            },
        ] {
            let err = Mailer::new(config, "/tmp/x").expect_err("bad config");
            assert!(matches!(err, MailError::Config(_)), "{err}");
        }
    }

    #[test]
    fn compose_fills_the_public_name() {
        let mailer = mailer(MailConfig::default());
        let to = vec![Mailbox::address("alice@example.org").expect("to")];
        let nameless = InstanceInfo {
            domain: "carol.example.com".into(),
            public_name: None,
        };
        let mail = mailer
            .render(&nameless, "test", "fr", Map::new(), to.clone(), None)
            .expect("render");
        assert!(mail.text.contains("carol.example.com"), "{}", mail.text);
        assert!(mail.html.contains("carol.example.com"), "{}", mail.html);
        assert_eq!(mail.from.to_string(), "Hearth <noreply@carol.example.com>");

        let vars = json!({"PublicName": "Caroline"});
        let Value::Object(vars) = vars else {
            unreachable!()
        };
        let mail = mailer
            .render(&nameless, "test", "en", vars, to, None)
            .expect("render");
        assert!(mail.text.contains("Caroline"), "{}", mail.text);
    }

    #[test]
    fn compose_parts() {
        let mailer = mailer(MailConfig::default());
        let request = MailRequest {
            to: vec![Mailbox::address("alice@example.org").expect("to")],
            from: Some(Mailbox::new("alice@alice.example.com", Some("Alice")).expect("from")),
            reply_to: None,
            content: MailContent::Parts {
                subject: "Hi".into(),
                text: "Hello https://a.example/".into(),
                html: None,
            },
        };
        let mail = mailer.compose(&alice(), &request).expect("compose");
        assert_eq!(mail.from.email(), "alice@alice.example.com");
        assert!(
            mail.html.contains("<a href=\"https://a.example/\">"),
            "{}",
            mail.html
        );
        let err = mailer
            .compose(
                &alice(),
                &MailRequest {
                    to: Vec::new(),
                    ..request
                },
            )
            .expect_err("no recipient");
        assert!(matches!(err, MailError::NoRecipient));
    }
}
