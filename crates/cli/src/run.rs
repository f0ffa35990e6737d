//! Running one command: client-side checks, the admin API call, and printing the answer
//! or the error (spec instances 6.2). Streams are passed in so tests can drive it.

use std::io::{BufRead, Write};

use crate::api::{
    AdminClient, AppKind, Audience, Endpoints, Job, MoveRequest, MoveStatus, PassphraseSource,
    TokenRequest, parse_move_target,
};
use crate::commands::{
    AppsCommand, CheckCommand, DocsCommand, FsckArgs, InstancesCommand, JobsCommand, JobsRunArgs,
    KonnectorRunArgs, KonnectorsCommand, MoveArgs, TriggersCommand, quota_param,
};
use crate::{Settings, check_domain, output};

/// The streams of a command: what it prints, its errors, and where `destroy` reads the
/// confirmation.
pub struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    pub input: &'a mut dyn BufRead,
}

/// A failed command: an optional line saying what failed, then `Error: <message>`
/// (nothing when the message is empty: the command already said why), and its exit
/// status.
struct Failure {
    context: Option<String>,
    message: String,
    status: u8,
}

impl Failure {
    /// Exit 1 without printing anything more.
    fn silent() -> Self {
        Self::new("")
    }

    fn new(message: impl ToString) -> Self {
        Self {
            context: None,
            message: message.to_string(),
            status: 1,
        }
    }

    /// A bad flag or argument, found before any request: exit 2.
    fn usage(message: impl ToString) -> Self {
        Self {
            status: 2,
            ..Self::new(message)
        }
    }

    fn during(context: String) -> impl FnOnce(crate::ApiError) -> Self {
        move |err| Self {
            context: Some(context),
            message: err.to_string(),
            status: 1,
        }
    }
}

/// Runs `command` and returns its exit status: 0, or 1 after printing the error.
pub fn execute(command: &InstancesCommand, settings: &Settings, io: &mut Io<'_>) -> u8 {
    let client = AdminClient::new(settings.endpoints(), settings.passphrase.clone());
    let outcome = dispatch(command, settings, &client, io);
    status(outcome, io)
}

/// Runs a `hearth check` command and returns its exit status: 0 when all is well, 1
/// when a problem was found (printed on stdout) or the check failed (on stderr).
pub fn execute_check(command: &CheckCommand, settings: &Settings, io: &mut Io<'_>) -> u8 {
    let client = AdminClient::new(settings.endpoints(), settings.passphrase.clone());
    let outcome = match command {
        CheckCommand::Fs(args) => fsck(&client, io, args),
        CheckCommand::Triggers(d) => check_list(&client, io, &d.domain, "triggers"),
        CheckCommand::Shared(d) => check_list(&client, io, &d.domain, "shared"),
    };
    status(outcome, io)
}

/// `check triggers` / `check shared`: the problems as JSON lines; exit 1 if there is one.
fn check_list(
    client: &AdminClient,
    io: &mut Io<'_>,
    domain: &str,
    name: &str,
) -> Result<(), Failure> {
    check_domain(domain).map_err(Failure::new)?;
    let problems = client.check(domain, name).map_err(Failure::new)?;
    if problems.is_empty() {
        return Ok(());
    }
    print(io, &output::json_lines(&problems))?;
    Err(Failure::silent())
}

/// Runs a `hearth docs` command and returns its exit status: 0, 1 when the request
/// failed, 2 for a bad domain, doctype, id or JSON (nothing is sent then).
pub fn execute_docs(command: &DocsCommand, settings: &Settings, io: &mut Io<'_>) -> u8 {
    let client = AdminClient::new(settings.endpoints(), settings.passphrase.clone());
    let outcome = docs_command(&client, io, command);
    status(outcome, io)
}

fn docs_command(
    client: &AdminClient,
    io: &mut Io<'_>,
    command: &DocsCommand,
) -> Result<(), Failure> {
    let target = |domain: &str, doctype: &str| -> Result<(), Failure> {
        check_domain(domain).map_err(Failure::usage)?;
        if doctype.trim().is_empty() {
            return Err(Failure::usage("the doctype is empty"));
        }
        Ok(())
    };
    let id_arg = |id: &str| -> Result<(), Failure> {
        if id.is_empty() {
            Err(Failure::usage("the document id is empty"))
        } else {
            Ok(())
        }
    };
    match command {
        DocsCommand::Ls { domain, doctype } => {
            target(domain, doctype)?;
            let docs = client.raw_all_docs(domain, doctype).map_err(Failure::new)?;
            print(io, &output::json_lines(&docs))
        }
        DocsCommand::Get {
            domain,
            doctype,
            id,
        } => {
            target(domain, doctype)?;
            id_arg(id)?;
            let doc = client.raw_get(domain, doctype, id).map_err(Failure::new)?;
            print(io, &output::json_pretty(&doc))
        }
        DocsCommand::Put {
            domain,
            doctype,
            json,
            id,
        } => {
            target(domain, doctype)?;
            let text = match json.as_deref() {
                Some(text) if text != "-" => text.to_owned(),
                _ => {
                    let mut text = String::new();
                    io.input
                        .read_to_string(&mut text)
                        .map_err(|e| Failure::usage(format!("cannot read standard input: {e}")))?;
                    text
                }
            };
            let doc: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Failure::usage(format!("the document is not valid JSON: {e}")))?;
            let Some(map) = doc.as_object() else {
                return Err(Failure::usage("the document must be a JSON object"));
            };
            let own_id = map.get("_id").and_then(|v| v.as_str());
            let id = match (id.as_deref(), own_id) {
                (Some(flag), Some(own)) if flag != own => {
                    return Err(Failure::usage(format!(
                        "--id {flag} and the document's _id {own} differ"
                    )));
                }
                (Some(id), _) | (None, Some(id)) => id.to_owned(),
                (None, None) => {
                    return Err(Failure::usage(
                        "the document has no _id: give one in the JSON or with --id",
                    ));
                }
            };
            id_arg(&id)?;
            let written = client
                .raw_put(domain, doctype, &id, &text)
                .map_err(Failure::new)?;
            print(io, &output::json_lines(std::slice::from_ref(&written)))
        }
        DocsCommand::Find {
            domain,
            doctype,
            query,
        } => {
            target(domain, doctype)?;
            let parsed: serde_json::Value = serde_json::from_str(query)
                .map_err(|e| Failure::usage(format!("the query is not valid JSON: {e}")))?;
            if !parsed.is_object() {
                return Err(Failure::usage(
                    "the query must be a JSON object such as {\"selector\": {…}}",
                ));
            }
            let docs = client
                .raw_find(domain, doctype, query)
                .map_err(Failure::new)?;
            print(io, &output::json_lines(&docs))
        }
        DocsCommand::Destroy {
            domain,
            doctype,
            id,
            rev,
        } => {
            target(domain, doctype)?;
            id_arg(id)?;
            let rev = match rev {
                Some(rev) => rev.clone(),
                None => {
                    let doc = client.raw_get(domain, doctype, id).map_err(Failure::new)?;
                    doc.get("_rev")
                        .and_then(|r| r.as_str())
                        .map(str::to_owned)
                        .ok_or_else(|| Failure::new("the document has no _rev"))?
                }
            };
            let deleted = client
                .raw_delete(domain, doctype, id, &rev)
                .map_err(Failure::new)?;
            print(io, &output::json_lines(std::slice::from_ref(&deleted)))
        }
    }
}

/// Runs a `hearth jobs` command on the instance `domain` (the `--domain` flag, else
/// the settings') and returns its exit status: 0 when the job is done, 1 when it
/// errored or the request failed, 2 for a missing or bad domain or `--json` (nothing is
/// sent then).
pub fn execute_jobs(
    command: &JobsCommand,
    domain: Option<&str>,
    settings: &Settings,
    io: &mut Io<'_>,
) -> u8 {
    let client = AdminClient::new(settings.endpoints(), settings.passphrase.clone());
    let outcome = instance_domain(domain, settings).and_then(|domain| match command {
        JobsCommand::Run(args) => run_job(&client, io, &domain, args),
    });
    status(outcome, io)
}

/// Runs a `hearth triggers` command on the instance `domain`, like [`execute_jobs`]:
/// 0, 1 when the request failed, 2 for a missing or bad domain.
pub fn execute_triggers(
    command: &TriggersCommand,
    domain: Option<&str>,
    settings: &Settings,
    io: &mut Io<'_>,
) -> u8 {
    let client = AdminClient::new(settings.endpoints(), settings.passphrase.clone());
    let outcome = instance_domain(domain, settings).and_then(|domain| match command {
        TriggersCommand::Ls => {
            let triggers = client.list_triggers(&domain).map_err(Failure::new)?;
            print(io, &output::triggers(&triggers))
        }
        TriggersCommand::Launch { trigger_id } => {
            if trigger_id.trim().is_empty() {
                return Err(Failure::usage("the trigger id is empty"));
            }
            let job = client
                .launch_trigger(&domain, trigger_id)
                .map_err(Failure::new)?;
            print(io, &output::job(&job))
        }
    });
    status(outcome, io)
}

/// Runs a `hearth apps` command on the instance `domain` (the `--domain` flag, else the
/// settings'): 0, 1 when the request failed, 2 for a missing or bad domain or an empty
/// slug (nothing is sent then).
pub fn execute_apps(
    command: &AppsCommand,
    domain: Option<&str>,
    settings: &Settings,
    io: &mut Io<'_>,
) -> u8 {
    let client = AdminClient::new(settings.endpoints(), settings.passphrase.clone());
    let outcome = instance_domain(domain, settings)
        .and_then(|domain| apps_command(&client, io, &domain, AppKind::Webapp, command));
    status(outcome, io)
}

/// Runs a `hearth konnectors` command, like [`execute_apps`]; `run` exits 1 when the
/// konnector's job errored.
pub fn execute_konnectors(
    command: &KonnectorsCommand,
    domain: Option<&str>,
    settings: &Settings,
    io: &mut Io<'_>,
) -> u8 {
    let client = AdminClient::new(settings.endpoints(), settings.passphrase.clone());
    let outcome = instance_domain(domain, settings).and_then(|domain| match command {
        KonnectorsCommand::App(c) => apps_command(&client, io, &domain, AppKind::Konnector, c),
        KonnectorsCommand::Run(args) => run_konnector(&client, io, &domain, args),
    });
    status(outcome, io)
}

/// A slug given on the command line: not empty.
fn slug_arg(slug: &str) -> Result<&str, Failure> {
    match slug.trim() {
        "" => Err(Failure::usage("the slug is empty")),
        slug => Ok(slug),
    }
}

/// A source given on the command line: `None` when absent or blank.
fn source_arg(source: Option<&String>) -> Option<&str> {
    source.map(|s| s.trim()).filter(|s| !s.is_empty())
}

