//! The realtime websocket `GET /realtime/` and `POST /realtime/:doctype/:id` (spec
//! core-api B.13): document events of the request's instance, pushed to subscribers.
//!
//! Protocol: the client's first frame is `{"method":"AUTH","payload":"<token>"}`, then
//! `SUBSCRIBE`/`UNSUBSCRIBE` with `{"type","id"?}`; nothing is acknowledged. The server
//! sends `{"event":"CREATED"|…,"payload":{"type","id","doc"}}` and errors as
//! `{"event":"error","payload":{"status","code","title","source"}}`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::{
    Router,
    body::Bytes,
    extract::{
        Path, State,
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code},
    },
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use hearth_core::{Doctype, InstanceId, JsonMap};
use hearth_instances::Instance;
use hearth_store::events::{Event, Verb};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, interval_at, timeout};

use crate::token::{TokenRejection, perm_of_token};
use crate::{ApiError, AppState, Inst, Perm};

/// The websocket subprotocol the clients ask for, echoed back.
const PROTOCOL: &str = "io.cozy.websocket";
/// The largest frame a client may send.
const READ_LIMIT: usize = 1024;
const PING_EVERY: Duration = Duration::from_secs(54);
const PONG_WAIT: Duration = Duration::from_secs(60);
const WRITE_WAIT: Duration = Duration::from_secs(10);

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/realtime/", get(upgrade))
        .route("/realtime", get(upgrade))
        .route("/realtime/{doctype}/{id}", post(notify))
}

async fn upgrade(
    State(state): State<AppState>,
    Inst(instance): Inst,
    ws: WebSocketUpgrade,
) -> Response {
    // Frames a little over the limit are refused by us (with a close frame that says
    // why); the transport's own limit only guards memory against huge ones.
    ws.protocols([PROTOCOL])
        .max_frame_size(16 * READ_LIMIT)
        .max_message_size(16 * READ_LIMIT)
        .on_upgrade(move |socket| async move {
            Session {
                state,
                instance,
                socket,
            }
            .run()
            .await;
        })
}

/// One error frame of the protocol.
fn error_frame(status: StatusCode, title: &str, source: &Value) -> String {
    // Go's status texts, as the clients know them (404 is "Page Not Found").
    let reason = match status {
        StatusCode::NOT_FOUND => "Page Not Found",
        other => other.canonical_reason().unwrap_or(""),
    };
    let code = reason.to_ascii_lowercase();
    json!({
        "event": "error",
        "payload": {
            "status": format!("{} {reason}", status.as_u16()),
            "code": code,
            "title": title,
            "source": source,
        }
    })
    .to_string()
}

fn event_frame(event: &Event) -> String {
    json!({
        "event": event.verb.as_str(),
        "payload": {
            "type": event.doctype.as_str(),
            "id": event.id,
            "doc": event.doc,
        }
    })
    .to_string()
}

/// What a connection listens to: whole doctypes, or single documents.
#[derive(Default)]
struct Subscriptions {
    types: HashSet<String>,
    docs: HashSet<(String, String)>,
}

impl Subscriptions {
    fn wants(&self, event: &Event) -> bool {
        let dt = event.doctype.as_str();
        self.types.contains(dt) || self.docs.contains(&(dt.to_owned(), event.id.clone()))
    }
}

/// Why a session ends.
enum End {
    /// The peer left, or the socket failed: nothing more to send.
    Gone,
    /// Send this close frame.
    Close(u16, &'static str),
}

struct Session {
    state: AppState,
    instance: Arc<Instance>,
    socket: WebSocket,
}

impl Session {
    async fn run(mut self) {
        let end = match self.serve().await {
            Ok(()) => End::Gone,
            Err(end) => end,
        };
        if let End::Close(code, reason) = end {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = timeout(WRITE_WAIT, self.socket.send(Message::Close(Some(frame)))).await;
        }
    }

    async fn send(&mut self, text: String) -> Result<(), End> {
        match timeout(WRITE_WAIT, self.socket.send(Message::Text(text.into()))).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(End::Gone),
        }
    }

    /// The next text command, as JSON; pings and pongs are handled by the transport.
    async fn read(&mut self, last_seen: &mut Instant) -> Result<Option<Value>, End> {
        let Some(msg) = self.socket.recv().await else {
            return Err(End::Gone);
        };
        let msg = msg.map_err(|_| End::Gone)?;
        *last_seen = Instant::now();
        let raw = match msg {
            Message::Text(t) => Bytes::from(t),
            Message::Binary(b) => b,
            Message::Ping(_) | Message::Pong(_) => return Ok(None),
            Message::Close(_) => return Err(End::Gone),
        };
        if raw.len() > READ_LIMIT {
            return Err(End::Close(close_code::SIZE, "message too big"));
        }
        match serde_json::from_slice::<Value>(&raw) {
            Ok(v) => Ok(Some(v)),
            Err(_) => Ok(Some(Value::String(
                String::from_utf8_lossy(&raw).into_owned(),
            ))),
        }
    }

