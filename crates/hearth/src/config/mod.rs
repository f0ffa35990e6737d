//! Hearth's configuration: one serde struct with its defaults, and its validation.
//!
//! Keys follow cozy-stack's `cozy.yaml` where one exists. Values come, from lowest to
//! highest precedence, from the defaults, the configuration file, `HEARTH_*`
//! environment variables and command-line flags ([`load`]); [`Sources`] remembers
//! where each one came from, for error messages and `hearth config show` ([`render`]).
//!
//! With no file, no variable and no flag, the defaults run a complete server with
//! everything under `./hearth-data`.

mod load;
mod show;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use load::{
    ConfigError, LoadInput, Loaded, Overrides, Source, Sources, cozy_env_name,
    default_search_paths, env_name, is_cozy_file, load,
};
pub use show::render;

/// The data directory used when none is configured.
pub const DEFAULT_DATA_DIR: &str = "./hearth-data";

/// The whole configuration, as read from YAML.
///
/// Every `Option` field is a string; `load` relies on this to read environment
/// variables of keys whose default is unset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Host name or IP address the public server listens on (`localhost` listens on
    /// every loopback address it resolves to).
    pub host: String,
    /// TCP port of the public server.
    pub port: u16,
    /// Directory holding everything Hearth writes unless told otherwise: the document
    /// databases (`db/`), the files (`files/`) and the mail outbox (`mail/outbox/`).
    /// A relative path is relative to the working directory.
    pub data_dir: PathBuf,
    /// The admin API (instance management), a separate listener on loopback only.
    pub admin: AdminConfig,
    /// Where the content of files is stored.
    pub fs: FsConfig,
    /// The document store.
    pub database: DatabaseConfig,
    /// Outgoing mail. Without `host`, mails are written to `outbox_dir` instead.
    pub mail: MailConfig,
    /// Configuration profiles by context name, free-form; the `default` context
    /// applies to instances whose context is empty or not configured.
    pub contexts: BTreeMap<String, serde_norway::Mapping>,
    /// App registries by context name, each a list of URLs searched in order: an
    /// instance looks in its context's list, then in `default`'s. A URL is an HTTP
    /// registry (`https://apps-registry.cozycloud.cc/`) or a local directory laid out
    /// like one (`file:///srv/registry`: `registry/<slug>/<channel>/latest`…).
    pub registries: BTreeMap<String, Vec<String>>,
    /// Konnectors.
    pub konnectors: KonnectorsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Limits on requests.
    pub limits: LimitsConfig,
    /// Owners' logins.
    pub auth: AuthConfig,
    /// Background jobs.
    pub jobs: JobsConfig,
    /// Redis, shared by several `hearth serve` nodes: the job queue, the leader that
    /// fires timed triggers, failed-login counts and realtime events between nodes.
    pub redis: RedisConfig,
    /// How web apps are addressed: `nested` (`<slug>.<instance domain>`) or `flat`
    /// (`<first label>-<slug>.<rest of the domain>`), as in the Cozy stack.
    pub subdomains: Subdomains,
    /// Keys for stored secrets, as in the Cozy stack's `vault` section.
    pub vault: VaultConfig,
    /// OnlyOffice servers by context name, free-form as in the Cozy stack
    /// (`office.default.onlyoffice_url`). Read and shown; not used yet.
    pub office: BTreeMap<String, serde_norway::Mapping>,
    /// Moving an instance to another server: the move wizard and moved sources.
    pub r#move: MoveConfig,
}

