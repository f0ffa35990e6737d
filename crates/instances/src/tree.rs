//! What a new instance starts with: its files tree with localized names, the settings
//! document, the "myself" contact, and the Mango indexes of spec instances 2.5.

use hearth_core::JsonMap;
use hearth_store::mango::IndexDef;
use serde_json::{Value, json};

pub const ROOT_DIR_ID: &str = "io.cozy.files.root-dir";
pub const TRASH_DIR_ID: &str = "io.cozy.files.trash-dir";
pub const TRASH_DIR_NAME: &str = ".cozy_trash";

/// Translations of the default folder names; locales other than these get English
/// (the Cozy stack loads only `en` and `fr`).
pub fn tree_name(locale: &str, key: &str) -> &'static str {
    let fr = locale.starts_with("fr");
    match (key, fr) {
        ("Administrative", false) => "Administrative",
        ("Administrative", true) => "Administratif",
        ("Photos", _) => "Photos",
        ("Uploaded from Cozy Photos", false) => "Uploaded from Cozy Photos",
        ("Uploaded from Cozy Photos", true) => "Envoyées depuis Cozy Photos",
        ("Backed up from my mobile", false) => "Backed up from my mobile",
        ("Backed up from my mobile", true) => "Sauvegardées depuis mon mobile",
        _ => "",
    }
}

fn obj(v: Value) -> JsonMap {
    match v {
        Value::Object(m) => m,
        _ => JsonMap::new(),
    }
}

/// A directory document of `io.cozy.files`.
pub fn dir_doc(
    id: Option<&str>,
    name: &str,
    dir_id: &str,
    path: &str,
    now: &str,
    domain: &str,
) -> JsonMap {
    let mut d = obj(json!({
        "type": "directory",
        "name": name,
        "dir_id": dir_id,
        "path": path,
        "created_at": now,
        "updated_at": now,
        "tags": [],
        "cozyMetadata": {
            "doctypeVersion": "1",
            "metadataVersion": 1,
            "createdAt": now,
            "updatedAt": now,
            "createdOn": format!("https://{domain}/"),
        },
    }));
    if let Some(id) = id {
        d.insert("_id".into(), Value::String(id.to_owned()));
    }
    d
}

/// The directories of a new instance, parents before children: root, trash,
/// Administrative, Photos and its two subfolders (names in the instance's locale).
pub fn default_tree(locale: &str, now: &str, domain: &str) -> Vec<(String, JsonMap)> {
    let admin = tree_name(locale, "Administrative");
    let photos = tree_name(locale, "Photos");
    let uploaded = tree_name(locale, "Uploaded from Cozy Photos");
    let backed = tree_name(locale, "Backed up from my mobile");
    let photos_id = hearth_core::new_doc_id();
    let mut root = dir_doc(Some(ROOT_DIR_ID), "", "", "/", now, domain);
    root.shift_remove("name");
    root.insert("name".into(), Value::String(String::new()));
    let mut administrative = dir_doc(None, admin, ROOT_DIR_ID, &format!("/{admin}"), now, domain);
    administrative.insert(
        "referenced_by".into(),
        json!([{"type": "io.cozy.apps", "id": "io.cozy.apps/administrative"}]),
    );
    let mut photos_doc = dir_doc(
        None,
        photos,
        ROOT_DIR_ID,
        &format!("/{photos}"),
        now,
        domain,
    );
    photos_doc.insert("_id".into(), Value::String(photos_id.clone()));
    vec![
        ("/".into(), root),
        (
            format!("/{TRASH_DIR_NAME}"),
            dir_doc(
                Some(TRASH_DIR_ID),
                TRASH_DIR_NAME,
                ROOT_DIR_ID,
                &format!("/{TRASH_DIR_NAME}"),
                now,
                domain,
            ),
        ),
        (format!("/{admin}"), administrative),
        (format!("/{photos}"), photos_doc),
        (
            format!("/{photos}/{uploaded}"),
            dir_doc(
                None,
                uploaded,
                &photos_id,
                &format!("/{photos}/{uploaded}"),
                now,
                domain,
            ),
        ),
        (
            format!("/{photos}/{backed}"),
            dir_doc(
                None,
                backed,
                &photos_id,
                &format!("/{photos}/{backed}"),
                now,
                domain,
            ),
        ),
    ]
}