fn apps_command(
    client: &AdminClient,
    io: &mut Io<'_>,
    domain: &str,
    kind: AppKind,
    command: &AppsCommand,
) -> Result<(), Failure> {
    match command {
        AppsCommand::Install(args) => {
            let slug = slug_arg(&args.slug)?;
            // The original's default: the stable channel of the registries.
            let source = source_arg(args.source.as_ref())
                .map_or_else(|| format!("registry://{slug}/stable"), str::to_owned);
            let app = client
                .install_app(domain, kind, slug, Some(&source))
                .map_err(Failure::new)?;
            print(io, &output::app_installed(slug, &app, domain))
        }
        AppsCommand::Update(args) => {
            let slug = slug_arg(&args.slug)?;
            let before = client.get_app(domain, kind, slug).map_err(Failure::new)?;
            let after = client
                .update_app(domain, kind, slug, source_arg(args.source.as_ref()))
                .map_err(Failure::new)?;
            print(io, &output::app_updated(slug, &before, &after))
        }
        AppsCommand::Uninstall(args) => {
            let slug = slug_arg(&args.slug)?;
            client
                .uninstall_app(domain, kind, slug)
                .map_err(Failure::new)?;
            print(io, &format!("{slug} has been uninstalled\n"))
        }
        AppsCommand::Ls => {
            let apps = client.list_apps(domain, kind).map_err(Failure::new)?;
            print(io, &output::apps_table(&apps))
        }
        AppsCommand::Show(args) => {
            let slug = slug_arg(&args.slug)?;
            let app = client.get_app(domain, kind, slug).map_err(Failure::new)?;
            print(io, &output::app(&app))
        }
    }
}

/// `konnectors run`: a `konnector` job with the konnector and its account, waited for.
/// Without `--account-id`, the account of the konnector's triggers, as the original
/// finds it (none: the konnector runs without an account).
fn run_konnector(
    client: &AdminClient,
    io: &mut Io<'_>,
    domain: &str,
    args: &KonnectorRunArgs,
) -> Result<(), Failure> {
    let slug = slug_arg(&args.slug)?;
    let account = match args.account_id.as_deref().map(str::trim) {
        Some("") => return Err(Failure::usage("the account id is empty")),
        Some(id) => Some(id.to_owned()),
        None => {
            let triggers = client.list_triggers(domain).map_err(Failure::new)?;
            let mut accounts: Vec<String> = triggers
                .iter()
                .filter(|t| t.get("worker").and_then(|w| w.as_str()) == Some("konnector"))
                .filter_map(|t| t.get("message"))
                .filter(|m| m.get("konnector").and_then(|k| k.as_str()) == Some(slug))
                .filter_map(|m| m.get("account").and_then(|a| a.as_str()))
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect();
            accounts.sort();
            accounts.dedup();
            if accounts.len() > 1 {
                return Err(Failure::new(
                    "Found multiple konnectors with different accounts: use the --account-id flag",
                ));
            }
            accounts.pop()
        }
    };
    let mut message = serde_json::Map::new();
    message.insert("konnector".into(), slug.into());
    if let Some(account) = account {
        message.insert("account".into(), account.into());
    }
    let arguments = serde_json::Value::Object(message).to_string();
    let job = client
        .push_job(domain, "konnector", &arguments, true)
        .map_err(Failure::new)?;
    finished(io, &job)
}

/// Prints a waited-for job; fails unless it is done.
fn finished(io: &mut Io<'_>, job: &Job) -> Result<(), Failure> {
    print(io, &output::job(job))?;
    match job.state() {
        "done" => Ok(()),
        "errored" => Err(Failure::new(format!(
            "the job errored: {}",
            job.error().unwrap_or("no reason given")
        ))),
        state => Err(Failure::new(format!(
            "the job {} is still {state}: the server stopped waiting for it",
            job.id()
        ))),
    }
}

/// The domain of a `jobs`, `triggers`, `apps` or `konnectors` command: the flag, else `HEARTH_DOMAIN` or
/// `COZY_DOMAIN`, checked like the other commands' domains.
fn instance_domain(flag: Option<&str>, settings: &Settings) -> Result<String, Failure> {
    let domain = flag
        .or(settings.domain.as_deref())
        .ok_or_else(|| Failure::usage("missing --domain flag, or HEARTH_DOMAIN variable"))?;
    check_domain(domain).map_err(Failure::usage)?;
    Ok(domain.to_owned())
}

/// `jobs run`: pushes the job, waits for its end, prints it; fails unless it is done.
fn run_job(
    client: &AdminClient,
    io: &mut Io<'_>,
    domain: &str,
    args: &JobsRunArgs,
) -> Result<(), Failure> {
    if args.worker.trim().is_empty() {
        return Err(Failure::usage("the worker type is empty"));
    }
    let arguments = match &args.json {
        Some(text) => {
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| Failure::usage(format!("--json is not valid JSON: {e}")))?;
            text.as_str()
        }
        None => "{}",
    };
    let job = client
        .push_job(domain, &args.worker, arguments, true)
        .map_err(Failure::new)?;
    finished(io, &job)
}

fn status(outcome: Result<(), Failure>, io: &mut Io<'_>) -> u8 {
    match outcome {
        Ok(()) => 0,
        Err(failure) => {
            if let Some(context) = &failure.context {
                let _ = writeln!(io.err, "{context}");
            }
            if !failure.message.is_empty() {
                let _ = writeln!(io.err, "Error: {}", failure.message);
            }
            failure.status
        }
    }
}

/// `check fs` / `instances fsck`: the problems as JSON lines; exit 1 if there is one.
fn fsck(client: &AdminClient, io: &mut Io<'_>, args: &FsckArgs) -> Result<(), Failure> {
    check_domain(&args.domain).map_err(Failure::new)?;
    let lines = client
        .fsck(&args.domain, &args.query())
        .map_err(Failure::new)?;
    if lines.is_empty() {
        return Ok(());
    }
    print(io, &output::fsck(&lines))?;
    Err(Failure::silent())
}

fn dispatch(
    command: &InstancesCommand,
    settings: &Settings,
    client: &AdminClient,
    io: &mut Io<'_>,
) -> Result<(), Failure> {
    use InstancesCommand as C;
    match command {
        C::Add(add) => {
            refuse_if_disabled(settings, "add")?;
            check_domain(&add.domain).map_err(Failure::new)?;
            if add.dev {
                warn(io, "--dev is deprecated and has no effect");
            }
            print(io, &output::creating(&add.domain))?;
            let created = client
                .create_instance(&add.to_request())
                .map_err(Failure::during(format!(
                    "Failed to create instance for domain {}",
                    add.domain
                )))?;
            print(io, &output::created(&add.domain, &created, &settings.host))
        }
        C::Ls(ls) => {
            if ls.available_fields {
                return print(io, &output::available_fields());
            }
            if let Some(fields) = &ls.fields {
                output::check_fields(fields).map_err(Failure::new)?;
            }
            let instances = client.list_instances().map_err(Failure::new)?;
            let text = match (&ls.fields, ls.json) {
                (fields, true) => output::ls_json(&instances, fields.as_deref()),
                (Some(fields), false) => output::ls_fields(&instances, fields),
                (None, false) => output::ls_table(&instances),
            };
            print(io, &text)
        }
        C::Count => {
            let n = client.count_instances().map_err(Failure::new)?;
            print(io, &output::count(n))
        }
        C::Show(d) => {
            check_domain(&d.domain).map_err(Failure::new)?;
            let instance = client.get_instance(&d.domain).map_err(Failure::new)?;
            print(io, &output::show(&instance))
        }
        C::ShowDbPrefix(d) => {
            check_domain(&d.domain).map_err(Failure::new)?;
            let instance = client.get_instance(&d.domain).map_err(Failure::new)?;
            print(io, &output::db_prefix(&instance))
        }
        C::Modify(m) => {
            check_domain(&m.domain).map_err(Failure::new)?;
            let patch = m.to_patch();
            if patch.deleting.is_some() && patch.has_more_than_deleting() {
                warn(
                    io,
                    "with --deleting the server changes nothing else; run modify again for the other flags",
                );
            }
            let instance = client
                .modify_instance(&m.domain, &patch)
                .map_err(Failure::new)?;
            print(io, &output::show(&instance))
        }
        C::SetDiskQuota { domain, size } => {
            check_domain(domain).map_err(Failure::new)?;
            let patch = crate::api::InstancePatch {
                disk_quota: Some(quota_param(*size)),
                ..Default::default()
            };
            client
                .modify_instance(domain, &patch)
                .map_err(Failure::new)?;
            Ok(())
        }
        C::Destroy { domain, force } => {
            refuse_if_disabled(settings, "destroy")?;
            check_domain(domain).map_err(Failure::new)?;
            if !force {
                confirm_destroy(domain, io)?;
            }
            client
                .destroy_instance(domain)
                .map_err(Failure::during(format!(
                    "An error occurred while destroying instance for domain {domain}"
                )))?;
            print(
                io,
                &format!("Instance for domain {domain} has been destroyed with success\n"),
            )
        }
        C::TokenCli { domain, scopes } => {
            issue(client, io, domain, Audience::Cli, scopes, None, None)
        }
        C::TokenApp {
            domain,
            slug,
            expire,
        } => issue(
            client,
            io,
            domain,
            Audience::App,
            &[],
            Some(slug),
            expire.as_ref(),
        ),
        C::TokenKonnector { domain, slug } => issue(
            client,
            io,
            domain,
            Audience::Konnector,
            &[],
            Some(slug),
            None,
        ),
        C::TokenOauth {
            domain,
            client_id,
            scopes,
            expire,
        } => {
            warn_comma_scopes(io, scopes);
            issue(
                client,
                io,
                domain,
                Audience::Access,
                scopes,
                Some(client_id),
                expire.as_ref(),
            )
        }
        C::RefreshTokenOauth {
            domain,
            client_id,
            scopes,
        } => {
            warn_comma_scopes(io, scopes);
            issue(
                client,
                io,
                domain,
                Audience::Refresh,
                scopes,
                Some(client_id),
                None,
            )
        }
        C::ClientOauth(args) => {
            check_domain(&args.domain).map_err(Failure::new)?;
            let oauth = client
                .create_oauth_client(&args.to_request())
                .map_err(Failure::new)?;
            let text = output::oauth_client(&oauth, args.json).map_err(Failure::new)?;
            print(io, &text)
        }
        C::FindOauthClient {
            domain,
            software_id,
        } => {
            check_domain(domain).map_err(Failure::new)?;
            let oauth = client
                .find_oauth_client(domain, software_id)
                .map_err(Failure::new)?;
            print(io, &output::found_oauth_client(&oauth))
        }
        C::Export { domain, path } => export(client, io, domain, path.as_deref()),
        C::Import { url, domain, force } => import(client, io, domain, url, *force),
        C::Move(args) => move_instance(client, settings, io, args),
        C::CleanSessions(d) => {
            check_domain(&d.domain).map_err(Failure::new)?;
            client.clean_sessions(&d.domain).map_err(Failure::new)
        }
        C::Fsck(args) => {
            warn(
                io,
                "`hearth instances fsck` is deprecated, please use `hearth check fs` instead",
            );
            fsck(client, io, args)
        }
        C::SetPassphrase {
            domain,
            new_passphrase,
        } => {
            check_domain(domain).map_err(Failure::new)?;
            let token = client
                .issue_token(&TokenRequest {
                    domain: domain.clone(),
                    audience: Audience::Cli,
                    scopes: vec!["io.cozy.settings".into()],
                    subject: None,
                    expire: None,
                })
                .map_err(Failure::new)?;
            client
                .set_passphrase(domain, &token, new_passphrase)
                .map_err(Failure::new)?;
            print(
                io,
                &format!("Passphrase has been changed for instance {domain}\n"),
            )
        }
    }
}

