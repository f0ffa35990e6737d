//! Creating, modifying and destroying instances (spec instances 2, 4.4, 4.5, 4.7).

use std::{path::PathBuf, sync::Arc, time::Instant};

use hearth_core::{InstanceId, JsonMap, now_rfc3339};
use hearth_store::{BulkResult, DocStore, GetOptions, StoreError};
use serde_json::{Value, json};

use crate::{
    DOMAINS, Domain, INDEXES_VERSION, Instance, InstanceError, InstanceResult, Instances, doctype,
    model::random_b64, passphrase, to_doc, tree,
};

/// The parameters of `POST /instances` that Hearth uses.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub domain: String,
    /// The database cluster (`--db-cluster`, `CouchCluster`); `None` lets the server
    /// choose (cluster 0 when there is one, else by a hash of the domain).
    pub db_cluster: Option<usize>,
    pub domain_aliases: Vec<String>,
    pub locale: Option<String>,
    pub passphrase: Option<String>,
    pub disk_quota: Option<u64>,
    pub email: Option<String>,
    pub public_name: Option<String>,
    pub phone: Option<String>,
    pub timezone: Option<String>,
    /// `k:v,k:v` as in the Cozy stack.
    pub settings: Option<String>,
    pub context: Option<String>,
    pub uuid: Option<String>,
    pub oidc_id: Option<String>,
    pub franceconnect_id: Option<String>,
    pub old_domain: Option<String>,
    pub tos_signed: Option<String>,
    pub tos_latest: Option<String>,
    pub sponsorships: Vec<String>,
    pub feature_sets: Vec<String>,
    pub magic_link: Option<bool>,
    pub auto_update: Option<bool>,
    pub kdf_iterations: u32,
}

/// The parameters of `PATCH /instances/:domain`; `None` means "no change".
#[derive(Debug, Clone, Default)]
pub struct ModifyOptions {
    pub deleting: Option<bool>,
    pub locale: Option<String>,
    pub blocked: Option<bool>,
    pub blocking_reason: Option<String>,
    /// Replaces the aliases (an empty list clears them).
    pub domain_aliases: Option<Vec<String>>,
    pub old_domain: Option<String>,
    pub uuid: Option<String>,
    pub oidc_id: Option<String>,
    pub franceconnect_id: Option<String>,
    pub context: Option<String>,
    pub magic_link: Option<bool>,
    pub sponsorships: Option<Vec<String>>,
    /// Bytes; `Some(None)` removes the quota.
    pub disk_quota: Option<Option<u64>>,
    pub onboarding_finished: Option<bool>,
    pub tos_signed: Option<String>,
    pub tos_latest: Option<String>,
    pub settings: Option<String>,
    pub email: Option<String>,
    pub public_name: Option<String>,
    pub phone: Option<String>,
    pub timezone: Option<String>,
}

/// Splits `k:v,k:v` into string values (spec instances 2.3).
fn parse_settings(s: &str, into: &mut JsonMap) {
    for piece in s.split(',') {
        if let Some((k, v)) = piece.split_once(':') {
            let k = k.trim();
            if !k.is_empty() {
                into.insert(k.to_owned(), Value::String(v.trim().to_owned()));
            }
        }
    }
}

/// Moves the settings keys that belong to the instance document onto it.
fn move_instance_keys(settings: &mut JsonMap, i: &mut Instance) {
    let mut take = |k: &str| {
        settings
            .shift_remove(k)
            .and_then(|v| v.as_str().map(str::to_owned))
            .filter(|v| !v.is_empty())
    };
    if let Some(v) = take("context") {
        i.context = Some(v);
    }
    if let Some(v) = take("locale") {
        i.locale = v;
    }
    if let Some(v) = take("uuid") {
        i.uuid = Some(v);
    }
    if let Some(v) = take("oidc_id") {
        i.oidc_id = Some(v);
    }
    if let Some(v) = take("tos") {
        i.tos = Some(normalize_tos(&v));
    }
    if let Some(v) = take("tos_latest") {
        i.tos_latest = Some(v);
    }
    if let Some(v) = take("auto_update")
        && let Ok(b) = v.parse::<bool>()
    {
        i.no_auto_update = !b;
    }
    if let Some(v) = take("auth_mode") {
        i.auth_mode = match v.as_str() {
            "two_factor_mail" => 1,
            "two_factor_oidc" => 2,
            _ => 0,
        };
    }
}

