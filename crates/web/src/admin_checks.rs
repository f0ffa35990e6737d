//! Consistency checks of an instance for operators (spec instances 5.2, issue #11):
//! `POST /instances/:domain/checks/triggers` and `POST /instances/:domain/checks/shared`,
//! each answering 200 with a JSON array of problems (`[]` when all is well), which
//! `hearth check triggers|shared` prints one per line.
//!
//! Triggers (problem `type`):
//! - `duplicate`: two triggers of the same type, worker, arguments, debounce and
//!   message (the Cozy stack's check; `@in` triggers are never compared, their times
//!   differ). Two konnector triggers for the same konnector and account are caught here.
//! - `unknown_worker`: a trigger whose worker this server does not run.
//! - `invalid_schedule`: a type and arguments the scheduler cannot read.
//! - `missing_schedule`: a timed or `@event` trigger without its scheduler entry, so it
//!   never fires.
//! - `invalid_message`, `missing_name`, `missing_slug`: `@event` triggers of the
//!   `service` worker whose message cannot name the service (the Cozy stack's check).
//!
//! Shared (`io.cozy.shared`): `invalid_json`, and `invalid_revs_suite` when a revision
//! in a document's tree is not followed by the next generation.

use axum::{
    Json, Router,
    extract::{Path, State},
    response::{IntoResponse, Response},
    routing::post,
};
use hearth_core::{Doctype, InstanceId, JsonMap};
use hearth_store::{AllDocsQuery, GetOptions, StoreError};
use serde_json::{Map, Value, json};

use crate::{AppState, error::ApiError};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/instances/{domain}/checks/triggers", post(check_triggers))
        .route("/instances/{domain}/checks/shared", post(check_shared))
}

/// The scheduler's entries in the global store, one per timed or `@event` trigger,
/// named `<instance id>:<trigger id>` (`SCHEDULE` and `instance_key` in
/// `hearth-jobs`' scheduler, which keeps them private; `check triggers` in the binary
/// tests catches a drift).
const SCHEDULE: &str = "io.hearth.jobs.schedule";

fn doctype(name: &str) -> Result<Doctype, ApiError> {
    Doctype::new(name).map_err(|e| ApiError::internal(&e))
}

/// Every document of a doctype of an instance (none when it was never written).
async fn all_docs(state: &AppState, inst: &InstanceId, dt: &str) -> Result<Vec<JsonMap>, ApiError> {
    let query = AllDocsQuery {
        include_docs: true,
        inclusive_end: true,
        ..Default::default()
    };
    match state.store.all_docs(inst, &doctype(dt)?, &query).await {
        Ok(res) => Ok(res
            .rows
            .into_iter()
            .filter(|r| !r.deleted)
            .filter_map(|r| r.doc)
            .collect()),
        Err(StoreError::NotFound(_)) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

fn text<'a>(doc: &'a JsonMap, key: &str) -> &'a str {
    doc.get(key).and_then(Value::as_str).unwrap_or_default()
}