fn issue(
    client: &AdminClient,
    io: &mut Io<'_>,
    domain: &str,
    audience: Audience,
    scopes: &[String],
    subject: Option<&String>,
    expire: Option<&String>,
) -> Result<(), Failure> {
    check_domain(domain).map_err(Failure::new)?;
    let token = client
        .issue_token(&TokenRequest {
            domain: domain.to_owned(),
            audience,
            scopes: scopes.to_vec(),
            subject: subject.cloned(),
            expire: expire.cloned(),
        })
        .map_err(Failure::new)?;
    print(io, &output::token(&token))
}

fn warn_comma_scopes(io: &mut Io<'_>, scopes: &[String]) {
    for scope in scopes.iter().filter(|s| s.contains(',')) {
        warn(
            io,
            &format!(
                "scope {scope:?} contains a comma; scopes are separate arguments, separated by spaces"
            ),
        );
    }
}

fn confirm_destroy(domain: &str, io: &mut Io<'_>) -> Result<(), Failure> {
    confirm_typed(
        io,
        &format!(
            "Are you sure you want to DESTROY the instance {domain}? Type the domain to confirm: "
        ),
        domain,
        "destroyed",
    )
}

/// Asks `question`, to which the operator answers by typing `domain` again; the answer
/// is trimmed and compared without regard to case. A mismatch: "nothing was <what>".
fn confirm_typed(io: &mut Io<'_>, question: &str, domain: &str, what: &str) -> Result<(), Failure> {
    print(io, question)?;
    let mut answer = String::new();
    io.input
        .read_line(&mut answer)
        .map_err(|e| Failure::new(format!("cannot read the confirmation: {e}")))?;
    if answer.trim().to_lowercase() == domain.to_lowercase() {
        Ok(())
    } else {
        Err(Failure::new(format!(
            "the domain typed does not match {domain}: nothing was {what}"
        )))
    }
}

fn refuse_if_disabled(settings: &Settings, what: &str) -> Result<(), Failure> {
    match &settings.add_rm_disabled {
        Some(reason) => Err(Failure::new(format!(
            "Sorry, instances {what} is disabled: {reason}"
        ))),
        None => Ok(()),
    }
}

/// `instances import`: asks to type the domain (the instance is reset), runs the
/// import and prints its report; a failed import is an error (exit 1).
fn import(
    client: &AdminClient,
    io: &mut Io<'_>,
    domain: &str,
    url: &str,
    force: bool,
) -> Result<(), Failure> {
    check_domain(domain).map_err(Failure::new)?;
    if !force {
        confirm_typed(
            io,
            &format!(
                "The import will RESET the instance {domain}: all its data will be replaced. Type the domain to confirm: "
            ),
            domain,
            "imported",
        )?;
    }
    let _ = writeln!(io.err, "Importing into {domain}…");
    let spinner = progress_bar(&format!("importing into {domain}"));
    if let Some(s) = &spinner {
        s.enable_steady_tick(std::time::Duration::from_millis(200));
    }
    let record = client.import(domain, url);
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    let record = record.map_err(Failure::new)?;
    let state = record.get("state").and_then(|s| s.as_str()).unwrap_or("");
    if state != "done" {
        let error = record
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or(state);
        return Err(Failure::new(format!("the import failed: {error}")));
    }
    let report = record.get("report").cloned().unwrap_or_default();
    print(
        io,
        &output::import_report(&format!("Import into {domain} done"), &report),
    )
}

/// How often `instances move` asks the target where it is.
const MOVE_POLL: std::time::Duration = if cfg!(test) {
    std::time::Duration::from_millis(20)
} else {
    std::time::Duration::from_secs(1)
};
/// How long the target may look idle before the move counts as aborted (the source
/// blocks it before it answers, so only a lost race takes that long).
const MOVE_GRACE: std::time::Duration = std::time::Duration::from_secs(30);
/// Failed status requests in a row before `instances move` gives up waiting.
const MOVE_STATUS_FAILURES: u32 = 10;

/// `instances move`: the usage of the source and the quota of the target (refused
/// when it does not fit, nothing blocked), a confirmation, a token of the target,
/// the move started on the source, then the target's status polled until the import
/// ends; prints its report, exit 1 when it failed.
fn move_instance(
    client: &AdminClient,
    settings: &Settings,
    io: &mut Io<'_>,
    args: &MoveArgs,
) -> Result<(), Failure> {
    let domain = args.domain.as_str();
    check_domain(domain).map_err(Failure::usage)?;
    let (target_url, authority) = parse_move_target(&args.to).map_err(Failure::usage)?;
    let to_endpoints = Endpoints::new(
        args.to_admin_host
            .as_deref()
            .unwrap_or(&settings.admin_host),
        args.to_admin_port.unwrap_or(settings.admin_port),
        &settings.host,
        settings.port,
    );
    let usage = client.move_usage(domain).map_err(Failure::during(format!(
        "Cannot read the usage of {domain}"
    )))?;
    let same_server = to_endpoints == *client.endpoints();
    let target = match &settings.to_passphrase {
        Some(p) => AdminClient::new(to_endpoints, PassphraseSource::Given(p.clone())),
        None => client.sibling(to_endpoints),
    };
    let (target_domain, before) = target_status(&target, &authority)?;
    if same_server && target_domain.eq_ignore_ascii_case(domain) {
        return Err(Failure::usage(format!(
            "{target_url} is {domain} itself: nothing was moved"
        )));
    }
    if matches!(before.state.as_str(), "waiting" | "importing") {
        return Err(Failure::new(format!(
            "{target_domain} is already receiving a move or an import: nothing was moved"
        )));
    }
    let room = target
        .move_usage(&target_domain)
        .map_err(Failure::during(format!(
            "Cannot read the quota of {target_domain}"
        )))?;
    if let Some(quota) = room.quota
        && quota < usage.used
    {
        return Err(Failure::new(output::quota_too_small(
            domain,
            usage.used,
            &target_domain,
            quota,
        )));
    }
    if !args.yes {
        confirm_typed(
            io,
            &format!(
                "The move will RESET the instance {target_domain} with the data of {domain}, \
                 and {domain} will be destroyed some days later. Type {domain} to confirm: "
            ),
            domain,
            "moved",
        )?;
    }
    let token = target
        .move_token(&target_domain)
        .map_err(Failure::during(format!(
            "Cannot get a token of {target_domain}"
        )))?;
    let job = client
        .start_move(
            domain,
            &MoveRequest {
                target_url: target_url.clone(),
                token,
                ignore_vault: args.ignore_vault,
            },
        )
        .map_err(Failure::during(format!(
            "Cannot start the move of {domain}"
        )))?;
    let _ = writeln!(
        io.err,
        "Moving {domain} to {target_url} (export job {job})…"
    );
    let spinner = spinner(&output::move_progress("waiting", domain, &target_domain));
    let end = wait_for_move(&target, &target_domain, &before, |state| {
        if let Some(s) = &spinner {
            s.set_message(output::move_progress(state, domain, &target_domain));
        }
    });
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    let end = end.map_err(|message| {
        Failure::new(format!(
            "{message} (the source's export job is {job}; see the logs of both servers)"
        ))
    })?;
    if end.state != "done" {
        let error = end.error.as_deref().unwrap_or("unknown error");
        return Err(Failure::new(format!("the move failed: {error}")));
    }
    let mut out = output::import_report(
        &format!("Move of {domain} to {target_url} done"),
        &end.report.unwrap_or_default(),
    );
    out.push_str(&format!(
        "{domain} now sends its visitors to {target_url}; it is destroyed once its deletion \
         date has passed (see `hearth instances ls`)\n"
    ));
    print(io, &out)
}

/// The status of the target instance, named by its URL's `host:port`, or by the host
/// alone when no instance has the port in its domain.
fn target_status(target: &AdminClient, authority: &str) -> Result<(String, MoveStatus), Failure> {
    let first = target.move_status(authority);
    let bare = authority.rsplit_once(':').map(|(host, _)| host);
    let (domain, answer) = match (first, bare) {
        (Err(crate::ApiError::Server { status: 404, .. }), Some(host)) => {
            (host.to_owned(), target.move_status(host))
        }
        (answer, _) => (authority.to_owned(), answer),
    };
    let status = answer.map_err(Failure::during(format!(
        "Cannot find the target instance {authority}"
    )))?;
    Ok((domain, status))
}

/// Polls the target until its import ends: its last status (`done` or `errored`),
/// or why waiting stopped.
fn wait_for_move(
    target: &AdminClient,
    domain: &str,
    before: &MoveStatus,
    mut progress: impl FnMut(&str),
) -> Result<MoveStatus, String> {
    let started = std::time::Instant::now();
    let mut active = false;
    let mut failures = 0;
    loop {
        std::thread::sleep(MOVE_POLL);
        let status = match target.move_status(domain) {
            Ok(s) => {
                failures = 0;
                s
            }
            Err(e) => {
                failures += 1;
                if failures >= MOVE_STATUS_FAILURES {
                    return Err(format!("cannot follow the move on {domain}: {e}"));
                }
                continue;
            }
        };
        let fresh = status.job_id.is_some() && status.job_id != before.job_id;
        match status.state.as_str() {
            "waiting" | "importing" => {
                active = true;
                progress(&status.state);
            }
            "done" | "errored" if fresh => return Ok(status),
            // Idle, or the outcome of an earlier import: the source gave up (its
            // export failed and it unblocked the target) or has not blocked it yet.
            _ if active || started.elapsed() > MOVE_GRACE => {
                return Err(format!(
                    "the move stopped: {domain} is no longer waiting for the data"
                ));
            }
            _ => {}
        }
    }
}

/// A spinner with a message and the time elapsed, on a terminal only.
fn spinner(message: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    Some(bar)
}

