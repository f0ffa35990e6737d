//! [`Mail`] and its wire format, a contract operators' scripts rely on: a
//! `multipart/alternative` message, `text/plain` first and `text/html` second, both
//! UTF-8 and quoted-printable, CRLF line ends, no preamble, RFC 2047 subject.

use std::time::SystemTime;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{MultiPart, SinglePart};

use crate::{MailError, Mailbox};

/// A mail ready to send: addressed, with its subject and both parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub reply_to: Option<Mailbox>,
    pub subject: String,
    /// The plain-text part (any line ends; sent as CRLF).
    pub text: String,
    /// The HTML part, a whole document.
    pub html: String,
}

/// A [`Mail`] formatted as RFC 5322 bytes, with what the transports need besides.
#[derive(Clone, Debug)]
pub struct FormattedMail {
    message_id: String,
    bytes: Vec<u8>,
    envelope: lettre::address::Envelope,
}

impl FormattedMail {
    /// The `Message-ID` header's value, `<…@…>`.
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// The whole message, CRLF line ends.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The envelope recipients (`RCPT TO`).
    pub fn recipients(&self) -> Vec<String> {
        self.envelope.to().iter().map(ToString::to_string).collect()
    }

    pub(crate) fn envelope(&self) -> &lettre::address::Envelope {
        &self.envelope
    }
}

impl Mail {
    /// Formats the message with a fresh `Message-ID` (on the sender's domain), the
    /// current date and a random MIME boundary.
    pub fn format(&self) -> Result<FormattedMail, MailError> {
        let domain = self
            .from
            .email()
            .rsplit_once('@')
            .map_or("localhost", |(_, domain)| domain);
        let message_id = format!("<{}@{domain}>", random_hex(16));
        // `=_` cannot occur in quoted-printable text, so the boundary cannot either;
        // short enough that `Content-Type` stays on one line.
        let boundary = format!("=_{}", random_hex(12));
        self.format_with(&boundary, SystemTime::now(), &message_id)
    }

    /// [`Mail::format`] with the varying parts given, so the output is reproducible.
    pub(crate) fn format_with(
        &self,
        boundary: &str,
        date: SystemTime,
        message_id: &str,
    ) -> Result<FormattedMail, MailError> {
        if self.to.is_empty() {
            return Err(MailError::NoRecipient);
        }
        let mut builder = lettre::Message::builder().from(self.from.to_lettre()?);
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.to_lettre()?);
        }
        for to in &self.to {
            builder = builder.to(to.to_lettre()?);
        }
        let subject: String = self
            .subject
            .split(['\r', '\n'])
            .collect::<Vec<_>>()
            .join(" ");
        let message = builder
            .subject(subject)
            .date(date)
            .message_id(Some(message_id.to_owned()))
            .multipart(
                MultiPart::alternative()
                    .boundary(boundary)
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .header(ContentTransferEncoding::QuotedPrintable)
                            .body(self.text.clone()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .header(ContentTransferEncoding::QuotedPrintable)
                            .body(self.html.clone()),
                    ),
            )
            .map_err(|err| MailError::Build(err.to_string()))?;
        Ok(FormattedMail {
            message_id: message_id.to_owned(),
            bytes: message.formatted(),
            envelope: message.envelope().clone(),
        })
    }
}

/// A simple HTML document for a mail given as text only: paragraphs at blank lines,
/// `<br>` at line ends, and `http(s)://` words made links.
pub fn text_to_html(text: &str) -> String {
    let mut body = String::new();
    let normalized = text.replace("\r\n", "\n");
    for paragraph in normalized.split("\n\n") {
        let paragraph = paragraph.trim_matches('\n');
        if paragraph.trim().is_empty() {
            continue;
        }
        body.push_str("<p style=\"margin:0 0 16px 0;\">");
        let lines: Vec<String> = paragraph.lines().map(link_words).collect();
        body.push_str(&lines.join("<br>\n"));
        body.push_str("</p>\n");
    }
    format!(
        "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"></head>\n\
         <body style=\"margin:0;padding:24px;font-family:Helvetica,Arial,sans-serif;\
         font-size:16px;line-height:1.5;color:#1f2933;\">\n{body}</body>\n</html>\n"
    )
}

fn link_words(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while !rest.is_empty() {
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, after) = rest.split_at(word_end);
        if word.starts_with("https://") || word.starts_with("http://") {
            let escaped = escape_html(word);
            out.push_str(&format!("<a href=\"{escaped}\">{escaped}</a>"));
        } else {
            out.push_str(&escape_html(word));
        }
        let space_end = after
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(after.len());
        out.push_str(&escape_html(&after[..space_end]));
        rest = &after[space_end..];
    }
    out
}