async fn check_triggers(
    State(state): State<AppState>,
    Path(domain): Path<String>,
) -> Result<Response, ApiError> {
    let inst = state.instances.get_str(&domain).await?;
    let id = inst.instance_id();
    let triggers = all_docs(&state, &id, hearth_jobs::model::TRIGGERS).await?;
    let workers: Vec<String> = state
        .jobs
        .worker_types()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let mut problems = duplicates(&triggers);
    let schedules = doctype(SCHEDULE)?;
    for t in &triggers {
        let (tid, kind, worker) = (text(t, "_id"), text(t, "type"), text(t, "worker"));
        let base = || {
            let mut p = Map::new();
            p.insert("_id".into(), json!(tid));
            p.insert("trigger".into(), json!(kind));
            p.insert("worker".into(), json!(worker));
            p
        };
        if worker != hearth_jobs::CLIENT_WORKER && !workers.iter().any(|w| w == worker) {
            let mut p = base();
            p.insert("type".into(), json!("unknown_worker"));
            problems.push(Value::Object(p));
        }
        let schedule = match hearth_jobs::Schedule::parse(kind, text(t, "arguments")) {
            Ok(s) => s,
            Err(reason) => {
                let mut p = base();
                p.insert("type".into(), json!("invalid_schedule"));
                p.insert("arguments".into(), json!(text(t, "arguments")));
                p.insert("error".into(), json!(reason));
                problems.push(Value::Object(p));
                continue;
            }
        };
        let scheduled = schedule.is_timed() || matches!(schedule, hearth_jobs::Schedule::Event(_));
        if scheduled {
            let key = format!("{}:{tid}", id.as_str());
            match state
                .store
                .get(
                    &InstanceId::global(),
                    &schedules,
                    &key,
                    GetOptions::default(),
                )
                .await
            {
                Ok(_) => {}
                Err(StoreError::NotFound(_)) => {
                    let mut p = base();
                    p.insert("type".into(), json!("missing_schedule"));
                    p.insert("arguments".into(), json!(text(t, "arguments")));
                    problems.push(Value::Object(p));
                }
                Err(e) => return Err(e.into()),
            }
        }
        if kind == "@event" && worker == "service" {
            problems.extend(service_message_problems(t, base));
        }
    }
    Ok(Json(problems).into_response())
}

/// The message of a trigger as the Cozy stack compares and prints it: its JSON text.
fn message_text(t: &JsonMap) -> Option<String> {
    t.get("message")
        .or_else(|| t.get("worker_arguments"))
        .filter(|m| !m.is_null())
        .map(Value::to_string)
}

/// Pairs of identical triggers; each trigger is reported once, with the first other.
fn duplicates(triggers: &[JsonMap]) -> Vec<Value> {
    let mut problems = Vec::new();
    for (i, left) in triggers.iter().enumerate() {
        if text(left, "type") == "@in" {
            continue;
        }
        let same = |right: &JsonMap| {
            ["type", "worker", "arguments", "debounce"]
                .iter()
                .all(|k| text(left, k) == text(right, k))
                && message_text(left) == message_text(right)
        };
        if let Some(right) = triggers[i + 1..].iter().find(|r| same(r)) {
            problems.push(json!({
                "type": "duplicate",
                "_id": text(left, "_id"),
                "other_id": text(right, "_id"),
                "trigger": text(left, "type"),
                "worker": text(left, "worker"),
                "arguments": text(left, "arguments"),
                "debounce": text(left, "debounce"),
                "message": message_text(left).unwrap_or_default(),
            }));
        }
    }
    problems
}

fn service_message_problems(t: &JsonMap, base: impl Fn() -> Map<String, Value>) -> Vec<Value> {
    let with = |kind: &str| {
        let mut p = base();
        p.insert("type".into(), json!(kind));
        p.insert("message".into(), json!(message_text(t).unwrap_or_default()));
        Value::Object(p)
    };
    let Some(Value::Object(message)) = t.get("message") else {
        return vec![with("invalid_message")];
    };
    let mut problems = Vec::new();
    for (field, kind) in [("name", "missing_name"), ("slug", "missing_slug")] {
        if message
            .get(field)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            problems.push(with(kind));
        }
    }
    problems
}

async fn check_shared(
    State(state): State<AppState>,
    Path(domain): Path<String>,
) -> Result<Response, ApiError> {
    let inst = state.instances.get_str(&domain).await?;
    let docs = all_docs(&state, &inst.instance_id(), "io.cozy.shared").await?;
    let mut problems = Vec::new();
    for doc in &docs {
        let id = text(doc, "_id");
        match doc.get("revisions") {
            None | Some(Value::Null) => {}
            Some(tree @ Value::Object(_)) => {
                if let Some((parent, child)) = broken_suite(tree) {
                    problems.push(json!({
                        "type": "invalid_revs_suite",
                        "_id": id,
                        "parent_rev": parent,
                        "child_rev": child,
                    }));
                }
            }
            Some(_) => problems.push(json!({"type": "invalid_json", "_id": id})),
        }
    }
    Ok(Json(problems).into_response())
}

