//! The capability of an export link (spec move 1.9): an HMAC-SHA256 keyed with the
//! instance's session secret and domain-separated with the name `exports`, over an
//! 8-byte big-endian issue time and the export id; serialised `time‖id‖hmac` in
//! unpadded base64url, then base64url **again, with padding** for the URL.
//!
//! Only the instance that issued a link checks it, so the exact bytes need not match
//! the Cozy stack's for archives and links to work across the two.

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Links older than 7 days are refused.
pub const MAX_AGE_SECS: u64 = 7 * 24 * 3600;
const NAME: &[u8] = b"exports";
const MAC_LEN: usize = 32;
const MAX_LEN: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    /// The outer base64 is invalid (400).
    #[error("exports: invalid link")]
    BadEncoding,
    /// Wrong MAC, or too old (401).
    #[error("exports: invalid mac")]
    Invalid,
}

fn sign(secret: &str, time: &[u8], value: &[u8]) -> Vec<u8> {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return Vec::new();
    };
    mac.update(NAME);
    mac.update(b"|");
    mac.update(time);
    mac.update(value);
    mac.finalize().into_bytes().to_vec()
}

/// The link token of an export, issued at `now` (seconds).
pub fn encode(secret: &str, export_id: &str, now: u64) -> String {
    let time = now.to_be_bytes();
    let mut raw = time.to_vec();
    raw.extend(export_id.as_bytes());
    raw.extend(sign(secret, &time, export_id.as_bytes()));
    URL_SAFE.encode(URL_SAFE_NO_PAD.encode(raw))
}

/// The export id of a link token, checked at `now` (seconds).
pub fn decode(secret: &str, token: &str, now: u64) -> Result<String, MacError> {
    let inner = URL_SAFE.decode(token).map_err(|_| MacError::BadEncoding)?;
    if inner.len() > MAX_LEN {
        return Err(MacError::Invalid);
    }
    let raw = URL_SAFE_NO_PAD
        .decode(&inner)
        .map_err(|_| MacError::Invalid)?;
    if raw.len() < 8 + MAC_LEN {
        return Err(MacError::Invalid);
    }
    let (time, rest) = raw.split_at(8);
    let (value, tag) = rest.split_at(rest.len() - MAC_LEN);
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return Err(MacError::Invalid);
    };
    mac.update(NAME);
    mac.update(b"|");
    mac.update(time);
    mac.update(value);
    mac.verify_slice(tag).map_err(|_| MacError::Invalid)?;
    let mut t = [0u8; 8];
    t.copy_from_slice(time);
    let issued = u64::from_be_bytes(t);
    if issued > now + 60 || now.saturating_sub(issued) > MAX_AGE_SECS {
        return Err(MacError::Invalid);
    }
    String::from_utf8(value.to_vec()).map_err(|_| MacError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let t = encode("secret", "abc123", 1_000_000);
        assert_eq!(t.len() % 4, 0, "padded base64");
        assert_eq!(decode("secret", &t, 1_000_100), Ok("abc123".into()));
        assert_eq!(decode("other", &t, 1_000_100), Err(MacError::Invalid));
        assert_eq!(
            decode("secret", &t, 1_000_000 + MAX_AGE_SECS + 1),
            Err(MacError::Invalid)
        );
        assert_eq!(decode("secret", "!!!", 0), Err(MacError::BadEncoding));
        let inner = URL_SAFE_NO_PAD.encode(b"too short");
        assert_eq!(
            decode("secret", &URL_SAFE.encode(inner), 0),
            Err(MacError::Invalid)
        );
    }
}
