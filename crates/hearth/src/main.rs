//! The `hearth` command line: parses arguments and runs one subcommand.
//!
//! Exit status: 0 on success, 2 for usage and configuration errors (nothing is
//! started), 1 for failures at run time. Errors are printed as `Error: …` on stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

// Many small, short-lived allocations (JSON documents): mimalloc serves them faster
// than the system allocator (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use hearth::config::{self, LoadInput, Overrides};

/// Hearth, a multi-tenant personal cloud server.
#[derive(Debug, Parser)]
#[command(name = "hearth", version)]
struct Cli {
    /// Configuration file [default: the first of ./hearth.yaml, ~/.hearth.yaml,
    /// /etc/hearth/hearth.yaml, then the Cozy stack's cozy.{json,yaml,yml} in ., .cozy,
    /// ~/.cozy, ~/.config/cozy, /etc/cozy; none means defaults]
    #[arg(
        short = 'c',
        long,
        global = true,
        value_name = "FILE",
        env = "HEARTH_CONFIG"
    )]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server until SIGINT or SIGTERM
    Serve(Box<ServeArgs>),
    /// Print the version
    Version,
    /// Inspect the configuration, or write the admin passphrase file
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage instances through the admin API
    #[command(visible_alias = "instance")]
    Instances(Box<hearth_cli::InstancesArgs>),
    /// Check the consistency of an instance through the admin API
    Check(Box<hearth_cli::CheckArgs>),
    /// Run background jobs of an instance through the admin API
    #[command(visible_alias = "job")]
    Jobs(Box<hearth_cli::JobsArgs>),
    /// List and launch the triggers of an instance through the admin API
    #[command(visible_alias = "trigger")]
    Triggers(Box<hearth_cli::TriggersArgs>),
    /// Install, update, list and remove the web apps of an instance through the admin API
    #[command(visible_alias = "app")]
    Apps(Box<hearth_cli::AppsArgs>),
    /// Install, update, list, remove and run the konnectors of an instance through the
    /// admin API
    #[command(visible_alias = "konnector")]
    Konnectors(Box<hearth_cli::KonnectorsArgs>),
    /// Read and write the raw documents of any doctype of an instance through the admin
    /// API (there is no CouchDB console with the embedded store)
    #[command(visible_alias = "doc")]
    Docs(Box<hearth_cli::DocsArgs>),
    /// Copy one instance's documents and file contents from the configured backends to
    /// other ones (e.g. SQLite and the local disk to PostgreSQL and S3), then check the
    /// copy; switch the configuration afterwards
    MigrateStorage(Box<MigrateStorageArgs>),
}

/// The instance must be blocked (through the running server: `hearth instances modify
/// <domain> --blocked`), or the server stopped and `--block` given. Nothing is removed
/// from the current backends; running the command again finishes an interrupted copy.
#[derive(Debug, Args)]
struct MigrateStorageArgs {
    /// The instance to copy
    #[arg(long, value_name = "DOMAIN")]
    domain: Option<String>,
    /// The target document store: sqlite://<dir> or postgres://…
    #[arg(long, value_name = "URL")]
    to_database: Option<String>,
    /// The target file storage: file://<dir> or s3://<bucket>[/<prefix>]?endpoint=…
    #[arg(long, value_name = "URL")]
    to_fs: Option<String>,
    /// The access key id of an s3:// target [default: fs.s3_access_key_id, then the AWS
    /// environment]
    #[arg(long, value_name = "ID", env = "HEARTH_TO_S3_ACCESS_KEY_ID")]
    to_s3_access_key_id: Option<String>,
    /// The secret access key of an s3:// target
    #[arg(
        long,
        value_name = "SECRET",
        env = "HEARTH_TO_S3_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    to_s3_secret_access_key: Option<String>,
    /// The server is stopped: block the instance here, and unblock it once the check
    /// passed
    #[arg(long)]
    block: bool,
    /// Also copy the global store (the registry of every instance, job tickets,
    /// trigger schedules), for a server moving to a new database; server stopped
    #[arg(long)]
    global: bool,
}

