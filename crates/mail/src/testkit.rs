//! A real, minimal SMTP receiver for tests (feature `testkit`): a tokio server on
//! `127.0.0.1:0` speaking `EHLO`/`HELO`, `AUTH PLAIN`, `MAIL FROM`, `RCPT TO`, `DATA`
//! (dot-unstuffed), `RSET`, `NOOP` and `QUIT`. It keeps what it receives, lets a test
//! await the next message, and can be switched at runtime to refuse mails (`451` or
//! `550`) or to stall after the data, as a slow relay would.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use hearth_mail::testkit::{Behavior, TestSmtpServer};
//!
//! let server = TestSmtpServer::start().await?;
//! let config = server.config(); // a `MailConfig` pointing at it, without TLS
//! // … send through a `Mailer::new(config, …)` …
//! let mail = server.next_message(Duration::from_secs(5)).await.expect("a mail");
//! assert_eq!(mail.to, ["alice@example.org"]);
//! server.set_behavior(Behavior::TempFail); // the next mails get `451`
//! server.stop().await;
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::{MailConfig, TlsMode};

/// How the server answers, switchable at any time with
/// [`TestSmtpServer::set_behavior`]; a session reads it at each command.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Behavior {
    /// Accept every mail (`250`).
    #[default]
    Accept,
    /// Answer `MAIL FROM` with `451 4.3.0` (try again later).
    TempFail,
    /// Answer `RCPT TO` with `550 5.1.1` (no such mailbox).
    Reject,
    /// Take the whole `DATA`, then never answer: the client waits until its timeout
    /// or until it is killed. The message is kept in [`TestSmtpServer::stalled`].
    StallAfterData,
}

/// A message the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The `EHLO`/`HELO` argument.
    pub helo: String,
    /// The user name and password of `AUTH PLAIN`, if the client authenticated.
    pub auth: Option<(String, String)>,
    /// The envelope sender (`MAIL FROM`), without the angle brackets.
    pub from: String,
    /// The envelope recipients (`RCPT TO`), in order.
    pub to: Vec<String>,
    /// The message as received, dot-unstuffed, line ends untouched.
    pub data: Vec<u8>,
}

impl ReceivedMail {
    /// The message as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// The running server. Stop it with [`TestSmtpServer::stop`]; dropping it stops it
/// too, without waiting.
pub struct TestSmtpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    behavior: Mutex<Behavior>,
    state: Mutex<State>,
    events: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    accepted: Vec<ReceivedMail>,
    accepted_taken: usize,
    stalled: Vec<ReceivedMail>,
    stalled_taken: usize,
    connections: usize,
    transactions: usize,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn behavior(&self) -> Behavior {
        *self.behavior.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self) {
        self.events.send_modify(|version| *version += 1);
    }
}

/// The longest command line accepted, and the largest message.
const MAX_LINE: u64 = 4096;
const MAX_MESSAGE: usize = 25 * 1024 * 1024;

impl TestSmtpServer {
    /// Binds `127.0.0.1:0` and starts serving.
    pub async fn start() -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let (shutdown, stop) = oneshot::channel();
        let task = tokio::spawn(serve(listener, Arc::clone(&shared), stop));
        Ok(TestSmtpServer {
            addr,
            shared,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A mail configuration for this server: no TLS, a 5 s timeout.
    pub fn config(&self) -> MailConfig {
        MailConfig {
            host: Some(self.addr.ip().to_string()),
            port: Some(self.addr.port()),
            tls: TlsMode::None,
            timeout_secs: 5,
            ..MailConfig::default()
        }
    }

    /// Changes how the server answers from the next command on.
    pub fn set_behavior(&self, behavior: Behavior) {
        *self
            .shared
            .behavior
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = behavior;
    }

    /// How the server answers now.
    pub fn behavior(&self) -> Behavior {
        self.shared.behavior()
    }

    /// Every accepted message so far, in order.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.shared.state().accepted.clone()
    }

    /// Every message taken in [`Behavior::StallAfterData`] and never answered.
    pub fn stalled(&self) -> Vec<ReceivedMail> {
        self.shared.state().stalled.clone()
    }

    /// The number of connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.state().connections
    }

