//! Manifests (`manifest.webapp`, `manifest.konnector`): parsing, validation, the
//! permission rules they ask for, and slugs.
//!
//! The Cozy stack validates almost nothing in a manifest; Hearth refuses what it
//! cannot use: a missing `name` or `version`, a `slug` other than the installed one,
//! a `type` of the other kind, malformed permission rules, and rules on doctypes no
//! app may hold ([`FORBIDDEN_DOCTYPES`]).

use hearth_core::{Doctype, JsonMap};
use hearth_instances::permission::{PermissionSet, VERBS};
use serde_json::Value;

use crate::{AppKind, AppsError, AppsResult, Manifest};

/// The largest manifest read (the original reads through the same 2 MiB limit).
pub(crate) const MAX_MANIFEST_BYTES: u64 = 2 << 20;

/// Doctypes no app or konnector may be granted, whatever its manifest says (a
/// wildcard rule covering one of them is refused too, and so is the `*` type).
///
/// These hold the server's own secrets and registry: the instances and their domain
/// claims, OAuth access codes, the Bitwarden KDF settings. The reserved doctypes of
/// `/data` (`UNREADABLE` in `crates/web/src/data.rs`) are NOT all here on purpose:
/// `/data` refuses them whatever the token, and real apps legitimately ask for some
/// to use their dedicated routes (Drive: `io.cozy.permissions`, `io.cozy.sharings`;
/// Settings: `io.cozy.sessions`, `io.cozy.sessions.logins`, `io.cozy.oauth.clients`).
pub const FORBIDDEN_DOCTYPES: [&str; 4] = [
    "io.cozy.instances",
    "io.cozy.instances.domains",
    "io.cozy.oauth.access_codes",
    "io.cozy.settings.bitwarden",
];

/// Checks an app slug: `^[a-z0-9][a-z0-9-]{0,62}$`.
///
/// The original accepts `^[a-z0-9-]+$`; Hearth also wants a slug to be one DNS label
/// (apps are served on `<slug>.<domain>`), so no leading dash and at most 63 bytes.
pub fn validate_slug(slug: &str) -> AppsResult<()> {
    let bytes = slug.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(AppsError::InvalidInput(format!(
            "Invalid slug name {slug:?}: lowercase letters, digits and dashes, not starting with a dash, at most 63 characters"
        )))
    }
}

impl Manifest {
    /// Parses and validates a manifest file's bytes for the app `slug` of `kind`.
    pub fn parse(kind: AppKind, slug: &str, bytes: &[u8]) -> AppsResult<Self> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            AppsError::BadManifest(format!("{} is not valid JSON: {e}", kind.manifest_name()))
        })?;
        match value {
            Value::Object(raw) => Self::from_map(kind, slug, raw),
            _ => Err(AppsError::BadManifest(format!(
                "{} must be a JSON object",
                kind.manifest_name()
            ))),
        }
    }

    /// Validates a manifest already decoded as a JSON object.
    pub fn from_map(kind: AppKind, slug: &str, raw: JsonMap) -> AppsResult<Self> {
        let name = required_string(&raw, "name")?;
        let version = required_string(&raw, "version")?;
        if let Some(own) = optional_string(&raw, "slug")?
            && own != slug
        {
            return Err(AppsError::BadManifest(format!(
                "field \"slug\" is {own:?} but the app is installed as {slug:?}"
            )));
        }
        check_type(kind, slug, &raw)?;
        for field in ["editor", "icon", "name_prefix", "language"] {
            optional_string(&raw, field)?;
        }
        for field in ["routes", "services", "locales", "notifications"] {
            expect_kind(&raw, field, "an object", Value::is_object)?;
        }
        expect_kind(&raw, "intents", "an array", Value::is_array)?;
        let on_delete_account = match kind {
            AppKind::Konnector => optional_string(&raw, "on_delete_account")?
                .filter(|f| !f.is_empty())
                .map(|f| {
                    if relative_path_is_safe(&f) {
                        Ok(f)
                    } else {
                        Err(AppsError::BadManifest(format!(
                            "field \"on_delete_account\" must be a path inside the konnector, not {f:?}"
                        )))
                    }
                })
                .transpose()?,
            AppKind::Webapp => None,
        };
        let permissions = permissions(&raw)?;
        Ok(Self {
            name,
            slug: slug.to_owned(),
            version,
            permissions,
            on_delete_account,
            raw,
        })
    }

    /// The `permissions` map as written (`{}` when the manifest has none).
    pub fn permissions_json(&self) -> Value {
        match self.raw.get("permissions") {
            Some(p @ Value::Object(_)) => p.clone(),
            _ => Value::Object(JsonMap::new()),
        }
    }
}