/// Flags override the configuration file and the HEARTH_* / COZY_* variables. The
/// flags of `cozy-stack serve` are accepted: those Hearth has a use for set the same
/// keys, the others are logged as having no effect.
#[derive(Debug, Args)]
struct ServeArgs {
    /// Host name or address of the public server [config: host]
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// Port of the public server [config: port]
    #[arg(short = 'p', long, value_name = "PORT")]
    port: Option<u16>,
    /// Host name or address of the admin API, loopback only [config: admin.host]
    #[arg(long, value_name = "HOST")]
    admin_host: Option<String>,
    /// Port of the admin API [config: admin.port]
    #[arg(long, value_name = "PORT")]
    admin_port: Option<u16>,
    /// Directory for the databases, files and outbox [config: data_dir]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Where file contents go, file://<dir> [config: fs.url]
    #[arg(long, value_name = "URL")]
    fs_url: Option<String>,
    /// The document store, sqlite://<dir> or postgres://… [config: database.url]
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Redis shared by several nodes, redis://[:password@]host:port/db [config: redis.url]
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    /// The Cozy stack's Redis of the job queue; the same as --redis-url, which wins
    /// [config: redis.url]
    #[arg(long, value_name = "URL")]
    jobs_url: Option<String>,
    /// Log level or filter directives; RUST_LOG overrides it [config: log.level]
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// The command that runs konnectors [config: konnectors.cmd]
    #[arg(long, value_name = "CMD")]
    konnectors_cmd: Option<String>,
    /// How web apps are addressed: nested or flat [config: subdomains]
    #[arg(long, value_name = "MODE")]
    subdomains: Option<String>,
    /// The move wizard's address, where the settings page sends a person who moves
    /// [config: move.url]
    #[arg(long, value_name = "URL")]
    move_url: Option<String>,
    /// Refused: Hearth has no CouchDB; its documents are stored where database.url
    /// (--database-url) says
    #[arg(long, value_name = "URL")]
    couchdb_url: Option<String>,
    #[command(flatten)]
    mail: MailFlags,
    #[command(flatten)]
    vault: VaultFlags,
    #[command(flatten)]
    ignored: IgnoredFlags,
}

/// `cozy-stack serve`'s mail flags.
#[derive(Debug, Args)]
#[command(next_help_heading = "Mail")]
struct MailFlags {
    /// SMTP relay [config: mail.host]
    #[arg(long, value_name = "HOST")]
    mail_host: Option<String>,
    /// SMTP port [config: mail.port]
    #[arg(long, value_name = "PORT")]
    mail_port: Option<u16>,
    /// SMTP user name [config: mail.username]
    #[arg(long, value_name = "NAME")]
    mail_username: Option<String>,
    /// SMTP password [config: mail.password]
    #[arg(long, value_name = "PASSWORD")]
    mail_password: Option<String>,
    /// Send without STARTTLS [config: mail.disable_tls]
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = hearth_cli::commands::parse_bool, value_name = "BOOL")]
    mail_disable_tls: Option<bool>,
    /// SMTPS: TLS from the start [config: mail.use_ssl]
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = hearth_cli::commands::parse_bool, value_name = "BOOL")]
    mail_use_ssl: Option<bool>,
    /// Name sent in the SMTP EHLO [config: mail.local_name]
    #[arg(long, value_name = "NAME")]
    mail_local_name: Option<String>,
    /// Sender address of the server's mails [config: mail.noreply_address]
    #[arg(long, value_name = "ADDRESS")]
    mail_noreply_address: Option<String>,
    /// Sender name of the server's mails [config: mail.noreply_name]
    #[arg(long, value_name = "NAME")]
    mail_noreply_name: Option<String>,
    /// Reply-To address of the server's mails [config: mail.reply_to]
    #[arg(long, value_name = "ADDRESS")]
    mail_reply_to: Option<String>,
    /// Address for alerts; read, no alert is sent yet [config: mail.alert_address]
    #[arg(long, value_name = "ADDRESS")]
    mail_alert_address: Option<String>,
    /// SMTP to port 1025 without TLS, for MailHog-like test servers (host: mail.host,
    /// else localhost)
    #[arg(long)]
    mailhog: bool,
}

/// Vault and OnlyOffice flags: read and checked, not used yet.
#[derive(Debug, Args)]
#[command(next_help_heading = "Vault and office")]
struct VaultFlags {
    /// Key file encrypting account credentials, from `hearth config gen-keys`
    /// [config: vault.credentials_encryptor_key]
    #[arg(long, value_name = "FILE")]
    vault_encryptor_key: Option<String>,
    /// Key file decrypting account credentials [config: vault.credentials_decryptor_key]
    #[arg(long, value_name = "FILE")]
    vault_decryptor_key: Option<String>,
    /// OnlyOffice server [config: office.default.onlyoffice_url]
    #[arg(long, value_name = "URL")]
    onlyoffice_url: Option<String>,
}

