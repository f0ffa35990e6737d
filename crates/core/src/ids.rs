//! Identifier newtypes, validated at construction so the rest of the code can trust them.

use std::fmt;

/// Why a string was refused as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct InvalidId {
    pub kind: &'static str,
    pub value: String,
    pub reason: &'static str,
}

/// The key under which an instance's data is stored (its database prefix).
///
/// It names a file or a schema in the backends, so it is restricted to
/// `[a-z0-9._-]`, 1 to 200 characters, not starting with a dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(String);

impl InstanceId {
    /// The id of the global store that holds the instances registry.
    pub const GLOBAL: &'static str = "global";

    pub fn new(value: impl Into<String>) -> Result<Self, InvalidId> {
        let value = value.into();
        let err = |reason| InvalidId {
            kind: "instance id",
            value: value.clone(),
            reason,
        };
        if value.is_empty() || value.len() > 200 {
            return Err(err("must have 1 to 200 characters"));
        }
        if value.starts_with('.') {
            return Err(err("must not start with a dot"));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            return Err(err("only a-z, 0-9, '.', '_' and '-' are allowed"));
        }
        Ok(Self(value))
    }

    /// The global store (instances registry and other server-wide documents).
    pub fn global() -> Self {
        Self(Self::GLOBAL.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A document type such as `io.cozy.files`: CouchDB database naming rules
/// (a lowercase letter first, then `a-z 0-9 _ $ ( ) + - / .`), at most 200 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Doctype(String);

impl Doctype {
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidId> {
        let value = value.into();
        let err = |reason| InvalidId {
            kind: "doctype",
            value: value.clone(),
            reason,
        };
        let mut bytes = value.bytes();
        match bytes.next() {
            Some(b) if b.is_ascii_lowercase() => {}
            _ => return Err(err("must start with a lowercase letter")),
        }
        if value.len() > 200 {
            return Err(err("must have at most 200 characters"));
        }
        if !bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_$()+-/.".contains(&b))
        {
            return Err(err("only a-z, 0-9 and _$()+-/. are allowed"));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Doctype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `n` random bytes from the operating system, as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    // The OS random source failing is not something a server can recover from.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    to_hex(&buf)
}

/// A new document id: 32 lowercase hex characters, as the Cozy stack generates them.
pub fn new_doc_id() -> String {
    random_hex(16)
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doctypes() {
        assert!(Doctype::new("io.cozy.files").is_ok());
        assert!(Doctype::new("io.cozy.files.versions").is_ok());
        assert!(Doctype::new("Io.cozy").is_err());
        assert!(Doctype::new("").is_err());
        assert!(Doctype::new("io cozy").is_err());
        assert!(Doctype::new("_users").is_err());
    }

    #[test]
    fn instance_ids() {
        assert!(InstanceId::new("alice.localhost-8080").is_ok());
        assert!(InstanceId::new("../etc").is_err());
        assert!(InstanceId::new("a/b").is_err());
        assert!(InstanceId::new("").is_err());
    }

    #[test]
    fn doc_ids_are_32_hex() {
        let id = new_doc_id();
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(id, new_doc_id());
    }
}
