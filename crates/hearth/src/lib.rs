//! The `hearth` binary's logic: configuration, `serve`, `migrate-storage` and
//! `config passwd`.
//!
//! `main.rs` only parses the command line; everything here takes its inputs as values
//! so that tests can run it in-process.

pub mod config;
pub mod keys;
pub mod migrate;
pub mod passwd;
pub mod serve;

use std::fmt;

/// A mistake on the command line or in what the user typed; exits with status 2 like
/// configuration errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The exit status for an error: 2 for configuration and usage errors, 1 otherwise.
pub fn exit_status(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<config::ConfigError>().is_some()
        || err.downcast_ref::<UsageError>().is_some()
    {
        2
    } else {
        1
    }
}