/// Flags of `cozy-stack serve` without effect in Hearth: accepted so that existing
/// scripts run, and logged.
#[derive(Debug, Args)]
#[command(next_help_heading = "Accepted for compatibility, without effect")]
struct IgnoredFlags {
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    allow_root: Option<String>,
    #[arg(long, value_name = "SLUG:DIR")]
    appdir: Vec<String>,
    #[arg(long, value_name = "DIR")]
    assets: Option<String>,
    #[arg(long, value_name = "LIST")]
    csp_allowlist: Option<String>,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    dev: Option<String>,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    disable_csp: Option<String>,
    #[arg(long, value_name = "DIR")]
    doctypes: Option<String>,
    #[arg(long, value_name = "URL")]
    downloads_url: Option<String>,
    #[arg(long, value_name = "LIST")]
    flagship_apk_certificate_digests: Vec<String>,
    #[arg(long, value_name = "LIST")]
    flagship_apk_package_names: Vec<String>,
    #[arg(long, value_name = "LIST")]
    flagship_apple_app_ids: Vec<String>,
    #[arg(long, value_name = "LIST")]
    flagship_play_integrity_decryption_keys: Vec<String>,
    #[arg(long, value_name = "LIST")]
    flagship_play_integrity_verification_keys: Vec<String>,
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    fs_default_layout: Option<String>,
    #[arg(long, value_name = "FILE")]
    geodb: Option<String>,
    #[arg(long, value_name = "URL")]
    konnectors_oauthstate: Option<String>,
    #[arg(long, value_name = "URL")]
    lock_url: Option<String>,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    log_syslog: Option<String>,
    #[arg(long, value_name = "SECRET")]
    onlyoffice_inbox_secret: Option<String>,
    #[arg(long, value_name = "SECRET")]
    onlyoffice_outbox_secret: Option<String>,
    #[arg(long, value_name = "DURATION")]
    password_reset_interval: Option<String>,
    #[arg(long, value_name = "URL")]
    rate_limiting_url: Option<String>,
    #[arg(long, value_name = "URL")]
    realtime_url: Option<String>,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    remote_allow_custom_port: Option<String>,
    #[arg(long, value_name = "URL")]
    sessions_url: Option<String>,
}

