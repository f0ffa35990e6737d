//! The outbox transport: one parseable `.eml` per mail, written atomically.

use hearth_mail::{Delivery, MailConfig, Mailer, Transport};
use serde_json::json;

use crate::{ARCHIVE_LINK, alice, map, parse_checked, recipients};

#[tokio::test]
async fn writes_parseable_eml_files_and_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    // The directory does not exist yet: the first mail creates it.
    let outbox = dir.path().join("mail-outbox");
    let mailer = Mailer::new(MailConfig::default(), &outbox).unwrap();
    assert!(matches!(mailer.transport(), Transport::Outbox(o) if o.dir() == outbox));

    let mut paths = Vec::new();
    for locale in ["en", "fr", "en", "fr"] {
        let vars = map(json!({"ArchiveLink": ARCHIVE_LINK}));
        let mail = mailer
            .render(&alice(), "archiver", locale, vars, recipients(), None)
            .unwrap();
        let sent = mailer.send(&mail).await.unwrap();
        let Delivery::Outbox { path } = sent.delivery else {
            panic!("not the outbox: {:?}", sent.delivery);
        };
        assert_eq!(path.parent(), Some(outbox.as_path()));
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        // <YYYYMMDD>T<hhmmss>.<mmm>Z-<12 hex>.eml
        assert_eq!(
            name.len(),
            "20260101T000000.000Z-0123456789ab.eml".len(),
            "{name}"
        );
        assert!(
            name.ends_with(".eml") && name.as_bytes()[8] == b'T',
            "{name}"
        );
        assert!(name[..8].bytes().all(|b| b.is_ascii_digit()), "{name}");

        let raw = std::fs::read(&path).unwrap();
        let parsed = parse_checked(&raw);
        assert_eq!(format!("<{}>", parsed.message_id), sent.message_id);
        assert_eq!(parsed.to, ["alice@example.org", "backup@example.net"]);
        assert!(parsed.text.lines().any(|line| line == ARCHIVE_LINK));
        let subject = if locale == "en" {
            "Your Hearth export is ready"
        } else {
            "Votre export Hearth est prêt"
        };
        assert_eq!(parsed.subject, subject);
        paths.push(path);
    }
    let mut names: Vec<String> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // Exactly the four mails: no temporary file left behind, no name reused.
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(
        names
            .iter()
            .all(|name| name.ends_with(".eml") && !name.starts_with('.'))
    );
    let mut sorted_paths: Vec<String> = paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    sorted_paths.sort();
    assert_eq!(names, sorted_paths);
}

#[tokio::test]
async fn an_unwritable_outbox_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the directory should be.
    let blocker = dir.path().join("outbox");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let mailer = Mailer::new(MailConfig::default(), &blocker).unwrap();
    let mail = mailer
        .render(
            &alice(),
            "test",
            "en",
            serde_json::Map::new(),
            recipients(),
            None,
        )
        .unwrap();
    let err = mailer.send(&mail).await.unwrap_err();
    assert!(matches!(err, hearth_mail::MailError::Io { .. }), "{err}");
    assert!(err.to_string().contains("outbox"), "{err}");
    assert!(err.is_transient());
}
