//! Several nodes (issue #10): the same load against one `hearth serve` process, then
//! two, over the same PostgreSQL, S3 (`s3s-fs` on loopback) and Redis, and the
//! throughput of each. One node without Redis runs too, for the cost of the shared
//! services themselves.
//!
//! The load: `--clients` concurrent clients for `--seconds` each run, spread over
//! `--instances` instances; each repeats an upload of a small file (4 KiB), a
//! document write, a read of that document and a download of that file. Every
//! request goes to the next node in turn, as a round-robin reverse proxy would send
//! them. The nodes are the release binary (`HEARTH_BIN`, default
//! `target/release/hearth`); the client runs in this process.
//!
//! Needs PostgreSQL (`HEARTH_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`; a database is created and dropped),
//! Redis (`HEARTH_TEST_REDIS_URL`, default `redis://127.0.0.1:6379/`; a random
//! prefix, removed at the end) and `s3s-fs` (`HEARTH_S3S_FS`, the `PATH`, or
//! `~/.cargo/bin`).

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

pub(crate) const PASSPHRASE: &str = "bench admin passphrase";
const S3_ACCESS_KEY: &str = "hearth-bench-access";
const S3_SECRET_KEY: &str = "hearth-bench-secret";
const S3_BUCKET: &str = "hearth-bench";
/// The size of each uploaded file.
const FILE_BYTES: usize = 4096;
/// Each setup runs this many times, alternating with the others; the median is kept.
const RUNS: usize = 3;

pub(crate) struct Options {
    pub clients: usize,
    pub seconds: u64,
    pub instances: usize,
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn random_hex() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", nanos & 0xff_ffff_ffff, std::process::id())
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn wait_for_port(port: u16, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "{what} did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A child process stopped (SIGTERM, then SIGKILL) when dropped.
pub(crate) struct Process(Child);

impl Process {
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The shared backends: a fresh PostgreSQL database, a Redis prefix, an S3 server.
struct Backends {
    pg_base: String,
    db_name: String,
    db_url: String,
    redis_url: String,
    redis_prefix: String,
    s3_endpoint: String,
    _s3: Process,
}

fn s3s_fs() -> anyhow::Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("HEARTH_S3S_FS") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("s3s-fs")));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cargo/bin/s3s-fs"));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow::anyhow!("s3s-fs not found (set HEARTH_S3S_FS)"))
}

async fn pg_exec(url: &str, sql: &str) -> anyhow::Result<()> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(conn);
    let out = client.batch_execute(sql).await;
    driver.abort();
    Ok(out?)
}

impl Backends {
    async fn start(dir: &Path) -> anyhow::Result<Self> {
        let pg_base = env_or(
            "HEARTH_TEST_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:5432/test",
        );
        let db_name = format!("hearth_bench_{}", random_hex());
        pg_exec(&pg_base, &format!("CREATE DATABASE {db_name}")).await?;
        let cut = pg_base
            .rfind('/')
            .ok_or_else(|| anyhow::anyhow!("no database in {pg_base}"))?;
        let db_url = format!("{}/{db_name}", &pg_base[..cut]);
        let data = dir.join("s3");
        std::fs::create_dir_all(data.join(S3_BUCKET))?;
        let port = free_port()?;
        let log = std::fs::File::create(dir.join("s3s-fs.log"))?;
        let s3 = Process(
            Command::new(s3s_fs()?)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
                .arg(&data)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?,
        );
        wait_for_port(port, "s3s-fs")?;
        Ok(Self {
            pg_base,
            db_name,
            db_url,
            redis_url: env_or("HEARTH_TEST_REDIS_URL", "redis://127.0.0.1:6379/"),
            redis_prefix: format!("hearth-bench-{}:", random_hex()),
            s3_endpoint: format!("http://127.0.0.1:{port}"),
            _s3: s3,
        })
    }

