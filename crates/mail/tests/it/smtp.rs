//! Mails through lettre's SMTP client to the test receiver.

use std::time::Duration;

use hearth_mail::testkit::TestSmtpServer;
use hearth_mail::{Delivery, InstanceInfo, MailConfig, MailContent, MailRequest, Mailbox, Mailer};
use serde_json::json;

use crate::{PUBLIC_NAME, alice, cases, html_attr, map, parse_checked, recipients};

const WAIT: Duration = Duration::from_secs(5);

fn mailer(config: MailConfig) -> (Mailer, tempfile::TempDir) {
    let outbox = tempfile::tempdir().unwrap();
    (Mailer::new(config, outbox.path()).unwrap(), outbox)
}

#[tokio::test]
async fn every_template_in_every_locale() {
    let server = TestSmtpServer::start().await.unwrap();
    let (mailer, outbox) = mailer(server.config());
    for case in cases() {
        for (locale, subject) in [("en", case.subject_en), ("fr-FR", case.subject_fr)] {
            let what = format!("{} in {locale}", case.name);
            let mail = mailer
                .render(
                    &alice(),
                    case.name,
                    locale,
                    case.vars.clone(),
                    recipients(),
                    None,
                )
                .unwrap();
            let sent = mailer.send(&mail).await.unwrap();
            assert!(
                matches!(&sent.delivery, Delivery::Smtp { reply, .. } if reply.starts_with("250")),
                "{what}: {:?}",
                sent.delivery
            );
            assert_eq!(sent.recipients, ["alice@example.org", "backup@example.net"]);

            let got = server.next_message(WAIT).await.expect(&what);
            assert_eq!(got.from, "noreply@alice.example.com", "{what}");
            assert_eq!(
                got.to,
                ["alice@example.org", "backup@example.net"],
                "{what}"
            );

            let parsed = parse_checked(&got.data);
            assert_eq!(parsed.subject, subject, "{what}");
            assert_eq!(
                parsed.from,
                (
                    Some(PUBLIC_NAME.to_owned()),
                    "noreply@alice.example.com".to_owned()
                ),
                "{what}"
            );
            assert_eq!(parsed.to, ["alice@example.org", "backup@example.net"]);
            assert_eq!(
                format!("<{}>", parsed.message_id),
                sent.message_id,
                "{what}"
            );
            for link in &case.links {
                assert!(
                    parsed.text.lines().any(|line| line == *link),
                    "{what}: {link} not alone on a line:\n{}",
                    parsed.text
                );
                assert!(
                    parsed
                        .html
                        .contains(&format!("href=\"{}\"", html_attr(link))),
                    "{what}: no link {link}:\n{}",
                    parsed.html
                );
            }
            // Greeting and footer carry the public name, in both parts.
            assert!(
                parsed.text.matches(PUBLIC_NAME).count() >= 2,
                "{what}:\n{}",
                parsed.text
            );
            assert!(parsed.html.matches(PUBLIC_NAME).count() >= 2, "{what}");
            let greeting = if locale == "en" { "Hello" } else { "Bonjour" };
            assert!(
                parsed
                    .text
                    .starts_with(&format!("{greeting} {PUBLIC_NAME},\r\n")),
                "{what}:\n{}",
                parsed.text
            );
            assert!(parsed.html.starts_with("<!DOCTYPE html>"), "{what}");
            assert!(
                parsed
                    .html
                    .contains(&format!("<html lang=\"{}\">", &locale[..2])),
                "{what}"
            );
            if locale == "en" {
                for words in &case.must_say {
                    assert!(
                        parsed.text.contains(words),
                        "{what}: {words}\n{}",
                        parsed.text
                    );
                    assert!(
                        parsed.html.contains(words),
                        "{what}: {words}\n{}",
                        parsed.html
                    );
                }
            }
        }
    }
    assert_eq!(server.messages().len(), 2 * cases().len());
    // SMTP was used: nothing in the outbox.
    assert_eq!(std::fs::read_dir(outbox.path()).unwrap().count(), 0);
    server.stop().await;
}

#[tokio::test]
async fn apps_not_installed_sentence_only_when_some() {
    let server = TestSmtpServer::start().await.unwrap();
    let (mailer, _outbox) = mailer(server.config());
    for locale in ["en", "fr"] {
        let mut texts = Vec::new();
        for apps in [json!(""), json!([]), json!(["photos"])] {
            let vars = map(json!({"CozyLink": crate::COZY_LINK, "AppsNotInstalled": apps}));
            let mail = mailer
                .render(&alice(), "move_success", locale, vars, recipients(), None)
                .unwrap();
            mailer.send(&mail).await.unwrap();
            let got = server.next_message(WAIT).await.unwrap();
            texts.push(parse_checked(&got.data).text);
        }
        assert_eq!(texts[0], texts[1], "{locale}");
        assert!(!texts[0].contains("photos"), "{locale}");
        assert!(texts[2].contains(": photos."), "{locale}: {}", texts[2]);
    }
}

