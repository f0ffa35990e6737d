//! Background jobs, the way the Cozy stack runs them.
//!
//! A job is an `io.cozy.jobs` document in its instance's store plus a [`Ticket`] in
//! a [`Broker`] (durable: the in-process [`LocalBroker`] keeps tickets in the global
//! store). Runners, `concurrency` per worker type, take tickets, mark the job
//! `running`, run the [`Worker`] under a timeout, and record `done` or `errored`;
//! retriable failures come back after an exponential back-off until the job's
//! `max_exec_count`. A ticket whose job was running when the server died is run
//! again at the next start (the crash counts as an execution), never dropped.
//!
//! Triggers (`io.cozy.triggers`) push jobs: on time (`@at`, `@in`, `@every`,
//! `@cron`, `@hourly`…), on document events (`@event`, fed by the store's
//! [`EventHub`](hearth_store::events::EventHub)), on `POST /jobs/webhooks/:id`
//! (`@webhook`), or when launched. The scheduler keeps one small entry per active
//! trigger in the global store, so that it starts without opening every instance.
//!
//! Every write goes through the store, so job state changes reach the realtime
//! websocket like any other document event.

pub mod broker;
#[cfg(any(test, feature = "testkit"))]
pub mod broker_tests;
mod cleanup;
pub mod cron;
pub mod duration;
pub mod model;
mod runner;
mod scheduler;
pub mod services;
pub mod workers;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hearth_core::{Doctype, InstanceId, new_doc_id, now_rfc3339};
use hearth_instances::{Instance, Instances};
use hearth_store::mango::FindQuery;
use hearth_store::{DocStore, GetOptions, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

pub use broker::{Broker, LocalBroker, Ticket};
pub use model::{EventRule, Job, JobOptions, JobState, Schedule, Trigger};
use scheduler::SchedShared;
pub use scheduler::{LeaderCheck, TriggerRequest};

/// What went wrong, for the API layer to map onto statuses.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// 404.
    #[error("Unknown worker {0:?}")]
    UnknownWorker(String),
    /// 403: only the server pushes these.
    #[error("The worker {0:?} is reserved to the server")]
    ReservedWorker(String),
    /// 400.
    #[error("{0}")]
    Invalid(String),
    /// 422.
    #[error("Invalid debounce: {0}")]
    BadDebounce(String),
    /// 404.
    #[error("Not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

pub type JobsResult<T> = Result<T, JobsError>;

/// A failed execution, as a worker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub message: String,
    /// Whether another execution may succeed (a network error) or not (bad input).
    pub retry: bool,
}

impl JobError {
    pub fn retry(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry: true,
        }
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry: false,
        }
    }
}

/// What a worker gets for one execution.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub instance: Arc<Instance>,
    pub job: Job,
    /// 1 for the first execution.
    pub attempt: u32,
}

/// A type of job.
#[async_trait]
pub trait Worker: Send + Sync + 'static {
    async fn run(&self, ctx: JobContext) -> Result<(), JobError>;
}

/// How a worker type runs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WorkerLimits {
    /// Executions at the same time, across instances.
    pub concurrency: usize,
    /// Executions before a job is errored.
    pub max_exec_count: u32,
    /// The longest an execution may last (a job's own `timeout` can only lower it).
    pub timeout: Duration,
    /// Only the server (and the admin API) may push it: `POST /jobs/queue` says 403.
    pub reserved: bool,
}

impl Default for WorkerLimits {
    fn default() -> Self {
        Self {
            concurrency: 2,
            max_exec_count: 3,
            timeout: Duration::from_secs(60),
            reserved: false,
        }
    }
}

/// Operator overrides of one worker type's limits (`jobs.workers.<name>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsOverride {
    pub concurrency: Option<usize>,
    pub max_exec_count: Option<u32>,
    /// Seconds.
    pub timeout: Option<u64>,
}

/// The jobs system's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobsConfig {
    /// The first retry's delay; each next one doubles, up to `max_retry_delay`.
    pub retry_delay: Duration,
    pub max_retry_delay: Duration,
    /// How long the documents of finished jobs are kept.
    pub keep_finished: Duration,
    /// Per worker type.
    pub workers: BTreeMap<String, LimitsOverride>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            retry_delay: Duration::from_secs(10),
            max_retry_delay: Duration::from_secs(3600),
            keep_finished: Duration::from_secs(30 * 24 * 3600),
            workers: BTreeMap::new(),
        }
    }
}

/// The worker of `@client` triggers: jobs a client runs itself and reports with
/// `PATCH /jobs/:id`; never executed by the server.
pub const CLIENT_WORKER: &str = "client";

struct Registered {
    worker: Arc<dyn Worker>,
    limits: WorkerLimits,
}

