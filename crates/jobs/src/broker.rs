//! The queue between those who push jobs and the workers: [`Broker`], and the
//! in-process [`LocalBroker`] that keeps its tickets in the global document store
//! so that a restart finds every unfinished job again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use hearth_core::{Doctype, InstanceId, JsonMap};

use hearth_store::{AllDocsQuery, DocStore, GetOptions, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;

use crate::{JobsError, JobsResult, now_ms};

/// Where the local broker keeps its tickets (global store).
pub const QUEUE: &str = "io.hearth.jobs.queue";

/// A queued job as the broker knows it: enough to find its document again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub domain: String,
    pub job_id: String,
    pub worker: String,
    /// Executions started so far; counted before each one starts, so that a crash
    /// during an execution counts too.
    #[serde(default)]
    pub attempts: u32,
    /// Unix milliseconds before which it must not run (a retry's back-off).
    #[serde(default)]
    pub not_before: u64,
    /// The broker's own bookkeeping (the ticket document's revision).
    #[serde(skip)]
    pub rev: Option<String>,
}

/// A job queue: durable, per worker type.
#[async_trait]
pub trait Broker: Send + Sync {
    /// Queues a ticket; once this returns, a restart will find it.
    async fn enqueue(&self, ticket: Ticket) -> JobsResult<()>;
    /// Waits for the next due ticket of `worker`.
    async fn next(&self, worker: &str) -> Ticket;
    /// Records, durably, that an execution starts (`attempts` already incremented).
    async fn started(&self, ticket: &mut Ticket) -> JobsResult<()>;
    /// Queues a ticket again, due at `ticket.not_before`.
    async fn retry(&self, ticket: Ticket) -> JobsResult<()>;
    /// Forgets a ticket whose job has ended.
    async fn finish(&self, ticket: &Ticket) -> JobsResult<()>;
    /// Queues again the tickets a previous run left; returns them. Called once.
    async fn recover(&self) -> JobsResult<Vec<Ticket>>;
    /// Drops every ticket of an instance (it is being destroyed).
    async fn forget_instance(&self, domain: &str) -> JobsResult<()>;
    /// How many tickets wait or run, per worker type.
    fn pending(&self) -> Vec<(String, usize)>;
}

#[derive(Default)]
struct Lane {
    queue: Mutex<VecDeque<Ticket>>,
    notify: Notify,
}

/// The in-process broker.
pub struct LocalBroker {
    store: Arc<dyn DocStore>,
    lanes: Mutex<HashMap<String, Arc<Lane>>>,
    /// Tickets known, per worker (queued, delayed or running), for metrics.
    counts: Mutex<HashMap<String, usize>>,
}

impl LocalBroker {
    pub fn new(store: Arc<dyn DocStore>) -> Self {
        Self {
            store,
            lanes: Mutex::default(),
            counts: Mutex::default(),
        }
    }

    fn lane(&self, worker: &str) -> Arc<Lane> {
        self.lanes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(worker.to_owned())
            .or_default()
            .clone()
    }

    fn count(&self, worker: &str, delta: isize) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(worker.to_owned()).or_default();
        *n = n.saturating_add_signed(delta);
    }

    /// Hands a ticket to its lane, now or when it is due.
    fn schedule(&self, ticket: Ticket) {
        let lane = self.lane(&ticket.worker);
        let wait = ticket.not_before.saturating_sub(now_ms());
        if wait == 0 {
            lane.queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_back(ticket);
            lane.notify.notify_one();
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(wait)).await;
                lane.queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_back(ticket);
                lane.notify.notify_one();
            });
        }
    }

    async fn save(&self, ticket: &Ticket) -> JobsResult<String> {
        let mut doc = match serde_json::to_value(ticket) {
            Ok(Value::Object(m)) => m,
            _ => JsonMap::new(),
        };
        doc.insert("_id".into(), Value::String(ticket.job_id.clone()));
        if let Some(rev) = &ticket.rev {
            doc.insert("_rev".into(), Value::String(rev.clone()));
        }
        let written = self
            .store
            .put(&InstanceId::global(), &queue_doctype(), doc)
            .await?;
        Ok(written.rev.to_string())
    }
}

