//! Triggers: the API on [`Jobs`] (create, list, patch, delete, launch, webhooks)
//! and the scheduler that fires them on time or on document events.
//!
//! Each active timed or `@event` trigger has an entry in the global store
//! ([`SCHEDULE`]), so the scheduler starts from one table instead of opening every
//! instance; the trigger document in the instance stays the source of truth (an
//! entry whose trigger is gone is dropped when it fires). A timer missed while the
//! server was down fires once at the next start.
//!
//! Several nodes on one shared store (with a shared broker) run one scheduler each:
//! [`Jobs::set_leader_check`] makes timed triggers fire only on the node that leads,
//! and [`Jobs::set_schedule_refresh`] re-reads the entries every few seconds, so that
//! a trigger created on one node fires on the leader and `@event` triggers created
//! on one node match writes made on another. A firing is claimed by writing the
//! entry's next time (or deleting a one-shot's entry) with the revision the node
//! knows, before the job is pushed: a node with a stale view (a leader that was just
//! replaced) gets a conflict and reloads instead of firing a second time.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hearth_core::{InstanceId, JsonMap, now_rfc3339};
use hearth_instances::Instance;
use hearth_store::events::{Event, EventObserver, Interest};
use hearth_store::{AllDocsQuery, GetOptions, StoreError};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use crate::model::{EventRule, JobOptions, Period, Schedule, TRIGGERS, Trigger};
use crate::{
    Job, JobRequest, Jobs, JobsError, JobsResult, doctype, duration, instance_key, now_ms,
};

/// The scheduler's entries (global store).
pub const SCHEDULE: &str = "io.hearth.jobs.schedule";

/// What `POST /jobs/triggers` asks for.
#[derive(Debug, Clone, Default)]
pub struct TriggerRequest {
    pub kind: String,
    pub arguments: String,
    pub worker: String,
    pub message: Value,
    pub options: Option<JobOptions>,
    pub debounce: Option<String>,
}

#[derive(Debug, Clone)]
struct Entry {
    key: String,
    domain: String,
    instance: InstanceId,
    trigger_id: String,
    schedule: Schedule,
    debounce: Option<Duration>,
    /// Unix ms of the next firing (timed triggers).
    next_at: Option<u64>,
    rev: Option<String>,
    kind: String,
    arguments: String,
    /// The local change that set this entry (see [`State::generation`]); 0 when it
    /// was read from the store.
    generation: u64,
}

/// A trigger every instance has, built into the server (thumbnails).
#[derive(Debug, Clone)]
struct Internal {
    /// Every rule must match.
    all_of: Vec<EventRule>,
    worker: String,
}

#[derive(Default)]
struct State {
    timers: BTreeSet<(u64, String)>,
    entries: HashMap<String, Entry>,
    /// Keys of the `@event` entries of each instance.
    by_instance: HashMap<InstanceId, Vec<String>>,
    internal: Vec<Internal>,
    /// Debounced triggers waiting for their delay: key → last event.
    pending: HashMap<String, Value>,
    /// Domains of instance ids seen by internal triggers.
    domains: HashMap<InstanceId, String>,
    /// Counts the local changes of `entries`, so that a refresh that read the store
    /// before a change does not undo it.
    generation: u64,
    /// Entries removed locally, with the generation of their removal (until the next
    /// refresh that started after it).
    removed: HashMap<String, u64>,
}

/// Whether this node may fire timed triggers now (the leader of a cluster).
pub type LeaderCheck = Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Default)]
pub(crate) struct SchedShared {
    state: Mutex<State>,
    wake: Notify,
    leader: Mutex<Option<LeaderCheck>>,
    refresh: Mutex<Option<Duration>>,
}

/// How often a follower looks again at a due timer (the leader fires it and the
/// refresh brings its next time).
const FOLLOWER_POLL: Duration = Duration::from_secs(1);