/// `instances export`: without a directory, the export job is queued and the owner
/// gets the mail; with one, the job runs as an admin request (no mail), then every
/// part is downloaded there, each with a progress bar on a terminal and a line on
/// stderr when it is written.
fn export(
    client: &AdminClient,
    io: &mut Io<'_>,
    domain: &str,
    dir: Option<&std::path::Path>,
) -> Result<(), Failure> {
    check_domain(domain).map_err(Failure::new)?;
    let Some(dir) = dir else {
        client
            .start_export(domain, false, false)
            .map_err(Failure::new)?;
        return print(
            io,
            &format!("Export of {domain} started: its owner will receive a mail with the link\n"),
        );
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::new(format!("cannot create {}: {e}", dir.display())))?;
    let job = client
        .start_export(domain, true, true)
        .map_err(Failure::new)?;
    if job.state() != "done" {
        let error = job.0.get("error").and_then(|e| e.as_str()).unwrap_or("");
        return Err(Failure::new(format!("the export failed: {error}")));
    }
    let exports = client.list_exports(domain).map_err(Failure::new)?;
    let doc = exports
        .iter()
        .find(|d| d.get("state").and_then(|s| s.as_str()) == Some("done"))
        .ok_or_else(|| Failure::new("the export finished but cannot be found"))?;
    let id = doc.get("_id").and_then(|v| v.as_str()).unwrap_or_default();
    let cursors: Vec<String> = doc
        .get("parts_cursors")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    let count = cursors.len() + 1;
    let parts = std::iter::once(None).chain(cursors.iter().map(|c| Some(c.as_str())));
    for (n, cursor) in parts.enumerate() {
        let name = if count == 1 {
            format!("{domain}.zip")
        } else {
            format!("{domain} - part{n:03}.zip")
        };
        let path = dir.join(&name);
        let file = std::fs::File::create(&path)
            .map_err(|e| Failure::new(format!("cannot create {}: {e}", path.display())))?;
        let mut out = std::io::BufWriter::new(file);
        // A bar on a terminal (parts are streamed: their size is not known ahead);
        // elsewhere, the line below when the part is written.
        let bar = progress_bar(&format!("{name} ({}/{count})", n + 1));
        let mut progress = |bytes: u64| {
            if let Some(b) = &bar {
                b.set_position(bytes);
            }
        };
        let total = client
            .download_export_part(domain, id, cursor, &mut out, &mut progress)
            .map_err(Failure::new)?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        out.flush()
            .and_then(|()| out.get_ref().sync_all())
            .map_err(|e| Failure::new(format!("cannot write {}: {e}", path.display())))?;
        let _ = writeln!(
            io.err,
            "{name}: {:.1} MiB, done ({}/{count})",
            total as f64 / 1_048_576.0,
            n + 1
        );
    }
    print(
        io,
        &format!(
            "Export of {domain} written to {} in {count} part(s)\n",
            dir.display()
        ),
    )
}

/// A progress bar on stderr when it is a terminal (bytes and rate), else `None`.
fn progress_bar(message: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} {msg}: {bytes} ({bytes_per_sec}, {elapsed})",
    ) {
        bar.set_style(style);
    }
    bar.set_message(message.to_owned());
    Some(bar)
}

fn print(io: &mut Io<'_>, text: &str) -> Result<(), Failure> {
    io.out
        .write_all(text.as_bytes())
        .and_then(|()| io.out.flush())
        .map_err(|e| Failure::new(format!("cannot write the output: {e}")))
}

fn warn(io: &mut Io<'_>, message: &str) {
    let _ = writeln!(io.err, "Warning: {message}");
}

#[cfg(test)]
mod tests {
    //! Commands against a stand-in admin API on loopback that answers canned responses
    //! and records what it was sent.

    use std::io::{BufReader, Read};
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::PassphraseSource;
    use crate::commands::InstancesArgs;

    #[derive(Debug, Parser)]
    struct Test {
        #[command(flatten)]
        args: InstancesArgs,
    }

