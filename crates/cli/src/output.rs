//! What the commands print, as pure functions of the admin API's answers (spec instances
//! 6.2, 6.3): the `ls` table, `--fields`, `--json`, `show`, `add`'s report, tokens,
//! OAuth clients, jobs and triggers. Every function returns the text, newline included.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::api::{AppDoc, Created, Instance, InstanceAttributes, Job, OAuthClient};
use crate::size::format_size;

/// The attributes `show`, `modify`, `ls --json` and `--fields` know, in their order
/// (spec 6.3), then `db_prefix`.
pub const AVAILABLE_FIELDS: [&str; 26] = [
    "domain",
    "domain_aliases",
    "old_domain",
    "prefix",
    "locale",
    "uuid",
    "oidc_id",
    "context",
    "sponsorships",
    "feature_sets",
    "tos",
    "tos_latest",
    "auth_mode",
    "no_auto_update",
    "blocked",
    "onboarding_finished",
    "password_defined",
    "magic_link",
    "disk_quota",
    "indexes_version",
    "couch_cluster",
    "swift_cluster",
    "passphrase_reset_token",
    "passphrase_reset_time",
    "register_token",
    "db_prefix",
];

/// What `passphrase_reset_time` shows when no reset is pending (Go's zero time, as the
/// original prints it).
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The spec 6.3 attribute object: empty values left out, except `domain`, `locale`,
/// `onboarding_finished`, `password_defined`, `indexes_version`,
/// `passphrase_reset_token` and `passphrase_reset_time`, which are always there.
pub fn cli_attributes(a: &InstanceAttributes) -> Map<String, Value> {
    let mut m = Map::new();
    let text = |m: &mut Map<String, Value>, key: &str, v: &str| {
        if !v.is_empty() {
            m.insert(key.into(), json!(v));
        }
    };
    let list = |m: &mut Map<String, Value>, key: &str, v: &[String]| {
        if !v.is_empty() {
            m.insert(key.into(), json!(v));
        }
    };
    let int = |m: &mut Map<String, Value>, key: &str, v: i64| {
        if v != 0 {
            m.insert(key.into(), json!(v));
        }
    };
    let flag = |m: &mut Map<String, Value>, key: &str, v: bool| {
        if v {
            m.insert(key.into(), json!(true));
        }
    };
    m.insert("domain".into(), json!(a.domain));
    list(&mut m, "domain_aliases", &a.domain_aliases);
    text(&mut m, "old_domain", &a.old_domain);
    text(&mut m, "prefix", &a.prefix);
    m.insert("locale".into(), json!(a.locale));
    text(&mut m, "uuid", &a.uuid);
    text(&mut m, "oidc_id", &a.oidc_id);
    text(&mut m, "context", &a.context);
    list(&mut m, "sponsorships", &a.sponsorships);
    list(&mut m, "feature_sets", &a.feature_sets);
    text(&mut m, "tos", &a.tos);
    text(&mut m, "tos_latest", &a.tos_latest);
    int(&mut m, "auth_mode", a.auth_mode);
    flag(&mut m, "no_auto_update", a.no_auto_update);
    flag(&mut m, "blocked", a.blocked);
    m.insert("onboarding_finished".into(), json!(a.onboarding_finished));
    m.insert("password_defined".into(), json!(a.password_defined));
    flag(&mut m, "magic_link", a.magic_link);
    if a.disk_quota > 0 {
        m.insert("disk_quota".into(), json!(a.disk_quota.to_string()));
    }
    m.insert("indexes_version".into(), json!(a.indexes_version));
    int(&mut m, "couch_cluster", a.couch_cluster);
    int(&mut m, "swift_cluster", a.swift_cluster);
    let reset_token = a
        .passphrase_reset_token
        .as_deref()
        .filter(|t| !t.is_empty());
    m.insert("passphrase_reset_token".into(), json!(reset_token));
    let reset_time = a
        .passphrase_reset_time
        .as_deref()
        .filter(|t| !t.is_empty())
        .unwrap_or(ZERO_TIME);
    m.insert("passphrase_reset_time".into(), json!(reset_time));
    if let Some(token) = a.register_token.as_deref().filter(|t| !t.is_empty()) {
        m.insert("register_token".into(), json!(token));
    }
    m
}

