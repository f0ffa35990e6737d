//! Export and import of a whole instance, beside the zip tools on the same tree.
//!
//! - Export: the export job, then every part downloaded over loopback HTTP into files,
//!   versus `zip -0 -r` of the instance's directory (the same files, on the same disk).
//! - Import: the import job into another instance of the server (it downloads the
//!   parts over loopback HTTP, checks every MD5, writes and syncs every file), versus
//!   `unzip` of the parts the export wrote, then `sync`.
//! - Peak RSS of this process during each phase (`VmHWM`, reset before each through
//!   `/proc/self/clear_refs`).

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use hearth_instances::{CreateOptions, Instances, InstancesConfig, ScryptCost};
use hearth_jobs::JobRequest;
use hearth_store::DocStore;
use hearth_store_sqlite::{SqliteOptions, SqliteStore};
use hearth_vfs::{NewDir, NewFile};
use hearth_web::AppState;
use http_body_util::BodyExt;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tokio::io::AsyncWriteExt;

use crate::{Row, files::vm, print_table};

/// Resets the peak RSS (`VmHWM`) of this process.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Samples the anonymous memory (`RssAnon`: heap and stacks, not the mapped database
/// pages that `VmRSS` also counts) every 20 ms until dropped; answers the peak.
struct AnonPeak {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<f64>>,
}

impl AnonPeak {
    fn start() -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peak: f64 = 0.0;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(vm("RssAnon:"));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> f64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or(0.0)
    }
}

fn run_cmd(cmd: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()?;
    anyhow::ensure!(status.success(), "{cmd} failed");
    Ok(start.elapsed())
}

