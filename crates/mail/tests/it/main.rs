//! The mail crate from outside: every template through lettre to a real SMTP receiver
//! and parsed back with a MIME library, the outbox, and the error classification.
#![allow(clippy::unwrap_used)]

mod errors;
mod outbox;
mod smtp;

use hearth_mail::{InstanceInfo, Mailbox};
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::{Map, Value, json};

/// A public name that needs both quoted-printable and RFC 2047.
pub const PUBLIC_NAME: &str = "Alice Dupré";

pub fn alice() -> InstanceInfo {
    InstanceInfo {
        domain: "alice.example.com".into(),
        public_name: Some(PUBLIC_NAME.into()),
    }
}

pub fn recipients() -> Vec<Mailbox> {
    vec![
        Mailbox::new("alice@example.org", Some("Alice")).unwrap(),
        Mailbox::address("backup@example.net").unwrap(),
    ]
}

pub fn map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// One template's test case: its variables, the links it must show, and its subject
/// in English and in French.
pub struct Case {
    pub name: &'static str,
    pub vars: Map<String, Value>,
    pub links: Vec<&'static str>,
    pub subject_en: &'static str,
    pub subject_fr: &'static str,
    /// Words the English text must hold (the variable parts).
    pub must_say: Vec<&'static str>,
}

/// A long link with a query string: it is soft-wrapped by quoted-printable on the
/// wire, and its `&` must be escaped in HTML only.
pub const ARCHIVE_LINK: &str = "https://alice.example.com/move/exports/\
    0123456789abcdef0123456789abcdef?secret=Zm9vYmFyYmF6cXV4&part=1";
pub const COZY_LINK: &str = "https://alice.newhost.example/";
pub const CONFIRM_LINK: &str = "https://alice.example.com/move/authorize?secret=c0nf1rm&x=1";
pub const RESET_LINK: &str = "https://alice.example.com/auth/passphrase_renew?token=r3set";

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "archiver",
            vars: map(json!({"ArchiveLink": ARCHIVE_LINK})),
            links: vec![ARCHIVE_LINK],
            subject_en: "Your Hearth export is ready",
            subject_fr: "Votre export Hearth est prêt",
            must_say: vec!["export is ready"],
        },
        Case {
            name: "export_error",
            vars: Map::new(),
            links: vec![],
            subject_en: "Your Hearth export failed",
            subject_fr: "L’export de votre Hearth a échoué",
            must_say: vec!["could not export"],
        },
        Case {
            name: "import_success",
            vars: map(json!({"CozyLink": COZY_LINK, "AppsNotInstalled": "photos, notes"})),
            links: vec![COZY_LINK],
            subject_en: "Your data is now in your Hearth",
            subject_fr: "Vos données sont dans votre Hearth",
            must_say: vec!["imported", "photos, notes"],
        },
        Case {
            name: "import_error",
            vars: Map::new(),
            links: vec![],
            subject_en: "The import into your Hearth failed",
            subject_fr: "L’import dans votre Hearth a échoué",
            must_say: vec!["did not succeed"],
        },
        Case {
            name: "move_success",
            vars: map(json!({"CozyLink": COZY_LINK, "AppsNotInstalled": ["drive", "banks"]})),
            links: vec![COZY_LINK],
            subject_en: "Your Hearth has moved",
            subject_fr: "Votre Hearth a déménagé",
            must_say: vec!["move is complete", "drive, banks"],
        },
        Case {
            name: "move_error",
            vars: Map::new(),
            links: vec![],
            subject_en: "Your Hearth could not be moved",
            subject_fr: "Le déménagement de votre Hearth a échoué",
            must_say: vec!["could not be moved"],
        },
        Case {
            name: "move_confirm",
            vars: map(json!({
                "ConfirmLink": CONFIRM_LINK,
                "TargetDomain": "alice.newhost.example",
            })),
            links: vec![CONFIRM_LINK],
            subject_en: "Confirm moving your Hearth to alice.newhost.example",
            subject_fr: "Confirmez le déménagement de votre Hearth vers alice.newhost.example",
            must_say: vec!["move your Hearth to", "alice.newhost.example"],
        },
        Case {
            name: "passphrase_reset",
            vars: map(json!({"ResetLink": RESET_LINK})),
            links: vec![RESET_LINK],
            subject_en: "Reset your Hearth password",
            subject_fr: "Réinitialisez le mot de passe de votre Hearth",
            must_say: vec!["reset the password"],
        },
        Case {
            name: "test",
            vars: Map::new(),
            links: vec![],
            subject_en: "Test mail from Hearth",
            subject_fr: "Mail de test de Hearth",
            must_say: vec!["test mail from Hearth"],
        },
    ]
}