/// `move.*`: moves between servers (the Cozy stack's `move.url`, plus where this
/// server serves the wizard itself and how long it keeps a moved instance).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveConfig {
    /// The address of the move wizard that `/move/initialize` sends people to
    /// (`https://move.example.net/`). Unset: `http(s)://<move.domain>/` when
    /// `move.domain` is set, else moves cannot be started from the settings page.
    pub url: Option<String>,
    /// The host on which this server serves the move wizard itself
    /// (`move.example.net`, or `move.localhost:8080` for a trial), with a port when
    /// it is not 80/443. Point that name at this server; no instance may use it.
    /// Unset: this server serves no wizard.
    pub domain: Option<String>,
    /// How long a moved instance (the source of a finished move) is kept before it
    /// is destroyed (a duration such as `720h` or `30d`).
    #[serde(with = "duration_text")]
    pub delete_after: Duration,
}

/// `subdomains`: where web apps are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subdomains {
    Nested,
    Flat,
}

/// `vault.*`: the NaCl box key pair files written by `hearth config gen-keys <path>`
/// (`<path>.enc`, `<path>.dec`), which the Cozy stack uses to encrypt the credentials
/// stored in accounts. Hearth checks that both files hold such keys; it does not
/// encrypt credentials with them yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Path of the encryptor key (`<path>.enc`).
    pub credentials_encryptor_key: Option<String>,
    /// Path of the decryptor key (`<path>.dec`).
    pub credentials_decryptor_key: Option<String>,
}

/// `admin.*`: the admin API listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Host name or address of the admin API; it must resolve to loopback addresses.
    pub host: String,
    /// TCP port of the admin API.
    pub port: u16,
    /// Name of the file holding the scrypt hash of the admin passphrase (written by
    /// `hearth config passwd <file>`).
    pub secret_filename: String,
}

/// `fs.*`: the blob store for file contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsConfig {
    /// `file://<directory>` (an absolute path alone also works), or
    /// `s3://<bucket>[/<prefix>]?endpoint=<url>&region=<region>` for an S3 bucket
    /// (`endpoint` defaults to AWS's for the region, `region` to `us-east-1`;
    /// `virtual_host=true` for `bucket.host` URLs), or
    /// `swift://<container>[/<prefix>]?auth_url=<url>` for an OpenStack Swift container
    /// (TempAuth's `…/auth/v1.0`, or Keystone's `…/v3` with `project`, `domain`
    /// (`Default`) and `region` as further parameters).
    pub url: String,
    /// The access key id of `s3://` storage. When both S3 keys are absent, the usual
    /// AWS sources are read: `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, then the
    /// AWS profile files.
    pub s3_access_key_id: Option<String>,
    /// The secret access key of `s3://` storage (see `s3_access_key_id`).
    pub s3_secret_access_key: Option<String>,
    /// The user of `swift://` storage: TempAuth's `account:user`, or Keystone's user.
    pub swift_user: Option<String>,
    /// The key (TempAuth) or password (Keystone) of `swift://` storage.
    pub swift_password: Option<String>,
}

/// `database.*`: the document store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://<directory>`: one SQLite file per instance in that directory
    /// (`sqlite:///var/lib/hearth/db`; `sqlite://db` is relative). Or
    /// `postgres://user@host:port/database`: PostgreSQL, shared by several nodes (one
    /// schema per instance under the `hearth` schema; no TLS). `max_open`,
    /// `idle_timeout` and `synchronous` apply to SQLite only.
    pub url: String,
    /// How many instance databases may be open at once; idle ones are closed first.
    pub max_open: usize,
    /// An instance database unused for this long is closed: a number of seconds, or
    /// a number with a unit (`ms`, `s`, `m`, `h`, `d`), combinable as in `1h30m`.
    #[serde(with = "duration_text")]
    pub idle_timeout: Duration,
    /// `full`: every commit reaches the disk before it is acknowledged. `normal`:
    /// faster, and a power cut may lose the last commits (never corrupts).
    pub synchronous: Synchronous,
    /// More database clusters (URLs as `url`), numbered from 1 (`url` is cluster 0):
    /// `instances add --db-cluster N` puts an instance's documents on cluster N; new
    /// instances are spread over all of them by default.
    #[serde(default)]
    pub clusters: Vec<String>,
}

