//! The clap tree of `hearth instances …` (spec instances 6.1, 6.2) and the mapping of
//! parsed flags to admin API requests.
//!
//! Flags the operator did not give are `None` and never sent: `modify` only changes
//! what it is told to change.

use clap::{Args, Subcommand};

use crate::api::{InstancePatch, NewInstance, OAuthClientRequest};
use crate::size::parse_size;

/// `hearth instances`: manage instances through the admin API.
#[derive(Debug, Clone, Args)]
pub struct InstancesArgs {
    #[command(flatten)]
    pub globals: GlobalArgs,
    #[command(subcommand)]
    pub command: InstancesCommand,
}

/// Where the servers are; each flag falls back to `HEARTH_*`, then `COZY_*`, then its
/// default (see [`crate::Settings::resolve`]).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Connection")]
pub struct GlobalArgs {
    /// Host of the admin API [env: HEARTH_ADMIN_HOST, COZY_ADMIN_HOST] [default: localhost]
    #[arg(long, global = true, value_name = "HOST")]
    pub admin_host: Option<String>,
    /// Port of the admin API [env: HEARTH_ADMIN_PORT, COZY_ADMIN_PORT] [default: 6060]
    #[arg(long, global = true, value_name = "PORT")]
    pub admin_port: Option<u16>,
    /// Host of the public server [env: HEARTH_HOST, COZY_HOST] [default: localhost]
    #[arg(long, global = true, value_name = "HOST")]
    pub host: Option<String>,
    /// Port of the public server [env: HEARTH_PORT, COZY_PORT] [default: 8080]
    #[arg(short = 'p', long, global = true, value_name = "PORT")]
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum InstancesCommand {
    /// Create an instance
    #[command(visible_alias = "create")]
    Add(AddArgs),
    /// List the instances
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Print the number of instances
    Count,
    /// Print an instance as JSON
    Show(DomainArg),
    /// Print the database prefix of an instance
    ShowDbPrefix(DomainArg),
    /// Change an instance; only the flags given are changed
    Modify(ModifyArgs),
    /// Set the disk quota of an instance (0 removes it)
    SetDiskQuota {
        domain: String,
        /// Bytes, or with a unit: 5GB, 500MB, 2GiB
        #[arg(value_parser = parse_size)]
        size: u64,
    },
    /// Destroy an instance and all its data
    #[command(visible_aliases = ["rm", "delete", "remove"])]
    Destroy {
        domain: String,
        /// Do not ask for confirmation
        #[arg(long)]
        force: bool,
    },
    /// Export an instance's data: with --path, the zip parts are downloaded into that
    /// directory (no mail); without it, the owner gets the mail with the link
    Export {
        #[arg(long)]
        domain: String,
        /// Where to write the parts (`<domain>.zip`, `<domain> - partNNN.zip`)
        #[arg(long, value_name = "DIR")]
        path: Option<std::path::PathBuf>,
    },
    /// Import an export into an instance, replacing all its data (the owner's email,
    /// name and password are kept); waits for the end and prints a report
    Import {
        /// The URL of the export's manifest (`https://<source>/move/exports/<mac>`)
        url: String,
        #[arg(long)]
        domain: String,
        /// Do not ask for confirmation
        #[arg(long)]
        force: bool,
    },
    /// Move an instance to another server (or another instance of this one): the
    /// target instance is reset and gets the data; the source is deleted 30 days
    /// later. Waits for the end and prints the import's report
    Move(MoveArgs),
    /// Print a CLI token for an instance
    TokenCli {
        domain: String,
        #[arg(required = true)]
        scopes: Vec<String>,
    },
    /// Print a token for an application of an instance
    TokenApp {
        domain: String,
        slug: String,
        /// Validity, a duration such as 30m or 2h
        #[arg(long, value_name = "DURATION")]
        expire: Option<String>,
    },
    /// Print a token for a konnector of an instance
    TokenKonnector { domain: String, slug: String },
    /// Print an OAuth access token for a client of an instance
    TokenOauth {
        domain: String,
        client_id: String,
        #[arg(required = true)]
        scopes: Vec<String>,
        /// Validity, a duration such as 30m or 2h
        #[arg(long, value_name = "DURATION")]
        expire: Option<String>,
    },
    /// Print an OAuth refresh token for a client of an instance
    RefreshTokenOauth {
        domain: String,
        client_id: String,
        #[arg(required = true)]
        scopes: Vec<String>,
    },
    /// Register an OAuth client and print its client_id
    ClientOauth(ClientOauthArgs),
    /// Print the OAuth client of an instance with this software_id
    FindOauthClient { domain: String, software_id: String },
    /// Log out every session of an instance
    CleanSessions(DomainArg),
    /// Change the password of an instance
    SetPassphrase {
        domain: String,
        new_passphrase: String,
    },
    /// Check the files of an instance (deprecated: use `hearth check fs`)
    Fsck(FsckArgs),
}

/// `hearth check`: consistency checks of an instance, through the admin API.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub globals: GlobalArgs,
    #[command(subcommand)]
    pub command: CheckCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum CheckCommand {
    /// Compare the files documents of an instance with their content: prints one JSON
    /// line per problem and exits 1 if there is any, prints nothing when all is well
    Fs(FsckArgs),
    /// Check the triggers of an instance: duplicates (same type, worker, arguments,
    /// debounce and message), unknown workers, unreadable schedules, and timed or
    /// @event triggers the scheduler does not know. Prints one JSON line per problem and
    /// exits 1 if there is any, prints nothing when all is well
    Triggers(DomainArg),
    /// Check the revision trees of the io.cozy.shared documents of an instance: one
    /// JSON line per problem and exit 1, or nothing
    Shared(DomainArg),
}

/// `hearth docs`: raw documents of any doctype of an instance, through the admin API.
#[derive(Debug, Clone, Args)]
pub struct DocsArgs {
    #[command(flatten)]
    pub globals: GlobalArgs,
    #[command(subcommand)]
    pub command: DocsCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum DocsCommand {
    /// Print every document of a doctype, one JSON object per line
    #[command(visible_alias = "list")]
    Ls { domain: String, doctype: String },
    /// Print one document as JSON
    Get {
        domain: String,
        doctype: String,
        id: String,
    },
    /// Create or update a document (with its current _rev): the JSON is the argument,
    /// or standard input when the argument is absent or `-`. Its id is --id, else its
    /// _id. Prints {"ok":true,"id":…,"rev":…}
    Put {
        domain: String,
        doctype: String,
        /// The document [default: standard input]
        json: Option<String>,
        /// The document's id [default: the _id of the JSON]
        #[arg(long, value_name = "ID")]
        id: Option<String>,
    },
    /// Print the documents a Mango query finds (e.g. '{"selector":{"worker":"log"}}'),
    /// one JSON object per line
    Find {
        domain: String,
        doctype: String,
        /// The query: a JSON object with a selector, and optionally sort, limit, skip,
        /// fields
        query: String,
    },
    /// Delete a document (at its current revision unless --rev is given); prints
    /// {"ok":true,"id":…,"rev":…}
    #[command(visible_aliases = ["delete", "rm"])]
    Destroy {
        domain: String,
        doctype: String,
        id: String,
        /// The revision to delete [default: the current one]
        #[arg(long, value_name = "REV")]
        rev: Option<String>,
    },
}

/// `hearth jobs`: background jobs of an instance, through the admin API.
#[derive(Debug, Clone, Args)]
pub struct JobsArgs {
    #[command(flatten)]
    pub instance: InstanceFlag,
    #[command(flatten)]
    pub globals: GlobalArgs,
    #[command(subcommand)]
    pub command: JobsCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum JobsCommand {
    /// Push a job and wait for its end: prints the job as JSON; exits 1 if it errored
    #[command(visible_aliases = ["launch", "push"])]
    Run(JobsRunArgs),
}

#[derive(Debug, Clone, Args)]
pub struct JobsRunArgs {
    /// The worker type: log, sendmail, thumbnail, trash-files, clean-sessions…
    pub worker: String,
    /// The job's arguments, as raw JSON [default: {}]
    #[arg(long, value_name = "JSON")]
    pub json: Option<String>,
}

/// `hearth triggers`: the triggers of an instance, through the admin API.
#[derive(Debug, Clone, Args)]
pub struct TriggersArgs {
    #[command(flatten)]
    pub instance: InstanceFlag,
    #[command(flatten)]
    pub globals: GlobalArgs,
    #[command(subcommand)]
    pub command: TriggersCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum TriggersCommand {
    /// Print the triggers, with their state, as a JSON array
    #[command(visible_alias = "list")]
    Ls,
    /// Run the job of a trigger now and print the job as JSON
    Launch {
        /// The trigger's id
        trigger_id: String,
    },
}

/// `hearth apps`: the web apps of an instance, through the admin API.
#[derive(Debug, Clone, Args)]
pub struct AppsArgs {
    #[command(flatten)]
    pub instance: InstanceFlag,
    #[command(flatten)]
    pub globals: GlobalArgs,
    #[command(subcommand)]
    pub command: AppsCommand,
}

/// What `hearth apps` and `hearth konnectors` share.
#[derive(Debug, Clone, Subcommand)]
pub enum AppsCommand {
    /// Install from a source (default: registry://<slug>/stable)
    ///
    /// Sources: registry://<slug>[/<channel>[/<version>]] in the instance's registries,
    /// http(s)://….tar.gz, file:///….tar.gz, or a folder file:///dir.
    Install(SlugSource),
    /// Update to the latest version of its source, or from another source
    #[command(visible_alias = "upgrade")]
    Update(SlugSource),
    /// Remove it: its files, its document and its permissions
    #[command(visible_alias = "rm")]
    Uninstall(SlugArg),
    /// List the installed ones: slug, source, version, state
    #[command(visible_alias = "list")]
    Ls,
    /// Print one as JSON
    Show(SlugArg),
}

#[derive(Debug, Clone, Args)]
pub struct SlugSource {
    /// Its slug (lowercase letters, digits and dashes)
    pub slug: String,
    /// Where to get it [default: registry://<slug>/stable to install, the current
    /// source to update]
    pub source: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct SlugArg {
    /// Its slug
    pub slug: String,
}

/// `hearth konnectors`: the konnectors of an instance, through the admin API.
#[derive(Debug, Clone, Args)]
pub struct KonnectorsArgs {
    #[command(flatten)]
    pub instance: InstanceFlag,
    #[command(flatten)]
    pub globals: GlobalArgs,
    #[command(subcommand)]
    pub command: KonnectorsCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum KonnectorsCommand {
    #[command(flatten)]
    App(AppsCommand),
    /// Run a konnector now and wait for its end: prints the job as JSON; exits 1 if it
    /// errored
    Run(KonnectorRunArgs),
}

#[derive(Debug, Clone, Args)]
pub struct KonnectorRunArgs {
    /// The konnector's slug
    pub slug: String,
    /// The io.cozy.accounts document to run with [default: the account of the
    /// konnector's trigger, when it has exactly one]
    #[arg(long, value_name = "ID")]
    pub account_id: Option<String>,
}

/// The instance a `jobs`, `triggers`, `apps` or `konnectors` command works on.
#[derive(Debug, Clone, Default, Args)]
pub struct InstanceFlag {
    /// Domain of the instance [env: HEARTH_DOMAIN, COZY_DOMAIN]
    #[arg(long, global = true, value_name = "DOMAIN")]
    pub domain: Option<String>,
}

/// The arguments of `check fs` and of the deprecated `instances fsck`.
#[derive(Debug, Clone, Args)]
pub struct FsckArgs {
    pub domain: String,
    /// Accepted for compatibility; Hearth always runs its one (files) check
    #[arg(long)]
    pub index_integrity: bool,
    /// Accepted for compatibility; Hearth always runs its one (files) check
    #[arg(long)]
    pub files_consistency: bool,
    /// Accepted for compatibility; the check always runs to its end
    #[arg(long)]
    pub fail_fast: bool,
    /// Accepted for compatibility; the output is always JSON lines
    #[arg(long)]
    pub json: bool,
}

impl FsckArgs {
    /// The query of `GET /instances/<domain>/fsck`: only the flags given.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        for (name, set) in [
            ("IndexIntegrity", self.index_integrity),
            ("FilesConsistency", self.files_consistency),
            ("FailFast", self.fail_fast),
        ] {
            if set {
                q.push((name, "true".to_owned()));
            }
        }
        q
    }
}

/// `instances move`: where the instance goes, and the target server's admin API.
#[derive(Debug, Clone, Args)]
pub struct MoveArgs {
    /// The instance to move (on this server)
    #[arg(long)]
    pub domain: String,
    /// The URL of the target instance (`https://bob.example.net`); it must exist
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Host of the target server's admin API [default: this server's admin host]
    /// (its passphrase: HEARTH_TO_ADMIN_PASSPHRASE, else this server's)
    #[arg(long, value_name = "HOST")]
    pub to_admin_host: Option<String>,
    /// Port of the target server's admin API [default: this server's admin port]
    #[arg(long, value_name = "PORT")]
    pub to_admin_port: Option<u16>,
    /// Move even though the password vault cannot follow (its items stay behind)
    #[arg(long)]
    pub ignore_vault: bool,
    /// Do not ask for confirmation
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DomainArg {
    pub domain: String,
}

#[derive(Debug, Clone, Args)]
pub struct AddArgs {
    pub domain: String,
    /// Applications to install (comma-separated or repeated)
    #[arg(long, value_delimiter = ',', value_name = "SLUGS")]
    pub apps: Vec<String>,
    /// Context (configuration profile) of the instance
    #[arg(long, value_name = "NAME")]
    pub context_name: Option<String>,
    /// Database cluster index, of `database.clusters` (-1 lets the server choose)
    #[arg(long, visible_alias = "db-cluster", default_value_t = -1, allow_negative_numbers = true, value_name = "N")]
    pub couch_cluster: i64,
    /// Deprecated, has no effect
    #[arg(long)]
    pub dev: bool,
    /// Disk quota: bytes, or with a unit (5GB, 2GiB)
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub disk_quota: Option<u64>,
    /// Other domains of the instance (comma-separated or repeated)
    #[arg(long, value_delimiter = ',', value_name = "DOMAINS")]
    pub domain_aliases: Vec<String>,
    /// E-mail address of the owner
    #[arg(long)]
    pub email: Option<String>,
    /// FranceConnect identifier
    #[arg(
        long = "franceconnect_id",
        alias = "franceconnect-id",
        value_name = "ID"
    )]
    pub franceconnect_id: Option<String>,
    /// Locale
    #[arg(long, default_value = "en")]
    pub locale: String,
    /// Log in by e-mailed links
    #[arg(
        long = "magic_link",
        alias = "magic-link",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = parse_bool,
        value_name = "BOOL"
    )]
    pub magic_link: Option<bool>,
    /// OIDC identifier
    #[arg(long = "oidc_id", alias = "oidc-id", value_name = "ID")]
    pub oidc_id: Option<String>,
    /// Previous domain of the instance
    #[arg(long, value_name = "DOMAIN")]
    pub old_domain: Option<String>,
    /// Password of the owner (otherwise a registration link is printed)
    #[arg(long)]
    pub passphrase: Option<String>,
    /// Phone number of the owner
    #[arg(long)]
    pub phone: Option<String>,
    /// Public name of the owner
    #[arg(long, value_name = "NAME")]
    pub public_name: Option<String>,
    /// Settings, key:value,…
    #[arg(long)]
    pub settings: Option<String>,
    /// Sponsor contexts (comma-separated or repeated)
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub sponsorships: Vec<String>,
    /// Swift layout (-1 lets the server choose)
    #[arg(long, default_value_t = -1, allow_negative_numbers = true, value_name = "N")]
    pub swift_layout: i64,
    /// Version of the terms of service signed
    #[arg(long, value_name = "VERSION")]
    pub tos: Option<String>,
    /// Log the duration of each creation step on the server
    #[arg(long)]
    pub trace: bool,
    /// Time zone
    #[arg(long)]
    pub tz: Option<String>,
    /// Identifier in the back-office
    #[arg(long)]
    pub uuid: Option<String>,
    /// PBKDF2 iterations browsers hash the password with (50000 to 5000000; tests
    /// use the lowest to stay fast)
    #[arg(long, hide = true, value_name = "N")]
    pub kdf_iterations: Option<u32>,
}