fn required_string(raw: &JsonMap, field: &str) -> AppsResult<String> {
    match raw.get(field) {
        None | Some(Value::Null) => {
            Err(AppsError::BadManifest(format!("missing field \"{field}\"")))
        }
        Some(Value::String(s)) if s.trim().is_empty() => Err(AppsError::BadManifest(format!(
            "field \"{field}\" must not be empty"
        ))),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(AppsError::BadManifest(format!(
            "field \"{field}\" must be a string"
        ))),
    }
}

fn optional_string(raw: &JsonMap, field: &str) -> AppsResult<Option<String>> {
    match raw.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AppsError::BadManifest(format!(
            "field \"{field}\" must be a string"
        ))),
    }
}

fn expect_kind(
    raw: &JsonMap,
    field: &str,
    what: &str,
    is: impl Fn(&Value) -> bool,
) -> AppsResult<()> {
    match raw.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(v) if is(v) => Ok(()),
        Some(_) => Err(AppsError::BadManifest(format!(
            "field \"{field}\" must be {what}"
        ))),
    }
}

/// `type`, when present, must be the kind being installed (`node` is the legacy
/// type of konnectors). The messages are the original's.
fn check_type(kind: AppKind, slug: &str, raw: &JsonMap) -> AppsResult<()> {
    let Some(t) = optional_string(raw, "type")? else {
        return Ok(());
    };
    let ok = match kind {
        AppKind::Webapp => t == "webapp",
        AppKind::Konnector => t == "konnector" || t == "node",
    };
    if ok {
        return Ok(());
    }
    Err(AppsError::BadManifest(match kind {
        AppKind::Webapp => format!(
            "[{slug}] Manifest type is not valid for a webapp (field \"type\" is {t:?}). Maybe you want to install a konnector?"
        ),
        AppKind::Konnector => format!(
            "[{slug}] Manifest type is not valid for a konnector (field \"type\" is {t:?}). Maybe you want to install a webapp?"
        ),
    }))
}

/// Whether a manifest path (`on_delete_account`, `tar_prefix`…) stays inside the
/// package: relative, no `..`, no empty name.
pub(crate) fn relative_path_is_safe(path: &str) -> bool {
    !path.starts_with('/')
        && !path.contains('\0')
        && !path.contains('\\')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != ".." && part != ".")
}

fn permissions(raw: &JsonMap) -> AppsResult<PermissionSet> {
    let map = match raw.get("permissions") {
        None | Some(Value::Null) => return Ok(PermissionSet::default()),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(AppsError::BadManifest(
                "field \"permissions\" must be an object of named rules".into(),
            ));
        }
    };
    for (name, rule) in map {
        check_rule(name, rule)?;
    }
    PermissionSet::from_json(&Value::Object(map.clone()))
        .map_err(|e| AppsError::BadManifest(format!("field \"permissions\": {e}")))
}

fn check_rule(name: &str, rule: &Value) -> AppsResult<()> {
    let bad = |what: String| AppsError::BadManifest(format!("permission {name:?}: {what}"));
    if name.is_empty() {
        return Err(AppsError::BadManifest(
            "field \"permissions\": a rule has an empty name".into(),
        ));
    }
    let Value::Object(rule) = rule else {
        return Err(bad("must be an object".into()));
    };
    let doctype = match rule.get("type") {
        None | Some(Value::Null) => return Err(bad("missing field \"type\"".into())),
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err(bad("field \"type\" must be a string".into())),
    };
    check_doctype(name, doctype)?;
    match rule.get("verbs") {
        None | Some(Value::Null) => {}
        Some(Value::Array(verbs)) => {
            for verb in verbs {
                match verb.as_str() {
                    Some(v) if v == "ALL" || VERBS.contains(&v) => {}
                    _ => {
                        return Err(bad(format!(
                            "verb {verb} is not one of GET, POST, PUT, PATCH, DELETE, ALL"
                        )));
                    }
                }
            }
        }
        Some(_) => return Err(bad("field \"verbs\" must be an array of strings".into())),
    }
    match rule.get("values") {
        None | Some(Value::Null) => {}
        Some(Value::Array(values)) if values.iter().all(Value::is_string) => {}
        Some(_) => return Err(bad("field \"values\" must be an array of strings".into())),
    }
    for field in ["selector", "description"] {
        match rule.get(field) {
            None | Some(Value::Null | Value::String(_)) => {}
            Some(_) => return Err(bad(format!("field \"{field}\" must be a string"))),
        }
    }
    Ok(())
}

