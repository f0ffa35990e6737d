//! Running jobs: recovery at start, one task per unit of concurrency per worker
//! type, executions under a timeout, retries with back-off.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hearth_core::now_rfc3339;
use hearth_instances::InstanceError;

use crate::{JobContext, JobError, JobState, Jobs, JobsResult, Ticket, WorkerLimits, now_ms};

impl Jobs {
    /// Starts the runners and the scheduler, after queuing again what a previous
    /// run left unfinished. Idempotent; needs a Tokio runtime.
    pub async fn start(self: &Arc<Self>) -> JobsResult<()> {
        if self.started.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let tickets = self.broker.recover().await?;
        if !tickets.is_empty() {
            tracing::info!(
                count = tickets.len(),
                "jobs left by the previous run queued again"
            );
        }
        for ticket in tickets {
            self.requeue_recovered(ticket).await;
        }
        let workers: Vec<(String, usize)> = self
            .worker_types()
            .into_iter()
            .map(|(name, l)| (name, l.concurrency.max(1)))
            .collect();
        for (name, concurrency) in workers {
            for _ in 0..concurrency {
                let jobs = self.clone();
                let name = name.clone();
                tokio::spawn(async move {
                    loop {
                        let ticket = jobs.broker.next(&name).await;
                        jobs.execute(ticket).await;
                    }
                });
            }
        }
        self.spawn_cleanup();
        self.start_scheduler().await
    }

    /// A ticket found at start: its job may have been running when the server died.
    async fn requeue_recovered(&self, ticket: Ticket) {
        let inst = match self.instances().get_str(&ticket.domain).await {
            Ok(i) => i,
            Err(_) => {
                let _ = self.broker.finish(&ticket).await;
                return;
            }
        };
        let mut job = match self.get_job(&inst, &ticket.job_id).await {
            Ok(j) => j,
            Err(_) => {
                let _ = self.broker.finish(&ticket).await;
                return;
            }
        };
        if job.state.is_final() {
            let _ = self.broker.finish(&ticket).await;
            return;
        }
        let max = self.max_exec(&job.worker, &job);
        if job.state == JobState::Running && ticket.attempts >= max {
            job.state = JobState::Errored;
            job.error = Some("the server stopped while the job was running".into());
            job.finished_at = Some(now_rfc3339());
            let _ = self.save_job(&inst, &mut job).await;
            let _ = self.broker.finish(&ticket).await;
            return;
        }
        if job.state == JobState::Running {
            tracing::warn!(domain = %ticket.domain, job = %ticket.job_id, "job interrupted by a restart, running it again");
            job.state = JobState::Queued;
            let _ = self.save_job(&inst, &mut job).await;
        }
        if let Err(e) = self.broker.retry(ticket).await {
            tracing::error!(error = %e, "cannot queue a recovered job");
        }
    }

    fn max_exec(&self, worker: &str, job: &crate::Job) -> u32 {
        let limits = self.limits(worker).unwrap_or_default();
        job.options
            .as_ref()
            .and_then(|o| o.max_exec_count)
            .unwrap_or(limits.max_exec_count)
            .clamp(1, 20)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.config
            .retry_delay
            .saturating_mul(factor)
            .min(self.config.max_retry_delay)
    }

