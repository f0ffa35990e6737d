//! The test server's connection and a fresh key prefix per test.

use hearth_redis::Redis;

/// The Redis the tests use.
pub fn url() -> String {
    std::env::var("HEARTH_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// A random prefix no other test or run uses.
pub fn prefix() -> String {
    format!("hearth-test:{}:", hearth_core::random_hex(6))
}

/// Connects under `prefix`; fails the test with a clear message without Redis.
pub async fn connect(prefix: &str) -> Redis {
    let url = url();
    match Redis::connect(&url, prefix).await {
        Ok(redis) => redis,
        Err(e) => panic!(
            "these tests need a Redis server: {e}. Start one on 127.0.0.1:6379 \
             or set HEARTH_TEST_REDIS_URL."
        ),
    }
}

/// Deletes every key under `prefix`.
pub async fn cleanup(prefix: &str) {
    let client = redis::Client::open(url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(keys)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
}

/// Deletes a prefix's keys when dropped (also when the test fails).
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let prefix = self.0.clone();
        // A thread of its own: the test's runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(cleanup(&prefix));
        })
        .join();
    }
}
