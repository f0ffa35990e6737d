//! The mail configuration: the SMTP relay (or none, for the outbox) and the sender
//! defaults, as one serde struct the server's configuration embeds.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// How the connection to the SMTP relay is secured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain SMTP, no TLS at all: a local relay or a mail catcher such as MailHog
    /// (`localhost:1025`). This is the Cozy stack's `disable_tls: true`.
    None,
    /// Plain connection upgraded with `STARTTLS`, which is required: a server that
    /// does not offer it is refused (usually port 587).
    #[default]
    Starttls,
    /// Implicit TLS from the first byte, "SMTPS" (usually port 465).
    Tls,
}

impl TlsMode {
    /// The usual port for this mode: 25, 587 or 465.
    pub fn default_port(self) -> u16 {
        match self {
            TlsMode::None => 25,
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
        }
    }
}

/// How the server sends its mails. Without a `host`, mails are written to the outbox
/// directory the caller passes (see [`crate::Transport::from_config`]).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// The SMTP relay's host name or IP address. None: no SMTP, mails go to the outbox.
    pub host: Option<String>,
    /// The relay's port; by default the usual one for `tls` (25, 587 or 465).
    pub port: Option<u16>,
    /// The user name to authenticate with (`AUTH PLAIN` or `LOGIN`), if any.
    pub username: Option<String>,
    /// The password that goes with `username`. Never logged nor printed by `Debug`.
    pub password: Option<String>,
    /// `none`, `starttls` (the default) or `tls` (implicit TLS).
    pub tls: TlsMode,
    /// Accept any certificate from the relay (self-signed, expired, other name). Only
    /// for a relay on a trusted network.
    pub skip_certificate_validation: bool,
    /// The name this server gives itself in `EHLO`; by default `localhost`'s address
    /// literal `[127.0.0.1]`.
    pub local_name: Option<String>,
    /// The sender address of the server's mails; by default `noreply@<instance domain>`.
    pub noreply_address: Option<String>,
    /// The sender's display name; by default the instance's public name, or "Hearth".
    pub noreply_name: Option<String>,
    /// A `Reply-To` address added to every mail that does not set its own.
    pub reply_to: Option<String>,
    /// Seconds allowed to connect, and then for the whole SMTP exchange of one mail.
    pub timeout_secs: u64,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            host: None,
            port: None,
            username: None,
            password: None,
            tls: TlsMode::default(),
            skip_certificate_validation: false,
            local_name: None,
            noreply_address: None,
            noreply_name: None,
            reply_to: None,
            timeout_secs: 30,
        }
    }
}

impl MailConfig {
    /// The port to connect to: `port`, or the usual one for the TLS mode.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.tls.default_port())
    }

    /// `timeout_secs` as a duration (at least one second).
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }
}

/// Written by hand so that the password never reaches a log line.
impl fmt::Debug for MailConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field(
                "skip_certificate_validation",
                &self.skip_certificate_validation,
            )
            .field("local_name", &self.local_name)
            .field("noreply_address", &self.noreply_address)
            .field("noreply_name", &self.noreply_name)
            .field("reply_to", &self.reply_to)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_ports() {
        let config: MailConfig = serde_json::from_str("{}").expect("empty config");
        assert_eq!(config, MailConfig::default());
        assert_eq!(config.tls, TlsMode::Starttls);
        assert_eq!(config.effective_port(), 587);
        assert_eq!(config.timeout(), Duration::from_secs(30));

        let config: MailConfig =
            serde_json::from_str(r#"{"host": "localhost", "port": 1025, "tls": "none"}"#)
                .expect("mailhog config");
        assert_eq!(config.effective_port(), 1025);
        assert_eq!(config.tls, TlsMode::None);

        let config: MailConfig = serde_json::from_str(r#"{"tls": "tls"}"#).expect("smtps");
        assert_eq!(config.effective_port(), 465);
    }

    #[test]
    fn unknown_keys_and_modes_are_refused() {
        assert!(serde_json::from_str::<MailConfig>(r#"{"hots": "x"}"#).is_err());
        assert!(serde_json::from_str::<MailConfig>(r#"{"tls": "ssl"}"#).is_err());
    }

    #[test]
    fn debug_hides_the_password() {
        let config = MailConfig {
            password: Some("hunter2".into()),
            ..MailConfig::default()
        };
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }
}