    /// A request as the stand-in saw it.
    #[derive(Debug)]
    struct Seen {
        /// `METHOD /path?query`
        line: String,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// Serves `answers` in order, one connection each, then stops; returns its port and
    /// what it received.
    fn stand_in(answers: Vec<(u16, &'static str, String)>) -> (u16, mpsc::Receiver<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for (status, content_type, body) in answers {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                serve_one(stream, status, content_type, &body, &tx);
            }
        });
        (port, rx)
    }

    /// Reads one request, reports it on `tx` (before answering, so that the client
    /// never sees an answer to a request not yet reported), then answers.
    fn serve_one(
        mut stream: TcpStream,
        status: u16,
        content_type: &str,
        body: &str,
        tx: &mpsc::Sender<Seen>,
    ) {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut line = String::new();
        reader.read_line(&mut line).expect("request line");
        let line = line.trim_end().trim_end_matches(" HTTP/1.1").to_owned();
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).expect("header");
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut raw = vec![0; length];
        reader.read_exact(&mut raw).expect("body");
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tx.send(Seen {
            line,
            headers,
            body: String::from_utf8_lossy(&raw).into_owned(),
        });
        stream.write_all(response.as_bytes()).expect("write");
    }

    fn settings(admin_port: u16, port: u16) -> Settings {
        Settings {
            admin_host: "127.0.0.1".into(),
            admin_port,
            host: "127.0.0.1".into(),
            port,
            passphrase: PassphraseSource::Given("s3cret".into()),
            add_rm_disabled: None,
            domain: None,
            to_passphrase: None,
        }
    }

    /// Runs `hearth instances <args>`: (status, stdout, stderr).
    fn cli(settings: &Settings, args: &[&str], stdin: &str) -> (u8, String, String) {
        let argv = std::iter::once("instances").chain(args.iter().copied());
        let parsed = Test::try_parse_from(argv).expect("arguments");
        capture(stdin, |io| execute(&parsed.args.command, settings, io))
    }

    /// Runs a command on in-memory stdin/stdout/stderr: (status, stdout, stderr).
    fn capture(stdin: &str, run: impl FnOnce(&mut Io<'_>) -> u8) -> (u8, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut input = stdin.as_bytes();
        let status = run(&mut Io {
            out: &mut out,
            err: &mut err,
            input: &mut input,
        });
        (
            status,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }

    /// A port nothing listens on.
    fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }

    const JSONAPI: &str = "application/vnd.api+json";

    fn instance_body(attributes: &str) -> String {
        format!(
            r#"{{"data":{{"type":"instances","id":"0123456789abcdef0123456789abcdef","attributes":{attributes},"meta":{{"rev":"1-abc"}},"links":{{"self":"/instances/0123456789abcdef0123456789abcdef"}}}}}}"#
        )
    }

    #[test]
    fn add_prints_the_registration_link() {
        let body = instance_body(
            r#"{"domain":"alice.localhost:8080","locale":"fr","register_token":"q83vEjRWeJCrze8SNFZ4kA==","password_defined":false,"indexes_version":1}"#,
        )
        .replace(r#""meta":{"rev":"1-abc"}"#, r#""meta":{"rev":"1-abc","apps_not_installed":["photos"]}"#);
        let (port, seen) = stand_in(vec![(201, JSONAPI, body)]);
        let (status, out, err) = cli(
            &settings(port, 1),
            &[
                "add",
                "alice.localhost:8080",
                "--locale",
                "fr",
                "--tos",
                "1.0.0",
                "--apps",
                "drive,photos",
            ],
            "",
        );
        assert_eq!((status, err.as_str()), (0, ""));
        assert_eq!(
            out,
            "Creating instance for domain \"alice.localhost:8080\": please wait...\n\
             Instance created with success for domain alice.localhost:8080\n\
             Registration token: \"abcdef1234567890abcdef1234567890\"\n\
             Define your password by visiting http://alice.localhost:8080/?registerToken=abcdef1234567890abcdef1234567890\n\
             /!\\ Application photos has not been installed\n"
        );
        let request = seen.recv().expect("request");
        assert_eq!(
            request.line,
            "POST /instances?Domain=alice.localhost%3A8080&Locale=fr&TOSSigned=1.0.0&Apps=drive%2Cphotos&SwiftLayout=-1&CouchCluster=-1"
        );
        assert_eq!(request.header("authorization"), Some("Basic OnMzY3JldA=="));
    }

    #[test]
    fn add_conflict() {
        let body = r#"{"errors":[{"status":"409","title":"Conflict","detail":"Instance already exists","source":{}}]}"#;
        let (port, _seen) = stand_in(vec![(409, JSONAPI, body.into())]);
        let (status, out, err) = cli(&settings(port, 1), &["add", "a.example"], "");
        assert_eq!(status, 1);
        assert_eq!(
            out,
            "Creating instance for domain \"a.example\": please wait...\n"
        );
        assert_eq!(
            err,
            "Failed to create instance for domain a.example\nError: Conflict: Instance already exists\n"
        );
    }

    #[test]
    fn invalid_domains_send_nothing() {
        // Nothing listens: a request would fail differently.
        let s = settings(closed_port(), closed_port());
        let cases: [(&[&str], &str); 4] = [
            (&["add", "a b.example"], "a b.example"),
            (&["modify", "me@a.example", "--blocked"], "me@a.example"),
            (&["destroy", "--force", "a/b"], "a/b"),
            (&["clean-sessions", "a?b"], "a?b"),
        ];
        for (args, domain) in cases {
            let (status, out, err) = cli(&s, args, "");
            assert_eq!(status, 1, "{args:?}");
            assert_eq!(out, "", "{args:?}");
            assert_eq!(err, format!("Error: Invalid domain: {domain}\n"));
        }
    }

    #[test]
    fn unreachable_admin_api() {
        let port = closed_port();
        let (status, out, err) = cli(&settings(port, 1), &["count"], "");
        assert_eq!((status, out.as_str()), (1, ""));
        assert_eq!(
            err,
            format!(
                "Error: cannot reach the admin API at http://127.0.0.1:{port}: connection refused (is `hearth serve` running?)\n"
            )
        );
    }

    #[test]
    fn wrong_passphrase() {
        let (port, _seen) = stand_in(vec![(
            403,
            "application/json",
            r#"{"error":"bad passphrase"}"#.into(),
        )]);
        let (status, _, err) = cli(&settings(port, 1), &["ls"], "");
        assert_eq!(status, 1);
        assert_eq!(
            err,
            "Error: the admin API refused the passphrase (403 bad passphrase)\n"
        );
    }

    #[test]
    fn missing_passphrase_without_terminal() {
        let (port, _seen) = stand_in(vec![]);
        let s = Settings {
            passphrase: PassphraseSource::Missing,
            ..settings(port, 1)
        };
        let (status, _, err) = cli(&s, &["count"], "");
        assert_eq!(status, 1);
        assert!(
            err.starts_with("Error: no admin passphrase: set HEARTH_ADMIN_PASSPHRASE"),
            "{err}"
        );
    }

    #[test]
    fn count_and_ls_follow_pages() {
        let page1 = r#"{"data":[{"type":"instances","id":"1","attributes":{"domain":"a.example","locale":"en","indexes_version":2}}],"meta":{"count":1},"links":{"next":"/instances?page[limit]=1&page[cursor]=2"}}"#;
        let page2 = r#"{"data":[{"type":"instances","id":"2","attributes":{"domain":"bb.example","locale":"fr","indexes_version":2,"onboarding_finished":true,"prefix":"cozyb"}}],"meta":{"count":1}}"#;
        let (port, seen) = stand_in(vec![
            (200, "application/json", r#"{"count":2}"#.into()),
            (200, JSONAPI, page1.into()),
            (200, JSONAPI, page2.into()),
        ]);
        let s = settings(port, 1);
        assert_eq!(
            cli(&s, &["count"], ""),
            (0, "2 instances\n".into(), String::new())
        );
        let (status, out, err) = cli(&s, &["list"], "");
        assert_eq!((status, err.as_str()), (0, ""));
        assert_eq!(
            out,
            "a.example   en  unlimited  pending    v2         a-example\n\
             bb.example  fr  unlimited  onboarded  v2  cozyb  cozyb\n"
        );
        let lines: Vec<String> = seen.try_iter().map(|s| s.line).collect();
        assert_eq!(
            lines,
            [
                "GET /instances/count",
                "GET /instances",
                "GET /instances?page[limit]=1&page[cursor]=2"
            ]
        );
    }

    #[test]
    fn ls_refuses_unknown_fields_before_asking() {
        let s = settings(closed_port(), 1);
        let (status, _, err) = cli(&s, &["ls", "--fields", "domain,nope"], "");
        assert_eq!(status, 1);
        assert_eq!(
            err,
            "Error: unknown field \"nope\" (see `hearth instances ls --available-fields`)\n"
        );
        let (status, out, _) = cli(&s, &["ls", "--available-fields"], "");
        assert_eq!((status, out.lines().last()), (0, Some("db_prefix")));
    }

    #[test]
    fn modify_sends_only_the_flags_given_and_prints_like_show() {
        let body = instance_body(
            r#"{"domain":"a.example","locale":"en","blocked":true,"blocking_reason":"PAYMENT_FAILED","onboarding_finished":true,"password_defined":true,"indexes_version":3,"session_secret":"x"}"#,
        );
        let (port, seen) = stand_in(vec![(200, JSONAPI, body)]);
        let (status, out, err) = cli(
            &settings(port, 1),
            &[
                "modify",
                "a.example",
                "--blocked",
                "--blocking-reason",
                "PAYMENT_FAILED",
            ],
            "",
        );
        assert_eq!((status, err.as_str()), (0, ""));
        assert_eq!(
            out,
            r#"{
  "id": "0123456789abcdef0123456789abcdef",
  "meta": {
    "rev": "1-abc"
  },
  "attributes": {
    "domain": "a.example",
    "locale": "en",
    "blocked": true,
    "onboarding_finished": true,
    "password_defined": true,
    "indexes_version": 3,
    "passphrase_reset_token": null,
    "passphrase_reset_time": "0001-01-01T00:00:00Z"
  }
}
"#
        );
        assert_eq!(
            seen.recv().expect("request").line,
            "PATCH /instances/a.example?BlockingReason=PAYMENT_FAILED&Blocked=true"
        );
    }

    #[test]
    fn set_disk_quota_zero_removes_and_prints_nothing() {
        let (port, seen) = stand_in(vec![(
            200,
            JSONAPI,
            instance_body(r#"{"domain":"a.example"}"#),
        )]);
        assert_eq!(
            cli(
                &settings(port, 1),
                &["set-disk-quota", "a.example", "0"],
                ""
            ),
            (0, String::new(), String::new())
        );
        assert_eq!(
            seen.recv().expect("request").line,
            "PATCH /instances/a.example?DiskQuota=-1"
        );
    }

    #[test]
    fn destroy_asks_first() {
        let (port, seen) = stand_in(vec![(204, "text/plain", String::new())]);
        let s = settings(port, 1);
        // A wrong answer: nothing is sent.
        let (status, out, err) = cli(&s, &["rm", "Alice.Example"], "bob.example\n");
        assert_eq!(status, 1);
        assert_eq!(
            out,
            "Are you sure you want to DESTROY the instance Alice.Example? Type the domain to confirm: "
        );
        assert_eq!(
            err,
            "Error: the domain typed does not match Alice.Example: nothing was destroyed\n"
        );
        // Case and surrounding spaces do not matter.
        let (status, out, err) = cli(&s, &["destroy", "Alice.Example"], "  alice.example \n");
        assert_eq!((status, err.as_str()), (0, ""));
        assert!(
            out.ends_with(
                "confirm: Instance for domain Alice.Example has been destroyed with success\n"
            ),
            "{out}"
        );
        let request = seen.recv().expect("request");
        assert_eq!(request.line, "DELETE /instances/Alice.Example");
        assert!(seen.try_recv().is_err(), "one request only");
    }

    #[test]
    fn destroy_failure() {
        let body = r#"{"errors":[{"status":"409","title":"Conflict","detail":"The deletion has already been requested: run `hearth instances modify --deleting=false a.example` to retry","source":{}}]}"#;
        let (port, _seen) = stand_in(vec![(409, JSONAPI, body.into())]);
        let (status, out, err) = cli(&settings(port, 1), &["destroy", "--force", "a.example"], "");
        assert_eq!((status, out.as_str()), (1, ""));
        assert_eq!(
            err,
            "An error occurred while destroying instance for domain a.example\n\
             Error: Conflict: The deletion has already been requested: run `hearth instances modify --deleting=false a.example` to retry\n"
        );
    }

    #[test]
    fn add_and_destroy_can_be_disabled() {
        let s = Settings {
            add_rm_disabled: Some("use the back-office".into()),
            ..settings(closed_port(), 1)
        };
        let (status, _, err) = cli(&s, &["add", "a.example"], "");
        assert_eq!(
            (status, err.as_str()),
            (
                1,
                "Error: Sorry, instances add is disabled: use the back-office\n"
            )
        );
        let (status, _, err) = cli(&s, &["destroy", "--force", "a.example"], "");
        assert_eq!(
            (status, err.as_str()),
            (
                1,
                "Error: Sorry, instances destroy is disabled: use the back-office\n"
            )
        );
    }

    #[test]
    fn tokens_alone_on_stdout() {
        let (port, seen) = stand_in(vec![
            (200, "text/plain", "tok.en.1\n".into()),
            (200, "text/plain", "tok.en.2".into()),
        ]);
        let s = settings(port, 1);
        assert_eq!(
            cli(
                &s,
                &["token-app", "a.example", "drive", "--expire", "30m"],
                ""
            ),
            (0, "tok.en.1\n".into(), String::new())
        );
        let (status, out, err) = cli(
            &s,
            &[
                "token-oauth",
                "a.example",
                "client-1",
                "io.cozy.files,io.cozy.apps",
            ],
            "",
        );
        assert_eq!((status, out.as_str()), (0, "tok.en.2\n"));
        assert_eq!(
            err,
            "Warning: scope \"io.cozy.files,io.cozy.apps\" contains a comma; scopes are separate arguments, separated by spaces\n"
        );
        let lines: Vec<String> = seen.try_iter().map(|s| s.line).collect();
        assert_eq!(
            lines,
            [
                "POST /instances/token?Domain=a.example&Audience=app&Subject=drive&Expire=30m",
                "POST /instances/token?Domain=a.example&Audience=access&Scope=io.cozy.files%2Cio.cozy.apps&Subject=client-1",
            ]
        );
    }

    #[test]
    fn client_oauth_prints_the_id() {
        let client = r#"{"client_id":"c1","client_secret":"s","software_id":"github.com/x"}"#;
        let (port, seen) = stand_in(vec![(200, "application/json", client.into())]);
        let (status, out, _) = cli(
            &settings(port, 1),
            &[
                "client-oauth",
                "a.example",
                "http://localhost/cb",
                "My app",
                "github.com/x",
                "--allow-login-scope",
            ],
            "",
        );
        assert_eq!((status, out.as_str()), (0, "c1\n"));
        assert_eq!(
            seen.recv().expect("request").line,
            "POST /instances/oauth_client?Domain=a.example&RedirectURI=http%3A%2F%2Flocalhost%2Fcb&ClientName=My%20app&SoftwareID=github.com%2Fx&AllowLoginScope=true"
        );
    }

    #[test]
    fn set_passphrase_goes_to_the_public_server_as_the_instance() {
        let (admin_port, admin_seen) = stand_in(vec![(200, "text/plain", "cli-token".into())]);
        let (public_port, public_seen) = stand_in(vec![(204, "text/plain", String::new())]);
        let (status, out, err) = cli(
            &settings(admin_port, public_port),
            &["set-passphrase", "a.example", "n3w pass+word"],
            "",
        );
        assert_eq!((status, err.as_str()), (0, ""));
        assert_eq!(out, "Passphrase has been changed for instance a.example\n");
        assert_eq!(
            admin_seen.recv().expect("token request").line,
            "POST /instances/token?Domain=a.example&Audience=cli&Scope=io.cozy.settings"
        );
        let put = public_seen.recv().expect("passphrase request");
        assert_eq!(put.line, "PUT /settings/passphrase");
        assert_eq!(put.header("host"), Some("a.example"));
        assert_eq!(put.header("authorization"), Some("Bearer cli-token"));
        assert_eq!(put.header("content-type"), Some("application/json"));
        assert_eq!(
            put.body,
            r#"{"new_passphrase":"n3w pass+word","force":true}"#
        );
    }

    #[derive(Debug, Parser)]
    struct JobsTest {
        #[command(flatten)]
        args: crate::JobsArgs,
    }

    #[derive(Debug, Parser)]
    struct TriggersTest {
        #[command(flatten)]
        args: crate::TriggersArgs,
    }

    /// Runs `hearth jobs <args>` or `hearth triggers <args>`: (status, stdout, stderr).
    fn cli_group(settings: &Settings, group: &str, args: &[&str]) -> (u8, String, String) {
        let argv = std::iter::once(group).chain(args.iter().copied());
        if group == "jobs" {
            let parsed = JobsTest::try_parse_from(argv).expect("arguments");
            let domain = parsed.args.instance.domain.as_deref();
            capture("", |io| {
                execute_jobs(&parsed.args.command, domain, settings, io)
            })
        } else {
            let parsed = TriggersTest::try_parse_from(argv).expect("arguments");
            let domain = parsed.args.instance.domain.as_deref();
            capture("", |io| {
                execute_triggers(&parsed.args.command, domain, settings, io)
            })
        }
    }

    const JOB_DONE: &str = r#"{"_id":"j1","domain":"a.example:8080","worker":"log","message":{"hello":"world"},"state":"done","queued_at":"2025-01-01T00:00:00Z","finished_at":"2025-01-01T00:00:01Z"}"#;

    #[test]
    fn import_asks_waits_and_prints_the_report() {
        let done = r#"{"_id":"j1","domain":"a.example","state":"done","report":{"doctypes":{"io.cozy.contacts":{"archive_docs":2,"archive_bytes":40,"imported_docs":2,"imported_bytes":40,"skipped":0},"io.cozy.settings":{"archive_docs":1,"archive_bytes":9,"imported_docs":0,"imported_bytes":0,"skipped":1}},"apps_not_installed":["drive"],"parts":1}}"#;
        let (port, seen) = stand_in(vec![(200, "application/json", done.into())]);
        let url = "https://b.example/move/exports/MAC";
        // Typing another domain changes nothing and sends nothing.
        let (status, _, err) = cli(
            &settings(port, 1),
            &["import", url, "--domain", "a.example"],
            "b.example\n",
        );
        assert_eq!(status, 1);
        assert!(err.contains("nothing was imported"), "{err}");
        let (status, out, err) = cli(
            &settings(port, 1),
            &["import", url, "--domain", "a.example"],
            "a.example\n",
        );
        assert_eq!(status, 0, "{err}");
        assert!(out.contains("RESET the instance a.example"), "{out}");
        assert!(
            out.contains("io.cozy.contacts: 2 of 2 imported (40 of 40 bytes)"),
            "{out}"
        );
        assert!(
            out.contains("io.cozy.settings: 0 of 1 imported (0 of 9 bytes), 1 skipped"),
            "{out}"
        );
        assert!(out.contains("not installed: drive"), "{out}");
        assert_eq!(
            seen.recv().expect("request").line,
            "POST /instances/a.example/import?manifest_url=https%3A%2F%2Fb.example%2Fmove%2Fexports%2FMAC&wait=true"
        );
        // A failed import: its error, exit 1.
        let failed =
            r#"{"_id":"j2","state":"errored","error":"the part 0 could not be downloaded"}"#;
        let (port, _seen) = stand_in(vec![(200, "application/json", failed.into())]);
        let (status, _, err) = cli(
            &settings(port, 1),
            &["import", url, "--domain", "a.example", "--force"],
            "",
        );
        assert_eq!(status, 1);
        assert!(
            err.contains("Error: the import failed: the part 0 could not be downloaded"),
            "{err}"
        );
    }

    #[test]
    fn export_downloads_every_part() {
        let job = r#"{"_id":"j1","domain":"a.example","worker":"export","state":"done","queued_at":"2025-01-01T00:00:00Z"}"#;
        let list = r#"[{"_id":"e1","domain":"a.example","state":"done","parts_cursors":["io.cozy.files/f2"],"created_at":"x","expires_at":"y","total_size":3}]"#;
        let (port, seen) = stand_in(vec![
            (202, "application/json", job.into()),
            (200, "application/json", list.into()),
            (200, "application/zip", "part zero".into()),
            (200, "application/zip", "part one".into()),
        ]);
        let path =
            std::env::temp_dir().join(format!("hearth-cli-export-{}-{port}", std::process::id()));
        let path_arg = path.to_string_lossy().into_owned();
        let (status, out, err) = cli(
            &settings(port, 1),
            &["export", "--domain", "a.example", "--path", &path_arg],
            "",
        );
        assert_eq!(status, 0, "{err}");
        assert!(out.contains("in 2 part(s)"), "{out}");
        assert!(
            err.contains("a.example - part001.zip: 0.0 MiB, done (2/2)"),
            "{err}"
        );
        let lines: Vec<String> = (0..4).map(|_| seen.recv().expect("request").line).collect();
        assert_eq!(
            lines,
            [
                "POST /instances/a.example/export?admin-req=true&wait=true",
                "GET /instances/a.example/exports",
                "GET /instances/a.example/exports/e1/data",
                "GET /instances/a.example/exports/e1/data?cursor=io.cozy.files%2Ff2",
            ]
        );
        let read = |n: &str| std::fs::read_to_string(path.join(n)).expect("part");
        assert_eq!(read("a.example - part000.zip"), "part zero");
        assert_eq!(read("a.example - part001.zip"), "part one");
        let _ = std::fs::remove_dir_all(&path);
    }

    #[test]
    fn jobs_run_waits_and_prints_the_job() {
        let (port, seen) = stand_in(vec![(202, JSONAPI, JOB_DONE.into())]);
        let (status, out, err) = cli_group(
            &settings(port, 1),
            "jobs",
            // The flags between the positional arguments, as clap allows.
            &[
                "run",
                "--domain",
                "a.example:8080",
                "log",
                "--json",
                r#"{"hello": "world"}"#,
            ],
        );
        assert_eq!((status, err.as_str()), (0, ""));
        assert_eq!(
            out,
            "{\n  \"_id\": \"j1\",\n  \"domain\": \"a.example:8080\",\n  \"worker\": \"log\",\n  \
             \"message\": {\n    \"hello\": \"world\"\n  },\n  \"state\": \"done\",\n  \
             \"queued_at\": \"2025-01-01T00:00:00Z\",\n  \"finished_at\": \"2025-01-01T00:00:01Z\"\n}\n"
        );
        let request = seen.recv().expect("request");
        assert_eq!(
            request.line,
            "POST /instances/a.example%3A8080/jobs/queue/log?wait=true"
        );
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("authorization"), Some("Basic OnMzY3JldA=="));
        // The arguments as typed.
        assert_eq!(request.body, r#"{"hello": "world"}"#);
    }

    #[test]
    fn jobs_run_without_json_sends_an_empty_object() {
        let (port, seen) = stand_in(vec![(202, JSONAPI, JOB_DONE.into())]);
        let s = Settings {
            domain: Some("env.example".into()),
            ..settings(port, 1)
        };
        let (status, _, err) = cli_group(&s, "jobs", &["push", "clean-sessions"]);
        assert_eq!((status, err.as_str()), (0, ""));
        let request = seen.recv().expect("request");
        assert_eq!(
            request.line,
            "POST /instances/env.example/jobs/queue/clean-sessions?wait=true"
        );
        assert_eq!(request.body, "{}");
    }

    #[test]
    fn jobs_run_errored_exits_1() {
        let body =
            r#"{"_id":"j2","worker":"sendmail","state":"errored","error":"451 4.3.0 try later"}"#;
        let (port, _seen) = stand_in(vec![(202, JSONAPI, body.into())]);
        let (status, out, err) = cli_group(
            &settings(port, 1),
            "jobs",
            &["run", "sendmail", "--domain", "a.example"],
        );
        assert_eq!(status, 1);
        assert!(out.contains("\"state\": \"errored\""), "{out}");
        assert_eq!(err, "Error: the job errored: 451 4.3.0 try later\n");

        let body = r#"{"_id":"j3","worker":"sendmail","state":"running"}"#;
        let (port, _seen) = stand_in(vec![(202, JSONAPI, body.into())]);
        let (status, _, err) = cli_group(
            &settings(port, 1),
            "jobs",
            &["run", "sendmail", "--domain", "a.example"],
        );
        assert_eq!(status, 1);
        assert_eq!(
            err,
            "Error: the job j3 is still running: the server stopped waiting for it\n"
        );
    }

    #[test]
    fn jobs_run_unknown_worker() {
        let body =
            r#"{"errors":[{"status":"404","title":"Not Found","detail":"unknown worker nope"}]}"#;
        let (port, _seen) = stand_in(vec![(404, JSONAPI, body.into())]);
        let (status, out, err) = cli_group(
            &settings(port, 1),
            "jobs",
            &["run", "nope", "--domain", "a.example"],
        );
        assert_eq!((status, out.as_str()), (1, ""));
        assert_eq!(err, "Error: Not Found: unknown worker nope\n");
    }

    #[test]
    fn jobs_and_triggers_refuse_bad_input_before_any_request() {
        // Nothing listens: a request would fail with status 1.
        let s = settings(closed_port(), closed_port());
        let (status, out, err) = cli_group(
            &s,
            "jobs",
            &["run", "log", "--domain", "a.example", "--json", "{bad"],
        );
        assert_eq!((status, out.as_str()), (2, ""));
        assert!(
            err.starts_with("Error: --json is not valid JSON: "),
            "{err}"
        );
        let (status, _, err) = cli_group(&s, "jobs", &["run", "log", "--json", "{}"]);
        assert_eq!(status, 2);
        assert_eq!(
            err,
            "Error: missing --domain flag, or HEARTH_DOMAIN variable\n"
        );
        let (status, _, err) = cli_group(&s, "triggers", &["ls", "--domain", "a b"]);
        assert_eq!(status, 2);
        assert_eq!(err, "Error: Invalid domain: a b\n");
        let (status, _, err) = cli_group(&s, "triggers", &["launch", "--domain", "a.example", ""]);
        assert_eq!(status, 2);
        assert_eq!(err, "Error: the trigger id is empty\n");
    }

    #[test]
    fn triggers_ls_and_launch() {
        let list = r#"[{"_id":"t1","type":"@cron","arguments":"0 0 0 * * *","worker":"log","current_state":{"status":"queued"}}]"#;
        let (port, seen) = stand_in(vec![
            (200, JSONAPI, list.into()),
            (200, JSONAPI, "[]".into()),
            (
                201,
                JSONAPI,
                r#"{"_id":"j9","worker":"log","trigger_id":"t1","state":"queued"}"#.into(),
            ),
        ]);
        let s = settings(port, 1);
        let (status, out, err) = cli_group(&s, "triggers", &["ls", "--domain", "a.example"]);
        assert_eq!((status, err.as_str()), (0, ""));
        assert_eq!(
            out,
            "[\n  {\n    \"_id\": \"t1\",\n    \"type\": \"@cron\",\n    \"arguments\": \"0 0 0 * * *\",\n    \
             \"worker\": \"log\",\n    \"current_state\": {\n      \"status\": \"queued\"\n    }\n  }\n]\n"
        );
        assert_eq!(
            seen.recv().expect("request").line,
            "GET /instances/a.example/triggers"
        );
        let (status, out, _) = cli_group(&s, "triggers", &["--domain", "a.example", "list"]);
        assert_eq!((status, out.as_str()), (0, "[]\n"));
        seen.recv().expect("request");
        let (status, out, err) =
            cli_group(&s, "triggers", &["launch", "t1", "--domain", "a.example"]);
        assert_eq!((status, err.as_str()), (0, ""));
        assert!(out.contains("\"trigger_id\": \"t1\""), "{out}");
        assert_eq!(
            seen.recv().expect("request").line,
            "POST /instances/a.example/triggers/t1/launch"
        );
    }

    #[derive(Debug, Parser)]
    struct AppsTest {
        #[command(flatten)]
        args: crate::AppsArgs,
    }

    #[derive(Debug, Parser)]
    struct KonnectorsTest {
        #[command(flatten)]
        args: crate::KonnectorsArgs,
    }

    /// Runs `hearth apps <args>` or `hearth konnectors <args>`: (status, stdout, stderr).
    fn cli_apps(settings: &Settings, group: &str, args: &[&str]) -> (u8, String, String) {
        let argv = std::iter::once(group).chain(args.iter().copied());
        if group == "apps" {
            let parsed = AppsTest::try_parse_from(argv).expect("arguments");
            let domain = parsed.args.instance.domain.as_deref();
            capture("", |io| {
                execute_apps(&parsed.args.command, domain, settings, io)
            })
        } else {
            let parsed = KonnectorsTest::try_parse_from(argv).expect("arguments");
            let domain = parsed.args.instance.domain.as_deref();
            capture("", |io| {
                execute_konnectors(&parsed.args.command, domain, settings, io)
            })
        }
    }

    const DEMO: &str = r#"{"_id":"io.cozy.apps/demo","_rev":"1-a","name":"Demo","slug":"demo","source":"registry://demo/stable","version":"1.0.0","state":"ready"}"#;

    #[test]
    fn apps_commands_send_kind_and_source() {
        let demo2 = DEMO.replace("1.0.0", "1.1.0");
        let (port, seen) = stand_in(vec![
            (201, JSONAPI, DEMO.into()),
            (200, JSONAPI, format!("[{DEMO}]")),
            (200, JSONAPI, DEMO.into()),
            (200, JSONAPI, demo2),
            (200, JSONAPI, DEMO.into()),
            (200, JSONAPI, String::new()),
        ]);
        let s = settings(port, 1);
        let (status, out, err) =
            cli_apps(&s, "apps", &["install", "demo", "--domain", "a.example"]);
        assert_eq!((status, err.as_str()), (0, ""));
        assert_eq!(out, "demo (1.0.0) has been installed on a.example\n");
        assert_eq!(
            seen.recv().expect("request").line,
            "POST /instances/a.example/apps/demo?Kind=webapp&Source=registry%3A%2F%2Fdemo%2Fstable"
        );
        let (status, out, _) = cli_apps(&s, "apps", &["--domain", "a.example", "list"]);
        assert_eq!(
            (status, out.as_str()),
            (0, "demo  registry://demo/stable  1.0.0  ready\n")
        );
        assert_eq!(
            seen.recv().expect("request").line,
            "GET /instances/a.example/apps?Kind=webapp"
        );
        let (status, out, err) = cli_apps(
            &s,
            "apps",
            &[
                "upgrade",
                "demo",
                "file:///srv/demo",
                "--domain",
                "a.example",
            ],
        );
        assert_eq!((status, err.as_str()), (0, ""));
        assert_eq!(out, "demo has been upgraded to 1.1.0\n");
        assert_eq!(
            seen.recv().expect("request").line,
            "GET /instances/a.example/apps/demo?Kind=webapp"
        );
        assert_eq!(
            seen.recv().expect("request").line,
            "PUT /instances/a.example/apps/demo?Kind=webapp&Source=file%3A%2F%2F%2Fsrv%2Fdemo"
        );
        let (status, out, _) = cli_apps(&s, "apps", &["show", "demo", "--domain", "a.example"]);
        assert_eq!(status, 0);
        assert!(out.starts_with("{\n  \"name\": \"Demo\",\n"), "{out}");
        seen.recv().expect("request");
        let (status, out, _) = cli_apps(&s, "konnectors", &["rm", "demo", "--domain", "a.example"]);
        assert_eq!((status, out.as_str()), (0, "demo has been uninstalled\n"));
        assert_eq!(
            seen.recv().expect("request").line,
            "DELETE /instances/a.example/apps/demo?Kind=konnector"
        );
    }

    #[test]
    fn apps_refusals() {
        let body = r#"{"errors":[{"status":"404","title":"Not Found","detail":"Application manifest is not reachable"}]}"#;
        let (port, _seen) = stand_in(vec![(404, JSONAPI, body.into())]);
        let s = settings(port, 1);
        let (status, out, err) =
            cli_apps(&s, "apps", &["install", "nope", "--domain", "a.example"]);
        assert_eq!((status, out.as_str()), (1, ""));
        assert_eq!(
            err,
            "Error: Not Found: Application manifest is not reachable\n"
        );
        // Refused before any request.
        let closed = settings(closed_port(), 1);
        let (status, _, err) = cli_apps(&closed, "apps", &["ls"]);
        assert_eq!(status, 2);
        assert!(err.contains("--domain"), "{err}");
        let (status, _, err) = cli_apps(
            &closed,
            "konnectors",
            &["install", "", "--domain", "a.example"],
        );
        assert_eq!((status, err.as_str()), (2, "Error: the slug is empty\n"));
    }

    #[test]
    fn konnectors_run_finds_the_account() {
        let triggers = r#"[
            {"_id":"t1","worker":"konnector","message":{"konnector":"demo","account":"acc1"}},
            {"_id":"t2","worker":"konnector","message":{"konnector":"other","account":"acc2"}},
            {"_id":"t3","worker":"log","message":{"konnector":"demo","account":"acc3"}}
        ]"#;
        let job = r#"{"_id":"j1","worker":"konnector","message":{"konnector":"demo","account":"acc1"},"state":"done"}"#;
        let (port, seen) = stand_in(vec![
            (200, JSONAPI, triggers.into()),
            (202, JSONAPI, job.into()),
            (
                202,
                JSONAPI,
                r#"{"_id":"j2","state":"errored","error":"LOGIN_FAILED"}"#.into(),
            ),
        ]);
        let s = settings(port, 1);
        let (status, out, err) =
            cli_apps(&s, "konnectors", &["run", "demo", "--domain", "a.example"]);
        assert_eq!((status, err.as_str()), (0, ""));
        assert!(out.contains("\"state\": \"done\""), "{out}");
        assert_eq!(
            seen.recv().expect("request").line,
            "GET /instances/a.example/triggers"
        );
        let push = seen.recv().expect("request");
        assert_eq!(
            push.line,
            "POST /instances/a.example/jobs/queue/konnector?wait=true"
        );
        assert_eq!(push.body, r#"{"konnector":"demo","account":"acc1"}"#);
        // With --account-id: no lookup.
        let (status, _, err) = cli_apps(
            &s,
            "konnectors",
            &[
                "run",
                "demo",
                "--account-id",
                "acc9",
                "--domain",
                "a.example",
            ],
        );
        assert_eq!(
            (status, err.as_str()),
            (1, "Error: the job errored: LOGIN_FAILED\n")
        );
        assert_eq!(
            seen.recv().expect("request").body,
            r#"{"konnector":"demo","account":"acc9"}"#
        );

        let two = r#"[
            {"worker":"konnector","message":{"konnector":"demo","account":"a"}},
            {"worker":"konnector","message":{"konnector":"demo","account":"b"}}
        ]"#;
        let (port, _seen) = stand_in(vec![(200, JSONAPI, two.into())]);
        let (status, _, err) = cli_apps(
            &settings(port, 1),
            "konnectors",
            &["run", "demo", "--domain", "a.example"],
        );
        assert_eq!(
            (status, err.as_str()),
            (
                1,
                "Error: Found multiple konnectors with different accounts: use the --account-id flag\n"
            )
        );
    }

    #[derive(Debug, Parser)]
    struct CheckTest {
        #[command(flatten)]
        args: crate::CheckArgs,
    }

    #[derive(Debug, Parser)]
    struct DocsTest {
        #[command(flatten)]
        args: crate::DocsArgs,
    }

    /// Runs `hearth check <args>` or `hearth docs <args>` with `stdin`.
    fn cli_admin(
        settings: &Settings,
        group: &str,
        args: &[&str],
        stdin: &str,
    ) -> (u8, String, String) {
        let argv = std::iter::once(group).chain(args.iter().copied());
        if group == "check" {
            let parsed = CheckTest::try_parse_from(argv).expect("arguments");
            capture(stdin, |io| {
                execute_check(&parsed.args.command, settings, io)
            })
        } else {
            let parsed = DocsTest::try_parse_from(argv).expect("arguments");
            capture(stdin, |io| execute_docs(&parsed.args.command, settings, io))
        }
    }

    #[test]
    fn check_triggers_prints_problems_as_lines() {
        let problems = r#"[{"type":"duplicate","_id":"a","other_id":"b"},{"type":"unknown_worker","_id":"c"}]"#;
        let (port, seen) = stand_in(vec![
            (200, "application/json", "[]".into()),
            (200, "application/json", problems.into()),
            (
                404,
                JSONAPI,
                r#"{"errors":[{"status":"404","title":"Not Found","detail":"Instance not found"}]}"#
                    .into(),
            ),
        ]);
        let s = settings(port, 1);
        let (status, out, err) = cli_admin(&s, "check", &["triggers", "a.example"], "");
        assert_eq!((status, out.as_str(), err.as_str()), (0, "", ""));
        assert_eq!(
            seen.recv().expect("request").line,
            "POST /instances/a.example/checks/triggers"
        );
        let (status, out, err) = cli_admin(&s, "check", &["shared", "a.example"], "");
        assert_eq!((status, err.as_str()), (1, ""));
        assert_eq!(
            out,
            "{\"type\":\"duplicate\",\"_id\":\"a\",\"other_id\":\"b\"}\n{\"type\":\"unknown_worker\",\"_id\":\"c\"}\n"
        );
        assert_eq!(
            seen.recv().expect("request").line,
            "POST /instances/a.example/checks/shared"
        );
        let (status, out, err) = cli_admin(&s, "check", &["triggers", "b.example"], "");
        assert_eq!((status, out.as_str()), (1, ""));
        assert_eq!(err, "Error: Not Found: Instance not found\n");
    }

    #[test]
    fn docs_commands_over_the_raw_routes() {
        let all = r#"{"total_rows":2,"offset":0,"rows":[{"id":"a","key":"a","value":{"rev":"1-x"},"doc":{"_id":"a","_rev":"1-x","n":1}},{"id":"b","key":"b","value":{"rev":"1-y"},"doc":{"_id":"b","_rev":"1-y","n":2}}]}"#;
        let (port, seen) = stand_in(vec![
            (200, "application/json", all.into()),
            (
                200,
                "application/json",
                r#"{"_id":"a","_rev":"1-x","n":1}"#.into(),
            ),
            (
                200,
                "application/json",
                r#"{"ok":true,"id":"c","rev":"1-z"}"#.into(),
            ),
            (
                200,
                "application/json",
                r#"{"docs":[{"_id":"b","n":2}],"bookmark":"b"}"#.into(),
            ),
            (
                404,
                "application/json",
                r#"{"error":"not_found","reason":"deleted"}"#.into(),
            ),
        ]);
        let s = settings(port, 1);
        let (status, out, err) =
            cli_admin(&s, "docs", &["ls", "a.example", "io.cozy.sharings"], "");
        assert_eq!((status, err.as_str()), (0, ""));
        assert_eq!(
            out,
            "{\"_id\":\"a\",\"_rev\":\"1-x\",\"n\":1}\n{\"_id\":\"b\",\"_rev\":\"1-y\",\"n\":2}\n"
        );
        assert_eq!(
            seen.recv().expect("request").line,
            "GET /instances/a.example/raw/io.cozy.sharings/_all_docs?include_docs=true"
        );
        let (status, out, _) = cli_admin(
            &s,
            "docs",
            &["get", "a.example", "io.cozy.sharings", "a"],
            "",
        );
        assert_eq!(
            (status, out.as_str()),
            (
                0,
                "{\n  \"_id\": \"a\",\n  \"_rev\": \"1-x\",\n  \"n\": 1\n}\n"
            )
        );
        seen.recv().expect("request");
        // From stdin, the id from --id placed between the positional arguments.
        let (status, out, err) = cli_admin(
            &s,
            "docs",
            &["put", "a.example", "--id", "c", "io.cozy.sharings"],
            r#"{"n": 3}"#,
        );
        assert_eq!((status, err.as_str()), (0, ""));
        assert_eq!(out, "{\"ok\":true,\"id\":\"c\",\"rev\":\"1-z\"}\n");
        let put = seen.recv().expect("request");
        assert_eq!(put.line, "PUT /instances/a.example/raw/io.cozy.sharings/c");
        assert_eq!(put.body, r#"{"n": 3}"#);
        let (status, out, _) = cli_admin(
            &s,
            "docs",
            &[
                "find",
                "a.example",
                "io.cozy.sharings",
                r#"{"selector":{"n":2}}"#,
            ],
            "",
        );
        assert_eq!((status, out.as_str()), (0, "{\"_id\":\"b\",\"n\":2}\n"));
        let find = seen.recv().expect("request");
        assert_eq!(
            find.line,
            "POST /instances/a.example/raw/io.cozy.sharings/_find"
        );
        assert_eq!(find.body, r#"{"selector":{"n":2}}"#);
        let (status, out, err) = cli_admin(
            &s,
            "docs",
            &["rm", "a.example", "io.cozy.sharings", "a", "--rev", "1-x"],
            "",
        );
        assert_eq!((status, out.as_str()), (1, ""));
        assert_eq!(err, "Error: Not Found: deleted\n");
        assert_eq!(
            seen.recv().expect("request").line,
            "DELETE /instances/a.example/raw/io.cozy.sharings/a?rev=1-x"
        );

        // Refused before any request.
        let closed = settings(closed_port(), 1);
        for (args, message) in [
            (
                &["put", "a.example", "io.cozy.x", "{bad"][..],
                "the document is not valid JSON",
            ),
            (
                &["put", "a.example", "io.cozy.x", "[1]"][..],
                "the document must be a JSON object",
            ),
            (
                &["put", "a.example", "io.cozy.x", r#"{"a":1}"#][..],
                "the document has no _id",
            ),
            (
                &[
                    "put",
                    "a.example",
                    "io.cozy.x",
                    "--id",
                    "b",
                    r#"{"_id":"a"}"#,
                ][..],
                "--id b and the document's _id a differ",
            ),
            (
                &["find", "a.example", "io.cozy.x", "[]"][..],
                "the query must be a JSON object",
            ),
            (&["ls", "a b", "io.cozy.x"][..], "Invalid domain: a b"),
            (
                &["get", "a.example", "io.cozy.x", ""][..],
                "the document id is empty",
            ),
        ] {
            let (status, out, err) = cli_admin(&closed, "docs", args, "");
            assert_eq!((status, out.as_str()), (2, ""), "{args:?}: {err}");
            assert!(
                err.starts_with(&format!("Error: {message}")),
                "{args:?}: {err}"
            );
        }
    }

    /// `instances move` against two stand-ins: the source's admin API on one port,
    /// the target's on another.
    fn move_cli(
        source: u16,
        target: u16,
        extra: &[&str],
        stdin: &str,
        to_passphrase: Option<&str>,
    ) -> (u8, String, String) {
        let s = Settings {
            to_passphrase: to_passphrase.map(str::to_owned),
            ..settings(source, 1)
        };
        let port = target.to_string();
        let mut args = vec![
            "move",
            "--domain",
            "a.example",
            "--to",
            "https://B.example/",
            "--to-admin-host",
            "127.0.0.1",
            "--to-admin-port",
            &port,
        ];
        args.extend_from_slice(extra);
        cli(&s, &args, stdin)
    }

    #[test]
    fn move_refuses_a_target_too_small_and_blocks_nothing() {
        let (source, source_seen) = stand_in(vec![(
            200,
            "application/json",
            r#"{"used":2000000000,"quota":null}"#.into(),
        )]);
        let (target, target_seen) = stand_in(vec![
            (200, "application/json", r#"{"state":"idle"}"#.into()),
            (
                200,
                "application/json",
                r#"{"used":0,"quota":1000000000}"#.into(),
            ),
        ]);
        let (status, out, err) = move_cli(source, target, &["--yes"], "", Some("other"));
        assert_eq!(status, 1, "{out}");
        assert_eq!(
            err,
            "Error: b.example has a quota of 1.0 GB, smaller than the 2.0 GB that a.example \
             uses: nothing was moved (raise the quota with `hearth instances set-disk-quota` on \
             the target server)\n"
        );
        let seen = source_seen.recv().expect("usage");
        assert_eq!(seen.line, "GET /instances/a.example/move/usage");
        assert_eq!(seen.header("authorization"), Some("Basic OnMzY3JldA=="));
        assert!(source_seen.try_recv().is_err(), "the source was asked more");
        let seen = target_seen.recv().expect("status");
        assert_eq!(seen.line, "GET /instances/b.example/move/status");
        // The target's passphrase is HEARTH_TO_ADMIN_PASSPHRASE.
        assert_eq!(
            seen.header("authorization"),
            Some(crate::api::basic_authorization("other").as_str())
        );
        assert_eq!(
            target_seen.recv().expect("usage").line,
            "GET /instances/b.example/move/usage"
        );
        // No token was made.
        assert!(target_seen.try_recv().is_err());
    }

    #[test]
    fn move_confirms_starts_waits_and_prints_the_report() {
        let report = r#"{"doctypes":{"io.cozy.contacts":{"archive_docs":3,"archive_bytes":90,"imported_docs":3,"imported_bytes":90,"skipped":0}},"apps_not_installed":["drive"],"parts":1}"#;
        // Typing another domain: nothing is blocked, no token is made.
        let (source, source_seen) = stand_in(vec![(
            200,
            "application/json",
            r#"{"used":10,"quota":null}"#.into(),
        )]);
        let (target, target_seen) = stand_in(vec![
            (200, "application/json", r#"{"state":"idle"}"#.into()),
            (200, "application/json", r#"{"used":0,"quota":null}"#.into()),
        ]);
        let (status, out, err) = move_cli(source, target, &[], "b.example\n", None);
        assert_eq!(status, 1);
        assert!(out.contains("RESET the instance b.example"), "{out}");
        assert!(err.contains("nothing was moved"), "{err}");
        assert_eq!(source_seen.iter().count(), 1);
        assert_eq!(target_seen.iter().count(), 2);

        let (source, source_seen) = stand_in(vec![
            (
                200,
                "application/json",
                r#"{"used":10,"quota":null}"#.into(),
            ),
            (202, "application/json", r#"{"job_id":"export1"}"#.into()),
        ]);
        let done = format!(
            r#"{{"state":"done","job_id":"new","moved_from":"a.example","report":{report}}}"#
        );
        let (target, target_seen) = stand_in(vec![
            // An earlier import's outcome.
            (
                200,
                "application/json",
                r#"{"state":"done","job_id":"old","report":{}}"#.into(),
            ),
            (200, "application/json", r#"{"used":0,"quota":100}"#.into()),
            (
                200,
                "application/json",
                r#"{"client_id":"c1","client_secret":"cs","token":"tok","used":0,"quota":100}"#
                    .into(),
            ),
            // The outcome of the earlier import is not this move's.
            (
                200,
                "application/json",
                r#"{"state":"done","job_id":"old","report":{}}"#.into(),
            ),
            (200, "application/json", r#"{"state":"waiting"}"#.into()),
            (
                200,
                "application/json",
                r#"{"state":"importing","job_id":"new"}"#.into(),
            ),
            (200, "application/json", done),
        ]);
        let (status, out, err) = move_cli(source, target, &[], "A.example\n", None);
        assert_eq!(status, 0, "{err}");
        assert!(
            out.contains("Move of a.example to https://b.example done\n"),
            "{out}"
        );
        assert!(
            out.contains("  io.cozy.contacts: 3 of 3 imported (90 of 90 bytes)\n"),
            "{out}"
        );
        assert!(out.contains("  not installed: drive\n"), "{out}");
        assert!(err.contains("export job export1"), "{err}");
        let lines: Vec<Seen> = source_seen.iter().collect();
        assert_eq!(lines[1].line, "POST /instances/a.example/move");
        let body: serde_json::Value = serde_json::from_str(&lines[1].body).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"target_url": "https://b.example", "target_token": "tok",
                "target_client_id": "c1", "target_client_secret": "cs", "ignore_vault": false})
        );
        let target_lines: Vec<String> = target_seen.iter().map(|s| s.line).collect();
        assert_eq!(target_lines[2], "POST /instances/b.example/move/token");
        assert_eq!(target_lines.len(), 7);
        // Secrets are never printed.
        assert!(!out.contains("tok") && !err.contains("tok") && !err.contains("cs"));
    }

    #[test]
    fn move_fails_with_the_import_error_or_an_abort() {
        let source_answers = || {
            vec![
                (
                    200,
                    "application/json",
                    r#"{"used":10,"quota":null}"#.into(),
                ),
                (202, "application/json", r#"{"job_id":"export1"}"#.into()),
            ]
        };
        let token = r#"{"client_id":"c1","client_secret":"cs","token":"tok"}"#;
        let (source, _s) = stand_in(source_answers());
        let (target, _t) = stand_in(vec![
            (200, "application/json", r#"{"state":"idle"}"#.into()),
            (200, "application/json", r#"{"used":0,"quota":null}"#.into()),
            (200, "application/json", token.into()),
            (
                200,
                "application/json",
                r#"{"state":"errored","job_id":"j","error":"part 1 is missing"}"#.into(),
            ),
        ]);
        let (status, _, err) = move_cli(source, target, &["--yes"], "", None);
        assert_eq!(status, 1);
        assert!(
            err.contains("Error: the move failed: part 1 is missing"),
            "{err}"
        );
        // The target stops waiting without an import: the source aborted.
        let (source, _s) = stand_in(source_answers());
        let (target, _t) = stand_in(vec![
            (200, "application/json", r#"{"state":"idle"}"#.into()),
            (200, "application/json", r#"{"used":0,"quota":null}"#.into()),
            (200, "application/json", token.into()),
            (200, "application/json", r#"{"state":"waiting"}"#.into()),
            (200, "application/json", r#"{"state":"idle"}"#.into()),
        ]);
        let (status, _, err) = move_cli(source, target, &["--yes"], "", None);
        assert_eq!(status, 1);
        assert!(
            err.contains("the move stopped: b.example is no longer waiting"),
            "{err}"
        );
        assert!(err.contains("export job is export1"), "{err}");
        // A target already busy is refused before anything.
        let (source, _s) = stand_in(source_answers());
        let (target, _t) = stand_in(vec![(
            200,
            "application/json",
            r#"{"state":"importing"}"#.into(),
        )]);
        let (status, _, err) = move_cli(source, target, &["--yes"], "", None);
        assert_eq!(status, 1);
        assert!(err.contains("already receiving"), "{err}");
        // A bad URL: exit 2, nothing sent.
        let s = settings(closed_port(), 1);
        let (status, _, err) = cli(
            &s,
            &["move", "--domain", "a.example", "--to", "b.example"],
            "",
        );
        assert_eq!(status, 2);
        assert!(err.contains("is not the URL of an instance"), "{err}");
    }
}