/// SQLite's `synchronous` pragma.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Full,
    Normal,
}

/// `mail.*`: outgoing mail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// SMTP relay host; unset means mails go to `outbox_dir`.
    pub host: Option<String>,
    /// SMTP relay port.
    pub port: u16,
    /// SMTP user name, if the relay needs one.
    pub username: Option<String>,
    /// SMTP password (secret: `HEARTH_MAIL_PASSWORD_FILE` can name a file holding it).
    pub password: Option<String>,
    /// Send in clear text, without STARTTLS or TLS.
    pub disable_tls: bool,
    /// Connect with TLS from the start (SMTPS) rather than STARTTLS; port 465 implies it.
    pub use_ssl: bool,
    /// Accept any certificate from the relay (for tests only).
    pub skip_certificate_validation: bool,
    /// Name announced in the SMTP `EHLO`; defaults to the host name.
    pub local_name: Option<String>,
    /// Directory where mails are written when no relay is configured.
    pub outbox_dir: PathBuf,
    /// Sender address of the server's mails; by default `noreply@<instance domain>`.
    pub noreply_address: Option<String>,
    /// Sender display name; by default the instance's public name.
    pub noreply_name: Option<String>,
    /// A `Reply-To` address added to the server's mails.
    pub reply_to: Option<String>,
    /// Where the Cozy stack sends alerts (an instance whose destruction failed).
    /// Accepted and shown; Hearth sends no alert mail yet.
    pub alert_address: Option<String>,
}

/// `jobs.*`: background jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
    /// Delay before the first retry of a failed job; each next retry waits twice as
    /// long, up to an hour (a number of seconds, or `500ms`, `10s`, `1m`…).
    #[serde(with = "duration_text")]
    pub retry_delay: Duration,
    /// Per worker type (`sendmail`, `thumbnail`, `log`, `trash-files`,
    /// `clean-sessions`…): `concurrency`, `max_exec_count`, `timeout` (seconds).
    pub workers: BTreeMap<String, WorkerConfig>,
}

/// `redis.*`: what several nodes sharing one database and one file store also share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port/db` (no TLS), or `redis+unix:///path/to/socket`. Unset: one node,
    /// with its job queue in the document store and its events in memory. Every node
    /// of a deployment must use the same Redis, database and `prefix`.
    pub url: Option<String>,
    /// The start of every key Hearth writes, so that several deployments share one
    /// Redis.
    pub prefix: String,
    /// This node's name among the nodes (its running jobs are found by it after a
    /// restart); two live nodes must never share one. Default: `<host name>:<port>`.
    pub node_id: Option<String>,
}

/// `jobs.workers.<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    pub concurrency: Option<usize>,
    pub max_exec_count: Option<u32>,
    /// Seconds, or a duration with a unit as the Cozy stack writes it (`90s`, `5m`).
    #[serde(default, deserialize_with = "optional_seconds")]
    pub timeout: Option<u64>,
}

/// An optional number of seconds, also given as a duration text (`"90s"`, `"5m"`).
fn optional_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Seconds(s)) => Ok(Some(s)),
        Some(Raw::Text(t)) => parse_duration(&t)
            .map(|d| Some(d.as_secs()))
            .map_err(serde::de::Error::custom),
    }
}

/// `konnectors.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KonnectorsConfig {
    /// The command that runs a konnector (the Cozy stack's `konnectors.cmd`), called
    /// with the konnector's directory as its one argument, in that directory, with only
    /// `PATH` and the `COZY_*` variables in its environment; e.g. a script running
    /// `node <dir>`. A relative path is relative to the working directory. Unset:
    /// konnector jobs fail with "konnectors.cmd is not configured".
    pub cmd: Option<String>,
}

/// `log.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace`, or per-module directives such as
    /// `info,hearth_web=debug`. `RUST_LOG`, when set, takes precedence.
    pub level: String,
}

/// `limits.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// The largest request body accepted, in bytes (file uploads have their own limit).
    pub body_bytes: u64,
}

