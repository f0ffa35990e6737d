//! Document events: an in-process hub per instance and [`EventedStore`], a [`DocStore`]
//! decorator that publishes `CREATED`/`UPDATED`/`DELETED` after every successful write.
//!
//! Wrapping the store once means every service writing through it (data API, files,
//! settings…) emits events without knowing about them. The hub is the only thing the
//! realtime layer sees, so a cross-process fan-out (Redis) can replace it later behind
//! the same two calls: [`EventHub::publish`] and [`EventHub::subscribe`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use async_trait::async_trait;
use hearth_core::{Doctype, InstanceId, JsonMap, Rev};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::mango::{FindQuery, IndexDef};
use crate::{
    AllDocs, AllDocsQuery, BulkResult, Changes, ChangesQuery, DocStore, FindResult, GetOptions,
    IndexCreated, StoreResult, Written, split_doc, with_meta,
};

/// What happened to a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Created,
    Updated,
    Deleted,
    /// Sent by a client (`POST /realtime/:doctype/:id`), never stored.
    Notified,
}

impl Verb {
    /// The realtime protocol's event name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Updated => "UPDATED",
            Self::Deleted => "DELETED",
            Self::Notified => "NOTIFIED",
        }
    }

    /// The verb of a realtime event name ([`Verb::as_str`]).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Created, Self::Updated, Self::Deleted, Self::Notified]
            .into_iter()
            .find(|v| v.as_str() == name)
    }

    /// The verb of a write that produced `rev`: generation 1 creates.
    fn of_write(rev: &Rev, deleted: bool) -> Self {
        if deleted {
            Self::Deleted
        } else if rev.generation == 1 {
            Self::Created
        } else {
            Self::Updated
        }
    }
}

/// One document event of one instance. `doc` is the stored form (`_id`, `_rev` first).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub instance: InstanceId,
    pub doctype: Doctype,
    pub id: String,
    pub verb: Verb,
    pub doc: JsonMap,
    /// The stored form before an update, when an observer asked for it
    /// ([`Interest::WithOld`]).
    pub old: Option<JsonMap>,
}

/// How much of the events of an instance's doctype an observer needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Interest {
    None,
    /// The event, as realtime subscribers get it.
    Event,
    /// The event and, for updates, the document as it was before (one more read).
    WithOld,
}

/// Sees every event of every instance it is interested in, synchronously, on the
/// writer's task: `observe` must only queue work (the job scheduler's `@event`
/// triggers are one).
pub trait EventObserver: Send + Sync {
    fn interest(&self, inst: &InstanceId, dt: &Doctype) -> Interest;
    fn observe(&self, event: &Arc<Event>);
    /// An event of another node ([`EventHub::publish_remote`]): most observers saw it
    /// there (job triggers, the fan-out itself) and ignore it here; a node's caches
    /// of what other nodes write (the disk usage) use it.
    fn observe_remote(&self, _event: &Arc<Event>) {}
}

/// How many events a slow subscriber may lag behind before it loses some.
const CAPACITY: usize = 256;

/// Per-instance broadcast channels, created on first subscription and dropped when
/// the last subscriber goes away. Cheap to clone.
#[derive(Clone, Default)]
pub struct EventHub {
    channels: Arc<Mutex<HashMap<InstanceId, broadcast::Sender<Arc<Event>>>>>,
    observers: Arc<RwLock<Vec<Arc<dyn EventObserver>>>>,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub").finish_non_exhaustive()
    }
}

impl EventHub {
    pub fn new() -> Self {
        Self::default()
    }

    /// Receives every event of `inst` published from now on.
    pub fn subscribe(&self, inst: &InstanceId) -> broadcast::Receiver<Arc<Event>> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        channels
            .entry(inst.clone())
            .or_insert_with(|| broadcast::channel(CAPACITY).0)
            .subscribe()
    }

    /// Adds an observer of every event (see [`EventObserver`]).
    pub fn observe(&self, observer: Arc<dyn EventObserver>) {
        self.observers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(observer);
    }

    /// Whether anyone listens to `inst` (writers skip building events otherwise).
    pub fn has_subscribers(&self, inst: &InstanceId) -> bool {
        let channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        channels.get(inst).is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// What writers of `dt` in `inst` must build: nothing, the event, or the event
    /// with the previous version of an updated document.
    pub fn interest(&self, inst: &InstanceId, dt: &Doctype) -> Interest {
        let observers = self
            .observers
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let observed = observers
            .iter()
            .map(|o| o.interest(inst, dt))
            .max()
            .unwrap_or(Interest::None);
        drop(observers);
        if observed == Interest::None && self.has_subscribers(inst) {
            Interest::Event
        } else {
            observed
        }
    }

    /// Sends an event to the subscribers of its instance, if any, and to the
    /// observers interested in it.
    pub fn publish(&self, event: Event) {
        self.fan_out(event, |observer, event| {
            if observer.interest(&event.instance, &event.doctype) != Interest::None {
                observer.observe(event);
            }
        });
    }

    /// Sends an event that happened on another node to this node's subscribers, and to
    /// the observers' `observe_remote` (job triggers and the cross-node fan-out saw it
    /// on that node and ignore it).
    pub fn publish_remote(&self, event: Event) {
        self.fan_out(event, |observer, event| observer.observe_remote(event));
    }

    /// Sends an event to the subscribers of its instance, then hands it to each
    /// observer through `deliver`.
    fn fan_out(&self, event: Event, deliver: impl Fn(&dyn EventObserver, &Arc<Event>)) {
        let event = Arc::new(event);
        {
            let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(tx) = channels.get(&event.instance)
                && tx.send(event.clone()).is_err()
            {
                // Nobody left: forget the channel.
                channels.remove(&event.instance);
            }
        }
        let observers = self
            .observers
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        for observer in observers.iter() {
            deliver(observer.as_ref(), &event);
        }
    }
}

