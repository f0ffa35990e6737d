//! [`RedisBroker`]: the job queue shared by every node.
//!
//! Keys, under `<prefix>jobs:`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `tickets` | hash | job id → the ticket as JSON (the source of truth) |
//! | `ready:<worker>` | list | ids due now, pushed left, taken from the right |
//! | `delayed` | sorted set | ids scored by `not_before` (Unix ms) |
//! | `running:<node>` | list | ids a node has taken and not yet finished or retried |
//! | `node:<node>` | string, expires | the node's lease, renewed every third of it |
//! | `nodes` | set | nodes that may hold running tickets |
//! | `domain:<domain>` | set | ids of an instance, for `forget_instance` |
//! | `counts` | hash | worker → tickets waiting or running (for `pending`) |
//! | `wake` (channel) | pub/sub | a worker name, when a ticket of it becomes due |
//!
//! Every change is one Lua script, so a ticket is always in exactly one of
//! `ready:*`, `delayed` or one `running:*` list. Taking a ticket moves its id into
//! the taker's `running` list in the same step. A node whose lease has expired is
//! dead: any node moves its running ids back to the front of their ready lists (or,
//! in [`Broker::recover`], to its own running list, so that the runner decides what
//! to do with them). A live node's running tickets are never touched.
//!
//! Delivery is at least once: a node cut from Redis for longer than its lease is
//! taken for dead while its jobs may still run.
//!
//! Waiting runners sleep until a `wake` message, the next delayed ticket's time, or
//! a poll interval, whichever comes first; due delayed tickets are promoted by
//! whichever node looks first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use hearth_jobs::{Broker, JobsError, JobsResult, Ticket};
use redis::Script;
use redis::aio::ConnectionManager;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::{Redis, RedisError, RedisResult, listen, millis, now_ms, token};

/// How a [`RedisBroker`] runs.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// This node's name; a random one by default. A name stable across restarts
    /// lets a restarted node recover its own unfinished jobs at once. Two live
    /// nodes must never share one.
    pub node_id: Option<String>,
    /// How long a node that stopped renewing its lease still counts as alive.
    pub lease: Duration,
    /// The longest a waiting runner sleeps without a wake-up message.
    pub poll: Duration,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        Self {
            node_id: None,
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(2),
        }
    }
}

/// The Redis job broker. Dropping it stops its lease: its running tickets go to
/// other nodes once the lease expires.
pub struct RedisBroker {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

struct Inner {
    conn: ConnectionManager,
    /// `<prefix>jobs:`.
    keys: String,
    node: String,
    options: BrokerOptions,
    scripts: Scripts,
    lanes: Mutex<HashMap<String, Arc<Notify>>>,
    counts: Mutex<Vec<(String, usize)>>,
}

impl RedisBroker {
    /// Registers this node (its first lease) and starts renewing it, reaping dead
    /// nodes, and listening for wake-ups. Needs a Tokio runtime.
    pub async fn start(redis: &Redis, options: BrokerOptions) -> RedisResult<Self> {
        let node = options.node_id.clone().unwrap_or_else(token);
        let inner = Arc::new(Inner {
            conn: redis.conn(),
            keys: redis.key("jobs:"),
            node,
            options,
            scripts: Scripts::new(),
            lanes: Mutex::default(),
            counts: Mutex::default(),
        });
        inner.heartbeat().await?;
        inner.refresh_counts().await?;
        let mut pubsub = redis.pubsub().await?;
        pubsub.subscribe(inner.key("wake")).await?;
        let lease = {
            let inner = inner.clone();
            tokio::spawn(async move { inner.lease_loop().await })
        };
        let wake = {
            let inner = inner.clone();
            let redis = redis.clone();
            tokio::spawn(async move { inner.wake_loop(redis, pubsub).await })
        };
        Ok(Self {
            inner,
            tasks: vec![lease, wake],
        })
    }

    /// This node's name.
    pub fn node_id(&self) -> &str {
        &self.inner.node
    }

