//! The documents: `io.cozy.jobs` and `io.cozy.triggers`, and what a trigger's
//! `type` + `arguments` mean.

use std::time::Duration;

use hearth_core::{JsonMap, parse_rfc3339};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cron::Cron;
use crate::duration;

pub const JOBS: &str = "io.cozy.jobs";
pub const TRIGGERS: &str = "io.cozy.triggers";

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Errored,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Errored => "errored",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Errored)
    }
}

/// Per-job overrides of the worker's limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobOptions {
    /// Seconds an execution may last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// How many executions before the job is errored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_exec_count: Option<u32>,
}

/// An `io.cozy.jobs` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "_rev", default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    pub domain: String,
    pub worker: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_id: Option<String>,
    #[serde(default)]
    pub message: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manual_execution: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<JobOptions>,
    pub state: JobState,
    pub queued_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Job {
    pub fn to_doc(&self) -> JsonMap {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => JsonMap::new(),
        }
    }

    pub fn from_doc(doc: JsonMap) -> Result<Self, String> {
        serde_json::from_value(Value::Object(doc)).map_err(|e| format!("invalid job: {e}"))
    }

    /// The JSON:API attributes (the document without `_id`/`_rev`).
    pub fn attributes(&self) -> JsonMap {
        let mut doc = self.to_doc();
        doc.shift_remove("_id");
        doc.shift_remove("_rev");
        doc
    }
}

/// An `io.cozy.triggers` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "_rev", default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    pub domain: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub arguments: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce: Option<String>,
    pub worker: String,
    #[serde(default, alias = "worker_arguments")]
    pub message: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<JobOptions>,
    #[serde(
        rename = "cozyMetadata",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cozy_metadata: Option<Value>,
}

impl Trigger {
    pub fn to_doc(&self) -> JsonMap {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => JsonMap::new(),
        }
    }

    pub fn from_doc(doc: JsonMap) -> Result<Self, String> {
        serde_json::from_value(Value::Object(doc)).map_err(|e| format!("invalid trigger: {e}"))
    }

    pub fn attributes(&self) -> JsonMap {
        let mut doc = self.to_doc();
        doc.shift_remove("_id");
        doc.shift_remove("_rev");
        doc
    }

    pub fn schedule(&self) -> Result<Schedule, String> {
        Schedule::parse(&self.kind, &self.arguments)
    }
}

/// When a trigger fires, parsed from its `type` and `arguments`.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Once, at a Unix time in seconds (`@at` with an RFC 3339 time).
    At(u64),
    /// Once, after a delay from its creation (`@in`).
    In(Duration),
    /// Repeatedly, every interval (`@every`).
    Every(Duration),
    /// At the times of a cron spec (`@cron`, and `@hourly`… which pick a fixed
    /// time in the period from the trigger's id so that instances spread out).
    Cron(Box<Cron>),
    /// Periodic with a per-trigger offset: `@hourly`, `@daily`, `@weekly`, `@monthly`.
    Periodic(Period),
    /// On document events (`@event`).
    Event(Vec<EventRule>),
    /// On `POST /jobs/webhooks/:id`.
    Webhook,
    /// Never by itself: a client runs it and reports with `PATCH /jobs/:id`.
    Client,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Hourly,
    Daily,
    Weekly,
    Monthly,
}

impl Schedule {
    pub fn parse(kind: &str, arguments: &str) -> Result<Self, String> {
        let args = arguments.trim();
        Ok(match kind {
            "@at" => Self::At(
                parse_rfc3339(args)
                    .ok_or_else(|| format!("{args:?} is not an RFC 3339 time for @at"))?,
            ),
            "@in" => Self::In(duration::parse(args)?),
            "@every" => {
                let d = duration::parse(args)?;
                if d < Duration::from_secs(1) {
                    return Err("@every needs an interval of at least 1s".into());
                }
                Self::Every(d)
            }
            "@cron" => Self::Cron(Box::new(Cron::parse(args)?)),
            "@hourly" => Self::Periodic(Period::Hourly),
            "@daily" => Self::Periodic(Period::Daily),
            "@weekly" => Self::Periodic(Period::Weekly),
            "@monthly" => Self::Periodic(Period::Monthly),
            "@event" => Self::Event(EventRule::parse_all(args)?),
            "@webhook" => Self::Webhook,
            "@client" => Self::Client,
            other => return Err(format!("{other:?} is not a trigger type")),
        })
    }

    /// Whether the scheduler wakes up for this trigger at some time.
    pub fn is_timed(&self) -> bool {
        matches!(
            self,
            Self::At(_) | Self::In(_) | Self::Every(_) | Self::Cron(_) | Self::Periodic(_)
        )
    }
}

/// Which document events fire an `@event` trigger: the scope grammar
/// `doctype[:VERBS[:values[:selector]]]`, verbs among `CREATED,UPDATED,DELETED`, and
/// the value `!=` meaning "the selector field changed".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRule {
    pub doctype: String,
    /// Empty means every verb.
    pub verbs: Vec<String>,
    pub values: Vec<String>,
    /// A field path (dots), `_id` by default.
    pub selector: String,
}

