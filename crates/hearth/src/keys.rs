//! `hearth config gen-keys <path>`, and reading the key files it writes: the Cozy stack's
//! vault keys for account credentials.
//!
//! The format is the Cozy stack's: two NaCl box (X25519) key pairs, each file one PEM
//! block of type `NACL KEY` holding 64 bytes, a public key then a private key. The
//! encryptor (`<path>.enc`) holds the receiver's public key and the sender's private
//! key; the decryptor (`<path>.dec`) the sender's public key and the receiver's private
//! key. Files are created, never replaced, with mode 0400.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use x25519_dalek::{PublicKey, StaticSecret};

/// The PEM block type of a key file.
pub const BLOCK_TYPE: &str = "NACL KEY";

/// A public key and a private key, 32 bytes each, as stored in a key file.
#[derive(Clone, PartialEq, Eq)]
pub struct NaclKey {
    pub public: [u8; 32],
    pub private: [u8; 32],
}

impl std::fmt::Debug for NaclKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NaclKey").finish_non_exhaustive()
    }
}

/// A fresh box key pair: 32 random bytes and their X25519 public key.
fn box_keypair() -> std::io::Result<([u8; 32], [u8; 32])> {
    let mut private = [0u8; 32];
    getrandom::fill(&mut private).map_err(|e| std::io::Error::other(e.to_string()))?;
    let public = PublicKey::from(&StaticSecret::from(private)).to_bytes();
    Ok((public, private))
}

/// The encryptor and decryptor keys of a new pair.
pub fn generate() -> std::io::Result<(NaclKey, NaclKey)> {
    let (sender_public, sender_private) = box_keypair()?;
    let (receiver_public, receiver_private) = box_keypair()?;
    Ok((
        NaclKey {
            public: receiver_public,
            private: sender_private,
        },
        NaclKey {
            public: sender_public,
            private: receiver_private,
        },
    ))
}

/// The PEM text of a key: 64-character base64 lines between the BEGIN and END lines.
pub fn encode(key: &NaclKey) -> String {
    let mut bytes = Vec::with_capacity(64);
    bytes.extend_from_slice(&key.public);
    bytes.extend_from_slice(&key.private);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let mut out = format!("-----BEGIN {BLOCK_TYPE}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {BLOCK_TYPE}-----\n"));
    out
}

/// Reads a key from its PEM text; the message says what is wrong.
pub fn decode(text: &str) -> Result<NaclKey, String> {
    let text = text.trim_start();
    if !text.starts_with("-----BEGIN") {
        return Err("not a PEM file (no -----BEGIN line)".into());
    }
    let begin = format!("-----BEGIN {BLOCK_TYPE}-----");
    let end = format!("-----END {BLOCK_TYPE}-----");
    let mut lines = text.lines().map(str::trim);
    let first = lines.next().unwrap_or_default();
    if first != begin {
        return Err(format!("the PEM block is {first:?}, expected {begin:?}"));
    }
    let mut b64 = String::new();
    let mut ended = false;
    for line in lines {
        if line == end {
            ended = true;
            break;
        }
        if line.contains(':') {
            // PEM headers: none are written, and they carry nothing we need.
            continue;
        }
        b64.push_str(line);
    }
    if !ended {
        return Err(format!("no {end:?} line"));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| format!("invalid base64: {e}"))?;
    if bytes.len() != 64 {
        return Err(format!(
            "a NaCl key holds 64 bytes, this one {}",
            bytes.len()
        ));
    }
    let mut key = NaclKey {
        public: [0; 32],
        private: [0; 32],
    };
    key.public.copy_from_slice(&bytes[..32]);
    key.private.copy_from_slice(&bytes[32..]);
    Ok(key)
}

/// Reads and checks a key file.
pub fn read(path: &Path) -> Result<NaclKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    decode(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `hearth config gen-keys <path>`: writes `<path>.enc` and `<path>.dec` (mode 0400,
/// refusing to replace a file) and returns their paths.
pub fn write_pair(path: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    use anyhow::Context;
    let base = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let with_suffix = |suffix: &str| {
        let mut name = base.clone().into_os_string();
        name.push(suffix);
        PathBuf::from(name)
    };
    let (enc_path, dec_path) = (with_suffix(".enc"), with_suffix(".dec"));
    let (encryptor, decryptor) = generate().context("cannot generate the keys")?;
    for (file, key) in [(&enc_path, &encryptor), (&dec_path, &decryptor)] {
        create_new(file, encode(key).as_bytes())
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok((enc_path, dec_path))
}

fn create_new(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o400);
    }
    let mut file = options.open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x25519_matches_rfc7748() {
        // RFC 7748 section 6.1: Alice's private key and public key.
        let private: [u8; 32] =
            hex32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let public = PublicKey::from(&StaticSecret::from(private)).to_bytes();
        assert_eq!(
            public,
            hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
    }

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
        }
        out
    }

    #[test]
    fn pairs_cross_and_round_trip() {
        let (enc, dec) = generate().expect("generate");
        // The encryptor's public key is the decryptor's private key's, and back.
        let public_of = |k: &NaclKey| PublicKey::from(&StaticSecret::from(k.private)).to_bytes();
        assert_eq!(enc.public, public_of(&dec));
        assert_eq!(dec.public, public_of(&enc));
        let text = encode(&enc);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(lines[0], "-----BEGIN NACL KEY-----");
        assert_eq!((lines[1].len(), lines[2].len()), (64, 24));
        assert_eq!(lines[3], "-----END NACL KEY-----");
        assert_eq!(decode(&text).expect("decode"), enc);
        assert!(decode("hello").is_err());
        assert!(decode("-----BEGIN RSA KEY-----\nAAAA\n-----END RSA KEY-----\n").is_err());
        assert!(decode("-----BEGIN NACL KEY-----\nAAAA\n-----END NACL KEY-----\n").is_err());
    }

    #[test]
    fn writes_two_files_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("creds");
        let (enc, dec) = write_pair(&base).expect("write");
        assert_eq!(enc, dir.path().join("creds.enc"));
        assert_eq!(dec, dir.path().join("creds.dec"));
        read(&enc).expect("encryptor");
        read(&dec).expect("decryptor");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&enc).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o400);
        }
        assert!(
            write_pair(&base).is_err(),
            "existing files are not replaced"
        );
    }
}
