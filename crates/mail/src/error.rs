//! [`MailError`]: every way rendering or sending a mail fails, and which of them are
//! worth retrying.

use std::error::Error as _;
use std::io;
use std::path::PathBuf;

/// Why a mail could not be rendered or sent. The messages are meant for an operator's
/// log; [`MailError::is_transient`] tells the job system whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// No template has this name.
    #[error("unknown mail template {0:?}")]
    UnknownTemplate(String),
    /// The template failed to render, usually because a variable it prints is missing.
    #[error("cannot render the mail template {template:?}: {reason}")]
    Render { template: String, reason: String },
    /// An address (recipient, sender, reply-to) is not a valid mailbox.
    #[error("invalid mail address {address:?}: {reason}")]
    BadAddress { address: String, reason: String },
    /// A mail without any recipient.
    #[error("a mail needs at least one recipient")]
    NoRecipient,
    /// The mail configuration is unusable (the message names the key).
    #[error("invalid mail configuration: {0}")]
    Config(String),
    /// The message could not be assembled.
    #[error("cannot build the mail: {0}")]
    Build(String),
    /// The SMTP server answered with a negative reply: `4xx` (transient) or `5xx`.
    #[error("the SMTP server {server} refused the mail: {code} {message}")]
    Refused {
        server: String,
        code: u16,
        /// The server's reply text, every line joined.
        message: String,
    },
    /// The SMTP server could not be reached, or the connection broke.
    #[error("cannot talk to the SMTP server {server}: {reason}")]
    Connection { server: String, reason: String },
    /// The SMTP server did not answer in time.
    #[error("the SMTP server {server} did not answer within {secs} s")]
    Timeout { server: String, secs: u64 },
    /// TLS with the SMTP server failed (certificate, protocol): a configuration matter.
    #[error("TLS with the SMTP server {server} failed: {reason}")]
    Tls { server: String, reason: String },
    /// The SMTP exchange went wrong otherwise (no common authentication mechanism, an
    /// unreadable reply…).
    #[error("SMTP with {server} failed: {reason}")]
    Protocol { server: String, reason: String },
    /// Writing to the outbox failed.
    #[error("cannot write the mail to {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl MailError {
    /// Whether sending again later may succeed: a `4xx` reply, an unreachable or
    /// broken connection, a timeout, or an I/O error on the outbox (a full disk).
    /// Permanent: a `5xx` reply, a bad address, an unknown or failing template, the
    /// configuration, TLS and protocol errors.
    pub fn is_transient(&self) -> bool {
        match self {
            MailError::Refused { code, .. } => (400..500).contains(code),
            MailError::Connection { .. } | MailError::Timeout { .. } | MailError::Io { .. } => true,
            MailError::UnknownTemplate(_)
            | MailError::Render { .. }
            | MailError::BadAddress { .. }
            | MailError::NoRecipient
            | MailError::Config(_)
            | MailError::Build(_)
            | MailError::Tls { .. }
            | MailError::Protocol { .. } => false,
        }
    }

    /// The SMTP reply code, for a refusal.
    pub fn smtp_code(&self) -> Option<u16> {
        match self {
            MailError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Maps lettre's SMTP error, keeping the server's reply and the classification.
    /// `tls` says whether the connection uses TLS, in which case invalid data read
    /// while connecting is a failed handshake (lettre reports it as a connection
    /// error).
    pub(crate) fn from_smtp(
        server: &str,
        secs: u64,
        tls: bool,
        err: &lettre::transport::smtp::Error,
    ) -> Self {
        let server = server.to_owned();
        // lettre puts the reply text (or the underlying error) in the source.
        let detail = err
            .source()
            .map(ToString::to_string)
            .unwrap_or_else(|| err.to_string());
        if let Some(code) = err.status() {
            let code = code.to_string().parse().unwrap_or(0);
            return MailError::Refused {
                server,
                code,
                message: detail,
            };
        }
        if err.is_timeout() {
            return MailError::Timeout { server, secs };
        }
        let mut innermost: &dyn std::error::Error = err;
        let mut invalid_data = false;
        while let Some(source) = innermost.source() {
            if let Some(io) = source.downcast_ref::<io::Error>() {
                invalid_data |= io.kind() == io::ErrorKind::InvalidData;
            }
            innermost = source;
        }
        if err.is_tls() || (tls && invalid_data) {
            return MailError::Tls {
                server,
                reason: innermost.to_string(),
            };
        }
        if err.is_response() || err.is_client() {
            return MailError::Protocol {
                server,
                reason: detail,
            };
        }
        // Connection, network I/O, shutdown: the relay may be back later.
        MailError::Connection {
            server,
            reason: innermost.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: u16) -> MailError {
        MailError::Refused {
            server: "smtp.example:587".into(),
            code,
            message: "nope".into(),
        }
    }

    #[test]
    fn classification() {
        assert!(refused(451).is_transient());
        assert!(refused(421).is_transient());
        assert!(!refused(550).is_transient());
        assert!(!refused(554).is_transient());
        assert_eq!(refused(550).smtp_code(), Some(550));
        assert!(
            MailError::Timeout {
                server: "x".into(),
                secs: 3
            }
            .is_transient()
        );
        assert!(
            !MailError::BadAddress {
                address: "x".into(),
                reason: "y".into()
            }
            .is_transient()
        );
        assert!(!MailError::UnknownTemplate("nope".into()).is_transient());
    }

    #[test]
    fn messages_are_human() {
        assert_eq!(
            refused(550).to_string(),
            "the SMTP server smtp.example:587 refused the mail: 550 nope"
        );
        assert_eq!(
            MailError::UnknownTemplate("nope".into()).to_string(),
            "unknown mail template \"nope\""
        );
    }
}