    /// Moves the running tickets of dead nodes back to their queues now (this also
    /// happens every third of a lease). Returns how many were moved.
    pub async fn reap(&self) -> RedisResult<usize> {
        self.inner.reap_dead(Mode::Requeue).await.map(|t| t.len())
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Into this node's running list, returned to the caller.
    Claim,
    /// Back to the front of their ready lists.
    Requeue,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Claim => "claim",
            Self::Requeue => "requeue",
        }
    }
}

impl Inner {
    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.keys)
    }

    fn lane(&self, worker: &str) -> Arc<Notify> {
        self.lanes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(worker.to_owned())
            .or_default()
            .clone()
    }

    fn wake(&self, worker: &str) {
        if let Some(lane) = self
            .lanes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(worker)
        {
            lane.notify_one();
        }
    }

    /// Records the counts a script returned (a flat `worker, n, …` list).
    fn set_counts(&self, flat: Vec<String>) {
        let mut counts: Vec<(String, usize)> = flat
            .chunks_exact(2)
            .map(|kv| {
                (
                    kv[0].clone(),
                    kv[1].parse::<i64>().unwrap_or(0).max(0) as usize,
                )
            })
            .collect();
        counts.sort();
        *self.counts.lock().unwrap_or_else(PoisonError::into_inner) = counts;
    }

    async fn refresh_counts(&self) -> RedisResult<()> {
        let flat: Vec<String> = redis::cmd("HGETALL")
            .arg(self.key("counts"))
            .query_async(&mut self.conn.clone())
            .await?;
        self.set_counts(flat);
        Ok(())
    }

    async fn heartbeat(&self) -> RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .cmd("SET")
            .arg(self.key(&format!("node:{}", self.node)))
            .arg(now_ms())
            .arg("PX")
            .arg(millis(self.options.lease))
            .ignore()
            .cmd("SADD")
            .arg(self.key("nodes"))
            .arg(&self.node)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// Renews the lease every third of it; reaps dead nodes on the way.
    async fn lease_loop(self: Arc<Self>) {
        let period = (self.options.lease / 3).max(Duration::from_millis(50));
        loop {
            tokio::time::sleep(period).await;
            if let Err(e) = self.heartbeat().await {
                tracing::warn!(error = %e, node = %self.node, "cannot renew this node's job lease");
                continue;
            }
            match self.reap_dead(Mode::Requeue).await {
                Ok(t) if !t.is_empty() => {
                    tracing::warn!(count = t.len(), "jobs of a stopped node queued again");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot recover the jobs of stopped nodes"),
            }
            if let Err(e) = self.refresh_counts().await {
                tracing::debug!(error = %e, "cannot refresh job counts");
            }
        }
    }

    /// Wakes a local runner for every `wake` message; resubscribes after a loss.
    async fn wake_loop(self: Arc<Self>, redis: Redis, first: redis::aio::PubSub) {
        listen(
            redis,
            self.key("wake"),
            first,
            (
                "lost the job wake-up subscription; reconnecting",
                "job wake-ups",
            ),
            |msg| {
                if let Ok(worker) = msg.get_payload::<String>() {
                    self.wake(&worker);
                }
            },
            || {
                // Whatever was published meanwhile: let every lane look.
                for lane in self
                    .lanes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .values()
                {
                    lane.notify_waiters();
                }
            },
        )
        .await;
    }

    /// The running tickets of every dead node (and, when claiming, this node's own
    /// left by a previous process with the same name).
    async fn reap_dead(&self, mode: Mode) -> RedisResult<Vec<Ticket>> {
        let mut conn = self.conn.clone();
        let nodes: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.key("nodes"))
            .query_async(&mut conn)
            .await?;
        let mut targets: Vec<&str> = nodes
            .iter()
            .map(String::as_str)
            .filter(|n| *n != self.node)
            .collect();
        if mode == Mode::Claim {
            targets.push(&self.node);
        }
        let mut tickets = Vec::new();
        for target in targets {
            let found: Vec<String> = self
                .scripts
                .reap
                .arg(&self.keys)
                .arg(&self.node)
                .arg(target)
                .arg(mode.as_str())
                .invoke_async(&mut conn)
                .await?;
            if !found.is_empty() {
                tracing::info!(
                    node = target,
                    count = found.len(),
                    "jobs of a stopped node recovered"
                );
            }
            tickets.extend(found.iter().filter_map(|j| parse(j)));
        }
        Ok(tickets)
    }

    /// Takes the next due ticket of `worker`, or says when to look again.
    async fn take(&self, worker: &str) -> RedisResult<(Option<Ticket>, Option<u64>)> {
        let (json, next_due, counts): (String, String, Vec<String>) = self
            .scripts
            .take
            .arg(&self.keys)
            .arg(worker)
            .arg(&self.node)
            .arg(now_ms())
            .invoke_async(&mut self.conn.clone())
            .await?;
        self.set_counts(counts);
        let next_due = next_due.parse::<f64>().ok().map(|f| f as u64);
        if json.is_empty() {
            return Ok((None, next_due));
        }
        match parse(&json) {
            Some(t) => Ok((Some(t), next_due)),
            None => Err(RedisError::Protocol(format!(
                "unreadable job ticket {json:?}"
            ))),
        }
    }

    async fn invoke_counts(&self, invocation: redis::ScriptInvocation<'_>) -> JobsResult<()> {
        let counts: Vec<String> = invocation
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(internal)?;
        self.set_counts(counts);
        Ok(())
    }
}

