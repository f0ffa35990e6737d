//! Loading: layering defaults, the file, `HEARTH_*` / `COZY_*` variables and flags, and
//! validation.
//!
//! The layers are merged as YAML trees before one deserialization, so that every layer
//! is checked by the same serde code and an error names the key (via
//! `serde_path_to_error`) and the layer that set it. The default configuration's tree
//! gives the shape: a non-empty mapping there is a section whose keys are known, and
//! anything else (scalars, and the free-form `contexts` / `registries` maps) is a leaf.
//! Each leaf `a.b_c` can be set by the variable `HEARTH_A_B_C`, or read from the file
//! named by `HEARTH_A_B_C_FILE` (meant for secrets), or, as with the Cozy stack, by
//! `COZY_A_B_C` (a `HEARTH_` variable wins).
//!
//! Files come in two flavours. Hearth's own (`hearth.yaml`…) are strict: an unknown key
//! stops Hearth. The Cozy stack's (`cozy.yaml`, `cozy.yml`, `cozy.json`, each with an
//! optional `.local` companion layered over it) are read so that an operator's existing
//! file works: the keys Hearth shares are used, Cozy shapes are translated
//! (`registries` as a plain list, `jobs.workers.<name>: true|false`, `redis.addrs` or
//! `jobs.url` as `redis.url`), and every key Hearth has no use for (`couchdb`,
//! `fs.default_layout`…) is reported as a warning and ignored.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

use super::{Backends, Config, DEFAULT_DATA_DIR, parse_database_url, parse_fs_url};

/// A configuration that cannot be used; the message names the layer and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    /// The variable's name (`HEARTH_PORT`, `HEARTH_MAIL_PASSWORD_FILE`, `COZY_PORT`).
    Env(String),
    /// The flag's name (`--port`).
    Flag(&'static str),
}

impl Source {
    /// The label `config show` prints next to a value.
    pub fn label(&self) -> String {
        match self {
            Self::Default => "default".into(),
            Self::File(path) => format!("file {}", path.display()),
            Self::Env(var) => format!("env {var}"),
            Self::Flag(flag) => format!("flag {flag}"),
        }
    }
}

/// How an error message starts: the file, variable or flag at fault.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default configuration"),
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Env(var) => f.write_str(var),
            Self::Flag(flag) => f.write_str(flag),
        }
    }
}

/// The source of every value that is not a default, by key path (`admin.port`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources(BTreeMap<String, Source>);

impl Sources {
    /// The source of a key: its own, or that of the closest section set as a whole.
    pub fn get(&self, path: &str) -> &Source {
        let mut path = path;
        loop {
            if let Some(source) = self.0.get(path) {
                return source;
            }
            match path.rfind(['.', '[']) {
                Some(i) => path = &path[..i],
                None => return &Source::Default,
            }
        }
    }

    fn set(&mut self, path: &[String], source: Source) {
        let key = path.join(".");
        // A section set as a whole replaces whatever was recorded beneath it.
        let prefix = format!("{key}.");
        self.0.retain(|k, _| !k.starts_with(&prefix));
        self.0.insert(key, source);
    }
}

/// Values given on the command line (`hearth serve --port …`), named after the flags
/// of `cozy-stack serve` where there is one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub admin_host: Option<String>,
    pub admin_port: Option<u16>,
    pub data_dir: Option<PathBuf>,
    pub fs_url: Option<String>,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    /// `--jobs-url` of `cozy-stack serve`: the Redis of the job queue, which Hearth
    /// uses for everything shared (`redis.url`); `--redis-url` wins.
    pub jobs_url: Option<String>,
    pub log_level: Option<String>,
    pub konnectors_cmd: Option<String>,
    pub subdomains: Option<String>,
    pub move_url: Option<String>,
    pub mail_host: Option<String>,
    pub mail_port: Option<u16>,
    pub mail_username: Option<String>,
    pub mail_password: Option<String>,
    pub mail_disable_tls: Option<bool>,
    pub mail_use_ssl: Option<bool>,
    pub mail_local_name: Option<String>,
    pub mail_noreply_address: Option<String>,
    pub mail_noreply_name: Option<String>,
    pub mail_reply_to: Option<String>,
    pub mail_alert_address: Option<String>,
    /// `--mailhog`: SMTP on port 1025 without TLS (to `localhost` unless `mail.host`
    /// is set), applied after the other mail flags as in the Cozy stack.
    pub mailhog: bool,
    pub onlyoffice_url: Option<String>,
    pub vault_encryptor_key: Option<String>,
    pub vault_decryptor_key: Option<String>,
    /// Flags of `cozy-stack serve` that were given and have no effect in Hearth; each
    /// is reported once as a warning.
    pub ignored: Vec<String>,
}

impl Overrides {
    /// `(key path, flag, value)` for every flag given, in the order they apply.
    fn entries(&self) -> Vec<(&'static str, &'static str, Value)> {
        let text = |v: &Option<String>| v.as_ref().map(|s| Value::String(s.clone()));
        let port = |v: Option<u16>| v.map(|p| Value::Number(p.into()));
        let boolean = |v: Option<bool>| v.map(Value::Bool);
        let path = |v: &Option<PathBuf>| v.as_ref().map(|p| Value::String(p.display().to_string()));
        let mut entries: Vec<(&'static str, &'static str, Option<Value>)> = vec![
            ("host", "--host", text(&self.host)),
            ("port", "--port", port(self.port)),
            ("admin.host", "--admin-host", text(&self.admin_host)),
            ("admin.port", "--admin-port", port(self.admin_port)),
            ("data_dir", "--data-dir", path(&self.data_dir)),
            ("fs.url", "--fs-url", text(&self.fs_url)),
            ("database.url", "--database-url", text(&self.database_url)),
            ("redis.url", "--jobs-url", text(&self.jobs_url)),
            ("redis.url", "--redis-url", text(&self.redis_url)),
            ("log.level", "--log-level", text(&self.log_level)),
            (
                "konnectors.cmd",
                "--konnectors-cmd",
                text(&self.konnectors_cmd),
            ),
            ("subdomains", "--subdomains", text(&self.subdomains)),
            ("move.url", "--move-url", text(&self.move_url)),
            ("mail.host", "--mail-host", text(&self.mail_host)),
            ("mail.port", "--mail-port", port(self.mail_port)),
            (
                "mail.username",
                "--mail-username",
                text(&self.mail_username),
            ),
            (
                "mail.password",
                "--mail-password",
                text(&self.mail_password),
            ),
            (
                "mail.disable_tls",
                "--mail-disable-tls",
                boolean(self.mail_disable_tls),
            ),
            ("mail.use_ssl", "--mail-use-ssl", boolean(self.mail_use_ssl)),
            (
                "mail.local_name",
                "--mail-local-name",
                text(&self.mail_local_name),
            ),
            (
                "mail.noreply_address",
                "--mail-noreply-address",
                text(&self.mail_noreply_address),
            ),
            (
                "mail.noreply_name",
                "--mail-noreply-name",
                text(&self.mail_noreply_name),
            ),
            (
                "mail.reply_to",
                "--mail-reply-to",
                text(&self.mail_reply_to),
            ),
            (
                "mail.alert_address",
                "--mail-alert-address",
                text(&self.mail_alert_address),
            ),
            (
                "office.default.onlyoffice_url",
                "--onlyoffice-url",
                text(&self.onlyoffice_url),
            ),
            (
                "vault.credentials_encryptor_key",
                "--vault-encryptor-key",
                text(&self.vault_encryptor_key),
            ),
            (
                "vault.credentials_decryptor_key",
                "--vault-decryptor-key",
                text(&self.vault_decryptor_key),
            ),
        ];
        if self.mailhog {
            entries.extend([
                ("mail.port", "--mailhog", Some(Value::Number(1025.into()))),
                ("mail.disable_tls", "--mailhog", Some(Value::Bool(true))),
                ("mail.use_ssl", "--mailhog", Some(Value::Bool(false))),
            ]);
        }
        entries
            .into_iter()
            .filter_map(|(key, flag, value)| value.map(|v| (key, flag, v)))
            .collect()
    }
}

