//! A move between two servers (issue #9): two `hearth serve` processes on loopback,
//! the source with `files` files of about `mib` MiB in all. Measured in one run:
//!
//! - its parts, each on its own: the export job (admin API, `wait=true`), the transfer
//!   of the parts (downloaded over HTTP into files), and an import of that export into
//!   an instance of the target (admin API; the import downloads the parts itself, so
//!   it holds a second transfer);
//! - the whole move of the source to another instance of the target, as `hearth
//!   instances move` drives it (a token from the target's admin API, the source's
//!   `POST /instances/:domain/move`, then the target's status until `done`).
//!
//! The ratio is the move's time over export + import (which already counts one
//! transfer); the aim is under 1.5.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::nodes::{HttpClient, PASSPHRASE, call, cli, hearth_bin, start_node};

/// One admin API call (Basic auth with the passphrase); status and JSON body.
async fn admin(
    client: &HttpClient,
    port: u16,
    method: &str,
    path: &str,
    body: Value,
) -> anyhow::Result<(u16, Value)> {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!(":{PASSPHRASE}"));
    let body = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"))
        .header("authorization", format!("Basic {auth}"))
        .header("accept", "application/json")
        .header("content-type", "application/json")
        .body(Full::new(body))?;
    let res = client.request(req).await?;
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await?.to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

fn noise(seed: u64, len: usize) -> Bytes {
    Bytes::from(crate::moves::noise(seed, len))
}

/// A field of `/proc/<pid>/status`, in MiB (`VmHWM:`, `RssAnon:`…).
fn proc_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Resets a process's peak RSS (`VmHWM`).
fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

fn config(dir: &Path, name: &str) -> anyhow::Result<std::path::PathBuf> {
    let home = dir.join(name);
    std::fs::create_dir_all(&home)?;
    let path = home.join("hearth.yaml");
    std::fs::write(
        &path,
        format!(
            "data_dir: {}\nauth:\n  scrypt_log_n: 4\n",
            home.join("data").display()
        ),
    )?;
    Ok(path)
}