    /// The number of mail transactions begun (`MAIL FROM` commands), refused or not:
    /// how many times a client tried.
    pub fn transactions(&self) -> usize {
        self.shared.state().transactions
    }

    /// The next accepted message not yet returned by this method, waiting for it up
    /// to `timeout`.
    pub async fn next_message(&self, timeout: Duration) -> Option<ReceivedMail> {
        self.wait_for(timeout, |state| {
            let mail = state.accepted.get(state.accepted_taken).cloned()?;
            state.accepted_taken += 1;
            Some(mail)
        })
        .await
    }

    /// The next stalled message not yet returned by this method, waiting for it up
    /// to `timeout`: once it is there, the client is waiting for a reply.
    pub async fn next_stalled(&self, timeout: Duration) -> Option<ReceivedMail> {
        self.wait_for(timeout, |state| {
            let mail = state.stalled.get(state.stalled_taken).cloned()?;
            state.stalled_taken += 1;
            Some(mail)
        })
        .await
    }

    async fn wait_for(
        &self,
        timeout: Duration,
        mut take: impl FnMut(&mut State) -> Option<ReceivedMail>,
    ) -> Option<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Subscribed before looking, so an event between the look and the wait is seen.
        let mut events = self.shared.events.subscribe();
        loop {
            if let Some(mail) = take(&mut self.shared.state()) {
                return Some(mail);
            }
            match tokio::time::timeout_at(deadline, events.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return take(&mut self.shared.state()),
            }
        }
    }

    /// Stops listening and closes every open session (a stalled client sees its
    /// connection close).
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestSmtpServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    shared.state().connections += 1;
                    sessions.spawn(session(stream, Arc::clone(&shared)));
                }
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    drop(listener);
    sessions.shutdown().await;
}

/// One SMTP session. I/O errors end it quietly: the client went away.
async fn session(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let _ = run_session(&mut reader, &mut write, &shared).await;
}

#[derive(Default)]
struct Transaction {
    from: Option<String>,
    to: Vec<String>,
}