/// A [`DocStore`] that publishes an [`Event`] on its [`EventHub`] after each
/// successful write, and otherwise forwards every call to the inner store.
pub struct EventedStore {
    inner: Arc<dyn DocStore>,
    hub: EventHub,
}

impl EventedStore {
    pub fn new(inner: Arc<dyn DocStore>, hub: EventHub) -> Self {
        Self { inner, hub }
    }

    pub fn hub(&self) -> &EventHub {
        &self.hub
    }

    fn emit(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        written: &Written,
        doc: JsonMap,
        old: Option<JsonMap>,
    ) {
        let (deleted, body) = match split_doc(doc) {
            Ok((_, _, deleted, body)) => (deleted, body),
            Err(_) => return,
        };
        let verb = Verb::of_write(&written.rev, deleted);
        let mut doc = with_meta(&written.id, &written.rev, body);
        if deleted {
            doc.insert("_deleted".into(), Value::Bool(true));
        }
        self.hub.publish(Event {
            instance: inst.clone(),
            doctype: dt.clone(),
            id: written.id.clone(),
            verb,
            doc,
            old,
        });
    }

    /// The stored form of the document a write replaces, when observers want it.
    async fn old_of(
        &self,
        interest: Interest,
        inst: &InstanceId,
        dt: &Doctype,
        doc: &JsonMap,
    ) -> Option<JsonMap> {
        if interest != Interest::WithOld || !doc.contains_key("_rev") {
            return None;
        }
        let id = doc.get("_id")?.as_str()?;
        self.inner
            .get(inst, dt, id, GetOptions::default())
            .await
            .ok()
    }

    fn emit_bulk(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        docs: Option<Vec<(JsonMap, Option<JsonMap>)>>,
        results: &[BulkResult],
    ) {
        let Some(docs) = docs else { return };
        for ((doc, old), result) in docs.into_iter().zip(results) {
            if let BulkResult::Ok(written) = result {
                self.emit(inst, dt, written, doc, old);
            }
        }
    }

    /// Copies of the documents of a bulk write (with their old versions if wanted).
    async fn copies(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        docs: &[JsonMap],
    ) -> Option<Vec<(JsonMap, Option<JsonMap>)>> {
        let interest = self.hub.interest(inst, dt);
        if interest == Interest::None {
            return None;
        }
        let mut copies = Vec::with_capacity(docs.len());
        for doc in docs {
            copies.push((doc.clone(), self.old_of(interest, inst, dt, doc).await));
        }
        Some(copies)
    }
}

#[async_trait]
impl DocStore for EventedStore {
    async fn get(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        id: &str,
        opts: GetOptions,
    ) -> StoreResult<JsonMap> {
        self.inner.get(inst, dt, id, opts).await
    }

    async fn put(&self, inst: &InstanceId, dt: &Doctype, doc: JsonMap) -> StoreResult<Written> {
        let interest = self.hub.interest(inst, dt);
        let old = self.old_of(interest, inst, dt, &doc).await;
        let copy = (interest != Interest::None).then(|| doc.clone());
        let written = self.inner.put(inst, dt, doc).await?;
        if let Some(doc) = copy {
            self.emit(inst, dt, &written, doc, old);
        }
        Ok(written)
    }

    async fn delete(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        id: &str,
        rev: &Rev,
    ) -> StoreResult<Rev> {
        // DELETED carries the last body with the tombstone's revision.
        let last = if self.hub.interest(inst, dt) != Interest::None {
            self.inner
                .get(inst, dt, id, GetOptions::default())
                .await
                .ok()
        } else {
            None
        };
        let new_rev = self.inner.delete(inst, dt, id, rev).await?;
        if let Some(mut doc) = last {
            doc.insert("_deleted".into(), Value::Bool(true));
            let written = Written {
                id: id.to_owned(),
                rev: new_rev.clone(),
            };
            self.emit(inst, dt, &written, doc, None);
        }
        Ok(new_rev)
    }

