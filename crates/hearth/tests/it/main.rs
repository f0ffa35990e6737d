//! End-to-end tests of the `hearth` binary, run from outside as a person or a service
//! manager would: exit codes, messages, `config` subcommands and `serve`.

mod apps;
mod cli;
mod dropin;
mod instances_cli;
mod jobs;
mod serve;

use std::path::Path;
use std::process::{Command, Output};

/// The real binary, with a clean environment: no `HEARTH_*` or `RUST_LOG` from the
/// caller, `HOME` and the working directory in `dir` so no user file is read.
pub fn hearth(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .current_dir(dir);
    cmd
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
