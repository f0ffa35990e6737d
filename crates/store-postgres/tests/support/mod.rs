//! Throwaway stores for tests: each on its own base schema, dropped with the store.
//!
//! The server comes from `HEARTH_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); an unreachable server fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::Arc;

use hearth_store::DocStore;
use hearth_store_postgres::{PgOptions, PostgresStore};

pub fn url() -> String {
    std::env::var("HEARTH_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Runs `f` on a runtime of its own, on a thread of its own (callable from anywhere,
/// inside a runtime or not).
fn on_own_runtime<T: Send + 'static>(
    f: impl FnOnce(tokio_postgres::Client) -> std::pin::Pin<Box<dyn Future<Output = T> + Send>>
    + Send
    + 'static,
) -> T {
    let url = url();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let (client, connection) = match tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
            {
                Ok(c) => c,
                Err(e) => panic!(
                    "PostgreSQL is unreachable at {url} ({e}); the PostgreSQL store tests need a \
                     server: set HEARTH_TEST_POSTGRES_URL or start one on 127.0.0.1:5432 \
                     (trust auth, database `test`)"
                ),
            };
            let driver = tokio::spawn(connection);
            let out = f(client).await;
            driver.abort();
            out
        })
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Drops every schema of a test store when the store goes away.
struct DropSchemas(String);

impl Drop for DropSchemas {
    fn drop(&mut self) {
        let base = self.0.clone();
        // Never panic in drop (a failing test is already unwinding): log instead.
        let result = std::panic::catch_unwind(move || {
            on_own_runtime(move |client| {
                Box::pin(async move {
                    let rows = client
                        .query(
                            "SELECT nspname::text FROM pg_namespace \
                             WHERE nspname = $1 OR nspname LIKE $1 || '\\_%'",
                            &[&base],
                        )
                        .await?;
                    for r in rows {
                        let name: String = r.get(0);
                        client
                            .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                            .await?;
                    }
                    Ok::<_, tokio_postgres::Error>(())
                })
            })
        });
        if !matches!(result, Ok(Ok(()))) {
            eprintln!("could not drop the test schemas of {}", self.0);
        }
    }
}

/// A fresh store on a new base schema, checked to be reachable.
pub fn fresh_store() -> PostgresStore {
    let base = format!("hearth_t{}", hearth_core::random_hex(8));
    on_own_runtime(|client| {
        Box::pin(async move {
            client.query_one("SELECT 1", &[]).await.expect("SELECT 1");
        })
    });
    let store = PostgresStore::new(
        &url(),
        PgOptions {
            schema: base.clone(),
            max_connections: 4,
        },
    )
    .expect("store");
    store.attach(DropSchemas(base));
    store
}

pub fn fresh() -> Arc<dyn DocStore> {
    Arc::new(fresh_store())
}
