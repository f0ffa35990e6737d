//! Background jobs: throughput of the durable broker with a no-op worker, and the
//! latency from an image upload to its thumbnails.
//!
//! - `log` jobs (a no-op worker; tracing is not initialised here, so it prints
//!   nothing) pushed one after the other with `Jobs::push`, to one instance and spread
//!   over ten, until every job document says `done`. Baselines: the same durable writes
//!   done by hand with raw rusqlite and the store's pragmas (per job: insert the job
//!   row, insert the queue row, mark both running, mark the job done, delete the queue
//!   row: 6 commits, job rows in the instance's file, queue rows in the global file,
//!   as Hearth lays them out); the same rows in 3 transactions with the queue beside
//!   the jobs; the same `Jobs` over a broker that keeps its tickets in memory; and a
//!   tokio channel handing the same number of no-op tasks to as many worker tasks as
//!   the `log` worker has runners (pure in-memory dispatch).
//! - Real PNG and JPEG images (2000×1500) uploaded through the VFS of the server state
//!   (`AppState`, started: the internal trigger turns the `io.cozy.files` event into a
//!   `thumbnail` job), polled every 2 ms until `Vfs::has_thumbnails`; baseline:
//!   `Vfs::make_thumbnails` called directly on the same file (decode, three resizes and
//!   encodes, three fsynced writes), so the ratio is what the job system adds. The
//!   job documents' dates tell when each job was queued and started
//!   (`BENCH_VERBOSE=1` prints them per image).

use std::{
    collections::VecDeque,
    io::Cursor,
    path::Path,
    sync::Arc,
    sync::PoisonError,
    time::{Duration, Instant},
};

use bytes::Bytes;
use hearth_core::new_doc_id;
use hearth_instances::{CreateOptions, Instance, Instances, InstancesConfig, ScryptCost};
use hearth_jobs::{
    Broker, JobContext, JobError, JobRequest, JobState, Jobs, JobsConfig, JobsResult, Ticket,
    Worker,
};
use hearth_store::DocStore;
use hearth_store_sqlite::{SqliteOptions, SqliteStore};
use hearth_vfs::NewFile;
use hearth_web::AppState;
use image::{ImageFormat, RgbImage, codecs::jpeg::JpegEncoder};
use rusqlite::Connection;
use serde_json::json;

use crate::{Row, print_table};

const REPS: usize = 5;
/// Instances the jobs are spread over in the second throughput scenario.
const SPREAD: usize = 10;
const WIDTH: u32 = 2000;
const HEIGHT: u32 = 1500;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize)
        .saturating_sub(1)
        .min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The raw-SQLite side, with the store's pragmas. `Split`: the job rows in one file
/// per instance, the queue rows in one global file, each write its own commit (what
/// Hearth writes, 6 commits per job). `Grouped`: the queue rows beside the job rows in
/// the instance's file, one transaction per state change (3 commits per job).
struct Raw {
    instances: Vec<Connection>,
    /// `None`: grouped.
    global: Option<Connection>,
}

fn raw_conn(path: &Path, synchronous_full: bool, tables: &[&str]) -> anyhow::Result<Connection> {
    let c = Connection::open(path)?;
    c.execute_batch(&hearth_store_sqlite::pragmas(synchronous_full))?;
    for table in tables {
        c.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, data TEXT NOT NULL)"
        ))?;
    }
    Ok(c)
}

