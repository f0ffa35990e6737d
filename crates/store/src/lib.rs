//! The document store contract shared by every backend.
//!
//! [`DocStore`] is what the domain services call; `hearth-store-sqlite` (and later
//! PostgreSQL) implement it. Mango selectors ([`mango`]) and CouchDB collation
//! ([`collate`]) live here so that every backend agrees on what a query means.

pub mod clustered;
pub mod collate;
pub mod events;
pub mod mango;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
mod write;

pub use store::*;
pub use write::*;