/// Everything [`load`] reads, so that tests can pass it in rather than touch the process.
#[derive(Debug, Clone, Default)]
pub struct LoadInput {
    /// A file given with `--config`: it must exist.
    pub file: Option<PathBuf>,
    /// Files tried in order when `file` is `None`; none found means defaults.
    pub search: Vec<PathBuf>,
    /// Environment variables; only `HEARTH_*` and `COZY_*` ones are used.
    pub env: Vec<(String, String)>,
    pub flags: Overrides,
}

impl LoadInput {
    /// The process' environment and the usual file locations.
    pub fn from_process(file: Option<PathBuf>, flags: Overrides) -> Self {
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("HEARTH_") || k.starts_with("COZY_"))
            .collect();
        Self {
            file,
            search: default_search_paths(),
            env,
            flags,
        }
    }
}

/// Hearth's own files, `./hearth.yaml`, `~/.hearth.yaml`, `/etc/hearth/hearth.yaml`,
/// then the Cozy stack's, in its order: `cozy.json`, then `cozy.yaml`, then `cozy.yml`,
/// each looked for in `.`, `.cozy`, `~/.cozy`, `~/.config/cozy`,
/// `$XDG_CONFIG_HOME/cozy` and `/etc/cozy`.
pub fn default_search_paths() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    search_paths(home.as_deref(), xdg.as_deref())
}

fn search_paths(home: Option<&Path>, xdg_config_home: Option<&Path>) -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from("hearth.yaml")];
    if let Some(home) = home {
        paths.push(home.join(".hearth.yaml"));
    }
    paths.push(PathBuf::from("/etc/hearth/hearth.yaml"));
    let mut cozy_dirs = vec![PathBuf::from("."), PathBuf::from(".cozy")];
    if let Some(home) = home {
        cozy_dirs.push(home.join(".cozy"));
        cozy_dirs.push(home.join(".config/cozy"));
    }
    if let Some(xdg) = xdg_config_home {
        cozy_dirs.push(xdg.join("cozy"));
    }
    cozy_dirs.push(PathBuf::from("/etc/cozy"));
    for ext in ["json", "yaml", "yml"] {
        for dir in &cozy_dirs {
            paths.push(dir.join(format!("cozy.{ext}")));
        }
    }
    paths
}

/// Whether a file is one of the Cozy stack's (`cozy.yaml`, `cozy.json`…, and their
/// `.local` companions), read leniently.
pub fn is_cozy_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("cozy."))
}

/// A checked configuration, with where each value came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub sources: Sources,
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// Files layered over `file` (a Cozy file's `.local` companion).
    pub extra_files: Vec<PathBuf>,
    pub backends: Backends,
    /// Things worth logging that do not stop the server (a mistyped variable name, a
    /// Cozy setting Hearth does not use, a flag without effect).
    pub warnings: Vec<String>,
}

impl Loaded {
    /// An error about one key, prefixed with the layer that set it.
    pub fn error_at(&self, key: &str, message: impl fmt::Display) -> ConfigError {
        error_at(&self.sources, key, message)
    }
}

/// A configuration file read and parsed.
struct FileLayer {
    path: PathBuf,
    value: Value,
    /// A Cozy stack file: unknown keys are warnings.
    cozy: bool,
}

/// Loads and validates the configuration.
pub fn load(input: &LoadInput) -> Result<Loaded, ConfigError> {
    let mut warnings = Vec::new();
    let files = read_files(input, &mut warnings)?;
    // The derived defaults (database, files, outbox) depend on the data directory,
    // which any layer may set: find it first, then layer again on the right defaults.
    let (first, _) = layer(
        &Config::defaults(Path::new(DEFAULT_DATA_DIR)),
        &files,
        input,
        &mut Vec::new(),
    )?;
    let defaults = Config::defaults(&first.data_dir);
    let (config, sources) = layer(&defaults, &files, input, &mut warnings)?;
    let mut paths = files.into_iter().map(|f| f.path);
    let mut loaded = validate(config, sources, paths.next())?;
    loaded.extra_files = paths.collect();
    warnings.extend(unknown_env_vars(&defaults, &input.env));
    warnings.extend(input.flags.ignored.iter().map(|flag| {
        format!(
            "{flag} is accepted for compatibility with cozy-stack serve and has no effect in Hearth"
        )
    }));
    warnings.extend(unused_settings(&loaded.config));
    loaded.warnings = warnings;
    Ok(loaded)
}

/// Settings that are read and shown but not acted upon yet.
fn unused_settings(config: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    if config.mail.alert_address.is_some() {
        notes.push("mail.alert_address is set, but Hearth sends no alert mail yet".to_owned());
    }
    if !config.office.is_empty() {
        notes.push(
            "office (OnlyOffice) is set, but Hearth has no OnlyOffice integration yet".to_owned(),
        );
    }
    if config.vault.credentials_encryptor_key.is_some() {
        notes.push(
            "vault keys are set and valid, but Hearth does not encrypt account credentials with them yet"
                .to_owned(),
        );
    }
    notes
}

/// `HEARTH_*` variables that set no key: most likely typos, worth a warning. `COZY_*`
/// variables belong to many tools and are not checked, except CouchDB's, which an
/// operator coming from the Cozy stack may expect to matter.
fn unknown_env_vars(defaults: &Config, env: &[(String, String)]) -> Vec<String> {
    let Ok(shape) = serde_norway::to_value(defaults) else {
        return Vec::new();
    };
    let mut leaves = Vec::new();
    collect_leaves(&shape, &mut Vec::new(), &mut leaves);
    let known: Vec<String> = leaves
        .iter()
        .map(|(path, _)| env_name(&path.join(".")))
        .collect();
    let mut unknown: Vec<String> = env
        .iter()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with("HEARTH_") && !NOT_CONFIG_KEYS.contains(&name.as_str()))
        .filter(|name| {
            let base = name.strip_suffix("_FILE").unwrap_or(name);
            !known.iter().any(|k| k == *name || k == base)
        })
        .map(|name| format!("{name} is not a configuration variable; it is ignored"))
        .collect();
    unknown.extend(
        env.iter()
            .map(|(name, _)| name)
            .filter(|name| name.starts_with("COZY_COUCHDB_"))
            .map(|name| format!("{name} is ignored: Hearth has no CouchDB; documents are stored where database.url says")),
    );
    unknown.sort();
    unknown.dedup();
    unknown
}

/// `HEARTH_*` variables read elsewhere than in the configuration.
const NOT_CONFIG_KEYS: &[&str] = &[
    "HEARTH_CONFIG",
    "HEARTH_ADMIN_PASSPHRASE",
    "HEARTH_ADMIN_PASSWORD",
    "HEARTH_DISABLE_INSTANCES_ADD_RM",
    "HEARTH_DOMAIN",
];

/// The name of the variable that sets a key: `admin.port` → `HEARTH_ADMIN_PORT`.
pub fn env_name(path: &str) -> String {
    format!("HEARTH_{}", env_suffix(path))
}