/// `YYYYMMDD` alone means version `1.0.0-YYYYMMDD`.
fn normalize_tos(v: &str) -> String {
    if v.len() == 8 && v.bytes().all(|b| b.is_ascii_digit()) {
        format!("1.0.0-{v}")
    } else {
        v.to_owned()
    }
}

fn valid_tos(v: &str) -> bool {
    let v = v.strip_prefix('v').unwrap_or(v);
    let (version, date) = match v.split_once('-') {
        Some((a, d)) => (Some(a), Some(d)),
        None if v.len() == 8 && v.bytes().all(|b| b.is_ascii_digit()) => (None, Some(v)),
        None => (Some(v), None),
    };
    let version_ok = version.is_none_or(|a| {
        let parts: Vec<&str> = a.split('.').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    });
    let date_ok = date.is_none_or(|d| d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()));
    version_ok && date_ok
}

fn parse_aliases(aliases: &[String], own: &Domain) -> InstanceResult<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for a in aliases.iter().map(|a| a.trim()).filter(|a| !a.is_empty()) {
        let d = Domain::parse(a).map_err(|_| InstanceError::IllegalDomain {
            parameter: "domain_aliases",
        })?;
        if &d == own {
            return Err(InstanceError::Exists);
        }
        if !out.iter().any(|o| o == d.as_str()) {
            out.push(d.as_str().to_owned());
        }
    }
    Ok(out)
}

/// Undoes the steps of a creation that failed, newest first.
struct Rollback<'a> {
    instances: &'a Instances,
    claims: Vec<String>,
    store_data: Option<InstanceId>,
    dir: Option<PathBuf>,
}

impl Rollback<'_> {
    async fn run(self) {
        let s = &self.instances.store;
        if let Some(dir) = self.dir {
            let _ = tokio::fs::remove_dir_all(dir).await;
        }
        if let Some(id) = self.store_data
            && let Err(e) = s.destroy_instance(&id).await
        {
            tracing::error!(error = %e, "rollback of a failed creation: store data left behind");
        }
        delete_claims(s, &self.claims).await;
    }
}

async fn delete_claims(store: &Arc<dyn DocStore>, domains: &[String]) {
    for d in domains {
        let g = InstanceId::global();
        if let Ok(doc) = store
            .get(&g, &doctype(DOMAINS), d, GetOptions::default())
            .await
            && let Some(rev) = doc
                .get("_rev")
                .and_then(Value::as_str)
                .and_then(|r| r.parse().ok())
        {
            let _ = store.delete(&g, &doctype(DOMAINS), d, &rev).await;
        }
    }
}