/// What a parsed message holds, after every check on its raw form.
pub struct Parsed {
    pub subject: String,
    pub from: (Option<String>, String),
    pub to: Vec<String>,
    pub message_id: String,
    pub text: String,
    pub html: String,
}

/// Checks the wire format of `raw` (the contract) and parses it.
pub fn parse_checked(raw: &[u8]) -> Parsed {
    let shown = String::from_utf8_lossy(raw);
    assert!(raw.is_ascii(), "non-ASCII bytes on the wire:\n{shown}");
    for (i, byte) in raw.iter().enumerate() {
        if *byte == b'\n' {
            assert!(i > 0 && raw[i - 1] == b'\r', "bare LF at {i}:\n{shown}");
        }
        if *byte == b'\r' {
            assert_eq!(raw.get(i + 1), Some(&b'\n'), "bare CR at {i}:\n{shown}");
        }
    }
    let header_end = shown.find("\r\n\r\n").expect("end of headers");
    let headers = &shown[..header_end + 2];
    for name in [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
    ] {
        assert_eq!(
            headers.matches(&format!("\r\n{name}: ")).count()
                + usize::from(headers.starts_with(&format!("{name}: "))),
            1,
            "header {name} once, canonical:\n{headers}"
        );
    }
    assert!(headers.contains("MIME-Version: 1.0\r\n"), "{headers}");
    let content_type = headers
        .split("\r\n")
        .find(|line| line.starts_with("Content-Type: "))
        .unwrap();
    assert!(
        content_type.starts_with("Content-Type: multipart/alternative; boundary="),
        "{content_type}"
    );
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .unwrap()
        .trim_matches('"');
    // No preamble: the body starts with the first boundary.
    let body = &shown[header_end + 4..];
    assert!(
        body.starts_with(&format!("--{boundary}\r\n")),
        "preamble:\n{body}"
    );
    assert!(body.ends_with(&format!("\r\n--{boundary}--\r\n")), "{body}");
    let parts: Vec<&str> = body
        .split(&format!("--{boundary}"))
        .filter(|part| !part.is_empty() && *part != "--\r\n")
        .collect();
    assert_eq!(parts.len(), 2, "two parts:\n{body}");
    for (part, mime) in parts.iter().zip(["text/plain", "text/html"]) {
        assert!(
            part.starts_with(&format!(
                "\r\nContent-Type: {mime}; charset=utf-8\r\n\
                 Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            )),
            "{mime} part:\n{part}"
        );
        for line in part.split("\r\n") {
            assert!(line.len() <= 76, "quoted-printable line over 76: {line:?}");
        }
    }

    let message = MessageParser::default().parse(raw).expect("parse");
    // mail-parser's view: the root multipart, then text, then HTML.
    assert_eq!(message.parts.len(), 3);
    let root = message.parts[0].content_type().unwrap();
    assert_eq!(
        (root.ctype(), root.subtype()),
        ("multipart", Some("alternative"))
    );
    for (part, subtype) in message.parts[1..].iter().zip(["plain", "html"]) {
        let ct = part.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("text", Some(subtype)));
        assert_eq!(ct.attribute("charset"), Some("utf-8"));
        assert_eq!(part.content_transfer_encoding(), Some("quoted-printable"));
    }
    let from = message.from().and_then(|from| from.first()).unwrap();
    Parsed {
        subject: message.subject().unwrap_or_default().to_owned(),
        from: (
            from.name().map(str::to_owned),
            from.address().unwrap().to_owned(),
        ),
        to: message
            .to()
            .map(|to| {
                to.iter()
                    .map(|addr| addr.address().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default(),
        message_id: message.message_id().unwrap_or_default().to_owned(),
        text: message.parts[1].text_contents().unwrap().to_owned(),
        html: message.parts[2].text_contents().unwrap().to_owned(),
    }
}

/// The link as an HTML attribute value.
pub fn html_attr(link: &str) -> String {
    link.replace('&', "&amp;")
}
