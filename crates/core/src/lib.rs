//! Hearth's shared vocabulary: instance ids, doctypes, document ids and revisions.
//!
//! Nothing here does I/O; every other crate may depend on this one.

mod ids;
mod rev;
mod time;

pub use ids::{Doctype, InstanceId, InvalidId, new_doc_id, random_hex};
pub use rev::{InvalidRev, Rev};
pub use time::{civil_from_days, days_from_civil, now_rfc3339, parse_rfc3339, rfc3339};

/// A JSON document as stored: an object whose `_id` / `_rev` may or may not be set.
pub type Json = serde_json::Value;
/// The members of a JSON object, in the order they were written.
pub type JsonMap = serde_json::Map<String, serde_json::Value>;
