//! `hearth instances …` (alias `instance`), `hearth check`, `hearth jobs`, `hearth
//! triggers`, `hearth apps`, `hearth konnectors` and `hearth docs`: instance management from the
//! command line, as an HTTP client of the admin API (spec instances 6). The client
//! holds little logic: it checks what it can without the server (domain characters,
//! sizes, flags, JSON), sends one typed request per command (`api`), and prints the
//! answer (`output`).
//!
//! `main.rs` of the `hearth` binary embeds [`InstancesArgs`], [`CheckArgs`],
//! [`JobsArgs`], [`TriggersArgs`], [`AppsArgs`] and [`KonnectorsArgs`] in its clap tree
//! and calls [`run`], [`run_check`], [`run_jobs`], [`run_triggers`], [`run_apps`] and
//! [`run_konnectors`].

pub mod api;
pub mod commands;
pub mod output;
mod run;
pub mod size;

use std::io::{self, IsTerminal};
use std::process::ExitCode;

pub use api::{AdminClient, ApiError, AppDoc, AppKind, Endpoints, Job, PassphraseSource};
pub use commands::{
    AppsArgs, AppsCommand, CheckArgs, CheckCommand, DocsArgs, DocsCommand, GlobalArgs,
    InstanceFlag, InstancesArgs, InstancesCommand, JobsArgs, JobsCommand, KonnectorsArgs,
    KonnectorsCommand, TriggersArgs, TriggersCommand,
};
pub use run::{
    Io, execute, execute_apps, execute_check, execute_docs, execute_jobs, execute_konnectors,
    execute_triggers,
};

/// Runs one `hearth instances` command with the process's environment, standard
/// streams and terminal. Errors are printed as `Error: …` on stderr; the exit status is
/// 0 on success, 1 on failure, 2 for a bad setting in the environment.
pub fn run(args: InstancesArgs) -> ExitCode {
    with_process(&args.globals, |settings, io| {
        execute(&args.command, settings, io)
    })
}

/// Runs one `hearth check` command, like [`run`]: exit status 0 when all is well, 1
/// when a problem was found or the check failed, 2 for a bad setting.
pub fn run_check(args: CheckArgs) -> ExitCode {
    with_process(&args.globals, |settings, io| {
        execute_check(&args.command, settings, io)
    })
}

/// Runs one `hearth docs` command, like [`run`]: exit status 0, 1 when the request
/// failed, 2 for a bad argument (nothing is sent then).
pub fn run_docs(args: DocsArgs) -> ExitCode {
    with_process(&args.globals, |settings, io| {
        execute_docs(&args.command, settings, io)
    })
}

/// Runs one `hearth jobs` command, like [`run`]: exit status 0 when the job is done, 1
/// when it errored or the request failed, 2 for a bad setting, flag or `--json`
/// (nothing is sent then).
pub fn run_jobs(args: JobsArgs) -> ExitCode {
    with_process(&args.globals, |settings, io| {
        execute_jobs(&args.command, args.instance.domain.as_deref(), settings, io)
    })
}

/// Runs one `hearth triggers` command, like [`run`]: exit status 0, 1 on failure, 2
/// for a bad setting or flag.
pub fn run_triggers(args: TriggersArgs) -> ExitCode {
    with_process(&args.globals, |settings, io| {
        execute_triggers(&args.command, args.instance.domain.as_deref(), settings, io)
    })
}

/// Runs one `hearth apps` command, like [`run`]: exit status 0, 1 on failure, 2 for a
/// bad setting, a missing domain or an empty slug (nothing is sent then).
pub fn run_apps(args: AppsArgs) -> ExitCode {
    with_process(&args.globals, |settings, io| {
        execute_apps(&args.command, args.instance.domain.as_deref(), settings, io)
    })
}

/// Runs one `hearth konnectors` command, like [`run_apps`]; `konnectors run` exits 1
/// when the konnector's job errored.
pub fn run_konnectors(args: KonnectorsArgs) -> ExitCode {
    with_process(&args.globals, |settings, io| {
        execute_konnectors(&args.command, args.instance.domain.as_deref(), settings, io)
    })
}

/// Resolves the settings from the flags and the process's environment, then runs `f`
/// with the standard streams.
fn with_process(globals: &GlobalArgs, f: impl FnOnce(&Settings, &mut Io<'_>) -> u8) -> ExitCode {
    let env = |name: &str| std::env::var(name).ok();
    let settings = match Settings::resolve(globals, &env, io::stdin().is_terminal()) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("Error: {message}");
            return ExitCode::from(2);
        }
    };
    let stdout = io::stdout();
    let stderr = io::stderr();
    let stdin = io::stdin();
    let mut io = Io {
        out: &mut stdout.lock(),
        err: &mut stderr.lock(),
        input: &mut stdin.lock(),
    };
    ExitCode::from(f(&settings, &mut io))
}