/// One field of an instance by name (`db_prefix` included); `None` when unset.
fn field(instance: &Instance, attributes: &Map<String, Value>, name: &str) -> Option<Value> {
    if name == "db_prefix" {
        return Some(json!(instance.attributes.db_prefix()));
    }
    attributes.get(name).cloned()
}

/// Checks `--fields` names against [`AVAILABLE_FIELDS`].
pub fn check_fields(fields: &[String]) -> Result<(), String> {
    match fields
        .iter()
        .find(|f| !AVAILABLE_FIELDS.contains(&f.as_str()))
    {
        Some(unknown) => Err(format!(
            "unknown field {unknown:?} (see `hearth instances ls --available-fields`)"
        )),
        None => Ok(()),
    }
}

/// `ls --available-fields`: one name per line.
pub fn available_fields() -> String {
    AVAILABLE_FIELDS.iter().map(|f| format!("{f}\n")).collect()
}

/// The state column of `ls`: `deleting` (a deletion running), `deleting on
/// 2026-12-24` (a moved instance, destroyed after that day; Hearth extensions),
/// `onboarded`, `onboarding` (a register token is pending) or `pending`.
pub fn state(a: &InstanceAttributes) -> String {
    let scheduled = a.deletion_scheduled_at.as_deref().unwrap_or("").trim();
    if a.deleting {
        "deleting".into()
    } else if !scheduled.is_empty() {
        // The day is enough in a table: `2026-12-24T10:00:00Z` → `2026-12-24`.
        let day = scheduled.split(['T', 't', ' ']).next().unwrap_or(scheduled);
        format!("deleting on {day}")
    } else if a.onboarding_finished {
        "onboarded".into()
    } else if a.register_token.as_deref().is_some_and(|t| !t.is_empty()) {
        "onboarding".into()
    } else {
        "pending".into()
    }
}

/// Default `ls`: `domain  locale  quota  state  v<indexes>  prefix  db_prefix`, columns
/// aligned with at least two spaces between them.
pub fn ls_table(instances: &[Instance]) -> String {
    let rows: Vec<Vec<String>> = instances
        .iter()
        .map(|i| {
            let a = &i.attributes;
            let quota = if a.disk_quota > 0 {
                format_size(a.disk_quota)
            } else {
                "unlimited".into()
            };
            vec![
                a.domain.clone(),
                a.locale.clone(),
                quota,
                state(a),
                format!("v{}", a.indexes_version),
                a.prefix.clone(),
                a.db_prefix(),
            ]
        })
        .collect();
    align(&rows)
}

/// Pads every column but the last to its widest cell plus two spaces.
fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        for (c, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] - cell.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// The report of an import (`instances import`, `instances move`): the heading line,
/// then per doctype what was imported of what the archive held, and the apps that
/// could not be installed.
pub fn import_report(heading: &str, report: &Value) -> String {
    let mut out = format!("{heading}\n");
    if let Some(doctypes) = report.get("doctypes").and_then(Value::as_object) {
        for (doctype, c) in doctypes {
            let n = |k: &str| c.get(k).and_then(Value::as_u64).unwrap_or(0);
            let skipped = match n("skipped") {
                0 => String::new(),
                k => format!(", {k} skipped"),
            };
            out.push_str(&format!(
                "  {doctype}: {} of {} imported ({} of {} bytes){skipped}\n",
                n("imported_docs"),
                n("archive_docs"),
                n("imported_bytes"),
                n("archive_bytes"),
            ));
        }
    }
    if let Some(apps) = report.get("apps_not_installed").and_then(Value::as_array)
        && !apps.is_empty()
    {
        let names: Vec<&str> = apps.iter().filter_map(Value::as_str).collect();
        out.push_str(&format!("  not installed: {}\n", names.join(", ")));
    }
    if report.get("vault").and_then(Value::as_bool) == Some(true) {
        out.push_str("  the password vault was not moved: the owner is told how to import it\n");
    }
    out
}

/// Why `instances move` refuses before anything is blocked: the target's quota is
/// smaller than what the source uses (no newline: it follows `Error: `).
pub fn quota_too_small(domain: &str, used: u64, target: &str, quota: u64) -> String {
    format!(
        "{target} has a quota of {}, smaller than the {} that {domain} uses: nothing was moved \
         (raise the quota with `hearth instances set-disk-quota` on the target server)",
        format_size(quota),
        format_size(used),
    )
}