impl AddArgs {
    pub fn to_request(&self) -> NewInstance {
        NewInstance {
            domain: self.domain.clone(),
            locale: self.locale.clone(),
            domain_aliases: non_empty(&self.domain_aliases),
            old_domain: self.old_domain.clone(),
            uuid: self.uuid.clone(),
            oidc_id: self.oidc_id.clone(),
            franceconnect_id: self.franceconnect_id.clone(),
            tos_signed: self.tos.clone(),
            timezone: self.tz.clone(),
            context_name: self.context_name.clone(),
            email: self.email.clone(),
            public_name: self.public_name.clone(),
            phone: self.phone.clone(),
            settings: self.settings.clone(),
            passphrase: self.passphrase.clone(),
            disk_quota: self.disk_quota.filter(|b| *b > 0),
            apps: non_empty(&self.apps),
            sponsorships: non_empty(&self.sponsorships),
            magic_link: self.magic_link,
            swift_layout: Some(self.swift_layout),
            couch_cluster: Some(self.couch_cluster),
            trace: self.trace,
            kdf_iterations: self.kdf_iterations,
        }
    }
}

fn non_empty(items: &[String]) -> Vec<String> {
    items
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    /// One JSON object per line
    #[arg(long)]
    pub json: bool,
    /// Only these fields (comma-separated or repeated), see --available-fields
    #[arg(long, value_delimiter = ',', value_name = "FIELDS")]
    pub fields: Option<Vec<String>>,
    /// Print the names --fields accepts
    #[arg(long)]
    pub available_fields: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ModifyArgs {
    pub domain: String,
    /// Block the instance (--blocked=false unblocks it)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = parse_bool, value_name = "BOOL")]
    pub blocked: Option<bool>,
    /// Why the instance is blocked (e.g. PAYMENT_FAILED)
    #[arg(long, value_name = "CODE")]
    pub blocking_reason: Option<String>,
    /// Context (configuration profile)
    #[arg(long, value_name = "NAME")]
    pub context_name: Option<String>,
    /// Mark a deletion as in progress; --deleting=false clears a failed one. Sent alone:
    /// the server then ignores every other change
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = parse_bool, value_name = "BOOL")]
    pub deleting: Option<bool>,
    /// Disk quota: bytes, or with a unit (5GB, 2GiB); 0 removes it
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub disk_quota: Option<u64>,
    /// Replace the other domains (comma-separated or repeated; "," clears them)
    #[arg(long, value_delimiter = ',', value_name = "DOMAINS")]
    pub domain_aliases: Option<Vec<String>>,
    /// E-mail address of the owner
    #[arg(long)]
    pub email: Option<String>,
    /// FranceConnect identifier
    #[arg(
        long = "franceconnect_id",
        alias = "franceconnect-id",
        value_name = "ID"
    )]
    pub franceconnect_id: Option<String>,
    /// Locale
    #[arg(long)]
    pub locale: Option<String>,
    /// Log in by e-mailed links (--magic_link=false disables it)
    #[arg(long = "magic_link", alias = "magic-link", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = parse_bool, value_name = "BOOL")]
    pub magic_link: Option<bool>,
    /// OIDC identifier
    #[arg(long = "oidc_id", alias = "oidc-id", value_name = "ID")]
    pub oidc_id: Option<String>,
    /// Mark onboarding as finished (or not, with =false)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = parse_bool, value_name = "BOOL")]
    pub onboarding_finished: Option<bool>,
    /// Previous domain of the instance
    #[arg(long, value_name = "DOMAIN")]
    pub old_domain: Option<String>,
    /// Phone number of the owner
    #[arg(long)]
    pub phone: Option<String>,
    /// Public name of the owner
    #[arg(long, value_name = "NAME")]
    pub public_name: Option<String>,
    /// Settings to merge, key:value,…
    #[arg(long)]
    pub settings: Option<String>,
    /// Sponsor contexts (comma-separated or repeated)
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub sponsorships: Option<Vec<String>>,
    /// Version of the terms of service signed
    #[arg(long, value_name = "VERSION")]
    pub tos: Option<String>,
    /// Latest version of the terms of service, to be signed
    #[arg(long, value_name = "VERSION")]
    pub tos_latest: Option<String>,
    /// Time zone
    #[arg(long)]
    pub tz: Option<String>,
    /// Identifier in the back-office
    #[arg(long)]
    pub uuid: Option<String>,
    /// PBKDF2 iterations browsers hash the password with (50000 to 5000000; tests
    /// use the lowest to stay fast)
    #[arg(long, hide = true, value_name = "N")]
    pub kdf_iterations: Option<u32>,
}

