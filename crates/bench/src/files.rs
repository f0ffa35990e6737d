//! Files over real HTTP on loopback, beside the same bytes moved by `cp` and `cat` on
//! the same disk, and documents through HTTP beside the store directly.
//!
//! The server runs in this process (the same router `hearth serve` uses) on a free
//! port; the client is hyper, streaming bodies from and to disk.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::StreamExt;
use hearth_core::{Doctype, JsonMap};
use hearth_instances::{Audience, CreateOptions, Instances, InstancesConfig, ScryptCost};
use hearth_store::DocStore;
use hearth_store_sqlite::{SqliteOptions, SqliteStore};
use hearth_web::AppState;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tokio::io::AsyncReadExt;

use crate::{Row, print_table};

type HttpBody = BoxBody<Bytes, std::io::Error>;

/// A `/proc/self/status` memory field (`VmRSS:`, `VmHWM:`), in MiB.
pub(crate) fn vm(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

struct Server {
    base: String,
    host: String,
    token: String,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, HttpBody>,
}

impl Server {
    fn request(
        &self,
        method: &str,
        path: &str,
        body: HttpBody,
        len: Option<u64>,
    ) -> anyhow::Result<hyper::Request<HttpBody>> {
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("host", &self.host)
            .header("authorization", format!("Bearer {}", self.token));
        if let Some(len) = len {
            b = b.header("content-length", len);
        }
        Ok(b.body(body)?)
    }

    /// Uploads a file from disk, streamed; returns the new file's id.
    async fn upload(&self, dir: &str, name: &str, path: &Path) -> anyhow::Result<String> {
        let len = tokio::fs::metadata(path).await?.len();
        let file = tokio::fs::File::open(path).await?;
        let stream = futures_util::stream::unfold(file, |mut f| async move {
            let mut buf = vec![0u8; 256 * 1024];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Frame::data(Bytes::from(buf))), f))
                }
                Err(e) => Some((Err(e), f)),
            }
        });
        let body = BodyExt::boxed(StreamBody::new(stream));
        let req = self.request(
            "POST",
            &format!("/files/{dir}?Type=file&Name={name}"),
            body,
            Some(len),
        )?;
        let res = self.client.request(req).await?;
        let status = res.status();
        let bytes = res.into_body().collect().await?.to_bytes();
        anyhow::ensure!(
            status.as_u16() == 201,
            "upload {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        let v: serde_json::Value = serde_json::from_slice(&bytes)?;
        Ok(v["data"]["id"].as_str().unwrap_or_default().to_owned())
    }

    /// Downloads a file, counting the bytes (the data is thrown away as it arrives).
    async fn download(&self, id: &str) -> anyhow::Result<u64> {
        let req = self.request("GET", &format!("/files/download/{id}"), empty(), None)?;
        let res = self.client.request(req).await?;
        anyhow::ensure!(res.status().is_success(), "download {}", res.status());
        let mut body = res.into_body().into_data_stream();
        let mut n = 0u64;
        while let Some(chunk) = body.next().await {
            n += chunk?.len() as u64;
        }
        Ok(n)
    }

    async fn get_status(&self, path: &str) -> anyhow::Result<u16> {
        let req = self.request("GET", path, empty(), None)?;
        let res = self.client.request(req).await?;
        let status = res.status().as_u16();
        res.into_body().collect().await?;
        Ok(status)
    }

    async fn post_json(&self, path: &str, json: &str) -> anyhow::Result<u16> {
        let body =
            BodyExt::boxed(Full::new(Bytes::from(json.to_owned())).map_err(|never| match never {}));
        let req = self.request("POST", path, body, Some(json.len() as u64))?;
        let res = self.client.request(req).await?;
        let status = res.status().as_u16();
        res.into_body().collect().await?;
        Ok(status)
    }
}

fn empty() -> HttpBody {
    BodyExt::boxed(Full::new(Bytes::new()).map_err(|never| match never {}))
}

fn write_file(path: &Path, size: u64) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let block: Vec<u8> = (0..1024 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.into_inner()?.sync_all()?;
    Ok(())
}

fn run_cmd(cmd: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let status = Command::new("sh").arg("-c").arg(cmd).status()?;
    anyhow::ensure!(status.success(), "{cmd} failed");
    Ok(start.elapsed())
}

