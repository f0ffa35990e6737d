//! The ways a formatted mail leaves the server: an SMTP relay (lettre, async, rustls),
//! or the outbox directory, one `.eml` file per mail, when no relay is configured.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use lettre::AsyncTransport as _;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, Tokio1Executor};

use crate::message::{FormattedMail, random_hex};
use crate::{MailConfig, MailError, TlsMode};

/// Where mails go.
#[derive(Debug)]
pub enum Transport {
    Smtp(SmtpTransport),
    Outbox(OutboxTransport),
}

/// What became of a sent mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The relay accepted it, with this reply (`250 …`).
    Smtp { server: String, reply: String },
    /// It was written to this file.
    Outbox { path: PathBuf },
}

impl Transport {
    /// SMTP when `config.host` is set, else the outbox in `outbox_dir` (created on the
    /// first mail).
    pub fn from_config(
        config: &MailConfig,
        outbox_dir: impl Into<PathBuf>,
    ) -> Result<Self, MailError> {
        match config.host.as_deref().map(str::trim) {
            Some(host) if !host.is_empty() => Ok(Transport::Smtp(SmtpTransport::new(config)?)),
            Some(_) => Err(MailError::Config("`host` is empty".into())),
            None => Ok(Transport::Outbox(OutboxTransport::new(outbox_dir))),
        }
    }

    /// Sends one formatted mail.
    pub async fn send(&self, mail: &FormattedMail) -> Result<Delivery, MailError> {
        match self {
            Transport::Smtp(smtp) => smtp.send(mail).await,
            Transport::Outbox(outbox) => outbox.write(mail).await,
        }
    }
}

/// An SMTP relay. One connection per mail: mails are rare, and a fresh connection
/// never finds a relay that timed the previous one out.
pub struct SmtpTransport {
    /// Boxed: lettre's transport is large, and `Transport` is moved around.
    inner: Box<AsyncSmtpTransport<Tokio1Executor>>,
    server: String,
    timeout: Duration,
    tls: bool,
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("server", &self.server)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SmtpTransport {
    /// The relay described by `config` (whose `host` must be set).
    pub fn new(config: &MailConfig) -> Result<Self, MailError> {
        let host = config
            .host
            .as_deref()
            .map(str::trim)
            .filter(|host| !host.is_empty())
            .ok_or_else(|| MailError::Config("`host` is not set".into()))?;
        let port = config.effective_port();
        let timeout = config.timeout();
        let tls = match config.tls {
            TlsMode::None => Tls::None,
            TlsMode::Starttls => Tls::Required(tls_parameters(host, config)?),
            TlsMode::Tls => Tls::Wrapper(tls_parameters(host, config)?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Some(name) = config.local_name.as_deref().map(str::trim) {
            builder = builder.hello_name(client_id(name)?);
        }
        match (&config.username, &config.password) {
            (Some(user), password) => {
                builder = builder.credentials(Credentials::new(
                    user.clone(),
                    password.clone().unwrap_or_default(),
                ));
            }
            (None, Some(_)) => {
                return Err(MailError::Config(
                    "`password` is set without `username`".into(),
                ));
            }
            (None, None) => {}
        }
        Ok(SmtpTransport {
            inner: Box::new(builder.build()),
            server: format!("{host}:{port}"),
            timeout,
            tls: config.tls != TlsMode::None,
        })
    }

    /// `host:port`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Sends one mail; the whole exchange must end within the configured timeout.
    pub async fn send(&self, mail: &FormattedMail) -> Result<Delivery, MailError> {
        let secs = self.timeout.as_secs();
        // lettre ends the data with `CRLF . CRLF`; its first CRLF must be the message's
        // own last line end, or the relay receives one more (empty) line than the
        // outbox would have written.
        let bytes = mail.bytes();
        let bytes = bytes.strip_suffix(b"\r\n").unwrap_or(bytes);
        let sent = tokio::time::timeout(self.timeout, self.inner.send_raw(mail.envelope(), bytes))
            .await
            .map_err(|_| MailError::Timeout {
                server: self.server.clone(),
                secs,
            })?;
        match sent {
            Ok(response) => {
                let reply = format!(
                    "{} {}",
                    response.code(),
                    response.message().collect::<Vec<_>>().join(" ")
                );
                tracing::info!(
                    server = %self.server,
                    to = %mail.recipients().join(", "),
                    message_id = %mail.message_id(),
                    reply = %reply,
                    "mail sent"
                );
                Ok(Delivery::Smtp {
                    server: self.server.clone(),
                    reply,
                })
            }
            Err(err) => {
                let err = MailError::from_smtp(&self.server, secs, self.tls, &err);
                tracing::warn!(
                    server = %self.server,
                    to = %mail.recipients().join(", "),
                    transient = err.is_transient(),
                    "mail not sent: {err}"
                );
                Err(err)
            }
        }
    }
}

fn tls_parameters(host: &str, config: &MailConfig) -> Result<TlsParameters, MailError> {
    TlsParameters::builder(host.to_owned())
        .dangerous_accept_invalid_certs(config.skip_certificate_validation)
        .build_rustls()
        .map_err(|err| MailError::Config(format!("TLS for `host` {host:?}: {err}")))
}

fn client_id(name: &str) -> Result<ClientId, MailError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
    {
        return Err(MailError::Config(format!(
            "`local_name` {name:?} is not a host name"
        )));
    }
    Ok(match name.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ClientId::Ipv4(ip),
        Ok(std::net::IpAddr::V6(ip)) => ClientId::Ipv6(ip),
        Err(_) => ClientId::Domain(name.to_owned()),
    })
}

/// The outbox: each mail becomes `<dir>/<UTC timestamp>-<random>.eml`, written to a
/// hidden temporary file in the same directory, synced, then renamed, so a reader of
/// the directory never sees a partial mail.
#[derive(Clone, Debug)]
pub struct OutboxTransport {
    dir: PathBuf,
}

impl OutboxTransport {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        OutboxTransport { dir: dir.into() }
    }