/// `auth.*`: owners' logins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Failed logins within an hour that block an instance (reason `LOGIN_FAILED`,
    /// lifted with `hearth instances modify --blocked=false`); counted in memory per
    /// instance over a sliding hour. 0 never blocks.
    pub login_failures_per_hour: u32,
    /// Cost of the server-side passphrase hash: log2 of scrypt's N (r=8, p=1). The
    /// default, 15, is the Cozy stack's strength; lower it only for tests and
    /// benchmarks that create many instances with a passphrase (4 to 20).
    pub scrypt_log_n: u8,
}

impl Config {
    /// The defaults, with every derived path under `data_dir`.
    pub fn defaults(data_dir: &Path) -> Self {
        let base = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        Self {
            host: "localhost".into(),
            port: 8080,
            data_dir: data_dir.to_path_buf(),
            admin: AdminConfig {
                host: "localhost".into(),
                port: 6060,
                secret_filename: "hearth-admin-passphrase".into(),
            },
            fs: FsConfig {
                url: format!("file://{}", base.join("files").display()),
                s3_access_key_id: None,
                s3_secret_access_key: None,
                swift_user: None,
                swift_password: None,
            },
            database: DatabaseConfig {
                url: format!("sqlite://{}", base.join("db").display()),
                max_open: 256,
                idle_timeout: Duration::from_secs(300),
                synchronous: Synchronous::Full,
                clusters: Vec::new(),
            },
            mail: MailConfig {
                host: None,
                port: 587,
                username: None,
                password: None,
                disable_tls: false,
                use_ssl: false,
                skip_certificate_validation: false,
                local_name: None,
                outbox_dir: base.join("mail").join("outbox"),
                noreply_address: None,
                noreply_name: None,
                reply_to: None,
                alert_address: None,
            },
            contexts: BTreeMap::new(),
            registries: BTreeMap::new(),
            konnectors: KonnectorsConfig { cmd: None },
            log: LogConfig {
                level: "info".into(),
            },
            limits: LimitsConfig {
                body_bytes: 64 * 1024 * 1024,
            },
            auth: AuthConfig {
                login_failures_per_hour: 1000,
                scrypt_log_n: 15,
            },
            jobs: JobsConfig {
                retry_delay: Duration::from_secs(10),
                workers: BTreeMap::new(),
            },
            redis: RedisConfig {
                url: None,
                prefix: "hearth:".into(),
                node_id: None,
            },
            subdomains: Subdomains::Nested,
            vault: VaultConfig {
                credentials_encryptor_key: None,
                credentials_decryptor_key: None,
            },
            office: BTreeMap::new(),
            r#move: MoveConfig {
                url: None,
                domain: None,
                delete_after: Duration::from_secs(720 * 3600),
            },
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::defaults(Path::new(DEFAULT_DATA_DIR))
    }
}

/// The backends named by the configuration's URLs, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backends {
    pub database: DatabaseLocation,
    /// `database.clusters`, checked.
    pub clusters: Vec<DatabaseLocation>,
    pub fs: FsLocation,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// One SQLite file per instance in this directory.
    Sqlite { dir: PathBuf },
    /// A PostgreSQL database (the URL as configured).
    Postgres { url: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsLocation {
    /// Files under this directory on the local disk.
    Local { dir: PathBuf },
    /// Files in an S3 bucket, keyed by file id.
    S3(S3Location),
    /// Files in an OpenStack Swift container, keyed by file id.
    Swift(SwiftLocation),
}

/// A Swift container named by `fs.url` (user and password are separate keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwiftLocation {
    pub container: String,
    /// Below the container's root, without slashes around it (`""` for none).
    pub prefix: String,
    /// TempAuth's `…/auth/v1.0`, or Keystone's `…/v3`.
    pub auth_url: String,
    /// Keystone: the project, the domain of the user and project, the region.
    pub project: Option<String>,
    pub domain: Option<String>,
    pub region: Option<String>,
}

