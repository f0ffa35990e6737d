//! What can go wrong with an instance operation, as outcomes the HTTP layer maps.

use hearth_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("Instance not found")]
    NotFound,
    #[error("Instance already exists")]
    Exists,
    /// A domain or alias is not acceptable (`parameter` names the request field).
    #[error("Domain name contains illegal characters")]
    IllegalDomain { parameter: &'static str },
    /// A parameter is wrong (`parameter` names it).
    #[error("{detail}")]
    InvalidParameter {
        parameter: &'static str,
        detail: String,
    },
    /// A destroy is already running (or crashed midway).
    #[error(
        "The deletion of {domain} has already been requested. If it crashed, clear the flag \
         with `hearth instances modify --deleting=false {domain}` and destroy again."
    )]
    DeletionInProgress { domain: String },
    #[error("Client not found")]
    ClientNotFound,
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

pub type InstanceResult<T> = Result<T, InstanceError>;

impl InstanceError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }
}