impl SchedShared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether timed triggers fire on this node (and finished jobs are cleaned).
    pub(crate) fn leads(&self) -> bool {
        let check = self
            .leader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        check.is_none_or(|leads| leads())
    }

    /// Sets an entry after a local change.
    fn insert(&self, mut entry: Entry) {
        let mut st = self.state();
        st.generation += 1;
        entry.generation = st.generation;
        st.removed.remove(&entry.key);
        insert_locked(&mut st, entry);
        drop(st);
        self.wake.notify_one();
    }

    /// Forgets an entry after a local change.
    fn remove(&self, key: &str) -> Option<Entry> {
        let mut st = self.state();
        st.generation += 1;
        let generation = st.generation;
        st.removed.insert(key.to_owned(), generation);
        remove_locked(&mut st, key)
    }

    /// Lays the entries read from the store over the memory: changed ones replace
    /// their copy, new ones are added, missing ones go, unless a local change made
    /// after `since` (the generation when the reading began) is newer.
    fn reconcile(&self, since: u64, stored: Vec<Entry>) {
        let mut st = self.state();
        let mut seen = std::collections::HashSet::new();
        for entry in stored {
            seen.insert(entry.key.clone());
            if st.removed.get(&entry.key).is_some_and(|g| *g > since) {
                continue;
            }
            match st.entries.get(&entry.key) {
                Some(mine) if mine.rev == entry.rev || mine.generation > since => continue,
                _ => insert_locked(&mut st, entry),
            }
        }
        let gone: Vec<String> = st
            .entries
            .values()
            .filter(|e| !seen.contains(&e.key) && e.generation <= since)
            .map(|e| e.key.clone())
            .collect();
        for key in gone {
            remove_locked(&mut st, &key);
        }
        st.removed.retain(|_, g| *g > since);
        drop(st);
        self.wake.notify_one();
    }
}

fn insert_locked(st: &mut State, entry: Entry) {
    remove_locked(st, &entry.key);
    if let Some(at) = entry.next_at {
        st.timers.insert((at, entry.key.clone()));
    }
    if matches!(entry.schedule, Schedule::Event(_)) {
        st.by_instance
            .entry(entry.instance.clone())
            .or_default()
            .push(entry.key.clone());
    }
    st.entries.insert(entry.key.clone(), entry);
}

fn remove_locked(st: &mut State, key: &str) -> Option<Entry> {
    let old = st.entries.remove(key)?;
    if let Some(at) = old.next_at {
        st.timers.remove(&(at, key.to_owned()));
    }
    if let Some(keys) = st.by_instance.get_mut(&old.instance) {
        keys.retain(|k| k != key);
        if keys.is_empty() {
            st.by_instance.remove(&old.instance);
        }
    }
    st.pending.remove(key);
    Some(old)
}

/// Feeds document events to the dispatcher; decides which writes need events.
struct Observer {
    shared: Arc<SchedShared>,
    tx: mpsc::UnboundedSender<Arc<Event>>,
}

impl EventObserver for Observer {
    fn interest(&self, inst: &InstanceId, dt: &hearth_core::Doctype) -> Interest {
        if inst.as_str() == InstanceId::GLOBAL {
            return Interest::None;
        }
        let st = self.shared.state();
        let mut interest = Interest::None;
        let mut consider = |rules: &[EventRule]| {
            for r in rules.iter().filter(|r| r.doctype == dt.as_str()) {
                interest = interest.max(if r.needs_old() {
                    Interest::WithOld
                } else {
                    Interest::Event
                });
            }
        };
        for i in &st.internal {
            if i.all_of.iter().any(|r| r.doctype == dt.as_str()) {
                consider(&i.all_of);
            }
        }
        for key in st.by_instance.get(inst).into_iter().flatten() {
            if let Some(Entry {
                schedule: Schedule::Event(rules),
                ..
            }) = st.entries.get(key)
            {
                consider(rules);
            }
        }
        interest
    }

    fn observe(&self, event: &Arc<Event>) {
        let _ = self.tx.send(event.clone());
    }
}

