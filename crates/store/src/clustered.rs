//! Instances spread over several database clusters (`database.clusters`, like the
//! Cozy stack's CouchDB clusters): a [`ClusteredStore`] holds one store per cluster and
//! sends each call to the cluster of its instance.
//!
//! The route is in the instance id itself, so that every node agrees without a table
//! to share: an instance created on cluster `n > 0` gets the id `<prefix>-c<n>`; every
//! other id (the global store, instances of cluster 0, ids from before clusters)
//! lives on cluster 0.

use std::sync::Arc;

use async_trait::async_trait;
use hearth_core::{Doctype, InstanceId, JsonMap, Rev};

use crate::mango::{FindQuery, IndexDef};
use crate::{
    AllDocs, AllDocsQuery, BulkResult, Changes, ChangesQuery, DocStore, FindResult, GetOptions,
    IndexCreated, StoreError, StoreResult, Written,
};

/// The cluster an instance id names (`…-c<n>`), 0 when it names none.
pub fn cluster_of(inst: &InstanceId) -> usize {
    inst.as_str()
        .rsplit_once("-c")
        .and_then(|(_, n)| {
            (!n.is_empty() && !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit()))
                .then(|| n.parse().ok())
                .flatten()
        })
        .unwrap_or(0)
}

/// The instance id of `prefix` on cluster `n`.
pub fn id_on_cluster(prefix: &str, n: usize) -> String {
    if n == 0 {
        prefix.to_owned()
    } else {
        format!("{prefix}-c{n}")
    }
}

/// One store per cluster; cluster 0 also holds the global store.
pub struct ClusteredStore {
    clusters: Vec<Arc<dyn DocStore>>,
}

impl ClusteredStore {
    /// `clusters[0]` is the main database (`database.url`).
    pub fn new(clusters: Vec<Arc<dyn DocStore>>) -> StoreResult<Self> {
        if clusters.is_empty() {
            return Err(StoreError::invalid(
                "at least one database cluster is needed",
            ));
        }
        Ok(Self { clusters })
    }

    pub fn len(&self) -> usize {
        self.clusters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty()
    }

    fn of(&self, inst: &InstanceId) -> StoreResult<&Arc<dyn DocStore>> {
        let n = cluster_of(inst);
        self.clusters.get(n).ok_or_else(|| {
            StoreError::invalid(format!(
                "the instance {} is on database cluster {n}, which is not configured",
                inst.as_str()
            ))
        })
    }
}

#[async_trait]
impl DocStore for ClusteredStore {
    async fn get(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        id: &str,
        opts: GetOptions,
    ) -> StoreResult<JsonMap> {
        self.of(inst)?.get(inst, dt, id, opts).await
    }

    async fn put(&self, inst: &InstanceId, dt: &Doctype, doc: JsonMap) -> StoreResult<Written> {
        self.of(inst)?.put(inst, dt, doc).await
    }

    async fn delete(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        id: &str,
        rev: &Rev,
    ) -> StoreResult<Rev> {
        self.of(inst)?.delete(inst, dt, id, rev).await
    }

    async fn bulk(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        docs: Vec<JsonMap>,
        all_or_nothing: bool,
    ) -> StoreResult<Vec<BulkResult>> {
        self.of(inst)?.bulk(inst, dt, docs, all_or_nothing).await
    }

    async fn bulk_many(
        &self,
        inst: &InstanceId,
        groups: Vec<(Doctype, Vec<JsonMap>)>,
    ) -> StoreResult<Vec<Vec<BulkResult>>> {
        self.of(inst)?.bulk_many(inst, groups).await
    }

    async fn restore(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        docs: Vec<JsonMap>,
    ) -> StoreResult<()> {
        self.of(inst)?.restore(inst, dt, docs).await
    }

    async fn all_docs(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        q: &AllDocsQuery,
    ) -> StoreResult<AllDocs> {
        self.of(inst)?.all_docs(inst, dt, q).await
    }

    async fn changes(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        q: &ChangesQuery,
    ) -> StoreResult<Changes> {
        self.of(inst)?.changes(inst, dt, q).await
    }

    async fn find(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        q: &FindQuery,
    ) -> StoreResult<FindResult> {
        self.of(inst)?.find(inst, dt, q).await
    }

    async fn create_index(
        &self,
        inst: &InstanceId,
        dt: &Doctype,
        def: IndexDef,
    ) -> StoreResult<IndexCreated> {
        self.of(inst)?.create_index(inst, dt, def).await
    }

    async fn create_indexes(
        &self,
        inst: &InstanceId,
        defs: Vec<(Doctype, IndexDef)>,
    ) -> StoreResult<Vec<IndexCreated>> {
        self.of(inst)?.create_indexes(inst, defs).await
    }

    async fn list_indexes(&self, inst: &InstanceId, dt: &Doctype) -> StoreResult<Vec<IndexDef>> {
        self.of(inst)?.list_indexes(inst, dt).await
    }

    async fn delete_index(&self, inst: &InstanceId, dt: &Doctype, ddoc: &str) -> StoreResult<()> {
        self.of(inst)?.delete_index(inst, dt, ddoc).await
    }

    async fn count(&self, inst: &InstanceId, dt: &Doctype) -> StoreResult<u64> {
        self.of(inst)?.count(inst, dt).await
    }

    async fn doctypes(&self, inst: &InstanceId) -> StoreResult<Vec<Doctype>> {
        self.of(inst)?.doctypes(inst).await
    }

    async fn delete_doctype(&self, inst: &InstanceId, dt: &Doctype) -> StoreResult<()> {
        self.of(inst)?.delete_doctype(inst, dt).await
    }

    async fn destroy_instance(&self, inst: &InstanceId) -> StoreResult<()> {
        self.of(inst)?.destroy_instance(inst).await
    }

    /// Every cluster must answer.
    async fn health(&self) -> StoreResult<()> {
        for c in &self.clusters {
            c.health().await?;
        }
        Ok(())
    }

    fn kind(&self) -> &'static str {
        self.clusters.first().map_or("clustered", |c| c.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_from_ids() {
        let id = |s: &str| InstanceId::new(s).unwrap_or_else(|_| InstanceId::global());
        assert_eq!(cluster_of(&InstanceId::global()), 0);
        assert_eq!(cluster_of(&id("cozyabc")), 0);
        assert_eq!(cluster_of(&id("cozyabc-c2")), 2);
        assert_eq!(cluster_of(&id("cozyabc-c12")), 12);
        // Not a cluster suffix.
        assert_eq!(cluster_of(&id("cozyabc-c")), 0);
        assert_eq!(cluster_of(&id("cozyabc-c02")), 0);
        assert_eq!(cluster_of(&id("cozyabc-cx")), 0);
        assert_eq!(id_on_cluster("cozyabc", 0), "cozyabc");
        assert_eq!(cluster_of(&id(&id_on_cluster("cozyabc", 3))), 3);
    }
}
