//! Finished jobs do not stay forever: every day, the documents of jobs done or
//! errored more than [`JobsConfig::keep_finished`](crate::JobsConfig) ago are removed,
//! instance by instance (every thumbnail and mail leaves one). With several nodes,
//! only the one leading the timed triggers ([`Jobs::set_leader_check`]) cleans.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_core::{JsonMap, rfc3339};
use hearth_instances::Instance;
use hearth_store::StoreError;
use hearth_store::mango::FindQuery;
use serde_json::{Value, json};

use crate::{Jobs, JobsResult, doctype, model::JOBS, now_ms};

/// Documents removed per store call.
const BATCH: usize = 500;
/// How often the documents of finished jobs are removed.
const EVERY: Duration = Duration::from_secs(24 * 3600);
/// How often a node looks whether it is time (and whether it leads).
const LOOK: Duration = Duration::from_secs(3600);

impl Jobs {
    /// Runs [`Jobs::clean_finished`] on every instance once a day, on the node that
    /// leads the timed triggers (the only node when there is one). A node that
    /// becomes the leader cleans within the hour if it had not cleaned for a day.
    pub(crate) fn spawn_cleanup(self: &Arc<Self>) {
        let jobs = self.clone();
        tokio::spawn(async move {
            // Not at start: a restart should not also mean a burst of deletions.
            tokio::time::sleep(Duration::from_secs(600)).await;
            let mut last: Option<Instant> = None;
            loop {
                if last.is_none_or(|t| t.elapsed() >= EVERY) && jobs.sched.leads() {
                    if let Err(e) = jobs.clean_all().await {
                        tracing::warn!(error = %e, "cleaning finished jobs failed");
                    }
                    last = Some(Instant::now());
                }
                tokio::time::sleep(LOOK).await;
            }
        });
    }

    async fn clean_all(&self) -> JobsResult<()> {
        let mut cursor: Option<String> = None;
        let mut removed = 0;
        loop {
            let (page, next) = self
                .instances()
                .list(Some(100), cursor.as_deref(), 0)
                .await
                .map_err(|e| crate::JobsError::Internal(e.to_string()))?;
            for inst in &page {
                removed += self.clean_finished(inst).await?;
            }
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        tracing::info!(removed, "finished jobs cleaned");
        Ok(())
    }

    /// Removes the documents of this instance's jobs finished before the retention
    /// period; returns how many.
    pub async fn clean_finished(&self, inst: &Instance) -> JobsResult<usize> {
        let keep_ms = self.config.keep_finished.as_millis() as u64;
        let before = rfc3339(now_ms().saturating_sub(keep_ms) / 1000);
        let q = FindQuery::parse(&json!({
            "selector": {
                "state": {"$in": ["done", "errored"]},
                "finished_at": {"$lt": before},
            },
            "fields": ["_id", "_rev"],
            "limit": BATCH,
        }))?;
        let (id, dt) = (inst.instance_id(), doctype(JOBS));
        let mut removed = 0;
        loop {
            let docs = match self.instance_store().find(&id, &dt, &q).await {
                Ok(f) => f.docs,
                Err(StoreError::NotFound(_)) => return Ok(removed),
                Err(e) => return Err(e.into()),
            };
            if docs.is_empty() {
                return Ok(removed);
            }
            let n = docs.len();
            let tombstones: Vec<JsonMap> = docs
                .into_iter()
                .map(|mut d| {
                    d.insert("_deleted".into(), Value::Bool(true));
                    d
                })
                .collect();
            self.instance_store()
                .bulk(&id, &dt, tombstones, false)
                .await?;
            removed += n;
            if n < BATCH {
                return Ok(removed);
            }
        }
    }
}