/// A stable pseudo-random number from a trigger id (spreads periodic triggers).
fn spread(id: &str) -> u64 {
    // FNV-1a.
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The next firing (Unix ms) of a timed schedule strictly after `now_ms`.
fn next_firing(schedule: &Schedule, trigger_id: &str, now: u64) -> Option<u64> {
    let now_s = now / 1000;
    match schedule {
        Schedule::At(t) => Some(t.saturating_mul(1000)),
        Schedule::In(d) | Schedule::Every(d) => Some(now + d.as_millis() as u64),
        Schedule::Cron(c) => c.next_after(now_s).map(|t| t * 1000),
        Schedule::Periodic(p) => {
            let h = spread(trigger_id);
            let period = match p {
                Period::Hourly => 3600,
                Period::Daily => 86_400,
                Period::Weekly => 7 * 86_400,
                Period::Monthly => {
                    let day = 1 + (h % 28) as i64;
                    let second = (h / 28) % 86_400;
                    let (y, m, _) = hearth_core::civil_from_days((now_s / 86_400) as i64);
                    for (y, m) in [(y, m), if m == 12 { (y + 1, 1) } else { (y, m + 1) }] {
                        let t = hearth_core::days_from_civil(y, m, day) as u64 * 86_400 + second;
                        if t > now_s {
                            return Some(t * 1000);
                        }
                    }
                    return None;
                }
            };
            let offset = h % period;
            let mut t = now_s - now_s % period + offset;
            if t <= now_s {
                t += period;
            }
            Some(t * 1000)
        }
        _ => None,
    }
}

fn entry_doc(e: &Entry) -> JsonMap {
    let mut doc = JsonMap::new();
    doc.insert("_id".into(), json!(e.key));
    if let Some(rev) = &e.rev {
        doc.insert("_rev".into(), json!(rev));
    }
    doc.insert("domain".into(), json!(e.domain));
    doc.insert("instance".into(), json!(e.instance.as_str()));
    doc.insert("trigger_id".into(), json!(e.trigger_id));
    doc.insert("type".into(), json!(e.kind));
    doc.insert("arguments".into(), json!(e.arguments));
    if let Some(d) = e.debounce {
        doc.insert("debounce_ms".into(), json!(d.as_millis() as u64));
    }
    if let Some(at) = e.next_at {
        doc.insert("next_at".into(), json!(at));
    }
    doc
}

fn entry_from_doc(doc: &JsonMap) -> Option<Entry> {
    let s = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_owned);
    let kind = s("type")?;
    let arguments = s("arguments").unwrap_or_default();
    let schedule = Schedule::parse(&kind, &arguments).ok()?;
    Some(Entry {
        key: s("_id")?,
        domain: s("domain")?,
        instance: InstanceId::new(s("instance")?).ok()?,
        trigger_id: s("trigger_id")?,
        schedule,
        debounce: doc
            .get("debounce_ms")
            .and_then(Value::as_u64)
            .map(Duration::from_millis),
        next_at: doc.get("next_at").and_then(Value::as_u64),
        rev: s("_rev"),
        kind,
        arguments,
        generation: 0,
    })
}

impl Jobs {
    /// Adds a trigger every instance has: `all_of` rules on document events push a
    /// job of `worker` with the event (e.g. thumbnails of images). Before `start`.
    pub fn add_internal_trigger(&self, all_of: Vec<EventRule>, worker: &str) {
        self.sched.state().internal.push(Internal {
            all_of,
            worker: worker.to_owned(),
        });
    }

    /// Fires timed triggers, and cleans finished jobs, only while `leads` answers
    /// true (the node holding a cluster's leader lease); `@event` triggers still
    /// fire where the write happened. Before [`Jobs::start`]; use with [`Jobs::set_schedule_refresh`].
    pub fn set_leader_check(&self, leads: LeaderCheck) {
        *self
            .sched
            .leader
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(leads);
    }

    /// Reads the scheduler's entries from the store again every `every`, so that
    /// triggers created, changed, fired or deleted by other nodes sharing the store
    /// are seen here. Before [`Jobs::start`].
    pub fn set_schedule_refresh(&self, every: Duration) {
        *self
            .sched
            .refresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(every.max(Duration::from_millis(50)));
    }