/// What to push.
#[derive(Debug, Clone, Default)]
pub struct JobRequest {
    pub worker: String,
    pub message: Value,
    pub options: Option<JobOptions>,
    pub manual: bool,
    pub trigger_id: Option<String>,
    pub event: Option<Value>,
    pub payload: Option<Value>,
}

/// The jobs service: workers, broker, scheduler.
pub struct Jobs {
    store: Arc<dyn DocStore>,
    instances: Arc<Instances>,
    broker: Arc<dyn Broker>,
    workers: RwLock<BTreeMap<String, Registered>>,
    config: JobsConfig,
    sched: Arc<SchedShared>,
    started: AtomicBool,
    stats: std::sync::Mutex<BTreeMap<String, WorkerStats>>,
}

/// Executions per worker type since the server started (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    pub done: u64,
    pub errored: u64,
    /// Failed executions that will be retried.
    pub retried: u64,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// One of the built-in doctype names above (valid by construction; checked by tests).
pub(crate) fn doctype(name: &str) -> Doctype {
    #[allow(clippy::expect_used)]
    Doctype::new(name).expect("built-in doctype names are valid")
}

impl Jobs {
    /// A jobs service with the in-process broker over `store`'s global documents.
    pub fn new(store: Arc<dyn DocStore>, instances: Arc<Instances>, config: JobsConfig) -> Self {
        let broker = Arc::new(LocalBroker::new(store.clone()));
        Self::with_broker(store, instances, config, broker)
    }

    pub fn with_broker(
        store: Arc<dyn DocStore>,
        instances: Arc<Instances>,
        config: JobsConfig,
        broker: Arc<dyn Broker>,
    ) -> Self {
        Self {
            store,
            instances,
            broker,
            workers: RwLock::default(),
            config,
            sched: Arc::default(),
            started: AtomicBool::new(false),
            stats: std::sync::Mutex::default(),
        }
    }

