//! The store conformance suite and property tests, run against SQLite.

use std::sync::Arc;

use hearth_store::{DocStore, testkit};
use hearth_store_sqlite::{SqliteOptions, SqliteStore};

fn fresh() -> Arc<dyn DocStore> {
    // The directory lives as long as the test process; each store gets its own.
    let dir = tempfile::tempdir().expect("tempdir").keep();
    Arc::new(
        SqliteStore::open(
            dir,
            SqliteOptions {
                synchronous_full: false,
                ..Default::default()
            },
        )
        .expect("open"),
    )
}

hearth_store::conformance_tests!(fresh());

#[test]
fn mango_matches_naive_evaluator() {
    testkit::mango_matches_naive_evaluator(fresh);
}

#[test]
fn revisions_match_model() {
    testkit::revisions_match_model(fresh);
}