impl ModifyArgs {
    /// Exactly the flags given; `--disk-quota 0` becomes `-1` (remove the quota).
    pub fn to_patch(&self) -> InstancePatch {
        InstancePatch {
            locale: self.locale.clone(),
            blocked: self.blocked,
            blocking_reason: self.blocking_reason.clone(),
            deleting: self.deleting,
            domain_aliases: self.domain_aliases.as_ref().map(|list| list.join(",")),
            disk_quota: self.disk_quota.map(quota_param),
            old_domain: self.old_domain.clone(),
            uuid: self.uuid.clone(),
            oidc_id: self.oidc_id.clone(),
            franceconnect_id: self.franceconnect_id.clone(),
            context_name: self.context_name.clone(),
            email: self.email.clone(),
            public_name: self.public_name.clone(),
            phone: self.phone.clone(),
            timezone: self.tz.clone(),
            settings: self.settings.clone(),
            tos_signed: self.tos.clone(),
            tos_latest: self.tos_latest.clone(),
            onboarding_finished: self.onboarding_finished,
            magic_link: self.magic_link,
            sponsorships: self.sponsorships.as_ref().map(|list| list.join(",")),
        }
    }
}

/// The `DiskQuota` parameter for a size: 0 means "remove the quota", which the admin
/// API spells `-1` (0 means "no change" there).
pub fn quota_param(bytes: u64) -> i64 {
    if bytes == 0 {
        -1
    } else {
        i64::try_from(bytes).unwrap_or(i64::MAX)
    }
}

