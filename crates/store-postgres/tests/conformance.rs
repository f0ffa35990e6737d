//! The store conformance suite and property tests, run against PostgreSQL.

mod support;

use hearth_store::testkit;
use support::fresh;

hearth_store::conformance_tests!(fresh());

#[test]
fn mango_matches_naive_evaluator() {
    testkit::mango_matches_naive_evaluator(fresh);
}

#[test]
fn revisions_match_model() {
    testkit::revisions_match_model(fresh);
}