/// The Cozy stack's name of the variable that sets a key: `admin.port` →
/// `COZY_ADMIN_PORT`.
pub fn cozy_env_name(path: &str) -> String {
    format!("COZY_{}", env_suffix(path))
}

fn env_suffix(path: &str) -> String {
    path.replace('.', "_").to_ascii_uppercase()
}

fn error_at(sources: &Sources, key: &str, message: impl fmt::Display) -> ConfigError {
    ConfigError(format!("{}: {key}: {message}", sources.get(key)))
}

/// The file given or found, then, for a Cozy file found by the search, its `.local`
/// companion.
fn read_files(
    input: &LoadInput,
    warnings: &mut Vec<String>,
) -> Result<Vec<FileLayer>, ConfigError> {
    let (path, searched) = match &input.file {
        Some(path) => (path.clone(), false),
        None => match input.search.iter().find(|p| p.is_file()) {
            Some(path) => (path.clone(), true),
            None => return Ok(Vec::new()),
        },
    };
    // Messages and `config show` name the file in full, whatever the working directory.
    let path = std::path::absolute(&path).unwrap_or(path);
    let mut files = vec![read_file(path.clone(), warnings)?];
    if searched && is_cozy_file(&path) {
        let mut local = path.into_os_string();
        local.push(".local");
        let local = PathBuf::from(local);
        if local.is_file() {
            files.push(read_file(local, warnings)?);
        }
    }
    Ok(files)
}

fn read_file(path: PathBuf, warnings: &mut Vec<String>) -> Result<FileLayer, ConfigError> {
    let cozy = is_cozy_file(&path);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ConfigError(format!(
            "{}: cannot read the configuration file: {e}",
            path.display()
        ))
    })?;
    if cozy && text.contains("{{") {
        return Err(ConfigError(format!(
            "{}: Go templates ({{{{ … }}}}) are not supported; expand them first (for \
             example with envsubst) or set those values with COZY_* variables",
            path.display()
        )));
    }
    // JSON is YAML, so `cozy.json` parses the same way.
    let mut value: Value = serde_norway::from_str(&text)
        .map_err(|e| ConfigError(format!("{}: invalid YAML: {e}", path.display())))?;
    value
        .apply_merge()
        .map_err(|e| ConfigError(format!("{}: invalid YAML: {e}", path.display())))?;
    let mut value = match value {
        Value::Null => Value::Mapping(Mapping::new()),
        Value::Mapping(_) => value,
        other => {
            return Err(ConfigError(format!(
                "{}: expected a mapping of configuration keys, found {}",
                path.display(),
                kind(&other)
            )));
        }
    };
    if cozy {
        cozy_shapes(&mut value, &path, warnings);
    }
    Ok(FileLayer { path, value, cozy })
}

/// Translates the Cozy stack's shapes of shared keys into Hearth's.
fn cozy_shapes(value: &mut Value, file: &Path, warnings: &mut Vec<String>) {
    let Value::Mapping(root) = value else { return };
    // `registries: [url, …]` is the default context's list.
    if let Some(list @ Value::Sequence(_)) = root.get_mut("registries") {
        let mut by_context = Mapping::new();
        by_context.insert(Value::String("default".into()), list.clone());
        *list = Value::Mapping(by_context);
    }
    if root.contains_key("couchdb") {
        root.remove("couchdb");
        warnings.push(format!(
            "{}: couchdb is ignored: Hearth has no CouchDB; documents are stored where \
             database.url says (default: SQLite files under data_dir)",
            file.display()
        ));
    }
    cozy_redis(root, file, warnings);
    let Some(Value::Mapping(jobs)) = root.get_mut("jobs") else {
        return;
    };
    match jobs.get_mut("workers") {
        None | Some(Value::Mapping(_)) => {}
        Some(_) => {
            jobs.remove("workers");
            warnings.push(format!(
                "{}: jobs.workers as a number or a switch is ignored: Hearth runs every worker, \
                 with per-worker limits under jobs.workers.<name>",
                file.display()
            ));
            return;
        }
    }
    if let Some(Value::Mapping(workers)) = jobs.get_mut("workers") {
        for (name, limits) in workers.iter_mut() {
            match limits {
                Value::Bool(true) | Value::Null => *limits = Value::Mapping(Mapping::new()),
                Value::Bool(false) => {
                    *limits = Value::Mapping(Mapping::new());
                    warnings.push(format!(
                        "{}: jobs.workers.{}: false is ignored: Hearth cannot turn a worker off; \
                         it runs with its default limits",
                        file.display(),
                        name.as_str().unwrap_or("?")
                    ));
                }
                _ => {}
            }
        }
    }
}

/// The Cozy stack's Redis settings as `redis.url`: `redis.addrs` (its first address),
/// `redis.password` and `redis.databases.jobs` (Hearth keeps everything in one
/// database), or else the older `jobs.url`.
fn cozy_redis(root: &mut Mapping, file: &Path, warnings: &mut Vec<String>) {
    let jobs_url = match root.get_mut("jobs") {
        Some(Value::Mapping(jobs)) => match jobs.remove("url") {
            Some(Value::String(url)) => Some(url),
            _ => None,
        },
        _ => None,
    };
    let mut url = None;
    if let Some(Value::Mapping(redis)) = root.get("redis")
        && !redis.contains_key("url")
    {
        let addr = redis
            .get("addrs")
            .and_then(Value::as_str)
            .and_then(|a| a.split([' ', ',']).find(|a| !a.is_empty()));
        if let Some(addr) = addr {
            let password = redis
                .get("password")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty());
            let db = redis
                .get("databases")
                .and_then(|d| d.get("jobs"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let auth = password.map(|p| format!(":{p}@")).unwrap_or_default();
            url = Some(format!("redis://{auth}{addr}/{db}"));
        }
        if redis.keys().any(|k| k.as_str() != Some("addrs")) {
            warnings.push(format!(
                "{}: redis: only addrs (its first address), password and databases.jobs are                  read, as redis.url; Hearth keeps everything in that one Redis database",
                file.display()
            ));
        }
    }
    let url = url.or(jobs_url);
    if let Some(url) = url {
        let mut section = Mapping::new();
        section.insert(Value::String("url".into()), Value::String(url));
        root.insert(Value::String("redis".into()), Value::Mapping(section));
    }
}

/// Merges the layers over `defaults` and deserializes the result.
fn layer(
    defaults: &Config,
    files: &[FileLayer],
    input: &LoadInput,
    warnings: &mut Vec<String>,
) -> Result<(Config, Sources), ConfigError> {
    let shape = serde_norway::to_value(defaults)
        .map_err(|e| ConfigError(format!("default configuration: {e}")))?;
    let mut tree = shape.clone();
    let mut sources = Sources::default();
    for file in files {
        let mut overlay = FileOverlay {
            file: &file.path,
            lenient: file.cozy,
            sources: &mut sources,
            warnings,
        };
        overlay.apply(&mut tree, &shape, &file.value, &mut Vec::new())?;
    }
    overlay_env(&mut tree, &shape, &input.env, &mut sources)?;
    let mut entries = input.flags.entries();
    if input.flags.mailhog
        && matches!(
            tree.get("mail").and_then(|m| m.get("host")),
            None | Some(Value::Null)
        )
    {
        entries.push(("mail.host", "--mailhog", Value::String("localhost".into())));
    }
    for (key, flag, value) in entries {
        let path: Vec<String> = key.split('.').map(str::to_owned).collect();
        set(&mut tree, &path, value);
        sources.set(&leaf_path(&shape, &path), Source::Flag(flag));
    }
    let config = serde_path_to_error::deserialize::<_, Config>(tree).map_err(|e| {
        let path = e.path().to_string();
        let source = sources.get(&path);
        if path == "." {
            ConfigError(format!("{source}: {}", e.inner()))
        } else {
            ConfigError(format!("{source}: {path}: {}", e.inner()))
        }
    })?;
    Ok((config, sources))
}

/// The part of `path` down to its first leaf in the shape: a flag setting
/// `office.default.onlyoffice_url` sets the free-form `office`.
fn leaf_path(shape: &Value, path: &[String]) -> Vec<String> {
    let mut node = shape;
    let mut out = Vec::new();
    for key in path {
        out.push(key.clone());
        if !is_section(node) {
            break;
        }
        match node.get(key.as_str()) {
            Some(sub) if is_section(sub) => node = sub,
            _ => break,
        }
    }
    out
}

/// Whether a node of the default tree is a section (a struct) rather than a leaf.
fn is_section(shape: &Value) -> bool {
    matches!(shape, Value::Mapping(m) if !m.is_empty())
}

/// Lays one file over the tree, recording sources; unknown keys are errors, or
/// warnings for a Cozy file.
struct FileOverlay<'a> {
    file: &'a Path,
    lenient: bool,
    sources: &'a mut Sources,
    warnings: &'a mut Vec<String>,
}