    /// Every entry of the global table.
    async fn read_entries(&self) -> JobsResult<Vec<Entry>> {
        let all = self
            .instance_store()
            .all_docs(
                &InstanceId::global(),
                &doctype(SCHEDULE),
                &AllDocsQuery {
                    include_docs: true,
                    inclusive_end: true,
                    ..Default::default()
                },
            )
            .await;
        let rows = match all {
            Ok(a) => a.rows,
            Err(StoreError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let now = now_ms();
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(doc) = row.doc else { continue };
            match entry_from_doc(&doc) {
                Some(mut e) => {
                    if e.schedule.is_timed() && e.next_at.is_none() {
                        e.next_at = next_firing(&e.schedule, &e.trigger_id, now);
                    }
                    entries.push(e);
                }
                None => tracing::warn!(id = %row.id, "unreadable scheduler entry skipped"),
            }
        }
        Ok(entries)
    }

    pub(crate) async fn start_scheduler(self: &Arc<Self>) -> JobsResult<()> {
        let since = self.sched.state().generation;
        let entries = self.read_entries().await?;
        self.sched.reconcile(since, entries);
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some(hub) = self.instance_store().event_hub() {
            hub.observe(Arc::new(Observer {
                shared: self.sched.clone(),
                tx,
            }));
        } else {
            tracing::warn!("the document store publishes no events: @event triggers will not fire");
        }
        let jobs = self.clone();
        tokio::spawn(async move { jobs.timer_loop().await });
        let jobs = self.clone();
        tokio::spawn(async move { jobs.event_loop(rx).await });
        let refresh = *self
            .sched
            .refresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(every) = refresh {
            let jobs = Arc::downgrade(self);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let Some(jobs) = jobs.upgrade() else { return };
                    jobs.refresh_entries().await;
                }
            });
        }
        Ok(())
    }

    /// Brings the entries in memory up to date with the store.
    async fn refresh_entries(&self) {
        let since = self.sched.state().generation;
        match self.read_entries().await {
            Ok(entries) => self.sched.reconcile(since, entries),
            Err(e) => tracing::warn!(error = %e, "cannot refresh the trigger schedule"),
        }
    }

    async fn timer_loop(self: Arc<Self>) {
        loop {
            let notified = self.sched.wake.notified();
            let first = self.sched.state().timers.first().cloned();
            let now = now_ms();
            match first {
                None => notified.await,
                // A follower leaves due timers to the leader, and looks again soon:
                // the refresh brings the next time the leader recorded, or this
                // node becomes the leader.
                Some((at, _)) if at <= now && !self.sched.leads() => {
                    tokio::select! {
                        () = tokio::time::sleep(FOLLOWER_POLL) => {}
                        () = notified => {}
                    }
                }
                Some((at, key)) if at <= now => {
                    self.sched.state().timers.remove(&(at, key.clone()));
                    self.fire_timer(&key).await;
                }
                Some((at, _)) => {
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(at - now)) => {}
                        () = notified => {}
                    }
                }
            }
        }
    }

    /// Puts an entry back to be tried again in a minute.
    fn retry_later(&self, mut entry: Entry) {
        entry.next_at = Some(now_ms() + 60_000);
        self.sched.insert(entry);
    }

    /// Reads one entry again from the store (after a conflict: another node fired
    /// it or changed it).
    async fn reload_entry(&self, entry: Entry) {
        let since = self.sched.state().generation;
        let got = self
            .instance_store()
            .get(
                &InstanceId::global(),
                &doctype(SCHEDULE),
                &entry.key,
                GetOptions::default(),
            )
            .await;
        match got {
            Ok(doc) => match entry_from_doc(&doc) {
                Some(fresh) => {
                    let mut st = self.sched.state();
                    if st
                        .entries
                        .get(&fresh.key)
                        .is_none_or(|e| e.generation <= since)
                    {
                        insert_locked(&mut st, fresh);
                    }
                    drop(st);
                    self.sched.wake.notify_one();
                }
                None => {
                    self.sched.remove(&entry.key);
                }
            },
            Err(StoreError::NotFound(_)) => {
                self.sched.remove(&entry.key);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read a trigger's schedule; trying again in a minute");
                self.retry_later(entry);
            }
        }
    }

    /// Records in the store that this node fires the entry now: the next firing of
    /// a recurring trigger, the removal of a one-shot's entry. False when another
    /// node did first (or the trigger changed): the entry is reloaded instead.
    async fn claim(&self, entry: &Entry) -> bool {
        let written = if matches!(entry.schedule, Schedule::At(_) | Schedule::In(_)) {
            let Some(rev) = entry.rev.as_deref().and_then(|r| r.parse().ok()) else {
                return true;
            };
            self.instance_store()
                .delete(&InstanceId::global(), &doctype(SCHEDULE), &entry.key, &rev)
                .await
                .map(|_| ())
        } else {
            let mut next = entry.clone();
            next.next_at = next_firing(&entry.schedule, &entry.trigger_id, now_ms());
            match self.save_entry(&mut next).await {
                Ok(()) => {
                    self.sched.insert(next);
                    return true;
                }
                Err(JobsError::Store(e)) => Err(e),
                Err(e) => Err(StoreError::invalid(e.to_string())),
            }
        };
        match written {
            Ok(()) => true,
            Err(StoreError::Conflict | StoreError::NotFound(_)) => {
                self.reload_entry(entry.clone()).await;
                false
            }
            Err(e) => {
                tracing::error!(trigger = %entry.trigger_id, error = %e, "cannot record a trigger's firing; trying again in a minute");
                self.retry_later(entry.clone());
                false
            }
        }
    }

    async fn fire_timer(&self, key: &str) {
        let Some(entry) = self.sched.state().entries.get(key).cloned() else {
            return;
        };
        let inst = match self.instances().get_str(&entry.domain).await {
            Ok(i) => i,
            Err(hearth_instances::InstanceError::NotFound) => {
                self.drop_entry(key).await;
                return;
            }
            Err(e) => {
                tracing::error!(domain = %entry.domain, error = %e, "cannot load the instance of a trigger; trying again in a minute");
                self.retry_later(entry);
                return;
            }
        };
        let trigger = match self.entry_trigger(&entry).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                self.drop_entry(key).await;
                return;
            }
            Err(e) => {
                tracing::error!(domain = %entry.domain, error = %e, "cannot load a trigger; trying again in a minute");
                self.retry_later(entry);
                return;
            }
        };
        if !self.claim(&entry).await {
            return;
        }
        let req = JobRequest {
            worker: trigger.worker.clone(),
            message: trigger.message.clone(),
            options: trigger.options.clone(),
            trigger_id: Some(trigger.id.clone()),
            ..Default::default()
        };
        match self.push(&inst, req).await {
            Ok(job) => {
                tracing::info!(domain = %entry.domain, trigger = %trigger.id, job = %job.id, "trigger fired")
            }
            Err(e) => {
                tracing::error!(domain = %entry.domain, trigger = %trigger.id, error = %e, "trigger could not push its job")
            }
        }
        if matches!(entry.schedule, Schedule::At(_) | Schedule::In(_)) {
            // One-shot triggers go away once fired, as in the Cozy stack.
            if let Err(e) = self.delete_trigger(&inst, &trigger.id).await {
                tracing::error!(trigger = %trigger.id, error = %e, "cannot remove a fired one-shot trigger");
                self.drop_entry(key).await;
            }
        }
    }

    /// The trigger document of an entry; `None` when it is gone.
    async fn entry_trigger(&self, entry: &Entry) -> JobsResult<Option<Trigger>> {
        match self
            .instance_store()
            .get(
                &entry.instance,
                &doctype(TRIGGERS),
                &entry.trigger_id,
                GetOptions::default(),
            )
            .await
        {
            Ok(doc) => Ok(Trigger::from_doc(doc).ok()),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn event_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Arc<Event>>) {
        while let Some(event) = rx.recv().await {
            self.dispatch(&event).await;
        }
    }

    async fn dispatch(self: &Arc<Self>, event: &Event) {
        let verb = event.verb.as_str();
        let dt = event.doctype.as_str();
        let (entries, internal) = {
            let st = self.sched.state();
            let entries: Vec<Entry> = st
                .by_instance
                .get(&event.instance)
                .into_iter()
                .flatten()
                .filter_map(|k| st.entries.get(k))
                .filter(|e| match &e.schedule {
                    Schedule::Event(rules) => rules
                        .iter()
                        .any(|r| r.matches(dt, verb, &event.doc, event.old.as_ref())),
                    _ => false,
                })
                .cloned()
                .collect();
            let internal: Vec<String> = st
                .internal
                .iter()
                .filter(|i| {
                    i.all_of
                        .iter()
                        .all(|r| r.matches(dt, verb, &event.doc, event.old.as_ref()))
                })
                .map(|i| i.worker.clone())
                .collect();
            (entries, internal)
        };
        if entries.is_empty() && internal.is_empty() {
            return;
        }
        let domain = match entries.first() {
            Some(e) => e.domain.clone(),
            None => match self.domain_of(&event.instance).await {
                Some(d) => d,
                None => return,
            },
        };
        let mut payload = json!({"domain": domain, "verb": verb, "doc": event.doc});
        if let Some(old) = &event.old {
            payload["old"] = Value::Object(old.clone());
        }
        let Ok(inst) = self.instances().get_str(&domain).await else {
            return;
        };
        for worker in internal {
            let req = JobRequest {
                worker,
                message: json!({}),
                event: Some(payload.clone()),
                ..Default::default()
            };
            if let Err(e) = self.push(&inst, req).await {
                tracing::error!(domain = %domain, error = %e, "internal trigger could not push its job");
            }
        }
        for entry in entries {
            match entry.debounce {
                Some(delay) if !delay.is_zero() => {
                    let first = self
                        .sched
                        .state()
                        .pending
                        .insert(entry.key.clone(), payload.clone())
                        .is_none();
                    if first {
                        let jobs = self.clone();
                        let inst = inst.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let last = jobs.sched.state().pending.remove(&entry.key);
                            if let Some(last) = last {
                                jobs.fire_event(&inst, &entry, last).await;
                            }
                        });
                    }
                }
                _ => self.fire_event(&inst, &entry, payload.clone()).await,
            }
        }
    }

    async fn fire_event(&self, inst: &Instance, entry: &Entry, event: Value) {
        let trigger = match self.entry_trigger(entry).await {
            Ok(Some(t)) => t,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(trigger = %entry.trigger_id, error = %e, "cannot load an @event trigger");
                return;
            }
        };
        let req = JobRequest {
            worker: trigger.worker.clone(),
            message: trigger.message.clone(),
            options: trigger.options.clone(),
            trigger_id: Some(trigger.id.clone()),
            event: Some(event),
            ..Default::default()
        };
        if let Err(e) = self.push(inst, req).await {
            tracing::error!(domain = %inst.domain, trigger = %trigger.id, error = %e, "@event trigger could not push its job");
        }
    }

    /// The domain of an instance id (internal triggers only know the id).
    async fn domain_of(&self, inst: &InstanceId) -> Option<String> {
        if let Some(d) = self.sched.state().domains.get(inst) {
            return Some(d.clone());
        }
        let q = hearth_store::mango::FindQuery::parse(&json!({
            "selector": {"prefix": inst.as_str()}, "limit": 1
        }))
        .ok()?;
        let found = self
            .instance_store()
            .find(&InstanceId::global(), &doctype("io.cozy.instances"), &q)
            .await
            .ok()?;
        let domain = found.docs.first()?.get("domain")?.as_str()?.to_owned();
        self.sched
            .state()
            .domains
            .insert(inst.clone(), domain.clone());
        Some(domain)
    }

    async fn save_entry(&self, entry: &mut Entry) -> JobsResult<()> {
        let written = self
            .instance_store()
            .put(&InstanceId::global(), &doctype(SCHEDULE), entry_doc(entry))
            .await?;
        entry.rev = Some(written.rev.to_string());
        Ok(())
    }

    async fn drop_entry(&self, key: &str) {
        let removed = self.sched.remove(key);
        let rev = removed.and_then(|e| e.rev).and_then(|r| r.parse().ok());
        if let Some(rev) = rev {
            let _ = self
                .instance_store()
                .delete(&InstanceId::global(), &doctype(SCHEDULE), key, &rev)
                .await;
        }
    }

    pub(crate) async fn forget_triggers(&self, inst: &InstanceId) -> JobsResult<()> {
        let keys: Vec<String> = self
            .sched
            .state()
            .entries
            .values()
            .filter(|e| &e.instance == inst)
            .map(|e| e.key.clone())
            .collect();
        for key in keys {
            self.drop_entry(&key).await;
        }
        self.sched.state().domains.remove(inst);
        Ok(())
    }

    // ---- The trigger API ----

    /// Validates and creates a trigger, and schedules it.
    pub async fn add_trigger(
        &self,
        inst: &Instance,
        req: TriggerRequest,
        admin: bool,
    ) -> JobsResult<Trigger> {
        self.create_trigger(inst, req, admin, None).await
    }

    /// Creates a trigger with a given id (an import keeps the ids of the source's
    /// triggers); an existing trigger with that id is a conflict.
    pub async fn restore_trigger(
        &self,
        inst: &Instance,
        id: &str,
        req: TriggerRequest,
    ) -> JobsResult<Trigger> {
        self.create_trigger(inst, req, true, Some(id.to_owned()))
            .await
    }

    /// Unschedules every trigger of an instance (the reset before an import, which
    /// then deletes their documents with the rest of the instance's data).
    pub async fn remove_all_triggers(&self, inst: &Instance) -> JobsResult<()> {
        self.forget_triggers(&inst.instance_id()).await
    }

    async fn create_trigger(
        &self,
        inst: &Instance,
        req: TriggerRequest,
        admin: bool,
        id: Option<String>,
    ) -> JobsResult<Trigger> {
        let schedule = Schedule::parse(&req.kind, &req.arguments).map_err(JobsError::Invalid)?;
        self.check_worker(&req.worker, admin)?;
        let debounce = match req.debounce.as_deref().filter(|d| !d.is_empty()) {
            Some(d) => Some(duration::parse(d).map_err(JobsError::BadDebounce)?),
            None => None,
        };
        if debounce.is_some() && !matches!(schedule, Schedule::Event(_)) {
            return Err(JobsError::BadDebounce(
                "only @event triggers can be debounced".into(),
            ));
        }
        let now = now_rfc3339();
        let mut trigger = Trigger {
            id: id.unwrap_or_else(hearth_core::new_doc_id),
            rev: None,
            domain: inst.domain.clone(),
            kind: req.kind,
            arguments: req.arguments,
            debounce: req.debounce.filter(|d| !d.is_empty()),
            worker: req.worker,
            message: req.message,
            options: req.options,
            cozy_metadata: Some(json!({
                "doctypeVersion": "1",
                "metadataVersion": 1,
                "createdAt": now,
                "updatedAt": now,
            })),
        };
        let written = self
            .instance_store()
            .put(&inst.instance_id(), &doctype(TRIGGERS), trigger.to_doc())
            .await?;
        trigger.rev = Some(written.rev.to_string());
        if let Err(e) = self
            .schedule_trigger(inst, &trigger, schedule, debounce)
            .await
        {
            // Nothing half-made: the trigger goes with its failed scheduling.
            let _ = self.remove_trigger_doc(inst, &trigger).await;
            return Err(e);
        }
        Ok(trigger)
    }

    async fn schedule_trigger(
        &self,
        inst: &Instance,
        trigger: &Trigger,
        schedule: Schedule,
        debounce: Option<Duration>,
    ) -> JobsResult<()> {
        if !schedule.is_timed() && !matches!(schedule, Schedule::Event(_)) {
            return Ok(());
        }
        let key = instance_key(&inst.instance_id(), &trigger.id);
        let old_rev = self
            .sched
            .state()
            .entries
            .get(&key)
            .and_then(|e| e.rev.clone());
        let mut entry = Entry {
            key,
            domain: inst.domain.clone(),
            instance: inst.instance_id(),
            trigger_id: trigger.id.clone(),
            next_at: next_firing(&schedule, &trigger.id, now_ms()),
            schedule,
            debounce,
            rev: old_rev,
            kind: trigger.kind.clone(),
            arguments: trigger.arguments.clone(),
            generation: 0,
        };
        if entry.schedule.is_timed() && entry.next_at.is_none() {
            return Err(JobsError::Invalid(format!(
                "the trigger {:?} {:?} never fires",
                trigger.kind, trigger.arguments
            )));
        }
        self.save_entry(&mut entry).await?;
        self.sched.insert(entry);
        Ok(())
    }

    async fn remove_trigger_doc(&self, inst: &Instance, trigger: &Trigger) -> JobsResult<()> {
        let rev = trigger
            .rev
            .as_deref()
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| JobsError::Internal("trigger without revision".into()))?;
        match self
            .instance_store()
            .delete(&inst.instance_id(), &doctype(TRIGGERS), &trigger.id, &rev)
            .await
        {
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_trigger(&self, inst: &Instance, id: &str) -> JobsResult<Trigger> {
        let doc = match self
            .instance_store()
            .get(
                &inst.instance_id(),
                &doctype(TRIGGERS),
                id,
                GetOptions::default(),
            )
            .await
        {
            Ok(d) => d,
            Err(StoreError::NotFound(_)) => return Err(JobsError::NotFound),
            Err(e) => return Err(e.into()),
        };
        Trigger::from_doc(doc).map_err(JobsError::Internal)
    }

    /// Triggers, optionally only of some workers and types.
    pub async fn list_triggers(
        &self,
        inst: &Instance,
        workers: &[String],
        types: &[String],
    ) -> JobsResult<Vec<Trigger>> {
        let mut selector = JsonMap::new();
        if !workers.is_empty() {
            selector.insert("worker".into(), json!({"$in": workers}));
        }
        if !types.is_empty() {
            selector.insert("type".into(), json!({"$in": types}));
        }
        let q = hearth_store::mango::FindQuery::parse(&json!({"selector": selector}))?;
        let docs = match self
            .instance_store()
            .find(&inst.instance_id(), &doctype(TRIGGERS), &q)
            .await
        {
            Ok(f) => f.docs,
            Err(StoreError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(docs
            .into_iter()
            .filter_map(|d| Trigger::from_doc(d).ok())
            .collect())
    }

    pub async fn delete_trigger(&self, inst: &Instance, id: &str) -> JobsResult<()> {
        let trigger = self.get_trigger(inst, id).await?;
        self.drop_entry(&instance_key(&inst.instance_id(), id))
            .await;
        self.remove_trigger_doc(inst, &trigger).await
    }

    /// `PATCH /jobs/triggers/:id`: new arguments (`@cron` only) and/or message.
    pub async fn patch_trigger(
        &self,
        inst: &Instance,
        id: &str,
        arguments: Option<String>,
        message: Option<Value>,
    ) -> JobsResult<Trigger> {
        let mut trigger = self.get_trigger(inst, id).await?;
        let mut reschedule = None;
        if let Some(args) = arguments {
            if trigger.kind != "@cron" {
                return Err(JobsError::Invalid(
                    "only the arguments of @cron triggers can be changed".into(),
                ));
            }
            reschedule = Some(Schedule::parse(&trigger.kind, &args).map_err(JobsError::Invalid)?);
            trigger.arguments = args;
        }
        if let Some(m) = message {
            trigger.message = m;
        }
        if let Some(Value::Object(meta)) = trigger.cozy_metadata.as_mut() {
            meta.insert("updatedAt".into(), json!(now_rfc3339()));
        }
        let written = self
            .instance_store()
            .put(&inst.instance_id(), &doctype(TRIGGERS), trigger.to_doc())
            .await?;
        trigger.rev = Some(written.rev.to_string());
        if let Some(schedule) = reschedule {
            self.schedule_trigger(inst, &trigger, schedule, None)
                .await?;
        }
        Ok(trigger)
    }

    /// `POST /jobs/triggers/:id/launch`: runs the trigger's job now.
    pub async fn launch_trigger(&self, inst: &Instance, id: &str) -> JobsResult<Job> {
        let trigger = self.get_trigger(inst, id).await?;
        self.push(
            inst,
            JobRequest {
                worker: trigger.worker,
                message: trigger.message,
                options: trigger.options,
                manual: true,
                trigger_id: Some(trigger.id),
                ..Default::default()
            },
        )
        .await
    }

    /// `POST /jobs/webhooks/:id`: a `@webhook` trigger's job, with the payload.
    pub async fn webhook(&self, inst: &Instance, id: &str, payload: Value) -> JobsResult<Job> {
        let trigger = self.get_trigger(inst, id).await?;
        if trigger.kind != "@webhook" {
            return Err(JobsError::NotFound);
        }
        self.push(
            inst,
            JobRequest {
                worker: trigger.worker,
                message: trigger.message,
                options: trigger.options,
                trigger_id: Some(trigger.id),
                payload: Some(payload),
                ..Default::default()
            },
        )
        .await
    }

    /// The latest jobs of a trigger, newest first.
    pub async fn trigger_jobs(
        &self,
        inst: &Instance,
        id: &str,
        limit: usize,
    ) -> JobsResult<Vec<Job>> {
        self.find_jobs(
            inst,
            json!({
                "selector": {"trigger_id": id, "queued_at": {"$gt": null}},
                "sort": [{"trigger_id": "desc"}, {"queued_at": "desc"}],
                "limit": limit.clamp(1, 1000),
            }),
        )
        .await
    }

    /// `current_state` of a trigger, from its latest jobs.
    pub async fn trigger_state(&self, inst: &Instance, trigger_id: &str) -> JobsResult<Value> {
        let jobs = self.trigger_jobs(inst, trigger_id, 100).await?;
        let mut state = json!({"trigger_id": trigger_id, "status": "done"});
        if let Some(last) = jobs.first() {
            state["status"] = json!(last.state.as_str());
            state["last_execution"] = json!(last.started_at.as_ref().unwrap_or(&last.queued_at));
            state["last_executed_job_id"] = json!(last.id);
        }
        if let Some(ok) = jobs.iter().find(|j| j.state == crate::JobState::Done) {
            state["last_success"] = json!(ok.finished_at);
            state["last_successful_job_id"] = json!(ok.id);
        }
        if let Some(ko) = jobs.iter().find(|j| j.state == crate::JobState::Errored) {
            state["last_failure"] = json!(ko.finished_at);
            state["last_failed_job_id"] = json!(ko.id);
            state["last_error"] = json!(ko.error);
        }
        if let Some(manual) = jobs.iter().find(|j| j.manual_execution) {
            state["last_manual_execution"] = json!(manual.queued_at);
            state["last_manual_job_id"] = json!(manual.id);
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_firings_spread_and_stay_in_their_period() {
        let now = 1_795_514_505_000; // 2026-11-24T10:01:45Z
        for (p, period) in [(Period::Hourly, 3600), (Period::Daily, 86_400)] {
            let a = next_firing(&Schedule::Periodic(p), "a", now).unwrap_or(0);
            let b = next_firing(&Schedule::Periodic(p), "b", now).unwrap_or(0);
            assert!(a > now && a <= now + period * 1000, "{p:?}");
            assert_ne!(a, b, "{p:?}");
            // The same trigger keeps its time in every period.
            let again = next_firing(&Schedule::Periodic(p), "a", a).unwrap_or(0);
            assert_eq!(again - a, period * 1000);
        }
        let m = next_firing(&Schedule::Periodic(Period::Monthly), "a", now).unwrap_or(0);
        assert!(m > now && m <= now + 31 * 86_400_000);
        assert_eq!(
            next_firing(&Schedule::Every(Duration::from_secs(5)), "a", now),
            Some(now + 5000)
        );
        assert_eq!(next_firing(&Schedule::Webhook, "a", now), None);
    }

    #[test]
    fn schedule_doctype_is_valid() {
        assert!(hearth_core::Doctype::new(SCHEDULE).is_ok());
    }
}
