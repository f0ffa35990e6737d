//! `hearth migrate-storage`: copies one instance's documents and file contents from
//! the backends of the current configuration to other ones (SQLite → PostgreSQL,
//! local disk → S3…), then checks the copy. The operator switches the configuration
//! afterwards.
//!
//! Safety: the instance must not change during the copy. The command refuses an
//! instance that is not blocked; the operator blocks it through the running server
//! (`hearth instances modify <domain> --blocked`), or stops the server and passes
//! `--block`, which blocks it in the registry and unblocks it once the check passed
//! (a block written by this process would not reach a running server's lookup cache,
//! hence the two ways). Nothing is removed from the source.
//!
//! Documents are copied doctype by doctype from the changes feed (tombstones
//! included), each live one with its revision history, through
//! [`DocStore::restore`]: same ids, same revisions. Mango index definitions follow.
//! File contents (current content, old versions, thumbnails) are streamed from the
//! source blob store into the target's, each committed atomically. Everything a
//! previous run already copied is skipped (the same revision; content of the right
//! size, an existing version), so running the command again after a crash finishes
//! the copy.
//!
//! The check: the live documents of every doctype (count, then ids and revisions),
//! the index definitions, and the size and MD5 of every file and version read back
//! from the target. Any difference is reported and the command exits with status 1.
//!
//! The registry of instances lives in the global store, which belongs to the server:
//! `--global` copies it (every instance's registry entry, the job queue, the trigger
//! schedule) too, for a server moving all its instances to a new database; run it
//! with the server stopped.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use hearth_core::{Doctype, InstanceId, JsonMap};
use hearth_instances::{InstanceError, Instances, InstancesConfig};
use hearth_store::{
    AllDocsQuery, AllDocsRow, ChangesQuery, DocStore, GetOptions, NotFoundReason, Since, StoreError,
};
use hearth_store_postgres::{PgOptions, PostgresStore};
use hearth_store_sqlite::{SqliteOptions, SqliteStore};
use hearth_vfs::{BlobRef, BlobStore, LocalBlobStore};
use md5::{Digest, Md5};
use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::config::{
    Config, DatabaseLocation, FsLocation, Loaded, Synchronous, parse_database_url, parse_fs_url,
    redact_url,
};

/// The blocking reason the command writes with `--block`.
pub const BLOCKING_REASON: &str = "MIGRATING";

/// Documents read per page of the changes feed (and written per transaction).
const PAGE: usize = 500;

/// What `hearth migrate-storage` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct MigrateArgs {
    /// The instance to copy.
    pub domain: Option<String>,
    /// The target document store (`sqlite://<dir>` or `postgres://…`).
    pub to_database: Option<String>,
    /// The target blob store (`file://<dir>` or `s3://…`).
    pub to_fs: Option<String>,
    pub to_s3_access_key_id: Option<String>,
    pub to_s3_secret_access_key: Option<String>,
    /// Block the instance (server stopped) and unblock it at the end.
    pub block: bool,
    /// Copy the global store too.
    pub global: bool,
}

