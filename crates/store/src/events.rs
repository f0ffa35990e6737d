//! Document events: an in-process hub per instance and [`EventedStore`], a [`DocStore`]
//! decorator that publishes `CREATED`/`UPDATED`/`DELETED` after every successful write.
//!
//! Wrapping the store once means every service writing through it (data API, files,
//! settings…) emits events without knowing about them. The hub is the only thing the
//! realtime layer sees, so a cross-process fan-out (Redis) can replace it later behind
//! the same two calls: [`EventHub::publish`] and [`EventHub::subscribe`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

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
}

/// How many events a slow subscriber may lag behind before it loses some.
const CAPACITY: usize = 256;

/// Per-instance broadcast channels, created on first subscription and dropped when
/// the last subscriber goes away. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct EventHub {
    channels: Arc<Mutex<HashMap<InstanceId, broadcast::Sender<Arc<Event>>>>>,
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

    /// Whether anyone listens to `inst` (writers skip building events otherwise).
    pub fn has_subscribers(&self, inst: &InstanceId) -> bool {
        let channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        channels.get(inst).is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// Sends an event to the subscribers of its instance, if any.
    pub fn publish(&self, event: Event) {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = channels.get(&event.instance) {
            let inst = event.instance.clone();
            if tx.send(Arc::new(event)).is_err() {
                // Nobody left: forget the channel.
                channels.remove(&inst);
            }
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

    fn emit(&self, inst: &InstanceId, dt: &Doctype, written: &Written, doc: JsonMap) {
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
        });
    }

    fn emit_bulk(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        docs: Option<Vec<JsonMap>>,
        results: &[BulkResult],
    ) {
        let Some(docs) = docs else { return };
        for (doc, result) in docs.into_iter().zip(results) {
            if let BulkResult::Ok(written) = result {
                self.emit(inst, dt, written, doc);
            }
        }
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
        let copy = self.hub.has_subscribers(inst).then(|| doc.clone());
        let written = self.inner.put(inst, dt, doc).await?;
        if let Some(doc) = copy {
            self.emit(inst, dt, &written, doc);
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
        let last = if self.hub.has_subscribers(inst) {
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
            self.emit(inst, dt, &written, doc);
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
        let copy = self.hub.has_subscribers(inst).then(|| docs.clone());
        let results = self.inner.bulk(inst, dt, docs, all_or_nothing).await?;
        self.emit_bulk(inst, dt, copy, &results);
        Ok(results)
    }

    async fn bulk_many(
        &self,
        inst: &InstanceId,
        groups: Vec<(Doctype, Vec<JsonMap>)>,
    ) -> StoreResult<Vec<Vec<BulkResult>>> {
        let copy = self.hub.has_subscribers(inst).then(|| groups.clone());
        let results = self.inner.bulk_many(inst, groups).await?;
        if let Some(groups) = copy {
            for ((dt, docs), res) in groups.into_iter().zip(&results) {
                self.emit_bulk(inst, &dt, Some(docs), res);
            }
        }
        Ok(results)
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