impl Instances {
    /// Claims domains for an instance in one all-or-nothing write: a domain or alias
    /// already claimed by any instance is a conflict (spec 2.2).
    async fn claim(&self, instance_id: &str, domains: &[(String, &str)]) -> InstanceResult<()> {
        if domains.is_empty() {
            return Ok(());
        }
        let docs = domains
            .iter()
            .map(|(d, kind)| json!({"_id": d, "instance_id": instance_id, "kind": kind}))
            .filter_map(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .collect();
        let results = self
            .store
            .bulk(&InstanceId::global(), &doctype(DOMAINS), docs, true)
            .await?;
        if results.iter().any(|r| {
            matches!(
                r,
                BulkResult::Err {
                    error: "conflict",
                    ..
                }
            )
        }) {
            return Err(InstanceError::Exists);
        }
        if let Some(BulkResult::Err { reason, .. }) =
            results.iter().find(|r| matches!(r, BulkResult::Err { .. }))
        {
            return Err(InstanceError::internal(reason));
        }
        Ok(())
    }

    /// Creates an instance (spec instances 2.1). A failure leaves nothing behind.
    pub async fn create(&self, opts: CreateOptions) -> InstanceResult<Instance> {
        let started = Instant::now();
        let domain = Domain::parse(&opts.domain).map_err(|_| InstanceError::IllegalDomain {
            parameter: "domain",
        })?;
        let aliases = parse_aliases(&opts.domain_aliases, &domain)?;
        if opts.kdf_iterations != 0 && !(50_000..=5_000_000).contains(&opts.kdf_iterations) {
            return Err(InstanceError::InvalidParameter {
                parameter: "KdfIterations",
                detail: format!(
                    "The KdfIterations number is too {}",
                    if opts.kdf_iterations < 50_000 {
                        "low"
                    } else {
                        "high"
                    }
                ),
            });
        }
        let mut i = Instance::from(&domain);
        let cluster = match opts.db_cluster {
            Some(n) if n >= self.db_clusters => {
                return Err(InstanceError::InvalidParameter {
                    parameter: "db_cluster",
                    detail: format!(
                        "there is no database cluster {n} (clusters 0 to {})",
                        self.db_clusters - 1
                    ),
                });
            }
            Some(n) => n,
            // Spread evenly and the same way on every node: by the domain's hash.
            None => {
                let h = i
                    .prefix
                    .bytes()
                    .fold(0usize, |a, b| a.wrapping_mul(31).wrapping_add(b as usize));
                h % self.db_clusters
            }
        };
        i.prefix = hearth_store::clustered::id_on_cluster(&i.prefix, cluster);
        i.id = hearth_core::new_doc_id();
        i.domain_aliases = aliases.clone();
        i.locale = opts
            .locale
            .clone()
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| "en".into());

        let mut settings = JsonMap::new();
        if let Some(s) = &opts.settings {
            parse_settings(s, &mut settings);
        }
        // The locale given as a flag wins over one inside Settings, as in the original.
        let locale = i.locale.clone();
        move_instance_keys(&mut settings, &mut i);
        i.locale = locale;
        for (key, value) in [
            ("tz", &opts.timezone),
            ("email", &opts.email),
            ("public_name", &opts.public_name),
            ("phone", &opts.phone),
        ] {
            if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
                settings.insert(key.into(), Value::String(v.clone()));
            }
        }
        i.context = opts.context.clone().filter(|c| !c.is_empty()).or(i.context);
        i.uuid = opts.uuid.clone().filter(|c| !c.is_empty()).or(i.uuid);
        i.oidc_id = opts.oidc_id.clone().filter(|c| !c.is_empty()).or(i.oidc_id);
        i.franceconnect_id = opts.franceconnect_id.clone().filter(|c| !c.is_empty());
        if let Some(old) = opts.old_domain.as_deref().filter(|o| !o.is_empty()) {
            let old = Domain::parse(old).map_err(|_| InstanceError::IllegalDomain {
                parameter: "old_domain",
            })?;
            i.old_domain = Some(old.as_str().to_owned());
        }
        if let Some(t) = opts.tos_signed.as_deref().filter(|t| !t.is_empty()) {
            i.tos = Some(normalize_tos(t));
        }
        if let Some(t) = opts.tos_latest.as_deref().filter(|t| !t.is_empty()) {
            i.tos_latest = Some(t.to_owned());
        }
        i.sponsorships = opts.sponsorships.clone();
        i.feature_sets = opts.feature_sets.clone();
        i.disk_quota = opts.disk_quota.filter(|q| *q > 0);
        i.indexes_version = INDEXES_VERSION;
        i.register_token = Some(random_b64(16));
        i.session_secret = random_b64(64);
        i.oauth_secret = random_b64(128);
        i.cli_secret = random_b64(128);
        i.magic_link = opts.magic_link.unwrap_or(false);
        if let Some(a) = opts.auto_update {
            i.no_auto_update = !a;
        }
        i.password_defined = Some(false);

        // 1. Claim the domain and aliases: the uniqueness check, atomic.
        let mut claims: Vec<(String, &str)> = vec![(i.domain.clone(), "domain")];
        claims.extend(aliases.iter().map(|a| (a.clone(), "alias")));
        self.claim(&i.id, &claims).await?;
        let mut rollback = Rollback {
            instances: self,
            claims: claims.iter().map(|(d, _)| d.clone()).collect(),
            store_data: None,
            dir: None,
        };