/// Runs the command; `Err` on failure or when the check found differences.
pub fn run(loaded: Loaded, args: MigrateArgs) -> anyhow::Result<()> {
    crate::serve::init_tracing("warn");
    if args.to_database.is_none() && args.to_fs.is_none() {
        return Err(
            crate::UsageError("nothing to do: give --to-database, --to-fs or both".into()).into(),
        );
    }
    if args.domain.is_none() && !args.global {
        return Err(crate::UsageError("give --domain (and/or --global)".into()).into());
    }
    if args.global && args.to_database.is_none() {
        return Err(
            crate::UsageError("--global copies documents: it needs --to-database".into()).into(),
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(migrate(loaded, args))
}

/// Everything the run learned, printed at the end.
#[derive(Default)]
struct Report {
    lines: Vec<String>,
    problems: Vec<String>,
}

impl Report {
    fn line(&mut self, s: impl Into<String>) {
        self.lines.push(s.into());
    }

    fn problem(&mut self, s: impl Into<String>) {
        let s = s.into();
        eprintln!("problem: {s}");
        self.problems.push(s);
    }
}

async fn migrate(loaded: Loaded, args: MigrateArgs) -> anyhow::Result<()> {
    let config = &loaded.config;
    let source_db = &loaded.backends.database;
    let target_db = match &args.to_database {
        Some(url) => {
            let loc = parse_database_url(url)
                .map_err(|e| crate::UsageError(format!("--to-database: {e}")))?;
            if &loc == source_db {
                return Err(crate::UsageError(
                    "--to-database names the current database (database.url)".into(),
                )
                .into());
            }
            Some(loc)
        }
        None => None,
    };
    let target_fs = match &args.to_fs {
        Some(url) => {
            let (_, loc) =
                parse_fs_url(url).map_err(|e| crate::UsageError(format!("--to-fs: {e}")))?;
            if loc == loaded.backends.fs {
                return Err(crate::UsageError(
                    "--to-fs names the current file storage (fs.url)".into(),
                )
                .into());
            }
            Some(loc)
        }
        None => None,
    };

    let source = open_store(source_db, config)
        .await
        .context("cannot open the current document store (database.url)")?;
    let target = match &target_db {
        Some(loc) => Some(
            open_store(loc, config)
                .await
                .context("cannot open the target document store (--to-database)")?,
        ),
        None => None,
    };
    let (source_blobs, files_dir) = open_source_blobs(&loaded).await?;
    let target_blobs = match &target_fs {
        Some(loc) => Some(open_target_blobs(loc, config, &args).await?),
        None => None,
    };

    let mut report = Report::default();
    report.line(format!(
        "documents: {} -> {}",
        describe_db(source_db),
        target_db.as_ref().map_or("(not moved)".into(), describe_db)
    ));
    report.line(format!(
        "files: {} -> {}",
        describe_fs(&loaded.backends.fs),
        target_fs.as_ref().map_or("(not moved)".into(), describe_fs)
    ));

    if let Some(domain) = &args.domain {
        let instances = Instances::new(
            source.clone(),
            InstancesConfig {
                fs_root: files_dir,
                scrypt: hearth_instances::ScryptCost::PRODUCTION,
            },
        );
        let inst = match instances.get_str(domain).await {
            Ok(i) => i,
            Err(InstanceError::NotFound | InstanceError::IllegalDomain { .. }) => {
                bail!(
                    "there is no instance {domain:?} in {}",
                    describe_db(source_db)
                )
            }
            Err(e) => return Err(anyhow!(e).context("cannot read the instances registry")),
        };
        if inst.deleting {
            bail!("the instance {} is being destroyed", inst.domain);
        }
        let blocked_here = if inst.blocked {
            false
        } else if args.block {
            instances
                .set_blocked(&inst.domain, Some(BLOCKING_REASON))
                .await
                .map_err(|e| anyhow!(e).context("cannot block the instance"))?;
            eprintln!("blocked {} ({BLOCKING_REASON})", inst.domain);
            true
        } else {
            bail!(
                "the instance {} is not blocked: block it through the running server first \
                 (hearth instances modify {} --blocked --blocking-reason {BLOCKING_REASON}), \
                 or stop the server and pass --block",
                inst.domain,
                inst.domain
            );
        };
        let id = inst.instance_id();
        report.line(format!("instance: {} ({id})", inst.domain));
        if let Some(target) = &target {
            copy_docs(&*source, &**target, &id, &mut report).await?;
        }
        if let Some(target_blobs) = &target_blobs {
            copy_files(
                &*source,
                &*source_blobs,
                &**target_blobs,
                &id,
                &inst.domain,
                &mut report,
            )
            .await?;
        }
        if let Some(target) = &target {
            check_docs(&*source, &**target, &id, &mut report).await?;
        }
        if let Some(target_blobs) = &target_blobs {
            // The documents to check against: the target's when they moved.
            let docs = target.as_ref().unwrap_or(&source);
            check_files(&**docs, &**target_blobs, &id, &inst.domain, &mut report).await?;
        }
        if blocked_here {
            if report.problems.is_empty() {
                instances
                    .set_blocked(&inst.domain, None)
                    .await
                    .map_err(|e| anyhow!(e).context("cannot unblock the instance"))?;
                eprintln!("unblocked {}", inst.domain);
            } else {
                report.line(format!(
                    "the instance stays blocked ({BLOCKING_REASON}) because of the differences"
                ));
            }
        }
    }
    if args.global
        && let Some(target) = &target
    {
        let g = InstanceId::global();
        report.line("global store (registry of instances, jobs, schedules):");
        copy_docs(&*source, &**target, &g, &mut report).await?;
        check_docs(&*source, &**target, &g, &mut report).await?;
    }

    println!("{}", report.lines.join("\n"));
    if report.problems.is_empty() {
        println!("check: OK");
        Ok(())
    } else {
        println!("check: {} difference(s):", report.problems.len());
        for p in &report.problems {
            println!("  {p}");
        }
        bail!(
            "the check found {} difference(s) (listed above); run the command again to \
             finish an interrupted copy",
            report.problems.len()
        )
    }
}

fn describe_db(loc: &DatabaseLocation) -> String {
    match loc {
        DatabaseLocation::Sqlite { dir } => format!("sqlite://{}", dir.display()),
        DatabaseLocation::Postgres { url } => redact_url(url),
    }
}

fn describe_fs(loc: &FsLocation) -> String {
    match loc {
        FsLocation::Local { dir } => format!("file://{}", dir.display()),
        FsLocation::S3(s3) => format!(
            "s3://{}{}{}",
            s3.bucket,
            if s3.prefix.is_empty() { "" } else { "/" },
            s3.prefix
        ),
        FsLocation::Swift(s) => format!(
            "swift://{}{}{}",
            s.container,
            if s.prefix.is_empty() { "" } else { "/" },
            s.prefix
        ),
    }
}

/// Opens a document store as `serve` does (without events: nothing listens).
async fn open_store(loc: &DatabaseLocation, config: &Config) -> anyhow::Result<Arc<dyn DocStore>> {
    Ok(match loc {
        DatabaseLocation::Sqlite { dir } => {
            let options = SqliteOptions {
                max_open: config.database.max_open,
                idle_timeout: config.database.idle_timeout,
                synchronous_full: config.database.synchronous == Synchronous::Full,
            };
            Arc::new(
                SqliteStore::open(dir.clone(), options)
                    .with_context(|| format!("cannot open {}", dir.display()))?,
            )
        }
        DatabaseLocation::Postgres { url } => Arc::new(
            PostgresStore::connect(url, PgOptions::default())
                .await
                .with_context(|| format!("cannot connect to {}", redact_url(url)))?,
        ),
    })
}

/// The current blob store, and the directory of instances' local files.
async fn open_source_blobs(loaded: &Loaded) -> anyhow::Result<(Arc<dyn BlobStore>, PathBuf)> {
    let config = &loaded.config;
    Ok(match &loaded.backends.fs {
        FsLocation::Local { dir } => (Arc::new(LocalBlobStore::new(dir.clone())), dir.clone()),
        FsLocation::S3(s3) => {
            let blobs = crate::serve::s3_blob_store(s3, &config.fs)
                .map_err(|e| loaded.error_at("fs.url", e.to_string()))?;
            (Arc::new(blobs), config.data_dir.join("files"))
        }
        FsLocation::Swift(swift) => {
            let blobs = crate::serve::swift_blob_store(swift, &config.fs)
                .await
                .map_err(|e| loaded.error_at("fs.url", e.to_string()))?;
            (Arc::new(blobs), config.data_dir.join("files"))
        }
    })
}

/// The target blob store; S3 credentials from the flags, else those of `fs.*`, else
/// the AWS environment.
async fn open_target_blobs(
    loc: &FsLocation,
    config: &Config,
    args: &MigrateArgs,
) -> anyhow::Result<Arc<dyn BlobStore>> {
    Ok(match loc {
        FsLocation::Local { dir } => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            Arc::new(LocalBlobStore::new(dir.clone()))
        }
        FsLocation::S3(s3) => {
            let mut fs = config.fs.clone();
            if args.to_s3_access_key_id.is_some() || args.to_s3_secret_access_key.is_some() {
                fs.s3_access_key_id = args.to_s3_access_key_id.clone();
                fs.s3_secret_access_key = args.to_s3_secret_access_key.clone();
            }
            let blobs = crate::serve::s3_blob_store(s3, &fs)
                .map_err(|e| crate::UsageError(format!("--to-fs: {e}")))?;
            blobs
                .check()
                .await
                .context("cannot reach the S3 bucket of --to-fs")?;
            Arc::new(blobs)
        }
        FsLocation::Swift(swift) => {
            let blobs = crate::serve::swift_blob_store(swift, &config.fs)
                .await
                .map_err(|e| crate::UsageError(format!("--to-fs: {e}")))?;
            blobs
                .check()
                .await
                .context("cannot reach the Swift container of --to-fs")?;
            Arc::new(blobs)
        }
    })
}

/// Copies every doctype of `inst` (tombstones included) and its indexes.
async fn copy_docs(
    source: &dyn DocStore,
    target: &dyn DocStore,
    inst: &InstanceId,
    report: &mut Report,
) -> anyhow::Result<()> {
    let doctypes = source
        .doctypes(inst)
        .await
        .context("cannot list the doctypes")?;
    let (mut live, mut deleted, mut indexes) = (0u64, 0u64, 0usize);
    for dt in &doctypes {
        let (mut dt_live, mut dt_deleted) = (0u64, 0u64);
        let mut since = Since::Beginning;
        loop {
            let q = ChangesQuery {
                since,
                limit: Some(PAGE),
                include_docs: true,
                descending: false,
            };
            let page = match source.changes(inst, dt, &q).await {
                Ok(p) => p,
                Err(StoreError::NotFound(_)) => break,
                Err(e) => return Err(anyhow!(e).context(format!("cannot read {dt}"))),
            };
            let Some(last) = page.results.last() else {
                break;
            };
            since = Since::Seq(last.seq);
            let mut docs = Vec::with_capacity(page.results.len());
            for change in page.results {
                if change.deleted {
                    dt_deleted += 1;
                    docs.push(tombstone(&change.id, &change.rev.to_string()));
                    continue;
                }
                dt_live += 1;
                // With its history, for the revisions to mean the same thing there.
                match source
                    .get(inst, dt, &change.id, GetOptions { revs: true })
                    .await
                {
                    Ok(doc) => docs.push(doc),
                    Err(StoreError::NotFound(_)) => {
                        if let Some(doc) = change.doc {
                            docs.push(doc);
                        }
                    }
                    Err(e) => {
                        return Err(anyhow!(e).context(format!("cannot read {dt}/{}", change.id)));
                    }
                }
            }
            target
                .restore(inst, dt, docs)
                .await
                .map_err(|e| anyhow!(e).context(format!("cannot write {dt} into the target")))?;
            if page.pending == 0 {
                break;
            }
        }
        let defs = source
            .list_indexes(inst, dt)
            .await
            .with_context(|| format!("cannot list the indexes of {dt}"))?;
        let n = defs.len();
        if n > 0 {
            target
                .create_indexes(inst, defs.into_iter().map(|d| (dt.clone(), d)).collect())
                .await
                .map_err(|e| anyhow!(e).context(format!("cannot declare the indexes of {dt}")))?;
        }
        eprintln!("copied {dt}: {dt_live} documents, {dt_deleted} deleted, {n} indexes");
        live += dt_live;
        deleted += dt_deleted;
        indexes += n;
    }
    report.line(format!(
        "  copied {} doctypes: {live} documents, {deleted} deleted, {indexes} indexes",
        doctypes.len()
    ));
    Ok(())
}

fn tombstone(id: &str, rev: &str) -> JsonMap {
    let mut doc = JsonMap::new();
    doc.insert("_id".into(), Value::String(id.to_owned()));
    doc.insert("_rev".into(), Value::String(rev.to_owned()));
    doc.insert("_deleted".into(), Value::Bool(true));
    doc
}

/// The ids and revisions of the live documents of a doctype, in id order.
async fn live_revs(
    store: &dyn DocStore,
    inst: &InstanceId,
    dt: &Doctype,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    each_all_docs_page(store, inst, dt, 1000, false, |rows| {
        out.extend(rows.into_iter().filter(|r| !r.deleted).map(|r| {
            let rev = r.rev.map(|r| r.to_string()).unwrap_or_default();
            (r.id, rev)
        }));
    })
    .await?;
    Ok(out)
}

/// The rows of a doctype's `_all_docs` in id order, `page` at a time, handed to
/// `each`; a doctype never written has none.
async fn each_all_docs_page(
    store: &dyn DocStore,
    inst: &InstanceId,
    dt: &Doctype,
    page: usize,
    include_docs: bool,
    mut each: impl FnMut(Vec<AllDocsRow>),
) -> anyhow::Result<()> {
    let mut start: Option<String> = None;
    loop {
        let q = AllDocsQuery {
            start_key: start.clone(),
            inclusive_end: true,
            limit: Some(page),
            skip: usize::from(start.is_some()),
            include_docs,
            ..Default::default()
        };
        let rows = match store.all_docs(inst, dt, &q).await {
            Ok(p) => p.rows,
            Err(StoreError::NotFound(NotFoundReason::NoDatabase)) => return Ok(()),
            Err(e) => return Err(anyhow!(e).context(format!("cannot list {dt}"))),
        };
        let Some(last) = rows.last() else {
            return Ok(());
        };
        start = Some(last.id.clone());
        let full = rows.len() == page;
        each(rows);
        if !full {
            return Ok(());
        }
    }
}

/// Compares the live documents and the indexes of every doctype.
async fn check_docs(
    source: &dyn DocStore,
    target: &dyn DocStore,
    inst: &InstanceId,
    report: &mut Report,
) -> anyhow::Result<()> {
    let doctypes = source
        .doctypes(inst)
        .await
        .context("cannot list the doctypes")?;
    let mut table = String::new();
    for dt in &doctypes {
        let a = source.count(inst, dt).await.context("count")?;
        let b = target.count(inst, dt).await.context("count")?;
        let verdict = if a == b { "ok" } else { "DIFFERENT" };
        let _ = writeln!(table, "    {dt:<40} {a:>8} {b:>8}  {verdict}");
        if a != b {
            report.problem(format!(
                "{dt}: {a} documents in the source, {b} in the target"
            ));
        }
        let (ra, rb) = (
            live_revs(source, inst, dt).await?,
            live_revs(target, inst, dt).await?,
        );
        if ra != rb {
            let tb: HashMap<&str, &str> =
                rb.iter().map(|(i, r)| (i.as_str(), r.as_str())).collect();
            let differing: Vec<&str> = ra
                .iter()
                .filter(|(i, r)| tb.get(i.as_str()) != Some(&r.as_str()))
                .map(|(i, _)| i.as_str())
                .take(5)
                .collect();
            report.problem(format!(
                "{dt}: documents or revisions differ (first ones: {})",
                differing.join(", ")
            ));
        }
        let ia = source.list_indexes(inst, dt).await.context("indexes")?;
        let ib = target.list_indexes(inst, dt).await.context("indexes")?;
        for def in &ia {
            if !ib.contains(def) {
                report.problem(format!("{dt}: the index {} is missing", def.ddoc));
            }
        }
    }
    report.line(format!(
        "  documents per doctype (source, target):\n{}",
        table.trim_end_matches('\n')
    ));
    Ok(())
}

/// One `io.cozy.files` document: a directory's path, or a file's parent and name.
struct FileEntry {
    id: String,
    dir_id: String,
    name: String,
    size: u64,
    md5: String,
}

/// Directories (id → path) and files of an instance, from its documents.
async fn load_tree(
    store: &dyn DocStore,
    inst: &InstanceId,
) -> anyhow::Result<(HashMap<String, String>, Vec<FileEntry>)> {
    let dt = Doctype::new(hearth_vfs::FILES).map_err(|e| anyhow!("{e}"))?;
    let mut dirs = HashMap::new();
    let mut files = Vec::new();
    for doc in all_live_docs(store, inst, &dt).await? {
        let s = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        if s("type") == "directory" {
            dirs.insert(s("_id"), s("path"));
        } else {
            files.push(FileEntry {
                id: s("_id"),
                dir_id: s("dir_id"),
                name: s("name"),
                size: size_of(&doc),
                md5: s("md5sum"),
            });
        }
    }
    Ok((dirs, files))
}

fn size_of(doc: &JsonMap) -> u64 {
    match doc.get("size") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// Every live document of a doctype, page by page.
async fn all_live_docs(
    store: &dyn DocStore,
    inst: &InstanceId,
    dt: &Doctype,
) -> anyhow::Result<Vec<JsonMap>> {
    let mut out = Vec::new();
    each_all_docs_page(store, inst, dt, PAGE, true, |rows| {
        out.extend(rows.into_iter().filter_map(|r| r.doc));
    })
    .await?;
    Ok(out)
}

/// The absolute path of a file: its parent's path and its name.
fn file_path(dirs: &HashMap<String, String>, f: &FileEntry) -> Option<String> {
    let parent = dirs.get(&f.dir_id)?;
    Some(if parent == "/" {
        format!("/{}", f.name)
    } else {
        format!("{parent}/{}", f.name)
    })
}

/// What happened to one content.
enum Copied {
    Done(u64),
    AlreadyThere,
}

/// Streams a reader into a new temporary blob of the target, sealed.
async fn pump(
    mut reader: hearth_vfs::BlobReader,
    target: &dyn BlobStore,
    domain: &str,
) -> io::Result<hearth_vfs::Sealed> {
    let mut temp = target.create_temp(domain).await?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        temp.write(&buf[..n]).await?;
    }
    temp.seal().await
}

async fn copy_content(
    source: &dyn BlobStore,
    target: &dyn BlobStore,
    at: BlobRef<'_>,
    size: u64,
) -> io::Result<Copied> {
    let existing = target.stat(at).await?;
    // Commits are atomic: content of the right size is a finished copy (the check
    // reads it back anyway).
    if existing == Some(size) {
        return Ok(Copied::AlreadyThere);
    }
    let reader = source.open(at, 0, None).await?;
    let sealed = pump(reader, target, at.domain).await?;
    let written = sealed.size;
    if existing.is_some() {
        target.commit_replace(sealed, at, None).await?;
    } else {
        target.commit_new(sealed, at).await?;
    }
    Ok(Copied::Done(written))
}

async fn copy_version(
    source: &dyn BlobStore,
    target: &dyn BlobStore,
    domain: &str,
    file_id: &str,
    key: &str,
) -> io::Result<Copied> {
    match target.open_version(domain, file_id, key).await {
        Ok(_) => return Ok(Copied::AlreadyThere),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let reader = source.open_version(domain, file_id, key).await?;
    let sealed = pump(reader, target, domain).await?;
    let written = sealed.size;
    target.commit_version(sealed, domain, file_id, key).await?;
    Ok(Copied::Done(written))
}

/// The old versions of files: (file id, version key, size, md5).
async fn load_versions(
    store: &dyn DocStore,
    inst: &InstanceId,
) -> anyhow::Result<Vec<(String, String, u64, String)>> {
    let dt = Doctype::new(hearth_vfs::VERSIONS).map_err(|e| anyhow!("{e}"))?;
    Ok(all_live_docs(store, inst, &dt)
        .await?
        .into_iter()
        .filter_map(|doc| {
            let id = doc.get("_id").and_then(Value::as_str)?;
            let (file, key) = id.split_once('/')?;
            let md5 = doc
                .get("md5sum")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            Some((file.to_owned(), key.to_owned(), size_of(&doc), md5))
        })
        .collect())
}

/// Copies the contents of every file, version and thumbnail.
async fn copy_files(
    store: &dyn DocStore,
    source: &dyn BlobStore,
    target: &dyn BlobStore,
    inst: &InstanceId,
    domain: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    let (dirs, files) = load_tree(store, inst).await?;
    if !target.keyed_by_id() {
        // The tree mirrored on disk: parents sort before their children.
        let mut paths: Vec<&String> = dirs.values().collect();
        paths.sort();
        target
            .mkdir(domain, "/")
            .await
            .context("cannot create the instance's directory in the target")?;
        for path in paths.into_iter().filter(|p| p.as_str() != "/") {
            target
                .mkdir(domain, path)
                .await
                .with_context(|| format!("cannot create the directory {path} in the target"))?;
        }
    }
    let (mut copied, mut skipped, mut bytes) = (0u64, 0u64, 0u64);
    let total = files.len();
    for (n, f) in files.iter().enumerate() {
        let Some(path) = file_path(&dirs, f) else {
            report.problem(format!(
                "file {} ({}): its directory {} is missing",
                f.id, f.name, f.dir_id
            ));
            continue;
        };
        let at = BlobRef {
            domain,
            file_id: &f.id,
            path: &path,
        };
        match copy_content(source, target, at, f.size).await {
            Ok(Copied::Done(b)) => {
                copied += 1;
                bytes += b;
            }
            Ok(Copied::AlreadyThere) => skipped += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                report.problem(format!("file {} ({path}): no content in the source", f.id));
            }
            Err(e) => {
                return Err(anyhow!(e).context(format!("cannot copy the content of {path}")));
            }
        }
        if (n + 1) % 100 == 0 {
            eprintln!("files: {}/{total}", n + 1);
        }
    }
    let versions = load_versions(store, inst).await?;
    let (mut v_copied, mut v_skipped) = (0u64, 0u64);
    for (file_id, key, _, _) in &versions {
        match copy_version(source, target, domain, file_id, key).await {
            Ok(Copied::Done(b)) => {
                v_copied += 1;
                bytes += b;
            }
            Ok(Copied::AlreadyThere) => v_skipped += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                report.problem(format!("version {file_id}/{key}: no content in the source"));
            }
            Err(e) => {
                return Err(anyhow!(e).context(format!("cannot copy the version {file_id}/{key}")));
            }
        }
    }
    let mut thumbs = 0u64;
    let mut thumbs_supported = true;
    'files: for f in &files {
        for format in hearth_vfs::thumbs::FORMATS {
            let mut thumb = match source.open_thumb(domain, &f.id, format).await {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(anyhow!(e).context(format!("cannot read a thumbnail of {}", f.id)));
                }
            };
            if target.open_thumb(domain, &f.id, format).await.is_ok() {
                continue;
            }
            let mut jpeg = Vec::new();
            thumb
                .reader
                .read_to_end(&mut jpeg)
                .await
                .with_context(|| format!("cannot read a thumbnail of {}", f.id))?;
            match target.put_thumb(domain, &f.id, format, jpeg).await {
                Ok(()) => thumbs += 1,
                Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                    thumbs_supported = false;
                    break 'files;
                }
                Err(e) => {
                    return Err(anyhow!(e).context(format!("cannot write a thumbnail of {}", f.id)));
                }
            }
        }
    }
    eprintln!("copied the contents of {copied} files and {v_copied} versions ({bytes} bytes)");
    report.line(format!(
        "  copied {copied} files and {v_copied} versions ({bytes} bytes), {thumbs} thumbnails; \
         {skipped} files and {v_skipped} versions were there already{}",
        if thumbs_supported {
            ""
        } else {
            " (the target keeps no thumbnails: they will be made again)"
        }
    ));
    Ok(())
}