/// The Mango indexes every instance has (spec instances 2.5), by doctype.
pub fn default_indexes() -> Vec<(&'static str, IndexDef)> {
    let def = |name: &str, fields: &[&str], pfs: Option<Value>| {
        let mut index = json!({"fields": fields});
        if let Some(p) = pfs {
            index["partial_filter_selector"] = p;
        }
        IndexDef::parse(&json!({"index": index, "ddoc": name, "name": name}))
    };
    let specs: Vec<(&str, &str, &[&str], Option<Value>)> = vec![
        (
            "io.cozy.permissions",
            "by-source-and-type",
            &["source_id", "type"],
            None,
        ),
        ("io.cozy.files", "dir-children", &["dir_id", "_id"], None),
        ("io.cozy.files", "dir-by-path", &["path"], None),
        // Hearth's own: the name check of every upload and rename looks up
        // (dir_id, name); without it a folder of 10,000 files costs a scan each time.
        (
            "io.cozy.files",
            "by-dir-id-and-name",
            &["dir_id", "name"],
            None,
        ),
        (
            "io.cozy.files",
            "by-mime-updated-at",
            &["mime", "trashed", "updated_at"],
            None,
        ),
        (
            "io.cozy.files",
            "by-sharing-status",
            &["metadata.sharing.status"],
            None,
        ),
        (
            "io.cozy.files",
            "by-dir-id-updated-at",
            &["dir_id", "updated_at"],
            None,
        ),
        (
            "io.cozy.jobs",
            "by-worker-and-state",
            &["worker", "state"],
            None,
        ),
        (
            "io.cozy.jobs",
            "by-trigger-id",
            &["trigger_id", "queued_at"],
            None,
        ),
        ("io.cozy.jobs", "by-queued-at", &["queued_at"], None),
        (
            "io.cozy.triggers",
            "by-worker-and-type",
            &["worker", "type"],
            None,
        ),
        (
            "io.cozy.oauth.clients",
            "by-client-name",
            &["client_name"],
            None,
        ),
        (
            "io.cozy.oauth.clients",
            "by-notification-platform",
            &["notification_platform"],
            None,
        ),
        (
            "io.cozy.oauth.clients",
            "connected-user-clients",
            &["client_kind", "client_name"],
            Some(
                json!({"client_kind": {"$in": ["browser", "desktop", "mobile"]}, "pending": {"$exists": false}}),
            ),
        ),
        (
            "io.cozy.sessions.logins",
            "by-os-browser-ip",
            &["os", "browser", "ip"],
            None,
        ),
        (
            "io.cozy.notifications",
            "by-source-id",
            &["source_id", "created_at"],
            None,
        ),
        ("io.cozy.contacts", "by-me", &["me"], None),
        ("io.cozy.sharings", "active", &["active"], None),
    ];
    specs
        .into_iter()
        .filter_map(|(dt, name, fields, pfs)| def(name, fields, pfs).ok().map(|d| (dt, d)))
        .collect()
}

/// The `io.cozy.settings.instance` document (spec instances 2.3).
pub fn settings_doc(settings: &JsonMap) -> JsonMap {
    let mut d = settings.clone();
    d.insert(
        "_id".into(),
        Value::String("io.cozy.settings.instance".into()),
    );
    d
}

/// The "myself" contact (spec instances 2.3).
pub fn myself_contact(domain: &str, email: Option<&str>, public_name: Option<&str>) -> JsonMap {
    let url = format!("https://{domain}");
    let mut c = obj(json!({
        "me": true,
        "cozy": [{"url": url, "primary": true}],
        "indexes": {"byFamilyNameGivenNameEmailCozyUrl": email.unwrap_or(&url)},
    }));
    if let Some(e) = email {
        c.insert("email".into(), json!([{"address": e, "primary": true}]));
    }
    let local = email.map(|e| e.split('@').next().unwrap_or(e));
    if let Some(name) = public_name.or(local) {
        c.insert("fullname".into(), Value::String(name.to_owned()));
    }
    if let Some(name) = public_name.or(email) {
        c.insert("displayName".into(), Value::String(name.to_owned()));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localized_trees() {
        let en: Vec<String> = default_tree("en", "t", "d")
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            en,
            [
                "/",
                "/.cozy_trash",
                "/Administrative",
                "/Photos",
                "/Photos/Uploaded from Cozy Photos",
                "/Photos/Backed up from my mobile"
            ]
        );
        let fr: Vec<String> = default_tree("fr", "t", "d")
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(fr[2], "/Administratif");
        assert_eq!(fr[4], "/Photos/Envoyées depuis Cozy Photos");
        let de: Vec<String> = default_tree("de", "t", "d")
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(de, en, "other locales fall back to English");
    }

    #[test]
    fn all_default_indexes_parse() {
        assert_eq!(default_indexes().len(), 18);
    }
}
