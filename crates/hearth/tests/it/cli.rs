//! The one-shot subcommands: `version`, `config show`, `config passwd`, and the exit
//! status and message of configuration errors.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use scrypt::Scrypt;
use scrypt::password_hash::{PasswordHash, PasswordVerifier};

use crate::{hearth, stderr, stdout};

#[test]
fn version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = hearth(dir.path()).arg("version").output().expect("run");
    assert!(out.status.success());
    assert_eq!(stdout(&out), format!("{}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn unknown_key_exits_2_naming_file_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("custom.yaml");
    std::fs::write(&file, "port: 8081\nadmn:\n  port: 1\n").expect("write");
    let out = hearth(dir.path())
        .arg("--config")
        .arg(&file)
        .args(["config", "show"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "Error: {}: unknown key \"admn\" (expected one of host, port, data_dir, admin, fs, \
             database, mail, contexts, registries, konnectors, log, limits, auth, jobs, redis, \
             subdomains, vault, office, move)\n",
            file.display()
        )
    );
    assert!(stdout(&out).is_empty());
}

#[test]
fn bad_values_exit_2_naming_their_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Found without --config: ./hearth.yaml in the working directory.
    std::fs::write(dir.path().join("hearth.yaml"), "admin:\n  port: 70000\n").expect("write");
    let out = hearth(dir.path()).arg("serve").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let file = dir
        .path()
        .canonicalize()
        .expect("canonical dir")
        .join("hearth.yaml");
    assert_eq!(
        stderr(&out),
        format!(
            "Error: {}: admin.port: invalid value: integer `70000`, expected u16\n",
            file.display()
        )
    );
    assert!(
        !dir.path().join("hearth-data").exists(),
        "nothing is started"
    );

    let other = tempfile::tempdir().expect("tempdir");
    let out = hearth(other.path())
        .env("HEARTH_DATABASE_URL", "mysql://db/hearth")
        .arg("serve")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "Error: HEARTH_DATABASE_URL: database.url: unknown scheme mysql:// (expected sqlite:// or postgres://)\n"
    );

    let out = hearth(other.path())
        .args(["serve", "--port", "http"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2 too");
}

#[test]
fn config_show_gives_sources_and_masks_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("hearth.yaml"),
        "port: 1111\nmail:\n  host: smtp.example.net\n  password: hunter2\n",
    )
    .expect("write");
    let out = hearth(dir.path())
        .env("HEARTH_PORT", "2222")
        .env("HEARTH_ADMIN_PORT", "6061")
        .args(["config", "show"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(!text.contains("hunter2"), "{text}");
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?} in\n{text}"))
            .to_owned()
    };
    assert!(line("port: 2222").ends_with("# env HEARTH_PORT"));
    assert!(line("  port: 6061").ends_with("# env HEARTH_ADMIN_PORT"));
    let file = dir
        .path()
        .canonicalize()
        .expect("canonical dir")
        .join("hearth.yaml");
    let from_file = format!("# file {}", file.display());
    assert!(line("  host: smtp.example.net").ends_with(&from_file));
    assert!(line("  password: '********'").ends_with(&from_file));
    assert!(line("host: localhost").ends_with("# default"));
    assert!(
        text.contains(&format!("# Configuration file: {}\n", file.display())),
        "{text}"
    );
}

#[test]
fn passwd_writes_a_verifiable_scrypt_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("hearth-admin-passphrase");
    let mut child = hearth(dir.path())
        .args(["config", "passwd"])
        .arg(&file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"open sesame\n")
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", stderr(&out));

    let text = std::fs::read_to_string(&file).expect("hash file");
    let hash = PasswordHash::new(text.trim()).expect("a PHC string");
    assert!(Scrypt.verify_password(b"open sesame", &hash).is_ok());
    assert!(Scrypt.verify_password(b"open sesame\n", &hash).is_err());
    let mode = std::fs::metadata(&file)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn passwd_refuses_an_empty_passphrase() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pass");
    let mut child = hearth(dir.path())
        .args(["config", "passwd"])
        .arg(&file)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"\n")
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), "Error: the passphrase is empty\n");
    assert!(!file.exists());
}