impl IgnoredFlags {
    /// The names of the flags given.
    fn given(&self) -> Vec<String> {
        let one = |name: &str, set: bool| set.then(|| format!("--{name}"));
        [
            one("allow-root", self.allow_root.is_some()),
            one("appdir", !self.appdir.is_empty()),
            one("assets", self.assets.is_some()),
            one("csp-allowlist", self.csp_allowlist.is_some()),
            one("dev", self.dev.is_some()),
            one("disable-csp", self.disable_csp.is_some()),
            one("doctypes", self.doctypes.is_some()),
            one("downloads-url", self.downloads_url.is_some()),
            one(
                "flagship-apk-certificate-digests",
                !self.flagship_apk_certificate_digests.is_empty(),
            ),
            one(
                "flagship-apk-package-names",
                !self.flagship_apk_package_names.is_empty(),
            ),
            one(
                "flagship-apple-app-ids",
                !self.flagship_apple_app_ids.is_empty(),
            ),
            one(
                "flagship-play-integrity-decryption-keys",
                !self.flagship_play_integrity_decryption_keys.is_empty(),
            ),
            one(
                "flagship-play-integrity-verification-keys",
                !self.flagship_play_integrity_verification_keys.is_empty(),
            ),
            one("fs-default-layout", self.fs_default_layout.is_some()),
            one("geodb", self.geodb.is_some()),
            one(
                "konnectors-oauthstate",
                self.konnectors_oauthstate.is_some(),
            ),
            one("lock-url", self.lock_url.is_some()),
            one("log-syslog", self.log_syslog.is_some()),
            one(
                "onlyoffice-inbox-secret",
                self.onlyoffice_inbox_secret.is_some(),
            ),
            one(
                "onlyoffice-outbox-secret",
                self.onlyoffice_outbox_secret.is_some(),
            ),
            one(
                "password-reset-interval",
                self.password_reset_interval.is_some(),
            ),
            one("rate-limiting-url", self.rate_limiting_url.is_some()),
            one("realtime-url", self.realtime_url.is_some()),
            one(
                "remote-allow-custom-port",
                self.remote_allow_custom_port.is_some(),
            ),
            one("sessions-url", self.sessions_url.is_some()),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration with the source of each value, secrets masked
    Show,
    /// Write the scrypt hash of a passphrase to FILE (for the admin API)
    Passwd {
        /// Where to write the hash (replaced atomically, mode 0600)
        file: PathBuf,
    },
    /// Write a new key pair for the encryption of account credentials: PATH.enc (the
    /// encryptor) and PATH.dec (the decryptor), mode 0400, as the Cozy stack does
    GenKeys {
        /// Where to write the keys; existing files are not replaced
        path: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(status) => status,
        Err(err) => {
            eprintln!("Error: {err:#}");
            ExitCode::from(hearth::exit_status(&err))
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Version => {
            println!("{}", hearth_web::VersionInfo::current().version);
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Passwd { file }) => {
            hearth::passwd::run(&file)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Show) => {
            let loaded = config::load(&LoadInput::from_process(cli.config, Overrides::default()))?;
            print!("{}", config::render(&loaded)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::GenKeys { path }) => {
            let (enc, dec) = hearth::keys::write_pair(&path)?;
            eprintln!(
                "keyfiles written in:\n  {}\n  {}",
                enc.display(),
                dec.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => {
            if args.couchdb_url.is_some() {
                return Err(hearth::UsageError(
                    "--couchdb-url: Hearth has no CouchDB: documents are stored in SQLite, \
                     where the setting database.url says (--database-url, HEARTH_DATABASE_URL); \
                     remove this flag"
                        .into(),
                )
                .into());
            }
            let flags = Overrides {
                host: args.host,
                port: args.port,
                admin_host: args.admin_host,
                admin_port: args.admin_port,
                data_dir: args.data_dir,
                fs_url: args.fs_url,
                database_url: args.database_url,
                redis_url: args.redis_url,
                jobs_url: args.jobs_url,
                log_level: args.log_level,
                konnectors_cmd: args.konnectors_cmd,
                subdomains: args.subdomains,
                move_url: args.move_url,
                mail_host: args.mail.mail_host,
                mail_port: args.mail.mail_port,
                mail_username: args.mail.mail_username,
                mail_password: args.mail.mail_password,
                mail_disable_tls: args.mail.mail_disable_tls,
                mail_use_ssl: args.mail.mail_use_ssl,
                mail_local_name: args.mail.mail_local_name,
                mail_noreply_address: args.mail.mail_noreply_address,
                mail_noreply_name: args.mail.mail_noreply_name,
                mail_reply_to: args.mail.mail_reply_to,
                mail_alert_address: args.mail.mail_alert_address,
                mailhog: args.mail.mailhog,
                onlyoffice_url: args.vault.onlyoffice_url,
                vault_encryptor_key: args.vault.vault_encryptor_key,
                vault_decryptor_key: args.vault.vault_decryptor_key,
                ignored: args.ignored.given(),
            };
            let loaded = config::load(&LoadInput::from_process(cli.config, flags))?;
            hearth::serve::run(loaded)?;
            Ok(ExitCode::SUCCESS)
        }
        // It prints its own errors (`Error: …`, spec instances 6.1) and picks its status.
        Command::Instances(args) => Ok(hearth_cli::run(*args)),
        Command::Check(args) => Ok(hearth_cli::run_check(*args)),
        Command::Jobs(args) => Ok(hearth_cli::run_jobs(*args)),
        Command::Triggers(args) => Ok(hearth_cli::run_triggers(*args)),
        Command::Apps(args) => Ok(hearth_cli::run_apps(*args)),
        Command::Konnectors(args) => Ok(hearth_cli::run_konnectors(*args)),
        Command::Docs(args) => Ok(hearth_cli::run_docs(*args)),
        Command::MigrateStorage(args) => {
            let loaded = config::load(&LoadInput::from_process(cli.config, Overrides::default()))?;
            let args = *args;
            hearth::migrate::run(
                loaded,
                hearth::migrate::MigrateArgs {
                    domain: args.domain,
                    to_database: args.to_database,
                    to_fs: args.to_fs,
                    to_s3_access_key_id: args.to_s3_access_key_id,
                    to_s3_secret_access_key: args.to_s3_secret_access_key,
                    block: args.block,
                    global: args.global,
                },
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