/// The generation of a revision (`3-abc` → 3).
fn generation(rev: &str) -> Option<u64> {
    rev.split_once('-')?.0.parse().ok()
}

/// The first parent/child pair of a revision tree (`{rev, branches: [...]}`) whose
/// child is not the next generation.
fn broken_suite(tree: &Value) -> Option<(String, String)> {
    let rev = tree.get("rev").and_then(Value::as_str).unwrap_or_default();
    let branches = tree.get("branches").and_then(Value::as_array)?;
    let parent_gen = generation(rev);
    for branch in branches {
        let child = branch
            .get("rev")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if parent_gen.is_none() || generation(child) != parent_gen.map(|g| g + 1) {
            return Some((rev.to_owned(), child.to_owned()));
        }
    }
    branches.iter().find_map(broken_suite)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(v: Value) -> JsonMap {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn duplicates_follow_the_cozy_rules() {
        let triggers = vec![
            doc(
                json!({"_id": "a", "type": "@cron", "worker": "log", "arguments": "0 0 * * * *", "message": {"x": 1}}),
            ),
            doc(
                json!({"_id": "b", "type": "@cron", "worker": "log", "arguments": "0 0 * * * *", "message": {"x": 1}}),
            ),
            doc(
                json!({"_id": "c", "type": "@cron", "worker": "log", "arguments": "0 0 * * * *", "message": {"x": 2}}),
            ),
            doc(json!({"_id": "d", "type": "@in", "worker": "log", "arguments": "1h"})),
            doc(json!({"_id": "e", "type": "@in", "worker": "log", "arguments": "1h"})),
            doc(
                json!({"_id": "k1", "type": "@monthly", "worker": "konnector", "message": {"konnector": "k", "account": "1"}}),
            ),
            doc(
                json!({"_id": "k2", "type": "@monthly", "worker": "konnector", "message": {"konnector": "k", "account": "1"}}),
            ),
            doc(
                json!({"_id": "k3", "type": "@monthly", "worker": "konnector", "message": {"konnector": "k", "account": "2"}}),
            ),
        ];
        let found = duplicates(&triggers);
        let pairs: Vec<(&str, &str)> = found
            .iter()
            .map(|p| {
                (
                    p["_id"].as_str().unwrap_or_default(),
                    p["other_id"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(pairs, [("a", "b"), ("k1", "k2")]);
        assert_eq!(found[0]["message"], json!("{\"x\":1}"));
        assert_eq!(found[0]["type"], json!("duplicate"));
    }

    #[test]
    fn revision_suites() {
        let ok = json!({"rev": "1-a", "branches": [{"rev": "2-b", "branches": [{"rev": "3-c"}, {"rev": "3-d"}]}]});
        assert_eq!(broken_suite(&ok), None);
        let bad = json!({"rev": "1-a", "branches": [{"rev": "2-b", "branches": [{"rev": "4-c"}]}]});
        assert_eq!(broken_suite(&bad), Some(("2-b".into(), "4-c".into())));
        let bad = json!({"rev": "2-a", "branches": [{"rev": "1-b"}]});
        assert_eq!(broken_suite(&bad), Some(("2-a".into(), "1-b".into())));
    }

    #[test]
    fn service_messages() {
        let base = || Map::new();
        let t = doc(json!({"message": {"name": "n", "slug": ""}}));
        let p = service_message_problems(&t, base);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0]["type"], json!("missing_slug"));
        let t = doc(json!({"message": "x"}));
        assert_eq!(
            service_message_problems(&t, base)[0]["type"],
            json!("invalid_message")
        );
    }
}