fn parse(json: &str) -> Option<Ticket> {
    match serde_json::from_str::<Ticket>(json) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(error = %e, "unreadable job ticket skipped");
            None
        }
    }
}

fn internal(e: redis::RedisError) -> JobsError {
    JobsError::Internal(format!("job queue (Redis): {e}"))
}

fn to_json(ticket: &Ticket) -> JobsResult<String> {
    serde_json::to_string(ticket).map_err(|e| JobsError::Internal(e.to_string()))
}

#[async_trait]
impl Broker for RedisBroker {
    async fn enqueue(&self, ticket: Ticket) -> JobsResult<()> {
        let inner = &self.inner;
        let mut invocation = inner.scripts.enqueue.prepare_invoke();
        invocation
            .arg(&inner.keys)
            .arg(&ticket.job_id)
            .arg(to_json(&ticket)?)
            .arg(&ticket.worker)
            .arg(&ticket.domain)
            .arg(ticket.not_before)
            .arg(now_ms());
        inner.invoke_counts(invocation).await?;
        inner.wake(&ticket.worker);
        Ok(())
    }

    async fn next(&self, worker: &str) -> Ticket {
        let inner = &self.inner;
        let lane = inner.lane(worker);
        let mut failures = 0u32;
        loop {
            let notified = lane.notified();
            let wait = match inner.take(worker).await {
                Ok((Some(ticket), _)) => return ticket,
                Ok((None, next_due)) => {
                    failures = 0;
                    let until_due = next_due.map_or(inner.options.poll, |due| {
                        Duration::from_millis(due.saturating_sub(now_ms()))
                    });
                    until_due
                        .min(inner.options.poll)
                        .max(Duration::from_millis(5))
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    // Logged at the 1st, 2nd, 4th, 8th… failure in a row.
                    if failures.is_power_of_two() {
                        tracing::error!(error = %e, worker, "cannot take jobs from Redis");
                    }
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn started(&self, ticket: &mut Ticket) -> JobsResult<()> {
        let inner = &self.inner;
        let mut invocation = inner.scripts.started.prepare_invoke();
        invocation
            .arg(&inner.keys)
            .arg(&ticket.job_id)
            .arg(to_json(ticket)?);
        inner.invoke_counts(invocation).await
    }

    async fn retry(&self, ticket: Ticket) -> JobsResult<()> {
        let inner = &self.inner;
        let mut invocation = inner.scripts.retry.prepare_invoke();
        invocation
            .arg(&inner.keys)
            .arg(&ticket.job_id)
            .arg(to_json(&ticket)?)
            .arg(&ticket.worker)
            .arg(&inner.node)
            .arg(ticket.not_before)
            .arg(now_ms());
        inner.invoke_counts(invocation).await?;
        inner.wake(&ticket.worker);
        Ok(())
    }

    async fn finish(&self, ticket: &Ticket) -> JobsResult<()> {
        let inner = &self.inner;
        let mut invocation = inner.scripts.finish.prepare_invoke();
        invocation
            .arg(&inner.keys)
            .arg(&ticket.job_id)
            .arg(&inner.node);
        inner.invoke_counts(invocation).await
    }

    async fn recover(&self) -> JobsResult<Vec<Ticket>> {
        let tickets = self
            .inner
            .reap_dead(Mode::Claim)
            .await
            .map_err(|e| JobsError::Internal(e.to_string()))?;
        let _ = self.inner.refresh_counts().await;
        Ok(tickets)
    }

    async fn forget_instance(&self, domain: &str) -> JobsResult<()> {
        let inner = &self.inner;
        let mut invocation = inner.scripts.forget.prepare_invoke();
        invocation.arg(&inner.keys).arg(domain);
        inner.invoke_counts(invocation).await
    }

    fn pending(&self) -> Vec<(String, usize)> {
        self.inner
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The scripts; each gets the key prefix (`<prefix>jobs:`) as `ARGV[1]`.
struct Scripts {
    enqueue: Script,
    take: Script,
    started: Script,
    retry: Script,
    finish: Script,
    forget: Script,
    reap: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            enqueue: Script::new(&format!("{PRELUDE}{ENQUEUE}")),
            take: Script::new(&format!("{PRELUDE}{TAKE}")),
            started: Script::new(&format!("{PRELUDE}{STARTED}")),
            retry: Script::new(&format!("{PRELUDE}{RETRY}")),
            finish: Script::new(&format!("{PRELUDE}{FINISH}")),
            forget: Script::new(&format!("{PRELUDE}{FORGET}")),
            reap: Script::new(&format!("{PRELUDE}{REAP}")),
        }
    }
}

/// Shared by every script: the prefix, the counts, and the two moves every
/// script needs (queue a ticket where it belongs; delete one everywhere but the
/// lists, which heal themselves: an id without a ticket is skipped).
const PRELUDE: &str = r"
local p = ARGV[1]
local function counts()
  return redis.call('HGETALL', p .. 'counts')
end
local function place(id, worker, nb, now)
  if nb > now then
    redis.call('ZADD', p .. 'delayed', nb, id)
  else
    redis.call('LPUSH', p .. 'ready:' .. worker, id)
    redis.call('PUBLISH', p .. 'wake', worker)
  end
end
local function drop(id)
  local j = redis.call('HGET', p .. 'tickets', id)
  if not j then return false end
  local t = cjson.decode(j)
  redis.call('HDEL', p .. 'tickets', id)
  redis.call('SREM', p .. 'domain:' .. t.domain, id)
  redis.call('ZREM', p .. 'delayed', id)
  if redis.call('HINCRBY', p .. 'counts', t.worker, -1) < 0 then
    redis.call('HSET', p .. 'counts', t.worker, 0)
  end
  return t
end
";

/// `id, json, worker, domain, not_before, now`.
const ENQUEUE: &str = r"
local id, j, w, d = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local nb, now = tonumber(ARGV[6]), tonumber(ARGV[7])
local old = drop(id)
if old then
  redis.call('LREM', p .. 'ready:' .. old.worker, 0, id)
end
redis.call('HSET', p .. 'tickets', id, j)
redis.call('SADD', p .. 'domain:' .. d, id)
redis.call('HINCRBY', p .. 'counts', w, 1)
place(id, w, nb, now)
return counts()
";

/// `worker, node, now` → `{ticket json or '', next delayed score or '', counts}`.
const TAKE: &str = r"
local w, node, now = ARGV[2], ARGV[3], tonumber(ARGV[4])
local due = redis.call('ZRANGEBYSCORE', p .. 'delayed', '-inf', now, 'LIMIT', 0, 100)
for _, id in ipairs(due) do
  redis.call('ZREM', p .. 'delayed', id)
  local j = redis.call('HGET', p .. 'tickets', id)
  if j then
    local t = cjson.decode(j)
    redis.call('LPUSH', p .. 'ready:' .. t.worker, id)
    if t.worker ~= w then
      redis.call('PUBLISH', p .. 'wake', t.worker)
    end
  end
end
local function next_due()
  local first = redis.call('ZRANGE', p .. 'delayed', 0, 0, 'WITHSCORES')
  return first[2] or ''
end
local running = p .. 'running:' .. node
for _ = 1, 100 do
  local id = redis.call('LMOVE', p .. 'ready:' .. w, running, 'RIGHT', 'LEFT')
  if not id then break end
  local j = redis.call('HGET', p .. 'tickets', id)
  if j then
    return {j, next_due(), counts()}
  end
  redis.call('LREM', running, 1, id)
end
return {'', next_due(), counts()}
";

/// `id, json`: only a ticket still known is updated.
const STARTED: &str = r"
local id, j = ARGV[2], ARGV[3]
if redis.call('HEXISTS', p .. 'tickets', id) == 1 then
  redis.call('HSET', p .. 'tickets', id, j)
end
return counts()
";

/// `id, json, worker, node, not_before, now`: from the node's running list back to
/// the queue, unless the ticket was dropped meanwhile.
const RETRY: &str = r"
local id, j, w, node = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local nb, now = tonumber(ARGV[6]), tonumber(ARGV[7])
redis.call('LREM', p .. 'running:' .. node, 0, id)
if redis.call('HEXISTS', p .. 'tickets', id) == 0 then
  return counts()
end
redis.call('HSET', p .. 'tickets', id, j)
redis.call('ZREM', p .. 'delayed', id)
place(id, w, nb, now)
return counts()
";

/// `id, node`.
const FINISH: &str = r"
local id, node = ARGV[2], ARGV[3]
redis.call('LREM', p .. 'running:' .. node, 0, id)
drop(id)
return counts()
";

/// `domain`: its waiting tickets leave their queues; running ones are forgotten
/// (their runner's `finish` or `retry` then finds nothing).
const FORGET: &str = r"
local d = ARGV[2]
local ids = redis.call('SMEMBERS', p .. 'domain:' .. d)
for _, id in ipairs(ids) do
  local t = drop(id)
  if t then
    redis.call('LREM', p .. 'ready:' .. t.worker, 0, id)
  end
end
redis.call('DEL', p .. 'domain:' .. d)
return counts()
";

/// `self, target, mode`: nothing while the target's lease lives (unless it is this
/// node); else its running ids go to this node's running list (`claim`) or back to
/// the front of their queues (`requeue`). Returns the tickets moved.
const REAP: &str = r"
local me, target, mode = ARGV[2], ARGV[3], ARGV[4]
if target ~= me and redis.call('EXISTS', p .. 'node:' .. target) == 1 then
  return {}
end
local src = p .. 'running:' .. target
local ids = redis.call('LRANGE', src, 0, -1)
redis.call('DEL', src)
if target ~= me then
  redis.call('SREM', p .. 'nodes', target)
end
local out = {}
for i = #ids, 1, -1 do
  local id = ids[i]
  local j = redis.call('HGET', p .. 'tickets', id)
  if j then
    if mode == 'claim' then
      redis.call('LPUSH', p .. 'running:' .. me, id)
    else
      local t = cjson.decode(j)
      redis.call('RPUSH', p .. 'ready:' .. t.worker, id)
      redis.call('PUBLISH', p .. 'wake', t.worker)
    end
    table.insert(out, j)
  end
end
return out
";
