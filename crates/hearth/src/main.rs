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
    /// /etc/hearth/hearth.yaml; none means defaults]
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
    Serve(ServeArgs),
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
}

/// Flags override the configuration file and the HEARTH_* variables.
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
    /// The document store, sqlite://<dir> [config: database.url]
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Log level or filter directives; RUST_LOG overrides it [config: log.level]
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
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
        Command::Serve(args) => {
            let flags = Overrides {
                host: args.host,
                port: args.port,
                admin_host: args.admin_host,
                admin_port: args.admin_port,
                data_dir: args.data_dir,
                fs_url: args.fs_url,
                database_url: args.database_url,
                log_level: args.log_level,
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
    }
}