/// The size and base64 MD5 of a content read to its end.
async fn digest(mut reader: hearth_vfs::BlobReader) -> io::Result<(u64, String)> {
    let mut md5 = Md5::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        size += n as u64;
    }
    Ok((
        size,
        base64::engine::general_purpose::STANDARD.encode(md5.finalize()),
    ))
}

/// Reads every file and version back from the target and compares it with its
/// document.
async fn check_files(
    store: &dyn DocStore,
    target: &dyn BlobStore,
    inst: &InstanceId,
    domain: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    let (dirs, files) = load_tree(store, inst).await?;
    let mut checked = 0u64;
    for f in &files {
        let Some(path) = file_path(&dirs, f) else {
            continue; // Reported by the copy.
        };
        let at = BlobRef {
            domain,
            file_id: &f.id,
            path: &path,
        };
        let got = match target.open(at, 0, None).await {
            Ok(r) => digest(r).await,
            Err(e) => Err(e),
        };
        match got {
            Ok((size, md5)) => {
                checked += 1;
                if size != f.size || (!f.md5.is_empty() && md5 != f.md5) {
                    report.problem(format!(
                        "file {} ({path}): the target holds {size} bytes with MD5 {md5}, the \
                         document says {} bytes with MD5 {}",
                        f.id, f.size, f.md5
                    ));
                }
            }
            Err(e) => report.problem(format!(
                "file {} ({path}): cannot read it from the target: {e}",
                f.id
            )),
        }
    }
    let versions = load_versions(store, inst).await?;
    for (file_id, key, want_size, want_md5) in &versions {
        let got = match target.open_version(domain, file_id, key).await {
            Ok(r) => digest(r).await,
            Err(e) => Err(e),
        };
        match got {
            Ok((size, md5)) => {
                checked += 1;
                if size != *want_size || (!want_md5.is_empty() && &md5 != want_md5) {
                    report.problem(format!(
                        "version {file_id}/{key}: the target holds {size} bytes with MD5 {md5}, \
                         the document says {want_size} bytes with MD5 {want_md5}"
                    ));
                }
            }
            Err(e) => report.problem(format!(
                "version {file_id}/{key}: cannot read it from the target: {e}"
            )),
        }
    }
    report.line(format!(
        "  contents read back from the target: {checked} of {} files and versions",
        files.len() + versions.len()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_files() {
        let dirs: HashMap<String, String> = [
            ("root".to_owned(), "/".to_owned()),
            ("d".to_owned(), "/Photos/2024".to_owned()),
        ]
        .into();
        let f = |dir: &str| FileEntry {
            id: "f".into(),
            dir_id: dir.into(),
            name: "a.jpg".into(),
            size: 0,
            md5: String::new(),
        };
        assert_eq!(file_path(&dirs, &f("root")).as_deref(), Some("/a.jpg"));
        assert_eq!(
            file_path(&dirs, &f("d")).as_deref(),
            Some("/Photos/2024/a.jpg")
        );
        assert_eq!(file_path(&dirs, &f("gone")), None);
    }
}
