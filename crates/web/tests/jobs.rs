//! Jobs, triggers and mail through the whole router with the jobs running (spec
//! core-api B.12): pushing and polling jobs, every kind of trigger firing, the
//! thumbnails of an upload, retries, refusals, and mails received by a real SMTP
//! server on loopback in English and French.

// Test helpers panic on failure: that is how they report it.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use axum::http::{Method, StatusCode, header};
use hearth_jobs::{JobsConfig, LimitsOverride};
use hearth_mail::testkit::{Behavior, TestSmtpServer};
use hearth_mail::{MailConfig, Mailer};
use serde_json::{Value, json};
use support::{Env, Res, eventually, png, started_env};

const JOBS_SCOPE: &str = "io.cozy.jobs io.cozy.triggers io.cozy.files io.cozy.todos";

/// A server whose mails go to `smtp`, retrying failed jobs after 100 ms.
async fn env_with_smtp(smtp: &TestSmtpServer) -> Env {
    let mail = MailConfig { ..smtp.config() };
    let mut workers = std::collections::BTreeMap::new();
    workers.insert(
        "sendmail".to_owned(),
        LimitsOverride {
            timeout: Some(5),
            ..Default::default()
        },
    );
    let jobs = JobsConfig {
        retry_delay: Duration::from_millis(100),
        workers,
        ..JobsConfig::default()
    };
    started_env(|state| {
        let outbox = state.instances.fs_root().join("outbox");
        state.with_jobs(jobs, Mailer::new(mail, outbox).unwrap())
    })
    .await
}

async fn env() -> (Env, TestSmtpServer) {
    let smtp = TestSmtpServer::start().await.unwrap();
    (env_with_smtp(&smtp).await, smtp)
}

struct Client<'a> {
    env: &'a Env,
    host: String,
    token: String,
}

impl Client<'_> {
    async fn call(&self, method: Method, uri: &str, body: Value) -> Res {
        let body = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        self.env
            .call(
                &self.host,
                Some(&self.token),
                method,
                uri,
                &[("content-type", "application/vnd.api+json")],
                body,
            )
            .await
    }

    async fn push(&self, worker: &str, arguments: Value, options: Value) -> Res {
        self.call(
            Method::POST,
            &format!("/jobs/queue/{worker}"),
            json!({"data": {"type": "io.cozy.jobs", "attributes": {"arguments": arguments, "options": options}}}),
        )
        .await
    }

    async fn job(&self, id: &str) -> Value {
        let res = self
            .call(Method::GET, &format!("/jobs/{id}"), Value::Null)
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        res.json()["data"].clone()
    }

    /// Waits until a job is done or errored, and returns it.
    async fn finished(&self, id: &str) -> Value {
        eventually(15, &format!("job {id} to finish"), || async {
            let job = self.job(id).await;
            matches!(
                job["attributes"]["state"].as_str(),
                Some("done" | "errored")
            )
            .then_some(job)
        })
        .await
    }

    async fn trigger(&self, attributes: Value) -> Res {
        self.call(
            Method::POST,
            "/jobs/triggers",
            json!({"data": {"type": "io.cozy.triggers", "attributes": attributes}}),
        )
        .await
    }

    /// The jobs of a trigger, even a deleted one, through the data API.
    async fn jobs_of(&self, trigger_id: &str) -> Vec<Value> {
        let res = self
            .call(
                Method::POST,
                "/data/io.cozy.jobs/_find",
                json!({"selector": {"trigger_id": trigger_id}}),
            )
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        res.json()["docs"].as_array().unwrap().clone()
    }

    async fn trigger_jobs(&self, id: &str) -> Vec<Value> {
        let res = self
            .call(
                Method::GET,
                &format!("/jobs/triggers/{id}/jobs?Limit=50"),
                Value::Null,
            )
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        res.json()["data"].as_array().unwrap().clone()
    }
}

async fn client<'a>(env: &'a Env, domain: &str, params: &str) -> Client<'a> {
    env.create_instance(domain, params).await;
    Client {
        env,
        host: domain.to_owned(),
        token: env.token(domain, JOBS_SCOPE).await,
    }
}