impl FileOverlay<'_> {
    fn apply(
        &mut self,
        tree: &mut Value,
        shape: &Value,
        layer: &Value,
        path: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        match (shape, layer) {
            // `admin:` with every key commented out leaves the section alone.
            (Value::Mapping(_), Value::Null) if is_section(shape) => Ok(()),
            (Value::Mapping(known), Value::Mapping(given)) if is_section(shape) => {
                for (key, value) in given {
                    let Some(key) = key.as_str() else {
                        return Err(ConfigError(format!(
                            "{}: keys must be strings, found {}{}",
                            self.file.display(),
                            kind(key),
                            in_section(path)
                        )));
                    };
                    let mut full = path.clone();
                    full.push(key.to_owned());
                    let Some(sub_shape) = known.get(key) else {
                        if self.lenient {
                            self.warnings.push(format!(
                                "{}: {} is a Cozy stack setting Hearth does not use; it is ignored",
                                self.file.display(),
                                full.join(".")
                            ));
                            continue;
                        }
                        let expected: Vec<&str> = known.keys().filter_map(Value::as_str).collect();
                        return Err(ConfigError(format!(
                            "{}: unknown key {:?} (expected one of {})",
                            self.file.display(),
                            full.join("."),
                            expected.join(", ")
                        )));
                    };
                    let Some(sub_tree) = tree.get_mut(key) else {
                        // The tree starts as a copy of the shape, so a known key is there.
                        continue;
                    };
                    path.push(key.to_owned());
                    self.apply(sub_tree, sub_shape, value, path)?;
                    path.pop();
                }
                Ok(())
            }
            // A section given as something else than a mapping: let serde say why.
            _ => {
                *tree = coerce(shape, layer.clone());
                self.sources
                    .set(path, Source::File(self.file.to_path_buf()));
                Ok(())
            }
        }
    }
}

fn in_section(path: &[String]) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" in {}", path.join("."))
    }
}

/// `HEARTH_<KEY>`, else `HEARTH_<KEY>_FILE`, else `COZY_<KEY>`, for every leaf.
fn overlay_env(
    tree: &mut Value,
    shape: &Value,
    env: &[(String, String)],
    sources: &mut Sources,
) -> Result<(), ConfigError> {
    let env: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut leaves = Vec::new();
    collect_leaves(shape, &mut Vec::new(), &mut leaves);
    for (path, leaf) in leaves {
        let key = path.join(".");
        let name = env_name(&key);
        let file_var = format!("{name}_FILE");
        let cozy = cozy_env_name(&key);
        let (raw, var) = match (env.get(name.as_str()), env.get(file_var.as_str())) {
            (Some(_), Some(_)) => {
                return Err(ConfigError(format!(
                    "{name} and {file_var} are both set; keep one"
                )));
            }
            (Some(value), None) => ((*value).to_owned(), name),
            (None, Some(file)) => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| ConfigError(format!("{file_var}: cannot read {file}: {e}")))?;
                (text.trim_end_matches(['\n', '\r']).to_owned(), file_var)
            }
            (None, None) => match env.get(cozy.as_str()) {
                Some(value) => ((*value).to_owned(), cozy),
                None => continue,
            },
        };
        let value = env_value(&raw, leaf).map_err(|e| ConfigError(format!("{var}: {e}")))?;
        set(tree, &path, value);
        sources.set(&path, Source::Env(var));
    }
    Ok(())
}

fn collect_leaves<'a>(
    shape: &'a Value,
    path: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, &'a Value)>,
) {
    match shape {
        Value::Mapping(map) if is_section(shape) => {
            for (key, value) in map {
                if let Some(key) = key.as_str() {
                    path.push(key.to_owned());
                    collect_leaves(value, path, out);
                    path.pop();
                }
            }
        }
        _ => out.push((path.clone(), shape)),
    }
}

/// Reads a variable's text as the kind of value its key holds by default.
fn env_value(raw: &str, shape: &Value) -> Result<Value, String> {
    match shape {
        // Text keys take the text as is: `HEARTH_MAIL_PASSWORD=123` is a string.
        Value::String(_) | Value::Null => Ok(Value::String(raw.to_owned())),
        // Numbers and booleans are parsed as YAML; anything else is kept as text so
        // that deserialization reports the type error with the key's name.
        Value::Bool(_) | Value::Number(_) => {
            Ok(serde_norway::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned())))
        }
        _ => serde_norway::from_str(raw).map_err(|e| format!("invalid YAML: {e}")),
    }
}

/// A scalar given for a text key becomes text (`password: 1234` in YAML is a number).
fn coerce(shape: &Value, value: Value) -> Value {
    match (shape, value) {
        (Value::String(_) | Value::Null, Value::Number(n)) => Value::String(n.to_string()),
        (Value::String(_) | Value::Null, Value::Bool(b)) => Value::String(b.to_string()),
        (_, value) => value,
    }
}