    async fn bulk(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        docs: Vec<JsonMap>,
        all_or_nothing: bool,
    ) -> StoreResult<Vec<BulkResult>> {
        let copy = self.copies(inst, dt, &docs).await;
        let results = self.inner.bulk(inst, dt, docs, all_or_nothing).await?;
        self.emit_bulk(inst, dt, copy, &results);
        Ok(results)
    }

    async fn bulk_many(
        &self,
        inst: &InstanceId,
        groups: Vec<(Doctype, Vec<JsonMap>)>,
    ) -> StoreResult<Vec<Vec<BulkResult>>> {
        let mut copies = Vec::with_capacity(groups.len());
        for (dt, docs) in &groups {
            copies.push((dt.clone(), self.copies(inst, dt, docs).await));
        }
        let results = self.inner.bulk_many(inst, groups).await?;
        for ((dt, docs), res) in copies.into_iter().zip(&results) {
            self.emit_bulk(inst, &dt, docs, res);
        }
        Ok(results)
    }

    /// Restored documents are copies of existing ones: no event is published.
    async fn restore(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        docs: Vec<JsonMap>,
    ) -> StoreResult<()> {
        self.inner.restore(inst, dt, docs).await
    }

    async fn all_docs(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        q: &AllDocsQuery,
    ) -> StoreResult<AllDocs> {
        self.inner.all_docs(inst, dt, q).await
    }

    async fn changes(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        q: &ChangesQuery,
    ) -> StoreResult<Changes> {
        self.inner.changes(inst, dt, q).await
    }

    async fn find(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        q: &FindQuery,
    ) -> StoreResult<FindResult> {
        self.inner.find(inst, dt, q).await
    }

    async fn create_index(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        def: IndexDef,
    ) -> StoreResult<IndexCreated> {
        self.inner.create_index(inst, dt, def).await
    }

    async fn create_indexes(
        &self,
        inst: &InstanceId,
        defs: Vec<(Doctype, IndexDef)>,
    ) -> StoreResult<Vec<IndexCreated>> {
        self.inner.create_indexes(inst, defs).await
    }

    async fn list_indexes(&self, inst: &InstanceId, dt: &Doctype) -> StoreResult<Vec<IndexDef>> {
        self.inner.list_indexes(inst, dt).await
    }

    async fn delete_index(&self, inst: &InstanceId, dt: &Doctype, ddoc: &str) -> StoreResult<()> {
        self.inner.delete_index(inst, dt, ddoc).await
    }

    async fn count(&self, inst: &InstanceId, dt: &Doctype) -> StoreResult<u64> {
        self.inner.count(inst, dt).await
    }

    async fn doctypes(&self, inst: &InstanceId) -> StoreResult<Vec<Doctype>> {
        self.inner.doctypes(inst).await
    }

    async fn delete_doctype(&self, inst: &InstanceId, dt: &Doctype) -> StoreResult<()> {
        self.inner.delete_doctype(inst, dt).await
    }

    async fn destroy_instance(&self, inst: &InstanceId) -> StoreResult<()> {
        self.inner.destroy_instance(inst).await
    }

    async fn health(&self) -> StoreResult<()> {
        self.inner.health().await
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn event_hub(&self) -> Option<&EventHub> {
        Some(&self.hub)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn event(inst: &str, id: &str) -> Event {
        Event {
            instance: InstanceId::new(inst).unwrap(),
            doctype: Doctype::new("io.cozy.todos").unwrap(),
            id: id.into(),
            verb: Verb::Created,
            doc: JsonMap::new(),
            old: None,
        }
    }

    #[test]
    fn events_stay_within_their_instance() {
        let hub = EventHub::new();
        let a = InstanceId::new("a").unwrap();
        let mut rx = hub.subscribe(&a);
        assert!(hub.has_subscribers(&a));
        hub.publish(event("b", "x"));
        hub.publish(event("a", "y"));
        assert_eq!(rx.try_recv().unwrap().id, "y");
        assert!(rx.try_recv().is_err());
        drop(rx);
        assert!(!hub.has_subscribers(&a));
        hub.publish(event("a", "z"));
        assert!(hub.channels.lock().unwrap().is_empty());
    }

    #[test]
    fn verbs_from_revisions() {
        let r1 = Rev::next(None, false, b"{}");
        let r2 = Rev::next(Some(&r1), false, b"{}");
        assert_eq!(Verb::of_write(&r1, false), Verb::Created);
        assert_eq!(Verb::of_write(&r2, false), Verb::Updated);
        assert_eq!(Verb::of_write(&r2, true), Verb::Deleted);
    }
}