/// The spinner's message while `instances move` waits.
pub fn move_progress(state: &str, domain: &str, target: &str) -> String {
    match state {
        "waiting" => format!("exporting {domain}"),
        "importing" => format!("importing into {target}"),
        "done" | "errored" => format!("move {state}"),
        _ => format!("moving {domain} to {target}: {state}"),
    }
}

/// `ls --fields a,b`: the values tab-separated, one instance per line. Strings as they
/// are, lists comma-joined, unset values empty, other values as JSON.
pub fn ls_fields(instances: &[Instance], fields: &[String]) -> String {
    let mut out = String::new();
    for instance in instances {
        let attributes = cli_attributes(&instance.attributes);
        let cells: Vec<String> = fields
            .iter()
            .map(|f| match field(instance, &attributes, f) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s,
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                Some(other) => other.to_string(),
            })
            .collect();
        out.push_str(&cells.join("\t"));
        out.push('\n');
    }
    out
}

/// `ls --json`: one compact object per line, the spec 6.3 attributes, or exactly the
/// `--fields` keys (`null` when unset).
pub fn ls_json(instances: &[Instance], fields: Option<&[String]>) -> String {
    let mut out = String::new();
    for instance in instances {
        let attributes = cli_attributes(&instance.attributes);
        let object = match fields {
            None => attributes,
            Some(fields) => fields
                .iter()
                .map(|f| {
                    let value = field(instance, &attributes, f).unwrap_or(Value::Null);
                    (f.clone(), value)
                })
                .collect(),
        };
        out.push_str(&Value::Object(object).to_string());
        out.push('\n');
    }
    out
}

/// `show` and `modify`: `{"id", "meta": {"rev"}, "attributes": {…}}`, indented.
pub fn show(instance: &Instance) -> String {
    let value = json!({
        "id": instance.id,
        "meta": { "rev": instance.meta.rev },
        "attributes": cli_attributes(&instance.attributes),
    });
    pretty(&value, b"  ")
}

/// `show-db-prefix`: the effective prefix, then `couch_cluster: N` when N is not 0.
pub fn db_prefix(instance: &Instance) -> String {
    let a = &instance.attributes;
    let mut out = format!("{}\n", a.db_prefix());
    if a.couch_cluster != 0 {
        out.push_str(&format!("couch_cluster: {}\n", a.couch_cluster));
    }
    out
}