        let result = self.populate(&mut i, &settings, &opts, &mut rollback).await;
        match result {
            Ok(()) => {
                tracing::info!(domain = %i.domain, elapsed_ms = started.elapsed().as_millis() as u64, "instance created");
                Ok(i)
            }
            Err(e) => {
                tracing::warn!(domain = %i.domain, error = %e, "instance creation failed, rolling back");
                rollback.run().await;
                Err(e)
            }
        }
    }

    async fn populate(
        &self,
        i: &mut Instance,
        settings: &JsonMap,
        opts: &CreateOptions,
        rollback: &mut Rollback<'_>,
    ) -> InstanceResult<()> {
        let store = &self.store;
        let id = i.instance_id();
        rollback.store_data = Some(id.clone());
        let now = now_rfc3339();

        // 2. Indexes (this creates the instance's database), in one transaction.
        let defs = tree::default_indexes()
            .into_iter()
            .map(|(dt, def)| (doctype(dt), def))
            .collect();
        store.create_indexes(&id, defs).await?;
        let contact = tree::myself_contact(
            &i.domain,
            opts.email.as_deref().filter(|e| !e.is_empty()),
            opts.public_name.as_deref().filter(|e| !e.is_empty()),
        );
        let mut first_docs = vec![
            (
                doctype("io.cozy.settings"),
                vec![tree::settings_doc(settings)],
            ),
            (doctype("io.cozy.contacts"), vec![contact]),
        ];

        // 3. Passphrase: the clear text is hashed as a client would, then scrypt. The
        // iterations are recorded either way: the registration page hashes with them.
        let iterations = if opts.kdf_iterations == 0 {
            passphrase::EMULATED_ITERATIONS
        } else {
            opts.kdf_iterations
        };
        if let Value::Object(m) = json!({"_id": "io.cozy.settings.bitwarden", "passphrase_kdf": 0, "passphrase_kdf_iterations": iterations})
        {
            first_docs[0].1.push(m);
        }
        if let Some(p) = opts.passphrase.as_deref().filter(|p| !p.is_empty()) {
            let client = passphrase::client_hash(p, &i.passphrase_salt(), iterations);
            let cost = self.config.scrypt;
            let hash = tokio::task::spawn_blocking(move || passphrase::hash(&client, cost))
                .await
                .map_err(InstanceError::internal)?
                .map_err(InstanceError::internal)?;
            i.passphrase_hash = Some(hash);
            i.register_token = None;
            i.session_secret = random_b64(64);
            i.onboarding_finished = true;
            i.password_defined = Some(true);
        }

        // 4. Settings, contact and the files tree in one transaction, then the
        // directories on disk.
        let dirs = tree::default_tree(&i.locale, &now, &i.domain);
        first_docs.push((
            doctype("io.cozy.files"),
            dirs.iter().map(|(_, d)| d.clone()).collect(),
        ));
        let written = store.bulk_many(&id, first_docs).await?;
        if let Some(BulkResult::Err { reason, .. }) = written
            .iter()
            .flatten()
            .find(|r| matches!(r, BulkResult::Err { .. }))
        {
            return Err(InstanceError::internal(format!(
                "first documents: {reason}"
            )));
        }
        let root = self.instance_dir(&i.domain);
        rollback.dir = Some(root.clone());
        for (path, _) in &dirs {
            let dir = root.join(path.trim_start_matches('/'));
            tokio::fs::create_dir_all(&dir).await.map_err(|e| {
                InstanceError::internal(format!("cannot create {}: {e}", dir.display()))
            })?;
        }

        // 5. The registry document, last: once it exists, the instance is served.
        let mut doc = to_doc(i)?;
        doc.insert("_id".into(), Value::String(i.id.clone()));
        doc.shift_remove("_rev");
        let w = store
            .put(&InstanceId::global(), &doctype(crate::INSTANCES), doc)
            .await?;
        i.rev = Some(w.rev.to_string());
        Ok(())
    }

    /// Where an instance's files live.
    pub fn instance_dir(&self, domain: &str) -> PathBuf {
        self.config.fs_root.join(domain)
    }

    /// Where every instance's files directory lives (`<fs_root>/<domain>`).
    pub fn fs_root(&self) -> &std::path::Path {
        &self.config.fs_root
    }

    /// Applies `PATCH /instances/:domain` (spec instances 4.4), fixing its quirks:
    /// unblocking clears the reason, and aliases can be cleared.
    pub async fn modify(&self, domain: &str, m: ModifyOptions) -> InstanceResult<Instance> {
        let current = self.get_str(domain).await?;
        let mut i = (*current).clone();
        if let Some(deleting) = m.deleting {
            i.deleting = deleting;
            self.save(&mut i).await?;
            return Ok(i);
        }
        let id = i.instance_id();
        let settings_dt = doctype("io.cozy.settings");
        let stored_settings = match self
            .store
            .get(
                &id,
                &settings_dt,
                "io.cozy.settings.instance",
                GetOptions::default(),
            )
            .await
        {
            Ok(s) => Some(s),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let mut settings = stored_settings.clone().unwrap_or_default();
        if let Some(s) = &m.settings {
            parse_settings(s, &mut settings);
            move_instance_keys(&mut settings, &mut i);
        }
        for (key, value) in [
            ("tz", &m.timezone),
            ("email", &m.email),
            ("public_name", &m.public_name),
            ("phone", &m.phone),
        ] {
            if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
                settings.insert(key.into(), Value::String(v.clone()));
            }
        }
        let set = |field: &mut Option<String>, v: &Option<String>| {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                *field = Some(v.clone());
            }
        };
        if let Some(l) = m.locale.as_ref().filter(|l| !l.is_empty()) {
            i.locale = l.clone();
        }
        set(&mut i.uuid, &m.uuid);
        set(&mut i.oidc_id, &m.oidc_id);
        set(&mut i.franceconnect_id, &m.franceconnect_id);
        set(&mut i.context, &m.context);
        if let Some(old) = m.old_domain.as_deref().filter(|o| !o.is_empty()) {
            let old = Domain::parse(old).map_err(|_| InstanceError::IllegalDomain {
                parameter: "old_domain",
            })?;
            i.old_domain = Some(old.as_str().to_owned());
        }
        if let Some(b) = m.blocked {
            i.blocked = b;
            if !b {
                i.blocking_reason = None;
            }
        }
        if let Some(r) = m.blocking_reason.as_ref().filter(|r| !r.is_empty()) {
            i.blocking_reason = Some(r.clone());
        }
        if let Some(b) = m.magic_link {
            i.magic_link = b;
        }
        if let Some(s) = &m.sponsorships {
            i.sponsorships = s.clone();
        }
        if let Some(q) = m.disk_quota {
            i.disk_quota = q.filter(|q| *q > 0);
        }
        if let Some(b) = m.onboarding_finished {
            i.onboarding_finished = b;
        }
        for (value, field, latest) in [
            (&m.tos_signed, "TOSSigned", false),
            (&m.tos_latest, "TOSLatest", true),
        ] {
            if let Some(t) = value.as_deref().filter(|t| !t.is_empty()) {
                if !valid_tos(t) {
                    return Err(InstanceError::InvalidParameter {
                        parameter: field,
                        detail: "Bad format for TOS version".into(),
                    });
                }
                if latest {
                    i.tos_latest = Some(t.to_owned())
                } else {
                    i.tos = Some(normalize_tos(t))
                }
            }
        }
        // Aliases: claim the new ones first (a conflict changes nothing), then release
        // the ones dropped once the instance is saved.
        let mut dropped = Vec::new();
        if let Some(new) = &m.domain_aliases {
            let own = Domain::parse(&i.domain).map_err(|_| InstanceError::IllegalDomain {
                parameter: "domain",
            })?;
            let new = parse_aliases(new, &own)?;
            let added: Vec<(String, &str)> = new
                .iter()
                .filter(|a| !i.domain_aliases.contains(a))
                .map(|a| (a.clone(), "alias"))
                .collect();
            self.claim(&i.id, &added).await?;
            dropped = i
                .domain_aliases
                .iter()
                .filter(|a| !new.contains(a))
                .cloned()
                .collect();
            i.domain_aliases = new;
        }
        if i != *current {
            self.save(&mut i).await?
        }
        delete_claims(&self.store, &dropped).await;
        self.forget(dropped.iter().map(String::as_str));
        if stored_settings.as_ref() != Some(&settings) {
            let mut doc = tree::settings_doc(&settings);
            if let Some(rev) = stored_settings
                .as_ref()
                .and_then(|s| s.get("_rev"))
                .cloned()
            {
                doc.insert("_rev".into(), rev);
            }
            self.store.put(&id, &settings_dt, doc).await?;
        }
        Ok(i)
    }

    /// Blocks or unblocks an instance from inside the server (login failures, moves).
    pub async fn set_blocked(
        &self,
        domain: &str,
        reason: Option<&str>,
    ) -> InstanceResult<Instance> {
        let mut i = (*self.get_str(domain).await?).clone();
        i.blocked = reason.is_some();
        i.blocking_reason = reason.map(str::to_owned);
        self.save(&mut i).await?;
        Ok(i)
    }

    /// Marks an instance as moved away (spec move 3.7): `moved`, the date after which
    /// it is destroyed, and a block for `unblock_reason` (a move's) lifted.
    pub async fn set_moved(
        &self,
        domain: &str,
        deletion_scheduled_at: Option<String>,
        unblock_reason: &str,
    ) -> InstanceResult<Instance> {
        let mut i = (*self.get_str(domain).await?).clone();
        i.moved = true;
        i.deletion_scheduled_at = deletion_scheduled_at;
        if i.blocked && i.blocking_reason.as_deref() == Some(unblock_reason) {
            i.blocked = false;
            i.blocking_reason = None;
        }
        self.save(&mut i).await?;
        Ok(i)
    }

    /// Destroys an instance (spec instances 4.7): sets `deleting` first, refuses when it
    /// is already set, then removes the documents, the files, the domain claims and the
    /// registry entry. Every step can run again, so a crash midway is finished by
    /// clearing the flag and destroying again.
    pub async fn destroy(&self, domain: &str) -> InstanceResult<()> {
        let mut i = (*self.get_str(domain).await?).clone();
        if i.deleting {
            return Err(InstanceError::DeletionInProgress {
                domain: i.domain.clone(),
            });
        }
        i.deleting = true;
        self.save(&mut i).await?;
        tracing::info!(domain = %i.domain, "destroying instance");
        self.store.destroy_instance(&i.instance_id()).await?;
        let dir = self.instance_dir(&i.domain);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(InstanceError::internal(format!(
                    "cannot remove {}: {e}",
                    dir.display()
                )));
            }
        }
        let domains: Vec<String> = i.all_domains().map(str::to_owned).collect();
        let g = InstanceId::global();
        if let Some(rev) = i.rev.as_deref().and_then(|r| r.parse().ok()) {
            match self
                .store
                .delete(&g, &doctype(crate::INSTANCES), &i.id, &rev)
                .await
            {
                Ok(_) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        delete_claims(&self.store, &domains).await;
        self.forget(domains.iter().map(String::as_str));
        tracing::info!(domain = %i.domain, "instance destroyed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_strings() {
        let mut m = JsonMap::new();
        parse_settings("offer:premium, tz:Europe/Paris,bad,locale:fr", &mut m);
        assert_eq!(
            Value::Object(m.clone()),
            json!({"offer": "premium", "tz": "Europe/Paris", "locale": "fr"})
        );
        let mut i = Instance::default();
        move_instance_keys(&mut m, &mut i);
        assert_eq!(i.locale, "fr");
        assert!(!m.contains_key("locale"));
    }

    #[test]
    fn tos_versions() {
        assert!(valid_tos("1.0.0"));
        assert!(valid_tos("v1.2.3-20240101"));
        assert!(valid_tos("20240101"));
        assert!(!valid_tos("1.0"));
        assert!(!valid_tos("banana"));
        assert_eq!(normalize_tos("20240101"), "1.0.0-20240101");
    }
}
