//! Failures, and which of them the job system may retry.

use std::time::{Duration, Instant};

use hearth_mail::testkit::{Behavior, TestSmtpServer};
use hearth_mail::{MailConfig, MailContent, MailError, MailRequest, Mailbox, Mailer};

use crate::{alice, recipients};

fn test_mail(mailer: &Mailer) -> hearth_mail::Mail {
    mailer
        .render(
            &alice(),
            "test",
            "en",
            serde_json::Map::new(),
            recipients(),
            None,
        )
        .unwrap()
}

fn mailer(config: MailConfig) -> (Mailer, tempfile::TempDir) {
    let outbox = tempfile::tempdir().unwrap();
    (Mailer::new(config, outbox.path()).unwrap(), outbox)
}

#[tokio::test]
async fn a_451_is_transient_and_a_retry_succeeds() {
    let server = TestSmtpServer::start().await.unwrap();
    let (mailer, _outbox) = mailer(server.config());
    let mail = test_mail(&mailer);

    server.set_behavior(Behavior::TempFail);
    let err = mailer.send(&mail).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.smtp_code(), Some(451));
    let message = err.to_string();
    assert!(message.contains("451"), "{message}");
    assert!(
        message.contains("try again later"),
        "the server's reply: {message}"
    );
    assert!(message.contains(&server.addr().to_string()), "{message}");
    assert!(server.messages().is_empty());

    // Switched at runtime: the retry goes through.
    server.set_behavior(Behavior::Accept);
    mailer.send(&mail).await.unwrap();
    assert!(server.next_message(Duration::from_secs(5)).await.is_some());
    assert_eq!(server.transactions(), 2);
}

#[tokio::test]
async fn a_550_is_permanent() {
    let server = TestSmtpServer::start().await.unwrap();
    server.set_behavior(Behavior::Reject);
    let (mailer, _outbox) = mailer(server.config());
    let err = mailer.send(&test_mail(&mailer)).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert_eq!(err.smtp_code(), Some(550));
    assert!(err.to_string().contains("mailbox unavailable"), "{err}");
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn an_unreachable_server_is_transient() {
    // A port nothing listens on any more.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (mailer, _outbox) = mailer(MailConfig {
        host: Some("127.0.0.1".into()),
        port: Some(port),
        tls: hearth_mail::TlsMode::None,
        timeout_secs: 5,
        ..MailConfig::default()
    });
    let err = mailer.send(&test_mail(&mailer)).await.unwrap_err();
    assert!(matches!(err, MailError::Connection { .. }), "{err}");
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn a_stalled_server_times_out_transiently() {
    let server = TestSmtpServer::start().await.unwrap();
    server.set_behavior(Behavior::StallAfterData);
    let (mailer, _outbox) = mailer(MailConfig {
        timeout_secs: 1,
        ..server.config()
    });
    let mail = test_mail(&mailer);
    let send = tokio::spawn({
        let mailer = mailer.clone();
        async move {
            let started = Instant::now();
            (mailer.send(&mail).await, started.elapsed())
        }
    });
    // The server has the whole message while the client still waits for a reply.
    let stalled = server.next_stalled(Duration::from_secs(5)).await.unwrap();
    assert!(stalled.text().contains("Subject: Test mail from Hearth"));
    assert!(!send.is_finished());
    let (result, elapsed) = send.await.unwrap();
    let err = result.unwrap_err();
    assert!(matches!(err, MailError::Timeout { secs: 1, .. }), "{err}");
    assert!(err.is_transient());
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(server.messages().is_empty());
    assert_eq!(server.stalled().len(), 1);

    // A client killed mid-send (its task aborted) leaves the server usable.
    let (patient, _outbox2) = mailer_with_timeout(&server, 30);
    let mail = test_mail(&patient);
    let killed = tokio::spawn(async move { patient.send(&mail).await });
    server.next_stalled(Duration::from_secs(5)).await.unwrap();
    killed.abort();
    assert!(killed.await.unwrap_err().is_cancelled());
    server.set_behavior(Behavior::Accept);
    mailer.send(&test_mail(&mailer)).await.unwrap();
    assert_eq!(server.messages().len(), 1);
    server.stop().await;
}

fn mailer_with_timeout(server: &TestSmtpServer, secs: u64) -> (Mailer, tempfile::TempDir) {
    mailer(MailConfig {
        timeout_secs: secs,
        ..server.config()
    })
}

#[tokio::test]
async fn a_stopped_server_refuses_connections() {
    let server = TestSmtpServer::start().await.unwrap();
    let (mailer, _outbox) = mailer(server.config());
    server.stop().await;
    let err = mailer.send(&test_mail(&mailer)).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn bad_input_is_permanent() {
    let (mailer, _outbox) = mailer(MailConfig::default());
    let err = mailer
        .render(
            &alice(),
            "no_such_mail",
            "en",
            serde_json::Map::new(),
            recipients(),
            None,
        )
        .unwrap_err();
    assert!(matches!(err, MailError::UnknownTemplate(_)), "{err}");
    assert!(!err.is_transient());

    let err = "not an address".parse::<Mailbox>().unwrap_err();
    assert!(matches!(err, MailError::BadAddress { .. }), "{err}");
    assert!(!err.is_transient());

    let err = mailer
        .compose(
            &alice(),
            &MailRequest {
                to: Vec::new(),
                from: None,
                reply_to: None,
                content: MailContent::Parts {
                    subject: "x".into(),
                    text: "y".into(),
                    html: None,
                },
            },
        )
        .unwrap_err();
    assert!(matches!(err, MailError::NoRecipient));
    assert!(!err.is_transient());
}

#[tokio::test]
async fn tls_modes_never_fall_back_to_plain_text() {
    let server = TestSmtpServer::start().await.unwrap();
    // STARTTLS is required, and this server does not offer it.
    let (mailer, _outbox) = mailer(MailConfig {
        tls: hearth_mail::TlsMode::Starttls,
        ..server.config()
    });
    let err = mailer.send(&test_mail(&mailer)).await.unwrap_err();
    assert!(matches!(err, MailError::Protocol { .. }), "{err}");
    assert!(!err.is_transient(), "{err}");
    // Implicit TLS against a plain-text server: the handshake fails.
    let (mailer, _outbox) = mailer_tls(&server);
    let err = mailer.send(&test_mail(&mailer)).await.unwrap_err();
    assert!(matches!(err, MailError::Tls { .. }), "{err}");
    assert!(!err.is_transient(), "{err}");
    assert!(server.messages().is_empty());
    assert_eq!(server.transactions(), 0);
}

fn mailer_tls(server: &TestSmtpServer) -> (Mailer, tempfile::TempDir) {
    mailer(MailConfig {
        tls: hearth_mail::TlsMode::Tls,
        ..server.config()
    })
}