/// `check fs` / `instances fsck`: the problems as the server sent them, one JSON
/// object a line.
pub fn fsck(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// `count`: `1 instance`, `N instances`.
pub fn count(n: u64) -> String {
    if n == 1 {
        "1 instance\n".into()
    } else {
        format!("{n} instances\n")
    }
}

/// The line `add` prints before it sends the request.
pub fn creating(domain: &str) -> String {
    format!("Creating instance for domain \"{domain}\": please wait...\n")
}

/// What `add` prints once the instance exists: the success line, the registration
/// token and link when the owner has no password yet, and one line per app the server
/// could not install. `public_host` is the `--host` of the public server.
pub fn created(domain: &str, created: &Created, public_host: &str) -> String {
    let mut out = format!("Instance created with success for domain {domain}\n");
    if let Some(hex) = created.instance.attributes.register_token_hex() {
        out.push_str(&format!("Registration token: \"{hex}\"\n"));
        out.push_str(&format!(
            "Define your password by visiting {}\n",
            register_url(domain, &hex, public_host)
        ));
    }
    for slug in &created.apps_not_installed {
        out.push_str(&format!("/!\\ Application {slug} has not been installed\n"));
    }
    out
}

/// `<scheme>://<domain>/?registerToken=<hex>`: `http` for a local setup (public host
/// on loopback, a `.localhost` domain, or a domain with a port), `https` otherwise.
pub fn register_url(domain: &str, hex: &str, public_host: &str) -> String {
    let host = domain.split(':').next().unwrap_or(domain);
    let local = matches!(public_host, "localhost" | "127.0.0.1" | "::1" | "[::1]")
        || host == "localhost"
        || host.ends_with(".localhost")
        || domain.contains(':');
    let scheme = if local { "http" } else { "https" };
    format!("{scheme}://{domain}/?registerToken={hex}")
}

/// A token alone on its line.
pub fn token(token: &str) -> String {
    format!("{}\n", token.trim())
}

/// `client-oauth`: the `client_id` alone, or with `--json` the whole client indented
/// with tabs.
pub fn oauth_client(client: &OAuthClient, whole: bool) -> Result<String, String> {
    if whole {
        return Ok(pretty(&Value::Object(client.clone()), b"\t"));
    }
    match client.get("client_id") {
        Some(Value::String(id)) if !id.is_empty() => Ok(format!("{id}\n")),
        _ => Err("the server's answer has no client_id".into()),
    }
}

/// One compact JSON value per line (`check triggers`, `docs ls`, `docs find`…).
pub fn json_lines(values: &[Value]) -> String {
    let mut out = String::new();
    for value in values {
        out.push_str(&value.to_string());
        out.push('\n');
    }
    out
}

/// One JSON value indented by two spaces (`docs get`).
pub fn json_pretty(value: &Value) -> String {
    pretty(value, b"  ")
}

/// `find-oauth-client`: the client, indented.
pub fn found_oauth_client(client: &OAuthClient) -> String {
    pretty(&Value::Object(client.clone()), b"  ")
}

/// `jobs run`, `triggers launch`: the job document, indented by two spaces.
pub fn job(job: &Job) -> String {
    pretty(&Value::Object(job.0.clone()), b"  ")
}

/// `triggers ls`: the trigger documents as one indented JSON array (`[]` for none).
pub fn triggers(triggers: &[Map<String, Value>]) -> String {
    let list = triggers.iter().cloned().map(Value::Object).collect();
    pretty(&Value::Array(list), b"  ")
}

/// `apps install`: `<slug> (<version>) has been installed on <domain>`.
pub fn app_installed(slug: &str, app: &AppDoc, domain: &str) -> String {
    format!(
        "{slug} ({}) has been installed on {domain}\n",
        app.text("version")
    )
}

/// `apps update`: upgraded, downgraded, or already up-to-date, from the versions
/// before and after.
pub fn app_updated(slug: &str, before: &AppDoc, after: &AppDoc) -> String {
    let (old, new) = (before.text("version"), after.text("version"));
    if old == new {
        return format!("{slug} is already up-to-date at {new}\n");
    }
    match compare_versions(new, old) {
        std::cmp::Ordering::Less => format!("{slug} has been downgraded to {new}\n"),
        _ => format!("{slug} has been upgraded to {new}\n"),
    }
}

/// Compares the `X.Y.Z` cores of two versions (missing or non-numeric parts count as
/// 0); equal cores compare a release above its pre-releases, then as text.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |v: &str| -> (Vec<u64>, Option<String>) {
        let v = v.trim().trim_start_matches('v');
        let (core, pre) = match v.split_once('-') {
            Some((c, p)) => (c, Some(p.to_owned())),
            None => (v, None),
        };
        let mut parts: Vec<u64> = core.split('.').map(|p| p.parse().unwrap_or(0)).collect();
        parts.resize(3.max(parts.len()), 0);
        (parts, pre)
    };
    let ((ca, pa), (cb, pb)) = (split(a), split(b));
    ca.cmp(&cb).then_with(|| match (pa, pb) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (Some(x), Some(y)) => x.cmp(&y),
    })
}

/// `apps ls`: `slug  source  version  state`, aligned with two spaces, no header.
pub fn apps_table(apps: &[AppDoc]) -> String {
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|a| {
            vec![
                a.slug().to_owned(),
                a.text("source").to_owned(),
                a.text("version").to_owned(),
                a.text("state").to_owned(),
            ]
        })
        .collect();
    align(&rows)
}

/// `apps show`: the app's document indented by two spaces, without `_id` and `_rev`
/// (the original prints the JSON:API attributes).
pub fn app(app: &AppDoc) -> String {
    let mut doc = app.0.clone();
    // `retain` keeps the order (`remove` would swap the last key in).
    doc.retain(|k, _| k != "_id" && k != "_rev");
    pretty(&Value::Object(doc), b"  ")
}