/// Parses the part of a `swift://` URL after the scheme:
/// `<container>[/<prefix>]?auth_url=<url>[&project=…&domain=…&region=…]`.
fn parse_swift_url(rest: &str) -> Result<SwiftLocation, String> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (container, prefix) = path.split_once('/').unwrap_or((path, ""));
    if container.is_empty() || container.len() > 256 || container.starts_with('.') {
        return Err(format!(
            "{container:?} is not a Swift container name, as in \
             swift://files?auth_url=https://swift.example.net/auth/v1.0"
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|p| p == "." || p == "..") {
        return Err(format!("the prefix {prefix:?} has a . or .. part"));
    }
    let mut loc = SwiftLocation {
        container: container.to_owned(),
        prefix: prefix.to_owned(),
        auth_url: String::new(),
        project: None,
        domain: None,
        region: None,
    };
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| format!("cannot read the query of the swift:// URL: {e}"))?;
    for (k, v) in pairs {
        match k.as_str() {
            "auth_url" => {
                if !(v.starts_with("http://") || v.starts_with("https://")) {
                    return Err(format!("auth_url={v:?} is not an http:// or https:// URL"));
                }
                loc.auth_url = v;
            }
            "project" if !v.is_empty() => loc.project = Some(v),
            "domain" if !v.is_empty() => loc.domain = Some(v),
            "region" if !v.is_empty() => loc.region = Some(v),
            _ => {
                return Err(format!(
                    "unknown swift:// parameter {k:?} (expected auth_url, project, domain or region)"
                ));
            }
        }
    }
    if loc.auth_url.is_empty() {
        return Err(
            "swift:// needs auth_url, as in swift://files?auth_url=https://swift.example.net/auth/v1.0"
                .into(),
        );
    }
    Ok(loc)
}

/// An S3 bucket named by `fs.url` (credentials are separate keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Below the bucket's root, without slashes around it (`""` for none).
    pub prefix: String,
    /// The server's URL; AWS's endpoint of the region when absent.
    pub endpoint: Option<String>,
    pub region: String,
    pub virtual_host_style: bool,
}

/// Parses the part of an `s3://` URL after the scheme: `<bucket>[/<prefix>][?query]`.
fn parse_s3_url(rest: &str) -> Result<S3Location, String> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && !bucket.starts_with(['.', '-'])
        && !bucket.ends_with(['.', '-']);
    if !valid_bucket {
        return Err(format!(
            "{bucket:?} is not an S3 bucket name (3 to 63 lowercase letters, digits, dots \
             and hyphens), as in s3://my-bucket?endpoint=https://s3.example.net"
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|p| p == "." || p == "..") {
        return Err(format!("the prefix {prefix:?} has a . or .. part"));
    }
    let mut loc = S3Location {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        endpoint: None,
        region: "us-east-1".into(),
        virtual_host_style: false,
    };
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| format!("cannot read the query of the s3:// URL: {e}"))?;
    for (k, v) in pairs {
        match k.as_str() {
            "endpoint" => {
                if !(v.starts_with("http://") || v.starts_with("https://")) {
                    return Err(format!("endpoint={v:?} is not an http:// or https:// URL"));
                }
                loc.endpoint = Some(v);
            }
            "region" if !v.is_empty() => loc.region = v,
            "virtual_host" => {
                loc.virtual_host_style = match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(format!("virtual_host={v:?} is neither true nor false")),
                }
            }
            _ => {
                return Err(format!(
                    "unknown s3:// parameter {k:?} (expected endpoint, region or virtual_host)"
                ));
            }
        }
    }
    Ok(loc)
}