/// Sets `value` at `path`, creating sections as needed.
fn set(tree: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        *tree = value;
        return;
    };
    let mut node = tree;
    for key in parents {
        if !matches!(node, Value::Mapping(_)) {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else { return };
        node = map.entry(Value::String(key.clone())).or_insert(Value::Null);
    }
    if !matches!(node, Value::Mapping(_)) {
        *node = Value::Mapping(Mapping::new());
    }
    if let Value::Mapping(map) = node {
        map.insert(Value::String(last.clone()), value);
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Checks what serde cannot: URLs, filters, ranges.
fn validate(
    mut config: Config,
    sources: Sources,
    file: Option<PathBuf>,
) -> Result<Loaded, ConfigError> {
    let err = |key: &str, message: String| error_at(&sources, key, message);
    // The Cozy stack's level names that are not tracing's.
    match config.log.level.trim() {
        "warning" => config.log.level = "warn".into(),
        "panic" | "fatal" => config.log.level = "error".into(),
        _ => {}
    }
    for (key, value) in [
        ("host", &config.host),
        ("admin.host", &config.admin.host),
        ("admin.secret_filename", &config.admin.secret_filename),
        ("log.level", &config.log.level),
    ] {
        if value.trim().is_empty() {
            return Err(err(key, "must not be empty".into()));
        }
    }
    if config.data_dir.as_os_str().is_empty() {
        return Err(err("data_dir", "must not be empty".into()));
    }
    let database = parse_database_url(&config.database.url).map_err(|m| err("database.url", m))?;
    let clusters = config
        .database
        .clusters
        .iter()
        .map(|u| parse_database_url(u).map_err(|m| err("database.clusters", m)))
        .collect::<Result<Vec<_>, _>>()?;
    let (fs_url, fs) = parse_fs_url(&config.fs.url).map_err(|m| err("fs.url", m))?;
    config.fs.url = fs_url;
    if config.fs.s3_access_key_id.is_some() != config.fs.s3_secret_access_key.is_some() {
        return Err(err(
            "fs.s3_access_key_id",
            "s3_access_key_id and s3_secret_access_key go together: set both, or neither \
             (then AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are read)"
                .into(),
        ));
    }
    if !(4..=20).contains(&config.auth.scrypt_log_n) {
        return Err(err(
            "auth.scrypt_log_n",
            format!("{} is out of range (4 to 20)", config.auth.scrypt_log_n),
        ));
    }
    if config.database.max_open == 0 {
        return Err(err("database.max_open", "must be at least 1".into()));
    }
    if config.database.idle_timeout.is_zero() {
        return Err(err(
            "database.idle_timeout",
            "must be longer than zero".into(),
        ));
    }
    if config.limits.body_bytes == 0 || usize::try_from(config.limits.body_bytes).is_err() {
        return Err(err(
            "limits.body_bytes",
            format!("{} is out of range", config.limits.body_bytes),
        ));
    }
    tracing_subscriber::EnvFilter::try_new(&config.log.level).map_err(|e| {
        err(
            "log.level",
            format!("invalid filter {:?}: {e}", config.log.level),
        )
    })?;
    for (context, urls) in &config.registries {
        for url in urls {
            let local = url
                .strip_prefix("file://")
                .is_some_and(|path| path.starts_with('/'));
            if !(url.starts_with("http://") || url.starts_with("https://") || local) {
                return Err(err(
                    &format!("registries.{context}"),
                    format!("{url:?} is not an http://, https:// or file:///<directory> URL"),
                ));
            }
        }
    }
    if config
        .redis
        .url
        .as_deref()
        .is_some_and(|u| u.trim().is_empty())
    {
        config.redis.url = None;
    }
    if let Some(url) = &config.redis.url {
        super::check_redis_url(url).map_err(|m| err("redis.url", m))?;
    }
    if config
        .redis
        .node_id
        .as_deref()
        .is_some_and(|n| n.trim().is_empty())
    {
        config.redis.node_id = None;
    }
    if config
        .konnectors
        .cmd
        .as_deref()
        .is_some_and(|c| c.trim().is_empty())
    {
        config.konnectors.cmd = None;
    }
    for value in [&mut config.r#move.url, &mut config.r#move.domain] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            *value = None;
        }
    }
    if let Some(url) = &config.r#move.url {
        config.r#move.url = Some(super::parse_move_url(url).map_err(|m| err("move.url", m))?);
    }
    if let Some(domain) = &config.r#move.domain {
        let domain = super::parse_move_domain(domain).map_err(|m| err("move.domain", m))?;
        config.r#move.domain = Some(domain);
    }
    if config.r#move.delete_after.is_zero() {
        return Err(err("move.delete_after", "must be longer than zero".into()));
    }
    let vault = &config.vault;
    match (
        vault.credentials_encryptor_key.as_deref(),
        vault.credentials_decryptor_key.as_deref(),
    ) {
        (None, None) => {}
        (Some(_), None) => {
            return Err(err(
                "vault.credentials_encryptor_key",
                "is set without vault.credentials_decryptor_key: the vault needs both keys \
                 (hearth config gen-keys <path> writes them)"
                    .into(),
            ));
        }
        (None, Some(_)) => {
            return Err(err(
                "vault.credentials_decryptor_key",
                "is set without vault.credentials_encryptor_key: the vault needs both keys \
                 (hearth config gen-keys <path> writes them)"
                    .into(),
            ));
        }
        (Some(enc), Some(dec)) => {
            for (key, path) in [
                ("vault.credentials_encryptor_key", enc),
                ("vault.credentials_decryptor_key", dec),
            ] {
                crate::keys::read(Path::new(path)).map_err(|m| err(key, m))?;
            }
        }
    }
    Ok(Loaded {
        config,
        sources,
        file,
        extra_files: Vec::new(),
        backends: Backends {
            database,
            clusters,
            fs,
        },
        warnings: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{DatabaseLocation, Synchronous};

    fn yaml_file(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("hearth.yaml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn load_err(input: &LoadInput) -> String {
        match load(input) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn no_file_gives_defaults() {
        let loaded = load(&LoadInput::default()).expect("defaults load");
        assert_eq!(loaded.config, Config::default());
        assert_eq!(loaded.file, None);
        assert_eq!(loaded.sources, Sources::default());
        assert_eq!(loaded.sources.get("admin.port"), &Source::Default);
    }

    #[test]
    fn precedence_file_env_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = yaml_file(
            dir.path(),
            "host: file-host\nport: 1111\nadmin:\n  port: 2222\n  host: 127.0.0.1\nlog:\n  level: debug\n",
        );
        let input = LoadInput {
            file: Some(file.clone()),
            env: env(&[
                ("HEARTH_PORT", "3333"),
                ("HEARTH_ADMIN_PORT", "4444"),
                ("OTHER", "x"),
            ]),
            flags: Overrides {
                port: Some(5555),
                ..Overrides::default()
            },
            ..LoadInput::default()
        };
        let loaded = load(&input).expect("load");
        let c = &loaded.config;
        assert_eq!(
            (c.host.as_str(), c.port, c.admin.port),
            ("file-host", 5555, 4444)
        );
        assert_eq!(
            (c.admin.host.as_str(), c.log.level.as_str()),
            ("127.0.0.1", "debug")
        );
        let s = &loaded.sources;
        assert_eq!(s.get("host"), &Source::File(file.clone()));
        assert_eq!(s.get("port"), &Source::Flag("--port"));
        assert_eq!(
            s.get("admin.port"),
            &Source::Env("HEARTH_ADMIN_PORT".into())
        );
        assert_eq!(s.get("admin.host"), &Source::File(file));
        assert_eq!(s.get("admin.secret_filename"), &Source::Default);
    }

    #[test]
    fn derived_paths_follow_the_data_dir_from_any_layer() {
        let input = LoadInput {
            env: env(&[("HEARTH_DATA_DIR", "/srv/h")]),
            ..LoadInput::default()
        };
        let loaded = load(&input).expect("load");
        assert_eq!(loaded.config.database.url, "sqlite:///srv/h/db");
        assert_eq!(
            loaded.backends.database,
            DatabaseLocation::Sqlite {
                dir: "/srv/h/db".into()
            }
        );
        assert_eq!(
            loaded.config.mail.outbox_dir,
            Path::new("/srv/h/mail/outbox")
        );
        assert_eq!(loaded.sources.get("database.url"), &Source::Default);
    }

    #[test]
    fn env_values_take_the_type_of_their_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("smtp-pass");
        std::fs::write(&secret, "from-file\n").expect("write secret");
        let input = LoadInput {
            env: env(&[
                ("HEARTH_MAIL_USERNAME", "12345"),
                ("HEARTH_MAIL_PASSWORD_FILE", secret.to_str().expect("utf-8")),
                ("HEARTH_MAIL_DISABLE_TLS", "true"),
                ("HEARTH_DATABASE_IDLE_TIMEOUT", "90"),
                ("HEARTH_DATABASE_SYNCHRONOUS", "normal"),
                (
                    "HEARTH_REGISTRIES",
                    "{default: [https://apps.example.net/]}",
                ),
                ("HEARTH_LIMITS_BODY_BYTES", "1024"),
            ]),
            ..LoadInput::default()
        };
        let c = load(&input).expect("load").config;
        assert_eq!(c.mail.username.as_deref(), Some("12345"));
        assert_eq!(c.mail.password.as_deref(), Some("from-file"));
        assert!(c.mail.disable_tls);
        assert_eq!(c.database.idle_timeout, Duration::from_secs(90));
        assert_eq!(c.database.synchronous, Synchronous::Normal);
        assert_eq!(c.registries["default"], ["https://apps.example.net/"]);
        assert_eq!(c.limits.body_bytes, 1024);
    }

    #[test]
    fn konnectors_cmd_and_local_registries() {
        let input = LoadInput {
            env: env(&[
                ("HEARTH_KONNECTORS_CMD", "/usr/local/bin/konnector-node-run"),
                (
                    "HEARTH_REGISTRIES",
                    "{default: [file:///srv/registry, https://apps.example.net/]}",
                ),
            ]),
            ..LoadInput::default()
        };
        let loaded = load(&input).expect("load");
        assert_eq!(
            loaded.config.konnectors.cmd.as_deref(),
            Some("/usr/local/bin/konnector-node-run")
        );
        assert_eq!(
            loaded.sources.get("konnectors.cmd"),
            &Source::Env("HEARTH_KONNECTORS_CMD".into())
        );
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(
            load(&LoadInput::default())
                .expect("load")
                .config
                .konnectors
                .cmd,
            None
        );
        let blank = LoadInput {
            env: env(&[("HEARTH_KONNECTORS_CMD", " ")]),
            ..LoadInput::default()
        };
        assert_eq!(load(&blank).expect("load").config.konnectors.cmd, None);
        for bad in ["file://relative/dir", "ftp://x"] {
            let input = LoadInput {
                env: env(&[("HEARTH_REGISTRIES", &format!("{{default: [{bad}]}}"))]),
                ..LoadInput::default()
            };
            assert!(
                load_err(&input).starts_with("HEARTH_REGISTRIES: registries.default: "),
                "{bad}"
            );
        }
    }

    #[test]
    fn file_scalars_for_text_keys_become_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = yaml_file(dir.path(), "mail:\n  password: 1234\n  host: 10\n");
        let c = load(&LoadInput {
            file: Some(file),
            ..LoadInput::default()
        })
        .expect("load")
        .config;
        assert_eq!(c.mail.password.as_deref(), Some("1234"));
        assert_eq!(c.mail.host.as_deref(), Some("10"));
    }

    #[test]
    fn unknown_keys_are_named_with_their_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = yaml_file(dir.path(), "admin:\n  prot: 1\n");
        let msg = load_err(&LoadInput {
            file: Some(file.clone()),
            ..LoadInput::default()
        });
        assert_eq!(
            msg,
            format!(
                "{}: unknown key \"admin.prot\" (expected one of host, port, secret_filename)",
                file.display()
            )
        );
    }

    #[test]
    fn bad_values_name_their_key_and_layer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = yaml_file(dir.path(), "admin:\n  port: 70000\n");
        let msg = load_err(&LoadInput {
            file: Some(file.clone()),
            ..LoadInput::default()
        });
        assert_eq!(
            msg,
            format!(
                "{}: admin.port: invalid value: integer `70000`, expected u16",
                file.display()
            )
        );

        let input = LoadInput {
            env: env(&[("HEARTH_PORT", "eighty")]),
            ..LoadInput::default()
        };
        assert_eq!(
            load_err(&input),
            "HEARTH_PORT: port: invalid type: string \"eighty\", expected u16"
        );

        let input = LoadInput {
            flags: Overrides {
                database_url: Some("postgres://db:port".into()),
                ..Overrides::default()
            },
            ..LoadInput::default()
        };
        assert!(
            load_err(&input).starts_with("--database-url: database.url: invalid PostgreSQL URL"),
            "{}",
            load_err(&input)
        );
        let input = LoadInput {
            flags: Overrides {
                database_url: Some("postgres://db".into()),
                ..Overrides::default()
            },
            ..LoadInput::default()
        };
        assert_eq!(
            load(&input)
                .expect("postgres:// is accepted")
                .backends
                .database,
            DatabaseLocation::Postgres {
                url: "postgres://db".into()
            }
        );

        let input = LoadInput {
            env: env(&[("HEARTH_FS_URL", "swift://container")]),
            ..LoadInput::default()
        };
        assert_eq!(
            load_err(&input),
            "HEARTH_FS_URL: fs.url: swift:// needs auth_url, as in swift://files?auth_url=https://swift.example.net/auth/v1.0"
        );

        let input = LoadInput {
            env: env(&[("HEARTH_LOG_LEVEL", "info,[")]),
            ..LoadInput::default()
        };
        assert!(load_err(&input).starts_with("HEARTH_LOG_LEVEL: log.level: invalid filter"));

        let file = yaml_file(dir.path(), "database:\n  synchronous: fast\n");
        let msg = load_err(&LoadInput {
            file: Some(file.clone()),
            ..LoadInput::default()
        });
        assert_eq!(
            msg,
            format!(
                "{}: database.synchronous: unknown variant `fast`, expected `full` or `normal`",
                file.display()
            )
        );

        let file = yaml_file(dir.path(), "contexts:\n  default: 3\n");
        let msg = load_err(&LoadInput {
            file: Some(file.clone()),
            ..LoadInput::default()
        });
        assert!(
            msg.starts_with(&format!(
                "{}: contexts.default: invalid type",
                file.display()
            )),
            "{msg}"
        );
    }

    #[test]
    fn file_shapes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = yaml_file(dir.path(), "# nothing yet\n");
        assert_eq!(
            load(&LoadInput {
                file: Some(empty),
                ..LoadInput::default()
            })
            .expect("load")
            .config,
            Config::default()
        );

        let list = yaml_file(dir.path(), "- a\n");
        let msg = load_err(&LoadInput {
            file: Some(list.clone()),
            ..LoadInput::default()
        });
        assert_eq!(
            msg,
            format!(
                "{}: expected a mapping of configuration keys, found a list",
                list.display()
            )
        );

        let missing = dir.path().join("missing.yaml");
        let msg = load_err(&LoadInput {
            file: Some(missing.clone()),
            ..LoadInput::default()
        });
        assert!(
            msg.starts_with(&format!("{}: cannot read", missing.display())),
            "{msg}"
        );

        let broken = yaml_file(dir.path(), "host: [\n");
        let msg = load_err(&LoadInput {
            file: Some(broken.clone()),
            ..LoadInput::default()
        });
        assert!(
            msg.starts_with(&format!("{}: invalid YAML", broken.display())),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "one line: {msg:?}");

        // Search order: the first existing file wins.
        let found = yaml_file(dir.path(), "port: 9\n");
        let input = LoadInput {
            search: vec![dir.path().join("nope.yaml"), found.clone()],
            ..LoadInput::default()
        };
        let loaded = load(&input).expect("load");
        assert_eq!((loaded.config.port, loaded.file), (9, Some(found)));
    }

    #[test]
    fn mistyped_variables_are_reported() {
        let input = LoadInput {
            env: env(&[
                ("HEARTH_PROT", "1"),
                ("HEARTH_CONFIG", "x"),
                ("HEARTH_MAIL_PASSWORD_FILE", "/dev/null"),
                ("HEARTH_PORT", "1"),
            ]),
            ..LoadInput::default()
        };
        let loaded = load(&input).expect("load");
        assert_eq!(
            loaded.warnings,
            ["HEARTH_PROT is not a configuration variable; it is ignored"]
        );
    }

    fn cozy_file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write config");
        path
    }

    #[test]
    fn search_order_is_hearth_then_cozy_by_extension() {
        let paths = search_paths(Some(Path::new("/home/op")), Some(Path::new("/xdg")));
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            shown[..5],
            [
                "hearth.yaml",
                "/home/op/.hearth.yaml",
                "/etc/hearth/hearth.yaml",
                "./cozy.json",
                ".cozy/cozy.json"
            ]
        );
        let yaml = |p: &str| shown.iter().position(|s| s == p).unwrap_or(usize::MAX);
        assert!(yaml("/etc/cozy/cozy.json") < yaml("./cozy.yaml"));
        assert!(yaml(".cozy/cozy.yaml") < yaml("/home/op/.cozy/cozy.yaml"));
        assert!(yaml("/home/op/.config/cozy/cozy.yaml") < yaml("/xdg/cozy/cozy.yaml"));
        assert!(yaml("/xdg/cozy/cozy.yaml") < yaml("/etc/cozy/cozy.yaml"));
        assert!(yaml("/etc/cozy/cozy.yaml") < yaml(".cozy/cozy.yml"));
        assert!(is_cozy_file(Path::new("/etc/cozy/cozy.yaml.local")));
        assert!(!is_cozy_file(Path::new("/etc/hearth/hearth.yaml")));
    }

    #[test]
    fn cozy_files_are_read_leniently() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = cozy_file(
            dir.path(),
            "cozy.yaml",
            "host: 0.0.0.0\ncouchdb:\n  url: http://localhost:5984/\nfs:\n  url: /srv/files\n  \
             default_layout: 2\nregistries:\n  - https://apps.example.net/\njobs:\n  workers:\n    \
             thumbnail:\n      concurrency: 1\n      timeout: 2m\n    sendmail: false\n    log: true\n\
             mail:\n  disable_tls: true\n  use_ssl: false\n  alert_address: ops@example.net\n\
             log:\n  level: warning\nvault:\n  something_else: 1\n",
        );
        let loaded = load(&LoadInput {
            search: vec![dir.path().join("hearth.yaml"), file.clone()],
            ..LoadInput::default()
        })
        .expect("load");
        let c = &loaded.config;
        assert_eq!(loaded.file.as_deref(), Some(file.as_path()));
        assert_eq!(c.host, "0.0.0.0");
        assert_eq!(c.fs.url, "file:///srv/files");
        assert_eq!(c.registries["default"], ["https://apps.example.net/"]);
        assert_eq!(c.jobs.workers["thumbnail"].timeout, Some(120));
        assert_eq!(c.jobs.workers["thumbnail"].concurrency, Some(1));
        assert!(c.jobs.workers.contains_key("log") && c.jobs.workers.contains_key("sendmail"));
        assert!(c.mail.disable_tls);
        assert_eq!(c.mail.alert_address.as_deref(), Some("ops@example.net"));
        assert_eq!(c.log.level, "warn");
        let w = loaded.warnings.join("\n");
        for expected in [
            "couchdb is ignored",
            "fs.default_layout is a Cozy stack setting Hearth does not use",
            "vault.something_else is a Cozy stack setting",
            "jobs.workers.sendmail: false is ignored",
            "mail.alert_address is set, but Hearth sends no alert mail yet",
        ] {
            assert!(w.contains(expected), "{expected:?} not in\n{w}");
        }
        // The same keys in Hearth's own file are errors.
        let strict = yaml_file(dir.path(), "couchdb:\n  url: x\n");
        assert!(
            load_err(&LoadInput {
                file: Some(strict),
                ..LoadInput::default()
            })
            .contains("unknown key \"couchdb\"")
        );
        // A template is refused with a way out.
        let templated = cozy_file(dir.path(), "cozy.yml", "host: {{ .Env.HOST }}\n");
        assert!(
            load_err(&LoadInput {
                file: Some(templated),
                ..LoadInput::default()
            })
            .contains("Go templates")
        );
    }

    #[test]
    fn redis_settings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = cozy_file(
            dir.path(),
            "cozy.yaml",
            "redis:\n  addrs: cache:6379 other:6379\n  password: pw\n  master: m\n  \
             databases:\n    jobs: 2\n    cache: 1\n",
        );
        let loaded = load(&LoadInput {
            file: Some(file),
            ..LoadInput::default()
        })
        .expect("load");
        assert_eq!(
            loaded.config.redis.url.as_deref(),
            Some("redis://:pw@cache:6379/2")
        );
        assert_eq!(loaded.config.redis.prefix, "hearth:");
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.contains("redis: only addrs")),
            "{:?}",
            loaded.warnings
        );
        let old = cozy_file(dir.path(), "cozy.yml", "jobs:\n  url: redis://q:6379/0\n");
        let loaded = load(&LoadInput {
            file: Some(old),
            ..LoadInput::default()
        })
        .expect("load");
        assert_eq!(loaded.config.redis.url.as_deref(), Some("redis://q:6379/0"));

        // --redis-url wins over --jobs-url; both over the variables.
        let loaded = load(&LoadInput {
            env: env(&[
                ("HEARTH_REDIS_URL", "redis://env/0"),
                ("HEARTH_REDIS_NODE_ID", " "),
            ]),
            flags: Overrides {
                jobs_url: Some("redis://jobs/0".into()),
                redis_url: Some("redis://flag/0".into()),
                ..Overrides::default()
            },
            ..LoadInput::default()
        })
        .expect("load");
        assert_eq!(loaded.config.redis.url.as_deref(), Some("redis://flag/0"));
        assert_eq!(loaded.config.redis.node_id, None);
        assert_eq!(
            loaded.sources.get("redis.url"),
            &Source::Flag("--redis-url")
        );
        let loaded = load(&LoadInput {
            env: env(&[("COZY_REDIS_URL", "redis://cozy/1")]),
            ..LoadInput::default()
        })
        .expect("load");
        assert_eq!(loaded.config.redis.url.as_deref(), Some("redis://cozy/1"));
        assert!(
            load_err(&LoadInput {
                env: env(&[("HEARTH_REDIS_URL", "http://cache")]),
                ..LoadInput::default()
            })
            .starts_with("HEARTH_REDIS_URL: redis.url: unknown scheme http://")
        );
        // Without it, one node.
        assert_eq!(
            load(&LoadInput::default()).expect("load").config.redis.url,
            None
        );
    }

    #[test]
    fn cozy_local_companion_is_layered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = cozy_file(dir.path(), "cozy.yaml", "port: 1\nhost: a\n");
        let local = cozy_file(dir.path(), "cozy.yaml.local", "port: 2\n");
        let loaded = load(&LoadInput {
            search: vec![file.clone()],
            ..LoadInput::default()
        })
        .expect("load");
        assert_eq!((loaded.config.port, loaded.config.host.as_str()), (2, "a"));
        assert_eq!(loaded.sources.get("port"), &Source::File(local.clone()));
        assert_eq!(loaded.sources.get("host"), &Source::File(file));
        assert_eq!(loaded.extra_files, [local]);
    }

    #[test]
    fn cozy_variables_beside_hearth_ones() {
        let input = LoadInput {
            env: env(&[
                ("COZY_PORT", "1111"),
                ("COZY_ADMIN_PORT", "2222"),
                ("HEARTH_ADMIN_PORT", "3333"),
                ("COZY_MAIL_HOST", "smtp.example.net"),
                ("COZY_KONNECTORS_CMD", "/usr/bin/konnector"),
                ("COZY_COUCHDB_URL", "http://x"),
                ("COZY_DOMAIN", "not.a.key"),
            ]),
            ..LoadInput::default()
        };
        let loaded = load(&input).expect("load");
        let c = &loaded.config;
        assert_eq!((c.port, c.admin.port), (1111, 3333));
        assert_eq!(c.mail.host.as_deref(), Some("smtp.example.net"));
        let s = &loaded.sources;
        assert_eq!(s.get("port"), &Source::Env("COZY_PORT".into()));
        assert_eq!(
            s.get("admin.port"),
            &Source::Env("HEARTH_ADMIN_PORT".into())
        );
        assert_eq!(
            s.get("konnectors.cmd"),
            &Source::Env("COZY_KONNECTORS_CMD".into())
        );
        assert_eq!(
            loaded.warnings,
            [
                "COZY_COUCHDB_URL is ignored: Hearth has no CouchDB; documents are stored where database.url says"
            ]
        );
    }

    #[test]
    fn cozy_serve_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path().join("k");
        crate::keys::write_pair(&keys).expect("keys");
        let key = |ext: &str| format!("{}.{ext}", keys.display());
        let flags = Overrides {
            mailhog: true,
            mail_port: Some(25),
            onlyoffice_url: Some("http://oo.example.net/".into()),
            vault_encryptor_key: Some(key("enc")),
            vault_decryptor_key: Some(key("dec")),
            konnectors_cmd: Some("/bin/true".into()),
            subdomains: Some("flat".into()),
            move_url: Some("https://move.example.net".into()),
            ignored: vec!["--geodb".into()],
            ..Overrides::default()
        };
        let loaded = load(&LoadInput {
            flags,
            ..LoadInput::default()
        })
        .expect("load");
        let c = &loaded.config;
        // --mailhog wins over --mail-port, and picks localhost when no host is set.
        assert_eq!(
            (c.mail.host.as_deref(), c.mail.port, c.mail.disable_tls),
            (Some("localhost"), 1025, true)
        );
        assert_eq!(loaded.sources.get("mail.port"), &Source::Flag("--mailhog"));
        assert_eq!(c.subdomains, crate::config::Subdomains::Flat);
        assert_eq!(c.r#move.url.as_deref(), Some("https://move.example.net/"));
        assert_eq!(loaded.sources.get("move.url"), &Source::Flag("--move-url"));
        assert_eq!(
            c.office["default"].get("onlyoffice_url"),
            Some(&Value::String("http://oo.example.net/".into()))
        );
        assert_eq!(
            loaded.sources.get("office"),
            &Source::Flag("--onlyoffice-url")
        );
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.starts_with("--geodb is accepted for compatibility")),
            "{:?}",
            loaded.warnings
        );
        // A configured relay keeps its host under --mailhog.
        let loaded = load(&LoadInput {
            env: env(&[("HEARTH_MAIL_HOST", "relay.example.net")]),
            flags: Overrides {
                mailhog: true,
                ..Overrides::default()
            },
            ..LoadInput::default()
        })
        .expect("load");
        assert_eq!(
            loaded.config.mail.host.as_deref(),
            Some("relay.example.net")
        );

        // Keys are checked: missing, not a key, or only one of the two.
        let bad = |enc: String, dec: Option<String>| {
            load_err(&LoadInput {
                flags: Overrides {
                    vault_encryptor_key: Some(enc),
                    vault_decryptor_key: dec,
                    ..Overrides::default()
                },
                ..LoadInput::default()
            })
        };
        let missing = dir.path().join("missing.enc").display().to_string();
        assert!(
            bad(missing, Some(key("dec")))
                .starts_with("--vault-encryptor-key: vault.credentials_encryptor_key: cannot read")
        );
        let not_key = yaml_file(dir.path(), "x: 1\n").display().to_string();
        assert!(bad(not_key, Some(key("dec"))).contains("not a PEM file"));
        assert!(
            bad(key("enc"), None).starts_with(
                "--vault-encryptor-key: vault.credentials_encryptor_key: is set without"
            )
        );
    }

    #[test]
    fn move_settings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let defaults = load(&LoadInput::default()).expect("load").config.r#move;
        assert_eq!(defaults.url, None);
        assert_eq!(defaults.domain, None);
        assert_eq!(defaults.delete_after, Duration::from_secs(720 * 3600));
        let file = yaml_file(
            dir.path(),
            "move:\n  domain: Move.Example.net\n  delete_after: 30d\n",
        );
        let loaded = load(&LoadInput {
            file: Some(file.clone()),
            env: env(&[("HEARTH_MOVE_URL", "https://move.example.net")]),
            ..LoadInput::default()
        })
        .expect("load");
        let m = &loaded.config.r#move;
        assert_eq!(m.domain.as_deref(), Some("move.example.net"));
        assert_eq!(m.url.as_deref(), Some("https://move.example.net/"));
        assert_eq!(m.delete_after, Duration::from_secs(30 * 86_400));
        assert_eq!(
            loaded.sources.get("move.url"),
            &Source::Env("HEARTH_MOVE_URL".into())
        );
        assert_eq!(loaded.sources.get("move.domain"), &Source::File(file));
        // The Cozy stack's `move.url` is read from its file without a warning.
        let cozy = cozy_file(
            dir.path(),
            "cozy.yaml",
            "move:\n  url: https://move.cozycloud.cc/\n",
        );
        let loaded = load(&LoadInput {
            file: Some(cozy),
            env: env(&[("HEARTH_MOVE_DOMAIN", " ")]),
            ..LoadInput::default()
        })
        .expect("load");
        assert_eq!(
            loaded.config.r#move.url.as_deref(),
            Some("https://move.cozycloud.cc/")
        );
        assert_eq!(loaded.config.r#move.domain, None, "blank means unset");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        for (var, value, message) in [
            (
                "HEARTH_MOVE_URL",
                "move.example.net",
                "HEARTH_MOVE_URL: move.url: ",
            ),
            (
                "HEARTH_MOVE_DOMAIN",
                "https://move.example.net",
                "HEARTH_MOVE_DOMAIN: move.domain: ",
            ),
            (
                "HEARTH_MOVE_DELETE_AFTER",
                "soon",
                "HEARTH_MOVE_DELETE_AFTER: move.delete_after: invalid duration",
            ),
            (
                "HEARTH_MOVE_DELETE_AFTER",
                "0s",
                "HEARTH_MOVE_DELETE_AFTER: move.delete_after: must be longer than zero",
            ),
        ] {
            let e = load_err(&LoadInput {
                env: env(&[(var, value)]),
                ..LoadInput::default()
            });
            assert!(e.starts_with(message), "{var}={value}: {e}");
        }
        let e = load_err(&LoadInput {
            file: Some(yaml_file(dir.path(), "move:\n  urls: x\n")),
            ..LoadInput::default()
        });
        assert!(e.contains("unknown key \"move.urls\""), "{e}");
    }

    #[test]
    fn env_names_are_unique() {
        let shape = serde_norway::to_value(Config::default()).expect("to_value");
        let mut leaves = Vec::new();
        collect_leaves(&shape, &mut Vec::new(), &mut leaves);
        let names: Vec<String> = leaves.iter().map(|(p, _)| env_name(&p.join("."))).collect();
        for name in &names {
            assert_eq!(names.iter().filter(|n| *n == name).count(), 1, "{name}");
            assert!(
                !names.contains(&format!("{name}_FILE")),
                "{name}_FILE is also a key"
            );
        }
        assert!(names.contains(&"HEARTH_ADMIN_SECRET_FILENAME".to_owned()));
        assert!(names.contains(&"HEARTH_CONTEXTS".to_owned()));
    }
}