impl Raw {
    fn open(dir: &Path, n: usize, synchronous_full: bool, grouped: bool) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let tables: &[&str] = if grouped {
            &["jobs", "queue"]
        } else {
            &["jobs"]
        };
        Ok(Self {
            instances: (0..n)
                .map(|i| {
                    raw_conn(
                        &dir.join(format!("inst{i}.sqlite")),
                        synchronous_full,
                        tables,
                    )
                })
                .collect::<anyhow::Result<_>>()?,
            global: if grouped {
                None
            } else {
                Some(raw_conn(
                    &dir.join("global.sqlite"),
                    synchronous_full,
                    &["queue"],
                )?)
            },
        })
    }

    /// The durable writes of `n` jobs, one job after the other.
    fn run(&self, n: usize) -> anyhow::Result<()> {
        for i in 0..n {
            let k = i % self.instances.len();
            let inst = &self.instances[k];
            let queue = self.global.as_ref().unwrap_or(inst);
            let grouped = self.global.is_none();
            let tx = |sql: &str| -> rusqlite::Result<()> {
                if grouped {
                    inst.execute_batch(sql)?;
                }
                Ok(())
            };
            let domain = format!("bench{k}.localhost");
            let id = new_doc_id();
            let mut job = json!({
                "domain": domain, "worker": "log", "message": {"n": i},
                "manual_execution": false, "state": "queued",
                "queued_at": hearth_core::now_rfc3339(),
            });
            let mut ticket = json!({
                "domain": domain, "job_id": id, "worker": "log", "attempts": 0, "not_before": 0,
            });
            // Push: the job document, then its ticket.
            tx("BEGIN")?;
            inst.prepare_cached("INSERT INTO jobs (id, data) VALUES (?1, ?2)")?
                .execute((&id, serde_json::to_string(&job)?))?;
            queue
                .prepare_cached("INSERT INTO queue (id, data) VALUES (?1, ?2)")?
                .execute((&id, serde_json::to_string(&ticket)?))?;
            tx("COMMIT")?;
            // Start: the ticket's attempt, then the job's state.
            tx("BEGIN")?;
            ticket["attempts"] = json!(1);
            queue
                .prepare_cached("UPDATE queue SET data = ?2 WHERE id = ?1")?
                .execute((&id, serde_json::to_string(&ticket)?))?;
            job["state"] = json!("running");
            job["started_at"] = json!(hearth_core::now_rfc3339());
            inst.prepare_cached("UPDATE jobs SET data = ?2 WHERE id = ?1")?
                .execute((&id, serde_json::to_string(&job)?))?;
            tx("COMMIT")?;
            // End: the job's state, then the ticket goes.
            tx("BEGIN")?;
            job["state"] = json!("done");
            job["finished_at"] = json!(hearth_core::now_rfc3339());
            inst.prepare_cached("UPDATE jobs SET data = ?2 WHERE id = ?1")?
                .execute((&id, serde_json::to_string(&job)?))?;
            queue
                .prepare_cached("DELETE FROM queue WHERE id = ?1")?
                .execute([&id])?;
            tx("COMMIT")?;
        }
        Ok(())
    }
}