/// Checks `move.url`: an `http://` or `https://` URL with a host and no query or
/// fragment; answered with a single trailing slash.
pub fn parse_move_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            format!("{url:?} is not an http:// or https:// URL (e.g. https://move.example.net/)")
        })?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains(['@', '?', '#', ' ']) || rest.contains(['?', '#', ' ']) {
        return Err(format!(
            "{url:?} is not a wizard address (a host and an optional path, e.g. https://move.example.net/)"
        ));
    }
    Ok(format!("{}/", url.trim_end_matches('/')))
}

/// Checks `move.domain`: a host name with an optional port, no scheme or path;
/// answered in lowercase.
pub fn parse_move_domain(domain: &str) -> Result<String, String> {
    let domain = domain.trim().to_ascii_lowercase();
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (domain.as_str(), None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    if host_ok && port_ok {
        Ok(domain)
    } else {
        Err(format!(
            "{domain:?} is not a host name (expected e.g. move.example.net or move.localhost:8080, \
             without http://)"
        ))
    }
}

/// Parses `database.url`.
pub fn parse_database_url(url: &str) -> Result<DatabaseLocation, String> {
    match url.split_once("://") {
        Some(("sqlite", "")) => {
            Err("sqlite:// needs a directory, as in sqlite:///var/lib/hearth/db".into())
        }
        Some(("sqlite", path)) => Ok(DatabaseLocation::Sqlite {
            dir: PathBuf::from(path),
        }),
        Some(("postgres" | "postgresql", _)) => {
            hearth_store_postgres::check_url(url)?;
            Ok(DatabaseLocation::Postgres {
                url: url.to_owned(),
            })
        }
        Some((scheme, _)) => Err(format!(
            "unknown scheme {scheme}:// (expected sqlite:// or postgres://)"
        )),
        None => Err(format!(
            "{url:?} is not a URL (expected sqlite://<directory> or postgres://…)"
        )),
    }
}

/// Parses `fs.url`, returning its normalized form (`file://` added to a bare path).
pub fn parse_fs_url(url: &str) -> Result<(String, FsLocation), String> {
    if url.starts_with('/') {
        return Ok((
            format!("file://{url}"),
            FsLocation::Local {
                dir: PathBuf::from(url),
            },
        ));
    }
    match url.split_once("://") {
        Some(("file", "")) => {
            Err("file:// needs a directory, as in file:///var/lib/hearth/files".into())
        }
        // `file://localhost/srv/files` names the same directory as `file:///srv/files`.
        Some(("file", path)) => Ok((
            url.to_owned(),
            FsLocation::Local {
                dir: match path.strip_prefix("localhost/") {
                    Some(rest) => PathBuf::from(format!("/{rest}")),
                    None => PathBuf::from(path),
                },
            },
        )),
        Some(("s3", rest)) => Ok((url.to_owned(), FsLocation::S3(parse_s3_url(rest)?))),
        Some(("swift", rest)) => Ok((url.to_owned(), FsLocation::Swift(parse_swift_url(rest)?))),
        Some((scheme, _)) => Err(format!(
            "unknown scheme {scheme}:// (expected file://, s3:// or swift://)"
        )),
        None => Err(format!("{url:?} is neither a URL nor an absolute path")),
    }
}

/// Checks `redis.url`.
pub fn check_redis_url(url: &str) -> Result<(), String> {
    match url.split_once("://") {
        Some(("redis" | "redis+unix" | "unix", rest)) if !rest.is_empty() => Ok(()),
        Some(("rediss", _)) => Err("rediss:// (TLS) is not compiled in; use redis://".into()),
        Some((scheme, _)) => Err(format!(
            "unknown scheme {scheme}:// (expected redis://[:password@]host:port/db)"
        )),
        None => Err("not a URL (expected redis://[:password@]host:port/db)".into()),
    }
}

/// `url` with its password (if any) replaced by `***`, for messages and `config show`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let user = &authority[..at];
            let user = match user.split_once(':') {
                Some((name, _)) => format!("{name}:***"),
                None => user.to_owned(),
            };
            format!("{}{user}@{}", &url[..scheme_end + 3], &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}

/// Parses a duration: whole seconds (`300`) or numbers with units (`90s`, `5m`, `1h30m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "invalid duration {text:?} (expected seconds or a number with a unit: 300, 90s, 5m, 1h30m)"
        )
    };
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map(Duration::from_secs).map_err(|_| invalid());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let unit_len = rest[digits..]
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        if digits == 0 || unit_len == 0 {
            return Err(invalid());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        let part = match &rest[digits..digits + unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3_600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            _ => return Err(invalid()),
        };
        total = total.saturating_add(part);
        rest = &rest[digits + unit_len..];
    }
    Ok(total)
}