/// Incompressible bytes (xorshift), so that neither side gains by compressing.
pub(crate) fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub(crate) fn run(total_mib: u64, files: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir_in(std::env::current_dir()?)?;
    let root = dir.path().to_path_buf();
    let store: Arc<dyn DocStore> = Arc::new(SqliteStore::open(
        root.join("db"),
        SqliteOptions::default(),
    )?);
    let config = InstancesConfig {
        fs_root: root.join("files"),
        scrypt: ScryptCost::FAST,
    };
    let instances = Arc::new(rt.block_on(Instances::open(store.clone(), config))?);
    let (src, dst) = ("src.localhost", "dst.localhost");
    for d in [src, dst] {
        rt.block_on(instances.create(CreateOptions {
            domain: d.into(),
            email: Some(format!("owner@{d}")),
            ..Default::default()
        }))?;
    }
    let state = AppState::new(store.clone(), instances.clone());
    rt.block_on(state.start())?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let port = listener.local_addr()?.port();
    rt.spawn(hearth_web::serve(
        listener,
        hearth_web::router(state.clone()),
        std::future::pending(),
    ));

    // The tree: 100 folders, `files` files of about the same size.
    let per_file = (total_mib * 1024 * 1024 / files as u64) as usize;
    let inst = rt.block_on(instances.get_str(src))?;
    let start = Instant::now();
    rt.block_on(async {
        let mut dirs = Vec::new();
        for d in 0..100 {
            let nd = NewDir {
                name: format!("folder {d:03}"),
                ..Default::default()
            };
            dirs.push(state.vfs.create_dir(&inst, "", nd).await?.id);
        }
        for i in 0..files {
            let f = NewFile {
                name: format!("file {i:05}.bin"),
                ..Default::default()
            };
            let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(noise(
                i as u64, per_file,
            )))]);
            state
                .vfs
                .upload(&inst, &dirs[i % dirs.len()], f, body)
                .await?;
        }
        anyhow::Ok(())
    })?;
    println!(
        "tree: {files} files of {per_file} bytes in 100 folders, written in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    let tree = instances.instance_dir(src);
    let _ = run_cmd("sync")?;

    // 1. Export.
    let parts_dir = root.join("parts");
    std::fs::create_dir_all(&parts_dir)?;
    reset_peak();
    let export_base = vm("VmRSS:");
    let export_anon_base = vm("RssAnon:");
    let export_anon = AnonPeak::start();
    let start = Instant::now();
    let (mac, cursors) = rt.block_on(async {
        let job = state
            .jobs
            .push(
                &inst,
                JobRequest {
                    worker: "export".into(),
                    message: serde_json::json!({"admin_req": true}),
                    ..Default::default()
                },
            )
            .await?;
        let job = state
            .jobs
            .wait(&inst, &job.id, Duration::from_secs(3600))
            .await?;
        anyhow::ensure!(job.error.is_none(), "export: {:?}", job.error);
        let doc = state.exports().list(src).await?.remove(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let mac = hearth_move::mac::encode(&inst.session_secret, &doc.id, now);
        anyhow::Ok((mac, doc.parts_cursors.unwrap_or_default()))
    })?;
    let job_time = start.elapsed();
    let client: Client<_, http_body_util::Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let parts: Vec<Option<String>> = std::iter::once(None)
        .chain(cursors.iter().cloned().map(Some))
        .collect();
    let mut part_files = Vec::new();
    for (n, cursor) in parts.iter().enumerate() {
        let path = parts_dir.join(format!("part{n:03}.zip"));
        let q = cursor
            .as_ref()
            .map(|c| format!("?cursor={}", c.replace('/', "%2F")))
            .unwrap_or_default();
        let uri = format!("http://127.0.0.1:{port}/move/exports/data/{mac}{q}");
        rt.block_on(async {
            let req = hyper::Request::get(&uri)
                .header("host", src)
                .body(http_body_util::Empty::new())?;
            let resp = client.request(req).await?;
            anyhow::ensure!(resp.status() == 200, "part {n}: {}", resp.status());
            let mut body = resp.into_body();
            let mut out = tokio::fs::File::create(&path).await?;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    out.write_all(&data).await?;
                }
            }
            out.sync_all().await?;
            anyhow::Ok(())
        })?;
        part_files.push(path);
    }
    let export_time = start.elapsed();
    let export_peak = vm("VmHWM:");
    let export_anon = export_anon.finish();
    let zip_out = root.join("baseline.zip");
    let zip_time = run_cmd(&format!(
        "cd '{}' && zip -0 -r -q '{}' . -x '.cozy_*' && sync -f '{}'",
        tree.display(),
        zip_out.display(),
        zip_out.display()
    ))?;
    let zip_size = std::fs::metadata(&zip_out)?.len();
    let parts_size: u64 = part_files
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    std::fs::remove_file(&zip_out)?;

    // 2. Import into the other instance.
    let manifest = format!("http://{src}:{port}/move/exports/{mac}");
    let dst_inst = rt.block_on(instances.get_str(dst))?;
    reset_peak();
    let import_base = vm("VmRSS:");
    let import_anon_base = vm("RssAnon:");
    let import_anon = AnonPeak::start();
    let start = Instant::now();
    rt.block_on(async {
        let job = state
            .jobs
            .push(
                &dst_inst,
                JobRequest {
                    worker: "import".into(),
                    message: serde_json::json!({"manifest_url": manifest, "admin_req": true}),
                    ..Default::default()
                },
            )
            .await?;
        let job = state
            .jobs
            .wait(&dst_inst, &job.id, Duration::from_secs(3 * 3600))
            .await?;
        anyhow::ensure!(job.error.is_none(), "import: {:?}", job.error);
        anyhow::Ok(())
    })?;
    let import_time = start.elapsed();
    let import_peak = vm("VmHWM:");
    let import_anon = import_anon.finish();
    let unzip_dir = root.join("unzipped");
    let list: Vec<String> = part_files
        .iter()
        .map(|p| format!("unzip -q -o '{}' -d '{}'", p.display(), unzip_dir.display()))
        .collect();
    let unzip_time = run_cmd(&format!(
        "{} && sync -f '{}'",
        list.join(" && "),
        root.display()
    ))?;
    check_same_tree(&tree, &instances.instance_dir(dst))?;

    println!(
        "export job {:.1}s, parts {} ({} MiB) vs zip {} MiB",
        job_time.as_secs_f64(),
        part_files.len(),
        parts_size >> 20,
        zip_size >> 20
    );
    let rows = vec![
        Row {
            scenario: format!(
                "export {total_mib} MiB in {files} files, job + download (vs zip -0 -r)"
            ),
            ops: files,
            ours: export_time,
            baseline: zip_time,
        },
        Row {
            scenario: "import of those parts into another instance (vs unzip + sync)".to_owned(),
            ops: files,
            ours: import_time,
            baseline: unzip_time,
        },
    ];
    print_table("Export and import", "zip tools", &rows);
    println!(
        "\npeak RSS of the process: export {export_peak:.0} MiB (from {export_base:.0} MiB), import {import_peak:.0} MiB (from {import_base:.0} MiB)"
    );
    println!(
        "peak anonymous memory (RssAnon): export {export_anon:.0} MiB (from {export_anon_base:.0} MiB), import {import_anon:.0} MiB (from {import_anon_base:.0} MiB)"
    );
    Ok(())
}

/// The target's files are the source's (names and sizes).
fn check_same_tree(a: &Path, b: &Path) -> anyhow::Result<()> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".cozy_") {
                continue;
            }
            let m = e.metadata()?;
            if m.is_dir() {
                walk(root, &e.path(), out)?;
            } else {
                let rel = e
                    .path()
                    .strip_prefix(root)
                    .map_or(name, |p| p.display().to_string());
                out.push((rel, m.len()));
            }
        }
        Ok(())
    }
    let (mut x, mut y) = (Vec::new(), Vec::new());
    walk(a, a, &mut x)?;
    walk(b, b, &mut y)?;
    x.sort();
    y.sort();
    anyhow::ensure!(x == y, "the imported tree differs from the source's");
    Ok(())
}