    /// The configuration file of the nodes, with or without Redis.
    fn config(&self, dir: &Path, redis: bool) -> anyhow::Result<PathBuf> {
        let mut text = format!(
            "data_dir: data\n\
             log:\n  level: warn\n\
             auth:\n  scrypt_log_n: 4\n\
             database:\n  url: {db}\n\
             fs:\n  url: s3://{S3_BUCKET}?endpoint={endpoint}\n  \
             s3_access_key_id: {S3_ACCESS_KEY}\n  s3_secret_access_key: {S3_SECRET_KEY}\n",
            db = self.db_url,
            endpoint = self.s3_endpoint,
        );
        if redis {
            text.push_str(&format!(
                "redis:\n  url: {}\n  prefix: \"{}\"\n",
                self.redis_url, self.redis_prefix
            ));
        }
        let path = dir.join(if redis {
            "hearth-redis.yaml"
        } else {
            "hearth.yaml"
        });
        std::fs::write(&path, text)?;
        Ok(path)
    }

    async fn cleanup(&self) {
        if let Err(e) = pg_exec(
            &self.pg_base,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db_name),
        )
        .await
        {
            eprintln!("cannot drop the database {}: {e}", self.db_name);
        }
        let Ok(client) = redis::Client::open(self.redis_url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.redis_prefix))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
        }
    }
}

pub(crate) fn hearth_bin() -> anyhow::Result<PathBuf> {
    let bin = PathBuf::from(env_or("HEARTH_BIN", "target/release/hearth"));
    anyhow::ensure!(
        bin.is_file(),
        "{} not found: `cargo build --release -p hearth` first, or set HEARTH_BIN",
        bin.display()
    );
    Ok(std::path::absolute(bin)?)
}

pub(crate) struct Node {
    process: Process,
    pub(crate) port: u16,
    pub(crate) admin_port: u16,
}

impl Node {
    /// The server's process id (to read its memory in `/proc`).
    pub(crate) fn pid(&self) -> u32 {
        self.process.0.id()
    }
}

