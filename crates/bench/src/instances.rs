//! Instance creation and listing.
//!
//! - Creation through the instances service (no passphrase) beside a baseline doing
//!   the same storage work by hand: a new SQLite file with the same number of
//!   documents and indexes, and the same directories on disk.
//! - `GET /instances` through the admin router with 1,000 and 10,000 instances, beside
//!   reading and serializing the same registry rows with raw rusqlite, and the
//!   process's resident memory.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{body::Body, http::Request};
use base64::Engine;
use hearth_instances::{CreateOptions, Instances, InstancesConfig, ScryptCost};
use hearth_store::DocStore;
use hearth_store_sqlite::{SqliteOptions, SqliteStore};
use hearth_web::{AdminAuth, AppState};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::{Row, print_table};

/// Documents a new instance gets: settings, contact, 6 directories, the registry
/// document and 2 domain claims.
const DOCS_PER_INSTANCE: usize = 11;
const INDEXES_PER_INSTANCE: usize = 18;

fn rss_mib() -> f64 {
    crate::files::vm("VmRSS:")
}

fn baseline_instance(root: &std::path::Path, n: usize) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open(root.join(format!("raw{n}.sqlite")))?;
    conn.execute_batch(&hearth_store_sqlite::pragmas(true))?;
    conn.execute_batch("BEGIN; CREATE TABLE docs (id TEXT PRIMARY KEY, data TEXT NOT NULL);")?;
    for d in 0..DOCS_PER_INSTANCE {
        conn.execute(
            "INSERT INTO docs (id, data) VALUES (?1, ?2)",
            (
                format!("doc{d}"),
                r#"{"type":"directory","name":"Photos","path":"/Photos"}"#,
            ),
        )?;
    }
    for i in 0..INDEXES_PER_INSTANCE {
        conn.execute_batch(&format!(
            "CREATE INDEX ix{i} ON docs (json_extract(data, '$.f{i}'))"
        ))?;
    }
    conn.execute_batch("COMMIT")?;
    let dir = root.join(format!("files/raw{n}.localhost"));
    for sub in [
        "",
        ".cozy_trash",
        "Administrative",
        "Photos/Uploaded from Cozy Photos",
        "Photos/Backed up from my mobile",
    ] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    Ok(())
}

pub(crate) fn run(counts: &[usize]) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir_in(std::env::current_dir()?)?;
    let store: Arc<dyn DocStore> = Arc::new(SqliteStore::open(
        dir.path().join("db"),
        SqliteOptions::default(),
    )?);
    let config = InstancesConfig {
        fs_root: dir.path().join("files"),
        scrypt: ScryptCost::PRODUCTION,
    };
    let instances = Arc::new(rt.block_on(Instances::open(store.clone(), config))?);
    let state = AppState::new(store, instances.clone())
        .with_admin_auth(AdminAuth::new(Some("bench".into()), vec![]));
    let admin = hearth_web::admin_router(state);
    let raw_dir = dir.path().join("raw");
    std::fs::create_dir_all(&raw_dir)?;
    let rss_start = rss_mib();

    let mut rows = Vec::new();
    let mut memory = Vec::new();
    let mut created = 0;
    for &target in counts {
        let batch = target - created;
        let start = Instant::now();
        for n in created..target {
            baseline_instance(&raw_dir, n)?;
        }
        let baseline = start.elapsed();
        let start = Instant::now();
        rt.block_on(async {
            for n in created..target {
                let opts = CreateOptions {
                    domain: format!("user{n}.example.net"),
                    domain_aliases: vec![format!("alias{n}.example.net")],
                    ..Default::default()
                };
                instances.create(opts).await?;
            }
            Ok::<_, anyhow::Error>(())
        })?;
        let ours = start.elapsed();
        created = target;
        rows.push(Row {
            scenario: format!("create {batch} instances (to {target})"),
            ops: batch,
            ours,
            baseline,
        });

        // Listing, three times each, median.
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(":bench")
        );
        let mut ours_t = Vec::new();
        let mut base_t = Vec::new();
        let global = rusqlite::Connection::open(dir.path().join("db/global.sqlite"))?;
        for _ in 0..3 {
            let start = Instant::now();
            let body = rt.block_on(async {
                let req = Request::builder()
                    .uri("/instances")
                    .header("authorization", &auth)
                    .body(Body::empty())?;
                let res = admin.clone().oneshot(req).await?;
                anyhow::ensure!(res.status().is_success(), "ls: {}", res.status());
                Ok::<_, anyhow::Error>(res.into_body().collect().await?.to_bytes())
            })?;
            ours_t.push(start.elapsed());
            let listed: serde_json::Value = serde_json::from_slice(&body)?;
            anyhow::ensure!(
                listed["data"].as_array().map(Vec::len) == Some(target),
                "ls returned a wrong count"
            );

            let start = Instant::now();
            let table: String = global.query_row(
                "SELECT 'dt_' || n FROM doctypes WHERE name = 'io.cozy.instances'",
                [],
                |r| r.get(0),
            )?;
            let mut stmt = global.prepare(&format!(
                "SELECT id, data FROM {table} WHERE deleted = 0 ORDER BY id"
            ))?;
            let mut out = Vec::new();
            let mut rows_iter = stmt.query([])?;
            while let Some(r) = rows_iter.next()? {
                let id: String = r.get(0)?;
                let mut doc: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(r.get_ref(1)?.as_str()?)?;
                for secret in [
                    "session_secret",
                    "oauth_secret",
                    "cli_secret",
                    "passphrase_hash",
                ] {
                    doc.remove(secret);
                }
                out.push(serde_json::json!({"type": "instances", "id": id, "attributes": doc}));
            }
            let text = serde_json::to_vec(&serde_json::json!({"data": out}))?;
            anyhow::ensure!(!text.is_empty());
            base_t.push(start.elapsed());
        }
        ours_t.sort();
        base_t.sort();
        rows.push(Row {
            scenario: format!("GET /instances with {target} instances"),
            ops: 1,
            ours: ours_t[1],
            baseline: base_t[1],
        });
        memory.push((target, rss_mib(), instances_open(&dir)));
    }
    print_table(
        "Instances: Hearth vs the same storage work by hand (raw rusqlite + mkdir)",
        "by hand",
        &rows,
    );
    println!("\nResident memory of the process (started at {rss_start:.1} MiB):");
    for (n, rss, files) in memory {
        println!("- {n} instances: {rss:.1} MiB ({files} database files on disk)");
    }
    let per = rows
        .first()
        .map_or(Duration::ZERO, |r| r.ours / r.ops.max(1) as u32);
    println!(
        "\nCreation without passphrase: {:.2} ms per instance ({:.0} instances/s)",
        per.as_secs_f64() * 1e3,
        1.0 / per.as_secs_f64().max(1e-9)
    );
    Ok(())
}

fn instances_open(dir: &tempfile::TempDir) -> usize {
    std::fs::read_dir(dir.path().join("db")).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sqlite"))
        })
        .count()
    })
}