    async fn serve(&mut self) -> Result<(), End> {
        let mut last_seen = Instant::now();
        // The first command must authenticate; it waits at most as long as a pong.
        let first = loop {
            match timeout(PONG_WAIT, self.read(&mut last_seen)).await {
                Ok(Ok(Some(cmd))) => break cmd,
                Ok(Ok(None)) => continue,
                Ok(Err(end)) => return Err(end),
                Err(_) => return Err(End::Close(close_code::POLICY, "no AUTH")),
            }
        };
        let perm = self.auth(&first).await?;
        let inst: InstanceId = self.instance.instance_id();
        let mut events = self.state.events.subscribe(&inst);
        let mut subs = Subscriptions::default();
        let mut pings = interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        loop {
            tokio::select! {
                cmd = self.read(&mut last_seen) => {
                    if let Some(cmd) = cmd? {
                        self.command(&perm, &mut subs, &cmd).await?;
                    }
                }
                event = events.recv() => match event {
                    Ok(event) => {
                        if subs.wants(&event) {
                            self.send(event_frame(&event)).await?;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "realtime subscriber lagging; events dropped");
                    }
                    Err(RecvError::Closed) => return Err(End::Close(close_code::AWAY, "")),
                },
                _ = pings.tick() => {
                    if last_seen.elapsed() > PONG_WAIT {
                        return Err(End::Gone);
                    }
                    match timeout(WRITE_WAIT, self.socket.send(Message::Ping(Bytes::new()))).await {
                        Ok(Ok(())) => {}
                        _ => return Err(End::Gone),
                    }
                }
            }
        }
    }

    /// Checks the first command: `AUTH` with a token of this instance.
    async fn auth(&mut self, cmd: &Value) -> Result<Perm, End> {
        if !method_is(cmd, "AUTH") {
            let title = format!("The method {} is not supported", method_of(cmd));
            self.send(error_frame(StatusCode::METHOD_NOT_ALLOWED, &title, cmd))
                .await?;
            return Err(End::Close(close_code::POLICY, "AUTH expected"));
        }
        let token = cmd.get("payload").and_then(Value::as_str).unwrap_or("");
        match perm_of_token(&self.state, &self.instance, token).await {
            Ok(perm) => Ok(perm),
            Err(rejection) => {
                if let TokenRejection::Failed(e) = &rejection {
                    tracing::warn!(error = ?e, "realtime AUTH failed");
                }
                self.send(error_frame(
                    StatusCode::UNAUTHORIZED,
                    "The authentication has failed",
                    cmd,
                ))
                .await?;
                Err(End::Close(close_code::POLICY, "unauthorized"))
            }
        }
    }

    /// `SUBSCRIBE` / `UNSUBSCRIBE`; anything else is answered by an error frame.
    async fn command(
        &mut self,
        perm: &Perm,
        subs: &mut Subscriptions,
        cmd: &Value,
    ) -> Result<(), End> {
        let subscribe = method_is(cmd, "SUBSCRIBE");
        if !subscribe && !method_is(cmd, "UNSUBSCRIBE") {
            let title = format!("The method {} is not supported", method_of(cmd));
            return self
                .send(error_frame(StatusCode::METHOD_NOT_ALLOWED, &title, cmd))
                .await;
        }
        let payload = cmd.get("payload");
        let dt = payload
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let id = payload
            .and_then(|p| p.get("id"))
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty());
        if dt.is_empty() || Doctype::new(dt).is_err() {
            return self
                .send(error_frame(
                    StatusCode::NOT_FOUND,
                    "The doctype is missing or invalid",
                    cmd,
                ))
                .await;
        }
        if !subscribe {
            match id {
                Some(id) => subs.docs.remove(&(dt.to_owned(), id.to_owned())),
                None => subs.types.remove(dt),
            };
            return Ok(());
        }
        if !may_subscribe(perm, dt, id) {
            let title = format!("You don't have permission to subscribe to {dt}");
            return self
                .send(error_frame(StatusCode::FORBIDDEN, &title, cmd))
                .await;
        }
        match id {
            Some(id) => subs.docs.insert((dt.to_owned(), id.to_owned())),
            None => subs.types.insert(dt.to_owned()),
        };
        Ok(())
    }
}

/// Whether the command's `method` is `name`, in any case.
fn method_is(cmd: &Value, name: &str) -> bool {
    cmd.get("method")
        .and_then(Value::as_str)
        .is_some_and(|m| m.eq_ignore_ascii_case(name))
}

fn method_of(cmd: &Value) -> String {
    cmd.get("method")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// The permission a subscription needs (spec B.13): GET on the whole doctype, or on
/// the document; some doctypes borrow the files' permission or need none.
fn may_subscribe(perm: &Perm, dt: &str, id: Option<&str>) -> bool {
    match dt {
        "io.cozy.sharings.initial_sync" | "io.cozy.auth.confirmations" => true,
        "io.cozy.files.thumbnails" | "io.cozy.notes.events" => {
            perm.set.allows_whole_type("GET", "io.cozy.files")
        }
        _ => match id {
            None => perm.set.allows_whole_type("GET", dt),
            Some(id) => perm.set.allows_doc("GET", dt, id, None),
        },
    }
}

/// `POST /realtime/:doctype/:id` — a client's message, broadcast as `NOTIFIED` to the
/// instance's subscribers without being stored; needs POST on that document.
async fn notify(
    State(state): State<AppState>,
    Inst(instance): Inst,
    perm: Result<Perm, Response>,
    Path((dt, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let perm = match perm {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Ok(doctype) = Doctype::new(dt.as_str()) else {
        return ApiError::not_found(format!("{dt} is not a valid doctype")).into_response();
    };
    if !perm.set.allows_doc("POST", &dt, &id, None) {
        return ApiError::forbidden("Permission denied").into_response();
    }
    let doc = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => map,
        Ok(other) => {
            let mut map = JsonMap::new();
            map.insert("data".into(), other);
            map
        }
        Err(e) => return ApiError::bad_request(format!("Invalid JSON: {e}")).into_response(),
    };
    state.events.publish(Event {
        instance: instance.instance_id(),
        doctype,
        id,
        verb: Verb::Notified,
        doc,
        old: None,
    });
    StatusCode::NO_CONTENT.into_response()
}