/// A broker that keeps its tickets in memory only (lost at a restart), to measure what
/// the durable tickets of [`hearth_jobs::LocalBroker`] cost: the same [`Jobs`] service
/// over it still writes the job documents.
#[derive(Default)]
struct MemoryBroker {
    queue: std::sync::Mutex<VecDeque<Ticket>>,
    notify: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl Broker for MemoryBroker {
    async fn enqueue(&self, ticket: Ticket) -> JobsResult<()> {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(ticket);
        self.notify.notify_one();
        Ok(())
    }

    async fn next(&self, _worker: &str) -> Ticket {
        loop {
            let notified = self.notify.notified();
            if let Some(t) = self
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front()
            {
                return t;
            }
            notified.await;
        }
    }

    async fn started(&self, _ticket: &mut Ticket) -> JobsResult<()> {
        Ok(())
    }

    async fn retry(&self, ticket: Ticket) -> JobsResult<()> {
        self.enqueue(ticket).await
    }

    async fn finish(&self, _ticket: &Ticket) -> JobsResult<()> {
        Ok(())
    }

    async fn recover(&self) -> JobsResult<Vec<Ticket>> {
        Ok(Vec::new())
    }

    async fn forget_instance(&self, _domain: &str) -> JobsResult<()> {
        Ok(())
    }

    fn pending(&self) -> Vec<(String, usize)> {
        Vec::new()
    }
}

/// A worker that does nothing (the built-in `log` without its log line).
struct Noop;

#[async_trait::async_trait]
impl Worker for Noop {
    async fn run(&self, _ctx: JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

/// Pushes `n` `log` jobs (round robin over `insts`), then waits until every one is
/// `done`; answers the time from the first push to the last `done` seen and the time
/// the pushes took.
async fn run_jobs(
    jobs: &Jobs,
    insts: &[Arc<Instance>],
    n: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let start = Instant::now();
    let mut pushed = Vec::with_capacity(n);
    for i in 0..n {
        let k = i % insts.len();
        let job = jobs
            .push(
                &insts[k],
                JobRequest {
                    worker: "log".into(),
                    message: json!({"n": i}),
                    ..Default::default()
                },
            )
            .await?;
        pushed.push((k, job.id));
    }
    let push = start.elapsed();
    // Jobs leave the queue in order: by the time one is done, most before it are too.
    for (k, id) in &pushed {
        loop {
            let job = jobs.get_job(&insts[*k], id).await?;
            match job.state {
                JobState::Done => break,
                JobState::Errored => anyhow::bail!("job {id} errored: {:?}", job.error),
                _ => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }
    Ok((start.elapsed(), push))
}

/// The in-memory baseline: `n` no-op tasks through one channel to `workers` tasks.
async fn run_channel(n: usize, workers: usize) -> anyhow::Result<()> {
    type Task = Box<dyn FnOnce() -> usize + Send>;
    let (tx, rx) = tokio::sync::mpsc::channel::<Task>(1024);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let rx = rx.clone();
            tokio::spawn(async move {
                let mut ran = 0usize;
                loop {
                    let task = rx.lock().await.recv().await;
                    match task {
                        Some(t) => ran += std::hint::black_box(t()),
                        None => return ran,
                    }
                }
            })
        })
        .collect();
    for i in 0..n {
        let t: Task = Box::new(move || usize::from(std::hint::black_box(i) < usize::MAX));
        tx.send(t)
            .await
            .map_err(|_| anyhow::anyhow!("the workers are gone"))?;
    }
    drop(tx);
    let mut ran = 0;
    for h in handles {
        ran += h.await?;
    }
    anyhow::ensure!(ran == n, "{ran} of {n} tasks ran");
    Ok(())
}

/// A 2000×1500 image: smooth gradients and shapes with a little noise, so that it
/// compresses like a photo rather than like a flat colour.
fn make_image(seed: u32) -> RgbImage {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    RgbImage::from_fn(WIDTH, HEIGHT, |x, y| {
        // xorshift32
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let noise = (state & 15) as i32 - 8;
        let (cx, cy) = (x as i32 - 1000 - seed as i32 * 10, y as i32 - 750);
        let ring = (((cx * cx + cy * cy) as f64).sqrt() / 12.0).sin() * 40.0;
        let px = |base: i32| (base + noise + ring as i32).clamp(0, 255) as u8;
        image::Rgb([
            px((x * 255 / WIDTH) as i32),
            px((y * 255 / HEIGHT) as i32),
            px(((x + y + seed * 37) % 256) as i32 / 2 + 64),
        ])
    })
}

fn encode(img: &RgbImage, png: bool) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if png {
        img.write_to(&mut Cursor::new(&mut buf), ImageFormat::Png)?;
    } else {
        JpegEncoder::new_with_quality(&mut buf, 90).encode_image(img)?;
    }
    Ok(buf)
}

/// Waits until no `thumbnail` ticket is queued or running (a job's last writes), so
/// that the next measurement starts on a quiet system.
async fn thumbnails_idle(jobs: &Jobs) {
    loop {
        let busy = jobs
            .pending()
            .iter()
            .any(|(w, n)| w == "thumbnail" && *n > 0);
        if !busy {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// Uploads an image through the VFS (one chunk); the new file's id.
async fn upload(
    state: &AppState,
    inst: &Instance,
    name: &str,
    mime: &str,
    bytes: &[u8],
) -> anyhow::Result<String> {
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::copy_from_slice(bytes))]);
    let file = state
        .vfs
        .upload(
            inst,
            "",
            NewFile {
                name: name.to_owned(),
                content_type: Some(mime.to_owned()),
                size: Some(bytes.len() as u64),
                ..Default::default()
            },
            body,
        )
        .await?;
    Ok(file.id)
}

/// Polls every 2 ms until the thumbnails of a file are stored.
async fn wait_thumbnails(state: &AppState, inst: &Instance, id: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !state.vfs.has_thumbnails(inst, id).await? {
        anyhow::ensure!(Instant::now() < deadline, "no thumbnails for {id}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Seconds since midnight (UTC) of a time, or of an RFC 3339 date's time part.
fn day_secs(t: std::time::SystemTime) -> f64 {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (d.as_secs() % 86_400) as f64 + f64::from(d.subsec_nanos()) / 1e9
}

fn rfc_day_secs(date: &str) -> Option<f64> {
    let time = date.split_once('T')?.1.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// When the thumbnail job of a file was queued and started, in ms after the end of
/// its upload (from the job document's dates); printed with `verbose`.
async fn timeline(
    store: &Arc<dyn DocStore>,
    inst: &Instance,
    file_id: &str,
    uploaded: f64,
    verbose: bool,
) -> anyhow::Result<(f64, f64)> {
    let q = hearth_store::mango::FindQuery::parse(&json!({
        "selector": {"worker": "thumbnail", "event.doc._id": file_id}
    }))?;
    let dt = hearth_core::Doctype::new("io.cozy.jobs")?;
    let found = store.find(&inst.instance_id(), &dt, &q).await?;
    anyhow::ensure!(
        found.docs.len() == 1,
        "{} thumbnail jobs for {file_id}",
        found.docs.len()
    );
    let doc = &found.docs[0];
    let at = |k: &str| {
        doc.get(k)
            .and_then(serde_json::Value::as_str)
            .and_then(rfc_day_secs)
            .map_or(f64::NAN, |t| (t - uploaded) * 1e3)
    };
    let (queued, started, finished) = (at("queued_at"), at("started_at"), at("finished_at"));
    if verbose {
        println!(
            "  {file_id}: job queued {queued:+.1} ms, started {started:+.1} ms, finished {finished:+.1} ms after the upload"
        );
    }
    Ok((queued, started))
}

pub(crate) fn run(n_jobs: usize, n_images: usize, synchronous_full: bool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir_in(std::env::current_dir()?)?;
    let root = dir.path().to_path_buf();
    let options = SqliteOptions {
        synchronous_full,
        ..SqliteOptions::default()
    };
    let store: Arc<dyn DocStore> = Arc::new(SqliteStore::open(root.join("db"), options)?);
    let config = InstancesConfig {
        fs_root: root.join("files"),
        scrypt: ScryptCost::FAST,
    };
    let instances = Arc::new(rt.block_on(Instances::open(store.clone(), config))?);
    let insts: Vec<Arc<Instance>> = rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..SPREAD {
            let domain = format!("bench{i}.localhost");
            instances
                .create(CreateOptions {
                    domain: domain.clone(),
                    ..Default::default()
                })
                .await?;
            v.push(instances.get_str(&domain).await?);
        }
        Ok::<_, anyhow::Error>(v)
    })?;
    let state = AppState::new(store.clone(), instances.clone());
    rt.block_on(state.start())?;
    let jobs = state.jobs.clone();
    let log_runners = jobs
        .worker_types()
        .into_iter()
        .find(|(name, _)| name == "log")
        .map_or(1, |(_, l)| l.concurrency);

    // The same service over a broker without durable tickets, with only a no-op `log`
    // worker (no internal trigger: uploads still make one thumbnail job each).
    let memory_jobs = Arc::new(Jobs::with_broker(
        state.store.clone(),
        instances.clone(),
        JobsConfig::default(),
        Arc::new(MemoryBroker::default()),
    ));
    if let Some((_, limits)) = jobs.worker_types().into_iter().find(|(n, _)| n == "log") {
        memory_jobs.register("log", Arc::new(Noop), limits);
    }
    rt.block_on(memory_jobs.start())?;

    // Warm-up: first writes of the job and queue tables (schemas, indexes, WAL).
    rt.block_on(run_jobs(&jobs, &insts, 200))?;
    rt.block_on(run_jobs(&memory_jobs, &insts, 200))?;
    let mut raws = Vec::new();
    for (spread, grouped) in [(1, false), (1, true), (SPREAD, false), (SPREAD, true)] {
        let raw = Raw::open(
            &root.join(format!("raw{spread}-{grouped}")),
            spread,
            synchronous_full,
            grouped,
        )?;
        raw.run(200)?;
        raws.push(raw);
    }

    // 1. Throughput.
    let mut rows = Vec::new();
    let mut rates = Vec::new();
    for (label, split, grouped, spread) in [
        ("1 instance", &raws[0], &raws[1], &insts[..1]),
        ("10 instances", &raws[2], &raws[3], &insts[..]),
    ] {
        let (mut ours, mut pushes) = (vec![], vec![]);
        let (mut base, mut base3, mut chan, mut mem) = (vec![], vec![], vec![], vec![]);
        for _ in 0..REPS {
            let start = Instant::now();
            split.run(n_jobs)?;
            base.push(start.elapsed());
            let (total, push) = rt.block_on(run_jobs(&jobs, spread, n_jobs))?;
            ours.push(total);
            pushes.push(push);
            let start = Instant::now();
            grouped.run(n_jobs)?;
            base3.push(start.elapsed());
            let start = Instant::now();
            rt.block_on(run_channel(n_jobs, log_runners))?;
            chan.push(start.elapsed());
            mem.push(rt.block_on(run_jobs(&memory_jobs, spread, n_jobs))?.0);
        }
        let (ours, push) = (median(ours), median(pushes));
        let (base, base3, chan, mem) = (median(base), median(base3), median(chan), median(mem));
        for (what, baseline) in [
            ("the same Jobs, tickets in memory".to_owned(), mem),
            ("raw SQLite, the same 6 commits".to_owned(), base),
            (
                "raw SQLite, 3 transactions, queue beside the jobs".to_owned(),
                base3,
            ),
            (format!("tokio channel, {log_runners} tasks"), chan),
        ] {
            rows.push(Row {
                scenario: format!("{n_jobs} log jobs, {label}, until done (vs {what})"),
                ops: n_jobs,
                ours,
                baseline,
            });
        }
        let rate = |d: Duration| n_jobs as f64 / d.as_secs_f64();
        rates.push(format!(
            "{label}: {:.0} jobs/s through the broker (pushes alone: {:.0}/s), {:.0} jobs/s with tickets in memory; raw SQLite {:.0} jobs/s (6 commits), {:.0} jobs/s (3); channel {:.0} tasks/s",
            rate(ours),
            rate(push),
            rate(mem),
            rate(base),
            rate(base3),
            rate(chan),
        ));
    }
    print_table(
        &format!(
            "Jobs through the durable broker, `log` worker ({log_runners} runners), synchronous={}, median of {REPS} ({} cores)",
            if synchronous_full { "FULL" } else { "NORMAL" },
            std::thread::available_parallelism().map_or(1, |n| n.get())
        ),
        "baseline",
        &rows,
    );
    println!();
    for r in &rates {
        println!("{r}");
    }

    // 2. Upload to thumbnails.
    let inst = &insts[0];
    let images: Vec<(String, &str, Vec<u8>)> = (0..n_images)
        .map(|i| {
            let png = i % 2 == 0;
            let bytes = encode(&make_image(i as u32), png)?;
            let (name, mime) = if png {
                (format!("photo{i:03}.png"), "image/png")
            } else {
                (format!("photo{i:03}.jpg"), "image/jpeg")
            };
            Ok((name, mime, bytes))
        })
        .collect::<anyhow::Result<_>>()?;
    // `BENCH_VERBOSE=1`: where each image's time goes, from its job document.
    let verbose = std::env::var_os("BENCH_VERBOSE").is_some();
    // Warm-up: the first thumbnails of the instance create their directory.
    rt.block_on(async {
        let bytes = encode(&make_image(999), false)?;
        let id = upload(&state, inst, "warm-up.jpg", "image/jpeg", &bytes).await?;
        wait_thumbnails(&state, inst, &id).await
    })?;
    let (mut uploads, mut ready, mut direct) = (vec![], vec![], vec![]);
    let (mut queued_after, mut started_after) = (vec![], vec![]);
    let (mut png_ready, mut jpg_ready, mut png_direct, mut jpg_direct) =
        (vec![], vec![], vec![], vec![]);
    rt.block_on(async {
        for (name, mime, bytes) in &images {
            thumbnails_idle(&jobs).await;
            let start = Instant::now();
            let id = upload(&state, inst, name, mime, bytes).await?;
            let uploaded = Instant::now();
            let uploaded_wall = day_secs(std::time::SystemTime::now());
            wait_thumbnails(&state, inst, &id).await?;
            let latency = uploaded.elapsed();
            uploads.push(uploaded - start);
            thumbnails_idle(&jobs).await;
            let (queued, started) = timeline(&store, inst, &id, uploaded_wall, verbose).await?;
            queued_after.push(queued);
            started_after.push(started);
            let start = Instant::now();
            let made = state.vfs.make_thumbnails(inst, &id).await?;
            let intrinsic = start.elapsed();
            anyhow::ensure!(made, "no thumbnails made of {name}");
            ready.push(latency);
            direct.push(intrinsic);
            if *mime == "image/png" {
                png_ready.push(latency);
                png_direct.push(intrinsic);
            } else {
                jpg_ready.push(latency);
                jpg_direct.push(intrinsic);
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let stats = |mut v: Vec<Duration>| {
        v.sort();
        (percentile(&v, 0.5), percentile(&v, 0.95))
    };
    let (r50, r95) = stats(ready.clone());
    let (d50, d95) = stats(direct.clone());
    let (u50, _) = stats(uploads);
    let mut rows = vec![
        Row {
            scenario: format!("upload to thumbnails ready, median of {n_images} images"),
            ops: 1,
            ours: r50,
            baseline: d50,
        },
        Row {
            scenario: format!("upload to thumbnails ready, p95 of {n_images} images"),
            ops: 1,
            ours: r95,
            baseline: d95,
        },
    ];
    for (kind, r, d) in [
        ("PNG", png_ready, png_direct),
        ("JPEG", jpg_ready, jpg_direct),
    ] {
        if !r.is_empty() {
            rows.push(Row {
                scenario: format!("{kind} ({} images), median", r.len()),
                ops: 1,
                ours: stats(r).0,
                baseline: stats(d).0,
            });
        }
    }
    let sizes = |png: bool| {
        images
            .iter()
            .filter(|(_, m, _)| (*m == "image/png") == png)
            .map(|(_, _, b)| b.len() as f64 / (1024.0 * 1024.0))
            .sum::<f64>()
            / images
                .iter()
                .filter(|(_, m, _)| (*m == "image/png") == png)
                .count()
                .max(1) as f64
    };
    print_table(
        &format!(
            "Upload ({WIDTH}x{HEIGHT} images, through the VFS) to thumbnails ready (polled every 2 ms), vs make_thumbnails directly"
        ),
        "make_thumbnails",
        &rows,
    );
    println!(
        "\nImages: PNG {:.1} MiB, JPEG {:.1} MiB on average; the upload itself (not counted above): median {:.1} ms",
        sizes(true),
        sizes(false),
        ms(u50)
    );
    if verbose {
        println!(
            "per image (ready, direct): {:?}",
            ready
                .iter()
                .zip(&direct)
                .map(|(r, d)| (ms(*r) as u32, ms(*d) as u32))
                .collect::<Vec<_>>()
        );
    }
    let thumbnail_jobs = jobs
        .stats()
        .into_iter()
        .find(|(w, _)| w == "thumbnail")
        .map_or(0, |(_, s)| s.done);
    println!(
        "thumbnail jobs done: {thumbnail_jobs} for {} uploads (one warm-up)",
        n_images + 1
    );
    let fstats = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let p = |q: f64| {
            v[((v.len() as f64 * q).ceil() as usize)
                .saturating_sub(1)
                .min(v.len() - 1)]
        };
        (p(0.5), p(0.95))
    };
    let (q50, q95) = fstats(queued_after);
    let (s50, s95) = fstats(started_after);
    println!(
        "Thumbnail job, after the upload returned (job document dates): queued median {q50:+.1} ms (p95 {q95:+.1}), started median {s50:+.1} ms (p95 {s95:+.1})"
    );
    Ok(())
}