pub(crate) fn run(big_mib: u64, small: usize) -> anyhow::Result<()> {
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
    let domain = "bench.localhost";
    let instance = rt.block_on(instances.create(CreateOptions {
        domain: domain.into(),
        ..Default::default()
    }))?;
    let token = rt.block_on(instances.issue_token(
        domain,
        Audience::Cli,
        "",
        "io.cozy.files io.cozy.bench",
        None,
    ))?;
    let state = AppState::new(store.clone(), instances.clone());
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let router = hearth_web::router(state);
    // The same serve function as `hearth serve` (TCP_NODELAY, connection info).
    rt.spawn(hearth_web::serve(listener, router, std::future::pending()));
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(128)
        .build(connector);
    let server = Server {
        base: format!("http://{addr}"),
        host: domain.into(),
        token,
        client,
    };
    let mut rows = Vec::new();

    // 1. One big file.
    let src = root.join("big.bin");
    write_file(&src, big_mib * 1024 * 1024)?;
    let rss_before = vm("VmRSS:");
    let cp = run_cmd(&format!(
        "cp {} {} && sync -f {}",
        src.display(),
        root.join("big-copy.bin").display(),
        root.display()
    ))?;
    let start = Instant::now();
    let big_id = rt.block_on(server.upload("", "big.bin", &src))?;
    let up = start.elapsed();
    rows.push(Row {
        scenario: format!("upload one {big_mib} MiB file (vs cp + sync)"),
        ops: 1,
        ours: up,
        baseline: cp,
    });
    let cat = run_cmd(&format!(
        "cat {} > /dev/null",
        root.join("big-copy.bin").display()
    ))?;
    let start = Instant::now();
    let n = rt.block_on(server.download(&big_id))?;
    anyhow::ensure!(n == big_mib * 1024 * 1024, "downloaded {n} bytes");
    let down = start.elapsed();
    rows.push(Row {
        scenario: format!("download one {big_mib} MiB file (vs cat)"),
        ops: 1,
        ours: down,
        baseline: cat,
    });
    let rss_after = vm("VmRSS:");
    std::fs::remove_file(&src)?;
    std::fs::remove_file(root.join("big-copy.bin"))?;

    // 2. Many small files (4 KiB).
    let small_src = root.join("small");
    std::fs::create_dir_all(&small_src)?;
    for i in 0..small {
        std::fs::write(small_src.join(format!("f{i:05}.txt")), vec![b'x'; 4096])?;
    }
    let cp_many = run_cmd(&format!(
        "cp -r {} {} && sync -f {}",
        small_src.display(),
        root.join("small-copy").display(),
        root.display()
    ))?;
    let start = Instant::now();
    let ids: Vec<String> = rt.block_on(async {
        let mut ids = Vec::with_capacity(small);
        for i in 0..small {
            ids.push(
                server
                    .upload(
                        "",
                        &format!("f{i:05}.txt"),
                        &small_src.join(format!("f{i:05}.txt")),
                    )
                    .await?,
            );
        }
        Ok::<_, anyhow::Error>(ids)
    })?;
    rows.push(Row {
        scenario: format!("upload {small} files of 4 KiB, one by one (vs cp -r + sync)"),
        ops: small,
        ours: start.elapsed(),
        baseline: cp_many,
    });
    let cat_many = run_cmd(&format!(
        "cat {}/* > /dev/null",
        root.join("small-copy").display()
    ))?;
    let start = Instant::now();
    rt.block_on(async {
        for id in &ids {
            server.download(id).await?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    rows.push(Row {
        scenario: format!("download {small} files of 4 KiB (vs cat)"),
        ops: small,
        ours: start.elapsed(),
        baseline: cat_many,
    });

    // 3. Documents: HTTP vs the store.
    let docs = 2000;
    let bench_dt = Doctype::new("io.cozy.bench")?;
    let start = Instant::now();
    rt.block_on(async {
        for i in 0..docs {
            let mut d = JsonMap::new();
            d.insert("n".into(), serde_json::json!(i));
            d.insert("label".into(), serde_json::json!(format!("document {i}")));
            store.put(&instance.instance_id(), &bench_dt, d).await?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let direct = start.elapsed();
    let start = Instant::now();
    rt.block_on(async {
        for i in 0..docs {
            let status = server
                .post_json(
                    "/data/io.cozy.bench/",
                    &format!(r#"{{"n":{i},"label":"document {i}"}}"#),
                )
                .await?;
            anyhow::ensure!(status == 201, "create {status}");
        }
        Ok(())
    })?;
    rows.push(Row {
        scenario: format!("create {docs} documents: HTTP POST /data vs the store"),
        ops: docs,
        ours: start.elapsed(),
        baseline: direct,
    });

    print_table(
        &format!(
            "Files over HTTP on loopback vs cp/cat on the same disk ({} cores)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        ),
        "baseline",
        &rows,
    );
    let mib_s = |d: Duration| big_mib as f64 / d.as_secs_f64();
    println!(
        "\nThroughput: upload {:.0} MiB/s (cp {:.0} MiB/s), download {:.0} MiB/s (cat {:.0} MiB/s)",
        mib_s(up),
        mib_s(cp),
        mib_s(down),
        mib_s(cat)
    );
    println!(
        "Resident memory around the {big_mib} MiB transfer: {rss_before:.1} MiB before, {rss_after:.1} MiB after (peak of the process: {:.1} MiB)",
        vm("VmHWM:")
    );

    // 4. Latency of GET /files/:id with 64 concurrent connections.
    let id = ids.first().cloned().unwrap_or_default();
    let server = Arc::new(server);
    let per_task = 200;
    let latencies = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let server = server.clone();
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    let start = Instant::now();
                    let status = server.get_status(&format!("/files/{id}")).await?;
                    anyhow::ensure!(status == 200, "GET /files/:id {status}");
                    out.push(start.elapsed());
                }
                Ok::<_, anyhow::Error>(out)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        Ok::<_, anyhow::Error>(all)
    })?;
    let mut sorted = latencies;
    sorted.sort();
    let pct = |p: f64| sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)];
    println!(
        "\nGET /files/:id, 64 concurrent connections, {} requests: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        sorted.len(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        sorted.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
    let _: PathBuf = root;
    Ok(())
}
