//! Prometheus metrics of the public server, served by the admin API as `GET /metrics`
//! (text exposition format, written by hand: a few counters do not need a library).

use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use axum::{
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::AppState;

/// Counters updated by every request of the public server.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests by status class: 1xx … 5xx.
    by_class: [AtomicU64; 5],
    /// Sum of request durations, in microseconds.
    duration_us: AtomicU64,
}

impl Metrics {
    fn record(&self, status: u16, started: Instant) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        self.duration_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
}

/// Counts a request of the public server.
pub(crate) async fn count(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let res = next.run(req).await;
    state.metrics.record(res.status().as_u16(), started);
    res
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `GET /metrics` (admin API).
pub(crate) async fn get_metrics(State(state): State<AppState>) -> Response {
    let m = &state.metrics;
    let mut out = String::new();
    out.push_str("# HELP hearth_http_requests_total Requests served by the public server, by status class.\n");
    out.push_str("# TYPE hearth_http_requests_total counter\n");
    let mut total = 0;
    for (i, c) in m.by_class.iter().enumerate() {
        let n = c.load(Ordering::Relaxed);
        total += n;
        let _ = writeln!(
            out,
            "hearth_http_requests_total{{status=\"{}xx\"}} {n}",
            i + 1
        );
    }
    out.push_str(
        "# HELP hearth_http_request_duration_seconds Time spent serving public requests.\n",
    );
    out.push_str("# TYPE hearth_http_request_duration_seconds summary\n");
    let _ = writeln!(
        out,
        "hearth_http_request_duration_seconds_sum {}",
        m.duration_us.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(out, "hearth_http_request_duration_seconds_count {total}");
    if let Ok(n) = state.instances.count().await {
        out.push_str(
            "# HELP hearth_instances Instances in the registry.\n# TYPE hearth_instances gauge\n",
        );
        let _ = writeln!(out, "hearth_instances {n}");
    }
    out.push_str("# HELP hearth_jobs_pending Jobs queued or running, by worker type.\n# TYPE hearth_jobs_pending gauge\n");
    for (worker, n) in state.jobs.pending() {
        let _ = writeln!(out, "hearth_jobs_pending{{worker=\"{worker}\"}} {n}");
    }
    out.push_str("# HELP hearth_jobs_executions_total Job executions since the start, by worker type and outcome.\n# TYPE hearth_jobs_executions_total counter\n");
    for (worker, s) in state.jobs.stats() {
        for (outcome, n) in [
            ("done", s.done),
            ("errored", s.errored),
            ("retried", s.retried),
        ] {
            let _ = writeln!(
                out,
                "hearth_jobs_executions_total{{worker=\"{worker}\",outcome=\"{outcome}\"}} {n}"
            );
        }
    }
    out.push_str("# HELP process_resident_memory_bytes Resident memory of the server.\n# TYPE process_resident_memory_bytes gauge\n");
    let _ = writeln!(out, "process_resident_memory_bytes {}", resident_bytes());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
