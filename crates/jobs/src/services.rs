//! A web app's services (its manifest's `services`) as `service` triggers, kept in
//! line with the manifest on install, update and import (the Cozy stack's rules).

use std::path::{Component, Path as FsPath};

use hearth_apps::InstalledApp;
use hearth_core::JsonMap;
use hearth_instances::Instance;
use serde_json::{Value, json};

use crate::{Jobs, JobsError, Schedule, Trigger, TriggerRequest};

/// Why the triggers of an app's services could not all be made.
#[derive(Debug)]
pub enum SyncError {
    /// Services that are invalid, each named with what is wrong.
    Invalid(Vec<String>),
    Jobs(JobsError),
}

/// The message of a service's trigger (the Cozy stack's): `{"slug", "name"}`.
fn service_message(slug: &str, name: &str) -> Value {
    json!({"slug": slug, "name": name})
}

/// The triggers a web app's `services` ask for, and what is wrong with the others.
///
/// `services` maps a name to `{"type": "node", "file": <path in the app>, "trigger":
/// "<type> <arguments>", "debounce"?: <duration>}`. A service without a trigger (or
/// with exactly `@at 2000-01-01T00:00:00.000Z`, the Cozy stack's "on demand") gets
/// none. Its `file` must be a file of the app; its trigger one Hearth can schedule; a
/// `debounce` is a Go duration, kept for `@event` triggers only (the only ones it
/// applies to).
fn service_triggers(
    slug: &str,
    manifest: &JsonMap,
    app_dir: &FsPath,
) -> (Vec<(String, TriggerRequest)>, Vec<String>) {
    let (mut wanted, mut errors) = (Vec::new(), Vec::new());
    let services = match manifest.get("services") {
        None | Some(Value::Null) => return (wanted, errors),
        Some(Value::Object(s)) => s,
        Some(_) => {
            errors.push("services must be an object".to_owned());
            return (wanted, errors);
        }
    };
    for (name, service) in services {
        match service_trigger(slug, name, service, app_dir) {
            Ok(Some(req)) => wanted.push((name.clone(), req)),
            Ok(None) => {}
            Err(e) => errors.push(format!("service {name:?}: {e}")),
        }
    }
    (wanted, errors)
}

fn service_trigger(
    slug: &str,
    name: &str,
    service: &Value,
    app_dir: &FsPath,
) -> Result<Option<TriggerRequest>, String> {
    let service = service
        .as_object()
        .ok_or("must be an object with a file and a trigger")?;
    let file = match service.get("file") {
        Some(Value::String(f)) if !f.trim().is_empty() => f.trim(),
        _ => return Err("no file".to_owned()),
    };
    let inside = FsPath::new(file)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !inside || !std::fs::symlink_metadata(app_dir.join(file)).is_ok_and(|m| m.is_file()) {
        return Err(format!("no file {file:?} in the app"));
    }
    let trigger = match service.get("trigger") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(t)) => t.trim(),
        Some(_) => return Err("trigger must be a string".to_owned()),
    };
    if trigger.is_empty() || trigger == "@at 2000-01-01T00:00:00.000Z" {
        return Ok(None);
    }
    let (kind, arguments) = trigger
        .split_once(char::is_whitespace)
        .map_or((trigger, ""), |(k, a)| (k, a.trim()));
    let schedule = Schedule::parse(kind, arguments)
        .map_err(|e| format!("invalid trigger {trigger:?}: {e}"))?;
    let debounce = match service.get("debounce") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) if d.trim().is_empty() => None,
        Some(Value::String(d)) => {
            crate::duration::parse(d.trim()).map_err(|e| format!("invalid debounce {d:?}: {e}"))?;
            Some(d.trim().to_owned())
        }
        Some(_) => return Err("debounce must be a string".to_owned()),
    }
    .filter(|_| matches!(schedule, Schedule::Event(_)));
    Ok(Some(TriggerRequest {
        kind: kind.to_owned(),
        arguments: arguments.to_owned(),
        worker: "service".to_owned(),
        message: service_message(slug, name),
        options: None,
        debounce,
    }))
}

/// Whether an existing trigger is the one a service asks for.
fn same_trigger(t: &Trigger, req: &TriggerRequest) -> bool {
    t.kind == req.kind
        && t.arguments.trim() == req.arguments
        && t.debounce.as_deref().filter(|d| !d.is_empty()) == req.debounce.as_deref()
        && t.message == req.message
}