/// Everything a command needs from flags and environment, resolved once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub admin_host: String,
    pub admin_port: u16,
    pub host: String,
    pub port: u16,
    pub passphrase: PassphraseSource,
    /// `HEARTH_DISABLE_INSTANCES_ADD_RM` (or `COZY_…`): why `add` and `destroy` refuse.
    pub add_rm_disabled: Option<String>,
    /// `HEARTH_DOMAIN` (or `COZY_DOMAIN`): the instance of `jobs` and `triggers` when
    /// `--domain` is not given.
    pub domain: Option<String>,
    /// `HEARTH_TO_ADMIN_PASSPHRASE`: the passphrase of the target server's admin API
    /// (`instances move`); this server's when unset.
    pub to_passphrase: Option<String>,
}

impl Settings {
    /// Each server setting: the flag, else `HEARTH_*`, else `COZY_*`, else the default.
    /// The passphrase: `HEARTH_ADMIN_PASSPHRASE`, `COZY_ADMIN_PASSPHRASE`,
    /// `COZY_ADMIN_PASSWORD`, else a prompt when stdin is a terminal. Empty variables
    /// count as unset.
    pub fn resolve(
        globals: &GlobalArgs,
        env: &dyn Fn(&str) -> Option<String>,
        stdin_is_terminal: bool,
    ) -> Result<Self, String> {
        let var = |names: &[&'static str]| {
            names.iter().find_map(|name| {
                env(name)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (*name, v))
            })
        };
        let text = |flag: &Option<String>, names: &[&'static str], default: &str| {
            flag.clone()
                .or_else(|| var(names).map(|(_, v)| v.trim().to_owned()))
                .unwrap_or_else(|| default.to_owned())
        };
        let port = |flag: Option<u16>, names: &[&'static str], default: u16| match flag {
            Some(p) => Ok(p),
            None => match var(names) {
                Some((name, v)) => v
                    .trim()
                    .parse::<u16>()
                    .map_err(|_| format!("{name}: invalid port {v:?}")),
                None => Ok(default),
            },
        };
        let passphrase = match var(&[
            "HEARTH_ADMIN_PASSPHRASE",
            "COZY_ADMIN_PASSPHRASE",
            "COZY_ADMIN_PASSWORD",
        ]) {
            Some((_, p)) => PassphraseSource::Given(p),
            None if stdin_is_terminal => PassphraseSource::Prompt,
            None => PassphraseSource::Missing,
        };
        Ok(Self {
            admin_host: text(
                &globals.admin_host,
                &["HEARTH_ADMIN_HOST", "COZY_ADMIN_HOST"],
                "localhost",
            ),
            admin_port: port(
                globals.admin_port,
                &["HEARTH_ADMIN_PORT", "COZY_ADMIN_PORT"],
                6060,
            )?,
            host: text(&globals.host, &["HEARTH_HOST", "COZY_HOST"], "localhost"),
            port: port(globals.port, &["HEARTH_PORT", "COZY_PORT"], 8080)?,
            passphrase,
            add_rm_disabled: var(&[
                "HEARTH_DISABLE_INSTANCES_ADD_RM",
                "COZY_DISABLE_INSTANCES_ADD_RM",
            ])
            .map(|(_, v)| v),
            domain: var(&["HEARTH_DOMAIN", "COZY_DOMAIN"]).map(|(_, v)| v.trim().to_owned()),
            to_passphrase: var(&["HEARTH_TO_ADMIN_PASSPHRASE"]).map(|(_, v)| v),
        })
    }

    pub fn endpoints(&self) -> Endpoints {
        Endpoints::new(&self.admin_host, self.admin_port, &self.host, self.port)
    }
}

