//! The Redis pieces against a real server (`HEARTH_TEST_REDIS_URL`, by default
//! `redis://127.0.0.1:6379/`). Each test works under a random key prefix and
//! deletes its keys at the end, so parallel runs and re-runs never meet.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod broker;
mod connect;
mod events;
mod leader;
mod limit;
mod lock;
mod support;