async fn run_session<R, W>(reader: &mut R, write: &mut W, shared: &Shared) -> io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut helo: Option<String> = None;
    let mut auth: Option<(String, String)> = None;
    let mut tx = Transaction::default();
    reply(write, "220 hearth-testkit ESMTP ready").await?;
    while let Some(line) = read_line(reader, MAX_LINE).await? {
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches(['\r', '\n']);
        let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
        let arg = arg.trim();
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" if !arg.is_empty() => {
                helo = Some(arg.to_owned());
                tx = Transaction::default();
                reply(
                    write,
                    "250-hearth-testkit greets you\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n\
                     250-AUTH PLAIN\r\n250 SIZE 26214400",
                )
                .await?;
            }
            "HELO" if !arg.is_empty() => {
                helo = Some(arg.to_owned());
                tx = Transaction::default();
                reply(write, "250 hearth-testkit").await?;
            }
            "EHLO" | "HELO" => reply(write, "501 5.5.4 A domain is required").await?,
            "AUTH" => {
                let (mechanism, initial) = arg.split_once(' ').unwrap_or((arg, ""));
                if helo.is_none() {
                    reply(write, "503 5.5.1 EHLO first").await?;
                } else if !mechanism.eq_ignore_ascii_case("PLAIN") {
                    reply(write, "504 5.5.4 Unrecognized authentication type").await?;
                } else {
                    let response = if initial.is_empty() {
                        reply(write, "334 ").await?;
                        let line = read_line(reader, MAX_LINE).await?.unwrap_or_default();
                        String::from_utf8_lossy(&line).trim().to_owned()
                    } else {
                        initial.to_owned()
                    };
                    match decode_plain(&response) {
                        Some(credentials) => {
                            auth = Some(credentials);
                            reply(write, "235 2.7.0 Authentication successful").await?;
                        }
                        None => reply(write, "501 5.5.2 Cannot decode the response").await?,
                    }
                }
            }
            "MAIL" => {
                if helo.is_none() {
                    reply(write, "503 5.5.1 EHLO first").await?;
                    continue;
                }
                shared.state().transactions += 1;
                if shared.behavior() == Behavior::TempFail {
                    reply(
                        write,
                        "451 4.3.0 Mailbox temporarily unavailable, try again later",
                    )
                    .await?;
                    continue;
                }
                match path_arg(arg, "FROM:") {
                    Some(from) => {
                        tx = Transaction {
                            from: Some(from),
                            to: Vec::new(),
                        };
                        reply(write, "250 2.1.0 OK").await?;
                    }
                    None => reply(write, "501 5.5.4 Syntax: MAIL FROM:<address>").await?,
                }
            }
            "RCPT" => {
                if tx.from.is_none() {
                    reply(write, "503 5.5.1 MAIL first").await?;
                    continue;
                }
                match path_arg(arg, "TO:") {
                    Some(to) if shared.behavior() == Behavior::Reject => {
                        reply(write, &format!("550 5.1.1 <{to}>: mailbox unavailable")).await?;
                    }
                    Some(to) => {
                        tx.to.push(to);
                        reply(write, "250 2.1.5 OK").await?;
                    }
                    None => reply(write, "501 5.5.4 Syntax: RCPT TO:<address>").await?,
                }
            }
            "DATA" => {
                if tx.to.is_empty() {
                    reply(write, "503 5.5.1 No valid recipients").await?;
                    continue;
                }
                reply(write, "354 End data with <CR><LF>.<CR><LF>").await?;
                let Some(data) = read_data(reader).await? else {
                    return Ok(());
                };
                let Transaction { from, to } = std::mem::take(&mut tx);
                let mail = ReceivedMail {
                    helo: helo.clone().unwrap_or_default(),
                    auth: auth.clone(),
                    from: from.unwrap_or_default(),
                    to,
                    data,
                };
                if shared.behavior() == Behavior::StallAfterData {
                    shared.state().stalled.push(mail);
                    shared.notify();
                    // Never answer; keep reading so the session ends when the client
                    // hangs up.
                    while read_line(reader, MAX_LINE).await?.is_some() {}
                    return Ok(());
                }
                let queued = {
                    let mut state = shared.state();
                    state.accepted.push(mail);
                    state.accepted.len()
                };
                shared.notify();
                reply(write, &format!("250 2.0.0 OK queued as {queued}")).await?;
            }
            "RSET" => {
                tx = Transaction::default();
                reply(write, "250 2.0.0 OK").await?;
            }
            "NOOP" => reply(write, "250 2.0.0 OK").await?,
            "QUIT" => {
                reply(write, "221 2.0.0 Bye").await?;
                return Ok(());
            }
            "STARTTLS" => reply(write, "454 4.7.0 TLS not available").await?,
            "VRFY" | "EXPN" | "HELP" | "TURN" => {
                reply(write, "502 5.5.1 Command not implemented").await?;
            }
            _ => reply(write, "500 5.5.2 Command unrecognized").await?,
        }
    }
    Ok(())
}

async fn reply<W: AsyncWrite + Unpin>(write: &mut W, text: &str) -> io::Result<()> {
    // One write per reply: split writes meet Nagle and delayed ACKs (40 ms each).
    write.write_all(format!("{text}\r\n").as_bytes()).await?;
    write.flush().await
}

/// One line with its line end, at most `limit` bytes; `None` at the end of the stream.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: u64,
) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let n = reader.take(limit).read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Ok(None);
    }
    if !line.ends_with(b"\n") && n as u64 >= limit {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
    }
    Ok(Some(line))
}