pub(crate) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `n` random bytes as lowercase hex. Falls back to the clock and a counter if the
/// OS has no randomness to give, as uniqueness is all that is needed here.
pub(crate) fn random_hex(n: usize) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut bytes = vec![0u8; n];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed = nanos ^ u128::from(COUNTER.fetch_add(1, Ordering::Relaxed)) << 64;
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = (seed >> ((i % 16) * 8)) as u8;
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn mail() -> Mail {
        Mail {
            from: Mailbox::new("noreply@alice.example.com", Some("Alice Dupré")).expect("from"),
            to: vec![Mailbox::address("alice@example.org").expect("to")],
            reply_to: Some(Mailbox::address("support@example.com").expect("reply-to")),
            subject: "Votre export est prêt".into(),
            text: "Bonjour Alice,\n\nLe lien :\nhttps://alice.example.com/exports/abc?x=1&y=2\n"
                .into(),
            html: "<p>Bonjour Alice, voilà</p>\n".into(),
        }
    }

    /// The exact bytes: this is the format operators' scripts parse.
    #[test]
    fn wire_format_is_exact() {
        let date = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let formatted = mail()
            .format_with("BOUNDARY", date, "<id1@alice.example.com>")
            .expect("format");
        let expected = concat!(
            "From: =?utf-8?b?QWxpY2UgRHVwcsOp?= <noreply@alice.example.com>\r\n",
            "Reply-To: support@example.com\r\n",
            "To: alice@example.org\r\n",
            // RFC 2047: only the words that need it are encoded.
            "Subject: Votre export est =?utf-8?b?cHLDqnQ=?=\r\n",
            "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n",
            "Message-ID: <id1@alice.example.com>\r\n",
            "MIME-Version: 1.0\r\n",
            "Content-Type: multipart/alternative; boundary=\"BOUNDARY\"\r\n",
            "\r\n",
            "--BOUNDARY\r\n",
            "Content-Type: text/plain; charset=utf-8\r\n",
            "Content-Transfer-Encoding: quoted-printable\r\n",
            "\r\n",
            "Bonjour Alice,\r\n",
            "\r\n",
            "Le lien :\r\n",
            "https://alice.example.com/exports/abc?x=3D1&y=3D2\r\n",
            "\r\n",
            "--BOUNDARY\r\n",
            "Content-Type: text/html; charset=utf-8\r\n",
            "Content-Transfer-Encoding: quoted-printable\r\n",
            "\r\n",
            "<p>Bonjour Alice, voil=C3=A0</p>\r\n",
            "\r\n",
            "--BOUNDARY--\r\n",
        );
        assert_eq!(String::from_utf8_lossy(formatted.bytes()), expected);
        assert_eq!(formatted.message_id(), "<id1@alice.example.com>");
        assert_eq!(formatted.recipients(), ["alice@example.org"]);
    }

    #[test]
    fn fresh_ids_and_boundaries() {
        let a = mail().format().expect("a");
        let b = mail().format().expect("b");
        assert_ne!(a.message_id(), b.message_id());
        assert!(
            a.message_id().ends_with("@alice.example.com>"),
            "{}",
            a.message_id()
        );
        let text = String::from_utf8_lossy(a.bytes()).into_owned();
        assert!(
            text.contains("\r\nContent-Type: multipart/alternative; boundary=\"=_"),
            "{text}"
        );
        assert!(a.bytes().is_ascii());
    }

    #[test]
    fn no_recipient() {
        let mut mail = mail();
        mail.to.clear();
        assert!(matches!(mail.format(), Err(MailError::NoRecipient)));
    }

    #[test]
    fn subject_line_breaks_cannot_inject_headers() {
        let mut mail = mail();
        mail.subject = "Hi\r\nBcc: evil@example.com".into();
        let formatted = mail.format().expect("format");
        let text = String::from_utf8_lossy(formatted.bytes()).into_owned();
        assert!(!text.contains("\r\nBcc:"), "{text}");
        assert_eq!(formatted.recipients(), ["alice@example.org"]);
    }

    #[test]
    fn html_from_text() {
        let html = text_to_html("Hello <you>,\n\nSee https://a.example/x?y=1&z=2 now.\nBye\n");
        assert!(
            html.contains("<p style=\"margin:0 0 16px 0;\">Hello &lt;you&gt;,</p>"),
            "{html}"
        );
        assert!(
            html.contains(
                "See <a href=\"https://a.example/x?y=1&amp;z=2\">https://a.example/x?y=1&amp;z=2</a> now.<br>\nBye</p>"
            ),
            "{html}"
        );
    }
}