fn queue_doctype() -> Doctype {
    crate::doctype(QUEUE)
}

#[async_trait]
impl Broker for LocalBroker {
    async fn enqueue(&self, mut ticket: Ticket) -> JobsResult<()> {
        ticket.rev = None;
        ticket.rev = Some(self.save(&ticket).await?);
        self.count(&ticket.worker, 1);
        self.schedule(ticket);
        Ok(())
    }

    async fn next(&self, worker: &str) -> Ticket {
        let lane = self.lane(worker);
        loop {
            let notified = lane.notify.notified();
            if let Some(t) = lane
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

    async fn started(&self, ticket: &mut Ticket) -> JobsResult<()> {
        ticket.rev = Some(self.save(ticket).await?);
        Ok(())
    }

    async fn retry(&self, mut ticket: Ticket) -> JobsResult<()> {
        ticket.rev = Some(self.save(&ticket).await?);
        self.schedule(ticket);
        Ok(())
    }

    async fn finish(&self, ticket: &Ticket) -> JobsResult<()> {
        self.count(&ticket.worker, -1);
        let global = InstanceId::global();
        let dt = queue_doctype();
        let rev = match &ticket.rev {
            Some(r) => r
                .parse()
                .map_err(|_| JobsError::Internal("bad ticket rev".into()))?,
            None => match self
                .store
                .get(&global, &dt, &ticket.job_id, GetOptions::default())
                .await
            {
                Ok(doc) => doc
                    .get("_rev")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| JobsError::Internal("ticket without rev".into()))?,
                Err(StoreError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e.into()),
            },
        };
        match self.store.delete(&global, &dt, &ticket.job_id, &rev).await {
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn recover(&self) -> JobsResult<Vec<Ticket>> {
        let all = self
            .store
            .all_docs(
                &InstanceId::global(),
                &queue_doctype(),
                &AllDocsQuery {
                    include_docs: true,
                    inclusive_end: true,
                    ..Default::default()
                },
            )
            .await;
        let rows = match all {
            Ok(all) => all.rows,
            Err(StoreError::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut tickets = Vec::new();
        for row in rows {
            let Some(doc) = row.doc else { continue };
            let rev = doc.get("_rev").and_then(Value::as_str).map(str::to_owned);
            match serde_json::from_value::<Ticket>(Value::Object(doc)) {
                Ok(mut t) => {
                    t.rev = rev;
                    tickets.push(t);
                }
                Err(e) => tracing::warn!(id = %row.id, error = %e, "unreadable job ticket skipped"),
            }
        }
        for t in &tickets {
            self.count(&t.worker, 1);
        }
        Ok(tickets)
    }

    async fn forget_instance(&self, domain: &str) -> JobsResult<()> {
        for lane in self
            .lanes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            lane.queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|t| t.domain != domain);
        }
        let q = hearth_store::mango::FindQuery::parse(&serde_json::json!({
            "selector": {"domain": domain}
        }))?;
        let found = match self
            .store
            .find(&InstanceId::global(), &queue_doctype(), &q)
            .await
        {
            Ok(f) => f.docs,
            Err(StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for doc in found {
            let rev = doc.get("_rev").and_then(Value::as_str).map(str::to_owned);
            if let Ok(mut t) = serde_json::from_value::<Ticket>(Value::Object(doc)) {
                t.rev = rev;
                self.finish(&t).await?;
            }
        }
        Ok(())
    }

    fn pending(&self) -> Vec<(String, usize)> {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<_> = counts.iter().map(|(k, n)| (k.clone(), *n)).collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_doctype_is_valid() {
        assert!(Doctype::new(QUEUE).is_ok());
    }
}