/// The `DATA` content up to the lone `.` line, dot-unstuffed (RFC 5321 4.5.2), each
/// line's end kept as sent. `None` if the client hung up first.
async fn read_data<R: AsyncBufRead + Unpin>(reader: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut data = Vec::new();
    loop {
        let Some(line) = read_line(reader, 1024 * 1024).await? else {
            return Ok(None);
        };
        let content_len = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"))
            .map_or(line.len(), <[u8]>::len);
        let (content, end) = line.split_at(content_len);
        if content == b"." {
            return Ok(Some(data));
        }
        let content = content.strip_prefix(b".").unwrap_or(content);
        if data.len() + content.len() + end.len() > MAX_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "message too large",
            ));
        }
        data.extend_from_slice(content);
        data.extend_from_slice(end);
    }
}

/// `FROM:<a@b> PARAMS` → `a@b` (case-insensitive keyword, spaces tolerated).
fn path_arg(arg: &str, keyword: &str) -> Option<String> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let inner = rest.strip_prefix('<')?;
    let end = inner.find('>')?;
    Some(inner[..end].to_owned())
}

/// `base64(authzid \0 user \0 password)` → (user, password).
fn decode_plain(response: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(response.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let mut fields = text.split('\0');
    let (_authzid, user, password) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some() {
        return None;
    }
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(path_arg("FROM:<a@b.c>", "FROM:").as_deref(), Some("a@b.c"));
        assert_eq!(
            path_arg("from: <a@b.c> BODY=8BITMIME", "FROM:").as_deref(),
            Some("a@b.c")
        );
        assert_eq!(path_arg("FROM:<>", "FROM:").as_deref(), Some(""));
        assert_eq!(path_arg("TO:a@b.c", "TO:"), None);
        assert_eq!(path_arg("X", "FROM:"), None);
    }

    #[test]
    fn plain_credentials() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("\0alice\0s3cret");
        assert_eq!(
            decode_plain(&encoded),
            Some(("alice".to_owned(), "s3cret".to_owned()))
        );
        assert_eq!(decode_plain("!!"), None);
    }

    #[tokio::test]
    async fn data_is_unstuffed_and_line_ends_kept() {
        let input: &[u8] = b"a\r\n..b\r\n.c\nd\r\n.\r\nNOOP\r\n";
        let mut reader = BufReader::new(input);
        let data = read_data(&mut reader).await.expect("read").expect("data");
        assert_eq!(data, b"a\r\n.b\r\nc\nd\r\n");
        let next = read_line(&mut reader, MAX_LINE).await.expect("read");
        assert_eq!(next.as_deref(), Some(&b"NOOP\r\n"[..]));
    }

    /// A raw session: the replies a client sees, in order.
    #[tokio::test]
    async fn session_replies() {
        let shared = Shared::default();
        let input: &[u8] = b"MAIL FROM:<a@b.c>\r\nEHLO client.test\r\nRCPT TO:<x@y.z>\r\n\
            MAIL FROM:<a@b.c>\r\nDATA\r\nRCPT TO:<x@y.z>\r\nRSET\r\nDATA\r\nBOGUS\r\n\
            MAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\nhi\r\n.\r\nNOOP\r\nQUIT\r\n";
        let mut reader = BufReader::new(input);
        let mut out = Vec::new();
        run_session(&mut reader, &mut out, &shared)
            .await
            .expect("session");
        let out = String::from_utf8(out).expect("utf-8");
        let codes: Vec<&str> = out
            .lines()
            .filter(|line| line.as_bytes().get(3) != Some(&b'-'))
            .map(|line| &line[..3])
            .collect();
        assert_eq!(
            codes,
            [
                "220", "503", "250", "503", "250", "503", "250", "250", "503", "500", "250", "250",
                "354", "250", "250", "221"
            ],
            "{out}"
        );
        let state = shared.state();
        assert_eq!(state.accepted.len(), 1);
        assert_eq!(state.accepted[0].helo, "client.test");
        assert_eq!(state.accepted[0].to, ["x@y.z"]);
        assert_eq!(state.accepted[0].data, b"hi\r\n");
        assert_eq!(state.transactions, 2);
    }
}