/// Formats a duration in the largest unit that keeps it whole (`5m`, `90s`, `250ms`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1_000) {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    match secs {
        0 => "0s".into(),
        s if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        s if s.is_multiple_of(3_600) => format!("{}h", s / 3_600),
        s if s.is_multiple_of(60) => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Serde for durations written as text (`5m`) or whole seconds (`300`).
mod duration_text {
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a duration such as 300 (seconds), 90s, 5m or 1h30m")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            super::parse_duration(v).map_err(E::custom)
        }
    }
}

impl fmt::Display for Subdomains {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Nested => "nested",
            Self::Flat => "flat",
        })
    }
}

impl fmt::Display for Synchronous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full => "full",
            Self::Normal => "normal",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("300", 300_000),
            ("90s", 90_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("250ms", 250),
            ("1d", 86_400_000),
        ];
        for (text, ms) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for bad in ["", "5x", "m", "5 m", "-3s", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
        for (ms, text) in [
            (300_000, "5m"),
            (90_000, "90s"),
            (250, "250ms"),
            (7_200_000, "2h"),
            (0, "0s"),
        ] {
            assert_eq!(format_duration(Duration::from_millis(ms)), text);
        }
    }

    #[test]
    fn database_urls() {
        assert_eq!(
            parse_database_url("sqlite:///var/db"),
            Ok(DatabaseLocation::Sqlite {
                dir: "/var/db".into()
            })
        );
        assert_eq!(
            parse_database_url("postgres://db/hearth"),
            Ok(DatabaseLocation::Postgres {
                url: "postgres://db/hearth".into()
            })
        );
        assert!(parse_database_url("postgresql://u@db:5432/hearth").is_ok());
        assert!(
            parse_database_url("postgres://db:port/hearth")
                .unwrap_err()
                .starts_with("invalid PostgreSQL URL")
        );
        assert_eq!(
            parse_database_url("couchdb://x"),
            Err("unknown scheme couchdb:// (expected sqlite:// or postgres://)".into())
        );
        assert!(parse_database_url("sqlite://").is_err());
        assert!(parse_database_url("/var/db").is_err());
    }

    #[test]
    fn fs_urls() {
        assert_eq!(
            parse_fs_url("/srv/files"),
            Ok((
                "file:///srv/files".into(),
                FsLocation::Local {
                    dir: "/srv/files".into()
                }
            ))
        );
        assert_eq!(
            parse_fs_url("file:///srv/files"),
            Ok((
                "file:///srv/files".into(),
                FsLocation::Local {
                    dir: "/srv/files".into()
                }
            ))
        );
        assert_eq!(
            parse_fs_url("s3://bucket"),
            Ok((
                "s3://bucket".into(),
                FsLocation::S3(S3Location {
                    bucket: "bucket".into(),
                    prefix: String::new(),
                    endpoint: None,
                    region: "us-east-1".into(),
                    virtual_host_style: false,
                })
            ))
        );
        assert_eq!(
            parse_fs_url(
                "s3://files.example/node/a/?endpoint=http://127.0.0.1:9000&region=eu-west-3&virtual_host=true"
            )
            .map(|(_, l)| l),
            Ok(FsLocation::S3(S3Location {
                bucket: "files.example".into(),
                prefix: "node/a".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: "eu-west-3".into(),
                virtual_host_style: true,
            }))
        );
        for bad in [
            "s3://",
            "s3://B",
            "s3://-bucket",
            "s3://bucket/../x",
            "s3://bucket?endpoint=ftp://x",
            "s3://bucket?virtual_host=maybe",
            "s3://bucket?access_key=x",
        ] {
            assert!(parse_fs_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_fs_url("file://localhost/srv/files").map(|(_, dir)| dir),
            Ok(FsLocation::Local {
                dir: "/srv/files".into()
            })
        );
        assert_eq!(
            parse_fs_url("swift://files/node/?auth_url=http://127.0.0.1:8080/auth/v1.0")
                .map(|(_, l)| l),
            Ok(FsLocation::Swift(SwiftLocation {
                container: "files".into(),
                prefix: "node".into(),
                auth_url: "http://127.0.0.1:8080/auth/v1.0".into(),
                project: None,
                domain: None,
                region: None,
            }))
        );
        assert_eq!(
            parse_fs_url("swift://c?auth_url=https://k.example/v3&project=p&domain=d&region=r1")
                .map(|(_, l)| l),
            Ok(FsLocation::Swift(SwiftLocation {
                container: "c".into(),
                prefix: String::new(),
                auth_url: "https://k.example/v3".into(),
                project: Some("p".into()),
                domain: Some("d".into()),
                region: Some("r1".into()),
            }))
        );
        for bad in [
            "swift://x",
            "swift://?auth_url=http://h/auth/v1.0",
            "swift://c/../x?auth_url=http://h/auth/v1.0",
            "swift://c?auth_url=ftp://h",
            "swift://c?auth_url=http://h/auth/v1.0&key=x",
        ] {
            assert!(parse_fs_url(bad).is_err(), "{bad}");
        }
        assert!(parse_fs_url("ftp://x").is_err_and(|e| e.starts_with("unknown scheme ftp://")));
        assert!(parse_fs_url("relative/dir").is_err());
    }

    #[test]
    fn redis_urls() {
        assert!(check_redis_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(check_redis_url("redis://:pw@cache:6380").is_ok());
        assert!(check_redis_url("rediss://cache").is_err());
        assert!(check_redis_url("http://x").is_err());
        assert!(check_redis_url("cache:6379").is_err());
        assert_eq!(
            redact_url("redis://:s3cret@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(
            redact_url("postgres://u:p@db/x?a=b@c"),
            "postgres://u:***@db/x?a=b@c"
        );
        assert_eq!(redact_url("redis://cache/0"), "redis://cache/0");
    }

    #[test]
    fn move_addresses() {
        assert_eq!(
            parse_move_url("https://move.example.net"),
            Ok("https://move.example.net/".into())
        );
        assert_eq!(
            parse_move_url(" http://move.localhost:8080/wizard// "),
            Ok("http://move.localhost:8080/wizard/".into())
        );
        for bad in [
            "move.example.net",
            "ftp://x",
            "https://",
            "https://a@b/",
            "https://x/?a",
        ] {
            assert!(parse_move_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_move_domain("Move.Example.NET"),
            Ok("move.example.net".into())
        );
        assert_eq!(
            parse_move_domain("move.localhost:8080"),
            Ok("move.localhost:8080".into())
        );
        for bad in [
            "https://move.example.net",
            "move.example.net/x",
            "move..net",
            "move.net:0",
            "move.net:99999",
            "-a.net",
            "",
        ] {
            assert!(parse_move_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn derived_defaults_follow_the_data_dir() {
        let config = Config::defaults(Path::new("/srv/hearth"));
        assert_eq!(config.database.url, "sqlite:///srv/hearth/db");
        assert_eq!(config.fs.url, "file:///srv/hearth/files");
        assert_eq!(config.mail.outbox_dir, Path::new("/srv/hearth/mail/outbox"));
    }
}