/// A rule's `type`: a doctype name (`[a-z0-9._]`, a letter first, no empty part),
/// or a `prefix.*` family with at least three dots; never `*`, never a forbidden
/// doctype or a family covering one.
fn check_doctype(name: &str, doctype: &str) -> AppsResult<()> {
    if doctype == "*" {
        return Err(AppsError::ForbiddenPermission(format!(
            "permission {name:?}: type \"*\" (every doctype) cannot be granted to an app"
        )));
    }
    let invalid = || {
        AppsError::BadManifest(format!(
            "permission {name:?}: {doctype:?} is not a valid doctype name"
        ))
    };
    let (base, wildcard) = match doctype.strip_suffix(".*") {
        Some(prefix) if doctype.matches('.').count() >= 3 => (prefix, true),
        Some(_) => return Err(invalid()),
        None => (doctype, false),
    };
    let valid = Doctype::new(base).is_ok()
        && base
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
        && base.split('.').all(|part| !part.is_empty());
    if !valid {
        return Err(invalid());
    }
    let covered = FORBIDDEN_DOCTYPES.iter().find(|f| {
        **f == base
            || wildcard
                && f.strip_prefix(base)
                    .is_some_and(|rest| rest.starts_with('.'))
    });
    if let Some(f) = covered {
        return Err(AppsError::ForbiddenPermission(format!(
            "permission {name:?}: no app may be granted {f}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(kind: AppKind, v: Value) -> AppsResult<Manifest> {
        Manifest::parse(kind, "demo", v.to_string().as_bytes())
    }

    fn bad(kind: AppKind, v: Value) -> String {
        match parse(kind, v) {
            Err(AppsError::BadManifest(m)) => m,
            other => panic!("expected BadManifest, got {other:?}"),
        }
    }

    fn forbidden(v: Value) -> String {
        match parse(AppKind::Webapp, v) {
            Err(AppsError::ForbiddenPermission(m)) => m,
            other => panic!("expected ForbiddenPermission, got {other:?}"),
        }
    }

    #[test]
    fn good_manifest() {
        let m = parse(
            AppKind::Webapp,
            json!({
                "name": "Demo", "slug": "demo", "version": "1.0.0", "type": "webapp",
                "permissions": {
                    "files": {"type": "io.cozy.files", "verbs": ["GET"], "description": "x"},
                    "bank": {"type": "io.cozy.bank.*"},
                    "one": {"type": "io.cozy.contacts", "verbs": ["ALL"], "values": ["a"], "selector": "_id"},
                    "settings": {"type": "io.cozy.settings"},
                    "sessions": {"type": "io.cozy.sessions.logins", "verbs": ["GET"]}
                }
            }),
        )
        .unwrap();
        assert_eq!((m.name.as_str(), m.version.as_str()), ("Demo", "1.0.0"));
        assert_eq!(m.permissions.rules.len(), 5);
        assert!(m.permissions.allows_whole_type("GET", "io.cozy.files"));
        assert!(!m.permissions.allows_whole_type("PUT", "io.cozy.files"));
        assert!(
            m.permissions
                .allows_whole_type("GET", "io.cozy.bank.accounts")
        );
        assert_eq!(m.on_delete_account, None);
        assert_eq!(m.permissions_json()["files"]["verbs"], json!(["GET"]));

        let k = parse(
            AppKind::Konnector,
            json!({"name": "K", "version": "2", "type": "konnector", "on_delete_account": "hooks/delete.js"}),
        )
        .unwrap();
        assert_eq!(k.on_delete_account.as_deref(), Some("hooks/delete.js"));
        assert_eq!(k.permissions_json(), json!({}));
        parse(
            AppKind::Konnector,
            json!({"name": "K", "version": "2", "type": "node"}),
        )
        .unwrap();
    }

    #[test]
    fn bad_manifests() {
        let base = |extra: Value| {
            let mut m = json!({"name": "Demo", "version": "1.0.0"});
            for (k, v) in extra.as_object().unwrap() {
                m[k] = v.clone();
            }
            m
        };
        let w = AppKind::Webapp;
        assert_eq!(bad(w, json!({"version": "1"})), "missing field \"name\"");
        assert_eq!(bad(w, json!({"name": "x"})), "missing field \"version\"");
        assert_eq!(
            bad(w, json!({"name": " ", "version": "1"})),
            "field \"name\" must not be empty"
        );
        assert_eq!(
            bad(w, json!({"name": 3, "version": "1"})),
            "field \"name\" must be a string"
        );
        assert!(bad(w, json!([])).contains("JSON object"));
        assert!(bad(w, base(json!({"slug": "other"}))).contains("field \"slug\""));
        assert!(
            bad(w, base(json!({"type": "konnector"})))
                .contains("Maybe you want to install a konnector?")
        );
        assert!(
            bad(AppKind::Konnector, base(json!({"type": "webapp"})))
                .contains("Maybe you want to install a webapp?")
        );
        assert!(bad(w, base(json!({"routes": []}))).contains("\"routes\""));
        assert!(bad(w, base(json!({"permissions": []}))).contains("\"permissions\""));
        assert!(
            bad(w, base(json!({"permissions": {"a": {"verbs": ["GET"]}}})))
                .contains("missing field \"type\"")
        );
        assert!(
            bad(w, base(json!({"permissions": {"a": {"type": "IO.cozy"}}})))
                .contains("not a valid doctype name")
        );
        assert!(
            bad(w, base(json!({"permissions": {"a": {"type": ""}}})))
                .contains("not a valid doctype name")
        );
        assert!(
            bad(
                w,
                base(json!({"permissions": {"a": {"type": "io.cozy.*"}}}))
            )
            .contains("not a valid doctype name")
        );
        assert!(
            bad(w, base(json!({"permissions": {"a": {"type": "io..cozy"}}})))
                .contains("not a valid doctype name")
        );
        assert!(
            bad(
                w,
                base(json!({"permissions": {"a": {"type": "io.cozy.files:GET"}}}))
            )
            .contains("not a valid doctype name")
        );
        assert!(
            bad(
                w,
                base(json!({"permissions": {"a": {"type": "io.cozy.files", "verbs": ["FETCH"]}}}))
            )
            .contains("verb \"FETCH\"")
        );
        assert!(
            bad(
                w,
                base(json!({"permissions": {"a": {"type": "io.cozy.files", "verbs": "GET"}}}))
            )
            .contains("\"verbs\"")
        );
        assert!(
            bad(
                w,
                base(json!({"permissions": {"a": {"type": "io.cozy.files", "values": [1]}}}))
            )
            .contains("\"values\"")
        );
        assert!(
            bad(
                AppKind::Konnector,
                base(json!({"on_delete_account": "../x.js"}))
            )
            .contains("on_delete_account")
        );
    }

    #[test]
    fn forbidden_permissions() {
        for t in [
            "io.cozy.instances",
            "io.cozy.instances.domains",
            "io.cozy.oauth.access_codes",
            "io.cozy.settings.bitwarden",
            "io.cozy.instances.*",
            "io.cozy.oauth.access_codes.*",
        ] {
            let m =
                forbidden(json!({"name": "x", "version": "1", "permissions": {"p": {"type": t}}}));
            assert!(m.contains("no app may be granted"), "{t}: {m}");
        }
        let m =
            forbidden(json!({"name": "x", "version": "1", "permissions": {"p": {"type": "*"}}}));
        assert!(m.contains("\"*\""), "{m}");
    }

    #[test]
    fn slugs() {
        for ok in ["a", "drive", "my-app", "0day", &"a".repeat(63)] {
            validate_slug(ok).unwrap();
        }
        for bad in ["", "-a", "A", "a_b", "a.b", "a/b", "é", &"a".repeat(64)] {
            assert!(
                matches!(validate_slug(bad), Err(AppsError::InvalidInput(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn safe_paths() {
        for ok in ["a", "a/b.js", "hooks/x"] {
            assert!(relative_path_is_safe(ok), "{ok}");
        }
        for bad in ["", "/a", "a/../b", "..", "a//b", "./a", "a\\b"] {
            assert!(!relative_path_is_safe(bad), "{bad}");
        }
    }
}