/// Brings a web app's service triggers (worker `service`, `message.slug` its slug) in
/// line with its manifest, as the Cozy stack does on install and update: services are
/// matched by name, an unchanged trigger is kept, the others are deleted, and the
/// missing ones created. Every service is checked first; an error names the service
/// with `all_or_nothing` before any trigger is touched, otherwise after the
/// valid ones are scheduled.
pub async fn sync_service_triggers(
    jobs: &Jobs,
    i: &Instance,
    app: &InstalledApp,
    app_dir: &FsPath,
    all_or_nothing: bool,
) -> Result<(), SyncError> {
    let slug = app.slug.as_str();
    let (wanted, mut errors) = service_triggers(slug, &app.manifest.raw, app_dir);
    if all_or_nothing && !errors.is_empty() {
        return Err(SyncError::Invalid(errors));
    }
    let existing: Vec<Trigger> = jobs
        .list_triggers(i, &["service".to_owned()], &[])
        .await
        .map_err(SyncError::Jobs)?
        .into_iter()
        .filter(|t| t.message.get("slug").and_then(Value::as_str) == Some(slug))
        .collect();
    let mut to_create: Vec<&(String, TriggerRequest)> = wanted.iter().collect();
    for t in &existing {
        if let Some(pos) = to_create.iter().position(|(_, req)| same_trigger(t, req)) {
            to_create.remove(pos);
            continue;
        }
        match jobs.delete_trigger(i, &t.id).await {
            Ok(()) | Err(JobsError::NotFound) => {}
            Err(e) => return Err(SyncError::Jobs(e)),
        }
    }
    for (name, req) in to_create {
        match jobs.add_trigger(i, req.clone(), true).await {
            Ok(t) => {
                tracing::info!(domain = %i.domain, slug, service = %name, trigger = %t.id, "service trigger created");
            }
            Err(JobsError::Invalid(m)) => errors.push(format!("service {name:?}: {m}")),
            Err(e @ JobsError::BadDebounce(_)) => errors.push(format!("service {name:?}: {e}")),
            Err(e) => return Err(SyncError::Jobs(e)),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(SyncError::Invalid(errors))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn services_to_triggers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("svc")).unwrap();
        std::fs::write(dir.path().join("svc/a.js"), "").unwrap();
        let manifest = |services: Value| json!({"services": services}).as_object().unwrap().clone();
        let run = |services: Value| service_triggers("app", &manifest(services), dir.path());

        let (wanted, errors) = run(json!({
            "ev": {"type": "node", "file": "svc/a.js", "trigger": "  @event  io.cozy.todos:CREATED ", "debounce": "1m"},
            "cron": {"file": "./svc/a.js", "trigger": "@cron 0 0 * * * *", "debounce": "5s"},
            "manual": {"file": "svc/a.js"},
            "legacy": {"file": "svc/a.js", "trigger": "@at 2000-01-01T00:00:00.000Z"},
            "empty": {"file": "svc/a.js", "trigger": ""},
        }));
        assert!(errors.is_empty(), "{errors:?}");
        let names: Vec<&str> = wanted.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["ev", "cron"]);
        let ev = &wanted[0].1;
        assert_eq!(
            (
                ev.kind.as_str(),
                ev.arguments.as_str(),
                ev.debounce.as_deref()
            ),
            ("@event", "io.cozy.todos:CREATED", Some("1m"))
        );
        assert_eq!(ev.worker, "service");
        assert_eq!(ev.message, json!({"slug": "app", "name": "ev"}));
        // A debounce only applies to @event triggers.
        assert_eq!(wanted[1].1.debounce, None);
        let (wanted, errors) = run(Value::Null);
        assert!(wanted.is_empty() && errors.is_empty());

        for (services, wrong) in [
            (
                json!({"x": {"file": "svc/a.js", "trigger": "@cron nope"}}),
                "invalid trigger",
            ),
            (
                json!({"x": {"file": "svc/a.js", "trigger": "@sometimes"}}),
                "invalid trigger",
            ),
            (
                json!({"x": {"file": "svc/a.js", "trigger": "@event"}}),
                "invalid trigger",
            ),
            (
                json!({"x": {"file": "svc/a.js", "trigger": "@event io.cozy.todos", "debounce": "soon"}}),
                "invalid debounce",
            ),
            (
                json!({"x": {"file": "svc/b.js", "trigger": "@daily"}}),
                "no file",
            ),
            (
                json!({"x": {"file": "../svc/a.js", "trigger": "@daily"}}),
                "no file",
            ),
            (
                json!({"x": {"file": "/etc/passwd", "trigger": "@daily"}}),
                "no file",
            ),
            (
                json!({"x": {"file": "svc", "trigger": "@daily"}}),
                "no file",
            ),
            (json!({"x": {"trigger": "@daily"}}), "no file"),
            (
                json!({"x": {"file": "svc/a.js", "trigger": 3}}),
                "must be a string",
            ),
            (json!({"x": "svc/a.js"}), "must be an object"),
        ] {
            let (wanted, errors) = run(services.clone());
            assert!(wanted.is_empty(), "{services}");
            assert_eq!(errors.len(), 1, "{services}: {errors:?}");
            assert!(errors[0].starts_with("service \"x\": "), "{errors:?}");
            assert!(errors[0].contains(wrong), "{services}: {errors:?}");
        }
        let (_, errors) = run(json!(["x"]));
        assert_eq!(errors, ["services must be an object"]);
    }
}