#[tokio::test]
async fn explicit_parts_sender_override_and_dots() {
    let server = TestSmtpServer::start().await.unwrap();
    let (mailer, _outbox) = mailer(MailConfig {
        reply_to: Some("Support <support@hearth.example>".into()),
        ..server.config()
    });
    // Lines starting with a dot are dot-stuffed by the client and unstuffed by the
    // server; the text must come back as it was.
    let text = "Hi,\n.hidden line\n..two dots\n.\nend https://a.example/x?y=1\n";
    let request = MailRequest {
        to: vec![Mailbox::address("bob@example.org").unwrap()],
        from: Some(Mailbox::new("alice@alice.example.com", Some("Alice")).unwrap()),
        reply_to: None,
        content: MailContent::Parts {
            subject: "Bonjour à toi".into(),
            text: text.into(),
            html: None,
        },
    };
    let mail = mailer.compose(&alice(), &request).unwrap();
    mailer.send(&mail).await.unwrap();
    let got = server.next_message(WAIT).await.unwrap();
    assert_eq!(got.from, "alice@alice.example.com");
    assert_eq!(got.to, ["bob@example.org"]);
    let parsed = parse_checked(&got.data);
    assert_eq!(parsed.subject, "Bonjour à toi");
    assert_eq!(parsed.text, text.replace('\n', "\r\n"));
    assert!(
        parsed
            .html
            .contains("<a href=\"https://a.example/x?y=1\">https://a.example/x?y=1</a>"),
        "{}",
        parsed.html
    );
    assert!(
        got.text()
            .contains("Reply-To: Support <support@hearth.example>\r\n")
    );
    // The subject is RFC 2047-encoded on the wire.
    assert!(got.text().contains("=?utf-8?"), "{}", got.text());
}

#[tokio::test]
async fn credentials_and_local_name_reach_the_server() {
    let server = TestSmtpServer::start().await.unwrap();
    let (mailer, _outbox) = mailer(MailConfig {
        username: Some("hearth".into()),
        password: Some("s3cret pass".into()),
        local_name: Some("mx.hearth.example".into()),
        noreply_address: Some("robot@hearth.example".into()),
        noreply_name: Some("Hearth robot".into()),
        ..server.config()
    });
    let nameless = InstanceInfo {
        domain: "bob.example.com".into(),
        public_name: None,
    };
    let mail = mailer
        .render(
            &nameless,
            "test",
            "de",
            serde_json::Map::new(),
            recipients(),
            None,
        )
        .unwrap();
    mailer.send(&mail).await.unwrap();
    let got = server.next_message(WAIT).await.unwrap();
    assert_eq!(got.helo, "mx.hearth.example");
    assert_eq!(
        got.auth,
        Some(("hearth".to_owned(), "s3cret pass".to_owned()))
    );
    assert_eq!(got.from, "robot@hearth.example");
    let parsed = parse_checked(&got.data);
    assert_eq!(
        parsed.from,
        (
            Some("Hearth robot".to_owned()),
            "robot@hearth.example".to_owned()
        )
    );
    // German falls back to English; without a public name, the domain is used.
    assert_eq!(parsed.subject, "Test mail from Hearth");
    assert!(
        parsed.text.starts_with("Hello bob.example.com,\r\n"),
        "{}",
        parsed.text
    );
}

#[tokio::test]
async fn concurrent_sends_all_arrive() {
    let server = TestSmtpServer::start().await.unwrap();
    let (mailer, _outbox) = mailer(server.config());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..6 {
        let mailer = mailer.clone();
        tasks.spawn(async move {
            let to = vec![Mailbox::address(&format!("user{i}@example.org")).unwrap()];
            let mail = mailer
                .render(&alice(), "test", "en", serde_json::Map::new(), to, None)
                .unwrap();
            mailer.send(&mail).await.unwrap().message_id
        });
    }
    let mut ids = std::collections::BTreeSet::new();
    while let Some(id) = tasks.join_next().await {
        ids.insert(id.unwrap());
    }
    assert_eq!(ids.len(), 6);
    let mut to: Vec<String> = server.messages().into_iter().flat_map(|m| m.to).collect();
    to.sort();
    assert_eq!(
        to,
        (0..6)
            .map(|i| format!("user{i}@example.org"))
            .collect::<Vec<_>>()
    );
    assert_eq!(server.connections(), 6);
}