#[derive(Debug, Clone, Args)]
pub struct ClientOauthArgs {
    pub domain: String,
    pub redirect_uri: String,
    pub client_name: String,
    pub software_id: String,
    /// Allow the client to ask for the login scope
    #[arg(long)]
    pub allow_login_scope: bool,
    /// Print the whole client as JSON
    #[arg(long)]
    pub json: bool,
    /// Onboarding application (ignored by the server)
    #[arg(long, value_name = "SLUG")]
    pub onboarding_app: Option<String>,
    /// Onboarding permissions (ignored by the server)
    #[arg(long, value_name = "PERMISSIONS")]
    pub onboarding_permissions: Option<String>,
    /// Onboarding secret (ignored by the server)
    #[arg(long, value_name = "SECRET")]
    pub onboarding_secret: Option<String>,
    /// Onboarding state (ignored by the server)
    #[arg(long, value_name = "STATE")]
    pub onboarding_state: Option<String>,
}

impl ClientOauthArgs {
    pub fn to_request(&self) -> OAuthClientRequest {
        OAuthClientRequest {
            domain: self.domain.clone(),
            redirect_uri: self.redirect_uri.clone(),
            client_name: self.client_name.clone(),
            software_id: self.software_id.clone(),
            allow_login_scope: self.allow_login_scope,
            onboarding_app: self.onboarding_app.clone(),
            onboarding_permissions: self.onboarding_permissions.clone(),
            onboarding_secret: self.onboarding_secret.clone(),
            onboarding_state: self.onboarding_state.clone(),
        }
    }
}