    /// The directory mails are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes one mail, atomically.
    pub async fn write(&self, mail: &FormattedMail) -> Result<Delivery, MailError> {
        let dir = self.dir.clone();
        let bytes = mail.bytes().to_vec();
        let path = tokio::task::spawn_blocking(move || write_atomically(&dir, &bytes))
            .await
            .map_err(|err| MailError::Io {
                path: self.dir.clone(),
                source: std::io::Error::other(err),
            })??;
        tracing::info!(
            to = %mail.recipients().join(", "),
            message_id = %mail.message_id(),
            path = %path.display(),
            "mail written to the outbox"
        );
        Ok(Delivery::Outbox { path })
    }
}

fn write_atomically(dir: &Path, bytes: &[u8]) -> Result<PathBuf, MailError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| MailError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let name = format!("{}-{}.eml", timestamp(SystemTime::now()), random_hex(6));
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &path)
    })();
    if let Err(err) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(&path)(err));
    }
    // The rename is durable once the directory itself is synced.
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
    Ok(path)
}

/// `YYYYMMDDThhmmss.mmmZ` in UTC: sorts like time, and holds no `:`.
fn timestamp(now: SystemTime) -> String {
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(SystemTime::UNIX_EPOCH), "19700101T000000.000Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
        assert_eq!(timestamp(t), "20240229T123456.789Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(4_102_444_799);
        assert_eq!(timestamp(t), "20991231T235959.000Z");
    }

    #[test]
    fn config_errors() {
        let config = MailConfig {
            host: Some("  ".into()),
            ..MailConfig::default()
        };
        assert!(matches!(
            Transport::from_config(&config, "/tmp/x"),
            Err(MailError::Config(_))
        ));
        let config = MailConfig {
            host: Some("smtp.example.com".into()),
            local_name: Some("bad name".into()),
            ..MailConfig::default()
        };
        assert!(matches!(
            SmtpTransport::new(&config),
            Err(MailError::Config(_))
        ));
        let config = MailConfig {
            host: Some("smtp.example.com".into()),
            password: Some("secret".into()),
            ..MailConfig::default()
        };
        let err = SmtpTransport::new(&config).expect_err("password alone");
        assert!(!err.to_string().contains("secret"));
        let config = MailConfig {
            host: Some("smtp.example.com".into()),
            tls: TlsMode::Tls,
            local_name: Some("hearth.example.com".into()),
            ..MailConfig::default()
        };
        let smtp = SmtpTransport::new(&config).expect("smtps");
        assert_eq!(smtp.server(), "smtp.example.com:465");
        assert!(matches!(
            Transport::from_config(&MailConfig::default(), "/tmp/outbox"),
            Ok(Transport::Outbox(_))
        ));
    }
}