/// JSON with the given indentation and a final newline.
fn pretty(value: &Value, indent: &[u8]) -> String {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(indent);
    let mut serializer = serde_json::Serializer::with_formatter(&mut buf, formatter);
    // Writing a `Value` into a Vec cannot fail.
    if value.serialize(&mut serializer).is_err() {
        return format!("{value}\n");
    }
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ObjectMeta;

    /// A `GET /instances` body as the admin API sends it.
    const LIST: &str = r#"{"data":[
      {"type":"instances","id":"0a1b","meta":{"rev":"2-abc"},"links":{"self":"/instances/0a1b"},
       "attributes":{"domain":"alice.example.net","prefix":"cozy7d3d5947e7f3b0c674d1b8644646348e",
         "locale":"fr","password_defined":true,"onboarding_finished":true,"indexes_version":38,
         "disk_quota":"5000000000","domain_aliases":["alice.example.org"],"context":"beta"}},
      {"type":"instances","id":"0c2d","meta":{"rev":"1-def"},
       "attributes":{"domain":"bob.localhost:8080","prefix":"cozyffff","locale":"en",
         "password_defined":false,"indexes_version":38,
         "register_token":"q83vEjRWeJCrze8SNFZ4kA=="}},
      {"type":"instances","id":"0e3f","meta":{"rev":"3-aaa"},
       "attributes":{"domain":"legacy.example","locale":"en","password_defined":null,
         "indexes_version":9,"blocked":true,"blocking_reason":"PAYMENT_FAILED"}},
      {"type":"instances","id":"0f4a","meta":{"rev":"4-bbb"},
       "attributes":{"domain":"carol.example","prefix":"cozyc","locale":"en",
         "onboarding_finished":true,"indexes_version":38,"deletion_scheduled_at":"2030-01-01T00:00:00Z"}}
    ],"meta":{"count":4}}"#;

    fn instances() -> Vec<Instance> {
        #[derive(serde::Deserialize)]
        struct List {
            data: Vec<Instance>,
        }
        serde_json::from_str::<List>(LIST).expect("list").data
    }

    #[test]
    fn ls_default_table() {
        assert_eq!(
            ls_table(&instances()),
            "\
alice.example.net   fr  5.0 GB     onboarded               v38  cozy7d3d5947e7f3b0c674d1b8644646348e  cozy7d3d5947e7f3b0c674d1b8644646348e
bob.localhost:8080  en  unlimited  onboarding              v38  cozyffff                              cozyffff
legacy.example      en  unlimited  pending                 v9                                         legacy-example
carol.example       en  unlimited  deleting on 2030-01-01  v38  cozyc                                 cozyc
"
        );
        assert_eq!(ls_table(&[]), "");
    }

    #[test]
    fn ls_fields_tab_separated() {
        let fields: Vec<String> = [
            "domain",
            "domain_aliases",
            "disk_quota",
            "blocked",
            "password_defined",
            "db_prefix",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            ls_fields(&instances(), &fields),
            "alice.example.net\talice.example.org\t5000000000\t\ttrue\tcozy7d3d5947e7f3b0c674d1b8644646348e\n\
             bob.localhost:8080\t\t\t\tfalse\tcozyffff\n\
             legacy.example\t\t\ttrue\t\tlegacy-example\n\
             carol.example\t\t\t\t\tcozyc\n"
        );
    }

    #[test]
    fn ls_json_lines() {
        let all = instances();
        let text = ls_json(&all[..2], None);
        assert_eq!(
            text,
            "{\"domain\":\"alice.example.net\",\"domain_aliases\":[\"alice.example.org\"],\
             \"prefix\":\"cozy7d3d5947e7f3b0c674d1b8644646348e\",\"locale\":\"fr\",\"context\":\"beta\",\
             \"onboarding_finished\":true,\"password_defined\":true,\"disk_quota\":\"5000000000\",\
             \"indexes_version\":38,\"passphrase_reset_token\":null,\
             \"passphrase_reset_time\":\"0001-01-01T00:00:00Z\"}\n\
             {\"domain\":\"bob.localhost:8080\",\"prefix\":\"cozyffff\",\"locale\":\"en\",\
             \"onboarding_finished\":false,\"password_defined\":false,\"indexes_version\":38,\
             \"passphrase_reset_token\":null,\"passphrase_reset_time\":\"0001-01-01T00:00:00Z\",\
             \"register_token\":\"q83vEjRWeJCrze8SNFZ4kA==\"}\n"
        );
        let fields: Vec<String> = ["db_prefix", "uuid", "domain"].map(String::from).to_vec();
        assert_eq!(
            ls_json(&all[2..3], Some(&fields)),
            "{\"db_prefix\":\"legacy-example\",\"uuid\":null,\"domain\":\"legacy.example\"}\n"
        );
    }

    #[test]
    fn available_fields_in_spec_order() {
        let text = available_fields();
        assert!(text.starts_with("domain\ndomain_aliases\nold_domain\nprefix\nlocale\n"));
        assert!(text.ends_with("passphrase_reset_time\nregister_token\ndb_prefix\n"));
        assert_eq!(text.lines().count(), 26);
        assert!(check_fields(&["domain".into(), "db_prefix".into()]).is_ok());
        assert_eq!(
            check_fields(&["domain".into(), "secret".into()]),
            Err("unknown field \"secret\" (see `hearth instances ls --available-fields`)".into())
        );
    }

    #[test]
    fn show_is_indented_with_spec_attributes_only() {
        let instance = &instances()[2];
        assert_eq!(
            show(instance),
            r#"{
  "id": "0e3f",
  "meta": {
    "rev": "3-aaa"
  },
  "attributes": {
    "domain": "legacy.example",
    "locale": "en",
    "blocked": true,
    "onboarding_finished": false,
    "password_defined": null,
    "indexes_version": 9,
    "passphrase_reset_token": null,
    "passphrase_reset_time": "0001-01-01T00:00:00Z"
  }
}
"#
        );
    }

    #[test]
    fn db_prefix_and_count() {
        let all = instances();
        assert_eq!(db_prefix(&all[0]), "cozy7d3d5947e7f3b0c674d1b8644646348e\n");
        let mut clustered = all[2].clone();
        clustered.attributes.couch_cluster = 2;
        assert_eq!(db_prefix(&clustered), "legacy-example\ncouch_cluster: 2\n");
        assert_eq!(count(0), "0 instances\n");
        assert_eq!(count(1), "1 instance\n");
        assert_eq!(count(12), "12 instances\n");
    }

    #[test]
    fn add_report() {
        let all = instances();
        let with_token = Created {
            instance: all[1].clone(),
            apps_not_installed: vec!["photos".into()],
        };
        assert_eq!(
            created("bob.localhost:8080", &with_token, "example.net"),
            "Instance created with success for domain bob.localhost:8080\n\
             Registration token: \"abcdef1234567890abcdef1234567890\"\n\
             Define your password by visiting http://bob.localhost:8080/?registerToken=abcdef1234567890abcdef1234567890\n\
             /!\\ Application photos has not been installed\n"
        );
        let no_token = Created {
            instance: Instance {
                id: "x".into(),
                meta: ObjectMeta::default(),
                attributes: InstanceAttributes::default(),
            },
            apps_not_installed: vec![],
        };
        assert_eq!(
            created("a.example", &no_token, "localhost"),
            "Instance created with success for domain a.example\n"
        );
        assert_eq!(
            creating("a.example"),
            "Creating instance for domain \"a.example\": please wait...\n"
        );
    }

    #[test]
    fn register_url_scheme() {
        let cases = [
            ("alice.example.net", "localhost", "http"),
            ("alice.example.net", "127.0.0.1", "http"),
            ("alice.example.net", "cloud.example.net", "https"),
            ("alice.cozy.localhost", "0.0.0.0", "http"),
            ("alice.example.net:8443", "cloud.example.net", "http"),
        ];
        for (domain, host, scheme) in cases {
            assert_eq!(
                register_url(domain, "ab", host),
                format!("{scheme}://{domain}/?registerToken=ab"),
                "{domain} {host}"
            );
        }
    }

    #[test]
    fn tokens_and_clients() {
        assert_eq!(token("eyJhbGciOi.x.y\n"), "eyJhbGciOi.x.y\n");
        let client: OAuthClient = serde_json::from_str(
            r#"{"client_id":"c1","client_secret":"s","redirect_uris":["http://a/"],"client_name":"n"}"#,
        )
        .expect("client");
        assert_eq!(oauth_client(&client, false), Ok("c1\n".into()));
        assert_eq!(
            oauth_client(&client, true),
            Ok("{\n\t\"client_id\": \"c1\",\n\t\"client_secret\": \"s\",\n\t\"redirect_uris\": [\n\t\t\"http://a/\"\n\t],\n\t\"client_name\": \"n\"\n}\n".into())
        );
        assert_eq!(
            found_oauth_client(&client),
            "{\n  \"client_id\": \"c1\",\n  \"client_secret\": \"s\",\n  \"redirect_uris\": [\n    \"http://a/\"\n  ],\n  \"client_name\": \"n\"\n}\n"
        );
        let empty = OAuthClient::new();
        assert!(oauth_client(&empty, false).is_err());
    }

    fn app_doc(json: &str) -> AppDoc {
        AppDoc::from_value(serde_json::from_str(json).expect("JSON")).expect("an object")
    }

    #[test]
    fn apps_lines() {
        let drive = app_doc(
            r#"{"_id":"io.cozy.apps/drive","_rev":"1-a","name":"Drive","slug":"drive",
                "source":"registry://drive/stable","version":"1.2.3","state":"ready"}"#,
        );
        // A JSON:API resource reads as its attributes; the slug from the id otherwise.
        let demo = app_doc(
            r#"{"data":{"type":"io.cozy.apps","id":"io.cozy.apps/demo","attributes":{
                "_id":"io.cozy.apps/demo","source":"file:///srv/demo","version":"1.0.0-x","state":"installing"}}}"#,
        );
        assert_eq!(demo.slug(), "demo");
        assert_eq!(
            apps_table(&[drive.clone(), demo]),
            "drive  registry://drive/stable  1.2.3    ready\n\
             demo   file:///srv/demo         1.0.0-x  installing\n"
        );
        assert_eq!(apps_table(&[]), "");
        assert_eq!(
            app_installed("drive", &drive, "a.example"),
            "drive (1.2.3) has been installed on a.example\n"
        );
        assert_eq!(
            app(&drive),
            "{\n  \"name\": \"Drive\",\n  \"slug\": \"drive\",\n  \"source\": \"registry://drive/stable\",\n  \"version\": \"1.2.3\",\n  \"state\": \"ready\"\n}\n"
        );
        let v = |v: &str| app_doc(&format!(r#"{{"version":"{v}"}}"#));
        assert_eq!(
            app_updated("drive", &v("1.2.3"), &v("1.10.0")),
            "drive has been upgraded to 1.10.0\n"
        );
        assert_eq!(
            app_updated("drive", &v("1.2.3"), &v("1.2.3-beta.1")),
            "drive has been downgraded to 1.2.3-beta.1\n"
        );
        assert_eq!(
            app_updated("drive", &v("1.2.3"), &v("1.2.3")),
            "drive is already up-to-date at 1.2.3\n"
        );
    }

    #[test]
    fn pending_deletion_shows_its_day() {
        let mut a = instances()[3].attributes.clone();
        assert_eq!(state(&a), "deleting on 2030-01-01");
        a.deleting = true;
        assert_eq!(state(&a), "deleting");
        a.deleting = false;
        a.deletion_scheduled_at = Some(" ".into());
        assert_eq!(state(&a), "onboarded");
    }

    #[test]
    fn import_and_move_reports() {
        let report = json!({
            "doctypes": {
                "io.cozy.contacts": {"archive_docs": 2, "archive_bytes": 40, "imported_docs": 2,
                    "imported_bytes": 40, "skipped": 0},
                "io.cozy.settings": {"archive_docs": 1, "archive_bytes": 9, "imported_docs": 0,
                    "imported_bytes": 0, "skipped": 1},
            },
            "apps_not_installed": ["drive", "photos"],
            "parts": 2,
            "vault": true,
        });
        assert_eq!(
            import_report("Move of a.example to https://b.example done", &report),
            "Move of a.example to https://b.example done\n\
             \x20 io.cozy.contacts: 2 of 2 imported (40 of 40 bytes)\n\
             \x20 io.cozy.settings: 0 of 1 imported (0 of 9 bytes), 1 skipped\n\
             \x20 not installed: drive, photos\n\
             \x20 the password vault was not moved: the owner is told how to import it\n"
        );
        assert_eq!(import_report("Done", &Value::Null), "Done\n");
        assert_eq!(
            quota_too_small("a.example", 2_500_000, "b.example", 1_000_000),
            "b.example has a quota of 1.0 MB, smaller than the 2.5 MB that a.example uses: \
             nothing was moved (raise the quota with `hearth instances set-disk-quota` on the \
             target server)"
        );
        assert_eq!(
            move_progress("waiting", "a.example", "b.example"),
            "exporting a.example"
        );
        assert_eq!(
            move_progress("importing", "a.example", "b.example"),
            "importing into b.example"
        );
    }
}