pub(crate) fn run(total_mib: u64, files: usize) -> anyhow::Result<()> {
    let bin = hearth_bin()?;
    let dir = tempfile::tempdir_in(std::env::current_dir()?)?;
    let root = dir.path();
    let source = start_node(&bin, root, &config(root, "source")?, "source")?;
    let target = start_node(&bin, root, &config(root, "target")?, "target")?;
    let src = format!("src.localhost:{}", source.port);
    let (dst_import, dst_move) = ("imported.localhost", "moved.localhost");
    cli(
        &bin,
        root,
        &source,
        &["add", "--email", "a@example.net", &src],
    )?;
    for d in [dst_import, dst_move] {
        cli(&bin, root, &target, &["add", "--email", "a@example.org", d])?;
    }
    let token = cli(&bin, root, &source, &["token-cli", &src, "io.cozy.files"])?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();

    // The tree: 100 folders, `files` files of about the same size, uploaded 4 at once.
    let per_file = (total_mib * 1024 * 1024 / files as u64) as usize;
    let start = Instant::now();
    rt.block_on(async {
        let mut dirs = Vec::new();
        for d in 0..100 {
            let (status, body) = call(
                &client,
                source.port,
                &src,
                &token,
                "POST",
                &format!("/files/?Type=directory&Name=folder%20{d:03}"),
                Bytes::new(),
            )
            .await?;
            anyhow::ensure!(status == 201, "mkdir: {status}");
            let doc: Value = serde_json::from_slice(&body)?;
            dirs.push(doc["data"]["id"].as_str().unwrap_or_default().to_owned());
        }
        let mut next = 0usize;
        while next < files {
            let batch: Vec<usize> = (next..files.min(next + 4)).collect();
            next += batch.len();
            let uploads = batch.iter().map(|&i| {
                let path = format!("/files/{}?Type=file&Name=file%20{i:05}.bin", dirs[i % 100]);
                let (client, src, token) = (&client, &src, &token);
                async move {
                    call(
                        client,
                        source.port,
                        src,
                        token,
                        "POST",
                        &path,
                        noise(i as u64, per_file),
                    )
                    .await
                }
            });
            for r in futures_util::future::join_all(uploads).await {
                let (status, _) = r?;
                anyhow::ensure!(status == 201, "upload: {status}");
            }
        }
        anyhow::Ok(())
    })?;
    println!(
        "tree: {files} files of {per_file} bytes in 100 folders, uploaded in {:.1}s",
        start.elapsed().as_secs_f64()
    );

    // 1. Export, alone.
    let start = Instant::now();
    let (status, job) = rt.block_on(admin(
        &client,
        source.admin_port,
        "POST",
        &format!("/instances/{src}/export?admin-req=true&wait=true"),
        Value::Null,
    ))?;
    let export_time = start.elapsed();
    anyhow::ensure!(status == 202 && job["state"] == "done", "export: {job}");
    let (_, list) = rt.block_on(admin(
        &client,
        source.admin_port,
        "GET",
        &format!("/instances/{src}/exports"),
        Value::Null,
    ))?;
    let export = list
        .get(0)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no export listed"))?;
    let id = export["_id"].as_str().unwrap_or_default().to_owned();
    let manifest = export["link"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the admin API lists no link for the export"))?
        .to_owned();
    let cursors: Vec<String> = export["parts_cursors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();

    // 2. Transfer of the parts, alone.
    let parts_dir = root.join("parts");
    std::fs::create_dir_all(&parts_dir)?;
    let start = Instant::now();
    let mut transferred = 0u64;
    for (n, cursor) in std::iter::once(None)
        .chain(cursors.iter().map(Some))
        .enumerate()
    {
        let q = cursor
            .map(|c| format!("?cursor={}", c.replace('/', "%2F")))
            .unwrap_or_default();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!(":{PASSPHRASE}"));
        let req = hyper::Request::get(format!(
            "http://127.0.0.1:{}/instances/{src}/exports/{id}/data{q}",
            source.admin_port
        ))
        .header("authorization", format!("Basic {auth}"))
        .body(Full::new(Bytes::new()))?;
        transferred += rt.block_on(async {
            let resp = client.request(req).await?;
            anyhow::ensure!(resp.status() == 200, "part {n}: {}", resp.status());
            let mut body = resp.into_body();
            let mut out = tokio::fs::File::create(parts_dir.join(format!("{n}.zip"))).await?;
            let mut len = 0u64;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    len += data.len() as u64;
                    out.write_all(&data).await?;
                }
            }
            out.sync_all().await?;
            anyhow::Ok(len)
        })?;
    }
    let transfer_time = start.elapsed();
    std::fs::remove_dir_all(&parts_dir)?;

    // 3. Import, alone (it downloads the parts again).
    let start = Instant::now();
    let query: String = manifest
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let query = format!("manifest_url={query}");
    let (status, record) = rt.block_on(admin(
        &client,
        target.admin_port,
        "POST",
        &format!("/instances/{dst_import}/import?{query}&wait=true"),
        Value::Null,
    ))?;
    let import_time = start.elapsed();
    anyhow::ensure!(
        status == 200 && record["state"] == "done",
        "import: {record}"
    );

    // 4. The whole move, as `hearth instances move` drives it; the peak memory of each
    // server process during it.
    let base = [source.pid(), target.pid()].map(|p| proc_mib(p, "VmRSS:"));
    for p in [source.pid(), target.pid()] {
        reset_peak(p);
    }
    let start = Instant::now();
    rt.block_on(async {
        let (status, creds) = admin(
            &client,
            target.admin_port,
            "POST",
            &format!("/instances/{dst_move}/move/token"),
            Value::Null,
        )
        .await?;
        anyhow::ensure!(status == 200, "move token: {creds}");
        let (status, started) = admin(
            &client,
            source.admin_port,
            "POST",
            &format!("/instances/{src}/move"),
            json!({
                "target_url": format!("http://{dst_move}:{}", target.port),
                "target_token": creds["token"],
                "target_client_id": creds["client_id"],
                "target_client_secret": creds["client_secret"],
            }),
        )
        .await?;
        anyhow::ensure!(status == 202, "move: {started}");
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (_, s) = admin(
                &client,
                target.admin_port,
                "GET",
                &format!("/instances/{dst_move}/move/status"),
                Value::Null,
            )
            .await?;
            match s["state"].as_str() {
                Some("done") => return anyhow::Ok(()),
                Some("errored") => anyhow::bail!("the move failed: {s}"),
                _ => {}
            }
        }
    })?;
    let move_time = start.elapsed();
    let peak = [source.pid(), target.pid()].map(|p| proc_mib(p, "VmHWM:"));

    // Both targets hold every file.
    for d in [dst_import, dst_move] {
        let (_, usage) = rt.block_on(admin(
            &client,
            target.admin_port,
            "GET",
            &format!("/instances/{d}/move/usage"),
            Value::Null,
        ))?;
        println!("{d}: {} bytes of files", usage["used"]);
    }

    let parts = export_time + import_time;
    println!("\n## A move between two servers ({total_mib} MiB in {files} files)\n");
    println!("| step | seconds |\n|---|---:|");
    println!("| export job | {:.1} |", export_time.as_secs_f64());
    println!(
        "| transfer of the parts ({} MiB) | {:.1} |",
        transferred >> 20,
        transfer_time.as_secs_f64()
    );
    println!(
        "| import (downloads the parts itself) | {:.1} |",
        import_time.as_secs_f64()
    );
    println!(
        "| **move, end to end** | **{:.1}** |",
        move_time.as_secs_f64()
    );
    println!(
        "\nmove / (export + import) = {:.2}x; move / (export + transfer + import) = {:.2}x (aim: under 1.5x)",
        move_time.as_secs_f64() / parts.as_secs_f64(),
        move_time.as_secs_f64() / (parts + transfer_time).as_secs_f64()
    );
    println!(
        "peak RSS during the move: source {:.0} MiB (from {:.0}), target {:.0} MiB (from {:.0})",
        peak[0], base[0], peak[1], base[1]
    );
    Ok(())
}
