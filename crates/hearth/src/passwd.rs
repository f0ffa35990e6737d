//! `hearth config passwd <file>`: hashes the admin passphrase with scrypt and writes it
//! atomically (temporary file in the same directory, fsync, rename, mode 0600).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use scrypt::Scrypt;
use scrypt::password_hash::{PasswordHasher, SaltString};

use crate::UsageError;

/// scrypt cost: N = 2^15, r = 8, p = 1 (the original server's parameters), 32-byte key.
const LOG_N: u8 = 15;

/// Reads a passphrase (twice without echo on a terminal, else one line of stdin),
/// then writes its hash to `file`.
pub fn run(file: &Path) -> anyhow::Result<()> {
    let passphrase = read_passphrase()?;
    let hash = hash_passphrase(&passphrase)?;
    write_atomically(file, format!("{hash}\n").as_bytes())
        .with_context(|| format!("cannot write {}", file.display()))?;
    eprintln!("The admin passphrase hash is in {}", file.display());
    Ok(())
}

/// The PHC string (`$scrypt$ln=15,r=8,p=1$<salt>$<hash>`) of a passphrase.
pub fn hash_passphrase(passphrase: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("cannot get random bytes: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let params =
        scrypt::Params::new(LOG_N, 8, 1, 32).map_err(|e| anyhow::anyhow!("scrypt: {e}"))?;
    let hash = Scrypt
        .hash_password_customized(passphrase.as_bytes(), None, None, params, &salt)
        .map_err(|e| anyhow::anyhow!("scrypt: {e}"))?;
    Ok(hash.to_string())
}

fn read_passphrase() -> anyhow::Result<String> {
    let passphrase = if io::stdin().is_terminal() {
        let first =
            rpassword::prompt_password("Passphrase: ").context("cannot read the passphrase")?;
        let second = rpassword::prompt_password("Confirm passphrase: ")
            .context("cannot read the passphrase")?;
        if first != second {
            return Err(UsageError("the two passphrases differ".into()).into());
        }
        first
    } else {
        let mut line = String::new();
        io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the passphrase from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    if passphrase.is_empty() {
        return Err(UsageError("the passphrase is empty".into()).into());
    }
    Ok(passphrase)
}

/// Replaces `path` with `contents` so that readers see the old file or the new one,
/// never a partial one; the new file is readable by its owner only.
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).map_err(|e| io::Error::other(e.to_string()))?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".{}.{suffix}.tmp", name.to_string_lossy()));

    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use scrypt::password_hash::{PasswordHash, PasswordVerifier};

    use super::*;

    #[test]
    fn hashes_verify() {
        let hash = hash_passphrase("correct horse").expect("hash");
        assert!(hash.starts_with("$scrypt$ln=15,r=8,p=1$"), "{hash}");
        let parsed = PasswordHash::new(&hash).expect("PHC string");
        assert!(Scrypt.verify_password(b"correct horse", &parsed).is_ok());
        assert!(Scrypt.verify_password(b"wrong", &parsed).is_err());
    }

    #[test]
    fn atomic_write_replaces_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        fs::write(&path, "old").expect("write");
        write_atomically(&path, b"new").expect("atomic write");
        assert_eq!(fs::read_to_string(&path).expect("read"), "new");
        let mode = fs::metadata(&path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let leftovers = fs::read_dir(dir.path()).expect("read_dir").count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
    }
}