/// The client-side domain check (spec 6.1): a domain with a space, `/`, `?`, `#`, `@`,
/// a tab, CR or LF, or an empty one, is refused before any request.
pub fn check_domain(domain: &str) -> Result<(), String> {
    let forbidden = [' ', '/', '?', '#', '@', '\t', '\r', '\n'];
    if domain.is_empty() || domain.contains(forbidden) {
        Err(format!("Invalid domain: {domain}"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(flags: GlobalArgs, vars: &[(&str, &str)], tty: bool) -> Result<Settings, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::resolve(&flags, &|name| map.get(name).cloned(), tty)
    }

    #[test]
    fn defaults() {
        let s = resolve(GlobalArgs::default(), &[], false).expect("settings");
        assert_eq!(
            s,
            Settings {
                admin_host: "localhost".into(),
                admin_port: 6060,
                host: "localhost".into(),
                port: 8080,
                passphrase: PassphraseSource::Missing,
                add_rm_disabled: None,
                domain: None,
                to_passphrase: None,
            }
        );
        assert_eq!(s.endpoints().admin, "http://localhost:6060");
        assert_eq!(s.endpoints().public, "http://localhost:8080");
        let s = resolve(GlobalArgs::default(), &[], true).expect("settings");
        assert_eq!(s.passphrase, PassphraseSource::Prompt);
    }

    #[test]
    fn flag_then_hearth_then_cozy() {
        let vars = [
            ("COZY_ADMIN_HOST", "cozy-admin"),
            ("COZY_ADMIN_PORT", "1111"),
            ("HEARTH_ADMIN_PORT", "2222"),
            ("COZY_HOST", "cozy-host"),
            ("HEARTH_HOST", "hearth-host"),
            ("COZY_PORT", "3333"),
            ("COZY_ADMIN_PASSWORD", "pw"),
            ("COZY_ADMIN_PASSPHRASE", "cozy-pass"),
            ("HEARTH_ADMIN_PASSPHRASE", ""),
            ("COZY_DOMAIN", "cozy.example"),
            ("HEARTH_DOMAIN", " "),
        ];
        let s = resolve(GlobalArgs::default(), &vars, true).expect("settings");
        assert_eq!(
            (s.admin_host.as_str(), s.admin_port, s.host.as_str(), s.port),
            ("cozy-admin", 2222, "hearth-host", 3333)
        );
        assert_eq!(s.domain.as_deref(), Some("cozy.example"));
        assert_eq!(s.to_passphrase, None);
        let t = resolve(
            GlobalArgs::default(),
            &[("HEARTH_TO_ADMIN_PASSPHRASE", "target")],
            false,
        )
        .expect("settings");
        assert_eq!(t.to_passphrase.as_deref(), Some("target"));
        let d = resolve(
            GlobalArgs::default(),
            &[("HEARTH_DOMAIN", "h.example"), ("COZY_DOMAIN", "c.example")],
            false,
        )
        .expect("settings");
        assert_eq!(d.domain.as_deref(), Some("h.example"));
        assert_eq!(s.passphrase, PassphraseSource::Given("cozy-pass".into()));

        let flags = GlobalArgs {
            admin_host: Some("flag-admin".into()),
            admin_port: Some(4444),
            host: Some("flag-host".into()),
            port: Some(5555),
        };
        let s = resolve(
            flags,
            &[
                ("HEARTH_ADMIN_PASSPHRASE", "h"),
                ("COZY_ADMIN_PASSWORD", "c"),
            ],
            false,
        )
        .expect("settings");
        assert_eq!(
            (s.admin_host.as_str(), s.admin_port, s.host.as_str(), s.port),
            ("flag-admin", 4444, "flag-host", 5555)
        );
        assert_eq!(s.passphrase, PassphraseSource::Given("h".into()));
        let s = resolve(
            GlobalArgs::default(),
            &[("COZY_ADMIN_PASSWORD", "c")],
            false,
        )
        .expect("settings");
        assert_eq!(s.passphrase, PassphraseSource::Given("c".into()));
    }

    #[test]
    fn bad_port_names_the_variable() {
        assert_eq!(
            resolve(
                GlobalArgs::default(),
                &[("HEARTH_ADMIN_PORT", "sixty")],
                false
            ),
            Err("HEARTH_ADMIN_PORT: invalid port \"sixty\"".into())
        );
    }

    #[test]
    fn domain_precheck() {
        for ok in [
            "alice.example.net",
            "alice.cozy.localhost:8080",
            "Élise.example",
            "UPPER.example",
        ] {
            assert_eq!(check_domain(ok), Ok(()), "{ok}");
        }
        for bad in [
            "a b.example",
            "a/b",
            "a?b",
            "a#b",
            "me@a.example",
            "a\tb",
            "a\rb",
            "a\nb",
            "",
        ] {
            assert_eq!(
                check_domain(bad),
                Err(format!("Invalid domain: {bad}")),
                "{bad:?}"
            );
        }
    }
}
