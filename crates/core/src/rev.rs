//! CouchDB-style revisions: `<generation>-<32 hex>`.

use std::{fmt, str::FromStr};

use md5::{Digest, Md5};

use crate::ids::to_hex;

/// A document revision. Generations start at 1 and grow by one on every write.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rev {
    pub generation: u64,
    /// 32 lowercase hex characters.
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid revision {0:?}: expected <generation>-<32 hex characters>")]
pub struct InvalidRev(pub String);

impl Rev {
    /// The revision that follows `prev` for a body `body` (deleted or not).
    ///
    /// The hash is deterministic (md5 of the previous revision, the deletion flag and
    /// the body) so that two servers applying the same edit agree on its revision.
    pub fn next(prev: Option<&Rev>, deleted: bool, body: &[u8]) -> Rev {
        let mut h = Md5::new();
        if let Some(p) = prev {
            h.update(p.to_string().as_bytes());
        }
        h.update([u8::from(deleted)]);
        h.update(body);
        Rev {
            generation: prev.map_or(1, |p| p.generation + 1),
            hash: to_hex(&h.finalize()),
        }
    }
}

impl fmt::Display for Rev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.generation, self.hash)
    }
}

impl FromStr for Rev {
    type Err = InvalidRev;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || InvalidRev(s.to_owned());
        let (g, h) = s.split_once('-').ok_or_else(err)?;
        let generation: u64 = g.parse().map_err(|_| err())?;
        let valid_hash = h.len() == 32
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if generation == 0 || !valid_hash || g.starts_with('+') {
            return Err(err());
        }
        Ok(Rev {
            generation,
            hash: h.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        let r: Rev = "3-0123456789abcdef0123456789abcdef".parse().unwrap();
        assert_eq!(r.generation, 3);
        assert_eq!(r.to_string(), "3-0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "1",
            "0-0123456789abcdef0123456789abcdef",
            "1-xyz",
            "a-0123456789abcdef0123456789abcdef",
            "1-0123456789ABCDEF0123456789abcdef",
            "+1-0123456789abcdef0123456789abcdef",
        ] {
            assert!(bad.parse::<Rev>().is_err(), "{bad}");
        }
    }

    #[test]
    fn next_increments_and_depends_on_content() {
        let a = Rev::next(None, false, b"{}");
        assert_eq!(a.generation, 1);
        let b = Rev::next(Some(&a), false, b"{}");
        assert_eq!(b.generation, 2);
        assert_ne!(a.hash, b.hash);
        assert_ne!(Rev::next(None, false, b"{\"a\":1}"), a);
        assert_eq!(Rev::next(None, false, b"{}"), a);
    }
}