    /// Adds a worker type (before [`Jobs::start`]); the operator's overrides apply.
    pub fn register(&self, name: &str, worker: Arc<dyn Worker>, mut limits: WorkerLimits) {
        if let Some(o) = self.config.workers.get(name) {
            limits.concurrency = o.concurrency.unwrap_or(limits.concurrency).max(1);
            limits.max_exec_count = o.max_exec_count.unwrap_or(limits.max_exec_count).max(1);
            limits.timeout = o.timeout.map_or(limits.timeout, Duration::from_secs);
        }
        self.workers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), Registered { worker, limits });
    }

    /// The registered worker types and their limits.
    pub fn worker_types(&self) -> Vec<(String, WorkerLimits)> {
        self.workers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, r)| (k.clone(), r.limits.clone()))
            .collect()
    }

    fn limits(&self, worker: &str) -> Option<WorkerLimits> {
        if worker == CLIENT_WORKER {
            return Some(WorkerLimits::default());
        }
        self.workers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(worker)
            .map(|r| r.limits.clone())
    }

    /// Checks that `worker` exists and, unless `admin`, that clients may push it.
    pub fn check_worker(&self, worker: &str, admin: bool) -> JobsResult<()> {
        match self.limits(worker) {
            None => Err(JobsError::UnknownWorker(worker.to_owned())),
            Some(l) if l.reserved && !admin => Err(JobsError::ReservedWorker(worker.to_owned())),
            Some(_) => Ok(()),
        }
    }

    /// Tickets waiting or running, per worker type (for metrics).
    pub fn pending(&self) -> Vec<(String, usize)> {
        self.broker.pending()
    }

    /// Executions per worker type since the start (for metrics).
    pub fn stats(&self) -> Vec<(String, WorkerStats)> {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    pub(crate) fn count(&self, worker: &str, f: impl FnOnce(&mut WorkerStats)) {
        f(self
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(worker.to_owned())
            .or_default());
    }

    /// Creates the job document and queues it. The worker must exist.
    pub async fn push(&self, inst: &Instance, req: JobRequest) -> JobsResult<Job> {
        if self.limits(&req.worker).is_none() {
            return Err(JobsError::UnknownWorker(req.worker));
        }
        if let Some(o) = &req.options
            && (o.max_exec_count == Some(0) || o.timeout == Some(0))
        {
            return Err(JobsError::Invalid(
                "options.max_exec_count and options.timeout must be positive".into(),
            ));
        }
        let mut job = Job {
            id: new_doc_id(),
            rev: None,
            domain: inst.domain.clone(),
            worker: req.worker,
            trigger_id: req.trigger_id,
            message: req.message,
            event: req.event,
            payload: req.payload,
            manual_execution: req.manual,
            options: req.options,
            state: JobState::Queued,
            queued_at: now_rfc3339(),
            started_at: None,
            finished_at: None,
            error: None,
        };
        let written = self
            .store
            .put(&inst.instance_id(), &doctype(model::JOBS), job.to_doc())
            .await?;
        job.rev = Some(written.rev.to_string());
        if job.worker != CLIENT_WORKER {
            let ticket = Ticket {
                domain: inst.domain.clone(),
                job_id: job.id.clone(),
                worker: job.worker.clone(),
                attempts: 0,
                not_before: 0,
                rev: None,
            };
            if let Err(e) = self.broker.enqueue(ticket).await {
                // Do not leave a job that nothing will ever run.
                job.state = JobState::Errored;
                job.error = Some(format!("cannot queue the job: {e}"));
                job.finished_at = Some(now_rfc3339());
                let _ = self.save_job(inst, &mut job).await;
                return Err(e);
            }
        }
        tracing::debug!(domain = %inst.domain, job = %job.id, worker = %job.worker, "job queued");
        Ok(job)
    }

    /// A job of this instance.
    pub async fn get_job(&self, inst: &Instance, id: &str) -> JobsResult<Job> {
        let doc = match self
            .store
            .get(
                &inst.instance_id(),
                &doctype(model::JOBS),
                id,
                GetOptions::default(),
            )
            .await
        {
            Ok(d) => d,
            Err(StoreError::NotFound(_)) => return Err(JobsError::NotFound),
            Err(e) => return Err(e.into()),
        };
        let job = Job::from_doc(doc).map_err(JobsError::Internal)?;
        // A job document copied from elsewhere never leaks across instances.
        if job.domain != inst.domain && !inst.domain_aliases.contains(&job.domain) {
            return Err(JobsError::NotFound);
        }
        Ok(job)
    }

    /// Jobs of `worker` not finished yet (`GET /jobs/queue/:worker`).
    pub async fn queued_jobs(&self, inst: &Instance, worker: &str) -> JobsResult<Vec<Job>> {
        self.find_jobs(
            inst,
            json!({
                "selector": {"worker": worker, "state": {"$in": ["queued", "running"]}},
            }),
        )
        .await
    }

    pub(crate) async fn find_jobs(&self, inst: &Instance, query: Value) -> JobsResult<Vec<Job>> {
        let q = FindQuery::parse(&query)?;
        let found = match self
            .store
            .find(&inst.instance_id(), &doctype(model::JOBS), &q)
            .await
        {
            Ok(f) => f.docs,
            Err(StoreError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(found
            .into_iter()
            .filter_map(|d| Job::from_doc(d).ok())
            .collect())
    }

    /// `PATCH /jobs/:id` for `@client` jobs: the client reports the state.
    pub async fn patch_client_job(
        &self,
        inst: &Instance,
        id: &str,
        state: JobState,
        error: Option<String>,
    ) -> JobsResult<Job> {
        let mut job = self.get_job(inst, id).await?;
        if job.worker != CLIENT_WORKER {
            return Err(JobsError::Invalid(
                "only the jobs of the client worker can be patched".into(),
            ));
        }
        let now = now_rfc3339();
        if state == JobState::Running && job.started_at.is_none() {
            job.started_at = Some(now.clone());
        }
        if state.is_final() {
            job.finished_at = Some(now);
        }
        job.state = state;
        job.error = error.filter(|e| !e.is_empty());
        self.save_job(inst, &mut job).await?;
        Ok(job)
    }

    pub(crate) async fn save_job(&self, inst: &Instance, job: &mut Job) -> JobsResult<()> {
        let written = self
            .store
            .put(&inst.instance_id(), &doctype(model::JOBS), job.to_doc())
            .await?;
        job.rev = Some(written.rev.to_string());
        Ok(())
    }

    /// Waits until a job is done or errored (the CLI's `jobs run`), up to `timeout`.
    pub async fn wait(&self, inst: &Instance, id: &str, timeout: Duration) -> JobsResult<Job> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut events = self
            .store
            .event_hub()
            .map(|hub| hub.subscribe(&inst.instance_id()));
        loop {
            let job = self.get_job(inst, id).await?;
            if job.state.is_final() || tokio::time::Instant::now() >= deadline {
                return Ok(job);
            }
            // Wake on the next event of this instance, or poll every 200 ms.
            let tick = tokio::time::sleep(Duration::from_millis(200));
            match events.as_mut() {
                Some(rx) => {
                    tokio::select! {
                        _ = rx.recv() => {}
                        () = tick => {}
                    }
                }
                None => tick.await,
            }
        }
    }

    /// Drops an instance's tickets and triggers (it is being destroyed).
    pub async fn forget_instance(&self, inst: &Instance) -> JobsResult<()> {
        self.broker.forget_instance(&inst.domain).await?;
        self.forget_triggers(&inst.instance_id()).await
    }

    pub(crate) fn instance_store(&self) -> &Arc<dyn DocStore> {
        &self.store
    }

    pub(crate) fn instances(&self) -> &Arc<Instances> {
        &self.instances
    }
}

/// `InstanceId` of an instance's scheduler entries.
pub(crate) fn instance_key(inst: &InstanceId, trigger_id: &str) -> String {
    format!("{}:{trigger_id}", inst.as_str())
}