    /// One execution of a ticket's job.
    async fn execute(&self, mut ticket: Ticket) {
        let inst = match self.instances().get_str(&ticket.domain).await {
            Ok(i) => i,
            Err(InstanceError::NotFound) => {
                tracing::info!(domain = %ticket.domain, job = %ticket.job_id, "job of a deleted instance dropped");
                let _ = self.broker.finish(&ticket).await;
                return;
            }
            Err(e) => {
                tracing::error!(domain = %ticket.domain, error = %e, "cannot load the instance of a job; retrying later");
                ticket.not_before = now_ms() + self.config.retry_delay.as_millis() as u64;
                let _ = self.broker.retry(ticket).await;
                return;
            }
        };
        let mut job = match self.get_job(&inst, &ticket.job_id).await {
            Ok(j) if !j.state.is_final() => j,
            _ => {
                let _ = self.broker.finish(&ticket).await;
                return;
            }
        };
        let (worker, limits) = match self.registered(&job.worker) {
            Some(w) => w,
            None => {
                job.state = JobState::Errored;
                job.error = Some(format!("Unknown worker {:?}", job.worker));
                job.finished_at = Some(now_rfc3339());
                let _ = self.save_job(&inst, &mut job).await;
                let _ = self.broker.finish(&ticket).await;
                return;
            }
        };
        let max = self.max_exec(&job.worker, &job);
        ticket.attempts += 1;
        if let Err(e) = self.broker.started(&mut ticket).await {
            tracing::error!(error = %e, "cannot record a job's start; retrying later");
            ticket.attempts -= 1;
            ticket.not_before = now_ms() + self.config.retry_delay.as_millis() as u64;
            let _ = self.broker.retry(ticket).await;
            return;
        }
        job.state = JobState::Running;
        job.started_at = Some(now_rfc3339());
        if let Err(e) = self.save_job(&inst, &mut job).await {
            tracing::error!(error = %e, "cannot mark a job running; retrying later");
            ticket.not_before = now_ms() + self.config.retry_delay.as_millis() as u64;
            let _ = self.broker.retry(ticket).await;
            return;
        }
        let timeout = job
            .options
            .as_ref()
            .and_then(|o| o.timeout)
            .map_or(limits.timeout, Duration::from_secs)
            .min(limits.timeout);
        let span = tracing::info_span!("job", domain = %inst.domain, job = %job.id, worker = %job.worker, attempt = ticket.attempts);
        let ctx = JobContext {
            instance: inst.clone(),
            job: job.clone(),
            attempt: ticket.attempts,
        };
        let started = std::time::Instant::now();
        // A task of its own: a panic in a worker is an error of that job, and a
        // timeout aborts it.
        let mut handle = tokio::spawn(async move { worker.run(ctx).await });
        let outcome = match tokio::time::timeout(timeout, &mut handle).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(JobError::retry(if join.is_panic() {
                "the worker crashed".to_owned()
            } else {
                "the worker was cancelled".to_owned()
            })),
            Err(_) => {
                handle.abort();
                Err(JobError::retry(format!(
                    "the job did not finish within {}s",
                    timeout.as_secs()
                )))
            }
        };
        let _enter = span.enter();
        match outcome {
            Ok(()) => {
                tracing::info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "job done"
                );
                self.count(&job.worker, |s| s.done += 1);
                job.state = JobState::Done;
                job.error = None;
                job.finished_at = Some(now_rfc3339());
            }
            Err(e) if e.retry && ticket.attempts < max => {
                let delay = self.backoff(ticket.attempts);
                tracing::warn!(error = %e.message, retry_in_ms = delay.as_millis() as u64, "job failed, will retry");
                self.count(&job.worker, |s| s.retried += 1);
                job.state = JobState::Queued;
                job.error = Some(e.message);
                drop(_enter);
                if let Err(err) = self.save_job(&inst, &mut job).await {
                    tracing::error!(error = %err, "cannot record a job's failure");
                }
                ticket.not_before = now_ms() + delay.as_millis() as u64;
                if let Err(err) = self.broker.retry(ticket).await {
                    tracing::error!(error = %err, "cannot queue a job again");
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e.message, "job errored");
                self.count(&job.worker, |s| s.errored += 1);
                job.state = JobState::Errored;
                job.error = Some(e.message);
                job.finished_at = Some(now_rfc3339());
            }
        }
        drop(_enter);
        if let Err(e) = self.save_job(&inst, &mut job).await {
            tracing::error!(error = %e, "cannot record a job's end");
        }
        if let Err(e) = self.broker.finish(&ticket).await {
            tracing::error!(error = %e, "cannot forget a finished job's ticket");
        }
    }

    fn registered(&self, worker: &str) -> Option<(Arc<dyn crate::Worker>, WorkerLimits)> {
        self.workers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(worker)
            .map(|r| (r.worker.clone(), r.limits.clone()))
    }
}