fn error_detail(res: &Res) -> String {
    res.json()["errors"][0]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_job_runs_and_reports_its_state() {
    let (e, _smtp) = env().await;
    let a = client(&e, "a.localhost", "").await;
    let res = a.push("log", json!({"hello": "world"}), Value::Null).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    assert_eq!(
        res.headers[header::CONTENT_TYPE],
        "application/vnd.api+json"
    );
    let job = res.json()["data"].clone();
    assert_eq!(job["type"], "io.cozy.jobs");
    let attrs = &job["attributes"];
    assert_eq!(attrs["worker"], "log");
    assert_eq!(attrs["domain"], "a.localhost");
    assert_eq!(attrs["message"], json!({"hello": "world"}));
    assert!(attrs["queued_at"].as_str().unwrap().ends_with('Z'));
    let id = job["id"].as_str().unwrap();
    assert_eq!(job["links"]["self"], format!("/jobs/{id}"));

    let done = a.finished(id).await;
    assert_eq!(done["attributes"]["state"], "done", "{done}");
    assert!(done["attributes"]["started_at"].is_string());
    assert!(done["attributes"]["finished_at"].is_string());
    // Nothing left in the queue of the worker.
    let res = a.call(Method::GET, "/jobs/queue/log", Value::Null).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["meta"]["count"], 0);
    // The operator sees it in the metrics.
    let metrics = e.admin(Method::GET, "/metrics", "").await.text();
    assert!(
        metrics.contains("hearth_jobs_executions_total{worker=\"log\",outcome=\"done\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_change_nothing() {
    let (e, _smtp) = env().await;
    let a = client(&e, "a.localhost", "").await;
    let b = client(&e, "b.localhost", "").await;

    let res = a.push("no-such-worker", json!({}), Value::Null).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.text());
    assert!(
        error_detail(&res).contains("no-such-worker"),
        "{}",
        res.text()
    );
    // Only the server makes thumbnails.
    let res = a.push("thumbnail", json!({}), Value::Null).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.text());
    let res = a
        .push("log", json!({}), json!({"max_exec_count": "three"}))
        .await;
    assert_eq!(
        res.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        res.text()
    );
    let res = a
        .env
        .call(
            "a.localhost",
            Some(&a.token),
            Method::POST,
            "/jobs/queue/log",
            &[],
            "{not json",
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);

    for (attributes, status, says) in [
        (
            json!({"type": "@cron", "arguments": "0 0 * * *", "worker": "log"}),
            StatusCode::BAD_REQUEST,
            "6 fields",
        ),
        (
            json!({"type": "@cron", "arguments": "0 61 * * * *", "worker": "log"}),
            StatusCode::BAD_REQUEST,
            "minutes",
        ),
        (
            json!({"type": "@yearly", "arguments": "", "worker": "log"}),
            StatusCode::BAD_REQUEST,
            "trigger type",
        ),
        (
            json!({"type": "@at", "arguments": "tomorrow", "worker": "log"}),
            StatusCode::BAD_REQUEST,
            "RFC 3339",
        ),
        (
            json!({"type": "@event", "arguments": "io.cozy.files:EATEN", "worker": "log"}),
            StatusCode::BAD_REQUEST,
            "EATEN",
        ),
        (
            json!({"type": "@event", "arguments": "io.cozy.todos", "worker": "log", "debounce": "soon"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "debounce",
        ),
        (
            json!({"type": "@every", "arguments": "1h", "worker": "nope"}),
            StatusCode::NOT_FOUND,
            "nope",
        ),
    ] {
        let res = a.trigger(attributes.clone()).await;
        assert_eq!(res.status, status, "{attributes}: {}", res.text());
        assert!(
            error_detail(&res).contains(says),
            "{attributes}: {}",
            res.text()
        );
    }
    // None of them was kept.
    let res = a.call(Method::GET, "/jobs/triggers", Value::Null).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["data"], json!([]));

    // A job of another instance is not found, even with its id.
    let job = a.push("log", json!({}), Value::Null).await.json()["data"].clone();
    let id = job["id"].as_str().unwrap();
    let res = b
        .call(Method::GET, &format!("/jobs/{id}"), Value::Null)
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.text());
    // A's token on B's host is refused.
    let res = e
        .call(
            "b.localhost",
            Some(&a.token),
            Method::GET,
            &format!("/jobs/{id}"),
            &[],
            "",
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text());
    // A token without io.cozy.jobs cannot push.
    let files_only = e.token("a.localhost", "io.cozy.files").await;
    let res = e
        .call(
            "a.localhost",
            Some(&files_only),
            Method::POST,
            "/jobs/queue/log",
            &[],
            r#"{"data":{"attributes":{"arguments":{}}}}"#,
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_and_at_triggers_fire_on_time() {
    let (e, _smtp) = env().await;
    let a = client(&e, "a.localhost", "").await;
    let res = a
        .trigger(json!({"type": "@cron", "arguments": "* * * * * *", "worker": "log", "message": {"n": 1}}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let cron = res.json()["data"].clone();
    let cron_id = cron["id"].as_str().unwrap().to_owned();
    assert_eq!(cron["attributes"]["type"], "@cron");
    assert_eq!(cron["links"]["self"], format!("/jobs/triggers/{cron_id}"));
    let created = std::time::Instant::now();
    let jobs = eventually(5, "two firings of the @cron trigger", || async {
        let jobs = a.trigger_jobs(&cron_id).await;
        (jobs.len() >= 2).then_some(jobs)
    })
    .await;
    // Every second: two firings need at most about two seconds.
    assert!(
        created.elapsed() < Duration::from_millis(2600),
        "{:?}",
        created.elapsed()
    );
    for job in &jobs {
        assert_eq!(job["attributes"]["trigger_id"], cron_id.as_str());
        assert_eq!(job["attributes"]["message"], json!({"n": 1}));
    }
    let done = a.finished(jobs[0]["id"].as_str().unwrap()).await;
    assert_eq!(done["attributes"]["state"], "done");
    // The list shows the trigger with its state.
    let list = a
        .call(
            Method::GET,
            "/jobs/triggers?Worker=log&Type=@cron",
            Value::Null,
        )
        .await
        .json();
    let listed = &list["data"][0];
    assert_eq!(listed["id"], cron_id.as_str());
    assert!(
        listed["attributes"]["current_state"]["last_executed_job_id"].is_string(),
        "{listed}"
    );
    let other = a
        .call(Method::GET, "/jobs/triggers?Type=@webhook", Value::Null)
        .await
        .json();
    assert_eq!(other["data"], json!([]));
    // Deleted: it fires no more.
    let res = a
        .call(
            Method::DELETE,
            &format!("/jobs/triggers/{cron_id}"),
            Value::Null,
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let res = a
        .call(
            Method::GET,
            &format!("/jobs/triggers/{cron_id}"),
            Value::Null,
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let count = a.jobs_of(&cron_id).await.len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(a.jobs_of(&cron_id).await.len(), count);

    // @at: once, at its time, then the trigger is gone.
    let at = hearth_core::rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 2,
    );
    let res = a
        .trigger(json!({"type": "@at", "arguments": at, "worker": "log"}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let at_id = res.json()["data"]["id"].as_str().unwrap().to_owned();
    assert!(a.trigger_jobs(&at_id).await.is_empty());
    // Fired, the trigger is gone: its job is found through the data API.
    let fired = eventually(5, "the @at trigger", || async {
        a.jobs_of(&at_id).await.first().cloned()
    })
    .await;
    let queued = hearth_core::parse_rfc3339(fired["queued_at"].as_str().unwrap()).unwrap();
    assert!(
        queued >= hearth_core::parse_rfc3339(&at).unwrap(),
        "fired early: {fired}"
    );
    eventually(5, "the @at trigger to go away", || async {
        let res = a
            .call(Method::GET, &format!("/jobs/triggers/{at_id}"), Value::Null)
            .await;
        (res.status == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_fires_event_triggers_and_gets_thumbnails() {
    let (e, _smtp) = env().await;
    let a = client(&e, "a.localhost", "").await;
    let res = a
        .trigger(json!({"type": "@event", "arguments": "io.cozy.files:CREATED:image:class", "worker": "log"}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let trigger_id = res.json()["data"]["id"].as_str().unwrap().to_owned();

    // A text file does not match the selector.
    let res = e
        .call(
            "a.localhost",
            Some(&a.token),
            Method::POST,
            "/files/?Type=file&Name=a.txt",
            &[("content-type", "text/plain")],
            "hello",
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let res = e
        .call(
            "a.localhost",
            Some(&a.token),
            Method::POST,
            "/files/?Type=file&Name=pic.png",
            &[("content-type", "image/png")],
            png(800, 600),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let file = res.json()["data"].clone();
    let file_id = file["id"].as_str().unwrap().to_owned();

    let jobs = eventually(5, "the @event trigger", || async {
        let jobs = a.trigger_jobs(&trigger_id).await;
        (!jobs.is_empty()).then_some(jobs)
    })
    .await;
    assert_eq!(jobs.len(), 1, "only the image fires: {jobs:?}");
    let event = &jobs[0]["attributes"]["event"];
    assert_eq!(event["verb"], "CREATED");
    assert_eq!(event["doc"]["_id"], file_id.as_str());
    assert_eq!(event["domain"], "a.localhost");

    // The thumbnail worker made the thumbnails: the link of the file serves one.
    let small = file["links"]["small"].as_str().unwrap().to_owned();
    let thumb = eventually(10, "the thumbnail", || async {
        let res = e
            .call("a.localhost", None, Method::GET, &small, &[], "")
            .await;
        (res.status == StatusCode::OK).then_some(res)
    })
    .await;
    assert_eq!(thumb.headers[header::CONTENT_TYPE], "image/jpeg");
    assert_eq!(&thumb.body[..2], &[0xFF, 0xD8]);

    // Destroyed with the file.
    let inst = e.state.instances.get_str("a.localhost").await.unwrap();
    assert!(e.state.vfs.has_thumbnails(&inst, &file_id).await.unwrap());
    let res = e
        .call(
            "a.localhost",
            Some(&a.token),
            Method::DELETE,
            &format!("/files/{file_id}"),
            &[],
            "",
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let res = e
        .call(
            "a.localhost",
            Some(&a.token),
            Method::DELETE,
            "/files/trash",
            &[],
            "",
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    assert!(!e.state.vfs.has_thumbnails(&inst, &file_id).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debounced_and_webhook_triggers() {
    let (e, _smtp) = env().await;
    let a = client(&e, "a.localhost", "").await;
    let res = a
        .trigger(json!({"type": "@event", "arguments": "io.cozy.todos", "worker": "log", "debounce": "400ms"}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let debounced = res.json()["data"]["id"].as_str().unwrap().to_owned();
    for n in 0..5 {
        let res = e
            .call(
                "a.localhost",
                Some(&a.token),
                Method::POST,
                "/data/io.cozy.todos/",
                &[("content-type", "application/json")],
                json!({"n": n}).to_string(),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    }
    let jobs = eventually(5, "the debounced trigger", || async {
        let jobs = a.trigger_jobs(&debounced).await;
        (!jobs.is_empty()).then_some(jobs)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(a.trigger_jobs(&debounced).await.len(), 1, "{jobs:?}");
    assert_eq!(
        jobs[0]["attributes"]["event"]["doc"]["n"], 4,
        "the last event"
    );

    let res = a
        .trigger(json!({"type": "@webhook", "arguments": "", "worker": "log"}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let hook = res.json()["data"].clone();
    let hook_id = hook["id"].as_str().unwrap();
    let url = hook["links"]["webhook"].as_str().unwrap();
    assert_eq!(url, format!("/jobs/webhooks/{hook_id}"));
    // No token: the trigger id is the secret.
    let res = e
        .call(
            "a.localhost",
            None,
            Method::POST,
            url,
            &[],
            r#"{"ping": true}"#,
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    let jobs = a.trigger_jobs(hook_id).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["attributes"]["payload"], json!({"ping": true}));
    // Not on another instance, and not for a trigger that is not a webhook.
    let res = e
        .call("b.localhost", None, Method::POST, url, &[], "{}")
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let res = e
        .call(
            "a.localhost",
            None,
            Method::POST,
            &format!("/jobs/webhooks/{debounced}"),
            &[],
            "{}",
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);

    // Launch runs a trigger's job now, marked manual.
    let res = a
        .call(
            Method::POST,
            &format!("/jobs/triggers/{hook_id}/launch"),
            Value::Null,
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let launched = res.json()["data"].clone();
    assert_eq!(launched["attributes"]["manual_execution"], true);
    assert_eq!(launched["attributes"]["trigger_id"], hook_id);
    let state = a
        .call(
            Method::GET,
            &format!("/jobs/triggers/{hook_id}/state"),
            Value::Null,
        )
        .await
        .json();
    assert_eq!(state["data"]["type"], "io.cozy.triggers.state");
    assert_eq!(
        state["data"]["attributes"]["last_manual_job_id"],
        launched["id"]
    );
}

/// Parses a received mail; returns (subject, plain text, html).
fn parse_mail(raw: &[u8]) -> (String, String, String) {
    let msg = mail_parser::MessageParser::default().parse(raw).unwrap();
    (
        msg.subject().unwrap_or_default().to_owned(),
        msg.body_text(0).unwrap_or_default().into_owned(),
        msg.body_html(0).unwrap_or_default().into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mails_are_sent_in_the_owners_language() {
    let (e, smtp) = env().await;
    let en = client(
        &e,
        "en.localhost",
        "&Email=alice@example.com&PublicName=Alice&Locale=en",
    )
    .await;
    let fr = client(
        &e,
        "fr.localhost",
        "&Email=bruno@example.com&PublicName=Bruno&Locale=fr",
    )
    .await;
    let mut subjects = Vec::new();
    for (c, to, name) in [
        (&en, "alice@example.com", "Alice"),
        (&fr, "bruno@example.com", "Bruno"),
    ] {
        let link = format!("http://{}/settings#/exports/abc", c.host);
        let res = c
            .push(
                "sendmail",
                json!({"mode": "noreply", "template_name": "archiver", "template_values": {"ArchiveLink": link}}),
                Value::Null,
            )
            .await;
        assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
        let id = res.json()["data"]["id"].as_str().unwrap().to_owned();
        let mail = smtp
            .next_message(Duration::from_secs(10))
            .await
            .expect("a mail");
        assert_eq!(mail.to, vec![to.to_owned()]);
        let (subject, text, html) = parse_mail(&mail.data);
        assert!(
            text.lines().any(|l| l.trim() == link),
            "the link alone on its line: {text}"
        );
        assert!(html.contains(&link), "{html}");
        assert!(text.contains(name), "{text}");
        subjects.push(subject);
        assert_eq!(c.finished(&id).await["attributes"]["state"], "done");
    }
    assert_ne!(subjects[0], subjects[1], "localized subjects: {subjects:?}");
    assert!(!subjects[1].is_empty());

    // Explicit parts instead of a template.
    let res = en
        .push(
            "sendmail",
            json!({"mode": "noreply", "subject": "Hello there", "parts": [{"type": "text/plain", "body": "Plain words"}]}),
            Value::Null,
        )
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED);
    let mail = smtp
        .next_message(Duration::from_secs(10))
        .await
        .expect("a mail");
    let (subject, text, _) = parse_mail(&mail.data);
    assert_eq!(subject, "Hello there");
    assert!(text.contains("Plain words"));

    // A mail without a subject or template is an error at once, with no retry.
    let res = en
        .push("sendmail", json!({"mode": "noreply"}), Value::Null)
        .await;
    let id = res.json()["data"]["id"].as_str().unwrap().to_owned();
    let job = en.finished(&id).await;
    assert_eq!(job["attributes"]["state"], "errored");
    assert!(
        job["attributes"]["error"]
            .as_str()
            .unwrap()
            .contains("subject"),
        "{job}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_retries_then_reports_its_error() {
    let (e, smtp) = env().await;
    let a = client(&e, "a.localhost", "&Email=alice@example.com").await;
    smtp.set_behavior(Behavior::TempFail);
    let res = a
        .push(
            "sendmail",
            json!({"mode": "noreply", "subject": "Try", "parts": [{"type": "text/plain", "body": "x"}]}),
            json!({"max_exec_count": 3}),
        )
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    let id = res.json()["data"]["id"].as_str().unwrap().to_owned();
    let job = a.finished(&id).await;
    assert_eq!(job["attributes"]["state"], "errored", "{job}");
    let error = job["attributes"]["error"].as_str().unwrap();
    assert!(error.contains("451"), "{error}");
    assert_eq!(smtp.transactions(), 3, "three executions");
    assert!(smtp.messages().is_empty());

    // With the relay back, a new job goes through at once.
    smtp.set_behavior(Behavior::Accept);
    let res = a
        .push(
            "sendmail",
            json!({"mode": "noreply", "subject": "Again", "parts": [{"type": "text/plain", "body": "x"}]}),
            Value::Null,
        )
        .await;
    let id = res.json()["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(a.finished(&id).await["attributes"]["state"], "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_state_changes_reach_the_realtime_websocket() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let (e, _smtp) = env().await;
    let a = client(&e, "a.localhost", "").await;
    let mut req = format!("ws://{}/realtime/", e.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("host", "a.localhost".parse().unwrap());
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "io.cozy.websocket".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    for frame in [
        json!({"method": "AUTH", "payload": a.token}),
        json!({"method": "SUBSCRIBE", "payload": {"type": "io.cozy.jobs"}}),
    ] {
        ws.send(Message::text(frame.to_string())).await.unwrap();
    }
    // The subscription has no ack: give it a moment to be registered.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let res = a.push("log", json!({}), Value::Null).await;
    let id = res.json()["data"]["id"].as_str().unwrap().to_owned();
    let mut states = Vec::new();
    while !states.contains(&"done".to_owned()) {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an event")
            .unwrap()
            .unwrap();
        let event: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
        assert_eq!(event["payload"]["type"], "io.cozy.jobs");
        assert_eq!(event["payload"]["id"], id.as_str());
        states.push(
            event["payload"]["doc"]["state"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(states, ["queued", "running", "done"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_are_cleaned_after_their_retention() {
    let smtp = TestSmtpServer::start().await.unwrap();
    let jobs = JobsConfig {
        keep_finished: Duration::ZERO,
        ..JobsConfig::default()
    };
    let e = started_env(|state| {
        let outbox = state.instances.fs_root().join("outbox");
        state.with_jobs(jobs, Mailer::new(smtp.config(), outbox).unwrap())
    })
    .await;
    let a = client(&e, "a.localhost", "").await;
    let done = a.push("log", json!({}), Value::Null).await.json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    a.finished(&done).await;
    // A job still queued is kept whatever its age: a @client job never runs here.
    let res = a
        .trigger(json!({"type": "@client", "arguments": "", "worker": "client"}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let client_trigger = res.json()["data"]["id"].as_str().unwrap().to_owned();
    let res = a
        .call(
            Method::POST,
            &format!("/jobs/triggers/{client_trigger}/launch"),
            Value::Null,
        )
        .await;
    let pending = res.json()["data"]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let inst = e.state.instances.get_str("a.localhost").await.unwrap();
    assert_eq!(e.state.jobs.clean_finished(&inst).await.unwrap(), 1);
    let res = a
        .call(Method::GET, &format!("/jobs/{done}"), Value::Null)
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(a.job(&pending).await["attributes"]["state"], "queued");
}
