//! `hearth-bench`: each scenario runs beside its baseline, in the same process, on the
//! same disk, and the ratio (Hearth time / baseline time) is printed.
//!
//! Run with `cargo run --release -p hearth-bench -- store [--docs N]` or
//! `cargo run --release -p hearth-bench -- store-postgres [--docs N]` or
//! `cargo run --release -p hearth-bench -- instances [--max N]` or
//! `cargo run --release -p hearth-bench -- files [--big-mib N] [--small N]` or
//! `cargo run --release -p hearth-bench -- jobs [--jobs N] [--images N] [--sync-normal]` or
//! `cargo run --release -p hearth-bench -- move [--mib N] [--files N]` or
//! `cargo run --release -p hearth-bench -- move-servers [--mib N] [--files N]` or
//! `cargo run --release -p hearth-bench -- nodes [--clients N] [--seconds N] [--instances N]`
//! (after `cargo build --release -p hearth`).

mod files;
mod instances;
mod jobs;
mod move_servers;
mod moves;
mod nodes;
mod store;
mod store_pg;

// The allocator Hearth itself uses, so both sides of each comparison share it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Duration;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenario = args.first().map(String::as_str).unwrap_or("store");
    match scenario {
        "store" => {
            let docs = flag(&args, "--docs").unwrap_or(100_000);
            store::run(docs)
        }
        "store-postgres" => {
            let docs = flag(&args, "--docs").unwrap_or(100_000);
            store_pg::run(docs)
        }
        "instances" => {
            let counts: Vec<usize> = match flag(&args, "--max") {
                Some(max) if max <= 1_000 => vec![max],
                Some(max) => vec![1_000, max],
                None => vec![1_000, 10_000],
            };
            instances::run(&counts)
        }
        "files" => {
            let big = flag(&args, "--big-mib").unwrap_or(1024) as u64;
            let small = flag(&args, "--small").unwrap_or(10_000);
            files::run(big, small)
        }
        "jobs" => {
            let n = flag(&args, "--jobs").unwrap_or(2_000);
            let images = flag(&args, "--images").unwrap_or(20);
            // `--sync-normal`: both sides with `synchronous=NORMAL` (no fsync per commit).
            let full = !args.iter().any(|a| a == "--sync-normal");
            jobs::run(n, images, full)
        }
        "move" => {
            let mib = flag(&args, "--mib").unwrap_or(2048) as u64;
            let files = flag(&args, "--files").unwrap_or(20_000);
            moves::run(mib, files)
        }
        "move-servers" => {
            let mib = flag(&args, "--mib").unwrap_or(2048) as u64;
            let files = flag(&args, "--files").unwrap_or(20_000);
            move_servers::run(mib, files)
        }
        "nodes" => nodes::run(&nodes::Options {
            clients: flag(&args, "--clients").unwrap_or(16),
            seconds: flag(&args, "--seconds").unwrap_or(15) as u64,
            instances: flag(&args, "--instances").unwrap_or(8),
        }),
        other => {
            anyhow::bail!(
                "unknown scenario {other:?} (known: store, store-postgres, instances, files, jobs, move, move-servers, nodes)"
            )
        }
    }
}

fn flag(args: &[String], name: &str) -> Option<usize> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

/// One line of the results table.
pub(crate) struct Row {
    pub scenario: String,
    pub ops: usize,
    pub ours: Duration,
    pub baseline: Duration,
}

pub(crate) fn print_table(title: &str, baseline_name: &str, rows: &[Row]) {
    println!("\n{title}");
    println!("| scenario | ops | Hearth | {baseline_name} | ratio |");
    println!("|---|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {:.2}x |",
            r.scenario,
            r.ops,
            human(r.ours, r.ops),
            human(r.baseline, r.ops),
            r.ours.as_secs_f64() / r.baseline.as_secs_f64()
        );
    }
}

fn human(d: Duration, ops: usize) -> String {
    let per = d.as_secs_f64() / ops.max(1) as f64;
    let per = if per < 1e-3 {
        format!("{:.1} µs/op", per * 1e6)
    } else {
        format!("{:.2} ms/op", per * 1e3)
    };
    format!("{:.3} s ({per})", d.as_secs_f64())
}