pub(crate) fn start_node(
    bin: &Path,
    dir: &Path,
    config: &Path,
    name: &str,
) -> anyhow::Result<Node> {
    let (port, admin_port) = (free_port()?, free_port()?);
    let home = dir.join(name);
    std::fs::create_dir_all(&home)?;
    let log = std::fs::File::create(home.join("server.log"))?;
    let child = Command::new(bin)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("HEARTH_ADMIN_PASSPHRASE", PASSPHRASE)
        .env("HEARTH_REDIS_NODE_ID", name)
        .current_dir(&home)
        .arg("--config")
        .arg(config)
        .args(["serve", "--host", "127.0.0.1", "--admin-host", "127.0.0.1"])
        .args(["--port", &port.to_string()])
        .args(["--admin-port", &admin_port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let node = Node {
        process: Process(child),
        port,
        admin_port,
    };
    wait_for_port(port, name)?;
    wait_for_port(admin_port, name)?;
    Ok(node)
}

/// Runs `hearth instances <args>` against a node; its standard output.
pub(crate) fn cli(bin: &Path, dir: &Path, node: &Node, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .env_clear()
        .env("HOME", dir)
        .env("HEARTH_ADMIN_PASSPHRASE", PASSPHRASE)
        .current_dir(dir)
        .arg("instances")
        .args(["--admin-host", "127.0.0.1", "--host", "127.0.0.1"])
        .args(["--admin-port", &node.admin_port.to_string()])
        .args(["--port", &node.port.to_string()])
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "hearth instances {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub(crate) type HttpClient =
    Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// One request; its status and body.
pub(crate) async fn call(
    client: &HttpClient,
    port: u16,
    host: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Bytes,
) -> anyhow::Result<(u16, Bytes)> {
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"))
        .header("host", host)
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "application/json")
        .header("content-type", "application/json")
        .body(Full::new(body))?;
    let res = client.request(req).await?;
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

/// The kinds of requests, in the order a client sends them.
const KINDS: [&str; 4] = ["upload", "write doc", "read doc", "download"];

/// What one run measured.
#[derive(Debug, Clone)]
struct Measure {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    /// The median and 99th percentile of each kind of request.
    kinds: Vec<(Duration, Duration)>,
}

/// The median and 99th percentile of sorted durations.
fn percentiles(sorted: &[Duration]) -> (Duration, Duration) {
    let pick = |q: f64| {
        sorted
            .get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    (pick(0.5), pick(0.99))
}

impl Measure {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// `clients` clients for `seconds`, each request to the next port in turn.
async fn drive(
    ports: &[u16],
    tenants: &[(String, String)],
    opts: &Options,
    run: usize,
) -> anyhow::Result<Measure> {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(connector);
    let content = Bytes::from(
        (0..FILE_BYTES)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<_>>(),
    );
    let start = Instant::now();
    let until = start + Duration::from_secs(opts.seconds);
    let mut tasks = Vec::new();
    for c in 0..opts.clients {
        let (client, content, ports) = (client.clone(), content.clone(), ports.to_vec());
        let (host, token) = tenants[c % tenants.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<(u8, Duration)> = Vec::new();
            let mut errors = 0usize;
            let mut turn = c;
            let mut n = 0usize;
            let mut next_port = || {
                turn += 1;
                ports[turn % ports.len()]
            };
            while Instant::now() < until {
                n += 1;
                let name = format!("r{run}-c{c}-{n}.bin");
                let t = Instant::now();
                let (status, body) = call(
                    &client,
                    next_port(),
                    &host,
                    &token,
                    "POST",
                    &format!("/files/?Type=file&Name={name}"),
                    content.clone(),
                )
                .await?;
                latencies.push((0, t.elapsed()));
                let file_id = match status {
                    201 => serde_json::from_slice::<serde_json::Value>(&body)?["data"]["id"]
                        .as_str()
                        .map(str::to_owned),
                    _ => None,
                };
                if file_id.is_none() {
                    errors += 1;
                }
                let t = Instant::now();
                let doc = format!(r#"{{"title":"{name}","done":false}}"#);
                let (status, body) = call(
                    &client,
                    next_port(),
                    &host,
                    &token,
                    "POST",
                    "/data/io.cozy.todos/",
                    Bytes::from(doc),
                )
                .await?;
                latencies.push((1, t.elapsed()));
                let doc_id = match status {
                    201 => serde_json::from_slice::<serde_json::Value>(&body)?["id"]
                        .as_str()
                        .map(str::to_owned),
                    _ => None,
                };
                if let Some(id) = doc_id {
                    let t = Instant::now();
                    let (status, _) = call(
                        &client,
                        next_port(),
                        &host,
                        &token,
                        "GET",
                        &format!("/data/io.cozy.todos/{id}"),
                        Bytes::new(),
                    )
                    .await?;
                    latencies.push((2, t.elapsed()));
                    errors += usize::from(status != 200);
                } else {
                    errors += 1;
                }
                if let Some(id) = file_id {
                    let t = Instant::now();
                    let (status, body) = call(
                        &client,
                        next_port(),
                        &host,
                        &token,
                        "GET",
                        &format!("/files/download/{id}"),
                        Bytes::new(),
                    )
                    .await?;
                    latencies.push((3, t.elapsed()));
                    errors += usize::from(status != 200 || body.len() != FILE_BYTES);
                }
            }
            anyhow::Ok((latencies, errors))
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (latencies, e) = t.await??;
        all.extend(latencies);
        errors += e;
    }
    let elapsed = start.elapsed();
    let kinds = (0..KINDS.len())
        .map(|k| {
            let mut of_kind: Vec<Duration> = all
                .iter()
                .filter(|(kind, _)| usize::from(*kind) == k)
                .map(|(_, d)| *d)
                .collect();
            of_kind.sort_unstable();
            percentiles(&of_kind)
        })
        .collect();
    let mut all: Vec<Duration> = all.into_iter().map(|(_, d)| d).collect();
    all.sort_unstable();
    let (p50, p99) = percentiles(&all);
    Ok(Measure {
        requests: all.len(),
        errors,
        elapsed,
        p50,
        p99,
        kinds,
    })
}

/// The setups compared, in the order they run in each round.
const SETUPS: [(&str, usize, bool); 3] = [
    ("1 node, no Redis", 1, false),
    ("1 node + Redis", 1, true),
    ("2 nodes + Redis", 2, true),
];

pub(crate) fn run(opts: &Options) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let bin = hearth_bin()?;
    let dir = tempfile::tempdir_in(std::env::current_dir()?)?;
    let d = dir.path();
    let backends = rt.block_on(Backends::start(d))?;
    let outcome = run_with(&rt, &bin, d, &backends, opts);
    rt.block_on(backends.cleanup());
    outcome
}

fn run_with(
    rt: &tokio::runtime::Runtime,
    bin: &Path,
    d: &Path,
    backends: &Backends,
    opts: &Options,
) -> anyhow::Result<()> {
    let configs = [backends.config(d, false)?, backends.config(d, true)?];
    // The instances, created once through a node.
    let tenants = {
        let node = start_node(bin, d, &configs[1], "setup")?;
        let mut tenants = Vec::new();
        for i in 0..opts.instances {
            let domain = format!("bench{i}.localhost");
            cli(
                bin,
                d,
                &node,
                &["add", &domain, "--email", "bench@example.net"],
            )?;
            let token = cli(
                bin,
                d,
                &node,
                &["token-cli", &domain, "io.cozy.files io.cozy.todos"],
            )?;
            tenants.push((domain, token));
        }
        tenants
    };
    println!(
        "\n{} clients, {} instances, {} s per run, {RUNS} runs per setup (median kept); \
         each client: upload 4 KiB, write a document, read it, download the file",
        opts.clients, opts.instances, opts.seconds
    );
    let mut results: Vec<Vec<Measure>> = vec![Vec::new(); SETUPS.len()];
    for round in 0..RUNS {
        for (s, (name, count, redis)) in SETUPS.iter().enumerate() {
            let config = &configs[usize::from(*redis)];
            let mut nodes = Vec::new();
            for n in 0..*count {
                nodes.push(start_node(bin, d, config, &format!("node{}", n + 1))?);
            }
            let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
            let m = rt.block_on(drive(&ports, &tenants, opts, round * SETUPS.len() + s))?;
            eprintln!(
                "round {round} {name}: {:.0} req/s, {} requests, {} errors, p50 {:.1} ms, p99 {:.1} ms",
                m.per_second(),
                m.requests,
                m.errors,
                m.p50.as_secs_f64() * 1e3,
                m.p99.as_secs_f64() * 1e3
            );
            for mut node in nodes {
                node.process.stop();
            }
            results[s].push(m);
        }
    }
    let medians: Vec<Measure> = results
        .into_iter()
        .map(|mut runs| {
            runs.sort_by(|a, b| a.per_second().total_cmp(&b.per_second()));
            runs.swap_remove(runs.len() / 2)
        })
        .collect();
    let base = medians[1].per_second();
    println!("\n| setup | requests | errors | requests/s | p50 | p99 | vs 1 node + Redis |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for ((name, _, _), m) in SETUPS.iter().zip(&medians) {
        println!(
            "| {name} | {} | {} | {:.0} | {:.1} ms | {:.1} ms | {:.2}x |",
            m.requests,
            m.errors,
            m.per_second(),
            m.p50.as_secs_f64() * 1e3,
            m.p99.as_secs_f64() * 1e3,
            m.per_second() / base
        );
    }
    println!("\nMedian / 99th percentile per kind of request (the median runs):");
    println!("| setup | {} |", KINDS.join(" | "));
    println!("|---|{}", "---:|".repeat(KINDS.len()));
    for ((name, _, _), m) in SETUPS.iter().zip(&medians) {
        let cells: Vec<String> = m
            .kinds
            .iter()
            .map(|(p50, p99)| {
                format!(
                    "{:.1} / {:.1} ms",
                    p50.as_secs_f64() * 1e3,
                    p99.as_secs_f64() * 1e3
                )
            })
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
    Ok(())
}