impl EventRule {
    pub fn parse_all(args: &str) -> Result<Vec<Self>, String> {
        let rules = args
            .split_whitespace()
            .map(Self::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if rules.is_empty() {
            return Err("@event needs arguments such as io.cozy.files:CREATED".into());
        }
        Ok(rules)
    }

    pub fn parse(rule: &str) -> Result<Self, String> {
        let mut parts = rule.splitn(4, ':');
        let doctype = parts.next().unwrap_or_default();
        hearth_core::Doctype::new(doctype).map_err(|e| format!("invalid @event rule: {e}"))?;
        let verbs: Vec<String> = match parts.next() {
            None | Some("") | Some("ALL") => Vec::new(),
            Some(v) => v.split(',').map(str::to_owned).collect(),
        };
        for v in &verbs {
            if !matches!(v.as_str(), "CREATED" | "UPDATED" | "DELETED") {
                return Err(format!(
                    "invalid @event rule {rule:?}: {v:?} is not CREATED, UPDATED or DELETED"
                ));
            }
        }
        let values: Vec<String> = match parts.next() {
            None | Some("") => Vec::new(),
            Some(v) => v.split(',').map(str::to_owned).collect(),
        };
        let selector = parts.next().filter(|s| !s.is_empty()).unwrap_or("_id");
        if values.iter().any(|v| v == "!=") && values.len() > 1 {
            return Err(format!("invalid @event rule {rule:?}: != stands alone"));
        }
        Ok(Self {
            doctype: doctype.to_owned(),
            verbs,
            values,
            selector: selector.to_owned(),
        })
    }

    /// Whether an event (its verb, the new document, the old one for updates) fires.
    pub fn matches(&self, doctype: &str, verb: &str, doc: &JsonMap, old: Option<&JsonMap>) -> bool {
        if doctype != self.doctype
            || !(self.verbs.is_empty() || self.verbs.iter().any(|v| v == verb))
        {
            return false;
        }
        if self.values.is_empty() {
            return true;
        }
        let field = |d: &JsonMap| -> Option<Value> {
            if self.selector == "_id" || self.selector == "id" {
                return d.get("_id").cloned();
            }
            let mut cur: Option<&Value> = None;
            for (i, key) in self.selector.split('.').enumerate() {
                cur = if i == 0 { d.get(key) } else { cur?.get(key) };
            }
            cur.cloned()
        };
        if self.values.first().is_some_and(|v| v == "!=") {
            return match (verb, old) {
                ("UPDATED", Some(old)) => field(doc) != field(old),
                ("UPDATED", None) => true,
                _ => true,
            };
        }
        match field(doc) {
            Some(Value::String(s)) => self.values.contains(&s),
            Some(Value::Array(items)) => items.iter().any(|i| {
                i.as_str()
                    .is_some_and(|s| self.values.iter().any(|v| v == s))
            }),
            Some(Value::Bool(b)) => self.values.contains(&b.to_string()),
            Some(Value::Number(n)) => self.values.contains(&n.to_string()),
            _ => false,
        }
    }

    /// Whether matching needs the previous version of updated documents.
    pub fn needs_old(&self) -> bool {
        self.values.first().is_some_and(|v| v == "!=")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> JsonMap {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn schedules() {
        assert!(matches!(
            Schedule::parse("@at", "2026-11-24T10:00:00Z"),
            Ok(Schedule::At(_))
        ));
        assert!(Schedule::parse("@at", "tomorrow").is_err());
        assert!(matches!(Schedule::parse("@in", "10s"), Ok(Schedule::In(_))));
        assert!(Schedule::parse("@every", "10ms").is_err());
        assert!(Schedule::parse("@cron", "0 0 * * *").is_err());
        assert!(Schedule::parse("@cron", "0 0 * * * *").is_ok());
        assert!(Schedule::parse("@yearly", "").is_err());
        assert!(Schedule::parse("@event", "").is_err());
        assert!(Schedule::parse("@event", "io.cozy.files:EATEN").is_err());
        assert!(Schedule::parse("@event", "Bad:CREATED").is_err());
    }

    #[test]
    fn event_rules() {
        let rule = EventRule::parse("io.cozy.files:CREATED,UPDATED:image:class")
            .unwrap_or_else(|e| panic!("{e}"));
        let img = map(json!({"_id": "a", "class": "image"}));
        let txt = map(json!({"_id": "b", "class": "text"}));
        assert!(rule.matches("io.cozy.files", "CREATED", &img, None));
        assert!(!rule.matches("io.cozy.files", "DELETED", &img, None));
        assert!(!rule.matches("io.cozy.files", "CREATED", &txt, None));
        assert!(!rule.matches("io.cozy.todos", "CREATED", &img, None));
        let any = EventRule::parse("io.cozy.todos").unwrap_or_else(|e| panic!("{e}"));
        assert!(any.matches("io.cozy.todos", "DELETED", &img, None));
        let by_id = EventRule::parse("io.cozy.todos:ALL:a").unwrap_or_else(|e| panic!("{e}"));
        assert!(by_id.matches("io.cozy.todos", "UPDATED", &img, None));
        assert!(!by_id.matches("io.cozy.todos", "UPDATED", &txt, None));
        let changed =
            EventRule::parse("io.cozy.files:UPDATED:!=:md5sum").unwrap_or_else(|e| panic!("{e}"));
        assert!(changed.needs_old());
        let v1 = map(json!({"_id": "a", "md5sum": "x"}));
        let v2 = map(json!({"_id": "a", "md5sum": "y"}));
        assert!(changed.matches("io.cozy.files", "UPDATED", &v2, Some(&v1)));
        assert!(!changed.matches("io.cozy.files", "UPDATED", &v1, Some(&v1)));
    }
}