/// Booleans as the original parses them (`1`, `t`, `true`, `0`, `f`, `false`, any case),
/// plus `yes` and `no`.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "yes" => Ok(true),
        "0" | "f" | "false" | "no" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean (true or false)")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Test {
        #[command(flatten)]
        args: InstancesArgs,
    }

    fn parse(args: &[&str]) -> InstancesArgs {
        let argv = std::iter::once("instances").chain(args.iter().copied());
        match Test::try_parse_from(argv) {
            Ok(t) => t.args,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    fn parse_err(args: &[&str]) -> String {
        let argv = std::iter::once("instances").chain(args.iter().copied());
        match Test::try_parse_from(argv) {
            Ok(t) => panic!("{args:?} parsed: {t:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// The query string `modify` sends for these arguments.
    fn modify_query(args: &[&str]) -> String {
        let mut argv = vec!["modify"];
        argv.extend_from_slice(args);
        match parse(&argv).command {
            InstancesCommand::Modify(m) => {
                let q = m.to_patch().query();
                q.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("&")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn modify_sends_only_what_is_given() {
        let cases: &[(&[&str], &str)] = &[
            (&["a.example"], ""),
            (&["a.example", "--locale", "fr"], "Locale=fr"),
            (&["a.example", "--blocked"], "Blocked=true"),
            (&["--blocked=false", "a.example"], "Blocked=false"),
            (
                &[
                    "a.example",
                    "--blocked",
                    "--blocking-reason",
                    "PAYMENT_FAILED",
                ],
                "BlockingReason=PAYMENT_FAILED&Blocked=true",
            ),
            (
                &["a.example", "--blocking-reason", "PAYMENT_FAILED"],
                "BlockingReason=PAYMENT_FAILED",
            ),
            (&["a.example", "--disk-quota", "0"], "DiskQuota=-1"),
            (
                &["a.example", "--disk-quota", "5GB"],
                "DiskQuota=5000000000",
            ),
            (
                &["a.example", "--disk-quota", "2GiB"],
                "DiskQuota=2147483648",
            ),
            (
                &["a.example", "--onboarding-finished"],
                "OnboardingFinished=true",
            ),
            (
                &["a.example", "--onboarding-finished=false"],
                "OnboardingFinished=false",
            ),
            (&["a.example", "--magic_link"], "MagicLink=true"),
            (&["a.example", "--magic_link=false"], "MagicLink=false"),
            (&["a.example", "--deleting=false"], "Deleting=false"),
            (
                &["a.example", "--domain-aliases", "b.example,c.example"],
                "DomainAliases=b.example,c.example",
            ),
            (
                &[
                    "a.example",
                    "--domain-aliases",
                    "b.example",
                    "--domain-aliases",
                    "c.example",
                ],
                "DomainAliases=b.example,c.example",
            ),
            (&["a.example", "--domain-aliases", ","], "DomainAliases=,"),
            (
                &[
                    "a.example",
                    "--tos",
                    "1.0.0",
                    "--tos-latest",
                    "2.0.0-20250101",
                    "--tz",
                    "Europe/Paris",
                    "--email",
                    "a@b.c",
                    "--public-name",
                    "Alice",
                    "--phone",
                    "+33",
                    "--settings",
                    "k:v",
                    "--uuid",
                    "u",
                    "--oidc_id",
                    "o",
                    "--franceconnect_id",
                    "f",
                    "--context-name",
                    "ctx",
                    "--old-domain",
                    "old.example",
                    "--sponsorships",
                    "s1,s2",
                ],
                "OldDomain=old.example&UUID=u&OIDCID=o&FranceConnectID=f&ContextName=ctx&\
                 Email=a@b.c&PublicName=Alice&Phone=+33&Timezone=Europe/Paris&Settings=k:v&\
                 TOSSigned=1.0.0&TOSLatest=2.0.0-20250101&Sponsorships=s1,s2",
            ),
        ];
        for (args, expected) in cases {
            assert_eq!(modify_query(args), *expected, "{args:?}");
        }
    }

    #[test]
    fn optional_booleans_do_not_eat_the_domain() {
        match parse(&["modify", "--blocked", "a.example"]).command {
            InstancesCommand::Modify(m) => {
                assert_eq!((m.blocked, m.domain.as_str()), (Some(true), "a.example"));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_err(&["modify", "a.example", "--blocked=maybe"]).contains("not a boolean"));
    }

    #[test]
    fn globals_between_positionals() {
        let args = parse(&[
            "show",
            "--admin-port",
            "7070",
            "a.example",
            "-p",
            "9090",
            "--admin-host",
            "127.0.0.1",
            "--host",
            "h",
        ]);
        assert_eq!(args.globals.admin_port, Some(7070));
        assert_eq!(args.globals.port, Some(9090));
        assert_eq!(args.globals.admin_host.as_deref(), Some("127.0.0.1"));
        assert_eq!(args.globals.host.as_deref(), Some("h"));
        assert!(
            matches!(args.command, InstancesCommand::Show(DomainArg { ref domain }) if domain == "a.example")
        );
    }

    #[test]
    fn aliases() {
        for name in ["add", "create"] {
            assert!(matches!(
                parse(&[name, "a.example"]).command,
                InstancesCommand::Add(_)
            ));
        }
        for name in ["ls", "list"] {
            assert!(matches!(parse(&[name]).command, InstancesCommand::Ls(_)));
        }
        for name in ["destroy", "rm", "delete", "remove"] {
            assert!(matches!(
                parse(&[name, "a.example", "--force"]).command,
                InstancesCommand::Destroy { force: true, .. }
            ));
        }
    }

    #[test]
    fn add_request() {
        let add = match parse(&[
            "add",
            "a.example",
            "--locale",
            "fr",
            "--tos",
            "1.0.0",
            "--apps",
            "drive,photos",
            "--disk-quota",
            "5GB",
            "--sponsorships",
            "s1",
            "--couch-cluster",
            "2",
            "--magic_link",
        ])
        .command
        {
            InstancesCommand::Add(a) => a,
            other => panic!("{other:?}"),
        };
        let q = add.to_request().query();
        let text: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            text.join("&"),
            "Domain=a.example&Locale=fr&TOSSigned=1.0.0&DiskQuota=5000000000&Apps=drive,photos&\
             sponsorships=s1&Sponsorships=s1&MagicLink=true&SwiftLayout=-1&CouchCluster=2"
        );
        // Defaults: Domain, Locale=en and the two "let the server choose" layouts.
        let add = match parse(&["create", "b.example"]).command {
            InstancesCommand::Add(a) => a,
            other => panic!("{other:?}"),
        };
        let text: Vec<String> = add
            .to_request()
            .query()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            text.join("&"),
            "Domain=b.example&Locale=en&SwiftLayout=-1&CouchCluster=-1"
        );
    }

    #[test]
    fn set_disk_quota_and_tokens_parse() {
        assert!(matches!(
            parse(&["set-disk-quota", "a.example", "3GiB"]).command,
            InstancesCommand::SetDiskQuota { size, .. } if size == 3 * (1 << 30)
        ));
        assert!(parse_err(&["set-disk-quota", "a.example", "lots"]).contains("invalid size"));
        assert!(parse_err(&["token-cli", "a.example"]).contains("<SCOPES>..."));
        assert!(matches!(
            parse(&["token-oauth", "a.example", "client", "io.cozy.files", "io.cozy.apps", "--expire", "1h"]).command,
            InstancesCommand::TokenOauth { scopes, expire: Some(_), .. } if scopes.len() == 2
        ));
    }

    #[test]
    fn quota_zero_removes() {
        assert_eq!(quota_param(0), -1);
        assert_eq!(quota_param(5), 5);
        assert_eq!(quota_param(u64::MAX), i64::MAX);
    }
}
